//! Fault injection through the storage seam: for each failure kind (failed
//! fsync, short write, ENOSPC) at every point of a workload, the engine
//! never acknowledges a write it could not make durable, stops taking
//! writes after the failure, and after a crash recovers a state equal to a
//! reference model of exactly the acknowledged writes (plus, at most, the
//! one write in flight, whole).
//!
//! The matrix below widens this to every fault kind of the simulation
//! (rename, directory fsync, create, truncate too), to snapshots,
//! checkpoints, retirement and segment rollover, to recovery itself, to
//! concurrent writers, and to power loss under load; `VALORI_POWER_LOSS_CYCLES`
//! sets the power-loss soak's workloads (default 4).

use std::collections::BTreeMap;

use valori_core::event::{Event, RecordId};
use valori_engine::EngineError;
use valori_engine::storage::Storage;
use valori_engine::storage::sim::{Fault, SimStorage, Torn};

use crate::common::*;

/// The reference model: live id → (vector, tag).
type Model = BTreeMap<u64, (Vec<i32>, u64)>;

fn apply_model(model: &mut Model, event: &Event) {
    match event {
        Event::Insert { record, .. } => {
            model.insert(record.id.0, (record.vector.clone(), record.tag));
        }
        Event::InsertBatch { batch, .. } => {
            for i in 0..batch.len() {
                model.insert(batch.ids[i].0, (batch.vector(i).to_vec(), batch.tags[i]));
            }
        }
        Event::Delete { id, .. } => {
            model.remove(&id.0);
        }
        Event::SetTag { id, tag, .. } => {
            if let Some(entry) = model.get_mut(&id.0) {
                entry.1 = *tag;
            }
        }
        _ => {}
    }
}

/// A workload of inserts, batches, deletes and tag updates, all valid in
/// order.
fn workload() -> Vec<Event> {
    let mut out = vec![create("docs", 2)];
    for i in 0..30u64 {
        match i % 5 {
            0 => {
                let mut batch = valori_core::event::Batch::new(2);
                for j in 0..4 {
                    let id = 1000 + i * 10 + j;
                    batch.push(RecordId(id), &[id as i32, -(id as i32)], j, &[]);
                }
                out.push(Event::InsertBatch {
                    collection: name("docs"),
                    batch,
                });
            }
            3 => out.push(Event::Delete {
                collection: name("docs"),
                id: RecordId(i - 1),
            }),
            4 => out.push(Event::SetTag {
                collection: name("docs"),
                id: RecordId(i - 3),
                tag: 9,
            }),
            _ => out.push(insert("docs", i, vec![i as i32, 7], 1)),
        }
    }
    out
}

fn recovered_model(storage: &SimStorage) -> Model {
    let engine = open_sim(storage).unwrap_or_else(|e| panic!("recovery failed: {e}"));
    engine
        .read(|s| {
            let mut m = Model::new();
            if let Some(c) = s.collection(&name("docs")) {
                for row in 0..c.rows() {
                    if !c.deleted()[row] {
                        m.insert(c.ids()[row].0, (c.vector(row).to_vec(), c.tags()[row]));
                    }
                }
            }
            m
        })
        .unwrap()
}

fn run_with_fault(fault: Fault, torn: Torn) -> bool {
    let storage = SimStorage::new();
    storage.inject(fault);
    let events = workload();
    let mut acked = Model::new();
    let mut in_flight: Option<Event> = None;
    let fired;
    match open_sim(&storage) {
        Err(_) => {
            // The fault hit the creation of the log: nothing was ever
            // acknowledged.
            fired = true;
        }
        Ok(engine) => {
            let mut failed = false;
            for event in &events {
                match engine.submit(event.clone()) {
                    Ok(_) => {
                        assert!(
                            !failed,
                            "{fault:?}: a write was acknowledged after a storage failure"
                        );
                        apply_model(&mut acked, event);
                    }
                    Err(EngineError::Storage { .. }) if !failed => {
                        failed = true;
                        in_flight = Some(event.clone());
                    }
                    Err(EngineError::Failed(_)) => {
                        assert!(failed, "{fault:?}: Failed without a storage error")
                    }
                    Err(e) => panic!("{fault:?}: unexpected error {e}"),
                }
            }
            fired = failed;
            if failed {
                assert!(matches!(engine.proof(), Err(EngineError::Failed(_))));
            }
        }
    }
    let recovered = recovered_model(&storage.crash(torn));
    let mut with_in_flight = acked.clone();
    if let Some(e) = &in_flight {
        apply_model(&mut with_in_flight, e);
    }
    assert!(
        recovered == acked || recovered == with_in_flight,
        "{fault:?} {torn:?}: recovered {} records, acknowledged {} (+in flight {})",
        recovered.len(),
        acked.len(),
        with_in_flight.len()
    );
    fired
}

/// Every fault kind at every operation index of the workload.
#[test]
fn every_fault_at_every_point() {
    let mut runs = 0;
    for torn in [
        Torn::None,
        Torn::Prefix { seed: 11 },
        Torn::Prefix { seed: 12 },
    ] {
        for kind in 0..3 {
            let mut nth = 0;
            loop {
                let fault = match kind {
                    0 => Fault::SyncFails { nth },
                    1 => Fault::ShortWrite { nth },
                    _ => Fault::NoSpace { nth },
                };
                runs += 1;
                if !run_with_fault(fault, torn) {
                    // Past the last operation of the workload.
                    break;
                }
                nth += 1;
            }
            assert!(
                nth > 20,
                "{kind}: the workload must offer many failure points, had {nth}"
            );
        }
    }
    assert!(runs > 150);
}

// ---------------------------------------------------------------------
// The fault matrix beyond the log append: failures of rename, directory
// fsync, create and truncate as well as fsync and writes, at every point
// of a workload that takes snapshots and checkpoints, retires segments and
// rolls segments over; faults during recovery itself; concurrent writers
// of multi-record batches under faults; and power loss under concurrent
// load. After each, the recovered state hash must equal a replay of
// exactly the acknowledged events, and offline verification must pass.
// ---------------------------------------------------------------------

use std::path::Path;
use std::sync::{Arc, Mutex};

use valori_core::state::State;
use valori_engine::verify::{VerifyOptions, verify_dir_with};
use valori_engine::{Engine, EngineOptions, Receipt};

/// Small segments (rollover every few events), one index thread.
fn open_matrix(storage: &SimStorage) -> Result<Engine, EngineError> {
    Engine::open_with(
        Arc::new(storage.clone()),
        Path::new(DIR),
        EngineOptions {
            wal_segment_bytes_max: 700,
            index_threads: 1,
        },
    )
}

/// State hash of a replay of `acked` (sequence number, event) in log order.
fn replay_hash(acked: &[(u64, Event)]) -> valori_core::hash::Hash32 {
    let mut sorted: Vec<&(u64, Event)> = acked.iter().collect();
    sorted.sort_by_key(|(seq, _)| *seq);
    for (i, (seq, _)) in sorted.iter().enumerate() {
        assert_eq!(*seq, i as u64, "acknowledged sequence numbers have a gap");
    }
    let mut state = State::new();
    for (_, event) in sorted {
        state.apply(event).unwrap();
    }
    state.state_hash()
}

/// Opens `storage` (already a crash image) and checks that it holds
/// exactly `acked`, by state hash and log size, and that offline
/// verification passes with the same state hash.
fn check_exactly(storage: &SimStorage, acked: &[(u64, Event)], what: &str) {
    let expected = replay_hash(acked);
    let engine = open_matrix(storage).unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
    let proof = engine.proof().unwrap();
    assert_eq!(
        proof.log_size,
        acked.len() as u64,
        "{what}: recovered log size differs from the acknowledged events"
    );
    assert_eq!(
        proof.hashes.state, expected,
        "{what}: recovered state differs from a replay of the acknowledged events"
    );
    drop(engine);
    let report = verify_dir_with(storage, Path::new(DIR), VerifyOptions { indexes: false });
    assert!(report.is_ok(), "{what}: verify: {:?}", report.findings);
    assert_eq!(report.state_hash, Some(expected), "{what}: verify");
}

/// Every fault kind the simulation has, at operation `nth`.
fn fault_kinds(nth: u64) -> [Fault; 7] {
    [
        Fault::SyncFails { nth },
        Fault::ShortWrite { nth },
        Fault::NoSpace { nth },
        Fault::SyncDirFails { nth },
        Fault::RenameFails { nth },
        Fault::CreateFails { nth },
        Fault::TruncateFails { nth },
    ]
}

/// The sequential workload with snapshots, checkpoints and retirement
/// between writes. Returns the acknowledged events with their sequence
/// numbers. Maintenance that fails with a storage error is allowed (the
/// log is untouched by it); a write that fails stops the engine.
fn run_maintained_workload(engine: &Engine, what: &str) -> Vec<(u64, Event)> {
    let mut acked = Vec::new();
    let mut failed = false;
    for (i, event) in workload().into_iter().enumerate() {
        match engine.submit(event.clone()) {
            Ok(Receipt { seq, .. }) => {
                assert!(!failed, "{what}: a write was acknowledged after a failure");
                acked.push((seq, event));
            }
            Err(EngineError::Storage { .. } | EngineError::Failed(_)) => failed = true,
            Err(e) => panic!("{what}: unexpected error {e}"),
        }
        let maintenance = match i % 9 {
            4 => engine.snapshot().map(|_| ()),
            6 => engine.checkpoint(),
            8 => engine.retire_log().map(|_| ()),
            _ => continue,
        };
        match maintenance {
            Ok(()) => assert!(!failed, "{what}: maintenance succeeded after a failure"),
            Err(EngineError::Storage { .. } | EngineError::Failed(_)) => {}
            Err(e) => panic!("{what}: unexpected maintenance error {e}"),
        }
    }
    acked
}

/// Each fault kind at every operation of a workload that also snapshots,
/// checkpoints, retires and rolls over segments, with a crash that keeps
/// only synced bytes or a torn prefix of the rest: the recovered state is
/// exactly the acknowledged writes, and verify passes.
#[test]
fn fault_matrix_with_snapshots_checkpoints_and_rollover() {
    let mut runs = 0;
    for torn in [Torn::None, Torn::Prefix { seed: 21 }] {
        for kind in 0..7 {
            let mut nth = 0;
            loop {
                let fault = fault_kinds(nth)[kind];
                let storage = SimStorage::new();
                storage.inject(fault);
                let what = format!("{fault:?} {torn:?}");
                let acked = match open_matrix(&storage) {
                    Ok(engine) => run_maintained_workload(&engine, &what),
                    Err(_) => Vec::new(),
                };
                let fired = !storage.fired().is_empty();
                check_exactly(&storage.crash(torn), &acked, &what);
                runs += 1;
                if !fired {
                    break;
                }
                nth += 1;
            }
            // The workload truncates nothing unless a write fails first;
            // truncation faults are exercised by `faults_during_recovery`.
            if !matches!(fault_kinds(0)[kind], Fault::TruncateFails { .. }) {
                assert!(
                    nth >= 3,
                    "{kind}: the workload must offer several failure points, had {nth}"
                );
            }
        }
    }
    eprintln!("fault matrix: {runs} runs");
}

/// Faults during recovery itself (removing stale temp files, syncing the
/// directories, truncating a torn tail, creating the lock): the open
/// fails with the error, and a later open — after a crash that keeps any
/// torn prefix of what the failed recovery wrote — recovers exactly the
/// acknowledged writes.
#[test]
fn faults_during_recovery() {
    // An image that gives recovery work: a torn tail and stale temp files.
    let base = SimStorage::new();
    let engine = open_matrix(&base).unwrap();
    let acked = run_maintained_workload(&engine, "base");
    drop(engine);
    let wal_dir = Path::new(DIR).join("wal");
    let segments = base.list(&wal_dir).unwrap();
    let last = wal_dir.join(segments.last().unwrap());
    let mut bytes = base.read(&last).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, 9, 9, 9, 9, 1]);
    base.replace(&last, bytes).unwrap();
    for tmp in [
        Path::new(DIR).join("checkpoint.tmp"),
        Path::new(DIR)
            .join("snapshots")
            .join("snap-00000000000000000099.vsnap.tmp"),
    ] {
        let mut f = base.create(&tmp).unwrap();
        f.write_all(b"partial").unwrap();
        f.sync().unwrap();
        base.sync_dir(tmp.parent().unwrap()).unwrap();
    }
    let image = base.crash(Torn::None);
    let mut runs = 0;
    for kind in 0..7 {
        let mut nth = 0;
        loop {
            let fault = fault_kinds(nth)[kind];
            let storage = image.crash(Torn::None);
            storage.inject(fault);
            let opened = open_matrix(&storage);
            let fired = !storage.fired().is_empty();
            let what = format!("recovery with {fault:?}");
            match opened {
                Ok(engine) => {
                    assert!(!fired, "{what}: the open succeeded though its fault fired");
                    drop(engine);
                }
                Err(e) => assert!(fired, "{what}: the open failed without a fault: {e}"),
            }
            for seed in [1, 2] {
                check_exactly(
                    &storage.crash(Torn::Prefix { seed }),
                    &acked,
                    &format!("{what}, then a crash (seed {seed})"),
                );
            }
            runs += 1;
            if !fired {
                break;
            }
            nth += 1;
        }
    }
    eprintln!("recovery faults: {runs} runs");
}

/// Writers' batches and their receipts, shared between threads.
type Acked = Arc<Mutex<Vec<(u64, Event)>>>;

/// Four threads each submit multi-record batches (ids of their own range)
/// while a fifth takes snapshots; writes share group commits.
fn concurrent_workload(engine: &Engine, batches_per_thread: u64, acked: &Acked) {
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let acked = Arc::clone(acked);
            s.spawn(move || {
                for b in 0..batches_per_thread {
                    let mut batch = valori_core::event::Batch::new(2);
                    for j in 0..5u64 {
                        let id = t * 1_000_000 + b * 10 + j;
                        batch.push(RecordId(id), &[id as i32, t as i32], j, &[t as u8]);
                    }
                    let event = Event::InsertBatch {
                        collection: name("docs"),
                        batch,
                    };
                    match engine.submit(event.clone()) {
                        Ok(r) => acked.lock().unwrap().push((r.seq, event)),
                        Err(EngineError::Storage { .. } | EngineError::Failed(_)) => return,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
            });
        }
        s.spawn(|| {
            for _ in 0..3 {
                std::thread::sleep(std::time::Duration::from_millis(2));
                if engine.snapshot().is_err() {
                    return;
                }
            }
        });
    });
}

/// Concurrent writers of multi-record batches under each fault kind at a
/// spread of operations: nothing acknowledged is lost, nothing failed
/// comes back, verify passes.
#[test]
fn concurrent_batches_under_faults() {
    let mut runs = 0;
    for kind in 0..7 {
        for offset in (0..40).step_by(3) {
            let storage = SimStorage::new();
            let acked: Acked = Arc::default();
            let engine = open_matrix(&storage).unwrap();
            let r = engine.submit(create("docs", 2)).unwrap();
            acked.lock().unwrap().push((r.seq, create("docs", 2)));
            // Counted from here, per kind of operation.
            let (writes, syncs) = storage.op_counts();
            let (sync_dirs, renames, creates, truncates) = storage.meta_op_counts();
            let base = [
                writes, writes, writes, sync_dirs, renames, creates, truncates,
            ];
            let base = if kind == 0 { syncs } else { base[kind] };
            let nth = base + offset;
            let fault = fault_kinds(nth)[kind];
            storage.inject(fault);
            {
                concurrent_workload(&engine, 12, &acked);
                drop(engine);
            }
            let acked = acked.lock().unwrap().clone();
            for torn in [Torn::None, Torn::Prefix { seed: nth }] {
                check_exactly(
                    &storage.crash(torn),
                    &acked,
                    &format!("concurrent batches with {fault:?} {torn:?}"),
                );
            }
            runs += 1;
        }
    }
    eprintln!("concurrent fault runs: {runs}");
}

/// Power loss under concurrent load: crash images taken while writers run
/// keep unsynced bytes dropped or torn at random; each image recovers a
/// prefix of the final log that includes every write acknowledged before
/// the image was taken, with the state of a replay of exactly that prefix,
/// and passes verify. `VALORI_POWER_LOSS_CYCLES` sets the number of
/// workloads (default 4).
#[test]
fn power_loss_under_concurrent_load() {
    let cycles = std::env::var("VALORI_POWER_LOSS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4u64);
    let mut images_checked = 0;
    let mut acked_writes = 0;
    for cycle in 0..cycles {
        let storage = SimStorage::new();
        let engine = open_matrix(&storage).unwrap();
        let acked: Acked = Arc::default();
        engine.submit(create("docs", 2)).unwrap();
        acked.lock().unwrap().push((0, create("docs", 2)));
        let images = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            s.spawn(|| concurrent_workload(&engine, 25, &acked));
            s.spawn(|| {
                for i in 0..6u64 {
                    std::thread::sleep(std::time::Duration::from_millis(3));
                    // Acknowledged before the image: must survive it.
                    let before = acked
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|(seq, _)| seq + 1)
                        .max()
                        .unwrap_or(0);
                    let torn = if i % 2 == 0 {
                        Torn::None
                    } else {
                        Torn::Prefix {
                            seed: cycle * 100 + i,
                        }
                    };
                    images
                        .lock()
                        .unwrap()
                        .push((before, torn, storage.crash(torn)));
                }
            });
        });
        let final_log = engine.read_log(0, usize::MAX).unwrap();
        let all = acked.lock().unwrap().clone();
        assert_eq!(final_log.len(), all.len(), "no failure: every write acked");
        acked_writes += all.len();
        let mut by_seq = all.clone();
        by_seq.sort_by_key(|(seq, _)| *seq);
        drop(engine);
        for (before, torn, image) in images.into_inner().unwrap() {
            let engine = open_matrix(&image).unwrap();
            let size = engine.log_size();
            let proof = engine.proof().unwrap();
            drop(engine);
            let what = format!("cycle {cycle}, image {torn:?}");
            assert!(
                size >= before,
                "{what}: event {} was acknowledged before the image, {size} events recovered",
                before - 1
            );
            assert_eq!(
                proof.log_root,
                final_log[size as usize - 1].log_root,
                "{what}: the recovered log is not a prefix of the log"
            );
            check_exactly(&image, &by_seq[..size as usize], &what);
            images_checked += 1;
        }
    }
    eprintln!(
        "power loss: {cycles} cycles, {acked_writes} acknowledged writes, {images_checked} crash images checked"
    );
}
