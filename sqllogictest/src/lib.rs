//! Runners for the `.slt` suites in `suites/`.
//!
//! - [`ValoriDb`] implements the `sqllogictest` crate's [`AsyncDB`] over
//!   the in-process query layer ([`valori_query::QueryEngine`]), formatting
//!   every value deterministically ([`format_value`]).
//! - [`seed_fixture`] writes the fixed data every suite starts from, through
//!   the engine's event log.
//! - [`run_suite`] runs one `.slt` file against a fresh engine in a
//!   temporary directory; `tests/slt.rs` runs every suite. Both runners
//!   check the column types a `query` record declares (`I` integer, `R`
//!   floating point, `T` text, `?` anything else) against the types of the
//!   result — here from the Arrow schema ([`column_type`]), over the wire
//!   from the Postgres types — not only the printed values.
//!
//! `tests/wire.rs` runs the same suites, and the wire-only suites in
//! `suites/wire/` (DDL, writes, errors with their SQLSTATEs), over the
//! Postgres protocol against a server started in-process, through
//! tokio-postgres; its engine name (a sqllogictest label) is
//! `postgres-wire`.
//!
//! # The fixture
//!
//! Collection `docs`: dimension 3, metric `l2`. Rows in insertion order:
//!
//! | id | vec | tag | metadata |
//! |---|---|---|---|
//! | 1 | [1, 0, 0] | 7 | `one` |
//! | 2 | [0, 1, 0] | 7 | `two` |
//! | 3 | [0, 0, 1] | 8 | `three` |
//! | 4 | [1, 1, 0] | 7 | (empty) |
//! | 5 | [3, 4, 0] | 9 | `five` |
//! | 6 | [-1, 0, 0] | 8 | `six` |
//! | 7 | [0.5, 0.5, 0.5] | 7 | `seven` |
//! | 8 | [2, 2, 2] | 8 | `eight` — then **deleted** |
//! | 9 | [0, -1, 0] | 0 | `nine` — then its tag **set to 7** |
//!
//! So 8 live rows; tag 7: ids 1, 2, 4, 7, 9; tag 8: ids 3, 6; tag 9: id 5.
//!
//! Collection `wide`: dimension 2, metric `l2`, one row inserted as raw
//! Q16.16 integers (as a client sending raw values could):
//! id 1, `vec_q16` = [16777217, 0] (2^24 + 1, which no `f32` holds: the
//! `f32` view shows 256), tag 1, no metadata.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use valori_core::event::{
    Batch, CollectionConfig, CollectionName, Event, IndexParams, Record, RecordId,
};
use valori_core::q16::quantize_vector;
use valori_core::{Metric, q16::QuantizeError};
use valori_engine::{Engine, EngineError};
use valori_query::datafusion::arrow::array::{Array, AsArray};
use valori_query::datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use valori_query::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use valori_query::session::Session;
use valori_query::statement::{Access, Outcome};
use valori_query::{QueryEngine, QueryError, QueryOutput};
use valori_wire::pg::error::PgError;

/// The statement layer as a sqllogictest database: every statement —
/// queries, writes, `SET`/`SHOW` — runs as over the Postgres protocol,
/// through [`QueryEngine::prepare`] and [`QueryEngine::run`] with one
/// session, and a failure reads as the Postgres front end reports it
/// (message and SQLSTATE), so the wire suites run here too.
#[derive(Debug, Clone)]
pub struct ValoriDb {
    query: QueryEngine,
    session: Session,
}

impl ValoriDb {
    pub fn new(engine: Arc<Engine>) -> ValoriDb {
        ValoriDb {
            query: QueryEngine::new(engine),
            session: Session::default(),
        }
    }
}

/// A statement's failure as the Postgres front end reports it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StatementError(String);

impl From<QueryError> for StatementError {
    fn from(e: QueryError) -> StatementError {
        let e = PgError::from(e);
        StatementError(format!("{} (SQLSTATE {})", e.message(), e.code()))
    }
}

#[async_trait]
impl AsyncDB for ValoriDb {
    type Error = StatementError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, StatementError> {
        let prepared = self.query.prepare(sql).await?;
        let outcome = self
            .query
            .run(&prepared, Vec::new(), &mut self.session, Access::ReadWrite)
            .await?;
        let output = match outcome {
            Outcome::Rows(rows) => rows.collect().await?,
            Outcome::Done { rows, .. } => {
                return Ok(DBOutput::StatementComplete(rows.unwrap_or(0)));
            }
            _ => return Ok(DBOutput::StatementComplete(0)),
        };
        if output.schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let (types, rows) = format_output(&output)?;
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "valori"
    }
}

/// The sqllogictest column type of an Arrow type: `I` integers, `R`
/// floating point and decimals, `T` text, `?` anything else.
pub fn column_type(data_type: &DataType) -> DefaultColumnType {
    if data_type.is_integer() {
        DefaultColumnType::Integer
    } else if data_type.is_floating() || data_type.is_decimal() {
        DefaultColumnType::FloatingPoint
    } else if matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        DefaultColumnType::Text
    } else {
        DefaultColumnType::Any
    }
}

/// Column types and rows of a statement's output, every value formatted by
/// [`format_value`].
pub fn format_output(
    output: &QueryOutput,
) -> Result<(Vec<DefaultColumnType>, Vec<Vec<String>>), QueryError> {
    let types = output
        .schema
        .fields()
        .iter()
        .map(|f| column_type(f.data_type()))
        .collect();
    let mut rows = Vec::new();
    for batch in &output.batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| format_value(column.as_ref(), row))
                .collect::<Result<Vec<String>, QueryError>>()?;
            rows.push(values);
        }
    }
    Ok((types, rows))
}

/// One value as text, the same on every machine:
///
/// - NULL is `NULL`; an empty string is `(empty)` (sqllogictest's habit);
/// - integers in decimal; floats in Rust's shortest round-trip form
///   (`0.75`, `2`, `1.4142135623730951`), `NaN`, `inf`, `-inf`;
/// - binary as `\x` and lowercase hex (Postgres's `bytea` output);
/// - lists as `[a,b,c]` (pgvector's text form), each element by these
///   rules;
/// - anything else by Arrow's display formatter.
pub fn format_value(array: &dyn Array, row: usize) -> Result<String, QueryError> {
    if array.is_null(row) {
        return Ok("NULL".to_owned());
    }
    let text = match array.data_type() {
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Float32 => array.as_primitive::<Float32Type>().value(row).to_string(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).to_string(),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_owned(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_owned(),
        DataType::Utf8View => array.as_string_view().value(row).to_owned(),
        DataType::Binary => hex(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => hex(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => hex(array.as_binary_view().value(row)),
        DataType::FixedSizeList(..) => list(array.as_fixed_size_list().value(row).as_ref())?,
        DataType::List(_) => list(array.as_list::<i32>().value(row).as_ref())?,
        DataType::LargeList(_) => list(array.as_list::<i64>().value(row).as_ref())?,
        _ => {
            let options = FormatOptions::default().with_null("NULL");
            let formatter = ArrayFormatter::try_new(array, &options).map_err(|e| {
                QueryError::from(valori_query::datafusion::error::DataFusionError::from(e))
            })?;
            formatter.value(row).to_string()
        }
    };
    Ok(if text.is_empty() {
        "(empty)".to_owned()
    } else {
        text
    })
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn list(values: &dyn Array) -> Result<String, QueryError> {
    let items = (0..values.len())
        .map(|i| format_value(values, i))
        .collect::<Result<Vec<String>, QueryError>>()?;
    Ok(format!("[{}]", items.join(",")))
}

/// Why the fixture could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Quantize(#[from] QuantizeError),
    #[error("bad collection name: {0}")]
    Name(#[from] valori_core::event::NameError),
}

fn collection(name: &str, dim: u32) -> Result<(CollectionName, Event), FixtureError> {
    let name = CollectionName::new(name)?;
    let event = Event::CreateCollection {
        name: name.clone(),
        config: CollectionConfig {
            dim,
            metric: Metric::L2,
            index: IndexParams::default(),
        },
    };
    Ok((name, event))
}

/// Writes the fixture described in the crate documentation.
pub fn seed_fixture(engine: &Engine) -> Result<(), FixtureError> {
    let (docs, create) = collection("docs", 3)?;
    engine.submit(create)?;
    let rows: [(u64, [f32; 3], u64, &str); 9] = [
        (1, [1.0, 0.0, 0.0], 7, "one"),
        (2, [0.0, 1.0, 0.0], 7, "two"),
        (3, [0.0, 0.0, 1.0], 8, "three"),
        (4, [1.0, 1.0, 0.0], 7, ""),
        (5, [3.0, 4.0, 0.0], 9, "five"),
        (6, [-1.0, 0.0, 0.0], 8, "six"),
        (7, [0.5, 0.5, 0.5], 7, "seven"),
        (8, [2.0, 2.0, 2.0], 8, "eight"),
        (9, [0.0, -1.0, 0.0], 0, "nine"),
    ];
    // The first rows as one batch, the rest one by one: both write paths.
    let mut batch = Batch::new(3);
    for (id, vector, tag, metadata) in &rows[..4] {
        batch.push(
            RecordId(*id),
            &quantize_vector(vector)?,
            *tag,
            metadata.as_bytes(),
        );
    }
    engine.submit(Event::InsertBatch {
        collection: docs.clone(),
        batch,
    })?;
    for (id, vector, tag, metadata) in &rows[4..] {
        engine.submit(Event::Insert {
            collection: docs.clone(),
            record: Record {
                id: RecordId(*id),
                vector: quantize_vector(vector)?,
                tag: *tag,
                metadata: metadata.as_bytes().to_vec(),
            },
        })?;
    }
    engine.submit(Event::Delete {
        collection: docs.clone(),
        id: RecordId(8),
    })?;
    engine.submit(Event::SetTag {
        collection: docs,
        id: RecordId(9),
        tag: 7,
    })?;

    let (wide, create) = collection("wide", 2)?;
    engine.submit(create)?;
    engine.submit(Event::Insert {
        collection: wide,
        record: Record {
            id: RecordId(1),
            vector: vec![(1 << 24) + 1, 0],
            tag: 1,
            metadata: Vec::new(),
        },
    })?;
    Ok(())
}

/// Why a suite failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    #[error("{0}")]
    Test(#[from] sqllogictest::TestError),
}

/// Runs the `.slt` file at `path` against a fresh engine in a temporary
/// directory seeded with the fixture.
pub async fn run_suite(path: &Path) -> Result<(), SuiteError> {
    let dir = tempfile::tempdir()?;
    let engine = Arc::new(Engine::open(dir.path())?);
    seed_fixture(&engine)?;
    let db = ValoriDb::new(Arc::clone(&engine));
    let mut runner = sqllogictest::Runner::new(move || {
        let db = db.clone();
        async move { Ok::<ValoriDb, StatementError>(db) }
    });
    // The runner's default accepts any declared column types.
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner.run_file_async(path).await?;
    Ok(())
}
