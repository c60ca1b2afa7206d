//! DoPut into a collection: record batches to one atomic event.
//!
//! The columns a batch may have are the export's (`columnar::arrow`):
//!
//! | column | types | |
//! |---|---|---|
//! | `vector` | list or fixed-size list of `Float32`/`Float64` | converted by `ops::Rows` (Q16.16, the checks of every entry point) |
//! | `vector` | `FixedSizeList<Int32>` | raw Q16.16, as exported: stored exactly |
//! | `vector_f32` | list of `Float32`/`Float64` | used only when there is no `vector` (an export's view of it) |
//! | `id` | any integer type, no nulls, not negative | optional: without it the engine picks the next free ids |
//! | `tag` | the same | optional: 0 |
//! | `metadata` | `Binary` (raw bytes) or `Utf8` (JSON, stored canonically as REST and SQL store it); null is none | optional |
//!
//! Every batch of the stream is converted and checked before anything is
//! written; the rows of the whole stream are then one `InsertBatch` event
//! through `ops::insert_batch`, so a stream is written whole or not at all.

use futures::{Stream, StreamExt};
use valori_query::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, RecordBatch,
};
use valori_query::datafusion::arrow::compute::{CastOptions, cast_with_options};
use valori_query::datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int32Type, UInt64Type,
};
use valori_query::ops::{BatchColumns, Rows};

use super::FlightError;

const ID: &str = "id";
const VECTOR: &str = "vector";
const VECTOR_F32: &str = "vector_f32";
const TAG: &str = "tag";
const METADATA: &str = "metadata";
const VEC: &str = "vec";
const VEC_Q16: &str = "vec_q16";

/// The rows and columns of a whole DoPut stream, converted and checked.
#[derive(Debug, Default)]
pub struct Load {
    pub rows: Rows,
    pub ids: Option<Vec<u64>>,
    pub tags: Option<Vec<u64>>,
    pub metadata: Option<Vec<Vec<u8>>>,
}

impl Load {
    /// The columns beside the vectors, for `ops::insert_batch`.
    pub fn into_parts(self) -> (Rows, BatchColumns) {
        (
            self.rows,
            BatchColumns {
                ids: self.ids,
                tags: self.tags,
                metadata: self.metadata,
            },
        )
    }

    /// Reads every batch of `batches`, converting as it goes, and refuses
    /// the stream at its first bad value or once it holds more rows than
    /// one event may.
    pub async fn read(
        mut batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Unpin,
    ) -> Result<Load, FlightError> {
        let mut load = Load::default();
        while let Some(batch) = batches.next().await {
            load.push(&batch?)?;
        }
        Ok(load)
    }

    /// Appends one batch.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), FlightError> {
        let first = self.rows.len();
        let n = batch.num_rows() as u64;
        if first + n > u64::from(valori_core::limits::BATCH_RECORDS_MAX) {
            return Err(FlightError::TooManyRecords);
        }
        let schema = batch.schema();
        for field in schema.fields() {
            if ![ID, VECTOR, VECTOR_F32, VEC, VEC_Q16, TAG, METADATA]
                .contains(&field.name().as_str())
            {
                return Err(FlightError::UnknownColumn {
                    column: field.name().clone(),
                });
            }
        }
        let column = |name: &str| batch.column_by_name(name);
        // `vec` and `vec_q16` are the SQL table's names of the same
        // columns (docs/sql.md), which ingest through Flight SQL uses.
        let (name, vectors) = match (
            column(VECTOR).or_else(|| column(VEC_Q16)),
            column(VECTOR_F32).or_else(|| column(VEC)),
        ) {
            (Some(v), _) => (VECTOR, v),
            (None, Some(v)) => (VECTOR_F32, v),
            (None, None) => return Err(FlightError::MissingVector),
        };
        push_vectors(&mut self.rows, name, vectors, first)?;
        // A stream may change its schema between batches; a column given
        // for some rows only would leave the others without a value.
        let changed = |had: bool, has: bool| first > 0 && had != has;
        for (name, out) in [(ID, &mut self.ids), (TAG, &mut self.tags)] {
            let values = column(name);
            if changed(out.is_some(), values.is_some()) {
                return Err(FlightError::SchemaChanged { column: name });
            }
            if let Some(values) = values {
                out.get_or_insert_with(Vec::new)
                    .extend(integers(name, values, first)?);
            }
        }
        let values = column(METADATA);
        if changed(self.metadata.is_some(), values.is_some()) {
            return Err(FlightError::SchemaChanged { column: METADATA });
        }
        if let Some(values) = values {
            self.metadata
                .get_or_insert_with(Vec::new)
                .extend(metadata(values, first)?);
        }
        Ok(())
    }
}

/// The vectors of one batch appended to `rows`; `first` is the stream row
/// of the batch's row 0 (for messages).
fn push_vectors(
    rows: &mut Rows,
    column: &str,
    array: &ArrayRef,
    first: u64,
) -> Result<(), FlightError> {
    let expected = "a list of Float32 or Float64 (or FixedSizeList<Int32> of raw Q16.16)";
    let wrong = || FlightError::ColumnType {
        column: column.to_owned(),
        found: array.data_type().clone(),
        expected,
    };
    let null = |i: usize| FlightError::Null {
        column: column.to_owned(),
        row: first + i as u64,
    };
    for i in 0..array.len() {
        if array.is_null(i) {
            return Err(null(i));
        }
        let row: ArrayRef = match array.data_type() {
            DataType::FixedSizeList(_, _) => array.as_fixed_size_list().value(i),
            DataType::List(_) => array.as_list::<i32>().value(i),
            DataType::LargeList(_) => array.as_list::<i64>().value(i),
            _ => return Err(wrong()),
        };
        if row.null_count() > 0 {
            return Err(null(i));
        }
        match row.data_type() {
            DataType::Float32 => rows.push_f32(row.as_primitive::<Float32Type>().values())?,
            DataType::Float64 => {
                rows.push_f64(row.as_primitive::<Float64Type>().values().iter().copied())?
            }
            DataType::Int32 if column == VECTOR && is_fixed(array) => {
                rows.push_q16(row.as_primitive::<Int32Type>().values())?
            }
            _ => return Err(wrong()),
        }
    }
    Ok(())
}

fn is_fixed(array: &ArrayRef) -> bool {
    array
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .is_some()
}

/// An integer column as `u64`s: no nulls, nothing negative.
fn integers(column: &str, array: &ArrayRef, first: u64) -> Result<Vec<u64>, FlightError> {
    if !array.data_type().is_integer() {
        return Err(FlightError::ColumnType {
            column: column.to_owned(),
            found: array.data_type().clone(),
            expected: "an integer type",
        });
    }
    if let Some(i) = (0..array.len()).find(|&i| array.is_null(i)) {
        return Err(FlightError::Null {
            column: column.to_owned(),
            row: first + i as u64,
        });
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let cast = cast_with_options(array, &DataType::UInt64, &options).map_err(|source| {
        // The first negative value names the row.
        let row = (0..array.len())
            .find(|&i| cast_with_options(&array.slice(i, 1), &DataType::UInt64, &options).is_err())
            .unwrap_or(0);
        FlightError::Value {
            column: column.to_owned(),
            row: first + row as u64,
            source,
        }
    })?;
    Ok(cast.as_primitive::<UInt64Type>().values().to_vec())
}

/// A metadata column as stored bytes: binary as is, text as canonical
/// JSON, null as none.
fn metadata(array: &ArrayRef, first: u64) -> Result<Vec<Vec<u8>>, FlightError> {
    let n = array.len();
    let at = |i: usize| first + i as u64;
    let json = |i: usize, text: &str| {
        valori_query::metadata::from_json_text(text)
            .map_err(|source| FlightError::MetadataJson { row: at(i), source })
    };
    let mut out = Vec::with_capacity(n);
    match array.data_type() {
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            out.extend((0..n).map(|i| {
                if a.is_null(i) {
                    Vec::new()
                } else {
                    a.value(i).to_vec()
                }
            }));
        }
        DataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            out.extend((0..n).map(|i| {
                if a.is_null(i) {
                    Vec::new()
                } else {
                    a.value(i).to_vec()
                }
            }));
        }
        DataType::BinaryView => {
            let a = array.as_binary_view();
            out.extend((0..n).map(|i| {
                if a.is_null(i) {
                    Vec::new()
                } else {
                    a.value(i).to_vec()
                }
            }));
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Vec::new()
                } else {
                    json(i, a.value(i))?
                });
            }
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Vec::new()
                } else {
                    json(i, a.value(i))?
                });
            }
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Vec::new()
                } else {
                    json(i, a.value(i))?
                });
            }
        }
        DataType::Null => out.resize(n, Vec::new()),
        found => {
            return Err(FlightError::ColumnType {
                column: METADATA.to_owned(),
                found: found.clone(),
                expected: "Binary (raw bytes) or Utf8 (JSON)",
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use valori_query::datafusion::arrow::array::{
        Float32Array, Int64Array, ListArray, StringArray,
    };
    use valori_query::datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("batch")
    }

    fn list(rows: &[&[f32]]) -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(
            rows.iter().map(|r| Some(r.iter().map(|&x| Some(x)))),
        ))
    }

    /// Proves a well-formed batch converts with the Q16.16 conversion of
    /// every front end (0.5 is 32768 raw), JSON metadata is stored in its
    /// canonical form, and that each kind of bad column is refused with
    /// the row or column named.
    #[test]
    fn batches_convert_and_bad_ones_are_named() {
        let mut load = Load::default();
        load.push(&batch(vec![
            ("id", Arc::new(Int64Array::from(vec![7, 8]))),
            ("vector", list(&[&[0.5, 1.0], &[2.0, -1.0]])),
            (
                "metadata",
                Arc::new(StringArray::from(vec![Some("{ \"b\":1, \"a\":2 }"), None])),
            ),
        ]))
        .expect("good batch");
        assert_eq!(load.ids, Some(vec![7, 8]));
        assert_eq!(
            load.metadata,
            Some(vec![br#"{"a":2,"b":1}"#.to_vec(), Vec::new()])
        );
        assert_eq!(load.rows.len(), 2);
        assert_eq!(load.rows.dim(), 2);

        let refuse = |columns: Vec<(&str, ArrayRef)>| {
            Load::default()
                .push(&batch(columns))
                .expect_err("bad batch")
                .to_string()
        };
        let err = refuse(vec![("vector", list(&[&[1.0, 2.0], &[1.0]]))]);
        assert!(
            err.contains("vector 1 of the batch has 1 components"),
            "{err}"
        );
        let err = refuse(vec![("vector", list(&[&[1.0, f32::NAN]]))]);
        assert!(err.contains("vector 0 of the batch"), "{err}");
        let err = refuse(vec![("vector", list(&[&[1.0e6]]))]);
        assert!(err.contains("vector 0 of the batch"), "{err}");
        let err = refuse(vec![
            ("vector", list(&[&[1.0]])),
            ("id", Arc::new(Int64Array::from(vec![-3]))),
        ]);
        assert!(err.contains("column \"id\", row 0"), "{err}");
        let err = refuse(vec![
            ("vector", list(&[&[1.0]])),
            ("tag", Arc::new(Float32Array::from(vec![1.5]))),
        ]);
        assert!(err.contains("expected an integer type"), "{err}");
        let err = refuse(vec![("vectors", list(&[&[1.0]]))]);
        assert!(err.contains("\"vectors\" is not one of"), "{err}");
        let err = refuse(vec![("id", Arc::new(Int64Array::from(vec![1])))]);
        assert!(err.contains("no `vector`"), "{err}");
        let err = refuse(vec![
            ("vector", list(&[&[1.0]])),
            ("metadata", Arc::new(StringArray::from(vec!["{not json"]))),
        ]);
        assert!(err.contains("not JSON"), "{err}");
        let err = refuse(vec![("vector", Arc::new(Int64Array::from(vec![1])))]);
        assert!(err.contains("has type Int64"), "{err}");
    }
}
