//! pgvector's functions and operators over a table with declared columns:
//! `<+>` and the distance functions, the scalar functions on vectors,
//! vector arithmetic, `AVG` / `SUM` of vectors with `GROUP BY`, and the
//! errors for vectors of different dimensions. Expected values are worked
//! out by hand (in the comments) or computed here independently of the
//! code under test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use valori_engine::Engine;
use valori_query::session::Session;
use valori_query::statement::{Access, Outcome};
use valori_query::{QueryEngine, QueryError, datafusion};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn run(q: &QueryEngine, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let mut session = Session::default();
    let prepared = q.prepare(sql).await?;
    match q
        .run(&prepared, Vec::new(), &mut session, Access::ReadWrite)
        .await?
    {
        Outcome::Rows(rows) | Outcome::Returning { rows, .. } => Ok(rows.collect().await?.batches),
        _ => Ok(Vec::new()),
    }
}

/// Every row as `|`-joined cells in Arrow's display form (`NULL` shown).
fn cells(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

/// The rows of `sql`, which must succeed.
async fn rows(q: &QueryEngine, sql: &str) -> Vec<String> {
    match run(q, sql).await {
        Ok(batches) => cells(&batches),
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The error of `sql`, which must fail.
async fn error(q: &QueryEngine, sql: &str) -> String {
    match run(q, sql).await {
        Ok(batches) => panic!("{sql}: expected an error, got {:?}", cells(&batches)),
        Err(e) => e.to_string(),
    }
}

/// The vectors of the fixture, by id.
const VECTORS: [(u64, Option<i32>, [f32; 3]); 5] = [
    (1, Some(1), [1.0, 2.0, 3.0]),
    (2, Some(1), [4.0, 5.0, 6.0]),
    (3, Some(2), [0.0, 0.0, 1.0]),
    (4, Some(2), [-1.0, 0.5, 2.0]),
    (5, None, [2.0, 2.0, 2.0]),
];

/// pgvector's README table with a category and the rows of [`VECTORS`]
/// (ids 1 to 5; the last without a category).
fn fixture() -> (tempfile::TempDir, QueryEngine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(engine);
    block_on(async {
        rows(
            &q,
            "CREATE TABLE items (id bigserial PRIMARY KEY, category_id int, embedding vector(3))",
        )
        .await;
        for (_, category, v) in VECTORS {
            let category = category.map_or("NULL".to_owned(), |c| c.to_string());
            rows(
                &q,
                &format!(
                    "INSERT INTO items (category_id, embedding) VALUES ({category}, '[{},{},{}]')",
                    v[0], v[1], v[2]
                ),
            )
            .await;
        }
    });
    (dir, q)
}

/// L1 distance computed here, in `f64`, from the fixture's components
/// (all exact in binary).
fn l1(a: [f32; 3], b: [f32; 3]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, y)| (f64::from(x) - f64::from(y)).abs())
        .sum()
}

/// Proves `<+>` and `l1_distance` give the L1 distance over the stored
/// values (by hand: `[1,2,3]` to `[4,5,6]` is 3 + 3 + 3 = 9), order rows
/// by it (exactly, by a sort: the table's index is an L2 index), are NULL
/// for a NULL vector, and that `l2_distance` is `l2` by pgvector's name.
#[test]
fn l1_operator_and_distance_functions() {
    let (_dir, q) = fixture();
    block_on(async {
        assert_eq!(
            rows(
                &q,
                "SELECT '[1,2,3]' <+> '[4,5,6]' AS a, l1_distance('[1,2,3]', '[4,5,6]') AS b"
            )
            .await,
            ["9.0|9.0"]
        );
        // Every row against [3,1,2], in id order, computed independently.
        let query = [3.0, 1.0, 2.0];
        let expected: Vec<String> = VECTORS
            .iter()
            .map(|(id, _, v)| format!("{id}|{:?}", l1(*v, query)))
            .collect();
        assert_eq!(
            rows(
                &q,
                "SELECT id, embedding <+> '[3,1,2]' FROM items ORDER BY id"
            )
            .await,
            expected
        );
        // Nearest first by L1: [0,0,1] is 3 + 1 + 1 = 5 away, [-1,.5,2]
        // 4 + .5 + 0 = 4.5, [1,2,3] 2 + 1 + 1 = 4, [4,5,6] 1 + 4 + 4 = 9,
        // [2,2,2] 1 + 1 + 0 = 2.
        let order = "SELECT id FROM items ORDER BY embedding <+> '[3,1,2]' LIMIT 3";
        assert_eq!(rows(&q, order).await, ["5", "1", "4"]);
        // With an HNSW index (L2) on the column the answer is the same: the
        // index answers only its own metric, `<+>` is sorted exactly.
        rows(
            &q,
            "CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)",
        )
        .await;
        assert_eq!(rows(&q, order).await, ["5", "1", "4"]);
        // L2 order differs: [2,2,2] is √2 away, [1,2,3] √6, [0,0,1] √11,
        // [-1,.5,2] √18.25: so 5, 1, 3.
        assert_eq!(
            rows(
                &q,
                "SELECT id FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 3"
            )
            .await,
            ["5", "1", "3"]
        );
        // pgvector's function names: l2_distance is l2 (√(9+9+9) = √27).
        let d: f64 = rows(&q, "SELECT l2_distance('[1,2,3]', '[4,5,6]')").await[0]
            .parse()
            .unwrap();
        assert!((d - 27f64.sqrt()).abs() < 1e-12, "{d}");
        // NULL in, NULL out.
        assert_eq!(
            rows(&q, "SELECT embedding <+> NULL FROM items WHERE id = 1").await,
            ["NULL"]
        );
    });
}

/// Proves vectors of different dimensions are an error naming both
/// dimensions, as pgvector's "different vector dimensions 3 and 2", for
/// the operators and the functions.
#[test]
fn different_dimensions_are_errors() {
    let (_dir, q) = fixture();
    block_on(async {
        for sql in [
            "SELECT embedding <+> '[1,2]' FROM items",
            "SELECT embedding <-> '[1,2]' FROM items",
            "SELECT l1_distance(embedding, '[1,2]') FROM items",
        ] {
            let e = error(&q, sql).await;
            assert!(
                e.contains("different vector dimensions 3 and 2"),
                "{sql}: {e}"
            );
        }
    });
}

/// Proves the scalar functions on vectors against values worked out by
/// hand: dimensions, norms (|[3,4]| = 5, |[1,2,3]| = √14), normalization
/// ([3,4] / 5 = [0.6, 0.8]), pgvector's 1-based `subvector`, and NULL in
/// giving NULL out.
#[test]
fn scalar_functions() {
    let (_dir, q) = fixture();
    block_on(async {
        assert_eq!(
            rows(
                &q,
                "SELECT vector_dims(embedding), vector_dims('[1,2]') AS two FROM items WHERE id = 1"
            )
            .await,
            ["3|2"]
        );
        assert_eq!(
            rows(
                &q,
                "SELECT vector_norm('[3,4]') AS a, l2_norm('[3,4]'::vector) AS b"
            )
            .await,
            ["5.0|5.0"]
        );
        let norms = rows(
            &q,
            "SELECT id, vector_norm(embedding) FROM items ORDER BY id",
        )
        .await;
        let expected: Vec<String> = VECTORS
            .iter()
            .map(|(id, _, v)| {
                let n: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
                format!("{id}|{:?}", n.sqrt())
            })
            .collect();
        assert_eq!(norms, expected);
        assert_eq!(
            rows(
                &q,
                "SELECT l2_normalize('[3,4]') AS a, l2_normalize('[0,0]') AS b"
            )
            .await,
            ["[0.6, 0.8]|[0.0, 0.0]"]
        );
        assert_eq!(
            rows(&q, "SELECT subvector('[1,2,3,4,5]', 2, 3) AS a, subvector(embedding, 3, 1) AS b FROM items WHERE id = 2").await,
            ["[2.0, 3.0, 4.0]|[6.0]"]
        );
        assert_eq!(
            rows(&q, "SELECT vector_dims(NULL) AS a, vector_norm(NULL) AS b, l2_normalize(NULL) AS c, subvector(embedding, NULL, 2) AS d FROM items WHERE id = 1").await,
            ["NULL|NULL|NULL|NULL"]
        );
        let e = error(&q, "SELECT subvector('[1,2,3]', 4, 1)").await;
        assert!(e.contains("vector must have at least 1 dimension"), "{e}");
        let e = error(&q, "SELECT vector_dims(1)").await;
        assert!(e.contains("vector_dims: argument 1 has type Int64"), "{e}");
    });
}

/// Proves `+`, `-`, `*` and `||` on vectors are element-wise (and
/// concatenation) as in pgvector, on columns, on literals cast to
/// vector and through the function names; that two texts without a cast
/// stay texts; and that different dimensions are errors.
#[test]
fn vector_arithmetic() {
    let (_dir, q) = fixture();
    block_on(async {
        // Rows 1 and 2: [1,2,3] and [4,5,6].
        assert_eq!(
            rows(
                &q,
                "SELECT a.embedding + b.embedding, a.embedding - b.embedding, \
                 a.embedding * b.embedding, a.embedding || b.embedding \
                 FROM items a, items b WHERE a.id = 1 AND b.id = 2"
            )
            .await,
            ["[5.0, 7.0, 9.0]|[-3.0, -3.0, -3.0]|[4.0, 10.0, 18.0]|[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]"]
        );
        assert_eq!(
            rows(&q, "SELECT embedding + '[0.5,0.5,0.5]' AS a, '[1,1,1]' - embedding AS b FROM items WHERE id = 4").await,
            ["[-0.5, 1.0, 2.5]|[2.0, 0.5, -1.0]"]
        );
        assert_eq!(
            rows(&q, "SELECT '[1,2]'::vector || '[3]'::vector AS a, '[1.5,2]'::vector * '[2,-1]' AS b, vector_sub('[1]', '[3]') AS c, '[1]' || '[2]' AS d").await,
            ["[1.0, 2.0, 3.0]|[3.0, -2.0]|[-2.0]|[1][2]"]
        );
        // Results are vectors again: the distance of a sum.
        assert_eq!(
            rows(
                &q,
                "SELECT (embedding + embedding) <+> '[0,0,0]' FROM items WHERE id = 1"
            )
            .await,
            ["12.0"]
        );
        assert_eq!(
            rows(&q, "SELECT embedding + NULL FROM items WHERE id = 1").await,
            ["NULL"]
        );
        for sql in [
            "SELECT embedding + '[1,2]' FROM items",
            "SELECT embedding * '[1,2,3,4]'::vector FROM items",
            "SELECT '[1,2]'::vector - '[1]'::vector",
        ] {
            let e = error(&q, sql).await;
            assert!(e.contains("different vector dimensions"), "{sql}: {e}");
        }
    });
}

/// Proves `AVG` and `SUM` of vectors are element-wise with and without
/// `GROUP BY` (by hand: category 1 holds [1,2,3] and [4,5,6], so its
/// average is [2.5,3.5,4.5] and its sum [5,7,9]; category 2 holds
/// [0,0,1] and [-1,0.5,2]; the row without a category [2,2,2]), that a
/// group without rows gives NULL, that `AVG` and `SUM` of numbers are
/// unchanged, and that vectors of different dimensions are an error.
#[test]
fn vector_aggregates() {
    let (_dir, q) = fixture();
    block_on(async {
        assert_eq!(
            rows(
                &q,
                "SELECT category_id, AVG(embedding), SUM(embedding), COUNT(*) FROM items \
                 GROUP BY category_id ORDER BY category_id NULLS LAST"
            )
            .await,
            [
                "1|[2.5, 3.5, 4.5]|[5.0, 7.0, 9.0]|2",
                "2|[-0.5, 0.25, 1.5]|[-1.0, 0.5, 3.0]|2",
                "NULL|[2.0, 2.0, 2.0]|[2.0, 2.0, 2.0]|1",
            ]
        );
        // All five: sums [1+4+0-1+2, 2+5+0+0.5+2, 3+6+1+2+2] = [6, 9.5, 14],
        // averages those / 5 = [1.2, 1.9, 2.8].
        assert_eq!(
            rows(
                &q,
                "SELECT avg(embedding) AS a, sum(embedding) AS s FROM items"
            )
            .await,
            ["[1.2, 1.9, 2.8]|[6.0, 9.5, 14.0]"]
        );
        // No row: NULL, as in pgvector.
        assert_eq!(
            rows(
                &q,
                "SELECT AVG(embedding) AS a, SUM(embedding) AS s FROM items WHERE id > 100"
            )
            .await,
            ["NULL|NULL"]
        );
        // Numbers as before: ids 1..5 sum to 15, average 3; categories
        // 1, 1, 2, 2 (NULL skipped) average 1.5.
        assert_eq!(
            rows(
                &q,
                "SELECT SUM(id) AS s, AVG(id) AS a, AVG(category_id) AS c FROM items"
            )
            .await,
            ["15|3.0|1.5"]
        );
        // The average is a vector again: its distance to [2.5,3.5,4.5] is 0.
        assert_eq!(
            rows(
                &q,
                "SELECT AVG(embedding) <-> '[2.5,3.5,4.5]' FROM items WHERE category_id = 1"
            )
            .await,
            ["0.0"]
        );
        // As a window over each category.
        assert_eq!(
            rows(
                &q,
                "SELECT id, AVG(embedding) OVER (PARTITION BY category_id) FROM items \
                 WHERE category_id = 1 ORDER BY id"
            )
            .await,
            ["1|[2.5, 3.5, 4.5]", "2|[2.5, 3.5, 4.5]"]
        );
        let e = error(
            &q,
            "SELECT AVG(v) FROM (SELECT embedding AS v FROM items \
             UNION ALL SELECT subvector(embedding, 1, 2) FROM items) t",
        )
        .await;
        // The two inputs of the union may meet in either order.
        assert!(
            e.contains("avg: different vector dimensions 3 and 2")
                || e.contains("avg: different vector dimensions 2 and 3"),
            "{e}"
        );
        let e = error(&q, "SELECT AVG('text')").await;
        assert!(e.contains("avg(Utf8) is not supported"), "{e}");
    });
}

/// Proves the casts of a vector to arrays: `::real[]` gives the `f32`
/// components in a field typed `real[]` for the Postgres front end (not
/// `vector`), `::float8[]` / `::double precision[]` the components as
/// `f64`, `::vector` of an array is a vector again, and `::halfvec`
/// keeps the values.
#[test]
fn casts_to_arrays() {
    let (_dir, q) = fixture();
    block_on(async {
        let batches = run(&q, "SELECT embedding::real[] AS r, embedding::float8[] AS d, embedding::double precision[] AS p FROM items WHERE id = 4")
            .await
            .unwrap();
        assert_eq!(
            cells(&batches),
            ["[-1.0, 0.5, 2.0]|[-1.0, 0.5, 2.0]|[-1.0, 0.5, 2.0]"]
        );
        let schema = batches[0].schema();
        assert_eq!(
            schema
                .field(0)
                .metadata()
                .get("valori.pg_type")
                .map(String::as_str),
            Some("_float4")
        );
        assert!(matches!(schema.field(1).data_type(),
            datafusion::arrow::datatypes::DataType::List(item) if item.data_type() == &datafusion::arrow::datatypes::DataType::Float64));
        // [1,2,3] to [-1,0.5,2]: L1 2 + 1.5 + 1 = 4.5.
        assert_eq!(
            rows(
                &q,
                "SELECT ARRAY[1,2,3]::vector <+> embedding FROM items WHERE id = 4"
            )
            .await,
            ["4.5"]
        );
        assert_eq!(
            rows(
                &q,
                "SELECT vector_dims(embedding::real[]) FROM items WHERE id = 1"
            )
            .await,
            ["3"]
        );
        // halfvec is stored as Q16.16 like vector: its casts keep the
        // values ([1,2,3] to [-1,0.5,2] is 4.5 by L1 again).
        assert_eq!(
            rows(
                &q,
                "SELECT '[1,2,3]'::halfvec(3) <+> embedding::halfvec FROM items WHERE id = 4"
            )
            .await,
            ["4.5"]
        );
    });
}

/// Proves the casts between vectors and arrays follow pgvector's
/// (its `test/expected/cast.out`): `numeric[]`, `integer[]` and
/// decimal arrays become vectors (`ARRAY[1,2,3]::numeric[]::vector` is
/// `[1,2,3]`, and `'{1.5,2}'::numeric[]::vector` keeps the fraction), a
/// vector becomes `real[]` (`'[1,2,3]'::vector::real[]` is `{1,2,3}`) and,
/// beyond pgvector, `double precision[]`; pgvector defines no cast of a
/// vector to `integer[]`, `bigint[]` or `numeric[]` (PostgreSQL answers
/// `cannot cast type vector to integer[]`), so those are refused with
/// that message rather than rounded by a rule of Valori's own.
#[test]
fn casts_between_vectors_and_arrays_follow_pgvector() {
    let (_dir, q) = fixture();
    block_on(async {
        assert_eq!(
            rows(
                &q,
                "SELECT ARRAY[1,2,3]::numeric[]::vector AS a, ARRAY[1.0,2.0,3.0]::vector AS b, ARRAY[1,2,3]::integer[]::vector AS c"
            )
            .await,
            ["[1.0, 2.0, 3.0]|[1.0, 2.0, 3.0]|[1.0, 2.0, 3.0]"]
        );
        assert_eq!(
            rows(&q, "SELECT '{1.5,2}'::numeric[]::vector").await,
            ["[1.5, 2.0]"]
        );
        assert_eq!(
            rows(
                &q,
                "SELECT '[1,2,3]'::vector::real[] AS r, '[1,2,3]'::vector::float8[] AS d"
            )
            .await,
            ["[1.0, 2.0, 3.0]|[1.0, 2.0, 3.0]"]
        );
        for (sql, target) in [
            ("SELECT '[1,2,3]'::vector::integer[]", "integer[]"),
            ("SELECT '[1.5,2.5]'::vector::int[]", "integer[]"),
            ("SELECT embedding::integer[] FROM items", "integer[]"),
            ("SELECT embedding::bigint[] FROM items", "bigint[]"),
            ("SELECT embedding::numeric[] FROM items", "numeric[]"),
            ("SELECT '[1,2,3]'::vector::numeric[]", "numeric[]"),
        ] {
            let e = error(&q, sql).await;
            assert!(
                e.contains(&format!("cannot cast type vector to {target}")),
                "{sql}: {e}"
            );
        }
        // A `real[]` is not a vector: it casts to `integer[]` as arrays do.
        assert_eq!(
            rows(&q, "SELECT '{1,2,3}'::real[]::integer[]").await,
            ["[1, 2, 3]"]
        );
    });
}

/// A vector literal selected through a cast is read and checked as a
/// vector, not returned as its text: `'[1.,2.,3.]'::vector` is the vector
/// [1, 2, 3] (its components the Q16.16 values: 0.5 and 0.25 are exact),
/// and a text that is not a vector, or holds NaN, is an error naming the
/// problem, as pgvector answers; `::vector(n)` checks the dimension.
#[test]
fn a_selected_vector_cast_reads_the_vector() {
    let (_dir, q) = fixture();
    block_on(async {
        let got = rows(
            &q,
            "SELECT '[1.,2.,3.]'::vector, ' [ 0.5, -0.25 ] '::vector AS v",
        )
        .await;
        assert_eq!(got, ["[1.0, 2.0, 3.0]|[0.5, -0.25]"]);
        for bad in ["[hello,1]", "[NaN,1]", "[]", "1,2"] {
            let e = error(&q, &format!("SELECT '{bad}'::vector")).await;
            assert!(!e.is_empty(), "{bad}");
        }
        // `vector(n)` also checks the dimension, in pgvector's words.
        let got = rows(&q, "SELECT '[1,2]'::vector(2)").await;
        assert_eq!(got, ["[1.0, 2.0]"]);
        let e = error(&q, "SELECT '[1,2]'::vector(3)").await;
        assert!(e.contains("expected 3 dimensions, not 2"), "{e}");
        // In a distance, the cast is read by the function as before.
        let got = rows(&q, "SELECT l2('[3,4]'::vector, '[0,0]'::vector)").await;
        assert_eq!(got, ["5.0"]);
        // `halfvec` is read as a vector too (stored as Q16.16 alike), and
        // an array with no element, a NULL or NaN is no vector.
        let got = rows(
            &q,
            "SELECT '{1,2,3}'::real[]::halfvec, ARRAY[1,2]::halfvec(2)",
        )
        .await;
        assert_eq!(got, ["[1.0, 2.0, 3.0]|[1.0, 2.0]"]);
        for (bad, expected) in [
            ("'{}'::real[]::vector", "at least 1 dimension"),
            ("'{}'::real[]::halfvec", "at least 1 dimension"),
            (
                "'{1,2,3}'::real[]::halfvec(2)",
                "expected 2 dimensions, not 3",
            ),
            ("'{NULL}'::real[]::halfvec", "NULL"),
            ("'{NaN}'::real[]::halfvec", "NaN"),
        ] {
            let e = error(&q, &format!("SELECT {bad}")).await;
            assert!(e.contains(expected), "{bad}: {e}");
        }
    });
}

/// Proves `::text` of a vector is pgvector's text form (`[-1,0.5,2]`,
/// as written, the components being exact in Q16.16), of a `real[]` the
/// Postgres array form, of a timestamp Postgres's text, and of other
/// types what DataFusion's cast gives;
/// a vector compared through its text finds its row.
#[test]
fn casts_to_text() {
    let (_dir, q) = fixture();
    block_on(async {
        assert_eq!(
            rows(
                &q,
                "SELECT embedding::text AS t, CAST(embedding AS varchar) AS v, embedding::halfvec::text AS h, embedding::real[]::text AS a, category_id::text FROM items WHERE id = 4"
            )
            .await,
            ["[-1,0.5,2]|[-1,0.5,2]|[-1,0.5,2]|{-1,0.5,2}|2"]
        );
        assert_eq!(
            rows(&q, "SELECT category_id::text FROM items WHERE id = 5").await,
            ["NULL"]
        );
        assert_eq!(
            rows(
                &q,
                "SELECT id FROM items WHERE embedding::text = '[-1,0.5,2]'"
            )
            .await,
            ["4"]
        );
        assert_eq!(
            rows(&q, "SELECT '[1,2,3]'::vector::text, 7::text, NULL::text").await,
            ["[1,2,3]|7|NULL"]
        );
        // Timestamps as Postgres prints them (a timestamptz in UTC).
        rows(&q, "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz)").await;
        rows(&q, "INSERT INTO ev VALUES (1, '2024-01-02 04:04:05+01:00')").await;
        assert_eq!(
            rows(
                &q,
                "SELECT CAST(TIMESTAMP '2024-01-02 03:04:05.25' AS text) AS a, at::text FROM ev"
            )
            .await,
            ["2024-01-02 03:04:05.25|2024-01-02 03:04:05+00"]
        );
    });
}

/// A vector compared with a text literal, as pgvector's btree operators
/// compare: `=` and `<>` component by component (the literal rounded to
/// Q16.16 as a stored vector is, so a vector equals the text it was
/// written from), `<` / `>` in order of the components; a NULL vector
/// compares to nothing; a literal of another dimension is an error; a
/// text column compared with the same text is still text.
#[test]
fn vectors_compare_with_text_literals() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(engine);
    block_on(async {
        rows(
            &q,
            "CREATE TABLE t (id int PRIMARY KEY, val vector(3), note text)",
        )
        .await;
        rows(
            &q,
            "INSERT INTO t VALUES (1, '[1,2,3]', '[1,2,3]'), (2, '[0,0,0]', 'x'), (3, NULL, NULL), \
             (4, '[1,2,4]', 'y'), (5, '[1.23456,0,0]', 'z')",
        )
        .await;
        let ids = |sql: &'static str| {
            let q = &q;
            async move { rows(q, sql).await }
        };
        assert_eq!(
            ids("SELECT id FROM t WHERE val = '[1,2,3]' ORDER BY id").await,
            ["1"]
        );
        assert_eq!(
            ids("SELECT id FROM t WHERE '[1,2,3]' = val ORDER BY id").await,
            ["1"]
        );
        assert_eq!(
            ids("SELECT id FROM t WHERE val <> '[1,2,3]' ORDER BY id").await,
            ["2", "4", "5"]
        );
        // [0,0,0] < [1,2,3] < [1,2,4] and [1.23456,0,0] > [1,2,4] by the
        // first component.
        assert_eq!(
            ids("SELECT id FROM t WHERE val < '[1,2,4]' ORDER BY id").await,
            ["1", "2"]
        );
        assert_eq!(
            ids("SELECT id FROM t WHERE val > '[1,2,4]' ORDER BY id").await,
            ["5"]
        );
        assert_eq!(
            ids("SELECT id FROM t WHERE val = '[1.23456,0,0]'::vector ORDER BY id").await,
            ["5"]
        );
        assert_eq!(ids("SELECT id FROM t WHERE note = '[1,2,3]'").await, ["1"]);
        let e = error(&q, "SELECT id FROM t WHERE val = '[1,2]'").await;
        assert!(e.contains("different vector dimensions 3 and 2"), "{e}");
        let e = error(&q, "SELECT id FROM t WHERE val = 'hello'").await;
        assert!(e.contains("is not a vector"), "{e}");
        let e = error(&q, "SELECT id FROM t WHERE val = '[NaN,1,2]'").await;
        assert!(e.contains("NaN"), "{e}");
    });
}

/// Comparisons of vectors written as literals compare vectors, as
/// pgvector orders them (its `test/expected/vector_type.out`): component
/// by component, then the shorter vector first; not their text, where
/// `'[1,2,3]' < '[1,2]'` would hold (`,` sorts before `]`).
#[test]
fn vector_literals_compare_as_vectors() {
    let (_dir, q) = fixture();
    block_on(async {
        for (sql, expected) in [
            ("SELECT '[1,2,3]'::vector < '[1,2]'", "false"),
            ("SELECT '[1,2,3]'::vector <= '[1,2]'", "false"),
            ("SELECT '[1,2,3]'::vector >= '[1,2]'", "true"),
            ("SELECT '[1,2,3]'::vector > '[1,2]'", "true"),
            ("SELECT '[1,2,3]'::vector = '[1,2,3]'", "true"),
            ("SELECT '[1,2,3]'::vector <> '[1,2,3]'", "false"),
            ("SELECT '[1,2]'::vector < '[1,3]'::vector", "true"),
            ("SELECT '[10]'::vector > '[9,9]'", "true"),
        ] {
            assert_eq!(rows(&q, sql).await, [expected], "{sql}");
        }
    });
}
