use std::collections::BTreeMap;

use valori_core::distance::Metric;
use valori_core::q16::QuantizeErrorKind;

use super::ast::{Column, CompareOp, Field, Filter, Value, VectorSource};
use super::*;

fn ok(text: &str) -> Query {
    match parse(text) {
        Ok(q) => q,
        Err(e) => panic!("{text}: {e}"),
    }
}

/// The (line, column, message) of a parse error.
fn err(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Err(DslError::Parse {
            line,
            column,
            message,
        }) => (line, column, message),
        other => panic!("{text}: expected a parse error, got {other:?}"),
    }
}

/// 1-based column of the first occurrence of `needle` in a one-line text.
fn col(text: &str, needle: &str) -> usize {
    text.find(needle).map(|i| i + 1).unwrap_or(0)
}

fn int(n: u64) -> Value {
    Value::Number {
        value: n as f64,
        integer: Some(n),
    }
}

fn cmp(field: Field, op: CompareOp, value: Value) -> Filter {
    Filter::Compare { field, op, value }
}

fn meta(keys: &[&str]) -> Field {
    Field::Meta(keys.iter().map(|k| (*k).to_owned()).collect())
}

/// Proves the minimal query and the full example parse to the expected
/// trees.
#[test]
fn minimal_and_full_queries() {
    let q = ok("FROM docs NEAREST [0.1, -2, 3e-1] K 10");
    assert_eq!(
        q,
        Query {
            select: None,
            collection: "docs".to_owned(),
            nearest: VectorSource::Literal(vec![0.1, -2.0, 0.3]),
            k: 10,
            filter: None,
            ef: None,
            exact: false,
        }
    );
    let q = ok("FROM docs NEAREST $q K 10 WHERE tag IN (3, 7) AND meta.lang = 'en' EF 64");
    assert_eq!(q.nearest, VectorSource::Param("q".to_owned()));
    assert_eq!(q.ef, Some(64));
    assert!(!q.exact);
    assert_eq!(
        q.filter,
        Some(Filter::And(vec![
            Filter::In {
                field: Field::Tag,
                values: vec![int(3), int(7)],
                negated: false
            },
            cmp(
                meta(&["lang"]),
                CompareOp::Eq,
                Value::String("en".to_owned())
            ),
        ]))
    );
}

/// Proves keywords are case-insensitive, the clauses after NEAREST come in
/// any order, and SELECT lists columns including metadata paths.
#[test]
fn keywords_projection_and_clause_order() {
    let q =
        ok("select id, Distance, meta.lang, meta.a.b.0 from docs_2 nearest $v1 exact ef 32 k 5");
    assert_eq!(
        q.select,
        Some(vec![
            Column::Id,
            Column::Distance,
            Column::Meta(vec!["lang".to_owned()]),
            Column::Meta(vec!["a".to_owned(), "b".to_owned(), "0".to_owned()]),
        ])
    );
    assert_eq!(q.collection, "docs_2");
    assert_eq!((q.k, q.ef, q.exact), (5, Some(32), true));
    // Multi-line, with comments.
    let q = ok("-- nearest documents\nFROM docs\n  NEAREST $q -- the query\n  K 3\n");
    assert_eq!(q.k, 3);
}

/// Proves precedence (NOT over AND over OR), parentheses, every
/// comparison operator, NOT IN, and the literal forms.
#[test]
fn conditions() {
    let q = ok("FROM d NEAREST $q K 1 WHERE tag = 1 OR tag = 2 AND NOT id > 5");
    assert_eq!(
        q.filter,
        Some(Filter::Or(vec![
            cmp(Field::Tag, CompareOp::Eq, int(1)),
            Filter::And(vec![
                cmp(Field::Tag, CompareOp::Eq, int(2)),
                Filter::Not(Box::new(cmp(Field::Id, CompareOp::Gt, int(5)))),
            ]),
        ]))
    );
    let q = ok("FROM d NEAREST $q K 1 WHERE (tag = 1 OR tag = 2) AND id != 3");
    assert_eq!(
        q.filter,
        Some(Filter::And(vec![
            Filter::Or(vec![
                cmp(Field::Tag, CompareOp::Eq, int(1)),
                cmp(Field::Tag, CompareOp::Eq, int(2)),
            ]),
            cmp(Field::Id, CompareOp::NotEq, int(3)),
        ]))
    );
    for (op, want) in [
        ("=", CompareOp::Eq),
        ("!=", CompareOp::NotEq),
        ("<>", CompareOp::NotEq),
        ("<", CompareOp::Lt),
        ("<=", CompareOp::LtEq),
        (">", CompareOp::Gt),
        (">=", CompareOp::GtEq),
    ] {
        let q = ok(&format!("FROM d NEAREST $q K 1 WHERE id {op} 4"));
        assert_eq!(q.filter, Some(cmp(Field::Id, want, int(4))), "{op}");
    }
    let q = ok(
        "FROM d NEAREST $q K 1 WHERE meta.name = 'O''Brien' AND meta.year >= 2000 \
         AND meta.score < -1.5e3 AND meta.ok = TRUE AND tag NOT IN (1, 2)",
    );
    let Some(Filter::And(conjuncts)) = q.filter else {
        panic!("expected one AND chain, got {:?}", q.filter);
    };
    assert_eq!(
        conjuncts,
        vec![
            cmp(
                meta(&["name"]),
                CompareOp::Eq,
                Value::String("O'Brien".to_owned())
            ),
            cmp(meta(&["year"]), CompareOp::GtEq, int(2000)),
            cmp(
                meta(&["score"]),
                CompareOp::Lt,
                Value::Number {
                    value: -1500.0,
                    integer: None
                }
            ),
            cmp(meta(&["ok"]), CompareOp::Eq, Value::Bool(true)),
            Filter::In {
                field: Field::Tag,
                values: vec![int(1), int(2)],
                negated: true
            },
        ]
    );
}

/// Proves parse errors point at the offending line and column and say
/// what was expected.
#[test]
fn errors_carry_positions() {
    let text = "FROM docs NEAREST K 10";
    let (line, column, message) = err(text);
    assert_eq!((line, column), (1, col(text, "K 10")));
    assert!(message.contains("expected a vector"), "{message}");

    let text = "FROM Docs NEAREST $q K 10";
    let (line, column, message) = err(text);
    assert_eq!((line, column), (1, col(text, "Docs")));
    assert!(message.contains("collection name"), "{message}");

    let text = "FROM docs NEAREST $q K 10 WHERE tag = 'x'";
    let (line, column, message) = err(text);
    assert_eq!((line, column), (1, col(text, "'x'")));
    assert_eq!(message, "tag is compared with unsigned integers only");

    let text = "FROM docs NEAREST $q K 10 WHERE id = -1";
    let (_, column, message) = err(text);
    assert_eq!(column, col(text, "-1"));
    assert_eq!(message, "id is compared with unsigned integers only");

    let text = "FROM docs\nNEAREST $q\nK ten";
    let (line, column, message) = err(text);
    assert_eq!((line, column), (3, 3));
    assert_eq!(message, "expected an integer");

    let text = "FROM docs NEAREST $q";
    let (line, column, message) = err(text);
    assert_eq!((line, column), (1, text.len() + 1));
    assert_eq!(message, "expected K <number of rows>");

    let text = "FROM docs NEAREST $q K 10 K 5";
    let (_, column, message) = err(text);
    assert_eq!(column, col(text, "K 5"));
    assert_eq!(message, "K given twice");

    let text = "FROM docs NEAREST $q K 0";
    let (_, column, message) = err(text);
    assert_eq!(column, col(text, "K 0"));
    assert!(message.starts_with("K must be between 1 and"), "{message}");

    let text = "FROM docs NEAREST $q K 10 WHERE tag = 1 AND";
    let (_, column, message) = err(text);
    assert_eq!(column, text.len() + 1);
    assert!(
        message.contains("a condition") || message.contains("NOT"),
        "{message}"
    );

    let text = "FROM docs NEAREST $q K 10 WHERE meta.lang == 'en'";
    let (_, column, message) = err(text);
    assert_eq!(column, col(text, "= 'en'"));
    assert!(message.contains("value"), "{message}");

    let text = "FROM docs NEAREST [0.1, ] K 1";
    let (_, column, message) = err(text);
    assert_eq!(column, col(text, "]"));
    assert_eq!(message, "expected a number");

    // The Display form callers show.
    let e = parse("FROM docs NEAREST K 10").unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "line 1, column {}: expected",
            col("FROM docs NEAREST K 10", "K")
        )),
        "{e}"
    );
    assert!(e.is_user_error());
}

fn params(name: &str, v: &[f32]) -> BTreeMap<String, Vec<f32>> {
    [(name.to_owned(), v.to_vec())].into_iter().collect()
}

/// Proves the SQL a query lowers to, written out by hand from the rules
/// in `lower.rs`, for each metric; and that EF and EXACT override the
/// session's settings.
#[test]
fn lowering_to_sql() {
    let q = ok("FROM docs NEAREST $q K 10 WHERE tag IN (3, 7) AND meta.lang = 'en' EF 64");
    let out = to_sql(
        &q,
        Metric::L2,
        &params("q", &[0.5, -1.25]),
        &SearchSettings::default(),
    )
    .unwrap();
    assert_eq!(
        out.sql,
        "SELECT id, l2(vec, '[0.5,-1.25]') AS \"distance\", tag, metadata FROM \"docs\" \
         WHERE ((tag IN (3, 7)) AND (meta_get(metadata, 'lang') = 'en')) \
         ORDER BY l2(vec, '[0.5,-1.25]') LIMIT 10"
    );
    assert_eq!(
        out.settings,
        SearchSettings {
            ef_search: Some(64),
            exact: false
        }
    );
    let q = ok("SELECT id, meta.a.b FROM docs NEAREST [1, 2] K 3 \
         WHERE NOT (meta.n > 2.5 OR meta.ok = false) AND meta.t NOT IN ('x', 1) EXACT");
    let session = SearchSettings {
        ef_search: Some(100),
        exact: false,
    };
    let out = to_sql(&q, Metric::InnerProduct, &BTreeMap::new(), &session).unwrap();
    assert_eq!(
        out.sql,
        "SELECT id, meta_get(metadata, 'a', 'b') AS \"meta.a.b\" FROM \"docs\" \
         WHERE ((NOT ((meta_num(metadata, 'n') > 2.5) OR (meta_bool(metadata, 'ok') = false))) \
         AND (NOT (meta_get(metadata, 't') IN ('x') OR meta_num(metadata, 't') IN (1.0)))) \
         ORDER BY negative_inner_product(vec, '[1,2]') LIMIT 3"
    );
    assert_eq!(
        out.settings,
        SearchSettings {
            ef_search: Some(100),
            exact: true
        }
    );
    let out = to_sql(&q, Metric::Cosine, &BTreeMap::new(), &session).unwrap();
    assert!(
        out.sql
            .ends_with("ORDER BY cosine_distance(vec, '[1,2]') LIMIT 3")
    );
    // Strings cannot break out of their literal.
    let q = ok("FROM docs NEAREST [1] K 1 WHERE meta.x = 'a'' OR 1=1 --'");
    let out = to_sql(&q, Metric::L2, &BTreeMap::new(), &session).unwrap();
    assert!(
        out.sql
            .contains("(meta_get(metadata, 'x') = 'a'' OR 1=1 --')"),
        "{}",
        out.sql
    );
}

/// Proves parameter problems are reported as such, naming the parameter
/// and the component.
#[test]
fn parameter_errors() {
    let q = ok("FROM docs NEAREST $q K 1");
    let run =
        |p: &BTreeMap<String, Vec<f32>>| to_sql(&q, Metric::L2, p, &SearchSettings::default());
    assert!(matches!(
        run(&BTreeMap::new()),
        Err(DslError::Param(ParamError::Missing { name })) if name == "q"
    ));
    assert!(matches!(
        run(&params("q", &[])),
        Err(DslError::Param(ParamError::Empty { .. }))
    ));
    match run(&params("q", &[1.0, f32::NAN])) {
        Err(DslError::Param(ParamError::Component {
            name,
            component: 1,
            error: QuantizeErrorKind::NaN,
            ..
        })) => assert_eq!(name, "q"),
        other => panic!("{other:?}"),
    }
    let e = run(&params("q", &[40000.0])).unwrap_err();
    assert!(e.is_user_error());
    assert!(
        e.to_string()
            .starts_with("parameter $q, component 0 (40000)"),
        "{e}"
    );
}

/// Proves, on 20,000 pseudo-random token sequences (seeded; the seed is in
/// the message), that parsing never panics and fails only with a parse
/// error, and that every query that parses lowers to SQL that DataFusion's
/// SQL parser reads as exactly one statement (nothing in the text escapes
/// its literal).
#[test]
fn random_inputs_parse_or_fail_cleanly() {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser as SqlParser;

    const TOKENS: [&str; 48] = [
        "SELECT",
        "FROM",
        "NEAREST",
        "K",
        "EF",
        "EXACT",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "id",
        "tag",
        "metadata",
        "distance",
        "vec",
        "meta.lang",
        "meta.a.0",
        "docs",
        "x_1",
        "$q",
        "$",
        "[1, 2]",
        "[",
        "]",
        "[0.5,-1e3]",
        "(",
        ")",
        ",",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "'en'",
        "'O''x'",
        "'",
        "''",
        "10",
        "-3",
        "2.5",
        "true",
        "false",
        "--c\n",
        ";",
        "\"",
    ];
    let seed: u64 = 0x5641_4c4f_5249_0006;
    let mut state = seed;
    let mut next = |n: usize| -> usize {
        // SplitMix64: deterministic, no dependency.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    };
    let mut parsed = 0;
    for case in 0..20_000 {
        // Half the cases start like a query, so that deeper rules are hit.
        let mut text = if case % 2 == 0 {
            String::from("FROM docs NEAREST $q K 5 ")
        } else {
            String::new()
        };
        for _ in 0..next(12) {
            text.push_str(TOKENS[next(TOKENS.len())]);
            text.push(' ');
        }
        match parse(&text) {
            Ok(query) => {
                parsed += 1;
                let params = params("q", &[1.0, 2.0]);
                if let Ok(lowered) = to_sql(&query, Metric::L2, &params, &SearchSettings::default())
                {
                    let statements = SqlParser::parse_sql(&GenericDialect {}, &lowered.sql)
                        .unwrap_or_else(|e| {
                            panic!(
                                "seed {seed:#x} case {case}: {text:?} -> {}: {e}",
                                lowered.sql
                            )
                        });
                    assert_eq!(statements.len(), 1, "seed {seed:#x} case {case}: {text:?}");
                }
            }
            Err(DslError::Parse { line, column, .. }) => {
                assert!(line >= 1 && column >= 1, "seed {seed:#x} case {case}");
            }
            Err(other) => panic!("seed {seed:#x} case {case}: {text:?}: {other:?}"),
        }
    }
    // The generator reaches valid queries, not only errors.
    assert!(parsed > 100, "{parsed}");
}
