//! pgvector's SQL surface on top of DataFusion's dialect.
//!
//! The statement layer ([`crate::statement`]) tokenizes a statement,
//! spells the operators as tokens ([`spell_vector_operators`]), parses the
//! tokens and rewrites the tree ([`rewrite_tree`]):
//!
//! - `a <-> b`, `a <#> b`, `a <=> b`, `a <+> b` become `l2(a, b)`,
//!   `negative_inner_product(a, b)`, `cosine_distance(a, b)`,
//!   `l1_distance(a, b)` (the operators
//!   are first spelled `OPERATOR(valori.…)`, which sqlparser parses with
//!   Postgres's precedence for custom operators);
//! - casts to `vector` / `vector(n)` are dropped: a vector literal is the
//!   text `'[1,2,3]'`, which the distance functions take as it is.
//!
//! Statements needing neither are returned unchanged, byte for byte.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Array, ArrayElemTypeDef, BinaryOperator, DataType, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident, ObjectName, SelectItem,
    SetExpr, Statement, Value, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::sql_text::{OPERATOR_SCHEMA, VECTOR_OPERATORS};

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

/// Whether an array's element type is `real` / `float4`.
fn is_real_array(element: &ArrayElemTypeDef) -> bool {
    match element {
        ArrayElemTypeDef::AngleBracket(t)
        | ArrayElemTypeDef::SquareBracket(t, _)
        | ArrayElemTypeDef::Parenthesis(t) => {
            matches!(t.as_ref(), DataType::Real | DataType::Float4)
        }
        ArrayElemTypeDef::None => false,
    }
}

/// `'{3,1,2}'::integer[]` (Postgres's text form of an array, as a
/// client that binds values on its side sends a list) becomes
/// `CAST(ARRAY['3','1','2'] AS integer[])`, which the query engine casts
/// element by element (it would read the whole text as one element).
/// In queries (also the query of an `INSERT … SELECT`); the values of an
/// `INSERT … VALUES` are converted by the column they go to. Text that
/// is not an array literal is left for the cast to refuse.
fn expand_array_literals(statement: &mut Statement) {
    if !matches!(statement, Statement::Query(_)) {
        return;
    }
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Cast {
            expr: inner,
            data_type: DataType::Array(_),
            ..
        } = expr
        {
            let mut text_of = inner.as_ref();
            while let Expr::Nested(e) = text_of {
                text_of = e;
            }
            if let Expr::Value(v) = text_of
                && let Value::SingleQuotedString(text) = &v.value
                && let Some(items) = crate::declared::array_text_elements(text)
            {
                let elem = items
                    .into_iter()
                    .map(|item| match item {
                        Some(s) => Expr::value(Value::SingleQuotedString(s)),
                        None => Expr::value(Value::Null),
                    })
                    .collect();
                **inner = Expr::Array(Array { elem, named: true });
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Whether `expr` is a cast to `vector` (possibly in parentheses).
fn is_vector_cast(expr: &Expr) -> bool {
    match expr {
        Expr::Cast { data_type, .. } => is_vector_cast_type(data_type),
        Expr::Nested(inner) => is_vector_cast(inner),
        _ => false,
    }
}

/// Whether a cast to `data_type` is dropped: `vector`, `vector(n)`,
/// `halfvec` or `halfvec(n)` (a `halfvec` is stored as Q16.16 like a
/// `vector`, so its values are the same).
fn is_vector_cast_type(data_type: &DataType) -> bool {
    is_vector_type(data_type)
        || matches!(data_type, DataType::Custom(name, _) if name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .is_some_and(|ident| ident.value.eq_ignore_ascii_case("halfvec")))
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

/// pgvector's operators spelled as `OPERATOR(valori.<function>)` in a
/// statement's tokens, which sqlparser then parses with Postgres's
/// precedence for operators (tighter than comparison, looser than `+`).
/// The Postgres dialect reads `<->` as one token, `<=>` as another and
/// `<#>` as a custom operator, and `<+>` as the three tokens `<`, `+`,
/// `>` (which, side by side, are no other SQL); each becomes the six
/// tokens of `OPERATOR(valori.f)`.
pub fn spell_vector_operators(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        i += 1;
        let function = match &token.token {
            Token::TwoWayArrow => Some("l2"),
            Token::Spaceship => Some("cosine_distance"),
            Token::CustomBinaryOperator(op) if op == "<#>" => Some("negative_inner_product"),
            Token::CustomBinaryOperator(op) if op == "<+>" => Some("l1_distance"),
            // `<+` is read as `<` then `+`: `<+>` is the two followed by
            // `>`, with nothing between them.
            Token::Lt if is_l1_operator(&tokens[i - 1..]) => {
                i += 2;
                Some("l1_distance")
            }
            _ => None,
        };
        let Some(function) = function else {
            out.push(token.clone());
            continue;
        };
        let span = token.span;
        for t in [
            Token::make_keyword("OPERATOR"),
            Token::LParen,
            Token::make_word(OPERATOR_SCHEMA, None),
            Token::Period,
            Token::make_word(function, None),
            Token::RParen,
        ] {
            out.push(TokenWithSpan::new(t, span));
        }
    }
    out
}

/// Whether `tokens` start with `<`, `+`, `>` side by side (pgvector's
/// `<+>`).
fn is_l1_operator(tokens: &[TokenWithSpan]) -> bool {
    matches!(
        tokens,
        [a, b, c, ..] if a.token == Token::Lt && b.token == Token::Plus && c.token == Token::Gt
    )
}

/// A call of the function `name` with `args`.
/// A call of the function `name` with `args`.
pub(crate) fn function_call(name: &str, args: Vec<Expr>) -> Expr {
    call(name, args)
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// pgvector's operators (as [`spell_vector_operators`] spelled them)
/// become calls of the distance functions, and casts to `vector` /
/// `vector(n)` are dropped (a vector literal is the text `'[1,2,3]'`,
/// which the distance functions take as it is), on the syntax tree.
pub fn rewrite_tree(statement: &mut Statement) {
    // `EXPLAIN query` shows the plan the query runs with: the statement
    // it explains is rewritten as that statement alone would be (one
    // level; `EXPLAIN EXPLAIN …` is left as DataFusion plans it).
    if let Statement::Explain {
        statement: inner, ..
    } = statement
    {
        if !matches!(**inner, Statement::Explain { .. }) {
            rewrite_tree(inner);
        }
        return;
    }
    // In a query, `x::real[]` becomes a call that types its result
    // `real[]` (a plain list of `f32` is a `vector` to clients). Writes
    // keep their casts: they convert values to the column's type
    // themselves.
    if let Statement::Query(query) = statement {
        convert_selected_casts(&mut query.body);
    }
    expand_array_literals(statement);
    rewrite_json_casts(statement);
    // `pg_typeof('[1,2]'::vector)` names the type of its argument: the
    // cast makes a vector there, as in a select list.
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(f) = expr
            && f.name.0.len() == 1
            && f.name.0[0]
                .as_ident()
                .is_some_and(|i| i.value.eq_ignore_ascii_case(crate::casts::PG_TYPEOF))
            && let FunctionArguments::List(list) = &mut f.args
        {
            for arg in &mut list.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                    vector_cast_to_call(e);
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if matches!(statement, Statement::Query(_)) {
        // `x::text`: DataFusion cannot cast a vector (a list) to text.
        let _ = visit_expressions_mut(statement, |expr| {
            if let Expr::Cast {
                expr: inner,
                data_type:
                    DataType::Text | DataType::Varchar(None) | DataType::CharacterVarying(None),
                ..
            } = expr
            {
                // `'[1.0, 2.50]'::vector::text` is the vector's text
                // (`[1,2.5]`), not the literal's.
                if is_vector_cast(inner) {
                    vector_cast_to_call(inner);
                }
                let inner = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
                *expr = call(crate::vector_functions::TEXT_CAST, vec![inner]);
            }
            ControlFlow::<()>::Continue(())
        });
        // `'[1,2,3]'::vector::float8[]`: the literal is read as the
        // vector it names, so the array cast is a vector's (accepted or
        // refused by [`check_vector_casts`]), not a text's.
        let _ = visit_expressions_mut(statement, |expr| {
            if let Expr::Cast {
                expr: inner,
                data_type: DataType::Array(_),
                ..
            } = expr
                && is_vector_cast(inner)
            {
                vector_cast_to_call(inner);
            }
            ControlFlow::<()>::Continue(())
        });
        let _ = visit_expressions_mut(statement, |expr| {
            if let Expr::Cast {
                expr: inner,
                data_type: DataType::Array(element),
                ..
            } = expr
                && is_real_array(element)
            {
                let inner = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
                *expr = call(crate::vector_functions::REAL_ARRAY_CAST, vec![inner]);
            }
            ControlFlow::<()>::Continue(())
        });
    }
    // First, `+`, `-`, `*` and `||` with an operand cast to vector become
    // the vector functions: the casts, dropped below, are what says the
    // operands are vectors. No rewrite can fail: the flow never breaks.
    // A comparison with an operand cast to vector compares vectors, as
    // pgvector orders them (component by component, then by dimension):
    // the operands cast become vectors, and the planner reads a text
    // operand on the other side as a vector too.
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::BinaryOp { left, op, right } = expr
            && matches!(
                op,
                BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq
            )
        {
            vector_cast_to_call(left);
            vector_cast_to_call(right);
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::BinaryOp { left, op, right } = expr
            && let Some(function) = crate::vector_functions::operator_function_name(op)
            && (is_vector_cast(left) || is_vector_cast(right))
        {
            let placeholder = Expr::value(Value::Null);
            let left = std::mem::replace(left.as_mut(), placeholder.clone());
            let right = std::mem::replace(right.as_mut(), placeholder);
            *expr = call(function, vec![left, right]);
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(statement, |expr| {
        let replacement = match expr {
            Expr::BinaryOp { left, op, right } => operator_function(op).map(|function| {
                let placeholder = Expr::value(Value::Null);
                let left = std::mem::replace(left.as_mut(), placeholder.clone());
                let right = std::mem::replace(right.as_mut(), placeholder);
                call(function, vec![left, right])
            }),
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } if is_vector_cast_type(data_type) => {
                Some(std::mem::replace(inner.as_mut(), Expr::value(Value::Null)))
            }
            _ => None,
        };
        if let Some(replacement) = replacement {
            *expr = replacement;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Refuses, in a planned query, a cast of a vector to an array of
/// anything but floating-point numbers. pgvector casts a vector to
/// `real[]` only, and PostgreSQL answers `cannot cast type vector to
/// integer[]` for the others; `double precision[]` is accepted here as
/// well (every Q16.16 value is exact in an `f64`). An integer or numeric
/// array would need a rounding rule pgvector does not define, so it is
/// refused rather than guessed: cast to `real[]` first.
pub fn check_vector_casts(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> datafusion::common::Result<()> {
    use datafusion::arrow::datatypes::DataType as Arrow;
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr as LExpr, ExprSchemable};

    let float = |t: &Arrow| matches!(t, Arrow::Float32 | Arrow::Float64);
    plan.apply_with_subqueries(|node| {
        let inputs = node.inputs();
        let [input] = inputs.as_slice() else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let schema = input.schema();
        node.apply_expressions(|e| {
            e.apply(|e| {
                let (LExpr::Cast(datafusion::logical_expr::Cast { expr, field })
                | LExpr::TryCast(datafusion::logical_expr::TryCast { expr, field })) = e
                else {
                    return Ok(TreeNodeRecursion::Continue);
                };
                let target = match field.data_type() {
                    Arrow::List(item) | Arrow::LargeList(item) | Arrow::FixedSizeList(item, _) => {
                        item.data_type()
                    }
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                // A list of `f32` is a vector unless it is typed `real[]`
                // (as `::text` of it tells them apart).
                let from_vector = expr.to_field(schema.as_ref()).is_ok_and(|(_, field)| {
                    crate::vector_functions::is_vector_value(field.data_type())
                        && field
                            .metadata()
                            .get(crate::catalog::PG_TYPE_METADATA_KEY)
                            .is_none_or(|t| t != "_float4")
                });
                if from_vector && !float(target) {
                    return Err(datafusion::common::DataFusionError::NotImplemented(format!(
                        "cannot cast type vector to {}[]: pgvector casts a vector to real[] only (double precision[] is accepted too); cast to real[] and round as needed",
                        postgres_element_name(target)
                    )));
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(())
}

/// Postgres's name of an array element type, for messages.
fn postgres_element_name(t: &datafusion::arrow::datatypes::DataType) -> String {
    use datafusion::arrow::datatypes::DataType as Arrow;
    match t {
        Arrow::Int16 => "smallint".to_owned(),
        Arrow::Int32 => "integer".to_owned(),
        Arrow::Int64 => "bigint".to_owned(),
        Arrow::Decimal128(..) | Arrow::Decimal256(..) => "numeric".to_owned(),
        Arrow::Boolean => "boolean".to_owned(),
        Arrow::Utf8 | Arrow::LargeUtf8 | Arrow::Utf8View => "text".to_owned(),
        other => other.to_string(),
    }
}

/// In a query (and the query of an `INSERT … SELECT`), a cast to `json`,
/// `jsonb`, `jsonpath` or `uuid` becomes a call of the function that checks the
/// text as that type ([`crate::json_functions`]): DataFusion has none of
/// these types. Writes of `VALUES` keep their casts: they convert values
/// to the column's type themselves.
fn rewrite_json_casts(statement: &mut Statement) {
    let rewrite = |expr: &mut Expr| {
        if let Expr::Cast {
            expr: inner,
            data_type,
            ..
        } = expr
        {
            let function = match data_type {
                DataType::JSON => Some(crate::json_functions::JSON_CAST),
                DataType::JSONB => Some(crate::json_functions::JSONB_CAST),
                DataType::Uuid => Some(crate::json_functions::UUID_CAST),
                DataType::Custom(name, modifiers)
                    if modifiers.is_empty()
                        && name
                            .0
                            .last()
                            .and_then(|part| part.as_ident())
                            .is_some_and(|i| i.value.eq_ignore_ascii_case("jsonpath")) =>
                {
                    Some(crate::json_functions::JSONPATH_CAST)
                }
                _ => None,
            };
            if let Some(function) = function {
                let inner = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
                *expr = call(function, vec![inner]);
            }
        }
        ControlFlow::<()>::Continue(())
    };
    match statement {
        Statement::Query(_) => {
            let _ = visit_expressions_mut(statement, rewrite);
        }
        Statement::Insert(insert) => {
            if let Some(source) = insert.source.as_mut()
                && !matches!(source.body.as_ref(), SetExpr::Values(_))
            {
                let _ = visit_expressions_mut(source, rewrite);
            }
        }
        _ => {}
    }
}

/// A select item that is a cast to vector (`SELECT '[1,2,3]'::vector`,
/// or `::vector(n)`, which also checks the dimension; `halfvec` alike)
/// becomes `vector(x)`: the value is read and checked as a vector, and
/// answered as one, rather than the text returned unread. Casts elsewhere
/// are dropped below: the function or operator that takes the value reads
/// it itself.
fn convert_selected_casts(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                let expr = match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                    _ => continue,
                };
                vector_cast_to_call(expr);
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            convert_selected_casts(left);
            convert_selected_casts(right);
        }
        SetExpr::Query(query) => convert_selected_casts(&mut query.body),
        _ => {}
    }
}

/// A cast to vector (`x::vector`, `x::vector(n)`; `halfvec` alike),
/// under any parentheses, becomes `vector(x)` (or `vector(x, n)`, which
/// also checks the dimension): the value is read and checked as a vector
/// and is one, rather than text. Anything else is left as it is.
fn vector_cast_to_call(expr: &mut Expr) {
    let mut inner = expr;
    while let Expr::Nested(nested) = inner {
        inner = nested.as_mut();
    }
    if let Expr::Cast {
        expr: value,
        data_type,
        ..
    } = inner
        && is_vector_cast_type(data_type)
        && let DataType::Custom(_, modifiers) = data_type
    {
        use crate::vector_functions::VectorFunction;
        let converted = match modifiers.as_slice() {
            [] => Some((VectorFunction::Cast, None)),
            [n] => n
                .parse::<i64>()
                .ok()
                .map(|n| (VectorFunction::CastDims, Some(n))),
            _ => None,
        };
        if let Some((function, dims)) = converted {
            let value = std::mem::replace(value.as_mut(), Expr::value(Value::Null));
            let mut args = vec![value];
            if let Some(n) = dims {
                args.push(Expr::value(Value::Number(n.to_string(), false)));
            }
            *inner = call(function.name(), args);
        }
    }
}

/// One statement's text with pgvector's operators and casts rewritten
/// (see [`rewrite_tree`]), printed back. Statements needing neither are
/// returned unchanged, byte for byte.
pub fn rewrite(sql: &str) -> Result<String, ParserError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()?;
    let has_operator = tokens.iter().any(|t| {
        matches!(&t.token, Token::TwoWayArrow | Token::Spaceship)
            || matches!(&t.token, Token::CustomBinaryOperator(op) if op == "<#>" || op == "<+>")
    }) || (0..tokens.len()).any(|i| is_l1_operator(&tokens[i..]));
    let catalog = crate::catalog::rewrite::may_need_rewrite(sql);
    if !has_operator && !catalog && !sql.to_ascii_lowercase().contains("vector") {
        return Ok(sql.to_owned());
    }
    let mut statements = Parser::new(&dialect)
        .with_tokens_with_locations(spell_vector_operators(tokens))
        .parse_statements()?;
    let before: Vec<String> = statements.iter().map(ToString::to_string).collect();
    for statement in &mut statements {
        crate::catalog::rewrite_catalog_syntax(statement)?;
        rewrite_tree(statement);
    }
    let after: Vec<String> = statements.iter().map(ToString::to_string).collect();
    if !has_operator && before == after {
        return Ok(sql.to_owned());
    }
    Ok(after.join("; "))
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
        // Operators inside literals and comments are text, not operators.
        assert_eq!(
            rewrite("SELECT vec <-> '[1,2]' AS d, vec<#>'[<->]', a <=> b FROM t -- <->").unwrap(),
            "SELECT l2(vec, '[1,2]') AS d, negative_inner_product(vec, '[<->]'), cosine_distance(a, b) FROM t"
        );
        // `<+>` (L1), with and without spaces around it; `< +x` is still
        // a comparison.
        assert_eq!(
            rewrite(
                "SELECT vec <+> '[1,2]' AS d, a<+>b FROM t WHERE x < +1 ORDER BY vec <+> '[3]'"
            )
            .unwrap(),
            "SELECT l1_distance(vec, '[1,2]') AS d, l1_distance(a, b) FROM t WHERE x < +1 ORDER BY l1_distance(vec, '[3]')"
        );
        // Arithmetic on operands cast to vector calls the vector
        // functions; on texts it stays as it is.
        assert_eq!(
            rewrite(
                "SELECT '[1,2]'::vector || '[3]'::vector, ('[1]'::vector) + '[2]', '[1]' || '[2]'"
            )
            .unwrap(),
            "SELECT vector_concat('[1,2]', '[3]'), vector_add(('[1]'), '[2]'), '[1]' || '[2]'"
        );
        // Untouched statements come back byte for byte.
        let plain = "select  id from t where tag = 7";
        assert_eq!(rewrite(plain).unwrap(), plain);
    }
}
