//! Arrow views of a collection, for DataFusion scans, Flight and Python.
//!
//! A collection of dimension `d` becomes a [`RecordBatch`] with the columns
//!
//! | column | type | |
//! |---|---|---|
//! | `id` | `UInt64` | the record id |
//! | `vector` | `FixedSizeList<Int32, d>` | raw Q16.16 components, exact |
//! | `tag` | `UInt64` | |
//! | `metadata` | `Binary` | |
//! | `vector_f32` | `FixedSizeList<Float32, d>` | optional: `raw / 65536`, for users |
//!
//! No column holds nulls, so every field is declared non-nullable. Only live
//! rows are exported, in row order. The `f32` view is for people and
//! DataFrames; it never flows back into the state (floats enter only through
//! `valori_core::q16::quantize`).

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, FixedSizeListArray, Float32Array, Int32Array, RecordBatch,
    UInt64Array,
};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Schema, SchemaRef};
use valori_core::state::Collection;

/// Column names, in schema order.
pub const ID_COLUMN: &str = "id";
pub const VECTOR_COLUMN: &str = "vector";
pub const TAG_COLUMN: &str = "tag";
pub const METADATA_COLUMN: &str = "metadata";
pub const VECTOR_F32_COLUMN: &str = "vector_f32";
/// Only in an export that keeps deleted rows: `true` for a deleted row.
pub const DELETED_COLUMN: &str = "deleted";

/// Schema metadata keys of an export: which state it was read from …
pub const LOG_SIZE_KEY: &str = "valori.log_size";
pub const LOG_ROOT_KEY: &str = "valori.log_root";
pub const STATE_HASH_KEY: &str = "valori.state_hash";
pub const COLLECTION_HASH_KEY: &str = "valori.collection_hash";
/// … and what of the collection its hash covers besides the rows
/// (docs/format.md section 3), so that an export alone is enough to
/// recompute the collection hash.
pub const COLLECTION_KEY: &str = "valori.collection";
pub const METRIC_KEY: &str = "valori.metric";
pub const M_KEY: &str = "valori.m";
pub const EF_CONSTRUCTION_KEY: &str = "valori.ef_construction";
pub const SEED_KEY: &str = "valori.seed";
pub const ROWS_KEY: &str = "valori.rows";
pub const LIVE_KEY: &str = "valori.live";

/// Name of the child field of the list columns (Arrow's conventional name).
const ITEM_FIELD: &str = "item";

/// Q16.16 scale: a raw component `r` stands for `r / 65536`.
const Q16_ONE: f32 = 65536.0;

fn item_field(data_type: DataType) -> FieldRef {
    Arc::new(Field::new(ITEM_FIELD, data_type, false))
}

/// `dim` as Arrow's list size, which is an `i32`.
fn list_size(dim: u32) -> Result<i32, ArrowError> {
    i32::try_from(dim).map_err(|_| {
        ArrowError::InvalidArgumentError(format!("dimension {dim} does not fit Arrow's list size"))
    })
}

fn vector_type(dim: i32, item: DataType) -> DataType {
    DataType::FixedSizeList(item_field(item), dim)
}

/// The schema of a collection of dimension `dim`, with the `vector_f32`
/// view when `with_f32`.
pub fn schema(dim: u32, with_f32: bool) -> SchemaRef {
    // Dimensions are capped at 16,000 long before i32 runs out; saturating
    // keeps this function total for any input.
    let size = list_size(dim).unwrap_or(i32::MAX);
    let mut fields = vec![
        Field::new(ID_COLUMN, DataType::UInt64, false),
        Field::new(VECTOR_COLUMN, vector_type(size, DataType::Int32), false),
        Field::new(TAG_COLUMN, DataType::UInt64, false),
        Field::new(METADATA_COLUMN, DataType::Binary, false),
    ];
    if with_f32 {
        fields.push(Field::new(
            VECTOR_F32_COLUMN,
            vector_type(size, DataType::Float32),
            false,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// The schema metadata that describes `collection` itself: its name,
/// metric code, index parameters, and its counts of rows (deleted ones
/// included) and live rows: everything its hash covers except the rows.
pub fn collection_metadata(collection: &Collection) -> Vec<(String, String)> {
    let config = collection.config();
    [
        (COLLECTION_KEY, collection.name().as_str().to_owned()),
        (METRIC_KEY, config.metric.code().to_string()),
        (M_KEY, config.index.m.to_string()),
        (
            EF_CONSTRUCTION_KEY,
            config.index.ef_construction.to_string(),
        ),
        (SEED_KEY, config.index.seed.to_string()),
        (ROWS_KEY, collection.rows().to_string()),
        (LIVE_KEY, collection.live().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `schema` (of [`schema`]) with the [`DELETED_COLUMN`] appended, for an
/// export that keeps deleted rows.
pub fn with_deleted(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        DELETED_COLUMN,
        DataType::Boolean,
        false,
    )));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with the tombstone column `deleted` appended under `schema`
/// (from [`with_deleted`]).
pub fn add_deleted(
    schema: SchemaRef,
    batch: RecordBatch,
    deleted: Vec<bool>,
) -> Result<RecordBatch, ArrowError> {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(BooleanArray::from(deleted)));
    RecordBatch::try_new(schema, columns)
}

/// Wraps `values` (`dim` components per row, row-major) as a vector column
/// without copying: the vector's allocation becomes the Arrow buffer.
pub fn vector_array(values: Vec<i32>, dim: u32) -> Result<FixedSizeListArray, ArrowError> {
    let size = list_size(dim)?;
    if dim == 0 {
        return Err(ArrowError::InvalidArgumentError(
            "vector dimension must be at least 1".to_owned(),
        ));
    }
    let values = Int32Array::new(ScalarBuffer::from(values), None);
    FixedSizeListArray::try_new(item_field(DataType::Int32), size, Arc::new(values), None)
}

/// The `f32` view of raw components: `raw / 65536`, correctly rounded
/// (`raw as f32` rounds once; scaling by a power of two is exact).
fn f32_array(raw: &[i32], dim: u32) -> Result<FixedSizeListArray, ArrowError> {
    let size = list_size(dim)?;
    let values: Vec<f32> = raw.iter().map(|&r| r as f32 / Q16_ONE).collect();
    let values = Float32Array::new(ScalarBuffer::from(values), None);
    FixedSizeListArray::try_new(item_field(DataType::Float32), size, Arc::new(values), None)
}

/// Exports the live rows among `rows` of `collection`, in row order.
///
/// Fails if `rows` is not within the collection, or if the batch's metadata
/// exceeds the 2 GiB a `Binary` column can address (export fewer rows at a
/// time).
pub fn record_batch(
    collection: &Collection,
    rows: Range<usize>,
    with_f32: bool,
) -> Result<RecordBatch, ArrowError> {
    if rows.start > rows.end || rows.end > collection.rows() {
        return Err(ArrowError::InvalidArgumentError(format!(
            "rows {}..{} are outside collection {} of {} rows",
            rows.start,
            rows.end,
            collection.name(),
            collection.rows()
        )));
    }
    let dim = collection.config().dim;
    let deleted = collection.deleted();
    let live: Vec<usize> = rows.filter(|&row| !deleted[row]).collect();

    let ids: Vec<u64> = live.iter().map(|&row| collection.ids()[row].0).collect();
    let tags: Vec<u64> = live.iter().map(|&row| collection.tags()[row]).collect();
    let mut vectors: Vec<i32> = Vec::with_capacity(live.len() * collection.dim());
    for &row in &live {
        vectors.extend_from_slice(collection.vector(row));
    }

    let mut offsets: Vec<i32> = Vec::with_capacity(live.len() + 1);
    offsets.push(0);
    let metadata_bytes: usize = live.iter().map(|&row| collection.metadata(row).len()).sum();
    let mut metadata: Vec<u8> = Vec::with_capacity(metadata_bytes);
    for &row in &live {
        metadata.extend_from_slice(collection.metadata(row));
        let end = i32::try_from(metadata.len())
            .map_err(|_| ArrowError::OffsetOverflowError(metadata.len()))?;
        offsets.push(end);
    }
    // Offsets start at 0 and never decrease, as OffsetBuffer requires.
    let metadata = BinaryArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(metadata),
        None,
    )?;

    assemble(
        schema(dim, with_f32),
        Columns {
            dim,
            ids,
            vectors,
            tags,
            metadata,
        },
    )
}

/// The columns of exported rows, before they become a [`RecordBatch`]:
/// `vectors` holds `dim` raw components per row, row-major.
#[derive(Debug)]
pub struct Columns {
    pub dim: u32,
    pub ids: Vec<u64>,
    pub vectors: Vec<i32>,
    pub tags: Vec<u64>,
    pub metadata: BinaryArray,
}

/// Builds the batch of `columns` under `schema`, which is [`schema`] of
/// the columns' dimension (with or without the `vector_f32` view, which
/// is computed here when the schema has it), possibly with schema-level
/// metadata added. Streaming exports copy the rows of one batch at a time
/// and assemble them here, so that every export has the same columns.
pub fn assemble(schema: SchemaRef, columns: Columns) -> Result<RecordBatch, ArrowError> {
    let Columns {
        dim,
        ids,
        vectors,
        tags,
        metadata,
    } = columns;
    let with_f32 = schema.fields().len() == 5;
    let f32_view = if with_f32 {
        Some(f32_array(&vectors, dim)?)
    } else {
        None
    };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::new(ScalarBuffer::from(ids), None)),
        Arc::new(vector_array(vectors, dim)?),
        Arc::new(UInt64Array::new(ScalarBuffer::from(tags), None)),
        Arc::new(metadata),
    ];
    if let Some(view) = f32_view {
        columns.push(Arc::new(view));
    }
    RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    /// `vector_array` hands the caller's allocation to Arrow: the values
    /// buffer starts at the same address as the `Vec` did.
    #[test]
    fn vector_array_does_not_copy() {
        let values: Vec<i32> = (0..3 * 1000).collect();
        let before = values.as_ptr();
        let array = vector_array(values, 3).unwrap();
        let inner = array
            .values()
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        assert_eq!(inner.values().as_ptr(), before);
        assert_eq!(array.len(), 1000);
        assert_eq!(array.value_length(), 3);
    }

    /// A buffer that is not a whole number of vectors, or a zero dimension,
    /// is an error, not a panic.
    #[test]
    fn vector_array_rejects_bad_shapes() {
        assert!(vector_array(vec![1, 2, 3, 4], 3).is_err());
        assert!(vector_array(vec![1, 2], 0).is_err());
        assert!(vector_array(vec![], 5).unwrap().is_empty());
    }
}
