//! Recovery: torn tails are truncated, corruption before the tail is an
//! error naming segment and offset, checkpoints are checked, retired
//! segments are not needed, and proofs verify after reopening.

use std::path::Path;

use valori_core::merkle::{verify_consistency, verify_inclusion};
use valori_engine::storage::Storage;
use valori_engine::storage::sim::{SimStorage, Torn};
use valori_engine::verify::verify_dir;
use valori_engine::{EngineError, wal};

use crate::common::*;

fn segment_path(first: u64) -> std::path::PathBuf {
    Path::new(DIR).join("wal").join(wal::segment_name(first))
}

fn fill(engine: &valori_engine::Engine, from: u64, to: u64) {
    for id in from..to {
        engine
            .submit(insert("docs", id, vec![id as i32, 2 * id as i32], id % 3))
            .unwrap();
    }
}

/// Garbage after the last frame (a torn write) is truncated, the
/// acknowledged events survive, and the log takes new writes after it.
#[test]
fn torn_tail_is_truncated() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 20);
    let proof = engine.proof().unwrap();
    drop(engine);
    let mut bytes = storage.written(&segment_path(0)).unwrap();
    let good_len = bytes.len() as u64;
    // Half of a frame header and payload, as a crash mid-write leaves it.
    bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2, 3]);
    storage.replace(&segment_path(0), bytes).unwrap();

    let engine = open_sim(&storage).unwrap();
    let report = engine.recovery_report().clone();
    assert_eq!(report.truncated, Some((segment_path(0), good_len, 7)));
    assert_eq!(engine.proof().unwrap(), proof);
    fill(&engine, 20, 25);
    drop(engine);
    let engine = open_sim(&storage).unwrap();
    assert_eq!(engine.log_size(), proof.log_size + 5);
    assert!(verify_dir(&storage, Path::new(DIR)).is_ok());
}

/// A flipped byte in a frame that is followed by valid frames is reported
/// with its segment and offset, and the engine refuses to open.
#[test]
fn corruption_before_the_tail_names_segment_and_offset() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 10);
    drop(engine);
    let mut bytes = storage.written(&segment_path(0)).unwrap();
    let frame1 = wal::SEGMENT_HEADER_BYTES;
    bytes[frame1 + wal::FRAME_HEADER_BYTES + 3] ^= 0x40;
    storage.replace(&segment_path(0), bytes).unwrap();
    let err = open_sim(&storage).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, EngineError::CorruptLog { .. }), "{text}");
    assert!(
        text.contains(&segment_path(0).display().to_string())
            && text.contains(&format!("offset {frame1}")),
        "{text}"
    );
    let report = verify_dir(&storage, Path::new(DIR));
    assert!(!report.is_ok());
}

/// A checkpoint that does not match the log is detected at recovery.
#[test]
fn checkpoint_mismatch_is_detected() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 5);
    engine.checkpoint().unwrap();
    drop(engine);
    let path = Path::new(DIR).join("checkpoint");
    let good = storage.read(&path).unwrap();
    // Damage it: the checksum catches a flipped byte.
    let mut bad = good.clone();
    bad[30] ^= 1;
    storage.replace(&path, bad).unwrap();
    assert!(matches!(
        open_sim(&storage).unwrap_err(),
        EngineError::BadCheckpoint { .. }
    ));
    storage.replace(&path, good).unwrap();
    let engine = open_sim(&storage).unwrap();
    assert!(engine.recovery_report().checkpoint_checked);
}

/// Losing acknowledged events (the log is shorter than the checkpoint) is
/// an error, not a silent rollback.
#[test]
fn log_shorter_than_checkpoint_is_an_error() {
    let storage = SimStorage::new();
    let options = valori_engine::EngineOptions {
        wal_segment_bytes_max: 300,
        ..valori_engine::EngineOptions::default()
    };
    let open = |s: &SimStorage| {
        valori_engine::Engine::open_with(
            std::sync::Arc::new(s.clone()),
            Path::new(DIR),
            options.clone(),
        )
    };
    let engine = open(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 12);
    engine.checkpoint().unwrap();
    drop(engine);
    let mut segments = storage.list(&Path::new(DIR).join("wal")).unwrap();
    assert!(segments.len() > 2, "small segments: {segments:?}");
    let last = segments.pop().unwrap();
    storage
        .remove(&Path::new(DIR).join("wal").join(last))
        .unwrap();
    let err = open(&storage).unwrap_err();
    assert!(
        matches!(err, EngineError::LogShorterThanCheckpoint { .. }),
        "{err}"
    );
}

/// After a snapshot, older segments can be removed; the engine reopens
/// from the snapshot, proofs for every event still verify, and offline
/// verification passes.
#[test]
fn retired_segments_are_not_needed() {
    let storage = SimStorage::new();
    let engine = open_sim_small_segments(&storage);
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 200);
    let snap = engine.snapshot().unwrap();
    fill(&engine, 200, 230);
    let removed = engine.retire_log().unwrap();
    assert!(!removed.is_empty());
    let proof = engine.proof().unwrap();
    drop(engine);
    let engine = open_sim_small_segments(&storage);
    assert_eq!(engine.proof().unwrap(), proof);
    assert_eq!(engine.recovery_report().snapshot_events, snap.events);

    for seq in [0, 1, snap.events - 1, snap.events, proof.log_size - 1] {
        let p = engine.inclusion_proof(seq, None).unwrap();
        assert!(
            verify_inclusion(&p.leaf, p.seq, p.size, &p.path, &proof.log_root),
            "event {seq}"
        );
    }
    let c = engine
        .consistency_proof(snap.events, proof.log_size)
        .unwrap();
    assert_eq!(c.old_root, snap.log_root);
    assert!(verify_consistency(
        c.old_size,
        c.new_size,
        &c.old_root,
        &c.new_root,
        &c.path
    ));
    assert!(engine.inclusion_proof(proof.log_size, None).is_err());

    let report = verify_dir(&storage, Path::new(DIR));
    for f in &report.findings {
        assert!(f.ok, "{f}");
    }
    assert_eq!(report.state_hash, Some(proof.hashes.state));
}

/// A crash that loses unsynced bytes loses nothing acknowledged.
#[test]
fn crash_keeps_acknowledged_writes() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    fill(&engine, 0, 50);
    let proof = engine.proof().unwrap();
    let crashed = storage.crash(Torn::Prefix { seed: 5 });
    drop(engine);
    let engine = open_sim(&crashed).unwrap();
    assert_eq!(engine.proof().unwrap(), proof);
}

/// The log can be read from any position, across segments; entries are the
/// events as submitted, with the roots the engine reported; retired
/// positions are out of range.
#[test]
fn log_reads_from_any_position() {
    use valori_core::event::Event;
    let storage = SimStorage::new();
    let engine = open_sim_small_segments(&storage);
    let mut submitted = vec![(create("docs", 2), engine.submit(create("docs", 2)).unwrap())];
    for id in 0..120u64 {
        let e = insert("docs", id, vec![id as i32, 1], 0);
        submitted.push((e.clone(), engine.submit(e).unwrap()));
    }
    for from in [0u64, 1, 37, 64, 119, 120] {
        let entries = engine.read_log(from, 25).unwrap();
        assert_eq!(entries.len(), 25.min(121 - from as usize), "from {from}");
        for entry in &entries {
            let (event, receipt) = &submitted[entry.seq as usize];
            assert_eq!(entry.seq, receipt.seq);
            assert_eq!(entry.log_root, receipt.log_root);
            assert_eq!(&Event::decode(&entry.event).unwrap(), event);
        }
        assert_eq!(entries.first().map(|e| e.seq), Some(from));
    }
    assert!(engine.read_log(121, 10).unwrap().is_empty());
    engine.snapshot().unwrap();
    engine.submit(insert("docs", 500, vec![5, 5], 0)).unwrap();
    assert!(!engine.retire_log().unwrap().is_empty());
    assert!(matches!(
        engine.read_log(0, 1),
        Err(EngineError::OutOfRange { .. })
    ));
    assert_eq!(engine.read_log(121, 10).unwrap().len(), 1);
}
