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

use std::sync::Arc;

use futures::{Stream, StreamExt};
use valori_core::table::{ColumnType, ScalarType, TableSchema};
use valori_query::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, RecordBatch, RecordBatchOptions,
};
use valori_query::datafusion::arrow::compute::{CastOptions, cast_with_options};
use valori_query::datafusion::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int32Type, Schema, TimeUnit, UInt64Type,
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

/// Whether `name` is a column of the fixed layout's batches.
pub fn is_fixed_column(name: &str) -> bool {
    [ID, VECTOR, VECTOR_F32, TAG, METADATA, VEC, VEC_Q16].contains(&name)
}

/// Whether every column of `schema` is one of the fixed layout's.
pub fn is_fixed_layout(schema: &Schema) -> bool {
    schema.fields().iter().all(|f| is_fixed_column(f.name()))
}

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

/// A `DoPut` stream into a table with declared columns (docs/flight.md,
/// "Loading a table"): its batches, each checked against the declared
/// columns, kept for one `INSERT` of them
/// (`valori_query::declared::insert_batches`), which converts the values
/// and computes defaults and sequences as SQL `INSERT` does.
#[derive(Debug)]
pub struct TableLoad {
    /// The columns every batch has, in the batches' order.
    pub names: Vec<String>,
    pub batches: Vec<RecordBatch>,
    rows: u64,
}

impl TableLoad {
    /// Reads every batch of `batches` into table `table` of declared
    /// columns `schema`, refusing the stream at its first batch that does
    /// not fit or once it holds more rows than one event may.
    pub async fn read(
        schema: &TableSchema,
        table: &str,
        mut batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Unpin,
    ) -> Result<TableLoad, FlightError> {
        let mut load = TableLoad {
            names: Vec::new(),
            batches: Vec::new(),
            rows: 0,
        };
        let mut first = true;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            let names: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            if first {
                load.names = names;
                first = false;
            } else if names != load.names {
                return Err(FlightError::TableColumnsChanged {
                    table: table.to_owned(),
                    first: load.names.join(", "),
                    now: names.join(", "),
                });
            }
            load.push(schema, table, batch)?;
        }
        Ok(load)
    }

    fn push(
        &mut self,
        schema: &TableSchema,
        table: &str,
        batch: RecordBatch,
    ) -> Result<(), FlightError> {
        self.rows += batch.num_rows() as u64;
        if self.rows > u64::from(valori_core::limits::BATCH_RECORDS_MAX) {
            return Err(FlightError::TooManyRecords);
        }
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
            let def = schema
                .columns
                .iter()
                .find(|c| c.name == *field.name())
                .ok_or_else(|| FlightError::TableColumn {
                    table: table.to_owned(),
                    column: field.name().clone(),
                    columns: schema
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let expected = accepted(def.ty);
            if !fits(def.ty, array.data_type()) {
                return Err(FlightError::ColumnType {
                    column: def.name.clone(),
                    found: array.data_type().clone(),
                    expected,
                });
            }
            columns.push(normalized(&def.name, array)?);
        }
        self.batches.push(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(
                batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(&columns)
                    .map(|(f, a)| Field::new(f.name(), a.data_type().clone(), true))
                    .collect::<Vec<_>>(),
            )),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?);
        Ok(())
    }
}

/// What Arrow types a declared column takes, for messages.
fn accepted(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Vector { .. } => "a list of Float32 or Float64 (the vector's components)",
        ColumnType::Scalar(t) => match t {
            ScalarType::Bool => "Boolean",
            ScalarType::Int16 | ScalarType::Int32 | ScalarType::Int64 => "an integer type",
            ScalarType::Float32 | ScalarType::Float64 => "an integer or floating-point type",
            ScalarType::Numeric => "an integer, floating-point, decimal or Utf8 type",
            ScalarType::Text | ScalarType::Char => "Utf8",
            ScalarType::Json | ScalarType::Jsonb => "Utf8 (JSON text)",
            ScalarType::Bytea => "Binary",
            ScalarType::Uuid => "Utf8 (uuid text) or FixedSizeBinary(16)",
            ScalarType::Date => "Date32 or Date64",
            ScalarType::Timestamp | ScalarType::TimestampTz => "Timestamp",
            ScalarType::Array(_) => "a list of the element type",
            _ => "a type this server reads",
        },
    }
}

/// Whether an Arrow column of type `found` may fill a declared column of
/// type `ty`: the types whose values mean the same in both, so that a
/// text column never lands in a number or a number in a text column.
fn fits(ty: ColumnType, found: &DataType) -> bool {
    if *found == DataType::Null {
        return true;
    }
    let text = matches!(
        found,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let float = matches!(found, DataType::Float32 | DataType::Float64);
    let item = match found {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            Some(f.data_type())
        }
        _ => None,
    };
    match ty {
        ColumnType::Vector { .. } => {
            matches!(item, Some(DataType::Float32 | DataType::Float64))
        }
        ColumnType::Scalar(t) => match t {
            ScalarType::Bool => *found == DataType::Boolean,
            ScalarType::Int16 | ScalarType::Int32 | ScalarType::Int64 => found.is_integer(),
            ScalarType::Float32 | ScalarType::Float64 => found.is_integer() || float,
            ScalarType::Numeric => {
                found.is_integer()
                    || float
                    || text
                    || matches!(
                        found,
                        DataType::Decimal128(_, _) | DataType::Decimal256(_, _)
                    )
            }
            ScalarType::Text | ScalarType::Char | ScalarType::Json | ScalarType::Jsonb => text,
            ScalarType::Bytea => matches!(
                found,
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView
            ),
            ScalarType::Uuid => text || *found == DataType::FixedSizeBinary(16),
            ScalarType::Date => matches!(found, DataType::Date32 | DataType::Date64),
            ScalarType::Timestamp | ScalarType::TimestampTz => {
                matches!(found, DataType::Timestamp(_, _))
            }
            ScalarType::Array(e) => match item {
                Some(DataType::Null) => true,
                Some(inner) => fits(ColumnType::Scalar(e.scalar()), inner),
                None => false,
            },
            _ => false,
        },
    }
}

/// A column in the units the `INSERT` conversion reads: timestamps in
/// microseconds (their time zone kept), dates in days.
fn normalized(column: &str, array: &ArrayRef) -> Result<ArrayRef, FlightError> {
    let target = match array.data_type() {
        DataType::Timestamp(unit, tz) if *unit != TimeUnit::Microsecond => {
            DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
        }
        DataType::Date64 => DataType::Date32,
        _ => return Ok(Arc::clone(array)),
    };
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(array, &target, &options).map_err(|source| FlightError::Cast {
        column: column.to_owned(),
        source,
    })
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

    /// Proves a load into a table with declared columns checks every
    /// batch against the declaration before anything is written: the
    /// batches of one stream must name the same columns, an unknown column
    /// is named with the table's columns, a type that means something else
    /// (text into an integer, integers as the vector) is refused, and
    /// timestamps in any unit arrive as microseconds.
    #[test]
    fn table_loads_are_checked_per_batch() {
        use valori_core::table::{ColumnDef, ColumnType, ScalarType, TableSchema};
        use valori_query::datafusion::arrow::array::{Int32Array, TimestampMillisecondArray};

        let column = |name: &str, ty: ColumnType, type_mod: u32| ColumnDef {
            name: name.to_owned(),
            ty,
            type_mod,
            flags: 0,
            default: None,
            index: None,
            references: None,
        };
        let schema = TableSchema {
            uniques: Default::default(),
            columns: vec![
                column("v", ColumnType::Vector { half: false }, 1),
                column("n", ColumnType::Scalar(ScalarType::Int32), 0),
                column("at", ColumnType::Scalar(ScalarType::Timestamp), 0),
            ],
        };
        let read = |batches: Vec<RecordBatch>| {
            futures::executor::block_on(TableLoad::read(
                &schema,
                "t",
                futures::stream::iter(batches.into_iter().map(Ok)),
            ))
        };
        let at = || -> ArrayRef { Arc::new(TimestampMillisecondArray::from(vec![1_500])) };
        let load = read(vec![batch(vec![("v", list(&[&[1.0]])), ("at", at())])]).expect("good");
        assert_eq!(load.names, vec!["v", "at"]);
        assert_eq!(
            load.batches[0].column(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(
            load.batches[0]
                .column(1)
                .as_primitive::<valori_query::datafusion::arrow::datatypes::TimestampMicrosecondType>()
                .value(0),
            1_500_000
        );
        let err = read(vec![
            batch(vec![("v", list(&[&[1.0]]))]),
            batch(vec![
                ("v", list(&[&[1.0]])),
                ("n", Arc::new(Int32Array::from(vec![1]))),
            ]),
        ])
        .expect_err("columns changed")
        .to_string();
        assert!(err.contains("first (v), then (v, n)"), "{err}");
        let err = read(vec![batch(vec![("w", list(&[&[1.0]]))])])
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("\"w\" is not a column of table t (its columns: v, n, at)"),
            "{err}"
        );
        let err = read(vec![batch(vec![
            ("v", list(&[&[1.0]])),
            ("n", Arc::new(StringArray::from(vec!["1"]))),
        ])])
        .expect_err("text into an integer")
        .to_string();
        assert!(
            err.contains("\"n\" has type Utf8; expected an integer type"),
            "{err}"
        );
        let ints: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>([Some([
            Some(1),
        ])]));
        let err = read(vec![batch(vec![("v", ints)])])
            .expect_err("integer vector")
            .to_string();
        assert!(
            err.contains("expected a list of Float32 or Float64"),
            "{err}"
        );
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
