//! The query layer: SQL over the engine through DataFusion.
//!
//! - [`QueryEngine`] owns a DataFusion [`SessionContext`] whose `public`
//!   schema is the engine's collections ([`provider::ValoriSchema`]) and
//!   which knows the distance functions; [`QueryEngine::sql`] runs one
//!   statement. [`session`] builds just the context.
//! - [`provider`]: [`provider::CollectionTable`], a collection as a table
//!   (`id`, `vec`, `vec_q16`, `tag`, `metadata`), scanned from one
//!   consistent snapshot with projection, `tag = n` and `LIMIT` pushed
//!   down.
//! - [`functions`]: `l2_squared`, `l2`, `inner_product`,
//!   `negative_inner_product` and `cosine_distance`, computed with the
//!   engine's exact integer kernels on Q16.16 values; one
//!   [`functions::register_functions`] entry point.
//! - [`knn`]: the KNN rewrite. `ORDER BY <distance>(vec, <constant>)
//!   LIMIT k` (with tag and other filters) becomes a
//!   [`knn::ValoriKnnExec`] calling the engine's HNSW search, or its exact
//!   scan when the session's [`settings::SearchSettings`] ask for it.
//!
//! A query such as
//!
//! ```sql
//! SELECT id, l2(vec, '[0.1, 0.2, 0.3]') AS d FROM docs
//! WHERE tag = 7 ORDER BY d LIMIT 10
//! ```
//!
//! is one engine search; `EXPLAIN` shows
//! `ValoriKnnExec: collection=docs k=10 ef=64 tag=7 path=hnsw distance=l2`.
//! With `exact` set it returns the same ids, in the same order, as
//! DataFusion's own plan ordered by `(d, id)` (a test proves it on real
//! data).
//!
//! Statements are bounded by [`SQL_BYTES_MAX`].
//!
//! Not done yet:
//!
//! - SQL writes through [`QueryEngine::execute`], which refuses DDL and
//!   DML: [`mod@write`] turns them into events (the Postgres front end in
//!   `wire/` uses it), and [`pgvector`] rewrites pgvector's operators.

pub mod advisory;
pub mod alter;
pub mod bpchar;
pub mod casts;
pub mod catalog;
pub mod column_names;
pub mod correlated;
pub mod declared;
pub mod dsl;
pub mod float_text;
mod from_functions;
pub mod functions;
pub mod index_scan;
pub mod json_functions;
pub mod json_operators;
pub mod knn;
pub mod metadata;
pub mod metadata_functions;
pub mod ops;
pub mod pgvector;
pub mod provider;
mod returning;
pub mod rows;
pub mod session;
pub mod settings;
pub mod sql_text;
pub mod statement;
pub mod transaction;
pub mod vector_aggregates;
pub mod vector_functions;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

pub use datafusion;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
pub use valori_engine as engine;
use valori_engine::{Engine, EngineError};

use crate::functions::VectorInputError;
use crate::provider::{ScanError, ValoriSchema};
use crate::settings::ValoriOptions;

/// Longest statement [`QueryEngine::execute_with`] accepts, in bytes (the
/// text of a DSL query too): `valori_core::limits::SQL_BYTES_MAX`.
pub const SQL_BYTES_MAX: usize = valori_core::limits::SQL_BYTES_MAX as usize;

/// The session's default catalog and schema, where collections appear.
/// The catalog is the one database the Postgres front end names
/// (`current_database()`, `information_schema`'s `table_catalog`), so a
/// name qualified as Postgres lists it (`valori.public.docs`) resolves,
/// and Flight SQL's `GetCatalogs` lists the same name.
pub const CATALOG: &str = catalog::DATABASE_NAME;
pub const SCHEMA: &str = "public";

/// Why a statement failed, by who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The statement is wrong: syntax, an unknown table, column or
    /// function, a type error, a bad vector, or something not supported.
    /// Nothing changed.
    #[error("{0}")]
    Invalid(DataFusionError),
    /// A bad vector argument of a distance function.
    #[error(transparent)]
    Vector(VectorInputError),
    /// A value that does not convert to the integer type it is cast or
    /// assigned to (out of range, or text that is not an integer).
    #[error(transparent)]
    Cast(casts::CastError),
    /// A collection was dropped or re-created while the query ran.
    #[error("{0}")]
    Conflict(ScanError),
    /// The statement is longer than [`SQL_BYTES_MAX`]; it was not parsed.
    #[error("statement of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLong { bytes: usize, max: usize },
    /// The statement's expressions are nested or chained deeper than the
    /// limits ([`sql_text::check_expression_bounds`]); it was not parsed.
    #[error(transparent)]
    TooComplex(#[from] sql_text::ExpressionBoundsError),
    /// The statement ran longer than its timeout and was cancelled.
    #[error("canceling statement due to statement timeout ({after:?})")]
    Timeout { after: Duration },
    /// The statement needed more memory than the query memory pool holds
    /// ([`QueryLimits::memory_bytes`]); it was cancelled.
    #[error("the statement needs more memory than the query memory limit allows: {0}")]
    MemoryExhausted(DataFusionError),
    /// The engine failed (it then serves nothing more until restarted).
    #[error(transparent)]
    Engine(EngineError),
    /// A write refused (nothing was written) or failed.
    #[error(transparent)]
    Write(#[from] write::WriteError),
    /// A session setting refused.
    #[error(transparent)]
    Setting(#[from] session::SettingError),
    /// A parameter value refused: wrong count, or not of its type.
    #[error(transparent)]
    Param(#[from] statement::ParamError),
    /// A transaction command refused, or a statement in a failed block.
    #[error(transparent)]
    Transaction(#[from] transaction::TransactionError),
    /// A write from a client that may only read.
    #[error("cannot execute a write: the client has the read role")]
    ReadOnly,
    /// DataFusion failed for a reason that is not the statement's fault.
    #[error("internal error: {0}")]
    Internal(DataFusionError),
}

impl QueryError {
    /// Whether the client is at fault (and may fix the statement).
    pub fn is_user_error(&self) -> bool {
        if let QueryError::Write(w) = self {
            return !matches!(w, write::WriteError::Engine(_));
        }
        matches!(
            self,
            QueryError::Invalid(_)
                | QueryError::Vector(_)
                | QueryError::Cast(_)
                | QueryError::Setting(_)
                | QueryError::Param(_)
                | QueryError::ReadOnly
                | QueryError::TooLong { .. }
                | QueryError::TooComplex(_)
                | QueryError::Timeout { .. }
                | QueryError::MemoryExhausted(_)
        )
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        // Our own errors travel through DataFusion as `External`; give them
        // back their type.
        match e.find_root() {
            DataFusionError::External(inner) => {
                if let Some(v) = inner.downcast_ref::<VectorInputError>() {
                    return QueryError::Vector(v.clone());
                }
                if let Some(c) = inner.downcast_ref::<casts::CastError>() {
                    return QueryError::Cast(c.clone());
                }
                if let Some(s) = inner.downcast_ref::<ScanError>() {
                    return match s {
                        ScanError::Engine(engine) => QueryError::Engine(engine.clone()),
                        ScanError::CollectionChanged(name) => {
                            QueryError::Conflict(ScanError::CollectionChanged(name.clone()))
                        }
                    };
                }
            }
            DataFusionError::ResourcesExhausted(_) => return QueryError::MemoryExhausted(e),
            DataFusionError::Internal(_)
            | DataFusionError::ExecutionJoin(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ObjectStore(_)
            | DataFusionError::Substrait(_) => return QueryError::Internal(e),
            _ => {}
        }
        QueryError::Invalid(e)
    }
}

/// A statement's result: its schema (also when it returns no rows) and its
/// batches.
#[derive(Clone, Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// What one statement may use, on every front end: the server's
/// `--statement-timeout` and `--query-memory-bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Longest a statement may run before it is cancelled
    /// ([`QueryError::Timeout`]). A Postgres session's own
    /// `statement_timeout` can only shorten it.
    pub statement_timeout: Duration,
    /// Memory that all running statements together may reserve for their
    /// operators (aggregates, sorts, joins); a statement that needs more
    /// fails with [`QueryError::MemoryExhausted`] instead of exhausting
    /// the process.
    pub memory_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        QueryLimits {
            statement_timeout: Duration::from_secs(60),
            memory_bytes: 1 << 30,
        }
    }
}

/// SQL over one engine.
#[derive(Clone)]
pub struct QueryEngine {
    engine: Arc<Engine>,
    ctx: SessionContext,
    limits: QueryLimits,
    /// Prepared statements by text ([`QueryEngine::prepare_cached`]).
    plans: Arc<std::sync::RwLock<statement::PlanCache>>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SessionContext has no Debug; its session id identifies it.
        f.debug_struct("QueryEngine")
            .field("engine", &self.engine)
            .field("session", &self.ctx.session_id())
            .finish()
    }
}

impl QueryEngine {
    /// A query layer with the default [`QueryLimits`].
    pub fn new(engine: Arc<Engine>) -> QueryEngine {
        QueryEngine::with_limits(engine, QueryLimits::default())
    }

    pub fn with_limits(engine: Arc<Engine>, limits: QueryLimits) -> QueryEngine {
        let ctx = session_with(Arc::clone(&engine), limits.memory_bytes);
        QueryEngine {
            engine,
            ctx,
            limits,
            plans: Arc::default(),
        }
    }

    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one read-only statement and collects its rows.
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>, QueryError> {
        Ok(self.execute(query).await?.batches)
    }

    /// Runs one read-only statement and collects its rows and schema.
    /// DDL and DML are refused: writes go through the event log, and SQL
    /// writes are not implemented yet.
    pub async fn execute(&self, query: &str) -> Result<QueryOutput, QueryError> {
        self.execute_with(query, &settings::SearchSettings::default())
            .await
    }

    /// [`QueryEngine::execute`] with a session's search settings.
    ///
    /// The statement is planned in a copy of this engine's DataFusion
    /// session state carrying `settings` (see [`settings`]), so concurrent
    /// calls with different settings do not see each other's. Statements
    /// that would change the session itself (`SET`, transactions,
    /// `PREPARE`) are refused: session state belongs to the caller's
    /// front end, which passes it here as `settings`. A statement longer
    /// than [`SQL_BYTES_MAX`], or nested or chained beyond
    /// [`sql_text::check_expression_bounds`], is refused before it is
    /// parsed.
    pub async fn execute_with(
        &self,
        query: &str,
        settings: &settings::SearchSettings,
    ) -> Result<QueryOutput, QueryError> {
        self.execute_with_params(query, Vec::new(), settings).await
    }

    /// [`QueryEngine::execute_with`] with values for the placeholders `$1`,
    /// `$2`, … (in order), through the statement layer
    /// ([`statement`]): a bound vector such as
    /// `ORDER BY l2(vec, $1) LIMIT 10` with `$1 = '[0.1, 0.2]'` is answered
    /// by the KNN search the plan was made with. Writes are refused
    /// ([`QueryError::ReadOnly`]); session commands leave no trace and
    /// return no rows.
    pub async fn execute_with_params(
        &self,
        query: &str,
        params: Vec<ScalarValue>,
        settings: &settings::SearchSettings,
    ) -> Result<QueryOutput, QueryError> {
        let prepared = self.prepare_cached(query).await?;
        self.read(&prepared, params, settings).await
    }

    /// Runs a statement whose length and shape are already known to be
    /// within bounds (the query DSL's lowered SQL), read-only.
    pub(crate) async fn plan_and_run(
        &self,
        query: &str,
        params: Vec<ScalarValue>,
        settings: &settings::SearchSettings,
        shape: sql_text::Shape,
    ) -> Result<QueryOutput, QueryError> {
        let prepared = self.prepare_measured(query, shape).await?;
        self.read(&prepared, params, settings).await
    }

    async fn read(
        &self,
        prepared: &statement::Prepared,
        params: Vec<ScalarValue>,
        settings: &settings::SearchSettings,
    ) -> Result<QueryOutput, QueryError> {
        if let statement::Kind::Command(
            statement::Command::Set { .. } | statement::Command::Reset(_),
        ) = prepared.kind()
        {
            return Err(QueryError::Invalid(DataFusionError::NotImplemented(
                "SET and RESET change a session: run them with QueryEngine::run and the \
                 client's Session"
                    .to_owned(),
            )));
        }
        let mut session = session::Session::with_search(*settings);
        match self
            .run(prepared, params, &mut session, statement::Access::ReadOnly)
            .await?
        {
            statement::Outcome::Rows(rows) => rows.collect().await,
            _ => Ok(QueryOutput {
                schema: Arc::new(datafusion::arrow::datatypes::Schema::empty()),
                batches: Vec::new(),
            }),
        }
    }
}

/// Stack size of the threads that plan and run deep statements
/// ([`sql_text::Shape::is_deep`]). DataFusion's planner, optimizer and
/// expression evaluation recurse over the expression tree; in a debug
/// build a 16 MiB stack held trees 2,048 levels deep (`+`, `||`, `::`,
/// `IS NULL` chains) but not 4,096, and 32 MiB held 4,096, twice the
/// deepest tree [`valori_core::limits::EXPRESSION_TOKENS_MAX`] admits.
pub const DEEP_STATEMENT_STACK_BYTES: usize = 32 << 20;

/// Deep statements planned or run at once; more wait their turn, so that
/// clients sending them cannot make the server reserve stacks without
/// bound.
const DEEP_STATEMENTS_AT_ONCE: usize = 2;

static DEEP_STATEMENTS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(DEEP_STATEMENTS_AT_ONCE);

/// Runs `work` to completion on a thread of its own with a
/// [`DEEP_STATEMENT_STACK_BYTES`] stack, and waits for it without
/// blocking the caller's thread. Ordinary statements never come here:
/// the thread costs tens of microseconds.
pub(crate) async fn on_deep_stack<T, F>(work: F) -> Result<T, QueryError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, QueryError>> + Send + 'static,
{
    let internal = |message: &str| {
        QueryError::Internal(DataFusionError::Execution(format!(
            "deep statement: {message}"
        )))
    };
    let _permit = DEEP_STATEMENTS
        .acquire()
        .await
        .map_err(|_| internal("the semaphore is closed"))?;
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("valori-deep-statement".to_owned())
        .stack_size(DEEP_STATEMENT_STACK_BYTES)
        .spawn(move || {
            // A runtime of this thread alone: the partitions DataFusion
            // spawns run here too, on this stack, and not on the caller's
            // worker threads.
            let answer = tokio::runtime::Builder::new_current_thread()
                .thread_stack_size(DEEP_STATEMENT_STACK_BYTES)
                .build()
                .map_err(|e| internal(&format!("cannot start its runtime: {e}")))
                .and_then(|runtime| runtime.block_on(work));
            // The receiver is gone only if the caller stopped waiting.
            let _ = done.send(answer);
        })
        .map_err(|e| internal(&format!("cannot start its thread: {e}")))?;
    result
        .await
        .map_err(|_| internal("its thread stopped without an answer"))?
}

/// DataFusion's optimizer rules, with [`correlated::CorrelatedRule`] right
/// after its own decorrelation: a filter whose subquery reads an outer
/// column must not be pushed below the projection that makes the column
/// (DataFusion's filter pushdown does not follow outer references).
fn optimizer_rules() -> Vec<Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>> {
    let mut rules = datafusion::optimizer::Optimizer::new().rules;
    let after = rules
        .iter()
        .position(|r| r.name() == "scalar_subquery_to_join")
        .map_or(rules.len(), |i| i + 1);
    rules.insert(after, Arc::new(correlated::CorrelatedRule));
    rules
}

/// A DataFusion session over `engine`: every collection is a table under
/// its own name (looked up when a query is planned), and the distance
/// functions are registered.
pub fn session(engine: Arc<Engine>) -> SessionContext {
    session_with(engine, QueryLimits::default().memory_bytes)
}

/// [`session`] whose operators share a memory pool of `memory_bytes`.
pub fn session_with(engine: Arc<Engine>, memory_bytes: usize) -> SessionContext {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(memory_bytes, 1.0)
        .build_arc()
        .expect("invariant: a runtime environment with a memory pool and no disk builds");
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_option_extension(ValoriOptions::default());
    // Sessions run in UTC (the `TimeZone` Valori reports): `now()` and
    // `current_timestamp` are `timestamptz` values, as in PostgreSQL.
    config.options_mut().execution.time_zone = Some("+00:00".to_owned());
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_analyzer_rules(casts::analyzer_rules())
        .with_query_planner(Arc::new(knn::ValoriQueryPlanner))
        .with_optimizer_rules(optimizer_rules())
        .with_optimizer_rule(Arc::new(knn::KnnRule));
    // Vector operators are planned before DataFusion's own planners, which
    // would read `||` of two lists as array concatenation and refuse `+`.
    builder
        .expr_planners()
        .get_or_insert_with(Vec::new)
        .insert(0, Arc::new(vector_functions::VectorOperatorPlanner));
    // JSON operators on text, which DataFusion does not plan at all.
    builder
        .expr_planners()
        .get_or_insert_with(Vec::new)
        .insert(0, Arc::new(json_operators::JsonOperatorPlanner));
    let state = builder.build();
    let ctx = SessionContext::new_with_state(state);
    let catalog = ctx
        .catalog(CATALOG)
        .expect("invariant: a new SessionContext has its default catalog");
    // Replacing a schema of the in-memory catalog cannot fail; the previous
    // (empty) default schema is dropped.
    let _previous =
        catalog.register_schema(SCHEMA, Arc::new(ValoriSchema::new(Arc::clone(&engine))));
    crate::catalog::register(&ctx, engine);
    // DataFusion's generate_series, also inside correlated subqueries.
    ctx.register_udtf("generate_series", Arc::new(correlated::LateralSeriesFunc));
    // `pg_catalog.unnest(a)` in FROM (psql's `\d+`), also correlated.
    ctx.register_udtf("unnest", Arc::new(correlated::LateralUnnestFunc));
    functions::register_functions(&ctx);
    casts::register_functions(&ctx);
    bpchar::register_functions(&ctx);
    vector_functions::register_functions(&ctx);
    vector_aggregates::register_functions(&ctx);
    metadata_functions::register_functions(&ctx);
    json_functions::register_functions(&ctx);
    advisory::register_functions(&ctx);
    from_functions::register(&ctx);
    ctx
}
