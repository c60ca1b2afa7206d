//! Fault injection through the storage seam: for each failure kind (failed
//! fsync, short write, ENOSPC) at every point of a workload, the engine
//! never acknowledges a write it could not make durable, stops taking
//! writes after the failure, and after a crash recovers a state equal to a
//! reference model of exactly the acknowledged writes (plus, at most, the
//! one write in flight, whole).

use std::collections::BTreeMap;

use valori_core::event::{Event, RecordId};
use valori_engine::EngineError;
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
