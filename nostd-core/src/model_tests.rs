//! The truth, pinned: the golden workload's state hash, collection hashes,
//! graph hash and index hashes, recomputed by an independent model written
//! from `docs/format.md` (sections 2, 3 and 9), and compared with values
//! checked into the repository (`golden.pinned`).
//!
//! The model does not use `State`, `Collection`, `Graph` or `hash.rs`: it
//! applies the accepted events to plain vectors and ordered maps, with the
//! semantics of format.md section 2, and hashes them with `blake3`
//! directly, message by message as format.md writes them. For the index
//! it reads the graph's links from the built `Hnsw` (the graph's
//! construction is pinned by the values, not modelled) but derives every
//! node's level from the formula of section 9 itself. So a change to the
//! hash layout, to the rounding, or to how the graph is built changes the
//! values and fails here, on every architecture alike, until the pinned
//! file (and the format version that says so) is updated on purpose.

// A failed lookup in the model is a test failure.
#![allow(clippy::unwrap_used)]

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::event::Event;
use crate::golden;
use crate::hnsw::Sequential;
use crate::state::State;

/// The pinned values, one `key value` pair a line.
const PINNED: &str = include_str!("../golden.pinned");

fn h(message: &[u8]) -> [u8; 32] {
    *blake3::hash(message).as_bytes()
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Row {
    id: u64,
    deleted: bool,
    tag: u64,
    vector: Vec<i32>,
    metadata: Vec<u8>,
    /// A table row's scalar values (format.md section 2, tables).
    values: Vec<Option<Vec<u8>>>,
}

/// A declared table as format.md section 3 hashes it.
struct ModelTable {
    /// The schema's canonical bytes, cut from the event's bytes.
    schema: Vec<u8>,
    /// Per scalar column: its fixed width, if any, and whether it is
    /// serial.
    widths: Vec<Option<usize>>,
    serial: Vec<bool>,
    sequences: Vec<i64>,
}

/// Widths of the fixed-width scalar types by code (format.md section 2).
fn fixed_width(code: u8) -> Option<usize> {
    match code {
        1 => Some(1),
        2 => Some(2),
        3 | 5 | 11 => Some(4),
        4 | 6 | 12 | 13 => Some(8),
        10 => Some(16),
        _ => None,
    }
}

struct Coll {
    dim: u32,
    metric: u8,
    m: u16,
    ef: u16,
    seed: u64,
    rows: Vec<Row>,
    table: Option<ModelTable>,
}

impl Coll {
    /// The live row with `id`: the last row with that id, if not deleted.
    fn live(&mut self, id: u64) -> &mut Row {
        let row = self
            .rows
            .iter_mut()
            .rev()
            .find(|r| r.id == id)
            .expect("an accepted event names a row");
        assert!(!row.deleted, "an accepted event names a live row");
        row
    }
}

#[derive(Default)]
struct Model {
    collections: BTreeMap<Vec<u8>, Coll>,
    nodes: BTreeMap<u64, u64>,
    edges: BTreeSet<(u64, u64, u64)>,
}

impl Model {
    /// Applies an event the state machine accepted (format.md section 2,
    /// "Semantics").
    fn apply(&mut self, event: &Event, bytes: &[u8]) {
        let key = |n: &crate::event::CollectionName| n.as_str().as_bytes().to_vec();
        match event {
            Event::CreateTable {
                name,
                config,
                schema,
            } => {
                // version, kind, name, dim, metric, m, ef, seed: the
                // schema's bytes follow.
                let at = 2 + 4 + name.as_str().len() + 4 + 1 + 2 + 2 + 8;
                let scalars: Vec<_> = schema
                    .columns
                    .iter()
                    .filter_map(|c| match c.ty {
                        crate::table::ColumnType::Scalar(t) => Some((t.code(), c.flags & 8 != 0)),
                        _ => None,
                    })
                    .collect();
                self.collections.insert(
                    key(name),
                    Coll {
                        dim: config.dim,
                        metric: config.metric.code(),
                        m: config.index.m,
                        ef: config.index.ef_construction,
                        seed: config.index.seed,
                        rows: Vec::new(),
                        table: Some(ModelTable {
                            schema: bytes[at..].to_vec(),
                            widths: scalars.iter().map(|(code, _)| fixed_width(*code)).collect(),
                            serial: scalars.iter().map(|(_, serial)| *serial).collect(),
                            sequences: vec![0; scalars.len()],
                        }),
                    },
                );
            }
            Event::InsertRows {
                collection,
                batch,
                columns,
            } => {
                let c = self.collections.get_mut(&key(collection)).unwrap();
                let t = c.table.as_mut().unwrap();
                for i in 0..batch.len() {
                    let values: Vec<Option<Vec<u8>>> = columns
                        .iter()
                        .map(|v| v.get(i).map(<[u8]>::to_vec))
                        .collect();
                    for (col, v) in values.iter().enumerate() {
                        if t.serial[col]
                            && let Some(v) = v
                        {
                            let v = i64::from_le_bytes(v[..8].try_into().unwrap());
                            t.sequences[col] = t.sequences[col].max(v);
                        }
                    }
                    c.rows.push(Row {
                        id: batch.ids[i].0,
                        deleted: false,
                        // 0, or 1 for a NULL vector (format.md, "Tables").
                        tag: batch.tags[i],
                        vector: batch.vector(i).to_vec(),
                        metadata: Vec::new(),
                        values,
                    });
                }
            }
            Event::UpdateRows {
                collection,
                ids,
                columns,
            } => {
                let c = self.collections.get_mut(&key(collection)).unwrap();
                for (i, id) in ids.iter().enumerate() {
                    let row = c.live(id.0);
                    for (col, values) in columns {
                        row.values[usize::from(*col)] = values.get(i).map(<[u8]>::to_vec);
                    }
                }
            }
            Event::CreateCollection { name, config } => {
                self.collections.insert(
                    key(name),
                    Coll {
                        dim: config.dim,
                        metric: config.metric.code(),
                        m: config.index.m,
                        ef: config.index.ef_construction,
                        seed: config.index.seed,
                        rows: Vec::new(),
                        table: None,
                    },
                );
            }
            Event::DropCollection { name } => {
                self.collections.remove(&key(name));
            }
            Event::Insert { collection, record } => {
                self.collections
                    .get_mut(&key(collection))
                    .unwrap()
                    .rows
                    .push(Row {
                        id: record.id.0,
                        deleted: false,
                        tag: record.tag,
                        vector: record.vector.clone(),
                        metadata: record.metadata.clone(),
                        values: Vec::new(),
                    });
            }
            Event::InsertBatch { collection, batch } => {
                let c = self.collections.get_mut(&key(collection)).unwrap();
                for i in 0..batch.len() {
                    c.rows.push(Row {
                        id: batch.ids[i].0,
                        deleted: false,
                        tag: batch.tags[i],
                        vector: batch.vector(i).to_vec(),
                        metadata: batch.metadata(i).to_vec(),
                        values: Vec::new(),
                    });
                }
            }
            Event::Delete { collection, id } => {
                let c = self.collections.get_mut(&key(collection)).unwrap();
                c.live(id.0).deleted = true;
            }
            Event::SetTag {
                collection,
                id,
                tag,
            } => {
                let c = self.collections.get_mut(&key(collection)).unwrap();
                c.live(id.0).tag = *tag;
            }
            Event::SetMetadata {
                collection,
                id,
                metadata,
            } => {
                let c = self.collections.get_mut(&key(collection)).unwrap();
                c.live(id.0).metadata = metadata.clone();
            }
            Event::CreateNode { node, label } => {
                self.nodes.insert(node.0, *label);
            }
            Event::DeleteNode { node } => {
                self.nodes.remove(&node.0);
                self.edges.retain(|&(f, t, _)| f != node.0 && t != node.0);
            }
            Event::CreateEdge { from, to, label } => {
                self.edges.insert((from.0, to.0, *label));
            }
            Event::DeleteEdge { from, to, label } => {
                self.edges.remove(&(from.0, to.0, *label));
            }
            Event::DeleteBatch { collection, ids } => {
                let c = self.collections.get_mut(&key(collection)).unwrap();
                for id in ids {
                    c.live(id.0).deleted = true;
                }
            }
            Event::UpdateBatch {
                collection,
                ids,
                tag,
                metadata,
            } => {
                let c = self.collections.get_mut(&key(collection)).unwrap();
                for id in ids {
                    let row = c.live(id.0);
                    if let Some(tag) = tag {
                        row.tag = *tag;
                    }
                    if let Some(metadata) = metadata {
                        row.metadata = metadata.clone();
                    }
                }
            }
            Event::DropCollections { names } => {
                for name in names {
                    self.collections.remove(&key(name));
                }
            }
            // The golden workload alters no table; the state tests check
            // an altered table's hash against one created in that shape.
            Event::AlterTable { .. } => unreachable!("the golden workload alters no table"),
            // format.md: the rows of `ids` are deleted, then the batch is
            // inserted as by `InsertRows`.
            Event::ReplaceRows {
                collection,
                batch,
                columns,
            } => {
                let c = self.collections.get_mut(&key(collection)).unwrap();
                for id in &batch.ids {
                    c.live(id.0).deleted = true;
                }
                let insert = Event::InsertRows {
                    collection: collection.clone(),
                    batch: batch.clone(),
                    columns: columns.clone(),
                };
                self.apply(&insert, bytes);
            }
            // format.md: the collection takes the new configuration; its
            // rows are unchanged.
            Event::Reindex { collection, config } => {
                let c = self.collections.get_mut(&key(collection)).unwrap();
                c.metric = config.metric.code();
                c.m = config.index.m;
                c.ef = config.index.ef_construction;
                c.seed = config.index.seed;
            }
            // format.md: `count:u32`, then per event `len:u32 ‖ event`;
            // the events are applied in order.
            Event::Transaction { events } => {
                let count = u32::from_le_bytes(bytes[2..6].try_into().unwrap()) as usize;
                assert_eq!(count, events.len());
                let mut at = 6;
                for event in events {
                    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                    let part = &bytes[at + 4..at + 4 + len];
                    self.apply(event, part);
                    at += 4 + len;
                }
                assert_eq!(at, bytes.len(), "a transaction ends with its last event");
            }
        }
    }

    /// `collection` of format.md section 3.
    fn collection_hash(name: &[u8], c: &Coll) -> [u8; 32] {
        let mut chunks = Vec::new();
        for (i, chunk) in c.rows.chunks(256).enumerate() {
            let mut m = vec![0x01];
            m.extend_from_slice(&(i as u64).to_le_bytes());
            m.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            for r in chunk {
                m.extend_from_slice(&r.id.to_le_bytes());
                m.push(u8::from(r.deleted));
                m.extend_from_slice(&r.tag.to_le_bytes());
                for x in &r.vector {
                    m.extend_from_slice(&x.to_le_bytes());
                }
                m.extend_from_slice(&(r.metadata.len() as u32).to_le_bytes());
                m.extend_from_slice(&r.metadata);
                for (col, value) in r.values.iter().enumerate() {
                    match value {
                        None => m.push(0),
                        Some(v) => {
                            m.push(1);
                            if c.table.as_ref().unwrap().widths[col].is_none() {
                                m.extend_from_slice(&(v.len() as u32).to_le_bytes());
                            }
                            m.extend_from_slice(v);
                        }
                    }
                }
            }
            chunks.push(h(&m));
        }
        let mut m = vec![0x02];
        m.extend_from_slice(&(name.len() as u32).to_le_bytes());
        m.extend_from_slice(name);
        m.extend_from_slice(&c.dim.to_le_bytes());
        m.push(c.metric);
        m.extend_from_slice(&c.m.to_le_bytes());
        m.extend_from_slice(&c.ef.to_le_bytes());
        m.extend_from_slice(&c.seed.to_le_bytes());
        m.extend_from_slice(&(c.rows.len() as u64).to_le_bytes());
        let live = c.rows.iter().filter(|r| !r.deleted).count();
        m.extend_from_slice(&(live as u64).to_le_bytes());
        m.extend_from_slice(&(chunks.len() as u64).to_le_bytes());
        for ch in &chunks {
            m.extend_from_slice(ch);
        }
        if let Some(t) = &c.table {
            let mut descriptor = t.schema.clone();
            for s in &t.sequences {
                descriptor.extend_from_slice(&s.to_le_bytes());
            }
            m.extend_from_slice(&(descriptor.len() as u64).to_le_bytes());
            m.extend_from_slice(&descriptor);
        }
        h(&m)
    }

    /// `graph` of format.md section 3.
    fn graph_hash(&self) -> [u8; 32] {
        let mut m = vec![0x03];
        m.extend_from_slice(&(self.nodes.len() as u64).to_le_bytes());
        for (n, l) in &self.nodes {
            m.extend_from_slice(&n.to_le_bytes());
            m.extend_from_slice(&l.to_le_bytes());
        }
        m.extend_from_slice(&(self.edges.len() as u64).to_le_bytes());
        for (f, t, l) in &self.edges {
            m.extend_from_slice(&f.to_le_bytes());
            m.extend_from_slice(&t.to_le_bytes());
            m.extend_from_slice(&l.to_le_bytes());
        }
        h(&m)
    }

    /// `state` of format.md section 3 (version 1).
    fn state_hash(&self) -> [u8; 32] {
        let mut m = vec![0x04];
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&(self.collections.len() as u32).to_le_bytes());
        for (name, c) in &self.collections {
            m.extend_from_slice(&Self::collection_hash(name, c));
        }
        m.extend_from_slice(&self.graph_hash());
        h(&m)
    }
}

/// SplitMix64's output for the state `x` (Steele, Lea and Flood): one step
/// of the generator seeded with `x`.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A row's level, format.md section 9.
fn model_level(id: u64, seed: u64, m: u16) -> u8 {
    let mut h = splitmix(seed ^ splitmix(id));
    let mut level = 0u8;
    while level < 15 && h.is_multiple_of(u64::from(m)) {
        level += 1;
        h = splitmix(h ^ u64::from(level));
    }
    level
}

/// `index_hash` of format.md section 9, from the graph's links and the
/// collection's ids, with levels from the formula.
fn model_index_hash(c: &crate::state::Collection) -> [u8; 32] {
    let g = c.index();
    let p = c.config().index;
    let rows = g.len();
    let levels: Vec<u8> = c.ids()[..rows]
        .iter()
        .map(|id| model_level(id.0, p.seed, p.m))
        .collect();
    let mut chunks = Vec::new();
    for start in (0..rows).step_by(256) {
        let mut m = vec![0x05];
        m.extend_from_slice(&((start / 256) as u64).to_le_bytes());
        for (row, &level) in levels.iter().enumerate().take(rows).skip(start).take(256) {
            assert_eq!(g.level(row as u32), level, "level of row {row}");
            m.push(level);
            for layer in 0..=level {
                let links = g.links(row as u32, layer);
                m.extend_from_slice(&(links.len() as u16).to_le_bytes());
                for l in links {
                    m.extend_from_slice(&l.to_le_bytes());
                }
            }
        }
        chunks.push(h(&m));
    }
    let top = levels.iter().copied().max().unwrap_or(0);
    assert_eq!(g.max_level(), top, "the top level is the highest level");
    if let Some(e) = g.entry() {
        assert_eq!(levels[e as usize], top, "the entry is on the top level");
    }
    let mut m = vec![0x05];
    m.extend_from_slice(&p.m.to_le_bytes());
    m.extend_from_slice(&p.ef_construction.to_le_bytes());
    m.extend_from_slice(&p.seed.to_le_bytes());
    m.extend_from_slice(&(rows as u64).to_le_bytes());
    m.extend_from_slice(&g.entry().unwrap_or(u32::MAX).to_le_bytes());
    m.push(top);
    m.extend_from_slice(&(chunks.len() as u64).to_le_bytes());
    for ch in &chunks {
        m.extend_from_slice(ch);
    }
    h(&m)
}

/// The pinned values by key.
fn pinned() -> BTreeMap<String, String> {
    PINNED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("`key value` lines");
            (k.to_string(), v.trim().to_string())
        })
        .collect()
}

/// The golden workload's hashes as the model computes them, keyed as in
/// `golden.pinned`.
fn model_values() -> BTreeMap<String, String> {
    let mut state = State::new();
    let mut model = Model::default();
    golden::apply_workload(&mut state, |bytes, applied| {
        if applied {
            model.apply(&Event::decode(bytes).expect("logged events decode"), bytes);
        }
    });
    // The golden run builds every complete block (golden::run).
    state.build_indexes(&Sequential);
    let mut out = BTreeMap::new();
    out.insert("golden_version".into(), golden::GOLDEN_VERSION.to_string());
    out.insert(
        "state_hash_version".into(),
        crate::hash::STATE_HASH_VERSION.to_string(),
    );
    let mut combined = vec![0x06];
    combined.extend_from_slice(&(model.collections.len() as u32).to_le_bytes());
    for (name, c) in &model.collections {
        let name_str = core::str::from_utf8(name).unwrap();
        out.insert(
            format!("collection.{name_str}"),
            hex(&Model::collection_hash(name, c)),
        );
        let real = state
            .collection(&crate::event::CollectionName::new(name_str).unwrap())
            .expect("the model and the state hold the same collections");
        let index = model_index_hash(real);
        out.insert(format!("index.{name_str}"), hex(&index));
        combined.extend_from_slice(&(name.len() as u32).to_le_bytes());
        combined.extend_from_slice(name);
        combined.extend_from_slice(&index);
    }
    assert_eq!(state.collections().len(), model.collections.len());
    out.insert("indexes_hash".into(), hex(&h(&combined)));
    out.insert("graph_hash".into(), hex(&model.graph_hash()));
    out.insert("state_hash".into(), hex(&model.state_hash()));
    out
}

/// The golden workload's accepted events grouped into transactions of up
/// to seven: applied by the state and by the model, they give the pinned
/// state hash of the same events applied one by one.
#[test]
fn transactions_of_the_golden_events_give_the_pinned_hash() {
    let mut accepted = Vec::new();
    golden::apply_workload(&mut State::new(), |bytes, applied| {
        if applied {
            accepted.push(Event::decode(bytes).expect("logged events decode"));
        }
    });
    let mut state = State::new();
    let mut model = Model::default();
    let mut transactions = 0;
    for group in accepted.chunks(7) {
        let event = if group.len() == 1 {
            group[0].clone()
        } else {
            transactions += 1;
            Event::Transaction {
                events: group.to_vec(),
            }
        };
        let bytes = event.encode();
        assert_eq!(Event::decode(&bytes).as_ref(), Ok(&event));
        state
            .apply(&event)
            .expect("a transaction of accepted events applies");
        model.apply(&event, &bytes);
    }
    assert!(transactions > 3, "the workload makes several transactions");
    let pinned = pinned();
    assert_eq!(hex(&model.state_hash()), pinned["state_hash"]);
    assert_eq!(state.state_hash().to_string(), pinned["state_hash"]);
}

/// The model, written from docs/format.md, reproduces every pinned value:
/// the pins are the format's, not whatever the code printed.
#[test]
fn model_reproduces_the_pinned_values() {
    let model = model_values();
    let pinned = pinned();
    let text: String = model.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    assert_eq!(model, pinned, "the model of docs/format.md gives:\n{text}");
}

/// The code's golden run — its report, and the state's own hashes — gives
/// the pinned values. A change that keeps the four architectures in
/// agreement but changes the layout, the rounding or the graph fails here
/// until `golden.pinned` (and the version that says so) is updated.
#[test]
fn golden_run_matches_the_pinned_values() {
    let pinned = pinned();
    let mut report = String::new();
    let state_hash = golden::run(&mut report).unwrap();
    assert_eq!(state_hash.to_string(), pinned["state_hash"]);
    assert_eq!(golden::GOLDEN_VERSION.to_string(), pinned["golden_version"]);
    assert_eq!(
        crate::hash::STATE_HASH_VERSION.to_string(),
        pinned["state_hash_version"]
    );
    let field = |line: &str| line.rsplit_once("hash=").map(|(_, h)| h.to_string());
    let mut seen = 0;
    for line in report.lines() {
        let mut words = line.split(' ');
        match (words.next(), words.next()) {
            (Some("collection"), Some(name)) => {
                assert_eq!(
                    field(line).unwrap(),
                    pinned[&format!("collection.{name}")],
                    "{line}"
                );
                seen += 1;
            }
            (Some("index"), Some(name)) => {
                assert_eq!(
                    field(line).unwrap(),
                    pinned[&format!("index.{name}")],
                    "{line}"
                );
                seen += 1;
            }
            (Some("graph"), _) => {
                assert_eq!(field(line).unwrap(), pinned["graph_hash"], "{line}");
                seen += 1;
            }
            (Some("state_hash"), Some(hash)) => {
                assert_eq!(hash, pinned["state_hash"]);
                seen += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        seen,
        4 + 4 + 1 + 1,
        "the report lists every pinned hash:\n{report}"
    );
    // The combined index hash, from the state itself.
    let mut state = State::new();
    golden::apply_workload(&mut state, |_, _| {});
    state.build_indexes(&Sequential);
    assert_eq!(state.index_hash().to_string(), pinned["indexes_hash"]);
    assert_eq!(state.hashes().index.to_string(), pinned["indexes_hash"]);
}
