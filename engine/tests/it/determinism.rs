//! Two engines given the same events agree byte for byte, even when one of
//! them is interrupted and recovers from a snapshot plus the log.

use valori_core::state::State;
use valori_engine::storage::Storage;
use valori_engine::storage::sim::{SimStorage, Torn};

use crate::common::*;

/// Engine A applies the golden workload in one go; engine B applies part
/// of it, snapshots, applies more, crashes, recovers from snapshot + log,
/// and applies the rest. Both end with the same state hash as a plain
/// `State` fed the same events, and their final snapshot files are
/// identical.
#[test]
fn interrupted_engine_matches_uninterrupted_one() {
    let events = golden_events();
    let mut reference = State::new();
    for e in &events {
        let _ = reference.apply(e);
    }

    let a_storage = SimStorage::new();
    let a = open_sim(&a_storage).unwrap();
    for e in &events {
        let _ = a.submit(e.clone());
    }
    let a_snap = a.snapshot().unwrap();

    let b_storage = SimStorage::new();
    let b = open_sim_small_segments(&b_storage);
    let (first, rest) = events.split_at(events.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    for e in first {
        let _ = b.submit(e.clone());
    }
    b.snapshot().unwrap();
    for e in second {
        let _ = b.submit(e.clone());
    }
    drop(b);
    let crashed = b_storage.crash(Torn::None);
    let b = open_sim_small_segments(&crashed);
    let report = b.recovery_report().clone();
    assert!(
        report.snapshot.is_some(),
        "recovery must start from the snapshot: {report:?}"
    );
    assert!(
        report.replayed_events > 0,
        "and replay the log after it: {report:?}"
    );
    for e in third {
        let _ = b.submit(e.clone());
    }
    let b_snap = b.snapshot().unwrap();

    assert_eq!(a.proof().unwrap().hashes.state, reference.state_hash());
    assert_eq!(b.proof().unwrap().hashes.state, reference.state_hash());
    assert_eq!(a.proof().unwrap().log_root, b.proof().unwrap().log_root);
    assert_eq!(a_snap.events, b_snap.events);
    let a_bytes = a_storage.read(&a_snap.path).unwrap();
    let b_bytes = crashed.read(&b_snap.path).unwrap();
    assert!(
        a_bytes == b_bytes,
        "snapshot files differ ({} vs {} bytes)",
        a_bytes.len(),
        b_bytes.len()
    );
}
