//! SQL text handled before parsing: statement splitting, counting
//! placeholders, and the expression bounds.
//!
//! A small lexer walks the text and knows which bytes sit inside string
//! literals (`'…'`, `E'…'`, `$tag$…$tag$`), quoted identifiers (`"…"`) and
//! comments (`--…`, nested `/* … */`). Everything here changes only the
//! bytes outside them:
//!
//! - [`split_statements`] cuts a simple-protocol query string at its `;`;
//! - [`placeholders`] finds `$1`, `$2`, … (the Postgres extended
//!   protocol's parameters; their values are bound into plans, never
//!   into text);
//! - [`check_expression_bounds`] measures a statement before any parser
//!   sees it.

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

/// pgvector's distance operators and the functions they stand for.
pub const VECTOR_OPERATORS: [(&str, &str); 4] = [
    ("<->", "l2"),
    ("<#>", "negative_inner_product"),
    ("<=>", "cosine_distance"),
    ("<+>", "l1_distance"),
];

/// The schema name used in the `OPERATOR(valori.…)` spelling of pgvector's
/// operators.
pub const OPERATOR_SCHEMA: &str = "valori";

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

/// Why a text's shape was refused before parsing (see
/// [`check_expression_bounds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpressionBoundsError {
    /// Parentheses or brackets nested deeper than the limit.
    #[error(
        "expression nested more than {max} levels deep (at byte {offset}); \
         the limit is {max} levels of parentheses and brackets"
    )]
    Nesting { offset: usize, max: u32 },
    /// One term of an expression (the tokens between two `AND`s, `OR`s,
    /// commas or clause keywords) has more tokens than the limit.
    #[error(
        "expression term longer than {max} tokens (at byte {offset}); the limit is {max} \
         tokens of arithmetic, casts and other operators between two ANDs, ORs or commas"
    )]
    Term { offset: usize, max: u32 },
    /// One chain of an expression has more tokens than the limit.
    #[error(
        "expression chain longer than {max} tokens (at byte {offset}); \
         the limit is {max} tokens per chain (a long OR of equalities can be \
         written as IN (...))"
    )]
    Chain { offset: usize, max: u32 },
}

/// Checks that `text` (a SQL statement or a DSL query) stays within
/// [`EXPRESSION_NESTING_MAX`] and [`EXPRESSION_TOKENS_MAX`], in one linear
/// pass and constant memory per nesting level.
///
/// Every recursive walk of a client's expression (the parsers, the
/// planner, the optimizer, the drop of the tree) goes as deep as the tree
/// is; a tree's depth is at most its nesting plus the tokens of its
/// longest chain, so bounding both on the text bounds every one of those
/// walks before any of them starts. A chain is the run of tokens between
/// the commas of one list; an opening bracket starts a new chain that
/// inherits the length of the chain around it, a comma goes back to that
/// inherited length, and after the closing bracket the chain around it
/// goes on from the longest chain inside plus one. So a list of any width
/// costs its longest element, while a group that opens a long chain
/// (`(a OR … ) OR …`, where the group sits at the bottom of the tree)
/// adds its length to the chain after it. Literals and quoted identifiers are one token each; comments
/// none. Every operator character counts on its own, so `NOT`, `-`, `::`
/// and `||` chains all lengthen a chain. Prefix operators written one
/// after another (`NOT NOT …`, `- - …`) nest each operand in the next, so
/// a run of them counts as nesting too.
///
/// [`EXPRESSION_NESTING_MAX`]: valori_core::limits::EXPRESSION_NESTING_MAX
/// [`EXPRESSION_TOKENS_MAX`]: valori_core::limits::EXPRESSION_TOKENS_MAX
pub fn check_expression_bounds(text: &str) -> Result<Shape, ExpressionBoundsError> {
    shape_within(text, Bounds::LIMITS)
}

/// How deep a text's expressions go, as [`check_expression_bounds`]
/// measures them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// The deepest nesting of brackets and prefix-operator runs.
    pub nesting: u32,
    /// The longest chain, in tokens.
    pub chain: u32,
}

impl Shape {
    /// Whether a statement of this shape may make DataFusion's recursive
    /// walks deeper than an ordinary thread's stack holds (see
    /// [`crate::QueryEngine`]). Measured in a debug build, where frames
    /// are largest: 2 MiB held chains of 192 `+` or `::` operators (384
    /// tokens) but not 256.
    pub fn is_deep(self) -> bool {
        self.chain > Shape::DEEP_CHAIN || self.nesting > Shape::DEEP_NESTING
    }

    /// The longest chain, in tokens, of a statement that is not deep.
    pub const DEEP_CHAIN: u32 = 256;
    /// The deepest nesting of a statement that is not deep.
    pub const DEEP_NESTING: u32 = 16;
}

/// [`check_expression_bounds`] with the given limits. The query DSL's
/// lowering adds a few levels of nesting to a bounded DSL query, and its
/// SQL is measured with room for them.
pub(crate) fn shape_within(text: &str, bounds: Bounds) -> Result<Shape, ExpressionBoundsError> {
    let bytes = text.as_bytes();
    let mut scan = Scan::new(bounds);
    for (piece, range) in pieces(text) {
        if piece == Piece::Opaque {
            let comment =
                bytes[range.start..].starts_with(b"--") || bytes[range.start..].starts_with(b"/*");
            if !comment {
                scan.token(range.start, false)?;
            }
            continue;
        }
        let mut i = range.start;
        while i < range.end {
            let b = bytes[i];
            match b {
                b'(' | b'[' => {
                    scan.open(i, false)?;
                    i += 1;
                }
                b')' | b']' => {
                    scan.close(i)?;
                    i += 1;
                }
                b',' | b';' => {
                    scan.comma();
                    i += 1;
                }
                _ if b.is_ascii_whitespace() => i += 1,
                _ if is_ident_byte(b) || b == b'$' || b == b'.' => {
                    // A word, a number or a placeholder: one token.
                    let start = i;
                    while i < range.end
                        && (is_ident_byte(bytes[i]) || bytes[i] == b'$' || bytes[i] == b'.')
                    {
                        i += 1;
                    }
                    scan.word(start, &bytes[start..i])?;
                }
                _ => {
                    scan.token(i, matches!(b, b'-' | b'+' | b'~' | b'!'))?;
                    i += 1;
                }
            }
        }
    }
    Ok(scan.shape())
}

/// The limits a text is measured against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub nesting: u32,
    pub tokens: u32,
    pub term_tokens: u32,
}

impl Bounds {
    pub(crate) const LIMITS: Bounds = Bounds {
        nesting: valori_core::limits::EXPRESSION_NESTING_MAX,
        tokens: valori_core::limits::EXPRESSION_TOKENS_MAX,
        term_tokens: valori_core::limits::EXPRESSION_TERM_TOKENS_MAX,
    };
}

/// Chain lengths at one point: all tokens, and the tokens since the last
/// `AND`, `OR` or clause keyword (the current term).
#[derive(Clone, Copy, Debug, Default)]
struct Lengths {
    chain: u32,
    term: u32,
}

impl Lengths {
    fn max(self, other: Lengths) -> Lengths {
        Lengths {
            chain: self.chain.max(other.chain),
            term: self.term.max(other.term),
        }
    }
}

/// An open bracket or `CASE`: what it inherited and the longest it has
/// seen inside.
#[derive(Clone, Copy, Debug)]
struct Group {
    inherited: Lengths,
    longest: Lengths,
    case: bool,
}

/// Words that end one term of a boolean chain or start a clause: an
/// arithmetic, cast or string chain never goes on across them.
const TERM_BREAKS: [&[u8]; 17] = [
    b"and",
    b"or",
    b"select",
    b"from",
    b"where",
    b"by",
    b"having",
    b"limit",
    b"offset",
    b"on",
    b"using",
    b"values",
    b"set",
    b"returning",
    b"union",
    b"intersect",
    b"except",
];

/// The state of [`shape_within`]'s pass.
struct Scan {
    bounds: Bounds,
    groups: Vec<Group>,
    now: Lengths,
    longest: Lengths,
    prefixes: u32,
    nesting: u32,
}

impl Scan {
    fn new(bounds: Bounds) -> Scan {
        Scan {
            bounds,
            groups: Vec::new(),
            now: Lengths::default(),
            longest: Lengths::default(),
            prefixes: 0,
            nesting: 0,
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            nesting: self.nesting,
            chain: self.longest.chain,
        }
    }

    fn inherited(&self) -> Lengths {
        self.groups
            .last()
            .map_or_else(Lengths::default, |g| g.inherited)
    }

    /// One token; `prefix` when it may be a prefix operator.
    fn token(&mut self, offset: usize, prefix: bool) -> Result<(), ExpressionBoundsError> {
        self.count(offset, prefix)?;
        self.check_term(offset)
    }

    /// [`Scan::token`] without the term's check.
    fn count(&mut self, offset: usize, prefix: bool) -> Result<(), ExpressionBoundsError> {
        self.prefixes = if prefix { self.prefixes + 1 } else { 0 };
        self.nesting = self.nesting.max(self.prefixes);
        if self.prefixes > self.bounds.nesting {
            return Err(ExpressionBoundsError::Nesting {
                offset,
                max: self.bounds.nesting,
            });
        }
        self.now.chain = self.now.chain.saturating_add(1);
        self.now.term = self.now.term.saturating_add(1);
        self.longest = self.longest.max(self.now);
        if self.now.chain > self.bounds.tokens {
            return Err(ExpressionBoundsError::Chain {
                offset,
                max: self.bounds.tokens,
            });
        }
        Ok(())
    }

    /// Checks the term's length; called for every token but the words
    /// that end a term.
    fn check_term(&self, offset: usize) -> Result<(), ExpressionBoundsError> {
        if self.now.term > self.bounds.term_tokens {
            return Err(ExpressionBoundsError::Term {
                offset,
                max: self.bounds.term_tokens,
            });
        }
        Ok(())
    }

    fn word(&mut self, offset: usize, word: &[u8]) -> Result<(), ExpressionBoundsError> {
        let is = |w: &[u8]| word.eq_ignore_ascii_case(w);
        let in_case = self.groups.last().is_some_and(|g| g.case);
        if is(b"case") {
            self.token(offset, false)?;
            return self.open(offset, true);
        }
        if in_case && is(b"end") {
            return self.close(offset);
        }
        if in_case && (is(b"when") || is(b"then") || is(b"else")) {
            self.comma();
            return Ok(());
        }
        if TERM_BREAKS.iter().any(|w| is(w)) {
            // The word ends the term before it and starts none: it counts
            // in the chain only.
            self.count(offset, false)?;
            if let Some(group) = self.groups.last_mut() {
                group.longest = group.longest.max(self.now);
            }
            self.now.term = self.inherited().term;
            return Ok(());
        }
        self.token(offset, is(b"not"))
    }

    fn open(&mut self, offset: usize, case: bool) -> Result<(), ExpressionBoundsError> {
        if self.groups.len() >= self.bounds.nesting as usize {
            return Err(ExpressionBoundsError::Nesting {
                offset,
                max: self.bounds.nesting,
            });
        }
        self.prefixes = 0;
        self.groups.push(Group {
            inherited: self.now,
            longest: self.now,
            case,
        });
        self.nesting = self.nesting.max(self.groups.len() as u32);
        Ok(())
    }

    /// The group is one operand of the chain around it, at the depth of
    /// the longest chain inside it. An unbalanced closer is the parser's
    /// to report.
    fn close(&mut self, offset: usize) -> Result<(), ExpressionBoundsError> {
        if let Some(group) = self.groups.pop() {
            self.now = group.longest.max(self.now);
        }
        self.token(offset, false)
    }

    fn comma(&mut self) {
        self.prefixes = 0;
        self.now = match self.groups.last_mut() {
            Some(group) => {
                group.longest = group.longest.max(self.now);
                group.inherited
            }
            None => Lengths::default(),
        };
    }
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

    /// Proves that placeholders are found outside literals only, and that
    /// `$tag$` quotes are not placeholders.
    #[test]
    fn placeholders_outside_literals() {
        let sql = "SELECT $1, '$2', $tag$ $3 $tag$, x$4, $10 FROM t WHERE a = $2";
        assert_eq!(placeholders(sql), 10);
        assert_eq!(placeholders("SELECT '$3', \"$4\" -- $5"), 0);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    /// Proves a write statement deeper than an ordinary stack holds is
    /// refused before it is parsed, and one just within is parsed.
    #[test]
    fn deep_writes_are_refused() {
        let update = |n: usize| {
            format!(
                "UPDATE docs SET tag = 1 WHERE {}",
                vec!["id = 1"; n].join(" OR ")
            )
        };
        // `UPDATE docs SET` is 3 tokens, `tag = 1 WHERE` 4 more; each
        // `id = 1` 3 and each `OR` 1.
        let fits = (Shape::DEEP_CHAIN as usize - 7 - 3) / 4 + 1;
        assert!(!matches!(
            crate::write::parse(&update(fits)),
            Err(crate::write::WriteError::TooLarge(_))
        ));
        assert!(matches!(
            crate::write::parse(&update(fits + 1)),
            Err(crate::write::WriteError::TooLarge(_))
        ));
        assert!(matches!(
            crate::write::parse(&update(10_000)),
            Err(crate::write::WriteError::TooLarge(_))
        ));
    }

    /// Proves the shape check refuses nesting and chains one past their
    /// limits, accepts them at the limits, and counts lists, literals and
    /// comments as the docs say.
    #[test]
    fn expression_bounds() {
        use valori_core::limits::{
            EXPRESSION_NESTING_MAX, EXPRESSION_TERM_TOKENS_MAX, EXPRESSION_TOKENS_MAX,
        };
        let nesting = EXPRESSION_NESTING_MAX as usize;
        let tokens = EXPRESSION_TOKENS_MAX as usize;
        let nested = |n: usize| format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
        // `SELECT` and `1` are two tokens; each closed group adds one.
        assert_eq!(
            check_expression_bounds(&nested(nesting)).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            check_expression_bounds(&nested(nesting + 1)),
            Err(ExpressionBoundsError::Nesting {
                offset: "SELECT ".len() + nesting,
                max: EXPRESSION_NESTING_MAX
            })
        );
        // A run of prefix operators nests: NOT NOT … and - - … (`--` would
        // be a comment).
        for op in ["NOT ", "not ", "- ", "+ ", "~ "] {
            let run = |n: usize| format!("SELECT {}1", op.repeat(n));
            assert_eq!(
                check_expression_bounds(&run(nesting)).map(|_| ()),
                Ok(()),
                "{op}"
            );
            assert_eq!(
                check_expression_bounds(&run(nesting + 1)),
                Err(ExpressionBoundsError::Nesting {
                    offset: "SELECT ".len() + nesting * op.len(),
                    max: EXPRESSION_NESTING_MAX
                }),
                "{op}"
            );
        }
        // Arithmetic, casts and string operators chain within one term,
        // which AND, OR, commas and clause keywords end: `SELECT` ends a
        // term, then `1` and each `+ 1` (2 tokens) count.
        let term_tokens = EXPRESSION_TERM_TOKENS_MAX as usize;
        let sum = |n: usize| format!("SELECT 1{}", " + 1".repeat(n));
        let n = (term_tokens - 1) / 2;
        assert_eq!(check_expression_bounds(&sum(n)).map(|_| ()), Ok(()));
        assert_eq!(
            check_expression_bounds(&sum(n + 1)),
            Err(ExpressionBoundsError::Term {
                offset: "SELECT 1".len() + 4 * n + 3,
                max: EXPRESSION_TERM_TOKENS_MAX
            })
        );
        let terms = |n: usize| {
            format!(
                "SELECT 1 WHERE {}",
                vec![sum(n).replacen("SELECT ", "", 1); 20].join(" OR ")
            )
        };
        assert_eq!(check_expression_bounds(&terms(n - 1)).map(|_| ()), Ok(()));
        assert!(matches!(
            check_expression_bounds(&terms(n + 1)),
            Err(ExpressionBoundsError::Term { .. })
        ));
        // CASE is a group whose WHEN, THEN and ELSE parts are separate
        // terms: 100 branches of 60 tokens each pass.
        let branch = format!("WHEN x = 1 THEN 1{}", " + 1".repeat(29));
        let case = format!("SELECT CASE {} ELSE 0 END + 1", vec![branch; 100].join(" "));
        assert_eq!(check_expression_bounds(&case).map(|_| ()), Ok(()));
        // Prefix operators apart from each other chain, they do not nest.
        let apart = |n: usize| format!("SELECT 1 WHERE {}", vec!["NOT x"; n].join(" OR "));
        assert_eq!(check_expression_bounds(&apart(1_000)).map(|_| ()), Ok(()));
        // `SELECT 1 WHERE` is 3 tokens, each `NOT x` 2, each `OR` 1.
        let terms = (tokens - 5) / 3 + 1;
        assert_eq!(check_expression_bounds(&apart(terms)).map(|_| ()), Ok(()));
        assert!(matches!(
            check_expression_bounds(&apart(terms + 1)),
            Err(ExpressionBoundsError::Chain { .. })
        ));
        // The shapes: 20,000 nested parentheses, 50,000 NOTs, a flat
        // chain of 20,000 ORs.
        let deep = format!("WHERE {}id = 1{}", "(".repeat(20_000), ")".repeat(20_000));
        assert!(matches!(
            check_expression_bounds(&deep),
            Err(ExpressionBoundsError::Nesting { .. })
        ));
        let or_chain = format!("SELECT 1 WHERE {}", vec!["1=1"; 20_000].join(" OR "));
        assert!(matches!(
            check_expression_bounds(&or_chain),
            Err(ExpressionBoundsError::Chain { .. })
        ));
        // Lists are wide, not deep: 100,000 IN values, 10,000 VALUES rows
        // and a 16,000-component array of negative numbers all pass.
        let ids: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
        let in_list = format!("SELECT id FROM t WHERE id IN ({})", ids.join(", "));
        assert_eq!(check_expression_bounds(&in_list).map(|_| ()), Ok(()));
        let rows = vec!["(1, '[1,2]', -7, '{}')"; 10_000].join(", ");
        assert_eq!(
            check_expression_bounds(&format!("INSERT INTO t VALUES {rows}")).map(|_| ()),
            Ok(())
        );
        // The measure itself, worked out by hand: `SELECT` 1, `f` 2; in the
        // group `a + b` reaches 5 and `c` 3; the closed group is 5 + 1.
        assert_eq!(
            check_expression_bounds("SELECT f(a + b, c)"),
            Ok(Shape {
                nesting: 1,
                chain: 6
            })
        );
        assert_eq!(
            check_expression_bounds("SELECT NOT NOT (x)"),
            Ok(Shape {
                nesting: 2,
                chain: 5
            })
        );
        let array = format!(
            "SELECT l2(vec, ARRAY[{}]) FROM t",
            vec!["-0.5"; 16_000].join(",")
        );
        assert_eq!(check_expression_bounds(&array).map(|_| ()), Ok(()));
        // Literals, quoted identifiers and comments hide their contents:
        // none of these brackets or operators count.
        let hidden = format!(
            "SELECT '{open}', \"{open}\", $x${open}$x$, E'\\'{open}' -- {open}\n /* {open} */ 1",
            open = "(".repeat(1_000)
        );
        assert_eq!(check_expression_bounds(&hidden).map(|_| ()), Ok(()));
        // A comma resets the chain to what encloses it; a group counts once
        // in the chain around it.
        let arg = |n: usize| vec!["x"; n].join(" OR ");
        // `SELECT`, `f` and the group take 3 tokens of the chain; each
        // argument of n terms takes 2n - 1.
        let n = (tokens - 3).div_ceil(2);
        let long_args = format!("SELECT f({}, {})", arg(n), arg(n));
        assert_eq!(check_expression_bounds(&long_args).map(|_| ()), Ok(()));
        let past = format!("SELECT f({}, {})", arg(n), arg(n + 1));
        assert!(check_expression_bounds(&past).is_err());
        let inherited = format!("SELECT {} OR f({})", arg(100), arg(n - 98));
        assert!(check_expression_bounds(&inherited).is_err());
        // A group that opens a chain sits at the bottom of that chain's
        // tree: its length carries on after it.
        let continued = format!("SELECT ({}) OR {}", arg(1_050), arg(1_050));
        assert!(check_expression_bounds(&continued).is_err());
        // Eight groups nested on the left, each closing a chain of 200 ORs
        // (800 tokens): each chain is short, the tree is 1,600 ORs deep.
        let left_deep = format!(
            "SELECT 1 WHERE {}1=1{}",
            "(".repeat(8),
            format!("{})", " OR 1=1".repeat(200)).repeat(8)
        );
        assert!(matches!(
            check_expression_bounds(&left_deep),
            Err(ExpressionBoundsError::Chain { .. })
        ));
    }
}
