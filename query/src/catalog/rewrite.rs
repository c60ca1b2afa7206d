//! Postgres catalog syntax DataFusion does not plan, rewritten on the
//! syntax tree into what it does.
//!
//! | written | planned as |
//! |---|---|
//! | `x::regclass`, `x::regtype`, `x::regnamespace` | `regclass_oid(x)`, … (a name is looked up, a number kept; an unknown name is an error) |
//! | `x::regclass::text` (also `::name`, `::varchar`) | `regclass_name(x)`, … (the name, as Postgres prints a `regclass`) |
//! | `x::regclass` as a whole select item | `regclass_name(x)`, named as Postgres names it |
//! | `x::oid`, `x::pg_catalog.int2[]`, `x::name`, `x::"char"`, `x::int2vector` | casts to `INT UNSIGNED`, `SMALLINT[]`, `TEXT`, `TEXT`, `SMALLINT[]` |
//! | `a OPERATOR(pg_catalog.~) b` (and `=`, `<>`, `!~`, `~*`, `\|\|` …) | `a ~ b` |
//! | `x COLLATE pg_catalog.default` (also `"C"`, `"POSIX"`) | `x` (strings compare byte by byte) |
//! | `pg_catalog.f(…)`, `FROM pg_catalog.generate_series(…)` | `f(…)`, `FROM generate_series(…)` |
//! | `FROM generate_series(…) [AS] s`, `FROM [pg_catalog.]unnest(a) [AS] s` | `… AS s(s)`: the column named after the alias (or the function), as Postgres names it |
//! | `ARRAY(SELECT e FROM … ORDER BY o)` | `coalesce((SELECT array_agg(e ORDER BY o) FROM …), make_array())` (`{}` when there are no rows) |
//! | `(SELECT e FROM … WHERE …)` used as a value, `e` not an aggregate | `(SELECT single_value(array_agg(e)) FROM … WHERE …)`: DataFusion plans only aggregated correlated subqueries; the value is the same (NULL for no row, an error for two) |
//! | `SELECT NULL, NULL` (two unnamed items alike) | the second named `?column?2` (DataFusion wants distinct names) |
//! | `FROM pg_class` (an unqualified catalog table, not a CTE) | `FROM pg_catalog.pg_class`: Postgres searches `pg_catalog` before `public` |
//!
//! Casts to other catalog types (`regproc`, `regoper`, …) are left alone, so
//! DataFusion refuses them naming the type.
//!
//! The visitor recurses as deep as the statement's expressions, which
//! [`crate::sql_text::check_expression_bounds`] has bounded before the
//! statement was parsed.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, OrderByKind, Query, Select, SelectItem,
    SetExpr, Statement, TableAlias, TableAliasColumnDef, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

use super::tables::{PG_CATALOG, spec};

/// Rewrites the catalog syntax of `statement` in place (see the module
/// documentation).
pub fn rewrite_catalog_syntax(statement: &mut Statement) -> Result<(), ParserError> {
    let mut ctes = CteNames::default();
    let _ = datafusion::sql::sqlparser::ast::Visit::visit(&*statement, &mut ctes);
    let mut rewriter = Rewriter { ctes: ctes.0 };
    match statement.visit(&mut rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Whether `sql` may use syntax [`rewrite_catalog_syntax`] rewrites; when
/// not, the statement need not be parsed for it.
pub fn may_need_rewrite(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    [
        "pg_",
        "::",
        "reg",
        "oid",
        "operator",
        "collate",
        "array",
        "cast",
        "generate_series",
        "unnest",
        "generate_subscripts",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// The names of every common table expression in a statement.
#[derive(Default)]
struct CteNames(HashSet<String>);

impl datafusion::sql::sqlparser::ast::Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(cte.alias.name.value.to_ascii_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

struct Rewriter {
    ctes: HashSet<String>,
}

/// The catalog types casts name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RegType {
    Class,
    Type,
    Namespace,
}

impl RegType {
    fn oid_function(self) -> &'static str {
        match self {
            RegType::Class => "regclass_oid",
            RegType::Type => "regtype_oid",
            RegType::Namespace => "regnamespace_oid",
        }
    }

    fn name_function(self) -> &'static str {
        match self {
            RegType::Class => "regclass_name",
            RegType::Type => "regtype_name",
            RegType::Namespace => "regnamespace_name",
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            RegType::Class => "regclass",
            RegType::Type => "regtype",
            RegType::Namespace => "regnamespace",
        }
    }
}

/// The last part of a (possibly `pg_catalog.`-qualified) type name, lower
/// case; `None` when qualified by another schema.
fn catalog_type_name(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
        .collect();
    match parts.as_slice() {
        [one] => Some(one.clone()),
        [schema, one] if schema == PG_CATALOG => Some(one.clone()),
        _ => None,
    }
}

fn reg_type(data_type: &DataType) -> Option<RegType> {
    if *data_type == DataType::Regclass {
        return Some(RegType::Class);
    }
    let DataType::Custom(name, modifiers) = data_type else {
        return None;
    };
    if !modifiers.is_empty() {
        return None;
    }
    match catalog_type_name(name)?.as_str() {
        "regclass" => Some(RegType::Class),
        "regtype" => Some(RegType::Type),
        "regnamespace" => Some(RegType::Namespace),
        _ => None,
    }
}

/// Whether a cast to `data_type` yields text.
fn is_text_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Text
        | DataType::Varchar(_)
        | DataType::CharacterVarying(_)
        | DataType::String(_) => true,
        DataType::Custom(name, _) => {
            matches!(
                catalog_type_name(name).as_deref(),
                Some("text" | "name" | "varchar")
            )
        }
        _ => false,
    }
}

/// The DataFusion type for a Postgres catalog type DataFusion lacks.
fn plain_type(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            Some(match catalog_type_name(name)?.as_str() {
                "oid" => DataType::IntUnsigned(None),
                "text" | "name" | "char" | "bpchar" | "varchar" => DataType::Text,
                "int2" => DataType::SmallInt(None),
                "int4" => DataType::Int(None),
                "int8" => DataType::BigInt(None),
                "float4" => DataType::Real,
                "float8" => DataType::DoublePrecision,
                "bool" => DataType::Boolean,
                "int2vector" => DataType::Array(ArrayElemTypeDef::SquareBracket(
                    Box::new(DataType::SmallInt(None)),
                    None,
                )),
                "oidvector" => DataType::Array(ArrayElemTypeDef::SquareBracket(
                    Box::new(DataType::IntUnsigned(None)),
                    None,
                )),
                _ => return None,
            })
        }
        DataType::Array(ArrayElemTypeDef::SquareBracket(item, size)) => Some(DataType::Array(
            ArrayElemTypeDef::SquareBracket(Box::new(plain_type(item)?), *size),
        )),
        _ => None,
    }
}

fn unnest(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(inner) => unnest(inner),
        other => other,
    }
}

/// A string literal in Postgres's array text form (`'{0}'`, `'{a,b}'`)
/// compared with something: the array it stands for, `make_array(…)` of
/// its elements (numbers as numbers, the rest as strings).
fn array_literal(expr: &Expr) -> Result<Option<Expr>, ParserError> {
    let Expr::Value(v) = expr else {
        return Ok(None);
    };
    let Value::SingleQuotedString(text) = &v.value else {
        return Ok(None);
    };
    let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        return Ok(None);
    };
    if inner.contains(['{', '"', '\\']) {
        return Ok(None);
    }
    let items: Vec<Expr> = inner
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let literal = if item.parse::<f64>().is_ok() {
                item.to_owned()
            } else {
                format!("'{}'", item.replace('\'', "''"))
            };
            Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&literal)
                .and_then(|mut p| p.parse_expr())
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(call("make_array", items)?))
}

/// `generate_subscripts(a, dim)`, the set of `a`'s subscripts along
/// dimension `dim`, as `unnest(generate_series(1, array_length(a, dim)))`:
/// arrays here are one-dimensional with lower bound 1 (`int2vector`,
/// `oidvector` and `text[]` alike), so the subscripts are 1..length,
/// none for an empty or NULL array or another dimension, as in Postgres.
/// Next to `unnest(a)` in a select list both set-returning calls yield
/// one row per element, zipped, as Postgres evaluates them.
fn generate_subscripts(args: &[FunctionArg]) -> Result<Option<Expr>, ParserError> {
    let exprs: Vec<Expr> = args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let [array, dim] = exprs.as_slice() else {
        return Ok(None);
    };
    let one = || {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql("1")
            .and_then(|mut p| p.parse_expr())
    };
    let length = call("array_length", vec![array.clone(), dim.clone()])?;
    let series = call("generate_series", vec![one()?, length])?;
    Ok(Some(call("unnest", vec![series])?))
}

/// `name(args…)`.
fn call(name: &str, args: Vec<Expr>) -> Result<Expr, ParserError> {
    let placeholders = vec!["NULL"; args.len()].join(", ");
    let mut call = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("{name}({placeholders})"))?
        .parse_expr()?;
    if let Expr::Function(f) = &mut call
        && let FunctionArguments::List(list) = &mut f.args
    {
        for (slot, arg) in list.args.iter_mut().zip(args) {
            *slot = datafusion::sql::sqlparser::ast::FunctionArg::Unnamed(
                datafusion::sql::sqlparser::ast::FunctionArgExpr::Expr(arg),
            );
        }
    }
    Ok(call)
}

/// The Postgres operator an `OPERATOR(pg_catalog.op)` names.
fn catalog_operator(op: &BinaryOperator) -> Option<BinaryOperator> {
    let BinaryOperator::PGCustomBinaryOperator(parts) = op else {
        return None;
    };
    let [schema, name] = parts.as_slice() else {
        return None;
    };
    if !schema.eq_ignore_ascii_case(PG_CATALOG) {
        return None;
    }
    Some(match name.as_str() {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "||" => BinaryOperator::StringConcat,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        "*" => BinaryOperator::Multiply,
        "/" => BinaryOperator::Divide,
        _ => return None,
    })
}

/// `ARRAY(SELECT e FROM … ORDER BY o)` as `coalesce((SELECT array_agg(e
/// ORDER BY o) FROM …), make_array())`, when the subquery is a plain
/// one-column select: `{}` when it has no rows, as in Postgres.
fn array_subquery(query: &Query) -> Result<Option<Expr>, ParserError> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    let [item] = select.projection.as_slice() else {
        return Ok(None);
    };
    let item = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return Ok(None),
    };
    let has_group_by = !matches!(
        &select.group_by,
        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty()
    );
    if has_group_by || query.limit_clause.is_some() || select.distinct.is_some() {
        return Ok(None);
    }
    let order = match &query.order_by {
        None => String::new(),
        Some(order_by) => match &order_by.kind {
            OrderByKind::Expressions(exprs) => {
                let parts: Vec<String> = exprs
                    .iter()
                    .map(|o| {
                        let mut o = o.clone();
                        // `ORDER BY 1` is the (only) output column.
                        if matches!(&o.expr, Expr::Value(v) if matches!(v.value, Value::Number(..)))
                        {
                            o.expr = item.clone();
                        }
                        o.to_string()
                    })
                    .collect();
                format!(" ORDER BY {}", parts.join(", "))
            }
            OrderByKind::All(_) => return Ok(None),
        },
    };
    let aggregate = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("array_agg({item}{order})"))?
        .parse_expr()?;
    let mut select: Select = (**select).clone();
    select.projection = vec![SelectItem::UnnamedExpr(aggregate)];
    let mut query = query.clone();
    query.body = Box::new(SetExpr::Select(Box::new(select)));
    query.order_by = None;
    // No row is the empty array, not NULL.
    Ok(Some(call(
        "coalesce",
        vec![
            Expr::Subquery(Box::new(query)),
            call("make_array", Vec::new())?,
        ],
    )?))
}

/// Aggregate functions a scalar subquery's value may already be.
const AGGREGATES: [&str; 16] = [
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "first_value",
    "last_value",
    "median",
];

/// Whether `expr` calls an aggregate function.
fn has_aggregate(expr: &Expr) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
        if let Expr::Function(f) = e
            && let Some(name) = f.name.0.last().and_then(|p| p.as_ident())
            && AGGREGATES.contains(&name.value.to_ascii_lowercase().as_str())
        {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// The names a select's FROM clause gives its rows (aliases, else table
/// names), lower case.
fn from_names(select: &Select) -> HashSet<String> {
    use datafusion::sql::sqlparser::ast::TableFactor;
    let mut names = HashSet::new();
    let mut add = |factor: &TableFactor| match factor {
        TableFactor::Table { name, alias, .. } => {
            if let Some(alias) = alias {
                names.insert(alias.name.value.to_ascii_lowercase());
            } else if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                names.insert(last.value.to_ascii_lowercase());
            }
        }
        other => {
            if let Some(alias) = other_alias(other) {
                names.insert(alias);
            }
        }
    };
    for table in &select.from {
        add(&table.relation);
        for join in &table.joins {
            add(&join.relation);
        }
    }
    names
}

fn other_alias(factor: &datafusion::sql::sqlparser::ast::TableFactor) -> Option<String> {
    use datafusion::sql::sqlparser::ast::TableFactor;
    match factor {
        TableFactor::Derived { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. }
        | TableFactor::NestedJoin { alias, .. } => {
            alias.as_ref().map(|a| a.name.value.to_ascii_lowercase())
        }
        _ => None,
    }
}

/// Which rows an expression's column references belong to: (refers to
/// the subquery's own rows, refers to the enclosing query's). A column
/// without a qualifier counts as the subquery's own, as does anything
/// holding a subquery.
fn references(expr: &Expr, inner: &HashSet<String>) -> (bool, bool) {
    let (mut own, mut outer) = (false, false);
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
        match e {
            Expr::Identifier(_)
            | Expr::Subquery(_)
            | Expr::Exists { .. }
            | Expr::InSubquery { .. } => own = true,
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let qualifier = parts[parts.len() - 2].value.to_ascii_lowercase();
                if inner.contains(&qualifier) {
                    own = true;
                } else {
                    outer = true;
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    (own, outer)
}

fn conjuncts(expr: &Expr, out: &mut Vec<Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(inner, out)
        }
        other => out.push(other.clone()),
    }
}

fn and_all(mut exprs: Vec<Expr>) -> Option<Expr> {
    let first = exprs.first().cloned()?;
    Some(exprs.drain(1..).fold(first, |acc, e| Expr::BinaryOp {
        left: Box::new(acc),
        op: BinaryOperator::And,
        right: Box::new(e),
    }))
}

/// A scalar subquery `(SELECT e FROM … WHERE …)` in the shape DataFusion
/// decorrelates: `e` aggregated as `single_value(array_agg(e))` (same
/// value: NULL for no row, an error for two); where a conjunct equates a
/// column of its own with an enclosing column, that enclosing column is
/// replaced by its own in the other conjuncts (they are filtered together,
/// so only rows where both are equal count); and conjuncts about the
/// enclosing row only become `CASE WHEN those THEN (subquery) END` (a
/// false one leaves no rows, so NULL either way).
fn aggregated_subquery(query: &Query) -> Result<Option<Expr>, ParserError> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    let [item] = select.projection.as_slice() else {
        return Ok(None);
    };
    let (value, alias) = match item {
        SelectItem::UnnamedExpr(e) => (e, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
        _ => return Ok(None),
    };
    let has_group_by = !matches!(
        &select.group_by,
        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty()
    );
    if has_group_by
        || select.having.is_some()
        || select.distinct.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.with.is_some()
        || select.from.is_empty()
    {
        return Ok(None);
    }
    let inner = from_names(select);
    let mut parts = Vec::new();
    if let Some(selection) = &select.selection {
        conjuncts(selection, &mut parts);
    }
    // Enclosing columns that a conjunct equates with one of the subquery's.
    let mut same: Vec<(String, Expr)> = Vec::new();
    for part in &parts {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = part
        {
            for (own, theirs) in [(left, right), (right, left)] {
                let own_refs = references(own, &inner);
                let their_refs = references(theirs, &inner);
                if matches!(own.as_ref(), Expr::CompoundIdentifier(_))
                    && own_refs == (true, false)
                    && matches!(theirs.as_ref(), Expr::CompoundIdentifier(_))
                    && their_refs == (false, true)
                {
                    same.push((theirs.to_string(), (**own).clone()));
                }
            }
        }
    }
    let mut kept = Vec::new();
    let mut hoisted = Vec::new();
    for mut part in parts {
        let (own, outer) = references(&part, &inner);
        if outer && !own {
            hoisted.push(part);
            continue;
        }
        if own && outer {
            let is_equation = matches!(
                &part,
                Expr::BinaryOp {
                    op: BinaryOperator::Eq,
                    ..
                }
            );
            if !is_equation {
                let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(&mut part, |e| {
                    if matches!(e, Expr::CompoundIdentifier(_)) {
                        let text = e.to_string();
                        if let Some((_, own)) = same.iter().find(|(t, _)| *t == text) {
                            *e = own.clone();
                        }
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
        kept.push(part);
    }
    let aggregated = has_aggregate(value);
    if aggregated && hoisted.is_empty() && same.is_empty() {
        return Ok(None);
    }
    let value = if aggregated {
        value.clone()
    } else {
        call(
            "single_value",
            vec![call("array_agg", vec![value.clone()])?],
        )?
    };
    let mut select: Select = (**select).clone();
    select.projection = vec![match alias {
        Some(alias) => SelectItem::ExprWithAlias { expr: value, alias },
        None => SelectItem::UnnamedExpr(value),
    }];
    select.selection = and_all(kept);
    let mut query = query.clone();
    query.body = Box::new(SetExpr::Select(Box::new(select)));
    let subquery = Expr::Subquery(Box::new(query));
    Ok(Some(match and_all(hoisted) {
        None => subquery,
        Some(condition) => Expr::Case {
            case_token:
                datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            end_token:
                datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            operand: None,
            conditions: vec![datafusion::sql::sqlparser::ast::CaseWhen {
                condition,
                result: subquery,
            }],
            else_result: None,
        },
    }))
}

/// The name Postgres gives an unnamed select item `x::regclass`: the
/// column's name, else the type's.
fn cast_item_name(inner: &Expr, reg: RegType) -> Ident {
    match unnest(inner) {
        Expr::Identifier(ident) => ident.clone(),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .cloned()
            .unwrap_or_else(|| Ident::new(reg.type_name())),
        _ => Ident::new(reg.type_name()),
    }
}

impl VisitorMut for Rewriter {
    type Break = ParserError;

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<ParserError> {
        // Postgres allows two result columns of the same name (`SELECT
        // NULL, NULL`), DataFusion does not: a repeated unnamed item is
        // named `?column?N`.
        let mut seen = HashSet::new();
        for (i, item) in select.projection.iter_mut().enumerate() {
            if let SelectItem::UnnamedExpr(expr) = item
                && !matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                && !seen.insert(expr.to_string())
            {
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::with_quote('"', format!("?column?{}", i + 1)),
                };
            }
        }
        // A regclass shown as a result is shown as its name.
        for item in &mut select.projection {
            let (expr, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
                _ => continue,
            };
            let Expr::Cast {
                expr: inner,
                data_type,
                ..
            } = unnest(expr)
            else {
                continue;
            };
            let Some(reg) = reg_type(data_type) else {
                continue;
            };
            let alias = alias.unwrap_or_else(|| cast_item_name(inner, reg));
            let named = match call(reg.name_function(), vec![(**inner).clone()]) {
                Ok(named) => named,
                Err(e) => return ControlFlow::Break(e),
            };
            *item = SelectItem::ExprWithAlias { expr: named, alias };
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(
        &mut self,
        factor: &mut datafusion::sql::sqlparser::ast::TableFactor,
    ) -> ControlFlow<ParserError> {
        // A table function: `pg_catalog.generate_series(…)`.
        if let datafusion::sql::sqlparser::ast::TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = factor
            && name.0.len() == 2
            && name.0[0]
                .as_ident()
                .is_some_and(|s| s.value.eq_ignore_ascii_case(PG_CATALOG))
        {
            name.0.remove(0);
        }
        // Postgres names the one column of a function returning a scalar
        // after the function's alias (`FROM generate_series(1, n) s` has
        // column `s`), or after the function; DataFusion names it `value`.
        if let datafusion::sql::sqlparser::ast::TableFactor::Table {
            name,
            args: Some(_),
            alias,
            ..
        } = factor
            && let [ObjectNamePart::Identifier(function)] = name.0.as_slice()
            && (function.value.eq_ignore_ascii_case("generate_series")
                || function.value.eq_ignore_ascii_case("unnest"))
        {
            let function = function.value.to_ascii_lowercase();
            let alias = alias.get_or_insert_with(|| TableAlias {
                explicit: false,
                name: Ident::new(function),
                columns: Vec::new(),
                at: None,
            });
            if alias.columns.is_empty() {
                alias.columns = vec![TableAliasColumnDef::from_name(alias.name.value.clone())];
            }
        }
        // The same for `FROM unnest(array) [AS] v`: its column is `v`.
        if let datafusion::sql::sqlparser::ast::TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } = factor
            && array_exprs.len() == 1
            && alias.columns.is_empty()
        {
            alias.columns = vec![TableAliasColumnDef::from_name(alias.name.value.clone())];
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<ParserError> {
        if let [ObjectNamePart::Identifier(ident)] = relation.0.as_slice()
            && ident.quote_style.is_none()
        {
            let name = ident.value.to_ascii_lowercase();
            if spec(&name).is_some() && !self.ctes.contains(&name) {
                relation
                    .0
                    .insert(0, ObjectNamePart::Identifier(Ident::new(PG_CATALOG)));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        match self.replacement(expr) {
            Ok(Some(new)) => *expr = new,
            Ok(None) => {}
            Err(e) => return ControlFlow::Break(e),
        }
        ControlFlow::Continue(())
    }
}

/// The function a niladic keyword stands for.
fn niladic(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "current_catalog" => Some("current_database"),
        "current_schema" => Some("current_schema"),
        "current_user" | "session_user" | "user" => Some("current_user"),
        _ => None,
    }
}

impl Rewriter {
    fn replacement(&self, expr: &mut Expr) -> Result<Option<Expr>, ParserError> {
        Ok(match expr {
            Expr::Cast {
                expr: inner,
                data_type,
                kind,
                ..
            } => {
                if is_text_type(data_type)
                    && let Expr::Cast {
                        expr: x,
                        data_type: inner_type,
                        ..
                    } = unnest(inner)
                    && let Some(reg) = reg_type(inner_type)
                {
                    Some(call(reg.name_function(), vec![(**x).clone()])?)
                } else if let Some(reg) = reg_type(data_type) {
                    Some(call(reg.oid_function(), vec![(**inner).clone()])?)
                } else if let Some(plain) = plain_type(data_type) {
                    *data_type = plain;
                    if *kind == CastKind::DoubleColon {
                        // Printed as `x::INT UNSIGNED` it would not parse again.
                        *kind = CastKind::Cast;
                    }
                    None
                } else {
                    None
                }
            }
            Expr::BinaryOp { op, left, right } => {
                if let Some(plain) = catalog_operator(op) {
                    *op = plain;
                }
                if matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq) {
                    for side in [left, right] {
                        if let Some(array) = array_literal(side)? {
                            **side = array;
                        }
                    }
                }
                None
            }
            Expr::Collate {
                expr: inner,
                collation,
            } => {
                let default = catalog_type_name(collation)
                    .is_some_and(|c| matches!(c.as_str(), "default" | "c" | "posix"));
                default.then(|| (**inner).clone())
            }
            Expr::Subquery(query) => aggregated_subquery(query)?,
            // `current_catalog`, `current_schema`, `current_user`,
            // `session_user` and `user`, written without parentheses
            // (SQL's niladic forms; Postgres's keywords, so never a column
            // unless quoted): `current_database()`, `current_schema()`
            // and `current_user()`.
            Expr::Identifier(ident) if ident.quote_style.is_none() => niladic(&ident.value)
                .map(|f| call(f, Vec::new()))
                .transpose()?,
            Expr::Function(f)
                if matches!(f.args, FunctionArguments::None)
                    && let [ObjectNamePart::Identifier(ident)] = f.name.0.as_slice()
                    && ident.quote_style.is_none()
                    && niladic(&ident.value).is_some() =>
            {
                niladic(&ident.value)
                    .map(|f| call(f, Vec::new()))
                    .transpose()?
            }
            Expr::Function(f) => {
                if f.name.0.len() == 2
                    && f.name.0[0]
                        .as_ident()
                        .is_some_and(|s| s.value.eq_ignore_ascii_case(PG_CATALOG))
                {
                    f.name.0.remove(0);
                }
                let is_array = f.name.0.len() == 1
                    && f.name.0[0]
                        .as_ident()
                        .is_some_and(|s| s.value.eq_ignore_ascii_case("array"));
                let is_subscripts = f.name.0.len() == 1
                    && f.name.0[0]
                        .as_ident()
                        .is_some_and(|s| s.value.eq_ignore_ascii_case("generate_subscripts"));
                match &f.args {
                    FunctionArguments::Subquery(query) if is_array => array_subquery(query)?,
                    FunctionArguments::List(list) if is_subscripts => {
                        generate_subscripts(&list.args)?
                    }
                    _ => None,
                }
            }
            _ => None,
        })
    }
}
