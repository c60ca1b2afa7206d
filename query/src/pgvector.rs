//! pgvector's SQL surface on top of DataFusion's dialect.
//!
//! [`rewrite`] takes one statement as a Postgres client writes it and
//! returns SQL that DataFusion plans:
//!
//! - `a <-> b`, `a <#> b`, `a <=> b` become `l2(a, b)`,
//!   `negative_inner_product(a, b)`, `cosine_distance(a, b)` (the operators
//!   are first spelled `OPERATOR(valori.…)` by
//!   [`crate::sql_text::rewrite_vector_operators`], which sqlparser parses
//!   with Postgres's precedence for custom operators);
//! - casts to `vector` / `vector(n)` are dropped: a vector literal is the
//!   text `'[1,2,3]'`, which the distance functions take as it is.
//!
//! - the Postgres catalog syntax DataFusion lacks (casts to `regclass`,
//!   `OPERATOR(pg_catalog.~)`, …) is rewritten by
//!   [`crate::catalog::rewrite_catalog_syntax`].
//!
//! Statements needing none of these are returned unchanged, byte for byte.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{BinaryOperator, DataType, Expr, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

use crate::sql_text::{OPERATOR_SCHEMA, VECTOR_OPERATORS, rewrite_vector_operators};

/// Whether `data_type` is pgvector's `vector` or `vector(n)`.
pub fn is_vector_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Custom(name, _) => name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .is_some_and(|ident| ident.value.eq_ignore_ascii_case("vector")),
        _ => false,
    }
}

/// The distance function an `OPERATOR(valori.f)` stands for.
fn operator_function(op: &BinaryOperator) -> Option<&'static str> {
    let BinaryOperator::PGCustomBinaryOperator(parts) = op else {
        return None;
    };
    let [schema, name] = parts.as_slice() else {
        return None;
    };
    if !schema.eq_ignore_ascii_case(OPERATOR_SCHEMA) {
        return None;
    }
    VECTOR_OPERATORS
        .iter()
        .map(|(_, function)| *function)
        .find(|function| name.eq_ignore_ascii_case(function))
}

/// One statement with pgvector's operators and casts rewritten (see the
/// module documentation).
pub fn rewrite(sql: &str) -> Result<String, ParserError> {
    let spelled = rewrite_vector_operators(sql);
    let has_operator = matches!(spelled, std::borrow::Cow::Owned(_));
    let catalog = crate::catalog::rewrite::may_need_rewrite(sql);
    if !has_operator && !catalog && !sql.to_ascii_lowercase().contains("vector") {
        return Ok(sql.to_owned());
    }
    let dialect = PostgreSqlDialect {};
    let mut statements = Parser::parse_sql(&dialect, &spelled)?;
    let mut changed = has_operator;
    if catalog {
        let before = statements.clone();
        for statement in &mut statements {
            crate::catalog::rewrite_catalog_syntax(statement)?;
        }
        changed |= statements != before;
    }
    let flow = visit_expressions_mut(&mut statements, |expr| {
        let replacement = match expr {
            Expr::BinaryOp { left, op, right } => match operator_function(op) {
                Some(function) => {
                    let text = format!("{function}({left}, {right})");
                    match Parser::new(&dialect)
                        .try_with_sql(&text)
                        .and_then(|mut p| p.parse_expr())
                    {
                        Ok(call) => Some(call),
                        Err(e) => return ControlFlow::Break(e),
                    }
                }
                None => None,
            },
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } if is_vector_type(data_type) => Some((**inner).clone()),
            _ => None,
        };
        if let Some(replacement) = replacement {
            *expr = replacement;
            changed = true;
        }
        ControlFlow::Continue(())
    });
    if let ControlFlow::Break(e) = flow {
        return Err(e);
    }
    if !changed {
        return Ok(sql.to_owned());
    }
    Ok(statements
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves each operator becomes its function, nested and with
    /// Postgres's precedence (tighter than comparison, looser than `+`),
    /// and that vector casts are dropped.
    #[test]
    fn operators_become_functions() {
        assert_eq!(
            rewrite("SELECT id FROM docs ORDER BY vec <-> '[1,2,3]' LIMIT 5").unwrap(),
            "SELECT id FROM docs ORDER BY l2(vec, '[1,2,3]') LIMIT 5"
        );
        assert_eq!(
            rewrite("SELECT vec <#> '[1]'::vector AS a, vec <=> '[2]'::vector(1) FROM t").unwrap(),
            "SELECT negative_inner_product(vec, '[1]') AS a, cosine_distance(vec, '[2]') FROM t"
        );
        assert_eq!(
            rewrite("SELECT id FROM t WHERE vec <-> '[1]' < 0.5").unwrap(),
            "SELECT id FROM t WHERE l2(vec, '[1]') < 0.5"
        );
        // Untouched statements come back byte for byte.
        let plain = "select  id from t where tag = 7";
        assert_eq!(rewrite(plain).unwrap(), plain);
    }
}
