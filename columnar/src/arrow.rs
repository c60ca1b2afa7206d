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
    ArrayRef, BinaryArray, BooleanArray, Date32Array, FixedSizeListArray, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use valori_core::state::Collection;
use valori_core::table::{ArrayElement, ColumnDef, ColumnType, NULL_VECTOR_TAG, ScalarType};

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

/// Field metadata naming the Postgres type of a declared column whose
/// Arrow type several Postgres types share (`uuid`, `json`, `jsonb`,
/// `numeric`, `varchar`: all `Utf8`).
pub const PG_TYPE_KEY: &str = "valori.pg_type";

/// The Arrow type of a declared scalar type.
fn scalar_data_type(ty: ScalarType) -> DataType {
    match ty {
        ScalarType::Bool => DataType::Boolean,
        ScalarType::Int16 => DataType::Int16,
        ScalarType::Int32 => DataType::Int32,
        ScalarType::Int64 => DataType::Int64,
        ScalarType::Float32 => DataType::Float32,
        ScalarType::Float64 => DataType::Float64,
        ScalarType::Bytea => DataType::Binary,
        ScalarType::Date => DataType::Date32,
        ScalarType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        ScalarType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ScalarType::Array(element) => DataType::List(Arc::new(Field::new(
            ITEM_FIELD,
            scalar_data_type(element.scalar()),
            true,
        ))),
        _ => DataType::Utf8,
    }
}

/// The Arrow field of a declared column of a table of dimension `dim`:
/// its name, its type (the vector as `FixedSizeList<Float32, dim>`), NOT
/// NULL as non-nullable, and [`PG_TYPE_KEY`] where the Arrow type does not
/// say the Postgres type.
pub fn declared_field(column: &ColumnDef, dim: u32) -> Field {
    let (data_type, pg) = match column.ty {
        ColumnType::Vector { half } => (
            vector_type(list_size(dim).unwrap_or(i32::MAX), DataType::Float32),
            half.then_some("halfvec"),
        ),
        ColumnType::Scalar(ty) => (
            scalar_data_type(ty),
            match ty {
                ScalarType::Uuid => Some("uuid"),
                ScalarType::Json => Some("json"),
                ScalarType::Jsonb => Some("jsonb"),
                ScalarType::Numeric => Some("numeric"),
                ScalarType::Text if column.type_mod > 0 => Some("varchar"),
                ScalarType::Char => Some("bpchar"),
                ScalarType::Array(e) => Some(match e {
                    ArrayElement::Bool => "_bool",
                    ArrayElement::Int16 => "_int2",
                    ArrayElement::Int32 => "_int4",
                    ArrayElement::Int64 => "_int8",
                    ArrayElement::Float32 => "_float4",
                    ArrayElement::Float64 => "_float8",
                    ArrayElement::Numeric => "_numeric",
                    _ => "_text",
                }),
                _ => None,
            },
        ),
    };
    let field = Field::new(&column.name, data_type, !column.not_null());
    match pg {
        Some(pg) => field.with_metadata([(PG_TYPE_KEY.to_owned(), pg.to_owned())].into()),
        None => field,
    }
}

/// `uuid` bytes in their text form.
pub fn uuid_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Declared column `column` (index in the schema's columns) of `rows`, in
/// that order, as an Arrow array of [`declared_field`]'s type.
pub fn declared_array(
    collection: &Collection,
    column: usize,
    rows: &[usize],
) -> Result<ArrayRef, ArrowError> {
    let table = collection.table().ok_or_else(|| {
        ArrowError::InvalidArgumentError(format!("{} has no declared columns", collection.name()))
    })?;
    let def = table.schema().columns.get(column).ok_or_else(|| {
        ArrowError::InvalidArgumentError(format!("{} has no column {column}", collection.name()))
    })?;
    let ColumnType::Scalar(ty) = def.ty else {
        let mut values = Vec::with_capacity(rows.len() * collection.dim());
        for &row in rows {
            values.extend_from_slice(collection.vector(row));
        }
        let tags: Vec<u64> = match collection.tag_count(NULL_VECTOR_TAG) {
            0 => Vec::new(),
            _ => rows.iter().map(|&r| collection.tags()[r]).collect(),
        };
        return vector_f32_array(&values, &tags, collection.config().dim);
    };
    let scalar_index = table
        .schema()
        .scalar_columns()
        .position(|(i, _, _)| i == column)
        .expect("invariant: a scalar column is among the scalar columns");
    let stored = &table.columns()[scalar_index];
    let values: Vec<Option<&[u8]>> = rows.iter().map(|&r| stored.get(r)).collect();
    scalar_array(ty, &values)
}

/// Values of declared column `column` as a write stores them, one per
/// row, as an Arrow array of [`declared_field`]'s type: `scalars` in
/// canonical form for a scalar column, `vectors` (Q16.16, `dim` per row)
/// for the vector column, with the rows' record `tags` (a row tagged
/// [`NULL_VECTOR_TAG`] is NULL; no tags: none is).
pub fn declared_values(
    column: &ColumnDef,
    dim: u32,
    scalars: &[Option<&[u8]>],
    vectors: &[i32],
    tags: &[u64],
) -> Result<ArrayRef, ArrowError> {
    match column.ty {
        ColumnType::Scalar(ty) => scalar_array(ty, scalars),
        ColumnType::Vector { .. } => vector_f32_array(vectors, tags, dim),
    }
}

/// The validity of a table's vector column for rows with record `tags`:
/// `None` when every vector is present.
pub fn vector_nulls(tags: &[u64]) -> Option<NullBuffer> {
    tags.contains(&NULL_VECTOR_TAG)
        .then(|| tags.iter().map(|&t| t != NULL_VECTOR_TAG).collect())
}

/// Q16.16 vectors of `dim` components as `FixedSizeList<Float32>`, NULL
/// where `tags` says so ([`vector_nulls`]).
fn vector_f32_array(values: &[i32], tags: &[u64], dim: u32) -> Result<ArrayRef, ArrowError> {
    let floats: Vec<f32> = values.iter().map(|&r| r as f32 / Q16_ONE).collect();
    Ok(Arc::new(FixedSizeListArray::try_new(
        item_field(DataType::Float32),
        list_size(dim)?,
        Arc::new(Float32Array::from(floats)),
        vector_nulls(tags),
    )?))
}

fn le<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// Values of one scalar type in their canonical form as an Arrow array.
fn scalar_array(ty: ScalarType, values: &[Option<&[u8]>]) -> Result<ArrayRef, ArrowError> {
    Ok(match ty {
        ScalarType::Bool => Arc::new(
            values
                .iter()
                .map(|v| v.map(|b| b[0] == 1))
                .collect::<BooleanArray>(),
        ),
        ScalarType::Int16 => Arc::new(
            values
                .iter()
                .map(|v| v.map(|b| i16::from_le_bytes(le(b))))
                .collect::<Int16Array>(),
        ),
        ScalarType::Int32 => Arc::new(
            values
                .iter()
                .map(|v| v.map(|b| i32::from_le_bytes(le(b))))
                .collect::<Int32Array>(),
        ),
        ScalarType::Int64 => Arc::new(
            values
                .iter()
                .map(|v| v.map(|b| i64::from_le_bytes(le(b))))
                .collect::<Int64Array>(),
        ),
        ScalarType::Float32 => Arc::new(
            values
                .iter()
                .map(|v| v.map(|b| f32::from_le_bytes(le(b))))
                .collect::<Float32Array>(),
        ),
        ScalarType::Float64 => Arc::new(
            values
                .iter()
                .map(|v| v.map(|b| f64::from_le_bytes(le(b))))
                .collect::<Float64Array>(),
        ),
        ScalarType::Date => Arc::new(
            values
                .iter()
                .map(|v| v.map(|b| i32::from_le_bytes(le(b))))
                .collect::<Date32Array>(),
        ),
        ScalarType::Timestamp | ScalarType::TimestampTz => {
            let array = values
                .iter()
                .map(|v| v.map(|b| i64::from_le_bytes(le(b))))
                .collect::<TimestampMicrosecondArray>();
            Arc::new(if ty == ScalarType::TimestampTz {
                array.with_timezone("UTC")
            } else {
                array
            })
        }
        ScalarType::Bytea => Arc::new(values.iter().copied().collect::<BinaryArray>()),
        ScalarType::Uuid => Arc::new(
            values
                .iter()
                .map(|v| v.map(uuid_text))
                .collect::<StringArray>(),
        ),
        ScalarType::Array(element) => {
            let element = element.scalar();
            let mut items: Vec<Option<&[u8]>> = Vec::new();
            let mut offsets = vec![0i32];
            let mut valid = Vec::with_capacity(values.len());
            for v in values {
                if let Some(bytes) = v {
                    decode_array(element, bytes, &mut items)?;
                }
                valid.push(v.is_some());
                offsets.push(i32::try_from(items.len()).map_err(|_| {
                    ArrowError::InvalidArgumentError("array column too large".into())
                })?);
            }
            let child = scalar_array(element, &items)?;
            Arc::new(ListArray::try_new(
                Arc::new(Field::new(ITEM_FIELD, scalar_data_type(element), true)),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                child,
                Some(NullBuffer::from(valid)),
            )?)
        }
        // Text, numeric, json, jsonb: UTF-8, checked when written.
        _ => Arc::new(
            values
                .iter()
                .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect::<StringArray>(),
        ),
    })
}

/// The elements of an array value in canonical form
/// (`valori_core::table::ScalarType::Array`), appended to `out`.
fn decode_array<'a>(
    element: ScalarType,
    bytes: &'a [u8],
    out: &mut Vec<Option<&'a [u8]>>,
) -> Result<(), ArrowError> {
    let bad = || ArrowError::InvalidArgumentError("malformed array value".into());
    let mut rest = bytes;
    let mut take = |n: usize| -> Result<&'a [u8], ArrowError> {
        if n > rest.len() {
            return Err(bad());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_le_bytes(le(take(4)?));
    for _ in 0..count {
        if take(1)?[0] == 0 {
            out.push(None);
            continue;
        }
        let len = match element.width() {
            Some(w) => w,
            None => u32::from_le_bytes(le(take(4)?)) as usize,
        };
        out.push(Some(take(len)?));
    }
    Ok(())
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
