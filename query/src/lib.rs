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

pub mod dsl;
pub mod functions;
pub mod knn;
pub mod metadata;
pub mod metadata_functions;
pub mod pgvector;
pub mod provider;
pub mod settings;
pub mod sql_text;
pub mod write;

use std::sync::Arc;

pub use datafusion;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
pub use valori_engine as engine;
use valori_engine::{Engine, EngineError};

use crate::functions::VectorInputError;
use crate::provider::{ScanError, ValoriSchema};
use crate::settings::ValoriOptions;

/// Longest statement [`QueryEngine::execute_with`] accepts, in bytes (the
/// text of a DSL query too): `valori_core::limits::SQL_BYTES_MAX`.
pub const SQL_BYTES_MAX: usize = valori_core::limits::SQL_BYTES_MAX as usize;

/// DataFusion's default catalog and schema, where collections appear.
pub const CATALOG: &str = "datafusion";
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
    /// A collection was dropped or re-created while the query ran.
    #[error("{0}")]
    Conflict(ScanError),
    /// The statement is longer than [`SQL_BYTES_MAX`]; it was not parsed.
    #[error("statement of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLong { bytes: usize, max: usize },
    /// The engine failed (it then serves nothing more until restarted).
    #[error(transparent)]
    Engine(EngineError),
    /// DataFusion failed for a reason that is not the statement's fault.
    #[error("internal error: {0}")]
    Internal(DataFusionError),
}

impl QueryError {
    /// Whether the client is at fault (and may fix the statement).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            QueryError::Invalid(_) | QueryError::Vector(_) | QueryError::TooLong { .. }
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
                if let Some(s) = inner.downcast_ref::<ScanError>() {
                    return match s {
                        ScanError::Engine(engine) => QueryError::Engine(engine.clone()),
                        ScanError::CollectionChanged(name) => {
                            QueryError::Conflict(ScanError::CollectionChanged(name.clone()))
                        }
                    };
                }
            }
            DataFusionError::Internal(_)
            | DataFusionError::ExecutionJoin(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ObjectStore(_)
            | DataFusionError::ResourcesExhausted(_)
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

/// SQL over one engine.
#[derive(Clone)]
pub struct QueryEngine {
    engine: Arc<Engine>,
    ctx: SessionContext,
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
    pub fn new(engine: Arc<Engine>) -> QueryEngine {
        let ctx = session(Arc::clone(&engine));
        QueryEngine { engine, ctx }
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
    /// than [`SQL_BYTES_MAX`] is refused before it is parsed.
    pub async fn execute_with(
        &self,
        query: &str,
        settings: &settings::SearchSettings,
    ) -> Result<QueryOutput, QueryError> {
        self.execute_with_params(query, Vec::new(), settings).await
    }

    /// [`QueryEngine::execute_with`] with values for the placeholders `$1`,
    /// `$2`, … (in order). The values are bound before the plan is
    /// optimized, so a bound vector such as
    /// `ORDER BY l2(vec, $1) LIMIT 10` with `$1 = '[0.1, 0.2]'` is answered
    /// by the KNN rewrite like a literal.
    pub async fn execute_with_params(
        &self,
        query: &str,
        params: Vec<ScalarValue>,
        settings: &settings::SearchSettings,
    ) -> Result<QueryOutput, QueryError> {
        if query.len() > SQL_BYTES_MAX {
            return Err(QueryError::TooLong {
                bytes: query.len(),
                max: SQL_BYTES_MAX,
            });
        }
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let mut state = self.ctx.state();
        state
            .config_mut()
            .options_mut()
            .extensions
            .insert(ValoriOptions::from(settings));
        let plan = state.create_logical_plan(query).await?;
        options.verify_plan(&plan)?;
        let mut frame = DataFrame::new(state, plan);
        if !params.is_empty() {
            frame = frame.with_param_values(params)?;
        }
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok(QueryOutput { schema, batches })
    }
}

/// A DataFusion session over `engine`: every collection is a table under
/// its own name (looked up when a query is planned), and the distance
/// functions are registered.
pub fn session(engine: Arc<Engine>) -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_option_extension(ValoriOptions::default());
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_query_planner(Arc::new(knn::ValoriQueryPlanner))
        .with_optimizer_rule(Arc::new(knn::KnnRule))
        .build();
    let ctx = SessionContext::new_with_state(state);
    let catalog = ctx
        .catalog(CATALOG)
        .expect("invariant: a new SessionContext has its default catalog");
    // Replacing a schema of the in-memory catalog cannot fail; the previous
    // (empty) default schema is dropped.
    let _previous = catalog.register_schema(SCHEMA, Arc::new(ValoriSchema::new(engine)));
    functions::register_functions(&ctx);
    metadata_functions::register_functions(&ctx);
    ctx
}
