//! The query DSL: nearest-neighbour queries in one line, for REST and
//! Python.
//!
//! ```text
//! SELECT id, tag, meta.lang
//! FROM docs NEAREST $q K 10
//! WHERE tag IN (3, 7) AND meta.lang = 'en' AND NOT id = 12
//! EF 64
//! ```
//!
//! [`parse`] turns text into an [`ast::Query`] (pest grammar in
//! `grammar.pest`; errors carry the line and column); [`lower::to_sql`]
//! turns that into SQL planned by the same DataFusion session as every
//! SQL statement, so the KNN rewrite ([`crate::knn`]) answers it; [`run`]
//! does both and executes. `docs/dsl.md` is the user's reference.

pub mod ast;
pub mod lower;

use std::collections::BTreeMap;

use pest::Parser as _;
use pest::error::{ErrorVariant, LineColLocation};
use valori_core::distance::Metric;
use valori_core::event::CollectionName;
use valori_core::q16::QuantizeErrorKind;

pub use ast::Query;
pub use lower::{Lowered, to_sql};

use crate::settings::SearchSettings;
use crate::{QueryEngine, QueryError, QueryOutput, SQL_BYTES_MAX};

/// Largest `K` a DSL query may ask for: the search operation's limit
/// (`valori_core::limits::SEARCH_K_MAX`), so that a search with a filter,
/// which runs as a DSL query, and one without have the same limit.
pub const K_MAX: u64 = valori_core::limits::SEARCH_K_MAX as u64;

/// Largest `EF` a DSL query may ask for
/// (`valori_core::limits::SEARCH_EF_MAX`).
pub const EF_MAX: u64 = valori_core::limits::SEARCH_EF_MAX as u64;

#[derive(pest_derive::Parser)]
#[grammar = "dsl/grammar.pest"]
struct DslParser;

/// A `$name` vector that cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    #[error("parameter ${name} was not supplied")]
    Missing { name: String },
    #[error("parameter ${name} is an empty vector")]
    Empty { name: String },
    #[error("parameter ${name}, component {component} ({value}): {error}")]
    Component {
        name: String,
        /// 0-based index within the vector.
        component: u32,
        value: f32,
        error: QuantizeErrorKind,
    },
}

/// Why a DSL query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DslError {
    /// The text is not a DSL query; `line` and `column` are 1-based.
    #[error("line {line}, column {column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    /// The query parsed, but running it failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Param(#[from] ParamError),
}

impl DslError {
    /// Whether the client is at fault (and may fix the query).
    pub fn is_user_error(&self) -> bool {
        match self {
            DslError::Parse { .. } | DslError::Param(_) => true,
            DslError::Query(e) => e.is_user_error(),
        }
    }
}

/// What the parser expected, in words.
fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of input",
        Rule::query => "SELECT or FROM",
        Rule::select_clause | Rule::kw_select => "SELECT",
        Rule::from_clause | Rule::kw_from => "FROM",
        Rule::collection => "a collection name ([a-z][a-z0-9_]*)",
        Rule::nearest_clause | Rule::kw_nearest => "NEAREST",
        Rule::vector_source | Rule::vector | Rule::param => {
            "a vector such as [0.1, 0.2] or a $parameter"
        }
        Rule::modifier => "K, WHERE, EF, EXACT",
        Rule::k_clause | Rule::kw_k => "K",
        Rule::ef_clause | Rule::kw_ef => "EF",
        Rule::exact_clause | Rule::kw_exact => "EXACT",
        Rule::where_clause | Rule::kw_where => "WHERE",
        Rule::condition
        | Rule::disjunction
        | Rule::conjunction
        | Rule::negation
        | Rule::atom
        | Rule::predicate => "a condition",
        Rule::field | Rule::kw_id | Rule::kw_tag => "id, tag or meta.<key>",
        Rule::meta_path | Rule::kw_meta => "meta.<key>",
        Rule::path_key => "a metadata key",
        Rule::ident_char => "a letter, digit or _",
        Rule::open => "(",
        Rule::close => ")",
        Rule::comma => ",",
        Rule::comparison | Rule::cmp_op => "a comparison (=, !=, <, <=, >, >=)",
        Rule::in_list | Rule::kw_in | Rule::not_in => "IN",
        Rule::kw_not => "NOT",
        Rule::kw_and => "AND",
        Rule::kw_or => "OR",
        Rule::column | Rule::column_name => {
            "a column (id, tag, metadata, distance, vec, meta.<key>)"
        }
        Rule::kw_metadata | Rule::kw_distance | Rule::kw_vec => "a column",
        Rule::value | Rule::string | Rule::string_inner => {
            "a value (string, number, true or false)"
        }
        Rule::boolean | Rule::kw_true | Rule::kw_false => "true or false",
        Rule::number => "a number",
        Rule::integer => "an integer",
        Rule::WHITESPACE | Rule::COMMENT => "whitespace",
    }
}

fn parse_error(e: &pest::error::Error<Rule>) -> DslError {
    let (line, column) = match e.line_col {
        LineColLocation::Pos(p) | LineColLocation::Span(p, _) => p,
    };
    let message = match &e.variant {
        ErrorVariant::ParsingError {
            positives,
            negatives,
        } => {
            // End of input reads best last.
            let mut rules = positives.clone();
            rules.sort_by_key(|r| *r == Rule::EOI);
            let words: Vec<&str> = rules.iter().map(|r| describe(*r)).collect();
            let mut unique: Vec<&str> = Vec::new();
            for w in words {
                if !unique.contains(&w) {
                    unique.push(w);
                }
            }
            match unique.as_slice() {
                [] if negatives.is_empty() => "unexpected input".to_owned(),
                [] => {
                    let not: Vec<&str> = negatives.iter().map(|r| describe(*r)).collect();
                    format!("unexpected {}", not.join(" or "))
                }
                [one] => format!("expected {one}"),
                [init @ .., last] => format!("expected {} or {last}", init.join(", ")),
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    DslError::Parse {
        line,
        column,
        message,
    }
}

/// Parses `text` into a query (no engine needed).
pub fn parse(text: &str) -> Result<Query, DslError> {
    if text.len() > SQL_BYTES_MAX {
        return Err(QueryError::TooLong {
            bytes: text.len(),
            max: SQL_BYTES_MAX,
        }
        .into());
    }
    // The grammar recurses on parentheses; their depth, and the length of
    // every chain, are bounded before pest sees the text.
    crate::sql_text::check_expression_bounds(text).map_err(QueryError::from)?;
    let mut pairs = DslParser::parse(Rule::query, text).map_err(|e| parse_error(&e))?;
    let query = pairs.next().ok_or(DslError::Parse {
        line: 1,
        column: 1,
        message: "expected a query".to_owned(),
    })?;
    ast::build(query)
}

/// Parses, lowers and runs `text` with the default search settings.
pub async fn run(
    query: &QueryEngine,
    text: &str,
    params: &BTreeMap<String, Vec<f32>>,
) -> Result<QueryOutput, DslError> {
    run_with(query, text, params, &SearchSettings::default()).await
}

/// [`run`] over a session's search settings; the query's own `EF` and
/// `EXACT` override them.
pub async fn run_with(
    query: &QueryEngine,
    text: &str,
    params: &BTreeMap<String, Vec<f32>>,
    settings: &SearchSettings,
) -> Result<QueryOutput, DslError> {
    let lowered = lower_for(query, &parse(text)?, params, settings)?;
    // The lowered SQL is as deep as the bounded DSL text plus the few
    // levels lowering adds (a function call, an IN list, a group per
    // predicate), so it is measured with room for them.
    let bounds = crate::sql_text::Bounds::LIMITS;
    let shape = crate::sql_text::shape_within(
        &lowered.sql,
        crate::sql_text::Bounds {
            nesting: bounds.nesting + 4,
            tokens: bounds.tokens * 2,
            term_tokens: bounds.term_tokens * 2,
        },
    )
    .map_err(QueryError::from)?;
    Ok(query
        .plan_and_run(&lowered.sql, Vec::new(), &lowered.settings, shape)
        .await?)
}

/// The SQL and settings `text` runs as on `query`'s engine (what
/// [`run_with`] executes; useful to EXPLAIN a DSL query).
pub fn lower(
    query: &QueryEngine,
    text: &str,
    params: &BTreeMap<String, Vec<f32>>,
    settings: &SearchSettings,
) -> Result<Lowered, DslError> {
    lower_for(query, &parse(text)?, params, settings)
}

fn lower_for(
    query: &QueryEngine,
    ast: &Query,
    params: &BTreeMap<String, Vec<f32>>,
    settings: &SearchSettings,
) -> Result<Lowered, DslError> {
    // The collection's metric picks the distance function. An unknown
    // collection lowers with l2, and planning reports the missing table.
    let metric = match CollectionName::new(&ast.collection) {
        Ok(name) => query
            .engine()
            .read(|state| state.collection(&name).map(|c| c.config().metric))
            .map_err(QueryError::Engine)?,
        Err(_) => None,
    };
    to_sql(ast, metric.unwrap_or(Metric::L2), params, settings)
}

#[cfg(test)]
mod tests;
