//! The catalog functions Postgres clients call.
//!
//! Each is evaluated row by row over [`ScalarValue`]s (catalog queries
//! touch few rows). Functions that look at the tables read the engine's
//! state when they run. The `regclass_oid`, `regtype_oid`,
//! `regnamespace_oid` and `*_name` functions are what
//! [`super::rewrite`] turns casts to `regclass`, `regtype` and
//! `regnamespace` into.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue, plan_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use valori_engine::Engine;

use super::{
    OWNER_NAME, OWNER_OID, PG_CATALOG_NAMESPACE_OID, PUBLIC_NAMESPACE_OID, Relation, format_type,
    keys, relations, server_setting, sizes, type_oid, version_string,
};

/// What a function's body sees: the engine, and its tables read once per
/// call.
struct Ctx<'a> {
    engine: &'a Engine,
    relations: OnceLock<Vec<Relation>>,
    /// The name the statement's session logged in with; empty if none.
    user: &'a str,
}

impl Ctx<'_> {
    fn relations(&self) -> DfResult<&[Relation]> {
        if self.relations.get().is_none() {
            let found = relations(self.engine)?;
            let _ = self.relations.set(found);
        }
        Ok(self.relations.get().map_or(&[], Vec::as_slice))
    }
}

type Body = fn(&Ctx<'_>, &[ScalarValue]) -> DfResult<ScalarValue>;

/// One catalog function: name, the argument counts it takes, its result
/// type and body.
struct Def {
    name: &'static str,
    arities: &'static [usize],
    returns: fn() -> DataType,
    body: Body,
}

fn utf8() -> DataType {
    DataType::Utf8
}
fn oid() -> DataType {
    DataType::UInt32
}
fn boolean() -> DataType {
    DataType::Boolean
}
fn int4() -> DataType {
    DataType::Int32
}
fn int8() -> DataType {
    DataType::Int64
}
fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn text(s: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(s.into()))
}
fn null_text() -> ScalarValue {
    ScalarValue::Utf8(None)
}
fn bool_of(arg: Option<&ScalarValue>, value: bool) -> ScalarValue {
    // NULL in, NULL out, as Postgres's strict functions.
    match arg {
        Some(a) if a.is_null() => ScalarValue::Boolean(None),
        _ => ScalarValue::Boolean(Some(value)),
    }
}

/// An argument as text (numbers printed), or `None` for NULL.
fn arg_text(v: Option<&ScalarValue>) -> Option<String> {
    match v? {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        other if other.is_null() => None,
        other => Some(other.to_string()),
    }
}

/// An argument as an integer, or `None` for NULL or a non-number.
fn arg_int(v: Option<&ScalarValue>) -> Option<i64> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.trim().parse().ok(),
        ScalarValue::Boolean(Some(b)) => Some(i64::from(*b)),
        other => other.cast_to(&DataType::Int64).ok().and_then(|c| match c {
            ScalarValue::Int64(i) => i,
            _ => None,
        }),
    }
}

/// A value as JSON: numbers, booleans, strings and NULL as themselves,
/// anything else as its text.
fn json_value(v: &ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if v.is_null() {
        return Value::Null;
    }
    match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Float32(Some(x)) => {
            serde_json::Number::from_f64(f64::from(*x)).map_or(Value::Null, Value::Number)
        }
        ScalarValue::Float64(Some(x)) => {
            serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number)
        }
        other if other.data_type().is_integer() => match arg_int(Some(other)) {
            Some(i) => Value::Number(i.into()),
            None => Value::String(other.to_string()),
        },
        other => Value::String(arg_text(Some(other)).unwrap_or_default()),
    }
}

fn is_textual(v: &ScalarValue) -> bool {
    matches!(
        v,
        ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_)
    )
}

/// A relation or schema name as SQL writes it: unquoted names fold to
/// lower case, `"quoted"` ones keep their case; an optional schema.
fn split_name(name: &str) -> (Option<String>, String) {
    let part = |p: &str| {
        let p = p.trim();
        match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => p.to_ascii_lowercase(),
        }
    };
    match name.rsplit_once('.') {
        Some((schema, rel)) if !rel.contains('"') || rel.trim().starts_with('"') => {
            (Some(part(schema)), part(rel))
        }
        _ => (None, part(name)),
    }
}

fn namespace_oid(name: &str) -> Option<u32> {
    match name {
        "pg_catalog" => Some(PG_CATALOG_NAMESPACE_OID),
        "public" => Some(PUBLIC_NAMESPACE_OID),
        _ => None,
    }
}

fn namespace_name(oid: u32) -> Option<&'static str> {
    match oid {
        PG_CATALOG_NAMESPACE_OID => Some("pg_catalog"),
        PUBLIC_NAMESPACE_OID => Some("public"),
        _ => None,
    }
}

/// The OID of a relation named `name` (`t`, `public.t`, `"T"`,
/// `pg_catalog.pg_class`), or `None`.
fn find_relation(ctx: &Ctx<'_>, name: &str) -> DfResult<Option<u32>> {
    let (schema, rel) = split_name(name);
    let in_public = schema.as_deref().is_none_or(|s| s == "public");
    let in_catalog = schema.as_deref().is_none_or(|s| s == "pg_catalog");
    if in_catalog && let Some(i) = super::tables::TABLES.iter().position(|t| t.name == rel) {
        return Ok(Some(catalog_table_oid(i)));
    }
    if in_public {
        let relations = ctx.relations()?;
        if let Some(r) = relations.iter().find(|r| r.name == rel) {
            return Ok(Some(r.oid));
        }
        // Indexes and sequences are relations too.
        return Ok(relations.iter().find_map(|r| {
            keys::indexes(r)
                .into_iter()
                .map(|i| (i.oid, i.name))
                .chain(keys::sequences(r).into_iter().map(|q| (q.oid, q.name)))
                .find(|(_, name)| *name == rel)
                .map(|(oid, _)| oid)
        }));
    }
    Ok(None)
}

/// The OID of the `i`-th catalog table (Postgres's catalogs have OIDs
/// below 16384 too).
pub(crate) fn catalog_table_oid(i: usize) -> u32 {
    12_000 + i as u32
}

fn relation_name(ctx: &Ctx<'_>, oid: u32) -> DfResult<Option<String>> {
    let relations = ctx.relations()?;
    if let Some(r) = relations.iter().find(|r| r.oid == oid) {
        return Ok(Some(r.name.clone()));
    }
    let owned = relations.iter().find_map(|r| {
        keys::indexes(r)
            .into_iter()
            .map(|i| (i.oid, i.name))
            .chain(keys::sequences(r).into_iter().map(|q| (q.oid, q.name)))
            .find(|(o, _)| *o == oid)
            .map(|(_, name)| name)
    });
    if owned.is_some() {
        return Ok(owned);
    }
    Ok(super::tables::TABLES
        .iter()
        .enumerate()
        .find(|(i, _)| catalog_table_oid(*i) == oid)
        .map(|(_, t)| format!("pg_catalog.{}", t.name)))
}

fn oid_value(oid: Option<u32>) -> ScalarValue {
    ScalarValue::UInt32(oid)
}

fn as_oid(n: i64) -> DfResult<u32> {
    u32::try_from(n).map_err(|_| DataFusionError::Plan(format!("OID {n} is out of range")))
}

/// The relation a size function's first argument names (an OID, or a
/// name as a cast to `regclass` reads it), and the bytes of `part` of it
/// ([`sizes`]): NULL for NULL or an OID no relation has, 0 for the
/// catalog's own tables.
fn relation_size(
    ctx: &Ctx<'_>,
    arg: Option<&ScalarValue>,
    part: sizes::Part,
) -> DfResult<ScalarValue> {
    let Some(arg) = arg.filter(|a| !a.is_null()) else {
        return Ok(ScalarValue::Int64(None));
    };
    let oid = if is_textual(arg) {
        let name = arg_text(Some(arg)).unwrap_or_default();
        match find_relation(ctx, &name)? {
            Some(oid) => oid,
            None => return plan_err!("relation \"{name}\" does not exist"),
        }
    } else {
        match arg_int(Some(arg)) {
            Some(n) => match u32::try_from(n) {
                Ok(oid) => oid,
                Err(_) => return Ok(ScalarValue::Int64(None)),
            },
            None => return Ok(ScalarValue::Int64(None)),
        }
    };
    let found = ctx
        .engine
        .read(|state| sizes::relation_bytes(state.collections(), oid, part))
        .map_err(crate::provider::ScanError::from)?;
    let catalog = || {
        (0..super::tables::TABLES.len())
            .any(|i| catalog_table_oid(i) == oid)
            .then_some(0)
    };
    Ok(ScalarValue::Int64(
        found
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
            .or_else(catalog),
    ))
}

/// The functions, in the order `pg_proc` lists them.
static DEFS: &[Def] = &[
    Def {
        name: "version",
        arities: &[0],
        returns: utf8,
        body: |_, _| Ok(text(version_string())),
    },
    Def {
        name: "current_schema",
        arities: &[0],
        returns: utf8,
        body: |_, _| Ok(text("public")),
    },
    Def {
        name: "current_schemas",
        arities: &[1],
        returns: text_list,
        body: |_, args| {
            // With implicit schemas, pg_catalog (searched first) too.
            let implicit = matches!(args.first(), Some(ScalarValue::Boolean(Some(true))));
            let names: &[&str] = if implicit {
                &["pg_catalog", "public"]
            } else {
                &["public"]
            };
            let items: Vec<ScalarValue> = names.iter().map(|n| text(*n)).collect();
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &items,
                &DataType::Utf8,
            )))
        },
    },
    Def {
        // Also `current_user`, `session_user` and `user` written without
        // parentheses (see the catalog rewrite).
        name: "current_user",
        arities: &[0],
        returns: utf8,
        body: |ctx, _| {
            if ctx.user.is_empty() {
                return plan_err!(
                    "current_user is known only to sessions that log in by name (the Postgres protocol); this one has none"
                );
            }
            Ok(text(ctx.user))
        },
    },
    Def {
        name: "current_database",
        arities: &[0],
        returns: utf8,
        body: |_, _| Ok(text(super::DATABASE_NAME)),
    },
    Def {
        name: "current_setting",
        arities: &[1, 2],
        returns: utf8,
        body: |_, args| {
            let Some(name) = arg_text(args.first()) else {
                return Ok(null_text());
            };
            let missing_ok = matches!(args.get(1), Some(ScalarValue::Boolean(Some(true))));
            match server_setting(&name) {
                Some(v) => Ok(text(v)),
                None if missing_ok => Ok(null_text()),
                None => plan_err!("unrecognized configuration parameter \"{name}\""),
            }
        },
    },
    Def {
        name: "set_config",
        arities: &[3],
        returns: utf8,
        body: |_, args| {
            // A function cannot change the session's settings (SET
            // does): restating a server setting's own value is answered
            // as Postgres answers it (asyncpg turns `jit` off this way),
            // anything else is refused.
            let (Some(name), Some(value)) = (arg_text(args.first()), arg_text(args.get(1))) else {
                return Ok(null_text());
            };
            match server_setting(&name) {
                Some(v) if v.eq_ignore_ascii_case(&value) => Ok(text(v)),
                Some(_) => plan_err!(
                    "set_config({name:?}, {value:?}): the server setting {name} is fixed at {:?}",
                    server_setting(&name).unwrap_or_default()
                ),
                None => plan_err!("set_config({name:?}, …) is not supported: use SET {name} = …"),
            }
        },
    },
    Def {
        name: "quote_ident",
        arities: &[1],
        returns: utf8,
        body: |_, args| {
            Ok(arg_text(args.first()).map_or_else(null_text, |t| text(keys::quote_ident(&t))))
        },
    },
    Def {
        name: "format_type",
        arities: &[2],
        returns: utf8,
        body: |_, args| {
            let Some(oid) = arg_int(args.first()) else {
                return Ok(null_text());
            };
            let typmod = arg_int(args.get(1)).and_then(|m| i32::try_from(m).ok());
            // Postgres prints an unknown OID as ???.
            Ok(text(
                u32::try_from(oid)
                    .ok()
                    .and_then(|o| format_type(o, typmod))
                    .unwrap_or_else(|| "???".into()),
            ))
        },
    },
    Def {
        name: "pg_get_expr",
        arities: &[2, 3],
        // Expressions are kept as their SQL text.
        returns: utf8,
        body: |_, args| Ok(arg_text(args.first()).map_or_else(null_text, text)),
    },
    Def {
        name: "pg_table_is_visible",
        arities: &[1],
        // Every relation is in pg_catalog or public, both on the path.
        returns: boolean,
        body: |_, args| Ok(bool_of(args.first(), true)),
    },
    Def {
        name: "pg_type_is_visible",
        arities: &[1],
        returns: boolean,
        body: |_, args| Ok(bool_of(args.first(), true)),
    },
    Def {
        name: "pg_collation_is_visible",
        arities: &[1],
        returns: boolean,
        body: |_, args| Ok(bool_of(args.first(), true)),
    },
    Def {
        name: "pg_function_is_visible",
        arities: &[1],
        returns: boolean,
        body: |_, args| Ok(bool_of(args.first(), true)),
    },
    Def {
        name: "pg_get_userbyid",
        arities: &[1],
        returns: utf8,
        body: |_, args| {
            Ok(match arg_int(args.first()) {
                None => null_text(),
                Some(o) if o == i64::from(OWNER_OID) => text(OWNER_NAME),
                Some(o) => text(format!("unknown (OID={o})")),
            })
        },
    },
    Def {
        name: "obj_description",
        arities: &[1, 2],
        // Valori keeps no comments.
        returns: utf8,
        body: |_, _| Ok(null_text()),
    },
    Def {
        name: "col_description",
        arities: &[2],
        returns: utf8,
        body: |_, _| Ok(null_text()),
    },
    Def {
        name: "shobj_description",
        arities: &[2],
        returns: utf8,
        body: |_, _| Ok(null_text()),
    },
    Def {
        name: "pg_get_indexdef",
        arities: &[1, 3],
        returns: utf8,
        body: |ctx, args| {
            let Some(oid) = arg_int(args.first()) else {
                return Ok(null_text());
            };
            let found = ctx
                .relations()?
                .iter()
                .flat_map(keys::indexes)
                .find(|i| i64::from(i.oid) == oid);
            // Column k (1-based) of the index: its column's name; 0 or
            // none: the whole CREATE INDEX; past the last column: "".
            Ok(match (found, arg_int(args.get(1))) {
                (None, _) => null_text(),
                (Some(i), None | Some(0)) => text(i.definition()),
                (Some(i), Some(k)) => text(
                    usize::try_from(k - 1)
                        .ok()
                        .and_then(|k| i.columns.get(k))
                        .map(|c| keys::quote_ident(c))
                        .unwrap_or_default(),
                ),
            })
        },
    },
    Def {
        // Valori keeps no triggers (pg_trigger is empty): no OID names one.
        name: "pg_get_triggerdef",
        arities: &[1, 2],
        returns: utf8,
        body: |_, _| Ok(null_text()),
    },
    Def {
        name: "pg_get_constraintdef",
        arities: &[1, 2],
        returns: utf8,
        body: |ctx, args| {
            let Some(oid) = arg_int(args.first()) else {
                return Ok(null_text());
            };
            let relations = ctx.relations()?;
            let key = relations
                .iter()
                .flat_map(keys::indexes)
                .find(|i| i.contype().is_some() && i64::from(i.constraint_oid()) == oid)
                .and_then(|i| i.constraint_definition());
            let foreign = || {
                relations
                    .iter()
                    .flat_map(|r| keys::foreign_keys(r, relations))
                    .find(|k| i64::from(k.oid) == oid)
                    .map(|k| k.definition())
            };
            Ok(key.or_else(foreign).map_or_else(null_text, text))
        },
    },
    Def {
        name: "pg_get_serial_sequence",
        arities: &[2],
        returns: utf8,
        body: |ctx, args| {
            let (Some(table), Some(column)) = (arg_text(args.first()), arg_text(args.get(1)))
            else {
                return Ok(null_text());
            };
            let table = split_name(&table).1;
            let Some(relation) = ctx.relations()?.iter().find(|r| r.name == table) else {
                return plan_err!("relation \"{table}\" does not exist");
            };
            let column = column.trim_matches('"').to_owned();
            if !relation.schema.fields().iter().any(|f| *f.name() == column) {
                return plan_err!("column \"{column}\" of relation \"{table}\" does not exist");
            }
            Ok(keys::sequences(relation)
                .into_iter()
                .find(|q| q.column == column)
                .map_or_else(null_text, |q| {
                    text(format!("public.{}", keys::quote_ident(&q.name)))
                }))
        },
    },
    Def {
        name: "pg_get_statisticsobjdef_columns",
        arities: &[1],
        returns: utf8,
        body: |_, _| Ok(null_text()),
    },
    Def {
        name: "pg_relation_is_publishable",
        arities: &[1],
        // There is no logical replication.
        returns: boolean,
        body: |_, args| Ok(bool_of(args.first(), false)),
    },
    Def {
        name: "has_table_privilege",
        arities: &[2, 3],
        // Privileges are per role and checked by the front end when a
        // statement runs; the catalog does not know the caller's role.
        returns: boolean,
        body: |_, args| Ok(bool_of(args.first(), true)),
    },
    Def {
        name: "has_schema_privilege",
        arities: &[2, 3],
        returns: boolean,
        body: |_, args| Ok(bool_of(args.first(), true)),
    },
    Def {
        name: "has_database_privilege",
        arities: &[2, 3],
        returns: boolean,
        body: |_, args| Ok(bool_of(args.first(), true)),
    },
    Def {
        name: "has_column_privilege",
        arities: &[3, 4],
        returns: boolean,
        body: |_, args| Ok(bool_of(args.first(), true)),
    },
    Def {
        name: "pg_encoding_to_char",
        arities: &[1],
        returns: utf8,
        body: |_, args| {
            Ok(match arg_int(args.first()) {
                None => null_text(),
                Some(6) => text("UTF8"),
                Some(_) => text(""),
            })
        },
    },
    Def {
        name: "to_regclass",
        arities: &[1],
        returns: oid,
        body: |ctx, args| match arg_text(args.first()) {
            None => Ok(oid_value(None)),
            Some(name) => Ok(oid_value(find_relation(ctx, &name)?)),
        },
    },
    Def {
        name: "to_regtype",
        arities: &[1],
        returns: oid,
        body: |_, args| Ok(oid_value(arg_text(args.first()).and_then(|n| type_oid(&n)))),
    },
    Def {
        name: "to_regnamespace",
        arities: &[1],
        returns: oid,
        body: |_, args| {
            Ok(oid_value(
                arg_text(args.first()).and_then(|n| namespace_oid(&split_name(&n).1)),
            ))
        },
    },
    Def {
        name: "regclass_oid",
        arities: &[1],
        returns: oid,
        body: |ctx, args| {
            let Some(arg) = args.first().filter(|a| !a.is_null()) else {
                return Ok(oid_value(None));
            };
            if !is_textual(arg) {
                return arg_int(Some(arg)).map(as_oid).transpose().map(oid_value);
            }
            let name = arg_text(Some(arg)).unwrap_or_default();
            match find_relation(ctx, &name)? {
                Some(oid) => Ok(oid_value(Some(oid))),
                None => plan_err!("relation \"{name}\" does not exist"),
            }
        },
    },
    Def {
        name: "regtype_oid",
        arities: &[1],
        returns: oid,
        body: |_, args| {
            let Some(arg) = args.first().filter(|a| !a.is_null()) else {
                return Ok(oid_value(None));
            };
            if !is_textual(arg) {
                return arg_int(Some(arg)).map(as_oid).transpose().map(oid_value);
            }
            let name = arg_text(Some(arg)).unwrap_or_default();
            match type_oid(&name) {
                Some(oid) => Ok(oid_value(Some(oid))),
                None => plan_err!("type \"{name}\" does not exist"),
            }
        },
    },
    Def {
        name: "regnamespace_oid",
        arities: &[1],
        returns: oid,
        body: |_, args| {
            let Some(arg) = args.first().filter(|a| !a.is_null()) else {
                return Ok(oid_value(None));
            };
            if !is_textual(arg) {
                return arg_int(Some(arg)).map(as_oid).transpose().map(oid_value);
            }
            let name = arg_text(Some(arg)).unwrap_or_default();
            match namespace_oid(&split_name(&name).1) {
                Some(oid) => Ok(oid_value(Some(oid))),
                None => plan_err!("schema \"{name}\" does not exist"),
            }
        },
    },
    Def {
        name: "regclass_name",
        arities: &[1],
        // As Postgres prints a regclass: the name, or the number when no
        // relation has it.
        returns: utf8,
        body: |ctx, args| {
            let Some(arg) = args.first().filter(|a| !a.is_null()) else {
                return Ok(null_text());
            };
            if is_textual(arg) {
                // A name is looked up, as a cast to regclass does.
                let name = arg_text(Some(arg)).unwrap_or_default();
                return match find_relation(ctx, &name)? {
                    Some(oid) => Ok(text(relation_name(ctx, oid)?.unwrap_or(name))),
                    None => plan_err!("relation \"{name}\" does not exist"),
                };
            }
            let Some(n) = arg_int(Some(arg)) else {
                return Ok(null_text());
            };
            let name = relation_name(ctx, as_oid(n)?)?;
            Ok(text(name.unwrap_or_else(|| n.to_string())))
        },
    },
    Def {
        name: "regtype_name",
        arities: &[1],
        returns: utf8,
        body: |_, args| {
            let Some(arg) = args.first().filter(|a| !a.is_null()) else {
                return Ok(null_text());
            };
            if is_textual(arg) {
                let name = arg_text(Some(arg)).unwrap_or_default();
                return match type_oid(&name) {
                    Some(oid) => Ok(text(format_type(oid, None).unwrap_or(name))),
                    None => plan_err!("type \"{name}\" does not exist"),
                };
            }
            let Some(n) = arg_int(Some(arg)) else {
                return Ok(null_text());
            };
            // Postgres prints the unset type 0 as "-".
            if n == 0 {
                return Ok(text("-"));
            }
            Ok(text(
                format_type(as_oid(n)?, None).unwrap_or_else(|| n.to_string()),
            ))
        },
    },
    Def {
        name: "regnamespace_name",
        arities: &[1],
        returns: utf8,
        body: |_, args| {
            let Some(arg) = args.first().filter(|a| !a.is_null()) else {
                return Ok(null_text());
            };
            if is_textual(arg) {
                let name = arg_text(Some(arg)).unwrap_or_default();
                return match namespace_oid(&split_name(&name).1) {
                    Some(_) => Ok(text(split_name(&name).1)),
                    None => plan_err!("schema \"{name}\" does not exist"),
                };
            }
            let Some(n) = arg_int(Some(arg)) else {
                return Ok(null_text());
            };
            Ok(text(
                namespace_name(as_oid(n)?).map_or_else(|| n.to_string(), str::to_owned),
            ))
        },
    },
    Def {
        name: "pg_size_pretty",
        arities: &[1],
        returns: utf8,
        body: |_, args| {
            let Some(arg) = args.first().filter(|a| !a.is_null()) else {
                return Ok(null_text());
            };
            // pg_size_pretty(bigint) for integers, pg_size_pretty(numeric)
            // for the others (decimals, floats, text read as numeric).
            if arg.data_type().is_integer()
                && let Some(n) = arg_int(Some(arg))
            {
                return Ok(text(sizes::size_pretty(n)));
            }
            let given = arg_text(Some(arg)).unwrap_or_default();
            match sizes::size_pretty_numeric(&given) {
                Some(s) => Ok(text(s)),
                None => plan_err!(
                    "pg_size_pretty takes a bigint or a numeric, not {given:?} ({})",
                    arg.data_type()
                ),
            }
        },
    },
    Def {
        name: "pg_relation_size",
        arities: &[1, 2],
        returns: int8,
        body: |ctx, args| {
            // Valori has only the main fork: the others are empty, as an
            // absent fork is in Postgres. A NULL fork is NULL (the
            // function is strict).
            if args.get(1).is_some_and(ScalarValue::is_null) {
                return Ok(ScalarValue::Int64(None));
            }
            match arg_text(args.get(1)).as_deref() {
                None | Some("main") => relation_size(ctx, args.first(), sizes::Part::Own),
                Some("fsm" | "vm" | "init") => {
                    Ok(match relation_size(ctx, args.first(), sizes::Part::Own)? {
                        ScalarValue::Int64(Some(_)) => ScalarValue::Int64(Some(0)),
                        other => other,
                    })
                }
                Some(fork) => plan_err!(
                    "invalid fork name \"{fork}\": valid fork names are \"main\", \"fsm\", \"vm\", and \"init\""
                ),
            }
        },
    },
    Def {
        name: "pg_table_size",
        arities: &[1],
        returns: int8,
        body: |ctx, args| relation_size(ctx, args.first(), sizes::Part::Own),
    },
    Def {
        name: "pg_indexes_size",
        arities: &[1],
        returns: int8,
        body: |ctx, args| relation_size(ctx, args.first(), sizes::Part::Indexes),
    },
    Def {
        name: "pg_total_relation_size",
        arities: &[1],
        returns: int8,
        body: |ctx, args| relation_size(ctx, args.first(), sizes::Part::Total),
    },
    Def {
        name: "json_build_object",
        // Any even number of arguments: key, value, …
        arities: &[],
        returns: utf8,
        body: |_, args| {
            if args.len() % 2 != 0 {
                return plan_err!(
                    "json_build_object: the arguments must alternate keys and values"
                );
            }
            let mut object = serde_json::Map::new();
            for pair in args.chunks(2) {
                let Some(key) = arg_text(pair.first()) else {
                    return plan_err!("json_build_object: a key is NULL");
                };
                object.insert(key, json_value(&pair[1]));
            }
            Ok(text(serde_json::Value::Object(object).to_string()))
        },
    },
    Def {
        name: "array_upper",
        arities: &[2],
        returns: int4,
        body: |_, args| {
            // One-dimensional arrays: the upper bound of dimension 1 is the
            // length; NULL for an empty array or another dimension.
            let dim = arg_int(args.get(1));
            let len = match args.first() {
                Some(ScalarValue::List(l)) if !l.is_null(0) => Some(l.value(0).len()),
                _ => None,
            };
            Ok(ScalarValue::Int32(match (len, dim) {
                (Some(n), Some(1)) if n > 0 => i32::try_from(n).ok(),
                _ => None,
            }))
        },
    },
];

/// The names of the catalog functions (`pg_proc` lists them).
pub static CATALOG_FUNCTIONS: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| DEFS.iter().map(|d| d.name).collect());

/// A catalog function as a DataFusion UDF.
struct CatalogUdf {
    def: &'static Def,
    signature: Signature,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for CatalogUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogUdf")
            .field("name", &self.def.name)
            .finish()
    }
}

impl PartialEq for CatalogUdf {
    fn eq(&self, other: &Self) -> bool {
        self.def.name == other.def.name
    }
}

impl Eq for CatalogUdf {}

impl std::hash::Hash for CatalogUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.def.name.hash(state);
    }
}

impl ScalarUDFImpl for CatalogUdf {
    fn name(&self) -> &str {
        self.def.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok((self.def.returns)())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let identity = args
            .config_options
            .extensions
            .get::<crate::settings::SessionIdentity>();
        let ctx = Ctx {
            engine: &self.engine,
            relations: OnceLock::new(),
            user: identity.map_or("", |i| i.user.as_str()),
        };
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        if all_scalar {
            let values: Vec<ScalarValue> = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(_) => ScalarValue::Null,
                })
                .collect();
            return Ok(ColumnarValue::Scalar((self.def.body)(&ctx, &values)?));
        }
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<_>>()?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let values = arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row))
                .collect::<DfResult<Vec<_>>>()?;
            out.push((self.def.body)(&ctx, &values)?);
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&(self.def.returns)()),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

/// `single_value(array_agg(x))`: the value of a scalar subquery, which
/// [`super::rewrite`] makes an aggregate (DataFusion plans only aggregated
/// correlated subqueries): the one element, NULL for none, an error for
/// more, as Postgres answers a subquery used as an expression.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SingleValue {
    signature: Signature,
}

impl ScalarUDFImpl for SingleValue {
    fn name(&self) -> &str {
        "single_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types.first() {
            Some(DataType::List(item) | DataType::LargeList(item)) => Ok(item.data_type().clone()),
            Some(DataType::Null) => Ok(DataType::Null),
            other => plan_err!("single_value takes an array, not {other:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let item_type = args.return_field.data_type().clone();
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<_>>()?;
        let Some(list) = arrays.first() else {
            return plan_err!("single_value takes an array");
        };
        let mut out = Vec::with_capacity(list.len());
        for row in 0..list.len() {
            let value = match ScalarValue::try_from_array(list, row)? {
                ScalarValue::List(l) if !l.is_null(0) => {
                    let items = l.value(0);
                    match items.len() {
                        0 => ScalarValue::try_from(&item_type)?,
                        1 => ScalarValue::try_from_array(&items, 0)?,
                        _ => {
                            return Err(DataFusionError::Execution(
                                "more than one row returned by a subquery used as an expression"
                                    .into(),
                            ));
                        }
                    }
                }
                _ => ScalarValue::try_from(&item_type)?,
            };
            out.push(value);
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&item_type),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

/// Registers every catalog function in `ctx`.
pub fn register(ctx: &SessionContext, engine: Arc<Engine>) {
    ctx.register_udf(ScalarUDF::new_from_impl(SingleValue {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    for def in DEFS {
        let variadic = [0];
        let arities: &[usize] = if def.arities.is_empty() {
            &variadic
        } else {
            def.arities
        };
        let signatures = arities
            .iter()
            .map(|n| {
                if def.arities.is_empty() {
                    TypeSignature::VariadicAny
                } else if *n == 0 {
                    TypeSignature::Nullary
                } else {
                    TypeSignature::Any(*n)
                }
            })
            .collect();
        // Volatile: the answers follow the state, so a plan must not fold
        // them into constants.
        let signature = Signature::one_of(signatures, Volatility::Volatile);
        ctx.register_udf(ScalarUDF::new_from_impl(CatalogUdf {
            def,
            signature,
            engine: Arc::clone(&engine),
        }));
    }
}
