//! The `information_schema` views, answered from the engine's state.
//!
//! The SQL standard's description of a database, as Postgres presents it:
//! `schemata`, `tables`, `columns` and `views`, and the constraints
//! (`table_constraints`, `key_column_usage`, `referential_constraints`,
//! `constraint_column_usage`), with Postgres's type names
//! (`bigint`, `USER-DEFINED` with `udt_name` `vector`, `ARRAY` with
//! `udt_name` `_int4`) and its conventions for precision. They list the
//! user's tables (`public`) and the catalog's own tables (`pg_catalog`,
//! `information_schema`, which are views here: computed at each scan).
//! Tables of the standard not listed here are unknown tables: a query
//! naming one fails, it is never answered "no rows".

use super::tables::{self, Col, Row, Snapshot, Spec, V, t};
use super::{BUILTIN_TYPES, DATABASE_NAME, OWNER_NAME, TypeRow, VECTOR_OID, attributes, type_rows};

/// The schema's name.
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// A relation as the views list it.
struct Listed {
    schema: &'static str,
    name: String,
    /// `BASE TABLE` or `VIEW`.
    kind: &'static str,
    columns: Vec<ListedColumn>,
}

/// A column as `information_schema.columns` lists it.
struct ListedColumn {
    name: String,
    type_oid: u32,
    nullable: bool,
    default: Option<String>,
    /// `attidentity`: `"d"`, `"a"` or `""`.
    identity: &'static str,
    /// `atttypmod`: `varchar(n)`'s `n + 4`, else -1.
    typmod: i32,
}

/// The user's tables, then the catalog's.
fn listed(snapshot: &Snapshot) -> Vec<Listed> {
    let mut out: Vec<Listed> = snapshot
        .relations
        .iter()
        .map(|r| Listed {
            schema: "public",
            name: r.name.clone(),
            kind: "BASE TABLE",
            columns: attributes(r)
                .into_iter()
                .map(|a| ListedColumn {
                    name: a.name,
                    type_oid: a.type_oid,
                    nullable: !a.not_null,
                    default: a.default,
                    identity: a.identity,
                    typmod: a.typmod,
                })
                .collect(),
        })
        .collect();
    for (schema, specs) in [
        (tables::PG_CATALOG, tables::TABLES),
        (INFORMATION_SCHEMA, TABLES),
    ] {
        out.extend(specs.iter().map(|spec| {
            Listed {
                schema,
                name: spec.name.to_owned(),
                kind: "VIEW",
                columns: spec
                    .columns
                    .iter()
                    .map(|(name, col)| ListedColumn {
                        name: (*name).to_owned(),
                        type_oid: col.type_oid(),
                        nullable: true,
                        default: None,
                        identity: "",
                        typmod: -1,
                    })
                    .collect(),
            }
        }));
    }
    out
}

/// How `information_schema.columns` describes a type: `data_type`, the
/// type's schema and name (`udt_schema`, `udt_name`), and for numbers
/// (precision, radix, scale).
struct Described {
    data_type: String,
    udt_schema: &'static str,
    udt_name: String,
    numeric: Option<(i32, i32, Option<i32>)>,
}

fn describe(type_oid: u32, types: &[TypeRow]) -> Described {
    let row = types.iter().find(|t| t.oid == type_oid);
    let udt_name = row.map_or_else(|| "text".to_owned(), |t| t.name.clone());
    let udt_schema = match row {
        Some(t) if t.namespace == super::PUBLIC_NAMESPACE_OID => "public",
        _ => "pg_catalog",
    };
    let data_type = if type_oid == VECTOR_OID {
        "USER-DEFINED".to_owned()
    } else if row.is_some_and(|t| t.elem != 0) {
        "ARRAY".to_owned()
    } else {
        BUILTIN_TYPES
            .iter()
            .find(|b| b.oid == type_oid)
            .map_or_else(|| "USER-DEFINED".to_owned(), |b| b.sql_name.to_owned())
    };
    // Postgres gives integers and floats their binary precision.
    let numeric = match type_oid {
        21 => Some((16, 2, Some(0))),
        23 => Some((32, 2, Some(0))),
        20 => Some((64, 2, Some(0))),
        700 => Some((24, 2, None)),
        701 => Some((53, 2, None)),
        _ => None,
    };
    Described {
        data_type,
        udt_schema,
        udt_name,
        numeric,
    }
}

fn yes_no(yes: bool) -> V {
    t(if yes { "YES" } else { "NO" })
}

fn int(n: usize) -> V {
    V::Int4(i32::try_from(n).unwrap_or(i32::MAX))
}

use Col::*;

/// Every view of the schema.
pub static TABLES: &[Spec] = &[
    Spec {
        name: "schemata",
        columns: &[
            ("catalog_name", Text),
            ("schema_name", Text),
            ("schema_owner", Text),
            ("default_character_set_catalog", Text),
            ("default_character_set_schema", Text),
            ("default_character_set_name", Text),
            ("sql_path", Text),
        ],
        rows: |_| {
            [INFORMATION_SCHEMA, tables::PG_CATALOG, "public"]
                .into_iter()
                .map(|schema| {
                    vec![
                        ("catalog_name", t(DATABASE_NAME)),
                        ("schema_name", t(schema)),
                        ("schema_owner", t(OWNER_NAME)),
                    ]
                })
                .collect()
        },
    },
    Spec {
        name: "tables",
        columns: &[
            ("table_catalog", Text),
            ("table_schema", Text),
            ("table_name", Text),
            ("table_type", Text),
            ("self_referencing_column_name", Text),
            ("reference_generation", Text),
            ("user_defined_type_catalog", Text),
            ("user_defined_type_schema", Text),
            ("user_defined_type_name", Text),
            ("is_insertable_into", Text),
            ("is_typed", Text),
            ("commit_action", Text),
        ],
        rows: |s| {
            listed(s)
                .into_iter()
                .map(|l| -> Row {
                    let base = l.kind == "BASE TABLE";
                    vec![
                        ("table_catalog", t(DATABASE_NAME)),
                        ("table_schema", t(l.schema)),
                        ("table_name", V::Text(l.name)),
                        ("table_type", t(l.kind)),
                        ("is_insertable_into", yes_no(base)),
                        ("is_typed", yes_no(false)),
                    ]
                })
                .collect()
        },
    },
    Spec {
        name: "views",
        columns: &[
            ("table_catalog", Text),
            ("table_schema", Text),
            ("table_name", Text),
            ("view_definition", Text),
            ("check_option", Text),
            ("is_updatable", Text),
            ("is_insertable_into", Text),
            ("is_trigger_updatable", Text),
            ("is_trigger_deletable", Text),
            ("is_trigger_insertable_into", Text),
        ],
        rows: |s| {
            listed(s)
                .into_iter()
                .filter(|l| l.kind == "VIEW")
                .map(|l| -> Row {
                    // `view_definition` is NULL, as Postgres shows it for
                    // views the user does not own: these are computed by
                    // the server, not defined in SQL.
                    vec![
                        ("table_catalog", t(DATABASE_NAME)),
                        ("table_schema", t(l.schema)),
                        ("table_name", V::Text(l.name)),
                        ("check_option", t("NONE")),
                        ("is_updatable", yes_no(false)),
                        ("is_insertable_into", yes_no(false)),
                        ("is_trigger_updatable", yes_no(false)),
                        ("is_trigger_deletable", yes_no(false)),
                        ("is_trigger_insertable_into", yes_no(false)),
                    ]
                })
                .collect()
        },
    },
    Spec {
        name: "columns",
        columns: &[
            ("table_catalog", Text),
            ("table_schema", Text),
            ("table_name", Text),
            ("column_name", Text),
            ("ordinal_position", Int4),
            ("column_default", Text),
            ("is_nullable", Text),
            ("data_type", Text),
            ("character_maximum_length", Cardinal),
            ("character_octet_length", Cardinal),
            ("numeric_precision", Cardinal),
            ("numeric_precision_radix", Cardinal),
            ("numeric_scale", Cardinal),
            ("datetime_precision", Cardinal),
            ("interval_type", Text),
            ("interval_precision", Cardinal),
            ("character_set_catalog", Text),
            ("character_set_schema", Text),
            ("character_set_name", Text),
            ("collation_catalog", Text),
            ("collation_schema", Text),
            ("collation_name", Text),
            ("domain_catalog", Text),
            ("domain_schema", Text),
            ("domain_name", Text),
            ("udt_catalog", Text),
            ("udt_schema", Text),
            ("udt_name", Text),
            ("scope_catalog", Text),
            ("scope_schema", Text),
            ("scope_name", Text),
            ("maximum_cardinality", Cardinal),
            ("dtd_identifier", Text),
            ("is_self_referencing", Text),
            ("is_identity", Text),
            ("identity_generation", Text),
            ("identity_start", Text),
            ("identity_increment", Text),
            ("identity_maximum", Text),
            ("identity_minimum", Text),
            ("identity_cycle", Text),
            ("is_generated", Text),
            ("generation_expression", Text),
            ("is_updatable", Text),
        ],
        rows: |s| {
            let types = type_rows();
            let mut rows = Vec::new();
            for l in listed(s) {
                let base = l.kind == "BASE TABLE";
                for (
                    i,
                    ListedColumn {
                        name,
                        type_oid,
                        nullable,
                        default,
                        identity,
                        typmod,
                    },
                ) in l.columns.into_iter().enumerate()
                {
                    let d = describe(type_oid, &types);
                    let mut row: Row = vec![
                        ("table_catalog", t(DATABASE_NAME)),
                        ("table_schema", t(l.schema)),
                        ("table_name", V::Text(l.name.clone())),
                        ("column_name", V::Text(name)),
                        ("ordinal_position", int(i + 1)),
                        ("is_nullable", yes_no(nullable)),
                        ("data_type", V::Text(d.data_type)),
                        ("udt_catalog", t(DATABASE_NAME)),
                        ("udt_schema", t(d.udt_schema)),
                        ("udt_name", V::Text(d.udt_name)),
                        ("dtd_identifier", V::Text((i + 1).to_string())),
                        ("is_self_referencing", yes_no(false)),
                        ("is_identity", yes_no(!identity.is_empty())),
                        ("identity_cycle", yes_no(false)),
                        ("is_generated", t("NEVER")),
                        ("is_updatable", yes_no(base)),
                    ];
                    if let Some(default) = default {
                        row.push(("column_default", V::Text(default)));
                    }
                    // varchar(n) and char(n): n characters of at most 4
                    // bytes (UTF-8); text: Postgres's 1 GB bound.
                    match (type_oid, typmod) {
                        (1043 | 1042, m) if m >= 4 => {
                            row.push(("character_maximum_length", V::Int4(m - 4)));
                            row.push(("character_octet_length", V::Int4((m - 4) * 4)));
                        }
                        (25 | 1043 | 1042, _) => {
                            row.push(("character_octet_length", V::Int4(1 << 30)));
                        }
                        _ => {}
                    }
                    if !identity.is_empty() {
                        // A sequence from 1 by 1 up to the type's maximum.
                        let max = super::keys::sequence_max(type_oid);
                        let generation = if identity == "a" {
                            "ALWAYS"
                        } else {
                            "BY DEFAULT"
                        };
                        row.push(("identity_generation", t(generation)));
                        row.push(("identity_start", t("1")));
                        row.push(("identity_increment", t("1")));
                        row.push(("identity_maximum", V::Text(max.to_string())));
                        row.push(("identity_minimum", t("1")));
                    }
                    if let Some((precision, radix, scale)) = d.numeric {
                        row.push(("numeric_precision", V::Int4(precision)));
                        row.push(("numeric_precision_radix", V::Int4(radix)));
                        if let Some(scale) = scale {
                            row.push(("numeric_scale", V::Int4(scale)));
                        }
                    }
                    rows.push(row);
                }
            }
            rows
        },
    },
    Spec {
        name: "table_constraints",
        columns: &[
            ("constraint_catalog", Text),
            ("constraint_schema", Text),
            ("constraint_name", Text),
            ("table_catalog", Text),
            ("table_schema", Text),
            ("table_name", Text),
            ("constraint_type", Text),
            ("is_deferrable", Text),
            ("initially_deferred", Text),
            ("enforced", Text),
            ("nulls_distinct", Text),
        ],
        rows: |s| {
            constraints(s)
                .into_iter()
                .map(|c| {
                    let mut row = named(&c.name, &c.table);
                    row.push(("constraint_type", t(c.kind)));
                    row.push(("is_deferrable", yes_no(false)));
                    row.push(("initially_deferred", yes_no(false)));
                    row.push(("enforced", yes_no(true)));
                    if c.kind == "UNIQUE" {
                        row.push(("nulls_distinct", yes_no(true)));
                    }
                    row
                })
                .collect()
        },
    },
    Spec {
        name: "key_column_usage",
        columns: &[
            ("constraint_catalog", Text),
            ("constraint_schema", Text),
            ("constraint_name", Text),
            ("table_catalog", Text),
            ("table_schema", Text),
            ("table_name", Text),
            ("column_name", Text),
            ("ordinal_position", Int4),
            ("position_in_unique_constraint", Int4),
        ],
        rows: |s| {
            let mut rows = Vec::new();
            for c in constraints(s).into_iter().filter(|c| c.kind != "CHECK") {
                for (i, column) in c.columns.iter().enumerate() {
                    let mut row = named(&c.name, &c.table);
                    row.push(("column_name", V::Text(column.clone())));
                    row.push(("ordinal_position", int(i + 1)));
                    if c.referenced.is_some() {
                        row.push(("position_in_unique_constraint", int(i + 1)));
                    }
                    rows.push(row);
                }
            }
            rows
        },
    },
    Spec {
        name: "referential_constraints",
        columns: &[
            ("constraint_catalog", Text),
            ("constraint_schema", Text),
            ("constraint_name", Text),
            ("unique_constraint_catalog", Text),
            ("unique_constraint_schema", Text),
            ("unique_constraint_name", Text),
            ("match_option", Text),
            ("update_rule", Text),
            ("delete_rule", Text),
        ],
        rows: |s| {
            constraints(s)
                .into_iter()
                .filter_map(|c| {
                    let (_, _, unique, on_delete) = c.referenced?;
                    let mut row = vec![
                        ("constraint_catalog", t(DATABASE_NAME)),
                        ("constraint_schema", t("public")),
                        ("constraint_name", V::Text(c.name)),
                        ("unique_constraint_catalog", t(DATABASE_NAME)),
                        ("unique_constraint_schema", t("public")),
                        ("match_option", t("NONE")),
                        ("update_rule", t("NO ACTION")),
                        ("delete_rule", t(on_delete)),
                    ];
                    if let Some(unique) = unique {
                        row.push(("unique_constraint_name", V::Text(unique)));
                    }
                    Some(row)
                })
                .collect()
        },
    },
    Spec {
        name: "constraint_column_usage",
        columns: &[
            ("table_catalog", Text),
            ("table_schema", Text),
            ("table_name", Text),
            ("column_name", Text),
            ("constraint_catalog", Text),
            ("constraint_schema", Text),
            ("constraint_name", Text),
        ],
        rows: |s| {
            let mut rows = Vec::new();
            for c in constraints(s).into_iter().filter(|c| c.kind != "CHECK") {
                // A foreign key uses the columns it references; a key or
                // unique constraint its own.
                let (table, columns) = match &c.referenced {
                    Some((table, column, _, _)) => (table.clone(), vec![column.clone()]),
                    None => (c.table.clone(), c.columns.clone()),
                };
                for column in columns {
                    let mut row = named(&c.name, &table);
                    row.push(("column_name", V::Text(column)));
                    rows.push(row);
                }
            }
            rows
        },
    },
];

/// A constraint as the views list it.
struct Constraint {
    name: String,
    table: String,
    /// `PRIMARY KEY`, `UNIQUE`, `FOREIGN KEY` or `CHECK` (Postgres lists
    /// each NOT NULL column as a CHECK constraint).
    kind: &'static str,
    columns: Vec<String>,
    /// A foreign key's referenced table and column, the unique
    /// constraint that makes the column unique, and its `ON DELETE` rule.
    referenced: Option<(String, String, Option<String>, &'static str)>,
}

/// The constraints of the user's tables.
fn constraints(s: &Snapshot) -> Vec<Constraint> {
    let mut out = Vec::new();
    for r in &s.relations {
        let indexes = super::keys::indexes(r);
        for i in indexes.iter().filter(|i| i.contype().is_some()) {
            out.push(Constraint {
                name: i.name.clone(),
                table: r.name.clone(),
                kind: if i.primary { "PRIMARY KEY" } else { "UNIQUE" },
                columns: i.columns.clone(),
                referenced: None,
            });
        }
        for k in super::keys::foreign_keys(r, &s.relations) {
            let unique = s
                .relations
                .iter()
                .find(|x| x.name == k.referenced)
                .and_then(|x| {
                    super::keys::indexes(x)
                        .into_iter()
                        .find(|i| i.unique && i.columns == [k.referenced_column.as_str()])
                })
                .map(|i| i.name);
            out.push(Constraint {
                name: k.name.clone(),
                table: r.name.clone(),
                kind: "FOREIGN KEY",
                columns: vec![k.column.clone()],
                referenced: Some((
                    k.referenced.clone(),
                    k.referenced_column.clone(),
                    unique,
                    k.on_delete.sql(),
                )),
            });
        }
        for (i, a) in attributes(r).into_iter().enumerate() {
            if a.not_null {
                out.push(Constraint {
                    name: format!("2200_{}_{}_not_null", r.oid, i + 1),
                    table: r.name.clone(),
                    kind: "CHECK",
                    columns: Vec::new(),
                    referenced: None,
                });
            }
        }
    }
    out
}

/// The columns naming a constraint and its table.
fn named(constraint: &str, table: &str) -> Row {
    vec![
        ("constraint_catalog", t(DATABASE_NAME)),
        ("constraint_schema", t("public")),
        ("constraint_name", V::Text(constraint.to_owned())),
        ("table_catalog", t(DATABASE_NAME)),
        ("table_schema", t("public")),
        ("table_name", V::Text(table.to_owned())),
    ]
}
