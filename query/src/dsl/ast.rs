//! The DSL's syntax tree, and its construction from the parse tree (which
//! also checks what the grammar cannot: each clause at most once, integer
//! ranges, value types that fit their field).

use pest::iterators::Pair;

use super::{DslError, EF_MAX, K_MAX, Rule};

/// One DSL query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The columns to return; `None` for the default (`id, distance, tag,
    /// metadata`).
    pub select: Option<Vec<Column>>,
    pub collection: String,
    pub nearest: VectorSource,
    pub k: u64,
    pub filter: Option<Filter>,
    /// `EF n`: the HNSW result-list size for this query.
    pub ef: Option<u64>,
    /// `EXACT`: an exact scan.
    pub exact: bool,
}

/// The query vector.
#[derive(Clone, Debug, PartialEq)]
pub enum VectorSource {
    /// `[0.1, 0.2]`: components as `f32`, parsed as pgvector parses them.
    Literal(Vec<f32>),
    /// `$name`: supplied with the query (the name without `$`).
    Param(String),
}

/// A column of the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    Id,
    Tag,
    Metadata,
    Distance,
    Vec,
    /// `meta.a.b`: the value at that path in the metadata, as text.
    Meta(Vec<String>),
}

/// A condition on records.
#[derive(Clone, Debug, PartialEq)]
///
/// `AND` and `OR` hold their whole chain (`a OR b OR c` is one `Or` of
/// three), so the tree is only as deep as the query's parentheses, which
/// [`crate::sql_text::check_expression_bounds`] bounds before parsing.
pub enum Filter {
    /// All of at least two conditions.
    And(Vec<Filter>),
    /// Any of at least two conditions.
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Compare {
        field: Field,
        op: CompareOp,
        value: Value,
    },
    In {
        field: Field,
        values: Vec<Value>,
        negated: bool,
    },
}

/// What a condition tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Id,
    Tag,
    /// `meta.a.b`.
    Meta(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CompareOp {
    pub fn sql(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::NotEq => "<>",
            CompareOp::Lt => "<",
            CompareOp::LtEq => "<=",
            CompareOp::Gt => ">",
            CompareOp::GtEq => ">=",
        }
    }
}

/// A literal in a condition. `id` and `tag` take unsigned integers only;
/// `meta.…` takes any.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(String),
    /// A number; `integer` is set when it is written as a non-negative
    /// integer that a `u64` holds.
    Number {
        value: f64,
        integer: Option<u64>,
    },
    Bool(bool),
}

/// `line 1, column 17: message` at `pair`'s start.
fn error_at(pair: &Pair<'_, Rule>, message: impl Into<String>) -> DslError {
    let (line, column) = pair.as_span().start_pos().line_col();
    DslError::Parse {
        line,
        column,
        message: message.into(),
    }
}

/// The first child of `pair` (the grammar guarantees it exists for the
/// rules this is called on; a missing one is reported as a parse error
/// rather than a panic).
fn first<'a>(pair: &Pair<'a, Rule>) -> Result<Pair<'a, Rule>, DslError> {
    pair.clone()
        .into_inner()
        .next()
        .ok_or_else(|| error_at(pair, "incomplete input"))
}

pub(super) fn build(query: Pair<'_, Rule>) -> Result<Query, DslError> {
    let (end_line, end_column) = query.as_span().end_pos().line_col();
    let mut select = None;
    let mut collection = None;
    let mut nearest = None;
    let mut k = None;
    let mut filter = None;
    let mut ef = None;
    let mut exact = false;
    let mut seen_exact = false;
    for pair in query.into_inner() {
        match pair.as_rule() {
            Rule::select_clause => {
                let columns = pair
                    .into_inner()
                    .filter(|p| p.as_rule() == Rule::column)
                    .map(|p| column(&p))
                    .collect::<Result<Vec<Column>, DslError>>()?;
                select = Some(columns);
            }
            Rule::from_clause => {
                let name = pair
                    .into_inner()
                    .find(|p| p.as_rule() == Rule::collection)
                    .map(|p| p.as_str().to_owned());
                collection = name;
            }
            Rule::nearest_clause => {
                let source = pair
                    .clone()
                    .into_inner()
                    .find(|p| p.as_rule() == Rule::vector_source)
                    .ok_or_else(|| error_at(&pair, "expected a vector or a $parameter"))?;
                nearest = Some(vector_source(&source)?);
            }
            Rule::modifier => {
                let clause = first(&pair)?;
                let once = |seen: bool, name: &str| -> Result<(), DslError> {
                    if seen {
                        Err(error_at(&clause, format!("{name} given twice")))
                    } else {
                        Ok(())
                    }
                };
                match clause.as_rule() {
                    Rule::k_clause => {
                        once(k.is_some(), "K")?;
                        let n = integer_of(&clause)?;
                        if n == 0 || n > K_MAX {
                            return Err(error_at(
                                &clause,
                                format!("K must be between 1 and {K_MAX}"),
                            ));
                        }
                        k = Some(n);
                    }
                    Rule::ef_clause => {
                        once(ef.is_some(), "EF")?;
                        let n = integer_of(&clause)?;
                        if n == 0 || n > EF_MAX {
                            return Err(error_at(
                                &clause,
                                format!("EF must be between 1 and {EF_MAX}"),
                            ));
                        }
                        ef = Some(n);
                    }
                    Rule::exact_clause => {
                        once(seen_exact, "EXACT")?;
                        seen_exact = true;
                        exact = true;
                    }
                    Rule::where_clause => {
                        once(filter.is_some(), "WHERE")?;
                        let cond = clause
                            .clone()
                            .into_inner()
                            .find(|p| p.as_rule() == Rule::condition)
                            .ok_or_else(|| error_at(&clause, "expected a condition"))?;
                        filter = Some(condition(&cond)?);
                    }
                    _ => return Err(error_at(&clause, "unexpected clause")),
                }
            }
            _ => {}
        }
    }
    // The grammar requires FROM and NEAREST; K is a clause like the
    // others, so its absence shows at the end.
    let missing = |what: &str| DslError::Parse {
        line: end_line,
        column: end_column,
        message: format!("expected {what}"),
    };
    Ok(Query {
        select,
        collection: collection.ok_or_else(|| missing("FROM <collection>"))?,
        nearest: nearest.ok_or_else(|| missing("NEAREST <vector>"))?,
        k: k.ok_or_else(|| missing("K <number of rows>"))?,
        filter,
        ef,
        exact,
    })
}

fn integer_of(clause: &Pair<'_, Rule>) -> Result<u64, DslError> {
    let n = clause
        .clone()
        .into_inner()
        .find(|p| p.as_rule() == Rule::integer)
        .ok_or_else(|| error_at(clause, "expected an integer"))?;
    n.as_str()
        .parse::<u64>()
        .map_err(|_| error_at(&n, "integer out of range"))
}

fn column(pair: &Pair<'_, Rule>) -> Result<Column, DslError> {
    let inner = first(pair)?;
    Ok(match inner.as_rule() {
        Rule::meta_path => Column::Meta(meta_keys(&inner)),
        Rule::column_name => match first(&inner)?.as_rule() {
            Rule::kw_id => Column::Id,
            Rule::kw_tag => Column::Tag,
            Rule::kw_metadata => Column::Metadata,
            Rule::kw_distance => Column::Distance,
            Rule::kw_vec => Column::Vec,
            _ => return Err(error_at(&inner, "unknown column")),
        },
        _ => return Err(error_at(&inner, "unknown column")),
    })
}

fn meta_keys(pair: &Pair<'_, Rule>) -> Vec<String> {
    pair.clone()
        .into_inner()
        .filter(|p| p.as_rule() == Rule::path_key)
        .map(|p| p.as_str().to_owned())
        .collect()
}

fn vector_source(pair: &Pair<'_, Rule>) -> Result<VectorSource, DslError> {
    let inner = first(pair)?;
    match inner.as_rule() {
        Rule::param => Ok(VectorSource::Param(
            inner.as_str().trim_start_matches('$').to_owned(),
        )),
        Rule::vector => inner
            .into_inner()
            .filter(|p| p.as_rule() == Rule::number)
            .map(|p| {
                p.as_str()
                    .parse::<f32>()
                    .map_err(|_| error_at(&p, "not a number"))
            })
            .collect::<Result<Vec<f32>, DslError>>()
            .map(VectorSource::Literal),
        _ => Err(error_at(&inner, "expected a vector or a $parameter")),
    }
}

fn condition(pair: &Pair<'_, Rule>) -> Result<Filter, DslError> {
    match pair.as_rule() {
        Rule::condition => condition(&first(pair)?),
        Rule::atom => {
            let inner = pair
                .clone()
                .into_inner()
                .find(|p| matches!(p.as_rule(), Rule::condition | Rule::predicate))
                .ok_or_else(|| error_at(pair, "expected a condition"))?;
            condition(&inner)
        }
        Rule::disjunction | Rule::conjunction => {
            let mut operands = pair
                .clone()
                .into_inner()
                .filter(|p| matches!(p.as_rule(), Rule::conjunction | Rule::negation))
                .map(|p| condition(&p))
                .collect::<Result<Vec<Filter>, DslError>>()?;
            match operands.len() {
                0 => Err(error_at(pair, "expected a condition")),
                1 => Ok(operands.swap_remove(0)),
                _ if pair.as_rule() == Rule::disjunction => Ok(Filter::Or(operands)),
                _ => Ok(Filter::And(operands)),
            }
        }
        Rule::negation => {
            let inner = pair
                .clone()
                .into_inner()
                .find(|p| p.as_rule() == Rule::atom)
                .ok_or_else(|| error_at(pair, "expected a condition"))?;
            let nots = pair
                .clone()
                .into_inner()
                .filter(|p| p.as_rule() == Rule::kw_not)
                .count();
            let filter = condition(&inner)?;
            // NOT NOT c is c in three-valued logic too (NOT NULL is NULL).
            Ok(if nots % 2 == 1 {
                Filter::Not(Box::new(filter))
            } else {
                filter
            })
        }
        Rule::predicate => predicate(pair),
        _ => Err(error_at(pair, "expected a condition")),
    }
}

fn predicate(pair: &Pair<'_, Rule>) -> Result<Filter, DslError> {
    let mut parts = pair.clone().into_inner();
    let field_pair = parts
        .next()
        .ok_or_else(|| error_at(pair, "expected a field"))?;
    let field = match first(&field_pair)?.as_rule() {
        Rule::kw_id => Field::Id,
        Rule::kw_tag => Field::Tag,
        Rule::meta_path => Field::Meta(meta_keys(&first(&field_pair)?)),
        _ => return Err(error_at(&field_pair, "expected id, tag or meta.<key>")),
    };
    let test = parts
        .next()
        .ok_or_else(|| error_at(pair, "expected a comparison or IN"))?;
    match test.as_rule() {
        Rule::comparison => {
            let mut inner = test.clone().into_inner();
            let op_pair = inner
                .next()
                .ok_or_else(|| error_at(&test, "expected a comparison"))?;
            let op = match op_pair.as_str() {
                "=" => CompareOp::Eq,
                "!=" | "<>" => CompareOp::NotEq,
                "<" => CompareOp::Lt,
                "<=" => CompareOp::LtEq,
                ">" => CompareOp::Gt,
                ">=" => CompareOp::GtEq,
                _ => return Err(error_at(&op_pair, "unknown comparison")),
            };
            let value_pair = inner
                .next()
                .ok_or_else(|| error_at(&test, "expected a value"))?;
            let value = value(&value_pair, &field)?;
            Ok(Filter::Compare { field, op, value })
        }
        Rule::in_list => {
            let negated = test
                .clone()
                .into_inner()
                .any(|p| p.as_rule() == Rule::not_in);
            let values = test
                .clone()
                .into_inner()
                .filter(|p| p.as_rule() == Rule::value)
                .map(|p| value(&p, &field))
                .collect::<Result<Vec<Value>, DslError>>()?;
            Ok(Filter::In {
                field,
                values,
                negated,
            })
        }
        _ => Err(error_at(&test, "expected a comparison or IN")),
    }
}

/// A literal, checked against the field it is compared with.
fn value(pair: &Pair<'_, Rule>, field: &Field) -> Result<Value, DslError> {
    let inner = first(pair)?;
    let value = match inner.as_rule() {
        Rule::string => {
            let text = first(&inner)?.as_str().replace("''", "'");
            Value::String(text)
        }
        Rule::number => {
            let text = inner.as_str();
            let value: f64 = text.parse().map_err(|_| error_at(&inner, "not a number"))?;
            if !value.is_finite() {
                return Err(error_at(&inner, "number out of range"));
            }
            Value::Number {
                value,
                integer: text.parse::<u64>().ok(),
            }
        }
        Rule::boolean => Value::Bool(first(&inner)?.as_rule() == Rule::kw_true),
        _ => return Err(error_at(&inner, "expected a string, a number or a boolean")),
    };
    if matches!(field, Field::Id | Field::Tag)
        && !matches!(
            value,
            Value::Number {
                integer: Some(_),
                ..
            }
        )
    {
        let name = if *field == Field::Id { "id" } else { "tag" };
        return Err(error_at(
            &inner,
            format!("{name} is compared with unsigned integers only"),
        ));
    }
    Ok(value)
}
