//! Foreign keys: the checks a write on either end of a key must pass,
//! and what deleting a referenced row does to the rows that reference it
//! (`ON DELETE`).
//!
//! A key ties a scalar column of one table (the referencing column) to a
//! unique column of another table, or of the same one. Values are
//! compared by their order keys ([`ScalarType::order_key`]), so an
//! integer matches across widths; text, uuid and bytea match by their
//! bytes. Everything here is computed from the state alone, so replaying
//! a delete deletes the same cascaded rows on every node.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

use super::{ApplyError, Collection, State};
use crate::event::{CollectionName, Event, RecordId};
use crate::table::{
    AlterAction, ColumnDef, ColumnValues, ForeignKey, OnDelete, RowError, ScalarType, Table,
    TableSchema, integer_value,
};

/// Why a foreign key refuses a write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    #[error(
        "insert or update on table {table} violates foreign key constraint {constraint:?}: key ({column})=({key}) is not present in table {referenced}"
    )]
    Missing {
        table: CollectionName,
        constraint: String,
        column: String,
        key: String,
        referenced: CollectionName,
    },
    #[error(
        "update or delete on table {table} violates foreign key constraint {constraint:?} on table {referencing}: key ({column})=({key}) is still referenced from table {referencing}"
    )]
    StillReferenced {
        table: CollectionName,
        constraint: String,
        referencing: CollectionName,
        column: String,
        key: String,
    },
    #[error(
        "cannot drop {what} of table {table}: constraint {constraint:?} on table {referencing} depends on it"
    )]
    Dependent {
        table: CollectionName,
        what: String,
        constraint: String,
        referencing: CollectionName,
    },
    #[error(
        "renaming {what} of table {table}, which constraint {constraint:?} on table {referencing} references, is not supported"
    )]
    RenameReferenced {
        table: CollectionName,
        what: String,
        constraint: String,
        referencing: CollectionName,
    },
    #[error("foreign key {constraint:?}: referenced table {referenced} does not exist")]
    UnknownTable {
        constraint: String,
        referenced: CollectionName,
    },
    #[error(
        "foreign key {constraint:?}: column {column:?} referenced in foreign key constraint does not exist in table {referenced}"
    )]
    UnknownColumn {
        constraint: String,
        referenced: CollectionName,
        column: String,
    },
    #[error(
        "foreign key {constraint:?}: there is no unique constraint matching given keys for referenced table {referenced} (column {column:?})"
    )]
    NotUnique {
        constraint: String,
        referenced: CollectionName,
        column: String,
    },
    #[error(
        "foreign key constraint {constraint:?} cannot be implemented: key columns {column:?} and {referenced_column:?} are of incompatible types: {ty} and {referenced_ty}"
    )]
    Types {
        constraint: String,
        column: String,
        referenced_column: String,
        ty: &'static str,
        referenced_ty: &'static str,
    },
}

fn refused(error: ReferenceError) -> ApplyError {
    ApplyError::Reference(alloc::boxed::Box::new(error))
}

/// A value as Postgres shows it in a key's error detail.
fn show(ty: ScalarType, value: &[u8]) -> String {
    use core::fmt::Write as _;
    let mut out = String::new();
    match ty {
        ScalarType::Text | ScalarType::Char => out.push_str(&String::from_utf8_lossy(value)),
        ScalarType::Uuid => {
            for (i, b) in value.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push('-');
                }
                let _ = write!(out, "{b:02x}");
            }
        }
        t if t.is_integer() => {
            let _ = write!(out, "{}", integer_value(value).unwrap_or_default());
        }
        _ => {
            out.push_str("\\x");
            for b in value {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
    out
}

/// `value` of type `from` in the form a column of type `to` holds it:
/// the same bytes for the same type, an integer re-encoded at `to`'s
/// width (`None` when it does not fit, so no row holds it).
fn as_type(from: ScalarType, to: ScalarType, value: &[u8]) -> Option<Vec<u8>> {
    if from == to {
        return Some(value.to_vec());
    }
    let n = integer_value(value)?;
    Some(match to {
        ScalarType::Int16 => i16::try_from(n).ok()?.to_le_bytes().to_vec(),
        ScalarType::Int32 => i32::try_from(n).ok()?.to_le_bytes().to_vec(),
        ScalarType::Int64 => n.to_le_bytes().to_vec(),
        _ => return None,
    })
}

/// Order keys of the non-NULL values of `values`.
fn keys_of(ty: ScalarType, values: impl Iterator<Item = Option<Vec<u8>>>) -> BTreeSet<Vec<u8>> {
    values.flatten().filter_map(|v| ty.order_key(&v)).collect()
}

/// Rows a delete takes with it and columns it sets to NULL, in every
/// table (`ON DELETE CASCADE` and `SET NULL`), the deleted rows
/// included.
#[derive(Debug, Default)]
pub(super) struct Cascade {
    pub deletes: BTreeMap<CollectionName, BTreeSet<u32>>,
    /// (table, scalar column) → rows set to NULL.
    pub nulls: BTreeMap<(CollectionName, usize), BTreeSet<u32>>,
}

/// How values leave a referenced column: a row deleted (the keys'
/// `ON DELETE` applies) or a value changed (refused while referenced).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaving {
    Delete,
    Update,
}

/// Values that leave unique column `column` of `table`.
struct Vanished {
    table: CollectionName,
    column: usize,
    keys: BTreeSet<Vec<u8>>,
    how: Leaving,
}

impl State {
    fn schema_of(&self, name: &CollectionName) -> Option<&TableSchema> {
        self.collections.get(name)?.table().map(Table::schema)
    }

    /// Whether some table has a foreign key to `name`.
    fn is_referenced(&self, name: &CollectionName) -> bool {
        self.collections.values().any(|c| {
            c.table()
                .is_some_and(|t| t.schema().foreign_keys().any(|(_, _, k)| k.table == *name))
        })
    }

    /// Checks the definition of foreign key `key` on column `column` of
    /// table `table`, whose schema (after the event) is `schema`: the
    /// referenced table and column exist, the column is unique, the types
    /// match (integers of any width match each other).
    pub(super) fn check_key_definition(
        &self,
        table: &CollectionName,
        schema: &TableSchema,
        column: &ColumnDef,
        key: &ForeignKey,
    ) -> Result<(), ApplyError> {
        let referenced = if key.table == *table {
            Some(schema)
        } else {
            self.schema_of(&key.table)
        }
        .ok_or_else(|| {
            refused(ReferenceError::UnknownTable {
                constraint: key.name.clone(),
                referenced: key.table.clone(),
            })
        })?;
        let target = referenced
            .columns
            .iter()
            .find(|c| c.name == key.column)
            .ok_or_else(|| {
                refused(ReferenceError::UnknownColumn {
                    constraint: key.name.clone(),
                    referenced: key.table.clone(),
                    column: key.column.clone(),
                })
            })?;
        if !target.is_unique() {
            return Err(refused(ReferenceError::NotUnique {
                constraint: key.name.clone(),
                referenced: key.table.clone(),
                column: key.column.clone(),
            }));
        }
        let types = |ty: Option<ScalarType>| ty.map_or("vector", ScalarType::name);
        match (column.scalar(), target.scalar()) {
            (Some(a), Some(b)) if a == b || (a.is_integer() && b.is_integer()) => Ok(()),
            (a, b) => Err(refused(ReferenceError::Types {
                constraint: key.name.clone(),
                column: column.name.clone(),
                referenced_column: key.column.clone(),
                ty: types(a),
                referenced_ty: types(b),
            })),
        }
    }

    /// Checks that each non-NULL value an event writes into a foreign
    /// key column of `c`'s table is held by a live row of the referenced
    /// column. `written` gives the written values per scalar column;
    /// `leaving` the rows of `c` whose written values change (a
    /// replacement's or an update's rows): in a key on the table itself,
    /// their old values no longer count, and the values written count.
    pub(super) fn check_present(
        &self,
        c: &Collection,
        written: &[(usize, &ColumnValues)],
        leaving: &[u32],
    ) -> Result<(), ApplyError> {
        let Some(table) = c.table() else {
            return Ok(());
        };
        for (s, def, key) in table.schema().foreign_keys() {
            if let Some((_, values)) = written.iter().find(|(w, _)| *w == s) {
                self.check_key(c, def, key, values, written, leaving)?;
            }
        }
        Ok(())
    }

    /// [`State::check_present`] for the values `values` of column `def`
    /// under key `key`.
    fn check_key(
        &self,
        c: &Collection,
        def: &ColumnDef,
        key: &ForeignKey,
        values: &ColumnValues,
        written: &[(usize, &ColumnValues)],
        leaving: &[u32],
    ) -> Result<(), ApplyError> {
        let ty = def.scalar().unwrap_or(ScalarType::Int64);
        let same = key.table == c.name;
        let referenced = if same {
            Some(c)
        } else {
            self.collections.get(&key.table)
        };
        let rt = referenced.and_then(Collection::table).ok_or_else(|| {
            refused(ReferenceError::UnknownTable {
                constraint: key.name.clone(),
                referenced: key.table.clone(),
            })
        })?;
        let k = rt.schema().scalar_position(&key.column).ok_or_else(|| {
            refused(ReferenceError::UnknownColumn {
                constraint: key.name.clone(),
                referenced: key.table.clone(),
                column: key.column.clone(),
            })
        })?;
        let kty = rt.columns()[k].ty();
        // A key on the table itself: the values this event writes into
        // the referenced column count as present.
        let own = written.iter().find(|(w, _)| same && *w == k);
        let own_keys = own.map_or_else(BTreeSet::new, |(_, v)| {
            keys_of(kty, (0..v.len()).map(|r| v.get(r).map(<[u8]>::to_vec)))
        });
        for r in 0..values.len() {
            let Some(v) = values.get(r) else { continue };
            let held = as_type(ty, kty, v).and_then(|b| rt.unique_row(k, &b));
            let counts = held.is_some_and(|row| own.is_none() || !leaving.contains(&row));
            let pending = ty.order_key(v).is_some_and(|key| own_keys.contains(&key));
            if !counts && !pending {
                return Err(refused(ReferenceError::Missing {
                    table: c.name.clone(),
                    constraint: key.name.clone(),
                    column: def.name.clone(),
                    key: show(ty, v),
                    referenced: key.table.clone(),
                }));
            }
        }
        Ok(())
    }

    /// What deleting `rows` of table `name` does to the rows that
    /// reference them: refused under `NO ACTION`/`RESTRICT`, cascaded
    /// deletes and NULLs otherwise, followed through every table.
    pub(super) fn plan_delete(
        &self,
        name: &CollectionName,
        rows: &[u32],
    ) -> Result<Cascade, ApplyError> {
        let mut plan = Cascade::default();
        if !self.is_referenced(name) {
            return Ok(plan);
        }
        plan.deletes
            .insert(name.clone(), rows.iter().copied().collect());
        let c = &self.collections[name];
        let work = self.unique_keys(c, rows, Leaving::Delete);
        self.follow(&mut plan, work)?;
        Ok(plan)
    }

    /// Refuses an update of `c`'s rows `rows` that takes away a unique
    /// value some row still references (`ON UPDATE NO ACTION`).
    /// `written` gives the new values per scalar column.
    pub(super) fn check_update_keys(
        &self,
        c: &Collection,
        rows: &[u32],
        written: &[(usize, &ColumnValues)],
    ) -> Result<(), ApplyError> {
        let Some(table) = c.table() else {
            return Ok(());
        };
        if !self.is_referenced(&c.name) {
            return Ok(());
        }
        let mut work = Vec::new();
        for &(s, values) in written {
            let column = &table.columns()[s];
            let ty = column.ty();
            let new = keys_of(
                ty,
                (0..values.len()).map(|r| values.get(r).map(<[u8]>::to_vec)),
            );
            let old = keys_of(
                ty,
                rows.iter()
                    .map(|&row| column.get(row as usize).map(<[u8]>::to_vec)),
            );
            let keys: BTreeSet<Vec<u8>> = old.difference(&new).cloned().collect();
            if !keys.is_empty() {
                work.push(Vanished {
                    table: c.name.clone(),
                    column: s,
                    keys,
                    how: Leaving::Update,
                });
            }
        }
        self.follow(&mut Cascade::default(), work)
    }

    /// The values of `c`'s unique columns held by `rows`, as leaving.
    fn unique_keys(&self, c: &Collection, rows: &[u32], how: Leaving) -> Vec<Vanished> {
        let Some(table) = c.table() else {
            return Vec::new();
        };
        table
            .schema()
            .scalar_columns()
            .enumerate()
            .filter(|(_, (_, def, _))| def.is_unique())
            .map(|(s, (_, _, ty))| Vanished {
                table: c.name.clone(),
                column: s,
                keys: keys_of(
                    ty,
                    rows.iter()
                        .map(|&row| table.columns()[s].get(row as usize).map(<[u8]>::to_vec)),
                ),
                how,
            })
            .filter(|v| !v.keys.is_empty())
            .collect()
    }

    /// Follows vanished values to the rows that reference them, table
    /// by table, until no new row is deleted or set to NULL. Each round
    /// adds rows to `plan` or stops, so it ends. Refusals are decided
    /// once every cascade is known, as Postgres checks `NO ACTION` at the
    /// end of the statement: a row that references a vanished value
    /// refuses the change unless the cascade deletes it (or sets its
    /// column to NULL).
    fn follow(&self, plan: &mut Cascade, mut work: Vec<Vanished>) -> Result<(), ApplyError> {
        // (referencing table, scalar column, rows, the error if they stay).
        let mut pending: Vec<(CollectionName, usize, Vec<u32>, ApplyError)> = Vec::new();
        while let Some(gone) = work.pop() {
            let Some(column) = self
                .schema_of(&gone.table)
                .and_then(|s| s.scalar_columns().nth(gone.column))
                .map(|(_, def, _)| def.name.clone())
            else {
                continue;
            };
            for r in self.collections.values() {
                let Some(rt) = r.table() else { continue };
                for (s, def, key) in rt.schema().foreign_keys() {
                    if key.table != gone.table || key.column != column {
                        continue;
                    }
                    let skip = plan.deletes.get(&r.name);
                    let rows: Vec<u32> = referencing_rows(r, rt, s, &gone.keys)
                        .into_iter()
                        .filter(|row| !skip.is_some_and(|d| d.contains(row)))
                        .collect();
                    let Some(&first) = rows.first() else {
                        continue;
                    };
                    match (gone.how, key.on_delete) {
                        (Leaving::Update, _) | (_, OnDelete::NoAction | OnDelete::Restrict) => {
                            let ty = rt.columns()[s].ty();
                            let value = rt.columns()[s].get(first as usize).unwrap_or_default();
                            let error = refused(ReferenceError::StillReferenced {
                                table: gone.table.clone(),
                                constraint: key.name.clone(),
                                referencing: r.name.clone(),
                                column: column.clone(),
                                key: show(ty, value),
                            });
                            pending.push((r.name.clone(), s, rows, error));
                        }
                        (Leaving::Delete, OnDelete::Cascade) => {
                            let deleted = plan.deletes.entry(r.name.clone()).or_default();
                            let new: Vec<u32> = rows
                                .into_iter()
                                .filter(|row| deleted.insert(*row))
                                .collect();
                            work.extend(self.unique_keys(r, &new, Leaving::Delete));
                        }
                        (Leaving::Delete, OnDelete::SetNull) => {
                            if def.not_null() {
                                let error = r.row_error(RowError::Null {
                                    column: def.name.clone(),
                                });
                                // Refused unless the rows are deleted.
                                pending.push((r.name.clone(), usize::MAX, rows, error));
                                continue;
                            }
                            let nulled = plan.nulls.entry((r.name.clone(), s)).or_default();
                            let new: Vec<u32> =
                                rows.into_iter().filter(|row| nulled.insert(*row)).collect();
                            // Setting a value to NULL updates it: a key
                            // on it refuses while it is referenced.
                            if def.is_unique() {
                                let ty = rt.columns()[s].ty();
                                work.push(Vanished {
                                    table: r.name.clone(),
                                    column: s,
                                    keys: keys_of(
                                        ty,
                                        new.iter().map(|&row| {
                                            rt.columns()[s].get(row as usize).map(<[u8]>::to_vec)
                                        }),
                                    ),
                                    how: Leaving::Update,
                                });
                            }
                        }
                    }
                }
            }
        }
        for (table, s, rows, error) in pending {
            let deleted = plan.deletes.get(&table);
            let nulled = plan.nulls.get(&(table.clone(), s));
            let stays = rows.iter().any(|row| {
                !deleted.is_some_and(|d| d.contains(row))
                    && !nulled.is_some_and(|n| n.contains(row))
            });
            if stays {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Applies a checked plan after the event's own deletes: the other
    /// rows it deletes, then the NULLs it sets on rows still live.
    pub(super) fn apply_cascade(&mut self, plan: Cascade) -> Result<(), ApplyError> {
        for (name, rows) in plan.deletes {
            let c = self.collection_mut(&name)?;
            for row in rows {
                if !c.deleted[row as usize] {
                    let id: RecordId = c.ids[row as usize];
                    c.delete_record(id)?;
                }
            }
        }
        for ((name, s), rows) in plan.nulls {
            let c = self.collection_mut(&name)?;
            let rows: Vec<u32> = rows
                .into_iter()
                .filter(|&row| !c.deleted[row as usize])
                .collect();
            if rows.is_empty() {
                continue;
            }
            let mut nulls = ColumnValues::default();
            for _ in &rows {
                nulls.push(None);
            }
            for &row in &rows {
                c.dirty(row);
            }
            if let Some(table) = c.table.as_mut() {
                table.update(&rows, &[(s as u16, nulls)]);
            }
        }
        Ok(())
    }

    /// Refuses dropping the tables `names` while a table that stays has
    /// a foreign key to one of them.
    pub(super) fn check_drop(&self, names: &[&CollectionName]) -> Result<(), ApplyError> {
        for c in self.collections.values() {
            if names.contains(&&c.name) {
                continue;
            }
            let Some(t) = c.table() else { continue };
            if let Some((_, _, key)) = t
                .schema()
                .foreign_keys()
                .find(|(_, _, k)| names.contains(&&k.table))
            {
                return Err(refused(ReferenceError::Dependent {
                    table: key.table.clone(),
                    what: String::from("the table"),
                    constraint: key.name.clone(),
                    referencing: c.name.clone(),
                }));
            }
        }
        Ok(())
    }

    /// The foreign key constraints of `alter`'s actions on table `name`
    /// (whose schema after them is `schema`): a referenced column is
    /// neither dropped nor renamed, a referenced table not renamed, and a
    /// new key is well defined and holds for the rows there are.
    pub(super) fn check_alter_keys(
        &self,
        c: &Collection,
        actions: &[AlterAction],
        schema: &TableSchema,
    ) -> Result<(), ApplyError> {
        let name = &c.name;
        // (referencing table, key) of every key on this table.
        let mut keys: Vec<(&CollectionName, &ForeignKey)> = Vec::new();
        for r in self.collections.values() {
            if let Some(t) = r.table() {
                keys.extend(
                    t.schema()
                        .foreign_keys()
                        .filter(|(_, _, k)| k.table == *name)
                        .map(|(_, _, k)| (&r.name, k)),
                );
            }
        }
        for action in actions {
            let on = |column: &str| keys.iter().find(|(_, k)| k.column == column);
            match action {
                AlterAction::DropColumn { name: column } => {
                    if let Some((r, k)) = on(column) {
                        return Err(refused(ReferenceError::Dependent {
                            table: name.clone(),
                            what: alloc::format!("column {column:?}"),
                            constraint: k.name.clone(),
                            referencing: (*r).clone(),
                        }));
                    }
                }
                AlterAction::RenameColumn { from, .. } => {
                    if let Some((r, k)) = on(from) {
                        return Err(refused(ReferenceError::RenameReferenced {
                            table: name.clone(),
                            what: alloc::format!("column {from:?}"),
                            constraint: k.name.clone(),
                            referencing: (*r).clone(),
                        }));
                    }
                }
                AlterAction::RenameTable { .. } => {
                    if let Some((r, k)) = keys.first() {
                        return Err(refused(ReferenceError::RenameReferenced {
                            table: name.clone(),
                            what: String::from("the name"),
                            constraint: k.name.clone(),
                            referencing: (*r).clone(),
                        }));
                    }
                }
                AlterAction::AddColumn { column, value } => {
                    if let Some(key) = &column.references {
                        self.check_key_definition(name, schema, column, key)?;
                        if let (Some(v), true) = (value, c.live() > 0) {
                            let mut values = ColumnValues::default();
                            values.push(Some(v));
                            self.check_key(c, column, key, &values, &[], &[])?;
                        }
                    }
                }
                AlterAction::AddForeignKey { column, key } => {
                    let def = schema
                        .columns
                        .iter()
                        .find(|d| d.name == *column)
                        .ok_or_else(|| ApplyError::Schema {
                            collection: name.clone(),
                            source: crate::table::SchemaError::UnknownColumn(column.clone()),
                        })?;
                    self.check_key_definition(name, schema, def, key)?;
                    // The column's position before the actions: it may
                    // have been added by this same event, without rows.
                    let at = c.table().and_then(|t| t.schema().scalar_position(column));
                    if let (Some(table), Some(s)) = (c.table(), at) {
                        let mut values = ColumnValues::default();
                        for row in 0..c.rows() {
                            if !c.deleted[row] {
                                values.push(table.columns()[s].get(row));
                            }
                        }
                        self.check_key(c, def, key, &values, &[], &[])?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The collections a transaction's scratch copy needs beside the
    /// ones `event` names: the tables their foreign keys reference (for
    /// the values written) and, followed through every level, the tables
    /// that reference them (for deletes, updates, drops and renames).
    pub(super) fn key_neighbours(
        &self,
        event: &Event,
        names: &[&CollectionName],
    ) -> Vec<CollectionName> {
        let mut out: BTreeSet<CollectionName> = BTreeSet::new();
        let mut keys_of_event: Vec<&ForeignKey> = Vec::new();
        match event {
            Event::CreateTable { schema, .. } => {
                keys_of_event.extend(schema.foreign_keys().map(|(_, _, k)| k));
            }
            Event::AlterTable { actions, .. } => {
                for a in actions {
                    match a {
                        AlterAction::AddColumn { column, .. } => {
                            keys_of_event.extend(column.references.as_ref());
                        }
                        AlterAction::AddForeignKey { key, .. } => keys_of_event.push(key),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        out.extend(keys_of_event.iter().map(|k| k.table.clone()));
        for name in names {
            if let Some(schema) = self.schema_of(name) {
                out.extend(schema.foreign_keys().map(|(_, _, k)| k.table.clone()));
            }
        }
        if !matches!(event, Event::InsertRows { .. } | Event::CreateTable { .. }) {
            let mut todo: Vec<CollectionName> = names.iter().map(|n| (*n).clone()).collect();
            let mut seen: BTreeSet<CollectionName> = todo.iter().cloned().collect();
            while let Some(n) = todo.pop() {
                for r in self.collections.values() {
                    let refers = r
                        .table()
                        .is_some_and(|t| t.schema().foreign_keys().any(|(_, _, k)| k.table == n));
                    if refers && seen.insert(r.name.clone()) {
                        out.insert(r.name.clone());
                        todo.push(r.name.clone());
                    }
                }
            }
        }
        out.into_iter()
            .filter(|n| self.collections.contains_key(n))
            .collect()
    }
}

/// The live rows of `r` whose scalar column `s` holds one of `keys`:
/// through the column's btree index when it has one, else by a scan.
fn referencing_rows(r: &Collection, table: &Table, s: usize, keys: &BTreeSet<Vec<u8>>) -> Vec<u32> {
    use core::ops::Bound::Included;
    if table.index_len(s).is_some() {
        let mut rows: Vec<u32> = keys
            .iter()
            .flat_map(|k| {
                table
                    .index_range(s, Included(k.as_slice()), Included(k.as_slice()))
                    .into_iter()
                    .flatten()
            })
            .collect();
        rows.sort_unstable();
        return rows;
    }
    let column = &table.columns()[s];
    (0..r.rows())
        .filter(|&row| !r.deleted[row])
        .filter(|&row| {
            column
                .get(row)
                .and_then(|v| column.ty().order_key(v))
                .is_some_and(|k| keys.contains(&k))
        })
        .map(|row| row as u32)
        .collect()
}
