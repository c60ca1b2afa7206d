//! Regression tests of the engine's failure handling: a failed or
//! panicking commit poisons the engine for every later reader and writer,
//! the data directory is locked, directories are made durable, stale
//! temporary files are removed, a corrupt last frame is told from a torn
//! one, snapshots are checked before log segments are retired and before
//! a received one is installed, and an event is read from the log as one
//! frame.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use valori_engine::storage::Storage;
use valori_engine::storage::sim::{Fault, SimStorage, Torn};
use valori_engine::verify::verify_dir;
use valori_engine::{Engine, EngineError, wal};

use crate::common::*;

fn fill(engine: &Engine, from: u64, to: u64) {
    for id in from..to {
        engine
            .submit(insert("docs", id, vec![id as i32, 2 * id as i32], id % 3))
            .unwrap();
    }
}

fn segment_path(first: u64) -> PathBuf {
    Path::new(DIR).join("wal").join(wal::segment_name(first))
}

/// Live ids of `docs`, in order.
fn ids(engine: &Engine) -> Vec<u64> {
    engine
        .read(|s| {
            s.collection(&name("docs")).map_or_else(Vec::new, |c| {
                let mut ids: Vec<u64> = (0..c.rows())
                    .filter(|&r| !c.deleted()[r])
                    .map(|r| c.ids()[r].0)
                    .collect();
                ids.sort_unstable();
                ids
            })
        })
        .unwrap()
}

/// Holds the `nth` sync until released, and tells when it is reached.
fn hold_sync(storage: &SimStorage, nth: u64) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (reached_tx, reached_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let reached_tx = Mutex::new(reached_tx);
    let release_rx = Mutex::new(release_rx);
    storage.on_sync(Arc::new(move |n| {
        if n == nth {
            reached_tx.lock().unwrap().send(()).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
        }
    }));
    (reached_rx, release_tx)
}

/// A snapshot, an inclusion proof and a checkpoint asked for while a
/// commit's fsync is failing are refused, not taken of the failed write:
/// after a crash the engine recovers exactly the acknowledged events and
/// verification passes. (Each caller passes the engine's failure check
/// before the commit fails and then waits for the writer.)
#[test]
fn snapshot_during_failed_fsync_records_nothing_of_it() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 10);
    let acked = ids(&engine);
    let acked_proof = engine.proof().unwrap();
    let next_sync = storage.op_counts().1;
    storage.inject(Fault::SyncFails { nth: next_sync });
    let (reached, release) = hold_sync(&storage, next_sync);
    std::thread::scope(|s| {
        let writer = s.spawn(|| engine.submit(insert("docs", 99, vec![9, 9], 0)));
        reached.recv().unwrap();
        let snapshot = s.spawn(|| engine.snapshot());
        let inclusion = s.spawn(|| engine.inclusion_proof(10, None));
        let consistency = s.spawn(|| engine.consistency_proof(1, 12));
        let checkpoint = s.spawn(|| engine.checkpoint());
        // Let them reach the writer's lock (held by the failing commit);
        // the order, not the time, is what the test is about.
        std::thread::sleep(Duration::from_millis(300));
        release.send(()).unwrap();
        let written = writer.join().unwrap();
        assert!(
            matches!(written, Err(EngineError::Storage { .. })),
            "{written:?}"
        );
        let snapshot = snapshot.join().unwrap();
        assert!(
            matches!(snapshot, Err(EngineError::Failed(_))),
            "a snapshot must not be taken after a failed commit: {snapshot:?}"
        );
        let inclusion = inclusion.join().unwrap();
        assert!(
            matches!(inclusion, Err(EngineError::Failed(_))),
            "no proof of a failed write: {inclusion:?}"
        );
        let consistency = consistency.join().unwrap();
        assert!(
            matches!(consistency, Err(EngineError::Failed(_))),
            "{consistency:?}"
        );
        let checkpoint = checkpoint.join().unwrap();
        assert!(
            matches!(checkpoint, Err(EngineError::Failed(_))),
            "{checkpoint:?}"
        );
    });
    assert!(matches!(engine.proof(), Err(EngineError::Failed(_))));
    assert!(
        engine.snapshots().unwrap().is_empty(),
        "no snapshot file may exist"
    );
    let crashed = storage.crash(Torn::None);
    drop(engine);
    let engine = open_sim(&crashed).unwrap();
    assert_eq!(ids(&engine), acked);
    assert_eq!(engine.proof().unwrap(), acked_proof);
    drop(engine);
    let report = verify_dir(&crashed, Path::new(DIR));
    assert!(report.is_ok(), "{:?}", report.findings);
    assert_eq!(report.state_hash, Some(acked_proof.hashes.state));
}

/// A panic in the thread committing a group (injected at its fsync)
/// poisons the engine: the panicking writer and every later one get an
/// error instead of waiting forever, and reads are refused.
#[test]
fn panic_in_commit_poisons_instead_of_hanging() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 3);
    storage.inject(Fault::SyncPanics {
        nth: storage.op_counts().1,
    });
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::scope(|s| {
        for id in 100..104u64 {
            let done_tx = done_tx.clone();
            let engine = &engine;
            s.spawn(move || {
                let r = engine.submit(insert("docs", id, vec![1, 1], 0));
                done_tx.send((id, r.map(|_| ()))).unwrap();
            });
        }
        for _ in 0..4 {
            // A hang is a failure, reported instead of waiting forever.
            let (id, r) = done_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("a writer hangs after a panic in the commit");
            assert!(r.is_err(), "write {id} acknowledged after a panic");
        }
    });
    let later = engine.submit(insert("docs", 200, vec![2, 2], 0));
    assert!(matches!(later, Err(EngineError::Failed(_))), "{later:?}");
    assert!(matches!(engine.proof(), Err(EngineError::Failed(_))));
    assert!(engine.read(|_| ()).is_err());
    // The failed writes do not come back, even if every byte written
    // survives (a restart of the engine, not of the machine).
    drop(engine);
    let engine = open_sim(&storage).unwrap();
    assert_eq!(ids(&engine), vec![0, 1, 2]);
}

/// Two engines never have one directory open: the second is refused with
/// the holder's process id, and can open once the first is dropped. On
/// the real file system (flock) and on the simulated storage.
#[test]
fn data_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = Engine::open(dir.path()).unwrap();
    first.submit(create("docs", 2)).unwrap();
    let err = Engine::open(dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, EngineError::Locked { .. }), "{text}");
    assert!(
        text.contains(&format!("process {}", std::process::id())),
        "the refusal names the holder: {text}"
    );
    drop(first);
    let second = Engine::open(dir.path()).unwrap();
    assert_eq!(second.log_size(), 1);

    let storage = SimStorage::new();
    let first = open_sim(&storage).unwrap();
    assert!(matches!(
        open_sim(&storage).unwrap_err(),
        EngineError::Locked { .. }
    ));
    drop(first);
    open_sim(&storage).unwrap();
}

/// The data directory, `wal/` and `snapshots/` are made durable in their
/// parents when the engine creates them.
#[test]
fn new_directories_are_synced_in_their_parents() {
    let storage = SimStorage::new();
    drop(open_sim(&storage).unwrap());
    let synced = storage.synced_dirs();
    for dir in ["/", DIR] {
        assert!(
            synced.iter().any(|d| d == Path::new(dir)),
            "{dir} never synced: {synced:?}"
        );
    }
    // And a failure of one of those syncs is an error, not ignored.
    let storage = SimStorage::new();
    storage.inject(Fault::SyncDirFails { nth: 0 });
    let err = open_sim(&storage).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Storage {
                op: valori_engine::StorageOp::SyncDir,
                ..
            }
        ),
        "{err}"
    );
}

/// Temporary files a crash left in the data directory and `snapshots/`
/// are removed at open, durably.
#[test]
fn stale_temporary_files_are_removed() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    drop(engine);
    let stale = [
        Path::new(DIR).join("checkpoint.tmp"),
        Path::new(DIR)
            .join("snapshots")
            .join("snap-00000000000000000001.vsnap.tmp"),
    ];
    for path in &stale {
        let mut f = storage.create(path).unwrap();
        f.write_all(b"half a file").unwrap();
        f.sync().unwrap();
        storage.sync_dir(path.parent().unwrap()).unwrap();
    }
    let engine = open_sim(&storage).unwrap();
    assert_eq!(engine.recovery_report().removed_temp_files, stale.to_vec());
    drop(engine);
    let crashed = storage.crash(Torn::None);
    for path in &stale {
        assert!(!crashed.exists(path), "{} survived", path.display());
    }
}

/// A complete last frame that fails its checksum is reported as corrupt
/// (recovery report, verify) rather than silently taken for a torn write,
/// and when a checkpoint records it the open fails loudly even though a
/// snapshot covers it.
#[test]
fn corrupt_last_frame_is_reported_and_caught_by_the_checkpoint() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 10);
    drop(engine);
    let mut bytes = storage.written(&segment_path(0)).unwrap();
    *bytes.last_mut().unwrap() ^= 0x10;
    storage.replace(&segment_path(0), bytes.clone()).unwrap();
    let report = verify_dir(&storage, Path::new(DIR));
    assert!(
        report
            .findings
            .iter()
            .any(|f| !f.ok && f.message.contains("fails its checksum")),
        "{:?}",
        report.findings
    );
    // Without a checkpoint at it, the frame is truncated, and said to be
    // corrupt.
    let engine = open_sim(&storage).unwrap();
    assert_eq!(
        engine.recovery_report().tail_damage,
        Some(wal::TailDamage::Corrupt)
    );
    assert_eq!(engine.log_size(), 10);
    drop(engine);

    // With a snapshot and checkpoint at the last event, damage to that
    // event is the loss of an acknowledged write.
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 10);
    engine.snapshot().unwrap();
    drop(engine);
    let mut bytes = storage.written(&segment_path(0)).unwrap();
    *bytes.last_mut().unwrap() ^= 0x10;
    storage.replace(&segment_path(0), bytes.clone()).unwrap();
    let err = open_sim(&storage).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::LogShorterThanCheckpoint {
                recorded: 11,
                found: 10
            }
        ),
        "{err}"
    );
    // Nothing was truncated by the refused open.
    assert_eq!(storage.written(&segment_path(0)).unwrap(), bytes);
}

/// Verification reports a snapshot that records more events than the log
/// holds, instead of skipping it.
#[test]
fn verify_reports_a_snapshot_newer_than_the_log() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 10);
    engine.snapshot().unwrap();
    drop(engine);
    // The log loses its last frames (as a lost write-back would leave it),
    // the checkpoint is gone: only the snapshot remembers them.
    let bytes = storage.written(&segment_path(0)).unwrap();
    let scan = wal::scan_segment(&bytes, 0, true).unwrap();
    let cut = scan.frames[8].offset as usize;
    storage
        .replace(&segment_path(0), bytes[..cut].to_vec())
        .unwrap();
    storage.remove(&Path::new(DIR).join("checkpoint")).unwrap();
    let report = verify_dir(&storage, Path::new(DIR));
    assert!(
        report
            .findings
            .iter()
            .any(|f| !f.ok && f.message.contains("records 11 events but the log holds 8")),
        "{:?}",
        report.findings
    );
}

/// `retire_log` checks the newest snapshot's contents, not its name: a
/// file named for more events than it holds removes no segment.
#[test]
fn retire_log_checks_the_snapshot_not_its_name() {
    let storage = SimStorage::new();
    let engine = open_sim_small_segments(&storage);
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 50);
    let snap = engine.snapshot().unwrap();
    fill(&engine, 50, 200);
    // The snapshot of 51 events, renamed as if it covered 190.
    let claimed = Path::new(DIR)
        .join("snapshots")
        .join("snap-00000000000000000190.vsnap");
    storage.rename(&snap.path, &claimed).unwrap();
    let segments_before = storage.list(&Path::new(DIR).join("wal")).unwrap();
    let err = engine.retire_log().unwrap_err();
    assert!(matches!(err, EngineError::SnapshotMismatch { .. }), "{err}");
    assert!(err.to_string().contains("190"), "{err}");
    assert_eq!(
        storage.list(&Path::new(DIR).join("wal")).unwrap(),
        segments_before,
        "no segment may be removed"
    );
    // Its true name retires exactly the segments it covers.
    storage.rename(&claimed, &snap.path).unwrap();
    assert!(!engine.retire_log().unwrap().is_empty());
    let proof = engine.proof().unwrap();
    drop(engine);
    let report = verify_dir(&storage, Path::new(DIR));
    assert!(report.is_ok(), "{:?}", report.findings);
    assert_eq!(report.state_hash, Some(proof.hashes.state));
}

/// Reading one event reads its frame and nothing else of its segment, for
/// events recovered from disk and events appended since.
#[test]
fn reading_an_event_reads_one_frame() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 200);
    drop(engine);
    let engine = open_sim(&storage).unwrap();
    fill(&engine, 200, 300);
    let segment = storage.written(&segment_path(0)).unwrap();
    let scan = wal::scan_segment(&segment, 0, true).unwrap();
    assert_eq!(scan.frames.len(), 301);
    for seq in [0u64, 1, 150, 200, 250, 300] {
        let before = storage.bytes_read();
        let entries = engine.read_log(seq, 1).unwrap();
        let read = storage.bytes_read() - before;
        let frame = &scan.frames[seq as usize];
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].event, frame.payload);
        assert_eq!(entries[0].log_root, frame.root);
        assert_eq!(
            read,
            frame.encoded_len(),
            "event {seq}: read {read} bytes of a {}-byte segment",
            segment.len()
        );
    }
    // A damaged frame read this way is reported, not served.
    let mut damaged = segment.clone();
    let at = scan.frames[150].offset as usize + wal::FRAME_HEADER_BYTES;
    damaged[at] ^= 1;
    storage.replace(&segment_path(0), damaged).unwrap();
    let err = engine.read_log(150, 1).unwrap_err();
    assert!(matches!(err, EngineError::CorruptLog { .. }), "{err}");
    assert!(engine.read_log(151, 1).is_ok());
}

/// Byte offsets of a snapshot file's recorded state hash and log root
/// (docs/format.md: magic, format version `u32`, event count `u64`, state
/// hash, index hash, log root).
const SNAPSHOT_STATE_HASH_AT: usize = 8 + 4 + 8;
const SNAPSHOT_LOG_ROOT_AT: usize = SNAPSHOT_STATE_HASH_AT + 32 + 32;

/// `bytes` with the 32 bytes at `at` replaced by `hash` and the trailer
/// recomputed: a file a faulty or dishonest sender could write, whole by
/// its checksum but recording a hash its contents do not give.
fn forged(bytes: &[u8], at: usize, hash: valori_core::hash::Hash32) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at..at + 32].copy_from_slice(&hash.0);
    let body = out.len() - 32;
    let trailer = *blake3::hash(&out[..body]).as_bytes();
    out[body..].copy_from_slice(&trailer);
    out
}

/// A replica installs a received snapshot only when the file is what it
/// claims to be. Each of these is refused with an error that names the
/// fault, and the replica's log, state and files are as before: a file
/// whose recorded state hash is not its state's, one whose recorded log
/// root is not its leaves' (both with a valid trailer), a damaged file, a
/// truncated one, and the sound file announced with another state hash,
/// log root or event count. The control: the sound file with its true
/// claims is installed, and the replica then has the source's log and
/// state.
#[test]
fn install_snapshot_refuses_a_snapshot_that_is_not_what_it_claims() {
    use valori_columnar::snapshot::SnapshotError;

    let source_storage = SimStorage::new();
    let source = open_sim(&source_storage).unwrap();
    source.submit(create("docs", 2)).unwrap();
    fill(&source, 0, 40);
    let snap = source.snapshot().unwrap();
    let bytes = source_storage.written(&snap.path).unwrap();
    let source_proof = source.proof().unwrap();
    assert_eq!(snap.events, 41);

    // The replica holds the first 6 of the same events.
    let storage = SimStorage::new();
    let replica = open_sim(&storage).unwrap();
    replica.submit(create("docs", 2)).unwrap();
    fill(&replica, 0, 5);
    let files = || {
        let mut all = storage.list(&Path::new(DIR).join("wal")).unwrap();
        all.extend(storage.list(&Path::new(DIR).join("snapshots")).unwrap());
        all
    };
    let before = (replica.proof().unwrap(), ids(&replica), files());
    assert_ne!(before.0.hashes.state, snap.state_hash);
    assert_ne!(before.0.log_root, snap.log_root);
    let claims = (snap.state_hash, snap.log_root, snap.events);
    let unchanged = |what: &str| {
        assert_eq!(
            (replica.proof().unwrap(), ids(&replica), files()),
            before,
            "{what} changed the replica"
        );
    };

    // Another state's hash, recorded in the file and announced with it.
    let other_state = before.0.hashes.state;
    let file = forged(&bytes, SNAPSHOT_STATE_HASH_AT, other_state);
    let err = replica
        .install_snapshot(&file, Some((other_state, snap.log_root, snap.events)))
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Snapshot { source, .. }
            if matches!(**source, SnapshotError::StateHashMismatch { recorded, computed }
                if recorded == other_state && computed == snap.state_hash)),
        "{err}"
    );
    unchanged("a forged state hash");

    // Another log's root, recorded in the file and announced with it.
    let other_root = before.0.log_root;
    let file = forged(&bytes, SNAPSHOT_LOG_ROOT_AT, other_root);
    let err = replica
        .install_snapshot(&file, Some((snap.state_hash, other_root, snap.events)))
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::SnapshotRootMismatch { recorded, computed, .. }
            if *recorded == other_root && *computed == snap.log_root),
        "{err}"
    );
    unchanged("a forged log root");

    // One flipped bit, then the file cut short.
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x04;
    let err = replica
        .install_snapshot(&damaged, Some(claims))
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Snapshot { source, .. }
            if matches!(**source, SnapshotError::ChecksumMismatch { .. })),
        "{err}"
    );
    unchanged("a damaged file");
    let err = replica
        .install_snapshot(&bytes[..bytes.len() - 40], Some(claims))
        .unwrap_err();
    assert!(matches!(&err, EngineError::Snapshot { .. }), "{err}");
    unchanged("a truncated file");

    // The sound file, announced as something else.
    for (what, wrong) in [
        ("state hash", (other_state, snap.log_root, snap.events)),
        ("log root", (snap.state_hash, other_root, snap.events)),
        (
            "event count",
            (snap.state_hash, snap.log_root, snap.events - 1),
        ),
    ] {
        let err = replica.install_snapshot(&bytes, Some(wrong)).unwrap_err();
        assert!(
            matches!(&err, EngineError::SnapshotMismatch { .. }),
            "another {what}: {err}"
        );
        assert!(err.to_string().contains("announced"), "{err}");
        unchanged(what);
    }

    // The control: the sound file with its true claims.
    let info = replica.install_snapshot(&bytes, Some(claims)).unwrap();
    assert_eq!(info.events, 41);
    assert_eq!(replica.proof().unwrap(), source_proof);
    assert_eq!(ids(&replica), ids(&source));
}
