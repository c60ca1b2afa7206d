//! Snapshot files: round trips, determinism, and rejection of every kind of
//! damage without a panic.

use proptest::prelude::*;
use valori_columnar::snapshot::{
    GraphPart, SNAPSHOT_TRAILER_BYTES, SnapshotError, SnapshotMeta, read_snapshot, write_snapshot,
};
use valori_core::event::{NameError, NodeId, RecordId};
use valori_core::hash::Hash32;
use valori_core::state::{ApplyError, State};

use crate::common::{golden_state, name, small_state};

fn write(state: &mut State, meta: &SnapshotMeta) -> Vec<u8> {
    let mut out = Vec::new();
    write_snapshot(state, meta, &mut out).unwrap();
    out
}

fn small_bytes() -> Vec<u8> {
    let (mut state, meta) = small_state();
    write(&mut state, &meta)
}

/// Recomputes the trailer, as a writer with a bug (or an attacker) would,
/// so that the checks behind the trailer are reached.
fn reseal(bytes: &mut [u8]) {
    let body = bytes.len() - SNAPSHOT_TRAILER_BYTES;
    let trailer = blake3::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(trailer.as_bytes());
}

fn resealed(
    mut bytes: Vec<u8>,
    edit: impl FnOnce(&mut [u8]),
) -> Result<(State, SnapshotMeta), SnapshotError> {
    edit(&mut bytes);
    reseal(&mut bytes);
    read_snapshot(&bytes)
}

/// Asserts that two states hold the same columns and graph, row by row.
fn assert_same_state(a: &State, b: &State) {
    assert_eq!(a.collections().len(), b.collections().len());
    for (x, y) in a.collections().zip(b.collections()) {
        assert_eq!(x.name(), y.name());
        assert_eq!(x.config(), y.config());
        assert_eq!(x.ids(), y.ids());
        assert_eq!(x.tags(), y.tags());
        assert_eq!(x.deleted(), y.deleted());
        assert_eq!(x.vectors(), y.vectors());
        assert_eq!(x.live(), y.live());
        for row in 0..x.rows() {
            assert_eq!(x.metadata(row), y.metadata(row), "{} row {row}", x.name());
        }
        for &id in x.ids() {
            assert_eq!(x.row_of(id), y.row_of(id));
        }
        match (x.table(), y.table()) {
            (None, None) => {}
            (Some(tx), Some(ty)) => {
                assert_eq!(tx.schema(), ty.schema());
                assert_eq!(tx.sequences(), ty.sequences());
                for (cx, cy) in tx.columns().iter().zip(ty.columns()) {
                    for row in 0..x.rows() {
                        assert_eq!(cx.get(row), cy.get(row), "{} row {row}", x.name());
                    }
                }
            }
            _ => panic!("{}: a table on one side only", x.name()),
        }
    }
    assert_eq!(
        a.graph().nodes().collect::<Vec<_>>(),
        b.graph().nodes().collect::<Vec<_>>()
    );
    assert_eq!(
        a.graph().edges().collect::<Vec<_>>(),
        b.graph().edges().collect::<Vec<_>>()
    );
}

/// A snapshot of the golden workload reads back to the same columns, graph,
/// state hash (cached and from scratch) and metadata.
#[test]
fn golden_round_trip() {
    let (mut state, meta) = golden_state();
    assert!(
        meta.events > 1000,
        "the workload applies thousands of events"
    );
    let bytes = write(&mut state, &meta);
    let (mut back, back_meta) = read_snapshot(&bytes).unwrap();
    assert_eq!(back_meta, meta);
    assert_eq!(back.state_hash(), meta.state_hash);
    assert_eq!(back.state_hash_uncached(), meta.state_hash);
    assert_same_state(&state, &back);
}

/// The same state gives the same bytes: written twice, and written again
/// after a read (whose metadata heap is compacted and whose caches are
/// fresh), for the golden and the small state.
#[test]
fn snapshot_bytes_are_deterministic() {
    for (mut state, meta) in [golden_state(), small_state()] {
        let first = write(&mut state, &meta);
        let second = write(&mut state, &meta);
        assert_eq!(first, second);
        let (mut back, back_meta) = read_snapshot(&first).unwrap();
        assert_eq!(write(&mut back, &back_meta), first);
        // A state built by replaying the same events in a fresh process
        // has no shared caches with the first one; its file is the same.
        let (mut again, again_meta) = if meta.events > 100 {
            golden_state()
        } else {
            small_state()
        };
        assert_eq!(write(&mut again, &again_meta), first);
    }
}

/// An empty state (no collections, no graph, no events) round-trips.
#[test]
fn empty_state_round_trip() {
    let mut state = State::new();
    let meta = SnapshotMeta {
        events: 0,
        state_hash: state.state_hash(),
        index_hash: state.index_hash(),
        log_root: valori_core::merkle::empty_root(),
        log_leaves: Vec::new(),
    };
    let bytes = write(&mut state, &meta);
    let (mut back, back_meta) = read_snapshot(&bytes).unwrap();
    assert_eq!(back_meta, meta);
    assert_eq!(write(&mut back, &back_meta), bytes);
}

/// The writer refuses metadata that the reader would reject, and writes
/// nothing.
#[test]
fn writer_refuses_inconsistent_meta() {
    let (mut state, meta) = small_state();
    let mut wrong_hash = meta.clone();
    wrong_hash.state_hash = Hash32([7; 32]);
    let mut out = Vec::new();
    let err = write_snapshot(&mut state, &wrong_hash, &mut out).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(out.is_empty());

    let mut wrong_count = meta;
    wrong_count.events += 1;
    let err = write_snapshot(&mut state, &wrong_count, &mut out).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(out.is_empty());
}

/// Every proper prefix of a snapshot (a torn write) is rejected as
/// truncated, or, when the cut happens to frame, by the trailer.
#[test]
fn every_truncation_is_rejected() {
    let bytes = small_bytes();
    for len in 0..bytes.len() {
        match read_snapshot(&bytes[..len]) {
            Err(SnapshotError::Truncated { offset, .. }) => assert!(offset <= len as u64),
            Err(SnapshotError::ChecksumMismatch { .. }) => {}
            other => panic!("prefix of {len} bytes: {other:?}"),
        }
    }
}

/// Flipping any single bit of a snapshot is rejected, structurally or by
/// the trailer, without a panic.
#[test]
fn every_bit_flip_is_rejected() {
    let mut bytes = small_bytes();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            bytes[i] ^= 1 << bit;
            let result = read_snapshot(&bytes);
            assert!(
                result.is_err(),
                "flipping bit {bit} of byte {i} was accepted"
            );
            bytes[i] ^= 1 << bit;
        }
    }
    assert!(read_snapshot(&bytes).is_ok());
}

/// Layout of the small snapshot, from `docs/format.md` section 6.
struct Offsets {
    /// Start of collection `alpha` (the first by name).
    alpha: usize,
    /// Bytes of alpha's index section, from its graph and the layout:
    /// indexed rows u64, entry u32, a u16 per indexed row, a u32 per layer-0 link, u32 count, then
    /// per upper node u32 row, u8 level, and per layer u16 count + links;
    /// then the collection's index hash (32 bytes).
    alpha_index: usize,
    len: usize,
}

impl Offsets {
    fn of(bytes: &[u8]) -> Offsets {
        let (state, meta) = small_state();
        let alpha = state.collection(&name("alpha")).unwrap();
        let parts = alpha.index().parts();
        let links0: usize = parts.len0.iter().map(|&n| usize::from(n)).sum();
        let upper: usize = parts
            .upper
            .values()
            .map(|layers| 4 + 1 + layers.iter().map(|l| 2 + 4 * l.len()).sum::<usize>())
            .sum();
        Offsets {
            alpha: 8 + 4 + 8 + 32 + 32 + 32 + 8 + 32 * meta.events as usize + 4,
            alpha_index: 8 + 4 + 2 * parts.len0.len() + 4 * links0 + 4 + upper + 32,
            len: bytes.len(),
        }
    }
    fn alpha_metric(&self) -> usize {
        self.alpha + 4 + 5 + 4
    }
    fn alpha_ids(&self) -> usize {
        self.alpha + 34
    }
    fn alpha_deleted(&self) -> usize {
        self.alpha_ids() + 4 * 8 + 4 * 8
    }
    fn alpha_vectors(&self) -> usize {
        self.alpha_deleted() + 4
    }
    fn beta(&self) -> usize {
        // 4 rows of 3 components; metadata "five, rewritten", "two", "",
        // "two again", each behind a u32 length; then the table flag 0.
        self.alpha_vectors() + 4 * 3 * 4 + 4 * 4 + 15 + 3 + 9 + self.alpha_index + 1
    }
    fn nodes(&self) -> usize {
        self.len - SNAPSHOT_TRAILER_BYTES - 3 * 24 - 8 - 3 * 16
    }
    fn edges(&self) -> usize {
        self.len - SNAPSHOT_TRAILER_BYTES - 3 * 24
    }
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Each check behind the trailer answers with its own variant, naming the
/// offset, collection and row.
#[test]
fn damage_is_named_precisely() {
    let bytes = small_bytes();
    let at = Offsets::of(&bytes);
    let (_, meta) = small_state();

    let mut foreign = bytes.clone();
    foreign[0] = b'X';
    assert!(matches!(
        read_snapshot(&foreign),
        Err(SnapshotError::BadMagic { found }) if found[0] == b'X'
    ));

    let mut newer = bytes.clone();
    newer[8] = 4;
    assert!(matches!(
        read_snapshot(&newer),
        Err(SnapshotError::UnknownVersion { found: 4 })
    ));
    // Version 2 files are version 3 files without the table flags: still
    // read, to the same state.
    let o = Offsets::of(&bytes);
    let mut v2 = bytes.clone();
    assert_eq!(v2[o.nodes() - 8 - 1], 0, "beta's table flag");
    assert_eq!(v2[o.beta() - 1], 0, "alpha's table flag");
    v2.remove(o.nodes() - 8 - 1);
    v2.remove(o.beta() - 1);
    v2[8] = 2;
    reseal(&mut v2);
    let (mut from_v2, _) = read_snapshot(&v2).unwrap();
    assert_eq!(from_v2.state_hash(), meta.state_hash);
    // Version 1 files record no index hash: refused, not read unchecked.
    let mut older = bytes.clone();
    older[8] = 1;
    assert!(matches!(
        read_snapshot(&older),
        Err(SnapshotError::UnknownVersion { found: 1 })
    ));

    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 5]);
    assert!(matches!(
        read_snapshot(&longer),
        Err(SnapshotError::TrailingBytes { offset, count: 5 }) if offset == bytes.len() as u64
    ));

    let mut bad_trailer = bytes.clone();
    *bad_trailer.last_mut().unwrap() ^= 1;
    match read_snapshot(&bad_trailer) {
        Err(SnapshotError::ChecksumMismatch { recorded, computed }) => {
            assert_eq!(recorded.0[..], bad_trailer[at.len - 32..]);
            assert_eq!(computed.0[..], bytes[at.len - 32..]);
        }
        other => panic!("{other:?}"),
    }

    assert!(matches!(
        resealed(bytes.clone(), |b| put_u64(b, 12, meta.events - 1)),
        Err(SnapshotError::LeafCountMismatch { events, leaves })
            if events == meta.events - 1 && leaves == meta.events
    ));

    match resealed(bytes.clone(), |b| b[20] ^= 0x80) {
        Err(SnapshotError::StateHashMismatch { recorded, computed }) => {
            assert_eq!(computed, meta.state_hash);
            assert_ne!(recorded, meta.state_hash);
        }
        other => panic!("{other:?}"),
    }

    // A changed vector component is caught by the state hash.
    assert!(matches!(
        resealed(bytes.clone(), |b| b[at.alpha_vectors() + 5] ^= 1),
        Err(SnapshotError::StateHashMismatch { .. })
    ));

    assert!(matches!(
        resealed(bytes.clone(), |b| b[at.alpha + 4] = b'A'),
        Err(SnapshotError::InvalidCollectionName { offset, source: NameError::BadCharacter })
            if offset == at.alpha as u64
    ));

    // "alpha" renamed "zlpha" now sorts after "beta".
    match resealed(bytes.clone(), |b| b[at.alpha + 4] = b'z') {
        Err(SnapshotError::CollectionOrder { offset, name: n }) => {
            assert_eq!(offset, at.beta() as u64);
            assert_eq!(n, name("beta"));
        }
        other => panic!("{other:?}"),
    }

    assert!(matches!(
        resealed(bytes.clone(), |b| b[at.alpha_metric()] = 9),
        Err(SnapshotError::UnknownMetric { offset, code: 9, .. }) if offset == at.alpha_metric() as u64
    ));

    // HNSW m = 1 is outside 2..=256.
    assert!(matches!(
        resealed(bytes.clone(), |b| b
            [at.alpha_metric() + 1..at.alpha_metric() + 3]
            .copy_from_slice(&1u16.to_le_bytes())),
        Err(SnapshotError::InvalidCollection {
            source: ApplyError::BadIndexParams { m: 1, .. },
            ..
        })
    ));

    let tombstone = at.alpha_deleted() + 1;
    let err = resealed(bytes.clone(), |b| b[tombstone] = 2).unwrap_err();
    match &err {
        SnapshotError::InvalidTombstone {
            offset,
            collection,
            row: 1,
            value: 2,
        } => {
            assert_eq!(*offset, tombstone as u64);
            assert_eq!(*collection, name("alpha"));
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("alpha")
            && message.contains("row 1")
            && message.contains(&tombstone.to_string())
    );

    // Row 2 given row 0's live id.
    assert!(matches!(
        resealed(bytes.clone(), |b| put_u64(b, at.alpha_ids() + 16, 5)),
        Err(SnapshotError::InvalidRow {
            row: 2,
            source: ApplyError::DuplicateId {
                id: RecordId(5),
                ..
            },
            ..
        })
    ));

    // Resurrecting row 1 (id 2) clashes with row 3, which re-inserted id 2.
    assert!(matches!(
        resealed(bytes.clone(), |b| b[at.alpha_deleted() + 1] = 0),
        Err(SnapshotError::InvalidRow {
            row: 3,
            source: ApplyError::DuplicateId {
                id: RecordId(2),
                ..
            },
            ..
        })
    ));

    // Nodes 1 and 2 swapped.
    let nodes = at.nodes();
    assert!(matches!(
        resealed(bytes.clone(), |b| {
            let (first, second) = b[nodes..nodes + 32].split_at_mut(16);
            first.swap_with_slice(second);
        }),
        Err(SnapshotError::GraphOrder { offset, what: GraphPart::Node }) if offset == (nodes + 16) as u64
    ));

    // Edge (3, 1, 0) turned into (3, 99, 0): still in order, missing node.
    let last_edge = at.edges() + 48;
    assert!(matches!(
        resealed(bytes.clone(), |b| put_u64(b, last_edge + 8, 99)),
        Err(SnapshotError::InvalidGraph { offset, what: GraphPart::Edge, source: ApplyError::UnknownNode(NodeId(99)) })
            if offset == last_edge as u64
    ));

    // Edge (1, 2, 7) turned into (1, 2, 5): a duplicate, so out of order.
    assert!(matches!(
        resealed(bytes.clone(), |b| put_u64(b, at.edges() + 24 + 16, 5)),
        Err(SnapshotError::GraphOrder {
            what: GraphPart::Edge,
            ..
        })
    ));

    // A row count far beyond the input fails before anything is allocated.
    assert!(matches!(
        resealed(bytes.clone(), |b| put_u64(b, at.alpha + 26, u64::MAX)),
        Err(SnapshotError::Truncated {
            field: "collection rows",
            ..
        })
    ));

    // The untouched file still reads.
    assert!(read_snapshot(&bytes).is_ok());
}

/// A random edit of a collection, applied if the state machine accepts it.
#[derive(Clone, Debug)]
enum Op {
    Insert {
        id: u64,
        vector: [i32; 3],
        tag: u64,
        metadata: Vec<u8>,
    },
    Delete {
        id: u64,
    },
    SetTag {
        id: u64,
        tag: u64,
    },
    SetMetadata {
        id: u64,
        metadata: Vec<u8>,
    },
    Node {
        node: u64,
    },
    Edge {
        from: u64,
        to: u64,
        label: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u64..24;
    let metadata = proptest::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        4 => (id.clone(), any::<[i32; 3]>(), 0u64..4, metadata.clone())
            .prop_map(|(id, vector, tag, metadata)| Op::Insert { id, vector, tag, metadata }),
        1 => id.clone().prop_map(|id| Op::Delete { id }),
        1 => (id.clone(), any::<u64>()).prop_map(|(id, tag)| Op::SetTag { id, tag }),
        1 => (id, metadata).prop_map(|(id, metadata)| Op::SetMetadata { id, metadata }),
        1 => (0u64..8).prop_map(|node| Op::Node { node }),
        1 => (0u64..8, 0u64..8, 0u64..3).prop_map(|(from, to, label)| Op::Edge { from, to, label }),
    ]
}

fn event_of(op: Op) -> valori_core::event::Event {
    use valori_core::event::{Event, Record};
    let collection = name("docs");
    match op {
        Op::Insert {
            id,
            vector,
            tag,
            metadata,
        } => Event::Insert {
            collection,
            record: Record {
                id: RecordId(id),
                vector: vector.to_vec(),
                tag,
                metadata,
            },
        },
        Op::Delete { id } => Event::Delete {
            collection,
            id: RecordId(id),
        },
        Op::SetTag { id, tag } => Event::SetTag {
            collection,
            id: RecordId(id),
            tag,
        },
        Op::SetMetadata { id, metadata } => Event::SetMetadata {
            collection,
            id: RecordId(id),
            metadata,
        },
        Op::Node { node } => Event::CreateNode {
            node: NodeId(node),
            label: node * 10,
        },
        Op::Edge { from, to, label } => Event::CreateEdge {
            from: NodeId(from),
            to: NodeId(to),
            label,
        },
    }
}

proptest! {
    /// Any state the state machine can reach round-trips: same columns,
    /// same hash, and the same bytes when written again.
    #[test]
    fn random_states_round_trip(ops in proptest::collection::vec(op(), 0..120)) {
        use valori_core::event::{CollectionConfig, Event, IndexParams};
        let mut state = State::new();
        let mut leaves = Vec::new();
        let create = Event::CreateCollection {
            name: name("docs"),
            config: CollectionConfig { dim: 3, metric: valori_core::Metric::L2, index: IndexParams::default() },
        };
        for event in std::iter::once(create).chain(ops.into_iter().map(event_of)) {
            if state.apply(&event).is_ok() {
                leaves.push(valori_core::merkle::leaf_hash(&event.encode()));
            }
        }
        let meta = crate::common::meta_for(&mut state, leaves);
        let bytes = write(&mut state, &meta);
        let (mut back, back_meta) = read_snapshot(&bytes).unwrap();
        prop_assert_eq!(&back_meta, &meta);
        assert_same_state(&state, &back);
        prop_assert_eq!(write(&mut back, &back_meta), bytes);
    }

    /// Arbitrary bytes never make the reader panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = read_snapshot(&bytes);
    }

    /// Arbitrary bytes behind a valid magic and version reach the framing
    /// code, and never make it panic.
    #[test]
    fn random_body_never_panics(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut bytes = b"VALORSNP".to_vec();
        bytes.extend_from_slice(&valori_columnar::snapshot::SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&body);
        let _ = read_snapshot(&bytes);
        // Sealed, so that the rebuild is reached whenever the framing holds.
        if bytes.len() >= SNAPSHOT_TRAILER_BYTES {
            reseal(&mut bytes);
            let _ = read_snapshot(&bytes);
        }
    }

    /// Random edits of a valid snapshot, resealed so that they get past the
    /// trailer, never panic; and any file the reader accepts is exactly the
    /// file the writer gives for what was read (one file per state).
    #[test]
    fn resealed_edits_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut bytes = small_bytes();
        let body = bytes.len() - SNAPSHOT_TRAILER_BYTES;
        for (at, value) in edits {
            bytes[at.index(body)] = value;
        }
        reseal(&mut bytes);
        if let Ok((mut state, meta)) = read_snapshot(&bytes) {
            prop_assert_eq!(write(&mut state, &meta), bytes);
        }
    }
}

// ---------------------------------------------------------------------------
// The graph is inside the proof.

/// One collection `docs` (dimension 4, m = 4) of `rows` rows from a fixed
/// generator, with `blocks` blocks of 64 rows built into its graph (all
/// complete blocks when `None`).
fn indexed_state(rows: u64, blocks: Option<usize>) -> (State, SnapshotMeta) {
    use valori_core::event::{CollectionConfig, Event, IndexParams, Record};
    use valori_core::hnsw::Sequential;
    let mut state = State::new();
    let mut leaves = Vec::new();
    let mut push = |state: &mut State, event: Event| {
        state.apply(&event).unwrap();
        leaves.push(valori_core::merkle::leaf_hash(&event.encode()));
    };
    push(
        &mut state,
        Event::CreateCollection {
            name: name("docs"),
            config: CollectionConfig {
                dim: 4,
                metric: valori_core::Metric::L2,
                index: IndexParams {
                    m: 4,
                    ef_construction: 16,
                    seed: 7,
                },
            },
        },
    );
    let mut x = 0x9e37_79b9_u64;
    for id in 0..rows {
        let vector = (0..4)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as i32 % 50_000) - 25_000
            })
            .collect();
        push(
            &mut state,
            Event::Insert {
                collection: name("docs"),
                record: Record {
                    id: RecordId(id),
                    vector,
                    tag: id % 3,
                    metadata: Vec::new(),
                },
            },
        );
    }
    let c = state.collection_for_restore(&name("docs")).unwrap();
    match blocks {
        None => {
            c.build_index(&Sequential);
        }
        Some(n) => {
            for _ in 0..n {
                let plans = c.plan_index_block(&Sequential).unwrap();
                c.link_index_block(plans);
            }
        }
    }
    let meta = crate::common::meta_for(&mut state, leaves);
    (state, meta)
}

/// Byte offset of the layer-0 link slots of collection `docs` in a
/// snapshot of [`indexed_state`], from the layout of docs/format.md
/// section 6 (header, then the one collection's columns, then its index).
fn docs_links0(state: &State, meta: &SnapshotMeta) -> (usize, usize) {
    let c = state.collection(&name("docs")).unwrap();
    let rows = c.rows();
    let metadata: usize = (0..rows).map(|r| 4 + c.metadata(r).len()).sum();
    let header = 8 + 4 + 8 + 32 + 32 + 32 + 8 + 32 * meta.events as usize + 4;
    let collection = 4 + 4 + 4 + 1 + 2 + 2 + 8 + 8 + rows * (8 + 8 + 1 + 4 * 4) + metadata;
    let indexed = c.indexed_rows();
    let links: usize = c.index().parts().len0.iter().map(|&n| usize::from(n)).sum();
    (header + collection + 8 + 4 + 2 * indexed, links)
}

/// A graph link changed in a snapshot whose trailer is recomputed — any
/// in-range link passes the structural checks — is refused by the index
/// hash, naming the collection and the recorded and computed hashes. Every
/// layer-0 link slot is tried.
#[test]
fn altered_graph_link_is_refused_by_the_index_hash() {
    let (mut state, meta) = indexed_state(200, None);
    let bytes = write(&mut state, &meta);
    let (links_at, links) = docs_links0(&state, &meta);
    let indexed = state.collection(&name("docs")).unwrap().indexed_rows() as u32;
    assert_eq!(indexed, 192);
    // The layout agrees with the file: the first slot is row 0's first link.
    let first = state.collection(&name("docs")).unwrap().index().links(0, 0)[0];
    assert_eq!(
        bytes[links_at..links_at + 4],
        first.to_le_bytes(),
        "layout of the index section"
    );
    let recorded_index = meta.index_hash;
    for slot in 0..links {
        let at = links_at + 4 * slot;
        let old = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let new = (old + 1) % indexed;
        let result = resealed(bytes.clone(), |b| {
            b[at..at + 4].copy_from_slice(&new.to_le_bytes())
        });
        match result {
            Err(e @ SnapshotError::CollectionIndexHashMismatch { .. }) => {
                let SnapshotError::CollectionIndexHashMismatch {
                    collection,
                    recorded,
                    computed,
                    ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(*collection, name("docs"));
                assert_ne!(recorded, computed);
                assert!(e.to_string().contains("index hash"), "{e}");
            }
            other => panic!("link slot {slot} ({old} -> {new}) at byte {at}: {other:?}"),
        }
    }
    // The combined hash in the header is checked too: a file whose
    // per-collection hash was rewritten to match altered links still
    // fails on it, naming the index hash.
    let header_index = 8 + 4 + 8 + 32;
    assert_eq!(
        &bytes[header_index..header_index + 32],
        recorded_index.as_bytes()
    );
    let err = resealed(bytes.clone(), |b| b[header_index] ^= 1).unwrap_err();
    assert!(
        matches!(err, SnapshotError::IndexHashMismatch { computed, .. } if computed == recorded_index),
        "{err:?}"
    );
    assert!(read_snapshot(&bytes).is_ok());
}

/// A snapshot records the graph exactly as it is, including one built
/// only part of the way (the background builder works block by block):
/// it reads back to the same graph, the same per-collection and combined
/// index hashes, and the same bytes.
#[test]
fn partly_built_graph_round_trips_with_its_index_hash() {
    for blocks in [0, 1, 2, 3] {
        let (mut state, meta) = indexed_state(200, Some(blocks));
        assert_eq!(
            state.collection(&name("docs")).unwrap().indexed_rows(),
            64 * blocks
        );
        let bytes = write(&mut state, &meta);
        let (mut back, back_meta) = read_snapshot(&bytes).unwrap();
        assert_eq!(back_meta.index_hash, state.index_hash_uncached());
        assert_eq!(back.index_hash_uncached(), meta.index_hash);
        // The same links on every layer (unused slots are not compared).
        let (a, b) = (
            back.collection(&name("docs")).unwrap().index(),
            state.collection(&name("docs")).unwrap().index(),
        );
        assert_eq!((a.len(), a.entry()), (b.len(), b.entry()));
        for row in 0..a.len() as u32 {
            for layer in 0..=b.level(row) {
                assert_eq!(
                    a.links(row, layer),
                    b.links(row, layer),
                    "row {row} layer {layer}"
                );
            }
        }
        assert_eq!(write(&mut back, &back_meta), bytes);
    }
}

/// The writer refuses metadata whose index hash is not the state's.
#[test]
fn writer_refuses_a_wrong_index_hash() {
    let (mut state, mut meta) = indexed_state(70, None);
    meta.index_hash = Hash32([1; 32]);
    let mut out = Vec::new();
    let err = write_snapshot(&mut state, &meta, &mut out).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("index hash"), "{err}");
    assert!(out.is_empty());
}

/// Every byte of a snapshot with a graph, changed and resealed so that
/// the trailer passes: the reader refuses the file, except for bytes of
/// `log_root` and the log leaves, which the reader leaves to the engine
/// (docs/format.md section 6); for those, the leaves no longer give the
/// recorded root, which is what the engine and both verifiers check.
#[test]
fn every_resealed_byte_is_refused_or_left_to_the_log_check() {
    let (mut state, meta) = indexed_state(130, None);
    let bytes = write(&mut state, &meta);
    let log_root = 8 + 4 + 8 + 32 + 32;
    let leaves = log_root + 32 + 8;
    let leaves_end = leaves + 32 * meta.events as usize;
    let body = bytes.len() - SNAPSHOT_TRAILER_BYTES;
    for at in 0..body {
        let result = resealed(bytes.clone(), |b| b[at] ^= 0x04);
        let in_log = (log_root..log_root + 32).contains(&at) || (leaves..leaves_end).contains(&at);
        match result {
            Err(_) if !in_log => {}
            Ok((_, m)) if in_log => {
                let root = valori_core::merkle::MerkleLog::from_leaves(m.log_leaves.clone()).root();
                assert_ne!(root, m.log_root, "byte {at}");
            }
            other => panic!(
                "byte {at} (log section: {in_log}): {:?}",
                other.map(|(_, m)| m.events)
            ),
        }
    }
}
