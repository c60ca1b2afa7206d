//! Opening a data directory: load the newest valid snapshot, replay the log
//! after it, truncate a torn tail, and check the result against the last
//! checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use valori_columnar::snapshot::read_snapshot;
use valori_core::event::Event;
use valori_core::hash::Hash32;
use valori_core::merkle::{MerkleLog, leaf_hash};
use valori_core::state::State;

use crate::error::{EngineError, StorageOp};
use crate::storage::Storage;
use crate::wal::{self, WalWriter};
use crate::{CHECKPOINT_FILE, EngineOptions, SNAPSHOT_DIR, WAL_DIR};

/// What recovery did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Events covered by the snapshot that was loaded (0 if none).
    pub snapshot_events: u64,
    /// Snapshot file loaded, if any.
    pub snapshot: Option<PathBuf>,
    /// Newer snapshots that could not be used, with the reason.
    pub skipped_snapshots: Vec<(PathBuf, String)>,
    /// Events replayed from the log after the snapshot.
    pub replayed_events: u64,
    /// Events in the log after recovery.
    pub log_size: u64,
    /// Bytes of a torn tail that were truncated, and where.
    pub truncated: Option<(PathBuf, u64, u64)>,
    /// How the truncated tail looked: incomplete (a torn write) or a
    /// complete frame failing its checksum (possibly damaged durable
    /// bytes; logged at warn level).
    pub tail_damage: Option<wal::TailDamage>,
    /// Stale temporary files (`*.tmp`) removed at open.
    pub removed_temp_files: Vec<PathBuf>,
    /// Whether a checkpoint was found and matched.
    pub checkpoint_checked: bool,
}

pub(crate) struct Recovered {
    pub state: State,
    pub merkle: MerkleLog,
    pub wal: WalWriter,
    pub index: wal::FrameIndex,
    pub report: RecoveryReport,
}

/// File name of the snapshot covering `events` events.
pub fn snapshot_name(events: u64) -> String {
    format!("snap-{events:020}.vsnap")
}

fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snap-")?.strip_suffix(".vsnap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Snapshots in `dir/snapshots`, oldest first.
pub fn list_snapshots(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Vec<(u64, PathBuf)>, EngineError> {
    let snap_dir = dir.join(SNAPSHOT_DIR);
    if !storage.exists(&snap_dir)
        && storage
            .list(&snap_dir)
            .map(|l| l.is_empty())
            .unwrap_or(true)
    {
        return Ok(Vec::new());
    }
    let names = storage
        .list(&snap_dir)
        .map_err(|e| EngineError::storage(StorageOp::List, &snap_dir, e))?;
    let mut out: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|n| parse_snapshot_name(n).map(|e| (e, snap_dir.join(n))))
        .collect();
    out.sort();
    Ok(out)
}

/// Log segments in `wal_dir`, by first sequence number.
pub fn list_segments(
    storage: &dyn Storage,
    wal_dir: &Path,
) -> Result<Vec<(u64, PathBuf)>, EngineError> {
    let names = storage
        .list(wal_dir)
        .map_err(|e| EngineError::storage(StorageOp::List, wal_dir, e))?;
    let mut out: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|n| wal::parse_segment_name(n).map(|s| (s, wal_dir.join(n))))
        .collect();
    out.sort();
    Ok(out)
}

/// Checkpoint file: magic, version, events, state hash, index hash, log
/// root, crc32c (docs/format.md section 7.4).
const CHECKPOINT_MAGIC: [u8; 8] = *b"VALORCKP";
/// Version 2 added the index hash.
pub(crate) const CHECKPOINT_VERSION: u32 = 2;
const CHECKPOINT_BYTES: usize = 8 + 4 + 8 + 32 + 32 + 32 + 4;

/// A recorded checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub events: u64,
    pub state_hash: Hash32,
    /// The combined index hash with every complete block of rows built
    /// into its graph, so that it depends on the log alone.
    pub index_hash: Hash32,
    pub log_root: Hash32,
}

pub(crate) fn encode_checkpoint(c: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKPOINT_BYTES);
    out.extend_from_slice(&CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    out.extend_from_slice(&c.events.to_le_bytes());
    out.extend_from_slice(c.state_hash.as_bytes());
    out.extend_from_slice(c.index_hash.as_bytes());
    out.extend_from_slice(c.log_root.as_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Why checkpoint bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckpointDecodeError {
    /// Wrong magic, length or checksum.
    Damaged,
    /// Intact, but another format version.
    Version(u32),
}

pub(crate) fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, CheckpointDecodeError> {
    use CheckpointDecodeError::Damaged;
    if bytes.len() < 12 || bytes[0..8] != CHECKPOINT_MAGIC {
        return Err(Damaged);
    }
    let word = |at: usize| -> [u8; 32] {
        let mut h = [0u8; 32];
        h.copy_from_slice(&bytes[at..at + 32]);
        h
    };
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let (body, crc) = bytes.split_at(bytes.len().saturating_sub(4));
    let crc_ok = crc.len() == 4
        && crc32c::crc32c(body) == u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if version != CHECKPOINT_VERSION {
        // An intact file of another version says so; anything else is
        // damage.
        return Err(if crc_ok {
            CheckpointDecodeError::Version(version)
        } else {
            Damaged
        });
    }
    if bytes.len() != CHECKPOINT_BYTES || !crc_ok {
        return Err(Damaged);
    }
    let mut events = [0u8; 8];
    events.copy_from_slice(&bytes[12..20]);
    Ok(Checkpoint {
        events: u64::from_le_bytes(events),
        state_hash: Hash32(word(20)),
        index_hash: Hash32(word(52)),
        log_root: Hash32(word(84)),
    })
}

/// Reads the checkpoint, if there is one.
pub fn read_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Option<Checkpoint>, EngineError> {
    let path = dir.join(CHECKPOINT_FILE);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = storage
        .read(&path)
        .map_err(|e| EngineError::storage(StorageOp::Read, &path, e))?;
    match decode_checkpoint(&bytes) {
        Ok(c) => Ok(Some(c)),
        Err(CheckpointDecodeError::Damaged) => Err(EngineError::BadCheckpoint { path }),
        Err(CheckpointDecodeError::Version(found)) => {
            Err(EngineError::CheckpointVersion { path, found })
        }
    }
}

/// Writes the checkpoint atomically (temp file, fsync, rename, directory
/// fsync).
pub(crate) fn write_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
    checkpoint: &Checkpoint,
) -> Result<(), EngineError> {
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let bytes = encode_checkpoint(checkpoint);
    let mut file = storage
        .create(&tmp)
        .map_err(|e| EngineError::storage(StorageOp::Create, &tmp, e))?;
    file.write_all(&bytes)
        .map_err(|e| EngineError::storage(StorageOp::Write, &tmp, e))?;
    file.sync()
        .map_err(|e| EngineError::storage(StorageOp::Sync, &tmp, e))?;
    storage
        .rename(&tmp, &path)
        .map_err(|e| EngineError::storage(StorageOp::Rename, &tmp, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| EngineError::storage(StorageOp::SyncDir, dir, e))
}

/// Creates `dir` if it is missing and makes its name durable in its
/// parent: a crash must not lose the directory a durable file sits in.
pub(crate) fn create_dir_durably(storage: &dyn Storage, dir: &Path) -> Result<(), EngineError> {
    storage
        .create_dir_all(dir)
        .map_err(|e| EngineError::storage(StorageOp::Create, dir, e))?;
    let parent = match dir.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Ok(()),
    };
    storage
        .sync_dir(parent)
        .map_err(|e| EngineError::storage(StorageOp::SyncDir, parent, e))
}

/// Removes the temporary files a crash can leave behind (a snapshot or
/// checkpoint being written: `*.tmp`), which nothing reads and nothing
/// else removes, and makes the removals durable.
fn remove_temp_files(storage: &dyn Storage, dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let mut removed = Vec::new();
    for d in [dir.to_path_buf(), dir.join(SNAPSHOT_DIR)] {
        let names = storage
            .list(&d)
            .map_err(|e| EngineError::storage(StorageOp::List, &d, e))?;
        let before = removed.len();
        for name in names.iter().filter(|n| n.ends_with(".tmp")) {
            let path = d.join(name);
            storage
                .remove(&path)
                .map_err(|e| EngineError::storage(StorageOp::Remove, &path, e))?;
            removed.push(path);
        }
        if removed.len() > before {
            storage
                .sync_dir(&d)
                .map_err(|e| EngineError::storage(StorageOp::SyncDir, &d, e))?;
        }
    }
    Ok(removed)
}

/// Loads the newest snapshot that reads back intact and whose leaves give
/// its recorded root; records the others as skipped.
fn load_snapshot(
    storage: &dyn Storage,
    dir: &Path,
    report: &mut RecoveryReport,
) -> Result<(State, MerkleLog), EngineError> {
    let mut snapshots = list_snapshots(storage, dir)?;
    while let Some((_, path)) = snapshots.pop() {
        let bytes = match storage.read(&path) {
            Ok(b) => b,
            Err(e) => {
                report.skipped_snapshots.push((path.clone(), e.to_string()));
                continue;
            }
        };
        match read_snapshot(&bytes) {
            Ok((state, meta)) => {
                let merkle = MerkleLog::from_leaves(meta.log_leaves);
                let computed = merkle.root();
                if computed != meta.log_root || merkle.len() != meta.events {
                    report.skipped_snapshots.push((
                        path.clone(),
                        EngineError::SnapshotRootMismatch {
                            path: path.clone(),
                            recorded: meta.log_root,
                            computed,
                        }
                        .to_string(),
                    ));
                    continue;
                }
                report.snapshot_events = meta.events;
                report.snapshot = Some(path);
                return Ok((state, merkle));
            }
            Err(e) => {
                let err = EngineError::Snapshot {
                    path: path.clone(),
                    source: Arc::new(e),
                };
                report.skipped_snapshots.push((path, err.to_string()));
            }
        }
    }
    Ok((State::new(), MerkleLog::new()))
}

pub(crate) fn recover(
    storage: &dyn Storage,
    dir: &Path,
    options: &EngineOptions,
) -> Result<Recovered, EngineError> {
    let wal_dir = dir.join(WAL_DIR);
    let snap_dir = dir.join(SNAPSHOT_DIR);
    for d in [wal_dir.as_path(), snap_dir.as_path()] {
        create_dir_durably(storage, d)?;
    }
    let mut report = RecoveryReport {
        removed_temp_files: remove_temp_files(storage, dir)?,
        ..RecoveryReport::default()
    };
    let checkpoint = read_checkpoint(storage, dir)?;
    let (mut state, mut merkle) = load_snapshot(storage, dir, &mut report)?;
    let planner = crate::index::RayonPlanner::new(options.index_threads);
    let check_at = |state: &mut State, merkle: &MerkleLog, report: &mut RecoveryReport| {
        if let Some(c) = checkpoint.filter(|c| c.events == merkle.len()) {
            // The checkpoint's index hash is of every complete block built
            // (see `Engine::checkpoint`). Building them here costs nothing
            // extra: the graph is the same whenever it is built, and the
            // background builder would otherwise build these blocks after
            // opening.
            state.build_indexes(&planner);
            let computed = state.index_hash();
            if computed != c.index_hash {
                return Err(EngineError::CheckpointIndexMismatch {
                    events: c.events,
                    recorded: c.index_hash,
                    computed,
                });
            }
            let computed = state.state_hash();
            if computed != c.state_hash {
                return Err(EngineError::CheckpointMismatch {
                    events: c.events,
                    recorded: c.state_hash,
                    computed,
                });
            }
            if merkle.root() != c.log_root {
                return Err(EngineError::CheckpointMismatch {
                    events: c.events,
                    recorded: c.log_root,
                    computed: merkle.root(),
                });
            }
            report.checkpoint_checked = true;
        }
        Ok(())
    };
    check_at(&mut state, &merkle, &mut report)?;

    let segments = list_segments(storage, &wal_dir)?;
    // (first_seq, seq after the last frame, valid_len, file_len)
    let mut tail: Option<(u64, u64, u64, u64)> = None;
    let mut index = wal::FrameIndex::default();
    for (i, (name_seq, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let bytes = storage
            .read(path)
            .map_err(|e| EngineError::storage(StorageOp::Read, path, e))?;
        let scan = wal::scan_segment(&bytes, *name_seq, is_last).map_err(|source| {
            EngineError::CorruptLog {
                segment: path.clone(),
                source,
            }
        })?;
        if scan.first_seq > merkle.len() {
            return Err(EngineError::LogGap {
                segment: path.clone(),
                expected: merkle.len(),
                found: scan.first_seq,
            });
        }
        for frame in &scan.frames {
            let leaf = leaf_hash(frame.payload);
            if frame.seq < merkle.len() {
                // Covered by the snapshot: the log must agree with it.
                if merkle.leaf(frame.seq) != Some(leaf)
                    || merkle.root_at(frame.seq + 1) != Some(frame.root)
                {
                    return Err(EngineError::SnapshotLogMismatch {
                        segment: path.clone(),
                        seq: frame.seq,
                    });
                }
                continue;
            }
            let event = Event::decode(frame.payload).map_err(|source| EngineError::BadEvent {
                segment: path.clone(),
                seq: frame.seq,
                offset: frame.offset,
                source,
            })?;
            state
                .apply(&event)
                .map_err(|source| EngineError::ReplayRejected {
                    segment: path.clone(),
                    seq: frame.seq,
                    source,
                })?;
            merkle.push_leaf(leaf);
            let computed = merkle.root();
            if computed != frame.root {
                return Err(EngineError::RootMismatch {
                    segment: path.clone(),
                    seq: frame.seq,
                    recorded: frame.root,
                    computed,
                });
            }
            report.replayed_events += 1;
            check_at(&mut state, &merkle, &mut report)?;
        }
        index.add_segment(
            scan.first_seq,
            scan.frames.iter().map(|f| f.offset).collect(),
            scan.valid_len.max(wal::SEGMENT_HEADER_BYTES as u64),
        );
        if let Some(at) = scan.torn_at {
            let cut = bytes.len() as u64 - at;
            if scan.tail_damage == Some(wal::TailDamage::Corrupt) {
                tracing::warn!(
                    segment = %path.display(),
                    offset = at,
                    bytes = cut,
                    "the log's last frame is complete but fails its checksum: damaged durable bytes, or a crash that extended the file before its data; truncating it"
                );
            } else {
                tracing::info!(segment = %path.display(), offset = at, bytes = cut, "truncating a torn tail");
            }
            report.truncated = Some((path.clone(), at, cut));
            report.tail_damage = scan.tail_damage;
        }
        if is_last {
            let end = scan.first_seq + scan.frames.len() as u64;
            tail = Some((scan.first_seq, end, scan.valid_len, bytes.len() as u64));
        }
    }
    // The log must reach the checkpoint by itself: a snapshot covering the
    // events does not excuse frames lost from the log's end (a corrupt
    // last frame is truncated like a torn one, and only this check tells
    // the loss of an acknowledged event from a torn write).
    let log_end = tail.map_or(merkle.len(), |(_, end, _, _)| end);
    if let Some(c) = checkpoint
        && c.events > log_end
    {
        return Err(EngineError::LogShorterThanCheckpoint {
            recorded: c.events,
            found: log_end,
        });
    }
    let max = options.wal_segment_bytes_max;
    let wal = match tail {
        Some((first, end, valid_len, file_len)) => {
            // Truncate a torn tail whatever happens next, so that the
            // segment reads clean when it is no longer the last one.
            let reopened = WalWriter::reopen(storage, &wal_dir, first, valid_len, file_len, max)?;
            if end == merkle.len() {
                reopened
            } else {
                // A snapshot newer than the log's end: start a segment at
                // the next event so that frames stay contiguous.
                let created = WalWriter::create(storage, &wal_dir, merkle.len(), max)?;
                index.add_segment(merkle.len(), Vec::new(), created.segment_len());
                created
            }
        }
        None => {
            let created = WalWriter::create(storage, &wal_dir, merkle.len(), max)?;
            index.add_segment(merkle.len(), Vec::new(), created.segment_len());
            created
        }
    };
    report.log_size = merkle.len();
    Ok(Recovered {
        state,
        merkle,
        wal,
        index,
        report,
    })
}
