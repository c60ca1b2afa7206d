//! SQL writes: DDL and DML turned into events.
//!
//! [`parse`] classifies one statement with DataFusion's sqlparser
//! (Postgres dialect). A write becomes a [`WriteStatement`]; anything else
//! (`SELECT`, `EXPLAIN`, `SHOW`, …) is `None` and goes to the query engine.
//! [`execute`] checks a write completely against the current state and only
//! then submits its events through `Engine::submit`, so bad input writes
//! nothing.
//!
//! | SQL | events |
//! |---|---|
//! | `CREATE TABLE docs (id BIGINT PRIMARY KEY, vec VECTOR(3), tag BIGINT, metadata JSONB) [WITH (metric = 'cosine', m = 16, ef_construction = 64, seed = 7)]` | one `CreateCollection` |
//! | `DROP TABLE [IF EXISTS] a, b` | one `DropCollection`, or one `DropCollections` for several tables |
//! | `INSERT INTO docs [(cols)] VALUES (…), (…)` | one `Insert` or `InsertBatch`: atomic |
//! | `INSERT INTO items … [ON CONFLICT …] [RETURNING …]` (declared columns) | one `InsertRows`, and one `UpdateRows` for `DO UPDATE` ([`crate::declared::insert`]) |
//! | `INSERT INTO t … SELECT …` | the query's rows, inserted as `VALUES` would be |
//! | `DELETE FROM docs WHERE id = 1` / `id IN (1, 2)` | one `Delete`, or one `DeleteBatch` of the existing ids |
//! | `UPDATE docs SET tag = 3, metadata = '{}' WHERE id = …` | one `SetTag` or `SetMetadata`, or one `UpdateBatch` of the existing ids |
//! | `ALTER TABLE items ADD COLUMN … / DROP COLUMN … / RENAME …` (declared columns) | one `AlterTable` ([`crate::alter`]) |
//! | `COPY docs [(cols)] FROM STDIN [WITH (FORMAT csv, HEADER)]` | rows parsed by [`copy_rows`], inserted like `INSERT`: one event, at most `BATCH_RECORDS_MAX` rows |
//!
//! Every statement is one event, so one log frame: it is durable whole or
//! not at all, also across a crash (recovery keeps a prefix of frames, so
//! two events of one statement could be split by a crash).
//! | `CREATE INDEX … ON docs USING hnsw (vec vector_l2_ops) WITH (m = 16)` | none: every collection has its index |
//!
//! A table has the fixed columns `id` (`BIGINT`, the record id), `vec`
//! (`VECTOR(n)`), `tag` (`BIGINT`, default 0) and `metadata` (`BYTEA` or
//! `JSONB`, default empty). `metric` is `l2` (default), `inner_product`
//! (or `ip`) or `cosine`.
//!
//! Values are literals: numbers, strings, `NULL` (only for `metadata`),
//! `ARRAY[…]` of numbers for vectors, `'[1,2,3]'` (optionally
//! `::vector`) for vectors, `'\x0102'` or `X'0102'` (or `'…'::bytea`) for
//! raw metadata bytes. Any other string given as metadata must be JSON; it
//! is stored in the canonical form of [`crate::metadata::from_json_text`],
//! so the same value gives the same bytes from REST, Python and SQL.
//! `INSERT` without an `id` column lets the engine choose ids
//! (`Engine::submit_with_next_id`).

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::array::Array;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, BinaryOperator, CopyLegacyCsvOption, CopyLegacyOption, CopyOption,
    CopySource, CopyTarget, CreateTableOptions, Expr, FromTable, ObjectName, SetExpr, SqlOption,
    Statement, TableFactor, TableObject, UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use valori_core::distance::Metric;
use valori_core::event::{
    Batch, CollectionConfig, CollectionName, Event, IndexParams, Record, RecordId,
};
use valori_core::limits;
use valori_core::q16::quantize;
use valori_core::state::{ApplyError, ReferenceError};
use valori_core::table::{NULL_VECTOR_TAG, RowError, ScalarType, TableSchema};
use valori_engine::{Engine, EngineError};

use crate::pgvector::is_vector_type;

/// Why a write was refused. Nothing was written, except where
/// [`WriteError::Engine`] reports a storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The SQL does not parse.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// Valid SQL that Valori does not support.
    #[error("{0}")]
    Unsupported(String),
    #[error("table {0:?} does not exist")]
    UndefinedTable(String),
    #[error("{0}")]
    UndefinedColumn(String),
    /// A column added or renamed to a name the table has.
    #[error("{0}")]
    DuplicateColumn(String),
    #[error("table {0:?} already exists")]
    TableExists(String),
    /// A value that does not parse as its column's type (a malformed
    /// vector, number or JSON text).
    #[error("{0}")]
    InvalidText(String),
    /// A value of the right form that is not acceptable (NaN, out of
    /// range, wrong dimension, NULL where none is allowed).
    #[error("{0}")]
    InvalidValue(String),
    /// A record id that already exists (or appears twice in one insert).
    #[error("{0}")]
    Duplicate(String),
    /// NULL in a NOT NULL column.
    #[error("{0}")]
    NotNull(String),
    /// One statement proposed the same row twice where only once is
    /// allowed (`ON CONFLICT DO UPDATE`).
    #[error("{0}")]
    Cardinality(String),
    /// A column named where the statement needs a unique one (an `ON
    /// CONFLICT` target without a unique constraint).
    #[error("{0}")]
    InvalidReference(String),
    /// A number outside its column type's range.
    #[error("{0}")]
    OutOfRange(String),
    /// A size limit was exceeded.
    #[error("{0}")]
    TooLarge(String),
    /// `DROP INDEX` of a name no table's index has.
    #[error("index {0:?} does not exist")]
    UndefinedIndex(String),
    /// `CREATE INDEX` under a name a relation has.
    #[error("relation {0:?} already exists")]
    IndexExists(String),
    /// A concurrent statement changed the records this one was checked
    /// against; nothing was written and the statement may be retried.
    #[error("{0}")]
    Conflict(String),
    /// A value given for a `GENERATED ALWAYS AS IDENTITY` column.
    #[error("{0}")]
    GeneratedAlways(String),
    /// A write that would leave a foreign key value without the row it
    /// references, or delete or change a row still referenced.
    #[error("{0}")]
    ForeignKeyViolation(String),
    /// A table or column dropped while a foreign key depends on it.
    #[error("{0}")]
    DependentObjects(String),
    /// A foreign key whose referenced column is not unique (or a table
    /// without the primary key it names).
    #[error("{0}")]
    InvalidForeignKey(String),
    /// A foreign key between columns of incompatible types.
    #[error("{0}")]
    DatatypeMismatch(String),
    /// `DROP CONSTRAINT` of a name the table's constraints do not have.
    #[error("{0}")]
    UndefinedConstraint(String),
    /// Text longer than its `varchar(n)` or `character(n)` column.
    #[error("{0}")]
    StringTooLong(String),
    /// A value that does not convert to its integer column's type (out
    /// of range, text that is not an integer), worded as Postgres words
    /// it, with the column.
    #[error("{}", cast_message(error, column.as_deref()))]
    Cast {
        column: Option<String>,
        error: crate::casts::CastError,
    },
    /// The engine refused the event or failed.
    #[error(transparent)]
    Engine(EngineError),
}

fn cast_message(error: &crate::casts::CastError, column: Option<&str>) -> String {
    match column {
        Some(column) => format!("{error} (column {column:?})"),
        None => error.to_string(),
    }
}

impl From<EngineError> for WriteError {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::Rejected(apply) => match apply {
                // A statement's own transaction (an UPDATE that moves
                // rows to new keys): the write refused is the statement's.
                ApplyError::InTransaction { source, .. } => {
                    WriteError::from(EngineError::Rejected((**source).clone()))
                }
                ApplyError::UnknownCollection(name) => WriteError::UndefinedTable(name.to_string()),
                ApplyError::CollectionExists(name) => WriteError::TableExists(name.to_string()),
                ApplyError::DuplicateId { .. } => WriteError::Duplicate(e.to_string()),
                ApplyError::MetadataTooLarge { .. }
                | ApplyError::BadBatchSize
                | ApplyError::TooManyCollections => WriteError::TooLarge(e.to_string()),
                ApplyError::DimensionMismatch { .. }
                | ApplyError::BadDimension(_)
                | ApplyError::BadIndexParams { .. } => WriteError::InvalidValue(e.to_string()),
                ApplyError::Reference(r) => {
                    let text = r.to_string();
                    match **r {
                        ReferenceError::Missing { .. } | ReferenceError::StillReferenced { .. } => {
                            WriteError::ForeignKeyViolation(text)
                        }
                        ReferenceError::Dependent { .. } => WriteError::DependentObjects(text),
                        ReferenceError::UnknownTable { ref referenced, .. } => {
                            WriteError::UndefinedTable(referenced.to_string())
                        }
                        ReferenceError::UnknownColumn { .. } => WriteError::UndefinedColumn(text),
                        ReferenceError::NotUnique { .. } => WriteError::InvalidForeignKey(text),
                        ReferenceError::Types { .. } => WriteError::DatatypeMismatch(text),
                        _ => WriteError::Unsupported(text),
                    }
                }
                // A cascade's SET NULL on a NOT NULL column, SET NOT NULL
                // over NULLs, a unique constraint over several columns.
                ApplyError::Row { source, .. } => match **source {
                    RowError::Null { .. } => WriteError::NotNull(e.to_string()),
                    RowError::Duplicate { .. } => WriteError::Duplicate(e.to_string()),
                    RowError::Value { .. } => WriteError::InvalidValue(e.to_string()),
                    _ => WriteError::Engine(e),
                },
                _ => WriteError::Engine(e),
            },
            EngineError::EventTooLarge { .. } => WriteError::TooLarge(e.to_string()),
            _ => WriteError::Engine(e),
        }
    }
}

/// A table column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Column {
    Id,
    Vec,
    Tag,
    Metadata,
}

impl Column {
    /// The columns in table order (the order of an `INSERT` or `COPY`
    /// without a column list).
    pub const ALL: [Column; 4] = [Column::Id, Column::Vec, Column::Tag, Column::Metadata];

    pub fn name(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Vec => "vec",
            Column::Tag => "tag",
            Column::Metadata => "metadata",
        }
    }

    fn parse(name: &str, table: &str) -> Result<Column, WriteError> {
        Column::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                WriteError::UndefinedColumn(format!(
                    "column {name:?} of table {table:?} does not exist (columns: id, vec, tag, metadata)"
                ))
            })
    }
}

/// A value as written in the statement, not yet checked against its
/// column.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Null,
    /// A number as written (Postgres's `integer`, `bigint` or `numeric`
    /// constant), or an integer or `numeric` value.
    Number(String),
    /// A `real` or `double precision` value: a parameter or a query's
    /// value of that type, or a constant cast to it. Written to an
    /// integer column it rounds half to even, where a [`Literal::Number`]
    /// rounds half away from zero.
    Float(Float),
    Text(String),
    /// `X'…'` or a string cast to `bytea`.
    Bytes(Vec<u8>),
    /// A string cast to `json` / `jsonb`.
    Json(String),
    /// `ARRAY[…]`.
    Array(Vec<Literal>),
    Bool(bool),
    /// `$n`, bound later.
    Param(usize),
    /// `DEFAULT` among an `INSERT`'s values: the column's default (its
    /// sequence, `now()`, a literal, or NULL), as when the column is left
    /// out of the column list.
    Default,
}

/// A floating-point value in its own width.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Float {
    Real(f32),
    Double(f64),
}

impl Float {
    pub fn value(self) -> f64 {
        match self {
            Float::Real(x) => f64::from(x),
            Float::Double(x) => x,
        }
    }

    /// The shortest text that reads back as the value in its own width.
    pub fn text(self) -> String {
        match self {
            Float::Real(x) => x.to_string(),
            Float::Double(x) => x.to_string(),
        }
    }

    /// The value as a `numeric`, as Postgres converts it: rounded to the
    /// width's significant digits (`float4_numeric` prints 6 with
    /// `%.*g`, `float8_numeric` 15), so `0.1::real` is `0.1`. `None` for
    /// NaN and the infinities.
    pub fn numeric_text(self) -> Option<String> {
        let (x, digits) = match self {
            Float::Real(x) => (f64::from(x), 6),
            Float::Double(x) => (x, 15),
        };
        if !x.is_finite() {
            return None;
        }
        crate::declared::canonical_decimal(&format!("{x:.*e}", digits - 1))
    }
}

/// `ON CONFLICT (column) DO NOTHING | DO UPDATE SET …` of an `INSERT`.
#[derive(Clone, Debug, PartialEq)]
pub struct OnConflict {
    /// The conflict target's column; `None` (only with `DO NOTHING`):
    /// any unique column.
    pub target: Option<String>,
    /// `None`: `DO NOTHING`.
    pub update: Option<Vec<(String, SetValue)>>,
}

/// A value an `ON CONFLICT … DO UPDATE SET` assigns.
#[derive(Clone, Debug, PartialEq)]
pub enum SetValue {
    /// `EXCLUDED.column`: the value the conflicting row proposed.
    Excluded(String),
    Value(Literal),
}

/// One column of a `RETURNING` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnItem {
    /// The column; `None` for `*` (every column).
    pub column: Option<String>,
    /// The name it is answered under.
    pub alias: Option<String>,
    /// The table the column was qualified with (`t.col`,
    /// `public.t.col`), checked against the written table.
    pub qualifier: Option<String>,
}

/// How `COPY` data is laid out: text (the default), csv, or binary
/// (Postgres's `PGCOPY` stream, read and written by the front end that
/// speaks the protocol).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    pub binary: bool,
    pub delimiter: char,
    pub header: bool,
    pub null: String,
    pub quote: char,
    pub escape: char,
}

impl CopyFormat {
    fn text() -> CopyFormat {
        CopyFormat {
            csv: false,
            binary: false,
            delimiter: '\t',
            header: false,
            null: "\\N".into(),
            quote: '"',
            escape: '"',
        }
    }

    fn csv() -> CopyFormat {
        CopyFormat {
            csv: true,
            delimiter: ',',
            null: String::new(),
            ..CopyFormat::text()
        }
    }
}

/// A parsed write.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum WriteStatement {
    CreateTable {
        name: CollectionName,
        config: CollectionConfig,
        if_not_exists: bool,
    },
    /// `CREATE TABLE` with declared columns ([`crate::declared`]).
    CreateDeclaredTable {
        name: CollectionName,
        config: CollectionConfig,
        schema: TableSchema,
        if_not_exists: bool,
    },
    DropTable {
        names: Vec<String>,
        if_exists: bool,
    },
    Insert {
        table: String,
        /// The fixed columns named (empty when a name is not one of
        /// them: the table must then have declared columns).
        columns: Vec<Column>,
        /// The column list as written, `None` without one.
        names: Option<Vec<String>>,
        rows: Vec<Vec<Literal>>,
        /// `INSERT … SELECT`: the query whose rows are inserted (`rows`
        /// is then empty until the statement layer has run it).
        select: Option<Box<ast::Query>>,
        on_conflict: Option<OnConflict>,
        /// `RETURNING`: the columns to answer with, `None` without it.
        returning: Option<Vec<ReturnItem>>,
    },
    Delete {
        table: String,
        /// The ids of `WHERE id = … / id IN (…)`; empty for another
        /// `WHERE` (or none).
        ids: Vec<Literal>,
        /// The `WHERE` clause as written (`None` without one).
        selection: Option<Box<Expr>>,
        /// The records the statement layer found for `selection`.
        matched: Option<Vec<u64>>,
        /// `RETURNING`: the columns of the deleted rows to answer with.
        returning: Option<Vec<ReturnItem>>,
    },
    Update {
        table: String,
        /// As for `Delete`.
        ids: Vec<Literal>,
        selection: Option<Box<Expr>>,
        matched: Option<Vec<u64>>,
        /// `RETURNING`: the columns of the updated rows to answer with.
        returning: Option<Vec<ReturnItem>>,
        tag: Option<Literal>,
        metadata: Option<Literal>,
        /// Every assignment of a literal or placeholder: a declared
        /// table's columns (the fixed `tag` and `metadata` above are
        /// these, resolved).
        sets: Vec<(String, Literal)>,
        /// Assignments of any other expression (`n = n + 1`,
        /// `updated_at = now()`): evaluated per row by the statement layer
        /// on the state the update is applied to.
        computed: Vec<(String, Box<Expr>)>,
        /// Their values per record, in the order of `computed`, once the
        /// statement layer has evaluated them.
        computed_rows: Option<Vec<(u64, Vec<Literal>)>>,
    },
    CreateIndex {
        table: String,
        /// The index name given, if any.
        name: Option<String>,
        if_not_exists: bool,
        /// The indexed column, or the indexed expression, as written.
        column: String,
        /// Whether `column` is a column's name rather than an expression.
        plain: bool,
        /// The columns the index reads (one, or those of its expression).
        referenced: Vec<String>,
        /// `USING btree` (or no method) or `USING gin`: an index on
        /// scalar columns or an expression over them.
        scalar: bool,
        metric: Option<Metric>,
        /// `vector_l1_ops`: the graph has no L1 form.
        l1: bool,
        m: Option<u16>,
        ef_construction: Option<u16>,
    },
    /// `DROP INDEX [IF EXISTS] name, …`: each a btree index a column
    /// carries.
    DropIndex {
        names: Vec<String>,
        if_exists: bool,
    },
    /// `TRUNCATE t`: every row deleted in one event.
    Truncate {
        table: String,
    },
    /// `ALTER TABLE t …`: one `AlterTable` event ([`crate::alter`]).
    AlterTable {
        table: String,
        if_exists: bool,
        steps: Vec<crate::alter::AlterStep>,
    },
    CopyFrom {
        table: String,
        /// The fixed columns named (empty when a name is not one of them:
        /// the table must then have declared columns).
        columns: Vec<Column>,
        /// The column list as written, `None` without one.
        names: Option<Vec<String>>,
        format: CopyFormat,
    },
}

impl WriteStatement {
    /// The command tag's verb (`INSERT`, `CREATE TABLE`, …).
    pub fn command(&self) -> &'static str {
        match self {
            WriteStatement::CreateTable { .. } | WriteStatement::CreateDeclaredTable { .. } => {
                "CREATE TABLE"
            }
            WriteStatement::DropTable { .. } => "DROP TABLE",
            WriteStatement::Insert { .. } => "INSERT",
            WriteStatement::Delete { .. } => "DELETE",
            WriteStatement::Update { .. } => "UPDATE",
            WriteStatement::CreateIndex { .. } => "CREATE INDEX",
            WriteStatement::DropIndex { .. } => "DROP INDEX",
            WriteStatement::CopyFrom { .. } => "COPY",
            WriteStatement::Truncate { .. } => "TRUNCATE TABLE",
            WriteStatement::AlterTable { .. } => "ALTER TABLE",
        }
    }

    /// The table and the `RETURNING` list of an `INSERT`, `UPDATE` or
    /// `DELETE` that has one.
    pub fn returning(&self) -> Option<(&str, &[ReturnItem])> {
        match self {
            WriteStatement::Insert {
                table,
                returning: Some(items),
                ..
            }
            | WriteStatement::Update {
                table,
                returning: Some(items),
                ..
            }
            | WriteStatement::Delete {
                table,
                returning: Some(items),
                ..
            } => Some((table, items)),
            _ => None,
        }
    }

    /// The column each placeholder `$n` stands for, as `(n, column)`.
    pub fn parameter_columns(&self) -> Vec<(usize, Column)> {
        let mut out = Vec::new();
        let mut note = |literal: &Literal, column: Column| {
            if let Literal::Param(n) = literal {
                out.push((*n, column));
            }
        };
        match self {
            WriteStatement::Insert { columns, rows, .. } => {
                for row in rows {
                    for (literal, column) in row.iter().zip(columns) {
                        note(literal, *column);
                    }
                }
            }
            WriteStatement::Delete { ids, .. } => ids.iter().for_each(|l| note(l, Column::Id)),
            WriteStatement::Update {
                ids, tag, metadata, ..
            } => {
                ids.iter().for_each(|l| note(l, Column::Id));
                if let Some(tag) = tag {
                    note(tag, Column::Tag);
                }
                if let Some(metadata) = metadata {
                    note(metadata, Column::Metadata);
                }
            }
            _ => {}
        }
        out.sort();
        out.dedup_by_key(|(n, _)| *n);
        out
    }
}

/// What a write did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Rows inserted, deleted, updated or copied.
    pub rows: u64,
    /// Messages for the client that are not errors (Postgres NOTICEs).
    pub notices: Vec<String>,
    /// The rows as the write stored them, when the statement asked for
    /// them (`RETURNING`).
    pub written: Option<Written>,
}

/// Rows of a declared table as a write stored them, in the statement's
/// order: what `RETURNING` answers with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub rows: usize,
    /// Each row's vector (Q16.16), one after the other; zeros for a NULL
    /// vector.
    pub vectors: Vec<i32>,
    /// Each row's record tag: 0, or [`NULL_VECTOR_TAG`] for a NULL vector.
    pub tags: Vec<u64>,
    /// Per scalar column of the table, one value per row.
    pub columns: Vec<valori_core::table::ColumnValues>,
}

impl Written {
    /// Appends a row's vector: its components, or the zero vector under
    /// [`NULL_VECTOR_TAG`] for NULL.
    pub(crate) fn push_vector(&mut self, vector: Option<&[i32]>, dim: usize) {
        match vector {
            Some(v) => self.vectors.extend_from_slice(v),
            None => self.vectors.resize(self.vectors.len() + dim, 0),
        }
        self.tags
            .push(if vector.is_some() { 0 } else { NULL_VECTOR_TAG });
    }
}

fn syntax(e: impl std::fmt::Display) -> WriteError {
    WriteError::Syntax(e.to_string())
}

fn unsupported(what: impl Into<String>) -> WriteError {
    WriteError::Unsupported(what.into())
}

/// The statement as a write, `Ok(None)` when it is not one (a query), or
/// why it is a write Valori refuses.
pub fn parse(sql: &str) -> Result<Option<WriteStatement>, WriteError> {
    let first = crate::sql_text::strip_leading_comments(sql)
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !matches!(
        first.as_str(),
        "create" | "drop" | "insert" | "delete" | "update" | "copy" | "alter" | "truncate"
    ) {
        return Ok(None);
    }
    // The parser, the walks below and the drop of the tree recurse as
    // deep as the statement's expressions, on the caller's stack: a write
    // may hold only shapes an ordinary stack holds (lists stay as wide as
    // the statement length allows; a long disjunction is written IN (…)).
    let shape = crate::sql_text::check_expression_bounds(sql)
        .map_err(|e| WriteError::TooLarge(e.to_string()))?;
    if shape.is_deep() {
        return Err(WriteError::TooLarge(format!(
            "write statement expressions nest {} levels and chain {} tokens; writes allow at \
             most {} levels and {} tokens per chain (use IN (...) for long lists)",
            shape.nesting,
            shape.chain,
            crate::sql_text::Shape::DEEP_NESTING,
            crate::sql_text::Shape::DEEP_CHAIN
        )));
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(syntax)?;
    if statements.len() != 1 {
        return Err(syntax("expected exactly one statement"));
    }
    let statement = statements.remove(0);
    statement_to_write(statement).map(Some)
}

/// A parsed statement the statement layer found to be a write
/// ([`crate::statement`]), checked as [`parse`] checks it.
pub fn from_statement(statement: Statement) -> Result<WriteStatement, WriteError> {
    statement_to_write(statement)
}

/// A timestamp of `micros` since the epoch as the text a column reads
/// (`+00` marks one with a time zone).
fn timestamp_literal(micros: i64, zoned: bool) -> Literal {
    let text = crate::declared::timestamp_text(micros);
    Literal::Text(if zoned { format!("{text}+00") } else { text })
}

impl Literal {
    /// A bound parameter's value as the literal it stands for.
    pub(crate) fn from_scalar(value: &ScalarValue) -> Literal {
        if value.is_null() {
            return Literal::Null;
        }
        match value {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Literal::Text(s.clone()),
            ScalarValue::Binary(Some(b))
            | ScalarValue::LargeBinary(Some(b))
            | ScalarValue::BinaryView(Some(b))
            | ScalarValue::FixedSizeBinary(_, Some(b)) => Literal::Bytes(b.clone()),
            ScalarValue::Boolean(Some(b)) => Literal::Bool(*b),
            ScalarValue::Float32(Some(x)) => Literal::Float(Float::Real(*x)),
            ScalarValue::Float64(Some(x)) => Literal::Float(Float::Double(*x)),
            // Postgres keeps microseconds: finer units are truncated
            // toward the past.
            ScalarValue::TimestampMicrosecond(Some(v), tz) => timestamp_literal(*v, tz.is_some()),
            ScalarValue::TimestampNanosecond(Some(v), tz) => {
                timestamp_literal(v.div_euclid(1_000), tz.is_some())
            }
            ScalarValue::TimestampMillisecond(Some(v), tz) => {
                timestamp_literal(v.saturating_mul(1_000), tz.is_some())
            }
            ScalarValue::TimestampSecond(Some(v), tz) => {
                timestamp_literal(v.saturating_mul(1_000_000), tz.is_some())
            }
            ScalarValue::Date32(Some(_)) => Literal::Text(value.to_string()),
            ScalarValue::List(_) | ScalarValue::LargeList(_) | ScalarValue::FixedSizeList(_) => {
                use datafusion::arrow::array::AsArray;
                let items = value.to_array().ok().and_then(|array| {
                    let values = match array.data_type() {
                        datafusion::arrow::datatypes::DataType::List(_) => {
                            array.as_list::<i32>().value(0)
                        }
                        datafusion::arrow::datatypes::DataType::LargeList(_) => {
                            array.as_list::<i64>().value(0)
                        }
                        _ => array.as_fixed_size_list_opt()?.value(0),
                    };
                    Some(
                        (0..values.len())
                            .map(|j| {
                                ScalarValue::try_from_array(&values, j)
                                    .map_or(Literal::Null, |v| Literal::from_scalar(&v))
                            })
                            .collect(),
                    )
                });
                match items {
                    Some(items) => Literal::Array(items),
                    None => Literal::Text(value.to_string()),
                }
            }
            other => Literal::Number(other.to_string()),
        }
    }

    fn bind(&mut self, params: &[ScalarValue]) -> Result<(), WriteError> {
        match self {
            Literal::Param(n) => {
                let value = params.get(n.wrapping_sub(1)).ok_or_else(|| unbound(*n))?;
                *self = Literal::from_scalar(value);
            }
            Literal::Array(items) => {
                for item in items {
                    item.bind(params)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl WriteStatement {
    /// The statement with each placeholder `$n` replaced by its value.
    pub fn bind(&self, params: &[ScalarValue]) -> Result<WriteStatement, WriteError> {
        let mut bound = self.clone();
        let bind_all = |literals: &mut [Literal]| -> Result<(), WriteError> {
            literals.iter_mut().try_for_each(|l| l.bind(params))
        };
        match &mut bound {
            WriteStatement::Insert {
                rows, on_conflict, ..
            } => {
                for row in rows {
                    bind_all(row)?;
                }
                for (_, value) in on_conflict
                    .iter_mut()
                    .flat_map(|c| c.update.iter_mut().flatten())
                {
                    if let SetValue::Value(literal) = value {
                        literal.bind(params)?;
                    }
                }
            }
            WriteStatement::Delete { ids, .. } => bind_all(ids)?,
            WriteStatement::Update {
                ids,
                tag,
                metadata,
                sets,
                ..
            } => {
                bind_all(ids)?;
                if let Some(tag) = tag {
                    tag.bind(params)?;
                }
                if let Some(metadata) = metadata {
                    metadata.bind(params)?;
                }
                for (_, value) in sets {
                    value.bind(params)?;
                }
            }
            _ => {}
        }
        Ok(bound)
    }
}

fn statement_to_write(statement: Statement) -> Result<WriteStatement, WriteError> {
    match statement {
        Statement::CreateTable(create) => create_table(create),
        Statement::Drop {
            object_type,
            if_exists,
            names,
            ..
        } => {
            if object_type == ast::ObjectType::Index {
                let names = names.iter().map(table_name).collect::<Result<_, _>>()?;
                return Ok(WriteStatement::DropIndex { names, if_exists });
            }
            if object_type != ast::ObjectType::Table {
                return Err(unsupported(format!(
                    "DROP {object_type} is not supported; only DROP TABLE and DROP INDEX"
                )));
            }
            let names = names.iter().map(table_name).collect::<Result<_, _>>()?;
            Ok(WriteStatement::DropTable { names, if_exists })
        }
        Statement::Insert(insert) => insert_statement(insert),
        Statement::Delete(delete) => {
            for (given, clause) in [
                (delete.using.is_some(), "USING"),
                (delete.limit.is_some(), "LIMIT"),
            ] {
                if given {
                    return Err(unsupported(format!("DELETE … {clause} is not supported")));
                }
            }
            let tables = match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let [from] = tables.as_slice() else {
                return Err(unsupported("DELETE from exactly one table"));
            };
            let table = relation_name(&from.relation)?;
            let ids = where_ids(delete.selection.as_ref(), "DELETE").unwrap_or_default();
            Ok(WriteStatement::Delete {
                table,
                ids,
                selection: delete.selection.map(Box::new),
                matched: None,
                returning: delete
                    .returning
                    .as_deref()
                    .map(returning_items)
                    .transpose()?,
            })
        }
        Statement::Update(update) => {
            for (given, clause) in [
                (update.from.is_some(), "FROM"),
                (update.limit.is_some(), "LIMIT"),
            ] {
                if given {
                    return Err(unsupported(format!("UPDATE … {clause} is not supported")));
                }
            }
            let table = relation_name(&update.table.relation)?;
            let mut sets = Vec::with_capacity(update.assignments.len());
            let mut computed: Vec<(String, Box<Expr>)> = Vec::new();
            for assignment in &update.assignments {
                let name = assigned_column(assignment, &sets, "UPDATE")?;
                if computed.iter().any(|(n, _)| *n == name) {
                    return Err(WriteError::Syntax(format!(
                        "multiple assignments to same column {name:?}"
                    )));
                }
                match literal(&assignment.value) {
                    Ok(value) => sets.push((name, value)),
                    Err(_) => computed.push((name, Box::new(assignment.value.clone()))),
                }
            }
            // The fixed columns' assignments; which table the statement
            // is for decides when it runs whether they are the ones.
            let mut tag = None;
            let mut metadata = None;
            for (name, value) in &sets {
                match Column::parse(name, &table) {
                    Ok(Column::Tag) => tag = Some(value.clone()),
                    Ok(Column::Metadata) => metadata = Some(value.clone()),
                    _ => {}
                }
            }
            let ids = where_ids(update.selection.as_ref(), "UPDATE").unwrap_or_default();
            Ok(WriteStatement::Update {
                table,
                ids,
                selection: update.selection.map(Box::new),
                matched: None,
                returning: update
                    .returning
                    .as_deref()
                    .map(returning_items)
                    .transpose()?,
                tag,
                metadata,
                sets,
                computed,
                computed_rows: None,
            })
        }
        Statement::CreateIndex(index) => {
            let table = table_name(&index.table_name)?;
            let method = index
                .using
                .as_ref()
                .map_or("btree".to_owned(), |u| u.to_string().to_ascii_lowercase());
            if !matches!(method.as_str(), "hnsw" | "ivfflat" | "btree" | "gin") {
                return Err(unsupported(format!(
                    "index method {method}: Valori's vector index is HNSW (USING hnsw or ivfflat), scalar columns take btree (or gin on json, jsonb and arrays)"
                )));
            }
            if index.unique {
                return Err(unsupported(
                    "CREATE UNIQUE INDEX: declare the column UNIQUE (or PRIMARY KEY) in CREATE TABLE",
                ));
            }
            // A btree index on one column is built (see the execution);
            // other btree and gin indexes are accepted without a
            // structure, so that schemas written for Postgres load.
            let scalar = method == "btree" || method == "gin";
            let [only] = index.columns.as_slice() else {
                return Err(unsupported("an index over several columns"));
            };
            // An index on an expression (`((metadata_ ->> 'key'))`) names
            // the columns it reads; each must exist.
            let expr = match &only.column.expr {
                Expr::Nested(inner) => inner.as_ref(),
                other => other,
            };
            let plain = matches!(expr, Expr::Identifier(_));
            let (column, referenced) = match expr {
                Expr::Identifier(ident) => {
                    let name = crate::declared::ident(ident);
                    (name.clone(), vec![name])
                }
                other if scalar => {
                    let mut referenced = Vec::new();
                    let _ = ast::visit_expressions(other, |e| {
                        if let Expr::Identifier(ident) = e {
                            referenced.push(crate::declared::ident(ident));
                        }
                        std::ops::ControlFlow::<()>::Continue(())
                    });
                    (other.to_string(), referenced)
                }
                other => {
                    return Err(unsupported(format!(
                        "an {method} index on the expression {other}: the vector index is on a vector column"
                    )));
                }
            };
            let mut metric = None;
            let mut l1 = false;
            for column in &index.columns {
                if scalar {
                    break;
                }
                if let Some(class) = &column.operator_class {
                    let class = class.to_string().to_ascii_lowercase();
                    metric = Some(match class.as_str() {
                        "vector_l2_ops" | "halfvec_l2_ops" => Metric::L2,
                        "vector_ip_ops" | "halfvec_ip_ops" => Metric::InnerProduct,
                        "vector_cosine_ops" | "halfvec_cosine_ops" => Metric::Cosine,
                        "vector_l1_ops" | "halfvec_l1_ops" => {
                            l1 = true;
                            continue;
                        }
                        other => {
                            return Err(unsupported(format!(
                                "operator class {other}: expected vector_l2_ops, vector_ip_ops, vector_cosine_ops or vector_l1_ops (or their halfvec_ forms)"
                            )));
                        }
                    });
                }
            }
            let (mut m, mut ef_construction) = (None, None);
            for option in &index.with {
                let Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } = option
                else {
                    return Err(unsupported(format!("index option {option}")));
                };
                let key = left.to_string().to_ascii_lowercase();
                let value = u16_option(&key, right)?;
                match key.as_str() {
                    "m" => m = Some(value),
                    "ef_construction" => ef_construction = Some(value),
                    // IVFFlat's list count: the HNSW index has none.
                    "lists" => {}
                    other => return Err(unsupported(format!("index option {other}"))),
                }
            }
            Ok(WriteStatement::CreateIndex {
                table,
                name: index.name.as_ref().map(table_name).transpose()?,
                if_not_exists: index.if_not_exists,
                column,
                plain: plain && method == "btree",
                referenced,
                scalar,
                metric,
                l1,
                m,
                ef_construction,
            })
        }
        Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } => {
            // `COPY … TO STDOUT` is a query, prepared by the statement
            // layer; files and programs are the server's, never a
            // client's to name.
            if to || target != CopyTarget::Stdin {
                return Err(unsupported(
                    "COPY supports <table> FROM STDIN and <table> or (<query>) TO STDOUT; \
                     a client cannot name a server file or program",
                ));
            }
            let CopySource::Table {
                table_name: name,
                columns,
            } = source
            else {
                return Err(unsupported("COPY FROM STDIN into a table"));
            };
            let table = table_name(&name)?;
            let names: Option<Vec<String>> =
                (!columns.is_empty()).then(|| columns.iter().map(crate::declared::ident).collect());
            // A name outside the fixed columns is a declared table's
            // column, resolved when the statement runs.
            let columns = column_list(names.iter().flatten().cloned(), &table).unwrap_or_default();
            let format = copy_format(&options, &legacy_options)?;
            Ok(WriteStatement::CopyFrom {
                table,
                columns,
                names,
                format,
            })
        }
        Statement::Truncate(truncate) => {
            if truncate.identity == Some(ast::TruncateIdentityOption::Restart) {
                return Err(unsupported(
                    "TRUNCATE … RESTART IDENTITY: a sequence continues after the largest value its column has held",
                ));
            }
            if truncate.cascade == Some(ast::CascadeOption::Cascade) {
                return Err(unsupported(
                    "TRUNCATE … CASCADE is not supported; truncate the tables that reference this one first",
                ));
            }
            let [target] = truncate.table_names.as_slice() else {
                return Err(unsupported(
                    "TRUNCATE of several tables at once; truncate them one by one",
                ));
            };
            Ok(WriteStatement::Truncate {
                table: table_name(&target.name)?,
            })
        }
        Statement::AlterTable(alter) => crate::alter::parse(alter),
        other => Err(unsupported(format!(
            "statement not supported: {}",
            other.to_string().chars().take(60).collect::<String>()
        ))),
    }
}

/// The layout a `COPY`'s options give, checked as Postgres checks them.
pub(crate) fn copy_format(
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<CopyFormat, WriteError> {
    let mut csv = false;
    let mut binary = false;
    for option in options {
        if let CopyOption::Format(name) = option {
            (csv, binary) = match name.value.to_ascii_lowercase().as_str() {
                "csv" => (true, false),
                "text" => (false, false),
                "binary" => (false, true),
                other => {
                    return Err(unsupported(format!(
                        "COPY format {other}: use text, csv or binary"
                    )));
                }
            };
        }
    }
    if legacy.iter().any(|o| matches!(o, CopyLegacyOption::Csv(_))) {
        csv = true;
    }
    if legacy.iter().any(|o| matches!(o, CopyLegacyOption::Binary)) {
        binary = true;
    }
    if csv && binary {
        return Err(WriteError::InvalidValue(
            "COPY cannot be both CSV and BINARY".into(),
        ));
    }
    let mut format = if csv {
        CopyFormat::csv()
    } else {
        CopyFormat::text()
    };
    format.binary = binary;
    // A binary stream has no delimiters, quotes or NULL strings: naming
    // one is an error, as in Postgres.
    let in_binary = |name: &str| -> Result<(), WriteError> {
        if binary {
            return Err(WriteError::InvalidValue(format!(
                "cannot specify {name} in BINARY mode"
            )));
        }
        Ok(())
    };
    for option in options {
        match option {
            CopyOption::Format(_) | CopyOption::Encoding(_) | CopyOption::Freeze(_) => {}
            CopyOption::Delimiter(c) => {
                in_binary("DELIMITER")?;
                format.delimiter = *c;
            }
            CopyOption::Null(n) => {
                in_binary("NULL")?;
                format.null = n.clone();
            }
            CopyOption::Header(h) => {
                in_binary("HEADER")?;
                format.header = *h;
            }
            CopyOption::Quote(c) => {
                in_binary("QUOTE")?;
                format.quote = *c;
            }
            CopyOption::Escape(c) => {
                in_binary("ESCAPE")?;
                format.escape = *c;
            }
            other => return Err(unsupported(format!("COPY option {other}"))),
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => {}
            CopyLegacyOption::Csv(csv_options) => {
                for o in csv_options {
                    match o {
                        CopyLegacyCsvOption::Header => format.header = true,
                        CopyLegacyCsvOption::Quote(c) => format.quote = *c,
                        CopyLegacyCsvOption::Escape(c) => format.escape = *c,
                        other => return Err(unsupported(format!("COPY option {other}"))),
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => {
                in_binary("DELIMITER")?;
                format.delimiter = *c;
            }
            CopyLegacyOption::Null(n) => {
                in_binary("NULL")?;
                format.null = n.clone();
            }
            other => return Err(unsupported(format!("COPY option {other}"))),
        }
    }
    // The delimiter separates fields and lines end at newlines: a
    // delimiter that is one of those, or a quote, would make the data
    // ambiguous (Postgres refuses the same).
    if !binary {
        if matches!(format.delimiter, '\n' | '\r')
            || (!csv && format.delimiter == '\\')
            || (csv && format.delimiter == format.quote)
        {
            return Err(WriteError::InvalidValue(format!(
                "COPY delimiter {:?} cannot be a newline or carriage return, a backslash in text format or the quote in csv",
                format.delimiter
            )));
        }
        if format.null.contains(['\n', '\r']) {
            return Err(WriteError::InvalidValue(
                "COPY null representation cannot use newline or carriage return".into(),
            ));
        }
    }
    Ok(format)
}

fn u16_option(key: &str, value: &Expr) -> Result<u16, WriteError> {
    match literal(value)? {
        Literal::Number(n) => n.parse::<u16>().map_err(|_| {
            WriteError::InvalidValue(format!("{key} = {n}: expected an integer in 1..=65535"))
        }),
        other => Err(WriteError::InvalidValue(format!(
            "{key} = {other:?}: expected an integer"
        ))),
    }
}

fn ident_name(name: &ObjectName) -> Result<String, WriteError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| {
            part.as_ident()
                .map(|i| {
                    if i.quote_style.is_some() {
                        i.value.clone()
                    } else {
                        i.value.to_ascii_lowercase()
                    }
                })
                .ok_or_else(|| unsupported(format!("name {name}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(parts.join("."))
}

/// A table name: `name`, `public.name` or `valori.public.name` (the
/// database, as queries resolve it; unquoted names fold to lower case, as
/// in Postgres).
pub(crate) fn table_name(name: &ObjectName) -> Result<String, WriteError> {
    let full = ident_name(name)?;
    let short = full
        .strip_prefix("public.")
        .or_else(|| {
            full.strip_prefix(crate::CATALOG)
                .and_then(|rest| rest.strip_prefix(".public."))
        })
        .unwrap_or(&full);
    if short.contains('.') {
        return Err(WriteError::UndefinedTable(full.clone()));
    }
    Ok(short.to_owned())
}

fn relation_name(relation: &TableFactor) -> Result<String, WriteError> {
    match relation {
        TableFactor::Table { name, .. } => table_name(name),
        other => Err(unsupported(format!("writing to {other}"))),
    }
}

fn collection_name(table: &str) -> Result<CollectionName, WriteError> {
    CollectionName::new(table)
        .map_err(|e| WriteError::InvalidValue(format!("table {table:?}: {e}")))
}

fn column_list(
    names: impl Iterator<Item = String>,
    table: &str,
) -> Result<Vec<Column>, WriteError> {
    let mut columns = Vec::new();
    for name in names {
        let column = Column::parse(&name, table)?;
        if columns.contains(&column) {
            return Err(WriteError::Syntax(format!(
                "column {name:?} specified more than once"
            )));
        }
        columns.push(column);
    }
    if columns.is_empty() {
        return Ok(Column::ALL.to_vec());
    }
    if !columns.contains(&Column::Vec) {
        return Err(WriteError::InvalidValue(
            "null value in column \"vec\": every record needs a vector".into(),
        ));
    }
    Ok(columns)
}

fn create_table(create: ast::CreateTable) -> Result<WriteStatement, WriteError> {
    if create.query.is_some() || create.like.is_some() {
        return Err(unsupported(
            "CREATE TABLE … AS / LIKE is not supported; declare the columns",
        ));
    }
    // Every table is state, logged and kept: a table that would vanish
    // with the session cannot be one.
    if create.temporary {
        return Err(unsupported(
            "CREATE TEMPORARY TABLE is not supported: every table is durable state; create a table and drop it",
        ));
    }
    let table = table_name(&create.name)?;
    let name = collection_name(&table)?;
    if !crate::declared::is_fixed_layout(&create) {
        let schema = crate::declared::declared_schema(&create)?;
        let dim = crate::declared::table_dim(&schema);
        let config = table_config(&create, dim)?;
        return Ok(WriteStatement::CreateDeclaredTable {
            name,
            config,
            schema,
            if_not_exists: create.if_not_exists,
        });
    }
    let mut dim = None;
    let mut seen = BTreeSet::new();
    for column in &create.columns {
        let column_name = if column.name.quote_style.is_some() {
            column.name.value.clone()
        } else {
            column.name.value.to_ascii_lowercase()
        };
        let type_name = column.data_type.to_string().to_ascii_lowercase();
        let c = Column::parse(&column_name, &table).map_err(|_| {
            unsupported(format!(
                "column {column_name:?}: a Valori table has the columns id BIGINT, vec VECTOR(n), tag BIGINT and metadata BYTEA or JSONB"
            ))
        })?;
        if !seen.insert(c) {
            return Err(WriteError::Syntax(format!(
                "column {column_name:?} specified more than once"
            )));
        }
        let integer = matches!(
            type_name.as_str(),
            "bigint"
                | "int8"
                | "integer"
                | "int"
                | "int4"
                | "smallint"
                | "int2"
                | "bigserial"
                | "serial"
        );
        let ok = match c {
            Column::Id | Column::Tag => integer,
            Column::Metadata => matches!(type_name.as_str(), "bytea" | "jsonb" | "json" | "text"),
            Column::Vec => {
                if !is_vector_type(&column.data_type) {
                    false
                } else {
                    let ast::DataType::Custom(_, modifiers) = &column.data_type else {
                        return Err(unsupported("vec must be VECTOR(n)"));
                    };
                    let [n] = modifiers.as_slice() else {
                        return Err(WriteError::InvalidValue(
                            "vec needs a dimension: VECTOR(n)".into(),
                        ));
                    };
                    let n = n
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=limits::DIM_MAX).contains(n));
                    let Some(n) = n else {
                        return Err(WriteError::InvalidValue(format!(
                            "vector dimension must be in 1..={}",
                            limits::DIM_MAX
                        )));
                    };
                    dim = Some(n);
                    true
                }
            }
        };
        if !ok {
            return Err(unsupported(format!(
                "column {column_name} {type_name}: expected id BIGINT, vec VECTOR(n), tag BIGINT, metadata BYTEA or JSONB"
            )));
        }
    }
    let Some(dim) = dim else {
        return Err(WriteError::InvalidValue(
            "a Valori table needs a vec VECTOR(n) column".into(),
        ));
    };
    if !seen.contains(&Column::Id) {
        return Err(WriteError::InvalidValue(
            "a Valori table needs an id BIGINT column".into(),
        ));
    }
    let config = table_config(&create, dim)?;
    Ok(WriteStatement::CreateTable {
        name,
        config,
        if_not_exists: create.if_not_exists,
    })
}

/// A table's collection configuration: dimension `dim`, and the metric
/// and index parameters of its `WITH (…)` options.
fn table_config(create: &ast::CreateTable, dim: u32) -> Result<CollectionConfig, WriteError> {
    let mut config = CollectionConfig {
        dim,
        metric: Metric::L2,
        index: IndexParams::default(),
    };
    let options = match &create.table_options {
        CreateTableOptions::None => Vec::new(),
        CreateTableOptions::With(options) => options.clone(),
        other => return Err(unsupported(format!("table options {other}"))),
    };
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(unsupported(format!("table option {option}")));
        };
        let key = key.value.to_ascii_lowercase();
        match key.as_str() {
            "metric" => {
                let text = match literal(&value)? {
                    Literal::Text(t) => t,
                    _ => value.to_string(),
                };
                // The spellings every front end accepts (`ops::METRIC_NAMES`).
                config.metric = crate::ops::parse_metric(&text)
                    .map_err(|e| WriteError::InvalidValue(e.to_string()))?;
            }
            "m" => config.index.m = u16_option(&key, &value)?,
            "ef_construction" => config.index.ef_construction = u16_option(&key, &value)?,
            "seed" => {
                config.index.seed = match literal(&value)? {
                    Literal::Number(n) => n.parse::<u64>().map_err(|_| {
                        WriteError::InvalidValue(format!(
                            "seed = {n}: expected an unsigned integer"
                        ))
                    })?,
                    _ => return Err(WriteError::InvalidValue("seed: expected an integer".into())),
                }
            }
            other => {
                return Err(unsupported(format!(
                    "table option {other}: expected metric, m, ef_construction or seed"
                )));
            }
        }
    }
    Ok(config)
}

/// A column named in `RETURNING`: a plain name, or one qualified with
/// its table (`t.col`) or schema and table (`public.t.col`, as
/// SQLAlchemy writes it), answered as `(table, column)`.
fn qualified_column_ref(expr: &Expr, what: &str) -> Result<(Option<String>, String), WriteError> {
    match expr {
        Expr::CompoundIdentifier(parts) if matches!(parts.len(), 2 | 3) => {
            let (column, table) = parts.split_last().unwrap_or((&parts[0], &[]));
            let table = ObjectName::from(table.to_vec());
            Ok((Some(table_name(&table)?), crate::declared::ident(column)))
        }
        other => Ok((None, column_ref(other, what)?)),
    }
}

/// A column named in `RETURNING`, `ON CONFLICT` or `EXCLUDED.…`: a
/// plain or table-qualified name.
fn column_ref(expr: &Expr, what: &str) -> Result<String, WriteError> {
    match expr {
        Expr::Identifier(ident) => Ok(crate::declared::ident(ident)),
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
            Ok(crate::declared::ident(&parts[1]))
        }
        other => Err(unsupported(format!(
            "{what} {other}: only column names are supported there"
        ))),
    }
}

fn returning_items(items: &[ast::SelectItem]) -> Result<Vec<ReturnItem>, WriteError> {
    items
        .iter()
        .map(|item| match item {
            ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => {
                Ok(ReturnItem {
                    column: None,
                    alias: None,
                    qualifier: None,
                })
            }
            ast::SelectItem::UnnamedExpr(expr) => {
                let (qualifier, column) = qualified_column_ref(expr, "RETURNING")?;
                Ok(ReturnItem {
                    column: Some(column),
                    alias: None,
                    qualifier,
                })
            }
            ast::SelectItem::ExprWithAlias { expr, alias } => {
                let (qualifier, column) = qualified_column_ref(expr, "RETURNING")?;
                Ok(ReturnItem {
                    column: Some(column),
                    alias: Some(crate::declared::ident(alias)),
                    qualifier,
                })
            }
            other => Err(unsupported(format!("RETURNING {other}"))),
        })
        .collect()
}

/// The column an assignment of `verb` sets; a tuple, or a column that
/// `sets` already assigns, is refused.
fn assigned_column<T>(
    assignment: &ast::Assignment,
    sets: &[(String, T)],
    verb: &str,
) -> Result<String, WriteError> {
    let AssignmentTarget::ColumnName(name) = &assignment.target else {
        return Err(unsupported(format!("{verb} of a column tuple")));
    };
    let name = ident_name(name)?;
    if sets.iter().any(|(n, _)| *n == name) {
        return Err(WriteError::Syntax(format!(
            "multiple assignments to same column {name:?}"
        )));
    }
    Ok(name)
}

fn on_conflict(on: &ast::OnInsert) -> Result<OnConflict, WriteError> {
    let ast::OnInsert::OnConflict(conflict) = on else {
        return Err(unsupported("ON DUPLICATE KEY UPDATE; use ON CONFLICT"));
    };
    let target = match &conflict.conflict_target {
        None => None,
        Some(ast::ConflictTarget::Columns(columns)) => match columns.as_slice() {
            [one] => Some(crate::declared::ident(one)),
            _ => {
                return Err(unsupported(
                    "ON CONFLICT over several columns: a conflict target is one unique column",
                ));
            }
        },
        Some(ast::ConflictTarget::OnConstraint(name)) => {
            return Err(unsupported(format!(
                "ON CONFLICT ON CONSTRAINT {name}; name the column: ON CONFLICT (column)"
            )));
        }
    };
    let update = match &conflict.action {
        ast::OnConflictAction::DoNothing => None,
        ast::OnConflictAction::DoUpdate(update) => {
            if update.selection.is_some() {
                return Err(unsupported("ON CONFLICT … DO UPDATE … WHERE"));
            }
            if target.is_none() {
                return Err(WriteError::Syntax(
                    "ON CONFLICT DO UPDATE requires inference specification or constraint name"
                        .into(),
                ));
            }
            let mut sets: Vec<(String, SetValue)> = Vec::with_capacity(update.assignments.len());
            for assignment in &update.assignments {
                let name = assigned_column(assignment, &sets, "ON CONFLICT … DO UPDATE")?;
                let value = match &assignment.value {
                    Expr::CompoundIdentifier(parts)
                        if parts.len() == 2 && parts[0].value.eq_ignore_ascii_case("excluded") =>
                    {
                        SetValue::Excluded(crate::declared::ident(&parts[1]))
                    }
                    other => SetValue::Value(literal(other)?),
                };
                sets.push((name, value));
            }
            Some(sets)
        }
    };
    Ok(OnConflict { target, update })
}

fn insert_statement(insert: ast::Insert) -> Result<WriteStatement, WriteError> {
    let on_conflict = insert.on.as_ref().map(on_conflict).transpose()?;
    let returning = insert
        .returning
        .as_deref()
        .map(returning_items)
        .transpose()?;
    let TableObject::TableName(name) = &insert.table else {
        return Err(unsupported("INSERT into a table function"));
    };
    let table = table_name(name)?;
    let names: Option<Vec<String>> = (!insert.columns.is_empty()).then(|| {
        insert
            .columns
            .iter()
            .map(|c| ident_name(c).unwrap_or_default())
            .collect()
    });
    // A name outside the fixed columns is a declared table's column,
    // resolved when the statement runs.
    let columns = column_list(names.iter().flatten().cloned(), &table).unwrap_or_default();
    let Some(source) = insert.source else {
        if names.is_some() || !insert.assignments.is_empty() {
            return Err(unsupported("INSERT needs VALUES"));
        }
        // `DEFAULT VALUES`: one row, every column from its default, as an
        // empty column list with one empty row of values.
        return Ok(WriteStatement::Insert {
            table,
            columns: Vec::new(),
            names: Some(Vec::new()),
            rows: vec![Vec::new()],
            select: None,
            on_conflict,
            returning,
        });
    };
    let values = match *source.body {
        SetExpr::Values(values) if source.order_by.is_none() && source.with.is_none() => values,
        body => {
            // `INSERT … SELECT` (and VALUES with ORDER BY or WITH): the
            // statement layer runs the query, then inserts its rows.
            let query = ast::Query {
                body: Box::new(body),
                ..*source
            };
            return Ok(WriteStatement::Insert {
                table,
                columns: Vec::new(),
                names,
                rows: Vec::new(),
                select: Some(Box::new(query)),
                on_conflict,
                returning,
            });
        }
    };
    // Without a column list the values fill the leading columns in table
    // order (id, vec, tag, metadata), as in Postgres.
    let columns = match values.rows.first() {
        Some(first) if names.is_none() => {
            Column::ALL[..first.len().min(Column::ALL.len())].to_vec()
        }
        _ => columns,
    };
    let width = match &names {
        Some(names) => names.len(),
        None => values.rows.first().map_or(0, |r| r.len()),
    };
    let mut rows = Vec::with_capacity(values.rows.len());
    for (i, row) in values.rows.iter().enumerate() {
        if row.len() != width {
            return Err(WriteError::Syntax(format!(
                "row {}: {} values for {} columns",
                i + 1,
                row.len(),
                width
            )));
        }
        rows.push(
            row.iter()
                .map(insert_value)
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    Ok(WriteStatement::Insert {
        table,
        columns,
        names,
        rows,
        select: None,
        on_conflict,
        returning,
    })
}

/// One value of an `INSERT`'s `VALUES`: a literal, or `DEFAULT` (the
/// keyword, not the quoted name `"DEFAULT"`).
fn insert_value(expr: &Expr) -> Result<Literal, WriteError> {
    match expr {
        Expr::Identifier(ident)
            if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default") =>
        {
            Ok(Literal::Default)
        }
        other => literal(other),
    }
}

/// The ids of `WHERE id = …`, `WHERE id IN (…)` or an `OR` of those.
fn where_ids(selection: Option<&Expr>, verb: &str) -> Result<Vec<Literal>, WriteError> {
    let Some(selection) = selection else {
        return Err(unsupported(format!(
            "{verb} needs WHERE id = … or WHERE id IN (…)"
        )));
    };
    let mut ids = Vec::new();
    collect_ids(selection, verb, &mut ids)?;
    Ok(ids)
}

fn is_id_column(expr: &Expr) -> bool {
    match expr {
        Expr::Identifier(i) => i.value.eq_ignore_ascii_case("id"),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .is_some_and(|i| i.value.eq_ignore_ascii_case("id")),
        _ => false,
    }
}

fn collect_ids(expr: &Expr, verb: &str, out: &mut Vec<Literal>) -> Result<(), WriteError> {
    match expr {
        Expr::Nested(inner) => collect_ids(inner, verb, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => {
            collect_ids(left, verb, out)?;
            collect_ids(right, verb, out)
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } if is_id_column(left) => {
            out.push(literal(right)?);
            Ok(())
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } if is_id_column(right) => {
            out.push(literal(left)?);
            Ok(())
        }
        Expr::InList {
            expr,
            list,
            negated: false,
        } if is_id_column(expr) => {
            for item in list {
                out.push(literal(item)?);
            }
            Ok(())
        }
        other => Err(unsupported(format!(
            "{verb} … WHERE {other}: only id = …, id IN (…) and OR of those are supported"
        ))),
    }
}

/// A value expression as a [`Literal`].
/// The value of a literal expression (see [`Literal`]).
pub(crate) fn literal_of(expr: &Expr) -> Result<Literal, WriteError> {
    literal(expr)
}

/// One SQL expression parsed from its text (a column's `DEFAULT`).
pub(crate) fn parse_expr(text: &str) -> Result<Expr, WriteError> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(syntax)
}

fn literal(expr: &Expr) -> Result<Literal, WriteError> {
    match expr {
        Expr::Nested(inner) => literal(inner),
        Expr::Value(v) => Ok(match &v.value {
            Value::Null => Literal::Null,
            Value::Number(n, _) => Literal::Number(n.to_string()),
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::DoubleQuotedString(s) => Literal::Text(s.clone()),
            Value::DollarQuotedString(s) => Literal::Text(s.value.clone()),
            Value::HexStringLiteral(h) => Literal::Bytes(
                hex_bytes(h)
                    .ok_or_else(|| WriteError::InvalidText(format!("X'{h}' is not hexadecimal")))?,
            ),
            Value::Boolean(b) => Literal::Bool(*b),
            Value::Placeholder(p) => Literal::Param(
                p.strip_prefix('$')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| unsupported(format!("placeholder {p}")))?,
            ),
            other => return Err(unsupported(format!("value {other}"))),
        }),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            Literal::Number(n) => Ok(Literal::Number(match n.strip_prefix('-') {
                Some(positive) => positive.to_owned(),
                None => format!("-{n}"),
            })),
            Literal::Float(Float::Real(x)) => Ok(Literal::Float(Float::Real(-x))),
            Literal::Float(Float::Double(x)) => Ok(Literal::Float(Float::Double(-x))),
            _ => Err(unsupported(format!("value {expr}"))),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => literal(expr),
        Expr::Array(array) => Ok(Literal::Array(
            array.elem.iter().map(literal).collect::<Result<_, _>>()?,
        )),
        Expr::Cast {
            expr: inner,
            data_type,
            ..
        } => {
            let value = literal(inner)?;
            if is_vector_type(data_type) {
                return Ok(value);
            }
            if let Some(ty) = crate::casts::IntType::of_sql(data_type) {
                return integer_cast(value, ty);
            }
            // An explicit cast to `char(n)` or `varchar(n)` cuts text to
            // `n` characters (`char` alone: 1), as Postgres's does; the
            // column then fits it (pads a `character(n)`).
            let length = match data_type {
                ast::DataType::Char(length) | ast::DataType::Character(length) => {
                    Some(length.as_ref().map_or(Some(1), character_length))
                }
                ast::DataType::Varchar(length) | ast::DataType::CharacterVarying(length) => {
                    Some(length.as_ref().and_then(character_length))
                }
                _ => None,
            };
            if let Some(length) = length {
                return Ok(match (value, length) {
                    (Literal::Text(t), Some(n)) => {
                        Literal::Text(t.chars().take(n as usize).collect())
                    }
                    (v, _) => v,
                });
            }
            let type_name = data_type.to_string().to_ascii_lowercase();
            match (type_name.as_str(), value) {
                (
                    "real" | "float4",
                    v @ (Literal::Number(_) | Literal::Text(_) | Literal::Float(_)),
                ) => Ok(Literal::Float(Float::Real(
                    float_literal(&v, "real")? as f32
                ))),
                (
                    "double precision" | "float8",
                    v @ (Literal::Number(_) | Literal::Text(_) | Literal::Float(_)),
                ) => Ok(Literal::Float(Float::Double(float_literal(
                    &v,
                    "double precision",
                )?))),
                ("numeric", Literal::Float(x)) => x
                    .numeric_text()
                    .map(Literal::Number)
                    .ok_or_else(|| unsupported(format!("{} as numeric", x.text()))),
                ("text" | "varchar", Literal::Float(x)) => Ok(Literal::Text(x.text())),
                ("bytea", Literal::Text(t)) => Ok(Literal::Bytes(bytea_text(&t)?)),
                ("json" | "jsonb", Literal::Text(t)) => Ok(Literal::Json(t)),
                (_, Literal::Param(n)) => Ok(Literal::Param(n)),
                // An array as text (`'{1,2}'::int[]`) or as `ARRAY[…]`:
                // its column reads it.
                (t, v @ (Literal::Text(_) | Literal::Array(_))) if t.ends_with("[]") => Ok(v),
                (
                    "real" | "float4" | "double precision" | "float8" | "numeric" | "text"
                    | "varchar",
                    v,
                ) => Ok(v),
                // Text in the form its column's type reads (a client that
                // binds on its side labels each value with its type:
                // psycopg's `'2024-03-01 12:00:00+00:00'::timestamptz`);
                // the column checks it as any text for that type.
                (
                    "timestamptz"
                    | "timestamp"
                    | "timestamp with time zone"
                    | "timestamp without time zone"
                    | "date"
                    | "uuid"
                    | "bool"
                    | "boolean"
                    | "character varying"
                    | "char"
                    | "bpchar",
                    v @ Literal::Text(_),
                ) => Ok(v),
                (_, _) => Err(unsupported(format!("cast to {type_name}"))),
            }
        }
        other => Err(unsupported(format!(
            "value {other}: only literals are supported in writes"
        ))),
    }
}

/// The `n` of `char(n)` / `varchar(n)`, `None` for `MAX`.
fn character_length(length: &ast::CharacterLength) -> Option<u64> {
    match length {
        ast::CharacterLength::IntegerLength { length, .. } => Some(*length),
        ast::CharacterLength::Max => None,
    }
}

/// A constant cast to `smallint`, `integer` or `bigint`, converted as
/// Postgres converts it ([`crate::casts`]): a number rounds half away
/// from zero, a float half to even, text is read as an integer.
fn integer_cast(value: Literal, ty: crate::casts::IntType) -> Result<Literal, WriteError> {
    use crate::casts;
    let converted = match &value {
        Literal::Number(n) => casts::numeric_text_to_int(n, ty),
        Literal::Float(x) => casts::float_to_int(x.value(), ty),
        Literal::Text(t) => casts::text_to_int(t, ty),
        Literal::Bool(b) => Ok(i64::from(*b)),
        _ => return Ok(value),
    };
    converted
        .map(|v| Literal::Number(v.to_string()))
        .map_err(|error| WriteError::Cast {
            column: None,
            error,
        })
}

/// A number or text read as a float, as Postgres's `float8in` reads it
/// (`NaN`, `Infinity`, `-Infinity` and `inf` in any case); `type_name`
/// names the type in the error.
pub(crate) fn float_literal(value: &Literal, type_name: &str) -> Result<f64, WriteError> {
    let text = match value {
        Literal::Float(x) => return Ok(x.value()),
        Literal::Number(t) | Literal::Text(t) => t.trim(),
        other => {
            return Err(WriteError::InvalidText(format!(
                "invalid input syntax for type {type_name}: {other:?}"
            )));
        }
    };
    match text.to_ascii_lowercase().as_str() {
        "nan" => Ok(f64::NAN),
        "infinity" | "inf" | "+infinity" | "+inf" => Ok(f64::INFINITY),
        "-infinity" | "-inf" => Ok(f64::NEG_INFINITY),
        _ => text.parse().map_err(|_| {
            WriteError::InvalidText(format!(
                "invalid input syntax for type {type_name}: \"{text}\""
            ))
        }),
    }
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.as_bytes();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// The bytes of a `bytea` text value: `\x` and hex digits, or the
/// characters themselves (with `\\` for a backslash, as Postgres's escape
/// format).
pub fn bytea_text(text: &str) -> Result<Vec<u8>, WriteError> {
    if let Some(hex) = text.strip_prefix("\\x") {
        return hex_bytes(hex).ok_or_else(|| {
            WriteError::InvalidText(format!("{text:?} is not a bytea: bad hexadecimal digits"))
        });
    }
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            let octal = bytes
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok());
            match octal {
                Some(b) => {
                    out.push(b);
                    i += 4;
                    continue;
                }
                None => {
                    return Err(WriteError::InvalidText(format!(
                        "{text:?} is not a bytea: invalid escape"
                    )));
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Ok(out)
}

/// Components of pgvector's text form `[x1, x2, …]`, as `f32`.
pub fn parse_vector_text(text: &str) -> Result<Vec<f32>, String> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("{text:?} is not a vector: expected '[x1, x2, ...]'"))?;
    if inner.trim().is_empty() {
        return Err(format!("{text:?} is not a vector: it has no components"));
    }
    inner
        .split(',')
        .enumerate()
        .map(|(i, part)| {
            part.trim().parse::<f32>().map_err(|_| {
                format!(
                    "{text:?}: component {i} ({:?}) is not a number",
                    part.trim()
                )
            })
        })
        .collect()
}

/// Where a value came from, for messages.
#[derive(Clone, Copy)]
struct At<'a> {
    row: usize,
    column: Column,
    table: &'a str,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "row {}, column {} of {}",
            self.row + 1,
            self.column.name(),
            self.table
        )
    }
}

fn unbound(n: usize) -> WriteError {
    WriteError::InvalidValue(format!("parameter ${n} has no value"))
}

fn integer_value(value: &Literal, at: At<'_>) -> Result<u64, WriteError> {
    let float_text;
    let text = match value {
        Literal::Number(n) => n.as_str(),
        Literal::Float(x) => {
            float_text = x.text();
            float_text.as_str()
        }
        Literal::Text(t) => t.trim(),
        Literal::Null => {
            return Err(WriteError::InvalidValue(format!(
                "{at}: NULL is not allowed"
            )));
        }
        Literal::Param(n) => return Err(unbound(*n)),
        other => {
            return Err(WriteError::InvalidText(format!(
                "{at}: {other:?} is not an integer"
            )));
        }
    };
    text.parse::<u64>().map_err(|_| {
        if text.parse::<i128>().is_ok() {
            WriteError::InvalidValue(format!("{at}: {text} is out of range (0..={})", u64::MAX))
        } else {
            WriteError::InvalidText(format!("{at}: {text:?} is not an integer"))
        }
    })
}

fn vector_value(value: &Literal, dim: u32, at: At<'_>) -> Result<Vec<i32>, WriteError> {
    let floats: Vec<f32> = match value {
        Literal::Text(t) => {
            parse_vector_text(t).map_err(|e| WriteError::InvalidText(format!("{at}: {e}")))?
        }
        Literal::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Literal::Number(n) => n.parse::<f32>().map_err(|_| {
                    WriteError::InvalidText(format!("{at}: component {i} ({n}) is not a number"))
                }),
                Literal::Float(x) => Ok(x.value() as f32),
                other => Err(WriteError::InvalidText(format!(
                    "{at}: component {i} ({other:?}) is not a number"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Literal::Null => {
            return Err(WriteError::InvalidValue(format!(
                "{at}: NULL is not allowed"
            )));
        }
        Literal::Param(n) => return Err(unbound(*n)),
        other => {
            return Err(WriteError::InvalidText(format!(
                "{at}: {other:?} is not a vector; write '[1, 2, 3]'"
            )));
        }
    };
    if floats.len() as u64 != u64::from(dim) {
        return Err(WriteError::InvalidValue(format!(
            "{at}: vector has {} components, the table has dimension {dim}",
            floats.len()
        )));
    }
    floats
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            quantize(x).map(|q| q.raw()).map_err(|kind| {
                WriteError::InvalidValue(format!("{at}: component {i} ({x}): {kind}"))
            })
        })
        .collect()
}

fn metadata_value(value: &Literal, at: At<'_>) -> Result<Vec<u8>, WriteError> {
    let bytes = match value {
        Literal::Null => Vec::new(),
        Literal::Bytes(b) => b.clone(),
        Literal::Text(t) if t.starts_with("\\x") => bytea_text(t)?,
        Literal::Text(t) | Literal::Json(t) => crate::metadata::from_json_text(t).map_err(|e| {
            WriteError::InvalidText(format!(
                "{at}: {t:?} is not JSON ({e}); write raw bytes as '\\x…' or X'…'"
            ))
        })?,
        Literal::Number(n) => crate::metadata::from_json_text(n)
            .map_err(|e| WriteError::InvalidText(format!("{at}: {e}")))?,
        Literal::Float(x) => crate::metadata::from_json_text(&x.text())
            .map_err(|e| WriteError::InvalidText(format!("{at}: {e}")))?,
        Literal::Bool(b) => {
            if *b {
                b"true".to_vec()
            } else {
                b"false".to_vec()
            }
        }
        Literal::Param(n) => return Err(unbound(*n)),
        Literal::Array(_) => {
            return Err(WriteError::InvalidText(format!(
                "{at}: an array is not metadata; write JSON text"
            )));
        }
        // Refused before: the fixed columns take no DEFAULT.
        Literal::Default => {
            return Err(unsupported(format!("{at}: DEFAULT")));
        }
    };
    if bytes.len() as u64 > u64::from(limits::METADATA_BYTES_MAX) {
        return Err(WriteError::TooLarge(format!(
            "{at}: metadata of {} bytes exceeds {} bytes",
            bytes.len(),
            limits::METADATA_BYTES_MAX
        )));
    }
    Ok(bytes)
}

/// What the state says about a table, read once.
struct TableInfo {
    name: CollectionName,
    config: CollectionConfig,
}

fn table_info(engine: &Engine, table: &str) -> Result<TableInfo, WriteError> {
    let name = CollectionName::new(table).map_err(|_| WriteError::UndefinedTable(table.into()))?;
    engine
        .read(|state| state.collection(&name).map(|c| *c.config()))?
        .map(|config| TableInfo {
            name: name.clone(),
            config,
        })
        .ok_or_else(|| WriteError::UndefinedTable(table.into()))
}

/// The live records among `ids`, each once, in the order given.
fn live_ids(state: &valori_core::state::State, info: &TableInfo, ids: &[u64]) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    let Some(c) = state.collection(&info.name) else {
        return Vec::new();
    };
    ids.iter()
        .copied()
        .filter(|id| seen.insert(*id))
        .filter(|id| {
            c.row_of(RecordId(*id))
                .is_some_and(|row| !c.deleted()[row as usize])
        })
        .collect()
}

/// Submits the one event `build` makes of the live records among `ids`
/// (nothing when none is live) and returns how many there were. Ids not
/// live are skipped, as Postgres's `DELETE … WHERE id IN (…)` skips rows
/// that do not match. The event is made from the state it is applied to:
/// it is built under the lock that serializes the writes of the
/// statement layer (`Engine::submit_built`), so no other statement's
/// write comes between what `build` read and the event.
fn submit_for_existing(
    engine: &Engine,
    info: &TableInfo,
    ids: &[u64],
    verb: &str,
    build: impl FnOnce(&valori_core::state::State, &[u64]) -> Result<Event, WriteError>,
) -> Result<u64, WriteError> {
    let mut outcome = Ok(0);
    let submitted = engine.submit_built(|state| {
        let present = live_ids(state, info, ids);
        if present.is_empty() {
            return None;
        }
        if present.len() as u64 > u64::from(limits::BATCH_RECORDS_MAX) {
            outcome = Err(WriteError::TooLarge(format!(
                "{verb} of {} records in one statement; at most {} (BATCH_RECORDS_MAX)",
                present.len(),
                limits::BATCH_RECORDS_MAX
            )));
            return None;
        }
        match build(state, &present) {
            Ok(event) => {
                outcome = Ok(present.len() as u64);
                Some(event)
            }
            Err(e) => {
                outcome = Err(e);
                None
            }
        }
    });
    match submitted {
        Err(EngineError::Rejected(ApplyError::UnknownCollection(_))) => {
            Err(WriteError::UndefinedTable(info.name.to_string()))
        }
        Err(e) => Err(e.into()),
        Ok(_) => outcome,
    }
}

/// Submits a `CreateCollection` or `CreateTable`; a table that exists is
/// an error, or a NOTICE with `IF NOT EXISTS`.
fn create(engine: &Engine, if_not_exists: bool, event: Event) -> Result<WriteOutcome, WriteError> {
    let (Event::CreateCollection { name, .. } | Event::CreateTable { name, .. }) = &event else {
        return Err(unsupported(format!(
            "{} is not a CREATE TABLE",
            event.kind_name()
        )));
    };
    if engine.read(|state| state.collection(name).is_some())? {
        if if_not_exists {
            return Ok(WriteOutcome {
                rows: 0,
                notices: vec![format!("relation \"{name}\" already exists, skipping")],
                written: None,
            });
        }
        return Err(WriteError::TableExists(name.to_string()));
    }
    engine.submit(event)?;
    Ok(WriteOutcome::default())
}

/// Checks `statement` against the current state and, if it is valid,
/// submits its events. Blocks until they are durable.
pub fn execute(engine: &Engine, statement: &WriteStatement) -> Result<WriteOutcome, WriteError> {
    match statement {
        WriteStatement::CreateTable {
            name,
            config,
            if_not_exists,
        } => create(
            engine,
            *if_not_exists,
            Event::CreateCollection {
                name: name.clone(),
                config: *config,
            },
        ),
        WriteStatement::DropTable { names, if_exists } => {
            let mut drop = Vec::new();
            let mut notices = Vec::new();
            for table in names {
                match table_info(engine, table) {
                    Ok(info) => {
                        if !drop.contains(&info.name) {
                            drop.push(info.name);
                        }
                    }
                    Err(WriteError::UndefinedTable(_)) if *if_exists => {
                        notices.push(format!("table \"{table}\" does not exist, skipping"));
                    }
                    Err(e) => return Err(e),
                }
            }
            // One event for the whole statement: the tables are dropped
            // together or not at all.
            let event = match drop.len() {
                0 => None,
                1 => Some(Event::DropCollection {
                    name: drop.remove(0),
                }),
                _ => Some(Event::DropCollections { names: drop }),
            };
            if let Some(event) = event {
                engine.submit(event)?;
            }
            Ok(WriteOutcome {
                rows: 0,
                notices,
                written: None,
            })
        }
        WriteStatement::CreateDeclaredTable {
            name,
            config,
            schema,
            if_not_exists,
        } => {
            let mut schema = schema.clone();
            engine
                .read(|state| crate::declared::resolve_keys(state, name.as_str(), &mut schema))??;
            create(
                engine,
                *if_not_exists,
                Event::CreateTable {
                    name: name.clone(),
                    config: *config,
                    schema,
                },
            )
        }
        WriteStatement::Insert {
            table,
            columns,
            names,
            rows,
            select: _,
            on_conflict,
            returning,
        } => {
            // Some(declared) when the table exists.
            let found = CollectionName::new(table).ok().and_then(|name| {
                engine
                    .read(|state| state.collection(&name).map(|c| c.table().is_some()))
                    .ok()
                    .flatten()
            });
            let Some(declared) = found else {
                // Before any column is looked up: the table is what is
                // missing.
                return Err(WriteError::UndefinedTable(table.clone()));
            };
            if declared {
                return crate::declared::insert(
                    engine,
                    table,
                    names.as_deref(),
                    rows,
                    on_conflict.as_ref(),
                    returning.is_some(),
                );
            }
            if on_conflict.is_some() || returning.is_some() {
                return Err(unsupported(format!(
                    "ON CONFLICT and RETURNING on {table}, a table with the fixed columns id, vec, tag and metadata; they work on tables with declared columns"
                )));
            }
            // The fixed columns have no defaults to give: `id` and `vec`
            // have none, and `tag` (0) and `metadata` (empty) take theirs
            // when left out of the column list.
            if names.as_ref().is_some_and(Vec::is_empty)
                || rows.iter().flatten().any(|l| matches!(l, Literal::Default))
            {
                return Err(unsupported(format!(
                    "DEFAULT in an INSERT into {table}, a table with the fixed columns id, vec, tag and metadata: id and vec have no default; leave tag and metadata out of the column list for theirs (0, empty)"
                )));
            }
            if let Some(names) = names {
                // Reports the name that is not a fixed column.
                column_list(names.iter().cloned(), table)?;
            } else if let Some(first) = rows.first() {
                if first.len() > Column::ALL.len() {
                    return Err(WriteError::Syntax(format!(
                        "INSERT has {} expressions but {table} has {} columns",
                        first.len(),
                        Column::ALL.len()
                    )));
                }
                if first.len() < 2 {
                    return Err(WriteError::InvalidValue(
                        "null value in column \"vec\": every record needs a vector".into(),
                    ));
                }
            }
            insert(engine, table, columns, rows)
        }
        WriteStatement::Delete {
            table,
            ids,
            selection,
            matched,
            returning,
        } => {
            let info = table_info(engine, table)?;
            if let Some(matched) = matched {
                return delete_rows(engine, &info, matched, returning.is_some());
            }
            let declared = engine.read(|state| {
                state
                    .collection(&info.name)
                    .is_some_and(|c| c.table().is_some())
            })?;
            if returning.is_some() && !declared {
                return Err(fixed_returning(table));
            }
            if ids.is_empty() {
                // Not `id = … / id IN (…)`: only a declared table's
                // statement, resolved by the statement layer, gets here
                // with `matched`.
                where_ids(selection.as_deref(), "DELETE")?;
            }
            // `id` names the record id: in a declared table only when it
            // is the integer primary key.
            let key_is_id = engine.read(|state| {
                state.collection(&info.name).is_none_or(|c| {
                    c.table().is_none_or(|t| {
                        t.schema()
                            .integer_key()
                            .and_then(|k| t.schema().scalar_columns().nth(k))
                            .is_some_and(|(_, def, _)| def.name == "id")
                    })
                })
            })?;
            if !key_is_id {
                return Err(unsupported(format!(
                    "DELETE from {table}: a table with declared columns is deleted from by its integer primary key named id (WHERE id = … / id IN (…)); other WHERE clauses are not supported yet"
                )));
            }
            let ids = ids
                .iter()
                .enumerate()
                .map(|(row, l)| {
                    integer_value(
                        l,
                        At {
                            row,
                            column: Column::Id,
                            table,
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            delete_rows(engine, &info, &ids, returning.is_some())
        }
        WriteStatement::Update {
            table,
            ids,
            selection,
            matched,
            returning,
            tag,
            metadata,
            sets,
            computed,
            computed_rows,
        } => {
            let info = table_info(engine, table)?;
            let schema = engine.read(|state| {
                state
                    .collection(&info.name)
                    .and_then(|c| c.table().map(|t| t.schema().clone()))
            })?;
            if let Some(schema) = schema {
                let computed_rows = match (computed.is_empty(), computed_rows) {
                    (true, _) => None,
                    (false, Some(rows)) => Some((computed.as_slice(), rows.as_slice())),
                    (false, None) => return Err(internal_unresolved("UPDATE", table)),
                };
                let records = match (matched, computed_rows) {
                    (_, Some((_, rows))) => rows.iter().map(|(id, _)| *id).collect(),
                    (Some(matched), None) => matched.clone(),
                    (None, None) => declared_ids(&info, &schema, ids, "UPDATE")?,
                };
                return update_declared(
                    engine,
                    &info,
                    &schema,
                    &records,
                    Assignments {
                        sets,
                        computed: computed_rows,
                    },
                    returning.is_some(),
                );
            }
            if let Some((name, value)) = computed.first() {
                return Err(unsupported(format!(
                    "UPDATE of {table} SET {name} = {value}: a table with the fixed columns is assigned literals only"
                )));
            }
            if returning.is_some() {
                return Err(fixed_returning(table));
            }
            if ids.is_empty() {
                where_ids(selection.as_deref(), "UPDATE")?;
            }
            for (name, _) in sets {
                match Column::parse(name, table)? {
                    Column::Tag | Column::Metadata => {}
                    c @ (Column::Id | Column::Vec) => {
                        return Err(unsupported(format!(
                            "UPDATE of {}: only tag and metadata can change; delete and insert the record instead",
                            c.name()
                        )));
                    }
                }
            }
            let at = |column| At {
                row: 0,
                column,
                table,
            };
            let ids = ids
                .iter()
                .map(|l| integer_value(l, at(Column::Id)))
                .collect::<Result<Vec<_>, _>>()?;
            let tag = tag
                .as_ref()
                .map(|t| integer_value(t, at(Column::Tag)))
                .transpose()?;
            let metadata = metadata
                .as_ref()
                .map(|m| metadata_value(m, at(Column::Metadata)))
                .transpose()?;
            if tag.is_none() && metadata.is_none() {
                return Err(unsupported("UPDATE needs SET tag = … or metadata = …"));
            }
            let rows = submit_for_existing(engine, &info, &ids, "UPDATE", |_, present| {
                let collection = info.name.clone();
                Ok(match (present, tag, &metadata) {
                    ([id], Some(tag), None) => Event::SetTag {
                        collection,
                        id: RecordId(*id),
                        tag,
                    },
                    ([id], None, Some(metadata)) => Event::SetMetadata {
                        collection,
                        id: RecordId(*id),
                        metadata: metadata.clone(),
                    },
                    _ => Event::UpdateBatch {
                        collection,
                        ids: present.iter().map(|id| RecordId(*id)).collect(),
                        tag,
                        metadata: metadata.clone(),
                    },
                })
            })?;
            Ok(WriteOutcome {
                rows,
                notices: Vec::new(),
                written: None,
            })
        }
        WriteStatement::CreateIndex {
            table,
            name,
            if_not_exists,
            column,
            plain,
            referenced,
            scalar,
            metric,
            l1,
            m,
            ef_construction,
        } => {
            let info = table_info(engine, table)?;
            let schema = engine.read(|state| {
                state
                    .collection(&info.name)
                    .map(crate::provider::collection_schema)
            })?;
            let field_of = |name: &str| {
                schema
                    .as_ref()
                    .and_then(|s| s.field_with_name(name).ok().cloned())
                    .ok_or_else(|| {
                        WriteError::UndefinedColumn(format!(
                            "column {name:?} of table {table:?} does not exist"
                        ))
                    })
            };
            let is_vector = |field: &datafusion::arrow::datatypes::Field| {
                matches!(
                    field.data_type(),
                    datafusion::arrow::datatypes::DataType::FixedSizeList(..)
                ) && field.name() != crate::provider::VEC_Q16_COLUMN
            };
            if *scalar {
                for name in referenced {
                    if is_vector(&field_of(name)?) {
                        // pgvector orders vectors with a btree; here
                        // comparisons and ORDER BY on them read the rows.
                        if *plain {
                            return Ok(WriteOutcome {
                                rows: 0,
                                notices: vec![format!(
                                    "no btree is built on the vector column {name} of {table}: comparisons and ORDER BY on it read every row; its nearest-neighbour index is USING hnsw"
                                )],
                                written: None,
                            });
                        }
                        return Err(unsupported(format!(
                            "a gin index or an index on an expression of the vector column {name}: vectors take USING hnsw"
                        )));
                    }
                }
                if *plain {
                    return create_btree_index(
                        engine,
                        table,
                        column,
                        name.as_deref(),
                        *if_not_exists,
                    );
                }
                // Accepted, so that schemas written for Postgres load; no
                // structure is built.
                return Ok(WriteOutcome {
                    rows: 0,
                    notices: vec![format!(
                        "no separate index is built on {table} ({column}): filters on it are evaluated on the rows a query reads"
                    )],
                    written: None,
                });
            }
            let is_vector = is_vector(&field_of(column)?);
            if !is_vector {
                return Err(unsupported(format!(
                    "an HNSW index on {column}: only the vector column is indexed"
                )));
            }
            if *l1 {
                // Accepted as pgvector's schemas write it; the graph keeps
                // the table's metric.
                return Ok(WriteOutcome {
                    rows: 0,
                    notices: vec![format!(
                        "the HNSW graph of {table} is built for its metric ({}); L1 distances (<+>, l1_distance) are answered by an exact scan",
                        info.config.metric
                    )],
                    written: None,
                });
            }
            // The operator class and WITH (m, ef_construction) given make
            // the table's configuration; a change rebuilds the graph from
            // the rows (one Reindex event), as a table created so would
            // have built it.
            let config = CollectionConfig {
                metric: metric.unwrap_or(info.config.metric),
                index: IndexParams {
                    m: m.unwrap_or(info.config.index.m),
                    ef_construction: ef_construction.unwrap_or(info.config.index.ef_construction),
                    seed: info.config.index.seed,
                },
                ..info.config
            };
            let reindex = (config != info.config).then(|| Event::Reindex {
                collection: info.name.clone(),
                config,
            });
            name_hnsw_index(
                engine,
                table,
                column,
                name.as_deref(),
                *if_not_exists,
                reindex,
            )
        }
        WriteStatement::Truncate { table } => {
            let info = table_info(engine, table)?;
            // As in Postgres, whatever the keys' ON DELETE: a table
            // another table references is not truncated.
            let referencing = engine.read(|state| {
                state
                    .collections()
                    .filter(|c| c.name() != &info.name)
                    .find(|c| {
                        c.table().is_some_and(|t| {
                            t.schema()
                                .foreign_keys()
                                .any(|(_, _, k)| k.table == info.name)
                        })
                    })
                    .map(|c| c.name().to_string())
            })?;
            if let Some(other) = referencing {
                return Err(unsupported(format!(
                    "cannot truncate a table referenced in a foreign key constraint: table \"{other}\" references \"{}\"; truncate or delete from \"{other}\" first",
                    info.name
                )));
            }
            let live = engine.read(|state| {
                state.collection(&info.name).map_or(Vec::new(), |c| {
                    c.ids()
                        .iter()
                        .enumerate()
                        .filter(|(row, _)| !c.deleted()[*row])
                        .map(|(_, id)| id.0)
                        .collect::<Vec<u64>>()
                })
            })?;
            // One event: at most BATCH_RECORDS_MAX rows (checked again,
            // with the rows live then, when the event is built).
            let rows = submit_for_existing(engine, &info, &live, "TRUNCATE", |state, present| {
                let now = state.collection(&info.name).map_or(0, |c| c.live());
                if now != present.len() {
                    return Err(WriteError::Conflict(format!(
                        "TRUNCATE of {}: rows were added meanwhile; nothing was deleted, retry",
                        info.name
                    )));
                }
                Ok(delete_event(&info, present))
            })?;
            Ok(WriteOutcome {
                rows,
                notices: Vec::new(),
                written: None,
            })
        }
        WriteStatement::AlterTable {
            table,
            if_exists,
            steps,
        } => crate::alter::execute(engine, table, *if_exists, steps),
        WriteStatement::DropIndex { names, if_exists } => {
            drop_btree_indexes(engine, names, *if_exists)
        }
        WriteStatement::CopyFrom { .. } => Err(unsupported(
            "COPY FROM STDIN needs the data that follows it (the Postgres COPY protocol)",
        )),
    }
}

/// The relation names of the state: tables, and the indexes and
/// sequences the catalogs list for them.
fn relation_names(state: &valori_core::state::State) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for c in state.collections() {
        let relation = crate::catalog::Relation::of(c);
        names.extend(
            crate::catalog::keys::indexes(&relation)
                .into_iter()
                .map(|i| i.name),
        );
        names.extend(
            crate::catalog::keys::sequences(&relation)
                .into_iter()
                .map(|s| s.name),
        );
        names.insert(c.name().as_str().to_owned());
    }
    names
}

/// `CREATE INDEX [name] ON table (column)` with btree on a declared
/// table's scalar column of an ordered type: one `AlterTable` event
/// recording the index, which the state builds over the live rows and
/// keeps. Unnamed, it is called `table_column_idx` (with a number after
/// it when that is taken), as Postgres names it. A second index on a
/// column, or one on a column whose type has no btree order, is accepted
/// with a NOTICE and builds nothing, as other scalar indexes.
fn create_btree_index(
    engine: &Engine,
    table: &str,
    column: &str,
    name: Option<&str>,
    if_not_exists: bool,
) -> Result<WriteOutcome, WriteError> {
    submit_index_change(engine, |state, notices| {
        let collection = table_named(state, table)?;
        if let Some(name) = name
            && name_taken(state, name, if_not_exists, notices)?
        {
            return Ok(None);
        }
        let taken = relation_names(state);
        let def = collection
            .table()
            .and_then(|t| t.schema().columns.iter().find(|c| c.name == column));
        let Some(def) = def.filter(|d| d.scalar().is_some_and(|t| t.is_orderable())) else {
            notices.push(format!(
                    "no separate index is built on {table} ({column}): its type has no btree order here, and filters on it are evaluated on the rows a query reads"
                ));
            return Ok(None);
        };
        if let Some(existing) = &def.index {
            notices.push(format!(
                    "column {column} of {table} already has the btree index {existing}; no second is built"
                ));
            return Ok(None);
        }
        let name = match name {
            Some(n) => n.to_owned(),
            None => {
                let base: String = format!("{table}_{column}_idx");
                let base = truncate_identifier(&base);
                (0..)
                    .map(|i| match i {
                        0 => base.clone(),
                        i => format!("{}{i}", truncate_identifier(&base[..base.len().min(60)])),
                    })
                    .find(|n| !taken.contains(n))
                    .expect("invariant: some numbered name is free")
            }
        };
        Ok(Some(Event::AlterTable {
            collection: collection.name().clone(),
            actions: vec![valori_core::table::AlterAction::CreateIndex {
                column: column.to_owned(),
                name,
            }],
        }))
    })
}

/// `CREATE INDEX [name] ON table USING hnsw (column …)` on a table with
/// declared columns: the graph's new configuration (`reindex`, when it
/// changes), and the name given, kept in the vector column's definition
/// so that the catalogs list it and `DROP INDEX name` finds it; both in
/// one event. The graph is the collection's own: a second name for it
/// is not kept (a NOTICE says so).
fn name_hnsw_index(
    engine: &Engine,
    table: &str,
    column: &str,
    name: Option<&str>,
    if_not_exists: bool,
    reindex: Option<Event>,
) -> Result<WriteOutcome, WriteError> {
    submit_index_change(engine, |state, notices| {
        let collection = table_named(state, table)?;
        let def = collection
            .table()
            .and_then(|t| t.schema().columns.iter().find(|c| c.name == column));
        // The graph not yet named by a `CREATE INDEX` is listed under the
        // name Postgres gives an unnamed index (`items_embedding_idx`);
        // that name given here is the one a Postgres table without an
        // index would take (as `CREATE INDEX items_embedding_idx ON items
        // USING hnsw …` of SQLAlchemy, Django and Alembic), not a
        // relation that exists.
        let names_own_graph = |name: &str| {
            def.is_some_and(|d| d.index.is_none())
                && crate::catalog::keys::indexes(&crate::catalog::Relation::of(collection))
                    .iter()
                    .any(|i| i.hnsw.is_some() && i.name == name)
        };
        // Under IF NOT EXISTS a name taken (this graph's among them) skips
        // the whole statement, its parameters too.
        if let Some(name) = name
            && !names_own_graph(name)
            && name_taken(state, name, if_not_exists, notices)?
        {
            return Ok(None);
        }
        let mut events: Vec<Event> = reindex.clone().into_iter().collect();
        if let (Some(name), Some(def)) = (name, def) {
            match &def.index {
                Some(existing) => notices.push(format!(
                    "the HNSW index of {table} ({column}) is {existing}; it is the table's one graph, so {name} is not kept as a second name (its parameters apply)"
                )),
                None => events.push(Event::AlterTable {
                    collection: collection.name().clone(),
                    actions: vec![valori_core::table::AlterAction::CreateIndex {
                        column: column.to_owned(),
                        name: name.to_owned(),
                    }],
                }),
            }
        }
        Ok(one_event(events))
    })
}

/// The collection of table `table` in `state`.
fn table_named<'a>(
    state: &'a valori_core::state::State,
    table: &str,
) -> Result<&'a valori_core::state::Collection, WriteError> {
    CollectionName::new(table)
        .ok()
        .and_then(|n| state.collection(&n))
        .ok_or_else(|| WriteError::UndefinedTable(table.into()))
}

/// Whether relation name `name` (a table, index or sequence) is taken:
/// `42P07`, or under `IF NOT EXISTS` a NOTICE and `true` (the statement
/// then does nothing).
fn name_taken(
    state: &valori_core::state::State,
    name: &str,
    if_not_exists: bool,
    notices: &mut Vec<String>,
) -> Result<bool, WriteError> {
    if !relation_names(state).contains(name) {
        return Ok(false);
    }
    if !if_not_exists {
        return Err(WriteError::IndexExists(name.to_owned()));
    }
    notices.push(format!("relation {name:?} already exists, skipping"));
    Ok(true)
}

/// Submits the event `build` makes of the state it is applied to (under
/// the engine's write order; `None`: nothing to write) with the NOTICEs
/// it collects: an index statement's one event. A refusal of the state is
/// reported as `ALTER TABLE`'s are.
fn submit_index_change(
    engine: &Engine,
    build: impl FnOnce(
        &valori_core::state::State,
        &mut Vec<String>,
    ) -> Result<Option<Event>, WriteError>,
) -> Result<WriteOutcome, WriteError> {
    let mut notices = Vec::new();
    let mut outcome = Ok(());
    let submitted = engine.submit_built(|state| {
        build(state, &mut notices).unwrap_or_else(|e| {
            outcome = Err(e);
            None
        })
    });
    outcome?;
    submitted.map_err(index_error)?;
    Ok(WriteOutcome {
        rows: 0,
        notices,
        written: None,
    })
}

/// Several events as one: none, the one, or a transaction of them.
fn one_event(mut events: Vec<Event>) -> Option<Event> {
    match events.len() {
        0 => None,
        1 => events.pop(),
        _ => Some(Event::Transaction { events }),
    }
}

/// An index action the state refused, as `ALTER TABLE`'s refusals are
/// reported.
fn index_error(e: EngineError) -> WriteError {
    match e {
        EngineError::Rejected(valori_core::state::ApplyError::Schema { collection, source }) => {
            crate::alter::schema_error(collection.as_str(), source)
        }
        e => e.into(),
    }
}

/// `name` cut to the 63 bytes of a Postgres identifier, at a character
/// boundary.
pub(crate) fn truncate_identifier(name: &str) -> String {
    let mut end = name.len().min(limits::COLUMN_NAME_BYTES_MAX as usize);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// `DROP INDEX [IF EXISTS] name, …`: one `AlterTable` event per table
/// whose btree indexes are named, all in one transaction. A name no
/// btree index has is an error (a NOTICE with `IF EXISTS`): the names of
/// HNSW, expression and gin indexes are not kept.
fn drop_btree_indexes(
    engine: &Engine,
    names: &[String],
    if_exists: bool,
) -> Result<WriteOutcome, WriteError> {
    submit_index_change(engine, |state, notices| {
        let mut by_table: BTreeMap<CollectionName, Vec<valori_core::table::AlterAction>> =
            BTreeMap::new();
        // A name given twice drops its index once.
        let mut seen = BTreeSet::new();
        for name in names.iter().filter(|n| seen.insert(n.as_str())) {
            let owner = state.collections().find(|c| {
                c.table().is_some_and(|t| {
                    t.schema()
                        .columns
                        .iter()
                        .any(|d| d.index.as_ref() == Some(name))
                })
            });
            match owner {
                Some(c) => by_table
                    .entry(c.name().clone())
                    .or_default()
                    .push(valori_core::table::AlterAction::DropIndex { name: name.clone() }),
                None if if_exists => {
                    notices.push(format!("index {name:?} does not exist, skipping"));
                }
                None => return Err(WriteError::UndefinedIndex(name.clone())),
            }
        }
        Ok(one_event(
            by_table
                .into_iter()
                .map(|(collection, actions)| Event::AlterTable {
                    collection,
                    actions,
                })
                .collect(),
        ))
    })
}

/// `UPDATE … SET col = value, … WHERE id = … / id IN (…)` on a table with
/// declared columns whose integer primary key is `id`: one `UpdateRows`
/// event naming the live rows.
fn fixed_returning(table: &str) -> WriteError {
    unsupported(format!(
        "RETURNING on {table}, a table with the fixed columns id, vec, tag and metadata; it works on tables with declared columns"
    ))
}

/// Deletes the live records among `ids`; `returning`: the outcome carries
/// the rows as they were.
fn delete_rows(
    engine: &Engine,
    info: &TableInfo,
    ids: &[u64],
    returning: bool,
) -> Result<WriteOutcome, WriteError> {
    let mut written = None;
    let rows = submit_for_existing(engine, info, ids, "DELETE", |state, present| {
        if returning {
            written = Some(stored_rows(state, info, present, None)?);
        }
        Ok(delete_event(info, present))
    })?;
    Ok(WriteOutcome {
        rows,
        notices: Vec::new(),
        written: returning.then(|| written.unwrap_or_default()),
    })
}

/// The assignments of an `UPDATE` of a declared table: values by scalar
/// column index (`None` for NULL) and the new vector, if any (`Some(None)`
/// for NULL).
type Change<'a> = (&'a [(u16, Option<Vec<u8>>)], Option<Option<&'a [i32]>>);

/// The rows of the live records `present` of a declared table, each with
/// `change` applied: as an `UPDATE` leaves them, or as they are.
fn stored_rows(
    state: &valori_core::state::State,
    info: &TableInfo,
    present: &[u64],
    change: Option<Change<'_>>,
) -> Result<Written, WriteError> {
    let table = info.name.as_str();
    let c = state
        .collection(&info.name)
        .ok_or_else(|| WriteError::UndefinedTable(table.into()))?;
    let t = c
        .table()
        .ok_or_else(|| WriteError::Unsupported(format!("{table} has the fixed columns")))?;
    let (sets, vector) = change.unwrap_or((&[], None));
    let mut out = Written {
        rows: present.len(),
        vectors: Vec::with_capacity(present.len() * c.dim()),
        tags: Vec::with_capacity(present.len()),
        columns: vec![valori_core::table::ColumnValues::default(); t.columns().len()],
    };
    for id in present {
        let row = c
            .row_of(RecordId(*id))
            .ok_or_else(|| WriteError::Conflict(format!("record {id} of {table}")))?
            as usize;
        match vector {
            None => {
                out.vectors.extend_from_slice(c.vector(row));
                out.tags.push(c.tags()[row]);
            }
            Some(cell) => out.push_vector(cell, c.dim()),
        }
        for (scalar, values) in out.columns.iter_mut().enumerate() {
            match sets.iter().find(|(s, _)| usize::from(*s) == scalar) {
                Some((_, bytes)) => values.push(bytes.as_deref()),
                None => values.push(t.columns()[scalar].get(row)),
            }
        }
    }
    Ok(out)
}

/// `delete` of the live records `present`: one `Delete` or `DeleteBatch`.
fn delete_event(info: &TableInfo, present: &[u64]) -> Event {
    if let [id] = present {
        Event::Delete {
            collection: info.name.clone(),
            id: RecordId(*id),
        }
    } else {
        Event::DeleteBatch {
            collection: info.name.clone(),
            ids: present.iter().map(|id| RecordId(*id)).collect(),
        }
    }
}

/// The record ids of `WHERE id = … / id IN (…)` on a declared table
/// whose integer primary key is `id` (its values are the record ids).
fn declared_ids(
    info: &TableInfo,
    schema: &TableSchema,
    ids: &[Literal],
    verb: &str,
) -> Result<Vec<u64>, WriteError> {
    if ids.is_empty() || !key_is_id(schema) {
        return Err(internal_unresolved(verb, info.name.as_str()));
    }
    ids.iter()
        .map(
            |l| match crate::declared::scalar_bytes(l, ScalarType::Int64, 0, "id")? {
                Some(b) => Ok(i64::from_le_bytes(b.try_into().unwrap_or_default()) as u64),
                None => Ok(u64::MAX),
            },
        )
        .collect()
}

/// Whether `schema`'s integer primary key is named `id`: `WHERE id = …`
/// then names record ids.
pub(crate) fn key_is_id(schema: &TableSchema) -> bool {
    schema
        .integer_key()
        .and_then(|k| schema.scalar_columns().nth(k))
        .is_some_and(|(_, def, _)| def.name == "id")
}

fn internal_unresolved(verb: &str, table: &str) -> WriteError {
    unsupported(format!(
        "{verb} of {table}: its WHERE clause is evaluated by the SQL front ends (Postgres protocol, REST /v1/sql, Flight SQL, Python sql())"
    ))
}

/// What an `UPDATE` of a declared table assigns: literals, the same for
/// every row, and computed values, per record in the order of their
/// columns.
struct Assignments<'a> {
    sets: &'a [(String, Literal)],
    computed: Option<Computed<'a>>,
}

/// The assignments of expressions, and their values per record.
type Computed<'a> = (&'a [(String, Box<Expr>)], &'a [(u64, Vec<Literal>)]);

/// Where an assigned column is: among the scalar columns, or the vector.
enum Target {
    /// Its position among the scalar columns, its type and type modifier.
    Scalar(u16, valori_core::table::ScalarType, u32),
    Vector,
}

/// The vector column of a table an `UPDATE` assigns it in.
fn vector_def(schema: &TableSchema) -> &valori_core::table::ColumnDef {
    let v = schema
        .vector_column()
        .expect("invariant: the vector is assigned only in a table that has one");
    &schema.columns[v]
}

/// The column `name` of `schema` that an `UPDATE` may assign.
fn update_target(
    schema: &TableSchema,
    table: &str,
    name: &str,
) -> Result<(Target, bool), WriteError> {
    let (index, def) = schema
        .columns
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == *name)
        .ok_or_else(|| {
            WriteError::UndefinedColumn(format!(
                "column {name:?} of relation {table:?} does not exist"
            ))
        })?;
    let Some(ty) = def.scalar() else {
        return Ok((Target::Vector, false));
    };
    crate::declared::check_not_always(def, true)?;
    let scalar = schema
        .scalar_columns()
        .position(|(i, _, _)| i == index)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| unsupported(format!("column {name}")))?;
    Ok((
        Target::Scalar(scalar, ty, def.type_mod),
        def.not_null() || def.is_primary_key(),
    ))
}

/// A value's bytes for the scalar column `name` (`None` for NULL, refused
/// in a NOT NULL column).
fn assigned_bytes(
    value: &Literal,
    (ty, type_mod): (valori_core::table::ScalarType, u32),
    not_null: bool,
    name: &str,
    table: &str,
) -> Result<Option<Vec<u8>>, WriteError> {
    let bytes = crate::declared::scalar_bytes(value, ty, type_mod, name)?;
    if bytes.is_none() && not_null {
        return Err(WriteError::NotNull(format!(
            "null value in column {name:?} of relation {table:?} violates not-null constraint"
        )));
    }
    Ok(bytes)
}

/// Per record, the computed values of an `UPDATE`, checked and converted
/// for their columns (the vector, if computed: `Some(None)` for NULL).
type ComputedRows = BTreeMap<u64, (Vec<Option<Vec<u8>>>, Option<Option<Vec<i32>>>)>;

fn update_declared(
    engine: &Engine,
    info: &TableInfo,
    schema: &TableSchema,
    ids: &[u64],
    assignments: Assignments<'_>,
    returning: bool,
) -> Result<WriteOutcome, WriteError> {
    let table = info.name.as_str();
    let sets = assignments.sets;
    let mut columns: Vec<(u16, Option<Vec<u8>>)> = Vec::with_capacity(sets.len());
    let mut vector = None;
    for (name, value) in sets {
        match update_target(schema, table, name)? {
            (Target::Vector, _) => {
                vector = Some(crate::declared::vector_value(
                    value,
                    info.config.dim,
                    vector_def(schema),
                    table,
                )?);
            }
            (Target::Scalar(scalar, ty, type_mod), not_null) => {
                columns.push((
                    scalar,
                    assigned_bytes(value, (ty, type_mod), not_null, name, table)?,
                ));
            }
        }
    }
    // Computed values, converted per record before anything is built.
    let mut computed_scalars: Vec<u16> = Vec::new();
    let mut computed_vector = false;
    let mut per_record: ComputedRows = BTreeMap::new();
    if let Some((names, rows)) = assignments.computed {
        let targets = names
            .iter()
            .map(|(name, _)| update_target(schema, table, name))
            .collect::<Result<Vec<_>, _>>()?;
        for (target, _) in &targets {
            match target {
                Target::Scalar(scalar, _, _) => computed_scalars.push(*scalar),
                Target::Vector => computed_vector = true,
            }
        }
        if computed_vector && vector.is_some() {
            return Err(WriteError::Syntax(
                "multiple assignments to the vector column".to_owned(),
            ));
        }
        for (id, values) in rows {
            let mut bytes = Vec::with_capacity(computed_scalars.len());
            let mut row_vector = None;
            for (((name, _), (target, not_null)), value) in names.iter().zip(&targets).zip(values) {
                match target {
                    Target::Scalar(_, ty, type_mod) => {
                        bytes.push(assigned_bytes(
                            value,
                            (*ty, *type_mod),
                            *not_null,
                            name,
                            table,
                        )?);
                    }
                    Target::Vector => {
                        row_vector = Some(crate::declared::vector_value(
                            value,
                            info.config.dim,
                            vector_def(schema),
                            table,
                        )?);
                    }
                }
            }
            per_record.insert(*id, (bytes, row_vector));
        }
    }
    let computed = !per_record.is_empty();
    // An integer key is the record id: assigning it moves the rows to new
    // ids, a delete and an insert in one event.
    let key = schema.integer_key().and_then(|k| u16::try_from(k).ok());
    let moves = key.is_some_and(|key| {
        columns.iter().any(|(s, _)| *s == key) || computed_scalars.contains(&key)
    });
    let mut written = None;
    let count = submit_for_existing(engine, info, ids, "UPDATE", |state, present| {
        let ids: Vec<RecordId> = present.iter().map(|id| RecordId(*id)).collect();
        if vector.is_none() && !returning && !computed && !moves {
            return Ok(Event::UpdateRows {
                collection: info.name.clone(),
                ids,
                columns: columns
                    .iter()
                    .map(|(scalar, bytes)| {
                        let mut values = valori_core::table::ColumnValues::default();
                        for _ in present {
                            values.push(bytes.as_deref());
                        }
                        (*scalar, values)
                    })
                    .collect(),
            });
        }
        // The rows as the update leaves them: what RETURNING answers,
        // and, when the vector changes, the rows that replace them whole
        // (re-indexed), each keeping the values of the columns not
        // assigned.
        let assigned = vector.as_ref().map(|cell| cell.as_deref());
        let mut rows = stored_rows(state, info, present, Some((&columns, assigned)))?;
        if computed {
            override_computed(&mut rows, present, &computed_scalars, &per_record, info)?;
        }
        if let (true, Some(key)) = (moves, key) {
            return moved_rows(info, present, &rows, key);
        }
        let event = match vector.is_some() || computed_vector {
            false => Event::UpdateRows {
                collection: info.name.clone(),
                ids,
                columns: columns
                    .iter()
                    .map(|(scalar, _)| *scalar)
                    .chain(computed_scalars.iter().copied())
                    .map(|scalar| (scalar, rows.columns[usize::from(scalar)].clone()))
                    .collect(),
            },
            true => {
                let mut batch = Batch::new(info.config.dim);
                let dim = info.config.dim as usize;
                for (i, id) in ids.iter().enumerate() {
                    batch.push(
                        *id,
                        &rows.vectors[i * dim..(i + 1) * dim],
                        rows.tags[i],
                        &[],
                    );
                }
                Event::ReplaceRows {
                    collection: info.name.clone(),
                    batch,
                    columns: rows.columns.clone(),
                }
            }
        };
        if returning {
            written = Some(rows);
        }
        Ok(event)
    })?;
    Ok(WriteOutcome {
        rows: count,
        notices: Vec::new(),
        written: returning.then(|| written.unwrap_or_default()),
    })
}

/// The event of an `UPDATE` that assigns the integer key (the record
/// id): the rows are deleted and inserted again, whole, under their new
/// keys, in one `Transaction` (new keys that collide with each other or
/// with a row not moved are refused by the insert, nothing written).
fn moved_rows(
    info: &TableInfo,
    present: &[u64],
    rows: &Written,
    key: u16,
) -> Result<Event, WriteError> {
    let dim = info.config.dim as usize;
    let keys = &rows.columns[usize::from(key)];
    let mut batch = Batch::new(info.config.dim);
    for i in 0..present.len() {
        let id = keys
            .get(i)
            .and_then(valori_core::table::integer_value)
            .ok_or_else(|| {
                WriteError::NotNull(format!(
                    "null value in the primary key of relation {:?}",
                    info.name.as_str()
                ))
            })?;
        batch.push(
            RecordId(id as u64),
            &rows.vectors[i * dim..(i + 1) * dim],
            rows.tags[i],
            &[],
        );
    }
    Ok(Event::Transaction {
        events: vec![
            delete_event(info, present),
            Event::InsertRows {
                collection: info.name.clone(),
                batch,
                columns: rows.columns.clone(),
            },
        ],
    })
}

/// Replaces, in the rows an update leaves, the values it computed per
/// record: the computed scalar columns and, if computed, the vector.
fn override_computed(
    rows: &mut Written,
    present: &[u64],
    scalars: &[u16],
    per_record: &ComputedRows,
    info: &TableInfo,
) -> Result<(), WriteError> {
    let dim = info.config.dim as usize;
    for (j, &scalar) in scalars.iter().enumerate() {
        let mut values = valori_core::table::ColumnValues::default();
        for id in present {
            let (bytes, _) = per_record
                .get(id)
                .ok_or_else(|| internal_unresolved("UPDATE", info.name.as_str()))?;
            values.push(bytes[j].as_deref());
        }
        rows.columns[usize::from(scalar)] = values;
    }
    for (i, id) in present.iter().enumerate() {
        if let Some((_, Some(cell))) = per_record.get(id) {
            let vector = &mut rows.vectors[i * dim..(i + 1) * dim];
            match cell {
                Some(v) => vector.copy_from_slice(v),
                None => vector.fill(0),
            }
            rows.tags[i] = if cell.is_some() { 0 } else { NULL_VECTOR_TAG };
        }
    }
    Ok(())
}

fn insert(
    engine: &Engine,
    table: &str,
    columns: &[Column],
    rows: &[Vec<Literal>],
) -> Result<WriteOutcome, WriteError> {
    let info = table_info(engine, table)?;
    if rows.is_empty() {
        return Ok(WriteOutcome::default());
    }
    if rows.len() as u64 > u64::from(limits::BATCH_RECORDS_MAX) {
        return Err(WriteError::TooLarge(format!(
            "{} rows in one INSERT; at most {}",
            rows.len(),
            limits::BATCH_RECORDS_MAX
        )));
    }
    let dim = info.config.dim;
    let position = |c: Column| columns.iter().position(|x| *x == c);
    let (id_at, vec_at, tag_at, meta_at) = (
        position(Column::Id),
        position(Column::Vec),
        position(Column::Tag),
        position(Column::Metadata),
    );
    let mut ids = Vec::with_capacity(rows.len());
    let mut batch = Batch::new(dim);
    for (row, values) in rows.iter().enumerate() {
        let at = |column| At { row, column, table };
        let id = id_at
            .map(|i| integer_value(&values[i], at(Column::Id)))
            .transpose()?;
        let vector = match vec_at {
            Some(i) => vector_value(&values[i], dim, at(Column::Vec))?,
            None => {
                return Err(WriteError::InvalidValue(
                    "null value in column \"vec\": every record needs a vector".into(),
                ));
            }
        };
        let tag = match tag_at {
            Some(i) if values[i] != Literal::Null => integer_value(&values[i], at(Column::Tag))?,
            _ => 0,
        };
        let metadata = match meta_at {
            Some(i) => metadata_value(&values[i], at(Column::Metadata))?,
            None => Vec::new(),
        };
        ids.push(id);
        batch.push(RecordId(id.unwrap_or(0)), &vector, tag, &metadata);
    }
    let rows_count = rows.len() as u64;
    if id_at.is_some() {
        let mut seen = BTreeSet::new();
        for id in batch.ids.iter() {
            if !seen.insert(*id) {
                return Err(WriteError::Duplicate(format!(
                    "record {id} appears twice in this INSERT"
                )));
            }
        }
        let ids: Vec<u64> = batch.ids.iter().map(|id| id.0).collect();
        let existing = engine.read(|state| live_ids(state, &info, &ids))?;
        if let Some(id) = existing.first() {
            return Err(WriteError::Duplicate(format!(
                "duplicate key value violates unique constraint: record {id} already exists in {table}"
            )));
        }
        engine.submit(batch_event(info.name, batch))?;
    } else {
        engine.submit_with_next_id(&info.name.clone(), move |first| {
            for (i, id) in batch.ids.iter_mut().enumerate() {
                *id = RecordId(first.saturating_add(i as u64));
            }
            batch_event(info.name, batch)
        })?;
    }
    Ok(WriteOutcome {
        rows: rows_count,
        notices: Vec::new(),
        written: None,
    })
}

fn batch_event(collection: CollectionName, batch: Batch) -> Event {
    if batch.len() == 1 {
        Event::Insert {
            collection,
            record: Record {
                id: batch.ids[0],
                vector: batch.vector(0).to_vec(),
                tag: batch.tags[0],
                metadata: batch.metadata(0).to_vec(),
            },
        }
    } else {
        Event::InsertBatch { collection, batch }
    }
}

/// The rows of `COPY … FROM STDIN` data as an `INSERT`'s values (each
/// field a [`Literal::Text`] or [`Literal::Null`]).
pub fn copy_rows(
    format: &CopyFormat,
    width: usize,
    data: &[u8],
) -> Result<Vec<Vec<Literal>>, WriteError> {
    if format.binary {
        return Err(unsupported(
            "binary COPY data is decoded by the Postgres front end; send it over the Postgres protocol",
        ));
    }
    let text = std::str::from_utf8(data)
        .map_err(|e| WriteError::InvalidText(format!("COPY data is not UTF-8: {e}")))?;
    let mut rows = if format.csv {
        csv_records(text, format)?
    } else {
        text_records(text, format)?
    };
    if format.header && !rows.is_empty() {
        rows.remove(0);
    }
    for (i, row) in rows.iter().enumerate() {
        if row.len() != width {
            return Err(WriteError::InvalidText(format!(
                "COPY line {}: {} fields for {} columns",
                i + 1 + usize::from(format.header),
                row.len(),
                width
            )));
        }
    }
    Ok(rows)
}

fn text_records(text: &str, format: &CopyFormat) -> Result<Vec<Vec<Literal>>, WriteError> {
    let mut rows = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line == "\\." {
            break;
        }
        let mut fields = Vec::new();
        for raw in line.split(format.delimiter) {
            if raw == format.null {
                fields.push(Literal::Null);
                continue;
            }
            fields.push(Literal::Text(unescape_copy_text(raw)?));
        }
        rows.push(fields);
    }
    Ok(rows)
}

fn unescape_copy_text(raw: &str) -> Result<String, WriteError> {
    if !raw.contains('\\') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => {
                return Err(WriteError::InvalidText(format!(
                    "COPY field {raw:?} ends with a backslash"
                )));
            }
        }
    }
    Ok(out)
}

fn csv_records(text: &str, format: &CopyFormat) -> Result<Vec<Vec<Literal>>, WriteError> {
    let mut rows = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted_field = false;
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    let mut line_has_data = false;
    let finish_field = |field: &mut String, quoted: &mut bool, fields: &mut Vec<Literal>| {
        let value = std::mem::take(field);
        if !*quoted && value == format.null {
            fields.push(Literal::Null);
        } else {
            fields.push(Literal::Text(value));
        }
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == format.escape
                && chars.peek() == Some(&format.quote)
                && format.escape != format.quote
            {
                field.push(format.quote);
                chars.next();
            } else if c == format.quote {
                if format.escape == format.quote && chars.peek() == Some(&format.quote) {
                    field.push(format.quote);
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            c if c == format.quote => {
                in_quotes = true;
                quoted_field = true;
                line_has_data = true;
            }
            c if c == format.delimiter => {
                finish_field(&mut field, &mut quoted_field, &mut fields);
                line_has_data = true;
            }
            '\r' => {}
            '\n' => {
                if line_has_data || !field.is_empty() {
                    finish_field(&mut field, &mut quoted_field, &mut fields);
                    rows.push(std::mem::take(&mut fields));
                }
                line_has_data = false;
            }
            c => {
                field.push(c);
                line_has_data = true;
            }
        }
        if !line_has_data && field == "\\." {
            break;
        }
    }
    if in_quotes {
        return Err(WriteError::InvalidText(
            "COPY CSV data ends inside a quoted field".into(),
        ));
    }
    if (line_has_data || !field.is_empty()) && field != "\\." {
        finish_field(&mut field, &mut quoted_field, &mut fields);
        rows.push(fields);
    }
    Ok(rows)
}

/// Inserts the rows of a `COPY … FROM STDIN`, checked completely first, as
/// one atomic event. More than [`limits::BATCH_RECORDS_MAX`] rows are
/// refused whole: they would need several events, and a crash between
/// their frames would keep only some of them.
/// Checks that every name of a `COPY` column list is a fixed column of
/// `table` (a table with the fixed columns).
pub fn check_fixed_columns(names: &[String], table: &str) -> Result<(), WriteError> {
    column_list(names.iter().cloned(), table).map(|_| ())
}

pub fn execute_copy(
    engine: &Engine,
    table: &str,
    columns: &[Column],
    rows: &[Vec<Literal>],
) -> Result<WriteOutcome, WriteError> {
    if rows.len() as u64 > u64::from(limits::BATCH_RECORDS_MAX) {
        return Err(WriteError::TooLarge(format!(
            "COPY of {} rows; at most {} rows (BATCH_RECORDS_MAX) in one COPY, which is one atomic event: split the data into several COPY statements",
            rows.len(),
            limits::BATCH_RECORDS_MAX
        )));
    }
    insert(engine, table, columns, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> WriteStatement {
        parse(sql).unwrap().unwrap()
    }

    /// Proves CREATE TABLE reads the dimension, the metric and the index
    /// options, with pgvector's defaults otherwise.
    #[test]
    fn create_table_reads_config() {
        let WriteStatement::CreateTable { name, config, .. } = parsed(
            "CREATE TABLE Docs (id BIGINT PRIMARY KEY, vec VECTOR(384), tag BIGINT, metadata JSONB)",
        ) else {
            panic!("not a create");
        };
        assert_eq!(name.as_str(), "docs");
        assert_eq!(config.dim, 384);
        assert_eq!(config.metric, Metric::L2);
        assert_eq!(config.index, IndexParams::default());
        let WriteStatement::CreateTable { config, .. } = parsed(
            "CREATE TABLE d (id bigint, vec vector(2)) WITH (metric = 'cosine', m = 8, ef_construction = 40)",
        ) else {
            panic!("not a create");
        };
        assert_eq!(
            (config.metric, config.index.m, config.index.ef_construction),
            (Metric::Cosine, 8, 40)
        );
        // Other column names declare the table's own columns.
        assert!(matches!(
            parsed("CREATE TABLE d (id bigint, embedding vector(2))"),
            WriteStatement::CreateDeclaredTable { .. }
        ));
        // So does a table without `vec`: one without a vector column.
        assert!(matches!(
            parsed("CREATE TABLE d (id bigint)"),
            WriteStatement::CreateDeclaredTable { config, .. } if config.dim == 1
        ));
        for bad in [
            "CREATE TABLE d (id bigint, vec vector(0))",
            "CREATE TABLE d (id text, vec vector(2))",
            "CREATE TABLE d (id bigint, vec vector(2)) WITH (metric = 'manhattan')",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// Proves INSERT, DELETE and UPDATE read their literals, ids and
    /// placeholders, and that queries are not writes.
    #[test]
    fn dml_reads_literals() {
        assert_eq!(
            parsed(
                "INSERT INTO docs (id, vec, metadata) VALUES (1, '[1,2]', '{\"a\":1}'), ($1, ARRAY[1, -2.5], X'00ff')"
            ),
            WriteStatement::Insert {
                table: "docs".into(),
                columns: vec![Column::Id, Column::Vec, Column::Metadata],
                select: None,
                on_conflict: None,
                returning: None,
                names: Some(vec!["id".into(), "vec".into(), "metadata".into()]),
                rows: vec![
                    vec![
                        Literal::Number("1".into()),
                        Literal::Text("[1,2]".into()),
                        Literal::Text("{\"a\":1}".into())
                    ],
                    vec![
                        Literal::Param(1),
                        Literal::Array(vec![
                            Literal::Number("1".into()),
                            Literal::Number("-2.5".into())
                        ]),
                        Literal::Bytes(vec![0, 255]),
                    ],
                ],
            }
        );
        let WriteStatement::Delete {
            table,
            ids,
            selection,
            matched,
            returning,
        } = parsed("DELETE FROM docs WHERE id IN (1, 2) OR id = $1")
        else {
            panic!("not a delete");
        };
        assert_eq!(table, "docs");
        assert_eq!(
            ids,
            [
                Literal::Number("1".into()),
                Literal::Number("2".into()),
                Literal::Param(1)
            ]
        );
        assert!(selection.is_some() && matched.is_none() && returning.is_none());
        let update = parsed("UPDATE docs SET tag = $2, metadata = '\\x01'::bytea WHERE id = $1");
        assert_eq!(
            update.parameter_columns(),
            vec![(1, Column::Id), (2, Column::Tag)]
        );
        let WriteStatement::Insert { columns, .. } = parsed("INSERT INTO d VALUES (1, '[1]')")
        else {
            panic!("not an insert");
        };
        assert_eq!(columns, [Column::Id, Column::Vec]);
        // The number of values is checked against the table when the
        // statement runs (a declared table may have more columns).
        assert!(parse("INSERT INTO d VALUES (1, '[1]', 2, '{}', 5)").is_ok());
        assert!(parse("INSERT INTO d VALUES (1, '[1]'), (2)").is_err());
        assert!(parse("SELECT 1").unwrap().is_none());
        // Any WHERE (or none) parses: a table with the fixed columns
        // refuses it when the statement runs, a declared table's rows are
        // found by the query engine.
        assert!(parse("DELETE FROM docs").is_ok());
        // Which columns an UPDATE may set depends on the table: checked
        // when it runs (a declared table has its own columns).
        assert!(parse("UPDATE docs SET vec = '[1]' WHERE id = 1").is_ok());
        assert!(parse("UPDATE docs SET a = 1, a = 2 WHERE id = 1").is_err());
    }

    /// Proves the text and CSV COPY formats, with NULLs, escapes, quotes
    /// and the end marker.
    #[test]
    fn copy_formats() {
        let cols = [Column::Id, Column::Vec, Column::Metadata];
        let text = copy_rows(
            &CopyFormat::text(),
            cols.len(),
            b"1\t[1,2]\t\\N\n2\t[3,4]\ta\\tb\n\\.\n",
        )
        .unwrap();
        assert_eq!(
            text[0],
            vec![
                Literal::Text("1".into()),
                Literal::Text("[1,2]".into()),
                Literal::Null
            ]
        );
        assert_eq!(text[1][2], Literal::Text("a\tb".into()));
        let mut csv = CopyFormat::csv();
        csv.header = true;
        let rows = copy_rows(
            &csv,
            cols.len(),
            b"id,vec,metadata\n1,\"[1,2]\",\"{\"\"a\"\": 1}\"\n2,\"[3,4]\",\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][2], Literal::Text("{\"a\": 1}".into()));
        assert_eq!(rows[1][2], Literal::Null);
        assert!(copy_rows(&csv, cols.len(), b"h\n1,\"[1,2]\n").is_err());
    }
}
