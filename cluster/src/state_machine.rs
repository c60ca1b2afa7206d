//! The state machine: committed entries applied to the engine.
//!
//! A normal entry carries the canonical bytes of one or more events;
//! applying them is [`Core::submit_local_all`], the same durable commit and the same
//! `State::apply` as a single node's write, so the event log (with its
//! Merkle root) holds exactly the committed, accepted events in log order
//! on every node. An event the state refuses is refused on every node
//! alike and never reaches the event log.
//!
//! What is applied is known from the engine itself: the last snapshot
//! (`raft-snapshot`, fsynced before the Raft log is purged) names the log
//! id and event count it covers; after a restart openraft applies the
//! entries after it again, and each event whose bytes equal the next event
//! already in the engine's log is recognised as applied (an event refused
//! the first time is refused again: the state it met is the same). So no
//! extra fsync per commit records the applied position.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use valori_core::event::Event;
use valori_core::hash::Hash32;
use valori_engine::{Engine, EngineError, Receipt};

use crate::{Applied, Checkpoint, Member, NodeId, TypeConfig};

const SNAPSHOT_META_FILE: &str = "raft-snapshot";

/// Raft indexes that are multiples of this are checkpoints: every node
/// records its (index, events, state hash, log root) there, and the nodes
/// compare them.
pub const CHECKPOINT_EVERY_ENTRIES: u64 = 64;

/// How many recent checkpoints a node keeps for comparison.
const CHECKPOINTS_KEPT: usize = 64;

/// The durable record of the last snapshot: what it covers.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SnapshotRecord {
    meta: SnapshotMeta<NodeId, Member>,
    events: u64,
    state_hash: String,
    log_root: String,
    file: PathBuf,
}

/// What the node has applied; shared with the status reporter.
#[derive(Clone, Debug, Default)]
pub struct AppliedStatus {
    pub last_applied: Option<LogId<NodeId>>,
    pub events: u64,
    pub state_hash: Option<Hash32>,
    pub log_root: Option<Hash32>,
    /// Recent checkpoints, oldest first.
    pub checkpoints: Vec<Checkpoint>,
    /// Snapshots received and installed since the node started.
    pub snapshots_installed: u64,
}

#[derive(Debug)]
struct Inner {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    /// Next event of the engine's log to match against re-applied entries
    /// (after a restart); at the log's end, entries are applied anew.
    replay_at: u64,
    snapshot: Option<SnapshotRecord>,
}

/// Test hook: a replica whose apply is corrupted on purpose, so that tests
/// can check that divergence is caught. Never set outside tests.
#[derive(Clone, Copy, Debug, Default)]
#[doc(hidden)]
pub struct ApplyFault {
    /// Drop the event of this Raft index instead of applying it.
    pub drop_entry_at: Option<u64>,
    /// Wait this long before applying each batch of entries: a replica
    /// that trails the commit index, for tests of linearizable reads.
    pub apply_delay: Option<std::time::Duration>,
}

impl ApplyFault {
    /// The fault a test asks of a separate `valori serve` process: with
    /// the `test-apply-fault` feature (test builds only, see
    /// cluster/Cargo.toml), `VALORI_TEST_DROP_ENTRY_AT=N` drops the event
    /// of Raft index N. Without the feature, no fault, whatever the
    /// environment holds: a release build reads no such variable.
    pub fn from_test_env() -> ApplyFault {
        #[cfg(feature = "test-apply-fault")]
        {
            const VAR: &str = "VALORI_TEST_DROP_ENTRY_AT";
            let Ok(text) = std::env::var(VAR) else {
                return ApplyFault::default();
            };
            let index: u64 = text.trim().parse().unwrap_or_else(|_| {
                panic!("{VAR}={text:?} is not a Raft index (a test build's apply fault)")
            });
            tracing::warn!(
                index,
                "{VAR}: this test build drops the event of Raft index {index} on purpose; its replica will diverge"
            );
            ApplyFault {
                drop_entry_at: Some(index),
                apply_delay: None,
            }
        }
        #[cfg(not(feature = "test-apply-fault"))]
        ApplyFault::default()
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    dir: PathBuf,
    inner: tokio::sync::Mutex<Inner>,
    pub(crate) status: std::sync::Mutex<AppliedStatus>,
    fault: ApplyFault,
}

/// The state machine openraft drives; clones share one engine.
#[derive(Clone, Debug)]
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

fn engine_err(e: EngineError) -> StorageError<NodeId> {
    sm_err(io::Error::other(e))
}

impl StateMachine {
    pub(crate) fn open(
        engine: Arc<Engine>,
        dir: &Path,
        fault: ApplyFault,
    ) -> Result<StateMachine, crate::ClusterError> {
        let record: Option<SnapshotRecord> =
            match std::fs::read(dir.join(SNAPSHOT_META_FILE)) {
                Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|_| {
                    crate::ClusterError::Damaged {
                        path: dir.join(SNAPSHOT_META_FILE),
                    }
                })?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(crate::ClusterError::Io {
                        path: dir.join(SNAPSHOT_META_FILE),
                        source,
                    });
                }
            };
        let proof = engine.proof().map_err(crate::ClusterError::Engine)?;
        let (last_applied, membership, replay_at) = match &record {
            Some(r) => (r.meta.last_log_id, r.meta.last_membership.clone(), r.events),
            None => (None, StoredMembership::default(), 0),
        };
        let status = AppliedStatus {
            last_applied,
            events: proof.log_size,
            state_hash: Some(proof.hashes.state),
            log_root: Some(proof.log_root),
            checkpoints: Vec::new(),
            snapshots_installed: 0,
        };
        Ok(StateMachine {
            shared: Arc::new(Shared {
                engine,
                dir: dir.to_path_buf(),
                inner: tokio::sync::Mutex::new(Inner {
                    last_applied,
                    membership,
                    replay_at,
                    snapshot: record,
                }),
                status: std::sync::Mutex::new(status),
                fault,
            }),
        })
    }
}

impl StateMachine {
    /// Whether a snapshot record exists (the node has been in a cluster).
    pub(crate) fn has_snapshot(&self) -> bool {
        self.shared.dir.join(SNAPSHOT_META_FILE).exists()
    }
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, AppliedStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the applied position; at a checkpoint index, records it
    /// when `replay_at` shows the engine holds exactly the events up to
    /// that entry. After a restart openraft applies again entries the
    /// engine already holds; the engine's state is then ahead of the
    /// entry, and recording it as the entry's checkpoint would make this
    /// replica look diverged, so that checkpoint is skipped.
    fn publish(
        &self,
        last_applied: Option<LogId<NodeId>>,
        replay_at: u64,
    ) -> Result<(), EngineError> {
        let proof = self.engine.proof()?;
        let mut status = self.status();
        status.last_applied = last_applied;
        status.events = proof.log_size;
        status.state_hash = Some(proof.hashes.state);
        status.log_root = Some(proof.log_root);
        if let Some(id) = last_applied
            && id.index % CHECKPOINT_EVERY_ENTRIES == 0
            && replay_at >= proof.log_size
            && status.checkpoints.last().is_none_or(|c| c.index < id.index)
        {
            status.checkpoints.push(Checkpoint {
                index: id.index,
                events: proof.log_size,
                state_hash: proof.hashes.state.to_string(),
                log_root: proof.log_root.to_string(),
            });
            if status.checkpoints.len() > CHECKPOINTS_KEPT {
                status.checkpoints.remove(0);
            }
        }
        Ok(())
    }
}

/// One normal entry waiting to be applied.
struct Pending {
    index: u64,
    events: Vec<Vec<u8>>,
}

impl StateMachine {
    /// Applies `pending` (consecutive normal entries) to the engine and
    /// returns one response each.
    async fn apply_events(
        &self,
        inner: &mut Inner,
        pending: Vec<Pending>,
    ) -> Result<Vec<Applied>, StorageError<NodeId>> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let shared = Arc::clone(&self.shared);
        let replay_at = inner.replay_at;
        let (responses, replay_at) =
            tokio::task::spawn_blocking(move || apply_blocking(&shared, pending, replay_at))
                .await
                .map_err(|e| sm_err(io::Error::other(e)))??;
        inner.replay_at = replay_at;
        Ok(responses)
    }
}

/// The result of an event not (yet) applied: dropped by the test fault,
/// or waiting for the engine's group commit.
fn not_applied() -> Result<Receipt, EngineError> {
    Err(EngineError::Replication {
        reason: "the entry was committed but this node did not apply it as an event".to_owned(),
        outcome_unknown: true,
    })
}

fn apply_blocking(
    shared: &Shared,
    pending: Vec<Pending>,
    mut replay_at: u64,
) -> Result<(Vec<Applied>, u64), StorageError<NodeId>> {
    let engine = &shared.engine;
    let mut responses: Vec<Applied> = Vec::with_capacity(pending.len());
    // Events to commit now, with the (entry, event) slot of their result.
    let mut fresh: Vec<((usize, usize), Event)> = Vec::new();
    for p in pending {
        let slot = responses.len();
        let mut results = Vec::with_capacity(p.events.len());
        if shared.fault.drop_entry_at == Some(p.index) {
            results.resize_with(p.events.len(), not_applied);
            responses.push(Applied { results });
            continue;
        }
        for (k, bytes) in p.events.into_iter().enumerate() {
            // Events the engine already holds (applied before a restart).
            if replay_at < engine.log_size() {
                let logged = engine.read_log(replay_at, 1).map_err(engine_err)?;
                let logged = logged.first().ok_or_else(|| {
                    engine_err(EngineError::OutOfRange {
                        what: format!("event {replay_at}"),
                        size: engine.log_size(),
                    })
                })?;
                if logged.event == bytes {
                    results.push(Ok(Receipt {
                        seq: logged.seq,
                        log_root: logged.log_root,
                    }));
                    replay_at += 1;
                } else {
                    results.push(Err(EngineError::Replication {
                        reason: format!(
                            "event {k} of entry {} was refused when it was first applied",
                            p.index
                        ),
                        outcome_unknown: false,
                    }));
                }
                continue;
            }
            match Event::decode(&bytes) {
                Ok(event) => {
                    fresh.push(((slot, k), event));
                    results.push(not_applied());
                }
                Err(e) => results.push(Err(EngineError::Replication {
                    reason: format!(
                        "event {k} of entry {} does not decode as an event: {e}",
                        p.index
                    ),
                    outcome_unknown: false,
                })),
            }
        }
        responses.push(Applied { results });
    }
    if !fresh.is_empty() {
        let (slots, events): (Vec<(usize, usize)>, Vec<Event>) = fresh.into_iter().unzip();
        let results = engine.submit_local_all(events);
        for ((slot, k), result) in slots.into_iter().zip(results) {
            // A storage failure stops the engine: nothing more can be
            // applied here, and openraft must stop too.
            if let Err(e) = &result
                && !e.is_user_error()
            {
                return Err(engine_err(e.clone()));
            }
            responses[slot].results[k] = result;
        }
        replay_at = engine.log_size();
    }
    Ok((responses, replay_at))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        let inner = self.shared.inner.lock().await;
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        if let Some(delay) = self.shared.fault.apply_delay {
            tokio::time::sleep(delay).await;
        }
        let mut inner = self.shared.inner.lock().await;
        let mut out = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Normal(write) => pending.push(Pending {
                    index,
                    events: write.events,
                }),
                EntryPayload::Blank => {
                    out.extend(
                        self.apply_events(&mut inner, std::mem::take(&mut pending))
                            .await?,
                    );
                    out.push(Applied::default());
                }
                EntryPayload::Membership(m) => {
                    out.extend(
                        self.apply_events(&mut inner, std::mem::take(&mut pending))
                            .await?,
                    );
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(Applied::default());
                }
            }
            inner.last_applied = Some(entry.log_id);
            // A checkpoint is the state right after its entry: apply what
            // is pending up to here first.
            if index % CHECKPOINT_EVERY_ENTRIES == 0 {
                out.extend(
                    self.apply_events(&mut inner, std::mem::take(&mut pending))
                        .await?,
                );
                self.shared
                    .publish(inner.last_applied, inner.replay_at)
                    .map_err(engine_err)?;
            }
        }
        out.extend(self.apply_events(&mut inner, pending).await?);
        self.shared
            .publish(inner.last_applied, inner.replay_at)
            .map_err(engine_err)?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.shared.inner.lock().await;
        let claimed = parse_snapshot_id(&meta.snapshot_id).ok_or_else(|| {
            sm_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot id {:?} does not name its events, state hash and log root",
                    meta.snapshot_id
                ),
            ))
        })?;
        let bytes = snapshot.into_inner();
        let engine = Arc::clone(&self.shared.engine);
        // The engine checks the file against the state hash and log root
        // the leader announced before it replaces anything.
        let info = tokio::task::spawn_blocking(move || {
            engine.install_snapshot(&bytes, Some((claimed.1, claimed.2, claimed.0)))
        })
        .await
        .map_err(|e| sm_err(io::Error::other(e)))?
        .map_err(engine_err)?;
        let record = SnapshotRecord {
            meta: meta.clone(),
            events: info.events,
            state_hash: info.state_hash.to_string(),
            log_root: info.log_root.to_string(),
            file: info.path,
        };
        write_record(&self.shared.dir, &record).map_err(sm_err)?;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.replay_at = info.events;
        inner.snapshot = Some(record);
        self.shared.status().snapshots_installed += 1;
        self.shared
            .publish(inner.last_applied, inner.replay_at)
            .map_err(engine_err)?;
        tracing::info!(
            index = ?meta.last_log_id.map(|l| l.index),
            events = info.events,
            state_hash = %info.state_hash,
            log_root = %info.log_root,
            "installed the leader's snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.shared.inner.lock().await;
        let Some(record) = inner.snapshot.clone() else {
            return Ok(None);
        };
        let bytes = std::fs::read(&record.file).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(record.meta.signature()),
                &e,
            ))
        })?;
        Ok(Some(Snapshot {
            meta: record.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // Holding the state machine's lock keeps applies out: the engine's
        // snapshot is then exactly the state after `last_applied`.
        let mut inner = self.shared.inner.lock().await;
        let engine = Arc::clone(&self.shared.engine);
        let info = tokio::task::spawn_blocking(move || engine.snapshot())
            .await
            .map_err(|e| sm_err(io::Error::other(e)))?
            .map_err(engine_err)?;
        let index = inner.last_applied.map_or(0, |l| l.index);
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id: snapshot_id(index, info.events, &info.state_hash, &info.log_root),
        };
        let record = SnapshotRecord {
            meta: meta.clone(),
            events: info.events,
            state_hash: info.state_hash.to_string(),
            log_root: info.log_root.to_string(),
            file: info.path.clone(),
        };
        // Durable before openraft may purge the Raft log up to it.
        write_record(&self.shared.dir, &record).map_err(sm_err)?;
        let bytes = std::fs::read(&info.path).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        })?;
        inner.snapshot = Some(record);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

fn write_record(dir: &Path, record: &SnapshotRecord) -> io::Result<()> {
    let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
    crate::log_store::replace_file(dir, SNAPSHOT_META_FILE, &bytes)
}

/// The snapshot id names what the snapshot claims, so that the receiver
/// checks the file against it: `index-events-statehash-logroot`.
fn snapshot_id(index: u64, events: u64, state_hash: &Hash32, log_root: &Hash32) -> String {
    format!("{index}-{events}-{state_hash}-{log_root}")
}

fn parse_snapshot_id(id: &str) -> Option<(u64, Hash32, Hash32)> {
    let mut parts = id.split('-');
    let _index: u64 = parts.next()?.parse().ok()?;
    let events: u64 = parts.next()?.parse().ok()?;
    let state = Hash32::from_hex(parts.next()?)?;
    let root = Hash32::from_hex(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some((events, state, root))
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;
    use valori_core::Metric;
    use valori_core::event::{CollectionConfig, IndexParams};
    use valori_engine::stress::{DIM, batch, collection};

    use super::*;

    fn open_engine(dir: &Path) -> Arc<Engine> {
        Arc::new(Engine::open(dir.join("data")).expect("engine opens"))
    }

    /// What a refused snapshot must leave as it was.
    async fn footprint(
        sm: &mut StateMachine,
    ) -> (
        Option<LogId<NodeId>>,
        StoredMembership<NodeId, Member>,
        Option<LogId<NodeId>>,
        u64,
        Option<Hash32>,
        Option<Hash32>,
        bool,
    ) {
        let (applied, membership) = sm.applied_state().await.expect("applied state");
        let status = sm.shared.status().clone();
        (
            applied,
            membership,
            status.last_applied,
            status.events,
            status.state_hash,
            status.log_root,
            sm.has_snapshot(),
        )
    }

    /// The claims a snapshot's Raft id carries reach the engine's check of
    /// the file: a sound snapshot file announced under an id with another
    /// state hash, another log root or another event count, or under an id
    /// that names no claims, is refused, and the node's applied position,
    /// status and snapshot record stay as they were. The control: the same
    /// file under its true id is installed and the node reports its state.
    #[tokio::test]
    async fn a_snapshot_is_installed_only_under_the_claims_of_its_id() {
        let source_dir = tempfile::tempdir().expect("tempdir");
        let source = open_engine(source_dir.path());
        source
            .submit(Event::CreateCollection {
                name: collection(),
                config: CollectionConfig {
                    dim: DIM,
                    metric: Metric::L2,
                    index: IndexParams::default(),
                },
            })
            .expect("create");
        for b in 0..4 {
            source
                .submit(Event::InsertBatch {
                    collection: collection(),
                    batch: batch(b, 5),
                })
                .expect("insert");
        }
        let info = source.snapshot().expect("snapshot");
        let bytes = std::fs::read(&info.path).expect("read the snapshot file");

        let dir = tempfile::tempdir().expect("tempdir");
        let engine = open_engine(dir.path());
        let cluster_dir = dir.path().join("cluster");
        std::fs::create_dir_all(&cluster_dir).expect("cluster dir");
        let mut sm = StateMachine::open(Arc::clone(&engine), &cluster_dir, ApplyFault::default())
            .expect("state machine");
        let before = footprint(&mut sm).await;
        let empty = engine.proof().expect("proof");
        assert_ne!(empty.hashes.state, info.state_hash);
        let last_log_id = Some(LogId::new(CommittedLeaderId::new(3, 1), 9));
        let meta = |snapshot_id: String| SnapshotMeta {
            last_log_id,
            last_membership: StoredMembership::default(),
            snapshot_id,
        };
        // The engine's refusal quotes the announced claims; an id without
        // them is refused before the engine sees the file.
        let announced = "it was announced as";
        let refused = [
            (
                snapshot_id(9, info.events, &empty.hashes.state, &info.log_root),
                announced,
            ),
            (
                snapshot_id(9, info.events, &info.state_hash, &empty.log_root),
                announced,
            ),
            (
                snapshot_id(9, info.events + 1, &info.state_hash, &info.log_root),
                announced,
            ),
            (
                format!("9-{}", info.events),
                "does not name its events, state hash and log root",
            ),
        ];
        for (id, reason) in refused {
            let err = sm
                .install_snapshot(&meta(id.clone()), Box::new(Cursor::new(bytes.clone())))
                .await
                .expect_err("refused");
            let text = err.to_string();
            assert!(text.contains(reason), "{id}: {text}");
            assert_eq!(footprint(&mut sm).await, before, "{id}");
            assert_eq!(engine.proof().expect("proof"), empty, "{id}");
        }

        let id = snapshot_id(9, info.events, &info.state_hash, &info.log_root);
        sm.install_snapshot(&meta(id), Box::new(Cursor::new(bytes)))
            .await
            .expect("installed under its true id");
        let after = footprint(&mut sm).await;
        assert_eq!(after.0, last_log_id);
        assert_eq!(after.3, info.events);
        assert_eq!(after.4, Some(info.state_hash));
        assert_eq!(after.5, Some(info.log_root));
        assert!(after.6, "the snapshot record is written");
        assert_eq!(
            engine.proof().expect("proof"),
            source.proof().expect("proof")
        );
    }
}
