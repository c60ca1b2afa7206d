//! The snapshot file: a whole [`State`] with the log position it reflects,
//! in deterministic bytes (byte layout in `docs/format.md`, section 6).
//!
//! The same state and [`SnapshotMeta`] give the same file on every machine:
//! collections come in name order, graph nodes and edges in key order, every
//! integer is little-endian with an explicit width, and nothing depends on
//! the clock, on map iteration order or on how the state was built (metadata
//! rewritten in place is written compacted). [`write_snapshot`] streams
//! through a buffered writer (`HashingWriter`) that hashes exactly the bytes it hands on, and
//! appends that BLAKE3 hash as the trailer.
//!
//! [`read_snapshot`] works in two phases so that a damaged file is described
//! as precisely as possible and nothing is built from bytes the trailer does
//! not vouch for:
//!
//! 1. *Framing.* Magic, version, then every length field, each checked
//!    against the remaining input before anything is sliced or allocated;
//!    the result is a set of borrowed views. A torn file shows up here as
//!    [`SnapshotError::Truncated`] with the offset of the missing field.
//!    Then the trailer: exactly 32 bytes must remain, and they must equal
//!    the BLAKE3 hash of everything before them.
//! 2. *Rebuild.* The state is rebuilt through the state machine's own checks
//!    ([`State::apply`] for collections and the graph,
//!    [`Collection::restore_row`] for rows), so a snapshot can never produce
//!    a state that no log could have produced; each collection's graph,
//!    checked link by link, must hash to the index hash recorded after it;
//!    finally the recomputed state hash and the combined index hash must
//!    equal the ones recorded in the header. Names, nodes and edges must come in
//!    strictly increasing order, so that every accepted file is the one file
//!    [`write_snapshot`] writes for its state.
//!
//! The reader does not check `log_root` against `log_leaves`: the engine
//! does that with its Merkle tree, which it needs anyway.

use std::fmt;
use std::io::{self, Write};

use std::collections::BTreeMap;
use valori_core::Metric;
use valori_core::event::{
    CollectionConfig, CollectionName, Event, IndexParams, NameError, NodeId, RecordId,
};
use valori_core::hash::Hash32;
use valori_core::hnsw::{Hnsw, IndexError};
use valori_core::state::{ApplyError, Collection, State, StateHashes};
use valori_core::table::TableSchema;

/// First eight bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"VALORSNP";

/// Version of the layout below the magic; readers reject any other.
/// Version 2 added the index hashes (docs/format.md section 6).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 3;

/// The oldest format version this build reads: version 2 files are
/// version 3 files without the table section (their collections have no
/// declared columns).
pub const SNAPSHOT_FORMAT_VERSION_MIN: u32 = 2;

/// Bytes of the BLAKE3 trailer.
pub const SNAPSHOT_TRAILER_BYTES: usize = 32;

/// Bytes a row occupies besides its vector and its metadata value:
/// id `u64`, tag `u64`, tombstone `u8`, metadata length `u32`.
const ROW_FIXED_BYTES: u64 = 8 + 8 + 1 + 4;

/// Size of the write buffer. Large enough that BLAKE3 hashes it with all
/// its SIMD lanes busy and that the inner writer sees few, large writes.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// The log position a snapshot reflects.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// Events applied to reach the state (the log's length).
    pub events: u64,
    /// The state hash of the state in the file.
    pub state_hash: Hash32,
    /// The combined index hash ([`valori_core::hash::indexes_hash`]) of
    /// the graphs in the file, exactly as they are: the graph holds every
    /// block of rows that was built when the snapshot was written.
    pub index_hash: Hash32,
    /// Merkle root of the log's first `events` entries.
    pub log_root: Hash32,
    /// Leaf hash of every event, so that proofs and consistency checks keep
    /// working after the log before the snapshot is removed.
    pub log_leaves: Vec<Hash32>,
}

/// Why a snapshot file was rejected. Every variant is the file's fault
/// (damage or a foreign file) and names where the problem is; offsets are
/// byte offsets from the start of the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("not a Valori snapshot: the file starts with {found:02x?}, not \"VALORSNP\"")]
    BadMagic { found: Vec<u8> },
    #[error(
        "unknown snapshot format version {found} (this build reads version {SNAPSHOT_FORMAT_VERSION})"
    )]
    UnknownVersion { found: u32 },
    #[error(
        "snapshot truncated at byte {offset}: {field} needs {needed} bytes, only {available} remain"
    )]
    Truncated {
        offset: u64,
        field: &'static str,
        needed: u64,
        available: u64,
    },
    #[error("{count} unexpected bytes after the trailer, from byte {offset}")]
    TrailingBytes { offset: u64, count: u64 },
    #[error("snapshot trailer mismatch: file records {recorded}, its bytes hash to {computed}")]
    ChecksumMismatch { recorded: Hash32, computed: Hash32 },
    #[error("snapshot covers {events} events but records {leaves} log leaves")]
    LeafCountMismatch { events: u64, leaves: u64 },
    #[error("collection name at byte {offset} is invalid: {source}")]
    InvalidCollectionName { offset: u64, source: NameError },
    #[error("collection {name} at byte {offset} does not follow the previous one in name order")]
    CollectionOrder { offset: u64, name: CollectionName },
    #[error("collection {collection}: unknown metric code {code} at byte {offset}")]
    UnknownMetric {
        offset: u64,
        collection: CollectionName,
        code: u8,
    },
    #[error("collection {collection} at byte {offset} is invalid: {source}")]
    InvalidCollection {
        offset: u64,
        collection: CollectionName,
        source: ApplyError,
    },
    #[error(
        "collection {collection}: {rows} rows (at byte {offset}) exceed the 2^32 - 1 a collection holds"
    )]
    TooManyRows {
        offset: u64,
        collection: CollectionName,
        rows: u64,
    },
    #[error(
        "collection {collection}, row {row}: tombstone byte {value} at byte {offset} is neither 0 nor 1"
    )]
    InvalidTombstone {
        offset: u64,
        collection: CollectionName,
        row: u64,
        value: u8,
    },
    #[error("collection {collection}, row {row} is invalid: {source}")]
    InvalidRow {
        collection: CollectionName,
        row: u64,
        source: ApplyError,
    },
    #[error("collection {collection}: the index at byte {offset} is invalid: {source}")]
    InvalidIndex {
        offset: u64,
        collection: CollectionName,
        source: IndexError,
    },
    #[error("graph {what} at byte {offset} does not follow the previous one in key order")]
    GraphOrder { offset: u64, what: GraphPart },
    #[error("graph {what} at byte {offset} is invalid: {source}")]
    InvalidGraph {
        offset: u64,
        what: GraphPart,
        source: ApplyError,
    },
    #[error("snapshot records state hash {recorded}, its contents hash to {computed}")]
    StateHashMismatch { recorded: Hash32, computed: Hash32 },
    #[error(
        "collection {collection}: snapshot records index hash {recorded} at byte {offset}, its graph hashes to {computed}"
    )]
    CollectionIndexHashMismatch {
        offset: u64,
        collection: CollectionName,
        recorded: Hash32,
        computed: Hash32,
    },
    #[error("snapshot records index hash {recorded}, its graphs hash to {computed}")]
    IndexHashMismatch { recorded: Hash32, computed: Hash32 },
    #[error("collection at byte {offset}: the table section is malformed ({what})")]
    InvalidTable { offset: u64, what: &'static str },
}

/// Which part of the graph section an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphPart {
    Node,
    Edge,
}

impl fmt::Display for GraphPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GraphPart::Node => "node",
            GraphPart::Edge => "edge",
        })
    }
}

// ---------------------------------------------------------------------------
// Writing

/// Writes the snapshot of `state` at the log position `meta`.
///
/// `state` is `&mut` only to refresh its cached state hash, which must equal
/// `meta.state_hash`; `meta.log_leaves` must hold `meta.events` leaves. A
/// snapshot that breaks either would be rejected on reading, so it is
/// refused here with [`io::ErrorKind::InvalidInput`] before a byte is
/// written. The caller flushes and syncs `out`.
pub fn write_snapshot(
    state: &mut State,
    meta: &SnapshotMeta,
    out: &mut impl Write,
) -> io::Result<()> {
    let hashes = state.hashes();
    write_snapshot_hashed(state, &hashes, meta, out)
}

/// [`write_snapshot`] for a caller that holds `state` shared (so that
/// others may read it meanwhile) and took `hashes` from it with no change
/// since: `hashes` must be `state.hashes()` as it is now, whose state and
/// index hashes are checked against `meta` as there.
pub fn write_snapshot_hashed(
    state: &State,
    hashes: &StateHashes,
    meta: &SnapshotMeta,
    out: &mut impl Write,
) -> io::Result<()> {
    let leaves = meta.log_leaves.len() as u64;
    if leaves != meta.events {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            SnapshotError::LeafCountMismatch {
                events: meta.events,
                leaves,
            },
        ));
    }
    if hashes.state != meta.state_hash {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            SnapshotError::StateHashMismatch {
                recorded: meta.state_hash,
                computed: hashes.state,
            },
        ));
    }
    if hashes.index != meta.index_hash {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            SnapshotError::IndexHashMismatch {
                recorded: meta.index_hash,
                computed: hashes.index,
            },
        ));
    }

    let mut w = HashingWriter::new(out);
    w.put(&SNAPSHOT_MAGIC)?;
    w.put_u32(SNAPSHOT_FORMAT_VERSION)?;
    w.put_u64(meta.events)?;
    w.put(meta.state_hash.as_bytes())?;
    w.put(meta.index_hash.as_bytes())?;
    w.put(meta.log_root.as_bytes())?;
    w.put_u64(leaves)?;
    w.put_mapped(&meta.log_leaves, |leaf| leaf.0)?;

    let collections = state.collections();
    let count = u32::try_from(collections.len())
        .expect("invariant: the state machine caps collections far below 2^32");
    w.put_u32(count)?;
    for (collection, (_, index_hash)) in collections.zip(&hashes.indexes) {
        write_collection(&mut w, collection, index_hash)?;
    }

    let graph = state.graph();
    w.put_u64(graph.node_count() as u64)?;
    for (node, label) in graph.nodes() {
        w.put_u64(node.0)?;
        w.put_u64(label)?;
    }
    w.put_u64(graph.edge_count() as u64)?;
    for (from, to, label) in graph.edges() {
        w.put_u64(from.0)?;
        w.put_u64(to.0)?;
        w.put_u64(label)?;
    }
    w.finish().map(|_| ())
}

fn write_collection<W: Write>(
    w: &mut HashingWriter<'_, W>,
    c: &Collection,
    index_hash: &Hash32,
) -> io::Result<()> {
    let rows = c.rows();
    let dim = c.dim();
    // The state machine keeps its columns in step; assert it right before
    // the columns become bytes.
    assert!(
        c.ids().len() == rows
            && c.tags().len() == rows
            && c.deleted().len() == rows
            && c.vectors().len() == rows
            && c.vectors().width() == dim,
        "invariant: collection {} has columns of one length",
        c.name()
    );
    let name = c.name().as_str().as_bytes();
    w.put_u32(name.len() as u32)?;
    w.put(name)?;
    let config = c.config();
    w.put_u32(config.dim)?;
    w.put(&[config.metric.code()])?;
    w.put(&config.index.m.to_le_bytes())?;
    w.put(&config.index.ef_construction.to_le_bytes())?;
    w.put_u64(config.index.seed)?;
    w.put_u64(rows as u64)?;
    w.put_mapped(c.ids(), |id| id.0.to_le_bytes())?;
    w.put_mapped(c.tags(), |tag| tag.to_le_bytes())?;
    w.put_mapped(c.deleted(), |&deleted| [u8::from(deleted)])?;
    for run in c.vectors().all_runs() {
        w.put_i32s(run)?;
    }
    for row in 0..rows {
        let metadata = c.metadata(row);
        let len = u32::try_from(metadata.len())
            .expect("invariant: the state machine caps metadata at 64 KiB");
        w.put_u32(len)?;
        w.put(metadata)?;
    }
    write_index(w, c)?;
    w.put(index_hash.as_bytes())?;
    write_table(w, c)
}

/// The table section: `0`, or `1 ‖ schema ‖ sequence:i64 × scalar
/// columns ‖ per scalar column: valid:u8 × rows, then the values (fixed
/// width × rows, zeros for NULL; or (len:u32 ‖ bytes) × rows, empty for
/// NULL)`.
fn write_table<W: Write>(w: &mut HashingWriter<'_, W>, c: &Collection) -> io::Result<()> {
    let Some(table) = c.table() else {
        return w.put(&[0]);
    };
    w.put(&[1])?;
    let mut schema = Vec::new();
    table.schema().encode_into(&mut schema);
    w.put(&schema)?;
    w.put_mapped(table.sequences(), |s| s.to_le_bytes())?;
    for column in table.columns() {
        w.put_mapped(column.valid(), |&v| [u8::from(v)])?;
        match column.ty().width() {
            Some(width) => {
                let zeros = vec![0u8; width];
                for row in 0..c.rows() {
                    w.put(column.get(row).unwrap_or(&zeros))?;
                }
            }
            None => {
                for row in 0..c.rows() {
                    let value = column.get(row).unwrap_or_default();
                    w.put_u32(value.len() as u32)?;
                    w.put(value)?;
                }
            }
        }
    }
    Ok(())
}

/// The HNSW graph of a collection: entry, layer-0 links (used slots only),
/// then the upper layers of the nodes that have them, in row order.
fn write_index<W: Write>(w: &mut HashingWriter<'_, W>, c: &Collection) -> io::Result<()> {
    let index = c.index();
    assert!(
        index.len() <= c.rows(),
        "invariant: the graph of {} holds only its rows",
        c.name()
    );
    let parts = index.parts();
    w.put_u64(index.len() as u64)?;
    w.put_u32(parts.entry.unwrap_or(u32::MAX))?;
    w.put_mapped(parts.len0, |n| n.to_le_bytes())?;
    let m0 = index.m0();
    for (row, &n) in parts.len0.iter().enumerate() {
        w.put_mapped(&parts.links0[row * m0..row * m0 + usize::from(n)], |l| {
            l.to_le_bytes()
        })?;
    }
    w.put_u32(parts.upper.len() as u32)?;
    for (&row, layers) in parts.upper {
        w.put_u32(row)?;
        w.put(&[layers.len() as u8])?;
        for links in layers {
            w.put(&(links.len() as u16).to_le_bytes())?;
            w.put_mapped(links, |l| l.to_le_bytes())?;
        }
    }
    Ok(())
}

/// A buffered writer that hashes exactly the bytes it passes on.
///
/// Small fields are gathered in a buffer of [`WRITE_BUFFER_BYTES`]; the
/// buffer is hashed and written when full. Slices at least that large
/// (vector columns) bypass the buffer in buffer-sized pieces, each hashed
/// and written while it is still in cache.
struct HashingWriter<'w, W: Write> {
    inner: &'w mut W,
    hasher: blake3::Hasher,
    buf: Vec<u8>,
    cap: usize,
}

impl<'w, W: Write> HashingWriter<'w, W> {
    fn new(inner: &'w mut W) -> Self {
        HashingWriter {
            inner,
            hasher: blake3::Hasher::new(),
            buf: Vec::with_capacity(WRITE_BUFFER_BYTES),
            cap: WRITE_BUFFER_BYTES,
        }
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.hasher.update(&self.buf);
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() <= self.cap - self.buf.len() {
            self.buf.extend_from_slice(bytes);
            return Ok(());
        }
        self.flush_buf()?;
        if bytes.len() < self.cap {
            self.buf.extend_from_slice(bytes);
            return Ok(());
        }
        for piece in bytes.chunks(self.cap) {
            self.hasher.update(piece);
            self.inner.write_all(piece)?;
        }
        Ok(())
    }

    fn put_u32(&mut self, v: u32) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }

    fn put_u64(&mut self, v: u64) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }

    /// Writes `encode(item)` for each item, straight into the buffer.
    fn put_mapped<T, const N: usize>(
        &mut self,
        items: &[T],
        encode: impl Fn(&T) -> [u8; N],
    ) -> io::Result<()> {
        let per_piece = (self.cap / N).max(1);
        for piece in items.chunks(per_piece) {
            let bytes = piece.len() * N;
            if bytes > self.cap - self.buf.len() {
                self.flush_buf()?;
            }
            let start = self.buf.len();
            self.buf.resize(start + bytes, 0);
            for (slot, item) in self.buf[start..].chunks_exact_mut(N).zip(piece) {
                slot.copy_from_slice(&encode(item));
            }
        }
        Ok(())
    }

    /// Writes Q16.16 components, the bulk of a snapshot. On little-endian
    /// targets the in-memory bytes are the file's bytes.
    #[cfg(target_endian = "little")]
    fn put_i32s(&mut self, values: &[i32]) -> io::Result<()> {
        self.put(bytemuck::cast_slice(values))
    }

    #[cfg(not(target_endian = "little"))]
    fn put_i32s(&mut self, values: &[i32]) -> io::Result<()> {
        self.put_mapped(values, |v| v.to_le_bytes())
    }

    /// Flushes, writes the trailer and returns it.
    fn finish(mut self) -> io::Result<Hash32> {
        self.flush_buf()?;
        let trailer = Hash32::from(self.hasher.finalize());
        self.inner.write_all(trailer.as_bytes())?;
        Ok(trailer)
    }
}

// ---------------------------------------------------------------------------
// Reading

/// Reads a snapshot written by [`write_snapshot`], checking everything (see
/// the module documentation). Never panics, and allocates nothing whose size
/// the remaining input does not cover.
pub fn read_snapshot(bytes: &[u8]) -> Result<(State, SnapshotMeta), SnapshotError> {
    let frame = read_frame(bytes)?;
    rebuild(&frame)
}

/// A cursor over the input that never reads past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// File offset of `bytes[0]`, for errors.
    base: u64,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], base: u64) -> Self {
        Cursor {
            bytes,
            pos: 0,
            base,
        }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn truncated(&self, field: &'static str, needed: u128) -> SnapshotError {
        SnapshotError::Truncated {
            offset: self.offset(),
            field,
            needed: u64::try_from(needed).unwrap_or(u64::MAX),
            available: self.remaining() as u64,
        }
    }

    /// Fails unless `needed` more bytes are available.
    fn require(&self, field: &'static str, needed: u128) -> Result<(), SnapshotError> {
        if needed > self.remaining() as u128 {
            return Err(self.truncated(field, needed));
        }
        Ok(())
    }

    fn take(&mut self, field: &'static str, n: u128) -> Result<&'a [u8], SnapshotError> {
        self.require(field, n)?;
        // `n <= remaining`, so it fits in usize.
        let n = n as usize;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], SnapshotError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N as u128)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, SnapshotError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, SnapshotError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, SnapshotError> {
        self.array(field).map(u64::from_le_bytes)
    }

    fn hash(&mut self, field: &'static str) -> Result<Hash32, SnapshotError> {
        self.array(field).map(Hash32)
    }
}

/// The framed file: every field located, nothing interpreted.
struct Frame<'a> {
    events: u64,
    state_hash: Hash32,
    index_hash: Hash32,
    log_root: Hash32,
    leaves: &'a [u8],
    collections: Vec<CollectionFrame<'a>>,
    /// `(id, label)` pairs, 16 bytes each.
    nodes: &'a [u8],
    nodes_offset: u64,
    /// `(from, to, label)` triples, 24 bytes each.
    edges: &'a [u8],
    edges_offset: u64,
}

struct CollectionFrame<'a> {
    /// Offset of the name's length prefix.
    offset: u64,
    name: &'a [u8],
    dim: u32,
    metric: u8,
    metric_offset: u64,
    m: u16,
    ef_construction: u16,
    seed: u64,
    rows: u64,
    rows_offset: u64,
    ids: &'a [u8],
    tags: &'a [u8],
    deleted: &'a [u8],
    deleted_offset: u64,
    vectors: &'a [u8],
    /// `(u32 len ‖ bytes) × rows`, already walked once.
    metadata: &'a [u8],
    metadata_offset: u64,
    /// The graph section, already walked once.
    index: &'a [u8],
    index_offset: u64,
    /// The recorded index hash of the graph section.
    index_hash: Hash32,
    index_hash_offset: u64,
    table: Option<TableFrame<'a>>,
}

/// A table section, framed.
struct TableFrame<'a> {
    offset: u64,
    schema: TableSchema,
    sequences: Vec<i64>,
    /// Per scalar column: the validity bytes and the values.
    columns: Vec<(&'a [u8], &'a [u8], u64)>,
}

/// Phase 1: locates every field, checks the trailer.
fn read_frame(bytes: &[u8]) -> Result<Frame<'_>, SnapshotError> {
    let magic_len = bytes.len().min(SNAPSHOT_MAGIC.len());
    if bytes[..magic_len] != SNAPSHOT_MAGIC[..magic_len] {
        return Err(SnapshotError::BadMagic {
            found: bytes[..magic_len].to_vec(),
        });
    }
    let mut cur = Cursor::new(bytes, 0);
    cur.take("magic", SNAPSHOT_MAGIC.len() as u128)?;
    let version = cur.u32("format version")?;
    if !(SNAPSHOT_FORMAT_VERSION_MIN..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
        return Err(SnapshotError::UnknownVersion { found: version });
    }
    let events = cur.u64("event count")?;
    let state_hash = cur.hash("state hash")?;
    let index_hash = cur.hash("index hash")?;
    let log_root = cur.hash("log root")?;
    let leaf_count = cur.u64("log leaf count")?;
    let leaves = cur.take("log leaves", u128::from(leaf_count) * 32)?;

    let collection_count = cur.u32("collection count")?;
    let mut collections = Vec::new();
    for _ in 0..collection_count {
        collections.push(frame_collection(&mut cur, version)?);
    }

    let node_count = cur.u64("graph node count")?;
    let nodes_offset = cur.offset();
    let nodes = cur.take("graph nodes", u128::from(node_count) * 16)?;
    let edge_count = cur.u64("graph edge count")?;
    let edges_offset = cur.offset();
    let edges = cur.take("graph edges", u128::from(edge_count) * 24)?;

    let body_end = cur.pos;
    if cur.remaining() > SNAPSHOT_TRAILER_BYTES {
        return Err(SnapshotError::TrailingBytes {
            offset: (body_end + SNAPSHOT_TRAILER_BYTES) as u64,
            count: (cur.remaining() - SNAPSHOT_TRAILER_BYTES) as u64,
        });
    }
    let recorded = cur.hash("trailer")?;
    let computed = Hash32::from(blake3::hash(&bytes[..body_end]));
    if recorded != computed {
        return Err(SnapshotError::ChecksumMismatch { recorded, computed });
    }

    Ok(Frame {
        events,
        state_hash,
        index_hash,
        log_root,
        leaves,
        collections,
        nodes,
        nodes_offset,
        edges,
        edges_offset,
    })
}

fn frame_collection<'a>(
    cur: &mut Cursor<'a>,
    version: u32,
) -> Result<CollectionFrame<'a>, SnapshotError> {
    let offset = cur.offset();
    let name_len = cur.u32("collection name length")?;
    let name = cur.take("collection name", u128::from(name_len))?;
    let dim = cur.u32("dimension")?;
    let metric_offset = cur.offset();
    let metric = cur.u8("metric")?;
    let m = cur.u16("HNSW m")?;
    let ef_construction = cur.u16("HNSW ef_construction")?;
    let seed = cur.u64("HNSW seed")?;
    let rows_offset = cur.offset();
    let rows = cur.u64("row count")?;
    // Check the whole fixed-size part of the rows at once, so that a huge
    // row count fails here instead of in the loops below.
    let rows_w = u128::from(rows);
    let vector_bytes = rows_w * u128::from(dim) * 4;
    cur.require(
        "collection rows",
        rows_w * u128::from(ROW_FIXED_BYTES) + vector_bytes,
    )?;
    let ids = cur.take("ids", rows_w * 8)?;
    let tags = cur.take("tags", rows_w * 8)?;
    let deleted_offset = cur.offset();
    let deleted = cur.take("tombstones", rows_w)?;
    let vectors = cur.take("vectors", vector_bytes)?;
    let metadata_offset = cur.offset();
    let metadata_start = cur.pos;
    for _ in 0..rows {
        let len = cur.u32("metadata length")?;
        cur.take("metadata", u128::from(len))?;
    }
    let metadata = &cur.bytes[metadata_start..cur.pos];
    let index_offset = cur.offset();
    let index_start = cur.pos;
    let indexed = cur.u64("indexed rows")?;
    cur.u32("index entry")?;
    let len0 = cur.take("index layer-0 lengths", u128::from(indexed) * 2)?;
    let links0: u128 = len0
        .chunks_exact(2)
        .map(|b| u128::from(u16::from_le_bytes([b[0], b[1]])))
        .sum();
    cur.take("index layer-0 links", links0 * 4)?;
    let upper = cur.u32("index upper node count")?;
    for _ in 0..upper {
        cur.u32("index upper node")?;
        let levels = cur.u8("index upper node level")?;
        for _ in 0..levels {
            let n = cur.u16("index upper link count")?;
            cur.take("index upper links", u128::from(n) * 4)?;
        }
    }
    let index = &cur.bytes[index_start..cur.pos];
    let index_hash_offset = cur.offset();
    let index_hash = cur.hash("collection index hash")?;
    let table = if version >= 3 {
        frame_table(cur, rows)?
    } else {
        None
    };
    Ok(CollectionFrame {
        offset,
        name,
        dim,
        metric,
        metric_offset,
        m,
        ef_construction,
        seed,
        rows,
        rows_offset,
        ids,
        tags,
        deleted,
        deleted_offset,
        vectors,
        metadata,
        metadata_offset,
        index,
        index_offset,
        index_hash,
        index_hash_offset,
        table,
    })
}

fn frame_table<'a>(
    cur: &mut Cursor<'a>,
    rows: u64,
) -> Result<Option<TableFrame<'a>>, SnapshotError> {
    let offset = cur.offset();
    match cur.u8("table flag")? {
        0 => return Ok(None),
        1 => {}
        _ => {
            return Err(SnapshotError::InvalidTable {
                offset,
                what: "table flag is neither 0 nor 1",
            });
        }
    }
    let schema_offset = cur.offset();
    let (schema, used) =
        TableSchema::decode_prefix(&cur.bytes[cur.pos..]).ok_or(SnapshotError::InvalidTable {
            offset: schema_offset,
            what: "schema",
        })?;
    cur.take("table schema", used as u128)?;
    let types: Vec<_> = schema.scalar_columns().map(|(_, _, t)| t).collect();
    let sequences = cur
        .take("table sequences", types.len() as u128 * 8)?
        .chunks_exact(8)
        .map(|b| le_u64(b) as i64)
        .collect();
    let mut columns = Vec::with_capacity(types.len());
    for ty in types {
        let valid = cur.take("column validity", u128::from(rows))?;
        let values_offset = cur.offset();
        let start = cur.pos;
        match ty.width() {
            Some(width) => {
                cur.take("column values", u128::from(rows) * width as u128)?;
            }
            None => {
                for _ in 0..rows {
                    let len = cur.u32("value length")?;
                    cur.take("value", u128::from(len))?;
                }
            }
        }
        columns.push((valid, &cur.bytes[start..cur.pos], values_offset));
    }
    Ok(Some(TableFrame {
        offset,
        schema,
        sequences,
        columns,
    }))
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

/// Phase 2: rebuilds the state through the state machine's checks.
fn rebuild(frame: &Frame<'_>) -> Result<(State, SnapshotMeta), SnapshotError> {
    let leaves = (frame.leaves.len() / 32) as u64;
    if leaves != frame.events {
        return Err(SnapshotError::LeafCountMismatch {
            events: frame.events,
            leaves,
        });
    }
    let log_leaves: Vec<Hash32> = frame
        .leaves
        .chunks_exact(32)
        .map(|leaf| {
            let mut h = [0u8; 32];
            h.copy_from_slice(leaf);
            Hash32(h)
        })
        .collect();

    let mut state = State::new();
    let mut previous: Option<CollectionName> = None;
    for c in &frame.collections {
        let name = rebuild_collection(&mut state, c, previous.as_ref())?;
        previous = Some(name);
    }
    rebuild_graph(&mut state, frame)?;

    let computed = state.state_hash();
    if computed != frame.state_hash {
        return Err(SnapshotError::StateHashMismatch {
            recorded: frame.state_hash,
            computed,
        });
    }
    // Every collection's graph matched its own recorded hash; the combined
    // hash must also be the one recorded in the header, which is what the
    // checkpoint and the verifiers compare.
    let computed = state.index_hash();
    if computed != frame.index_hash {
        return Err(SnapshotError::IndexHashMismatch {
            recorded: frame.index_hash,
            computed,
        });
    }
    let meta = SnapshotMeta {
        events: frame.events,
        state_hash: frame.state_hash,
        index_hash: frame.index_hash,
        log_root: frame.log_root,
        log_leaves,
    };
    Ok((state, meta))
}

fn rebuild_collection(
    state: &mut State,
    c: &CollectionFrame<'_>,
    previous: Option<&CollectionName>,
) -> Result<CollectionName, SnapshotError> {
    let name = std::str::from_utf8(c.name)
        .map_err(|_| NameError::BadCharacter)
        .and_then(CollectionName::new)
        .map_err(|source| SnapshotError::InvalidCollectionName {
            offset: c.offset,
            source,
        })?;
    if previous.is_some_and(|p| *p >= name) {
        return Err(SnapshotError::CollectionOrder {
            offset: c.offset,
            name,
        });
    }
    let metric = Metric::from_code(c.metric).ok_or_else(|| SnapshotError::UnknownMetric {
        offset: c.metric_offset,
        collection: name.clone(),
        code: c.metric,
    })?;
    let config = CollectionConfig {
        dim: c.dim,
        metric,
        index: IndexParams {
            m: c.m,
            ef_construction: c.ef_construction,
            seed: c.seed,
        },
    };
    let create = match &c.table {
        None => Event::CreateCollection {
            name: name.clone(),
            config,
        },
        Some(t) => Event::CreateTable {
            name: name.clone(),
            config,
            schema: t.schema.clone(),
        },
    };
    state
        .apply(&create)
        .map_err(|source| SnapshotError::InvalidCollection {
            offset: c.offset,
            collection: name.clone(),
            source,
        })?;
    if c.rows > u64::from(u32::MAX) {
        return Err(SnapshotError::TooManyRows {
            offset: c.rows_offset,
            collection: name,
            rows: c.rows,
        });
    }
    let collection = state
        .collection_for_restore(&name)
        .expect("invariant: the collection was created just above");

    // `apply` accepted the dimension, so it is in 1..=DIM_MAX.
    let dim = c.dim as usize;
    let mut vector = vec![0i32; dim];
    let mut metadata = Cursor::new(c.metadata, c.metadata_offset);
    let mut table_values: Vec<(Cursor<'_>, Option<usize>, &[u8], u64)> = match &c.table {
        None => Vec::new(),
        Some(t) => t
            .schema
            .scalar_columns()
            .zip(&t.columns)
            .map(|((_, _, ty), &(valid, values, offset))| {
                (Cursor::new(values, offset), ty.width(), valid, offset)
            })
            .collect(),
    };
    let mut values: Vec<Option<&[u8]>> = Vec::with_capacity(table_values.len());
    let rows = c
        .ids
        .chunks_exact(8)
        .zip(c.tags.chunks_exact(8))
        .zip(c.deleted.iter())
        .zip(c.vectors.chunks_exact(dim * 4));
    for (row, (((id, tag), &deleted), components)) in rows.enumerate() {
        let row = row as u64;
        let deleted = match deleted {
            0 => false,
            1 => true,
            value => {
                return Err(SnapshotError::InvalidTombstone {
                    offset: c.deleted_offset + row,
                    collection: name,
                    row,
                    value,
                });
            }
        };
        decode_i32s(components, &mut vector);
        let len = metadata.u32("metadata length")?;
        let value = metadata.take("metadata", u128::from(len))?;
        collection
            .restore_row(RecordId(le_u64(id)), &vector, le_u64(tag), value, deleted)
            .map_err(|source| SnapshotError::InvalidRow {
                collection: name.clone(),
                row,
                source,
            })?;
        if c.table.is_some() {
            values.clear();
            for (cursor, width, valid, offset) in &mut table_values {
                let value = match width {
                    Some(w) => cursor.take("value", *w as u128)?,
                    None => {
                        let len = cursor.u32("value length")?;
                        cursor.take("value", u128::from(len))?
                    }
                };
                values.push(match valid[row as usize] {
                    1 => Some(value),
                    0 if value.iter().all(|&b| b == 0) => None,
                    _ => {
                        return Err(SnapshotError::InvalidTable {
                            offset: *offset,
                            what: "a validity byte is not 0 or 1, or a NULL holds bytes",
                        });
                    }
                });
            }
            collection
                .restore_table_row(&values)
                .map_err(|source| SnapshotError::InvalidRow {
                    collection: name.clone(),
                    row,
                    source,
                })?;
        }
    }
    if let Some(t) = &c.table
        && !collection.restore_sequences(&t.sequences)
    {
        return Err(SnapshotError::InvalidTable {
            offset: t.offset,
            what: "sequences",
        });
    }
    // Framing sized every column from the same row count.
    assert_eq!(
        collection.rows() as u64,
        c.rows,
        "invariant: framed columns hold `rows` rows"
    );
    let index = rebuild_index(collection, c).map_err(|source| SnapshotError::InvalidIndex {
        offset: c.index_offset,
        collection: name.clone(),
        source,
    })?;
    collection
        .restore_index(index)
        .map_err(|source| SnapshotError::InvalidIndex {
            offset: c.index_offset,
            collection: name.clone(),
            source,
        })?;
    // The links passed every structural check, but any in-range link
    // would: only the hash says the graph is the one that was written.
    let computed = collection.index_hash();
    if computed != c.index_hash {
        return Err(SnapshotError::CollectionIndexHashMismatch {
            offset: c.index_hash_offset,
            collection: name,
            recorded: c.index_hash,
            computed,
        });
    }
    Ok(name)
}

/// Rebuilds a collection's graph from its framed section; the graph checks
/// every link and level against the rows.
fn rebuild_index(collection: &Collection, c: &CollectionFrame<'_>) -> Result<Hnsw, IndexError> {
    let params = collection.config().index;

    let m0 = 2 * usize::from(params.m);
    // Framing walked this section, so every read below is in bounds.
    let mut cur = Cursor::new(c.index, c.index_offset);
    let framed = "invariant: the index section was framed";
    let rows = cur.u64("indexed rows").expect(framed);
    if rows > collection.rows() as u64 {
        return Err(IndexError::Shape);
    }
    let rows = rows as usize;
    let entry = cur.u32("index entry").expect(framed);
    let mut len0 = Vec::with_capacity(rows);
    for _ in 0..rows {
        len0.push(cur.u16("index layer-0 length").expect(framed));
    }
    let mut links0 = vec![0u32; rows * m0];
    for (row, &n) in len0.iter().enumerate() {
        if usize::from(n) > m0 {
            return Err(IndexError::BadLinks { row: row as u32 });
        }
        for slot in &mut links0[row * m0..row * m0 + usize::from(n)] {
            *slot = cur.u32("index link").expect(framed);
        }
    }
    let mut upper = BTreeMap::new();
    let mut previous: Option<u32> = None;
    for _ in 0..cur.u32("index upper node count").expect(framed) {
        let row = cur.u32("index upper node").expect(framed);
        if previous.is_some_and(|p| p >= row) {
            return Err(IndexError::BadLinks { row });
        }
        previous = Some(row);
        let levels = cur.u8("index upper node level").expect(framed);
        let mut layers = Vec::with_capacity(usize::from(levels));
        for _ in 0..levels {
            let n = cur.u16("index upper link count").expect(framed);
            layers.push(
                (0..n)
                    .map(|_| cur.u32("index upper link").expect(framed))
                    .collect(),
            );
        }
        upper.insert(row, layers);
    }
    let entry = (entry != u32::MAX).then_some(entry);
    Hnsw::from_parts(
        params,
        &collection.ids()[..rows],
        len0,
        links0,
        upper,
        entry,
    )
}

fn rebuild_graph(state: &mut State, frame: &Frame<'_>) -> Result<(), SnapshotError> {
    let mut previous: Option<u64> = None;
    for (i, node) in frame.nodes.chunks_exact(16).enumerate() {
        let offset = frame.nodes_offset + 16 * i as u64;
        let (id, label) = (le_u64(&node[..8]), le_u64(&node[8..]));
        if previous.is_some_and(|p| p >= id) {
            return Err(SnapshotError::GraphOrder {
                offset,
                what: GraphPart::Node,
            });
        }
        previous = Some(id);
        state
            .apply(&Event::CreateNode {
                node: NodeId(id),
                label,
            })
            .map_err(|source| SnapshotError::InvalidGraph {
                offset,
                what: GraphPart::Node,
                source,
            })?;
    }
    let mut previous: Option<(u64, u64, u64)> = None;
    for (i, edge) in frame.edges.chunks_exact(24).enumerate() {
        let offset = frame.edges_offset + 24 * i as u64;
        let key = (
            le_u64(&edge[..8]),
            le_u64(&edge[8..16]),
            le_u64(&edge[16..]),
        );
        if previous.is_some_and(|p| p >= key) {
            return Err(SnapshotError::GraphOrder {
                offset,
                what: GraphPart::Edge,
            });
        }
        previous = Some(key);
        state
            .apply(&Event::CreateEdge {
                from: NodeId(key.0),
                to: NodeId(key.1),
                label: key.2,
            })
            .map_err(|source| SnapshotError::InvalidGraph {
                offset,
                what: GraphPart::Edge,
                source,
            })?;
    }
    Ok(())
}

/// Decodes little-endian `i32`s; `src` holds exactly `4 · dst.len()` bytes.
/// On little-endian targets that is one copy.
#[cfg(target_endian = "little")]
fn decode_i32s(src: &[u8], dst: &mut [i32]) {
    bytemuck::cast_slice_mut::<i32, u8>(dst).copy_from_slice(src);
}

#[cfg(not(target_endian = "little"))]
fn decode_i32s(src: &[u8], dst: &mut [i32]) {
    decode_i32s_portable(src, dst);
}

/// The per-element path, used on big-endian targets and tested against the
/// bulk path everywhere.
#[cfg(any(test, not(target_endian = "little")))]
fn decode_i32s_portable(src: &[u8], dst: &mut [i32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = i32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hashing writer's trailer is BLAKE3 of exactly the bytes it wrote,
    /// whatever mix of small, mapped and buffer-sized writes produced them.
    #[test]
    fn hashing_writer_hashes_what_it_writes() {
        let mut out = Vec::new();
        let big: Vec<i32> = (0..200_000).map(|i| i * 7919 - 1_000_000).collect();
        let ids: Vec<u64> = (0..70_000).collect();
        let mut w = HashingWriter::new(&mut out);
        w.put(b"head").unwrap();
        w.put_u32(7).unwrap();
        w.put_i32s(&big).unwrap();
        w.put_mapped(&ids, |v| v.to_le_bytes()).unwrap();
        w.put(&vec![0xab; WRITE_BUFFER_BYTES - 3]).unwrap();
        w.put_u64(u64::MAX).unwrap();
        let trailer = w.finish().unwrap();
        let body = &out[..out.len() - SNAPSHOT_TRAILER_BYTES];
        assert_eq!(trailer, Hash32::from(blake3::hash(body)));
        assert_eq!(
            &out[out.len() - SNAPSHOT_TRAILER_BYTES..],
            trailer.as_bytes()
        );

        let mut expected = Vec::new();
        expected.extend_from_slice(b"head");
        expected.extend_from_slice(&7u32.to_le_bytes());
        for v in &big {
            expected.extend_from_slice(&v.to_le_bytes());
        }
        for v in &ids {
            expected.extend_from_slice(&v.to_le_bytes());
        }
        expected.extend_from_slice(&vec![0xab; WRITE_BUFFER_BYTES - 3]);
        expected.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(body, &expected[..]);
    }

    /// The bulk little-endian decoder and the portable per-element decoder
    /// agree, so the big-endian build reads the same files.
    #[test]
    fn bulk_and_portable_decoders_agree() {
        let values: Vec<i32> = (0..1000)
            .map(|i| (i * 2_654_435_761u32 as i64) as i32)
            .collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut bulk = vec![0; values.len()];
        let mut portable = vec![0; values.len()];
        decode_i32s(&bytes, &mut bulk);
        decode_i32s_portable(&bytes, &mut portable);
        assert_eq!(bulk, values);
        assert_eq!(portable, values);
    }

    /// The cursor reports a truncation with the offset, field and sizes, and
    /// copes with lengths far beyond the input without allocating.
    #[test]
    fn cursor_reports_truncation() {
        let mut cur = Cursor::new(&[1, 2, 3], 100);
        assert_eq!(cur.u16("a").unwrap(), 0x0201);
        match cur.take("huge", u128::from(u64::MAX) * 24) {
            Err(SnapshotError::Truncated {
                offset: 102,
                field: "huge",
                needed: u64::MAX,
                available: 1,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
