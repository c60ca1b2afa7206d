//! Tables as users declare them: `CREATE TABLE` with any columns, and
//! `INSERT` into such tables.
//!
//! A `CREATE TABLE` whose columns are not all among `id`, `vec`, `tag`
//! and `metadata` declares its own columns ([`declared_schema`]): one
//! vector column of any name (`vector(n)` or `halfvec(n)`) and scalar
//! columns of the types of [`valori_core::table::ScalarType`], with `NOT
//! NULL`, `DEFAULT`, `PRIMARY KEY` and `UNIQUE`. The table becomes one
//! `CreateTable` event; its rows are `InsertRows` events whose values are
//! in canonical form ([`scalar_bytes`]), so the state machine, the hash
//! and replay never interpret SQL.
//!
//! Values Postgres computes when a row is written — a `DEFAULT` of
//! `now()`, `gen_random_uuid()` or a literal, and `serial` sequences — are
//! computed here, once, and written into the event. An integer primary
//! key is the record id; otherwise the engine chooses record ids.

use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use datafusion::sql::sqlparser::ast::{self, ColumnOption, Expr, TableConstraint};
use valori_core::event::{Batch, CollectionName, Event, RecordId};
use valori_core::limits;
use valori_core::table::{
    ArrayElement, ColumnDef, ColumnType, ColumnValues, ForeignKey, NULL_VECTOR_TAG, OnDelete,
    ScalarType, TableSchema, column_flags,
};
use valori_engine::Engine;

use crate::write::{
    Literal, OnConflict, SetValue, WriteError, WriteOutcome, Written, bytea_text, parse_vector_text,
};

fn unsupported(what: impl Into<String>) -> WriteError {
    WriteError::Unsupported(what.into())
}

fn invalid(what: impl Into<String>) -> WriteError {
    WriteError::InvalidValue(what.into())
}

/// An identifier as Postgres folds it: lower case unless quoted.
pub(crate) fn ident(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

/// The column type of a declared SQL type, with its `type_mod` and
/// whether it is serial.
pub(crate) fn column_type(
    data_type: &ast::DataType,
) -> Result<(ColumnType, u32, bool), WriteError> {
    let text = data_type.to_string().to_ascii_lowercase();
    let (base, array) = match text.strip_suffix("[]") {
        Some(base) => (base.trim().to_owned(), true),
        None => (text.clone(), false),
    };
    let (name, modifier) = match base.find('(') {
        Some(i) if base.ends_with(')') => (
            base[..i].trim().to_owned(),
            Some(base[i + 1..base.len() - 1].trim().to_owned()),
        ),
        _ => (base.clone(), None),
    };
    let number = |what: &str| -> Result<u32, WriteError> {
        modifier
            .as_deref()
            .and_then(|m| m.parse::<u32>().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid(format!("{what} needs a positive length: {text}")))
    };
    let scalar = |t: ScalarType| Ok((ColumnType::Scalar(t), 0, false));
    let element = match name.as_str() {
        "vector" | "halfvec" if !array => {
            if modifier.is_none() {
                // Postgres takes rows of any dimension in such a column
                // (and cannot index it); here the first row written
                // gives the column its dimension (`type_mod` 0 until
                // then), which every later row shares.
                return Ok((
                    ColumnType::Vector {
                        half: name == "halfvec",
                    },
                    0,
                    false,
                ));
            }
            let dim = number("a vector type")?;
            if dim > limits::DIM_MAX {
                return Err(invalid(format!(
                    "vector dimension must be in 1..={}",
                    limits::DIM_MAX
                )));
            }
            return Ok((
                ColumnType::Vector {
                    half: name == "halfvec",
                },
                dim,
                false,
            ));
        }
        "smallint" | "int2" => ArrayElement::Int16,
        "integer" | "int" | "int4" => ArrayElement::Int32,
        "bigint" | "int8" => ArrayElement::Int64,
        "real" | "float4" => ArrayElement::Float32,
        "double precision" | "float8" | "float" | "double" => ArrayElement::Float64,
        "numeric" | "decimal" => ArrayElement::Numeric,
        "boolean" | "bool" => ArrayElement::Bool,
        "text" => ArrayElement::Text,
        "varchar" | "character varying" | "char" | "character" | "bpchar" | "nchar" => {
            if array {
                ArrayElement::Text
            } else {
                let blank_padded = name != "varchar" && name != "character varying";
                // `char` and `character` alone are `character(1)`;
                // `bpchar` alone has no length (values kept as written).
                let n = if modifier.is_some() {
                    number("varchar / char")?
                } else if blank_padded && name != "bpchar" {
                    1
                } else {
                    0
                };
                let ty = if blank_padded {
                    ScalarType::Char
                } else {
                    ScalarType::Text
                };
                return Ok((ColumnType::Scalar(ty), n, false));
            }
        }
        _ if array => {
            return Err(unsupported(format!(
                "column type {text}: arrays are of smallint, integer, bigint, real, double precision, numeric, boolean or text"
            )));
        }
        "smallserial" | "serial2" => return Ok((ColumnType::Scalar(ScalarType::Int16), 0, true)),
        "serial" | "serial4" => return Ok((ColumnType::Scalar(ScalarType::Int32), 0, true)),
        "bigserial" | "serial8" => return Ok((ColumnType::Scalar(ScalarType::Int64), 0, true)),
        "bytea" => return scalar(ScalarType::Bytea),
        "uuid" => return scalar(ScalarType::Uuid),
        "date" => return scalar(ScalarType::Date),
        "timestamp" | "timestamp without time zone" => return scalar(ScalarType::Timestamp),
        "timestamptz" | "timestamp with time zone" => return scalar(ScalarType::TimestampTz),
        "json" => return scalar(ScalarType::Json),
        "jsonb" => return scalar(ScalarType::Jsonb),
        _ => {
            return Err(unsupported(format!(
                "column type {text} is not supported (supported: vector(n), halfvec(n), smallint, integer, bigint, serial, bigserial, real, double precision, numeric, boolean, text, varchar(n), char(n), uuid, date, timestamp, timestamptz, json, jsonb, bytea and one-dimensional arrays of numbers and text)"
            )));
        }
    };
    Ok((
        ColumnType::Scalar(if array {
            ScalarType::Array(element)
        } else {
            element.scalar()
        }),
        0,
        false,
    ))
}

/// Whether a `CREATE TABLE` keeps the fixed columns (`id`, `vec`, `tag`,
/// `metadata`, with `vec` among them) rather than declaring its own.
pub fn is_fixed_layout(create: &ast::CreateTable) -> bool {
    create
        .columns
        .iter()
        .all(|c| matches!(ident(&c.name).as_str(), "id" | "vec" | "tag" | "metadata"))
        && create.columns.iter().any(|c| ident(&c.name) == "vec")
        && create.columns.iter().all(|c| {
            !c.data_type
                .to_string()
                .to_ascii_lowercase()
                .starts_with("halfvec")
        })
}

/// A `DEFAULT` this front end can compute when a row is written.
fn check_default(column: &str, expr: &Expr) -> Result<String, WriteError> {
    let text = expr.to_string();
    if default_value(expr, &Clock::now()).is_none() {
        return Err(unsupported(format!(
            "DEFAULT {text} of column {column:?}: supported defaults are literals, now(), CURRENT_TIMESTAMP, CURRENT_DATE and gen_random_uuid()"
        )));
    }
    Ok(text)
}

/// The SQL text of `ALTER COLUMN … SET DEFAULT expr`, checked as
/// `CREATE TABLE` checks a `DEFAULT`; `None` for `DEFAULT NULL`, which
/// is no default, as in Postgres.
pub(crate) fn set_default_text(column: &str, expr: &Expr) -> Result<Option<String>, WriteError> {
    let text = check_default(column, expr)?;
    let null = matches!(default_value(expr, &Clock::now()), Some(Literal::Null));
    Ok((!null).then_some(text))
}

/// Refuses a `DEFAULT` (its SQL text) whose value is not one of type
/// `ty`, as Postgres refuses `SET DEFAULT 'abc'` on an integer column.
pub(crate) fn check_default_value(
    text: &str,
    ty: ScalarType,
    type_mod: u32,
    column: &str,
) -> Result<(), WriteError> {
    let expr = crate::write::parse_expr(text)?;
    if let Some(literal) = default_value(&expr, &Clock::now()) {
        scalar_bytes(&literal, ty, type_mod, column)?;
    }
    Ok(())
}

/// One declared column of table `table` (`CREATE TABLE`, `ALTER TABLE …
/// ADD COLUMN`): its type, flags and `DEFAULT` text.
pub(crate) fn column_def(table: &str, column: &ast::ColumnDef) -> Result<ColumnDef, WriteError> {
    let name = ident(&column.name);
    let (ty, type_mod, serial) = column_type(&column.data_type)?;
    let mut flags = if serial {
        column_flags::SERIAL | column_flags::NOT_NULL
    } else {
        0
    };
    let mut default = serial.then(|| format!("nextval('{table}_{name}_seq'::regclass)"));
    let mut references = None;
    for option in &column.options {
        match &option.option {
            ColumnOption::NotNull => flags |= column_flags::NOT_NULL,
            ColumnOption::Null => {}
            ColumnOption::Default(expr) => default = Some(check_default(&name, expr)?),
            ColumnOption::Generated {
                generated_as,
                sequence_options,
                generation_expr,
                ..
            } => flags |= identity_flags(&name, generated_as, sequence_options, generation_expr)?,
            ColumnOption::PrimaryKey(_) => flags |= column_flags::PRIMARY_KEY,
            ColumnOption::Unique(_) => flags |= column_flags::UNIQUE,
            ColumnOption::ForeignKey(fk) => {
                let constraint = option.name.as_ref().or(fk.name.as_ref());
                references = Some(foreign_key(table, &name, constraint, fk)?);
            }
            other => {
                return Err(unsupported(format!(
                    "column option {other} of column {name:?} is not supported"
                )));
            }
        }
    }
    if flags & column_flags::IDENTITY != 0 {
        if !matches!(ty, ColumnType::Scalar(t) if t.is_integer()) {
            return Err(invalid(format!(
                "identity column {name:?}: an identity column's type must be smallint, integer or bigint"
            )));
        }
        if default.is_some() {
            return Err(WriteError::Syntax(format!(
                "both default and identity specified for column {name:?} of table {table:?}"
            )));
        }
        // An identity column is NOT NULL, as in Postgres.
        flags |= column_flags::NOT_NULL;
    }
    Ok(ColumnDef {
        name,
        ty,
        type_mod,
        flags,
        default,
        index: None,
        references,
    })
}

/// The foreign key `REFERENCES t [(c)] [ON DELETE …]` (or `FOREIGN KEY
/// (column) REFERENCES …`) of column `column` of table `table`, named
/// `constraint` or as Postgres names it (`<table>_<column>_fkey`). A key
/// without a referenced column names the referenced table's primary key,
/// resolved when the table is created ([`resolve_keys`]). Keys over
/// several columns, `ON UPDATE` actions other than `NO ACTION` and
/// `RESTRICT`, `ON DELETE SET DEFAULT` and `MATCH PARTIAL` are refused.
/// `DEFERRABLE` is accepted; every key is checked when a statement
/// writes, as `INITIALLY IMMEDIATE` keys are.
pub(crate) fn foreign_key(
    table: &str,
    column: &str,
    constraint: Option<&ast::Ident>,
    fk: &ast::ForeignKeyConstraint,
) -> Result<ForeignKey, WriteError> {
    use ast::ReferentialAction as A;
    let clause = || fk.to_string();
    if fk.referred_columns.len() > 1 || fk.columns.len() > 1 {
        return Err(unsupported(format!(
            "{}: a foreign key over several columns is not supported; one column may reference one unique column",
            clause()
        )));
    }
    if matches!(fk.on_update, Some(A::Cascade | A::SetNull | A::SetDefault)) {
        return Err(unsupported(format!(
            "{}: ON UPDATE {} is not supported (a referenced value that is still referenced cannot change: NO ACTION)",
            clause(),
            fk.on_update.map(|a| a.to_string()).unwrap_or_default()
        )));
    }
    if matches!(
        fk.match_kind,
        Some(ast::ConstraintReferenceMatchKind::Partial)
    ) {
        return Err(unsupported(format!(
            "{}: MATCH PARTIAL is not supported",
            clause()
        )));
    }
    let on_delete = match fk.on_delete {
        None | Some(A::NoAction) => OnDelete::NoAction,
        Some(A::Restrict) => OnDelete::Restrict,
        Some(A::Cascade) => OnDelete::Cascade,
        Some(A::SetNull) => OnDelete::SetNull,
        Some(A::SetDefault) => {
            return Err(unsupported(format!(
                "{}: ON DELETE SET DEFAULT is not supported (NO ACTION, RESTRICT, CASCADE and SET NULL are)",
                clause()
            )));
        }
    };
    let referenced = crate::write::table_name(&fk.foreign_table)?;
    let referenced = CollectionName::new(&referenced)
        .map_err(|_| WriteError::UndefinedTable(referenced.clone()))?;
    let name = match constraint {
        Some(n) => ident(n),
        None => crate::write::truncate_identifier(&format!("{table}_{column}_fkey")),
    };
    Ok(ForeignKey {
        name,
        table: referenced,
        column: fk.referred_columns.first().map(ident).unwrap_or_default(),
        on_delete,
    })
}

/// Gives foreign key `key` of table `table` (whose schema is `own`), when
/// written without a referenced column, the referenced table's primary
/// key, as Postgres does; the referenced table is `own` when the key
/// names `table` itself.
pub(crate) fn resolve_key(
    state: &valori_core::state::State,
    table: &str,
    own: &TableSchema,
    key: &mut ForeignKey,
) -> Result<(), WriteError> {
    if !key.column.is_empty() {
        return Ok(());
    }
    let referenced = if key.table.as_str() == table {
        Some(own)
    } else {
        let c = state
            .collection(&key.table)
            .ok_or_else(|| WriteError::UndefinedTable(key.table.to_string()))?;
        c.table().map(|t| t.schema())
    };
    key.column = referenced
        .and_then(|s| s.columns.iter().find(|c| c.is_primary_key()))
        .map(|c| c.name.clone())
        .ok_or_else(|| {
            WriteError::InvalidForeignKey(format!(
                "there is no primary key for referenced table {:?}",
                key.table.as_str()
            ))
        })?;
    Ok(())
}

/// [`resolve_key`] for every foreign key of a `CREATE TABLE`'s schema.
pub(crate) fn resolve_keys(
    state: &valori_core::state::State,
    table: &str,
    schema: &mut TableSchema,
) -> Result<(), WriteError> {
    let own = schema.clone();
    for c in &mut schema.columns {
        if let Some(key) = c.references.as_mut() {
            resolve_key(state, table, &own, key)?;
        }
    }
    Ok(())
}

/// The flags of `GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY` on
/// column `name`: values from the column's sequence, which starts at 1
/// and counts by 1 (other sequence options, and generated columns
/// computed from an expression, are refused).
fn identity_flags(
    name: &str,
    generated_as: &ast::GeneratedAs,
    options: &Option<Vec<ast::SequenceOptions>>,
    expr: &Option<Expr>,
) -> Result<u8, WriteError> {
    if expr.is_some() || matches!(generated_as, ast::GeneratedAs::ExpStored) {
        return Err(unsupported(format!(
            "generated column {name:?}: columns computed from an expression are not supported"
        )));
    }
    if options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(unsupported(format!(
            "sequence options of identity column {name:?}: an identity starts at 1 and counts by 1"
        )));
    }
    Ok(match generated_as {
        ast::GeneratedAs::Always => column_flags::IDENTITY | column_flags::ALWAYS,
        _ => column_flags::IDENTITY,
    })
}

/// Refuses a value given for a `GENERATED ALWAYS AS IDENTITY` column
/// (Postgres's SQLSTATE `428C9`): only its sequence gives its values.
pub(crate) fn check_not_always(def: &ColumnDef, updated: bool) -> Result<(), WriteError> {
    if def.identity() != "a" {
        return Ok(());
    }
    let name = &def.name;
    Err(WriteError::GeneratedAlways(match updated {
        true => format!("column {name:?} can only be updated to DEFAULT"),
        false => format!(
            "cannot insert a non-DEFAULT value into column {name:?}: it is an identity column defined as GENERATED ALWAYS"
        ),
    }))
}

/// The value a `DEFAULT` (its SQL text) gives, computed once now, as
/// the canonical bytes of a `ty` value (`None` for NULL): what `ALTER
/// TABLE … ADD COLUMN` writes into every existing row. A default whose
/// value differs per row (`gen_random_uuid()`), which Postgres computes
/// for each row, is refused.
pub(crate) fn default_once(
    text: &str,
    ty: ScalarType,
    type_mod: u32,
    column: &str,
) -> Result<Option<Vec<u8>>, WriteError> {
    let expr = crate::write::parse_expr(text)?;
    let lower = text.to_ascii_lowercase();
    if lower.contains("gen_random_uuid") || lower.contains("uuid_generate_v4") {
        return Err(unsupported(format!(
            "ADD COLUMN {column:?} with DEFAULT {text}: a default that differs per row is not supported on a table's existing rows; add the column without it, then UPDATE"
        )));
    }
    let literal = default_value(&expr, &Clock::now()).ok_or_else(|| {
        unsupported(format!(
            "DEFAULT {text} of column {column:?}: supported defaults are literals, now(), CURRENT_TIMESTAMP and CURRENT_DATE"
        ))
    })?;
    scalar_bytes(&literal, ty, type_mod, column)
}

/// `UNIQUE (a, b, …)` of table `table`, named as written or as Postgres
/// names it (`<table>_<a>_<b>_key`).
pub(crate) fn unique_set(
    table: &str,
    unique: &ast::UniqueConstraint,
) -> Result<valori_core::table::UniqueSet, WriteError> {
    if unique.nulls_distinct == ast::NullsDistinctOption::NotDistinct {
        return Err(unsupported(format!(
            "{unique}: NULLS NOT DISTINCT is not supported (NULLs are distinct, the default)"
        )));
    }
    let columns: Vec<String> = unique
        .columns
        .iter()
        .map(|c| {
            let name = c.column.expr.to_string();
            match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                Some(quoted) => quoted.to_owned(),
                None => name.to_ascii_lowercase(),
            }
        })
        .collect();
    let name = match &unique.name {
        Some(n) => ident(n),
        None => crate::write::truncate_identifier(&format!("{table}_{}_key", columns.join("_"))),
    };
    Ok(valori_core::table::UniqueSet { name, columns })
}

/// The schema a `CREATE TABLE` declares.
pub fn declared_schema(create: &ast::CreateTable) -> Result<TableSchema, WriteError> {
    let table = crate::write::table_name(&create.name)?;
    let mut uniques = Vec::new();
    let mut columns: Vec<ColumnDef> = Vec::with_capacity(create.columns.len());
    for column in &create.columns {
        let def = column_def(&table, column)?;
        if matches!(def.ty, ColumnType::Vector { .. })
            && columns
                .iter()
                .any(|c| matches!(c.ty, ColumnType::Vector { .. }))
        {
            return Err(unsupported(format!(
                "column {:?}: a table has one vector column; a second one is not supported",
                def.name
            )));
        }
        columns.push(def);
    }
    for constraint in &create.constraints {
        if let TableConstraint::ForeignKey(fk) = constraint {
            let [column] = fk.columns.as_slice() else {
                return Err(unsupported(format!(
                    "{fk}: a foreign key over several columns is not supported; one column may reference one unique column"
                )));
            };
            let name = ident(column);
            let key = foreign_key(&table, &name, fk.name.as_ref(), fk)?;
            let def = columns.iter_mut().find(|c| c.name == name).ok_or_else(|| {
                WriteError::UndefinedColumn(format!(
                    "column {name:?} referenced in foreign key constraint does not exist"
                ))
            })?;
            if def.references.is_some() {
                return Err(unsupported(format!(
                    "{fk}: column {name:?} already has a foreign key; one per column is supported"
                )));
            }
            def.references = Some(key);
            continue;
        }
        if let TableConstraint::Unique(unique) = constraint
            && unique.columns.len() > 1
        {
            uniques.push(unique_set(&table, unique)?);
            continue;
        }
        let (names, flag) = match constraint {
            TableConstraint::PrimaryKey(key) => (&key.columns, column_flags::PRIMARY_KEY),
            TableConstraint::Unique(unique) => (&unique.columns, column_flags::UNIQUE),
            other => {
                return Err(unsupported(format!(
                    "table constraint {other} is not supported (PRIMARY KEY, UNIQUE and FOREIGN KEY on one column are)"
                )));
            }
        };
        let [column] = names.as_slice() else {
            return Err(unsupported(
                "a PRIMARY KEY over several columns is not supported",
            ));
        };
        let name = column.column.expr.to_string().to_ascii_lowercase();
        let name = name.trim_matches('"');
        let def = columns.iter_mut().find(|c| c.name == name).ok_or_else(|| {
            WriteError::UndefinedColumn(format!(
                "column {name:?} named in a constraint does not exist"
            ))
        })?;
        def.flags |= flag;
    }
    let schema = TableSchema { columns, uniques };
    let dim = table_dim(&schema);
    schema
        .check(dim)
        .map_err(|e| invalid(format!("table {table}: {e}")))?;
    Ok(schema)
}

/// The time a statement runs at, read once so that every `now()` of one
/// statement agrees (Postgres gives a transaction's start time).
struct Clock {
    micros: i64,
}

impl Clock {
    fn now() -> Clock {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Clock { micros }
    }
}

/// The value of a `DEFAULT` expression, as the literal an `INSERT` would
/// have written; `None` when it is not one this front end computes.
fn default_value(expr: &Expr, clock: &Clock) -> Option<Literal> {
    let call = |name: &str| -> Option<()> {
        match expr {
            Expr::Function(f) => {
                let n = f.name.to_string().to_ascii_lowercase();
                (n == name || n == format!("pg_catalog.{name}")).then_some(())
            }
            _ => None,
        }
    };
    let text = expr.to_string().to_ascii_lowercase();
    if call("now").is_some()
        || call("transaction_timestamp").is_some()
        || call("statement_timestamp").is_some()
        || call("clock_timestamp").is_some()
        || text == "current_timestamp"
        || text == "localtimestamp"
    {
        return Some(Literal::Text(format!("@micros:{}", clock.micros)));
    }
    if text == "current_date" {
        return Some(Literal::Text(format!(
            "@days:{}",
            clock.micros.div_euclid(86_400_000_000)
        )));
    }
    if call("gen_random_uuid").is_some() || call("uuid_generate_v4").is_some() {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).ok()?;
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        return Some(Literal::Bytes(bytes.to_vec()));
    }
    match expr {
        Expr::Cast { expr, .. } | Expr::Nested(expr) => default_value(expr, clock),
        _ => crate::write::literal_of(expr).ok(),
    }
}

/// A `uuid` from its text: 32 hex digits, with or without hyphens,
/// optionally in braces.
pub fn uuid_from_text(text: &str) -> Option<[u8; 16]> {
    let t = text.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(t);
    let hex: Vec<u8> = t.bytes().filter(|c| *c != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// `uuid` bytes in their text form.
pub fn uuid_text(bytes: &[u8]) -> String {
    valori_columnar::arrow::uuid_text(bytes)
}

/// Microseconds since 1970-01-01 00:00:00 as Postgres prints a
/// timestamp: `YYYY-MM-DD HH:MM:SS[.ffffff]` (trailing zeros of the
/// fraction dropped).
pub fn timestamp_text(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let in_day = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    let secs = in_day / 1_000_000;
    let frac = in_day % 1_000_000;
    let mut out = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out
}

/// Microseconds, PostgreSQL's resolution, from a count of `unit`s:
/// nanoseconds (DataFusion's `now()`, `to_timestamp`) are rounded to
/// the nearest microsecond, half to even as PostgreSQL's input rounds
/// extra fractional digits.
pub fn micros_of(value: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => value.saturating_mul(1_000_000),
        TimeUnit::Millisecond => value.saturating_mul(1_000),
        TimeUnit::Microsecond => value,
        TimeUnit::Nanosecond => {
            let (q, r) = (value.div_euclid(1_000), value.rem_euclid(1_000));
            if r > 500 || (r == 500 && q % 2 != 0) {
                q + 1
            } else {
                q
            }
        }
    }
}

/// Row `row` of a timestamp column of any unit, in microseconds since
/// 1970-01-01 00:00 (UTC for a `timestamptz`).
pub fn timestamp_micros(array: &dyn Array, row: usize, unit: TimeUnit) -> i64 {
    let value = match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
    };
    micros_of(value, unit)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`), the inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `YYYY-MM-DD` as days since 1970-01-01.
fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) || !(1..=9999).contains(&y) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS[.fff…]]][ zone]` as microseconds since
/// 1970-01-01 00:00:00, UTC when `utc` (the zone's offset is applied),
/// else the wall-clock time written (a zone is checked and ignored, as
/// Postgres ignores it for `timestamp`). The zone is one
/// [`parse_zone`] reads, with or without blanks before it. Fractions
/// finer than a microsecond are rounded to one, half to even.
pub(crate) fn parse_timestamp(text: &str, utc: bool) -> Option<i64> {
    let text = text.trim();
    let (date, rest) = match text.find([' ', 'T']) {
        Some(i) => (&text[..i], text[i + 1..].trim()),
        None => (text, ""),
    };
    let days = parse_date(date)?;
    // The time is digits, colons and a point; the zone starts at its
    // sign or its first letter.
    let (time, zone) = match rest.find(|c: char| c == '+' || c == '-' || c.is_ascii_alphabetic()) {
        Some(i) => (rest[..i].trim_end(), Some(&rest[i..])),
        None => (rest, None),
    };
    let mut micros = 0i64;
    if !time.is_empty() {
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let mut hms = time.split(':');
        let h = hms.next().filter(|t| digits(t))?;
        let mi = hms.next().filter(|t| digits(t))?;
        let (s, frac) = match hms.next() {
            Some(sec) => sec.split_once('.').unwrap_or((sec, "")),
            None => ("0", ""),
        };
        if hms.next().is_some() || !digits(s) || !(frac.is_empty() || digits(frac)) {
            return None;
        }
        let (h, mi, s): (i64, i64, i64) = (h.parse().ok()?, mi.parse().ok()?, s.parse().ok()?);
        if h > 23 || mi > 59 || s > 59 {
            return None;
        }
        // Six digits of microseconds, the rest rounding them half to
        // even, as Postgres rounds them.
        let mut frac_micros: i64 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
        let rest = frac.get(6..).unwrap_or("").as_bytes();
        let up = match rest.first() {
            Some(&d) if d > b'5' => true,
            Some(b'5') => rest[1..].iter().any(|&d| d != b'0') || frac_micros % 2 == 1,
            _ => false,
        };
        if up {
            frac_micros += 1;
        }
        micros = ((h * 60 + mi) * 60 + s) * 1_000_000 + frac_micros;
    }
    let offset = match zone {
        Some(zone) => parse_zone(zone)?,
        None => 0,
    };
    let total = days.checked_mul(86_400_000_000)?.checked_add(micros)?;
    Some(if utc {
        total - offset * 1_000_000
    } else {
        total
    })
}

/// A time zone after a time, in the forms PostgreSQL reads that name a
/// fixed offset: `Z`, `zulu`, `UTC`, `GMT` (in any case), or a sign and
/// `H`, `HH`, `HHMM`, `H:MM`, `HH:MM` or `HH:MM:SS` (blanks allowed after
/// the sign); its displacement east of UTC in seconds, at most 15:59:59
/// either way as in PostgreSQL. Zone names (`Europe/Paris`) and POSIX
/// forms (`UTC+05`) are not read.
fn parse_zone(zone: &str) -> Option<i64> {
    let zone = zone.trim();
    if ["z", "zulu", "utc", "gmt"]
        .iter()
        .any(|name| zone.eq_ignore_ascii_case(name))
    {
        return Some(0);
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = zone[1..].trim_start();
    let number = |t: &str| -> Option<i64> {
        (matches!(t.len(), 1 | 2) && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (h, m, s) = if body.contains(':') {
        let mut parts = body.split(':');
        let h = number(parts.next()?)?;
        let m = number(parts.next()?)?;
        let s = parts.next().map_or(Some(0), number)?;
        if parts.next().is_some() {
            return None;
        }
        (h, m, s)
    } else {
        match body.len() {
            1 | 2 => (number(body)?, 0, 0),
            4 => (number(body.get(..2)?)?, number(body.get(2..)?)?, 0),
            _ => return None,
        }
    };
    if h > 15 || m > 59 || s > 59 {
        return None;
    }
    Some(sign * ((h * 60 + m) * 60 + s))
}

/// Decimal text in the canonical form of `ScalarType::Numeric`.
pub(crate) fn canonical_decimal(text: &str) -> Option<String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("nan") {
        return Some("NaN".into());
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    // Exponents: 1.5e3.
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(i) => (&digits[..i], digits[i + 1..].parse::<i32>().ok()?),
        None => (digits, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        || exponent.unsigned_abs() > 1000
    {
        return None;
    }
    let all = format!("{int}{frac}");
    let point = i64::try_from(int.len()).ok()? + i64::from(exponent);
    let (int, frac) = if point <= 0 {
        (
            String::new(),
            "0".repeat(point.unsigned_abs() as usize) + &all,
        )
    } else if point as usize >= all.len() {
        (
            all.clone() + &"0".repeat(point as usize - all.len()),
            String::new(),
        )
    } else {
        (
            all[..point as usize].to_owned(),
            all[point as usize..].to_owned(),
        )
    };
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    };
    Some(if negative && body != "0" {
        format!("-{body}")
    } else {
        body
    })
}

/// A JSON text in the canonical form `jsonb` keeps: object keys ordered
/// by length, then bytes (a repeated key keeps its last value), `", "`
/// and `": "` separators, as Postgres prints `jsonb`.
fn canonical_jsonb(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(jsonb_text(&value))
}

/// A JSON value in `jsonb`'s canonical text (keys ordered by length, then
/// bytes; `", "` and `": "` between items), as Postgres prints `jsonb`.
pub(crate) fn jsonb_text(value: &serde_json::Value) -> String {
    fn write(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write(item, out);
                }
                out.push(']');
            }
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
                out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&serde_json::Value::String((*key).clone()).to_string());
                    out.push_str(": ");
                    write(&map[*key], out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// A text element of an array in Postgres's array text form: quoted
/// (with `"` and `\` escaped) when it is empty, `NULL`, or holds a
/// delimiter, brace, quote, backslash or white space.
pub fn array_element_text(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.eq_ignore_ascii_case("null")
        && !text
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
    if plain {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Postgres's text form of a one-dimensional array's items (`{1,2.5,NULL}`,
/// `{a,"b c"}`), which [`array_text_elements`] reads back; `None` when
/// an item is itself an array.
pub fn array_text(items: &dyn Array) -> Option<String> {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    let mut out = String::from("{");
    for i in 0..items.len() {
        if i > 0 {
            out.push(',');
        }
        if items.is_null(i) {
            out.push_str("NULL");
            continue;
        }
        match items.data_type() {
            DataType::Utf8 => out.push_str(&array_element_text(items.as_string::<i32>().value(i))),
            DataType::LargeUtf8 => {
                out.push_str(&array_element_text(items.as_string::<i64>().value(i)));
            }
            DataType::Utf8View => {
                out.push_str(&array_element_text(items.as_string_view().value(i)))
            }
            DataType::Float32 => out.push_str(&crate::float_text::float_text(
                items
                    .as_primitive::<datafusion::arrow::datatypes::Float32Type>()
                    .value(i),
            )),
            DataType::Float64 => out.push_str(&crate::float_text::float_text(
                items
                    .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                    .value(i),
            )),
            DataType::Boolean => out.push(if items.as_boolean().value(i) {
                't'
            } else {
                'f'
            }),
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
                return None;
            }
            _ => out.push_str(&array_element_text(
                &ScalarValue::try_from_array(items, i).ok()?.to_string(),
            )),
        }
    }
    out.push('}');
    Some(out)
}

/// The elements of a Postgres array literal `{a,"b c",NULL}`.
pub fn array_text_elements(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let (value, quoted) = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next()? {
                    '\\' => v.push(chars.next()?),
                    '"' => break,
                    c => v.push(c),
                }
            }
            (v, true)
        } else {
            let mut v = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '"' {
                    return None;
                }
                v.push(c);
                chars.next();
            }
            (v.trim().to_owned(), false)
        };
        out.push((quoted || !value.eq_ignore_ascii_case("null")).then_some(value));
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// Text for a `varchar(n)` (`Text`) or `character(n)` (`Char`) column
/// of length `n` (0: no length), as Postgres fits it (its `varchar` and
/// `bpchar` input with a type modifier): longer than `n`, it is refused
/// (`22001`) unless the characters past `n` are all blanks, which are
/// dropped; `character(n)` text is then padded with blanks to `n`.
pub(crate) fn fitted_text(text: String, ty: ScalarType, n: u32) -> Result<String, WriteError> {
    if n == 0 {
        return Ok(text);
    }
    let n = n as usize;
    let chars = text.chars().count();
    if chars > n {
        let cut = text.char_indices().nth(n).map_or(text.len(), |(i, _)| i);
        if text[cut..].chars().any(|c| c != ' ') {
            let type_name = match ty {
                ScalarType::Char => "character",
                _ => "character varying",
            };
            return Err(WriteError::StringTooLong(format!(
                "value too long for type {type_name}({n})"
            )));
        }
        return Ok(text[..cut].to_owned());
    }
    Ok(match ty {
        ScalarType::Char => {
            let mut padded = text;
            padded.extend(std::iter::repeat_n(' ', n - chars));
            padded
        }
        _ => text,
    })
}

/// What a value is, for error messages.
fn shown(literal: &Literal) -> String {
    match literal {
        Literal::Null => "NULL".into(),
        Literal::Number(n) => n.clone(),
        Literal::Float(x) => x.text(),
        Literal::Text(t) | Literal::Json(t) => format!("{t:?}"),
        Literal::Bytes(_) => "a bytea value".into(),
        Literal::Array(_) => "an ARRAY".into(),
        Literal::Bool(b) => b.to_string(),
        Literal::Param(n) => format!("${n}"),
        Literal::Default => "DEFAULT".into(),
    }
}

/// A literal as the canonical bytes of a `ty` value (`None` for NULL).
/// `type_mod` is the column's character length for `varchar(n)` and
/// `character(n)` (0 otherwise): text longer than `n` is refused unless
/// the characters past `n` are blanks, which are dropped, and
/// `character(n)` text is padded with blanks to `n`, as Postgres stores
/// it.
pub fn scalar_bytes(
    literal: &Literal,
    ty: ScalarType,
    type_mod: u32,
    column: &str,
) -> Result<Option<Vec<u8>>, WriteError> {
    let bad = || {
        WriteError::InvalidText(format!(
            "invalid input syntax for type {}: {} (column {column:?})",
            ty.name(),
            shown(literal)
        ))
    };
    let out_of_range = || {
        WriteError::OutOfRange(format!(
            "value {} is out of range for type {} (column {column:?})",
            shown(literal),
            ty.name()
        ))
    };
    let float_text;
    let text = match literal {
        Literal::Null => return Ok(None),
        Literal::Number(n) => Some(n.as_str()),
        Literal::Float(x) => {
            float_text = match ty {
                // A float assigned to a `numeric` keeps the digits
                // Postgres's `float8_numeric` keeps.
                ScalarType::Numeric => x.numeric_text().ok_or_else(bad)?,
                _ => x.text(),
            };
            Some(float_text.as_str())
        }
        Literal::Text(t) | Literal::Json(t) => Some(t.as_str()),
        _ => None,
    };
    // As Postgres assigns a value to an integer column
    // ([`crate::casts`]): a number (a `numeric` or integer constant or
    // value) rounds half away from zero, a float half to even, and text
    // is read by the integer input function (`'2.5'` is refused).
    let integer = |int: crate::casts::IntType| -> Result<i64, WriteError> {
        use crate::casts;
        match literal {
            Literal::Number(n) => casts::numeric_text_to_int(n, int),
            Literal::Float(x) => casts::float_to_int(x.value(), int),
            Literal::Text(t) => casts::text_to_int(t, int),
            _ => return Err(bad()),
        }
        .map_err(|error| WriteError::Cast {
            column: Some(column.to_owned()),
            error,
        })
    };
    let float = || -> Result<f64, WriteError> {
        match literal {
            Literal::Float(x) => Ok(x.value()),
            Literal::Number(_) | Literal::Text(_) => {
                crate::write::float_literal(literal, ty.name()).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    };
    Ok(Some(match ty {
        ScalarType::Int16 => i16::try_from(integer(crate::casts::IntType::Int2)?)
            .expect("invariant: checked against smallint's range")
            .to_le_bytes()
            .to_vec(),
        ScalarType::Int32 => i32::try_from(integer(crate::casts::IntType::Int4)?)
            .expect("invariant: checked against integer's range")
            .to_le_bytes()
            .to_vec(),
        ScalarType::Int64 => integer(crate::casts::IntType::Int8)?.to_le_bytes().to_vec(),
        ScalarType::Float32 => {
            let v = float()? as f32;
            let v = if v.is_nan() { f32::NAN } else { v };
            v.to_le_bytes().to_vec()
        }
        ScalarType::Float64 => {
            let v = float()?;
            let v = if v.is_nan() { f64::NAN } else { v };
            v.to_le_bytes().to_vec()
        }
        ScalarType::Numeric => canonical_decimal(text.ok_or_else(bad)?)
            .ok_or_else(bad)?
            .into_bytes(),
        ScalarType::Bool => {
            let value = match literal {
                Literal::Bool(b) => *b,
                _ => match text.ok_or_else(bad)?.trim().to_ascii_lowercase().as_str() {
                    "t" | "true" | "yes" | "y" | "on" | "1" => true,
                    "f" | "false" | "no" | "n" | "off" | "0" => false,
                    _ => return Err(bad()),
                },
            };
            vec![u8::from(value)]
        }
        ScalarType::Text | ScalarType::Char => {
            let text = match literal {
                Literal::Bool(b) => b.to_string(),
                _ => text.ok_or_else(bad)?.to_owned(),
            };
            fitted_text(text, ty, type_mod)?.into_bytes()
        }
        ScalarType::Bytea => match literal {
            Literal::Bytes(b) => b.clone(),
            _ => bytea_text(text.ok_or_else(bad)?)?,
        },
        ScalarType::Uuid => match literal {
            Literal::Bytes(b) if b.len() == 16 => b.clone(),
            _ => uuid_from_text(text.ok_or_else(bad)?)
                .ok_or_else(bad)?
                .to_vec(),
        },
        ScalarType::Date => {
            let t = text.ok_or_else(bad)?;
            let days = match t.strip_prefix("@days:") {
                Some(d) => d.parse::<i64>().map_err(|_| bad())?,
                None => match t.strip_prefix("@micros:") {
                    Some(m) => m
                        .parse::<i64>()
                        .map_err(|_| bad())?
                        .div_euclid(86_400_000_000),
                    None => parse_date(t.split([' ', 'T']).next().unwrap_or(t)).ok_or_else(bad)?,
                },
            };
            i32::try_from(days)
                .map_err(|_| out_of_range())?
                .to_le_bytes()
                .to_vec()
        }
        ScalarType::Timestamp | ScalarType::TimestampTz => {
            let t = text.ok_or_else(bad)?;
            let micros = match (t.strip_prefix("@micros:"), t.strip_prefix("@days:")) {
                (Some(m), _) => m.parse::<i64>().map_err(|_| bad())?,
                (_, Some(d)) => d.parse::<i64>().map_err(|_| bad())? * 86_400_000_000,
                _ => parse_timestamp(t, ty == ScalarType::TimestampTz).ok_or_else(bad)?,
            };
            micros.to_le_bytes().to_vec()
        }
        ScalarType::Json => {
            let t = text.ok_or_else(bad)?;
            serde_json::from_str::<serde_json::Value>(t).map_err(|_| bad())?;
            t.as_bytes().to_vec()
        }
        ScalarType::Jsonb => canonical_jsonb(text.ok_or_else(bad)?)
            .ok_or_else(bad)?
            .into_bytes(),
        ScalarType::Array(element) => {
            let items: Vec<Literal> = match literal {
                Literal::Array(items) => items.clone(),
                _ => {
                    let t = text.ok_or_else(bad)?.trim();
                    // `[1,2]`, the form numeric array parameters arrive in.
                    let braces = match t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                        Some(inner) => format!("{{{inner}}}"),
                        None => t.to_owned(),
                    };
                    array_text_elements(&braces).ok_or_else(bad)?
                }
                .into_iter()
                .map(|v| v.map_or(Literal::Null, Literal::Text))
                .collect(),
            };
            let element = element.scalar();
            let mut out = (items.len() as u32).to_le_bytes().to_vec();
            for item in &items {
                match scalar_bytes(item, element, 0, column)? {
                    None => out.push(0),
                    Some(bytes) => {
                        out.push(1);
                        if element.width().is_none() {
                            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                        }
                        out.extend_from_slice(&bytes);
                    }
                }
            }
            out
        }
        _ => return Err(unsupported(format!("values of type {}", ty.name()))),
    }))
}

/// The dimension of a declared table's collection: its vector column's,
/// or 1 for a table without one or whose vector column has no dimension
/// yet (each record keeps the vector [0]).
pub fn table_dim(schema: &TableSchema) -> u32 {
    schema.dim()
}

/// A vector column's value: its Q16.16 components, `None` for NULL
/// (refused in a `NOT NULL` column of `table`).
pub(crate) fn vector_value(
    literal: &Literal,
    dim: u32,
    column: &ColumnDef,
    table: &str,
) -> Result<Option<Vec<i32>>, WriteError> {
    if matches!(literal, Literal::Null) {
        if column.not_null() {
            return Err(WriteError::NotNull(format!(
                "null value in column {:?} of relation {table:?} violates not-null constraint",
                column.name
            )));
        }
        return Ok(None);
    }
    vector_bytes(literal, dim, &column.name).map(Some)
}

/// The number of components of a vector literal, when it reads as one
/// (text `'[…]'` or an array).
fn literal_dimension(literal: &Literal) -> Option<u32> {
    let n = match literal {
        Literal::Text(t) => parse_vector_text(t).ok()?.len(),
        Literal::Array(items) => items.len(),
        _ => return None,
    };
    u32::try_from(n)
        .ok()
        .filter(|&n| (1..=limits::DIM_MAX).contains(&n))
}

fn vector_bytes(literal: &Literal, dim: u32, column: &str) -> Result<Vec<i32>, WriteError> {
    let floats: Vec<f32> = match literal {
        Literal::Text(t) => parse_vector_text(t)
            .map_err(|e| WriteError::InvalidText(format!("column {column:?}: {e}")))?,
        Literal::Array(items) => items
            .iter()
            .map(|item| match item {
                Literal::Number(n) | Literal::Text(n) => n.trim().parse::<f32>().ok(),
                Literal::Float(x) => Some(x.value() as f32),
                _ => None,
            })
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| {
                WriteError::InvalidText(format!(
                    "column {column:?}: an ARRAY of numbers is expected"
                ))
            })?,
        other => {
            return Err(WriteError::InvalidText(format!(
                "column {column:?}: {} is not a vector",
                shown(other)
            )));
        }
    };
    if floats.len() != dim as usize {
        return Err(invalid(format!(
            "expected {dim} dimensions, not {} (column {column:?})",
            floats.len()
        )));
    }
    valori_core::q16::quantize_vector(&floats)
        .map_err(|e| invalid(format!("column {column:?}: {e}")))
}

/// What an `INSERT` into a declared table writes.
struct Rows {
    batch: Batch,
    columns: Vec<ColumnValues>,
    /// Per row, the integer key's value when the key is the record id.
    keys: Vec<Option<i64>>,
}

/// Builds the rows of an `INSERT` from the values given for `names` (all
/// columns in declared order when `None`) and the columns' defaults;
/// `sequences` are the next values of the serial columns (by scalar
/// column), advanced as they are used.
fn build_rows(
    schema: &TableSchema,
    dim: u32,
    table: &str,
    names: Option<&[String]>,
    rows: &[Vec<Literal>],
    sequences: &mut [i64],
) -> Result<Rows, WriteError> {
    let positions: Vec<usize> = match names {
        None => (0..rows.first().map_or(0, Vec::len)).collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                schema
                    .columns
                    .iter()
                    .position(|c| c.name == *n)
                    .ok_or_else(|| {
                        WriteError::UndefinedColumn(format!(
                            "column {n:?} of relation {table:?} does not exist"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    if positions.len() > schema.columns.len() {
        return Err(WriteError::Syntax(format!(
            "INSERT has more expressions than target columns ({} for {})",
            positions.len(),
            schema.columns.len()
        )));
    }
    for (i, p) in positions.iter().enumerate() {
        if positions[..i].contains(p) {
            return Err(WriteError::Syntax(format!(
                "column {:?} specified more than once",
                schema.columns[*p].name
            )));
        }
    }
    let clock = Clock::now();
    let key = schema.integer_key();
    // Each DEFAULT parsed once per statement, evaluated per row.
    let defaults: Vec<Option<Expr>> = schema
        .scalar_columns()
        .map(|(_, def, _)| {
            def.default
                .as_deref()
                .filter(|_| !def.is_serial())
                .map(crate::write::parse_expr)
                .transpose()
        })
        .collect::<Result<_, _>>()?;
    let mut out = Rows {
        batch: Batch::new(dim),
        columns: vec![ColumnValues::default(); schema.scalar_count()],
        keys: Vec::with_capacity(rows.len()),
    };
    for (r, values) in rows.iter().enumerate() {
        if values.len() != positions.len() {
            return Err(WriteError::Syntax(format!(
                "row {}: {} values for {} columns",
                r + 1,
                values.len(),
                positions.len()
            )));
        }
        let given = |column: usize| -> Option<&Literal> {
            positions
                .iter()
                .position(|&p| p == column)
                .map(|i| &values[i])
        };
        let mut vector = None;
        let mut key_value = None;
        for (scalar, (column, def, ty)) in schema.scalar_columns().enumerate() {
            let computed;
            let literal = match given(column).filter(|l| !matches!(l, Literal::Default)) {
                Some(l) => {
                    check_not_always(def, false)?;
                    l
                }
                None if def.is_serial() => {
                    sequences[scalar] += 1;
                    computed = Literal::Number(sequences[scalar].to_string());
                    &computed
                }
                None => {
                    computed = match &defaults[scalar] {
                        Some(expr) => default_value(expr, &clock).unwrap_or(Literal::Null),
                        None => Literal::Null,
                    };
                    &computed
                }
            };
            let bytes = scalar_bytes(literal, ty, def.type_mod, &def.name)?;
            if bytes.is_none() && def.not_null() {
                return Err(WriteError::NotNull(format!(
                    "null value in column {:?} of relation {table:?} violates not-null constraint",
                    def.name
                )));
            }
            if Some(scalar) == key {
                key_value = bytes.as_deref().and_then(valori_core::table::integer_value);
            }
            out.columns[scalar].push(bytes.as_deref());
        }
        let mut tag = 0;
        for (column, def) in schema.columns.iter().enumerate() {
            if let ColumnType::Vector { .. } = def.ty {
                // `DEFAULT`: a vector column has none (NULL).
                let value = given(column).filter(|l| !matches!(l, Literal::Default));
                vector = vector_value(value.unwrap_or(&Literal::Null), dim, def, table)?;
                if vector.is_none() {
                    tag = NULL_VECTOR_TAG;
                }
            }
        }
        // A table without a vector column, or a NULL vector: the zero
        // vector.
        let vector = vector.unwrap_or_else(|| vec![0; dim as usize]);
        out.batch
            .push(RecordId(key_value.unwrap_or(0) as u64), &vector, tag, &[]);
        out.keys.push(key_value);
    }
    Ok(out)
}

/// `INSERT` into a declared table: one `InsertRows` event, all or none.
/// With `ON CONFLICT`, rows whose key is already taken are left
/// (`DO NOTHING`) or updated (`DO UPDATE`, one `UpdateRows` event before
/// the insert); both events are made from one state, under the lock that
/// serializes such writes, and checked completely before the first is
/// submitted. `returning`: the outcome carries the rows as stored.
pub fn insert(
    engine: &Engine,
    table: &str,
    names: Option<&[String]>,
    rows: &[Vec<Literal>],
    on_conflict: Option<&OnConflict>,
    returning: bool,
) -> Result<WriteOutcome, WriteError> {
    let name = CollectionName::new(table).map_err(|_| WriteError::UndefinedTable(table.into()))?;
    if rows.len() as u64 > u64::from(limits::BATCH_RECORDS_MAX) {
        return Err(WriteError::TooLarge(format!(
            "{} rows in one INSERT; at most {}",
            rows.len(),
            limits::BATCH_RECORDS_MAX
        )));
    }
    let mut failure = None;
    let mut planned = None;
    let receipts = engine.submit_built_all(|state| {
        match plan_insert(state, &name, table, names, rows, on_conflict, returning) {
            Ok(plan) => {
                let events = plan.events.clone();
                planned = Some(plan);
                events
            }
            Err(e) => {
                failure = Some(e);
                Vec::new()
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    receipts?;
    let plan = planned.unwrap_or_default();
    Ok(WriteOutcome {
        rows: plan.count,
        notices: Vec::new(),
        written: returning.then_some(plan.written),
    })
}

/// `INSERT` of record batches into a declared table (Arrow Flight's
/// `DoPut` and `CommandStatementIngest`): each batch's columns name the
/// table's columns, and its rows are the values of one `INSERT` of those
/// columns (converted as `INSERT … SELECT` converts a query's rows), so
/// that defaults, sequences and every check are those of `INSERT`. All
/// batches are one event: written whole or not at all.
pub fn insert_batches(
    engine: &Engine,
    table: &str,
    names: &[String],
    batches: &[datafusion::arrow::array::RecordBatch],
) -> Result<WriteOutcome, crate::QueryError> {
    let mut rows = Vec::new();
    for batch in batches {
        rows.extend(crate::returning::batch_literals(batch)?);
    }
    Ok(insert(engine, table, Some(names), &rows, None, false)?)
}

/// The events of one `INSERT` and what it answers.
#[derive(Default)]
struct InsertPlan {
    events: Vec<Event>,
    /// Rows inserted or updated.
    count: u64,
    written: Written,
}

/// What becomes of one proposed row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Insert,
    /// Left: its key is taken (`DO NOTHING`).
    Skip,
    /// Updates this existing row (`DO UPDATE`).
    Update(u32),
}

fn duplicate(table: &str, def: &ColumnDef, ty: ScalarType, value: &[u8]) -> WriteError {
    let column = &def.name;
    let constraint = if def.is_primary_key() {
        format!("{table}_pkey")
    } else {
        format!("{table}_{column}_key")
    };
    WriteError::Duplicate(format!(
        "duplicate key value violates unique constraint \"{constraint}\": Key ({column})=({}) already exists",
        shown_value(ty, value)
    ))
}

fn plan_insert(
    state: &valori_core::state::State,
    name: &CollectionName,
    table: &str,
    names: Option<&[String]>,
    rows: &[Vec<Literal>],
    on_conflict: Option<&OnConflict>,
    returning: bool,
) -> Result<InsertPlan, WriteError> {
    let collection = state
        .collection(name)
        .ok_or_else(|| WriteError::UndefinedTable(table.into()))?;
    let t = collection
        .table()
        .ok_or_else(|| WriteError::Unsupported(format!("{table} has the fixed columns")))?;
    let schema = t.schema();
    let mut dim = collection.config().dim;
    // A vector column declared without a dimension takes the length of
    // the first vector written, in the same transaction as the rows.
    let typed = match schema.vector_column() {
        Some(v) if schema.columns[v].type_mod == 0 && !rows.is_empty() => {
            let column = &schema.columns[v].name;
            let position = match names {
                None => Some(v),
                Some(names) => names.iter().position(|n| n == column),
            };
            let first = position
                .and_then(|p| rows.first().and_then(|r| r.get(p)))
                .and_then(literal_dimension);
            match first {
                Some(d) if collection.rows() == 0 => {
                    dim = d;
                    Some(d)
                }
                _ => {
                    return Err(unsupported(format!(
                        "column {column:?} of {table} has no dimension yet: the first row written must carry a vector, whose length gives the column its dimension"
                    )));
                }
            }
        }
        _ => None,
    };
    let mut sequences = t.sequences().to_vec();
    let built = build_rows(schema, dim, table, names, rows, &mut sequences)?;
    let scalar_defs: Vec<(&ColumnDef, ScalarType)> = schema
        .scalar_columns()
        .map(|(_, def, ty)| (def, ty))
        .collect();
    let scalar_names: Vec<&str> = scalar_defs.iter().map(|(d, _)| d.name.as_str()).collect();
    let dup = |c: usize, value: &[u8]| duplicate(table, scalar_defs[c].0, scalar_defs[c].1, value);
    let key = schema.integer_key();
    let unique: Vec<usize> = schema
        .scalar_columns()
        .enumerate()
        .filter(|(_, (_, def, _))| def.is_unique())
        .map(|(i, _)| i)
        .collect();
    // The live row holding `value` in unique scalar column `c`.
    let holder = |c: usize, value: &[u8]| -> Option<u32> {
        if Some(c) == key {
            valori_core::table::integer_value(value)
                .and_then(|k| collection.row_of(RecordId(k as u64)))
        } else {
            t.unique_row(c, value)
        }
    };
    let target = match on_conflict.and_then(|c| c.target.as_deref()) {
        None => None,
        Some(column) => Some(
            scalar_names
                .iter()
                .position(|n| *n == column)
                .filter(|c| unique.contains(c))
                .ok_or_else(|| {
                    WriteError::InvalidReference(format!(
                        "there is no unique or exclusion constraint matching the ON CONFLICT specification ({column})"
                    ))
                })?,
        ),
    };
    let update = on_conflict.and_then(|c| c.update.as_ref());
    let n = built.keys.len();
    let mut fates = vec![Fate::Insert; n];
    // Values of unique columns taken by rows of this statement.
    let mut taken: Vec<std::collections::BTreeSet<&[u8]>> = vec![Default::default(); unique.len()];
    // Keys of unique constraints over several columns taken alike.
    let mut taken_sets: Vec<std::collections::BTreeSet<Vec<u8>>> =
        vec![Default::default(); schema.uniques.len()];
    let mut updated_rows = std::collections::BTreeSet::new();
    for (r, fate) in fates.iter_mut().enumerate() {
        let checked: Vec<usize> = match (on_conflict, target) {
            (None, _) => Vec::new(),
            (Some(_), Some(c)) => vec![c],
            // DO NOTHING without a target: any unique column.
            (Some(_), None) => unique.clone(),
        };
        for (u, &c) in unique.iter().enumerate() {
            let Some(value) = built.columns[c].get(r) else {
                continue;
            };
            let in_statement = taken[u].contains(value);
            let existing = holder(c, value);
            if !checked.contains(&c) {
                if in_statement || existing.is_some() {
                    return Err(dup(c, value));
                }
                continue;
            }
            if update.is_some() && in_statement {
                return Err(WriteError::Cardinality(
                    "ON CONFLICT DO UPDATE command cannot affect row a second time".into(),
                ));
            }
            if in_statement {
                *fate = Fate::Skip;
            } else if let Some(row) = existing {
                *fate = match update {
                    Some(_) if !updated_rows.insert(row) => {
                        return Err(WriteError::Cardinality(
                            "ON CONFLICT DO UPDATE command cannot affect row a second time".into(),
                        ));
                    }
                    Some(_) => Fate::Update(row),
                    None => Fate::Skip,
                };
            }
            if *fate != Fate::Insert {
                break;
            }
        }
        // Unique constraints over several columns: a conflict skips the
        // row under DO NOTHING without a target, and is a duplicate
        // otherwise (a target names one column).
        if *fate == Fate::Insert {
            for (set, u) in schema.uniques.iter().enumerate() {
                let Some((key, holder)) = t.unique_set_row(set, |c| built.columns[c].get(r)) else {
                    continue;
                };
                if holder.is_some() || taken_sets[set].contains(&key) {
                    if on_conflict.is_some() && target.is_none() && update.is_none() {
                        *fate = Fate::Skip;
                        break;
                    }
                    return Err(WriteError::Duplicate(format!(
                        "duplicate key value violates unique constraint {:?}: Key ({})=({}) already exists",
                        u.name,
                        u.columns.join(", "),
                        u.columns
                            .iter()
                            .filter_map(|name| scalar_names.iter().position(|n| n == name))
                            .map(|c| built.columns[c].get(r).map_or_else(
                                || "null".to_owned(),
                                |v| shown_value(scalar_defs[c].1, v)
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        if *fate == Fate::Insert {
            for (u, &c) in unique.iter().enumerate() {
                if let Some(value) = built.columns[c].get(r) {
                    taken[u].insert(value);
                }
            }
            for (set, taken) in taken_sets.iter_mut().enumerate() {
                if let Some((key, _)) = t.unique_set_row(set, |c| built.columns[c].get(r)) {
                    taken.insert(key);
                }
            }
        }
    }

    let mut plan = InsertPlan::default();
    let scalars = schema.scalar_count();
    if returning {
        plan.written.columns = vec![ColumnValues::default(); scalars];
    }

    // DO UPDATE: one UpdateRows of the existing rows.
    let updates: Vec<(usize, u32)> = fates
        .iter()
        .enumerate()
        .filter_map(|(r, f)| match f {
            Fate::Update(row) => Some((r, *row)),
            _ => None,
        })
        .collect();
    let mut set_values: Vec<(usize, ColumnValues)> = Vec::new();
    // The vector each updated row gets, when the vector is assigned, and
    // the record tag that goes with it.
    let mut set_vectors: Option<Written> = None;
    // The assignments are checked also when no row conflicts.
    if let Some(sets) = update {
        for (column, value) in sets {
            let c = scalar_names.iter().position(|n| n == column);
            let Some(c) = c else {
                if schema.columns.iter().all(|d| d.name != *column) {
                    return Err(WriteError::UndefinedColumn(format!(
                        "column {column:?} of relation {table:?} does not exist"
                    )));
                }
                let mut vectors = Written::default();
                let def = &schema.columns[schema.vector_column().expect("invariant: named")];
                match value {
                    SetValue::Value(literal) => {
                        let v = vector_value(literal, dim, def, table)?;
                        for _ in &updates {
                            vectors.push_vector(v.as_deref(), dim as usize);
                        }
                    }
                    SetValue::Excluded(source) if source == column => {
                        for &(r, _) in &updates {
                            let null = built.batch.tags[r] == NULL_VECTOR_TAG;
                            let v = built.batch.vector(r);
                            vectors.push_vector((!null).then_some(v), dim as usize);
                        }
                    }
                    SetValue::Excluded(source) => {
                        return Err(unsupported(format!(
                            "ON CONFLICT … DO UPDATE SET {column} = EXCLUDED.{source}: the vector takes the vector"
                        )));
                    }
                }
                set_vectors = Some(vectors);
                continue;
            };
            if Some(c) == key {
                // `SET id = EXCLUDED.id` with `id` the conflict target
                // (knex's `merge()`, Sequelize's `upsert`): the row
                // updated holds that key already, so nothing changes.
                let unchanged = target == Some(c)
                    && matches!(value, SetValue::Excluded(source) if source == column);
                if unchanged {
                    continue;
                }
                return Err(unsupported(format!(
                    "ON CONFLICT … DO UPDATE SET {column}: the primary key is not updated"
                )));
            }
            let (_, def, ty) = schema
                .scalar_columns()
                .nth(c)
                .expect("invariant: c is a scalar column");
            let mut values = ColumnValues::default();
            let fixed = match value {
                SetValue::Value(literal) => Some(scalar_bytes(literal, ty, def.type_mod, column)?),
                SetValue::Excluded(source) => {
                    if !scalar_names.contains(&source.as_str()) {
                        return Err(WriteError::UndefinedColumn(format!(
                            "column excluded.{source} does not exist"
                        )));
                    }
                    None
                }
            };
            for &(r, _) in &updates {
                let bytes = match (&fixed, value) {
                    (Some(bytes), _) => bytes.as_deref(),
                    (None, SetValue::Excluded(source)) => {
                        let s = scalar_names
                            .iter()
                            .position(|n| n == source)
                            .expect("invariant: checked above");
                        built.columns[s].get(r)
                    }
                    (None, SetValue::Value(_)) => None,
                };
                if bytes.is_none() && def.not_null() {
                    return Err(WriteError::NotNull(format!(
                        "null value in column {column:?} of relation {table:?} violates not-null constraint"
                    )));
                }
                values.push(bytes);
            }
            set_values.push((c, values));
        }
        // A unique column set to a value another row holds, or that a
        // row of this statement inserts.
        for (c, values) in &set_values {
            let Some(u) = unique.iter().position(|x| x == c) else {
                continue;
            };
            let mut seen = std::collections::BTreeSet::new();
            for (i, &(_, row)) in updates.iter().enumerate() {
                if let Some(value) = values.get(i) {
                    let other = holder(*c, value).is_some_and(|h| h != row);
                    if other || taken[u].contains(value) || !seen.insert(value) {
                        return Err(dup(*c, value));
                    }
                }
            }
        }
        let columns = set_values
            .iter()
            .map(|(c, values)| {
                u16::try_from(*c)
                    .map(|c| (c, values.clone()))
                    .map_err(|_| unsupported(format!("column {c}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<RecordId> = updates
            .iter()
            .map(|&(_, row)| collection.ids()[row as usize])
            .collect();
        match (&set_vectors, updates.is_empty()) {
            (_, true) => {}
            (None, false) => plan.events.push(Event::UpdateRows {
                collection: name.clone(),
                ids,
                columns,
            }),
            // The vector changes: the rows are replaced whole (re-indexed),
            // each keeping the values it has in the columns not assigned.
            (Some(vectors), false) => {
                let mut batch = Batch::new(dim);
                let mut values = vec![ColumnValues::default(); scalars];
                let d = dim as usize;
                for (i, (&(_, row), id)) in updates.iter().zip(&ids).enumerate() {
                    let vector = &vectors.vectors[i * d..(i + 1) * d];
                    batch.push(*id, vector, vectors.tags[i], &[]);
                    for (c, out) in values.iter_mut().enumerate() {
                        match set_values.iter().find(|(s, _)| *s == c) {
                            Some((_, set)) => out.push(set.get(i)),
                            None => out.push(t.columns()[c].get(row as usize)),
                        }
                    }
                }
                plan.events.push(Event::ReplaceRows {
                    collection: name.clone(),
                    batch,
                    columns: values,
                });
            }
        }
    }

    // The rows inserted: one InsertRows.
    let inserted: Vec<usize> = (0..n).filter(|&r| fates[r] == Fate::Insert).collect();
    if !inserted.is_empty() {
        let mut batch = Batch::new(dim);
        let mut columns = vec![ColumnValues::default(); scalars];
        let mut next = collection
            .ids()
            .iter()
            .map(|id| id.0)
            .max()
            .map_or(0, |m| m.saturating_add(1));
        for &r in &inserted {
            let id = match key {
                Some(_) => built.batch.ids[r],
                None => {
                    let id = RecordId(next);
                    next = next.saturating_add(1);
                    id
                }
            };
            batch.push(id, built.batch.vector(r), built.batch.tags[r], &[]);
            for (c, values) in columns.iter_mut().enumerate() {
                values.push(built.columns[c].get(r));
            }
        }
        plan.events.push(Event::InsertRows {
            collection: name.clone(),
            batch,
            columns,
        });
    }
    plan.count = (updates.len() + inserted.len()) as u64;
    if let Some(dim) = typed {
        plan.events.insert(
            0,
            Event::AlterTable {
                collection: name.clone(),
                actions: vec![valori_core::table::AlterAction::TypeVector { dim }],
            },
        );
    }
    // One statement is one event: an upsert that updates some rows and
    // inserts others (or first types the vector column) is written whole
    // or not at all.
    if plan.events.len() > 1 {
        plan.events = vec![Event::Transaction {
            events: std::mem::take(&mut plan.events),
        }];
    }

    if returning {
        // In the statement's order: an inserted row as proposed, an
        // updated one as it was with the assignments made.
        let mut u = 0;
        for (r, fate) in fates.iter().enumerate() {
            match fate {
                Fate::Skip => continue,
                Fate::Insert => {
                    plan.written
                        .vectors
                        .extend_from_slice(built.batch.vector(r));
                    plan.written.tags.push(built.batch.tags[r]);
                    for (c, values) in plan.written.columns.iter_mut().enumerate() {
                        values.push(built.columns[c].get(r));
                    }
                }
                Fate::Update(row) => {
                    let row = *row as usize;
                    let (vector, tag) = match &set_vectors {
                        Some(set) => {
                            let d = dim as usize;
                            (&set.vectors[u * d..(u + 1) * d], set.tags[u])
                        }
                        None => (collection.vector(row), collection.tags()[row]),
                    };
                    plan.written.vectors.extend_from_slice(vector);
                    plan.written.tags.push(tag);
                    for (c, values) in plan.written.columns.iter_mut().enumerate() {
                        match set_values.iter().find(|(s, _)| *s == c) {
                            Some((_, set)) => values.push(set.get(u)),
                            None => values.push(t.columns()[c].get(row)),
                        }
                    }
                    u += 1;
                }
            }
            plan.written.rows += 1;
        }
    }
    Ok(plan)
}

/// A key's value as an error message shows it.
fn shown_value(ty: ScalarType, value: &[u8]) -> String {
    match ty {
        _ if ty.is_integer() => valori_core::table::integer_value(value)
            .map_or_else(|| format!("{value:02x?}"), |v| v.to_string()),
        ScalarType::Uuid => uuid_text(value),
        _ => match std::str::from_utf8(value) {
            Ok(text) => text.to_owned(),
            Err(_) => value.iter().map(|b| format!("{b:02x}")).collect(),
        },
    }
}
