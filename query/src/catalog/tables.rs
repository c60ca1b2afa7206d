//! The `pg_catalog` tables.
//!
//! Each table has a fixed schema (the columns of Postgres 16's table that
//! clients read) and rows built from the engine's state when a plan scans
//! it, so a prepared plan sees the tables that exist when it runs. A row
//! names only the columns whose value is not the column's default
//! ([`Col::default`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use valori_engine::Engine;

use super::{
    DATABASE_NAME, DATABASE_OID, HNSW_AM_OID, OWNER_NAME, OWNER_OID, PG_CATALOG_NAMESPACE_OID,
    PG_TYPE_METADATA_KEY, PUBLIC_NAMESPACE_OID, Relation, SERVER_SETTINGS, attributes, keys,
    relations, type_rows,
};
use crate::CATALOG;

/// The schema's name.
pub const PG_CATALOG: &str = "pg_catalog";

/// A column's Postgres type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Oid,
    Text,
    /// `"char"`: one byte, as text.
    Char,
    Bool,
    Int2,
    Int4,
    /// An `integer` that is NULL where a row does not name it
    /// (`information_schema`'s `cardinal_number`).
    Cardinal,
    Int8,
    Float4,
    OidArray,
    Int2Array,
    TextArray,
    /// `int2vector` (`indkey`, `indoption`): a list of `int2` whose field
    /// names its type ([`PG_TYPE_METADATA_KEY`]).
    Int2Vector,
    /// `oidvector` (`indclass`, `indcollation`).
    OidVector,
}

impl Col {
    fn field(self, name: &str) -> Field {
        let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
        let data_type = match self {
            Col::Oid => DataType::UInt32,
            Col::Text | Col::Char => DataType::Utf8,
            Col::Bool => DataType::Boolean,
            Col::Int2 => DataType::Int16,
            Col::Int4 | Col::Cardinal => DataType::Int32,
            Col::Int8 => DataType::Int64,
            Col::Float4 => DataType::Float32,
            Col::OidArray | Col::OidVector => list(DataType::UInt32),
            Col::Int2Array | Col::Int2Vector => list(DataType::Int16),
            Col::TextArray => list(DataType::Utf8),
        };
        let field = Field::new(name, data_type, true);
        let named = match self {
            Col::Char => "char",
            Col::Int2Vector => "int2vector",
            Col::OidVector => "oidvector",
            _ => return field,
        };
        field.with_metadata(HashMap::from([(
            PG_TYPE_METADATA_KEY.to_owned(),
            named.to_owned(),
        )]))
    }

    /// The Postgres type of the column.
    pub(super) fn type_oid(self) -> u32 {
        match self {
            Col::Oid => 26,
            Col::Text => 25,
            Col::Char => 18,
            Col::Bool => 16,
            Col::Int2 => 21,
            Col::Int4 | Col::Cardinal => 23,
            Col::Int8 => 20,
            Col::Float4 => 700,
            Col::OidArray => 1028,
            Col::Int2Array => 1005,
            Col::TextArray => 1009,
            Col::Int2Vector => 22,
            Col::OidVector => 30,
        }
    }

    /// The value of a column a row does not name: 0, false, `""` for a
    /// `"char"` (Postgres's `'\0'`), NULL for text and arrays.
    fn default(self) -> V {
        match self {
            Col::Oid => V::Oid(0),
            Col::Char => V::Text(String::new()),
            Col::Bool => V::Bool(false),
            Col::Int2 => V::Int2(0),
            Col::Int4 => V::Int4(0),
            Col::Int8 => V::Int8(0),
            Col::Float4 => V::Float4(0.0),
            Col::Text
            | Col::Cardinal
            | Col::OidArray
            | Col::Int2Array
            | Col::TextArray
            | Col::Int2Vector
            | Col::OidVector => V::Null,
        }
    }
}

/// A value of a catalog row.
#[derive(Clone, Debug, PartialEq)]
pub enum V {
    Null,
    Oid(u32),
    Text(String),
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    OidArray(Vec<u32>),
    Int2Array(Vec<i16>),
    TextArray(Vec<String>),
}

pub(super) fn t(s: &str) -> V {
    V::Text(s.to_owned())
}

/// A row: the values of the columns it names.
pub(super) type Row = Vec<(&'static str, V)>;

/// What a table's rows are built from.
#[derive(Debug)]
pub struct Snapshot {
    pub relations: Vec<Relation>,
}

/// A catalog table: its name, columns and rows.
pub struct Spec {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Col)],
    pub(super) rows: fn(&Snapshot) -> Vec<Row>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec").field("name", &self.name).finish()
    }
}

impl Spec {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(name, col)| col.field(name))
                .collect::<Vec<_>>(),
        ))
    }

    /// The table's rows over `snapshot`, as one batch.
    pub fn batch(&self, snapshot: &Snapshot) -> DfResult<RecordBatch> {
        let schema = self.schema();
        let rows = (self.rows)(snapshot);
        let columns = self
            .columns
            .iter()
            .zip(schema.fields())
            .map(|((name, col), field)| {
                let values = rows
                    .iter()
                    .map(|row| {
                        let value = row
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or_else(|| col.default(), |(_, v)| v.clone());
                        scalar(&value, field.data_type())
                    })
                    .collect::<Vec<_>>();
                if values.is_empty() {
                    Ok(datafusion::arrow::array::new_empty_array(field.data_type()))
                } else {
                    ScalarValue::iter_to_array(values)
                }
            })
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

fn scalar(value: &V, data_type: &DataType) -> ScalarValue {
    let list = |items: Vec<ScalarValue>, item: &DataType| {
        ScalarValue::List(ScalarValue::new_list_nullable(&items, item))
    };
    match value {
        V::Null => ScalarValue::try_from(data_type).unwrap_or(ScalarValue::Null),
        V::Oid(o) => ScalarValue::UInt32(Some(*o)),
        V::Text(s) => ScalarValue::Utf8(Some(s.clone())),
        V::Bool(b) => ScalarValue::Boolean(Some(*b)),
        V::Int2(i) => ScalarValue::Int16(Some(*i)),
        V::Int4(i) => ScalarValue::Int32(Some(*i)),
        V::Int8(i) => ScalarValue::Int64(Some(*i)),
        V::Float4(x) => ScalarValue::Float32(Some(*x)),
        V::OidArray(items) => list(
            items
                .iter()
                .map(|o| ScalarValue::UInt32(Some(*o)))
                .collect(),
            &DataType::UInt32,
        ),
        V::Int2Array(items) => list(
            items.iter().map(|o| ScalarValue::Int16(Some(*o))).collect(),
            &DataType::Int16,
        ),
        V::TextArray(items) => list(
            items
                .iter()
                .map(|o| ScalarValue::Utf8(Some(o.clone())))
                .collect(),
            &DataType::Utf8,
        ),
    }
}

fn no_rows(_: &Snapshot) -> Vec<Row> {
    Vec::new()
}

use Col::*;

/// Every table of the schema.
pub static TABLES: &[Spec] = &[
    Spec {
        name: "pg_namespace",
        columns: &[
            ("oid", Oid),
            ("nspname", Text),
            ("nspowner", Oid),
            ("nspacl", TextArray),
        ],
        rows: |_| {
            [
                (PG_CATALOG_NAMESPACE_OID, "pg_catalog"),
                (PUBLIC_NAMESPACE_OID, "public"),
            ]
            .into_iter()
            .map(|(oid, name)| {
                vec![
                    ("oid", V::Oid(oid)),
                    ("nspname", t(name)),
                    ("nspowner", V::Oid(OWNER_OID)),
                ]
            })
            .collect()
        },
    },
    Spec {
        name: "pg_class",
        columns: &[
            ("oid", Oid),
            ("relname", Text),
            ("relnamespace", Oid),
            ("reltype", Oid),
            ("reloftype", Oid),
            ("relowner", Oid),
            ("relam", Oid),
            ("relfilenode", Oid),
            ("reltablespace", Oid),
            ("relpages", Int4),
            ("reltuples", Float4),
            ("relallvisible", Int4),
            ("reltoastrelid", Oid),
            ("relhasindex", Bool),
            ("relisshared", Bool),
            ("relpersistence", Char),
            ("relkind", Char),
            ("relnatts", Int2),
            ("relchecks", Int2),
            ("relhasrules", Bool),
            ("relhastriggers", Bool),
            ("relhassubclass", Bool),
            ("relrowsecurity", Bool),
            ("relforcerowsecurity", Bool),
            ("relispopulated", Bool),
            ("relreplident", Char),
            ("relispartition", Bool),
            ("relrewrite", Oid),
            ("relacl", TextArray),
            ("reloptions", TextArray),
            ("relpartbound", Text),
        ],
        rows: |s| {
            s.relations
                .iter()
                .map(|r| {
                    vec![
                        ("oid", V::Oid(r.oid)),
                        ("relname", t(&r.name)),
                        ("relnamespace", V::Oid(PUBLIC_NAMESPACE_OID)),
                        ("relowner", V::Oid(OWNER_OID)),
                        // The heap access method: rows are read in full.
                        ("relam", V::Oid(2)),
                        ("relfilenode", V::Oid(r.oid)),
                        // Never analysed, as Postgres says of a new table.
                        ("reltuples", V::Float4(-1.0)),
                        ("relpersistence", t("p")),
                        ("relkind", t("r")),
                        (
                            "relnatts",
                            V::Int2(i16::try_from(attributes(r).len()).unwrap_or(i16::MAX)),
                        ),
                        ("relhasindex", V::Bool(!keys::indexes(r).is_empty())),
                        ("relispopulated", V::Bool(true)),
                        ("relreplident", t("d")),
                    ]
                })
                .chain(s.relations.iter().flat_map(|r| {
                    let indexes = keys::indexes(r).into_iter().map(|i| {
                        vec![
                            ("oid", V::Oid(i.oid)),
                            ("relname", V::Text(i.name)),
                            ("relnamespace", V::Oid(PUBLIC_NAMESPACE_OID)),
                            ("relowner", V::Oid(OWNER_OID)),
                            (
                                "relam",
                                V::Oid(if i.hnsw.is_some() { HNSW_AM_OID } else { 403 }),
                            ),
                            ("relfilenode", V::Oid(i.oid)),
                            ("reltuples", V::Float4(-1.0)),
                            ("relpersistence", t("p")),
                            ("relkind", t("i")),
                            ("relnatts", V::Int2(1)),
                            ("relispopulated", V::Bool(true)),
                            ("relreplident", t("n")),
                        ]
                    });
                    let sequences = keys::sequences(r).into_iter().map(|q| {
                        vec![
                            ("oid", V::Oid(q.oid)),
                            ("relname", V::Text(q.name)),
                            ("relnamespace", V::Oid(PUBLIC_NAMESPACE_OID)),
                            ("relowner", V::Oid(OWNER_OID)),
                            ("relfilenode", V::Oid(q.oid)),
                            ("reltuples", V::Float4(1.0)),
                            ("relpersistence", t("p")),
                            ("relkind", t("S")),
                            // last_value, log_cnt, is_called.
                            ("relnatts", V::Int2(3)),
                            ("relispopulated", V::Bool(true)),
                            ("relreplident", t("n")),
                        ]
                    });
                    indexes.chain(sequences).collect::<Vec<_>>()
                }))
                .collect()
        },
    },
    Spec {
        name: "pg_attribute",
        columns: &[
            ("attrelid", Oid),
            ("attname", Text),
            ("atttypid", Oid),
            ("attstattarget", Int2),
            ("attlen", Int2),
            ("attnum", Int2),
            ("attndims", Int2),
            ("attcacheoff", Int4),
            ("atttypmod", Int4),
            ("attbyval", Bool),
            ("attalign", Char),
            ("attstorage", Char),
            ("attcompression", Char),
            ("attnotnull", Bool),
            ("atthasdef", Bool),
            ("atthasmissing", Bool),
            ("attidentity", Char),
            ("attgenerated", Char),
            ("attisdropped", Bool),
            ("attislocal", Bool),
            ("attinhcount", Int2),
            ("attcollation", Oid),
            ("attacl", TextArray),
            ("attoptions", TextArray),
        ],
        rows: |s| {
            let types = type_rows();
            let mut rows = Vec::new();
            for r in &s.relations {
                for (i, a) in attributes(r).into_iter().enumerate() {
                    let len = types
                        .iter()
                        .find(|t| t.oid == a.type_oid)
                        .map_or(-1, |t| t.len);
                    let fixed = len > 0;
                    rows.push(vec![
                        ("attrelid", V::Oid(r.oid)),
                        ("attname", V::Text(a.name)),
                        ("atttypid", V::Oid(a.type_oid)),
                        ("attstattarget", V::Int2(-1)),
                        ("attlen", V::Int2(len)),
                        ("attnum", V::Int2(i16::try_from(i + 1).unwrap_or(i16::MAX))),
                        ("attcacheoff", V::Int4(-1)),
                        ("atttypmod", V::Int4(a.typmod)),
                        ("attbyval", V::Bool(fixed && len <= 8)),
                        ("attalign", t(if fixed { "d" } else { "i" })),
                        ("attstorage", t(storage(a.type_oid, fixed))),
                        ("attnotnull", V::Bool(a.not_null)),
                        ("atthasdef", V::Bool(a.default.is_some())),
                        ("attidentity", t(a.identity)),
                        ("attislocal", V::Bool(true)),
                    ]);
                }
            }
            rows
        },
    },
    Spec {
        name: "pg_type",
        columns: &[
            ("oid", Oid),
            ("typname", Text),
            ("typnamespace", Oid),
            ("typowner", Oid),
            ("typlen", Int2),
            ("typbyval", Bool),
            ("typtype", Char),
            ("typcategory", Char),
            ("typispreferred", Bool),
            ("typisdefined", Bool),
            ("typdelim", Char),
            ("typrelid", Oid),
            ("typsubscript", Text),
            ("typelem", Oid),
            ("typarray", Oid),
            ("typinput", Text),
            ("typoutput", Text),
            ("typreceive", Text),
            ("typsend", Text),
            ("typmodin", Text),
            ("typmodout", Text),
            ("typanalyze", Text),
            ("typalign", Char),
            ("typstorage", Char),
            ("typnotnull", Bool),
            ("typbasetype", Oid),
            ("typtypmod", Int4),
            ("typndims", Int4),
            ("typcollation", Oid),
            ("typdefaultbin", Text),
            ("typdefault", Text),
            ("typacl", TextArray),
        ],
        rows: |_| {
            type_rows()
                .into_iter()
                .map(|r| {
                    let fixed = r.len > 0;
                    let textual = r.category == "S";
                    vec![
                        ("oid", V::Oid(r.oid)),
                        ("typname", V::Text(r.name)),
                        ("typnamespace", V::Oid(r.namespace)),
                        ("typowner", V::Oid(OWNER_OID)),
                        ("typlen", V::Int2(r.len)),
                        ("typbyval", V::Bool(fixed && r.len <= 8)),
                        ("typtype", t("b")),
                        ("typcategory", t(r.category)),
                        ("typisdefined", V::Bool(true)),
                        ("typdelim", t(",")),
                        ("typelem", V::Oid(r.elem)),
                        ("typarray", V::Oid(r.array)),
                        ("typalign", t(if fixed { "d" } else { "i" })),
                        ("typstorage", t(storage(r.oid, fixed))),
                        ("typtypmod", V::Int4(-1)),
                        // Text types sort by the default collation.
                        ("typcollation", V::Oid(if textual { 100 } else { 0 })),
                    ]
                })
                .collect()
        },
    },
    Spec {
        name: "pg_range",
        columns: &[
            ("rngtypid", Oid),
            ("rngsubtype", Oid),
            ("rngmultitypid", Oid),
            ("rngcollation", Oid),
            ("rngsubopc", Oid),
            ("rngcanonical", Text),
            ("rngsubdiff", Text),
        ],
        rows: no_rows,
    },
    Spec {
        name: "pg_enum",
        columns: &[
            ("oid", Oid),
            ("enumtypid", Oid),
            ("enumsortorder", Float4),
            ("enumlabel", Text),
        ],
        rows: no_rows,
    },
    Spec {
        name: "pg_index",
        columns: &[
            ("indexrelid", Oid),
            ("indrelid", Oid),
            ("indnatts", Int2),
            ("indnkeyatts", Int2),
            ("indisunique", Bool),
            ("indnullsnotdistinct", Bool),
            ("indisprimary", Bool),
            ("indisexclusion", Bool),
            ("indimmediate", Bool),
            ("indisclustered", Bool),
            ("indisvalid", Bool),
            ("indcheckxmin", Bool),
            ("indisready", Bool),
            ("indislive", Bool),
            ("indisreplident", Bool),
            ("indkey", Int2Vector),
            ("indcollation", OidVector),
            ("indclass", OidVector),
            ("indoption", Int2Vector),
            ("indexprs", Text),
            ("indpred", Text),
        ],
        rows: |s| {
            s.relations
                .iter()
                .flat_map(keys::indexes)
                .map(|i| {
                    vec![
                        ("indexrelid", V::Oid(i.oid)),
                        ("indrelid", V::Oid(i.table_oid)),
                        ("indnatts", V::Int2(i.attnums.len() as i16)),
                        ("indnkeyatts", V::Int2(i.attnums.len() as i16)),
                        ("indisunique", V::Bool(i.unique)),
                        ("indisprimary", V::Bool(i.primary)),
                        ("indimmediate", V::Bool(i.unique)),
                        ("indisvalid", V::Bool(true)),
                        ("indisready", V::Bool(true)),
                        ("indislive", V::Bool(true)),
                        ("indclass", V::OidArray(vec![0; i.attnums.len()])),
                        ("indoption", V::Int2Array(vec![0; i.attnums.len()])),
                        ("indkey", V::Int2Array(i.attnums)),
                        ("indcollation", V::OidArray(i.collations)),
                    ]
                })
                .collect()
        },
    },
    // A view in Postgres; the same rows here.
    Spec {
        name: "pg_indexes",
        columns: &[
            ("schemaname", Text),
            ("tablename", Text),
            ("indexname", Text),
            ("tablespace", Text),
            ("indexdef", Text),
        ],
        rows: |s| {
            s.relations
                .iter()
                .flat_map(keys::indexes)
                .map(|i| {
                    vec![
                        ("schemaname", t("public")),
                        ("indexdef", V::Text(i.definition())),
                        ("tablename", V::Text(i.table)),
                        ("indexname", V::Text(i.name)),
                    ]
                })
                .collect()
        },
    },
    Spec {
        name: "pg_database",
        columns: &[
            ("oid", Oid),
            ("datname", Text),
            ("datdba", Oid),
            ("encoding", Int4),
            ("datlocprovider", Char),
            ("datistemplate", Bool),
            ("datallowconn", Bool),
            ("datconnlimit", Int4),
            ("dattablespace", Oid),
            ("datcollate", Text),
            ("datctype", Text),
            // NULL: the locale provider is libc (`c`), not ICU.
            ("daticulocale", Text),
            ("daticurules", Text),
            ("datacl", TextArray),
        ],
        rows: |_| {
            vec![vec![
                ("oid", V::Oid(DATABASE_OID)),
                ("datname", t(DATABASE_NAME)),
                ("datdba", V::Oid(OWNER_OID)),
                // UTF8.
                ("encoding", V::Int4(6)),
                ("datlocprovider", t("c")),
                ("datallowconn", V::Bool(true)),
                ("datconnlimit", V::Int4(-1)),
                ("dattablespace", V::Oid(1663)),
                ("datcollate", t("C")),
                ("datctype", t("C")),
            ]]
        },
    },
    Spec {
        name: "pg_settings",
        columns: &[
            ("name", Text),
            ("setting", Text),
            ("unit", Text),
            ("category", Text),
            ("short_desc", Text),
            ("context", Text),
            ("vartype", Text),
            ("source", Text),
            ("boot_val", Text),
            ("reset_val", Text),
        ],
        rows: |_| {
            SERVER_SETTINGS
                .iter()
                .map(|(name, value, desc)| {
                    vec![
                        ("name", t(name)),
                        ("setting", t(value)),
                        ("category", t("Valori")),
                        ("short_desc", t(desc)),
                        ("context", t("internal")),
                        ("vartype", t("string")),
                        ("source", t("default")),
                        ("boot_val", t(value)),
                        ("reset_val", t(value)),
                    ]
                })
                .collect()
        },
    },
    Spec {
        name: "pg_am",
        columns: &[
            ("oid", Oid),
            ("amname", Text),
            ("amhandler", Text),
            ("amtype", Char),
        ],
        rows: |_| {
            [
                (2, "heap", "t"),
                (403, "btree", "i"),
                (HNSW_AM_OID, "hnsw", "i"),
            ]
            .into_iter()
            .map(|(oid, name, kind)| {
                vec![
                    ("oid", V::Oid(oid)),
                    ("amname", t(name)),
                    ("amtype", t(kind)),
                ]
            })
            .collect()
        },
    },
    Spec {
        name: "pg_proc",
        columns: &[
            ("oid", Oid),
            ("proname", Text),
            ("pronamespace", Oid),
            ("proowner", Oid),
            ("prolang", Oid),
            ("prokind", Char),
            ("proretset", Bool),
            ("pronargs", Int2),
            ("prorettype", Oid),
            ("proargtypes", OidArray),
            ("prosrc", Text),
        ],
        rows: |_| {
            super::functions::CATALOG_FUNCTIONS
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    vec![
                        ("oid", V::Oid(super::FIRST_USER_OID - 1000 + i as u32)),
                        ("proname", t(name)),
                        ("pronamespace", V::Oid(PG_CATALOG_NAMESPACE_OID)),
                        ("proowner", V::Oid(OWNER_OID)),
                        // Internal.
                        ("prolang", V::Oid(12)),
                        ("prokind", t("f")),
                        ("prosrc", t(name)),
                    ]
                })
                .collect()
        },
    },
    Spec {
        name: "pg_description",
        columns: &[
            ("objoid", Oid),
            ("classoid", Oid),
            ("objsubid", Int4),
            ("description", Text),
        ],
        rows: no_rows,
    },
    Spec {
        name: "pg_shdescription",
        columns: &[("objoid", Oid), ("classoid", Oid), ("description", Text)],
        rows: no_rows,
    },
    Spec {
        name: "pg_constraint",
        columns: &[
            ("oid", Oid),
            ("conname", Text),
            ("connamespace", Oid),
            ("contype", Char),
            ("condeferrable", Bool),
            ("condeferred", Bool),
            ("convalidated", Bool),
            ("conrelid", Oid),
            ("contypid", Oid),
            ("conindid", Oid),
            ("conparentid", Oid),
            ("confrelid", Oid),
            ("confupdtype", Char),
            ("confdeltype", Char),
            ("confmatchtype", Char),
            ("conislocal", Bool),
            ("coninhcount", Int2),
            ("connoinherit", Bool),
            ("conkey", Int2Array),
            ("confkey", Int2Array),
            ("conbin", Text),
        ],
        rows: |s| {
            s.relations
                .iter()
                .flat_map(keys::indexes)
                .filter_map(|i| {
                    Some(vec![
                        ("oid", V::Oid(i.constraint_oid())),
                        ("contype", t(i.contype()?)),
                        ("conname", V::Text(i.name.clone())),
                        ("connamespace", V::Oid(PUBLIC_NAMESPACE_OID)),
                        ("convalidated", V::Bool(true)),
                        ("conrelid", V::Oid(i.table_oid)),
                        ("conindid", V::Oid(i.oid)),
                        ("confupdtype", t(" ")),
                        ("confdeltype", t(" ")),
                        ("confmatchtype", t(" ")),
                        ("conislocal", V::Bool(true)),
                        ("connoinherit", V::Bool(true)),
                        ("conkey", V::Int2Array(i.attnums.clone())),
                    ])
                })
                .chain(
                    s.relations
                        .iter()
                        .flat_map(|r| keys::foreign_keys(r, &s.relations))
                        .map(|k| {
                            vec![
                                ("oid", V::Oid(k.oid)),
                                ("contype", t("f")),
                                ("conname", V::Text(k.name.clone())),
                                ("connamespace", V::Oid(PUBLIC_NAMESPACE_OID)),
                                ("convalidated", V::Bool(true)),
                                ("conrelid", V::Oid(k.table_oid)),
                                ("conindid", V::Oid(k.index_oid)),
                                ("confrelid", V::Oid(k.referenced_oid)),
                                ("confupdtype", t("a")),
                                ("confdeltype", t(k.on_delete.pg_code())),
                                ("confmatchtype", t("s")),
                                ("conislocal", V::Bool(true)),
                                ("connoinherit", V::Bool(true)),
                                ("conkey", V::Int2Array(vec![k.attnum])),
                                ("confkey", V::Int2Array(vec![k.referenced_attnum])),
                            ]
                        }),
                )
                .collect()
        },
    },
    Spec {
        name: "pg_attrdef",
        columns: &[
            ("oid", Oid),
            ("adrelid", Oid),
            ("adnum", Int2),
            ("adbin", Text),
        ],
        rows: |s| {
            let mut rows = Vec::new();
            for r in &s.relations {
                for (i, a) in attributes(r).into_iter().enumerate() {
                    let Some(default) = a.default else { continue };
                    // Kept as the text pg_get_expr prints.
                    rows.push(vec![
                        (
                            "oid",
                            V::Oid(super::relation_oid(&format!(
                                "{}\u{0}{}\u{0}default",
                                r.name, a.name
                            ))),
                        ),
                        ("adrelid", V::Oid(r.oid)),
                        ("adnum", V::Int2(i16::try_from(i + 1).unwrap_or(i16::MAX))),
                        ("adbin", V::Text(default)),
                    ]);
                }
            }
            rows
        },
    },
    Spec {
        name: "pg_roles",
        columns: &[
            ("rolname", Text),
            ("rolsuper", Bool),
            ("rolinherit", Bool),
            ("rolcreaterole", Bool),
            ("rolcreatedb", Bool),
            ("rolcanlogin", Bool),
            ("rolreplication", Bool),
            ("rolconnlimit", Int4),
            ("rolpassword", Text),
            ("rolvaliduntil", Text),
            ("rolbypassrls", Bool),
            ("rolconfig", TextArray),
            ("oid", Oid),
        ],
        rows: |_| {
            vec![vec![
                ("rolname", t(OWNER_NAME)),
                ("rolsuper", V::Bool(true)),
                ("rolinherit", V::Bool(true)),
                ("rolcanlogin", V::Bool(true)),
                ("rolconnlimit", V::Int4(-1)),
                ("rolpassword", t("********")),
                ("oid", V::Oid(OWNER_OID)),
            ]]
        },
    },
    Spec {
        // No role is a member of another.
        name: "pg_auth_members",
        columns: &[
            ("oid", Oid),
            ("roleid", Oid),
            ("member", Oid),
            ("grantor", Oid),
            ("admin_option", Bool),
            ("inherit_option", Bool),
            ("set_option", Bool),
        ],
        rows: |_| Vec::new(),
    },
    Spec {
        name: "pg_user",
        columns: &[
            ("usename", Text),
            ("usesysid", Oid),
            ("usecreatedb", Bool),
            ("usesuper", Bool),
            ("userepl", Bool),
            ("usebypassrls", Bool),
            ("passwd", Text),
            ("valuntil", Text),
            ("useconfig", TextArray),
        ],
        rows: |_| {
            vec![vec![
                ("usename", t(OWNER_NAME)),
                ("usesysid", V::Oid(OWNER_OID)),
                ("usesuper", V::Bool(true)),
                ("passwd", t("********")),
            ]]
        },
    },
    Spec {
        name: "pg_collation",
        columns: &[
            ("oid", Oid),
            ("collname", Text),
            ("collnamespace", Oid),
            ("collowner", Oid),
            ("collprovider", Char),
            ("collisdeterministic", Bool),
            ("collencoding", Int4),
            ("collcollate", Text),
            ("collctype", Text),
        ],
        rows: |_| {
            // Strings compare byte by byte: the default collation is C.
            [
                (100, "default", "d", ""),
                (950, "C", "c", "C"),
                (951, "POSIX", "c", "POSIX"),
            ]
            .into_iter()
            .map(|(oid, name, provider, locale)| {
                vec![
                    ("oid", V::Oid(oid)),
                    ("collname", t(name)),
                    ("collnamespace", V::Oid(PG_CATALOG_NAMESPACE_OID)),
                    ("collowner", V::Oid(OWNER_OID)),
                    ("collprovider", t(provider)),
                    ("collisdeterministic", V::Bool(true)),
                    ("collencoding", V::Int4(-1)),
                    ("collcollate", t(locale)),
                    ("collctype", t(locale)),
                ]
            })
            .collect()
        },
    },
    Spec {
        name: "pg_tablespace",
        columns: &[("oid", Oid), ("spcname", Text), ("spcowner", Oid)],
        rows: |_| {
            vec![vec![
                ("oid", V::Oid(1663)),
                ("spcname", t("pg_default")),
                ("spcowner", V::Oid(OWNER_OID)),
            ]]
        },
    },
    Spec {
        name: "pg_extension",
        columns: &[
            ("oid", Oid),
            ("extname", Text),
            ("extowner", Oid),
            ("extnamespace", Oid),
            ("extrelocatable", Bool),
            ("extversion", Text),
        ],
        rows: |_| {
            // pgvector's type and operators are built in.
            vec![vec![
                ("oid", V::Oid(50_000)),
                ("extname", t("vector")),
                ("extowner", V::Oid(OWNER_OID)),
                ("extnamespace", V::Oid(PUBLIC_NAMESPACE_OID)),
                ("extversion", t("0.8.0")),
            ]]
        },
    },
    Spec {
        name: "pg_sequence",
        columns: &[
            ("seqrelid", Oid),
            ("seqtypid", Oid),
            ("seqstart", Int8),
            ("seqincrement", Int8),
            ("seqmax", Int8),
            ("seqmin", Int8),
            ("seqcache", Int8),
            ("seqcycle", Bool),
        ],
        rows: |s| {
            s.relations
                .iter()
                .flat_map(keys::sequences)
                .map(|q| {
                    vec![
                        ("seqrelid", V::Oid(q.oid)),
                        ("seqtypid", V::Oid(q.type_oid)),
                        ("seqstart", V::Int8(1)),
                        ("seqincrement", V::Int8(1)),
                        ("seqmax", V::Int8(q.max)),
                        ("seqmin", V::Int8(1)),
                        ("seqcache", V::Int8(1)),
                    ]
                })
                .collect()
        },
    },
    Spec {
        name: "pg_opclass",
        columns: &[
            ("oid", Oid),
            ("opcmethod", Oid),
            ("opcname", Text),
            ("opcnamespace", Oid),
            ("opcowner", Oid),
            ("opcfamily", Oid),
            ("opcintype", Oid),
            ("opcdefault", Bool),
            ("opckeytype", Oid),
        ],
        rows: no_rows,
    },
    Spec {
        name: "pg_inherits",
        columns: &[
            ("inhrelid", Oid),
            ("inhparent", Oid),
            ("inhseqno", Int4),
            ("inhdetachpending", Bool),
        ],
        rows: no_rows,
    },
    Spec {
        name: "pg_depend",
        columns: &[
            ("classid", Oid),
            ("objid", Oid),
            ("objsubid", Int4),
            ("refclassid", Oid),
            ("refobjid", Oid),
            ("refobjsubid", Int4),
            ("deptype", Char),
        ],
        // The dependencies Valori has: each serial or identity column's
        // sequence on its column (`a` for serial, `i` for identity).
        rows: |s| {
            let pg_class = TABLES
                .iter()
                .position(|t| t.name == "pg_class")
                .map_or(0, super::functions::catalog_table_oid);
            let mut rows = Vec::new();
            for r in &s.relations {
                let Some(declared) = &r.declared else {
                    continue;
                };
                for q in keys::sequences(r) {
                    let Some(at) = declared.columns.iter().position(|c| c.name == q.column) else {
                        continue;
                    };
                    let identity = !declared.columns[at].identity().is_empty();
                    rows.push(vec![
                        ("classid", V::Oid(pg_class)),
                        ("objid", V::Oid(q.oid)),
                        ("objsubid", V::Int4(0)),
                        ("refclassid", V::Oid(pg_class)),
                        ("refobjid", V::Oid(r.oid)),
                        (
                            "refobjsubid",
                            V::Int4(i32::try_from(at + 1).unwrap_or(i32::MAX)),
                        ),
                        ("deptype", t(if identity { "i" } else { "a" })),
                    ]);
                }
            }
            rows
        },
    },
    Spec {
        name: "pg_trigger",
        columns: &[
            ("oid", Oid),
            ("tgrelid", Oid),
            ("tgparentid", Oid),
            ("tgname", Text),
            ("tgfoid", Oid),
            ("tgtype", Int2),
            ("tgenabled", Char),
            ("tgisinternal", Bool),
        ],
        rows: no_rows,
    },
    Spec {
        name: "pg_policy",
        columns: &[
            ("oid", Oid),
            ("polname", Text),
            ("polrelid", Oid),
            ("polcmd", Char),
            ("polpermissive", Bool),
            ("polroles", OidArray),
            ("polqual", Text),
            ("polwithcheck", Text),
        ],
        rows: no_rows,
    },
    Spec {
        name: "pg_statistic_ext",
        columns: &[
            ("oid", Oid),
            ("stxrelid", Oid),
            ("stxname", Text),
            ("stxnamespace", Oid),
            ("stxowner", Oid),
            ("stxstattarget", Int2),
            ("stxkeys", Int2Array),
            ("stxkind", TextArray),
        ],
        rows: no_rows,
    },
    Spec {
        name: "pg_publication",
        columns: &[
            ("oid", Oid),
            ("pubname", Text),
            ("pubowner", Oid),
            ("puballtables", Bool),
            ("pubinsert", Bool),
            ("pubupdate", Bool),
            ("pubdelete", Bool),
            ("pubtruncate", Bool),
            ("pubviaroot", Bool),
        ],
        rows: no_rows,
    },
    Spec {
        name: "pg_publication_namespace",
        columns: &[("oid", Oid), ("pnpubid", Oid), ("pnnspid", Oid)],
        rows: no_rows,
    },
    Spec {
        name: "pg_publication_rel",
        columns: &[
            ("oid", Oid),
            ("prpubid", Oid),
            ("prrelid", Oid),
            ("prqual", Text),
            ("prattrs", Int2Array),
        ],
        rows: no_rows,
    },
];

/// The table named `name`, if the catalog has one.
pub fn spec(name: &str) -> Option<&'static Spec> {
    TABLES.iter().find(|s| s.name == name)
}

/// A schema of catalog tables: `pg_catalog` ([`TABLES`]) or
/// `information_schema` ([`super::information_schema::TABLES`]).
#[derive(Debug)]
pub struct CatalogSchema {
    tables: &'static [Spec],
    engine: Arc<Engine>,
}

impl CatalogSchema {
    fn spec(&self, name: &str) -> Option<&'static Spec> {
        self.tables.iter().find(|s| s.name == name)
    }
}

#[async_trait]
impl SchemaProvider for CatalogSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|s| s.name.to_owned()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.spec(name).map(|spec| {
            Arc::new(CatalogTable {
                spec,
                schema: spec.schema(),
                engine: Arc::clone(&self.engine),
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.spec(name).is_some()
    }
}

/// One catalog table; its rows are built at each scan.
#[derive(Debug)]
pub struct CatalogTable {
    spec: &'static Spec,
    schema: SchemaRef,
    engine: Arc<Engine>,
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let snapshot = Snapshot {
            relations: relations(&self.engine)?,
        };
        let batch = self.spec.batch(&snapshot)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

/// Registers the `pg_catalog` and `information_schema` schemas in `ctx`'s
/// default catalog.
pub fn register(ctx: &SessionContext, engine: Arc<Engine>) {
    if let Some(catalog) = ctx.catalog(CATALOG) {
        for (name, tables) in [
            (PG_CATALOG, TABLES),
            (
                super::information_schema::INFORMATION_SCHEMA,
                super::information_schema::TABLES,
            ),
        ] {
            let schema = CatalogSchema {
                tables,
                engine: Arc::clone(&engine),
            };
            // Replacing a schema of the in-memory catalog cannot fail.
            let _previous = catalog.register_schema(name, Arc::new(schema));
        }
    }
}

/// A type's storage (`typstorage`, a column's `attstorage`): `p` (plain)
/// for fixed-length types, `e` (external: out of line, uncompressed) for
/// pgvector's `vector`, declared `STORAGE = external` by pgvector, and `x`
/// (extended) for the other variable-length types, as in Postgres.
fn storage(type_oid: u32, fixed: bool) -> &'static str {
    if fixed {
        "p"
    } else if type_oid == super::VECTOR_OID {
        "e"
    } else {
        "x"
    }
}
