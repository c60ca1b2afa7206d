//! The statement layer: every front end's SQL goes through here.
//!
//! The Postgres protocol, REST `/v1/sql`, Python `sql()` (and the `.slt`
//! runner) hand a statement's text to [`QueryEngine::prepare`] and run
//! the [`Prepared`] statement with [`QueryEngine::run`], passing their
//! client's [`Session`] and its typed parameter values. So the same text
//! gives the same rows, the same errors and the same state through every
//! front end; a front end keeps only its protocol (messages, encodings,
//! authentication).
//!
//! # Prepare: parse once, plan once
//!
//! A statement is measured ([`sql_text::check_expression_bounds`]),
//! tokenized and parsed once with sqlparser's Postgres dialect; pgvector's
//! operators are rewritten on the tokens and the tree
//! ([`crate::pgvector`]). The tree is then one of:
//!
//! - a session command ([`Command`]): transaction control (answered so
//!   that drivers work; every statement is its own durable transaction),
//!   `SET`, `RESET`, `SHOW`, `CREATE EXTENSION vector`;
//! - a write ([`crate::write`]): DDL, DML and `COPY … FROM STDIN`, one
//!   event each;
//! - a query: planned by DataFusion into a logical plan with typed
//!   placeholders. When every placeholder is one the nearest-neighbour
//!   search binds at execution (its query vector, `tag = $n`) — or there
//!   is none — the physical plan is made here, once, and each execution
//!   runs a fresh copy of it ([`reset_plan_states`]) with the values in
//!   the task's configuration ([`crate::knn::BoundParams`]): no parsing,
//!   planning or optimizing per execution. Other placeholders are bound
//!   into the logical plan, which is then optimized and planned for that
//!   execution.
//!
//! Parameters are values ([`ScalarValue`]s), never text spliced into the
//! statement. [`QueryEngine::prepare_cached`] keeps prepared statements
//! by their text (at most [`limits::PLAN_CACHE_ENTRIES_MAX`], the oldest first out), for clients
//! that parse the same statement again for every execution.
//!
//! Statements deeper than an ordinary stack holds
//! ([`sql_text::Shape::is_deep`]) keep no plan: each execution parses and
//! plans them again on a thread of their own ([`on_deep_stack`]), where
//! their trees are also dropped.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, Volatility};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Tokenizer;
use futures::StreamExt;
use valori_core::limits;
use valori_core::table::{ScalarType, TableSchema};

use crate::advisory::AdvisoryScope;
use crate::functions::DistanceFunction;
use crate::knn::{BoundParams, ValoriKnnExec};
use crate::provider::CollectionScanExec;
use crate::rows::Rows;
use crate::session::Session;
use crate::settings::{ReadConsistency, SessionIdentity, ValoriOptions};
use crate::transaction::TransactionError;
use crate::write::{self, Column, CopyFormat, WriteOutcome, WriteStatement};
use crate::{QueryEngine, QueryError, QueryOutput, SQL_BYTES_MAX, on_deep_stack, sql_text};

/// A session command: answered by the statement layer from the session,
/// without touching the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Begin,
    Commit,
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// Accepted and ignored, answered with this command tag.
    Noop(&'static str),
    /// `DEALLOCATE name` (`None`: `DEALLOCATE ALL`): the Postgres front
    /// end removes the connection's named statements; elsewhere a session
    /// has none.
    Deallocate(Option<String>),
    /// `PREPARE name [(types)] AS statement`: the statement, prepared,
    /// kept by the session under `name` (the declared types are not
    /// needed: each placeholder's type comes from where the statement
    /// uses it).
    Prepare {
        name: String,
        sql: String,
    },
    /// `EXECUTE name [(values)]`: the session's statement `name` run with
    /// these values for `$1`, `$2`, … (constants, taken as a client's
    /// text-form parameters are).
    Execute {
        name: String,
        params: Vec<ScalarValue>,
    },
    /// `DISCARD ALL`: the session's settings back to their defaults, its
    /// session-level advisory locks released (and, over Postgres, its
    /// named statements removed); refused inside a transaction block.
    Discard,
    Set {
        name: String,
        value: String,
    },
    Reset(String),
    Show(String),
}

/// A placeholder's type, as the statement uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// A vector: pgvector's text form `'[1,2,3]'` or a list of numbers.
    Vector,
    Typed(DataType),
    /// A value for a declared column: the column's field says its type
    /// (its Postgres type in the field's metadata); the value is passed
    /// as given and converted by the write.
    Column(datafusion::arrow::datatypes::FieldRef),
    /// Nothing in the statement says; the value is taken as given.
    Unknown,
}

/// What a prepared statement does.
#[derive(Debug)]
pub enum Kind {
    Empty,
    Command(Command),
    Write(WriteStatement),
    Query(QueryPlan),
    /// `COPY <table> TO STDOUT` or `COPY (<query>) TO STDOUT`: the query
    /// whose rows are copied out (a table's is `SELECT` of its columns),
    /// and their layout.
    CopyOut {
        query: Box<Prepared>,
        format: CopyFormat,
    },
}

/// A query's plans.
#[derive(Debug)]
pub enum QueryPlan {
    /// Planned at prepare time.
    Planned {
        /// With typed placeholders, not optimized.
        logical: Box<LogicalPlan>,
        /// When the plan needs no per-execution planning (see the
        /// [module documentation](self)).
        physical: Option<Arc<dyn ExecutionPlan>>,
        /// The tables it scans, with the creation of each it was planned
        /// for: a kept plan is valid while they are the same.
        tables: Vec<(valori_core::event::CollectionName, u64)>,
    },
    /// Too deep to keep: planned at each execution on a deep stack.
    Deep,
}

/// A parsed and planned statement, ready to run any number of times.
#[derive(Debug)]
pub struct Prepared {
    sql: String,
    /// The engine it was planned on ([`QueryEngine::engine_id`]): a
    /// statement planned inside a transaction's copy of the state is
    /// planned again to run anywhere else.
    planned_on: usize,
    shape: sql_text::Shape,
    kind: Kind,
    params: Vec<ParamType>,
    schema: SchemaRef,
}

impl Prepared {
    pub fn sql(&self) -> &str {
        &self.sql
    }

    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The placeholders' types, `$1` first.
    pub fn params(&self) -> &[ParamType] {
        &self.params
    }

    /// The result columns (none for statements that return no rows).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Whether running it changes the state.
    pub fn is_write(&self) -> bool {
        matches!(self.kind, Kind::Write(_))
    }

    /// Whether the statement ends a transaction block or its failure
    /// (`COMMIT`, `ROLLBACK`, `ROLLBACK TO SAVEPOINT`): the statements a
    /// client may send after an error in the block.
    pub fn ends_transaction(&self) -> bool {
        matches!(
            self.kind,
            Kind::Command(Command::Commit | Command::Rollback | Command::RollbackTo(_))
        )
    }

    /// The engine it was planned on ([`QueryEngine::engine_id`]).
    pub(crate) fn planned_on(&self) -> usize {
        self.planned_on
    }

    /// Whether a run returns rows (a query or `SHOW`).
    pub fn returns_rows(&self) -> bool {
        matches!(self.kind, Kind::Query(_) | Kind::Command(Command::Show(_)))
    }

    /// Whether the physical plan is kept and reused by every execution.
    pub fn is_planned_once(&self) -> bool {
        matches!(
            self.kind,
            Kind::Query(QueryPlan::Planned {
                physical: Some(_),
                ..
            })
        )
    }
}

/// Whether a statement may change the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// What running a statement did.
#[derive(Debug)]
pub enum Outcome {
    Empty,
    /// A query's rows, produced as they are read ([`Rows`]).
    Rows(Rows),
    /// A command or a write: its command tag (`INSERT`, `SET`, …), the
    /// rows it wrote, and messages for the client that are not errors.
    Done {
        tag: String,
        rows: Option<u64>,
        notices: Vec<String>,
    },
    Begin,
    Commit,
    Rollback,
    /// A write's `RETURNING` rows and its command tag without the row
    /// count (`INSERT 0`): the count is the number of rows.
    Returning {
        tag: String,
        rows: Rows,
    },
    /// `COPY … FROM STDIN`: the front end collects the data and passes it
    /// to [`QueryEngine::copy_in`].
    CopyIn(CopyIn),
    /// `COPY … TO STDOUT`: the rows, produced as they are read, for the
    /// front end to write in the format asked for.
    CopyOut(CopyOut),
}

impl Outcome {
    /// The outcome as rows, for front ends that answer every statement
    /// with a table (REST, Python): a query's rows; for a command or a
    /// write one row of `command` (its tag) and `rows` (rows written, or
    /// NULL); no columns for an empty statement.
    pub async fn into_output(self) -> Result<QueryOutput, QueryError> {
        let (tag, rows) = match self {
            Outcome::Rows(rows)
            | Outcome::Returning { rows, .. }
            | Outcome::CopyOut(CopyOut { rows, .. }) => return rows.collect().await,
            Outcome::Empty => {
                return Ok(QueryOutput {
                    schema: Arc::new(Schema::empty()),
                    batches: Vec::new(),
                });
            }
            Outcome::CopyIn(_) => {
                return Err(unsupported(
                    "COPY ... FROM STDIN needs the Postgres protocol; insert with INSERT or the \
                     records API",
                ));
            }
            Outcome::Done { tag, rows, .. } => (tag, rows),
            Outcome::Begin => ("BEGIN".to_owned(), None),
            Outcome::Commit => ("COMMIT".to_owned(), None),
            Outcome::Rollback => ("ROLLBACK".to_owned(), None),
        };
        let schema = Arc::new(Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("command", DataType::Utf8, false),
            datafusion::arrow::datatypes::Field::new("rows", DataType::UInt64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(datafusion::arrow::array::StringArray::from(vec![tag])),
                Arc::new(datafusion::arrow::array::UInt64Array::from(vec![rows])),
            ],
        )
        .map_err(|e| internal(e.to_string()))?;
        Ok(QueryOutput {
            schema,
            batches: vec![batch],
        })
    }
}

/// A parameter given as JSON (REST's `params`, Python's `sql(…,
/// params)`) as a typed value: numbers, strings, booleans and `null` as
/// themselves, an array of numbers as a vector, an object as its JSON
/// text. The statement then converts it to the type it needs.
pub fn json_param(n: usize, value: &serde_json::Value) -> Result<ScalarValue, ParamError> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(x) => match (x.as_i64(), x.as_u64(), x.as_f64()) {
            (Some(i), _, _) => ScalarValue::Int64(Some(i)),
            (None, Some(u), _) => ScalarValue::UInt64(Some(u)),
            (_, _, Some(f)) => ScalarValue::Float64(Some(f)),
            _ => {
                return Err(ParamError::Vector {
                    n,
                    reason: format!("{x} is not a number"),
                });
            }
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Array(items) => {
            let floats = items
                .iter()
                .map(|v| v.as_f64().map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| ParamError::Vector {
                    n,
                    reason: "an array parameter is a vector of numbers".to_owned(),
                })?;
            ScalarValue::Utf8(Some(vector_text(&floats)))
        }
        Value::Object(_) => ScalarValue::Utf8(Some(value.to_string())),
    })
}

/// A `COPY … FROM STDIN` waiting for its data.
#[derive(Clone, Debug)]
pub struct CopyIn {
    pub table: String,
    /// The fixed columns the data fills (a table with the fixed columns).
    pub columns: Vec<Column>,
    /// The declared columns the data fills, in order (a table with
    /// declared columns).
    pub declared: Option<Vec<String>>,
    pub format: CopyFormat,
    /// The columns the data fills, in order, with their types (a binary
    /// stream's fields are decoded as these).
    pub fields: Vec<datafusion::arrow::datatypes::FieldRef>,
}

impl CopyIn {
    /// How many fields each line of the data has.
    pub fn width(&self) -> usize {
        self.declared.as_ref().map_or(self.columns.len(), Vec::len)
    }
}

/// The rows of a `COPY … TO STDOUT`, and the layout to write them in.
#[derive(Debug)]
pub struct CopyOut {
    pub rows: Rows,
    pub format: CopyFormat,
}

/// Why a parameter value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    #[error("the statement has {expected} parameters; {given} were bound")]
    Count { expected: usize, given: usize },
    #[error("parameter ${n}: {value} cannot be {to}: {reason}")]
    Type {
        n: usize,
        value: String,
        to: DataType,
        reason: String,
    },
    #[error("parameter ${n}: {reason}")]
    Vector { n: usize, reason: String },
}

pub(crate) fn internal(message: impl Into<String>) -> QueryError {
    QueryError::Internal(DataFusionError::Internal(message.into()))
}

fn syntax(e: impl std::fmt::Display) -> QueryError {
    QueryError::Invalid(DataFusionError::SQL(
        Box::new(datafusion::sql::sqlparser::parser::ParserError::ParserError(e.to_string())),
        None,
    ))
}

/// Whether a query's plan was made before it ran (so it can be made
/// again for a changed table), rather than on a deep stack at each run.
fn plan_kept(plan: &QueryPlan) -> bool {
    matches!(plan, QueryPlan::Planned { .. })
}

fn unsupported(message: impl Into<String>) -> QueryError {
    QueryError::Invalid(DataFusionError::NotImplemented(message.into()))
}

/// Parameters that only a cast types, as Postgres types them from the
/// cast: `LIMIT $2::INTEGER` is an `int4` parameter, `$1::oid[]`
/// (asyncpg's type lookup binds its OIDs so) an `oid[]` one; clients that
/// encode by the described type (asyncpg) then send an integer, not text.
/// Casts to numbers, booleans and lists of catalog ids are taken; other
/// lists are not (their parameters are read as vectors), nor text.
fn cast_placeholder_types(plan: &LogicalPlan) -> Result<HashMap<String, DataType>, QueryError> {
    let mut out = HashMap::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Cast(datafusion::logical_expr::Cast { expr, field, .. }) = e
                    && let Expr::Placeholder(placeholder) = expr.as_ref()
                    && typed_by_cast(field.data_type())
                {
                    out.entry(placeholder.id.clone())
                        .or_insert_with(|| field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(out)
}

fn typed_by_cast(data_type: &DataType) -> bool {
    let scalar = |t: &DataType| t.is_integer() || t.is_floating() || *t == DataType::Boolean;
    match data_type {
        // `$1::text[]`, `$1::int[]`: an array's text (`{a,b}`) is read as
        // the array, as Postgres reads an untyped parameter cast so.
        DataType::List(item) => scalar(item.data_type()) || *item.data_type() == DataType::Utf8,
        other => scalar(other),
    }
}

/// The plan with untyped placeholders typed by their place, as Postgres
/// infers them: the array of `x = ANY($n)` or `x <> ALL($n)`
/// (DataFusion's `array_has($n, x)`) as an array of `x`'s type, so that a
/// list or an array's text (`{a,b}`) sent for it is bound as that array;
/// `LIMIT $n` and `OFFSET $n` as `bigint`.
fn type_placeholders_by_place(plan: LogicalPlan) -> Result<LogicalPlan, DataFusionError> {
    plan.transform_up_with_subqueries(|node| {
        let schema = match node.inputs().as_slice() {
            [input] => Arc::clone(input.schema()),
            _ => return Ok(Transformed::no(node)),
        };
        let limit = matches!(node, LogicalPlan::Limit(_));
        node.map_expressions(|expr| {
            expr.transform(|e| match e {
                Expr::Placeholder(mut p) if limit && p.field.is_none() => {
                    p.field = Some(Arc::new(datafusion::arrow::datatypes::Field::new(
                        &p.id,
                        DataType::Int64,
                        true,
                    )));
                    Ok(Transformed::yes(Expr::Placeholder(p)))
                }
                Expr::ScalarFunction(mut f)
                    if f.name() == "array_has"
                        && matches!(f.args.as_slice(),
                            [Expr::Placeholder(p), _] if p.field.is_none()) =>
                {
                    let Ok(item) = f.args[1].get_type(&schema) else {
                        return Ok(Transformed::no(Expr::ScalarFunction(f)));
                    };
                    if let Expr::Placeholder(p) = &mut f.args[0] {
                        p.field = Some(Arc::new(datafusion::arrow::datatypes::Field::new(
                            &p.id,
                            DataType::List(Arc::new(
                                datafusion::arrow::datatypes::Field::new_list_field(item, true),
                            )),
                            true,
                        )));
                    }
                    Ok(Transformed::yes(Expr::ScalarFunction(f)))
                }
                other => Ok(Transformed::no(other)),
            })
        })
    })
    .map(|t| t.data)
}

/// Parses one statement's text (see the [module documentation](self)):
/// `None` for a text without a statement.
fn parse(sql: &str) -> Result<Option<Statement>, QueryError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(syntax)?;
    let mut statements = Parser::new(&dialect)
        .with_tokens_with_locations(crate::pgvector::spell_vector_operators(logged(tokens)))
        .parse_statements()
        .map_err(syntax)?;
    match statements.len() {
        0 => Ok(None),
        1 => {
            let mut statement = statements.remove(0);
            crate::catalog::rewrite_catalog_syntax(&mut statement).map_err(syntax)?;
            crate::column_names::alias_wildcard_tables(&mut statement);
            crate::casts::rewrite_literal_casts(&mut statement).map_err(QueryError::Cast)?;
            crate::bpchar::rewrite_casts(&mut statement);
            crate::pgvector::rewrite_tree(&mut statement);
            Ok(Some(statement))
        }
        n => Err(syntax(format!(
            "expected one statement, found {n}; send them one at a time"
        ))),
    }
}

/// Whether `sql` is `SET CONSTRAINTS { ALL | name [, …] } { IMMEDIATE |
/// DEFERRED }`, which the SQL parser does not know. Every constraint is
/// checked when its statement writes, as `IMMEDIATE` ones are, so the
/// command changes nothing: `DEFERRED` (Django's `TestCase` sends it
/// after `IMMEDIATE`) does not defer a check.
fn set_constraints(sql: &str) -> bool {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return false;
    };
    let significant: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    let body = match significant.as_slice() {
        [set, constraints, rest @ ..] if word(set, "set") && word(constraints, "constraints") => {
            rest
        }
        _ => return false,
    };
    let body = match body {
        [rest @ .., Token::SemiColon] => rest,
        rest => rest,
    };
    let Some((mode, names)) = body.split_last() else {
        return false;
    };
    if !word(mode, "immediate") && !word(mode, "deferred") {
        return false;
    }
    // `ALL`, or names separated by commas.
    names.len() % 2 == 1
        && names.iter().enumerate().all(|(i, t)| match i % 2 {
            0 => matches!(t, Token::Word(_)),
            _ => matches!(t, Token::Comma),
        })
}

/// The tokens with `UNLOGGED` dropped from a leading `CREATE UNLOGGED
/// TABLE`: every table's writes go through the log (Postgres writes no
/// WAL for such a table and empties it after a crash; here it is as
/// durable as any other).
fn logged(
    mut tokens: Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>,
) -> Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan> {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    let significant: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .take(3)
        .collect();
    if let [create, unlogged, table] = significant[..]
        && word(&tokens[create].token, "create")
        && word(&tokens[unlogged].token, "unlogged")
        && word(&tokens[table].token, "table")
    {
        tokens.remove(unlogged);
    }
    tokens
}

/// The Postgres names of a query's result columns, read from its text as
/// written, before pgvector's operators and the catalog syntax are
/// rewritten ([`crate::column_names`]).
fn written_names(sql: &str) -> Option<Vec<String>> {
    crate::column_names::postgres_names(&written(sql)?)
}

/// The Postgres names of the items of a query's select list, as
/// [`written_names`] reads them, `None` for `*`.
fn written_item_names(sql: &str) -> Option<Vec<Option<String>>> {
    crate::column_names::item_names(&written(sql)?)
}

/// One statement parsed as written (pgvector's operators spelled as
/// operators, nothing else rewritten).
fn written(sql: &str) -> Option<Statement> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .ok()?;
    let mut statements = Parser::new(&dialect)
        .with_tokens_with_locations(crate::pgvector::spell_vector_operators(tokens))
        .parse_statements()
        .ok()?;
    if statements.len() != 1 {
        return None;
    }
    Some(statements.remove(0))
}

/// `plan` with its result columns named as Postgres names them, when
/// `names` gives one name per column and they are distinct (DataFusion
/// requires distinct names; Postgres does not, so a list that repeats a
/// name keeps DataFusion's, and only [`result_schema`] gives the
/// Postgres names).
fn postgres_named(
    plan: LogicalPlan,
    names: Option<Vec<String>>,
) -> Result<LogicalPlan, QueryError> {
    let Some(names) = names else {
        return Ok(plan);
    };
    let fields: Vec<_> = plan
        .schema()
        .iter()
        .map(|(q, f)| (q.cloned(), f.name().clone()))
        .collect();
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    if names.len() != fields.len()
        || distinct.len() != names.len()
        || fields.iter().zip(&names).all(|((_, f), n)| f == n)
    {
        return Ok(plan);
    }
    let exprs: Vec<datafusion::logical_expr::Expr> = fields
        .into_iter()
        .zip(names)
        .map(|((q, f), n)| {
            datafusion::logical_expr::Expr::Column(datafusion::common::Column::new(q, f)).alias(n)
        })
        .collect();
    Ok(LogicalPlan::Projection(
        datafusion::logical_expr::Projection::try_new(exprs, Arc::new(plan))?,
    ))
}

/// A query's result schema with its columns named as Postgres names
/// them (`names`, when there is one per column), repeated names included:
/// what clients are told, and the names of every batch of its rows
/// ([`Rows`] relabels them).
fn result_schema(planned: &Schema, names: Option<Vec<String>>) -> Schema {
    match names {
        Some(names) if names.len() == planned.fields().len() => Schema::new_with_metadata(
            planned
                .fields()
                .iter()
                .zip(names)
                .map(|(f, name)| f.as_ref().clone().with_name(name))
                .collect::<Vec<_>>(),
            planned.metadata().clone(),
        ),
        _ => planned.clone(),
    }
}

/// The text of a `SET` value as Postgres reads it: a string without its
/// quotes, a name or number as written, several values joined by `, `.
fn set_value(values: &[ast::Expr]) -> String {
    values
        .iter()
        .map(|v| match v {
            ast::Expr::Value(value) => match &value.value {
                ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            ast::Expr::Identifier(ident) => ident.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An `EXECUTE` argument: a constant, as the text a client would send
/// for it (the statement layer converts it to the placeholder's type);
/// `NULL` as NULL.
fn execute_argument(expr: &ast::Expr) -> Result<ScalarValue, QueryError> {
    let text = |t: String| Ok(ScalarValue::Utf8(Some(t)));
    match expr {
        ast::Expr::Value(value) => match &value.value {
            ast::Value::Null => Ok(ScalarValue::Utf8(None)),
            ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => {
                text(s.clone())
            }
            ast::Value::Number(n, _) => text(n.clone()),
            ast::Value::Boolean(b) => text(b.to_string()),
            other => Err(unsupported(format!("EXECUTE argument {other}"))),
        },
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => match execute_argument(expr)? {
            ScalarValue::Utf8(Some(n)) if n.starts_with(|c: char| c.is_ascii_digit()) => {
                text(format!("-{n}"))
            }
            _ => Err(unsupported(format!("EXECUTE argument -{expr}"))),
        },
        // `'[1,2,3]'::vector`, `'2024-01-01'::date`: the text, read as
        // the placeholder's type.
        ast::Expr::Cast { expr, .. } => execute_argument(expr),
        ast::Expr::Nested(inner) => execute_argument(inner),
        other => Err(unsupported(format!(
            "EXECUTE argument {other}: arguments are constants"
        ))),
    }
}

fn object_name(name: &ast::ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) if ident.quote_style.is_some() => ident.value.clone(),
            Some(ident) => ident.value.to_ascii_lowercase(),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A savepoint's name, folded to lower case unless quoted.
fn ident_name(ident: &ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// The session command a statement is, if it is one.
fn command(statement: &Statement) -> Result<Option<Command>, QueryError> {
    Ok(Some(match statement {
        Statement::StartTransaction { .. } => Command::Begin,
        Statement::Commit { .. } => Command::Commit,
        Statement::Rollback {
            savepoint: Some(name),
            ..
        } => Command::RollbackTo(ident_name(name)),
        Statement::Rollback { .. } => Command::Rollback,
        Statement::Savepoint { name } => Command::Savepoint(ident_name(name)),
        Statement::ReleaseSavepoint { name } => Command::Release(ident_name(name)),
        Statement::Discard { object_type } => match object_type {
            ast::DiscardObject::ALL => Command::Discard,
            // No plan, sequence value or temporary table is kept per
            // session: nothing to discard.
            ast::DiscardObject::PLANS => Command::Noop("DISCARD PLANS"),
            ast::DiscardObject::SEQUENCES => Command::Noop("DISCARD SEQUENCES"),
            ast::DiscardObject::TEMP => Command::Noop("DISCARD TEMP"),
        },
        Statement::Prepare {
            name, statement, ..
        } => Command::Prepare {
            name: ident_name(name),
            sql: statement.to_string(),
        },
        Statement::Execute {
            name: Some(name),
            parameters,
            immediate: false,
            into,
            using,
            output: false,
            default: false,
            ..
        } if into.is_empty() && using.is_empty() => Command::Execute {
            name: object_name(name),
            params: parameters
                .iter()
                .map(execute_argument)
                .collect::<Result<_, _>>()?,
        },
        Statement::Deallocate { name, .. } => Command::Deallocate(
            (name.quote_style.is_some() || !name.value.eq_ignore_ascii_case("all"))
                .then(|| ident_name(name)),
        ),
        // Cursors cannot be declared: none is open.
        Statement::Close {
            cursor: ast::CloseCursor::All,
        } => Command::Noop("CLOSE CURSOR ALL"),
        Statement::Close {
            cursor: ast::CloseCursor::Specific { name },
        } => {
            return Err(unsupported(format!(
                "cursor \"{}\" does not exist: DECLARE … CURSOR is not supported; read rows with SELECT (large answers are streamed)",
                ident_name(name)
            )));
        }
        Statement::LISTEN { .. } => Command::Noop("LISTEN"),
        Statement::UNLISTEN { .. } => Command::Noop("UNLISTEN"),
        // pgvector's setup step: the vector type is built in.
        Statement::CreateExtension(create) => {
            let name = create.name.value.to_ascii_lowercase();
            if name != "vector" {
                return Err(unsupported(format!(
                    "extension {name} is not available; vector is built in"
                )));
            }
            Command::Noop("CREATE EXTENSION")
        }
        Statement::Set(set) => match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => Command::Set {
                name: object_name(variable),
                value: set_value(values),
            },
            ast::Set::SetTimeZone { value, .. } => Command::Set {
                name: "timezone".to_owned(),
                value: set_value(std::slice::from_ref(value)),
            },
            ast::Set::SetTransaction { .. }
            | ast::Set::SetSessionParam(_)
            | ast::Set::SetNames { .. }
            | ast::Set::SetNamesDefault {}
            | ast::Set::SetRole { .. } => Command::Noop("SET"),
            other => {
                return Err(unsupported(format!(
                    "{other} is not supported; set one parameter at a time"
                )));
            }
        },
        Statement::ShowVariable { variable } => {
            let words: Vec<String> = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect();
            Command::Show(match words.join(" ").as_str() {
                "time zone" => "timezone".to_owned(),
                "transaction isolation level" => "transaction_isolation".to_owned(),
                // `SHOW valori.ef_search`: the parts of a dotted name.
                _ => words.join("."),
            })
        }
        Statement::Reset(reset) => Command::Reset(match &reset.reset {
            ast::Reset::ALL => "all".to_owned(),
            ast::Reset::ConfigurationParameter(name) => object_name(name),
        }),
        _ => return Ok(None),
    }))
}

/// Whether a statement is one [`crate::write`] handles.
fn is_write(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::CreateTable(_)
            | Statement::CreateIndex(_)
            | Statement::CreateView(_)
            | Statement::CreateSchema { .. }
            | Statement::Drop { .. }
            | Statement::Insert(_)
            | Statement::Delete(_)
            | Statement::Update(_)
            | Statement::Copy { .. }
            | Statement::AlterTable(_)
            | Statement::Truncate(_)
    )
}

/// The placeholders that are arguments of a distance function.
fn distance_arguments(plan: &LogicalPlan) -> Result<BTreeSet<String>, DataFusionError> {
    let mut found = BTreeSet::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && DistanceFunction::ALL.iter().any(|d| d.name() == f.name())
                {
                    for arg in &f.args {
                        if let Expr::Placeholder(p) = arg {
                            found.insert(p.id.clone());
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
}

/// The plan with its vector placeholders typed as text (pgvector's text
/// form, which the distance functions read), so that DataFusion's type
/// checks pass before the values are known.
fn type_vector_placeholders(
    plan: LogicalPlan,
    vectors: &BTreeSet<String>,
) -> Result<LogicalPlan, DataFusionError> {
    if vectors.is_empty() {
        return Ok(plan);
    }
    plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|expr| {
            expr.transform(|e| match e {
                Expr::Placeholder(mut p) if p.field.is_none() && vectors.contains(&p.id) => {
                    p.field = Some(Arc::new(datafusion::arrow::datatypes::Field::new(
                        &p.id,
                        DataType::Utf8,
                        true,
                    )));
                    Ok(Transformed::yes(Expr::Placeholder(p)))
                }
                other => Ok(Transformed::no(other)),
            })
        })
    })
    .map(|t| t.data)
}

/// Whether every value of the plan is fixed when it is planned: no
/// function whose value changes between executions (`now()`,
/// `random()`), which planning would fold into a constant.
fn is_immutable(plan: &LogicalPlan) -> bool {
    let mut immutable = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    immutable = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    immutable
}

/// Whether a physical plan may be kept and run again: it reads the state
/// only through scans that take their snapshot at execution.
fn is_reusable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let children = plan.children();
    if children.is_empty() {
        return plan.is::<ValoriKnnExec>()
            || plan.is::<CollectionScanExec>()
            || plan.is::<datafusion::physical_plan::empty::EmptyExec>()
            || plan.is::<datafusion::physical_plan::placeholder_row::PlaceholderRowExec>();
    }
    children.into_iter().all(is_reusable)
}

/// The number of the placeholder `$n`.
fn placeholder_number(id: &str) -> Option<usize> {
    id.strip_prefix('$')?.parse().ok()
}

impl QueryEngine {
    /// The types of an `INSERT`'s placeholders when its table has declared
    /// columns, from the columns they fill: `None` for other statements.
    fn declared_insert_params(
        &self,
        statement: &WriteStatement,
    ) -> Option<Vec<(usize, ParamType)>> {
        let WriteStatement::Insert {
            table, names, rows, ..
        } = statement
        else {
            return None;
        };
        let name = valori_core::event::CollectionName::new(table).ok()?;
        let schema = self
            .engine
            .read(|state| {
                state
                    .collection(&name)
                    .filter(|c| c.table().is_some())
                    .map(crate::provider::collection_schema)
            })
            .ok()??;
        let fields: Vec<datafusion::arrow::datatypes::FieldRef> = match names {
            Some(names) => names
                .iter()
                .map(|n| schema.field_with_name(n).ok().map(|f| Arc::new(f.clone())))
                .collect::<Option<_>>()?,
            None => schema.fields().iter().cloned().collect(),
        };
        let mut out = Vec::new();
        for row in rows {
            for (literal, field) in row.iter().zip(&fields) {
                if let write::Literal::Param(n) = literal {
                    let ty = match field.data_type() {
                        DataType::FixedSizeList(..) => ParamType::Vector,
                        _ => ParamType::Column(Arc::clone(field)),
                    };
                    out.push((*n, ty));
                }
            }
        }
        Some(out)
    }
}

/// The collections a plan scans, each with the creation it was planned
/// for.
fn scanned_tables(
    plan: &LogicalPlan,
) -> Result<Vec<(valori_core::event::CollectionName, u64)>, DataFusionError> {
    let mut tables = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source)
            && let Some(table) = provider
                .as_ref()
                .downcast_ref::<crate::provider::CollectionTable>()
        {
            tables.push((table.name().clone(), table.incarnation()));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(tables)
}

/// A write's parameter type, by the column it fills.
fn column_param(column: Column) -> ParamType {
    match column {
        Column::Id | Column::Tag => ParamType::Typed(DataType::Int64),
        Column::Vec => ParamType::Vector,
        Column::Metadata => ParamType::Typed(DataType::Utf8),
    }
}

/// `value` as the parameter type says: cast to its type; a vector as its
/// text form.
fn bind_value(
    n: usize,
    value: ScalarValue,
    ty: &ParamType,
    planned_once: bool,
) -> Result<ScalarValue, ParamError> {
    if value.is_null() {
        return Ok(match ty {
            ParamType::Typed(t) => ScalarValue::try_from(t).unwrap_or(value),
            ParamType::Vector => ScalarValue::Utf8(None),
            ParamType::Unknown | ParamType::Column(_) => value,
        });
    }
    match ty {
        ParamType::Unknown | ParamType::Column(_) => Ok(value),
        ParamType::Vector => match &value {
            ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_) => {
                Ok(value)
            }
            // A kept plan's search reads the components themselves: no
            // text to print and parse again.
            _ if planned_once && is_float_vector(&value) => Ok(value),
            ScalarValue::List(_) | ScalarValue::LargeList(_) | ScalarValue::FixedSizeList(_) => {
                let floats =
                    vector_components(&value).map_err(|reason| ParamError::Vector { n, reason })?;
                Ok(ScalarValue::Utf8(Some(vector_text(&floats))))
            }
            other => Err(ParamError::Vector {
                n,
                reason: format!(
                    "a value of type {} is not a vector; send '[1,2,3]'",
                    other.data_type()
                ),
            }),
        },
        ParamType::Typed(t) if value.data_type() == *t => Ok(value),
        // An array's text form (`{a,"b c",NULL}`) where an array is
        // needed: its elements, not one element holding the text.
        ParamType::Typed(t @ DataType::List(_))
            if matches!(
                value,
                ScalarValue::Utf8(Some(_)) | ScalarValue::Utf8View(Some(_))
            ) =>
        {
            let text = value.to_string();
            let items =
                crate::declared::array_text_elements(&text).ok_or_else(|| ParamError::Type {
                    n,
                    value: value.to_string(),
                    to: t.clone(),
                    reason: "not an array's text form ({a,b,…})".to_owned(),
                })?;
            let items: Vec<ScalarValue> = items.into_iter().map(ScalarValue::Utf8).collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Utf8))
                .cast_to(t)
                .map_err(|e| ParamError::Type {
                    n,
                    value: value.to_string(),
                    to: t.clone(),
                    reason: e.strip_backtrace(),
                })
        }
        // An array sent where the statement reads text (`$1::text[]`,
        // whose text the cast reads as an array): the array's text form.
        ParamType::Typed(DataType::Utf8)
            if matches!(value, ScalarValue::List(_) | ScalarValue::LargeList(_)) =>
        {
            array_text(&value)
                .map(|text| ScalarValue::Utf8(Some(text)))
                .ok_or_else(|| ParamError::Type {
                    n,
                    value: value.to_string(),
                    to: DataType::Utf8,
                    reason: "an array of arrays".to_owned(),
                })
        }
        ParamType::Typed(t) => value.cast_to(t).map_err(|e| ParamError::Type {
            n,
            value: value.to_string(),
            to: t.clone(),
            reason: e.strip_backtrace(),
        }),
    }
}

/// A one-dimensional list value in Postgres's array text form
/// (`{1,2}`, `{a,"b c",NULL}`); `None` for nested lists.
fn array_text(value: &ScalarValue) -> Option<String> {
    let items = match value {
        ScalarValue::List(list) => list.value(0),
        ScalarValue::LargeList(list) => list.value(0),
        _ => return None,
    };
    crate::declared::array_text(items.as_ref())
}

/// The components of a list value.
fn vector_components(value: &ScalarValue) -> Result<Vec<f32>, String> {
    let array = value.to_array().map_err(|e| e.strip_backtrace())?;
    let list = datafusion::arrow::compute::cast(
        &array,
        &DataType::List(Arc::new(
            datafusion::arrow::datatypes::Field::new_list_field(DataType::Float32, true),
        )),
    )
    .map_err(|e| e.to_string())?;
    let list = list
        .as_any()
        .downcast_ref::<datafusion::arrow::array::ListArray>()
        .ok_or("not a list")?;
    let values = list.value(0);
    let floats = values
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Float32Array>()
        .ok_or("not a list of numbers")?;
    if floats.null_count() > 0 {
        return Err("a vector has no NULL components".to_owned());
    }
    Ok(floats.values().to_vec())
}

/// A vector parameter as a value: its `f32` components as a fixed-size
/// list. A statement planned once passes it to its search as it is; any
/// other statement takes it as its text form ([`vector_text`]).
pub fn vector_param(components: Vec<f32>) -> ScalarValue {
    let n = i32::try_from(components.len()).unwrap_or(i32::MAX);
    let field = Arc::new(datafusion::arrow::datatypes::Field::new_list_field(
        DataType::Float32,
        false,
    ));
    let values = Arc::new(datafusion::arrow::array::Float32Array::from(components));
    match datafusion::arrow::array::FixedSizeListArray::try_new(field, n, values, None) {
        Ok(list) => ScalarValue::FixedSizeList(Arc::new(list)),
        // Only a vector longer than i32::MAX components, which no
        // parameter's bytes can hold, fails to build.
        Err(e) => ScalarValue::Utf8(Some(format!("invalid vector: {e}"))),
    }
}

/// Whether `value` is a list of `f32`s without NULLs, which a search
/// takes as it is ([`vector_param`]).
fn is_float_vector(value: &ScalarValue) -> bool {
    let (list, values): (&dyn Array, &ArrayRef) = match value {
        ScalarValue::FixedSizeList(list) => (list.as_ref(), list.values()),
        ScalarValue::List(list) => (list.as_ref(), list.values()),
        _ => return false,
    };
    list.len() == 1
        && list.logical_null_count() == 0
        && *values.data_type() == DataType::Float32
        && values.logical_null_count() == 0
}

pub use crate::float_text::vector_text;

/// Prepared statements kept by text, the oldest first out. Lookups take
/// a shared lock only, so concurrent statements never wait for each other
/// here.
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    entries: HashMap<String, Arc<Prepared>>,
    order: VecDeque<String>,
}

impl PlanCache {
    fn get(&self, sql: &str) -> Option<Arc<Prepared>> {
        self.entries.get(sql).cloned()
    }

    fn put(&mut self, prepared: Arc<Prepared>) {
        let sql = prepared.sql.clone();
        if self.entries.insert(sql.clone(), prepared).is_none() {
            self.order.push_back(sql);
        }
        while self.order.len() > limits::PLAN_CACHE_ENTRIES_MAX as usize {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    fn remove(&mut self, sql: &str) {
        if self.entries.remove(sql).is_some() {
            self.order.retain(|s| s != sql);
        }
    }
}

fn read_cache(cache: &RwLock<PlanCache>) -> std::sync::RwLockReadGuard<'_, PlanCache> {
    // The cache holds no invariant a panic could break halfway.
    cache
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_cache(cache: &RwLock<PlanCache>) -> std::sync::RwLockWriteGuard<'_, PlanCache> {
    cache
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl QueryEngine {
    /// Parses and plans one statement (see the [module
    /// documentation](self)). The text is bounded by [`SQL_BYTES_MAX`] and
    /// [`sql_text::check_expression_bounds`] before it is parsed.
    pub async fn prepare(&self, sql: &str) -> Result<Arc<Prepared>, QueryError> {
        if sql.len() > SQL_BYTES_MAX {
            return Err(QueryError::TooLong {
                bytes: sql.len(),
                max: SQL_BYTES_MAX,
            });
        }
        let shape = sql_text::check_expression_bounds(sql)?;
        self.prepare_measured(sql, shape).await
    }

    /// [`QueryEngine::prepare`] of a text already measured as `shape`.
    pub(crate) async fn prepare_measured(
        &self,
        sql: &str,
        shape: sql_text::Shape,
    ) -> Result<Arc<Prepared>, QueryError> {
        let placeholders = sql_text::placeholders(sql);
        if placeholders > limits::STATEMENT_PARAMS_MAX as usize {
            return Err(QueryError::Param(ParamError::Count {
                expected: limits::STATEMENT_PARAMS_MAX as usize,
                given: placeholders,
            }));
        }
        if !shape.is_deep() {
            return self.prepare_shaped(sql, shape).await.map(Arc::new);
        }
        if let Some(statement) = write::parse(sql)? {
            // `write::parse` refuses deep writes; a shallow one was parsed.
            return Ok(Arc::new(self.write_prepared(sql, shape, statement)?));
        }
        // Planned (and dropped) on a deep stack, only to learn its types.
        let this = self.clone();
        let owned = sql.to_owned();
        let prepared = on_deep_stack(async move {
            let planned = this.prepare_shaped(&owned, shape).await?;
            Ok((planned.params.clone(), Arc::clone(&planned.schema)))
        })
        .await?;
        Ok(Arc::new(Prepared {
            planned_on: self.engine_id(),
            sql: sql.to_owned(),
            shape,
            kind: Kind::Query(QueryPlan::Deep),
            params: prepared.0,
            schema: prepared.1,
        }))
    }

    /// [`QueryEngine::prepare`], reusing the statement prepared for the
    /// same text before when it is still valid.
    pub async fn prepare_cached(&self, sql: &str) -> Result<Arc<Prepared>, QueryError> {
        let found = read_cache(&self.plans).get(sql);
        if let Some(found) = found {
            // A plan made for a table since dropped (or dropped and
            // created again) is made again.
            if self.tables_unchanged(&found) {
                return Ok(found);
            }
        }
        let prepared = self.prepare(sql).await?;
        if prepared.is_planned_once() {
            write_cache(&self.plans).put(Arc::clone(&prepared));
        }
        Ok(prepared)
    }

    /// Whether every table a kept plan scans is still the one it was
    /// planned for.
    fn tables_unchanged(&self, prepared: &Prepared) -> bool {
        let Kind::Query(QueryPlan::Planned { tables, .. }) = &prepared.kind else {
            return true;
        };
        self.engine
            .read(|state| {
                tables.iter().all(|(name, incarnation)| {
                    state
                        .collection(name)
                        .is_some_and(|c| c.incarnation() == *incarnation)
                })
            })
            .unwrap_or(false)
    }

    fn write_prepared(
        &self,
        sql: &str,
        shape: sql_text::Shape,
        statement: WriteStatement,
    ) -> Result<Prepared, QueryError> {
        let count = sql_text::placeholders(sql);
        let mut params = vec![ParamType::Unknown; count];
        if let Some(declared) = self.declared_insert_params(&statement) {
            for (n, ty) in declared {
                if let Some(slot) = params.get_mut(n.wrapping_sub(1)) {
                    *slot = ty;
                }
            }
        } else if !self.declared_target(&statement) {
            // A declared table's UPDATE/DELETE parameters are taken as
            // given: the query that finds its rows, and its columns,
            // type them.
            for (n, column) in statement.parameter_columns() {
                if let Some(slot) = params.get_mut(n.wrapping_sub(1)) {
                    *slot = column_param(column);
                }
            }
        }
        let schema = match statement.returning() {
            Some((table, items)) => self.returning_schema(table, items)?,
            None => Arc::new(Schema::empty()),
        };
        Ok(Prepared {
            planned_on: self.engine_id(),
            sql: sql.to_owned(),
            shape,
            kind: Kind::Write(statement),
            params,
            schema,
        })
    }

    /// Whether `statement` is an `UPDATE` or `DELETE` of a table with
    /// declared columns.
    fn declared_target(&self, statement: &WriteStatement) -> bool {
        match statement {
            WriteStatement::Delete { table, .. } | WriteStatement::Update { table, .. } => {
                self.declared_table(table).is_ok()
            }
            _ => false,
        }
    }

    /// A declared table's schema and dimension.
    fn declared_table(&self, table: &str) -> Result<(TableSchema, u32), QueryError> {
        let name = valori_core::event::CollectionName::new(table)
            .map_err(|_| write::WriteError::UndefinedTable(table.to_owned()))?;
        self.engine
            .read(|state| {
                state.collection(&name).map(|c| {
                    c.table()
                        .map(|t| (t.schema().clone(), c.config().dim))
                        .ok_or_else(|| {
                            write::WriteError::Unsupported(format!(
                                "RETURNING on {table}, a table with the fixed columns id, vec, tag and metadata; it works on tables with declared columns"
                            ))
                        })
                })
            })
            .map_err(QueryError::Engine)?
            .ok_or_else(|| write::WriteError::UndefinedTable(table.to_owned()))?
            .map_err(QueryError::from)
    }

    fn returning_schema(
        &self,
        table: &str,
        items: &[write::ReturnItem],
    ) -> Result<SchemaRef, QueryError> {
        let (schema, dim) = self.declared_table(table)?;
        Ok(crate::returning::returning_schema(
            &schema, dim, table, items,
        )?)
    }

    async fn prepare_shaped(
        &self,
        sql: &str,
        shape: sql_text::Shape,
    ) -> Result<Prepared, QueryError> {
        let empty = || Arc::new(Schema::empty());
        if set_constraints(sql) {
            return Ok(Prepared {
                planned_on: self.engine_id(),
                sql: sql.to_owned(),
                shape,
                kind: Kind::Command(Command::Noop("SET CONSTRAINTS")),
                params: Vec::new(),
                schema: empty(),
            });
        }
        let Some(statement) = parse(sql)? else {
            return Ok(Prepared {
                planned_on: self.engine_id(),
                sql: sql.to_owned(),
                shape,
                kind: Kind::Empty,
                params: Vec::new(),
                schema: empty(),
            });
        };
        if let Some(command) = command(&statement)? {
            let schema = match &command {
                Command::Show(name) => {
                    Arc::new(Schema::new(vec![datafusion::arrow::datatypes::Field::new(
                        name,
                        DataType::Utf8,
                        false,
                    )]))
                }
                _ => empty(),
            };
            return Ok(Prepared {
                planned_on: self.engine_id(),
                sql: sql.to_owned(),
                shape,
                kind: Kind::Command(command),
                params: Vec::new(),
                schema,
            });
        }
        if let Statement::Copy {
            source,
            to: true,
            target: ast::CopyTarget::Stdout,
            options,
            legacy_options,
            ..
        } = statement
        {
            return self
                .copy_out_prepared(sql, shape, source, &options, &legacy_options)
                .await;
        }
        if is_write(&statement) {
            let write = write::from_statement(statement)?;
            return self.write_prepared(sql, shape, write);
        }
        self.prepare_statement(sql, shape, statement).await
    }

    /// Prepares `COPY … TO STDOUT` as the query whose rows it copies: a
    /// query as given, a table as `SELECT` of the columns named, else of
    /// every column (a table with the fixed columns: `id, vec, tag,
    /// metadata`, the columns its `COPY … FROM` takes). It returns no
    /// result columns of its own: the rows travel as copy data.
    async fn copy_out_prepared(
        &self,
        sql: &str,
        shape: sql_text::Shape,
        source: ast::CopySource,
        options: &[ast::CopyOption],
        legacy: &[ast::CopyLegacyOption],
    ) -> Result<Prepared, QueryError> {
        let format = write::copy_format(options, legacy)?;
        let query = match source {
            ast::CopySource::Query(query) => {
                self.prepare_statement(sql, shape, Statement::Query(query))
                    .await?
            }
            ast::CopySource::Table {
                table_name,
                columns,
            } => {
                let list = if !columns.is_empty() {
                    columns
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                } else if self.declared_table(&object_name(&table_name)).is_ok() {
                    "*".to_owned()
                } else {
                    write::Column::ALL.map(write::Column::name).join(", ")
                };
                let select = format!("SELECT {list} FROM {table_name}");
                let statement = parse(&select)?
                    .ok_or_else(|| internal("a table's SELECT parsed as nothing"))?;
                self.prepare_statement(&select, shape, statement).await?
            }
        };
        Ok(Prepared {
            planned_on: self.engine_id(),
            sql: sql.to_owned(),
            shape,
            params: query.params.clone(),
            schema: Arc::new(Schema::empty()),
            kind: Kind::CopyOut {
                query: Box::new(query),
                format,
            },
        })
    }

    /// Plans a query (`sql` is its text, `statement` its parse).
    async fn prepare_statement(
        &self,
        sql: &str,
        shape: sql_text::Shape,
        statement: Statement,
    ) -> Result<Prepared, QueryError> {
        // Planning holds statements and plans across awaits: on the heap,
        // not in the future of every caller (a statement's whole future
        // sits on the stack of the thread that runs it).
        Box::pin(self.plan_statement(sql, shape, statement)).await
    }

    async fn plan_statement(
        &self,
        sql: &str,
        shape: sql_text::Shape,
        mut statement: Statement,
    ) -> Result<Prepared, QueryError> {
        if let Some(message) = crate::column_names::ambiguous_order_by(&statement) {
            return Err(QueryError::Invalid(DataFusionError::Plan(message)));
        }
        crate::column_names::distinct_result_names(&mut statement);
        // `SELECT *, id FROM t`, `SELECT 1::int, 1::bigint`: which names
        // `*` repeats, and which DataFusion's names repeat, is known only
        // once planned; if planning finds one repeated, the items are
        // given names of their own and the query is planned again.
        let again =
            crate::column_names::may_repeat_names(&statement).then(|| Box::new(statement.clone()));
        let state = self.ctx.state();
        let mut items_aliased = false;
        let plan = match state
            .statement_to_plan(DfStatement::Statement(Box::new(statement)))
            .await
        {
            Err(e)
                if again.is_some() && e.to_string().contains("require unique expression names") =>
            {
                let mut statement = again.expect("invariant: checked is_some");
                crate::column_names::alias_result_items(&mut statement);
                items_aliased = true;
                state
                    .statement_to_plan(DfStatement::Statement(statement))
                    .await?
            }
            other => other?,
        };
        let plan = crate::casts::own_cast_types(plan)?;
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        crate::pgvector::check_vector_casts(&plan)?;
        let vectors = distance_arguments(&plan)?;
        let plan = type_vector_placeholders(plan, &vectors)?;
        let plan = type_placeholders_by_place(plan)?;
        let mut inferred = plan.get_parameter_types()?;
        for (id, data_type) in cast_placeholder_types(&plan)? {
            if let Some(slot @ None) = inferred.get_mut(&id) {
                *slot = Some(data_type);
            }
        }
        let count = sql_text::placeholders(sql).max(
            inferred
                .keys()
                .filter_map(|id| placeholder_number(id))
                .max()
                .unwrap_or(0),
        );
        let params = (1..=count)
            .map(|n| {
                let id = format!("${n}");
                if vectors.contains(&id) {
                    return ParamType::Vector;
                }
                match inferred.get(&id).cloned().flatten() {
                    Some(t) => ParamType::Typed(t),
                    None => ParamType::Unknown,
                }
            })
            .collect();
        // The names as written; with a `*`, the names of the columns it
        // stands for and of the items beside it.
        let names = written_names(sql).or_else(|| {
            if !items_aliased {
                return None;
            }
            written_item_names(sql).map(|items| {
                plan.schema()
                    .fields()
                    .iter()
                    .map(|f| {
                        f.name()
                            .strip_prefix(crate::column_names::DISTINCT_ALIAS_PREFIX)
                            .and_then(|n| n.parse::<usize>().ok())
                            .and_then(|n| items.get(n.wrapping_sub(1)).cloned().flatten())
                            .unwrap_or_else(|| f.name().clone())
                    })
                    .collect()
            })
        });
        let plan = postgres_named(plan, names.clone())?;
        let schema = Arc::new(result_schema(plan.schema().as_arrow(), names));
        // Planned once when nothing but the search's own parameters is
        // left to bind; otherwise each execution binds and plans.
        let physical = if is_immutable(&plan) {
            match state.create_physical_plan(&plan).await {
                Ok(physical) if is_reusable(&physical) => Some(physical),
                _ => None,
            }
        } else {
            None
        };
        let tables = scanned_tables(&plan)?;
        Ok(Prepared {
            planned_on: self.engine_id(),
            sql: sql.to_owned(),
            shape,
            kind: Kind::Query(QueryPlan::Planned {
                logical: Box::new(plan),
                physical,
                tables,
            }),
            params,
            schema,
        })
    }

    /// Checks and converts a statement's parameter values to its types.
    fn bind(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Vec<ScalarValue>, QueryError> {
        if params.len() != prepared.params.len() {
            return Err(QueryError::Param(ParamError::Count {
                expected: prepared.params.len(),
                given: params.len(),
            }));
        }
        params
            .into_iter()
            .zip(&prepared.params)
            .enumerate()
            .map(|(i, (value, ty))| {
                bind_value(i + 1, value, ty, prepared.is_planned_once()).map_err(QueryError::Param)
            })
            .collect()
    }

    /// Runs a prepared statement with its parameter values, for a client
    /// whose session is `session` (`SET` and `RESET` change it) and may
    /// write when `access` allows, on this engine (transaction blocks are
    /// [`QueryEngine::run`]'s). A statement runs at most the shorter of
    /// the server's and the session's statement timeout.
    pub(crate) async fn run_here(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
        session: &mut Session,
        access: Access,
    ) -> Result<Outcome, QueryError> {
        if let Kind::CopyOut { query, format } = &prepared.kind {
            // The query binds its own parameters and keeps its deadline.
            let Outcome::Rows(rows) = Box::pin(self.run(query, params, session, access)).await?
            else {
                return Err(internal("a COPY's query answered without rows"));
            };
            return Ok(Outcome::CopyOut(CopyOut {
                rows,
                format: format.clone(),
            }));
        }
        match &prepared.kind {
            Kind::Command(Command::Prepare { name, sql }) => {
                if session.prepared.get(name).is_some() {
                    return Err(TransactionError::PreparedStatementExists(name.clone()).into());
                }
                if session.prepared.len() >= limits::PLAN_CACHE_ENTRIES_MAX as usize {
                    return Err(TransactionError::TooManyPreparedStatements.into());
                }
                let statement = self.prepare(sql).await?;
                if matches!(
                    statement.kind,
                    Kind::Command(Command::Prepare { .. } | Command::Execute { .. })
                ) {
                    return Err(unsupported("PREPARE of a PREPARE or an EXECUTE"));
                }
                session.prepared.insert(name.clone(), statement);
                return Ok(Outcome::Done {
                    tag: "PREPARE".to_owned(),
                    rows: None,
                    notices: Vec::new(),
                });
            }
            Kind::Command(Command::Execute { name, params }) => {
                let statement = session
                    .prepared
                    .get(name)
                    .ok_or_else(|| TransactionError::NoPreparedStatement(name.clone()))?;
                return Box::pin(self.run(&statement, params.clone(), session, access)).await;
            }
            _ => {}
        }
        let params = self.bind(prepared, params)?;
        match &prepared.kind {
            Kind::Empty => Ok(Outcome::Empty),
            Kind::Command(command) => run_command(command, session),
            Kind::Write(statement) => {
                if access == Access::ReadOnly {
                    return Err(QueryError::ReadOnly);
                }
                self.run_write(prepared, statement, params, session).await
            }
            Kind::CopyOut { .. } => Err(internal("a COPY … TO STDOUT runs its query above")),
            Kind::Query(plan) => {
                let limit = effective_timeout(self.limits.statement_timeout, session);
                let deadline = tokio::time::Instant::now() + limit;
                // A linearizable read first waits until this node has
                // applied every write the cluster acknowledged before it.
                let barrier = (session.read_consistency == ReadConsistency::Linearizable)
                    .then(|| self.engine.read_barrier());
                let again = params.clone();
                let run = async {
                    if let Some(barrier) = barrier {
                        barrier.await.map_err(QueryError::Engine)?;
                    }
                    self.run_query(prepared, plan, params, session, deadline, limit)
                        .await
                };
                let rows = tokio::time::timeout_at(deadline, run)
                    .await
                    .map_err(|_| QueryError::Timeout { after: limit })?;
                if let Err(QueryError::Conflict(_)) = &rows {
                    // Made for a table since dropped, created again or
                    // altered (a column, an index): the next prepare of
                    // this text plans it anew, and so does this execution,
                    // as Postgres plans a prepared statement again, as
                    // long as its parameters and result columns stay
                    // those the client was told of.
                    write_cache(&self.plans).remove(&prepared.sql);
                    if plan_kept(plan) {
                        let fresh = self.prepare_cached(&prepared.sql).await?;
                        let same = fresh.params == prepared.params
                            && fresh.schema.fields() == prepared.schema.fields()
                            && matches!(fresh.kind, Kind::Query(_));
                        if !same {
                            return Err(unsupported(
                                "cached plan must not change result type: a table the prepared statement reads changed its columns; prepare it again",
                            ));
                        }
                        let Kind::Query(plan) = &fresh.kind else {
                            return Err(internal("a query prepared again as something else"));
                        };
                        let run = self.run_query(&fresh, plan, again, session, deadline, limit);
                        let rows = tokio::time::timeout_at(deadline, run)
                            .await
                            .map_err(|_| QueryError::Timeout { after: limit })?;
                        return Ok(Outcome::Rows(rows?));
                    }
                }
                Ok(Outcome::Rows(rows?))
            }
        }
    }

    /// Prepares (through the cache) and runs one statement: for front ends
    /// that take a statement's text and its values in one call.
    pub async fn run_sql(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        session: &mut Session,
        access: Access,
    ) -> Result<Outcome, QueryError> {
        // A plan made for a collection since dropped, created again or
        // altered is made again by the run itself.
        let prepared = self.prepare_cached(sql).await?;
        self.run(&prepared, params, session, access).await
    }

    async fn run_write(
        &self,
        prepared: &Prepared,
        statement: &WriteStatement,
        params: Vec<ScalarValue>,
        session: &mut Session,
    ) -> Result<Outcome, QueryError> {
        let mut statement = statement.bind(&params)?;
        if let WriteStatement::Insert {
            table,
            select: select @ Some(_),
            rows,
            names,
            columns,
            ..
        } = &mut statement
        {
            // `INSERT … SELECT`: the query runs first, on the same
            // parameters; its rows are the values inserted.
            let mut select = select.take().expect("invariant: matched Some");
            if let Ok((schema, _)) = self.declared_table(table) {
                let integer = |def: &valori_core::table::ColumnDef| match def.scalar() {
                    Some(ScalarType::Int16) => Some(crate::casts::IntType::Int2),
                    Some(ScalarType::Int32) => Some(crate::casts::IntType::Int4),
                    Some(ScalarType::Int64) => Some(crate::casts::IntType::Int8),
                    _ => None,
                };
                let targets: Vec<_> = match names {
                    Some(names) => names
                        .iter()
                        .map(|n| {
                            schema
                                .columns
                                .iter()
                                .find(|def| def.name == *n)
                                .and_then(integer)
                        })
                        .collect(),
                    None => schema.columns.iter().map(integer).collect(),
                };
                crate::casts::cast_to_integer_targets(&mut select, &targets);
            }
            // Rewritten as any query is (array literals, vector casts).
            let mut query = Statement::Query(select);
            crate::pgvector::rewrite_tree(&mut query);
            let text = query.to_string();
            let sub = self.prepare_statement(&text, prepared.shape, query).await?;
            let mut given = params.clone();
            given.truncate(sub.params.len());
            let Outcome::Rows(found) =
                Box::pin(self.run(&sub, given, session, Access::ReadOnly)).await?
            else {
                return Err(internal("a query answered without rows"));
            };
            let width = found.schema().fields().len();
            *rows = crate::returning::literal_rows(found, "INSERT … SELECT").await?;
            if names.is_none() {
                *columns = Column::ALL[..width.min(Column::ALL.len())].to_vec();
            }
        }
        if let WriteStatement::CopyFrom {
            table,
            columns,
            names,
            format,
        } = statement
        {
            let schema = self
                .engine
                .read(|state| {
                    valori_core::event::CollectionName::new(&table)
                        .ok()
                        .and_then(|n| state.collection(&n).map(crate::provider::collection_schema))
                })
                .map_err(QueryError::Engine)?;
            let Some(arrow_schema) = schema else {
                return Err(write::WriteError::UndefinedTable(table).into());
            };
            // A declared table: the columns named, or all in table order.
            let declared = match self.declared_table(&table) {
                Ok((schema, _)) => {
                    let all: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
                    let named = names.unwrap_or(all);
                    if let Some(missing) = named
                        .iter()
                        .find(|n| schema.columns.iter().all(|c| c.name != **n))
                    {
                        return Err(write::WriteError::UndefinedColumn(format!(
                            "column {missing:?} of relation {table:?} does not exist"
                        ))
                        .into());
                    }
                    Some(named)
                }
                Err(_) => {
                    if let Some(names) = &names {
                        // Reports the name that is not a fixed column.
                        write::check_fixed_columns(names, &table)?;
                    }
                    None
                }
            };
            let filled: Vec<String> = match &declared {
                Some(names) => names.clone(),
                None => columns.iter().map(|c| c.name().to_owned()).collect(),
            };
            let fields = filled
                .iter()
                .map(|name| {
                    arrow_schema
                        .field_with_name(name)
                        .map(|f| Arc::new(f.clone()))
                        .map_err(|_| internal(format!("column {name} of {table} has no field")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Outcome::CopyIn(CopyIn {
                table,
                columns,
                declared,
                format,
                fields,
            }));
        }
        let command = statement.command();
        let returning = statement
            .returning()
            .map(|(table, items)| (table.to_owned(), items.to_vec()));
        let outcome = match self
            .run_matched_write(&mut statement, &params, session)
            .await?
        {
            Some(outcome) => outcome,
            None => {
                let engine = Arc::clone(&self.engine);
                // The write runs to completion even if the client goes
                // away: once submitted, an event is durable or rejected.
                tokio::task::spawn_blocking(move || write::execute(&engine, &statement))
                    .await
                    .map_err(|e| internal(format!("write task failed: {e}")))??
            }
        };
        match (returning, &outcome.written) {
            (Some((table, items)), Some(written)) => {
                let (schema, dim) = self.declared_table(&table)?;
                let batch =
                    crate::returning::returning_batch(&schema, dim, &table, &items, written)?;
                Ok(Outcome::Returning {
                    // INSERT's tag has the oid 0 before its count.
                    tag: if command == "INSERT" {
                        "INSERT 0".to_owned()
                    } else {
                        command.to_owned()
                    },
                    rows: Rows::from_output(QueryOutput {
                        schema: batch.schema(),
                        batches: vec![batch],
                    }),
                })
            }
            _ => Ok(done(command, outcome)),
        }
    }

    /// An `UPDATE` or `DELETE` of a table with declared columns whose
    /// `WHERE` is not `id = … / id IN (…)` of an integer key `id`: the
    /// rows are found by running `SELECT key FROM table WHERE …` (any
    /// condition the query engine evaluates, with the statement's
    /// parameters), then changed by one event. Both run holding the lock
    /// that serializes the statement layer's writes, so the rows found are
    /// the rows of the state the event is applied to. `None` for other
    /// statements.
    async fn run_matched_write(
        &self,
        statement: &mut WriteStatement,
        params: &[ScalarValue],
        session: &Session,
    ) -> Result<Option<WriteOutcome>, QueryError> {
        let (WriteStatement::Delete {
            table,
            ids,
            selection,
            ..
        }
        | WriteStatement::Update {
            table,
            ids,
            selection,
            ..
        }) = &*statement
        else {
            return Ok(None);
        };
        let Ok((schema, _)) = self.declared_table(table) else {
            return Ok(None);
        };
        // A value computed for an integer column is cast to the column's
        // type in the query, as Postgres's assignment cast converts it:
        // there the value's own type (a `numeric` or a float) decides how
        // it rounds ([`crate::casts`]).
        let computed: Vec<String> = match &*statement {
            WriteStatement::Update { computed, .. } => computed
                .iter()
                .map(|(column, e)| {
                    let integer = schema
                        .scalar_columns()
                        .find(|(_, def, _)| def.name == *column)
                        .and_then(|(_, _, ty)| match ty {
                            ScalarType::Int16 => Some("smallint"),
                            ScalarType::Int32 => Some("integer"),
                            ScalarType::Int64 => Some("bigint"),
                            _ => None,
                        });
                    match integer {
                        Some(ty) => format!("CAST(({e}) AS {ty})"),
                        None => format!("({e})"),
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        if write::key_is_id(&schema) && !ids.is_empty() && computed.is_empty() {
            return Ok(None);
        }
        let verb = statement.command();
        let Some((scalar, key, ty, key_mod)) = schema
            .scalar_columns()
            .enumerate()
            .find(|(_, (_, def, _))| def.is_primary_key())
            .map(|(s, (_, def, ty))| (s, def.name.clone(), ty, def.type_mod))
        else {
            return Err(write::WriteError::Unsupported(format!(
                "{verb} of {table} with this WHERE clause: the table needs a primary key to name its rows"
            ))
            .into());
        };
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        // The key names each row; the values an UPDATE computes follow it.
        let projection = std::iter::once(quote(&key))
            .chain(computed.iter().cloned())
            .collect::<Vec<_>>()
            .join(", ");
        let sql = match selection {
            Some(selection) => format!(
                "SELECT {projection} FROM {} WHERE {selection}",
                quote(table)
            ),
            None => format!("SELECT {projection} FROM {}", quote(table)),
        };
        let name = valori_core::event::CollectionName::new(table)
            .map_err(|_| write::WriteError::UndefinedTable(table.clone()))?;
        let this = self.clone();
        let engine = Arc::clone(&self.engine);
        let handle = tokio::runtime::Handle::current();
        let mut session = session.clone();
        let params = params.to_vec();
        let mut statement_owned = statement.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let engine_ref = Arc::clone(&engine);
            engine_ref.serialized(|| -> Result<WriteOutcome, QueryError> {
                let keys = handle.block_on(async {
                    let sub = this.prepare(&sql).await?;
                    let mut given = params;
                    given.truncate(sub.params.len());
                    let Outcome::Rows(rows) = this
                        .run(&sub, given, &mut session, Access::ReadOnly)
                        .await?
                    else {
                        return Err(internal("a query answered without rows"));
                    };
                    crate::returning::literal_rows(rows, verb).await
                })?;
                let mut found = Vec::with_capacity(keys.len());
                let mut values = Vec::with_capacity(keys.len());
                for row in &keys {
                    let Some(key_value) = row.first() else {
                        continue;
                    };
                    let bytes = crate::declared::scalar_bytes(key_value, ty, key_mod, &key)?;
                    let Some(bytes) = bytes else { continue };
                    let record = engine
                        .read(|state| {
                            let c = state.collection(&name)?;
                            if ty.is_integer() {
                                return valori_core::table::integer_value(&bytes).map(|v| v as u64);
                            }
                            let row = c.table()?.unique_row(scalar, &bytes)?;
                            Some(c.ids()[row as usize].0)
                        })
                        .map_err(QueryError::Engine)?;
                    if let Some(record) = record {
                        found.push(record);
                        values.push((record, row[1..].to_vec()));
                    }
                }
                match &mut statement_owned {
                    WriteStatement::Update {
                        matched,
                        computed,
                        computed_rows,
                        ..
                    } => {
                        *matched = Some(found);
                        if !computed.is_empty() {
                            *computed_rows = Some(values);
                        }
                    }
                    WriteStatement::Delete { matched, .. } => *matched = Some(found),
                    _ => {}
                }
                Ok(write::execute(&engine, &statement_owned)?)
            })
        })
        .await
        .map_err(|e| internal(format!("write task failed: {e}")))??;
        Ok(Some(outcome))
    }

    /// Loads the data of a `COPY … FROM STDIN` (see [`Outcome::CopyIn`]):
    /// one event, all rows or none.
    pub(crate) async fn copy_in_here(
        &self,
        copy: CopyIn,
        data: Vec<u8>,
    ) -> Result<Outcome, QueryError> {
        // Parsed off the runtime's threads, as the write is.
        let (format, width) = (copy.format.clone(), copy.width());
        let rows = tokio::task::spawn_blocking(move || write::copy_rows(&format, width, &data))
            .await
            .map_err(|e| internal(format!("copy task failed: {e}")))??;
        self.write_copied(copy, rows).await
    }

    /// Writes the rows of a `COPY … FROM STDIN`: one event, all rows or
    /// none.
    async fn write_copied(
        &self,
        copy: CopyIn,
        rows: Vec<Vec<write::Literal>>,
    ) -> Result<Outcome, QueryError> {
        let engine = Arc::clone(&self.engine);
        let outcome = tokio::task::spawn_blocking(move || match &copy.declared {
            Some(names) => {
                crate::declared::insert(&engine, &copy.table, Some(names), &rows, None, false)
            }
            None => write::execute_copy(&engine, &copy.table, &copy.columns, &rows),
        })
        .await
        .map_err(|e| internal(format!("copy task failed: {e}")))??;
        Ok(done("COPY", outcome))
    }

    /// Loads the rows of a binary `COPY … FROM STDIN`, each field decoded
    /// by the front end as the type of its column in
    /// [`CopyIn::fields`]: one event, all rows or none, as
    /// [`QueryEngine::copy_in`]. A vector arrives as its components and
    /// is written as a vector parameter is.
    pub(crate) async fn copy_in_values_here(
        &self,
        copy: CopyIn,
        values: Vec<Vec<ScalarValue>>,
    ) -> Result<Outcome, QueryError> {
        let width = copy.width();
        let mut rows = Vec::with_capacity(values.len());
        for (i, row) in values.into_iter().enumerate() {
            if row.len() != width {
                return Err(write::WriteError::InvalidText(format!(
                    "COPY row {}: {} fields for {width} columns",
                    i + 1,
                    row.len()
                ))
                .into());
            }
            let literals = row
                .into_iter()
                .zip(&copy.fields)
                .enumerate()
                .map(|(j, (value, field))| {
                    let ty = match field.data_type() {
                        DataType::FixedSizeList(..) => ParamType::Vector,
                        _ => ParamType::Column(Arc::clone(field)),
                    };
                    bind_value(j + 1, value, &ty, false).map(|v| write::Literal::from_scalar(&v))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(QueryError::Param)?;
            rows.push(literals);
        }
        self.write_copied(copy, rows).await
    }

    async fn run_query(
        &self,
        prepared: &Prepared,
        plan: &QueryPlan,
        params: Vec<ScalarValue>,
        session: &Session,
        deadline: tokio::time::Instant,
        limit: Duration,
    ) -> Result<Rows, QueryError> {
        let (logical, physical) = match plan {
            QueryPlan::Planned {
                logical, physical, ..
            } => (logical, physical),
            QueryPlan::Deep => {
                let this = self.clone();
                let sql = prepared.sql.clone();
                let shape = prepared.shape;
                let session = session.clone();
                // Run to its end on the deep statement's own stack (and
                // within the caller's deadline, which bounds this await).
                let output = on_deep_stack(async move {
                    let planned = this.prepare_shaped(&sql, shape).await?;
                    let QueryPlan::Planned {
                        logical, physical, ..
                    } = &planned.kind_query()?
                    else {
                        return Err(internal("a deep statement planned as deep"));
                    };
                    let mut stream = this
                        .execute_plan(logical, physical.as_ref(), params, &session)
                        .await?;
                    let mut batches = Vec::new();
                    while let Some(batch) = stream.next().await {
                        batches.push(batch?);
                    }
                    Ok(QueryOutput {
                        schema: Arc::clone(&planned.schema),
                        batches,
                    })
                })
                .await?;
                return Ok(Rows::from_output(output));
            }
        };
        let stream = self
            .execute_plan(logical, physical.as_ref(), params, session)
            .await?;
        Rows::start(Arc::clone(&prepared.schema), stream, deadline, limit).await
    }

    /// Starts a planned query: a fresh copy of the kept physical plan
    /// with `params` bound, or the logical plan bound and planned now.
    async fn execute_plan(
        &self,
        logical: &LogicalPlan,
        physical: Option<&Arc<dyn ExecutionPlan>>,
        params: Vec<ScalarValue>,
        session: &Session,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        let options = ValoriOptions::from(&session.search);
        let identity = SessionIdentity {
            user: session.user.clone().unwrap_or_default(),
        };
        let advisory = AdvisoryScope::for_statement(
            &session.advisory,
            Instant::now() + effective_timeout(self.limits.statement_timeout, session),
        );
        let (physical, task) = match physical {
            Some(kept) => {
                let mut config = self.ctx.copied_config();
                config.options_mut().extensions.insert(options);
                config.options_mut().extensions.insert(identity);
                config.options_mut().extensions.insert(advisory);
                config.set_extension(Arc::new(BoundParams(params)));
                let task = TaskContext::new(
                    None,
                    self.ctx.session_id(),
                    config,
                    HashMap::new(),
                    HashMap::new(),
                    HashMap::new(),
                    HashMap::new(),
                    self.ctx.runtime_env(),
                );
                (reset_plan_states(Arc::clone(kept))?, Arc::new(task))
            }
            None => {
                let mut state = self.ctx.state();
                state.config_mut().options_mut().extensions.insert(options);
                state.config_mut().options_mut().extensions.insert(identity);
                state.config_mut().options_mut().extensions.insert(advisory);
                // Functions are planned with the options the execution
                // properties were given: give them these.
                state.mark_start_execution();
                let bound = if params.is_empty() {
                    logical.clone()
                } else {
                    logical.clone().with_param_values(params)?
                };
                let physical = state.create_physical_plan(&bound).await?;
                (physical, state.task_ctx())
            }
        };
        Ok(execute_stream(physical, task)?)
    }
}

impl Prepared {
    fn kind_query(&self) -> Result<&QueryPlan, QueryError> {
        match &self.kind {
            Kind::Query(plan) => Ok(plan),
            _ => Err(internal("a query prepared as something else")),
        }
    }
}

fn done(command: &str, outcome: WriteOutcome) -> Outcome {
    let rows = match command {
        "INSERT" | "DELETE" | "UPDATE" | "COPY" => Some(outcome.rows),
        _ => None,
    };
    Outcome::Done {
        tag: command.to_owned(),
        rows,
        notices: outcome.notices,
    }
}

fn run_command(command: &Command, session: &mut Session) -> Result<Outcome, QueryError> {
    let tag = |t: &str| Outcome::Done {
        tag: t.to_owned(),
        rows: None,
        notices: Vec::new(),
    };
    Ok(match command {
        Command::Begin => Outcome::Begin,
        Command::Commit => Outcome::Commit,
        Command::Rollback => Outcome::Rollback,
        // Outside a block (inside one the transaction layer answers them).
        Command::Savepoint(_) | Command::Release(_) | Command::RollbackTo(_) => {
            return Err(internal("a savepoint command outside a transaction block"));
        }
        Command::Noop(t) => tag(t),
        Command::Deallocate(None) => {
            session.prepared.clear();
            tag("DEALLOCATE ALL")
        }
        Command::Deallocate(Some(name)) => {
            if session.prepared.remove(name).is_none() {
                return Err(TransactionError::NoPreparedStatement(name.clone()).into());
            }
            tag("DEALLOCATE")
        }
        Command::Prepare { .. } | Command::Execute { .. } => {
            return Err(internal("PREPARE and EXECUTE run above"));
        }
        Command::Discard => {
            if session.transaction.is_some() {
                return Err(TransactionError::InBlock("DISCARD ALL").into());
            }
            session.prepared.clear();
            session.reset("all")?;
            session.advisory.unlock_all();
            tag("DISCARD ALL")
        }
        Command::Set { name, value } => {
            session.set(name, value)?;
            tag("SET")
        }
        Command::Reset(name) => {
            session.reset(name)?;
            tag("RESET")
        }
        Command::Show(name) => {
            let value = session.show(name)?;
            let schema = Arc::new(Schema::new(vec![datafusion::arrow::datatypes::Field::new(
                name,
                DataType::Utf8,
                false,
            )]));
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(datafusion::arrow::array::StringArray::from(vec![
                    value,
                ]))],
            )
            .map_err(|e| internal(e.to_string()))?;
            Outcome::Rows(Rows::from_output(QueryOutput {
                schema,
                batches: vec![batch],
            }))
        }
    })
}

/// How long a statement may run on a session: the server's statement
/// timeout, or the session's own when that is shorter.
pub fn effective_timeout(server: Duration, session: &Session) -> Duration {
    session
        .statement_timeout
        .map_or(server, |own| own.min(server))
}
