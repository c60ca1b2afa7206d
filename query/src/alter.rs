//! `ALTER TABLE` on tables with declared columns: one `AlterTable` event.
//!
//! [`parse`] turns the statement into [`AlterStep`]s: `ADD COLUMN [IF NOT
//! EXISTS] c type [DEFAULT …] [NOT NULL]`, `DROP COLUMN [IF EXISTS] c`,
//! `RENAME COLUMN a TO b`, `RENAME TO u`, `ALTER COLUMN … SET / DROP
//! DEFAULT` and the others docs/sql.md lists; any other form is refused
//! with `0A000` naming it. [`execute`] resolves the steps against the
//! state the event is applied to (under the lock that serializes the
//! statement layer's writes): `IF [NOT] EXISTS` steps that do nothing
//! become NOTICEs, each added column's `DEFAULT` is computed once, and
//! the resulting shape is checked as the state machine checks it, so
//! that a refusal carries Postgres's SQLSTATE (`42703`, `42701`, `23502`,
//! …). The event then changes the table all or none.

use datafusion::sql::sqlparser::ast::{self, AlterTableOperation, RenameTableNameKind};
use valori_core::event::{CollectionName, Event};
use valori_core::limits;
use valori_core::table::{
    AlterAction, ColumnDef, ColumnType, ForeignKey, RowCounts, ScalarType, SchemaError, UniqueSet,
    column_flags,
};
use valori_engine::{Engine, EngineError};

use crate::declared::ident;
use crate::write::{WriteError, WriteOutcome, WriteStatement};

/// One action of an `ALTER TABLE` as written.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AlterStep {
    AddColumn {
        if_not_exists: bool,
        column: ColumnDef,
    },
    DropColumn {
        if_exists: bool,
        name: String,
    },
    RenameColumn {
        from: String,
        to: String,
    },
    RenameTable {
        to: String,
    },
    /// `ADD [CONSTRAINT name] FOREIGN KEY (column) REFERENCES …`.
    AddForeignKey {
        column: String,
        key: ForeignKey,
    },
    /// `DROP CONSTRAINT [IF EXISTS] name` of a foreign key or unique
    /// constraint.
    DropConstraint {
        if_exists: bool,
        name: String,
    },
    /// `ADD [CONSTRAINT name] UNIQUE (a, …)`.
    AddUnique {
        set: UniqueSet,
    },
    /// `ALTER COLUMN c [SET DATA] TYPE text | varchar(n) | char(n)`: the
    /// character bound `type_mod` (0: none) of a text column.
    SetTypeMod {
        column: String,
        type_mod: u32,
    },
    /// `ALTER COLUMN c SET NOT NULL` / `DROP NOT NULL`.
    SetNotNull {
        column: String,
        not_null: bool,
    },
    /// `ALTER COLUMN c SET DEFAULT value` (the value's SQL text; `DEFAULT
    /// NULL` is none) / `DROP DEFAULT` (`None`).
    SetDefault {
        column: String,
        default: Option<String>,
    },
}

fn unsupported(what: impl Into<String>) -> WriteError {
    WriteError::Unsupported(what.into())
}

/// The form of an operation Valori does not alter tables with, for its
/// error: the operation as written, at most 80 characters.
fn form(op: &AlterTableOperation) -> String {
    let text = op.to_string();
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// An `ALTER TABLE` statement as a write.
pub(crate) fn parse(alter: ast::AlterTable) -> Result<WriteStatement, WriteError> {
    if alter.table_type.is_some() || alter.location.is_some() || alter.on_cluster.is_some() {
        return Err(unsupported(format!(
            "{}: only ALTER TABLE name … is supported",
            ast::Statement::AlterTable(alter.clone())
                .to_string()
                .chars()
                .take(80)
                .collect::<String>()
        )));
    }
    let table = crate::write::table_name(&alter.name)?;
    if alter.operations.is_empty() {
        return Err(WriteError::Syntax("ALTER TABLE without an action".into()));
    }
    if alter.operations.len() > limits::ALTER_ACTIONS_MAX as usize {
        return Err(WriteError::TooLarge(format!(
            "ALTER TABLE with {} actions; at most {} (ALTER_ACTIONS_MAX)",
            alter.operations.len(),
            limits::ALTER_ACTIONS_MAX
        )));
    }
    let mut steps = Vec::with_capacity(alter.operations.len());
    for op in &alter.operations {
        match op {
            AlterTableOperation::AddColumn {
                if_not_exists,
                column_def,
                column_position: None,
                ..
            } => {
                let column = crate::declared::column_def(&table, column_def)?;
                if column.flags & !column_flags::NOT_NULL != 0 {
                    return Err(unsupported(format!(
                        "ALTER TABLE … ADD COLUMN {}: an added column may be NOT NULL and have a DEFAULT, but PRIMARY KEY, UNIQUE and serial types are not supported",
                        column.name
                    )));
                }
                steps.push(AlterStep::AddColumn {
                    if_not_exists: *if_not_exists,
                    column,
                });
            }
            AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                ..
            } => {
                for name in column_names {
                    steps.push(AlterStep::DropColumn {
                        if_exists: *if_exists,
                        name: ident(name),
                    });
                }
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => steps.push(AlterStep::RenameColumn {
                from: ident(old_column_name),
                to: ident(new_column_name),
            }),
            AlterTableOperation::RenameTable {
                table_name: RenameTableNameKind::To(name),
            } => steps.push(AlterStep::RenameTable {
                to: crate::write::table_name(name)?,
            }),
            AlterTableOperation::AddConstraint {
                constraint: ast::TableConstraint::ForeignKey(fk),
                ..
            } => {
                let [column] = fk.columns.as_slice() else {
                    return Err(unsupported(format!(
                        "{fk}: a foreign key over several columns is not supported; one column may reference one unique column"
                    )));
                };
                let column = ident(column);
                let key = crate::declared::foreign_key(&table, &column, fk.name.as_ref(), fk)?;
                steps.push(AlterStep::AddForeignKey { column, key });
            }
            AlterTableOperation::AddConstraint {
                constraint: ast::TableConstraint::Unique(unique),
                ..
            } => steps.push(AlterStep::AddUnique {
                set: crate::declared::unique_set(&table, unique)?,
            }),
            AlterTableOperation::AlterColumn {
                column_name,
                op: change,
            } => {
                let column = ident(column_name);
                steps.push(match change {
                    ast::AlterColumnOperation::SetNotNull => AlterStep::SetNotNull {
                        column,
                        not_null: true,
                    },
                    ast::AlterColumnOperation::DropNotNull => AlterStep::SetNotNull {
                        column,
                        not_null: false,
                    },
                    ast::AlterColumnOperation::DropDefault => AlterStep::SetDefault {
                        column,
                        default: None,
                    },
                    ast::AlterColumnOperation::SetDefault { value } => AlterStep::SetDefault {
                        default: crate::declared::set_default_text(&column, value)?,
                        column,
                    },
                    ast::AlterColumnOperation::SetDataType {
                        data_type, using, ..
                    } => {
                        // USING may only restate the column, as Django
                        // writes it (`USING "c"::varchar(n)`).
                        let restates = |e: &ast::Expr| match e {
                            ast::Expr::Identifier(i) => ident(i) == column,
                            ast::Expr::Cast { expr, .. } => {
                                matches!(expr.as_ref(), ast::Expr::Identifier(i) if ident(i) == column)
                            }
                            _ => false,
                        };
                        let (ty, type_mod, serial) = crate::declared::column_type(data_type)?;
                        if ty != ColumnType::Scalar(ScalarType::Text)
                            || serial
                            || using.as_ref().is_some_and(|u| !restates(u))
                        {
                            return Err(unsupported(format!(
                                "ALTER TABLE … {} is not supported: only the length of a text or varchar column can change (TYPE text or varchar(n); a character(n) column's values would be padded again)",
                                form(op)
                            )));
                        }
                        AlterStep::SetTypeMod { column, type_mod }
                    }
                    _ => {
                        return Err(unsupported(format!(
                            "ALTER TABLE … {} is not supported (ALTER COLUMN … TYPE of a text column's length, SET / DROP NOT NULL and SET / DROP DEFAULT are)",
                            form(op)
                        )));
                    }
                });
            }
            AlterTableOperation::DropConstraint {
                if_exists,
                name,
                drop_behavior: None | Some(ast::DropBehavior::Restrict),
            } => steps.push(AlterStep::DropConstraint {
                if_exists: *if_exists,
                name: ident(name),
            }),
            other => {
                return Err(unsupported(format!(
                    "ALTER TABLE … {} is not supported (ADD COLUMN, DROP COLUMN, RENAME COLUMN, RENAME TO, ALTER COLUMN … TYPE of a text column's length, SET / DROP NOT NULL, SET / DROP DEFAULT, ADD FOREIGN KEY, ADD UNIQUE and DROP CONSTRAINT are)",
                    form(other)
                )));
            }
        }
    }
    if steps.len() > limits::ALTER_ACTIONS_MAX as usize {
        return Err(WriteError::TooLarge(format!(
            "ALTER TABLE with {} actions; at most {} (ALTER_ACTIONS_MAX)",
            steps.len(),
            limits::ALTER_ACTIONS_MAX
        )));
    }
    Ok(WriteStatement::AlterTable {
        table,
        if_exists: alter.if_exists,
        steps,
    })
}

/// A refusal of the state machine's schema checks as the write error
/// (and so the SQLSTATE) Postgres gives for it.
pub(crate) fn schema_error(table: &str, e: SchemaError) -> WriteError {
    let text = format!("table {table}: {e}");
    match e {
        SchemaError::UnknownColumn(name) => WriteError::UndefinedColumn(format!(
            "column {name:?} of relation {table:?} does not exist"
        )),
        SchemaError::Duplicate(name) => WriteError::DuplicateColumn(format!(
            "column {name:?} of relation {table:?} already exists"
        )),
        SchemaError::AddNotNull(name) => WriteError::NotNull(format!(
            "column {name:?} of relation {table:?} contains null values: a NOT NULL column added to a table with rows needs a DEFAULT"
        )),
        SchemaError::UnknownIndex(name) => WriteError::UndefinedIndex(name),
        SchemaError::UnknownConstraint(name) => WriteError::UndefinedConstraint(format!(
            "constraint {name:?} of relation {table:?} does not exist"
        )),
        SchemaError::AddVector(name) => WriteError::Unsupported(format!(
            "ALTER TABLE {table} ADD COLUMN {name}: a vector column can be added only to a table without one that has never held rows; declare it in CREATE TABLE"
        )),
        SchemaError::DropVector(_)
        | SchemaError::DropKey(_)
        | SchemaError::AddFlags(_)
        | SchemaError::TypeChange(_)
        | SchemaError::NotNullChange(_)
        | SchemaError::DefaultChange(_)
        | SchemaError::UniqueColumns(_)
        | SchemaError::RenameTwice => WriteError::Unsupported(text),
        SchemaError::ColumnCount(_) | SchemaError::Default(_) | SchemaError::ActionCount(_) => {
            WriteError::TooLarge(text)
        }
        _ => WriteError::InvalidValue(text),
    }
}

/// The event an `ALTER TABLE` makes of the current state, with its
/// NOTICEs; `Ok(None)` when every step was skipped (`IF [NOT] EXISTS`).
fn build(
    state: &valori_core::state::State,
    table: &str,
    if_exists: bool,
    steps: &[AlterStep],
    notices: &mut Vec<String>,
) -> Result<Option<Event>, WriteError> {
    let collection = CollectionName::new(table).ok();
    let Some(c) = collection.as_ref().and_then(|n| state.collection(n)) else {
        if if_exists {
            notices.push(format!("relation \"{table}\" does not exist, skipping"));
            return Ok(None);
        }
        return Err(WriteError::UndefinedTable(table.to_owned()));
    };
    let Some(declared) = c.table() else {
        return Err(unsupported(format!(
            "ALTER TABLE {table}: {table} has the fixed columns id, vec, tag and metadata, which cannot change; tables with declared columns can be altered"
        )));
    };
    let mut schema = declared.schema().clone();
    let rows = RowCounts {
        live: c.live() as u64,
        stored: c.rows() as u64,
    };
    let mut actions = Vec::with_capacity(steps.len());
    for step in steps {
        let exists = |name: &str| schema.columns.iter().any(|c| c.name == name);
        let action = match step {
            AlterStep::AddColumn {
                if_not_exists,
                column,
            } => {
                if *if_not_exists && exists(&column.name) {
                    notices.push(format!(
                        "column \"{}\" of relation \"{table}\" already exists, skipping",
                        column.name
                    ));
                    continue;
                }
                if exists(&column.name) {
                    return Err(schema_error(
                        table,
                        SchemaError::Duplicate(column.name.clone()),
                    ));
                }
                let value = match (&column.default, column.scalar()) {
                    (Some(text), Some(ty)) => {
                        crate::declared::default_once(text, ty, column.type_mod, &column.name)?
                    }
                    _ => None,
                };
                let mut column = column.clone();
                if let Some(key) = column.references.as_mut() {
                    crate::declared::resolve_key(state, table, &schema, key)?;
                }
                AlterAction::AddColumn { column, value }
            }
            AlterStep::AddForeignKey { column, key } => {
                let mut key = key.clone();
                crate::declared::resolve_key(state, table, &schema, &mut key)?;
                AlterAction::AddForeignKey {
                    column: column.clone(),
                    key,
                }
            }
            AlterStep::AddUnique { set } => AlterAction::AddUnique { set: set.clone() },
            AlterStep::SetTypeMod { column, type_mod } => {
                let current = schema.columns.iter().find(|c| c.name == *column);
                if current.is_some_and(|c| c.scalar() != Some(ScalarType::Text)) {
                    return Err(unsupported(format!(
                        "ALTER TABLE {table} ALTER COLUMN {column} TYPE is not supported: only the length of a text column can change"
                    )));
                }
                AlterAction::SetTypeMod {
                    column: column.clone(),
                    type_mod: *type_mod,
                }
            }
            AlterStep::SetNotNull { column, not_null } => AlterAction::SetNotNull {
                column: column.clone(),
                not_null: *not_null,
            },
            AlterStep::SetDefault { column, default } => {
                let current = schema.columns.iter().find(|c| c.name == *column);
                if let Some(def) = current {
                    if def.identity() != "" {
                        return Err(WriteError::Syntax(format!(
                            "column {column:?} of relation {table:?} is an identity column"
                        )));
                    }
                    // Already so (a column without a default, the vector
                    // column's among them): nothing to change.
                    if def.default == *default && !def.is_serial() {
                        continue;
                    }
                    // A value of the column's type, as Postgres checks it
                    // when the default is set.
                    if let (Some(text), Some(ty)) = (default, def.scalar()) {
                        crate::declared::check_default_value(text, ty, def.type_mod, column)?;
                    }
                }
                AlterAction::SetDefault {
                    column: column.clone(),
                    default: default.clone(),
                }
            }
            AlterStep::DropConstraint { if_exists, name } => {
                let known = schema.uniques.iter().any(|u| u.name == *name)
                    || schema
                        .columns
                        .iter()
                        .any(|c| c.references.as_ref().is_some_and(|k| k.name == *name));
                if !known && *if_exists {
                    notices.push(format!(
                        "constraint \"{name}\" of relation \"{table}\" does not exist, skipping"
                    ));
                    continue;
                }
                AlterAction::DropConstraint { name: name.clone() }
            }
            AlterStep::DropColumn { if_exists, name } => {
                if *if_exists && !exists(name) {
                    notices.push(format!(
                        "column \"{name}\" of relation \"{table}\" does not exist, skipping"
                    ));
                    continue;
                }
                AlterAction::DropColumn { name: name.clone() }
            }
            AlterStep::RenameColumn { from, to } => {
                if exists(to) {
                    return Err(schema_error(table, SchemaError::Duplicate(to.clone())));
                }
                AlterAction::RenameColumn {
                    from: from.clone(),
                    to: to.clone(),
                }
            }
            AlterStep::RenameTable { to } => {
                let name = CollectionName::new(to)
                    .map_err(|e| WriteError::InvalidValue(format!("table {to:?}: {e}")))?;
                if state.collection(&name).is_some() {
                    return Err(WriteError::TableExists(to.clone()));
                }
                AlterAction::RenameTable { to: name }
            }
        };
        schema
            .alter(&action, rows)
            .map_err(|e| schema_error(table, e))?;
        actions.push(action);
    }
    // An added vector column gives the table its dimension (checked
    // where the column type was read).
    let dim = schema
        .vector_column()
        .map_or(c.config().dim, |_| schema.dim());
    schema.check(dim).map_err(|e| schema_error(table, e))?;
    if actions.is_empty() {
        return Ok(None);
    }
    Ok(Some(Event::AlterTable {
        collection: c.name().clone(),
        actions,
    }))
}

/// Runs an `ALTER TABLE`: one event built from the state it is applied
/// to, all or none.
pub(crate) fn execute(
    engine: &Engine,
    table: &str,
    if_exists: bool,
    steps: &[AlterStep],
) -> Result<WriteOutcome, WriteError> {
    let mut notices = Vec::new();
    let mut outcome = Ok(());
    let submitted =
        engine.submit_built(
            |state| match build(state, table, if_exists, steps, &mut notices) {
                Ok(event) => event,
                Err(e) => {
                    outcome = Err(e);
                    None
                }
            },
        );
    outcome?;
    match submitted {
        Err(EngineError::Rejected(valori_core::state::ApplyError::Schema { source, .. })) => {
            Err(schema_error(table, source))
        }
        Err(e) => Err(e.into()),
        Ok(_) => Ok(WriteOutcome {
            rows: 0,
            notices,
            written: None,
        }),
    }
}
