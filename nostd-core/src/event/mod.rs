//! Events: the only way state changes, and their canonical binary encoding.
//!
//! The encoding (byte-level layout in `docs/format.md`) is little-endian,
//! has a fixed field order and length-prefixes everything variable, so an
//! event has exactly one encoding: `decode(encode(e)) == e` and
//! `encode(decode(b)) == b` for every `b` the decoder accepts. The decoder
//! checks every length against the remaining input and against
//! [`limits`](crate::limits) before it allocates, and never panics.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::distance::Metric;
use crate::limits;
use crate::table::{
    AlterAction, ColumnDef, ColumnValues, ForeignKey, OnDelete, TableSchema, UniqueSet,
};

/// Version byte that opens every encoded event.
pub const EVENT_FORMAT_VERSION: u8 = 1;

/// Stable identifier of a record within its collection, chosen by the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RecordId(pub u64);

/// Identifier of a graph node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A validated collection name: `[a-z][a-z0-9_]*`, at most
/// [`COLLECTION_NAME_BYTES_MAX`](limits::COLLECTION_NAME_BYTES_MAX) bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CollectionName(String);

/// Why a string is not a collection name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("collection name is empty")]
    Empty,
    #[error("collection name is longer than {max} bytes", max = limits::COLLECTION_NAME_BYTES_MAX)]
    TooLong,
    #[error("collection name must start with a lowercase letter and contain only a-z, 0-9 and _")]
    BadCharacter,
}

impl CollectionName {
    pub fn new(name: &str) -> Result<CollectionName, NameError> {
        let bytes = name.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(NameError::Empty);
        };
        if bytes.len() > limits::COLLECTION_NAME_BYTES_MAX as usize {
            return Err(NameError::TooLong);
        }
        if !first.is_ascii_lowercase()
            || !bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        {
            return Err(NameError::BadCharacter);
        }
        Ok(CollectionName(String::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CollectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// HNSW parameters, fixed when a collection is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IndexParams {
    /// Links per node and layer (layer 0 keeps `2·m`).
    pub m: u16,
    /// Candidate list size while building.
    pub ef_construction: u16,
    /// Seed of the level assignment; part of the log, never drawn at apply.
    pub seed: u64,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            m: 16,
            ef_construction: 64,
            seed: 0x5641_4c4f_5249_0001,
        }
    }
}

/// Everything fixed about a collection at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CollectionConfig {
    pub dim: u32,
    pub metric: Metric,
    pub index: IndexParams,
}

/// One record to insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: RecordId,
    /// Q16.16 raw components.
    pub vector: Vec<i32>,
    pub tag: u64,
    pub metadata: Vec<u8>,
}

/// Records of one atomic batch, as columns. `vectors` holds `ids.len()`
/// vectors of `dim` components back to back; metadata value `i` is
/// `metadata_bytes[metadata_ends[i-1]..metadata_ends[i]]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Batch {
    pub dim: u32,
    pub ids: Vec<RecordId>,
    pub tags: Vec<u64>,
    pub vectors: Vec<i32>,
    pub metadata_ends: Vec<u32>,
    pub metadata_bytes: Vec<u8>,
}

impl Batch {
    pub fn new(dim: u32) -> Batch {
        Batch {
            dim,
            ..Batch::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Appends one record. The caller checks dimension and metadata size;
    /// the state machine checks them again.
    pub fn push(&mut self, id: RecordId, vector: &[i32], tag: u64, metadata: &[u8]) {
        self.ids.push(id);
        self.tags.push(tag);
        self.vectors.extend_from_slice(vector);
        self.metadata_bytes.extend_from_slice(metadata);
        self.metadata_ends.push(self.metadata_bytes.len() as u32);
    }

    /// Vector of record `i`.
    pub fn vector(&self, i: usize) -> &[i32] {
        let dim = self.dim as usize;
        &self.vectors[i * dim..(i + 1) * dim]
    }

    /// Metadata of record `i`.
    pub fn metadata(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.metadata_ends[i - 1] as usize
        };
        &self.metadata_bytes[start..self.metadata_ends[i] as usize]
    }

    /// Whether the columns agree with each other.
    pub fn is_well_formed(&self) -> bool {
        let n = self.ids.len();
        self.tags.len() == n
            && self.metadata_ends.len() == n
            && self.vectors.len() as u64 == n as u64 * u64::from(self.dim)
            && self.metadata_ends.windows(2).all(|w| w[0] <= w[1])
            && self.metadata_ends.last().map_or(0, |&e| e as usize) == self.metadata_bytes.len()
    }
}

/// A change to the database. Events carry no time, no randomness and no
/// host-sized integers; applying the same events gives the same state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    CreateCollection {
        name: CollectionName,
        config: CollectionConfig,
    },
    DropCollection {
        name: CollectionName,
    },
    Insert {
        collection: CollectionName,
        record: Record,
    },
    InsertBatch {
        collection: CollectionName,
        batch: Batch,
    },
    Delete {
        collection: CollectionName,
        id: RecordId,
    },
    SetTag {
        collection: CollectionName,
        id: RecordId,
        tag: u64,
    },
    SetMetadata {
        collection: CollectionName,
        id: RecordId,
        metadata: Vec<u8>,
    },
    CreateNode {
        node: NodeId,
        label: u64,
    },
    DeleteNode {
        node: NodeId,
    },
    CreateEdge {
        from: NodeId,
        to: NodeId,
        label: u64,
    },
    DeleteEdge {
        from: NodeId,
        to: NodeId,
        label: u64,
    },
    /// Deletes every record of `ids`, all or none: one SQL `DELETE`.
    DeleteBatch {
        collection: CollectionName,
        ids: Vec<RecordId>,
    },
    /// Sets the tag, the metadata or both of every record of `ids`, all or
    /// none: one SQL `UPDATE`. At least one of the two is given.
    UpdateBatch {
        collection: CollectionName,
        ids: Vec<RecordId>,
        tag: Option<u64>,
        metadata: Option<Vec<u8>>,
    },
    /// Drops every collection of `names`, all or none: one SQL
    /// `DROP TABLE a, b`.
    DropCollections {
        names: Vec<CollectionName>,
    },
    /// Creates a collection with declared columns (`CREATE TABLE` with
    /// any columns): `config.dim` is the vector column's dimension.
    CreateTable {
        name: CollectionName,
        config: CollectionConfig,
        schema: TableSchema,
    },
    /// Inserts rows into a table, all or none: the records (tag 0, no
    /// metadata) and one `ColumnValues` per scalar column, in schema
    /// order.
    InsertRows {
        collection: CollectionName,
        batch: Batch,
        columns: Vec<ColumnValues>,
    },
    /// Sets scalar columns (by index among the scalar columns) of the
    /// live records `ids`, each row its own value, all or none.
    UpdateRows {
        collection: CollectionName,
        ids: Vec<RecordId>,
        columns: Vec<(u16, ColumnValues)>,
    },
    /// Replaces whole rows of a table, all or none: every record of
    /// `batch` is live; each is deleted, then the batch is inserted with
    /// the same ids, as `DeleteBatch` then `InsertRows` would (an `UPDATE`
    /// that assigns the vector). Unique values the replaced rows held are
    /// free for their replacements.
    ReplaceRows {
        collection: CollectionName,
        batch: Batch,
        columns: Vec<ColumnValues>,
    },
    /// Applies `events` in order, all or none: one SQL transaction
    /// (`BEGIN` … `COMMIT`) of several writes. Each event is checked
    /// against the state the ones before it left; if any is refused,
    /// nothing changed. Holds 2..=[`limits::TRANSACTION_EVENTS_MAX`]
    /// events, none of them a `Transaction`.
    Transaction {
        events: Vec<Event>,
    },
    /// Changes a table's shape, all or none: one SQL `ALTER TABLE` with
    /// its actions in order (add, drop or rename a column, rename the
    /// table).
    AlterTable {
        collection: CollectionName,
        actions: Vec<AlterAction>,
    },
    /// Gives a collection a new metric and HNSW parameters (`config`,
    /// whose dimension is the collection's): its graph is built again
    /// from its rows, as a collection created with `config` and given the
    /// same rows would build it. One SQL `CREATE INDEX … USING hnsw
    /// (embedding vector_cosine_ops) WITH (m = …)` on existing rows.
    Reindex {
        collection: CollectionName,
        config: CollectionConfig,
    },
}

/// Kind bytes of the encoding.
mod kind {
    pub const CREATE_COLLECTION: u8 = 1;
    pub const DROP_COLLECTION: u8 = 2;
    pub const INSERT: u8 = 3;
    pub const INSERT_BATCH: u8 = 4;
    pub const DELETE: u8 = 5;
    pub const SET_TAG: u8 = 6;
    pub const SET_METADATA: u8 = 7;
    pub const CREATE_NODE: u8 = 8;
    pub const DELETE_NODE: u8 = 9;
    pub const CREATE_EDGE: u8 = 10;
    pub const DELETE_EDGE: u8 = 11;
    pub const DELETE_BATCH: u8 = 12;
    pub const UPDATE_BATCH: u8 = 13;
    pub const DROP_COLLECTIONS: u8 = 14;
    pub const CREATE_TABLE: u8 = 15;
    pub const INSERT_ROWS: u8 = 16;
    pub const UPDATE_ROWS: u8 = 17;
    pub const REPLACE_ROWS: u8 = 18;
    pub const TRANSACTION: u8 = 19;
    pub const ALTER_TABLE: u8 = 20;
    pub const REINDEX: u8 = 21;
}

/// Operation bytes of the actions of an `AlterTable`.
mod alter_op {
    pub const ADD_COLUMN: u8 = 1;
    pub const DROP_COLUMN: u8 = 2;
    pub const RENAME_COLUMN: u8 = 3;
    pub const RENAME_TABLE: u8 = 4;
    pub const CREATE_INDEX: u8 = 5;
    pub const DROP_INDEX: u8 = 6;
    pub const TYPE_VECTOR: u8 = 7;
    pub const ADD_FOREIGN_KEY: u8 = 8;
    pub const DROP_CONSTRAINT: u8 = 9;
    pub const ADD_UNIQUE: u8 = 10;
    pub const SET_TYPE_MOD: u8 = 11;
    pub const SET_NOT_NULL: u8 = 12;
    pub const SET_DEFAULT: u8 = 13;
}

/// Flag bits of an `UpdateBatch`: which fields follow.
mod update_flags {
    pub const TAG: u8 = 1;
    pub const METADATA: u8 = 2;
}

impl Event {
    /// Short name of the event kind, for logs and errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Event::CreateCollection { .. } => "create_collection",
            Event::DropCollection { .. } => "drop_collection",
            Event::Insert { .. } => "insert",
            Event::InsertBatch { .. } => "insert_batch",
            Event::Delete { .. } => "delete",
            Event::SetTag { .. } => "set_tag",
            Event::SetMetadata { .. } => "set_metadata",
            Event::CreateNode { .. } => "create_node",
            Event::DeleteNode { .. } => "delete_node",
            Event::CreateEdge { .. } => "create_edge",
            Event::DeleteEdge { .. } => "delete_edge",
            Event::DeleteBatch { .. } => "delete_batch",
            Event::UpdateBatch { .. } => "update_batch",
            Event::DropCollections { .. } => "drop_collections",
            Event::CreateTable { .. } => "create_table",
            Event::InsertRows { .. } => "insert_rows",
            Event::UpdateRows { .. } => "update_rows",
            Event::ReplaceRows { .. } => "replace_rows",
            Event::Transaction { .. } => "transaction",
            Event::AlterTable { .. } => "alter_table",
            Event::Reindex { .. } => "reindex",
        }
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(EVENT_FORMAT_VERSION);
        match self {
            Event::CreateCollection { name, config } => {
                out.push(kind::CREATE_COLLECTION);
                put_name(out, name);
                put_config(out, config);
            }
            Event::DropCollection { name } => {
                out.push(kind::DROP_COLLECTION);
                put_name(out, name);
            }
            Event::Insert { collection, record } => {
                out.push(kind::INSERT);
                put_name(out, collection);
                put_u64(out, record.id.0);
                put_u64(out, record.tag);
                put_u32(out, record.vector.len() as u32);
                put_i32s(out, &record.vector);
                put_bytes(out, &record.metadata);
            }
            Event::InsertBatch { collection, batch } => {
                out.push(kind::INSERT_BATCH);
                put_name(out, collection);
                put_batch(out, batch);
            }
            Event::Delete { collection, id } => {
                out.push(kind::DELETE);
                put_name(out, collection);
                put_u64(out, id.0);
            }
            Event::SetTag {
                collection,
                id,
                tag,
            } => {
                out.push(kind::SET_TAG);
                put_name(out, collection);
                put_u64(out, id.0);
                put_u64(out, *tag);
            }
            Event::SetMetadata {
                collection,
                id,
                metadata,
            } => {
                out.push(kind::SET_METADATA);
                put_name(out, collection);
                put_u64(out, id.0);
                put_bytes(out, metadata);
            }
            Event::CreateNode { node, label } => {
                out.push(kind::CREATE_NODE);
                put_u64(out, node.0);
                put_u64(out, *label);
            }
            Event::DeleteNode { node } => {
                out.push(kind::DELETE_NODE);
                put_u64(out, node.0);
            }
            Event::CreateEdge { from, to, label } => {
                out.push(kind::CREATE_EDGE);
                put_u64(out, from.0);
                put_u64(out, to.0);
                put_u64(out, *label);
            }
            Event::DeleteEdge { from, to, label } => {
                out.push(kind::DELETE_EDGE);
                put_u64(out, from.0);
                put_u64(out, to.0);
                put_u64(out, *label);
            }
            Event::DeleteBatch { collection, ids } => {
                out.push(kind::DELETE_BATCH);
                put_name(out, collection);
                put_ids(out, ids);
            }
            Event::UpdateBatch {
                collection,
                ids,
                tag,
                metadata,
            } => {
                out.push(kind::UPDATE_BATCH);
                put_name(out, collection);
                put_ids(out, ids);
                let mut flags = 0;
                if tag.is_some() {
                    flags |= update_flags::TAG;
                }
                if metadata.is_some() {
                    flags |= update_flags::METADATA;
                }
                out.push(flags);
                if let Some(tag) = tag {
                    put_u64(out, *tag);
                }
                if let Some(metadata) = metadata {
                    put_bytes(out, metadata);
                }
            }
            Event::DropCollections { names } => {
                out.push(kind::DROP_COLLECTIONS);
                put_u32(out, names.len() as u32);
                for name in names {
                    put_name(out, name);
                }
            }
            Event::CreateTable {
                name,
                config,
                schema,
            } => {
                out.push(kind::CREATE_TABLE);
                put_name(out, name);
                put_config(out, config);
                schema.encode_into(out);
            }
            Event::InsertRows {
                collection,
                batch,
                columns,
            }
            | Event::ReplaceRows {
                collection,
                batch,
                columns,
            } => {
                out.push(if matches!(self, Event::InsertRows { .. }) {
                    kind::INSERT_ROWS
                } else {
                    kind::REPLACE_ROWS
                });
                put_name(out, collection);
                put_batch(out, batch);
                put_u32(out, columns.len() as u32);
                for values in columns {
                    put_values(out, values);
                }
            }
            Event::UpdateRows {
                collection,
                ids,
                columns,
            } => {
                out.push(kind::UPDATE_ROWS);
                put_name(out, collection);
                put_ids(out, ids);
                put_u32(out, columns.len() as u32);
                for (column, values) in columns {
                    out.extend_from_slice(&column.to_le_bytes());
                    put_values(out, values);
                }
            }
            Event::Transaction { events } => {
                out.push(kind::TRANSACTION);
                put_u32(out, events.len() as u32);
                for event in events {
                    // Length first, so that a reader can bound each part
                    // before decoding it.
                    let at = out.len();
                    put_u32(out, 0);
                    event.encode_into(out);
                    let len = (out.len() - at - 4) as u32;
                    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
                }
            }
            Event::Reindex { collection, config } => {
                out.push(kind::REINDEX);
                put_name(out, collection);
                put_config(out, config);
            }
            Event::AlterTable {
                collection,
                actions,
            } => {
                out.push(kind::ALTER_TABLE);
                put_name(out, collection);
                put_u32(out, actions.len() as u32);
                for action in actions {
                    put_alter_action(out, action);
                }
            }
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes exactly one event occupying all of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        if bytes.len() > limits::EVENT_BYTES_MAX as usize {
            return Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::EventTooLarge,
            });
        }
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != EVENT_FORMAT_VERSION {
            return Err(r.error_at(0, DecodeErrorKind::UnknownVersion(version)));
        }
        let kind_byte = r.u8()?;
        let event = match kind_byte {
            kind::CREATE_COLLECTION => Event::CreateCollection {
                name: r.name()?,
                config: r.config()?,
            },
            kind::DROP_COLLECTION => Event::DropCollection { name: r.name()? },
            kind::INSERT => {
                let collection = r.name()?;
                let id = RecordId(r.u64()?);
                let tag = r.u64()?;
                let dim = r.dim()?;
                let vector = r.i32s(dim as usize)?;
                let metadata = r.metadata()?.to_vec();
                Event::Insert {
                    collection,
                    record: Record {
                        id,
                        vector,
                        tag,
                        metadata,
                    },
                }
            }
            kind::INSERT_BATCH => Event::InsertBatch {
                collection: r.name()?,
                batch: r.batch()?,
            },
            kind::CREATE_TABLE => {
                let name = r.name()?;
                let config = r.config()?;
                let at = r.pos;
                let (schema, used) = TableSchema::decode_prefix(&r.bytes[r.pos..])
                    .ok_or(r.error_at(at, DecodeErrorKind::BadSchema))?;
                r.pos += used;
                Event::CreateTable {
                    name,
                    config,
                    schema,
                }
            }
            kind::INSERT_ROWS | kind::REPLACE_ROWS => {
                let collection = r.name()?;
                let batch = r.batch()?;
                let count = r.column_count()?;
                let mut columns = Vec::with_capacity(count);
                for _ in 0..count {
                    columns.push(r.values()?);
                }
                if kind_byte == kind::INSERT_ROWS {
                    Event::InsertRows {
                        collection,
                        batch,
                        columns,
                    }
                } else {
                    Event::ReplaceRows {
                        collection,
                        batch,
                        columns,
                    }
                }
            }
            kind::UPDATE_ROWS => {
                let collection = r.name()?;
                let ids = r.ids()?;
                let count = r.column_count()?;
                let mut columns = Vec::with_capacity(count);
                for _ in 0..count {
                    let column = r.u16()?;
                    columns.push((column, r.values()?));
                }
                Event::UpdateRows {
                    collection,
                    ids,
                    columns,
                }
            }
            kind::DELETE => Event::Delete {
                collection: r.name()?,
                id: RecordId(r.u64()?),
            },
            kind::SET_TAG => Event::SetTag {
                collection: r.name()?,
                id: RecordId(r.u64()?),
                tag: r.u64()?,
            },
            kind::SET_METADATA => Event::SetMetadata {
                collection: r.name()?,
                id: RecordId(r.u64()?),
                metadata: r.metadata()?.to_vec(),
            },
            kind::CREATE_NODE => Event::CreateNode {
                node: NodeId(r.u64()?),
                label: r.u64()?,
            },
            kind::DELETE_NODE => Event::DeleteNode {
                node: NodeId(r.u64()?),
            },
            kind::CREATE_EDGE => Event::CreateEdge {
                from: NodeId(r.u64()?),
                to: NodeId(r.u64()?),
                label: r.u64()?,
            },
            kind::DELETE_EDGE => Event::DeleteEdge {
                from: NodeId(r.u64()?),
                to: NodeId(r.u64()?),
                label: r.u64()?,
            },
            kind::DELETE_BATCH => Event::DeleteBatch {
                collection: r.name()?,
                ids: r.ids()?,
            },
            kind::UPDATE_BATCH => {
                let collection = r.name()?;
                let ids = r.ids()?;
                let flags_at = r.pos;
                let flags = r.u8()?;
                if flags == 0 || flags & !(update_flags::TAG | update_flags::METADATA) != 0 {
                    return Err(r.error_at(flags_at, DecodeErrorKind::BadUpdateFlags(flags)));
                }
                let tag = if flags & update_flags::TAG != 0 {
                    Some(r.u64()?)
                } else {
                    None
                };
                let metadata = if flags & update_flags::METADATA != 0 {
                    Some(r.metadata()?.to_vec())
                } else {
                    None
                };
                Event::UpdateBatch {
                    collection,
                    ids,
                    tag,
                    metadata,
                }
            }
            kind::DROP_COLLECTIONS => {
                let count_at = r.pos;
                let count = r.u32()?;
                if count == 0 || count > limits::COLLECTIONS_MAX {
                    return Err(r.error_at(count_at, DecodeErrorKind::BadNameCount(count)));
                }
                // A name takes at least its 4-byte length: checked against
                // the remaining input before anything is allocated.
                if u64::from(count) * 4 > r.remaining() as u64 {
                    return Err(r.error_at(r.pos, DecodeErrorKind::Truncated));
                }
                let mut names = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    names.push(r.name()?);
                }
                Event::DropCollections { names }
            }
            kind::TRANSACTION => {
                let count_at = r.pos;
                let count = r.u32()?;
                if !(2..=limits::TRANSACTION_EVENTS_MAX).contains(&count) {
                    return Err(r.error_at(count_at, DecodeErrorKind::BadEventCount(count)));
                }
                // An event takes at least its 4-byte length and 2 bytes.
                if u64::from(count) * 6 > r.remaining() as u64 {
                    return Err(r.error_at(r.pos, DecodeErrorKind::Truncated));
                }
                let mut events = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let len = r.u32()? as usize;
                    let at = r.pos;
                    let part = r.take(len)?;
                    // One level only: a transaction inside a transaction
                    // is refused before it is decoded, which bounds the
                    // recursion.
                    if part.get(1) == Some(&kind::TRANSACTION) {
                        return Err(r.error_at(at, DecodeErrorKind::NestedTransaction));
                    }
                    let event = Event::decode(part).map_err(|e| DecodeError {
                        offset: e.offset.saturating_add(at as u32),
                        kind: e.kind,
                    })?;
                    events.push(event);
                }
                Event::Transaction { events }
            }
            kind::REINDEX => Event::Reindex {
                collection: r.name()?,
                config: r.config()?,
            },
            kind::ALTER_TABLE => {
                let collection = r.name()?;
                let count_at = r.pos;
                let count = r.u32()?;
                if count == 0 || count > limits::ALTER_ACTIONS_MAX {
                    return Err(r.error_at(count_at, DecodeErrorKind::BadActionCount(count)));
                }
                // An action takes at least 5 bytes (its op and a length):
                // checked against the remaining input before anything is
                // allocated.
                if u64::from(count) * 5 > r.remaining() as u64 {
                    return Err(r.error_at(r.pos, DecodeErrorKind::Truncated));
                }
                let mut actions = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    actions.push(r.alter_action()?);
                }
                Event::AlterTable {
                    collection,
                    actions,
                }
            }
            other => return Err(r.error_at(1, DecodeErrorKind::UnknownKind(other))),
        };
        if r.remaining() != 0 {
            return Err(r.error_at(r.pos, DecodeErrorKind::TrailingBytes));
        }
        Ok(event)
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_i32s(out: &mut Vec<u8>, values: &[i32]) {
    crate::hash::put_i32s_le(out, values);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

fn put_config(out: &mut Vec<u8>, config: &CollectionConfig) {
    put_u32(out, config.dim);
    out.push(config.metric.code());
    out.extend_from_slice(&config.index.m.to_le_bytes());
    out.extend_from_slice(&config.index.ef_construction.to_le_bytes());
    put_u64(out, config.index.seed);
}

fn put_batch(out: &mut Vec<u8>, batch: &Batch) {
    put_u32(out, batch.ids.len() as u32);
    put_u32(out, batch.dim);
    for id in &batch.ids {
        put_u64(out, id.0);
    }
    for &tag in &batch.tags {
        put_u64(out, tag);
    }
    put_i32s(out, &batch.vectors);
    for i in 0..batch.len() {
        put_bytes(out, batch.metadata(i));
    }
}

fn put_values(out: &mut Vec<u8>, values: &ColumnValues) {
    put_u32(out, values.len() as u32);
    let mut bitmap = alloc::vec![0u8; values.len().div_ceil(8)];
    for (i, &valid) in values.valid.iter().enumerate() {
        bitmap[i / 8] |= u8::from(valid) << (i % 8);
    }
    out.extend_from_slice(&bitmap);
    for &end in &values.ends {
        put_u32(out, end);
    }
    out.extend_from_slice(&values.bytes);
}

/// `op:u8`, then: add `column ‖ has_value:u8 [‖ len:u32 ‖ value]`;
/// drop `name`; rename column `from ‖ to`; rename table `collection
/// name`; create index `column ‖ index`; drop index `index`; type
/// vector `dim:u32`; add foreign key `column ‖ constraint ‖ table
/// (collection name) ‖ referenced column ‖ on_delete:u8`; drop constraint `constraint`; add unique
/// `constraint ‖ count:u32 ‖ column × count`; set type mod `column ‖
/// type_mod:u32`; set not null `column ‖ not_null:u8`; set default
/// `column ‖ has_default:u8 [‖ len:u32 ‖ default]`. Column, index and
/// constraint names are `len:u32 ‖ UTF-8`.
fn put_alter_action(out: &mut Vec<u8>, action: &AlterAction) {
    match action {
        AlterAction::AddColumn { column, value } => {
            out.push(alter_op::ADD_COLUMN);
            column.encode_into(out);
            match value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    put_bytes(out, v);
                }
            }
        }
        AlterAction::DropColumn { name } => {
            out.push(alter_op::DROP_COLUMN);
            put_bytes(out, name.as_bytes());
        }
        AlterAction::RenameColumn { from, to } => {
            out.push(alter_op::RENAME_COLUMN);
            put_bytes(out, from.as_bytes());
            put_bytes(out, to.as_bytes());
        }
        AlterAction::RenameTable { to } => {
            out.push(alter_op::RENAME_TABLE);
            put_name(out, to);
        }
        AlterAction::CreateIndex { column, name } => {
            out.push(alter_op::CREATE_INDEX);
            put_bytes(out, column.as_bytes());
            put_bytes(out, name.as_bytes());
        }
        AlterAction::DropIndex { name } => {
            out.push(alter_op::DROP_INDEX);
            put_bytes(out, name.as_bytes());
        }
        AlterAction::TypeVector { dim } => {
            out.push(alter_op::TYPE_VECTOR);
            put_u32(out, *dim);
        }
        AlterAction::AddForeignKey { column, key } => {
            out.push(alter_op::ADD_FOREIGN_KEY);
            put_bytes(out, column.as_bytes());
            put_bytes(out, key.name.as_bytes());
            put_name(out, &key.table);
            put_bytes(out, key.column.as_bytes());
            out.push(key.on_delete.code());
        }
        AlterAction::DropConstraint { name } => {
            out.push(alter_op::DROP_CONSTRAINT);
            put_bytes(out, name.as_bytes());
        }
        AlterAction::AddUnique { set } => {
            out.push(alter_op::ADD_UNIQUE);
            put_bytes(out, set.name.as_bytes());
            put_u32(out, set.columns.len() as u32);
            for c in &set.columns {
                put_bytes(out, c.as_bytes());
            }
        }
        AlterAction::SetTypeMod { column, type_mod } => {
            out.push(alter_op::SET_TYPE_MOD);
            put_bytes(out, column.as_bytes());
            put_u32(out, *type_mod);
        }
        AlterAction::SetNotNull { column, not_null } => {
            out.push(alter_op::SET_NOT_NULL);
            put_bytes(out, column.as_bytes());
            out.push(u8::from(*not_null));
        }
        AlterAction::SetDefault { column, default } => {
            out.push(alter_op::SET_DEFAULT);
            put_bytes(out, column.as_bytes());
            match default {
                None => out.push(0),
                Some(text) => {
                    out.push(1);
                    put_bytes(out, text.as_bytes());
                }
            }
        }
    }
}

fn put_name(out: &mut Vec<u8>, name: &CollectionName) {
    put_bytes(out, name.as_str().as_bytes());
}

fn put_ids(out: &mut Vec<u8>, ids: &[RecordId]) {
    put_u32(out, ids.len() as u32);
    for id in ids {
        put_u64(out, id.0);
    }
}

/// What is wrong with an encoded event, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed event at byte {offset}: {kind}")]
pub struct DecodeError {
    pub offset: u32,
    pub kind: DecodeErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    #[error("input ends inside a field")]
    Truncated,
    #[error("bytes follow the end of the event")]
    TrailingBytes,
    #[error("unknown event format version {0}")]
    UnknownVersion(u8),
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    #[error("unknown metric code {0}")]
    UnknownMetric(u8),
    #[error("bad collection name: {0}")]
    BadName(NameError),
    #[error("dimension {0} is outside 1..={max}", max = limits::DIM_MAX)]
    BadDimension(u32),
    #[error("metadata of {0} bytes exceeds {max}", max = limits::METADATA_BYTES_MAX)]
    MetadataTooLarge(u32),
    #[error("batch of {0} records is outside 1..={max}", max = limits::BATCH_RECORDS_MAX)]
    BadBatchSize(u32),
    #[error("event exceeds {max} bytes", max = limits::EVENT_BYTES_MAX)]
    EventTooLarge,
    #[error("update flags {0:#04x}: expected 1 (tag), 2 (metadata) or 3 (both)")]
    BadUpdateFlags(u8),
    #[error("{0} collection names is outside 1..={max}", max = limits::COLLECTIONS_MAX)]
    BadNameCount(u32),
    #[error("malformed table schema")]
    BadSchema,
    #[error("{0} columns exceeds {max}", max = limits::TABLE_COLUMNS_MAX)]
    BadColumnCount(u32),
    #[error("malformed column values")]
    BadValues,
    #[error("{0} events in one transaction is outside 2..={max}", max = limits::TRANSACTION_EVENTS_MAX)]
    BadEventCount(u32),
    #[error("a transaction holds another transaction")]
    NestedTransaction,
    #[error("{0} ALTER TABLE actions is outside 1..={max}", max = limits::ALTER_ACTIONS_MAX)]
    BadActionCount(u32),
    #[error("malformed ALTER TABLE action")]
    BadAlterAction,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn error_at(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset: offset as u32,
            kind,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.error_at(self.pos, DecodeErrorKind::Truncated));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn dim(&mut self) -> Result<u32, DecodeError> {
        let at = self.pos;
        let dim = self.u32()?;
        if dim == 0 || dim > limits::DIM_MAX {
            return Err(self.error_at(at, DecodeErrorKind::BadDimension(dim)));
        }
        Ok(dim)
    }

    fn i32s(&mut self, n: usize) -> Result<Vec<i32>, DecodeError> {
        let raw = self.take(n * 4)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// `count:u32 ‖ dim:u32 ‖ ids ‖ tags ‖ vectors ‖ metadata`, the
    /// records of an `InsertBatch` or `InsertRows`.
    fn batch(&mut self) -> Result<Batch, DecodeError> {
        let r = self;
        let count_at = r.pos;
        let count = r.u32()?;
        if count == 0 || count > limits::BATCH_RECORDS_MAX {
            return Err(r.error_at(count_at, DecodeErrorKind::BadBatchSize(count)));
        }
        let dim = r.dim()?;
        let n = count as usize;
        // Fixed-width columns are checked against the remaining
        // input before anything is allocated.
        let fixed = n as u64 * (16 + 4 * u64::from(dim)) + n as u64 * 4;
        if fixed > r.remaining() as u64 {
            return Err(r.error_at(r.pos, DecodeErrorKind::Truncated));
        }
        let mut batch = Batch::new(dim);
        batch.ids.reserve_exact(n);
        for _ in 0..n {
            batch.ids.push(RecordId(r.u64()?));
        }
        batch.tags.reserve_exact(n);
        for _ in 0..n {
            batch.tags.push(r.u64()?);
        }
        batch.vectors = r.i32s(n * dim as usize)?;
        batch.metadata_ends.reserve_exact(n);
        for _ in 0..n {
            let m = r.metadata()?;
            batch.metadata_bytes.extend_from_slice(m);
            batch.metadata_ends.push(batch.metadata_bytes.len() as u32);
        }
        Ok(batch)
    }

    fn config(&mut self) -> Result<CollectionConfig, DecodeError> {
        let dim = self.u32()?;
        let metric_at = self.pos;
        let metric_code = self.u8()?;
        let metric = Metric::from_code(metric_code)
            .ok_or(self.error_at(metric_at, DecodeErrorKind::UnknownMetric(metric_code)))?;
        let m = self.u16()?;
        let ef_construction = self.u16()?;
        let seed = self.u64()?;
        Ok(CollectionConfig {
            dim,
            metric,
            index: IndexParams {
                m,
                ef_construction,
                seed,
            },
        })
    }

    /// A column count of a table event, at most `TABLE_COLUMNS_MAX`.
    fn column_count(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let count = self.u32()?;
        if count > limits::TABLE_COLUMNS_MAX {
            return Err(self.error_at(at, DecodeErrorKind::BadColumnCount(count)));
        }
        Ok(count as usize)
    }

    /// `count:u32 ‖ validity bitmap (ceil(count/8) bytes, bit i of byte
    /// i/8, unused bits 0) ‖ end:u32 × count ‖ bytes`.
    fn values(&mut self) -> Result<ColumnValues, DecodeError> {
        let count_at = self.pos;
        let count = self.u32()?;
        if count > limits::BATCH_RECORDS_MAX {
            return Err(self.error_at(count_at, DecodeErrorKind::BadBatchSize(count)));
        }
        let n = count as usize;
        let bitmap_at = self.pos;
        let bitmap = self.take(n.div_ceil(8))?;
        let valid: Vec<bool> = (0..n).map(|i| bitmap[i / 8] >> (i % 8) & 1 == 1).collect();
        if !n.is_multiple_of(8) && bitmap[n / 8] >> (n % 8) != 0 {
            return Err(self.error_at(bitmap_at, DecodeErrorKind::BadValues));
        }
        let ends_at = self.pos;
        let raw = self.take(n * 4)?;
        let ends: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let total = ends.last().copied().unwrap_or(0) as usize;
        let bytes = self.take(total)?.to_vec();
        let values = ColumnValues { valid, ends, bytes };
        if !values.is_well_formed() {
            return Err(self.error_at(ends_at, DecodeErrorKind::BadValues));
        }
        Ok(values)
    }

    /// A column name of an `AlterTable` action: `len:u32 ‖ UTF-8`, at
    /// most `COLUMN_NAME_BYTES_MAX` bytes.
    fn column_name(&mut self) -> Result<String, DecodeError> {
        let at = self.pos;
        let len = self.u32()?;
        if len > limits::COLUMN_NAME_BYTES_MAX {
            return Err(self.error_at(at, DecodeErrorKind::BadAlterAction));
        }
        let raw = self.take(len as usize)?;
        core::str::from_utf8(raw)
            .map(String::from)
            .map_err(|_| self.error_at(at, DecodeErrorKind::BadAlterAction))
    }

    fn alter_action(&mut self) -> Result<AlterAction, DecodeError> {
        let at = self.pos;
        Ok(match self.u8()? {
            alter_op::ADD_COLUMN => {
                let column_at = self.pos;
                let (column, used) = ColumnDef::decode_prefix(&self.bytes[self.pos..])
                    .ok_or(self.error_at(column_at, DecodeErrorKind::BadAlterAction))?;
                self.pos += used;
                let value = self
                    .optional_bytes(limits::VALUE_BYTES_MAX)?
                    .map(|(_, bytes)| bytes.to_vec());
                AlterAction::AddColumn { column, value }
            }
            alter_op::DROP_COLUMN => AlterAction::DropColumn {
                name: self.column_name()?,
            },
            alter_op::RENAME_COLUMN => AlterAction::RenameColumn {
                from: self.column_name()?,
                to: self.column_name()?,
            },
            alter_op::RENAME_TABLE => AlterAction::RenameTable { to: self.name()? },
            alter_op::CREATE_INDEX => AlterAction::CreateIndex {
                column: self.column_name()?,
                name: self.column_name()?,
            },
            alter_op::DROP_INDEX => AlterAction::DropIndex {
                name: self.column_name()?,
            },
            alter_op::TYPE_VECTOR => AlterAction::TypeVector { dim: self.u32()? },
            alter_op::ADD_FOREIGN_KEY => {
                let column = self.column_name()?;
                let name = self.column_name()?;
                let table = self.name()?;
                let referenced = self.column_name()?;
                let code_at = self.pos;
                let on_delete = OnDelete::from_code(self.u8()?)
                    .ok_or(self.error_at(code_at, DecodeErrorKind::BadAlterAction))?;
                AlterAction::AddForeignKey {
                    column,
                    key: ForeignKey {
                        name,
                        table,
                        column: referenced,
                        on_delete,
                    },
                }
            }
            alter_op::DROP_CONSTRAINT => AlterAction::DropConstraint {
                name: self.column_name()?,
            },
            alter_op::ADD_UNIQUE => {
                let name = self.column_name()?;
                let count_at = self.pos;
                let count = self.u32()?;
                if count == 0 || count > limits::TABLE_COLUMNS_MAX {
                    return Err(self.error_at(count_at, DecodeErrorKind::BadAlterAction));
                }
                let mut columns = Vec::new();
                for _ in 0..count {
                    columns.push(self.column_name()?);
                }
                AlterAction::AddUnique {
                    set: UniqueSet { name, columns },
                }
            }
            alter_op::SET_TYPE_MOD => AlterAction::SetTypeMod {
                column: self.column_name()?,
                type_mod: self.u32()?,
            },
            alter_op::SET_NOT_NULL => {
                let column = self.column_name()?;
                let flag_at = self.pos;
                let not_null = match self.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(self.error_at(flag_at, DecodeErrorKind::BadAlterAction)),
                };
                AlterAction::SetNotNull { column, not_null }
            }
            alter_op::SET_DEFAULT => {
                let column = self.column_name()?;
                let default = match self.optional_bytes(limits::COLUMN_DEFAULT_BYTES_MAX)? {
                    None => None,
                    Some((len_at, bytes)) => {
                        Some(String::from(core::str::from_utf8(bytes).map_err(|_| {
                            self.error_at(len_at, DecodeErrorKind::BadAlterAction)
                        })?))
                    }
                };
                AlterAction::SetDefault { column, default }
            }
            _ => return Err(self.error_at(at, DecodeErrorKind::BadAlterAction)),
        })
    }

    /// An alter action's optional value: a flag byte, then for 1 a
    /// length of at most `max` and that many bytes (with the length's
    /// offset, for errors about them).
    fn optional_bytes(&mut self, max: u32) -> Result<Option<(usize, &'a [u8])>, DecodeError> {
        let flag_at = self.pos;
        match self.u8()? {
            0 => Ok(None),
            1 => {
                let len_at = self.pos;
                let len = self.u32()?;
                if len > max {
                    return Err(self.error_at(len_at, DecodeErrorKind::BadAlterAction));
                }
                Ok(Some((len_at, self.take(len as usize)?)))
            }
            _ => Err(self.error_at(flag_at, DecodeErrorKind::BadAlterAction)),
        }
    }

    fn metadata(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.u32()?;
        if len > limits::METADATA_BYTES_MAX {
            return Err(self.error_at(at, DecodeErrorKind::MetadataTooLarge(len)));
        }
        self.take(len as usize)
    }

    /// `count:u32 ‖ id:u64 × count`, with `count` in
    /// `1..=BATCH_RECORDS_MAX`.
    fn ids(&mut self) -> Result<Vec<RecordId>, DecodeError> {
        let count_at = self.pos;
        let count = self.u32()?;
        if count == 0 || count > limits::BATCH_RECORDS_MAX {
            return Err(self.error_at(count_at, DecodeErrorKind::BadBatchSize(count)));
        }
        let raw = self.take(count as usize * 8)?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| {
                RecordId(u64::from_le_bytes([
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                ]))
            })
            .collect())
    }

    fn name(&mut self) -> Result<CollectionName, DecodeError> {
        let at = self.pos;
        let len = self.u32()?;
        if len > limits::COLLECTION_NAME_BYTES_MAX {
            return Err(self.error_at(at, DecodeErrorKind::BadName(NameError::TooLong)));
        }
        let raw = self.take(len as usize)?;
        let text = core::str::from_utf8(raw)
            .map_err(|_| self.error_at(at, DecodeErrorKind::BadName(NameError::BadCharacter)))?;
        CollectionName::new(text).map_err(|e| self.error_at(at, DecodeErrorKind::BadName(e)))
    }
}

#[cfg(test)]
mod tests;
