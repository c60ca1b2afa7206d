//! The HNSW graph is inside the proof: snapshots and the checkpoint record
//! the index hash, and recovery and `verify_dir` refuse a graph that is
//! not the one the log builds, naming the index hash.

use std::path::{Path, PathBuf};

use valori_columnar::snapshot::{SNAPSHOT_TRAILER_BYTES, SnapshotError, read_snapshot};
use valori_core::event::{Batch, Event, RecordId};
use valori_engine::storage::Storage;
use valori_engine::storage::sim::SimStorage;
use valori_engine::verify::verify_dir;
use valori_engine::{Engine, EngineError};

use crate::common::*;

const DIM: usize = 4;

/// Inserts rows `from..to` of collection `docs` (dimension 4) as one batch,
/// vectors from a fixed generator.
fn insert_rows(engine: &Engine, from: u64, to: u64) {
    let mut batch = Batch::new(DIM as u32);
    for id in from..to {
        let vector: Vec<i32> = (0..DIM as u64)
            .map(|k| {
                let x = (id * 7919 + k * 104_729).wrapping_mul(2_654_435_761) % 100_000;
                x as i32 - 50_000
            })
            .collect();
        batch.push(RecordId(id), &vector, id % 3, &id.to_le_bytes());
    }
    engine
        .submit(Event::InsertBatch {
            collection: name("docs"),
            batch,
        })
        .unwrap();
}

fn snapshot_path(events: u64) -> PathBuf {
    Path::new(DIR)
        .join("snapshots")
        .join(format!("snap-{events:020}.vsnap"))
}

fn reseal(bytes: &mut [u8]) {
    let body = bytes.len() - SNAPSHOT_TRAILER_BYTES;
    let trailer = blake3::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(trailer.as_bytes());
}

/// Offset of the first layer-0 link of `docs` in a snapshot of the engine
/// state below (one collection, 8-byte metadata per row, no graph nodes),
/// from the layout of docs/format.md section 6.
fn first_link_offset(bytes: &[u8]) -> (usize, u32) {
    let (state, meta) = read_snapshot(bytes).unwrap();
    let c = state.collection(&name("docs")).unwrap();
    let rows = c.rows();
    let header = 8 + 4 + 8 + 32 + 32 + 32 + 8 + 32 * meta.events as usize + 4;
    let columns = 4 + 4 + 4 + 1 + 2 + 2 + 8 + 8 + rows * (8 + 8 + 1 + 4 * DIM + 4 + 8);
    let at = header + columns + 8 + 4 + 2 * c.indexed_rows();
    let link = c.index().links(0, 0)[0];
    assert_eq!(bytes[at..at + 4], link.to_le_bytes(), "layout");
    (at, c.indexed_rows() as u32)
}

/// A database with 200 rows (three blocks in the graph) and a snapshot
/// (with its checkpoint) at its last event.
fn database() -> (SimStorage, u64) {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", DIM as u32)).unwrap();
    insert_rows(&engine, 0, 200);
    let info = engine.snapshot().unwrap();
    assert_eq!(info.events, 2);
    drop(engine);
    (storage, info.events)
}

/// A snapshot whose graph link was altered and its trailer recomputed is
/// refused by the reader (recovery skips it, naming the index hash, and
/// replays the log instead) and by `verify_dir`.
#[test]
fn altered_link_in_snapshot_is_refused_on_load_and_verify() {
    let (storage, events) = database();
    let path = snapshot_path(events);
    let good = storage.read(&path).unwrap();
    let (at, indexed) = first_link_offset(&good);
    let mut bad = good.clone();
    let old = u32::from_le_bytes(bad[at..at + 4].try_into().unwrap());
    bad[at..at + 4].copy_from_slice(&((old + 1) % indexed).to_le_bytes());
    reseal(&mut bad);
    match read_snapshot(&bad) {
        Err(SnapshotError::CollectionIndexHashMismatch { collection, .. }) => {
            assert_eq!(collection, name("docs"))
        }
        other => panic!("{:?}", other.map(|(_, m)| m)),
    }
    storage.replace(&path, bad).unwrap();

    let report = verify_dir(&storage, Path::new(DIR));
    assert!(!report.is_ok());
    assert!(
        report
            .findings
            .iter()
            .any(|f| !f.ok && f.message.contains("index hash")),
        "{:#?}",
        report.findings
    );

    let engine = open_sim(&storage).unwrap();
    let skipped = &engine.recovery_report().skipped_snapshots;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].1.contains("index hash"), "{skipped:?}");
    // Replayed from the log instead: the graph the log builds.
    engine.wait_for_index().unwrap();
    let (good_state, good_meta) = read_snapshot(&good).unwrap();
    drop(good_state);
    assert_eq!(engine.proof().unwrap().hashes.index, good_meta.index_hash);
}

/// A snapshot whose graph was altered and whose recorded index hashes
/// were rewritten to match it (so the file is self-consistent) is refused
/// by recovery, through the checkpoint's index hash, and by `verify_dir`,
/// through the replay's graph, each naming the index hash.
#[test]
fn self_consistent_altered_graph_is_refused_by_checkpoint_and_replay() {
    let (storage, events) = database();
    let path = snapshot_path(events);
    let good = storage.read(&path).unwrap();
    let (at, indexed) = first_link_offset(&good);
    let mut bad = good.clone();
    let old = u32::from_le_bytes(bad[at..at + 4].try_into().unwrap());
    bad[at..at + 4].copy_from_slice(&((old + 1) % indexed).to_le_bytes());
    reseal(&mut bad);
    // The collection's hash sits after its index section, before its
    // table flag (0: no declared columns), the (empty) graph section of
    // two u64 counts and the trailer.
    let collection_hash = bad.len() - SNAPSHOT_TRAILER_BYTES - 16 - 1 - 32;
    let Err(SnapshotError::CollectionIndexHashMismatch { computed, .. }) = read_snapshot(&bad)
    else {
        panic!("the altered link must be caught first");
    };
    bad[collection_hash..collection_hash + 32].copy_from_slice(computed.as_bytes());
    reseal(&mut bad);
    let Err(SnapshotError::IndexHashMismatch { computed, .. }) = read_snapshot(&bad) else {
        panic!("then the combined hash");
    };
    let header_index = 8 + 4 + 8 + 32;
    bad[header_index..header_index + 32].copy_from_slice(computed.as_bytes());
    reseal(&mut bad);
    let (_, forged) = read_snapshot(&bad).expect("a self-consistent file reads");
    storage.replace(&path, bad).unwrap();

    let report = verify_dir(&storage, Path::new(DIR));
    let failed: Vec<_> = report.findings.iter().filter(|f| !f.ok).collect();
    assert!(
        failed
            .iter()
            .any(|f| f.message.contains("index hash: replay")
                && f.message.contains(&forged.index_hash.to_string())),
        "{:#?}",
        report.findings
    );

    match open_sim(&storage).unwrap_err() {
        EngineError::CheckpointIndexMismatch {
            events: at_events,
            computed,
            ..
        } => {
            assert_eq!(at_events, events);
            assert_eq!(computed, forged.index_hash);
        }
        other => panic!("{other}"),
    }
}

/// Rewrites the checkpoint's index hash (with a valid checksum).
fn forge_checkpoint_index(storage: &SimStorage) {
    let path = Path::new(DIR).join("checkpoint");
    let mut bytes = storage.read(&path).unwrap();
    assert_eq!(bytes.len(), 120);
    bytes[52] ^= 1;
    let crc = crc32c(&bytes[..116]);
    bytes[116..].copy_from_slice(&crc.to_le_bytes());
    storage.replace(&path, bytes).unwrap();
}

/// CRC-32C (Castagnoli), bit by bit: the checkpoint's checksum.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A checkpoint recorded after more writes than the snapshot: recovery
/// builds the replayed rows into the graph to compare the index hash, and
/// an honest checkpoint passes; one whose index hash was changed (checksum
/// recomputed) is refused by recovery and `verify_dir`, naming the index
/// hash.
#[test]
fn checkpoint_records_and_checks_the_index_hash() {
    let (storage, _) = database();
    let engine = open_sim(&storage).unwrap();
    insert_rows(&engine, 200, 330);
    engine.checkpoint().unwrap();
    let index = engine.proof().unwrap().hashes.index;
    drop(engine);
    let engine = open_sim(&storage).unwrap();
    assert!(engine.recovery_report().checkpoint_checked);
    assert_eq!(engine.proof().unwrap().hashes.index, index);
    assert_eq!(
        engine
            .read(|s| s.collection(&name("docs")).unwrap().indexed_rows())
            .unwrap(),
        320
    );
    drop(engine);
    assert!(verify_dir(&storage, Path::new(DIR)).is_ok());

    forge_checkpoint_index(&storage);
    let err = open_sim(&storage).unwrap_err();
    assert!(
        matches!(err, EngineError::CheckpointIndexMismatch { events: 3, computed, .. } if computed == index),
        "{err}"
    );
    assert!(err.to_string().contains("index hash"));
    let report = verify_dir(&storage, Path::new(DIR));
    assert!(
        report
            .findings
            .iter()
            .any(|f| !f.ok && f.message.contains("checkpoint") && f.message.contains("index hash")),
        "{:#?}",
        report.findings
    );
}

/// Every byte of every file `verify_dir` reads — each log segment, the
/// snapshot and the checkpoint — changed in turn is refused, and the
/// failed finding names what differs: the file (segment or snapshot), or
/// the checkpoint (a change in the last frame may read as a torn tail,
/// which the checkpoint then shows is missing acknowledged events).
#[test]
fn verify_dir_refuses_every_changed_byte() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 2)).unwrap();
    for id in 0..4 {
        engine
            .submit(insert("docs", id, vec![id as i32, -(id as i32)], id))
            .unwrap();
    }
    engine.snapshot().unwrap();
    for id in 4..6 {
        engine
            .submit(insert("docs", id, vec![id as i32, 1], id))
            .unwrap();
    }
    engine.checkpoint().unwrap();
    drop(engine);
    assert!(verify_dir(&storage, Path::new(DIR)).is_ok());

    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for sub in ["wal", "snapshots"] {
        for name in storage.list(&Path::new(DIR).join(sub)).unwrap() {
            files.push((Path::new(DIR).join(sub).join(&name), name));
        }
    }
    files.push((Path::new(DIR).join("checkpoint"), "checkpoint".to_owned()));
    assert_eq!(files.len(), 3, "{files:?}");
    for (path, name) in files {
        let good = storage.read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            storage.replace(&path, bad).unwrap();
            let report = verify_dir(&storage, Path::new(DIR));
            let failed: Vec<&str> = report
                .findings
                .iter()
                .filter(|f| !f.ok)
                .map(|f| f.message.as_str())
                .collect();
            assert!(
                failed
                    .iter()
                    .any(|m| m.contains(&name) || m.contains("checkpoint")),
                "{name} byte {at} of {}: {:#?}",
                good.len(),
                report.findings
            );
        }
        storage.replace(&path, good).unwrap();
    }
    assert!(verify_dir(&storage, Path::new(DIR)).is_ok());
}
