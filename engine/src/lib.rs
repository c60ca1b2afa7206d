//! The database engine: the only writer of the [`State`].
//!
//! - [`Engine`] owns the state, the open log segment and the log's Merkle
//!   tree. [`Engine::submit`] turns an event into a durable log frame and
//!   an applied change, sharing one fsync among all writers that arrive
//!   while the previous fsync runs (group commit).
//! - [`wal`] is the log format: segments of checksummed frames, each
//!   carrying its sequence number and the log's Merkle root after it.
//! - [`recovery`] opens a data directory: newest valid snapshot, replay of
//!   the log after it, torn-tail truncation, checkpoint check.
//! - [`storage`] is the seam to the disk; [`storage::sim`] models crashes
//!   and injects failures.
//! - [`verify`] recomputes everything from the files, read-only, for
//!   `valori verify`.
//!
//! A data directory holds `wal/` (segments), `snapshots/`, `checkpoint` and
//! `LOCK` (held by the engine that has the directory open).

pub mod error;
pub use fork::Fork;
pub mod fault;
mod fork;
pub mod huge_pages;
pub mod index;
mod recovery;
pub mod stats;
pub mod storage;
pub mod stress;
pub mod verify;
pub mod wal;

/// Entry points for the fuzz targets (crate `valori-fuzz-targets`) to
/// parts of the engine that are otherwise private. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::recovery::Checkpoint;

    /// Decodes checkpoint file bytes as recovery does; `None` for bytes
    /// recovery refuses (damaged or another version).
    pub fn decode_checkpoint(bytes: &[u8]) -> Option<Checkpoint> {
        crate::recovery::decode_checkpoint(bytes).ok()
    }

    /// The checkpoint file bytes of `checkpoint`.
    pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Vec<u8> {
        crate::recovery::encode_checkpoint(checkpoint)
    }
}

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

use valori_columnar::snapshot::{SnapshotMeta, write_snapshot_hashed};
use valori_core::event::{CollectionName, Event};
use valori_core::hash::Hash32;
use valori_core::merkle::{MerkleLog, leaf_hash};
use valori_core::state::{State, StateHashes};

pub use error::{EngineError, StorageOp};
pub use fault::Fault;
pub use recovery::RecoveryReport;
use storage::{FsStorage, LockGuard, Storage, StorageFile};
pub use valori_core::state::State as EngineState;

/// Tunables of an engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Size at which the log starts a new segment.
    pub wal_segment_bytes_max: u64,
    /// Threads that build the index for inserted batches (the graph is the
    /// same for any number).
    pub index_threads: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            wal_segment_bytes_max: wal::WAL_SEGMENT_BYTES_MAX,
            index_threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// Where a client's write goes when the engine is one replica of a
/// cluster: the replication layer takes the event through consensus and
/// returns once a majority has made it durable and this node has applied
/// it (or refuses it, naming the leader). Installed with
/// [`Core::set_write_gate`]; without one, [`Core::submit`] commits locally.
pub trait WriteGate: Send + Sync + std::fmt::Debug {
    fn submit(&self, event: Event) -> Result<Receipt, EngineError>;

    /// Resolves once this node's applied state includes every write the
    /// cluster acknowledged before the call: the barrier a linearizable
    /// read waits at (a read index confirmed by a majority, on the leader
    /// or asked of it by a follower). Without a cluster every read already
    /// sees every acknowledged write.
    fn read_barrier(&self) -> ReadBarrier {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// [`WriteGate::read_barrier`]'s future.
pub type ReadBarrier =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), EngineError>> + Send>>;

/// What a durable write returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Sequence number of the event in the log (0-based).
    pub seq: u64,
    /// Merkle root of the log up to and including this event.
    pub log_root: Hash32,
}

/// Everything a client needs to check the database's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateProof {
    /// Events in the log.
    pub log_size: u64,
    /// Merkle root over all events.
    pub log_root: Hash32,
    pub hashes: StateHashes,
}

/// Proof that event `seq` is in the log of `size` events with `root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    pub seq: u64,
    pub size: u64,
    pub leaf: Hash32,
    pub root: Hash32,
    pub path: Vec<Hash32>,
}

/// Proof that the log of `old_size` events is a prefix of the log of
/// `new_size` events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub old_root: Hash32,
    pub new_root: Hash32,
    pub path: Vec<Hash32>,
}

/// One logged event as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    /// Merkle root of the log up to and including this event.
    pub log_root: Hash32,
    /// The event's canonical encoding.
    pub event: Vec<u8>,
}

/// A snapshot written to the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub events: u64,
    pub path: PathBuf,
    pub bytes: u64,
    pub state_hash: Hash32,
    /// The combined index hash of the graphs in the file.
    pub index_hash: Hash32,
    pub log_root: Hash32,
}

/// The writer side: the open segment and the Merkle tree of the log.
#[derive(Debug)]
struct Writer {
    wal: wal::WalWriter,
    merkle: MerkleLog,
    frames: Vec<u8>,
}

#[derive(Debug)]
struct Pending {
    ticket: u64,
    event: Event,
}

#[derive(Debug, Default)]
struct Queue {
    pending: VecDeque<Pending>,
    committing: bool,
    next_ticket: u64,
    done: BTreeMap<u64, Result<Receipt, EngineError>>,
}

/// Signals between writers and the index builder.
#[derive(Debug, Default)]
struct IndexSignal {
    /// A commit appended rows since the builder last looked.
    pending: bool,
    stop: bool,
}

thread_local! {
    /// The engine (by address) whose serializing lock this thread holds
    /// in [`Engine::serialized`]; 0 for none.
    static SERIAL_HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A Valori database: the engine's shared state and its background index
/// builder, which is stopped and joined when the engine is dropped.
#[derive(Debug)]
pub struct Engine {
    core: Arc<Core>,
    builder: Option<std::thread::JoinHandle<()>>,
    /// The data directory's lock, released last (fields drop in order).
    _lock: Box<dyn LockGuard>,
}

impl std::ops::Deref for Engine {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

/// The shared state of an [`Engine`]; every operation of the database is a
/// method of it.
#[derive(Debug)]
pub struct Core {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    options: EngineOptions,
    state: RwLock<State>,
    writer: Mutex<Writer>,
    /// Where each durable event's frame is; changed with `writer` held.
    frame_index: Mutex<wal::FrameIndex>,
    queue: Mutex<Queue>,
    committed: Condvar,
    proof: RwLock<StateProof>,
    failed: OnceLock<EngineError>,
    recovery: RecoveryReport,
    planner: index::RayonPlanner,
    index_signal: Mutex<IndexSignal>,
    /// Wakes the builder (a commit appended rows, or stop).
    index_wake: Condvar,
    /// Wakes waiters of [`Engine::wait_for_index`] after each block.
    index_progress: Condvar,
    /// When the engine opened; `last_commit_micros` counts from it.
    opened: std::time::Instant,
    /// Serializes writes whose ids are chosen from the state, so that two of
    /// them never pick the same ids.
    auto_ids: Mutex<()>,
    /// Time to write and fsync each group of frames.
    log_write_latency: stats::Histogram,
    /// Microseconds after `opened` of the last commit, so that the index
    /// builder can give way to a stream of writes (scheduling only; it
    /// never affects what the graph contains).
    last_commit_micros: std::sync::atomic::AtomicU64,
    /// Set when the engine is a replica: client writes go through it.
    gate: OnceLock<Arc<dyn WriteGate>>,
    /// Set when the replication layer found this replica diverged: every
    /// read and write is refused with it from then on.
    fenced: OnceLock<EngineError>,
}

/// The index builder waits while commits arrive closer together than this.
const INDEX_YIELD_MICROS: u64 = 20_000;

/// Rows the index builder plans per read lock.
const PLAN_PIECE_ROWS: usize = 8;

/// Name of the checkpoint file in the data directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Folder of the log segments.
pub const WAL_DIR: &str = "wal";
/// Folder of the snapshots.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Lock file in the data directory: locked (flock) by the engine that has
/// the directory open, and holding its process id.
pub const LOCK_FILE: &str = "LOCK";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning means a thread panicked while holding the lock; the engine
    // state behind it is checked data, and the failure is reported through
    // `failed` where it matters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Opens (or creates) the database in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>) -> Result<Engine, EngineError> {
        Engine::open_with(Arc::new(FsStorage), dir.as_ref(), EngineOptions::default())
    }

    /// Opens (or creates) the database in `dir` on `storage`.
    pub fn open_with(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let planner = index::RayonPlanner::new(options.index_threads);
        recovery::create_dir_durably(storage.as_ref(), dir)?;
        // Before anything is read or written: two engines on one directory
        // would interleave frames and each believe its own state.
        let lock_path = dir.join(LOCK_FILE);
        let owner = format!("{}\n", std::process::id());
        let lock = match storage.lock_file(&lock_path, owner.as_bytes()) {
            Ok(lock) => lock,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let holder = storage
                    .read(&lock_path)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty());
                return Err(EngineError::Locked {
                    dir: dir.to_path_buf(),
                    lock_file: lock_path,
                    holder,
                });
            }
            Err(e) => return Err(EngineError::storage(StorageOp::Create, &lock_path, e)),
        };
        let recovered = recovery::recover(storage.as_ref(), dir, &options)?;
        let recovery::Recovered {
            mut state,
            merkle,
            wal,
            index: frame_index,
            report,
        } = recovered;
        let hashes = state.hashes();
        let proof = StateProof {
            log_size: merkle.len(),
            log_root: merkle.root(),
            hashes,
        };
        let core = Arc::new(Core {
            storage,
            dir: dir.to_path_buf(),
            options,
            state: RwLock::new(state),
            writer: Mutex::new(Writer {
                wal,
                merkle,
                frames: Vec::new(),
            }),
            frame_index: Mutex::new(frame_index),
            queue: Mutex::new(Queue::default()),
            committed: Condvar::new(),
            proof: RwLock::new(proof),
            failed: OnceLock::new(),
            recovery: report,
            planner,
            index_signal: Mutex::new(IndexSignal {
                pending: true,
                stop: false,
            }),
            index_wake: Condvar::new(),
            index_progress: Condvar::new(),
            opened: std::time::Instant::now(),
            last_commit_micros: std::sync::atomic::AtomicU64::new(0),
            auto_ids: Mutex::new(()),
            log_write_latency: stats::Histogram::default(),
            gate: OnceLock::new(),
            fenced: OnceLock::new(),
        });
        let builder_core = Arc::clone(&core);
        let builder = std::thread::Builder::new()
            .name("valori-index".to_owned())
            .spawn(move || builder_core.build_indexes_in_background())
            .map_err(|e| EngineError::storage(StorageOp::Create, dir, e))?;
        Ok(Engine {
            core,
            builder: Some(builder),
            _lock: lock,
        })
    }

    /// Blocks until every complete block of rows is in its collection's
    /// graph (or the engine failed). Searches are correct before that too;
    /// rows not yet in the graph are scanned exactly.
    pub fn wait_for_index(&self) -> Result<(), EngineError> {
        let mut signal = lock(&self.core.index_signal);
        loop {
            self.core.check_failed()?;
            if !read(&self.core.state).index_pending() {
                return Ok(());
            }
            let (s, _) = self
                .core
                .index_progress
                .wait_timeout(signal, std::time::Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner());
            signal = s;
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        lock(&self.core.index_signal).stop = true;
        self.core.index_wake.notify_all();
        if let Some(builder) = self.builder.take() {
            // A builder that panicked has nothing left to clean up.
            let _ = builder.join();
        }
    }
}

impl Core {
    /// The index builder's loop: plan the next complete block under a read
    /// lock (readers go on), link it under the write lock, publish the new
    /// index hash, repeat until nothing is pending; then sleep until a
    /// commit appends rows.
    fn build_indexes_in_background(&self) {
        loop {
            {
                let mut signal = lock(&self.index_signal);
                while !signal.pending && !signal.stop {
                    signal = self
                        .index_wake
                        .wait(signal)
                        .unwrap_or_else(|e| e.into_inner());
                }
                if signal.stop {
                    return;
                }
                signal.pending = false;
            }
            while self.failed.get().is_none() && !lock(&self.index_signal).stop {
                // Ingest first: while writes stream in, let them have the
                // cores and the lock; catch up when they pause.
                let since = (self.opened.elapsed().as_micros() as u64).saturating_sub(
                    self.last_commit_micros
                        .load(std::sync::atomic::Ordering::Relaxed),
                );
                if since < INDEX_YIELD_MICROS
                    && self
                        .last_commit_micros
                        .load(std::sync::atomic::Ordering::Relaxed)
                        > 0
                {
                    std::thread::sleep(std::time::Duration::from_micros(
                        INDEX_YIELD_MICROS - since,
                    ));
                    continue;
                }
                // Plan the next block in pieces, each under a short read
                // lock, so that commits get the write lock in between; the
                // graph does not change meanwhile (only this thread links).
                let Some((name, incarnation, start)) = ({
                    let state = read(&self.state);
                    state
                        .collections_pending_index()
                        .into_iter()
                        .next()
                        .and_then(|name| {
                            let c = state.collection(&name)?;
                            Some((name, c.incarnation(), c.indexed_rows()))
                        })
                }) else {
                    break;
                };
                let mut plans = Vec::with_capacity(valori_core::hnsw::BLOCK_ROWS);
                while plans.len() < valori_core::hnsw::BLOCK_ROWS {
                    let state = read(&self.state);
                    let piece = state
                        .collection(&name)
                        .filter(|c| c.incarnation() == incarnation && c.indexed_rows() == start)
                        .and_then(|c| {
                            c.plan_index_rows(plans.len(), PLAN_PIECE_ROWS, &self.planner)
                        });
                    match piece {
                        Some(p) => plans.extend(p),
                        None => break,
                    }
                }
                if plans.len() < valori_core::hnsw::BLOCK_ROWS {
                    continue;
                }
                {
                    let mut state = write(&self.state);
                    let mut linked = None;
                    if let Some(c) = state.collection_for_restore(&name) {
                        // Only the builder changes a graph, but the
                        // collection may have been dropped and created
                        // again meanwhile: link only onto the graph the
                        // plan was made for.
                        if c.incarnation() == incarnation && c.indexed_rows() == start {
                            c.link_index_block(plans);
                            linked = Some(c.index_hash());
                        }
                    }
                    if let Some(hash) = linked {
                        let mut proof = write(&self.proof);
                        if let Some(entry) =
                            proof.hashes.indexes.iter_mut().find(|(n, _)| *n == name)
                        {
                            entry.1 = hash;
                        }
                        proof.hashes.refresh_index();
                    }
                }
                self.index_progress.notify_all();
            }
            self.index_progress.notify_all();
        }
    }

    fn wake_index_builder(&self) {
        lock(&self.index_signal).pending = true;
        self.index_wake.notify_all();
    }

    /// What recovery found when the engine opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_failed(&self) -> Result<(), EngineError> {
        if let Some(e) = self.failed.get() {
            return Err(EngineError::Failed(Arc::new(e.clone())));
        }
        match self.fenced.get() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Stops this engine from serving anything more (reads, writes,
    /// proofs), answering `reason` instead: the replication layer calls it
    /// when this replica's state differs from the cluster's at the same log
    /// index. Nothing on disk changes; the first reason is kept.
    pub fn fence(&self, reason: EngineError) {
        let _ = self.fenced.set(reason);
    }

    /// Why the engine was fenced, if it was.
    pub fn fenced(&self) -> Option<&EngineError> {
        self.fenced.get()
    }

    /// Locks the writer, then checks the engine has not failed. The check
    /// must come after the lock: a caller that passed an earlier check can
    /// wait here while a commit fails, and would otherwise record or prove
    /// the Merkle leaves and state of writes whose clients were told they
    /// failed.
    fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>, EngineError> {
        self.check_failed()?;
        let writer = lock(&self.writer);
        self.check_failed()?;
        Ok(writer)
    }

    /// Routes every later client write ([`Core::submit`],
    /// [`Core::submit_with_next_id`]) through `gate`. Returns false (and
    /// changes nothing) if a gate is installed already.
    pub fn set_write_gate(&self, gate: Arc<dyn WriteGate>) -> bool {
        self.gate.set(gate).is_ok()
    }

    /// Resolves once a read on this engine would see every write
    /// acknowledged before the call ([`WriteGate::read_barrier`]); at once
    /// without a cluster.
    pub fn read_barrier(&self) -> ReadBarrier {
        match self.gate.get() {
            Some(gate) => gate.read_barrier(),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    /// Makes `event` durable and applies it. Returns once the event's frame
    /// is fsynced; a rejected event never reaches the log. Concurrent
    /// callers share fsyncs. On a replica the event goes through the
    /// installed [`WriteGate`] instead.
    pub fn submit(&self, event: Event) -> Result<Receipt, EngineError> {
        match self.gate.get() {
            Some(gate) => gate.submit(event),
            None => self.submit_local(event),
        }
    }

    /// Commits `event` on this node alone, bypassing any [`WriteGate`]:
    /// the replication layer applies committed entries through it.
    pub fn submit_local(&self, event: Event) -> Result<Receipt, EngineError> {
        self.submit_local_all(vec![event])
            .pop()
            .expect("invariant: one result per event")
    }

    /// Commits `events` on this node alone, in this order (they are queued
    /// together, so no other writer's event comes between them), sharing
    /// group commits; one result per event, in order. Bypasses any
    /// [`WriteGate`]: this is how replicated entries are applied.
    pub fn submit_local_all(&self, events: Vec<Event>) -> Vec<Result<Receipt, EngineError>> {
        if let Err(e) = self.check_failed() {
            return events.iter().map(|_| Err(e.clone())).collect();
        }
        let tickets: Vec<u64> = {
            let mut q = lock(&self.queue);
            events
                .into_iter()
                .map(|event| {
                    let ticket = q.next_ticket;
                    q.next_ticket += 1;
                    q.pending.push_back(Pending { ticket, event });
                    ticket
                })
                .collect()
        };
        tickets.into_iter().map(|t| self.wait_ticket(t)).collect()
    }

    /// Waits for `ticket`'s result, committing queued groups while no one
    /// else does.
    fn wait_ticket(&self, ticket: u64) -> Result<Receipt, EngineError> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(result) = q.done.remove(&ticket) {
                return result;
            }
            if !q.committing {
                q.committing = true;
                let group: Vec<Pending> = q.pending.drain(..).collect();
                drop(q);
                let tickets: Vec<u64> = group.iter().map(|p| p.ticket).collect();
                // A panic must not leave `committing` set (every writer
                // would wait forever): the engine is poisoned (by
                // `PoisonOnUnwind`, while the state is still locked) and
                // the group answered with the failure.
                let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.commit_group(group)
                }))
                .unwrap_or_else(|payload| {
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".to_owned());
                    let err = EngineError::CommitPanicked { message };
                    let _ = self.failed.set(err.clone());
                    // The panic may have come after the group's frames
                    // were written: cut them, as after a failed fsync.
                    lock(&self.writer).wal.cut_to_durable();
                    let err = EngineError::Failed(Arc::new(err));
                    tickets.into_iter().map(|t| (t, Err(err.clone()))).collect()
                });
                q = lock(&self.queue);
                q.done.extend(results);
                q.committing = false;
                self.committed.notify_all();
                continue;
            }
            q = self.committed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Applies and logs one group. The state's write lock is held until the
    /// group is durable, so no reader ever sees an event that a crash could
    /// take back.
    fn commit_group(&self, group: Vec<Pending>) -> Vec<(u64, Result<Receipt, EngineError>)> {
        let mut results = Vec::with_capacity(group.len());
        if let Err(e) = self.check_failed() {
            return group
                .into_iter()
                .map(|p| (p.ticket, Err(e.clone())))
                .collect();
        }
        let mut writer = lock(&self.writer);
        let mut state = write(&self.state);
        // Declared after the guards, so dropped before them: a panic from
        // here on poisons the engine before anyone can see the state.
        let _poison = PoisonOnUnwind(self);
        let Writer {
            wal,
            merkle,
            frames,
        } = &mut *writer;
        frames.clear();
        let first_seq = merkle.len();
        let mut accepted = Vec::new();
        // Every event but the last is applied as it is encoded, so that the
        // next one is checked against its effects. The last is only checked
        // here; it is applied (and the state re-hashed) on a second thread
        // while this one hashes its frame into the log and writes and
        // fsyncs the group: a single writer's batch costs about
        // max(apply, hash + fsync), not their sum.
        let last = group.len().saturating_sub(1);
        let mut deferred: Option<(u64, Event, usize)> = None;
        // Start of each sealed frame in `frames`, in sequence order.
        let mut starts: Vec<u64> = Vec::with_capacity(group.len());
        for (i, p) in group.into_iter().enumerate() {
            let start = wal::begin_frame(frames);
            p.event.encode_into(frames);
            let len = frames.len() - start - wal::FRAME_HEADER_BYTES;
            if len > valori_core::limits::EVENT_BYTES_MAX as usize {
                frames.truncate(start);
                let max = u64::from(valori_core::limits::EVENT_BYTES_MAX);
                results.push((
                    p.ticket,
                    Err(EngineError::EventTooLarge {
                        len: len as u64,
                        max,
                    }),
                ));
                continue;
            }
            let checked = if i == last {
                state.check(&p.event)
            } else {
                state.apply(&p.event).map(|_| ())
            };
            if let Err(e) = checked {
                frames.truncate(start);
                results.push((p.ticket, Err(EngineError::Rejected(e))));
                continue;
            }
            if i == last {
                deferred = Some((p.ticket, p.event, start));
            } else {
                starts.push(start as u64);
                accepted.push((p.ticket, seal_frame(merkle, frames, start, true)));
            }
        }
        if accepted.is_empty() && deferred.is_none() {
            return results;
        }
        let storage = self.storage.as_ref();
        let state_ref: &mut State = &mut state;
        let deferred = &deferred;
        // The apply runs on a thread of the shared pool (already running,
        // unlike a thread spawned per commit); a panic in it resumes here
        // when the scope ends.
        let mut hashes = None;
        let hashes_out = &mut hashes;
        let written = rayon::in_place_scope(|s| {
            s.spawn(move |_| {
                if let Some((_, event, _)) = deferred {
                    let applied = state_ref.apply_checked(event);
                    assert!(
                        applied.is_ok(),
                        "invariant: a checked event applies: {applied:?}"
                    );
                }
                *hashes_out = Some(state_ref.hashes());
            });
            // The state is applied and hashed meanwhile: the frame is
            // hashed on this thread rather than all cores.
            if let Some((ticket, _, start)) = deferred {
                starts.push(*start as u64);
                accepted.push((*ticket, seal_frame(merkle, frames, *start, false)));
            }
            let started = std::time::Instant::now();
            let written = wal.append_durable(storage, first_seq, frames);
            self.log_write_latency.observe(started.elapsed());
            written
        });
        let hashes = hashes.expect("invariant: the scope ran the apply");
        let (segment_first, at) = match written {
            Ok(place) => place,
            Err(e) => {
                // The state now holds events that may not be durable: stop,
                // and let a restart recover exactly what the disk kept.
                let _ = self.failed.set(e.clone());
                results.extend(accepted.into_iter().map(|(t, _)| (t, Err(e.clone()))));
                return results;
            }
        };
        lock(&self.frame_index).append(segment_first, at, &starts, frames.len() as u64);
        *write(&self.proof) = StateProof {
            log_size: merkle.len(),
            log_root: merkle.root(),
            hashes,
        };
        results.extend(accepted.into_iter().map(|(t, r)| (t, Ok(r))));
        self.last_commit_micros.store(
            self.opened.elapsed().as_micros().max(1) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if state.index_pending() {
            self.wake_index_builder();
        }
        results
    }

    /// The lock that serializes writes built from the state, unless this
    /// thread holds it already ([`Engine::serialized`]).
    fn serial(&self) -> Option<MutexGuard<'_, ()>> {
        let me = self as *const Core as usize;
        (SERIAL_HELD.get() != me).then(|| lock(&self.auto_ids))
    }

    /// Runs `f` holding the lock that serializes writes built from the
    /// state ([`Engine::submit_built`] and the like): no such write of
    /// another thread comes between what `f` reads and what it submits.
    /// Those calls made by `f` itself on this thread do not wait for the
    /// lock.
    pub fn serialized<R>(&self, f: impl FnOnce() -> R) -> R {
        let me = self as *const Core as usize;
        if SERIAL_HELD.get() == me {
            return f();
        }
        let _serial = lock(&self.auto_ids);
        struct Release;
        impl Drop for Release {
            fn drop(&mut self) {
                SERIAL_HELD.set(0);
            }
        }
        SERIAL_HELD.set(me);
        let _release = Release;
        f()
    }

    /// Submits an event whose record ids the engine chooses: `build` gets
    /// the first free id of `collection` — one more than the largest id it
    /// holds, 0 when it holds none — and returns the event to submit. Such
    /// writes are serialized, so concurrent ones never collide; the ids
    /// depend only on the state, so replaying the log chooses nothing.
    pub fn submit_with_next_id(
        &self,
        collection: &CollectionName,
        build: impl FnOnce(u64) -> Event,
    ) -> Result<Receipt, EngineError> {
        let _serial = self.serial();
        let first = self.read(|state| {
            state.collection(collection).map(|c| {
                c.ids()
                    .iter()
                    .map(|id| id.0)
                    .max()
                    .map_or(0, |max| max.saturating_add(1))
            })
        })?;
        // An unknown collection is reported by the submit itself.
        self.submit(build(first.unwrap_or(0)))
    }

    /// Submits the event `build` makes from the current state, serialized
    /// with [`Engine::submit_with_next_id`] and other such writes, so that
    /// the ids and sequence values it hands out never collide with
    /// another's. `build` returning `None` submits nothing.
    pub fn submit_built(
        &self,
        build: impl FnOnce(&State) -> Option<Event>,
    ) -> Result<Option<Receipt>, EngineError> {
        let _serial = self.serial();
        match self.read(build)? {
            Some(event) => self.submit(event).map(Some),
            None => Ok(None),
        }
    }

    /// [`Engine::submit_built`] of several events: `build` makes them from
    /// the current state and they are submitted in order, each after the
    /// one before it was applied, stopping at the first that fails. The
    /// receipts of those submitted, in order.
    pub fn submit_built_all(
        &self,
        build: impl FnOnce(&State) -> Vec<Event>,
    ) -> Result<Vec<Receipt>, EngineError> {
        let _serial = self.serial();
        self.read(build)?
            .into_iter()
            .map(|event| self.submit(event))
            .collect()
    }

    /// Latency of the log's group writes, each a write and an fsync.
    pub fn log_write_latency(&self) -> &stats::Histogram {
        &self.log_write_latency
    }

    /// Runs `f` on the current durable state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> Result<R, EngineError> {
        self.check_failed()?;
        let state = read(&self.state);
        self.check_failed()?;
        Ok(f(&state))
    }

    /// The state hash, its parts, and the log's size and root. Maintained
    /// at every commit, so this is a copy, not a computation.
    pub fn proof(&self) -> Result<StateProof, EngineError> {
        self.check_failed()?;
        let proof = read(&self.proof).clone();
        // The index builder may have published a hash of rows a failed
        // commit applied: checked again after the copy.
        self.check_failed()?;
        Ok(proof)
    }

    /// Events in the log.
    pub fn log_size(&self) -> u64 {
        read(&self.proof).log_size
    }

    /// Inclusion proof of event `seq` in the log of `size` events (the
    /// current size if `None`).
    pub fn inclusion_proof(
        &self,
        seq: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof, EngineError> {
        let writer = self.lock_writer()?;
        let size = size.unwrap_or(writer.merkle.len());
        let out_of_range = || EngineError::OutOfRange {
            what: format!("event {seq} in a log of {size}"),
            size: writer.merkle.len(),
        };
        let path = writer
            .merkle
            .inclusion_proof(seq, size)
            .ok_or_else(out_of_range)?;
        let leaf = writer.merkle.leaf(seq).ok_or_else(out_of_range)?;
        let root = writer.merkle.root_at(size).ok_or_else(out_of_range)?;
        Ok(InclusionProof {
            seq,
            size,
            leaf,
            root,
            path,
        })
    }

    /// Consistency proof between the log at `old_size` and at `new_size`.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, EngineError> {
        let writer = self.lock_writer()?;
        let out_of_range = || EngineError::OutOfRange {
            what: format!("sizes {old_size}..{new_size}"),
            size: writer.merkle.len(),
        };
        let path = writer
            .merkle
            .consistency_proof(old_size, new_size)
            .ok_or_else(out_of_range)?;
        let old_root = writer.merkle.root_at(old_size).ok_or_else(out_of_range)?;
        let new_root = writer.merkle.root_at(new_size).ok_or_else(out_of_range)?;
        Ok(ConsistencyProof {
            old_size,
            new_size,
            old_root,
            new_root,
            path,
        })
    }

    /// With the writer held, so that no commit adds rows, waits until the
    /// background builder has linked every complete block (each under its
    /// own short write lock, as always), so that a snapshot or checkpoint
    /// then finds its graphs complete and holds the state's write lock only
    /// briefly: reads go on while a large graph is finished, where they
    /// would wait for all of it if the caller built it under its own write
    /// lock. Returns early if the engine failed or is closing; the caller
    /// builds whatever is left.
    fn wait_for_builder(&self, _writer: &MutexGuard<'_, Writer>) {
        self.wake_index_builder();
        let mut signal = lock(&self.index_signal);
        while !signal.stop && self.failed.get().is_none() && read(&self.state).index_pending() {
            let (s, _) = self
                .index_progress
                .wait_timeout(signal, std::time::Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner());
            signal = s;
        }
    }

    /// Writes a snapshot of the current state into `snapshots/` (temp file,
    /// fsync, rename, directory fsync), then records a checkpoint. Every
    /// complete block is built into its graph first, so the same log gives
    /// the same file. Writes wait while it runs; reads wait only while the
    /// file is written, not while the graphs are finished.
    pub fn snapshot(&self) -> Result<SnapshotInfo, EngineError> {
        let writer = self.lock_writer()?;
        self.wait_for_builder(&writer);
        let (state, hashes) = {
            let mut state = write(&self.state);
            // Bring every graph up to its last complete block first (the
            // builder has done it unless it stopped): the file then depends
            // on the log alone, not on how far the background builder had
            // got.
            if state.build_indexes(&self.planner) > 0 {
                let hashes = state.hashes();
                write(&self.proof).hashes = hashes;
            }
            let hashes = state.hashes();
            drop(state);
            // Nothing changes the state between the two guards: every
            // other change holds the writer, and the builder has no
            // complete block left to link. Readers go on while the file is
            // written.
            (read(&self.state), hashes)
        };
        let events = writer.merkle.len();
        let log_root = writer.merkle.root();
        let state_hash = hashes.state;
        let index_hash = hashes.index;
        let meta = SnapshotMeta {
            events,
            state_hash,
            index_hash,
            log_root,
            log_leaves: writer.merkle.leaves().to_vec(),
        };
        let dir = self.dir.join(SNAPSHOT_DIR);
        let name = recovery::snapshot_name(events);
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.tmp"));
        let bytes = {
            let file = self
                .storage
                .create(&tmp)
                .map_err(|e| EngineError::storage(StorageOp::Create, &tmp, e))?;
            let mut out = CountingWriter {
                file,
                written: 0,
                buf: Vec::with_capacity(1 << 20),
            };
            let result = write_snapshot_hashed(&state, &hashes, &meta, &mut out)
                .and_then(|()| out.flush_buf());
            result.map_err(|e| EngineError::storage(StorageOp::Write, &tmp, e))?;
            out.file
                .sync()
                .map_err(|e| EngineError::storage(StorageOp::Sync, &tmp, e))?;
            out.written
        };
        self.storage
            .rename(&tmp, &path)
            .map_err(|e| EngineError::storage(StorageOp::Rename, &tmp, e))?;
        self.storage
            .sync_dir(&dir)
            .map_err(|e| EngineError::storage(StorageOp::SyncDir, &dir, e))?;
        recovery::write_checkpoint(
            self.storage.as_ref(),
            &self.dir,
            &recovery::Checkpoint {
                events,
                state_hash,
                index_hash,
                log_root,
            },
        )?;
        Ok(SnapshotInfo {
            events,
            path,
            bytes,
            state_hash,
            index_hash,
            log_root,
        })
    }

    /// Replaces this engine's state and log with the snapshot file `bytes`
    /// (as [`Core::snapshot`] writes them), after checking them: the
    /// file's trailer, the state it rebuilds against its recorded state
    /// and index hashes, and its log leaves against its recorded log root.
    /// `claimed` (state hash, log root, events), when given, must match
    /// what the file records: a replica installs only the state it was
    /// told to expect. The file is made durable in `snapshots/` before
    /// anything changes; the log continues in a new segment at the
    /// snapshot's event count, and the old segments (every event of which
    /// the snapshot covers) are removed. A snapshot at or behind the log's
    /// end is refused unless it is this log's own prefix, which changes
    /// nothing.
    pub fn install_snapshot(
        &self,
        bytes: &[u8],
        claimed: Option<(Hash32, Hash32, u64)>,
    ) -> Result<SnapshotInfo, EngineError> {
        let staged = PathBuf::from("(received snapshot)");
        let (new_state, meta) =
            valori_columnar::snapshot::read_snapshot(bytes).map_err(|e| EngineError::Snapshot {
                path: staged.clone(),
                source: Arc::new(e),
            })?;
        let merkle = MerkleLog::from_leaves(meta.log_leaves.clone());
        if merkle.len() != meta.events || merkle.root() != meta.log_root {
            return Err(EngineError::SnapshotRootMismatch {
                path: staged,
                recorded: meta.log_root,
                computed: merkle.root(),
            });
        }
        if let Some((state_hash, log_root, events)) = claimed
            && (state_hash != meta.state_hash || log_root != meta.log_root || events != meta.events)
        {
            return Err(EngineError::SnapshotMismatch {
                path: staged,
                reason: format!(
                    "it was announced as {events} events, state hash {state_hash}, log root {log_root}; it records {} events, state hash {}, log root {}",
                    meta.events, meta.state_hash, meta.log_root
                ),
            });
        }
        let mut writer = self.lock_writer()?;
        let info = |path: PathBuf| SnapshotInfo {
            events: meta.events,
            path,
            bytes: bytes.len() as u64,
            state_hash: meta.state_hash,
            index_hash: meta.index_hash,
            log_root: meta.log_root,
        };
        if meta.events <= writer.merkle.len() {
            if writer.merkle.root_at(meta.events) == Some(meta.log_root) {
                return Ok(info(PathBuf::new()));
            }
            return Err(EngineError::SnapshotMismatch {
                path: staged,
                reason: format!(
                    "it records log root {} at {} events; this log holds {} events with another root there",
                    meta.log_root,
                    meta.events,
                    writer.merkle.len()
                ),
            });
        }
        let dir = self.dir.join(SNAPSHOT_DIR);
        let name = recovery::snapshot_name(meta.events);
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.tmp"));
        {
            let mut file = self
                .storage
                .create(&tmp)
                .map_err(|e| EngineError::storage(StorageOp::Create, &tmp, e))?;
            file.write_all(bytes)
                .map_err(|e| EngineError::storage(StorageOp::Write, &tmp, e))?;
            file.sync()
                .map_err(|e| EngineError::storage(StorageOp::Sync, &tmp, e))?;
        }
        self.storage
            .rename(&tmp, &path)
            .map_err(|e| EngineError::storage(StorageOp::Rename, &tmp, e))?;
        self.storage
            .sync_dir(&dir)
            .map_err(|e| EngineError::storage(StorageOp::SyncDir, &dir, e))?;
        // From here the snapshot is durable: a crash recovers it (newer
        // than the log's end, recovery starts a segment after it).
        let wal_dir = self.dir.join(WAL_DIR);
        let old = recovery::list_segments(self.storage.as_ref(), &wal_dir)?;
        let wal = wal::WalWriter::create(
            self.storage.as_ref(),
            &wal_dir,
            meta.events,
            self.options.wal_segment_bytes_max,
        )?;
        let mut state = write(&self.state);
        let mut index = wal::FrameIndex::default();
        index.add_segment(meta.events, Vec::new(), wal.segment_len());
        *state = new_state;
        writer.wal = wal;
        writer.merkle = merkle;
        *lock(&self.frame_index) = index;
        *write(&self.proof) = StateProof {
            log_size: writer.merkle.len(),
            log_root: writer.merkle.root(),
            hashes: state.hashes(),
        };
        for (_, segment) in old {
            self.storage
                .remove(&segment)
                .map_err(|e| EngineError::storage(StorageOp::Remove, &segment, e))?;
        }
        self.storage
            .sync_dir(&wal_dir)
            .map_err(|e| EngineError::storage(StorageOp::SyncDir, &wal_dir, e))?;
        recovery::write_checkpoint(
            self.storage.as_ref(),
            &self.dir,
            &recovery::Checkpoint {
                events: meta.events,
                state_hash: meta.state_hash,
                index_hash: meta.index_hash,
                log_root: meta.log_root,
            },
        )?;
        if state.index_pending() {
            self.wake_index_builder();
        }
        Ok(info(path))
    }

    /// Up to `max` logged events from `from` on, as stored: sequence number,
    /// recorded log root and canonical event bytes. This is how a follower
    /// streams the log from any position, and how a client fetches an event
    /// to check it against an inclusion proof. Events in retired segments
    /// are out of range.
    pub fn read_log(&self, from: u64, max: usize) -> Result<Vec<LogEntry>, EngineError> {
        self.read_log_bounded(from, max, u64::MAX)
    }

    /// [`Core::read_log`], ending once the frames read hold `bytes_max`
    /// bytes or more (at least one run of frames is read when there is
    /// one), so that a page of large events stays bounded in memory by
    /// `bytes_max` plus one segment.
    pub fn read_log_bounded(
        &self,
        from: u64,
        max: usize,
        bytes_max: u64,
    ) -> Result<Vec<LogEntry>, EngineError> {
        self.check_failed()?;
        let mut bytes_read = 0u64;
        let size = self.log_size();
        let wal_dir = self.dir.join(WAL_DIR);
        let out_of_range = || EngineError::OutOfRange {
            what: format!("event {from}"),
            size,
        };
        let mut out = Vec::new();
        let mut next = from;
        // Each run is the frames one segment holds, found in the frame
        // index: one read of exactly those bytes, each frame checked.
        while out.len() < max && next < size && bytes_read < bytes_max {
            let want = (max - out.len()) as u64;
            let run = lock(&self.frame_index).run(next, size.min(next.saturating_add(want)));
            let Some(run) = run else {
                if next == from {
                    return Err(out_of_range());
                }
                break;
            };
            let path = wal_dir.join(wal::segment_name(run.segment_first));
            let bytes = self
                .storage
                .read_range(&path, run.offset, run.len)
                .map_err(|e| EngineError::storage(StorageOp::Read, &path, e))?;
            bytes_read = bytes_read.saturating_add(bytes.len() as u64);
            let mut pos = 0usize;
            for seq in run.first_seq..run.first_seq + run.frames {
                let frame = wal::parse_frame_at(&bytes, pos, seq).map_err(|source| {
                    EngineError::CorruptLog {
                        segment: path.clone(),
                        source: source.at_offset(run.offset),
                    }
                })?;
                pos += frame.encoded_len() as usize;
                out.push(LogEntry {
                    seq,
                    log_root: frame.root,
                    event: frame.payload.to_vec(),
                });
            }
            next = run.first_seq + run.frames;
        }
        Ok(out)
    }

    /// Snapshots in the data directory, oldest first, as `(events, path)`.
    pub fn snapshots(&self) -> Result<Vec<(u64, PathBuf)>, EngineError> {
        recovery::list_snapshots(self.storage.as_ref(), &self.dir)
    }

    /// Removes log segments whose every event is covered by the newest
    /// snapshot. Returns the removed segment paths.
    pub fn retire_log(&self) -> Result<Vec<PathBuf>, EngineError> {
        self.check_failed()?;
        let Some((named, snapshot)) = self.snapshots()?.pop() else {
            return Ok(Vec::new());
        };
        // The name is only a name: the segments go only if the snapshot
        // reads back intact (trailer, state hash) and records the same
        // event count and the log's own root at that count, so that the
        // events removed from the log are in it.
        let bytes = self
            .storage
            .read(&snapshot)
            .map_err(|e| EngineError::storage(StorageOp::Read, &snapshot, e))?;
        let (_, meta) = valori_columnar::snapshot::read_snapshot(&bytes).map_err(|e| {
            EngineError::Snapshot {
                path: snapshot.clone(),
                source: Arc::new(e),
            }
        })?;
        let mismatch = |reason: String| EngineError::SnapshotMismatch {
            path: snapshot.clone(),
            reason,
        };
        // Read and checked above without the lock (a snapshot can be
        // large); compared with the log under it.
        let writer = self.lock_writer()?;
        if meta.events != named {
            return Err(mismatch(format!(
                "its name says {named} events, it records {}",
                meta.events
            )));
        }
        match writer.merkle.root_at(meta.events) {
            Some(root) if root == meta.log_root => {}
            Some(root) => {
                return Err(mismatch(format!(
                    "it records log root {} at {} events, the log's root there is {root}",
                    meta.log_root, meta.events
                )));
            }
            None => {
                return Err(mismatch(format!(
                    "it records {} events, the log holds {}",
                    meta.events,
                    writer.merkle.len()
                )));
            }
        }
        // The snapshot's name may not be durable yet (a snapshot whose
        // directory fsync failed is still listed): make it durable before
        // removing the only other copy of its events.
        let snap_dir = self.dir.join(SNAPSHOT_DIR);
        self.storage
            .sync_dir(&snap_dir)
            .map_err(|e| EngineError::storage(StorageOp::SyncDir, &snap_dir, e))?;
        let covered = meta.events;
        let wal_dir = self.dir.join(WAL_DIR);
        let segments = recovery::list_segments(self.storage.as_ref(), &wal_dir)?;
        let mut removed = Vec::new();
        for pair in segments.windows(2) {
            let (first, path) = &pair[0];
            let next_first = pair[1].0;
            // Every event of this segment is below next_first; the open
            // segment is never the first of a pair.
            if next_first <= covered && *first != writer.wal.segment_first() {
                self.storage
                    .remove(path)
                    .map_err(|e| EngineError::storage(StorageOp::Remove, path, e))?;
                lock(&self.frame_index).remove_segment(*first);
                removed.push(path.clone());
            }
        }
        if !removed.is_empty() {
            self.storage
                .sync_dir(&wal_dir)
                .map_err(|e| EngineError::storage(StorageOp::SyncDir, &wal_dir, e))?;
        }
        Ok(removed)
    }

    /// Records a checkpoint (event count, state hash, index hash, log
    /// root) so that the next recovery can check it reached exactly this
    /// state. Every complete block is built into its graph first, as for a
    /// snapshot, so that the recorded index hash depends on the log alone.
    /// Call before a clean shutdown.
    pub fn checkpoint(&self) -> Result<(), EngineError> {
        let writer = self.lock_writer()?;
        self.wait_for_builder(&writer);
        let mut state = write(&self.state);
        state.build_indexes(&self.planner);
        let hashes = state.hashes();
        let mut proof = write(&self.proof);
        proof.hashes = hashes;
        debug_assert_eq!(proof.log_size, writer.merkle.len());
        recovery::write_checkpoint(
            self.storage.as_ref(),
            &self.dir,
            &recovery::Checkpoint {
                events: proof.log_size,
                state_hash: proof.hashes.state,
                index_hash: proof.hashes.index,
                log_root: proof.log_root,
            },
        )
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }
}

/// Poisons the engine if dropped during a panic: the commit that panicked
/// may have applied events that are not durable.
struct PoisonOnUnwind<'a>(&'a Core);

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.failed.set(EngineError::CommitPanicked {
                message: "a panic unwound through the commit of a group of writes".to_owned(),
            });
        }
    }
}

/// Payloads from this size on are hashed on all cores.
const PARALLEL_LEAF_BYTES_MIN: usize = 512 * 1024;

/// [`leaf_hash`] of an event's bytes; large batches are hashed on all cores
/// (BLAKE3's tree makes the result independent of how it is split).
/// Hashes the frame begun at `start` (the last in `frames`) into the log
/// and fills in its header. `alone`: nothing else runs meanwhile, so a
/// large payload is hashed on all cores; otherwise on this thread.
fn seal_frame(merkle: &mut MerkleLog, frames: &mut [u8], start: usize, alone: bool) -> Receipt {
    let seq = merkle.len();
    let payload = wal::frame_payload(frames, start);
    merkle.push_leaf(if alone {
        frame_leaf_hash(payload)
    } else {
        leaf_hash(payload)
    });
    let root = merkle.root();
    wal::finish_frame(frames, start, seq, &root);
    Receipt {
        seq,
        log_root: root,
    }
}

fn frame_leaf_hash(payload: &[u8]) -> Hash32 {
    if payload.len() < PARALLEL_LEAF_BYTES_MIN {
        return leaf_hash(payload);
    }
    let mut h = blake3::Hasher::new();
    h.update(&[valori_core::merkle::LEAF_PREFIX]);
    h.update_rayon(payload);
    h.finalize().into()
}

/// Buffers writes to a [`StorageFile`] and counts bytes.
struct CountingWriter {
    file: Box<dyn StorageFile>,
    written: u64,
    buf: Vec<u8>,
}

impl CountingWriter {
    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Write for CountingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.written += data.len() as u64;
        if self.buf.len() + data.len() > self.buf.capacity() {
            self.flush_buf()?;
        }
        if data.len() >= self.buf.capacity() {
            self.file.write_all(data)?;
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parallel leaf hash equals the core's definition at sizes around
    /// the threshold and far above it.
    #[test]
    fn parallel_leaf_hash_matches_core() {
        for len in [
            0,
            1,
            PARALLEL_LEAF_BYTES_MIN - 1,
            PARALLEL_LEAF_BYTES_MIN,
            3 * PARALLEL_LEAF_BYTES_MIN + 7,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            assert_eq!(frame_leaf_hash(&payload), leaf_hash(&payload), "len {len}");
        }
    }
}
