//! States built from events, with the snapshot metadata a log would give.

use valori_columnar::snapshot::SnapshotMeta;
use valori_core::Metric;
use valori_core::event::{
    Batch, CollectionConfig, CollectionName, Event, IndexParams, NodeId, Record, RecordId,
};
use valori_core::golden;
use valori_core::merkle::{MerkleLog, leaf_hash};
use valori_core::state::State;

pub fn name(s: &str) -> CollectionName {
    CollectionName::new(s).unwrap()
}

/// Metadata as the engine would record it for these log leaves.
pub fn meta_for(state: &mut State, leaves: Vec<valori_core::hash::Hash32>) -> SnapshotMeta {
    SnapshotMeta {
        events: leaves.len() as u64,
        state_hash: state.state_hash(),
        index_hash: state.index_hash(),
        log_root: MerkleLog::from_leaves(leaves.clone()).root(),
        log_leaves: leaves,
    }
}

/// The golden workload: a few thousand events over three collections and
/// the graph, with deletes, re-inserts and metadata rewrites.
pub fn golden_state() -> (State, SnapshotMeta) {
    let mut state = State::new();
    let mut leaves = Vec::new();
    golden::apply_workload(&mut state, |bytes, applied| {
        if applied {
            leaves.push(leaf_hash(bytes));
        }
    });
    let meta = meta_for(&mut state, leaves);
    (state, meta)
}

fn config(dim: u32, metric: Metric) -> CollectionConfig {
    CollectionConfig {
        dim,
        metric,
        index: IndexParams {
            m: 4,
            ef_construction: 8,
            seed: 0x1234,
        },
    }
}

fn insert(collection: &str, id: u64, vector: &[i32], tag: u64, metadata: &[u8]) -> Event {
    Event::Insert {
        collection: name(collection),
        record: Record {
            id: RecordId(id),
            vector: vector.to_vec(),
            tag,
            metadata: metadata.to_vec(),
        },
    }
}

/// Events of the small state used where every byte is perturbed.
pub fn small_events() -> Vec<Event> {
    let mut batch = Batch::new(2);
    batch.push(RecordId(30), &[65536, -65536], 1, b"");
    batch.push(RecordId(10), &[1, 2], 1, b"ten");
    batch.push(RecordId(20), &[i32::MAX, i32::MIN], 2, b"twenty");
    vec![
        // Created out of name order: the file lists them by name.
        Event::CreateCollection {
            name: name("beta"),
            config: config(2, Metric::Cosine),
        },
        Event::CreateCollection {
            name: name("alpha"),
            config: config(3, Metric::L2),
        },
        Event::CreateCollection {
            name: name("gamma"),
            config: config(4, Metric::InnerProduct),
        },
        insert("alpha", 5, &[1, -2, 3], 7, b"five"),
        insert("alpha", 2, &[-4, 5, -6], 7, b"two"),
        insert("alpha", 9, &[7, 8, 9], 8, b""),
        Event::Delete {
            collection: name("alpha"),
            id: RecordId(2),
        },
        insert("alpha", 2, &[0, 0, 0], 9, b"two again"),
        Event::SetTag {
            collection: name("alpha"),
            id: RecordId(9),
            tag: 99,
        },
        // Rewritten metadata sits at the end of the heap in memory; the
        // snapshot writes it compacted.
        Event::SetMetadata {
            collection: name("alpha"),
            id: RecordId(5),
            metadata: b"five, rewritten".to_vec(),
        },
        Event::InsertBatch {
            collection: name("beta"),
            batch,
        },
        Event::DropCollection {
            name: name("gamma"),
        },
        Event::CreateNode {
            node: NodeId(3),
            label: 30,
        },
        Event::CreateNode {
            node: NodeId(1),
            label: 10,
        },
        Event::CreateNode {
            node: NodeId(2),
            label: 20,
        },
        Event::CreateEdge {
            from: NodeId(1),
            to: NodeId(2),
            label: 7,
        },
        Event::CreateEdge {
            from: NodeId(3),
            to: NodeId(1),
            label: 0,
        },
        Event::CreateEdge {
            from: NodeId(1),
            to: NodeId(2),
            label: 5,
        },
    ]
}

/// A small state covering every section of the file: two collections (one
/// with a tombstone, a re-inserted id and rewritten metadata), a dropped
/// collection, graph nodes and edges.
pub fn small_state() -> (State, SnapshotMeta) {
    let mut state = State::new();
    let mut leaves = Vec::new();
    for event in small_events() {
        state.apply(&event).unwrap();
        leaves.push(leaf_hash(&event.encode()));
    }
    let meta = meta_for(&mut state, leaves);
    (state, meta)
}
