//! Btree indexes on scalar columns: `CREATE INDEX` builds one over the
//! rows a table holds and the state keeps it through every write; scans
//! and nearest-neighbour searches with a filter on an indexed column
//! read only the rows the index gives (EXPLAIN shows it) and answer
//! exactly what the filter selects, as computed here from the rows the
//! test generated; catalogs list the index under its name; `DROP INDEX`
//! removes it; the log and a snapshot rebuild it.

use std::sync::Arc;

use valori_engine::Engine;
use valori_query::write::WriteError;
use valori_query::{QueryEngine, QueryError};

use super::{block_on, cells, run, state_hash};

const ROWS: i64 = 3000;

/// Row `i`'s values: category `i % 50` (NULL when `i % 97 == 0`), label
/// `l{i % 200:03}`, score `(i * 7) % 1000 / 10`, and a 4-d vector.
fn category(i: i64) -> Option<i64> {
    (i % 97 != 0).then_some(i % 50)
}

fn label(i: i64) -> String {
    format!("l{:03}", i % 200)
}

fn score(i: i64) -> f64 {
    ((i * 7) % 1000) as f64 / 10.0
}

fn vector(i: i64) -> [i64; 4] {
    [(i * 13) % 31, (i * 17) % 29, (i * 5) % 23, i % 19]
}

/// `INSERT` statements for rows `from..to` of `table`.
fn inserts(table: &str, from: i64, to: i64) -> Vec<String> {
    let mut out = Vec::new();
    let ids: Vec<i64> = (from..to).collect();
    for chunk in ids.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|&i| {
                let c = category(i).map_or("NULL".to_owned(), |c| c.to_string());
                let v = vector(i);
                format!(
                    "({i}, '[{},{},{},{}]', {c}, '{}', {})",
                    v[0],
                    v[1],
                    v[2],
                    v[3],
                    label(i),
                    score(i)
                )
            })
            .collect();
        out.push(format!(
            "INSERT INTO {table} (id, embedding, category, label, score) VALUES {}",
            values.join(", ")
        ));
    }
    out
}

/// The ids (in order) of the query's rows.
async fn ids(q: &QueryEngine, sql: &str) -> Vec<i64> {
    cells(&run(q, sql).await.unwrap())
        .iter()
        .map(|c| c.parse().unwrap())
        .collect()
}

async fn explain(q: &QueryEngine, sql: &str) -> String {
    cells(&run(q, &format!("EXPLAIN {sql}")).await.unwrap()).join("\n")
}

/// Squared L2 distance from row `i`'s vector to `query`.
fn distance(i: i64, query: [i64; 4]) -> i64 {
    vector(i)
        .iter()
        .zip(query)
        .map(|(a, b)| (a - b) * (a - b))
        .sum()
}

#[test]
fn btree_indexes_answer_filters_and_follow_writes() {
    let dir = tempfile::tempdir().unwrap();
    let hash;
    // Live rows and their categories, as the writes below leave them.
    let mut live: Vec<(i64, Option<i64>)> = (0..ROWS).map(|i| (i, category(i))).collect();
    {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        block_on(async {
            run(
                &q,
                "CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(4), category int, label text, score double precision, note jsonb)",
            )
            .await
            .unwrap();
            for sql in inserts("items", 0, ROWS / 2) {
                run(&q, &sql).await.unwrap();
            }
            // Built over the rows the table holds, then kept.
            let (_, notices) = super::frameworks::run(&q, "CREATE INDEX ON items (category)")
                .await
                .unwrap();
            assert!(notices.is_empty(), "{notices:?}");
            run(&q, "CREATE INDEX by_label ON items USING btree (label)")
                .await
                .unwrap();
            run(&q, "CREATE INDEX IF NOT EXISTS by_label ON items (score)")
                .await
                .unwrap();
            run(&q, "CREATE INDEX ON items (score)").await.unwrap();
            for sql in inserts("items", ROWS / 2, ROWS) {
                run(&q, &sql).await.unwrap();
            }
            // Moved and deleted rows leave the index.
            run(&q, "UPDATE items SET category = 49 WHERE id < 40")
                .await
                .unwrap();
            run(&q, "DELETE FROM items WHERE id % 10 = 3")
                .await
                .unwrap();
            for (i, c) in &mut live {
                if *i < 40 {
                    *c = Some(49);
                }
            }
            live.retain(|(i, _)| i % 10 != 3);

            // The catalog lists them under their names.
            let listed = cells(
                &run(
                    &q,
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'items' ORDER BY indexname",
                )
                .await
                .unwrap(),
            );
            assert_eq!(
                listed,
                [
                    "by_label|CREATE INDEX by_label ON public.items USING btree (label)",
                    "items_category_idx|CREATE INDEX items_category_idx ON public.items USING btree (category)",
                    "items_embedding_idx|CREATE INDEX items_embedding_idx ON public.items USING hnsw (embedding vector_l2_ops)",
                    "items_pkey|CREATE UNIQUE INDEX items_pkey ON public.items USING btree (id)",
                    "items_score_idx|CREATE INDEX items_score_idx ON public.items USING btree (score)",
                ]
            );

            check_filters(&q, &live).await;

            // Refusals change nothing.
            let before = state_hash(&engine);
            type Is = fn(&WriteError) -> bool;
            let refused: [(&str, Is); 5] = [
                ("CREATE INDEX by_label ON items (score)", |e| {
                    matches!(e, WriteError::IndexExists(_))
                }),
                ("CREATE INDEX items_pkey ON items (score)", |e| {
                    matches!(e, WriteError::IndexExists(_))
                }),
                ("DROP INDEX nothing_here", |e| {
                    matches!(e, WriteError::UndefinedIndex(_))
                }),
                ("CREATE INDEX ON items (nothing)", |e| {
                    matches!(e, WriteError::UndefinedColumn(_))
                }),
                ("CREATE UNIQUE INDEX ON items (label)", |e| {
                    matches!(e, WriteError::Unsupported(_))
                }),
            ];
            for (sql, is) in refused {
                match run(&q, sql).await {
                    Err(QueryError::Write(e)) => assert!(is(&e), "{sql}: {e}"),
                    other => panic!("{sql}: {other:?}"),
                }
            }
            // A second index on a column, and one on a type without a
            // btree order here, build nothing.
            for sql in [
                "CREATE INDEX again ON items (category)",
                "CREATE INDEX ON items (note)",
            ] {
                let (_, notices) = super::frameworks::run(&q, sql).await.unwrap();
                assert_eq!(notices.len(), 1, "{sql}: {notices:?}");
            }
            run(&q, "DROP INDEX IF EXISTS nothing_here").await.unwrap();
            assert_eq!(state_hash(&engine), before);

            // A name given twice drops its index once.
            run(&q, "DROP INDEX by_label, by_label").await.unwrap();
            let plan = explain(&q, "SELECT id FROM items WHERE label = 'l007'").await;
            assert!(!plan.contains("index=["), "{plan}");
            assert_eq!(
                ids(&q, "SELECT id FROM items WHERE label = 'l007' ORDER BY id").await,
                expected(&live, |i, _| label(i) == "l007")
            );
        });
        hash = state_hash(&engine);
        engine.snapshot().unwrap();
        block_on(async {
            run(&q, "DELETE FROM items WHERE id = 1").await.unwrap();
        });
        live.retain(|(i, _)| *i != 1);
    }
    // From the snapshot and the log after it: the same indexes, answering
    // the same.
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert!(engine.recovery_report().snapshot.is_some());
    assert_ne!(state_hash(&engine), hash);
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        let plan = explain(&q, "SELECT id FROM items WHERE category = 7").await;
        assert!(plan.contains("index=[category]"), "{plan}");
        assert_eq!(
            ids(&q, "SELECT id FROM items WHERE category = 7 ORDER BY id").await,
            expected(&live, |_, c| c == Some(7))
        );
    });
}

/// The ids of `live` rows for which `keep(id, category)` holds.
fn expected(live: &[(i64, Option<i64>)], keep: impl Fn(i64, Option<i64>) -> bool) -> Vec<i64> {
    live.iter()
        .filter(|(i, c)| keep(*i, *c))
        .map(|(i, _)| *i)
        .collect()
}

/// Scans and searches filtered on indexed columns read through the
/// index and answer what the filter selects.
async fn check_filters(q: &QueryEngine, live: &[(i64, Option<i64>)]) {
    type Keep = Box<dyn Fn(i64, Option<i64>) -> bool>;
    let cases: Vec<(&str, &str, Keep)> = vec![
        ("category = 7", "category", Box::new(|_, c| c == Some(7))),
        ("7 = category", "category", Box::new(|_, c| c == Some(7))),
        ("category = 49", "category", Box::new(|_, c| c == Some(49))),
        (
            "category IN (3, 4, 60)",
            "category",
            Box::new(|_, c| matches!(c, Some(3 | 4))),
        ),
        (
            "category BETWEEN 10 AND 12",
            "category",
            Box::new(|_, c| c.is_some_and(|c| (10..=12).contains(&c))),
        ),
        (
            "category > 47",
            "category",
            Box::new(|_, c| c.is_some_and(|c| c > 47)),
        ),
        (
            "category <= 0",
            "category",
            Box::new(|_, c| c.is_some_and(|c| c <= 0)),
        ),
        ("category = 5000000000", "category", Box::new(|_, _| false)),
        ("category < -3", "category", Box::new(|_, _| false)),
        (
            "category = 7 AND label LIKE 'l1%'",
            "category",
            Box::new(|i, c| c == Some(7) && label(i).starts_with("l1")),
        ),
        (
            "category = 7 OR label = 'l013'",
            "category, label",
            Box::new(|i, c| c == Some(7) || label(i) == "l013"),
        ),
        (
            "label = 'l013'",
            "label",
            Box::new(|i, _| label(i) == "l013"),
        ),
        (
            "label >= 'l190' AND label < 'l192'",
            "label",
            Box::new(|i, _| ("l190".."l192").contains(&label(i).as_str())),
        ),
        ("score > 99.5", "score", Box::new(|i, _| score(i) > 99.5)),
        ("id = 42", "id", Box::new(|i, _| i == 42)),
        (
            "id IN (5, 13, 2999, 99999)",
            "id",
            Box::new(|i, _| [5, 13, 2999].contains(&i)),
        ),
    ];
    for (filter, columns, keep) in &cases {
        let sql = format!("SELECT id FROM items WHERE {filter} ORDER BY id");
        let plan = explain(q, &sql).await;
        assert!(
            plan.contains(&format!("index=[{columns}]")),
            "{filter}: {plan}"
        );
        assert_eq!(ids(q, &sql).await, expected(live, keep), "{filter}");
    }
    // Not answered from an index: evaluated on every row, same answer.
    for (filter, keep) in [
        (
            "category + 1 = 8",
            Box::new(|_: i64, c: Option<i64>| c == Some(7)) as Keep,
        ),
        ("category <> 7", Box::new(|_, c| c.is_some_and(|c| c != 7))),
        ("category IS NULL", Box::new(|_, c| c.is_none())),
    ] {
        let sql = format!("SELECT id FROM items WHERE {filter} ORDER BY id");
        let plan = explain(q, &sql).await;
        assert!(!plan.contains("index=["), "{filter}: {plan}");
        assert_eq!(ids(q, &sql).await, expected(live, keep), "{filter}");
    }
    // Nearest neighbours among the rows of one category: the prefilter
    // takes the rows from the index, and the answer is the exact nearest
    // computed here (ties by id).
    let query = [3, 20, 7, 11];
    for (filter, keep) in [
        (
            "category = 7",
            Box::new(|_: i64, c: Option<i64>| c == Some(7)) as Keep,
        ),
        (
            "category IN (1, 2) AND score < 50",
            Box::new(|i, c| matches!(c, Some(1 | 2)) && score(i) < 50.0),
        ),
    ] {
        let sql = format!(
            "SELECT id FROM items WHERE {filter} ORDER BY embedding <-> '[3,20,7,11]' LIMIT 10"
        );
        let plan = explain(q, &sql).await;
        assert!(
            plan.contains("ValoriKnnExec") && plan.contains("index=[category"),
            "{plan}"
        );
        let mut want: Vec<(i64, i64)> = live
            .iter()
            .filter(|(i, c)| keep(*i, *c))
            .map(|(i, _)| (distance(*i, query), *i))
            .collect();
        want.sort_unstable();
        let got = ids(q, &sql).await;
        assert_eq!(got.len(), 10);
        // Equal distances may order either way; the distances must match.
        let got_d: Vec<i64> = got.iter().map(|&i| distance(i, query)).collect();
        let want_d: Vec<i64> = want.iter().take(10).map(|(d, _)| *d).collect();
        assert_eq!(got_d, want_d, "{filter}");
        assert!(
            got.iter()
                .all(|&i| keep(i, live.iter().find(|(j, _)| *j == i).unwrap().1))
        );
    }
}

/// `CREATE INDEX name … USING hnsw` keeps its name (Django's
/// `HnswIndex(name=…)`): the catalogs list the HNSW index under it, a
/// second `CREATE INDEX` under the name is refused (`42P07`, a NOTICE
/// with `IF NOT EXISTS`), `DROP INDEX name` finds it and gives the graph
/// back its unnamed name, and searches answer throughout; the log alone
/// rebuilds the same state.
#[test]
fn hnsw_index_names_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    let names =
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'docs' ORDER BY indexname";
    block_on(async {
        for sql in [
            "CREATE TABLE docs (id int PRIMARY KEY, embedding vector(2))",
            "INSERT INTO docs VALUES (1, '[0,0]'), (2, '[3,4]')",
            "CREATE INDEX docs_hnsw ON docs USING hnsw (embedding vector_cosine_ops) WITH (m = 8)",
        ] {
            run(&q, sql).await.unwrap();
        }
        assert_eq!(
            cells(&run(&q, names).await.unwrap()),
            [
                "docs_hnsw|CREATE INDEX docs_hnsw ON public.docs USING hnsw (embedding vector_cosine_ops)",
                "docs_pkey|CREATE UNIQUE INDEX docs_pkey ON public.docs USING btree (id)",
            ]
        );
        let hash = state_hash(&engine);
        match run(
            &q,
            "CREATE INDEX docs_hnsw ON docs USING hnsw (embedding vector_cosine_ops)",
        )
        .await
        {
            Err(QueryError::Write(WriteError::IndexExists(_))) => {}
            other => panic!("{other:?}"),
        }
        run(
            &q,
            "CREATE INDEX IF NOT EXISTS docs_hnsw ON docs USING hnsw (embedding vector_cosine_ops)",
        )
        .await
        .unwrap();
        assert_eq!(state_hash(&engine), hash);
        let nearest = "SELECT id FROM docs ORDER BY embedding <=> '[3,4.1]' LIMIT 1";
        assert_eq!(cells(&run(&q, nearest).await.unwrap()), ["2"]);
        run(&q, "DROP INDEX docs_hnsw").await.unwrap();
        assert_eq!(
            cells(&run(&q, names).await.unwrap())[0],
            "docs_embedding_idx|CREATE INDEX docs_embedding_idx ON public.docs USING hnsw (embedding vector_cosine_ops)"
        );
        assert_eq!(cells(&run(&q, nearest).await.unwrap()), ["2"]);
        run(
            &q,
            "CREATE INDEX item_hnsw ON docs USING hnsw (embedding vector_cosine_ops)",
        )
        .await
        .unwrap();
    });
    let hash = state_hash(&engine);
    drop(q);
    drop(engine);
    let reopened = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(state_hash(&reopened), hash);
    let q = QueryEngine::new(reopened);
    block_on(async {
        assert_eq!(
            cells(
                &run(
                    &q,
                    "SELECT indexname FROM pg_indexes WHERE indexname = 'item_hnsw'"
                )
                .await
                .unwrap()
            ),
            ["item_hnsw"]
        );
    });
}
