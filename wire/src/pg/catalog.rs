//! Just enough of `pg_catalog` for Postgres clients.
//!
//! Two mechanisms:
//!
//! - **Tables and functions in the session**: [`register`] adds a
//!   `pg_catalog` schema whose tables `pg_type`, `pg_namespace`, `pg_class`,
//!   `pg_attribute`, `pg_database` and `pg_settings` are built from the
//!   engine's state at each lookup (OIDs as `BIGINT`), and the functions
//!   `version()`, `current_setting(name)`, `to_regtype(name)`,
//!   `current_schema()`, `current_database()`, `pg_table_is_visible(oid)`
//!   and `format_type(oid, typmod)`.
//! - **Known client queries** ([`intercept`]): the type lookups of
//!   tokio-postgres, psycopg (`TypeInfo.fetch`, used by pgvector-python's
//!   `register_vector`) and asyncpg, and psql's `\d`, `\dt` and
//!   `\d table`, are recognised by their text and answered with rows of
//!   the exact Postgres types those clients decode (`oid`, `name`,
//!   `"char"`, arrays), which DataFusion has no types for.
//!   Any other statement that mentions `pg_catalog.` and does not plan
//!   returns no rows ([`Canned::Empty`]), so that psql's optional footer
//!   queries (policies, publications, inheritance) come back empty rather
//!   than failing.
//!
//! OIDs: `vector` is [`VECTOR_OID`], `vector[]` [`VECTOR_ARRAY_OID`],
//! namespace `public` 2200 and `pg_catalog` 11 (as in Postgres); table
//! `n` (0-based, in name order) is `TABLE_OID_BASE + n`, so a table's OID
//! can change when a table sorting before it is created or dropped.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::api::results::FieldFormat;
use valori_query::QueryEngine;
use valori_query::datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use valori_query::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use valori_query::datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use valori_query::datafusion::common::{Result as DfResult, ScalarValue};
use valori_query::datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use valori_query::datafusion::sql::sqlparser::ast::{SelectItem, SetExpr, Statement};
use valori_query::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use valori_query::datafusion::sql::sqlparser::parser::Parser;
use valori_query::engine::Engine;
use valori_query::{CATALOG, provider};

use super::error::PgError;
use super::types::{VECTOR_ARRAY_OID, VECTOR_OID, pg_type};

/// OID of the first table (in name order).
pub const TABLE_OID_BASE: u32 = 70_000;
const PUBLIC_NAMESPACE_OID: u32 = 2200;
const PG_CATALOG_NAMESPACE_OID: u32 = 11;

/// The server version reported by `version()` and `server_version`.
pub const SERVER_VERSION: &str = "16.6";

/// The built-in types `pg_type` lists: (oid, name, array oid, length).
const BUILTIN_TYPES: [(u32, &str, u32, i16); 13] = [
    (16, "bool", 1000, 1),
    (17, "bytea", 1001, -1),
    (18, "char", 1002, 1),
    (19, "name", 1003, 64),
    (20, "int8", 1016, 8),
    (21, "int2", 1005, 2),
    (23, "int4", 1007, 4),
    (25, "text", 1009, -1),
    (26, "oid", 1028, 4),
    (700, "float4", 1021, 4),
    (701, "float8", 1022, 8),
    (1043, "varchar", 1015, -1),
    (1560, "bit", 1561, -1),
];

/// Adds the `pg_catalog` schema and the catalog functions to the query
/// engine's session.
pub fn register(query: &QueryEngine) {
    let ctx = query.context();
    if let Some(catalog) = ctx.catalog(CATALOG) {
        let schema = PgCatalog {
            engine: Arc::clone(query.engine()),
        };
        // Replacing a schema of the in-memory catalog cannot fail.
        let _previous = catalog.register_schema("pg_catalog", Arc::new(schema));
    }
    let text = |s: &str| ColumnarValue::Scalar(ScalarValue::Utf8(Some(s.to_owned())));
    let version = format!(
        "PostgreSQL {SERVER_VERSION} (Valori {})",
        env!("CARGO_PKG_VERSION")
    );
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(text(&version))),
    ));
    ctx.register_udf(create_udf(
        "current_schema",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(text("public"))),
    ));
    ctx.register_udf(create_udf(
        "current_database",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(text("valori"))),
    ));
    ctx.register_udf(create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            map_text(args, |name| server_setting(name).map(str::to_owned))
        }),
    ));
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let out = map_text(args, |name| type_oid(name).map(|o| o.to_string()))?;
            Ok(match out {
                ColumnarValue::Scalar(ScalarValue::Utf8(v)) => {
                    ColumnarValue::Scalar(ScalarValue::Int64(v.and_then(|s| s.parse().ok())))
                }
                other => other,
            })
        }),
    ));
    ctx.register_udf(create_udf(
        "pg_table_is_visible",
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))),
    ));
    ctx.register_udf(create_udf(
        "format_type",
        vec![DataType::Int64, DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let oid = match args.first() {
                Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(o)))) => Some(*o),
                _ => None,
            };
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(
                oid.and_then(|o| u32::try_from(o).ok()).and_then(type_name),
            )))
        }),
    ));
}

/// Applies `f` to a scalar text argument (the catalog functions are only
/// called with literals by clients).
fn map_text(args: &[ColumnarValue], f: impl Fn(&str) -> Option<String>) -> DfResult<ColumnarValue> {
    let value = match args.first() {
        Some(ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        )) => f(s),
        _ => None,
    };
    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)))
}

/// Server-wide settings as `current_setting` and `SHOW` report them.
pub fn server_setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => SERVER_VERSION,
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" => "on",
        "search_path" => "public",
        "datestyle" => "ISO, MDY",
        "timezone" => "UTC",
        "integer_datetimes" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "serializable",
        "transaction_read_only" | "default_transaction_read_only" => "off",
        "max_identifier_length" => "63",
        "statement_timeout" => "0",
        "lc_collate" | "lc_ctype" => "C",
        "is_superuser" => "on",
        _ => return None,
    })
}

/// The OID of a type name (`vector`, `public.vector`, `int8`, …).
pub fn type_oid(name: &str) -> Option<u32> {
    let name = name.trim().trim_matches('"').to_ascii_lowercase();
    let name = name
        .strip_prefix("public.")
        .or_else(|| name.strip_prefix("pg_catalog."))
        .unwrap_or(&name);
    match name {
        "vector" => Some(VECTOR_OID),
        "_vector" | "vector[]" => Some(VECTOR_ARRAY_OID),
        "bigint" => Some(20),
        "integer" | "int" => Some(23),
        "smallint" => Some(21),
        "boolean" => Some(16),
        "real" => Some(700),
        "double precision" => Some(701),
        _ => BUILTIN_TYPES
            .iter()
            .find(|(_, n, _, _)| *n == name)
            .map(|(oid, ..)| *oid),
    }
}

/// The name of a type OID.
pub fn type_name(oid: u32) -> Option<String> {
    match oid {
        VECTOR_OID => Some("vector".into()),
        VECTOR_ARRAY_OID => Some("vector[]".into()),
        20 => Some("bigint".into()),
        23 => Some("integer".into()),
        1007 => Some("integer[]".into()),
        _ => BUILTIN_TYPES
            .iter()
            .find(|(o, ..)| *o == oid)
            .map(|(_, n, ..)| (*n).to_owned()),
    }
}

/// The tables of the database, in name order, with their dimensions.
fn tables(engine: &Engine) -> Vec<(u32, String, u32)> {
    engine
        .read(|state| {
            state
                .collections()
                .enumerate()
                .map(|(i, c)| {
                    (
                        TABLE_OID_BASE + i as u32,
                        c.name().as_str().to_owned(),
                        c.config().dim,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A table's columns as `(name, type name, type oid)`.
fn table_columns(dim: u32) -> Vec<(String, String, u32)> {
    provider::table_schema(dim)
        .fields()
        .iter()
        .map(|f| {
            let ty = pg_type(f.data_type());
            let name = if ty.oid() == VECTOR_OID {
                format!("vector({dim})")
            } else {
                type_name(ty.oid()).unwrap_or_else(|| ty.name().to_owned())
            };
            (f.name().clone(), name, ty.oid())
        })
        .collect()
}

/// The `pg_catalog` schema, rebuilt from the state at each lookup.
#[derive(Debug)]
struct PgCatalog {
    engine: Arc<Engine>,
}

const CATALOG_TABLES: [&str; 6] = [
    "pg_type",
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_database",
    "pg_settings",
];

fn int64(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

fn strings(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn mem_table(columns: Vec<(&str, ArrayRef)>) -> DfResult<Arc<dyn TableProvider>> {
    let schema: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

impl PgCatalog {
    fn build(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let tables = tables(&self.engine);
        Ok(Some(match name {
            "pg_type" => {
                let mut rows: Vec<(u32, String, u32, u32, i16, u32)> = BUILTIN_TYPES
                    .iter()
                    .map(|(oid, n, arr, len)| {
                        (
                            *oid,
                            (*n).to_owned(),
                            PG_CATALOG_NAMESPACE_OID,
                            *arr,
                            *len,
                            0,
                        )
                    })
                    .collect();
                rows.push((
                    VECTOR_OID,
                    "vector".into(),
                    PUBLIC_NAMESPACE_OID,
                    VECTOR_ARRAY_OID,
                    -1,
                    0,
                ));
                rows.push((
                    VECTOR_ARRAY_OID,
                    "_vector".into(),
                    PUBLIC_NAMESPACE_OID,
                    0,
                    -1,
                    VECTOR_OID,
                ));
                mem_table(vec![
                    ("oid", int64(rows.iter().map(|r| i64::from(r.0)).collect())),
                    (
                        "typname",
                        strings(rows.iter().map(|r| r.1.clone()).collect()),
                    ),
                    (
                        "typnamespace",
                        int64(rows.iter().map(|r| i64::from(r.2)).collect()),
                    ),
                    (
                        "typarray",
                        int64(rows.iter().map(|r| i64::from(r.3)).collect()),
                    ),
                    (
                        "typlen",
                        Arc::new(Int16Array::from(
                            rows.iter().map(|r| r.4).collect::<Vec<_>>(),
                        )),
                    ),
                    (
                        "typelem",
                        int64(rows.iter().map(|r| i64::from(r.5)).collect()),
                    ),
                    (
                        "typtype",
                        strings(rows.iter().map(|_| "b".to_owned()).collect()),
                    ),
                    (
                        "typdelim",
                        strings(rows.iter().map(|_| ",".to_owned()).collect()),
                    ),
                    ("typbasetype", int64(rows.iter().map(|_| 0).collect())),
                    ("typrelid", int64(rows.iter().map(|_| 0).collect())),
                ])?
            }
            "pg_namespace" => mem_table(vec![
                (
                    "oid",
                    int64(vec![
                        i64::from(PG_CATALOG_NAMESPACE_OID),
                        i64::from(PUBLIC_NAMESPACE_OID),
                    ]),
                ),
                (
                    "nspname",
                    strings(vec!["pg_catalog".into(), "public".into()]),
                ),
            ])?,
            "pg_class" => mem_table(vec![
                (
                    "oid",
                    int64(tables.iter().map(|t| i64::from(t.0)).collect()),
                ),
                (
                    "relname",
                    strings(tables.iter().map(|t| t.1.clone()).collect()),
                ),
                (
                    "relnamespace",
                    int64(
                        tables
                            .iter()
                            .map(|_| i64::from(PUBLIC_NAMESPACE_OID))
                            .collect(),
                    ),
                ),
                (
                    "relkind",
                    strings(tables.iter().map(|_| "r".to_owned()).collect()),
                ),
            ])?,
            "pg_attribute" => {
                let mut rel = Vec::new();
                let mut names = Vec::new();
                let mut types = Vec::new();
                let mut nums = Vec::new();
                for (oid, _, dim) in &tables {
                    for (i, (name, _, ty)) in table_columns(*dim).into_iter().enumerate() {
                        rel.push(i64::from(*oid));
                        names.push(name);
                        types.push(i64::from(ty));
                        nums.push(i as i16 + 1);
                    }
                }
                let n = rel.len();
                mem_table(vec![
                    ("attrelid", int64(rel)),
                    ("attname", strings(names)),
                    ("atttypid", int64(types)),
                    ("attnum", Arc::new(Int16Array::from(nums))),
                    ("attnotnull", Arc::new(BooleanArray::from(vec![true; n]))),
                    ("attisdropped", Arc::new(BooleanArray::from(vec![false; n]))),
                    ("atttypmod", Arc::new(Int32Array::from(vec![-1; n]))),
                ])?
            }
            "pg_database" => mem_table(vec![
                ("oid", int64(vec![1])),
                ("datname", strings(vec!["valori".into()])),
            ])?,
            "pg_settings" => {
                let names = [
                    "server_version",
                    "server_encoding",
                    "standard_conforming_strings",
                    "search_path",
                    "statement_timeout",
                ];
                mem_table(vec![
                    (
                        "name",
                        strings(names.iter().map(|n| (*n).to_owned()).collect()),
                    ),
                    (
                        "setting",
                        strings(
                            names
                                .iter()
                                .map(|n| server_setting(n).unwrap_or_default().to_owned())
                                .collect(),
                        ),
                    ),
                ])?
            }
            _ => return Ok(None),
        }))
    }
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        CATALOG_TABLES.iter().map(|t| (*t).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.build(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        CATALOG_TABLES.contains(&name)
    }
}

/// A value of a canned catalog answer.
#[derive(Clone, Debug, PartialEq)]
pub enum CatalogValue {
    Null,
    /// `text`, `name` or `"char"`: the same bytes in both formats.
    Text(String),
    Oid(u32),
    Int4(i32),
    Bool(bool),
    OidArray(Vec<u32>),
}

impl CatalogValue {
    fn text(s: &str) -> CatalogValue {
        CatalogValue::Text(s.to_owned())
    }

    /// Appends the value to a DataRow buffer.
    pub fn encode(&self, out: &mut BytesMut, format: FieldFormat) {
        let body: Option<Vec<u8>> = match (self, format) {
            (CatalogValue::Null, _) => None,
            (CatalogValue::Text(s), _) => Some(s.as_bytes().to_vec()),
            (CatalogValue::Oid(o), FieldFormat::Binary) => Some(o.to_be_bytes().to_vec()),
            (CatalogValue::Int4(i), FieldFormat::Binary) => Some(i.to_be_bytes().to_vec()),
            (CatalogValue::Bool(b), FieldFormat::Binary) => Some(vec![u8::from(*b)]),
            (CatalogValue::Oid(o), _) => Some(o.to_string().into_bytes()),
            (CatalogValue::Int4(i), _) => Some(i.to_string().into_bytes()),
            (CatalogValue::Bool(b), _) => Some(if *b { b"t".to_vec() } else { b"f".to_vec() }),
            (CatalogValue::OidArray(items), FieldFormat::Binary) => {
                let mut b = BytesMut::new();
                b.put_i32(1);
                b.put_i32(0);
                b.put_u32(26);
                b.put_i32(items.len() as i32);
                b.put_i32(1);
                for item in items {
                    b.put_i32(4);
                    b.put_u32(*item);
                }
                Some(b.to_vec())
            }
            (CatalogValue::OidArray(items), _) => Some(
                format!(
                    "{{{}}}",
                    items
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
                .into_bytes(),
            ),
        };
        match body {
            None => out.put_i32(-1),
            Some(bytes) => {
                out.put_i32(bytes.len() as i32);
                out.put_slice(&bytes);
            }
        }
    }
}

/// A recognised client catalog query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Canned {
    /// tokio-postgres's type lookup by OID (`$1`).
    TokioTypeInfo,
    /// tokio-postgres's enum-variants / composite-fields lookups: no rows.
    TokioNoRows { columns: Vec<(String, u32)> },
    /// psycopg's `TypeInfo.fetch` (by name, `$1` or inlined).
    PsycopgTypeInfo,
    /// asyncpg's type lookup by name and schema.
    AsyncpgTypeByName,
    /// asyncpg's recursive type introspection (`$1` is an `oid[]`).
    AsyncpgIntrospect,
    /// psql's `\d` / `\dt` listing.
    PsqlList { columns: Vec<String> },
    /// psql's `\d name`, first query: the table's OID.
    PsqlFindTable { pattern: String },
    /// psql's `\d name`, second query: table flags.
    PsqlTableInfo { columns: Vec<String> },
    /// psql's `\d name`, third query: the columns.
    PsqlColumns { oid: u32, columns: Vec<String> },
    /// Any other catalog query: no rows.
    Empty { columns: Vec<String> },
}

/// The output column names of a `SELECT` (alias, else the last name of a
/// column reference or function, else `?column?`).
fn select_columns(sql: &str) -> Option<Vec<String>> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let Some(Statement::Query(query)) = statements.first() else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    Some(
        select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                SelectItem::UnnamedExpr(expr) => {
                    let text = expr.to_string();
                    let head = text.split('(').next().unwrap_or_default();
                    if text.contains('(') && !head.contains(' ') {
                        head.rsplit('.').next().unwrap_or("?column?").to_owned()
                    } else if !text.contains(' ') && !text.contains('(') {
                        text.rsplit('.').next().unwrap_or("?column?").to_owned()
                    } else {
                        "?column?".to_owned()
                    }
                }
                _ => "?column?".to_owned(),
            })
            .collect(),
    )
}

/// The quoted number after `marker` (`c.oid = '70000'`).
fn quoted_oid_after(sql: &str, marker: &str) -> Option<u32> {
    let rest = &sql[sql.find(marker)? + marker.len()..];
    let rest = rest.trim_start().strip_prefix('\'')?;
    rest[..rest.find('\'')?].parse().ok()
}

/// Recognises a client's catalog query.
pub fn intercept(sql: &str) -> Option<Canned> {
    let squashed: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let s = squashed.as_str();
    if s.contains("t.typname, t.typtype, t.typelem") {
        return Some(Canned::TokioTypeInfo);
    }
    if s.contains("SELECT enumlabel FROM pg_catalog.pg_enum") {
        return Some(Canned::TokioNoRows {
            columns: vec![("enumlabel".into(), 19)],
        });
    }
    if s.contains("SELECT attname, atttypid FROM pg_catalog.pg_attribute") {
        return Some(Canned::TokioNoRows {
            columns: vec![("attname".into(), 19), ("atttypid".into(), 26)],
        });
    }
    if s.contains("typarray AS array_oid") {
        return Some(Canned::PsycopgTypeInfo);
    }
    if s.contains("typeinfo_tree") {
        return Some(Canned::AsyncpgIntrospect);
    }
    if s.contains("t.typelem AS elemtype") && s.contains("t.typtype AS kind") {
        return Some(Canned::AsyncpgTypeByName);
    }
    if s.contains("c.relname OPERATOR(pg_catalog.~) '^(") {
        let start = s.find("'^(")? + 3;
        let end = s[start..].find(")$'")? + start;
        return Some(Canned::PsqlFindTable {
            pattern: s[start..end].trim_matches('"').to_owned(),
        });
    }
    if s.contains("SELECT c.relchecks, c.relkind") {
        return Some(Canned::PsqlTableInfo {
            columns: select_columns(sql)?,
        });
    }
    if s.contains("FROM pg_catalog.pg_attribute a") && s.contains("a.attrelid = '") {
        return Some(Canned::PsqlColumns {
            oid: quoted_oid_after(s, "a.attrelid =")?,
            columns: select_columns(sql)?,
        });
    }
    if s.contains("pg_catalog.pg_class c")
        && (s.contains("as \"Owner\"") || s.contains("AS \"Owner\""))
    {
        return Some(Canned::PsqlList {
            columns: select_columns(sql)?,
        });
    }
    None
}

/// The answer to a catalog query that did not plan: no rows, with the
/// query's output column names when it has some.
pub fn empty_answer(sql: &str) -> Option<Canned> {
    if !sql.contains("pg_catalog.") {
        return None;
    }
    Some(Canned::Empty {
        columns: select_columns(sql).unwrap_or_else(|| vec!["?column?".into()]),
    })
}

fn text_columns(columns: &[String]) -> Vec<(String, Type)> {
    columns.iter().map(|c| (c.clone(), Type::TEXT)).collect()
}

fn oid_type(oid: u32) -> Type {
    Type::from_oid(oid).unwrap_or(Type::TEXT)
}

impl Canned {
    /// Parameter types (for Describe).
    pub fn parameters(&self) -> Vec<Type> {
        match self {
            Canned::TokioTypeInfo | Canned::TokioNoRows { .. } => vec![Type::OID],
            Canned::AsyncpgTypeByName => vec![Type::NAME, Type::NAME],
            Canned::AsyncpgIntrospect => vec![Type::OID_ARRAY],
            _ => Vec::new(),
        }
    }

    /// Result columns.
    pub fn columns(&self) -> Vec<(String, Type)> {
        let named = |cols: &[(&str, Type)]| -> Vec<(String, Type)> {
            cols.iter()
                .map(|(n, t)| ((*n).to_owned(), t.clone()))
                .collect()
        };
        match self {
            Canned::TokioTypeInfo => named(&[
                ("typname", Type::NAME),
                ("typtype", Type::CHAR),
                ("typelem", Type::OID),
                ("rngsubtype", Type::OID),
                ("typbasetype", Type::OID),
                ("nspname", Type::NAME),
                ("typrelid", Type::OID),
            ]),
            Canned::TokioNoRows { columns } => columns
                .iter()
                .map(|(n, oid)| (n.clone(), oid_type(*oid)))
                .collect(),
            Canned::PsycopgTypeInfo => named(&[
                ("name", Type::TEXT),
                ("oid", Type::OID),
                ("array_oid", Type::OID),
                ("regtype", Type::TEXT),
                ("delimiter", Type::TEXT),
            ]),
            Canned::AsyncpgTypeByName => named(&[
                ("oid", Type::OID),
                ("elemtype", Type::OID),
                ("kind", Type::CHAR),
            ]),
            Canned::AsyncpgIntrospect => named(&[
                ("oid", Type::OID),
                ("ns", Type::NAME),
                ("name", Type::NAME),
                ("kind", Type::CHAR),
                ("basetype", Type::OID),
                ("elemtype", Type::OID),
                ("elemdelim", Type::CHAR),
                ("range_subtype", Type::OID),
                ("attrtypoids", Type::OID_ARRAY),
                ("attrnames", Type::TEXT_ARRAY),
                ("depth", Type::INT4),
                ("basetype_name", Type::TEXT),
                ("elemtype_name", Type::TEXT),
                ("range_subtype_name", Type::TEXT),
            ]),
            Canned::PsqlFindTable { .. } => named(&[
                ("oid", Type::OID),
                ("nspname", Type::NAME),
                ("relname", Type::NAME),
            ]),
            Canned::PsqlList { columns }
            | Canned::PsqlTableInfo { columns }
            | Canned::PsqlColumns { columns, .. }
            | Canned::Empty { columns } => text_columns(columns),
        }
    }

    /// The rows, given the parameters as text (`None` for NULL).
    pub fn rows(
        &self,
        engine: &Engine,
        params: &[Option<String>],
        sql: &str,
    ) -> Result<Vec<Vec<CatalogValue>>, PgError> {
        let param = |i: usize| params.get(i).cloned().flatten();
        let tables = tables(engine);
        let t = CatalogValue::text;
        Ok(match self {
            Canned::TokioTypeInfo => {
                let oid = param(0).and_then(|p| p.trim().parse::<u32>().ok());
                match oid {
                    Some(VECTOR_OID) => vec![vec![
                        t("vector"),
                        t("b"),
                        CatalogValue::Oid(0),
                        CatalogValue::Null,
                        CatalogValue::Oid(0),
                        t("public"),
                        CatalogValue::Oid(0),
                    ]],
                    Some(VECTOR_ARRAY_OID) => vec![vec![
                        t("_vector"),
                        t("b"),
                        CatalogValue::Oid(VECTOR_OID),
                        CatalogValue::Null,
                        CatalogValue::Oid(0),
                        t("public"),
                        CatalogValue::Oid(0),
                    ]],
                    _ => Vec::new(),
                }
            }
            Canned::TokioNoRows { .. } | Canned::Empty { .. } => Vec::new(),
            Canned::PsycopgTypeInfo => {
                // The name is `$1`, or inlined by a client that binds on
                // its side: `to_regtype('vector')`.
                let name = param(0).or_else(|| {
                    let start = sql.find("to_regtype(")? + "to_regtype(".len();
                    let rest = sql[start..].trim_start().strip_prefix('\'')?;
                    Some(rest[..rest.find('\'')?].to_owned())
                });
                let found = match name.as_deref().and_then(type_oid) {
                    Some(VECTOR_OID) => Some((VECTOR_OID, "vector".to_owned(), VECTOR_ARRAY_OID)),
                    Some(oid) => BUILTIN_TYPES
                        .iter()
                        .find(|(o, ..)| *o == oid)
                        .map(|(_, name, array, _)| (oid, (*name).to_owned(), *array)),
                    None => None,
                };
                match found {
                    Some((oid, name, array)) => vec![vec![
                        t(&name),
                        CatalogValue::Oid(oid),
                        CatalogValue::Oid(array),
                        t(&type_name(oid).unwrap_or(name)),
                        t(","),
                    ]],
                    None => Vec::new(),
                }
            }
            Canned::AsyncpgTypeByName => {
                let name = param(0).unwrap_or_default();
                let schema = param(1).unwrap_or_else(|| "public".into());
                if name == "vector" && schema == "public" {
                    vec![vec![
                        CatalogValue::Oid(VECTOR_OID),
                        CatalogValue::Oid(0),
                        t("b"),
                    ]]
                } else {
                    Vec::new()
                }
            }
            Canned::AsyncpgIntrospect => {
                let wanted: Vec<u32> = param(0)
                    .unwrap_or_default()
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse().ok())
                    .collect();
                let mut rows = Vec::new();
                if wanted.contains(&VECTOR_ARRAY_OID) {
                    rows.push(vec![
                        CatalogValue::Oid(VECTOR_ARRAY_OID),
                        t("public"),
                        t("_vector"),
                        t("b"),
                        CatalogValue::Null,
                        CatalogValue::Oid(VECTOR_OID),
                        t(","),
                        CatalogValue::Null,
                        CatalogValue::Null,
                        CatalogValue::Null,
                        CatalogValue::Int4(0),
                        CatalogValue::Null,
                        t("vector"),
                        CatalogValue::Null,
                    ]);
                }
                if wanted.contains(&VECTOR_OID) || wanted.contains(&VECTOR_ARRAY_OID) {
                    let depth = i32::from(wanted.contains(&VECTOR_ARRAY_OID));
                    rows.insert(
                        0,
                        vec![
                            CatalogValue::Oid(VECTOR_OID),
                            t("public"),
                            t("vector"),
                            t("b"),
                            CatalogValue::Null,
                            CatalogValue::Oid(0),
                            CatalogValue::Null,
                            CatalogValue::Null,
                            CatalogValue::Null,
                            CatalogValue::Null,
                            CatalogValue::Int4(depth),
                            CatalogValue::Null,
                            CatalogValue::Null,
                            CatalogValue::Null,
                        ],
                    );
                }
                rows
            }
            Canned::PsqlList { columns } => tables
                .iter()
                .map(|(_, name, _)| {
                    columns
                        .iter()
                        .map(|c| match c.as_str() {
                            "Schema" => t("public"),
                            "Name" => t(name),
                            "Type" => t("table"),
                            "Owner" => t("valori"),
                            "Persistence" => t("permanent"),
                            "Access method" => t("hnsw"),
                            _ => t(""),
                        })
                        .collect()
                })
                .collect(),
            Canned::PsqlFindTable { pattern } => tables
                .iter()
                .filter(|(_, name, _)| name == pattern)
                .map(|(oid, name, _)| vec![CatalogValue::Oid(*oid), t("public"), t(name)])
                .collect(),
            Canned::PsqlTableInfo { columns } => vec![
                columns
                    .iter()
                    .map(|c| match c.as_str() {
                        "relchecks" | "reltablespace" => t("0"),
                        "relkind" => t("r"),
                        "relpersistence" => t("p"),
                        "relreplident" => t("d"),
                        "amname" => t("heap"),
                        c if c.starts_with("rel") => t("f"),
                        _ => t(""),
                    })
                    .collect(),
            ],
            Canned::PsqlColumns { oid, columns } => {
                let Some((_, _, dim)) = tables.iter().find(|(o, ..)| o == oid) else {
                    return Ok(Vec::new());
                };
                table_columns(*dim)
                    .into_iter()
                    .map(|(name, type_name, _)| {
                        columns
                            .iter()
                            .map(|c| match c.as_str() {
                                "attname" => t(&name),
                                "format_type" => t(&type_name),
                                "attnotnull" => t("t"),
                                "attidentity" | "attgenerated" => t(""),
                                _ => CatalogValue::Null,
                            })
                            .collect()
                    })
                    .collect()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the client queries are recognised and psql's column lists
    /// are read from the query text.
    #[test]
    fn recognises_client_queries() {
        let tokio = "SELECT t.typname, t.typtype, t.typelem, r.rngsubtype, t.typbasetype, n.nspname, t.typrelid\nFROM pg_catalog.pg_type t\nLEFT OUTER JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid\nINNER JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid\nWHERE t.oid = $1\n";
        assert_eq!(intercept(tokio), Some(Canned::TokioTypeInfo));
        let find = "SELECT c.oid,\n  n.nspname,\n  c.relname\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relname OPERATOR(pg_catalog.~) '^(docs)$' COLLATE pg_catalog.default\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 2, 3;";
        assert_eq!(
            intercept(find),
            Some(Canned::PsqlFindTable {
                pattern: "docs".into()
            })
        );
        let list = "SELECT n.nspname as \"Schema\",\n  c.relname as \"Name\",\n  CASE c.relkind WHEN 'r' THEN 'table' END as \"Type\",\n  pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\"\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relkind IN ('r','p','')\nORDER BY 1,2;";
        assert_eq!(
            intercept(list),
            Some(Canned::PsqlList {
                columns: vec![
                    "Schema".into(),
                    "Name".into(),
                    "Type".into(),
                    "Owner".into()
                ]
            })
        );
        assert_eq!(intercept("SELECT 1"), None);
        assert_eq!(type_oid("public.vector"), Some(VECTOR_OID));
    }

    /// Proves binary and text encodings of canned values.
    #[test]
    fn canned_values_encode() {
        let mut out = BytesMut::new();
        CatalogValue::Oid(26).encode(&mut out, FieldFormat::Binary);
        assert_eq!(&out[..], &[0, 0, 0, 4, 0, 0, 0, 26]);
        let mut out = BytesMut::new();
        CatalogValue::Oid(26).encode(&mut out, FieldFormat::Text);
        assert_eq!(&out[..], &[0, 0, 0, 2, b'2', b'6']);
        let mut out = BytesMut::new();
        CatalogValue::Null.encode(&mut out, FieldFormat::Text);
        assert_eq!(&out[..], &(-1i32).to_be_bytes());
    }
}
