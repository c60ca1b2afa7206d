//! The parts of an `INSERT` that meet the query engine: the rows of
//! `INSERT … SELECT`, and the rows `RETURNING` answers with.
//!
//! `INSERT … SELECT` runs its query like any other (the same planner,
//! parameters, limits and timeout), takes its rows as the values of the
//! insert ([`literal_rows`]) and inserts them as one event, as `INSERT …
//! VALUES` does. `RETURNING` answers with the rows as the write stored
//! them ([`crate::write::Written`]): values in canonical form, turned
//! into Arrow arrays of the table's own column types, so they read back
//! exactly as a `SELECT` of the same rows would.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use futures::StreamExt;
use valori_columnar::arrow as columnar;
use valori_core::limits;
use valori_core::table::{ColumnType, TableSchema};

use crate::QueryError;
use crate::rows::Rows;
use crate::write::{Literal, ReturnItem, WriteError, Written};

/// The rows of a query a write runs (an `INSERT … SELECT`'s, or the one
/// that finds the rows of an `UPDATE` or `DELETE`) as literals, at most
/// `BATCH_RECORDS_MAX` of them (more is refused before they are all
/// read). `what` names the statement in that error.
pub(crate) async fn literal_rows(
    mut rows: Rows,
    what: &str,
) -> Result<Vec<Vec<Literal>>, QueryError> {
    let max = limits::BATCH_RECORDS_MAX as usize;
    let mut out: Vec<Vec<Literal>> = Vec::new();
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        if out.len() + batch.num_rows() > max {
            return Err(WriteError::TooLarge(format!(
                "{what} of more than {max} rows in one statement; write them in parts"
            ))
            .into());
        }
        out.extend(batch_literals(&batch)?);
    }
    Ok(out)
}

/// The rows of `batch` as literals, one per column: the values of an
/// `INSERT` of its columns, converted as bound parameters are.
pub(crate) fn batch_literals(batch: &RecordBatch) -> Result<Vec<Vec<Literal>>, QueryError> {
    // A `numeric` column is held as text; its values are numbers (an
    // integer column rounds them as numbers, half away from zero).
    let numeric: Vec<bool> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            f.metadata()
                .get(crate::catalog::PG_TYPE_METADATA_KEY)
                .is_some_and(|t| t == "numeric")
        })
        .collect();
    (0..batch.num_rows())
        .map(|r| {
            batch
                .columns()
                .iter()
                .zip(&numeric)
                .map(|(column, numeric)| cell(column, r, *numeric))
                .collect()
        })
        .collect()
}

fn cell(column: &ArrayRef, row: usize, numeric: bool) -> Result<Literal, QueryError> {
    if column.is_null(row) {
        return Ok(Literal::Null);
    }
    let value = ScalarValue::try_from_array(column, row)?;
    Ok(match Literal::from_scalar(&value) {
        Literal::Text(t) if numeric => Literal::Number(t),
        other => other,
    })
}

/// The columns `items` name, as `(index in the table's columns, answered
/// name)`: `*` stands for every column in table order.
fn returned_columns(
    schema: &TableSchema,
    table: &str,
    items: &[ReturnItem],
) -> Result<Vec<(usize, String)>, WriteError> {
    let mut out = Vec::new();
    for item in items {
        if let Some(qualifier) = &item.qualifier
            && qualifier != table
        {
            // Postgres: "missing FROM-clause entry for table"; RETURNING
            // sees only the written table.
            return Err(WriteError::UndefinedTable(qualifier.clone()));
        }
        match &item.column {
            None => out.extend(
                schema
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (i, c.name.clone())),
            ),
            Some(name) => {
                let index = schema
                    .columns
                    .iter()
                    .position(|c| c.name == *name)
                    .ok_or_else(|| {
                        WriteError::UndefinedColumn(format!(
                            "column {name:?} of relation {table:?} does not exist"
                        ))
                    })?;
                out.push((index, item.alias.clone().unwrap_or_else(|| name.clone())));
            }
        }
    }
    Ok(out)
}

/// The schema of a `RETURNING` list over a table with declared columns.
pub(crate) fn returning_schema(
    schema: &TableSchema,
    dim: u32,
    table: &str,
    items: &[ReturnItem],
) -> Result<SchemaRef, WriteError> {
    let fields: Vec<Field> = returned_columns(schema, table, items)?
        .into_iter()
        .map(|(i, name)| columnar::declared_field(&schema.columns[i], dim).with_name(name))
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// The rows a write stored, as the `RETURNING` list asks for them.
pub(crate) fn returning_batch(
    schema: &TableSchema,
    dim: u32,
    table: &str,
    items: &[ReturnItem],
    written: &Written,
) -> Result<RecordBatch, QueryError> {
    let out_schema = returning_schema(schema, dim, table, items)?;
    let mut arrays = Vec::new();
    for (index, _) in returned_columns(schema, table, items)? {
        let def = &schema.columns[index];
        let scalar = match def.ty {
            ColumnType::Scalar(_) => schema.scalar_columns().position(|(i, _, _)| i == index),
            ColumnType::Vector { .. } => None,
        };
        let values: Vec<Option<&[u8]>> = match scalar {
            Some(s) => (0..written.rows)
                .map(|r| written.columns.get(s).and_then(|c| c.get(r)))
                .collect(),
            None => Vec::new(),
        };
        arrays.push(
            columnar::declared_values(def, dim, &values, &written.vectors, &written.tags)
                .map_err(|e| QueryError::from(DataFusionError::from(e)))?,
        );
    }
    Ok(RecordBatch::try_new(out_schema, arrays).map_err(DataFusionError::from)?)
}
