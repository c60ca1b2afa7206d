//! Filters answered from a table's indexes: the rows a scan or a
//! nearest-neighbour search reads when a filter names an indexed column.
//!
//! A [`RowSource`] is what a filter says about one or more columns in a
//! form an index can answer: equality or `IN` with constants, ranges
//! (`<`, `<=`, `>`, `>=`, `BETWEEN`), and `AND` / `OR` of those. Three
//! structures answer it, all kept by the state on every write:
//!
//! - a btree index (`CREATE INDEX … (column)`): the live rows in value
//!   order ([`valori_core::table::Table::index_range`]), for equality and
//!   ranges;
//! - a unique column's value → row map, for equality;
//! - the record ids of an integer primary key, for equality.
//!
//! The rows a source gives are a superset of the rows the filter keeps
//! (a conjunct no index answers is left out of an `AND`; an `OR` is
//! answered only when every branch is), so the filter itself is still
//! evaluated on them: an index narrows what is read, it never decides.
//! A value is looked up only when the comparison the query layer makes
//! on the column's Arrow values orders it as the index does (integers
//! of any width with integers, floats with floats of the same width by
//! total order, text by bytes, `uuid` only in its canonical lowercase
//! text); any other comparison is not answered from an index.

use std::collections::BTreeSet;
use std::ops::Bound;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Cast, Expr, Operator, TryCast};
use valori_core::event::RecordId;
use valori_core::state::Collection;
use valori_core::table::{ColumnDef, ScalarType, Table};

/// At most this many values of an `IN` list, and this many leaves of a
/// source, are looked up; a larger filter is evaluated on every row.
const LOOKUPS_MAX: usize = 1024;

/// What a filter asks of one column.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// Equal to one of these values.
    In(Vec<ScalarValue>),
    /// Between the bounds.
    Range {
        lower: Bound<ScalarValue>,
        upper: Bound<ScalarValue>,
    },
}

/// A filter as index lookups.
#[derive(Clone, Debug, PartialEq)]
pub enum RowSource {
    Lookup {
        column: String,
        /// The integer type the filter casts the column to before
        /// comparing (`CAST(category AS Int64) = 5000000000`): answered
        /// only when it widens the column's integer type.
        cast: Option<DataType>,
        lookup: Lookup,
    },
    /// Rows every source gives.
    And(Vec<RowSource>),
    /// Rows any source gives.
    Or(Vec<RowSource>),
}

impl std::fmt::Display for RowSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut columns = BTreeSet::new();
        self.columns(&mut columns);
        let names: Vec<&str> = columns.into_iter().collect();
        write!(f, "{}", names.join(", "))
    }
}

impl RowSource {
    /// The source of a conjunction of filters; `None` when no conjunct
    /// is one an index could answer.
    pub fn of_filters<'a>(filters: impl IntoIterator<Item = &'a Expr>) -> Option<RowSource> {
        let mut parts: Vec<RowSource> = filters.into_iter().filter_map(source_of).collect();
        match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(RowSource::And(parts)),
        }
    }

    fn columns<'a>(&'a self, out: &mut BTreeSet<&'a str>) {
        match self {
            RowSource::Lookup { column, .. } => {
                out.insert(column);
            }
            RowSource::And(parts) | RowSource::Or(parts) => {
                parts.iter().for_each(|p| p.columns(out));
            }
        }
    }

    fn leaves(&self) -> usize {
        match self {
            RowSource::Lookup {
                lookup: Lookup::In(values),
                ..
            } => values.len(),
            RowSource::Lookup { .. } => 1,
            RowSource::And(parts) | RowSource::Or(parts) => parts.iter().map(Self::leaves).sum(),
        }
    }

    /// Whether every column the source names is one of `collection`'s
    /// that an index answers (a btree index, a unique column or the
    /// integer key).
    pub fn answerable(&self, collection: &Collection) -> bool {
        let Some(table) = collection.table() else {
            return false;
        };
        let mut columns = BTreeSet::new();
        self.columns(&mut columns);
        columns.iter().all(|name| {
            table.schema().columns.iter().any(|c| {
                c.name == *name && c.scalar().is_some() && (c.index.is_some() || c.is_unique())
            })
        })
    }

    /// The live rows of `collection` the source gives, sorted; `None`
    /// when no index answers it (then every row is a candidate).
    pub fn rows(&self, collection: &Collection) -> Option<Vec<u32>> {
        let table = collection.table()?;
        if self.leaves() > LOOKUPS_MAX {
            return None;
        }
        let mut rows = self.eval(collection, table)?;
        rows.sort_unstable();
        rows.dedup();
        Some(rows)
    }

    /// Rows, unsorted, possibly repeated; `None` when not answerable.
    fn eval(&self, collection: &Collection, table: &Table) -> Option<Vec<u32>> {
        match self {
            RowSource::Lookup {
                column,
                cast,
                lookup,
            } => lookup_rows(collection, table, column, cast.as_ref(), lookup),
            RowSource::And(parts) => {
                let mut answered: Vec<Vec<u32>> = parts
                    .iter()
                    .filter_map(|p| {
                        let mut rows = p.eval(collection, table)?;
                        rows.sort_unstable();
                        rows.dedup();
                        Some(rows)
                    })
                    .collect();
                answered.sort_by_key(Vec::len);
                let mut iter = answered.into_iter();
                let mut rows = iter.next()?;
                for other in iter {
                    rows.retain(|r| other.binary_search(r).is_ok());
                }
                Some(rows)
            }
            RowSource::Or(parts) => {
                let mut rows = Vec::new();
                for p in parts {
                    rows.extend(p.eval(collection, table)?);
                }
                Some(rows)
            }
        }
    }
}

/// The rows of one lookup, from the best structure the column has.
fn lookup_rows(
    collection: &Collection,
    table: &Table,
    column: &str,
    cast: Option<&DataType>,
    lookup: &Lookup,
) -> Option<Vec<u32>> {
    let (position, def, ty) = table
        .schema()
        .scalar_columns()
        .enumerate()
        .find(|(_, (_, c, _))| c.name == column)
        .map(|(p, (_, c, t))| (p, c, t))?;
    if let Some(cast) = cast {
        let width = |t: &DataType| match t {
            DataType::Int16 => Some(2),
            DataType::Int32 => Some(4),
            DataType::Int64 => Some(8),
            _ => None,
        };
        let widens = ty.is_integer() && width(cast)? >= ty.width()?;
        widens.then_some(())?;
    }
    match lookup {
        Lookup::In(values) => {
            let keys: Vec<Key> = values
                .iter()
                .map(|v| key(ty, v))
                .collect::<Option<Vec<Key>>>()?;
            let mut rows = Vec::new();
            for key in keys {
                rows.extend(equal_rows(collection, table, position, def, ty, &key)?);
            }
            Some(rows)
        }
        Lookup::Range { lower, upper } => {
            let bound = |b: &Bound<ScalarValue>| -> Option<Bound<Key>> {
                Some(match b {
                    Bound::Included(v) => Bound::Included(key(ty, v)?),
                    Bound::Excluded(v) => Bound::Excluded(key(ty, v)?),
                    Bound::Unbounded => Bound::Unbounded,
                })
            };
            let (lower, upper) = (bound(lower)?, bound(upper)?);
            let as_order = |b: &Bound<Key>| -> Option<Bound<Vec<u8>>> {
                Some(match b {
                    Bound::Included(k) => Bound::Included(k.order.clone()?),
                    Bound::Excluded(k) => Bound::Excluded(k.order.clone()?),
                    Bound::Unbounded => Bound::Unbounded,
                })
            };
            let (lower, upper) = (as_order(&lower)?, as_order(&upper)?);
            Some(
                table
                    .index_range(position, as_ref(&lower), as_ref(&upper))?
                    .collect(),
            )
        }
    }
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The rows whose value equals `key`.
fn equal_rows(
    collection: &Collection,
    table: &Table,
    position: usize,
    def: &ColumnDef,
    ty: ScalarType,
    key: &Key,
) -> Option<Vec<u32>> {
    // A value the column cannot hold equals no row.
    let Some(canonical) = &key.canonical else {
        return Some(Vec::new());
    };
    if def.is_primary_key() && ty.is_integer() {
        let id = valori_core::table::integer_value(canonical)?;
        return Some(
            collection
                .row_of(RecordId(id as u64))
                .filter(|&r| !collection.deleted()[r as usize])
                .into_iter()
                .collect(),
        );
    }
    if def.is_unique() {
        return Some(table.unique_row(position, canonical).into_iter().collect());
    }
    let order = key.order.as_ref()?;
    let exact = Bound::Included(order.as_slice());
    Some(table.index_range(position, exact, exact)?.collect())
}

/// A value as the column stores it (`None` when the column cannot hold
/// it) and as its order key (`None` when it lies outside every value
/// the column can hold: then only for equality, where it matches no
/// row).
struct Key {
    canonical: Option<Vec<u8>>,
    order: Option<Vec<u8>>,
}

/// The key of `value` for a column of type `ty`, when comparing the
/// column with `value` orders as the index does; `None` otherwise.
fn key(ty: ScalarType, value: &ScalarValue) -> Option<Key> {
    let of = |canonical: Vec<u8>| {
        let order = ty.order_key(&canonical);
        Some(Key {
            canonical: Some(canonical),
            order,
        })
    };
    match ty {
        ScalarType::Int16 | ScalarType::Int32 | ScalarType::Int64 => {
            let v = integer(value)?;
            // Every integer has an order key in the one domain of all
            // widths; one the column's width cannot hold is stored by no
            // row.
            let order = ScalarType::Int64.order_key(&v.to_le_bytes());
            let canonical = match ty {
                ScalarType::Int16 => i16::try_from(v).ok().map(|v| v.to_le_bytes().to_vec()),
                ScalarType::Int32 => i32::try_from(v).ok().map(|v| v.to_le_bytes().to_vec()),
                _ => Some(v.to_le_bytes().to_vec()),
            };
            Some(Key { canonical, order })
        }
        ScalarType::Date => match value {
            ScalarValue::Date32(Some(d)) => of(d.to_le_bytes().to_vec()),
            _ => None,
        },
        ScalarType::Timestamp | ScalarType::TimestampTz => match value {
            ScalarValue::TimestampMicrosecond(Some(t), zone)
                if zone.is_some() == (ty == ScalarType::TimestampTz) =>
            {
                of(t.to_le_bytes().to_vec())
            }
            _ => None,
        },
        ScalarType::Float32 => match value {
            ScalarValue::Float32(Some(f)) => of(f.to_le_bytes().to_vec()),
            _ => None,
        },
        ScalarType::Float64 => match value {
            ScalarValue::Float64(Some(f)) => of(f.to_le_bytes().to_vec()),
            _ => None,
        },
        ScalarType::Bool => match value {
            ScalarValue::Boolean(Some(b)) => of(vec![u8::from(*b)]),
            _ => None,
        },
        ScalarType::Text => of(text(value)?.as_bytes().to_vec()),
        // Filters on `character(n)` compare without trailing blanks
        // ([`crate::bpchar`]), so they never reach here as comparisons
        // of the column; a constant's key would need the column's width.
        ScalarType::Char => None,
        ScalarType::Bytea => match value {
            ScalarValue::Binary(Some(b))
            | ScalarValue::LargeBinary(Some(b))
            | ScalarValue::BinaryView(Some(b)) => of(b.clone()),
            _ => None,
        },
        ScalarType::Uuid => {
            // Compared as text: only the canonical form orders as the
            // bytes do.
            let t = text(value)?;
            let bytes = crate::declared::uuid_from_text(t)?;
            (crate::declared::uuid_text(&bytes) == t).then_some(())?;
            of(bytes.to_vec())
        }
        _ => None,
    }
}

fn integer(value: &ScalarValue) -> Option<i64> {
    Some(match value {
        ScalarValue::Int8(Some(v)) => i64::from(*v),
        ScalarValue::Int16(Some(v)) => i64::from(*v),
        ScalarValue::Int32(Some(v)) => i64::from(*v),
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::UInt8(Some(v)) => i64::from(*v),
        ScalarValue::UInt16(Some(v)) => i64::from(*v),
        ScalarValue::UInt32(Some(v)) => i64::from(*v),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok()?,
        _ => return None,
    })
}

fn text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(t))
        | ScalarValue::LargeUtf8(Some(t))
        | ScalarValue::Utf8View(Some(t)) => Some(t),
        _ => None,
    }
}

/// A column named by the filter, bare or under a cast to an integer
/// type (which [`lookup_rows`] checks widens it), with the cast.
fn column(expr: &Expr) -> Option<(&str, Option<DataType>)> {
    match expr {
        Expr::Column(c) => Some((&c.name, None)),
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
            if matches!(
                field.data_type(),
                DataType::Int16 | DataType::Int32 | DataType::Int64
            ) =>
        {
            match expr.as_ref() {
                Expr::Column(c) => Some((&c.name, Some(field.data_type().clone()))),
                _ => None,
            }
        }
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) if !v.is_null() => Some(v),
        _ => None,
    }
}

/// The source of one filter expression.
fn source_of(expr: &Expr) -> Option<RowSource> {
    let lookup = |(column, cast): (&str, Option<DataType>), lookup| {
        Some(RowSource::Lookup {
            column: column.to_owned(),
            cast,
            lookup,
        })
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => {
                let parts: Vec<RowSource> = [left, right]
                    .into_iter()
                    .filter_map(|e| source_of(e))
                    .collect();
                match parts.len() {
                    0 => None,
                    1 => parts.into_iter().next(),
                    _ => Some(RowSource::And(parts)),
                }
            }
            Operator::Or => Some(RowSource::Or(vec![source_of(left)?, source_of(right)?])),
            Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                // `column op value`, or `value op column` read the other
                // way round.
                let (name, value, op) = match (column(left), literal(right)) {
                    (Some(c), Some(v)) => (c, v, *op),
                    _ => (column(right)?, literal(left)?, op.swap()?),
                };
                let v = value.clone();
                match op {
                    Operator::Eq => lookup(name, Lookup::In(vec![v])),
                    Operator::Lt => range(name, Bound::Unbounded, Bound::Excluded(v)),
                    Operator::LtEq => range(name, Bound::Unbounded, Bound::Included(v)),
                    Operator::Gt => range(name, Bound::Excluded(v), Bound::Unbounded),
                    Operator::GtEq => range(name, Bound::Included(v), Bound::Unbounded),
                    _ => None,
                }
            }
            _ => None,
        },
        Expr::InList(list) if !list.negated => {
            let name = column(&list.expr)?;
            let values = list
                .list
                .iter()
                .map(|e| literal(e).cloned())
                .collect::<Option<Vec<_>>>()?;
            (values.len() <= LOOKUPS_MAX).then_some(())?;
            lookup(name, Lookup::In(values))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => range(
            column(expr)?,
            Bound::Included(literal(low)?.clone()),
            Bound::Included(literal(high)?.clone()),
        ),
        _ => None,
    }
}

fn range(
    (column, cast): (&str, Option<DataType>),
    lower: Bound<ScalarValue>,
    upper: Bound<ScalarValue>,
) -> Option<RowSource> {
    Some(RowSource::Lookup {
        column: column.to_owned(),
        cast,
        lookup: Lookup::Range { lower, upper },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    /// Proves which filters become lookups: comparisons of a bare
    /// column with a constant either way round, `IN`, `BETWEEN`, `AND`
    /// keeping the answerable conjuncts and `OR` only of answerable
    /// branches, casts of the column to integer types; not negations,
    /// other casts, NULLs or column-to-column comparisons.
    #[test]
    fn filters_as_lookups() {
        let eq = |c: &str, v: i64| RowSource::Lookup {
            column: c.into(),
            cast: None,
            lookup: Lookup::In(vec![ScalarValue::Int64(Some(v))]),
        };
        assert_eq!(source_of(&col("a").eq(lit(3i64))), Some(eq("a", 3)));
        assert_eq!(source_of(&lit(3i64).eq(col("a"))), Some(eq("a", 3)));
        assert_eq!(
            source_of(&lit(3i64).lt(col("a"))),
            range(
                ("a", None),
                Bound::Excluded(ScalarValue::Int64(Some(3))),
                Bound::Unbounded
            )
        );
        assert_eq!(
            source_of(&col("a").between(lit(1i64), lit(4i64))),
            range(
                ("a", None),
                Bound::Included(ScalarValue::Int64(Some(1))),
                Bound::Included(ScalarValue::Int64(Some(4)))
            )
        );
        assert_eq!(
            source_of(&col("a").eq(lit(3i64)).and(col("b").like(lit("x%")))),
            Some(eq("a", 3))
        );
        assert_eq!(
            source_of(&col("a").eq(lit(3i64)).or(col("b").eq(lit(4i64)))),
            Some(RowSource::Or(vec![eq("a", 3), eq("b", 4)]))
        );
        assert_eq!(
            source_of(&col("a").eq(lit(3i64)).or(col("b").like(lit("x%")))),
            None
        );
        assert_eq!(source_of(&col("a").not_eq(lit(3i64))), None);
        assert_eq!(source_of(&col("a").in_list(vec![lit(1i64)], true)), None);
        assert_eq!(source_of(&col("a").eq(col("b"))), None);
        assert_eq!(source_of(&col("a").eq(lit(ScalarValue::Int64(None)))), None);
        assert_eq!(
            source_of(&datafusion::prelude::cast(col("a"), DataType::Float64).eq(lit(3.0))),
            None
        );
        assert_eq!(
            source_of(&datafusion::prelude::cast(col("a"), DataType::Int64).eq(lit(3i64))),
            Some(RowSource::Lookup {
                column: "a".into(),
                cast: Some(DataType::Int64),
                lookup: Lookup::In(vec![ScalarValue::Int64(Some(3))]),
            })
        );
    }

    /// Proves the keys of values: integers of any type for integer
    /// columns, a value out of the column's range equal to no row but
    /// still ordered, uuid only in canonical text, and no key across
    /// types.
    #[test]
    fn keys_by_column_type() {
        let k = key(ScalarType::Int16, &ScalarValue::Int64(Some(70_000))).unwrap();
        assert_eq!(k.canonical, None);
        assert!(k.order.is_some());
        let k = key(ScalarType::Int32, &ScalarValue::UInt8(Some(7))).unwrap();
        assert_eq!(k.canonical, Some(7i32.to_le_bytes().to_vec()));
        assert!(key(ScalarType::Int32, &ScalarValue::Float64(Some(7.0))).is_none());
        assert!(key(ScalarType::Float64, &ScalarValue::Float32(Some(7.0))).is_none());
        assert!(key(ScalarType::Text, &ScalarValue::Int32(Some(7))).is_none());
        let id = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        assert!(key(ScalarType::Uuid, &ScalarValue::Utf8(Some(id.into()))).is_some());
        assert!(
            key(
                ScalarType::Uuid,
                &ScalarValue::Utf8(Some(id.to_uppercase()))
            )
            .is_none()
        );
        assert!(
            key(
                ScalarType::TimestampTz,
                &ScalarValue::TimestampMicrosecond(Some(1), None)
            )
            .is_none()
        );
    }
}
