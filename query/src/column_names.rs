//! The names Postgres gives a query's result columns, which clients show
//! and key rows by (`SELECT count(*)` is `count`, `SELECT 1` is
//! `?column?`, `SELECT '[1,2]'::vector` is `vector`); DataFusion names an
//! unnamed expression by its text (`count(*)`, `Int64(1)`).
//!
//! The names follow Postgres's `FigureColname`, read from the statement as
//! written (before pgvector's operators become function calls): a column
//! is its name; a function call its function's name; a cast the name of
//! what it casts when that is a column or a call, else the type's name
//! (`int4`, `float8`, `vector`, …); `CASE` is `case`, `ARRAY[…]` and
//! `ARRAY(…)` `array`, `EXISTS` `exists`, `COALESCE` `coalesce`,
//! `GREATEST`/`LEAST` theirs, a scalar subquery its column's name;
//! anything else (literals, operators) `?column?`. An alias is itself.
//! A select list with `*` is left as DataFusion names it.
//!
//! Postgres allows a query's result columns to share a name (`SELECT n,
//! n FROM t`, `SELECT 1 AS a, 2 AS a`); DataFusion does not. So before a
//! query is planned, [`distinct_result_names`] gives each result column
//! whose name repeats an earlier one's an alias of its own; the statement
//! layer then reports the names as Postgres gives them (from the text as
//! written) in the statement's description and in every batch of rows.

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, ObjectNamePart, Query, SelectItem, SetExpr, Statement,
};

/// `t.*` where the `FROM` names `t` with its schema (`SELECT columns.*
/// FROM information_schema.columns`, TypeORM's column query): Postgres
/// lets the table's own name qualify it; the table gets that name as its
/// alias, which DataFusion's wildcard expansion then matches.
pub fn alias_wildcard_tables(statement: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{
        SelectItemQualifiedWildcardKind, TableAlias, TableFactor, VisitMut, VisitorMut,
    };
    use std::ops::ControlFlow;

    struct Aliaser;

    impl VisitorMut for Aliaser {
        type Break = ();

        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            let SetExpr::Select(select) = query.body.as_mut() else {
                return ControlFlow::Continue(());
            };
            let wanted: Vec<String> = select
                .projection
                .iter()
                .filter_map(|item| match item {
                    SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(name),
                        _,
                    ) => match name.0.as_slice() {
                        [ObjectNamePart::Identifier(ident)] => Some(ident.value.clone()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            if wanted.is_empty() {
                return ControlFlow::Continue(());
            }
            for table in &mut select.from {
                let factors = std::iter::once(&mut table.relation)
                    .chain(table.joins.iter_mut().map(|j| &mut j.relation));
                for factor in factors {
                    if let TableFactor::Table { name, alias, .. } = factor
                        && alias.is_none()
                        && name.0.len() >= 2
                        && let Some(ObjectNamePart::Identifier(last)) = name.0.last()
                        && wanted.contains(&last.value)
                    {
                        *alias = Some(TableAlias {
                            explicit: true,
                            name: last.clone(),
                            columns: Vec::new(),
                            at: None,
                        });
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }

    let _ = statement.visit(&mut Aliaser);
}

/// How sure a name is, as Postgres ranks them: a cast keeps its operand's
/// name only when it is at least [`Strength::Strong`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    None,
    Weak,
    Strong,
}

/// The Postgres name of each result column of `statement`, when it is a
/// query whose select list has no `*`.
pub fn postgres_names(statement: &Statement) -> Option<Vec<String>> {
    match statement {
        Statement::Query(query) => query_names(query),
        _ => None,
    }
}

/// The prefix of the aliases [`distinct_result_names`] gives; the
/// column's position follows.
pub const DISTINCT_ALIAS_PREFIX: &str = "?valori_column?";

/// In the select lists of a query's result (each branch of a set
/// operation; not in subqueries), every item whose Postgres name repeats
/// an earlier item's is aliased `?valori_column?N` (N its position from
/// 1), so that DataFusion, which requires distinct names, plans it. The
/// first item of a name keeps it, so `ORDER BY` still finds it. Select
/// lists with `*` are left alone.
pub fn distinct_result_names(statement: &mut Statement) {
    if let Statement::Query(query) = statement {
        distinct_body(&mut query.body);
    }
}

fn distinct_body(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            let Some(names) = projection_names(&select.projection) else {
                return;
            };
            let mut seen = std::collections::HashSet::new();
            for (i, (item, name)) in select.projection.iter_mut().zip(names).enumerate() {
                if seen.insert(name) {
                    continue;
                }
                let alias = datafusion::sql::sqlparser::ast::Ident::with_quote(
                    '"',
                    format!("{DISTINCT_ALIAS_PREFIX}{}", i + 1),
                );
                match item {
                    SelectItem::UnnamedExpr(expr) => {
                        *item = SelectItem::ExprWithAlias {
                            expr: expr.clone(),
                            alias,
                        };
                    }
                    SelectItem::ExprWithAlias { alias: old, .. } => *old = alias,
                    _ => {}
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            distinct_body(left);
            distinct_body(right);
        }
        SetExpr::Query(query) => distinct_body(&mut query.body),
        _ => {}
    }
}

/// Whether a select list of the query's result has two items or more,
/// whose names DataFusion may find repeated where Postgres's are not: a
/// `*` beside other items may repeat a column it stands for (`SELECT *,
/// id FROM t`), and DataFusion names a cast by what it casts
/// (`2.5::float8::int` and `2.5::real::smallint` are both `Float64(2.5)`).
pub fn may_repeat_names(statement: &Statement) -> bool {
    fn body(b: &SetExpr) -> bool {
        match b {
            SetExpr::Select(select) => select.projection.len() > 1,
            SetExpr::SetOperation { left, right, .. } => body(left) || body(right),
            SetExpr::Query(query) => body(&query.body),
            _ => false,
        }
    }
    matches!(statement, Statement::Query(query) if body(&query.body))
}

/// Items of the select lists of the query's result aliased
/// `?valori_column?N` (see [`distinct_result_names`]) where DataFusion
/// found a name repeated that Postgres's names do not repeat: beside a
/// `*`, every other item; otherwise every item that is not a column (a
/// column keeps its name, which `ORDER BY` may use). Done when planning
/// failed so: what `*` stands for, and DataFusion's names, are known
/// only then.
pub fn alias_result_items(statement: &mut Statement) {
    fn body(b: &mut SetExpr) {
        match b {
            SetExpr::Select(select) => {
                let wildcard = select.projection.iter().any(|i| {
                    matches!(
                        i,
                        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                    )
                });
                for (i, item) in select.projection.iter_mut().enumerate() {
                    let alias = datafusion::sql::sqlparser::ast::Ident::with_quote(
                        '"',
                        format!("{DISTINCT_ALIAS_PREFIX}{}", i + 1),
                    );
                    match item {
                        SelectItem::UnnamedExpr(
                            Expr::Identifier(_) | Expr::CompoundIdentifier(_),
                        ) if !wildcard => {}
                        SelectItem::UnnamedExpr(expr) => {
                            *item = SelectItem::ExprWithAlias {
                                expr: expr.clone(),
                                alias,
                            };
                        }
                        SelectItem::ExprWithAlias { alias: old, .. } if wildcard => *old = alias,
                        _ => {}
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                body(left);
                body(right);
            }
            SetExpr::Query(query) => body(&mut query.body),
            _ => {}
        }
    }
    if let Statement::Query(query) = statement {
        body(&mut query.body);
    }
}

/// The Postgres name of each item of the first select list of a query's
/// result, `None` for `*`.
pub fn item_names(statement: &Statement) -> Option<Vec<Option<String>>> {
    fn body(b: &SetExpr) -> Option<Vec<Option<String>>> {
        match b {
            SetExpr::Select(select) => Some(
                select
                    .projection
                    .iter()
                    .map(|item| match item {
                        SelectItem::UnnamedExpr(e) => Some(name_of(e)),
                        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            SetExpr::SetOperation { left, .. } => body(left),
            SetExpr::Query(query) => body(&query.body),
            _ => None,
        }
    }
    match statement {
        Statement::Query(query) => body(&query.body),
        _ => None,
    }
}

/// Postgres's refusal of an `ORDER BY` name that names several result
/// columns computed differently (`SELECT a AS x, b AS x … ORDER BY x`:
/// `ORDER BY "x" is ambiguous`); the same column twice (`SELECT n, n …
/// ORDER BY n`) is not ambiguous. The message, when refused.
pub fn ambiguous_order_by(statement: &Statement) -> Option<String> {
    let Statement::Query(query) = statement else {
        return None;
    };
    let order_by = query.order_by.as_ref()?;
    let datafusion::sql::sqlparser::ast::OrderByKind::Expressions(exprs) = &order_by.kind else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    for order in exprs {
        let Expr::Identifier(ident) = &order.expr else {
            continue;
        };
        let same_name = |name: &str| match ident.quote_style {
            Some(_) => name == ident.value,
            None => name.eq_ignore_ascii_case(&ident.value),
        };
        let computed: std::collections::BTreeSet<String> = select
            .projection
            .iter()
            .filter_map(|item| match item {
                SelectItem::UnnamedExpr(e) if same_name(&name_of(e)) => Some(e.to_string()),
                SelectItem::ExprWithAlias { expr, alias } if same_name(&alias.value) => {
                    Some(expr.to_string())
                }
                _ => None,
            })
            .collect();
        if computed.len() > 1 {
            return Some(format!("ORDER BY \"{}\" is ambiguous", ident.value));
        }
    }
    None
}

fn query_names(query: &Query) -> Option<Vec<String>> {
    body_names(&query.body)
}

fn body_names(body: &SetExpr) -> Option<Vec<String>> {
    match body {
        SetExpr::Select(select) => projection_names(&select.projection),
        // The first branch names the columns of a set operation.
        SetExpr::SetOperation { left, .. } => body_names(left),
        SetExpr::Query(query) => query_names(query),
        _ => None,
    }
}

fn projection_names(projection: &[SelectItem]) -> Option<Vec<String>> {
    projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(name_of(e)),
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        })
        .collect()
}

fn name_of(e: &Expr) -> String {
    match figure(e) {
        (Strength::None, _) => "?column?".to_owned(),
        (_, name) => name,
    }
}

fn figure(e: &Expr) -> (Strength, String) {
    match e {
        Expr::Identifier(ident) => (Strength::Strong, ident.value.clone()),
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(last) => (Strength::Strong, last.value.clone()),
            None => (Strength::None, String::new()),
        },
        Expr::Function(f) => match f.name.0.last() {
            Some(ObjectNamePart::Identifier(ident)) => {
                (Strength::Strong, ident.value.to_ascii_lowercase())
            }
            _ => (Strength::None, String::new()),
        },
        Expr::Cast {
            expr, data_type, ..
        } => {
            let inner = figure(expr);
            if inner.0 == Strength::Strong {
                inner
            } else {
                (Strength::Weak, type_name(data_type))
            }
        }
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => figure(inner),
        Expr::Case { .. } => (Strength::Weak, "case".to_owned()),
        Expr::Array(_) => (Strength::Weak, "array".to_owned()),
        Expr::Exists { .. } => (Strength::Strong, "exists".to_owned()),
        Expr::Subquery(query) => match query_names(query).as_deref() {
            Some([only]) if only != "?column?" => (Strength::Strong, only.clone()),
            _ => (Strength::None, String::new()),
        },
        Expr::CompoundFieldAccess { root, .. } => figure(root),
        _ => (Strength::None, String::new()),
    }
}

/// A type's name as Postgres names a cast to it.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4".to_owned(),
        DataType::BigInt(_) | DataType::Int8(_) => "int8".to_owned(),
        DataType::SmallInt(_) | DataType::Int2(_) => "int2".to_owned(),
        DataType::Real | DataType::Float4 => "float4".to_owned(),
        DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 | DataType::Float(_) => {
            "float8".to_owned()
        }
        DataType::Boolean | DataType::Bool => "bool".to_owned(),
        DataType::Text => "text".to_owned(),
        DataType::Varchar(_) | DataType::CharacterVarying(_) => "varchar".to_owned(),
        DataType::Char(_) | DataType::Character(_) => "bpchar".to_owned(),
        DataType::Numeric(_) | DataType::Decimal(_) => "numeric".to_owned(),
        DataType::Timestamp(_, tz) => match tz {
            datafusion::sql::sqlparser::ast::TimezoneInfo::WithTimeZone
            | datafusion::sql::sqlparser::ast::TimezoneInfo::Tz => "timestamptz".to_owned(),
            _ => "timestamp".to_owned(),
        },
        DataType::Date => "date".to_owned(),
        DataType::Uuid => "uuid".to_owned(),
        DataType::JSON => "json".to_owned(),
        DataType::JSONB => "jsonb".to_owned(),
        DataType::Bytea => "bytea".to_owned(),
        DataType::Array(element) => match element {
            datafusion::sql::sqlparser::ast::ArrayElemTypeDef::AngleBracket(t)
            | datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(t, _)
            | datafusion::sql::sqlparser::ast::ArrayElemTypeDef::Parenthesis(t) => type_name(t),
            datafusion::sql::sqlparser::ast::ArrayElemTypeDef::None => "?column?".to_owned(),
        },
        DataType::Custom(name, _) => match name.0.last() {
            Some(ObjectNamePart::Identifier(ident)) => ident.value.to_ascii_lowercase(),
            _ => "?column?".to_owned(),
        },
        other => {
            let text = other.to_string().to_ascii_lowercase();
            text.split('(').next().unwrap_or(&text).trim().to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn names(sql: &str) -> Option<Vec<String>> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        postgres_names(&statement)
    }

    /// Proves the names against what PostgreSQL 16 answers for the same
    /// select lists (from its documentation of output column names and
    /// psql sessions): functions, casts, literals, operators, CASE,
    /// arrays, subqueries and aliases.
    #[test]
    fn names_as_postgres_gives_them() {
        assert_eq!(
            names(
                "SELECT count(*), 1, a, t.b, '[1,2]'::vector, '1'::int, x::text, \
                 CASE WHEN a THEN 1 END, ARRAY[1], (SELECT max(c) FROM t), a + 1, \
                 avg(v)::real, pg_catalog.lower(n) AS l, EXISTS (SELECT 1)"
            )
            .unwrap(),
            [
                "count", "?column?", "a", "b", "vector", "int4", "x", "case", "array", "max",
                "?column?", "avg", "l", "exists"
            ]
        );
        assert_eq!(names("SELECT * FROM t"), None);
        assert_eq!(names("INSERT INTO t VALUES (1)"), None);
        assert_eq!(names("SELECT 1 AS one UNION SELECT 2").unwrap(), ["one"]);
    }
}
