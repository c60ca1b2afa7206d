//! State machine tests: rejected events change nothing, the incremental
//! hash always equals the hash from scratch, and exact search follows the
//! `(distance, id)` order of a sort over all rows.

use super::*;
use crate::event::{IndexParams, Record};
use crate::rng::SplitMix64;
use alloc::vec;

fn name(s: &str) -> CollectionName {
    CollectionName::new(s).unwrap()
}

fn create(dim: u32) -> Event {
    Event::CreateCollection {
        name: name("docs"),
        config: CollectionConfig {
            dim,
            metric: Metric::L2,
            index: IndexParams::default(),
        },
    }
}

fn insert(id: u64, vector: Vec<i32>, tag: u64) -> Event {
    Event::Insert {
        collection: name("docs"),
        record: Record {
            id: RecordId(id),
            vector,
            tag,
            metadata: vec![id as u8],
        },
    }
}

/// A random event, valid or not, over a small id space so that conflicts
/// (duplicates, unknown ids, missing nodes) are frequent.
fn random_event(rng: &mut SplitMix64) -> Event {
    let c = name(if rng.below(4) == 0 { "other" } else { "docs" });
    let id = RecordId(rng.below(40));
    let dim = if rng.below(20) == 0 { 3 } else { 4 };
    let vector: Vec<i32> = (0..dim)
        .map(|_| rng.below(1 << 20) as i32 - (1 << 19))
        .collect();
    let ids = |rng: &mut SplitMix64| -> Vec<RecordId> {
        (0..1 + rng.below(4))
            .map(|_| RecordId(rng.below(40)))
            .collect()
    };
    match rng.below(15) {
        0 => Event::CreateCollection {
            name: c,
            config: CollectionConfig {
                dim: 4,
                metric: Metric::L2,
                index: IndexParams::default(),
            },
        },
        1 => Event::DropCollection { name: c },
        2 | 3 => Event::Insert {
            collection: c,
            record: Record {
                id,
                vector,
                tag: rng.below(3),
                metadata: vec![1; rng.below(5) as usize],
            },
        },
        4 => {
            let mut batch = Batch::new(4);
            for _ in 0..1 + rng.below(5) {
                let v: Vec<i32> = (0..4).map(|_| rng.below(1000) as i32).collect();
                batch.push(RecordId(rng.below(40)), &v, rng.below(3), &[2, 3]);
            }
            Event::InsertBatch {
                collection: c,
                batch,
            }
        }
        5 => Event::Delete { collection: c, id },
        6 => Event::SetTag {
            collection: c,
            id,
            tag: rng.below(3),
        },
        7 => Event::SetMetadata {
            collection: c,
            id,
            metadata: vec![9; rng.below(4) as usize],
        },
        8 => Event::CreateNode {
            node: NodeId(rng.below(6)),
            label: rng.below(2),
        },
        9 => Event::DeleteNode {
            node: NodeId(rng.below(6)),
        },
        10 => Event::CreateEdge {
            from: NodeId(rng.below(6)),
            to: NodeId(rng.below(6)),
            label: rng.below(2),
        },
        11 => Event::DeleteEdge {
            from: NodeId(rng.below(6)),
            to: NodeId(rng.below(6)),
            label: rng.below(2),
        },
        12 => Event::DeleteBatch {
            collection: c,
            ids: ids(rng),
        },
        13 => Event::UpdateBatch {
            collection: c,
            ids: ids(rng),
            tag: (rng.below(3) != 0).then(|| rng.below(3)),
            metadata: (rng.below(3) != 0).then(|| vec![7; rng.below(4) as usize]),
        },
        _ => Event::DropCollections {
            names: (0..1 + rng.below(2))
                .map(|_| name(if rng.below(2) == 0 { "other" } else { "docs" }))
                .collect(),
        },
    }
}

/// Over thousands of random events: a rejected event leaves the hash as it
/// was, and after every event the cached hash equals the hash from scratch.
#[test]
fn rejected_events_change_nothing_and_cache_is_exact() {
    for seed in 0..20u64 {
        let mut rng = SplitMix64::new(seed);
        let mut state = State::new();
        state.apply(&create(4)).unwrap();
        let mut rejected = 0;
        for step in 0..400 {
            let event = random_event(&mut rng);
            let before = state.state_hash();
            match state.apply(&event) {
                Ok(_) => {}
                Err(_) => {
                    rejected += 1;
                    assert_eq!(
                        state.state_hash(),
                        before,
                        "seed {seed} step {step}: {event:?}"
                    );
                }
            }
            assert_eq!(
                state.state_hash(),
                state.state_hash_uncached(),
                "seed {seed} step {step}"
            );
        }
        assert!(
            rejected > 0,
            "seed {seed}: the workload must exercise rejections"
        );
    }
}

/// Each kind of bad input is rejected with the error that names it.
#[test]
fn bad_input_named() {
    let mut s = State::new();
    s.apply(&create(2)).unwrap();
    s.apply(&insert(1, vec![1, 2], 0)).unwrap();
    assert!(matches!(
        s.apply(&insert(1, vec![1, 2], 0)),
        Err(ApplyError::DuplicateId { .. })
    ));
    assert!(matches!(
        s.apply(&insert(2, vec![1, 2, 3], 0)),
        Err(ApplyError::DimensionMismatch {
            expected: 2,
            got: 3,
            ..
        })
    ));
    let big = Event::SetMetadata {
        collection: name("docs"),
        id: RecordId(1),
        metadata: vec![0; limits::METADATA_BYTES_MAX as usize + 1],
    };
    assert!(matches!(
        s.apply(&big),
        Err(ApplyError::MetadataTooLarge { .. })
    ));
    assert!(matches!(
        s.apply(&Event::Delete {
            collection: name("nope"),
            id: RecordId(1)
        }),
        Err(ApplyError::UnknownCollection(_))
    ));
    assert!(matches!(
        s.apply(&create(2)),
        Err(ApplyError::CollectionExists(_))
    ));
    let mut batch = Batch::new(2);
    batch.push(RecordId(5), &[0, 0], 0, &[]);
    batch.push(RecordId(5), &[0, 0], 0, &[]);
    let dup = Event::InsertBatch {
        collection: name("docs"),
        batch,
    };
    assert!(matches!(
        s.apply(&dup),
        Err(ApplyError::DuplicateId {
            id: RecordId(5),
            ..
        })
    ));
    assert_eq!(s.collection(&name("docs")).unwrap().rows(), 1);
}

/// Exact search returns the first k of all live rows sorted by
/// (distance, id), with and without a tag filter, including ties.
#[test]
fn exact_search_total_order() {
    let mut s = State::new();
    s.apply(&create(2)).unwrap();
    let mut rng = SplitMix64::new(7);
    for id in 0..300u64 {
        // Few distinct points: many exact ties.
        let v = vec![(rng.below(5) as i32) << 16, (rng.below(5) as i32) << 16];
        s.apply(&insert(id, v, id % 3)).unwrap();
    }
    for id in (0..300u64).step_by(7) {
        s.apply(&Event::Delete {
            collection: name("docs"),
            id: RecordId(id),
        })
        .unwrap();
    }
    let c = s.collection(&name("docs")).unwrap();
    let q = [2 << 16, 1 << 16];
    for tag in [None, Some(1)] {
        let mut all: Vec<(Distance, RecordId)> = (0..c.rows())
            .filter(|&r| !c.deleted()[r] && tag.is_none_or(|t| c.tags()[r] == t))
            .map(|r| {
                let v = c.vector(r);
                let d = (i128::from(v[0] - q[0])).pow(2) + (i128::from(v[1] - q[1])).pow(2);
                (Distance(d), c.ids()[r])
            })
            .collect();
        all.sort();
        for k in [1, 10, 57, 1000] {
            let got = c.search_exact(&q, k, tag);
            assert_eq!(got, all[..k.min(all.len())].to_vec(), "k {k} tag {tag:?}");
        }
    }
}

/// Graph: deleting a node removes its edges both ways; edges need nodes.
#[test]
fn graph_node_delete_cascades() {
    let mut s = State::new();
    for n in 0..3 {
        s.apply(&Event::CreateNode {
            node: NodeId(n),
            label: 0,
        })
        .unwrap();
    }
    s.apply(&Event::CreateEdge {
        from: NodeId(0),
        to: NodeId(1),
        label: 4,
    })
    .unwrap();
    s.apply(&Event::CreateEdge {
        from: NodeId(2),
        to: NodeId(0),
        label: 4,
    })
    .unwrap();
    s.apply(&Event::CreateEdge {
        from: NodeId(1),
        to: NodeId(2),
        label: 4,
    })
    .unwrap();
    assert!(matches!(
        s.apply(&Event::CreateEdge {
            from: NodeId(0),
            to: NodeId(9),
            label: 1
        }),
        Err(ApplyError::UnknownNode(NodeId(9)))
    ));
    s.apply(&Event::DeleteNode { node: NodeId(0) }).unwrap();
    let edges: Vec<_> = s.graph().edges().collect();
    assert_eq!(edges, vec![(NodeId(1), NodeId(2), 4)]);
}

/// Restoring every row (live and deleted, in row order) into a fresh state
/// gives the same hash as the state that applied the events.
#[test]
fn restore_rows_reproduces_hash() {
    let mut rng = SplitMix64::new(99);
    let mut s = State::new();
    s.apply(&create(4)).unwrap();
    for _ in 0..2000 {
        let _ = s.apply(&random_event(&mut rng));
    }
    let mut r = State::new();
    for c in s.collections() {
        r.apply(&Event::CreateCollection {
            name: c.name().clone(),
            config: *c.config(),
        })
        .unwrap();
        let target = r.collection_for_restore(c.name()).unwrap();
        for row in 0..c.rows() {
            target
                .restore_row(
                    c.ids()[row],
                    c.vector(row),
                    c.tags()[row],
                    c.metadata(row),
                    c.deleted()[row],
                )
                .unwrap();
        }
    }
    for (from, to, label) in s.graph().edges() {
        for n in [from, to] {
            if r.graph().node_label(n).is_none() {
                r.apply(&Event::CreateNode {
                    node: n,
                    label: s.graph().node_label(n).unwrap(),
                })
                .unwrap();
            }
        }
        r.apply(&Event::CreateEdge { from, to, label }).unwrap();
    }
    for (node, label) in s.graph().nodes() {
        if r.graph().node_label(node).is_none() {
            r.apply(&Event::CreateNode { node, label }).unwrap();
        }
    }
    assert_eq!(r.state_hash(), s.state_hash());
}

/// Exact search over rows the compact copy holds (pruned by its distance
/// bounds) still returns exactly the first k of a sort of all live
/// matching rows: with ties, after deletes and tag changes, for rows past
/// the copy, and once a row too large for the copy turns the bounds off.
#[test]
fn bounded_exact_search_equals_sort() {
    let dim = 20usize;
    let mut s = State::new();
    s.apply(&create(dim as u32)).unwrap();
    let mut rng = SplitMix64::new(21);
    // Coarse grid (many ties) and fine noise, at magnitudes near 2^18.
    let point = |rng: &mut SplitMix64| -> Vec<i32> {
        (0..dim)
            .map(|_| {
                let coarse = (rng.below(7) as i32 - 3) << 16;
                // Noise below the copy's shift (2^8 here) makes rows that
                // share a compact form but not an exact distance.
                match rng.below(3) {
                    0 => coarse,
                    1 => coarse + rng.below(1 << 14) as i32,
                    _ => coarse + rng.below(1 << 9) as i32,
                }
            })
            .collect()
    };
    for id in 0..700u64 {
        let v = point(&mut rng);
        s.apply(&insert(id, v, id % 4)).unwrap();
    }
    for id in (0..700u64).step_by(9) {
        s.apply(&Event::Delete {
            collection: name("docs"),
            id: RecordId(id),
        })
        .unwrap();
    }
    for id in (1..700u64).step_by(13) {
        s.apply(&Event::SetTag {
            collection: name("docs"),
            id: RecordId(id),
            tag: 2,
        })
        .ok();
    }
    s.build_indexes(&crate::hnsw::Sequential);
    let check = |s: &State, rng: &mut SplitMix64, faithful: bool| {
        let c = s.collection(&name("docs")).unwrap();
        assert!(c.indexed_rows() >= 640 && c.indexed_rows() < c.rows());
        assert_eq!(c.compact.is_faithful(), faithful);
        for round in 0..40 {
            let q: Vec<i32> = if round % 4 == 0 {
                c.vector(rng.below(c.rows() as u64) as usize).to_vec()
            } else {
                point(rng)
            };
            for tag in [None, Some(0), Some(2), Some(3)] {
                let mut all: Vec<(Distance, RecordId)> = (0..c.rows())
                    .filter(|&r| !c.deleted()[r] && tag.is_none_or(|t| c.tags()[r] == t))
                    .map(|r| {
                        let d: i128 = c
                            .vector(r)
                            .iter()
                            .zip(&q)
                            .map(|(&a, &b)| (i128::from(a) - i128::from(b)).pow(2))
                            .sum();
                        (Distance(d), c.ids()[r])
                    })
                    .collect();
                all.sort();
                for k in [1, 10, 33] {
                    let got = c.search_exact(&q, k, tag);
                    assert_eq!(got, all[..k.min(all.len())].to_vec(), "k {k} tag {tag:?}");
                }
            }
        }
    };
    check(&s, &mut rng, true);
    // A row 64 times larger than the first block's range: it clamps, the
    // copy is no longer faithful, and the scan is exact row by row.
    let mut big = s.clone();
    let before = big.collection(&name("docs")).unwrap().rows() as u64;
    for id in 0..64 {
        let v: Vec<i32> = (0..dim).map(|i| (i as i32 - 10) << 22).collect();
        big.apply(&insert(10_000 + id, v, 1)).unwrap();
    }
    big.build_indexes(&crate::hnsw::Sequential);
    assert!(big.collection(&name("docs")).unwrap().indexed_rows() as u64 > before);
    check(&big, &mut rng, false);
}

/// A case where the compact order and the exact order disagree: the
/// nearer row by compact distance is the farther one exactly, and only
/// the bounds' slack keeps the exact winner among the candidates.
#[test]
fn bounded_exact_search_keeps_rows_the_compact_order_misranks() {
    let mut s = State::new();
    s.apply(&create(1)).unwrap();
    // Far rows fixing the copy's shift at 8 (largest 224,000 >> 8 = 875).
    for id in 0..62u64 {
        s.apply(&insert(id, vec![100_000 + 2_000 * id as i32], 0))
            .unwrap();
    }
    // Query 255: compact 0. P = 11·256: compact 11, exact distance 2,561.
    // N = −10·256: compact −10, exact distance 2,815.
    s.apply(&insert(100, vec![11 << 8], 0)).unwrap();
    s.apply(&insert(101, vec![-10 << 8], 0)).unwrap();
    s.build_indexes(&crate::hnsw::Sequential);
    let c = s.collection(&name("docs")).unwrap();
    assert_eq!(c.indexed_rows(), 64);
    assert_eq!(c.compact.shift(), Some(8));
    let got = c.search_exact(&[255], 1, None);
    assert_eq!(got, vec![(Distance(2_561 * 2_561), RecordId(100))]);
}

/// A batch clashing with a stored id is refused whether its ids are all
/// above the stored ones (the fast path) or not; ids above every stored
/// one are accepted; a deleted id may come back.
#[test]
fn batch_duplicates_against_stored_ids() {
    let mut s = State::new();
    s.apply(&create(2)).unwrap();
    for id in 0..10u64 {
        s.apply(&insert(id, vec![id as i32, 0], 0)).unwrap();
    }
    let batch = |ids: &[u64]| {
        let mut b = Batch::new(2);
        for &id in ids {
            b.push(RecordId(id), &[1, 2], 0, &[]);
        }
        Event::InsertBatch {
            collection: name("docs"),
            batch: b,
        }
    };
    for (ids, clash) in [
        (&[20u64, 5][..], Some(5)),
        (&[9, 30][..], Some(9)),
        (&[11, 11][..], Some(11)),
    ] {
        let before = s.state_hash();
        match s.apply(&batch(ids)) {
            Err(ApplyError::DuplicateId { id, .. }) => assert_eq!(Some(id.0), clash),
            other => panic!("{ids:?}: {other:?}"),
        }
        assert_eq!(s.state_hash(), before);
    }
    s.apply(&batch(&[10, 12])).unwrap();
    s.apply(&Event::Delete {
        collection: name("docs"),
        id: RecordId(12),
    })
    .unwrap();
    // 12 was the largest id and is gone: 11 and 12 are above every live id.
    s.apply(&batch(&[11, 12])).unwrap();
    assert_eq!(s.collection(&name("docs")).unwrap().live(), 13);
}

/// Proves the batch events of one SQL statement are all or nothing: a
/// DeleteBatch, UpdateBatch or DropCollections whose last element is bad
/// (unknown, repeated) changes nothing, and a good one changes every
/// element.
#[test]
fn batch_events_are_all_or_nothing() {
    let other = Event::CreateCollection {
        name: name("other"),
        config: CollectionConfig {
            dim: 4,
            metric: Metric::L2,
            index: IndexParams::default(),
        },
    };
    let mut s = State::new();
    s.apply(&create(4)).unwrap();
    s.apply(&other).unwrap();
    for id in 0..5 {
        s.apply(&insert(id, vec![id as i32; 4], 1)).unwrap();
    }
    let before = s.state_hash();
    let docs = name("docs");
    let ids = |list: &[u64]| list.iter().map(|&i| RecordId(i)).collect::<Vec<_>>();
    let refused = [
        (
            Event::DeleteBatch {
                collection: docs.clone(),
                ids: ids(&[0, 1, 9]),
            },
            ApplyError::UnknownRecord {
                collection: docs.clone(),
                id: RecordId(9),
            },
        ),
        (
            Event::DeleteBatch {
                collection: docs.clone(),
                ids: ids(&[0, 1, 0]),
            },
            ApplyError::RepeatedId {
                collection: docs.clone(),
                id: RecordId(0),
            },
        ),
        (
            Event::DeleteBatch {
                collection: docs.clone(),
                ids: Vec::new(),
            },
            ApplyError::BadBatchSize,
        ),
        (
            Event::UpdateBatch {
                collection: docs.clone(),
                ids: ids(&[2, 3, 9]),
                tag: Some(5),
                metadata: Some(vec![1]),
            },
            ApplyError::UnknownRecord {
                collection: docs.clone(),
                id: RecordId(9),
            },
        ),
        (
            Event::UpdateBatch {
                collection: docs.clone(),
                ids: ids(&[2, 3]),
                tag: Some(5),
                metadata: Some(vec![0; limits::METADATA_BYTES_MAX as usize + 1]),
            },
            ApplyError::MetadataTooLarge {
                id: RecordId(2),
                len: u64::from(limits::METADATA_BYTES_MAX) + 1,
            },
        ),
        (
            Event::UpdateBatch {
                collection: docs.clone(),
                ids: ids(&[2]),
                tag: None,
                metadata: None,
            },
            ApplyError::EmptyUpdate,
        ),
        (
            Event::DropCollections {
                names: vec![name("other"), docs.clone(), name("missing")],
            },
            ApplyError::UnknownCollection(name("missing")),
        ),
        (
            Event::DropCollections {
                names: vec![name("other"), docs.clone(), name("other")],
            },
            ApplyError::RepeatedCollection(name("other")),
        ),
    ];
    for (event, want) in refused {
        assert_eq!(s.apply(&event), Err(want), "{event:?}");
        assert_eq!(s.state_hash(), before, "{event:?} changed the state");
    }

    s.apply(&Event::UpdateBatch {
        collection: docs.clone(),
        ids: ids(&[3, 1]),
        tag: Some(8),
        metadata: Some(vec![4, 4]),
    })
    .unwrap();
    let c = s.collection(&docs).unwrap();
    for id in [1, 3] {
        let row = c.row_of(RecordId(id)).unwrap() as usize;
        assert_eq!((c.tags()[row], c.metadata(row)), (8, &[4u8, 4][..]));
    }
    assert_eq!(c.tags()[c.row_of(RecordId(2)).unwrap() as usize], 1);
    assert_eq!(c.tag_count(8), 2);
    assert_eq!(c.tag_count(1), 3);
    s.apply(&Event::DeleteBatch {
        collection: docs.clone(),
        ids: ids(&[4, 0]),
    })
    .unwrap();
    let c = s.collection(&docs).unwrap();
    assert_eq!(c.live(), 3);
    assert!(c.row_of(RecordId(0)).is_none() && c.row_of(RecordId(4)).is_none());
    assert_eq!(s.state_hash(), s.state_hash_uncached());
    s.apply(&Event::DropCollections {
        names: vec![name("other"), docs.clone()],
    })
    .unwrap();
    assert_eq!(s.collections().len(), 0);
}

/// Proves a batch event gives the same state hash as the single events it
/// stands for, applied one by one.
#[test]
fn batch_events_equal_their_single_events() {
    let mut singles = State::new();
    let mut batched = State::new();
    for s in [&mut singles, &mut batched] {
        s.apply(&create(4)).unwrap();
        for id in 0..6 {
            s.apply(&insert(id, vec![id as i32; 4], 0)).unwrap();
        }
    }
    let docs = name("docs");
    for id in [5, 1] {
        singles
            .apply(&Event::SetTag {
                collection: docs.clone(),
                id: RecordId(id),
                tag: 3,
            })
            .unwrap();
        singles
            .apply(&Event::SetMetadata {
                collection: docs.clone(),
                id: RecordId(id),
                metadata: vec![1, 2],
            })
            .unwrap();
    }
    for id in [2, 0] {
        singles
            .apply(&Event::Delete {
                collection: docs.clone(),
                id: RecordId(id),
            })
            .unwrap();
    }
    batched
        .apply(&Event::UpdateBatch {
            collection: docs.clone(),
            ids: vec![RecordId(5), RecordId(1)],
            tag: Some(3),
            metadata: Some(vec![1, 2]),
        })
        .unwrap();
    batched
        .apply(&Event::DeleteBatch {
            collection: docs.clone(),
            ids: vec![RecordId(2), RecordId(0)],
        })
        .unwrap();
    assert_eq!(batched.state_hash(), singles.state_hash());
}

mod tables {
    use super::*;
    use crate::table::{
        ColumnDef, ColumnType, ColumnValues, ScalarType, TableSchema, column_flags,
    };
    use alloc::string::{String, ToString};

    fn schema() -> TableSchema {
        let col = |name: &str, ty, type_mod, flags| ColumnDef {
            name: String::from(name),
            ty,
            type_mod,
            flags,
            default: None,
            index: None,
            references: None,
        };
        TableSchema {
            uniques: Default::default(),
            columns: vec![
                col(
                    "id",
                    ColumnType::Scalar(ScalarType::Int64),
                    0,
                    column_flags::PRIMARY_KEY,
                ),
                col("embedding", ColumnType::Vector { half: false }, 2, 0),
                col(
                    "content",
                    ColumnType::Scalar(ScalarType::Text),
                    5,
                    column_flags::NOT_NULL | column_flags::UNIQUE,
                ),
                col("n", ColumnType::Scalar(ScalarType::Int32), 0, 0),
            ],
        }
    }

    fn create_table() -> Event {
        Event::CreateTable {
            name: name("items"),
            config: CollectionConfig {
                dim: 2,
                metric: Metric::L2,
                index: IndexParams::default(),
            },
            schema: schema(),
        }
    }

    /// Rows `(id, content, n)` as one `InsertRows`.
    fn rows(rows: &[(i64, Option<&str>, Option<i32>)]) -> Event {
        let mut batch = Batch::new(2);
        let mut cols = vec![ColumnValues::default(); 3];
        for &(id, content, n) in rows {
            batch.push(RecordId(id as u64), &[id as i32, 1], 0, &[]);
            cols[0].push(Some(&id.to_le_bytes()));
            cols[1].push(content.map(str::as_bytes));
            cols[2].push(n.map(i32::to_le_bytes).as_ref().map(|b| &b[..]));
        }
        Event::InsertRows {
            collection: name("items"),
            batch,
            columns: cols,
        }
    }

    /// A table without a vector column: its collection has dimension 1
    /// (another dimension is refused), its records keep the vector [0],
    /// and it has no graph however many rows it holds.
    #[test]
    fn tables_without_a_vector_column() {
        let mut schema = schema();
        schema.columns.remove(1);
        let create = |dim| Event::CreateTable {
            name: name("plain"),
            config: CollectionConfig {
                dim,
                metric: Metric::L2,
                index: IndexParams::default(),
            },
            schema: schema.clone(),
        };
        let mut s = State::new();
        assert!(s.apply(&create(2)).is_err());
        s.apply(&create(1)).unwrap();
        let n = crate::hnsw::BLOCK_ROWS + 1;
        let mut batch = Batch::new(1);
        let mut cols = vec![ColumnValues::default(); 3];
        for id in 1..=n as i64 {
            batch.push(RecordId(id as u64), &[0], 0, &[]);
            cols[0].push(Some(&id.to_le_bytes()));
            // `content` is unique (at most 5 characters): its own per row.
            let digit = |k: i64| b'a' + (id / k % 26) as u8;
            cols[1].push(Some(&[digit(1), digit(26), digit(676)]));
            cols[2].push(None);
        }
        s.apply(&Event::InsertRows {
            collection: name("plain"),
            batch,
            columns: cols,
        })
        .unwrap();
        let c = s.collection(&name("plain")).unwrap();
        assert_eq!(c.live(), n);
        assert!(!c.index_pending());
        s.build_indexes(&crate::hnsw::Sequential);
        assert_eq!(s.collection(&name("plain")).unwrap().indexed_rows(), 0);
    }

    /// A table's NULL vectors: a record tagged `NULL_VECTOR_TAG` with the
    /// zero vector, allowed only where the vector column takes NULL. No
    /// search returns such a record, through the graph, exactly or among
    /// given rows, and a search for its tag finds nothing; a replacement
    /// that gives it a vector makes it a candidate again; replay gives
    /// the same state hash.
    #[test]
    fn null_vectors_in_tables() {
        use crate::hnsw::SearchOptions;
        use crate::table::NULL_VECTOR_TAG;
        // 300 rows (the graph covers whole blocks of 64); every third
        // row's vector is NULL.
        let n = 300i64;
        let null = |id: i64| id % 3 == 0;
        let vector = |id: i64| {
            [
                ((id * 37) % 101 - 50) as i32 * 256,
                ((id * 11) % 23) as i32 * 256,
            ]
        };
        let event = |ids: &[i64], replace: bool| {
            let mut batch = Batch::new(2);
            let mut cols = vec![ColumnValues::default(); 3];
            for &id in ids {
                let (v, tag) = match null(id) && !replace {
                    true => ([0, 0], NULL_VECTOR_TAG),
                    false => (vector(id), 0),
                };
                batch.push(RecordId(id as u64), &v, tag, &[]);
                cols[0].push(Some(&id.to_le_bytes()));
                let content = id.to_string();
                cols[1].push(Some(content.as_bytes()));
                cols[2].push(None);
            }
            let collection = name("items");
            match replace {
                false => Event::InsertRows {
                    collection,
                    batch,
                    columns: cols,
                },
                true => Event::ReplaceRows {
                    collection,
                    batch,
                    columns: cols,
                },
            }
        };
        let all: Vec<i64> = (1..=n).collect();
        let mut log = vec![create_table(), event(&all, false)];
        let mut s = State::new();
        for e in &log {
            s.apply(e).unwrap();
        }
        s.build_indexes(&crate::hnsw::Sequential);
        let c = s.collection(&name("items")).unwrap();
        assert_eq!(c.tag_count(NULL_VECTOR_TAG), 100);
        assert_eq!(c.search_tag(None), Some(Some(0)));
        assert_eq!(c.search_tag(Some(NULL_VECTOR_TAG)), None);
        // The graph links every row with a vector and none without.
        let reachable = c.index().reachable();
        for (row, &r) in reachable.iter().enumerate() {
            let has_vector = c.tags()[row] != NULL_VECTOR_TAG;
            assert_eq!(r, has_vector, "row {row}");
            if !has_vector {
                assert!(c.index().links(row as u32, 0).is_empty());
            }
        }

        // The exact answer, computed here: squared L2 over the rows that
        // have a vector, ties by id.
        let truth = |q: [i32; 2], k: usize, with: &dyn Fn(i64) -> bool| -> Vec<u64> {
            let mut d: Vec<(i64, i64)> = all
                .iter()
                .filter(|&&id| with(id))
                .map(|&id| {
                    let v = vector(id);
                    let (a, b) = (i64::from(v[0] - q[0]), i64::from(v[1] - q[1]));
                    (a * a + b * b, id)
                })
                .collect();
            d.sort_unstable();
            d.into_iter().take(k).map(|(_, id)| id as u64).collect()
        };
        let ids = |hits: Vec<(Distance, RecordId)>| -> Vec<u64> {
            hits.into_iter().map(|(_, id)| id.0).collect()
        };
        let allowed: Vec<u32> = (0..c.rows() as u32).collect();
        for q in [[0, 0], [12_800, 2_560], [-12_800, 0]] {
            let expected = truth(q, 10, &|id| !null(id));
            let exact = SearchOptions {
                ef: 64,
                exact: true,
                tag: None,
            };
            assert_eq!(ids(c.search(&q, 10, &exact)), expected);
            assert_eq!(ids(c.search_exact(&q, 10, None)), expected);
            assert_eq!(ids(c.search_among(&q, 10, &exact, &allowed)), expected);
            // Through the graph (ef above the row count: every row with a
            // vector is reached), never a NULL row.
            let graph = SearchOptions {
                ef: 400,
                exact: false,
                tag: None,
            };
            assert_eq!(ids(c.search(&q, 10, &graph)), expected);
            assert_eq!(ids(c.search_among(&q, 10, &graph, &allowed)), expected);
            // Asking for every row gives only the 200 with a vector.
            assert_eq!(c.search(&q, 300, &exact).len(), 200);
            // A search for the NULL rows' tag finds nothing.
            let by_tag = SearchOptions {
                ef: 64,
                exact: false,
                tag: Some(NULL_VECTOR_TAG),
            };
            assert!(c.search(&q, 10, &by_tag).is_empty());
            assert!(c.search_exact(&q, 10, Some(NULL_VECTOR_TAG)).is_empty());
        }

        // Refused, state unchanged: a NULL record whose vector is not
        // zero, another tag, and a NULL vector in a NOT NULL column.
        let before = s.state_hash();
        let bad = |s: &mut State, v: [i32; 2], tag: u64| {
            let mut batch = Batch::new(2);
            batch.push(RecordId(1000), &v, tag, &[]);
            let mut cols = vec![ColumnValues::default(); 3];
            cols[0].push(Some(&1000i64.to_le_bytes()));
            cols[1].push(Some(b"x"));
            cols[2].push(None);
            let e = Event::InsertRows {
                collection: name("items"),
                batch,
                columns: cols,
            };
            let err = s.apply(&e).unwrap_err();
            assert_eq!(s.state_hash(), before, "{err}");
            err
        };
        assert!(matches!(
            bad(&mut s, [0, 1], NULL_VECTOR_TAG),
            ApplyError::Row { .. }
        ));
        assert!(matches!(bad(&mut s, [1, 1], 2), ApplyError::Row { .. }));
        let mut strict = State::new();
        let mut not_null = schema();
        not_null.columns[1].flags = column_flags::NOT_NULL;
        strict
            .apply(&Event::CreateTable {
                name: name("items"),
                config: CollectionConfig {
                    dim: 2,
                    metric: Metric::L2,
                    index: IndexParams::default(),
                },
                schema: not_null,
            })
            .unwrap();
        let err = strict.apply(&event(&[3], false)).unwrap_err();
        assert!(err.to_string().contains("not-null"), "{err}");

        // Giving the NULL rows their vectors makes them candidates.
        let nulls: Vec<i64> = all.iter().copied().filter(|&id| null(id)).collect();
        log.push(event(&nulls, true));
        s.apply(log.last().unwrap()).unwrap();
        s.build_indexes(&crate::hnsw::Sequential);
        let c = s.collection(&name("items")).unwrap();
        assert_eq!(c.tag_count(NULL_VECTOR_TAG), 0);
        assert_eq!(c.search_tag(None), Some(None));
        let exact = SearchOptions {
            ef: 64,
            exact: true,
            tag: None,
        };
        assert_eq!(
            ids(c.search(&[0, 0], 10, &exact)),
            truth([0, 0], 10, &|_| true)
        );

        let mut replay = State::new();
        for e in &log {
            replay.apply(&Event::decode(&e.encode()).unwrap()).unwrap();
        }
        assert_eq!(replay.state_hash(), s.state_hash());
    }

    /// `rows` as a `ReplaceRows` of the same rows.
    fn replacing(event: Event) -> Event {
        let Event::InsertRows {
            collection,
            batch,
            columns,
        } = event
        else {
            unreachable!("rows builds InsertRows")
        };
        Event::ReplaceRows {
            collection,
            batch,
            columns,
        }
    }

    /// A `ReplaceRows` is a `DeleteBatch` of its ids then an `InsertRows`
    /// of its batch, in one event: the state hash after it equals the
    /// hash after the two events, the rows read back with their new
    /// vectors and values, a replaced row's unique value is free for its
    /// replacement, and a replacement of a row that is not live, or that
    /// takes a unique value another row holds, is refused with the state
    /// unchanged.
    #[test]
    fn replace_rows_is_delete_then_insert() {
        let start = || {
            let mut s = State::new();
            s.apply(&create_table()).unwrap();
            s.apply(&rows(&[(1, Some("a"), Some(7)), (2, Some("b"), None)]))
                .unwrap();
            s
        };
        let new = rows(&[(1, Some("a"), Some(8))]);
        let mut one = start();
        one.apply(&replacing(new.clone())).unwrap();
        let mut two = start();
        two.apply(&Event::DeleteBatch {
            collection: name("items"),
            ids: vec![RecordId(1)],
        })
        .unwrap();
        two.apply(&new).unwrap();
        assert_eq!(one.state_hash(), two.state_hash());
        assert_eq!(one.state_hash_uncached(), one.state_hash());
        let c = one.collection(&name("items")).unwrap();
        let row = c.row_of(RecordId(1)).unwrap() as usize;
        assert_eq!(c.vector(row), &[1, 1]);
        let n = c.table().unwrap().columns()[2].get(row).unwrap();
        assert_eq!(n, &8i32.to_le_bytes());

        let before = one.state_hash();
        // Row 3 does not exist; `b` is held by row 2, which is not replaced.
        for event in [
            replacing(rows(&[(3, Some("c"), None)])),
            replacing(rows(&[(1, Some("b"), None)])),
            replacing(rows(&[(1, Some("x"), None), (1, Some("y"), None)])),
        ] {
            let err = one.apply(&event).unwrap_err();
            assert_eq!(one.state_hash(), before, "{err}");
        }
    }

    /// Every malformed table write is refused and leaves the state hash
    /// as it was; each refusal names its cause.
    #[test]
    fn bad_table_writes_change_nothing() {
        let mut s = State::new();
        s.apply(&create_table()).unwrap();
        s.apply(&rows(&[(1, Some("a"), Some(7)), (2, Some("b"), None)]))
            .unwrap();
        let before = s.state_hash();
        let refused = |s: &mut State, e: Event| -> ApplyError {
            let err = s.apply(&e).unwrap_err();
            assert_eq!(s.state_hash(), before, "{err}");
            assert_eq!(s.state_hash_uncached(), before);
            err
        };
        let e = refused(&mut s, rows(&[(3, None, None)]));
        assert!(e.to_string().contains("not-null"), "{e}");
        let e = refused(&mut s, rows(&[(3, Some("a"), None)]));
        assert!(e.to_string().contains("unique"), "{e}");
        let e = refused(&mut s, rows(&[(3, Some("c"), None), (4, Some("c"), None)]));
        assert!(e.to_string().contains("unique"), "{e}");
        let e = refused(&mut s, rows(&[(3, Some("toolong"), None)]));
        assert!(e.to_string().contains("exceeds the column's 5"), "{e}");
        // The record id must be the integer key.
        let Event::InsertRows {
            collection,
            mut batch,
            columns,
        } = rows(&[(3, Some("c"), None)])
        else {
            unreachable!()
        };
        batch.ids[0] = RecordId(9);
        let e = refused(
            &mut s,
            Event::InsertRows {
                collection,
                batch,
                columns,
            },
        );
        assert!(e.to_string().contains("primary key"), "{e}");
        // A value of the wrong width, and text that is not UTF-8.
        let Event::InsertRows {
            collection,
            batch,
            mut columns,
        } = rows(&[(3, Some("c"), Some(1))])
        else {
            unreachable!()
        };
        let mut wide = columns.clone();
        wide[2] = ColumnValues::default();
        wide[2].push(Some(&[1, 2, 3]));
        let e = refused(
            &mut s,
            Event::InsertRows {
                collection: collection.clone(),
                batch: batch.clone(),
                columns: wide,
            },
        );
        assert!(e.to_string().contains("takes 4 bytes"), "{e}");
        columns[1] = ColumnValues::default();
        columns[1].push(Some(&[0xff]));
        let e = refused(
            &mut s,
            Event::InsertRows {
                collection,
                batch,
                columns,
            },
        );
        assert!(e.to_string().contains("UTF-8"), "{e}");
        // Legacy writes would leave the columns behind the rows.
        let e = refused(
            &mut s,
            Event::Insert {
                collection: name("items"),
                record: Record {
                    id: RecordId(5),
                    vector: vec![1, 2],
                    tag: 0,
                    metadata: vec![],
                },
            },
        );
        assert!(matches!(e, ApplyError::TableNeedsColumns(_)), "{e}");
        // An update that takes another row's unique value.
        let mut content = ColumnValues::default();
        content.push(Some(b"a"));
        let e = refused(
            &mut s,
            Event::UpdateRows {
                collection: name("items"),
                ids: vec![RecordId(2)],
                columns: vec![(1, content)],
            },
        );
        assert!(e.to_string().contains("unique"), "{e}");
    }

    /// Scalar values are part of the state hash; a deleted row's unique
    /// value is free again; an update moves a unique value; replaying the
    /// log gives the same hash, and so does the encoded log.
    #[test]
    fn table_values_are_state() {
        let log = [
            create_table(),
            rows(&[(1, Some("a"), Some(7)), (2, Some("b"), None)]),
            Event::DeleteBatch {
                collection: name("items"),
                ids: vec![RecordId(1)],
            },
            rows(&[(3, Some("a"), Some(1))]),
            Event::UpdateRows {
                collection: name("items"),
                ids: vec![RecordId(2), RecordId(3)],
                columns: vec![(2, {
                    let mut v = ColumnValues::default();
                    v.push(None);
                    v.push(Some(&5i32.to_le_bytes()));
                    v
                })],
            },
        ];
        let mut s = State::new();
        for e in &log {
            s.apply(e).unwrap();
            let decoded = Event::decode(&e.encode()).unwrap();
            assert_eq!(&decoded, e);
        }
        let mut replay = State::new();
        for e in &log {
            replay.apply(&Event::decode(&e.encode()).unwrap()).unwrap();
        }
        assert_eq!(s.state_hash(), replay.state_hash());
        assert_eq!(s.state_hash(), s.state_hash_uncached());
        let t = s.collection(&name("items")).unwrap().table().unwrap();
        // Rows: 0 (id 1, deleted), 1 (id 2), 2 (id 3).
        assert_eq!(t.columns()[2].get(2), Some(&5i32.to_le_bytes()[..]));
        assert_eq!(t.columns()[2].get(1), None);
        assert_eq!(t.columns()[1].get(2), Some(&b"a"[..]));
        // One value differs: the hash differs.
        let mut other = State::new();
        for e in &log[..4] {
            other.apply(e).unwrap();
        }
        other
            .apply(&Event::UpdateRows {
                collection: name("items"),
                ids: vec![RecordId(2), RecordId(3)],
                columns: vec![(2, {
                    let mut v = ColumnValues::default();
                    v.push(None);
                    v.push(Some(&6i32.to_le_bytes()));
                    v
                })],
            })
            .unwrap();
        assert_ne!(s.state_hash(), other.state_hash());
    }

    /// The decoder refuses malformed column values: set bits past the
    /// last value, ends that go backwards, NULLs with bytes.
    #[test]
    fn decoder_refuses_malformed_values() {
        let good = rows(&[(1, Some("ab"), None)]).encode();
        assert!(Event::decode(&good).is_ok());
        let mut values = ColumnValues::default();
        values.push(Some(b"ab"));
        let mut encoded = Vec::new();
        Event::InsertRows {
            collection: name("items"),
            batch: {
                let mut b = Batch::new(2);
                b.push(RecordId(1), &[1, 1], 0, &[]);
                b
            },
            columns: vec![values],
        }
        .encode_into(&mut encoded);
        // The values are the event's last bytes: count, bitmap, end, "ab".
        let bitmap_at = encoded.len() - 2 - 4 - 1;
        let mut bad = encoded.clone();
        bad[bitmap_at] = 0b11;
        assert_eq!(
            Event::decode(&bad).unwrap_err().kind,
            crate::event::DecodeErrorKind::BadValues
        );
        let mut null_with_bytes = encoded.clone();
        null_with_bytes[bitmap_at] = 0;
        assert_eq!(
            Event::decode(&null_with_bytes).unwrap_err().kind,
            crate::event::DecodeErrorKind::BadValues
        );
    }

    mod alter {
        use super::*;
        use crate::table::AlterAction;

        fn alter(actions: Vec<AlterAction>) -> Event {
            Event::AlterTable {
                collection: name("items"),
                actions,
            }
        }

        /// A table named `table` with `schema`, holding rows `(id,
        /// values)` (one value per scalar column), then the rows of
        /// `deleted` deleted: built with ordinary events only.
        fn built(
            table: &str,
            schema: TableSchema,
            rows: &[(i64, Vec<Option<Vec<u8>>>)],
            deleted: &[u64],
        ) -> State {
            let mut s = State::new();
            s.apply(&Event::CreateTable {
                name: name(table),
                config: CollectionConfig {
                    dim: 2,
                    metric: Metric::L2,
                    index: IndexParams::default(),
                },
                schema,
            })
            .unwrap();
            let mut batch = Batch::new(2);
            let mut cols = vec![ColumnValues::default(); rows[0].1.len()];
            for (id, values) in rows {
                batch.push(RecordId(*id as u64), &[*id as i32, 1], 0, &[]);
                for (c, v) in values.iter().enumerate() {
                    cols[c].push(v.as_deref());
                }
            }
            s.apply(&Event::InsertRows {
                collection: name(table),
                batch,
                columns: cols,
            })
            .unwrap();
            if !deleted.is_empty() {
                s.apply(&Event::DeleteBatch {
                    collection: name(table),
                    ids: deleted.iter().map(|&id| RecordId(id)).collect(),
                })
                .unwrap();
            }
            s
        }

        fn b(bytes: &[u8]) -> Option<Vec<u8>> {
            Some(bytes.to_vec())
        }

        /// The three rows every test starts from, as values of `id`,
        /// `content`, `n`; row 2 is then deleted.
        fn base_rows() -> Vec<(i64, Vec<Option<Vec<u8>>>)> {
            vec![
                (
                    1,
                    vec![b(&1i64.to_le_bytes()), b(b"a"), b(&7i32.to_le_bytes())],
                ),
                (2, vec![b(&2i64.to_le_bytes()), b(b"b"), None]),
                (
                    3,
                    vec![b(&3i64.to_le_bytes()), b(b"c"), b(&9i32.to_le_bytes())],
                ),
            ]
        }

        fn base() -> State {
            let mut s = built("items", schema(), &base_rows(), &[2]);
            // Warm the chunk cache: a stale cached chunk would show below.
            s.state_hash();
            s
        }

        /// After `DROP COLUMN` the state hash is that of a table created
        /// without the column and given the same rows: the canonical
        /// encoding keeps no trace of the dropped column.
        #[test]
        fn dropped_column_hashes_as_never_declared() {
            let mut s = base();
            s.apply(&alter(vec![AlterAction::DropColumn { name: "n".into() }]))
                .unwrap();
            let mut narrow = schema();
            narrow.columns.remove(3);
            let rows: Vec<_> = base_rows()
                .into_iter()
                .map(|(id, mut v)| {
                    v.pop();
                    (id, v)
                })
                .collect();
            let mut reference = built("items", narrow, &rows, &[2]);
            assert_eq!(s.state_hash(), reference.state_hash());
            assert_eq!(s.state_hash(), s.state_hash_uncached());
            // Dropping a unique column frees nothing else: the key still
            // refuses a duplicate.
            let mut t = base();
            t.apply(&alter(vec![AlterAction::DropColumn {
                name: "content".into(),
            }]))
            .unwrap();
            assert_eq!(
                t.collection(&name("items"))
                    .unwrap()
                    .table()
                    .unwrap()
                    .columns()
                    .len(),
                2
            );
        }

        /// `ADD COLUMN` with a value gives every row the value (read back
        /// from the column), and the table hashes as one created with
        /// the column last and given the rows with that value.
        #[test]
        fn added_column_holds_its_value_in_every_row() {
            let five = 5i32.to_le_bytes();
            let column = ColumnDef {
                name: "score".into(),
                ty: ColumnType::Scalar(ScalarType::Int32),
                type_mod: 0,
                flags: column_flags::NOT_NULL,
                default: Some("5".into()),
                index: None,
                references: None,
            };
            let mut s = base();
            s.apply(&alter(vec![AlterAction::AddColumn {
                column: column.clone(),
                value: b(&five),
            }]))
            .unwrap();
            let c = s.collection(&name("items")).unwrap();
            let added = &c.table().unwrap().columns()[3];
            for row in 0..c.rows() {
                assert_eq!(added.get(row), Some(&five[..]), "row {row}");
            }
            let mut wide = schema();
            wide.columns.push(column);
            let rows: Vec<_> = base_rows()
                .into_iter()
                .map(|(id, mut v)| {
                    v.push(b(&five));
                    (id, v)
                })
                .collect();
            let mut reference = built("items", wide, &rows, &[2]);
            assert_eq!(s.state_hash(), reference.state_hash());
            assert_eq!(s.state_hash(), s.state_hash_uncached());
            // The new column takes writes like any other.
            s.apply(&Event::UpdateRows {
                collection: name("items"),
                ids: vec![RecordId(1)],
                columns: vec![(3, {
                    let mut v = ColumnValues::default();
                    v.push(Some(&6i32.to_le_bytes()));
                    v
                })],
            })
            .unwrap();
            assert_eq!(s.state_hash(), s.state_hash_uncached());
        }

        /// `RENAME COLUMN` and `RENAME TO` leave every row's bytes as
        /// they are: the table hashes as one created under the new names
        /// with the same rows. The old name is gone, and the collection
        /// counts as a new creation (its incarnation changed).
        #[test]
        fn renames_hash_as_created_under_the_new_names() {
            let mut s = base();
            let before = s.collection(&name("items")).unwrap().incarnation();
            s.apply(&alter(vec![
                AlterAction::RenameColumn {
                    from: "n".into(),
                    to: "count".into(),
                },
                AlterAction::RenameTable { to: name("things") },
            ]))
            .unwrap();
            assert!(s.collection(&name("items")).is_none());
            let renamed = s.collection(&name("things")).unwrap();
            assert_ne!(renamed.incarnation(), before);
            let mut schema2 = schema();
            schema2.columns[3].name = "count".into();
            let mut reference = built("things", schema2, &base_rows(), &[2]);
            assert_eq!(s.state_hash(), reference.state_hash());
            assert_eq!(s.state_hash(), s.state_hash_uncached());
            // Writes reach the table under its new name.
            s.apply(&Event::DeleteBatch {
                collection: name("things"),
                ids: vec![RecordId(1)],
            })
            .unwrap();
        }

        /// The rows of `table`'s btree index on scalar column `column`
        /// between `lower` and `upper` (order keys), sorted by row.
        fn indexed(
            table: &Table,
            column: usize,
            lower: core::ops::Bound<&[u8]>,
            upper: core::ops::Bound<&[u8]>,
        ) -> Vec<u32> {
            let mut rows: Vec<u32> = table.index_range(column, lower, upper).unwrap().collect();
            rows.sort_unstable();
            rows
        }

        /// A btree index (`CREATE INDEX`) holds exactly the live rows
        /// with a value, ordered by value: built over the rows a table
        /// already has, then kept through inserts, updates (to another
        /// value and to NULL) and deletes, and rebuilt by restoring the
        /// rows as snapshot loading does. Every range is checked against
        /// the rows selected here by comparing the integers and strings
        /// themselves. The table hashes as one declared with the index
        /// from the start; `DROP INDEX` forgets it; refused index
        /// actions change nothing.
        #[test]
        fn btree_index_holds_the_live_rows_in_order() {
            use core::ops::Bound::{self, Excluded, Included, Unbounded};
            let mut s = base();
            let before = s.state_hash();
            s.apply(&alter(vec![
                AlterAction::CreateIndex {
                    column: "n".into(),
                    name: "items_n_idx".into(),
                },
                AlterAction::CreateIndex {
                    column: "content".into(),
                    name: "by_content".into(),
                },
            ]))
            .unwrap();
            assert_ne!(s.state_hash(), before);
            let mut declared = schema();
            declared.columns[3].index = Some("items_n_idx".into());
            declared.columns[2].index = Some("by_content".into());
            let mut reference = built("items", declared.clone(), &base_rows(), &[2]);
            assert_eq!(s.state_hash(), reference.state_hash());
            assert_eq!(s.state_hash(), s.state_hash_uncached());

            // Rows 4..40 with n spread over negatives and positives,
            // every fifth NULL; some updated, some deleted.
            let n_of = |id: i64| ((id * 37) % 23 - 11) as i32;
            let mut batch = Batch::new(2);
            let mut cols = vec![ColumnValues::default(); 3];
            for id in 4..40i64 {
                batch.push(RecordId(id as u64), &[id as i32, 1], 0, &[]);
                cols[0].push(Some(&id.to_le_bytes()));
                cols[1].push(Some(alloc::format!("k{id:02}").as_bytes()));
                let n = n_of(id).to_le_bytes();
                cols[2].push((id % 5 != 0).then_some(&n[..]));
            }
            s.apply(&Event::InsertRows {
                collection: name("items"),
                batch,
                columns: cols,
            })
            .unwrap();
            let mut update = ColumnValues::default();
            update.push(Some(&100i32.to_le_bytes()));
            update.push(None);
            s.apply(&Event::UpdateRows {
                collection: name("items"),
                ids: vec![RecordId(6), RecordId(7)],
                columns: vec![(2, update)],
            })
            .unwrap();
            s.apply(&Event::DeleteBatch {
                collection: name("items"),
                ids: vec![RecordId(8), RecordId(21), RecordId(3)],
            })
            .unwrap();

            let c = s.collection(&name("items")).unwrap();
            let n_value = |row: usize| {
                c.table().unwrap().columns()[2]
                    .get(row)
                    .map(|v| i32::from_le_bytes(v.try_into().unwrap()))
            };
            let key = |v: i32| ScalarType::Int32.order_key(&v.to_le_bytes()).unwrap();
            let check = |table: &Table| {
                for lo in [-12, -11, -3, 0, 5, 11, 100, 101] {
                    for hi in [-11, -1, 0, 7, 11, 100, 200] {
                        let (kl, kh) = (key(lo), key(hi));
                        type Range<'a> =
                            (Bound<&'a [u8]>, Bound<&'a [u8]>, fn(i32, i32, i32) -> bool);
                        let ranges: [Range; 4] = [
                            (Included(&kl), Included(&kh), |v, l, h| l <= v && v <= h),
                            (Excluded(&kl), Excluded(&kh), |v, l, h| l < v && v < h),
                            (Included(&kl), Unbounded, |v, l, _| l <= v),
                            (Unbounded, Excluded(&kh), |v, _, h| v < h),
                        ];
                        for (lower, upper, keeps) in ranges {
                            let expected: Vec<u32> = (0..c.rows())
                                .filter(|&r| !c.deleted()[r])
                                .filter(|&r| n_value(r).is_some_and(|v| keeps(v, lo, hi)))
                                .map(|r| r as u32)
                                .collect();
                            assert_eq!(indexed(table, 2, lower, upper), expected, "{lo}..{hi}");
                        }
                    }
                }
                // Text by bytes: "k1" <= "k10" < … < "k19" < "k2".
                let expected: Vec<u32> = (0..c.rows())
                    .filter(|&r| !c.deleted()[r])
                    .filter(|&r| {
                        let v = c.table().unwrap().columns()[1].get(r).unwrap();
                        v >= &b"k1"[..] && v < &b"k2"[..]
                    })
                    .map(|r| r as u32)
                    .collect();
                assert_eq!(expected.len(), 10);
                assert_eq!(
                    indexed(table, 1, Included(b"k1"), Excluded(b"k2")),
                    expected
                );
                // Unindexed columns have no index.
                assert!(table.index_range(0, Unbounded, Unbounded).is_none());
            };
            check(c.table().unwrap());
            let live_with_n = (0..c.rows())
                .filter(|&r| !c.deleted()[r] && n_value(r).is_some())
                .count();
            assert_eq!(c.table().unwrap().index_len(2), Some(live_with_n));

            // Restored row by row, as from a snapshot.
            let mut restored = Table::new(c.table().unwrap().schema().clone());
            for row in 0..c.rows() {
                let values: Vec<Option<&[u8]>> = c
                    .table()
                    .unwrap()
                    .columns()
                    .iter()
                    .map(|col| col.get(row))
                    .collect();
                restored
                    .restore_row(row as u32, c.ids()[row].0, &values, c.deleted()[row])
                    .unwrap();
            }
            check(&restored);

            // Refused: a second index on a column, a taken name, an
            // unknown index or column, the vector column under a taken name.
            let hash = s.state_hash();
            for action in [
                AlterAction::CreateIndex {
                    column: "n".into(),
                    name: "other".into(),
                },
                AlterAction::CreateIndex {
                    column: "id".into(),
                    name: "by_content".into(),
                },
                AlterAction::CreateIndex {
                    column: "nothing".into(),
                    name: "x".into(),
                },
                // The vector column takes a name for its HNSW index, but
                // not one an index of the table has.
                AlterAction::CreateIndex {
                    column: "embedding".into(),
                    name: "by_content".into(),
                },
                AlterAction::DropIndex {
                    name: "nothing".into(),
                },
            ] {
                assert!(s.apply(&alter(vec![action.clone()])).is_err(), "{action:?}");
                assert_eq!(s.state_hash(), hash);
            }

            // DROP INDEX: the table hashes as declared without it.
            s.apply(&alter(vec![AlterAction::DropIndex {
                name: "items_n_idx".into(),
            }]))
            .unwrap();
            let table = s.collection(&name("items")).unwrap().table().unwrap();
            assert!(table.index_range(2, Unbounded, Unbounded).is_none());
            assert!(table.index_range(1, Unbounded, Unbounded).is_some());
            assert_eq!(s.state_hash(), s.state_hash_uncached());
        }

        /// A vector column declared without a dimension (`type_mod` 0):
        /// the collection has dimension 1 until `TypeVector` gives the
        /// column one, which it takes only once, in range, and only
        /// while the table has never held a row. Typed, with rows
        /// inserted in the same transaction, the table hashes as one
        /// declared `vector(3)` from the start and given the same rows.
        #[test]
        fn untyped_vector_column_takes_its_first_dimension() {
            let untyped = |type_mod: u32| {
                let mut s = schema();
                s.columns[1].type_mod = type_mod;
                s
            };
            let create = |schema: TableSchema, dim: u32| Event::CreateTable {
                name: name("items"),
                config: CollectionConfig {
                    dim,
                    metric: Metric::L2,
                    index: IndexParams::default(),
                },
                schema,
            };
            let rows = || {
                let mut batch = Batch::new(3);
                let mut cols = vec![ColumnValues::default(); 3];
                for id in 1..=4i64 {
                    batch.push(RecordId(id as u64), &[id as i32, 2, -3], 0, &[]);
                    cols[0].push(Some(&id.to_le_bytes()));
                    cols[1].push(Some(alloc::format!("r{id}").as_bytes()));
                    cols[2].push(Some(&(id as i32 * 10).to_le_bytes()));
                }
                Event::InsertRows {
                    collection: name("items"),
                    batch,
                    columns: cols,
                }
            };
            // Without a dimension the collection must have dimension 1.
            assert!(State::new().apply(&create(untyped(0), 3)).is_err());
            let mut s = State::new();
            s.apply(&create(untyped(0), 1)).unwrap();
            assert_eq!(s.collection(&name("items")).unwrap().dim(), 1);
            let hash = s.state_hash();
            for dim in [0, limits::DIM_MAX + 1] {
                assert!(
                    s.apply(&alter(vec![AlterAction::TypeVector { dim }]))
                        .is_err()
                );
                assert_eq!(s.state_hash(), hash);
            }
            s.apply(&Event::Transaction {
                events: vec![alter(vec![AlterAction::TypeVector { dim: 3 }]), rows()],
            })
            .unwrap();
            let c = s.collection(&name("items")).unwrap();
            assert_eq!((c.dim(), c.live()), (3, 4));
            let mut reference = State::new();
            reference.apply(&create(untyped(3), 3)).unwrap();
            reference.apply(&rows()).unwrap();
            assert_eq!(s.state_hash(), reference.state_hash());
            assert_eq!(s.state_hash(), s.state_hash_uncached());
            // Typed now: no second dimension.
            let hash = s.state_hash();
            assert!(
                s.apply(&alter(vec![AlterAction::TypeVector { dim: 3 }]))
                    .is_err()
            );
            assert_eq!(s.state_hash(), hash);
            // A table that held a row (here one without a vector, at
            // dimension 1) keeps the dimension it has.
            let mut held = State::new();
            held.apply(&create(untyped(0), 1)).unwrap();
            let mut batch = Batch::new(1);
            batch.push(RecordId(9), &[0], crate::table::NULL_VECTOR_TAG, &[]);
            let mut cols = vec![ColumnValues::default(); 3];
            cols[0].push(Some(&9i64.to_le_bytes()));
            cols[1].push(Some(b"n"));
            cols[2].push(None);
            held.apply(&Event::InsertRows {
                collection: name("items"),
                batch,
                columns: cols,
            })
            .unwrap();
            held.apply(&Event::DeleteBatch {
                collection: name("items"),
                ids: vec![RecordId(9)],
            })
            .unwrap();
            assert!(
                held.apply(&alter(vec![AlterAction::TypeVector { dim: 3 }]))
                    .is_err()
            );
        }

        /// Every refused `ALTER TABLE` changes nothing: not the hash, not
        /// the schema, not the incarnation — including one whose first
        /// action is valid and second is not (all or none).
        #[test]
        fn refused_alters_change_nothing() {
            let int_column = |name: &str, flags| ColumnDef {
                name: name.into(),
                ty: ColumnType::Scalar(ScalarType::Int32),
                type_mod: 0,
                flags,
                default: None,
                index: None,
                references: None,
            };
            let add = |column, value: Option<Vec<u8>>| AlterAction::AddColumn { column, value };
            let mut s = base();
            s.apply(&create(2)).unwrap();
            let hash = s.state_hash();
            let incarnation = s.collection(&name("items")).unwrap().incarnation();
            let bad: Vec<(Vec<AlterAction>, &str)> = vec![
                (vec![], "actions"),
                (
                    vec![AlterAction::DropColumn {
                        name: "embedding".into(),
                    }],
                    "vector column",
                ),
                (
                    vec![AlterAction::DropColumn { name: "id".into() }],
                    "primary key",
                ),
                (
                    vec![AlterAction::DropColumn {
                        name: "nope".into(),
                    }],
                    "does not exist",
                ),
                (
                    vec![add(int_column("m", column_flags::NOT_NULL), None)],
                    "null values",
                ),
                (
                    vec![add(
                        int_column("m", column_flags::UNIQUE),
                        b(&1i32.to_le_bytes()),
                    )],
                    "not a key",
                ),
                (vec![add(int_column("m", 0), b(&[1, 2]))], "bytes"),
                (
                    vec![add(
                        ColumnDef {
                            name: "v2".into(),
                            ty: ColumnType::Vector { half: false },
                            type_mod: 2,
                            flags: 0,
                            default: None,
                            index: None,
                            references: None,
                        },
                        None,
                    )],
                    "vector column can be added only",
                ),
                (vec![add(int_column("content", 0), None)], "twice"),
                (vec![add(int_column("", 0), None)], "empty"),
                (
                    vec![AlterAction::RenameColumn {
                        from: "n".into(),
                        to: "content".into(),
                    }],
                    "twice",
                ),
                (
                    vec![AlterAction::RenameTable { to: name("docs") }],
                    "exists",
                ),
                (
                    vec![AlterAction::RenameTable { to: name("items") }],
                    "exists",
                ),
                (
                    vec![
                        AlterAction::RenameTable { to: name("a") },
                        AlterAction::RenameTable { to: name("b") },
                    ],
                    "at most once",
                ),
                (
                    vec![
                        add(int_column("m", 0), None),
                        AlterAction::DropColumn { name: "id".into() },
                    ],
                    "primary key",
                ),
                (
                    vec![
                        AlterAction::DropColumn { name: "n".into() },
                        AlterAction::DropColumn { name: "n".into() },
                    ],
                    "does not exist",
                ),
            ];
            for (actions, why) in bad {
                let e = s.apply(&alter(actions.clone())).unwrap_err();
                assert!(e.to_string().contains(why), "{actions:?}: {e}");
                assert_eq!(s.state_hash(), hash, "{actions:?}");
                let c = s.collection(&name("items")).unwrap();
                assert_eq!(c.table().unwrap().schema(), &schema(), "{actions:?}");
                assert_eq!(c.incarnation(), incarnation);
            }
            // A collection of the fixed layout is not altered.
            let e = s
                .apply(&Event::AlterTable {
                    collection: name("docs"),
                    actions: vec![AlterAction::DropColumn { name: "tag".into() }],
                })
                .unwrap_err();
            assert!(matches!(e, ApplyError::NotATable(_)), "{e}");
            assert_eq!(s.state_hash(), hash);
        }

        /// Inside a transaction an `AlterTable` is checked against the
        /// whole state: renaming to a collection no other event of the
        /// transaction names is still refused (nothing changed), and an
        /// alter followed by a write in the new shape commits as the two
        /// events one after the other would.
        #[test]
        fn alters_inside_transactions() {
            let mut s = base();
            s.apply(&create(2)).unwrap();
            let hash = s.state_hash();
            let txn = Event::Transaction {
                events: vec![
                    Event::DeleteBatch {
                        collection: name("items"),
                        ids: vec![RecordId(1)],
                    },
                    alter(vec![AlterAction::RenameTable { to: name("docs") }]),
                ],
            };
            assert!(s.apply(&txn).is_err());
            assert_eq!(s.state_hash(), hash);
            assert!(s.collection(&name("items")).is_some());
            let events = vec![
                alter(vec![AlterAction::DropColumn { name: "n".into() }]),
                Event::UpdateRows {
                    collection: name("items"),
                    ids: vec![RecordId(3)],
                    columns: vec![(1, {
                        let mut v = ColumnValues::default();
                        v.push(Some(b"z"));
                        v
                    })],
                },
            ];
            let mut one_by_one = s.clone();
            for e in &events {
                one_by_one.apply(e).unwrap();
            }
            s.apply(&Event::Transaction { events }).unwrap();
            assert_eq!(s.state_hash(), one_by_one.state_hash());
        }

        /// A vector column is added to a table without one that never
        /// held a row (pgvector's README adds `embedding` so): the table
        /// then hashes as one created with it, at its dimension, and takes
        /// rows of that dimension. A table that held rows refuses it.
        #[test]
        fn vector_column_added_to_a_new_table() {
            let mut plain = schema();
            let vector = plain.columns.remove(1);
            let create = |schema: TableSchema, dim| Event::CreateTable {
                name: name("items"),
                config: CollectionConfig {
                    dim,
                    metric: Metric::L2,
                    index: IndexParams::default(),
                },
                schema,
            };
            let add = alter(vec![AlterAction::AddColumn {
                column: vector.clone(),
                value: None,
            }]);
            let mut s = State::new();
            s.apply(&create(plain.clone(), 1)).unwrap();
            s.apply(&add).unwrap();
            let mut reference = State::new();
            let mut wide = plain.clone();
            wide.columns.push(vector.clone());
            reference.apply(&create(wide, 2)).unwrap();
            assert_eq!(s.state_hash(), reference.state_hash());
            let row = |dim: u32| {
                let mut batch = Batch::new(dim);
                batch.push(RecordId(1), &vec![1; dim as usize], 0, &[]);
                let mut cols = vec![ColumnValues::default(); 3];
                cols[0].push(Some(&1i64.to_le_bytes()));
                cols[1].push(Some(b"a"));
                cols[2].push(None);
                Event::InsertRows {
                    collection: name("items"),
                    batch,
                    columns: cols,
                }
            };
            s.apply(&row(2)).unwrap();
            reference.apply(&row(2)).unwrap();
            assert_eq!(s.state_hash(), reference.state_hash());
            // A second vector column, or one added after a row was
            // written (even a deleted one), is refused.
            let mut second = vector.clone();
            second.name = "other".into();
            let e = s
                .apply(&alter(vec![AlterAction::AddColumn {
                    column: second,
                    value: None,
                }]))
                .unwrap_err();
            assert!(e.to_string().contains("can be added only"), "{e}");
            let mut held = State::new();
            held.apply(&create(plain, 1)).unwrap();
            held.apply(&row(1)).unwrap();
            held.apply(&Event::DeleteBatch {
                collection: name("items"),
                ids: vec![RecordId(1)],
            })
            .unwrap();
            let hash = held.state_hash();
            assert!(held.apply(&add).is_err());
            assert_eq!(held.state_hash(), hash);
        }

        /// A NOT NULL column without a value is refused while the table
        /// has live rows, and accepted once every row is deleted; the
        /// deleted rows then hold NULL, and restoring them (as snapshot
        /// loading does) accepts that.
        #[test]
        fn not_null_without_value_needs_an_empty_table() {
            let mut s = base();
            let column = ColumnDef {
                name: "m".into(),
                ty: ColumnType::Scalar(ScalarType::Int32),
                type_mod: 0,
                flags: column_flags::NOT_NULL,
                default: None,
                index: None,
                references: None,
            };
            let add = alter(vec![AlterAction::AddColumn {
                column,
                value: None,
            }]);
            assert!(s.apply(&add).is_err());
            s.apply(&Event::DeleteBatch {
                collection: name("items"),
                ids: vec![RecordId(1), RecordId(3)],
            })
            .unwrap();
            s.apply(&add).unwrap();
            let c = s.collection(&name("items")).unwrap();
            let t = c.table().unwrap();
            let mut restored = State::new();
            restored
                .apply(&Event::CreateTable {
                    name: name("items"),
                    config: *c.config(),
                    schema: t.schema().clone(),
                })
                .unwrap();
            let r = restored.collection_for_restore(&name("items")).unwrap();
            for row in 0..c.rows() {
                r.restore_row(
                    c.ids()[row],
                    c.vector(row),
                    c.tags()[row],
                    c.metadata(row),
                    c.deleted()[row],
                )
                .unwrap();
                let values: Vec<Option<&[u8]>> =
                    t.columns().iter().map(|col| col.get(row)).collect();
                r.restore_table_row(&values).unwrap();
            }
            assert!(r.restore_sequences(t.sequences()));
            assert_eq!(restored.state_hash(), s.state_hash());
        }
    }
}

/// Over random transactions of two to four random events: a transaction
/// is accepted exactly when its events, applied one by one to a copy of
/// the state, are all accepted, and then it leaves the copy's hash; a
/// refused one leaves the hash as it was.
#[test]
fn a_transaction_is_its_events_applied_in_turn_or_nothing() {
    let (mut accepted, mut refused) = (0, 0);
    for seed in 0..20u64 {
        let mut rng = SplitMix64::new(1000 + seed);
        let mut state = State::new();
        state.apply(&create(4)).unwrap();
        for step in 0..200 {
            let events: Vec<Event> = (0..2 + rng.below(3))
                .map(|_| random_event(&mut rng))
                .collect();
            let mut one_by_one = state.clone();
            let all_ok = events.iter().all(|e| one_by_one.apply(e).is_ok());
            let before = state.state_hash();
            let result = state.apply(&Event::Transaction {
                events: events.clone(),
            });
            assert_eq!(
                result.is_ok(),
                all_ok,
                "seed {seed} step {step}: {events:?}"
            );
            if all_ok {
                accepted += 1;
                assert_eq!(state.state_hash(), one_by_one.state_hash_uncached());
            } else {
                refused += 1;
                assert_eq!(state.state_hash(), before, "seed {seed} step {step}");
            }
            assert_eq!(state.state_hash(), state.state_hash_uncached());
        }
    }
    assert!(
        accepted > 100 && refused > 100,
        "{accepted} accepted, {refused} refused"
    );
}

/// The scratch copy a transaction is checked on holds only the collections
/// it names, yet the database-wide collection limit still counts the rest.
#[test]
fn a_transaction_cannot_pass_the_collection_limit() {
    let mut state = State::new();
    let config = CollectionConfig {
        dim: 2,
        metric: Metric::L2,
        index: IndexParams::default(),
    };
    let create = |n: u32| Event::CreateCollection {
        name: name(&alloc::format!("c{n}")),
        config,
    };
    for n in 0..limits::COLLECTIONS_MAX - 1 {
        state.apply(&create(n)).unwrap();
    }
    let before = state.state_hash();
    let two_more = Event::Transaction {
        events: vec![
            create(limits::COLLECTIONS_MAX),
            create(limits::COLLECTIONS_MAX + 1),
        ],
    };
    let err = state.apply(&two_more).unwrap_err();
    assert_eq!(
        err,
        ApplyError::InTransaction {
            index: 1,
            source: alloc::boxed::Box::new(ApplyError::TooManyCollections)
        }
    );
    assert_eq!(state.state_hash(), before);
    assert_eq!(
        state.collections().len(),
        limits::COLLECTIONS_MAX as usize - 1
    );
}

/// A transaction of fewer than two events, or holding a transaction, is
/// refused as such.
#[test]
fn transactions_of_one_event_or_nested_are_refused() {
    let mut state = State::new();
    let one = Event::Transaction {
        events: vec![create(4)],
    };
    assert_eq!(
        state.apply(&one).unwrap_err(),
        ApplyError::BadTransactionSize { count: 1 }
    );
    let nested = Event::Transaction {
        events: vec![
            create(4),
            Event::Transaction {
                events: vec![insert(1, vec![1; 4], 0), insert(2, vec![2; 4], 0)],
            },
        ],
    };
    assert_eq!(
        state.apply(&nested).unwrap_err(),
        ApplyError::NestedTransaction
    );
    assert_eq!(state.collections().len(), 0);
}

/// A collection re-indexed with another metric and HNSW parameters is,
/// hash for hash (rows, configuration, graph), the collection created
/// with them and given the same rows; a Reindex of another dimension or
/// with parameters out of range is refused, nothing changed.
#[test]
fn reindex_is_the_collection_created_so() {
    let config = |metric: Metric, m: u16| CollectionConfig {
        dim: 4,
        metric,
        index: IndexParams {
            m,
            ef_construction: 32,
            seed: 5,
        },
    };
    let mut rng = SplitMix64::new(7);
    let mut batch = Batch::new(4);
    for id in 0..600u64 {
        let v: Vec<i32> = (0..4)
            .map(|_| rng.below(1 << 18) as i32 - (1 << 17))
            .collect();
        batch.push(RecordId(id), &v, id % 3, &[]);
    }
    let fill = |state: &mut State, config: CollectionConfig| {
        state
            .apply(&Event::CreateCollection {
                name: name("docs"),
                config,
            })
            .unwrap();
        state
            .apply(&Event::InsertBatch {
                collection: name("docs"),
                batch: batch.clone(),
            })
            .unwrap();
    };
    let mut reindexed = State::new();
    fill(&mut reindexed, config(Metric::L2, 8));
    reindexed.build_indexes(&crate::hnsw::Sequential);
    let before = reindexed.state_hash();
    for bad in [
        CollectionConfig {
            dim: 3,
            ..config(Metric::Cosine, 8)
        },
        config(Metric::Cosine, 1),
    ] {
        assert!(
            reindexed
                .apply(&Event::Reindex {
                    collection: name("docs"),
                    config: bad,
                })
                .is_err()
        );
        assert_eq!(reindexed.state_hash(), before);
    }
    reindexed
        .apply(&Event::Reindex {
            collection: name("docs"),
            config: config(Metric::Cosine, 12),
        })
        .unwrap();
    assert_eq!(
        reindexed.collection(&name("docs")).unwrap().indexed_rows(),
        0
    );
    reindexed.build_indexes(&crate::hnsw::Sequential);
    let mut created = State::new();
    fill(&mut created, config(Metric::Cosine, 12));
    created.build_indexes(&crate::hnsw::Sequential);
    assert_eq!(reindexed.state_hash(), created.state_hash());
    assert_eq!(reindexed.state_hash(), reindexed.state_hash_uncached());
    assert_eq!(reindexed.index_hash(), created.index_hash());
    assert_ne!(reindexed.state_hash(), before);
}

/// Foreign keys: definitions checked against the referenced table,
/// values checked on every write, `ON DELETE` followed through tables,
/// and every refusal leaving the state hash as it was.
mod foreign_keys {
    use super::*;
    use crate::table::{
        ColumnDef, ColumnType, ColumnValues, ForeignKey, OnDelete, ScalarType, TableSchema,
        column_flags,
    };
    use alloc::string::{String, ToString};

    fn col(
        name: &str,
        ty: ScalarType,
        flags: u8,
        key: Option<(&str, &str, OnDelete)>,
    ) -> ColumnDef {
        ColumnDef {
            name: String::from(name),
            ty: ColumnType::Scalar(ty),
            type_mod: 0,
            flags,
            default: None,
            index: None,
            references: key.map(|(table, column, on_delete)| ForeignKey {
                name: alloc::format!("{name}_fkey"),
                table: super::name(table),
                column: String::from(column),
                on_delete,
            }),
        }
    }

    fn create(table: &str, columns: Vec<ColumnDef>) -> Event {
        Event::CreateTable {
            name: name(table),
            config: CollectionConfig {
                dim: 1,
                metric: Metric::L2,
                index: IndexParams::default(),
            },
            schema: TableSchema {
                columns,
                uniques: Vec::new(),
            },
        }
    }

    fn int8(v: i64) -> Option<Vec<u8>> {
        Some(v.to_le_bytes().to_vec())
    }

    fn int4(v: i32) -> Option<Vec<u8>> {
        Some(v.to_le_bytes().to_vec())
    }

    fn text(v: &str) -> Option<Vec<u8>> {
        Some(v.as_bytes().to_vec())
    }

    /// Rows of `table` (whose first column is its `bigint` key), each
    /// given as its scalar values in order.
    fn insert(table: &str, rows: &[Vec<Option<Vec<u8>>>]) -> Event {
        let mut batch = Batch::new(1);
        let mut columns = vec![ColumnValues::default(); rows[0].len()];
        for row in rows {
            let id = i64::from_le_bytes(row[0].clone().unwrap().try_into().unwrap());
            batch.push(RecordId(id as u64), &[0], 0, &[]);
            for (c, v) in row.iter().enumerate() {
                columns[c].push(v.as_deref());
            }
        }
        Event::InsertRows {
            collection: name(table),
            batch,
            columns,
        }
    }

    fn delete(table: &str, ids: &[u64]) -> Event {
        Event::DeleteBatch {
            collection: name(table),
            ids: ids.iter().map(|&i| RecordId(i)).collect(),
        }
    }

    fn live(s: &State, table: &str) -> Vec<u64> {
        let c = s.collection(&name(table)).unwrap();
        let mut ids: Vec<u64> = c
            .ids()
            .iter()
            .enumerate()
            .filter(|(row, _)| !c.deleted()[*row])
            .map(|(_, id)| id.0)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Applies `event`, which must be refused with a foreign key error
    /// (or inside a transaction, one), leaving the hash unchanged.
    fn refused(s: &mut State, event: &Event) -> ApplyError {
        let before = s.state_hash();
        let e = s.apply(event).unwrap_err();
        let inner = match &e {
            ApplyError::InTransaction { source, .. } => source.as_ref(),
            other => other,
        };
        assert!(
            matches!(inner, ApplyError::Reference(_) | ApplyError::Row { .. }),
            "{e}"
        );
        assert_eq!(s.state_hash(), before, "{e}");
        e
    }

    fn parent() -> Event {
        create(
            "parent",
            vec![
                col("id", ScalarType::Int64, column_flags::PRIMARY_KEY, None),
                col("label", ScalarType::Text, column_flags::UNIQUE, None),
                col("plain", ScalarType::Text, 0, None),
            ],
        )
    }

    fn child() -> Event {
        create(
            "child",
            vec![
                col("id", ScalarType::Int64, column_flags::PRIMARY_KEY, None),
                // An `integer` referencing a `bigint` key.
                col(
                    "parent_id",
                    ScalarType::Int32,
                    0,
                    Some(("parent", "id", OnDelete::Cascade)),
                ),
                col(
                    "parent_label",
                    ScalarType::Text,
                    0,
                    Some(("parent", "label", OnDelete::SetNull)),
                ),
            ],
        )
    }

    #[test]
    fn definitions_are_checked_against_the_referenced_table() {
        let mut s = State::new();
        s.apply(&parent()).unwrap();
        let bad = |column: ColumnDef| {
            create(
                "bad",
                vec![
                    col("id", ScalarType::Int64, column_flags::PRIMARY_KEY, None),
                    column,
                ],
            )
        };
        for (column, expected) in [
            (
                col(
                    "p",
                    ScalarType::Int64,
                    0,
                    Some(("nowhere", "id", OnDelete::NoAction)),
                ),
                "does not exist",
            ),
            (
                col(
                    "p",
                    ScalarType::Int64,
                    0,
                    Some(("parent", "nope", OnDelete::NoAction)),
                ),
                "does not exist",
            ),
            (
                col(
                    "p",
                    ScalarType::Text,
                    0,
                    Some(("parent", "plain", OnDelete::NoAction)),
                ),
                "no unique constraint",
            ),
            (
                col(
                    "p",
                    ScalarType::Text,
                    0,
                    Some(("parent", "id", OnDelete::NoAction)),
                ),
                "incompatible types",
            ),
        ] {
            let e = refused(&mut s, &bad(column));
            assert!(e.to_string().contains(expected), "{e}");
        }
        // A key on a float column is refused by the schema itself.
        assert!(matches!(
            s.apply(&bad(col(
                "p",
                ScalarType::Float64,
                0,
                Some(("parent", "id", OnDelete::NoAction))
            ))),
            Err(ApplyError::Schema { .. })
        ));
    }

    #[test]
    fn writes_need_the_referenced_value_and_deletes_follow_on_delete() {
        let mut s = State::new();
        s.apply(&parent()).unwrap();
        s.apply(&child()).unwrap();
        // A note on a child, which refuses the child's delete.
        s.apply(&create(
            "note",
            vec![
                col("id", ScalarType::Int64, column_flags::PRIMARY_KEY, None),
                col(
                    "child_id",
                    ScalarType::Int64,
                    0,
                    Some(("child", "id", OnDelete::NoAction)),
                ),
            ],
        ))
        .unwrap();
        s.apply(&insert(
            "parent",
            &[
                vec![int8(1), text("one"), None],
                vec![int8(2), text("two"), None],
                vec![int8(3), text("three"), None],
            ],
        ))
        .unwrap();
        let e = refused(
            &mut s,
            &insert(
                "child",
                &[vec![int8(10), int4(1), None], vec![int8(11), int4(4), None]],
            ),
        );
        assert!(
            e.to_string()
                .contains("key (parent_id)=(4) is not present in table parent"),
            "{e}"
        );
        let e = refused(
            &mut s,
            &insert("child", &[vec![int8(10), None, text("four")]]),
        );
        assert!(e.to_string().contains("(parent_label)=(four)"), "{e}");
        // NULL references nothing.
        s.apply(&insert(
            "child",
            &[
                vec![int8(10), int4(1), text("two")],
                vec![int8(11), int4(1), None],
                vec![int8(12), int4(2), text("one")],
                vec![int8(13), None, text("one")],
                vec![int8(14), int4(3), text("three")],
            ],
        ))
        .unwrap();
        s.apply(&insert("note", &[vec![int8(100), int8(11)]]))
            .unwrap();

        // Parent 1 cascades to children 10 and 11; note 100 on child 11
        // refuses the whole delete.
        let e = refused(&mut s, &delete("parent", &[1]));
        assert!(
            e.to_string().contains("still referenced from table note"),
            "{e}"
        );
        assert_eq!(live(&s, "child"), [10, 11, 12, 13, 14]);

        s.apply(&delete("note", &[100])).unwrap();
        s.apply(&delete("parent", &[1])).unwrap();
        assert_eq!(live(&s, "parent"), [2, 3]);
        assert_eq!(live(&s, "child"), [12, 13, 14]);
        // Children 12 and 13 held label "one" (parent 1): SET NULL.
        let c = s.collection(&name("child")).unwrap();
        let label = |id: u64| {
            let row = c.row_of(RecordId(id)).unwrap() as usize;
            c.table().unwrap().columns()[2].get(row).map(<[u8]>::to_vec)
        };
        assert_eq!(label(12), None);
        assert_eq!(label(13), None);
        assert_eq!(label(14), text("three"));

        // A referenced value cannot change while referenced; an
        // unreferenced one can.
        let update = |id: u64, label: &str| {
            let mut values = ColumnValues::default();
            values.push(Some(label.as_bytes()));
            Event::UpdateRows {
                collection: name("parent"),
                ids: vec![RecordId(id)],
                columns: vec![(1, values)],
            }
        };
        let e = refused(&mut s, &update(3, "drei"));
        assert!(
            e.to_string().contains("still referenced from table child"),
            "{e}"
        );
        s.apply(&update(2, "zwei")).unwrap();

        // Dropping a referenced table alone is refused; with the tables
        // that reference it, it is not.
        let e = refused(
            &mut s,
            &Event::DropCollection {
                name: name("parent"),
            },
        );
        assert!(e.to_string().contains("depends on it"), "{e}");
        let e = refused(
            &mut s,
            &Event::AlterTable {
                collection: name("parent"),
                actions: vec![AlterAction::DropColumn {
                    name: String::from("label"),
                }],
            },
        );
        assert!(e.to_string().contains("depends on it"), "{e}");
        s.apply(&Event::DropCollections {
            names: vec![name("parent"), name("child"), name("note")],
        })
        .unwrap();
    }

    /// Applying the same events to a fresh state gives the same hash:
    /// the cascade is computed from the state alone.
    #[test]
    fn cascades_replay_to_the_same_hash_and_follow_a_table_onto_itself() {
        let events = [
            create(
                "node",
                vec![
                    col("id", ScalarType::Int64, column_flags::PRIMARY_KEY, None),
                    col(
                        "up",
                        ScalarType::Int64,
                        0,
                        Some(("node", "id", OnDelete::Cascade)),
                    ),
                ],
            ),
            // A tree in one insert: rows reference rows of the same event.
            insert(
                "node",
                &[
                    vec![int8(1), None],
                    vec![int8(2), int8(1)],
                    vec![int8(3), int8(2)],
                    vec![int8(4), int8(3)],
                    vec![int8(5), int8(1)],
                    vec![int8(6), None],
                    vec![int8(7), int8(6)],
                ],
            ),
            delete("node", &[2]),
        ];
        let mut s = State::new();
        for e in &events {
            s.apply(e).unwrap();
        }
        // 2 goes with 3 (its child) and 4 (3's child).
        assert_eq!(live(&s, "node"), [1, 5, 6, 7]);
        let mut again = State::new();
        for e in &events {
            again.apply(e).unwrap();
        }
        assert_eq!(again.state_hash(), s.state_hash());
        assert_eq!(s.state_hash(), s.state_hash_uncached());
        // A row may not reference a row that is not there.
        refused(&mut s, &insert("node", &[vec![int8(8), int8(2)]]));
    }

    /// `NO ACTION` is decided once every cascade is known, as Postgres
    /// checks it at the end of the statement: a row that a cascade deletes
    /// does not refuse the delete through another key, whichever key is
    /// followed first; a row that stays does.
    #[test]
    fn no_action_is_checked_after_the_cascades() {
        let mut s = State::new();
        s.apply(&parent()).unwrap();
        s.apply(&create(
            "child",
            vec![
                col("id", ScalarType::Int64, column_flags::PRIMARY_KEY, None),
                col(
                    "parent_id",
                    ScalarType::Int64,
                    0,
                    Some(("parent", "id", OnDelete::Cascade)),
                ),
                col(
                    "parent_label",
                    ScalarType::Text,
                    0,
                    Some(("parent", "label", OnDelete::NoAction)),
                ),
            ],
        ))
        .unwrap();
        s.apply(&insert(
            "parent",
            &[
                vec![int8(1), text("one"), None],
                vec![int8(2), text("two"), None],
            ],
        ))
        .unwrap();
        // Child 10 goes with parent 1 (CASCADE on parent_id), so its
        // label does not hold parent 1 back.
        s.apply(&insert("child", &[vec![int8(10), int8(1), text("one")]]))
            .unwrap();
        // Child 11 hangs from parent 2 by id but names parent 1's label.
        s.apply(&insert("child", &[vec![int8(11), int8(2), text("one")]]))
            .unwrap();
        let e = refused(&mut s, &delete("parent", &[1]));
        assert!(
            e.to_string().contains("still referenced from table child"),
            "{e}"
        );
        // Deleting both parents takes both children: nothing stays.
        s.apply(&delete("parent", &[1, 2])).unwrap();
        assert_eq!(live(&s, "child"), Vec::<u64>::new());
    }

    /// Inside a transaction each write is checked against what the
    /// writes before it left: a child may follow its parent, and a
    /// parent deleted earlier refuses the whole transaction.
    #[test]
    fn transactions_check_keys_in_order() {
        let mut s = State::new();
        s.apply(&parent()).unwrap();
        s.apply(&child()).unwrap();
        s.apply(&Event::Transaction {
            events: vec![
                insert("parent", &[vec![int8(1), text("one"), None]]),
                insert("child", &[vec![int8(10), int4(1), text("one")]]),
            ],
        })
        .unwrap();
        s.apply(&insert("parent", &[vec![int8(2), text("two"), None]]))
            .unwrap();
        refused(
            &mut s,
            &Event::Transaction {
                events: vec![
                    delete("parent", &[2]),
                    insert("child", &[vec![int8(11), int4(2), None]]),
                ],
            },
        );
        // A delete inside a transaction cascades there too.
        s.apply(&Event::Transaction {
            events: vec![
                delete("parent", &[1]),
                insert("child", &[vec![int8(12), int4(2), None]]),
            ],
        })
        .unwrap();
        assert_eq!(live(&s, "child"), [12]);
    }
}

/// Unique constraints over several columns and column changes of `ALTER
/// TABLE` (`UNIQUE (a, b)`, `ALTER COLUMN … TYPE varchar(n)`, `SET` /
/// `DROP NOT NULL`): checked against the rows there are, kept by every
/// write, and every refusal leaves the hash unchanged.
mod constraints {
    use super::*;
    use crate::table::{
        ColumnDef, ColumnType, ColumnValues, RowError, ScalarType, TableSchema, UniqueSet,
        column_flags,
    };
    use alloc::string::String;

    fn col(name: &str, ty: ScalarType, type_mod: u32, flags: u8) -> ColumnDef {
        ColumnDef {
            name: String::from(name),
            ty: ColumnType::Scalar(ty),
            type_mod,
            flags,
            default: None,
            index: None,
            references: None,
        }
    }

    fn table() -> Event {
        Event::CreateTable {
            name: name("t"),
            config: CollectionConfig {
                dim: 1,
                metric: Metric::L2,
                index: IndexParams::default(),
            },
            schema: TableSchema {
                columns: vec![
                    col("id", ScalarType::Int64, 0, column_flags::PRIMARY_KEY),
                    col("a", ScalarType::Int32, 0, 0),
                    col("b", ScalarType::Text, 0, 0),
                ],
                uniques: Vec::new(),
            },
        }
    }

    fn insert(rows: &[(i64, Option<i32>, Option<&str>)]) -> Event {
        let mut batch = Batch::new(1);
        let mut columns = vec![ColumnValues::default(); 3];
        for &(id, a, b) in rows {
            batch.push(RecordId(id as u64), &[0], 0, &[]);
            columns[0].push(Some(&id.to_le_bytes()));
            columns[1].push(a.map(i32::to_le_bytes).as_ref().map(|v| &v[..]));
            columns[2].push(b.map(str::as_bytes));
        }
        Event::InsertRows {
            collection: name("t"),
            batch,
            columns,
        }
    }

    fn set_b(id: u64, b: &str) -> Event {
        let mut values = ColumnValues::default();
        values.push(Some(b.as_bytes()));
        Event::UpdateRows {
            collection: name("t"),
            ids: vec![RecordId(id)],
            columns: vec![(2, values)],
        }
    }

    fn alter(action: AlterAction) -> Event {
        Event::AlterTable {
            collection: name("t"),
            actions: vec![action],
        }
    }

    fn unique(columns: &[&str]) -> AlterAction {
        AlterAction::AddUnique {
            set: UniqueSet {
                name: String::from("t_ab_key"),
                columns: columns.iter().map(|c| String::from(*c)).collect(),
            },
        }
    }

    fn refused(s: &mut State, event: &Event) -> ApplyError {
        let before = s.state_hash();
        let e = s.apply(event).unwrap_err();
        assert_eq!(s.state_hash(), before, "{e}");
        e
    }

    fn duplicate(e: &ApplyError) -> bool {
        matches!(e, ApplyError::Row { source, .. } if matches!(**source, RowError::Duplicate { .. }))
    }

    #[test]
    fn unique_sets_hold_through_writes_and_renames() {
        let mut s = State::new();
        s.apply(&table()).unwrap();
        s.apply(&insert(&[
            (1, Some(1), Some("x")),
            (2, Some(1), Some("y")),
            (3, Some(1), Some("x")),
        ]))
        .unwrap();
        // Rows 1 and 3 hold (1, "x"): the constraint cannot be added.
        assert!(duplicate(&refused(&mut s, &alter(unique(&["a", "b"])))));
        s.apply(&Event::DeleteBatch {
            collection: name("t"),
            ids: vec![RecordId(3)],
        })
        .unwrap();
        s.apply(&alter(unique(&["a", "b"]))).unwrap();
        assert!(duplicate(&refused(
            &mut s,
            &insert(&[(4, Some(1), Some("x"))])
        )));
        // Two rows of one insert clash with each other.
        assert!(duplicate(&refused(
            &mut s,
            &insert(&[(4, Some(2), Some("z")), (5, Some(2), Some("z"))])
        )));
        // A NULL in one of the columns is not constrained.
        s.apply(&insert(&[(4, None, Some("x")), (5, None, Some("x"))]))
            .unwrap();
        assert!(duplicate(&refused(&mut s, &set_b(2, "x"))));
        // The value row 1 gives up is free for another row.
        s.apply(&set_b(1, "w")).unwrap();
        s.apply(&set_b(2, "x")).unwrap();
        // The constraint follows a renamed column, and goes with a
        // dropped one.
        s.apply(&alter(AlterAction::RenameColumn {
            from: String::from("b"),
            to: String::from("c"),
        }))
        .unwrap();
        assert!(duplicate(&refused(
            &mut s,
            &insert(&[(6, Some(1), Some("x"))])
        )));
        let schema = s.collection(&name("t")).unwrap().table().unwrap().schema();
        assert_eq!(schema.uniques[0].columns, ["a", "c"]);
        // The schema, constraint included, decodes to itself.
        let mut bytes = Vec::new();
        schema.encode_into(&mut bytes);
        assert_eq!(
            TableSchema::decode_prefix(&bytes),
            Some((schema.clone(), bytes.len()))
        );
        s.apply(&alter(AlterAction::DropConstraint {
            name: String::from("t_ab_key"),
        }))
        .unwrap();
        s.apply(&insert(&[(6, Some(1), Some("x"))])).unwrap();
        // Replaying the same events from the start gives the same hash.
        let hash = s.state_hash();
        assert_eq!(hash, s.state_hash_uncached());
    }

    #[test]
    fn column_changes_are_checked_against_the_rows() {
        let mut s = State::new();
        s.apply(&table()).unwrap();
        s.apply(&insert(&[
            (1, None, Some("hello")),
            (2, Some(2), Some("hi")),
        ]))
        .unwrap();
        let type_mod = |n| {
            alter(AlterAction::SetTypeMod {
                column: String::from("b"),
                type_mod: n,
            })
        };
        // "hello" does not fit in varchar(3).
        assert!(matches!(
            refused(&mut s, &type_mod(3)),
            ApplyError::Row { .. }
        ));
        s.apply(&type_mod(5)).unwrap();
        assert!(matches!(
            refused(&mut s, &insert(&[(3, None, Some("toolong"))])),
            ApplyError::Row { .. }
        ));
        s.apply(&type_mod(0)).unwrap();
        s.apply(&insert(&[(3, None, Some("toolong"))])).unwrap();
        let not_null = |yes| {
            alter(AlterAction::SetNotNull {
                column: String::from("a"),
                not_null: yes,
            })
        };
        // Rows 1 and 3 have no `a`.
        assert!(matches!(
            refused(&mut s, &not_null(true)),
            ApplyError::Row { .. }
        ));
        s.apply(&Event::DeleteBatch {
            collection: name("t"),
            ids: vec![RecordId(1), RecordId(3)],
        })
        .unwrap();
        s.apply(&not_null(true)).unwrap();
        assert!(matches!(
            refused(&mut s, &insert(&[(4, None, None)])),
            ApplyError::Row { .. }
        ));
        s.apply(&not_null(false)).unwrap();
        s.apply(&insert(&[(4, None, None)])).unwrap();
        // The primary key's NOT NULL stays.
        assert!(matches!(
            refused(
                &mut s,
                &alter(AlterAction::SetNotNull {
                    column: String::from("id"),
                    not_null: false
                })
            ),
            ApplyError::Schema { .. }
        ));
    }
}
