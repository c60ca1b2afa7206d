//! The Postgres system catalog, answered from the engine's state.
//!
//! Postgres clients learn about a database by querying it: psql's `\d`,
//! SQLAlchemy's reflection, the type lookups of psycopg, asyncpg and
//! tokio-postgres all read `pg_catalog` tables and call catalog functions.
//! This module makes those ordinary queries, planned by DataFusion like any
//! other:
//!
//! - [`register`] adds a `pg_catalog` schema ([`tables`]) whose tables are
//!   built from the engine's state when a plan scans them, and the catalog
//!   functions ([`functions`]): `version()`, `current_schema()`,
//!   `format_type(oid, typmod)`, `pg_table_is_visible(oid)`,
//!   `to_regclass(text)`, …
//! - [`rewrite_catalog_syntax`] ([`rewrite`]) turns the Postgres syntax
//!   DataFusion lacks into what it plans: casts to `regclass`, `regtype`,
//!   `regnamespace` and `oid`, `OPERATOR(pg_catalog.~)`,
//!   `COLLATE pg_catalog.default`, `pg_catalog.`-qualified function names
//!   and unqualified catalog tables (Postgres searches `pg_catalog` first).
//!
//! A catalog query that uses something not provided here fails with
//! DataFusion's error naming it (an unknown table, function or type); it
//! never answers "no rows" in its place.
//!
//! Types: an `oid` is an Arrow `UInt32` (the Postgres front end sends it as
//! `oid`); `name` and `text` are `Utf8`; a `"char"` column is `Utf8` whose
//! field carries [`PG_TYPE_METADATA_KEY`] = `"char"`; `oid[]`, `int2[]`
//! (also `int2vector`) and `text[]` are lists.

pub mod functions;
pub mod information_schema;
pub mod keys;
pub mod rewrite;
pub mod sizes;
pub mod tables;

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::execution::context::SessionContext;
use valori_core::table::ColumnDef;
use valori_engine::Engine;

use crate::provider::{self, ScanError};

pub use rewrite::rewrite_catalog_syntax;

/// The OID of pgvector's `vector` type. pgvector's own OID depends on the
/// database it was installed in, so clients look it up by name in
/// `pg_type`; Valori's is fixed.
pub const VECTOR_OID: u32 = 50_001;
/// The OID of `vector[]`.
pub const VECTOR_ARRAY_OID: u32 = 50_002;
/// The OID of the `hnsw` access method in `pg_am`.
pub const HNSW_AM_OID: u32 = 50_010;

/// Namespace OIDs, as in Postgres.
pub const PG_CATALOG_NAMESPACE_OID: u32 = 11;
pub const PUBLIC_NAMESPACE_OID: u32 = 2200;
/// The one role, `valori` (Postgres's bootstrap superuser is 10).
pub const OWNER_OID: u32 = 10;
pub const OWNER_NAME: &str = "valori";
/// The one database.
pub const DATABASE_OID: u32 = 16_384;
pub const DATABASE_NAME: &str = "valori";

/// User relations' OIDs are at least this (Postgres's
/// `FirstNormalObjectId`), below `i32::MAX` so that clients reading an
/// `oid` as a signed integer read it right.
pub const FIRST_USER_OID: u32 = 16_384;

/// The server's Postgres version, as `server_version` reports it.
pub const SERVER_VERSION: &str = "16.6";
/// `server_version_num`.
pub const SERVER_VERSION_NUM: &str = "160006";

/// The field metadata key naming a column's Postgres type where its Arrow
/// type does not say it (`"char"`).
pub const PG_TYPE_METADATA_KEY: &str = "valori.pg_type";

/// What `version()` returns: `PostgreSQL 16.6 …`, which clients parse for
/// the version, then what the server is.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Valori {}), a vector database speaking the Postgres protocol",
        env!("CARGO_PKG_VERSION")
    )
}

/// Server-wide settings as `current_setting`, `pg_settings` and `SHOW`
/// report them: (name, value, short description).
pub const SERVER_SETTINGS: [(&str, &str, &str); 20] = [
    (
        "server_version",
        SERVER_VERSION,
        "Postgres version the server speaks",
    ),
    (
        "server_version_num",
        SERVER_VERSION_NUM,
        "server_version as a number",
    ),
    ("server_encoding", "UTF8", "the database's encoding"),
    ("client_encoding", "UTF8", "the client's encoding"),
    (
        "standard_conforming_strings",
        "on",
        "backslashes are literal in strings",
    ),
    (
        "search_path",
        "public",
        "schemas searched for unqualified names",
    ),
    ("DateStyle", "ISO, MDY", "display format of dates"),
    ("TimeZone", "UTC", "time zone"),
    ("integer_datetimes", "on", "datetimes are integers"),
    (
        "transaction_isolation",
        "serializable",
        "isolation level of the transaction",
    ),
    (
        "default_transaction_isolation",
        "serializable",
        "isolation level of new transactions",
    ),
    (
        "transaction_read_only",
        "off",
        "whether the transaction is read-only",
    ),
    ("max_identifier_length", "63", "longest identifier"),
    ("lc_collate", "C", "collation order"),
    ("lc_ctype", "C", "character classification"),
    ("is_superuser", "on", "whether the role is a superuser"),
    (
        "default_transaction_read_only",
        "off",
        "whether new transactions are read-only",
    ),
    (
        "statement_timeout",
        "0",
        "longest a statement may run (0: the server's limit)",
    ),
    (
        "default_table_access_method",
        "heap",
        "how tables are stored (one way)",
    ),
    (
        "jit",
        "off",
        "just-in-time compilation of queries (Valori has none)",
    ),
];

/// The value of a server-wide setting, by name (case-insensitive).
/// `SHOW TRANSACTION ISOLATION LEVEL` is `transaction_isolation`.
pub fn server_setting(name: &str) -> Option<&'static str> {
    let name = name.trim().to_ascii_lowercase();
    let name = match name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .as_str()
    {
        "transaction isolation level" => "transaction_isolation".to_owned(),
        _ => name,
    };
    SERVER_SETTINGS
        .iter()
        .find(|(n, ..)| n.eq_ignore_ascii_case(&name))
        .map(|(_, v, _)| *v)
}

/// Adds the `pg_catalog` schema and the catalog functions to `ctx`.
pub fn register(ctx: &SessionContext, engine: Arc<Engine>) {
    tables::register(ctx, Arc::clone(&engine));
    functions::register(ctx, engine);
}

/// A table (collection) as the catalog describes it.
#[derive(Clone, Debug)]
pub struct Relation {
    pub oid: u32,
    pub name: String,
    /// Its SQL schema ([`provider::collection_schema`]).
    pub schema: datafusion::arrow::datatypes::SchemaRef,
    /// The columns as `CREATE TABLE` declared them (keys, defaults);
    /// `None` for a table of the fixed layout (`id`, `vec`, `tag`,
    /// `metadata`).
    pub declared: Option<valori_core::table::TableSchema>,
    /// The collection's metric and HNSW parameters.
    pub config: valori_core::event::CollectionConfig,
}

/// A column of a table: name, type OID, type modifier (a vector's
/// dimension, else -1).
#[derive(Clone, Debug)]
pub struct Attribute {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub not_null: bool,
    /// The column's `DEFAULT` as Postgres prints it ([`keys::default_text`]).
    pub default: Option<String>,
    /// `pg_attribute.attidentity`: `"d"`, `"a"` or `""`.
    pub identity: &'static str,
}

/// A relation's OID: a hash of its name, so that it stays the same while
/// other tables come and go (two names hashing alike would share an OID;
/// with n tables the chance is about n² / 2³²).
pub fn relation_oid(name: &str) -> u32 {
    // FNV-1a, 32 bits.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    FIRST_USER_OID + hash % (i32::MAX as u32 - FIRST_USER_OID)
}

impl Relation {
    /// The catalog's description of `collection`.
    pub fn of(collection: &valori_core::state::Collection) -> Relation {
        Relation {
            oid: relation_oid(collection.name().as_str()),
            name: collection.name().as_str().to_owned(),
            schema: provider::collection_schema(collection),
            declared: collection.table().map(|t| t.schema().clone()),
            config: *collection.config(),
        }
    }
}

/// The tables of the engine's current state, in name order.
pub fn relations(engine: &Engine) -> Result<Vec<Relation>, ScanError> {
    Ok(engine.read(|state| state.collections().map(Relation::of).collect())?)
}

/// A table's columns, in order (the SQL schema of [`provider::table_schema`]).
pub fn attributes(relation: &Relation) -> Vec<Attribute> {
    relation
        .schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let type_oid = field_type_oid(f);
            let def = relation.declared.as_ref().and_then(|d| d.columns.get(i));
            Attribute {
                name: f.name().clone(),
                type_oid,
                typmod: match f.data_type() {
                    // A vector column declared without a dimension has
                    // none until its first row: `vector`, as Postgres
                    // shows it.
                    DataType::FixedSizeList(..)
                        if type_oid == VECTOR_OID && def.is_some_and(|d| d.type_mod == 0) =>
                    {
                        -1
                    }
                    DataType::FixedSizeList(_, n) if type_oid == VECTOR_OID => *n,
                    // `varchar(n)` / `char(n)`: n plus Postgres's 4-byte
                    // header, as `atttypmod` holds it.
                    _ => def
                        .filter(|d| d.type_mod > 0 && d.scalar().is_some())
                        .and_then(|d| i32::try_from(d.type_mod).ok())
                        .map_or(-1, |n| n.saturating_add(4)),
                },
                not_null: !f.is_nullable(),
                default: def.and_then(|d| keys::default_text(&relation.name, d, type_oid)),
                identity: def.map_or("", ColumnDef::identity),
            }
        })
        .collect()
}

/// The Postgres type OID of a table column: the type its field's
/// [`PG_TYPE_METADATA_KEY`] names (a declared `uuid`, `jsonb`, `numeric`,
/// `varchar` or array column), else its Arrow type's ([`type_oid_of`]).
pub fn field_type_oid(field: &datafusion::arrow::datatypes::Field) -> u32 {
    let named = field.metadata().get(PG_TYPE_METADATA_KEY).and_then(|name| {
        if name == "halfvec" {
            return Some(VECTOR_OID);
        }
        match name.strip_prefix('_') {
            Some(element) => BUILTIN_TYPES
                .iter()
                .find(|t| t.name == element)
                .map(|t| t.array_oid),
            None => BUILTIN_TYPES.iter().find(|t| t.name == name).map(|t| t.oid),
        }
    });
    named.unwrap_or_else(|| type_oid_of(field.data_type()))
}

/// The Postgres type OID of a table column's Arrow type (the Postgres
/// front end sends values of these Arrow types as these types).
pub fn type_oid_of(data_type: &DataType) -> u32 {
    match data_type {
        DataType::Boolean => 16,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => 21,
        DataType::Int32 | DataType::UInt16 => 23,
        DataType::UInt32 => 26,
        DataType::Int64 | DataType::UInt64 => 20,
        DataType::Float16 | DataType::Float32 => 700,
        DataType::Float64 => 701,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => 17,
        DataType::Date32 => 1082,
        DataType::Timestamp(_, None) => 1114,
        DataType::Timestamp(_, Some(_)) => 1184,
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            match item.data_type() {
                DataType::Float32 | DataType::Float16 => VECTOR_OID,
                DataType::Int8 | DataType::Int16 | DataType::Int32 => 1007,
                DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => 1016,
                DataType::Float64 => 1022,
                _ => 25,
            }
        }
        _ => 25,
    }
}

/// A built-in type: OID, name, array type OID (0 for none), length,
/// category, and the name `format_type` prints.
#[derive(Clone, Copy, Debug)]
pub struct BuiltinType {
    pub oid: u32,
    pub name: &'static str,
    pub array_oid: u32,
    pub len: i16,
    pub category: &'static str,
    pub sql_name: &'static str,
}

const fn ty(
    oid: u32,
    name: &'static str,
    array_oid: u32,
    len: i16,
    category: &'static str,
    sql_name: &'static str,
) -> BuiltinType {
    BuiltinType {
        oid,
        name,
        array_oid,
        len,
        category,
        sql_name,
    }
}

/// The built-in scalar types `pg_type` lists (their arrays are listed too,
/// named `_name`), with Postgres's OIDs.
pub const BUILTIN_TYPES: [BuiltinType; 29] = [
    ty(16, "bool", 1000, 1, "B", "boolean"),
    ty(17, "bytea", 1001, -1, "U", "bytea"),
    ty(18, "char", 1002, 1, "Z", "\"char\""),
    ty(19, "name", 1003, 64, "S", "name"),
    ty(20, "int8", 1016, 8, "N", "bigint"),
    ty(21, "int2", 1005, 2, "N", "smallint"),
    ty(22, "int2vector", 1006, -1, "A", "int2vector"),
    ty(23, "int4", 1007, 4, "N", "integer"),
    ty(24, "regproc", 1008, 4, "N", "regproc"),
    ty(25, "text", 1009, -1, "S", "text"),
    ty(26, "oid", 1028, 4, "N", "oid"),
    ty(30, "oidvector", 1013, -1, "A", "oidvector"),
    ty(114, "json", 199, -1, "U", "json"),
    ty(700, "float4", 1021, 4, "N", "real"),
    ty(701, "float8", 1022, 8, "N", "double precision"),
    ty(1042, "bpchar", 1014, -1, "S", "character"),
    ty(1043, "varchar", 1015, -1, "S", "character varying"),
    ty(1082, "date", 1182, 4, "D", "date"),
    ty(1083, "time", 1183, 8, "D", "time without time zone"),
    ty(
        1114,
        "timestamp",
        1115,
        8,
        "D",
        "timestamp without time zone",
    ),
    ty(
        1184,
        "timestamptz",
        1185,
        8,
        "D",
        "timestamp with time zone",
    ),
    ty(1186, "interval", 1187, 16, "T", "interval"),
    ty(1560, "bit", 1561, -1, "V", "bit"),
    ty(1700, "numeric", 1231, -1, "N", "numeric"),
    ty(2205, "regclass", 2210, 4, "N", "regclass"),
    ty(2206, "regtype", 2211, 4, "N", "regtype"),
    ty(2950, "uuid", 2951, 16, "U", "uuid"),
    ty(3802, "jsonb", 3807, -1, "U", "jsonb"),
    ty(4089, "regnamespace", 4090, 4, "N", "regnamespace"),
];

/// One row of `pg_type`.
#[derive(Clone, Debug)]
pub struct TypeRow {
    pub oid: u32,
    pub name: String,
    pub namespace: u32,
    pub len: i16,
    pub category: &'static str,
    /// The element type of an array type, else 0.
    pub elem: u32,
    /// The array type of a scalar type, else 0.
    pub array: u32,
}

/// Every row of `pg_type`: the built-in types, their arrays, `vector` and
/// `vector[]`.
pub fn type_rows() -> Vec<TypeRow> {
    let mut rows = Vec::new();
    for t in BUILTIN_TYPES {
        rows.push(TypeRow {
            oid: t.oid,
            name: t.name.to_owned(),
            namespace: PG_CATALOG_NAMESPACE_OID,
            len: t.len,
            category: t.category,
            elem: 0,
            array: t.array_oid,
        });
        rows.push(TypeRow {
            oid: t.array_oid,
            name: format!("_{}", t.name),
            namespace: PG_CATALOG_NAMESPACE_OID,
            len: -1,
            category: "A",
            elem: t.oid,
            array: 0,
        });
    }
    rows.push(TypeRow {
        oid: VECTOR_OID,
        name: "vector".into(),
        namespace: PUBLIC_NAMESPACE_OID,
        len: -1,
        category: "U",
        elem: 0,
        array: VECTOR_ARRAY_OID,
    });
    rows.push(TypeRow {
        oid: VECTOR_ARRAY_OID,
        name: "_vector".into(),
        namespace: PUBLIC_NAMESPACE_OID,
        len: -1,
        category: "A",
        elem: VECTOR_OID,
        array: 0,
    });
    rows
}

/// A type's name as SQL writes it (`format_type`): `bigint`,
/// `vector(3)`, `integer[]`; `None` for an unknown OID.
pub fn format_type(oid: u32, typmod: Option<i32>) -> Option<String> {
    if oid == VECTOR_OID {
        return Some(match typmod {
            Some(n) if n > 0 => format!("vector({n})"),
            _ => "vector".into(),
        });
    }
    if oid == VECTOR_ARRAY_OID {
        return Some("vector[]".into());
    }
    if let Some(t) = BUILTIN_TYPES.iter().find(|t| t.oid == oid) {
        // `varchar(n)` and `char(n)` (1043, 1042): typmod is n + 4.
        return Some(match typmod {
            Some(m) if m > 4 && matches!(oid, 1042 | 1043) => format!("{}({})", t.sql_name, m - 4),
            _ => t.sql_name.to_owned(),
        });
    }
    BUILTIN_TYPES
        .iter()
        .find(|t| t.array_oid == oid)
        .map(|t| format!("{}[]", t.sql_name))
}

/// The OID of a type named as SQL or `pg_type` name it (`vector`,
/// `public.vector`, `bigint`, `int8`, `_int4`, `integer[]`), or `None`.
pub fn type_oid(name: &str) -> Option<u32> {
    let lower = name.trim().to_ascii_lowercase();
    let unquoted: String = lower.chars().filter(|c| *c != '"').collect();
    let bare = unquoted
        .strip_prefix("pg_catalog.")
        .or_else(|| unquoted.strip_prefix("public."))
        .unwrap_or(&unquoted)
        .trim();
    // A modifier does not change the type: `vector(3)`, `varchar(10)`.
    let (base, array) = match bare.strip_suffix("[]") {
        Some(base) => (base.trim(), true),
        None => (bare, false),
    };
    let base = match base.find('(') {
        Some(i) if base.ends_with(')') => base[..i].trim(),
        _ => base,
    };
    let alias = match base {
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "boolean" => "bool",
        "real" => "float4",
        "double precision" => "float8",
        "character varying" => "varchar",
        "character" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        other => other,
    };
    let rows = type_rows();
    let found = rows.iter().find(|r| r.name == alias)?;
    if array {
        (found.array != 0).then_some(found.array)
    } else {
        Some(found.oid)
    }
}
