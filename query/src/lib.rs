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
//!
//! A query such as
//!
//! ```sql
//! SELECT id, l2(vec, '[0.1, 0.2, 0.3]') AS d FROM docs
//! WHERE tag = 7 ORDER BY d, id LIMIT 10
//! ```
//!
//! is an exact scan today: it returns the same ids, in the same order, as
//! `Collection::search_exact` (a test proves it on real data).
//!
//! Not done yet:
//!
//! - the KNN rewrite: an optimizer rule turning `ORDER BY <distance> LIMIT
//!   k` (with an optional tag filter) into an HNSW scan node, and `SET
//!   valori.exact = on` to keep the exact scan;
//! - SQL writes through [`QueryEngine::execute`]: it refuses DDL and DML;
//!   [`mod@write`] turns them into events (the Postgres front end in `wire/`
//!   uses it), and [`pgvector`] rewrites pgvector's operators;
//! - a bound on SQL text length in `valori_core::limits`.

pub mod functions;
pub mod metadata;
pub mod pgvector;
pub mod provider;
pub mod settings;
pub mod sql_text;
pub mod write;

use std::sync::Arc;

pub use datafusion;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
pub use valori_engine as engine;
use valori_engine::{Engine, EngineError};

use crate::functions::VectorInputError;
use crate::provider::{ScanError, ValoriSchema};

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
        matches!(self, QueryError::Invalid(_) | QueryError::Vector(_))
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
    pub async fn execute_with(
        &self,
        query: &str,
        _settings: &settings::SearchSettings,
    ) -> Result<QueryOutput, QueryError> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false);
        let frame = self.ctx.sql_with_options(query, options).await?;
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
        .with_default_catalog_and_schema(CATALOG, SCHEMA);
    let ctx = SessionContext::new_with_config(config);
    let catalog = ctx
        .catalog(CATALOG)
        .expect("invariant: a new SessionContext has its default catalog");
    // Replacing a schema of the in-memory catalog cannot fail; the previous
    // (empty) default schema is dropped.
    let _previous = catalog.register_schema(SCHEMA, Arc::new(ValoriSchema::new(engine)));
    functions::register_functions(&ctx);
    ctx
}
