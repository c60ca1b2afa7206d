//! The BLAKE3 state hash and its canonical encoding (byte layout in
//! `docs/format.md`).
//!
//! Rows are hashed in chunks of [`CHUNK_ROWS`]; a collection hashes its
//! configuration and the list of its chunk hashes; the state hashes its
//! collections in name order and the graph. A write dirties one chunk, so
//! the hash after a write re-reads one chunk and the short list of chunk
//! hashes instead of the whole database. Every message starts with a domain
//! byte so that no two kinds of message can collide.

use core::fmt;

use crate::event::CollectionConfig;
use crate::event::CollectionName;

/// Version of the state-hash encoding; part of the top-level message.
pub const STATE_HASH_VERSION: u32 = 1;

/// Rows per hashed chunk.
pub const CHUNK_ROWS: usize = 256;

/// Domain bytes of the hashed messages.
pub mod domain {
    pub const CHUNK: u8 = 0x01;
    pub const COLLECTION: u8 = 0x02;
    pub const GRAPH: u8 = 0x03;
    pub const STATE: u8 = 0x04;
    /// The combined index hash of a state; 0x05 is the per-collection
    /// index hash (`hnsw::INDEX_HASH_DOMAIN`).
    pub const INDEXES: u8 = 0x06;
}

/// A 32-byte BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 lowercase or uppercase hex digits.
    pub fn from_hex(text: &str) -> Option<Hash32> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Hash32(out))
    }
}

impl From<blake3::Hash> for Hash32 {
    fn from(h: blake3::Hash) -> Self {
        Hash32(*h.as_bytes())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({self})")
    }
}

/// One row as the hash sees it.
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a> {
    pub id: u64,
    pub deleted: bool,
    pub tag: u64,
    pub vector: &'a [i32],
    pub metadata: &'a [u8],
}

/// Appends `values` as little-endian `i32`s: a plain copy on little-endian
/// targets.
pub fn put_i32s_le(out: &mut alloc::vec::Vec<u8>, values: &[i32]) {
    #[cfg(target_endian = "little")]
    out.extend_from_slice(bytemuck::cast_slice(values));
    #[cfg(not(target_endian = "little"))]
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends the canonical encoding of one row to `out`.
pub fn encode_row(out: &mut alloc::vec::Vec<u8>, row: RowView<'_>) {
    out.reserve(8 + 1 + 8 + 4 * row.vector.len() + 4 + row.metadata.len());
    out.extend_from_slice(&row.id.to_le_bytes());
    out.push(u8::from(row.deleted));
    out.extend_from_slice(&row.tag.to_le_bytes());
    put_i32s_le(out, row.vector);
    out.extend_from_slice(&(row.metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(row.metadata);
}

/// Hash of chunk `index` from its rows' canonical encodings, concatenated
/// in row order in `rows_bytes`. Hashing the chunk in one call lets BLAKE3
/// work on many of its 1 KiB blocks at once.
pub fn chunk_hash(index: u64, rows: u32, rows_bytes: &[u8]) -> Hash32 {
    let mut h = blake3::Hasher::new();
    h.update(&[domain::CHUNK]);
    h.update(&index.to_le_bytes());
    h.update(&rows.to_le_bytes());
    h.update(rows_bytes);
    h.finalize().into()
}

/// Hash of one collection from its configuration, counts and chunk
/// hashes; a table's descriptor (its schema and sequences,
/// [`crate::table::Table::descriptor`]) follows, with its length, only
/// for collections created as tables, so other collections hash as
/// before tables existed.
pub fn collection_hash(
    name: &CollectionName,
    config: &CollectionConfig,
    rows: u64,
    live: u64,
    chunks: &[Hash32],
    table: Option<&[u8]>,
) -> Hash32 {
    let mut h = blake3::Hasher::new();
    h.update(&[domain::COLLECTION]);
    h.update(&(name.as_str().len() as u32).to_le_bytes());
    h.update(name.as_str().as_bytes());
    h.update(&config.dim.to_le_bytes());
    h.update(&[config.metric.code()]);
    h.update(&config.index.m.to_le_bytes());
    h.update(&config.index.ef_construction.to_le_bytes());
    h.update(&config.index.seed.to_le_bytes());
    h.update(&rows.to_le_bytes());
    h.update(&live.to_le_bytes());
    h.update(&(chunks.len() as u64).to_le_bytes());
    for c in chunks {
        h.update(c.as_bytes());
    }
    if let Some(table) = table {
        h.update(&(table.len() as u64).to_le_bytes());
        h.update(table);
    }
    h.finalize().into()
}

/// Hash of the whole state from its collection hashes (in name order) and
/// its graph hash.
pub fn state_hash<'a>(
    collections: impl ExactSizeIterator<Item = &'a Hash32>,
    graph: &Hash32,
) -> Hash32 {
    let mut h = blake3::Hasher::new();
    h.update(&[domain::STATE]);
    h.update(&STATE_HASH_VERSION.to_le_bytes());
    h.update(&(collections.len() as u32).to_le_bytes());
    for c in collections {
        h.update(c.as_bytes());
    }
    h.update(graph.as_bytes());
    h.finalize().into()
}

/// The combined index hash of a state from each collection's name and
/// index hash, in name order: one value that snapshots and the checkpoint
/// record and that both verifiers compare, so that the HNSW graphs are
/// inside the proof like everything else a query can observe.
pub fn indexes_hash<'a>(
    indexes: impl ExactSizeIterator<Item = (&'a CollectionName, &'a Hash32)>,
) -> Hash32 {
    let mut h = blake3::Hasher::new();
    h.update(&[domain::INDEXES]);
    h.update(&(indexes.len() as u32).to_le_bytes());
    for (name, index) in indexes {
        h.update(&(name.as_str().len() as u32).to_le_bytes());
        h.update(name.as_str().as_bytes());
        h.update(index.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex round trip and the known BLAKE3 digest of the empty input
    /// (from the BLAKE3 reference test vectors).
    #[test]
    fn hex_and_reference_digest() {
        let empty: Hash32 = blake3::hash(b"").into();
        let text = alloc::format!("{empty}");
        assert_eq!(
            text,
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(Hash32::from_hex(&text), Some(empty));
        assert_eq!(Hash32::from_hex("zz"), None);
    }
}
