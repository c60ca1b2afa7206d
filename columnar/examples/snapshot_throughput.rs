//! Measures snapshot write and read throughput on 100,000 records of
//! dimension 50 (16 bytes of metadata each, 1% deleted).
//!
//! Run: `cargo run --release -p valori-columnar --example snapshot_throughput`
//! (optional arguments: rows, dimension).
//!
//! Write streams into a pre-sized `Vec` (so the figure is the format's,
//! not the allocator's or the disk's), with the state hash already cached
//! as it is in the engine. Read is all of `read_snapshot`: framing, trailer
//! check, rebuild through the state machine, and the recomputed state hash.

use std::time::{Duration, Instant};

use valori_columnar::snapshot::{SnapshotMeta, read_snapshot, write_snapshot};
use valori_core::Metric;
use valori_core::event::{Batch, CollectionConfig, CollectionName, Event, IndexParams, RecordId};
use valori_core::merkle::{MerkleLog, leaf_hash};
use valori_core::rng::SplitMix64;
use valori_core::state::State;

const BATCH_ROWS: u64 = 10_000;
const RUNS: usize = 7;

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args.next().map_or(100_000, |a| a.parse().expect("rows"));
    let dim: u32 = args.next().map_or(50, |a| a.parse().expect("dimension"));

    let name = CollectionName::new("bench").expect("valid name");
    let mut state = State::new();
    let mut leaves = Vec::new();
    let mut apply = |state: &mut State, event: Event| {
        state.apply(&event).expect("bench events are valid");
        leaves.push(leaf_hash(&event.encode()));
    };
    apply(
        &mut state,
        Event::CreateCollection {
            name: name.clone(),
            config: CollectionConfig {
                dim,
                metric: Metric::L2,
                index: IndexParams::default(),
            },
        },
    );
    let mut rng = SplitMix64::new(42);
    let mut vector = vec![0i32; dim as usize];
    for first in (0..rows).step_by(BATCH_ROWS as usize) {
        let mut batch = Batch::new(dim);
        for id in first..(first + BATCH_ROWS).min(rows) {
            for v in &mut vector {
                *v = (rng.next_u64() >> 40) as i32 - (1 << 23);
            }
            batch.push(RecordId(id), &vector, id % 16, &id.to_le_bytes().repeat(2));
        }
        apply(
            &mut state,
            Event::InsertBatch {
                collection: name.clone(),
                batch,
            },
        );
    }
    for id in (0..rows).step_by(100) {
        apply(
            &mut state,
            Event::Delete {
                collection: name.clone(),
                id: RecordId(id),
            },
        );
    }
    let meta = SnapshotMeta {
        events: leaves.len() as u64,
        state_hash: state.state_hash(),
        index_hash: state.index_hash(),
        log_root: MerkleLog::from_leaves(leaves.clone()).root(),
        log_leaves: leaves,
    };

    let mut bytes = Vec::new();
    write_snapshot(&mut state, &meta, &mut bytes).expect("write");
    let size = bytes.len();
    let mut write_times = Vec::new();
    let mut read_times = Vec::new();
    for _ in 0..RUNS {
        let mut out = Vec::with_capacity(size);
        let start = Instant::now();
        write_snapshot(&mut state, &meta, &mut out).expect("write");
        write_times.push(start.elapsed());
        assert!(out == bytes, "snapshots are deterministic");

        let start = Instant::now();
        let (mut back, back_meta) = read_snapshot(&bytes).expect("read");
        read_times.push(start.elapsed());
        assert!(back_meta == meta && back.state_hash() == meta.state_hash);
    }
    let mb_s = |times: &mut Vec<Duration>| {
        times.sort();
        let median = times[times.len() / 2];
        (size as f64 / 1e6 / median.as_secs_f64(), median)
    };
    let (write_rate, write_median) = mb_s(&mut write_times);
    let (read_rate, read_median) = mb_s(&mut read_times);
    // The reader ends by recomputing the state hash from scratch (in
    // valori-core); shown apart because it is not the format's cost.
    let start = Instant::now();
    assert!(state.state_hash_uncached() == meta.state_hash);
    let hash_time = start.elapsed();
    println!("snapshot of {rows} rows x {dim} dims: {size} bytes");
    println!("write: {write_rate:.0} MB/s (median of {RUNS}: {write_median:?})");
    println!("read:  {read_rate:.0} MB/s (median of {RUNS}: {read_median:?})");
    println!("  of which the state hash from scratch: {hash_time:?}");
}
