//! SQL text handled before parsing: statement splitting, placeholders and
//! pgvector's operators.
//!
//! A small lexer walks the text and knows which bytes sit inside string
//! literals (`'…'`, `E'…'`, `$tag$…$tag$`), quoted identifiers (`"…"`) and
//! comments (`--…`, nested `/* … */`). Everything here changes only the
//! bytes outside them:
//!
//! - [`split_statements`] cuts a simple-protocol query string at its `;`;
//! - [`placeholders`] and [`substitute_placeholders`] find and replace
//!   `$1`, `$2`, … (the Postgres extended protocol's parameters);
//! - [`rewrite_vector_operators`] turns pgvector's `<->`, `<#>` and `<=>`
//!   into `OPERATOR(valori.l2)`, `OPERATOR(valori.negative_inner_product)`
//!   and `OPERATOR(valori.cosine_distance)`, which sqlparser parses as
//!   custom binary operators; [`crate::pgvector`] then turns those into
//!   calls of the distance functions.

use std::borrow::Cow;

/// What a byte range of the text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    /// Plain SQL: keywords, identifiers, operators, numbers.
    Code,
    /// A string literal, quoted identifier or comment, quotes included.
    Opaque,
}

/// The text cut into code and opaque pieces, in order. Unterminated
/// literals and comments run to the end of the text (the parser reports
/// them).
fn pieces(sql: &str) -> Vec<(Piece, std::ops::Range<usize>)> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut code_start = 0;
    let mut i = 0;
    let push_code = |out: &mut Vec<_>, start: usize, end: usize| {
        if end > start {
            out.push((Piece::Code, start..end));
        }
    };
    while i < bytes.len() {
        let b = bytes[i];
        let end = match b {
            b'\'' => {
                // E'…' strings allow backslash escapes.
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && (i < 2 || !is_ident_byte(bytes[i - 2]));
                Some(quoted_end(bytes, i, b'\'', escapes))
            }
            b'"' => Some(quoted_end(bytes, i, b'"', false)),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                let nl = bytes[i..].iter().position(|&c| c == b'\n');
                Some(nl.map_or(bytes.len(), |p| i + p + 1))
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => Some(block_comment_end(bytes, i)),
            b'$' if i == 0 || !is_ident_byte(bytes[i - 1]) => dollar_quote_end(bytes, i),
            _ => None,
        };
        match end {
            Some(end) => {
                push_code(&mut out, code_start, i);
                out.push((Piece::Opaque, i..end));
                i = end;
                code_start = end;
            }
            None => i += 1,
        }
    }
    push_code(&mut out, code_start, bytes.len());
    out
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// End (exclusive) of a quoted piece opening at `start`; a doubled quote
/// stands for itself.
fn quoted_end(bytes: &[u8], start: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash_escapes && b == b'\\' {
            i += 2;
            continue;
        }
        if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// End (exclusive) of a (nested) block comment opening at `start`.
fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0u32;
    let mut i = start;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// End of a dollar-quoted string `$tag$…$tag$` opening at `start`, or
/// `None` when the `$` starts something else (a placeholder `$1`).
fn dollar_quote_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len()
        && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' || bytes[i] >= 0x80)
    {
        i += 1;
    }
    // Digits may follow the first character of a tag, never start one.
    if i > start + 1 {
        while i < bytes.len() && is_ident_byte(bytes[i]) {
            i += 1;
        }
    }
    if bytes.get(i) != Some(&b'$') {
        return None;
    }
    let tag = &bytes[start..=i];
    let body = i + 1;
    let found = bytes[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(bytes.len(), |p| body + p + tag.len());
    Some(found)
}

/// The statements of a query string, split at `;` outside literals and
/// comments, trimmed; empty statements are left out.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (piece, range) in pieces(sql) {
        if piece != Piece::Code {
            continue;
        }
        for (offset, b) in sql.as_bytes()[range.clone()].iter().enumerate() {
            if *b == b';' {
                let end = range.start + offset;
                out.push(&sql[start..end]);
                start = end + 1;
            }
        }
    }
    out.push(&sql[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !is_blank(s))
        .collect()
}

/// Whether `sql` holds nothing but whitespace and comments.
pub fn is_blank(sql: &str) -> bool {
    pieces(sql).iter().all(|(piece, range)| match piece {
        Piece::Code => sql[range.clone()].trim().is_empty(),
        Piece::Opaque => {
            let text = &sql[range.clone()];
            text.starts_with("--") || text.starts_with("/*")
        }
    })
}

/// `sql` without the whitespace and comments before its first token.
pub fn strip_leading_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if rest.starts_with("--") {
            rest = rest
                .find('\n')
                .map_or("", |nl| &rest[nl + 1..])
                .trim_start();
        } else if rest.starts_with("/*") {
            let end = block_comment_end(rest.as_bytes(), 0);
            rest = rest[end..].trim_start();
        } else {
            return rest;
        }
    }
}

/// Every placeholder `$n` outside literals: `(byte range, n)`, in order.
fn placeholder_spans(sql: &str) -> Vec<(std::ops::Range<usize>, usize)> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    for (piece, range) in pieces(sql) {
        if piece != Piece::Code {
            continue;
        }
        let mut i = range.start;
        while i < range.end {
            if bytes[i] == b'$' && (i == 0 || !is_ident_byte(bytes[i - 1])) {
                let digits_end = (i + 1..range.end)
                    .find(|&j| !bytes[j].is_ascii_digit())
                    .unwrap_or(range.end);
                if digits_end > i + 1
                    && let Ok(n) = sql[i + 1..digits_end].parse::<usize>()
                {
                    out.push((i..digits_end, n));
                    i = digits_end;
                    continue;
                }
            }
            i += 1;
        }
    }
    out
}

/// The highest placeholder number in `sql` (0 when there is none).
pub fn placeholders(sql: &str) -> usize {
    placeholder_spans(sql)
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
}

/// `sql` with each placeholder `$n` replaced by `value(n)`; the first
/// placeholder `value` has nothing for is the error.
pub fn substitute_placeholders(
    sql: &str,
    mut value: impl FnMut(usize) -> Option<String>,
) -> Result<String, usize> {
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    for (range, n) in placeholder_spans(sql) {
        let text = value(n).ok_or(n)?;
        out.push_str(&sql[last..range.start]);
        out.push_str(&text);
        last = range.end;
    }
    out.push_str(&sql[last..]);
    Ok(out)
}

/// pgvector's distance operators and the functions they stand for.
pub const VECTOR_OPERATORS: [(&str, &str); 3] = [
    ("<->", "l2"),
    ("<#>", "negative_inner_product"),
    ("<=>", "cosine_distance"),
];

/// The schema name used in the `OPERATOR(valori.…)` spelling of pgvector's
/// operators.
pub const OPERATOR_SCHEMA: &str = "valori";

/// `sql` with pgvector's operators outside literals spelled as
/// `OPERATOR(valori.<function>)`; borrowed when there is none.
pub fn rewrite_vector_operators(sql: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut last = 0;
    for (piece, range) in pieces(sql) {
        if piece != Piece::Code {
            continue;
        }
        let code = &sql[range.clone()];
        let mut i = 0;
        while i + 3 <= code.len() {
            let found = VECTOR_OPERATORS
                .iter()
                .find(|(op, _)| code.as_bytes()[i..].starts_with(op.as_bytes()));
            match found {
                Some((op, function)) => {
                    let at = range.start + i;
                    let buf = out.get_or_insert_with(|| String::with_capacity(sql.len() + 32));
                    buf.push_str(&sql[last..at]);
                    buf.push_str(&format!(" OPERATOR({OPERATOR_SCHEMA}.{function}) "));
                    last = at + op.len();
                    i += op.len();
                }
                None => i += 1,
            }
        }
    }
    match out {
        Some(mut buf) => {
            buf.push_str(&sql[last..]);
            Cow::Owned(buf)
        }
        None => Cow::Borrowed(sql),
    }
}

/// A string as a single-quoted SQL literal (quotes doubled).
pub fn quote_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves that splitting respects literals, identifiers, comments and
    /// dollar quotes, and drops empty statements.
    #[test]
    fn splits_outside_literals_only() {
        assert_eq!(
            split_statements("SELECT 1; SELECT ';' ;; SELECT \"a;b\" -- x;y\n; SELECT $$;$$"),
            vec![
                "SELECT 1",
                "SELECT ';'",
                "SELECT \"a;b\" -- x;y",
                "SELECT $$;$$"
            ]
        );
        assert_eq!(split_statements("  ;  "), Vec::<&str>::new());
        assert_eq!(
            split_statements("/* a; b */ SELECT 2"),
            vec!["/* a; b */ SELECT 2"]
        );
        assert!(is_blank(" -- only a comment\n /* and /* nested */ one */ "));
        assert!(!is_blank("-- c\nSELECT 1"));
        assert_eq!(
            strip_leading_comments(" -- a\n /* b /* c */ */ INSERT -- d"),
            "INSERT -- d"
        );
        assert_eq!(strip_leading_comments("/* never closed"), "");
    }

    /// Proves that placeholders are found and replaced outside literals
    /// only, and that `$tag$` quotes are not placeholders.
    #[test]
    fn placeholders_outside_literals() {
        let sql = "SELECT $1, '$2', $tag$ $3 $tag$, x$4, $10 FROM t WHERE a = $2";
        assert_eq!(placeholders(sql), 10);
        let out = substitute_placeholders(sql, |n| Some(format!("<{n}>"))).unwrap();
        assert_eq!(
            out,
            "SELECT <1>, '$2', $tag$ $3 $tag$, x$4, <10> FROM t WHERE a = <2>"
        );
        assert_eq!(substitute_placeholders("SELECT $3", |_| None), Err(3));
    }

    /// Proves the operator rewrite leaves literals alone and spells each
    /// operator as its function.
    #[test]
    fn vector_operators_become_custom_operators() {
        let sql = "SELECT vec <-> '[1,2]' AS d, vec<#>'[<->]', a <=> b FROM t -- <->";
        assert_eq!(
            rewrite_vector_operators(sql),
            "SELECT vec  OPERATOR(valori.l2)  '[1,2]' AS d, vec OPERATOR(valori.negative_inner_product) '[<->]', a  OPERATOR(valori.cosine_distance)  b FROM t -- <->"
        );
        assert!(matches!(
            rewrite_vector_operators("SELECT a <= b"),
            Cow::Borrowed(_)
        ));
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
