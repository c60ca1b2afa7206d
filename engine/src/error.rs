//! The engine's errors. Each variant says who is at fault: the caller
//! (`Rejected`, `EventTooLarge`, `OutOfRange`), the disk (`Storage`,
//! `Failed`), or the files on it (`CorruptLog`, `Snapshot`, the mismatch
//! variants). Errors are `Clone` so that one storage failure can be
//! reported to every writer waiting on the same group commit.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use valori_columnar::snapshot::SnapshotError;
use valori_core::event::DecodeError;
use valori_core::hash::Hash32;
use valori_core::state::ApplyError;

use crate::fault::Fault;
use crate::recovery::CHECKPOINT_VERSION;
use crate::wal::ScanError;

/// The storage operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageOp {
    Create,
    Open,
    Read,
    Write,
    Sync,
    SyncDir,
    Truncate,
    Rename,
    Remove,
    List,
}

impl fmt::Display for StorageOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageOp::Create => "create",
            StorageOp::Open => "open",
            StorageOp::Read => "read",
            StorageOp::Write => "write",
            StorageOp::Sync => "fsync",
            StorageOp::SyncDir => "fsync directory",
            StorageOp::Truncate => "truncate",
            StorageOp::Rename => "rename",
            StorageOp::Remove => "remove",
            StorageOp::List => "list",
        })
    }
}

#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The event is invalid for the current state; nothing was written.
    #[error("rejected: {0}")]
    Rejected(#[from] ApplyError),
    /// The encoded event exceeds the size limit; nothing was written.
    #[error("event of {len} bytes exceeds the limit of {max} bytes")]
    EventTooLarge { len: u64, max: u64 },
    /// A proof or read asked for events the log does not hold.
    #[error("log holds {size} events; {what} is out of range")]
    OutOfRange { what: String, size: u64 },
    /// A storage operation failed.
    #[error("storage: {op} {}: {source}", path.display())]
    Storage {
        op: StorageOp,
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// An earlier storage failure stopped the engine; restart to recover.
    #[error(
        "the engine stopped accepting work after a storage failure ({0}); restart it to recover from the log"
    )]
    Failed(Arc<EngineError>),
    /// A log segment is damaged before its tail.
    #[error("log segment {} is corrupt: {source}", segment.display())]
    CorruptLog { segment: PathBuf, source: ScanError },
    /// The log skips events.
    #[error("log is missing events: expected event {expected}, found {found} in {}", segment.display())]
    LogGap {
        segment: PathBuf,
        expected: u64,
        found: u64,
    },
    /// A logged event does not decode.
    #[error("event {seq} in {} at offset {offset} does not decode: {source}", segment.display())]
    BadEvent {
        segment: PathBuf,
        seq: u64,
        offset: u64,
        source: DecodeError,
    },
    /// A logged event is rejected on replay: the log contradicts itself.
    #[error("event {seq} in {} was rejected on replay: {source}", segment.display())]
    ReplayRejected {
        segment: PathBuf,
        seq: u64,
        source: ApplyError,
    },
    /// A frame's recorded log root differs from the recomputed one.
    #[error("event {seq} in {} records log root {recorded}, recomputed {computed}", segment.display())]
    RootMismatch {
        segment: PathBuf,
        seq: u64,
        recorded: Hash32,
        computed: Hash32,
    },
    /// A snapshot cannot be used.
    #[error("snapshot {}: {source}", path.display())]
    Snapshot {
        path: PathBuf,
        source: Arc<SnapshotError>,
    },
    /// A snapshot's log leaves do not give the log root it records.
    #[error("snapshot {} records log root {recorded}, its leaves give {computed}", path.display())]
    SnapshotRootMismatch {
        path: PathBuf,
        recorded: Hash32,
        computed: Hash32,
    },
    /// The log and the snapshot disagree about an event.
    #[error("event {seq} in {} differs from the snapshot's record of it", segment.display())]
    SnapshotLogMismatch { segment: PathBuf, seq: u64 },
    /// The checkpoint's state hash differs from the recovered state.
    #[error(
        "checkpoint at {events} events records state hash {recorded}, recovery computed {computed}"
    )]
    CheckpointMismatch {
        events: u64,
        recorded: Hash32,
        computed: Hash32,
    },
    /// The log ends before the checkpoint: acknowledged events are missing.
    #[error("checkpoint records {recorded} events but the log and snapshots hold only {found}")]
    LogShorterThanCheckpoint { recorded: u64, found: u64 },
    /// Another engine (in this or another process) has the data directory
    /// open.
    #[error(
        "data directory {} is in use{}: only one engine may open it (lock file {})",
        dir.display(),
        holder.as_ref().map(|h| format!(" by process {h}")).unwrap_or_default(),
        lock_file.display()
    )]
    Locked {
        dir: PathBuf,
        lock_file: PathBuf,
        /// The holder's process id as it wrote it into the lock file.
        holder: Option<String>,
    },
    /// The commit of a group of writes panicked; what it had applied may
    /// not be durable, so the engine stopped.
    #[error("the commit of a group of writes panicked: {message}")]
    CommitPanicked { message: String },
    /// A snapshot's recorded contents do not match its name or the log.
    #[error("snapshot {}: {reason}", path.display())]
    SnapshotMismatch { path: PathBuf, reason: String },
    /// The checkpoint file is damaged.
    #[error("checkpoint file {} is damaged", path.display())]
    BadCheckpoint { path: PathBuf },
    /// The checkpoint's index hash differs from the recovered graphs, with
    /// every complete block built.
    #[error(
        "checkpoint at {events} events records index hash {recorded}, recovery computed {computed}"
    )]
    CheckpointIndexMismatch {
        events: u64,
        recorded: Hash32,
        computed: Hash32,
    },
    /// The checkpoint was written in a format version this build does not
    /// read.
    #[error("checkpoint file {} has format version {found}; this build reads version {CHECKPOINT_VERSION}", path.display())]
    CheckpointVersion { path: PathBuf, found: u32 },
    /// A transaction of several writes was computed from a state that
    /// other writes have changed since; nothing of it was written.
    #[error(
        "could not serialize access: {since} write(s) were committed since the transaction's first write; retry the transaction"
    )]
    TransactionConflict { since: u64 },
    /// This node is a replica that does not lead its cluster: writes (and
    /// linearizable reads it cannot confirm) go to the leader, whose REST
    /// address and Postgres address are named when known.
    #[error("{}", match leader {
        Some(l) => format!(
            "this node is not the cluster's leader; send writes to the leader at {l}{}",
            leader_pg.as_ref().map(|p| format!(" (Postgres {p})")).unwrap_or_default()
        ),
        None => "this node is not the cluster's leader and no leader is known yet (an election is under way or a majority is unreachable); retry".to_owned(),
    })]
    NotLeader {
        leader: Option<String>,
        leader_pg: Option<String>,
    },
    /// The cluster could not commit the write (no majority reachable, the
    /// consensus engine stopped); whether it was committed is unknown only
    /// when `outcome_unknown` is set.
    #[error("replication: {reason}")]
    Replication {
        reason: String,
        outcome_unknown: bool,
    },
    /// This replica's state differs from the cluster's at the same log
    /// index; it stopped serving rather than answer from a diverged state.
    #[error(
        "this replica diverged from the cluster at log index {index}: its state hash is {local}, the cluster's is {cluster}; it serves nothing until rebuilt"
    )]
    Diverged {
        index: u64,
        local: Hash32,
        cluster: Hash32,
    },
    /// A membership change (promote, remove) named a node that is not a
    /// member of the cluster; `members` are the ids it has, in order.
    #[error("node {node} is not a member of the cluster; its members are {}", members.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))]
    UnknownNode { node: u64, members: Vec<u64> },
}

impl EngineError {
    pub(crate) fn storage(op: StorageOp, path: &Path, source: io::Error) -> EngineError {
        EngineError::Storage {
            op,
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    /// Who is at fault: the caller for a refused event, a too-large event
    /// or a position beyond the log; a stopped engine is unavailable;
    /// anything else is the database's own failure.
    pub fn fault(&self) -> Fault {
        match self {
            EngineError::Rejected(apply) => Fault::of_apply(apply),
            EngineError::EventTooLarge { .. } => Fault::TooLarge,
            EngineError::OutOfRange { .. } | EngineError::UnknownNode { .. } => Fault::NotFound,
            EngineError::TransactionConflict { .. } => Fault::Conflict,
            EngineError::Failed(_)
            | EngineError::NotLeader { .. }
            | EngineError::Replication { .. }
            | EngineError::Diverged { .. } => Fault::Unavailable,
            _ => Fault::Internal,
        }
    }

    /// Whether the caller's input caused the error (nothing was written).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            EngineError::Rejected(_)
                | EngineError::EventTooLarge { .. }
                | EngineError::OutOfRange { .. }
                | EngineError::TransactionConflict { .. }
                | EngineError::UnknownNode { .. }
        )
    }
}
