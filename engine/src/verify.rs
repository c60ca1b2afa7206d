//! Offline verification of a data directory, read-only: every frame's
//! checksum and recorded log root, a full replay of the log, every
//! snapshot's trailer, state hash, index hash and log leaves against the
//! replay, the checkpoint, and inclusion and consistency proofs checked
//! against the recomputed roots. Each finding says exactly what differs.
//!
//! The replay builds every complete block of rows into its graph at each
//! snapshot and at the checkpoint, as the engine does before recording
//! them, so the recorded index hashes are compared with graphs built from
//! the log, not with the graphs stored in the files.

use std::fmt;
use std::path::{Path, PathBuf};

use valori_columnar::snapshot::{SnapshotMeta, read_snapshot};
use valori_core::event::Event;
use valori_core::hash::Hash32;
use valori_core::merkle::{MerkleLog, leaf_hash, verify_consistency, verify_inclusion};
use valori_core::state::State;

use crate::recovery::{list_segments, list_snapshots, read_checkpoint};
use crate::storage::Storage;
use crate::{WAL_DIR, wal};

/// One result line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            if self.ok { "ok      " } else { "MISMATCH" },
            self.message
        )
    }
}

/// Everything verification found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub findings: Vec<Finding>,
    /// Events replayed and checked.
    pub events: u64,
    pub state_hash: Option<Hash32>,
    pub log_root: Option<Hash32>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }

    fn ok(&mut self, message: String) {
        self.findings.push(Finding { ok: true, message });
    }

    fn bad(&mut self, message: String) {
        self.findings.push(Finding { ok: false, message });
    }
}

/// Most inclusion proofs checked; beyond it, an even sample.
const INCLUSION_CHECKS_MAX: u64 = 100_000;

struct SnapshotCheck {
    path: PathBuf,
    meta: SnapshotMeta,
    state: State,
}

/// What verification does besides the log, snapshot and proof checks.
#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions {
    /// Rebuild every collection's graph from the replay, compare the index
    /// hashes recorded by snapshots and the checkpoint with it, and report
    /// it (the most expensive step). Without it, recorded index hashes are
    /// checked only against the graphs stored in the snapshots.
    pub indexes: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions { indexes: true }
    }
}

/// Verifies the data directory `dir` with every check.
pub fn verify_dir(storage: &dyn Storage, dir: &Path) -> VerifyReport {
    verify_dir_with(storage, dir, VerifyOptions::default())
}

/// Verifies the data directory `dir`.
pub fn verify_dir_with(storage: &dyn Storage, dir: &Path, options: VerifyOptions) -> VerifyReport {
    let mut report = VerifyReport::default();
    let planner = crate::index::RayonPlanner::new(
        std::thread::available_parallelism().map_or(1, usize::from),
    );
    let checkpoint = match read_checkpoint(storage, dir) {
        Ok(c) => c,
        Err(e) => {
            report.bad(format!("checkpoint: {e}"));
            None
        }
    };

    // Snapshots: each must read back intact (trailer, structure, recorded
    // state hash) and its leaves must give its recorded log root.
    let mut snapshots = Vec::new();
    match list_snapshots(storage, dir) {
        Ok(list) => {
            for (_, path) in list {
                let loaded = storage
                    .read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| read_snapshot(&bytes).map_err(|e| e.to_string()));
                match loaded {
                    Ok((state, meta)) => {
                        let root = MerkleLog::from_leaves(meta.log_leaves.clone()).root();
                        if root != meta.log_root {
                            report.bad(format!(
                                "snapshot {}: records log root {}, its {} leaves give {root}",
                                path.display(),
                                meta.log_root,
                                meta.log_leaves.len()
                            ));
                        } else {
                            report.ok(format!(
                                "snapshot {}: {} events, state hash {} and index hash {} (recomputed), log root {}",
                                path.display(),
                                meta.events,
                                meta.state_hash,
                                meta.index_hash,
                                meta.log_root
                            ));
                        }
                        snapshots.push(SnapshotCheck { path, meta, state });
                    }
                    Err(e) => report.bad(format!("snapshot {}: {e}", path.display())),
                }
            }
        }
        Err(e) => report.bad(format!("snapshots: {e}")),
    }

    let wal_dir = dir.join(WAL_DIR);
    let segments = match list_segments(storage, &wal_dir) {
        Ok(s) => s,
        Err(e) => {
            report.bad(format!("log: {e}"));
            return report;
        }
    };
    // Replay starts from the empty state if the log starts at event 0,
    // otherwise from the oldest snapshot that reaches the log's start.
    let log_start = segments.first().map_or(0, |s| s.0);
    let (mut state, mut merkle) = if log_start == 0 {
        (State::new(), MerkleLog::new())
    } else {
        match snapshots.iter().find(|s| s.meta.events >= log_start) {
            Some(s) => {
                report.ok(format!(
                    "log starts at event {log_start} (older segments retired); replay starts from {}",
                    s.path.display()
                ));
                (
                    s.state.clone(),
                    MerkleLog::from_leaves(s.meta.log_leaves.clone()),
                )
            }
            None => {
                report.bad(format!(
                    "log starts at event {log_start} and no snapshot covers the events before it"
                ));
                return report;
            }
        }
    };

    // The index hash of the replay with every complete block built, as
    // the engine builds them before a snapshot or a checkpoint; `None`
    // when index checks are off.
    let replayed_index = |state: &mut State| {
        options.indexes.then(|| {
            state.build_indexes(&planner);
            state.index_hash()
        })
    };
    let compare_at = |state: &mut State, merkle: &MerkleLog, report: &mut VerifyReport| {
        for s in snapshots.iter().filter(|s| s.meta.events == merkle.len()) {
            let replayed = state.state_hash();
            let index = replayed_index(state);
            let mut differs = Vec::new();
            if replayed != s.meta.state_hash {
                differs.push(format!(
                    "state hash: replay {replayed}, snapshot {}",
                    s.meta.state_hash
                ));
            }
            if let Some(index) = index.filter(|i| *i != s.meta.index_hash) {
                differs.push(format!(
                    "index hash: replay {index}, snapshot {}",
                    s.meta.index_hash
                ));
            }
            if merkle.leaves() != &s.meta.log_leaves[..] {
                differs.push(format!(
                    "log root: replay {}, snapshot {}",
                    merkle.root(),
                    s.meta.log_root
                ));
            }
            if differs.is_empty() {
                report.ok(format!(
                    "replay at event {} matches snapshot {}{}",
                    merkle.len(),
                    s.path.display(),
                    if index.is_some() {
                        " (state, index and log)"
                    } else {
                        " (state and log; index hash not rebuilt)"
                    }
                ));
            } else {
                report.bad(format!(
                    "replay at event {} differs from snapshot {}: {}",
                    merkle.len(),
                    s.path.display(),
                    differs.join("; ")
                ));
            }
        }
        if let Some(c) = checkpoint.filter(|c| c.events == merkle.len()) {
            let replayed = state.state_hash();
            let index = replayed_index(state);
            let mut differs = Vec::new();
            if replayed != c.state_hash {
                differs.push(format!(
                    "state hash: replay {replayed}, checkpoint {}",
                    c.state_hash
                ));
            }
            if let Some(index) = index.filter(|i| *i != c.index_hash) {
                differs.push(format!(
                    "index hash: replay {index}, checkpoint {}",
                    c.index_hash
                ));
            }
            if merkle.root() != c.log_root {
                differs.push(format!(
                    "log root: replay {}, checkpoint {}",
                    merkle.root(),
                    c.log_root
                ));
            }
            if differs.is_empty() {
                report.ok(format!(
                    "replay at event {} matches the checkpoint",
                    c.events
                ));
            } else {
                report.bad(format!(
                    "checkpoint at event {} differs from the replay: {}",
                    c.events,
                    differs.join("; ")
                ));
            }
        }
    };
    compare_at(&mut state, &merkle, &mut report);

    'segments: for (i, (name_seq, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let bytes = match storage.read(path) {
            Ok(b) => b,
            Err(e) => {
                report.bad(format!("{}: cannot read: {e}", path.display()));
                break;
            }
        };
        let scan = match wal::scan_segment(&bytes, *name_seq, is_last) {
            Ok(scan) => scan,
            Err(e) => {
                report.bad(format!("{}: {e}", path.display()));
                break;
            }
        };
        if scan.first_seq > merkle.len() {
            report.bad(format!(
                "{}: starts at event {}, expected {}",
                path.display(),
                scan.first_seq,
                merkle.len()
            ));
            break;
        }
        for frame in &scan.frames {
            let leaf = leaf_hash(frame.payload);
            if frame.seq < merkle.len() {
                if merkle.leaf(frame.seq) != Some(leaf)
                    || merkle.root_at(frame.seq + 1) != Some(frame.root)
                {
                    report.bad(format!(
                        "{} offset {}: event {} differs from the snapshot's record of it",
                        path.display(),
                        frame.offset,
                        frame.seq
                    ));
                    break 'segments;
                }
                continue;
            }
            let event = match Event::decode(frame.payload) {
                Ok(e) => e,
                Err(e) => {
                    report.bad(format!(
                        "{} offset {}: event {}: {e}",
                        path.display(),
                        frame.offset,
                        frame.seq
                    ));
                    break 'segments;
                }
            };
            if let Err(e) = state.apply(&event) {
                report.bad(format!(
                    "{} offset {}: event {} is rejected on replay: {e}",
                    path.display(),
                    frame.offset,
                    frame.seq
                ));
                break 'segments;
            }
            merkle.push_leaf(leaf);
            if merkle.root() != frame.root {
                report.bad(format!(
                    "{} offset {}: event {} records log root {}, recomputed {}",
                    path.display(),
                    frame.offset,
                    frame.seq,
                    frame.root,
                    merkle.root()
                ));
                break 'segments;
            }
            compare_at(&mut state, &merkle, &mut report);
        }
        match scan.torn_at {
            Some(at) if scan.tail_damage == Some(wal::TailDamage::Corrupt) => report.bad(format!(
                "{}: {} frames, then a complete frame at offset {at} ({} bytes to the end) that fails its checksum: damaged durable bytes, or a crash that extended the file before its data (recovery truncates it; a checkpoint beyond it makes recovery fail)",
                path.display(),
                scan.frames.len(),
                bytes.len() as u64 - at
            )),
            Some(at) => report.ok(format!(
                "{}: {} frames, then a torn tail of {} bytes at offset {at} (recovery truncates it)",
                path.display(),
                scan.frames.len(),
                bytes.len() as u64 - at
            )),
            None => report.ok(format!("{}: {} frames, every checksum and root correct", path.display(), scan.frames.len())),
        }
    }

    let size = merkle.len();
    let root = merkle.root();
    if let Some(c) = checkpoint
        && c.events > size
    {
        report.bad(format!(
            "checkpoint records {} events but the log holds {size}",
            c.events
        ));
    }
    // A snapshot beyond the log's end records events the log lost (or
    // never held): nothing checks its state, and recovery would start the
    // log after it, leaving a gap.
    for s in snapshots.iter().filter(|s| s.meta.events > size) {
        report.bad(format!(
            "snapshot {} records {} events but the log holds {size}: its state cannot be checked by replay",
            s.path.display(),
            s.meta.events
        ));
    }

    // Inclusion proofs: every event up to the limit, else an even sample.
    let step = size.div_ceil(INCLUSION_CHECKS_MAX).max(1);
    let mut checked = 0u64;
    let mut failed = Vec::new();
    for seq in (0..size).step_by(step as usize) {
        let ok = match (merkle.inclusion_proof(seq, size), merkle.leaf(seq)) {
            (Some(path), Some(leaf)) => verify_inclusion(&leaf, seq, size, &path, &root),
            _ => false,
        };
        checked += 1;
        if !ok {
            failed.push(seq);
        }
    }
    if failed.is_empty() {
        report.ok(format!(
            "inclusion proofs: {checked} of {size} events verified against root {root}"
        ));
    } else {
        report.bad(format!(
            "inclusion proofs fail for events {:?}",
            &failed[..failed.len().min(10)]
        ));
    }
    // Consistency from every recorded size to the end.
    let mut sizes: Vec<(String, u64, Hash32)> = snapshots
        .iter()
        .map(|s| (s.path.display().to_string(), s.meta.events, s.meta.log_root))
        .collect();
    if let Some(c) = checkpoint {
        sizes.push(("checkpoint".to_owned(), c.events, c.log_root));
    }
    for (what, old, old_root) in sizes {
        if old > size {
            continue;
        }
        let ok = merkle
            .consistency_proof(old, size)
            .is_some_and(|p| verify_consistency(old, size, &old_root, &root, &p));
        if ok {
            report.ok(format!(
                "consistency proof {what} (event {old}) -> event {size} verified"
            ));
        } else {
            report.bad(format!(
                "consistency proof from {what} (event {old}, root {old_root}) to event {size} fails"
            ));
        }
    }
    report.events = size;
    let hashes = if options.indexes {
        // The graph of every complete block, as the engine's builder makes it.
        state.build_indexes(&planner);
        let hashes = state.hashes();
        for (name, index) in &hashes.indexes {
            report.ok(format!(
                "collection {name}: index hash {index} (rebuilt by replay)"
            ));
        }
        hashes
    } else {
        state.hashes()
    };
    report.state_hash = Some(hashes.state);
    report.log_root = Some(root);
    report
}
