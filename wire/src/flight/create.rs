//! A table declared from an Arrow schema: `adbc_ingest` in mode `create`
//! (or `create_append`) of batches whose columns are not the fixed
//! layout's (`id`, `vector`, `tag`, `metadata`) becomes a `CREATE TABLE`
//! with a column per field, run by the statement layer as any other
//! statement.
//!
//! | Arrow | column |
//! |---|---|
//! | `FixedSizeList<Float16/32/64>` of n | `vector(n)` (one per table) |
//! | `Int8`, `Int16`, `UInt8` | `smallint` |
//! | `Int32`, `UInt16` | `integer` |
//! | `Int64`, `UInt32` | `bigint` |
//! | `Float16`, `Float32` | `real` |
//! | `Float64` | `double precision` |
//! | `Decimal128`, `Decimal256` | `numeric` |
//! | `Boolean` | `boolean` |
//! | `Utf8`, `LargeUtf8`, `Utf8View` | `text` |
//! | `Binary`, `LargeBinary`, `BinaryView`, `FixedSizeBinary` | `bytea` |
//! | `Date32`, `Date64` | `date` |
//! | `Timestamp` without / with a time zone | `timestamp` / `timestamptz` |
//! | `List`/`LargeList` of one of the scalar types above | that type's `[]` |
//!
//! A field that is not nullable is `NOT NULL`. The ingest's option
//! `valori.primary_key` names the primary key column (without it the
//! table has none, as an Arrow schema declares none); `valori.metric`
//! the vector's metric (`l2` by default). Any other type — `UInt64`,
//! whose values above 2^63 no Postgres integer holds, nested lists,
//! structs, maps — is refused naming the column and its type. A vector is
//! a fixed-size list; a variable-length list of floats is an array.

use std::collections::HashMap;

use valori_query::datafusion::arrow::datatypes::{DataType, Schema};

use super::FlightError;

/// The `CREATE TABLE` statement of table `table` for `schema`.
pub fn create_table_sql(
    table: &str,
    schema: &Schema,
    options: &HashMap<String, String>,
) -> Result<String, FlightError> {
    let key = options.get("valori.primary_key");
    if let Some(key) = key
        && schema.field_with_name(key).is_err()
    {
        return Err(FlightError::IngestDeclaration {
            column: key.clone(),
            reason: "valori.primary_key names no column of the batches".to_owned(),
        });
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let ty = column_type(field.data_type()).ok_or_else(|| FlightError::IngestDeclaration {
            column: field.name().clone(),
            reason: format!(
                "Arrow type {} has no column type (see docs/flight.md)",
                field.data_type()
            ),
        })?;
        let mut column = format!("{} {ty}", quote(field.name()));
        if key == Some(field.name()) {
            column.push_str(" PRIMARY KEY");
        } else if !field.is_nullable() {
            column.push_str(" NOT NULL");
        }
        columns.push(column);
    }
    let metric = options
        .get("valori.metric")
        .map(|m| format!(" WITH (metric = '{}')", m.replace('\'', "''")))
        .unwrap_or_default();
    Ok(format!(
        "CREATE TABLE {} ({}){metric}",
        quote(table),
        columns.join(", ")
    ))
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column type of an Arrow type, if it has one.
fn column_type(ty: &DataType) -> Option<String> {
    match ty {
        DataType::FixedSizeList(item, n)
            if matches!(
                item.data_type(),
                DataType::Float16 | DataType::Float32 | DataType::Float64
            ) =>
        {
            Some(format!("vector({n})"))
        }
        DataType::List(item) | DataType::LargeList(item) => {
            scalar_type(item.data_type()).map(|t| format!("{t}[]"))
        }
        other => scalar_type(other).map(str::to_owned),
    }
}

fn scalar_type(ty: &DataType) -> Option<&'static str> {
    Some(match ty {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 => "bigint",
        DataType::Float16 | DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        DataType::Boolean => "boolean",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "bytea",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use valori_query::datafusion::arrow::datatypes::{Field, TimeUnit};

    use super::*;

    /// Each Arrow type becomes the column the table above lists; the
    /// primary key and the metric come from the options; a non-nullable
    /// field is NOT NULL; an unsigned 64-bit column is refused naming it.
    #[test]
    fn arrow_types_become_columns() {
        let item = |t: DataType| Arc::new(Field::new("item", t, true));
        let schema = Schema::new(vec![
            Field::new("doc_id", DataType::Int64, false),
            Field::new("body", DataType::LargeUtf8, true),
            Field::new("score", DataType::Float32, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("labels", DataType::List(item(DataType::Utf8)), true),
            Field::new(
                "embedding",
                DataType::FixedSizeList(item(DataType::Float32), 3),
                true,
            ),
        ]);
        let options: HashMap<String, String> = [
            ("valori.primary_key".to_owned(), "doc_id".to_owned()),
            ("valori.metric".to_owned(), "cosine".to_owned()),
        ]
        .into();
        assert_eq!(
            create_table_sql("docs", &schema, &options).unwrap(),
            "CREATE TABLE \"docs\" (\"doc_id\" bigint PRIMARY KEY, \"body\" text, \
             \"score\" real NOT NULL, \"at\" timestamptz, \"labels\" text[], \
             \"embedding\" vector(3)) WITH (metric = 'cosine')"
        );
        let unsigned = Schema::new(vec![Field::new("n", DataType::UInt64, true)]);
        let err = create_table_sql("t", &unsigned, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"n\"") && err.contains("UInt64"), "{err}");
    }
}
