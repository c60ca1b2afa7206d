//! Lowering: a DSL [`Query`] becomes SQL text that goes through the same
//! planner as every SQL statement, so the KNN rewrite applies to it.
//!
//! ```text
//! FROM docs NEAREST $q K 10 WHERE tag IN (3, 7) AND meta.lang = 'en' EF 64
//! ```
//!
//! becomes (with `$q` bound, on an `l2` collection)
//!
//! ```sql
//! SELECT id, l2(vec, '[0.1,0.2]') AS "distance", tag, metadata FROM "docs"
//! WHERE ((tag IN (3, 7)) AND (meta_get(metadata, 'lang') = 'en'))
//! ORDER BY l2(vec, '[0.1,0.2]') LIMIT 10
//! ```
//!
//! with `ef_search = 64`. Nothing from the query text reaches the SQL
//! unparsed: the collection name is `[a-z][a-z0-9_]*` and quoted, vector
//! components are `f32`s printed back, numbers are printed from their
//! parsed values, strings are SQL literals with `'` doubled, and metadata
//! keys (`[A-Za-z0-9_]+`) are string literals.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use valori_core::distance::Metric;
use valori_core::q16::quantize;

use super::ast::{Column, CompareOp, Field, Filter, Query, Value, VectorSource};
use super::{DslError, ParamError};
use crate::functions::DistanceFunction;
use crate::settings::SearchSettings;

/// A lowered query: the SQL and the settings to run it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lowered {
    pub sql: String,
    pub settings: SearchSettings,
}

/// The distance function `NEAREST` means on a collection of `metric`:
/// smaller is nearer for each.
pub fn distance_function(metric: Metric) -> DistanceFunction {
    match metric {
        Metric::L2 => DistanceFunction::L2,
        Metric::InnerProduct => DistanceFunction::NegativeInnerProduct,
        Metric::Cosine => DistanceFunction::CosineDistance,
    }
}

/// `query` as SQL over a collection of `metric`, with `$name` vectors from
/// `params` and the query's `EF` / `EXACT` over the session's `settings`.
pub fn to_sql(
    query: &Query,
    metric: Metric,
    params: &BTreeMap<String, Vec<f32>>,
    settings: &SearchSettings,
) -> Result<Lowered, DslError> {
    let vector = match &query.nearest {
        VectorSource::Literal(v) => vector_literal(v),
        VectorSource::Param(name) => {
            let v = params
                .get(name)
                .ok_or_else(|| ParamError::Missing { name: name.clone() })?;
            if v.is_empty() {
                return Err(ParamError::Empty { name: name.clone() }.into());
            }
            for (i, &x) in v.iter().enumerate() {
                quantize(x).map_err(|error| ParamError::Component {
                    name: name.clone(),
                    component: i as u32,
                    value: x,
                    error,
                })?;
            }
            vector_literal(v)
        }
    };
    let distance = format!("{}(vec, '{vector}')", distance_function(metric).name());
    let default_columns = [Column::Id, Column::Distance, Column::Tag, Column::Metadata];
    let columns = query.select.as_deref().unwrap_or(&default_columns);
    let columns: Vec<String> = columns
        .iter()
        .map(|c| match c {
            Column::Id => "id".to_owned(),
            Column::Tag => "tag".to_owned(),
            Column::Metadata => "metadata".to_owned(),
            Column::Vec => "vec".to_owned(),
            Column::Distance => format!("{distance} AS \"distance\""),
            Column::Meta(path) => format!(
                "{} AS {}",
                meta_call("meta_get", path),
                quote_identifier(&format!("meta.{}", path.join(".")))
            ),
        })
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {}",
        columns.join(", "),
        quote_identifier(&query.collection)
    );
    if let Some(filter) = &query.filter {
        let _ = write!(sql, " WHERE {}", condition(filter));
    }
    let _ = write!(sql, " ORDER BY {distance} LIMIT {}", query.k);
    let mut settings = *settings;
    if let Some(ef) = query.ef {
        settings.ef_search = Some(usize::try_from(ef).unwrap_or(usize::MAX));
    }
    settings.exact |= query.exact;
    Ok(Lowered { sql, settings })
}

/// pgvector's text form; `f32`'s `Display` is the shortest text that
/// parses back to the same `f32`.
fn vector_literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(f32::to_string).collect();
    format!("[{}]", parts.join(","))
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn meta_call(function: &str, path: &[String]) -> String {
    let keys: Vec<String> = path.iter().map(|k| quote_string(k)).collect();
    format!("{function}(metadata, {})", keys.join(", "))
}

/// An integer literal of `id` or `tag` (checked when the tree was built).
fn integer(value: &Value) -> String {
    match value {
        Value::Number {
            integer: Some(n), ..
        } => n.to_string(),
        // Unreachable by construction; a NULL literal matches nothing.
        _ => "NULL".to_owned(),
    }
}

/// `meta.<path> <op> <value>`, with the function that reads the value's
/// type.
fn meta_compare(path: &[String], op: CompareOp, value: &Value) -> String {
    match value {
        Value::String(s) => format!(
            "{} {} {}",
            meta_call("meta_get", path),
            op.sql(),
            quote_string(s)
        ),
        Value::Number { value, .. } => {
            format!("{} {} {value:?}", meta_call("meta_num", path), op.sql())
        }
        Value::Bool(b) => format!("{} {} {b}", meta_call("meta_bool", path), op.sql()),
    }
}

/// One flat chain, `(a OR b OR c)`: as deep in SQL as in the DSL.
fn chain(operands: &[Filter], operator: &str) -> String {
    let parts: Vec<String> = operands.iter().map(condition).collect();
    format!("({})", parts.join(operator))
}

/// `meta.<path> IN (…)`: one `IN` list per value type, each read with the
/// function of its type, so a long list stays one list in SQL. The same
/// three-valued logic as the `OR` of the equalities: a missing key is
/// NULL, and `NOT` of NULL stays NULL.
fn meta_in(path: &[String], values: &[Value]) -> String {
    let mut strings = Vec::new();
    let mut numbers = Vec::new();
    let mut bools = Vec::new();
    for value in values {
        match value {
            Value::String(s) => strings.push(quote_string(s)),
            Value::Number { value, .. } => numbers.push(format!("{value:?}")),
            Value::Bool(b) => bools.push(b.to_string()),
        }
    }
    let lists: Vec<String> = [
        ("meta_get", strings),
        ("meta_num", numbers),
        ("meta_bool", bools),
    ]
    .into_iter()
    .filter(|(_, list)| !list.is_empty())
    .map(|(function, list)| format!("{} IN ({})", meta_call(function, path), list.join(", ")))
    .collect();
    format!("({})", lists.join(" OR "))
}

fn condition(filter: &Filter) -> String {
    match filter {
        Filter::And(all) => chain(all, " AND "),
        Filter::Or(any) => chain(any, " OR "),
        Filter::Not(a) => format!("(NOT {})", condition(a)),
        Filter::Compare { field, op, value } => match field {
            Field::Id => format!("(id {} {})", op.sql(), integer(value)),
            Field::Tag => format!("(tag {} {})", op.sql(), integer(value)),
            Field::Meta(path) => format!("({})", meta_compare(path, *op, value)),
        },
        Filter::In {
            field,
            values,
            negated,
        } => {
            let not = if *negated { "NOT " } else { "" };
            match field {
                Field::Id | Field::Tag => {
                    let column = if *field == Field::Id { "id" } else { "tag" };
                    let list: Vec<String> = values.iter().map(integer).collect();
                    format!("({column} {not}IN ({}))", list.join(", "))
                }
                Field::Meta(path) => format!("({not}{})", meta_in(path, values)),
            }
        }
    }
}
