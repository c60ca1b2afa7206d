//! Graph tests: the same graph for every planning order, recall against
//! exact search, reachability after deletes, and parts round trips.

use super::*;
use crate::event::{Batch, CollectionConfig, CollectionName, Event};
use crate::rng::SplitMix64;
use crate::state::State;
use alloc::collections::BTreeSet;

/// Plans rows in reverse order, then returns them in index order, as a
/// parallel planner with unlucky scheduling would.
struct Reversed;

impl Planner for Reversed {
    fn plan(&self, count: usize, job: &(dyn Fn(usize) -> NodePlan + Sync)) -> Vec<NodePlan> {
        let mut out: Vec<NodePlan> = (0..count).rev().map(job).collect();
        out.reverse();
        out
    }
}

fn name() -> CollectionName {
    CollectionName::new("docs").unwrap()
}

/// A state with `n` clustered random vectors of `dim` components, inserted
/// in batches of `batch` through `planner`.
fn build(n: u64, dim: u32, batch: u64, planner: &dyn Planner) -> State {
    let mut s = State::new();
    let index = IndexParams {
        m: 8,
        ef_construction: 64,
        seed: 42,
    };
    let config = CollectionConfig {
        dim,
        metric: Metric::L2,
        index,
    };
    s.apply(&Event::CreateCollection {
        name: name(),
        config,
    })
    .unwrap();
    let mut rng = SplitMix64::new(7);
    let centers: Vec<Vec<i32>> = (0..20)
        .map(|_| {
            (0..dim)
                .map(|_| rng.below(1 << 20) as i32 - (1 << 19))
                .collect()
        })
        .collect();
    let mut id = 0;
    while id < n {
        let mut b = Batch::new(dim);
        for _ in 0..batch.min(n - id) {
            let c = &centers[rng.below(20) as usize];
            let v: Vec<i32> = c
                .iter()
                .map(|x| x + rng.below(1 << 17) as i32 - (1 << 16))
                .collect();
            b.push(RecordId(id), &v, id % 10, &[]);
            id += 1;
        }
        s.apply_with(
            &Event::InsertBatch {
                collection: name(),
                batch: b,
            },
            planner,
        )
        .unwrap();
    }
    s
}

/// A query near a random stored row.
fn near_query(c: &crate::state::Collection, rng: &mut SplitMix64) -> Vec<i32> {
    let row = rng.below(c.rows() as u64) as usize;
    c.vector(row)
        .iter()
        .map(|x| x + rng.below(1 << 15) as i32)
        .collect()
}

/// The planning order does not change the graph.
#[test]
fn planning_order_does_not_change_the_graph() {
    let a = build(1500, 12, 700, &Sequential);
    let b = build(1500, 12, 700, &Reversed);
    let (ca, cb) = (
        a.collection(&name()).unwrap(),
        b.collection(&name()).unwrap(),
    );
    assert_eq!(ca.index(), cb.index());
    assert_eq!(ca.index_hash_uncached(), cb.index_hash_uncached());
}

/// Recall@10 of the graph against exact search is high, and every search
/// returns k rows ordered by (distance, id).
#[test]
fn recall_against_exact() {
    let s = build(3000, 16, 1000, &Sequential);
    let c = s.collection(&name()).unwrap();
    let mut rng = SplitMix64::new(99);
    let mut hits = 0;
    let queries = 100;
    for _ in 0..queries {
        let q = near_query(c, &mut rng);
        let approx = c.search(
            &q,
            10,
            &SearchOptions {
                ef: 64,
                ..SearchOptions::default()
            },
        );
        let exact = c.search(
            &q,
            10,
            &SearchOptions {
                exact: true,
                ..SearchOptions::default()
            },
        );
        assert_eq!(approx.len(), 10);
        assert!(approx.windows(2).all(|w| w[0] <= w[1]));
        let want: BTreeSet<RecordId> = exact.iter().map(|h| h.1).collect();
        hits += approx.iter().filter(|h| want.contains(&h.1)).count();
    }
    let recall = hits as f64 / (10 * queries) as f64;
    assert!(recall >= 0.95, "recall@10 = {recall}");
}

/// After deleting half the rows, every node is still reachable from the
/// entry point, searches never return deleted rows, and recall holds.
#[test]
fn deletes_keep_reachability_and_recall() {
    let mut s = build(2000, 8, 2000, &Sequential);
    let mut rng = SplitMix64::new(5);
    let mut deleted = BTreeSet::new();
    while deleted.len() < 1000 {
        let id = rng.below(2000);
        if deleted.insert(id) {
            s.apply(&Event::Delete {
                collection: name(),
                id: RecordId(id),
            })
            .unwrap();
        }
    }
    let c = s.collection(&name()).unwrap();
    assert!(
        c.index().reachable().iter().all(|&r| r),
        "a node became unreachable"
    );
    let mut hits = 0;
    for q in 0..100 {
        let row = (q * 17) % c.rows();
        let query = c.vector(row).to_vec();
        let approx = c.search(
            &query,
            10,
            &SearchOptions {
                ef: 64,
                ..SearchOptions::default()
            },
        );
        assert!(approx.iter().all(|h| !deleted.contains(&h.1.0)));
        let exact = c.search(
            &query,
            10,
            &SearchOptions {
                exact: true,
                ..SearchOptions::default()
            },
        );
        let want: BTreeSet<RecordId> = exact.iter().map(|h| h.1).collect();
        hits += approx.iter().filter(|h| want.contains(&h.1)).count();
    }
    assert!(
        hits as f64 / 1000.0 >= 0.95,
        "recall after deletes {}",
        hits as f64 / 1000.0
    );
}

/// Filtered search returns k matching rows whenever k match, at every
/// selectivity, through whichever path the collection picks.
#[test]
fn filtered_search_returns_k_matching_rows() {
    let s = build(2000, 8, 1000, &Sequential);
    let c = s.collection(&name()).unwrap();
    let q = c.vector(3).to_vec();
    for tag in 0..10 {
        let hits = c.search(
            &q,
            10,
            &SearchOptions {
                ef: 32,
                exact: false,
                tag: Some(tag),
            },
        );
        assert_eq!(hits.len(), 10);
        for (_, id) in hits {
            assert_eq!(id.0 % 10, tag);
        }
    }
    assert!(
        c.search(
            &q,
            10,
            &SearchOptions {
                tag: Some(77),
                ..SearchOptions::default()
            }
        )
        .is_empty()
    );
}

/// A graph rebuilt from its parts is the same graph; damaged parts are
/// rejected.
#[test]
fn parts_round_trip() {
    let s = build(700, 6, 700, &Sequential);
    let c = s.collection(&name()).unwrap();
    let g = c.index();
    let p = g.parts();
    let rebuilt = Hnsw::from_parts(
        *g.params(),
        &c.ids()[..g.len()],
        p.len0.to_vec(),
        p.links0.to_vec(),
        p.upper.clone(),
        p.entry,
    )
    .unwrap();
    assert_eq!(rebuilt.hash_uncached(), g.hash_uncached());
    let mut bad = p.links0.to_vec();
    bad[0] = 70_000;
    assert!(
        Hnsw::from_parts(
            *g.params(),
            &c.ids()[..g.len()],
            p.len0.to_vec(),
            bad,
            p.upper.clone(),
            p.entry
        )
        .is_err()
    );
    assert!(
        Hnsw::from_parts(
            *g.params(),
            &c.ids()[..g.len()],
            p.len0.to_vec(),
            p.links0.to_vec(),
            p.upper.clone(),
            None
        )
        .is_err()
    );
}

/// Levels follow the geometric distribution: about 1/m of nodes are above
/// layer 0, and the function is pure.
#[test]
fn levels_are_geometric_and_pure() {
    let m = 8;
    let above = (0..80_000u64)
        .filter(|&i| level_of(RecordId(i), 1, m) > 0)
        .count();
    let share = above as f64 / 80_000.0;
    assert!((share - 0.125).abs() < 0.01, "share above layer 0: {share}");
    assert_eq!(
        level_of(RecordId(12345), 9, m),
        level_of(RecordId(12345), 9, m)
    );
}

/// The compact copy is the same whether it grew block by block with the
/// graph or was made at once from restored rows, and its shift comes from
/// the first block only.
#[test]
fn compact_copy_does_not_depend_on_how_it_grew() {
    let s = build(1000, 12, 1000, &Sequential);
    let c = s.collection(&name()).unwrap();
    let flat: Vec<i32> = c.vectors().all_runs().flatten().copied().collect();
    let mut grown = Compact::new(12);
    for block in flat.chunks(BLOCK_ROWS * 12) {
        grown.extend(block);
    }
    let mut at_once = Compact::new(12);
    at_once.extend(&flat);
    assert_eq!(grown, at_once);
    let head = crate::distance::max_abs(&flat[..BLOCK_ROWS * 12]);
    assert_eq!(grown.shift(), Some(shift_for(head)));
    // The shift brings the first block to at most half the compact range.
    let shift = grown.shift().unwrap();
    assert!(head >> shift <= 1023 && (shift == 0 || head >> (shift - 1) > 1023));
}

/// Walking the graph with the compact copy finds what walking it with
/// exact distances finds: results carry exact distances, in exact order,
/// with recall as high. A query outside the copy's range walks exactly.
#[test]
fn compact_walk_matches_exact_walk() {
    let s = build(3000, 16, 1000, &Sequential);
    let c = s.collection(&name()).unwrap();
    let mut rng = SplitMix64::new(11);
    let (mut compact_hits, mut exact_hits) = (0, 0);
    for _ in 0..100 {
        let q = near_query(c, &mut rng);
        let view = c.view(crate::distance::max_abs(&q));
        assert!(view.compact.and_then(|k| k.encode(&q)).is_some());
        let exact_view = View {
            compact: None,
            ..view
        };
        let mut scratch = SearchScratch::new();
        let with_compact = c.index().search(&view, &q, 32, &mut scratch, |_| true);
        let with_exact = c
            .index()
            .search(&exact_view, &q, 32, &mut scratch, |_| true);
        for (d, row) in &with_compact {
            assert_eq!(*d, view.distance(&q, *row), "distances are exact");
        }
        assert!(with_compact.windows(2).all(|w| w[0] < w[1]));
        let truth: BTreeSet<RecordId> = c
            .search_exact(&q, 10, None)
            .into_iter()
            .map(|h| h.1)
            .collect();
        let top = |hits: &[(Distance, u32)]| -> usize {
            hits.iter()
                .take(10)
                .filter(|h| truth.contains(&c.ids()[h.1 as usize]))
                .count()
        };
        compact_hits += top(&with_compact);
        exact_hits += top(&with_exact);
    }
    assert!(exact_hits >= 950, "exact walk recall {exact_hits}/1000");
    assert!(
        compact_hits + 10 >= exact_hits,
        "compact walk recall {compact_hits}/1000 vs exact {exact_hits}/1000"
    );
    // Far outside the range of the copy: no compact form, exact walk.
    let far: Vec<i32> = (0..16).map(|_| i32::MAX / 2).collect();
    let view = c.view(crate::distance::max_abs(&far));
    assert!(view.compact.unwrap().encode(&far).is_none());
    let hits = c
        .index()
        .search(&view, &far, 16, &mut SearchScratch::new(), |_| true);
    assert_eq!(hits.len(), 16);
    assert!(hits.windows(2).all(|w| w[0] < w[1]));
}

/// Rows far larger than the first block clamp in the compact copy; from
/// then on walks use exact distances (the same nodes as a walk without the
/// copy), and the searches keep their recall.
#[test]
fn clamped_rows_turn_the_compact_walk_off() {
    let mut s = build(640, 16, 640, &Sequential);
    // 1,400 more rows, clustered like the first ones but 2^8 times their
    // scale.
    let mut rng = SplitMix64::new(3);
    let centers: Vec<Vec<i32>> = (0..20)
        .map(|_| {
            (0..16)
                .map(|_| rng.below(1 << 20) as i32 - (1 << 19))
                .collect()
        })
        .collect();
    let mut id = 10_000u64;
    while id < 11_400 {
        let mut b = Batch::new(16);
        for _ in 0..700 {
            let c = &centers[rng.below(20) as usize];
            let v: Vec<i32> = c
                .iter()
                .map(|x| (x + rng.below(1 << 17) as i32 - (1 << 16)) << 8)
                .collect();
            b.push(RecordId(id), &v, 0, &[]);
            id += 1;
        }
        s.apply_with(
            &Event::InsertBatch {
                collection: name(),
                batch: b,
            },
            &Sequential,
        )
        .unwrap();
    }
    let c = s.collection(&name()).unwrap();
    assert!(!c.view(0).compact.unwrap().is_faithful());
    let mut rng = SplitMix64::new(8);
    let mut hits = 0;
    for _ in 0..100 {
        // Queries near the small rows fit the copy's range, the large ones
        // do not: both walk exactly, the same nodes row for row.
        let row = rng.below(c.rows() as u64) as usize;
        let q = c.vector(row).to_vec();
        let view = c.view(crate::distance::max_abs(&q));
        let exact_view = View {
            compact: None,
            ..view
        };
        let mut scratch = SearchScratch::new();
        assert_eq!(
            c.index().search(&view, &q, 64, &mut scratch, |_| true),
            c.index()
                .search(&exact_view, &q, 64, &mut scratch, |_| true)
        );
        let approx = c.search(
            &q,
            10,
            &SearchOptions {
                ef: 64,
                ..SearchOptions::default()
            },
        );
        let truth: BTreeSet<RecordId> = c.search_exact(&q, 10, None).iter().map(|h| h.1).collect();
        hits += approx.iter().filter(|h| truth.contains(&h.1)).count();
    }
    assert!(hits >= 950, "recall@10 {hits}/1000 over clamped rows");
}
