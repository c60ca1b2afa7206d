//! Defaults, keys, indexes and sequences of a table, as the catalog lists
//! them (`pg_attrdef`, `pg_constraint`, `pg_index`, the index and sequence
//! rows of `pg_class`, `pg_sequence`) and as Postgres prints them
//! (`pg_get_expr`, `pg_get_indexdef`, `pg_get_constraintdef`).
//!
//! Everything here is read from the state: a declared table's column
//! flags (`PRIMARY KEY`, `UNIQUE`, `serial`) and `DEFAULT` text, and the
//! collection's HNSW index over its vector column. Names follow
//! Postgres's choices for unnamed objects: `items_pkey`,
//! `items_email_key`, `items_id_seq`, `items_embedding_idx`. A btree
//! `CREATE INDEX` on one scalar column is recorded in the column's
//! definition under its name and listed; one on an expression, a `gin`
//! index or a second index on a column builds nothing, is not recorded,
//! and so is not listed. A column's foreign key is listed with
//! `contype` `f` and printed as Postgres prints it.

use valori_core::Metric;
use valori_core::table::{ColumnDef, OnDelete, ScalarType};

use super::{Relation, VECTOR_OID, format_type, relation_oid};
use crate::write::Literal;

/// An index of a table.
#[derive(Clone, Debug)]
pub struct Index {
    pub oid: u32,
    pub name: String,
    pub table_oid: u32,
    pub table: String,
    /// The indexed columns' numbers (1-based) and names: one, or
    /// several for a unique constraint over several columns.
    pub attnums: Vec<i16>,
    pub columns: Vec<String>,
    pub primary: bool,
    pub unique: bool,
    /// `None` for btree; the operator class of an HNSW index.
    pub hnsw: Option<&'static str>,
    /// Per column: a text column's collation (100, the default), else 0.
    pub collations: Vec<u32>,
}

impl Index {
    /// The constraint the index enforces: `p` or `u`.
    pub fn contype(&self) -> Option<&'static str> {
        if self.primary {
            Some("p")
        } else if self.unique {
            Some("u")
        } else {
            None
        }
    }

    /// The constraint's OID (Postgres numbers constraints apart from
    /// relations).
    pub fn constraint_oid(&self) -> u32 {
        relation_oid(&format!("{}\u{0}constraint", self.name))
    }

    /// The columns as an index or constraint definition lists them.
    fn column_list(&self) -> String {
        let names: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        names.join(", ")
    }

    /// `pg_get_indexdef(oid)`.
    pub fn definition(&self) -> String {
        let unique = if self.unique { "UNIQUE " } else { "" };
        let (method, column) = match self.hnsw {
            None => ("btree", self.column_list()),
            Some(class) => ("hnsw", format!("{} {class}", self.column_list())),
        };
        format!(
            "CREATE {unique}INDEX {} ON public.{} USING {method} ({column})",
            quote_ident(&self.name),
            quote_ident(&self.table)
        )
    }

    /// `pg_get_constraintdef(oid)` of the constraint it enforces.
    pub fn constraint_definition(&self) -> Option<String> {
        let kind = match self.contype()? {
            "p" => "PRIMARY KEY",
            _ => "UNIQUE",
        };
        Some(format!("{kind} ({})", self.column_list()))
    }
}

/// A sequence of a `serial` column.
#[derive(Clone, Debug)]
pub struct Sequence {
    pub oid: u32,
    pub name: String,
    pub table: String,
    pub column: String,
    /// `int2`, `int4` or `int8`.
    pub type_oid: u32,
    pub max: i64,
}

/// Postgres's `quote_ident`: the name as is when it is lower-case letters,
/// digits and `_` not starting with a digit and no keyword Postgres
/// reserves in any way (reserved, type or function names, column names);
/// else in double quotes, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    /// Postgres 16's keywords other than its unreserved ones.
    const KEYWORDS: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "authorization",
        "between",
        "bigint",
        "binary",
        "bit",
        "boolean",
        "both",
        "case",
        "cast",
        "char",
        "character",
        "check",
        "coalesce",
        "collate",
        "collation",
        "column",
        "concurrently",
        "constraint",
        "create",
        "cross",
        "current_catalog",
        "current_date",
        "current_role",
        "current_schema",
        "current_time",
        "current_timestamp",
        "current_user",
        "dec",
        "decimal",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "exists",
        "extract",
        "false",
        "fetch",
        "float",
        "for",
        "foreign",
        "freeze",
        "from",
        "full",
        "grant",
        "greatest",
        "group",
        "grouping",
        "having",
        "ilike",
        "in",
        "initially",
        "inner",
        "inout",
        "int",
        "integer",
        "intersect",
        "interval",
        "into",
        "is",
        "isnull",
        "join",
        "json",
        "json_array",
        "json_arrayagg",
        "json_object",
        "json_objectagg",
        "lateral",
        "leading",
        "least",
        "left",
        "like",
        "limit",
        "localtime",
        "localtimestamp",
        "national",
        "natural",
        "nchar",
        "none",
        "normalize",
        "not",
        "notnull",
        "null",
        "nullif",
        "numeric",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "out",
        "outer",
        "overlaps",
        "overlay",
        "placing",
        "position",
        "precision",
        "primary",
        "real",
        "references",
        "returning",
        "right",
        "row",
        "select",
        "session_user",
        "setof",
        "similar",
        "smallint",
        "some",
        "substring",
        "symmetric",
        "system_user",
        "table",
        "tablesample",
        "then",
        "time",
        "timestamp",
        "to",
        "trailing",
        "treat",
        "trim",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "values",
        "varchar",
        "variadic",
        "verbose",
        "when",
        "where",
        "window",
        "with",
        "xmlattributes",
        "xmlconcat",
        "xmlelement",
        "xmlexists",
        "xmlforest",
        "xmlnamespaces",
        "xmlparse",
        "xmlpi",
        "xmlroot",
        "xmlserialize",
        "xmltable",
    ];
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !KEYWORDS.contains(&name);
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn metric_class(metric: Metric) -> &'static str {
    match metric {
        Metric::L2 => "vector_l2_ops",
        Metric::InnerProduct => "vector_ip_ops",
        Metric::Cosine => "vector_cosine_ops",
    }
}

/// The indexes of a table: its btree indexes, its primary key, unique
/// columns and unique constraints over several columns (btree, as
/// Postgres builds them), and the HNSW index of its vector column.
pub fn indexes(relation: &Relation) -> Vec<Index> {
    let table = relation.name.as_str();
    let index =
        |name: String, attnum: usize, column: &str, primary, unique, hnsw, collation| Index {
            oid: relation_oid(&name),
            name,
            table_oid: relation.oid,
            table: table.to_owned(),
            attnums: vec![i16::try_from(attnum + 1).unwrap_or(i16::MAX)],
            columns: vec![column.to_owned()],
            primary,
            unique,
            hnsw,
            collations: vec![collation],
        };
    let collation_of = |c: &ColumnDef| {
        if matches!(c.scalar(), Some(ScalarType::Text | ScalarType::Char)) {
            100
        } else {
            0
        }
    };
    let mut out = Vec::new();
    let vector = match &relation.declared {
        Some(declared) => {
            for (i, c) in declared.columns.iter().enumerate() {
                let collation = collation_of(c);
                if let (Some(name), Some(_)) = (&c.index, c.scalar()) {
                    out.push(index(
                        name.clone(),
                        i,
                        &c.name,
                        false,
                        false,
                        None,
                        collation,
                    ));
                }
                if !c.is_unique() {
                    continue;
                }
                let name = if c.is_primary_key() {
                    format!("{table}_pkey")
                } else {
                    format!("{table}_{}_key", c.name)
                };
                out.push(index(
                    name,
                    i,
                    &c.name,
                    c.is_primary_key(),
                    true,
                    None,
                    collation,
                ));
            }
            for u in &declared.uniques {
                let at: Vec<usize> = u
                    .columns
                    .iter()
                    .filter_map(|c| declared.columns.iter().position(|d| d.name == *c))
                    .collect();
                out.push(Index {
                    oid: relation_oid(&u.name),
                    name: u.name.clone(),
                    table_oid: relation.oid,
                    table: table.to_owned(),
                    attnums: at
                        .iter()
                        .map(|&i| i16::try_from(i + 1).unwrap_or(i16::MAX))
                        .collect(),
                    columns: u.columns.clone(),
                    primary: false,
                    unique: true,
                    hnsw: None,
                    collations: at
                        .iter()
                        .map(|&i| collation_of(&declared.columns[i]))
                        .collect(),
                });
            }
            declared.vector_column().and_then(|i| {
                declared
                    .columns
                    .get(i)
                    .map(|c| (i, c.name.clone(), c.index.clone()))
            })
        }
        None => relation
            .schema
            .fields()
            .iter()
            .position(|f| f.name() == "vec")
            .map(|i| (i, "vec".to_owned(), None)),
    };
    // The HNSW index, under the name `CREATE INDEX` gave it, else as
    // Postgres names an unnamed one.
    if let Some((i, column, named)) = vector {
        out.push(index(
            named.unwrap_or_else(|| format!("{table}_{column}_idx")),
            i,
            &column,
            false,
            false,
            Some(metric_class(relation.config.metric)),
            0,
        ));
    }
    out
}

/// A foreign key of a table, with the columns at both ends.
#[derive(Clone, Debug)]
pub struct ForeignKeyRow {
    pub oid: u32,
    pub name: String,
    pub table_oid: u32,
    pub attnum: i16,
    pub column: String,
    pub referenced_oid: u32,
    pub referenced: String,
    pub referenced_attnum: i16,
    pub referenced_column: String,
    /// The OID of the referenced column's unique index.
    pub index_oid: u32,
    pub on_delete: OnDelete,
}

impl ForeignKeyRow {
    /// `pg_get_constraintdef(oid)`, as Postgres prints it.
    pub fn definition(&self) -> String {
        let on_delete = match self.on_delete {
            OnDelete::NoAction => String::new(),
            other => format!(" ON DELETE {}", other.sql()),
        };
        format!(
            "FOREIGN KEY ({}) REFERENCES {}({}){on_delete}",
            quote_ident(&self.column),
            quote_ident(&self.referenced),
            quote_ident(&self.referenced_column)
        )
    }
}

/// The foreign keys of `relation`, whose referenced tables are among
/// `relations`.
pub fn foreign_keys(relation: &Relation, relations: &[Relation]) -> Vec<ForeignKeyRow> {
    let Some(declared) = &relation.declared else {
        return Vec::new();
    };
    let attnum = |i: usize| i16::try_from(i + 1).unwrap_or(i16::MAX);
    let mut out = Vec::new();
    for (i, c) in declared.columns.iter().enumerate() {
        let Some(key) = &c.references else { continue };
        let Some(target) = relations.iter().find(|r| r.name == key.table.as_str()) else {
            continue;
        };
        let Some(at) = target
            .declared
            .as_ref()
            .and_then(|d| d.columns.iter().position(|t| t.name == key.column))
        else {
            continue;
        };
        let index_oid = indexes(target)
            .into_iter()
            .find(|x| x.unique && x.columns == [key.column.as_str()])
            .map_or(0, |x| x.oid);
        out.push(ForeignKeyRow {
            oid: relation_oid(&format!(
                "{}\u{0}{}\u{0}constraint",
                relation.name, key.name
            )),
            name: key.name.clone(),
            table_oid: relation.oid,
            attnum: attnum(i),
            column: c.name.clone(),
            referenced_oid: target.oid,
            referenced: target.name.clone(),
            referenced_attnum: attnum(at),
            referenced_column: key.column.clone(),
            index_oid,
            on_delete: key.on_delete,
        });
    }
    out
}

/// The sequences of a table's `serial` columns.
pub fn sequences(relation: &Relation) -> Vec<Sequence> {
    let Some(declared) = &relation.declared else {
        return Vec::new();
    };
    declared
        .columns
        .iter()
        .filter(|c| c.is_serial())
        .filter_map(|c| {
            let type_oid = match c.scalar()? {
                ScalarType::Int16 => 21,
                ScalarType::Int32 => 23,
                _ => 20,
            };
            let max = sequence_max(type_oid);
            let name = format!("{}_{}_seq", relation.name, c.name);
            Some(Sequence {
                oid: relation_oid(&name),
                name,
                table: relation.name.clone(),
                column: c.name.clone(),
                type_oid,
                max,
            })
        })
        .collect()
}

/// The largest value a sequence of an integer column of `type_oid`
/// (`int2`, `int4`, `int8`) hands out.
pub fn sequence_max(type_oid: u32) -> i64 {
    match type_oid {
        21 => i64::from(i16::MAX),
        23 => i64::from(i32::MAX),
        _ => i64::MAX,
    }
}

/// The name of the type a constant of `type_oid` is labelled with
/// (`::bigint`, `::character varying`, `::bpchar`).
fn label(type_oid: u32) -> String {
    if type_oid == 1042 {
        return "bpchar".into();
    }
    format_type(type_oid, None).unwrap_or_else(|| "text".into())
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A float as Postgres prints it (shortest text that reads back).
fn float_text(x: f64, single: bool) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if single {
        format!("{}", x as f32)
    } else {
        format!("{x}")
    }
}

/// A column's `DEFAULT` as `pg_get_expr` prints it: the sequence call
/// of a `serial` column (`nextval('items_id_seq'::regclass)`), a
/// function call as written (`now()`, `gen_random_uuid()`),
/// `CURRENT_TIMESTAMP`, and a constant as Postgres prints a constant of
/// its type (`3`, `'-1'::integer`, `'x'::text`, `true`). `None` when the
/// column has no default (a `DEFAULT NULL` is none, as in Postgres).
pub fn default_text(table: &str, def: &ColumnDef, type_oid: u32) -> Option<String> {
    // An identity column has no DEFAULT; its sequence is its own.
    if !def.identity().is_empty() {
        return None;
    }
    if def.is_serial() {
        return Some(format!(
            "nextval({}::regclass)",
            quote_literal(&format!("{table}_{}_seq", def.name))
        ));
    }
    let text = def.default.as_deref()?;
    let Ok(expr) = crate::write::parse_expr(text) else {
        return Some(text.to_owned());
    };
    // Not understood: the text as declared.
    expression_text(&expr, def, type_oid).unwrap_or_else(|| Some(text.to_owned()))
}

/// `Some(None)`: the default is NULL; `None`: not a form printed here.
fn expression_text(
    expr: &datafusion::sql::sqlparser::ast::Expr,
    def: &ColumnDef,
    type_oid: u32,
) -> Option<Option<String>> {
    use datafusion::sql::sqlparser::ast::Expr;
    let upper = expr.to_string().to_ascii_uppercase();
    if matches!(
        upper.as_str(),
        "CURRENT_TIMESTAMP" | "CURRENT_DATE" | "LOCALTIMESTAMP" | "CURRENT_TIME" | "LOCALTIME"
    ) {
        return Some(Some(upper));
    }
    match expr {
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
            Some(Some(format!("{name}()")))
        }
        Expr::Nested(inner) => expression_text(inner, def, type_oid),
        Expr::Cast {
            expr: inner,
            data_type,
            ..
        } => {
            // A string cast to a type is a constant of that type.
            let cast_oid = super::type_oid(&data_type.to_string())?;
            match crate::write::literal_of(inner).ok()? {
                Literal::Text(s) => Some(constant_text(&Literal::Text(s), def, cast_oid)),
                _ => None,
            }
        }
        _ => {
            let literal = crate::write::literal_of(expr).ok()?;
            Some(constant_text(&literal, def, type_oid))
        }
    }
}

/// A constant as Postgres's `get_const_expr` prints it. A number as
/// written is an `integer` (or `bigint`, or `numeric` with a point)
/// constant assigned to the column by an implicit cast, which is not
/// printed; a string is a constant of the column's type.
fn constant_text(literal: &Literal, def: &ColumnDef, type_oid: u32) -> Option<String> {
    let labelled = |value: &str, oid: u32| format!("{}::{}", quote_literal(value), label(oid));
    Some(match literal {
        Literal::Null => return None,
        Literal::Bool(b) => b.to_string(),
        Literal::Number(n) => {
            if let Ok(i) = n.parse::<i64>() {
                match i32::try_from(i) {
                    Ok(v) if v >= 0 => v.to_string(),
                    Ok(v) => labelled(&v.to_string(), 23),
                    Err(_) => labelled(&i.to_string(), 20),
                }
            } else if n.starts_with(|c: char| c.is_ascii_digit()) {
                n.clone()
            } else {
                labelled(n, 1700)
            }
        }
        Literal::Text(s) => {
            string_constant(s, def, type_oid).unwrap_or_else(|| labelled(s, type_oid))
        }
        Literal::Json(s) => labelled(s, type_oid),
        _ => return None,
    })
}

/// A string assigned to a column of type `type_oid`, as the constant
/// Postgres stores: the value read by the type's input function, printed
/// by its output function.
fn string_constant(s: &str, def: &ColumnDef, type_oid: u32) -> Option<String> {
    let labelled = |value: &str| format!("{}::{}", quote_literal(value), label(type_oid));
    let column_type = def.scalar();
    Some(match type_oid {
        16 => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "y" | "on" | "1" => "true".into(),
            "f" | "false" | "no" | "n" | "off" | "0" => "false".into(),
            _ => return None,
        },
        23 => {
            let v: i32 = s.trim().parse().ok()?;
            if v >= 0 {
                v.to_string()
            } else {
                labelled(&v.to_string())
            }
        }
        20 | 21 => labelled(&s.trim().parse::<i64>().ok()?.to_string()),
        700 | 701 => labelled(&float_text(s.trim().parse().ok()?, type_oid == 700)),
        1700 => {
            let v = s.trim();
            if v.starts_with(|c: char| c.is_ascii_digit())
                && v.chars().all(|c| c.is_ascii_digit() || "+-eE.".contains(c))
            {
                v.to_owned()
            } else {
                labelled(v)
            }
        }
        VECTOR_OID => return None,
        _ => {
            // Dates, timestamps, uuids and jsonb have a canonical form;
            // read the string as the column would store it.
            let ty = column_type.filter(|t| {
                matches!(
                    t,
                    ScalarType::Date
                        | ScalarType::Timestamp
                        | ScalarType::TimestampTz
                        | ScalarType::Uuid
                        | ScalarType::Jsonb
                )
            });
            let Some(ty) = ty else {
                return Some(labelled(s));
            };
            let bytes = crate::declared::scalar_bytes(
                &Literal::Text(s.to_owned()),
                ty,
                def.type_mod,
                &def.name,
            )
            .ok()??;
            let value = match ty {
                ScalarType::Date => {
                    let days = i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
                    let text = crate::declared::timestamp_text(i64::from(days) * 86_400_000_000);
                    text.split(' ').next()?.to_owned()
                }
                ScalarType::Timestamp => {
                    crate::declared::timestamp_text(i64::from_le_bytes(bytes.try_into().ok()?))
                }
                ScalarType::TimestampTz => format!(
                    "{}+00",
                    crate::declared::timestamp_text(i64::from_le_bytes(bytes.try_into().ok()?))
                ),
                ScalarType::Uuid => crate::declared::uuid_text(&bytes),
                _ => String::from_utf8(bytes).ok()?,
            };
            labelled(&value)
        }
    })
}
