//! The index in the engine: the same graph for 1, 2 and 8 build threads on
//! real data, recall against exact search, and the graph surviving a
//! snapshot and a recovery unchanged (the snapshot holds the blocks built
//! when it was taken; the builder adds the rest after recovery).

use std::collections::BTreeSet;
use std::path::PathBuf;

use valori_columnar::texmex::{read_fvecs, read_ivecs};
use valori_core::Metric;
use valori_core::event::{Batch, CollectionConfig, Event, IndexParams, RecordId};
use valori_core::hnsw::SearchOptions;
use valori_core::q16::quantize_vector;
use valori_core::state::State;
use valori_engine::index::RayonPlanner;
use valori_engine::storage::sim::{SimStorage, Torn};

use crate::common::*;

const ROWS: usize = 20_000;

fn data() -> PathBuf {
    std::env::var_os("VALORI_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
        .join("glove50-100k-l2")
}

fn glove_events() -> (Vec<Event>, usize) {
    let base = read_fvecs(&data().join("base.fvecs")).unwrap();
    let dim = base.dim;
    let q16 = quantize_vector(&base.data[..ROWS * dim]).unwrap();
    let config = CollectionConfig {
        dim: dim as u32,
        metric: Metric::L2,
        index: IndexParams {
            m: 16,
            ef_construction: 100,
            seed: 1,
        },
    };
    let mut events = vec![Event::CreateCollection {
        name: name("glove"),
        config,
    }];
    for chunk in 0..ROWS / 5000 {
        let mut batch = Batch::new(dim as u32);
        for r in chunk * 5000..(chunk + 1) * 5000 {
            batch.push(
                RecordId(r as u64),
                &q16[r * dim..(r + 1) * dim],
                (r % 10) as u64,
                &[],
            );
        }
        events.push(Event::InsertBatch {
            collection: name("glove"),
            batch,
        });
    }
    (events, dim)
}

/// 1, 2 and 8 threads build the same graph (same index hash); the graph's
/// recall@10 against exact search is high on real queries.
#[test]
fn same_graph_for_any_thread_count() {
    let (events, _) = glove_events();
    let mut hashes = Vec::new();
    let mut states = Vec::new();
    for threads in [1, 2, 8] {
        let planner = RayonPlanner::new(threads);
        let mut state = State::new();
        for e in &events {
            state.apply_with(e, &planner).unwrap();
        }
        let h = state
            .collection(&name("glove"))
            .unwrap()
            .index_hash_uncached();
        eprintln!("index hash with {threads} threads: {h}");
        hashes.push(h);
        states.push(state);
    }
    assert_eq!(hashes[0], hashes[1]);
    assert_eq!(hashes[0], hashes[2]);

    let recall = recall(&states[0], 200, 64);
    eprintln!("recall@10 at ef=64 on {ROWS} glove vectors: {recall}");
    assert!(recall >= 0.9, "recall@10 = {recall}");
    // The ground truth file is for the full 100k set; it is read here only
    // to prove the data set is the one the benchmarks use.
    assert_eq!(
        read_ivecs(&data().join("groundtruth.ivecs")).unwrap().dim,
        100
    );
}

/// A snapshot taken while the background builder still has thousands of
/// rows to link waits for it with the writer held, not under the state's
/// write lock: reads are answered meanwhile and see the graph grow, and
/// the file holds the complete graph. Were the snapshot to link the blocks
/// under its write lock, every read would wait until it ended and none
/// could see a block linked after it began.
#[test]
fn reads_go_on_while_a_snapshot_finishes_the_graph() {
    let (events, _) = glove_events();
    let storage = SimStorage::new();
    let engine = std::sync::Arc::new(open_sim(&storage).unwrap());
    engine.submit(events[0].clone()).unwrap();
    engine.submit(events[1].clone()).unwrap();
    let indexed = |e: &valori_engine::Engine| {
        e.read(|s| s.collection(&name("glove")).unwrap().indexed_rows())
            .unwrap()
    };
    let (started, began) = std::sync::mpsc::channel();
    let snapshotter = {
        let engine = std::sync::Arc::clone(&engine);
        std::thread::spawn(move || {
            let before = indexed(&engine);
            started.send(before).unwrap();
            engine.snapshot().unwrap()
        })
    };
    let at_start = began.recv().unwrap();
    // Indexed row counts seen by reads that returned while the snapshot
    // was still running.
    let mut seen_during = BTreeSet::new();
    while !snapshotter.is_finished() {
        let n = indexed(&engine);
        if !snapshotter.is_finished() {
            seen_during.insert(n);
        }
    }
    let info = snapshotter.join().unwrap();
    let rows = 5000;
    let complete = rows / valori_core::hnsw::BLOCK_ROWS * valori_core::hnsw::BLOCK_ROWS;
    assert_eq!(indexed(&engine), complete);
    let grown: Vec<usize> = seen_during
        .iter()
        .copied()
        .filter(|&n| n > at_start && n < complete)
        .collect();
    eprintln!(
        "{} rows linked when the snapshot began; reads during it saw {} distinct partial graphs",
        at_start,
        grown.len()
    );
    assert!(
        at_start + 3 * valori_core::hnsw::BLOCK_ROWS < complete,
        "the builder finished before the snapshot began ({at_start} rows linked); nothing was measured"
    );
    assert!(
        grown.len() >= 3,
        "reads during the snapshot saw {seen_during:?}: they waited for the graph"
    );
    // The file holds every complete block: the index hash it records is
    // the one of the complete graph, and it recovers to the same proof.
    let proof = engine.proof().unwrap();
    assert_eq!(info.index_hash, proof.hashes.index);
    assert_eq!(info.state_hash, proof.hashes.state);
    drop(engine);
    let recovered = open_sim(&storage.crash(Torn::None)).unwrap();
    assert!(recovered.recovery_report().snapshot.is_some());
    assert_eq!(recovered.proof().unwrap(), proof);
}

/// The graph goes through the log, a snapshot and a crash unchanged: the
/// recovered engine reports the same index hash, and searches give the
/// same results.
#[test]
fn index_survives_snapshot_and_recovery() {
    let (events, dim) = glove_events();
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    for e in &events[..3] {
        engine.submit(e.clone()).unwrap();
    }
    engine.snapshot().unwrap();
    for e in &events[3..] {
        engine.submit(e.clone()).unwrap();
    }
    engine.wait_for_index().unwrap();
    let before = engine.proof().unwrap();
    let query: Vec<i32> = (0..dim as i32).map(|i| i << 12).collect();
    let opts = SearchOptions {
        ef: 32,
        ..SearchOptions::default()
    };
    let hits = engine
        .read(|s| {
            s.collection(&name("glove"))
                .unwrap()
                .search(&query, 10, &opts)
        })
        .unwrap();
    drop(engine);
    let engine = open_sim(&storage.crash(Torn::None)).unwrap();
    assert!(engine.recovery_report().snapshot.is_some());
    engine.wait_for_index().unwrap();
    let after = engine.proof().unwrap();
    assert_eq!(after.hashes.indexes, before.hashes.indexes);
    assert_eq!(after, before);
    let again = engine
        .read(|s| {
            s.collection(&name("glove"))
                .unwrap()
                .search(&query, 10, &opts)
        })
        .unwrap();
    assert_eq!(hits, again);
}

/// Recall@10 of `state`'s "glove" collection against exact search over its
/// live rows, for the first `n` query vectors.
fn recall(state: &State, n: usize, ef: usize) -> f64 {
    let c = state.collection(&name("glove")).unwrap();
    let queries = read_fvecs(&data().join("query.fvecs")).unwrap();
    let mut hits = 0;
    for i in 0..n {
        let q = quantize_vector(queries.row(i)).unwrap();
        let exact: BTreeSet<RecordId> = c
            .search(
                &q,
                10,
                &SearchOptions {
                    exact: true,
                    ..SearchOptions::default()
                },
            )
            .iter()
            .map(|h| h.1)
            .collect();
        let approx = c.search(
            &q,
            10,
            &SearchOptions {
                ef,
                ..SearchOptions::default()
            },
        );
        assert_eq!(approx.len(), 10);
        hits += approx.iter().filter(|h| exact.contains(&h.1)).count();
    }
    hits as f64 / (10 * n) as f64
}

/// After deleting 10% and 50% of the rows, recall@10 over the survivors
/// stays at the level of a graph built fresh from the survivors alone, and
/// every node stays reachable.
#[test]
fn recall_after_deletes_matches_a_fresh_build() {
    let (events, dim) = glove_events();
    let planner = RayonPlanner::new(2);
    for share in [10u64, 50] {
        let mut state = State::new();
        for e in &events {
            state.apply_with(e, &planner).unwrap();
        }
        // Delete every row whose id hashes into the share, deterministically.
        let doomed: BTreeSet<u64> = (0..ROWS as u64)
            .filter(|&id| valori_core::rng::mix64(id ^ 0xde1e7e) % 100 < share)
            .collect();
        for &id in &doomed {
            state
                .apply(&Event::Delete {
                    collection: name("glove"),
                    id: RecordId(id),
                })
                .unwrap();
        }
        let c = state.collection(&name("glove")).unwrap();
        let reach = c.index().reachable();
        assert!(
            reach.iter().all(|&r| r),
            "{share}%: a node became unreachable"
        );
        let after = recall(&state, 200, 64);

        let mut fresh = State::new();
        fresh.apply(&events[0]).unwrap();
        let mut batch = Batch::new(dim as u32);
        let old = state.collection(&name("glove")).unwrap();
        for row in 0..old.rows() {
            if !old.deleted()[row] {
                batch.push(old.ids()[row], old.vector(row), old.tags()[row], &[]);
            }
        }
        fresh
            .apply_with(
                &Event::InsertBatch {
                    collection: name("glove"),
                    batch,
                },
                &planner,
            )
            .unwrap();
        let baseline = recall(&fresh, 200, 64);
        eprintln!(
            "deleted {share}%: recall@10 {after:.4}, fresh build of the survivors {baseline:.4}"
        );
        assert!(
            after >= baseline - 0.02,
            "{share}%: recall {after} vs fresh {baseline}"
        );
    }
}
