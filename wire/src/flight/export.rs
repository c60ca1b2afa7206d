//! DoGet of a whole collection: one consistent state, streamed.
//!
//! [`Snapshot::take`] reads, under one read lock of the state, everything
//! of the collection's live rows that a later write could change — row
//! numbers, ids, tags, metadata — together with the log size, log root,
//! state hash and collection hash of that state. The vectors, which are
//! most of the bytes, are not copied then: a row's vector never changes
//! once appended and rows never move (`valori_core::rows::Rows`), so the
//! stream copies them one batch at a time under short read locks, from the
//! same incarnation of the collection, and gets exactly the bytes the
//! snapshot's state held. Memory for an export is therefore the small
//! per-row columns plus one batch, not a second copy of the collection.
//! A table with declared columns ([`super::table`]) copies its scalar
//! columns under the same lock (an `UPDATE` may rewrite them in place)
//! and its vectors in the same way.

use std::collections::HashMap;
use std::sync::Arc;

use futures::Stream;
use serde_json::json;
use valori_columnar::arrow as columns;
use valori_core::event::CollectionName;
use valori_core::state::{Collection, State};
use valori_core::table::TableSchema;
use valori_engine::Engine;
use valori_query::datafusion::arrow::array::{ArrayRef, BinaryArray, RecordBatch};
use valori_query::datafusion::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use valori_query::datafusion::arrow::datatypes::SchemaRef;
use valori_query::ops::OpsError;

use super::FlightError;

/// Bytes of vector data per streamed batch (the `f32` view doubles it);
/// the Flight encoder splits batches into messages of its own size.
const BATCH_VECTOR_BYTES: usize = 4 << 20;

/// Metadata bytes per streamed batch at most (a `Binary` column addresses
/// 2 GiB; records carry up to 64 KiB each).
const BATCH_METADATA_BYTES: u64 = 64 << 20;

/// Schema metadata keys that say which state an export was read from.
pub use valori_columnar::arrow::{COLLECTION_HASH_KEY, LOG_ROOT_KEY, LOG_SIZE_KEY, STATE_HASH_KEY};

/// Which state a read saw: what a client checks against `/v1/proof` or
/// `valori verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub log_size: u64,
    pub log_root: String,
    pub state_hash: String,
    /// The collection's own hash in that state, when one collection was
    /// read.
    pub collection_hash: Option<String>,
}

impl Provenance {
    /// The proof of the state `state` is: call under the state's read
    /// lock (the engine publishes its proof under the write lock, so the
    /// two agree).
    pub fn of(
        engine: &Engine,
        collection: Option<&CollectionName>,
    ) -> Result<Provenance, FlightError> {
        let proof = engine.proof()?;
        let collection_hash = collection.and_then(|name| {
            proof
                .hashes
                .collections
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, h)| h.to_string())
        });
        Ok(Provenance {
            log_size: proof.log_size,
            log_root: proof.log_root.to_string(),
            state_hash: proof.hashes.state.to_string(),
            collection_hash,
        })
    }

    /// As schema metadata (string keys and values, kept by every Arrow
    /// library and visible as `table.schema.metadata` in pyarrow).
    pub fn schema_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::from([
            (LOG_SIZE_KEY.to_owned(), self.log_size.to_string()),
            (LOG_ROOT_KEY.to_owned(), self.log_root.clone()),
            (STATE_HASH_KEY.to_owned(), self.state_hash.clone()),
        ]);
        if let Some(h) = &self.collection_hash {
            m.insert(COLLECTION_HASH_KEY.to_owned(), h.clone());
        }
        m
    }

    /// As JSON, the `app_metadata` of a `FlightInfo` and of the first
    /// message of a stream.
    pub fn json(&self) -> Vec<u8> {
        let mut value = json!({
            "log_size": self.log_size,
            "log_root": self.log_root,
            "state_hash": self.state_hash,
        });
        if let Some(h) = &self.collection_hash {
            value["collection_hash"] = json!(h);
        }
        value.to_string().into_bytes()
    }
}

/// A collection's schema with the provenance of `provenance` and the
/// collection's own description (`columns::collection_metadata`, what its
/// hash covers besides the rows) attached; with the `deleted` column when
/// `deleted` (an export that keeps deleted rows). A table with declared
/// columns has the layout of [`super::table`].
pub fn schema(c: &Collection, provenance: &Provenance, deleted: bool) -> SchemaRef {
    let mut metadata = provenance.schema_metadata();
    metadata.extend(columns::collection_metadata(c));
    if let Some(table) = c.table() {
        return super::table::layout(c, table, metadata, deleted).schema;
    }
    let schema = columns::schema(c.config().dim, true)
        .as_ref()
        .clone()
        .with_metadata(metadata);
    if deleted {
        columns::with_deleted(&schema)
    } else {
        Arc::new(schema)
    }
}

/// What a table's export copies of one state besides the collection's
/// parts: its declared columns' values.
#[derive(Debug)]
struct TableParts {
    layout: super::table::Layout,
    declared: TableSchema,
    /// By declared column: the exported rows' values (`None`: the vector
    /// column, copied a batch at a time).
    scalars: Vec<Option<ArrayRef>>,
}

/// What [`Snapshot::take`] copies of one state.
#[derive(Debug)]
pub struct Snapshot {
    engine: Arc<Engine>,
    name: CollectionName,
    incarnation: u64,
    dim: u32,
    pub schema: SchemaRef,
    pub provenance: Provenance,
    /// Row numbers of the rows exported (the live ones, or all), in row
    /// order.
    rows: Vec<u32>,
    /// Each exported row's tombstone, when deleted rows are exported.
    deleted: Option<Vec<bool>>,
    ids: Vec<u64>,
    tags: Vec<u64>,
    /// End of each live row's metadata in `metadata`.
    metadata_ends: Vec<u64>,
    metadata: Vec<u8>,
    /// A table's declared columns, when the collection has them.
    table: Option<TableParts>,
    batch_rows: usize,
}

impl Snapshot {
    /// Reads the live rows' (with `deleted`, all rows') ids, tags and
    /// metadata and the state's proof under one read lock.
    pub fn take(
        engine: &Arc<Engine>,
        name: CollectionName,
        deleted: bool,
    ) -> Result<Snapshot, FlightError> {
        engine.read(|state: &State| {
            let c = state
                .collection(&name)
                .ok_or_else(|| OpsError::UnknownCollection(name.clone()))?;
            let provenance = Provenance::of(engine, Some(&name))?;
            Snapshot::of(engine, c, provenance, deleted)
        })?
    }

    fn of(
        engine: &Arc<Engine>,
        c: &Collection,
        provenance: Provenance,
        with_deleted: bool,
    ) -> Result<Snapshot, FlightError> {
        let deleted = c.deleted();
        let count = if with_deleted { c.rows() } else { c.live() };
        let mut rows = Vec::with_capacity(count);
        let mut ids = Vec::with_capacity(count);
        let mut tags = Vec::with_capacity(count);
        let mut metadata_ends = Vec::with_capacity(count);
        let mut metadata = Vec::new();
        let declared = c.table();
        for (row, &gone) in deleted.iter().enumerate() {
            if gone && !with_deleted {
                continue;
            }
            // Row numbers are u32 in the state (`Collection::row_of`).
            rows.push(row as u32);
            ids.push(c.ids()[row].0);
            // A row's tag never changes (a table's rows have tag 0, or
            // NULL_VECTOR_TAG for a NULL vector); a table's rows have no
            // metadata (docs/format.md).
            tags.push(c.tags()[row]);
            if declared.is_none() {
                metadata.extend_from_slice(c.metadata(row));
                metadata_ends.push(metadata.len() as u64);
            }
        }
        let dim = c.config().dim;
        let schema = schema(c, &provenance, with_deleted);
        let table = match declared {
            None => None,
            Some(t) => {
                let numbers: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
                Some(TableParts {
                    layout: super::table::Layout {
                        vector: t.schema().vector_column(),
                        deleted: with_deleted,
                        schema: Arc::clone(&schema),
                    },
                    declared: t.schema().clone(),
                    scalars: super::table::scalar_arrays(c, &numbers)?,
                })
            }
        };
        Ok(Snapshot {
            engine: Arc::clone(engine),
            name: c.name().clone(),
            incarnation: c.incarnation(),
            dim,
            schema,
            provenance,
            deleted: with_deleted.then(|| rows.iter().map(|&r| deleted[r as usize]).collect()),
            rows,
            ids,
            tags,
            metadata_ends,
            metadata,
            table,
            batch_rows: (BATCH_VECTOR_BYTES / (dim as usize * 4).max(1)).max(1),
        })
    }

    /// Rows exported.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Where the batch that starts at live row `start` ends: after
    /// `batch_rows` rows, or earlier when their metadata would exceed
    /// [`BATCH_METADATA_BYTES`] (at least one row: one row's metadata is
    /// far below it).
    fn batch_end(&self, start: usize) -> usize {
        let end = (start + self.batch_rows).min(self.len());
        if self.table.is_some() {
            return end;
        }
        let base = if start == 0 {
            0
        } else {
            self.metadata_ends[start - 1]
        };
        let over =
            self.metadata_ends[start..end].partition_point(|&e| e - base <= BATCH_METADATA_BYTES);
        end.min(start + over.max(1))
    }

    /// The live rows `range` (positions among the live rows) as a batch.
    fn batch(&self, range: std::ops::Range<usize>) -> Result<RecordBatch, FlightError> {
        let dim = self.dim as usize;
        let vectors = self.engine.read(|state| {
            let c = state
                .collection(&self.name)
                .filter(|c| c.incarnation() == self.incarnation)
                .ok_or_else(|| FlightError::ExportGone {
                    name: self.name.as_str().to_owned(),
                })?;
            let mut out = Vec::with_capacity(range.len() * dim);
            for &row in &self.rows[range.clone()] {
                // Rows only grow within one incarnation, so every row of
                // the snapshot is still here, with the same vector.
                out.extend_from_slice(c.vector(row as usize));
            }
            Ok::<_, FlightError>(out)
        })??;
        if let Some(t) = &self.table {
            let none = Vec::new();
            let deleted = self.deleted.as_ref().unwrap_or(&none);
            return Ok(super::table::batch(
                &t.layout,
                &t.declared,
                self.dim,
                &t.scalars,
                range,
                vectors,
                &self.tags,
                &self.ids,
                deleted,
            )?);
        }
        let start = if range.start == 0 {
            0
        } else {
            self.metadata_ends[range.start - 1]
        };
        let ends = &self.metadata_ends[range.clone()];
        let end = ends.last().copied().unwrap_or(start);
        let offsets = std::iter::once(0)
            .chain(ends.iter().map(|&e| e - start))
            .map(|o| i32::try_from(o).map_err(|_| FlightError::Arrow(overflow(o))))
            .collect::<Result<Vec<i32>, _>>()?;
        let metadata = BinaryArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(self.metadata[start as usize..end as usize].to_vec()),
            None,
        )?;
        let parts = columns::Columns {
            dim: self.dim,
            ids: self.ids[range.clone()].to_vec(),
            vectors,
            tags: self.tags[range.clone()].to_vec(),
            metadata,
        };
        match &self.deleted {
            None => Ok(columns::assemble(Arc::clone(&self.schema), parts)?),
            Some(deleted) => {
                let base = columns::schema(self.dim, true);
                let batch = columns::assemble(base, parts)?;
                Ok(columns::add_deleted(
                    Arc::clone(&self.schema),
                    batch,
                    deleted[range].to_vec(),
                )?)
            }
        }
    }

    /// The batches, each copied from the state when the stream asks for
    /// it, on the blocking pool (it waits for the state's read lock).
    pub fn stream(self) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send {
        let this = Arc::new(self);
        futures::stream::try_unfold(0usize, move |start| {
            let this = Arc::clone(&this);
            async move {
                if start >= this.len() {
                    return Ok(None);
                }
                let end = this.batch_end(start);
                let batch = tokio::task::spawn_blocking(move || this.batch(start..end)).await??;
                Ok(Some((batch, end)))
            }
        })
    }
}

fn overflow(bytes: u64) -> valori_query::datafusion::arrow::error::ArrowError {
    valori_query::datafusion::arrow::error::ArrowError::OffsetOverflowError(bytes as usize)
}
