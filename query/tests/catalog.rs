//! The Postgres catalog through the query layer: the introspection queries
//! of real clients (psql 15's `\dt` and `\d table`, SQLAlchemy 2's
//! PostgreSQL dialect, psycopg's `TypeInfo.fetch` as pgvector-python's
//! `register_vector` calls it, asyncpg's type lookup by name,
//! tokio-postgres's type lookup), copied from those clients, planned and
//! run like any other query. Their answers are checked against facts known
//! independently of the catalog code: the tables created here and their
//! columns, pgvector's type name, Postgres's OIDs for its built-in types.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;
use valori_core::distance::Metric;
use valori_core::event::{CollectionConfig, CollectionName, Event, IndexParams};
use valori_engine::Engine;
use valori_query::correlated::CORRELATED_ROWS_MAX;
use valori_query::settings::SearchSettings;
use valori_query::{QueryEngine, QueryError, datafusion};

/// pgvector's `vector` type OID as the Postgres front end sends it.
const VECTOR_OID: &str = "50001";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

struct Db {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    query: QueryEngine,
}

/// An engine with the tables `docs` (dimension 3) and `zeta` (dimension 2).
fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    for (name, dim) in [("docs", 3), ("zeta", 2)] {
        create(&engine, name, dim, Metric::L2);
    }
    let query = QueryEngine::new(Arc::clone(&engine));
    Db {
        _dir: dir,
        engine,
        query,
    }
}

fn create(engine: &Engine, name: &str, dim: u32, metric: Metric) {
    engine
        .submit(Event::CreateCollection {
            name: CollectionName::new(name).unwrap(),
            config: CollectionConfig {
                dim,
                metric,
                index: IndexParams::default(),
            },
        })
        .unwrap();
}

/// Runs `sql` as the Postgres front end does (pgvector and catalog syntax
/// rewritten first), with `params` for `$1`, `$2`, …
/// Runs a statement through the statement layer, which rewrites the
/// catalog syntax and pgvector's operators on the syntax tree.
fn run(db: &Db, sql: &str, params: Vec<ScalarValue>) -> Result<Vec<Vec<String>>, QueryError> {
    let out = block_on(
        db.query
            .execute_with_params(sql, params, &SearchSettings::default()),
    )?;
    Ok(rows(&out.batches))
}

fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_owned()))
}

/// Every value as text (NULL as `NULL`).
fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    out
}

/// Proves `version()`, spelled as SQLAlchemy spells it, returns one row
/// that SQLAlchemy's own version pattern reads as 16.x (the pattern is
/// `PostgreSQL (\d+)\.?(\d+)?`), and that the other session functions
/// answer.
#[test]
fn version_and_session_functions() {
    let db = db();
    let got = run(&db, "select pg_catalog.version()", vec![]).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let version = &got[0][0];
    let rest = version.strip_prefix("PostgreSQL 16.").unwrap();
    assert!(rest.starts_with(|c: char| c.is_ascii_digit()), "{version}");
    assert!(version.contains("Valori"), "{version}");
    assert_eq!(run(&db, "select version()", vec![]).unwrap(), got);
    assert_eq!(
        run(&db, "select current_schema()", vec![]).unwrap(),
        vec![vec!["public".to_owned()]]
    );
    assert_eq!(
        run(
            &db,
            "select current_database(), pg_catalog.current_schemas(true)",
            vec![]
        )
        .unwrap(),
        vec![vec!["valori".to_owned(), "[pg_catalog, public]".to_owned()]]
    );
    assert_eq!(
        run(&db, "select current_setting('server_version_num')", vec![]).unwrap(),
        vec![vec!["160006".to_owned()]]
    );
}

/// psql 15's `\dt` query (from `psql -E`): the two tables created, in
/// name order, as tables owned by the one role.
#[test]
fn psql_list_tables() {
    let db = db();
    let sql = r#"SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;"#;
    let got = run(&db, sql, vec![]).unwrap();
    let want: Vec<Vec<String>> = ["docs", "zeta"]
        .iter()
        .map(|t| {
            ["public", t, "table", "valori"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        })
        .collect();
    assert_eq!(got, want);
}

/// The queries psql 15 runs for `\d docs` (from `psql -E`), in order,
/// each fed the OID the first one found: the table is found by its
/// regular expression, its flags read, and its columns come back with
/// their SQL types, `vector(3)` for the vector column; the footer queries
/// (statistics, inheritance, policies, publications) plan and find
/// nothing.
#[test]
fn psql_describe_table() {
    let db = db();
    let find = r#"SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(docs)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3;"#;
    let found = run(&db, find, vec![]).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0][1..], ["public".to_owned(), "docs".to_owned()]);
    let oid = found[0][0].clone();
    // The pattern is a regular expression, anchored: `do` finds nothing.
    assert!(
        run(&db, &find.replace("^(docs)$", "^(do)$"), vec![])
            .unwrap()
            .is_empty()
    );

    let info = format!(
        r#"SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, '', c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, am.amname
FROM pg_catalog.pg_class c
 LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)
LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)
WHERE c.oid = '{oid}';"#
    );
    let got = run(&db, &info, vec![]).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0][1], "r", "relkind of a table");

    let columns = psql_columns_query(&oid);
    let got = run(&db, &columns, vec![]).unwrap();
    let names_types: Vec<(String, String)> =
        got.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    assert!(
        names_types.contains(&("id".into(), "bigint".into())),
        "{got:?}"
    );
    assert!(
        names_types.contains(&("vec".into(), "vector(3)".into())),
        "{got:?}"
    );
    assert!(
        names_types.contains(&("tag".into(), "bigint".into())),
        "{got:?}"
    );
    assert!(
        names_types.contains(&("metadata".into(), "bytea".into())),
        "{got:?}"
    );
    assert_eq!(names_types[0].0, "id", "columns in table order");

    let policy = format!(
        r#"SELECT pol.polname, pol.polpermissive,
  CASE WHEN pol.polroles = '{{0}}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
  pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),
  CASE pol.polcmd
    WHEN 'r' THEN 'SELECT'
    WHEN 'a' THEN 'INSERT'
    WHEN 'w' THEN 'UPDATE'
    WHEN 'd' THEN 'DELETE'
    END AS cmd
FROM pg_catalog.pg_policy pol
WHERE pol.polrelid = '{oid}' ORDER BY 1;"#
    );
    let publications = format!(
        r#"SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
WHERE pc.oid ='{oid}' and pg_catalog.pg_relation_is_publishable('{oid}')
UNION
SELECT pubname
     , pg_get_expr(pr.prqual, c.oid)
     , (CASE WHEN pr.prattrs IS NOT NULL THEN
         (SELECT string_agg(attname, ', ')
           FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,
                pg_catalog.pg_attribute
          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])
        ELSE NULL END) FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
WHERE pr.prrelid = '{oid}'
UNION
SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('{oid}')
ORDER BY 1;"#
    );
    let footers = [
        format!(
            r#"SELECT oid, stxrelid::pg_catalog.regclass, stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, stxname,
pg_catalog.pg_get_statisticsobjdef_columns(oid) AS columns,
  'd' = any(stxkind) AS ndist_enabled,
  'f' = any(stxkind) AS deps_enabled,
  'm' = any(stxkind) AS mcv_enabled,
stxstattarget
FROM pg_catalog.pg_statistic_ext
WHERE stxrelid = '{oid}'
ORDER BY nsp, stxname;"#
        ),
        format!(
            r#"SELECT c.oid::pg_catalog.regclass
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhparent AND i.inhrelid = '{oid}'
  AND c.relkind != 'p' AND c.relkind != 'I'
ORDER BY inhseqno;"#
        ),
        format!(
            r#"SELECT c.oid::pg_catalog.regclass, c.relkind, inhdetachpending, pg_catalog.pg_get_expr(c.relpartbound, c.oid)
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhrelid AND i.inhparent = '{oid}'
ORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.oid::pg_catalog.regclass::pg_catalog.text;"#
        ),
    ];
    for footer in &footers {
        match run(&db, footer, vec![]) {
            Ok(rows) => assert!(rows.is_empty(), "{footer}: {rows:?}"),
            Err(e) => panic!("{footer}\nfailed: {e}"),
        }
    }
    // The policies footer correlates its subquery through
    // `oid = any(pol.polroles)`, and the publications footer calls
    // `generate_series` with a column of the enclosing query: neither is
    // a join DataFusion can make, both are evaluated per row, and with no
    // policy and no publication both answer no rows.
    for footer in [&policy, &publications] {
        match run(&db, footer, vec![]) {
            Ok(rows) => assert!(rows.is_empty(), "{footer}: {rows:?}"),
            Err(e) => panic!("{footer}\nfailed: {e}"),
        }
    }
}

/// Scalar subqueries correlated by something other than equality, or
/// under `CASE`, are evaluated per outer row, with values checked by
/// hand: for x in 1..=4 over a table holding 1, 2, 3, 4, the count of
/// smaller values is x − 1 and the largest smaller value is x − 1 (NULL
/// for 1); a subquery that may return two rows is an error, and
/// `generate_series` reads an outer column inside one.
#[test]
fn correlated_subqueries_are_evaluated_per_row() {
    let db = db();
    let values = "(SELECT generate_series AS x FROM generate_series(1, 4))";
    let got = run(
        &db,
        &format!(
            "SELECT a.x, (SELECT count(*) FROM {values} b WHERE b.x < a.x), \
                    (SELECT max(b.x) FROM {values} b WHERE b.x < a.x) \
             FROM {values} a ORDER BY a.x"
        ),
        vec![],
    )
    .unwrap();
    assert_eq!(
        got,
        [
            ["1", "0", "NULL"],
            ["2", "1", "1"],
            ["3", "2", "2"],
            ["4", "3", "3"]
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );
    // Under CASE, and in a filter: values whose smaller values sum to more
    // than 2 (x = 3: 1 + 2; x = 4: 1 + 2 + 3).
    let got = run(
        &db,
        &format!(
            "SELECT a.x, CASE WHEN a.x > 2 THEN (SELECT sum(b.x) FROM {values} b WHERE b.x < a.x) END \
             FROM {values} a \
             WHERE (SELECT sum(b.x) FROM {values} b WHERE b.x < a.x) > 2 ORDER BY a.x"
        ),
        vec![],
    )
    .unwrap();
    assert_eq!(
        got,
        [["3", "3"], ["4", "6"]].map(|r| r.map(str::to_owned).to_vec())
    );
    // A subquery that may return several rows where one value is wanted
    // is refused (Postgres fails when it does).
    let e = run(
        &db,
        &format!(
            "SELECT (SELECT b.x FROM {values} b WHERE b.x > a.x ORDER BY 1 LIMIT 2) FROM {values} a"
        ),
        vec![],
    )
    .unwrap_err();
    assert!(e.to_string().contains("at most one row"), "{e}");
    // Past CORRELATED_ROWS_MAX outer rows the query fails, naming it.
    let e = run(
        &db,
        "SELECT a.x, (SELECT count(*) FROM (SELECT 1 AS y) b WHERE b.y < a.x) \
         FROM (SELECT unnest(range(0, 2001)) AS x) a",
        vec![],
    )
    .unwrap_err();
    assert!(
        e.to_string().contains(&CORRELATED_ROWS_MAX.to_string()),
        "{e}"
    );
    // A function in FROM names its one column after its alias, as in
    // Postgres: 1 + 2 + 3 = 6, (10 + 20) / 2 = 15.
    let got = run(&db, "SELECT sum(s) FROM generate_series(1, 3) s", vec![]).unwrap();
    assert_eq!(got, [["6"]].map(|r| r.map(str::to_owned).to_vec()));
    let got = run(&db, "SELECT avg(v) FROM unnest(ARRAY[10, 20]) v", vec![]).unwrap();
    assert_eq!(got, [["15.0"]].map(|r| r.map(str::to_owned).to_vec()));
    // A series as long as the outer value: 1 + … + x.
    let got = run(
        &db,
        &format!(
            "SELECT a.x, CASE WHEN a.x > 0 THEN \
               (SELECT sum(s) FROM pg_catalog.generate_series(1, a.x) s) END \
             FROM {values} a ORDER BY a.x"
        ),
        vec![],
    )
    .unwrap();
    assert_eq!(
        got,
        [["1", "1"], ["2", "3"], ["3", "6"], ["4", "10"]].map(|r| r.map(str::to_owned).to_vec())
    );
}

/// psycopg's `TypeInfo.fetch` query (psycopg/_typeinfo.py, with
/// `to_regtype(%(name)s)` bound server-side as `$1`), which
/// pgvector-python's `register_vector` runs for `vector`, `bit`,
/// `halfvec` and `sparsevec`: `vector` is found with its fixed OID and
/// array type, `bit` with Postgres's OIDs (1560, array 1561), the types
/// Valori lacks are not found.
#[test]
fn psycopg_type_info() {
    let db = db();
    let sql = "SELECT
    typname AS name, oid, typarray AS array_oid,
    oid::regtype::text AS regtype, typdelim AS delimiter
FROM pg_type t
WHERE t.oid = to_regtype($1)
ORDER BY t.oid
";
    assert_eq!(
        run(&db, sql, vec![text("vector")]).unwrap(),
        vec![vec![
            "vector".to_owned(),
            VECTOR_OID.to_owned(),
            "50002".to_owned(),
            "vector".to_owned(),
            ",".to_owned()
        ]]
    );
    assert_eq!(
        run(&db, sql, vec![text("bit")]).unwrap(),
        vec![vec![
            "bit".to_owned(),
            "1560".to_owned(),
            "1561".to_owned(),
            "bit".to_owned(),
            ",".to_owned()
        ]]
    );
    for missing in ["halfvec", "sparsevec", "hstore"] {
        assert!(run(&db, sql, vec![text(missing)]).unwrap().is_empty());
    }
}

/// asyncpg's `TYPE_BY_NAME` (asyncpg/introspection.py), which
/// `set_type_codec('vector')` runs: `vector` in `public` is a base type
/// (`b`) that is not an array (element 0); in `pg_catalog` it is absent.
#[test]
fn asyncpg_type_by_name() {
    let db = db();
    let sql = "SELECT
    t.oid,
    t.typelem     AS elemtype,
    t.typtype     AS kind
FROM
    pg_catalog.pg_type AS t
    INNER JOIN pg_catalog.pg_namespace ns ON (ns.oid = t.typnamespace)
WHERE
    t.typname = $1 AND ns.nspname = $2
";
    assert_eq!(
        run(&db, sql, vec![text("vector"), text("public")]).unwrap(),
        vec![vec![VECTOR_OID.to_owned(), "0".to_owned(), "b".to_owned()]]
    );
    assert!(
        run(&db, sql, vec![text("vector"), text("pg_catalog")])
            .unwrap()
            .is_empty()
    );
}

/// tokio-postgres's `TYPEINFO_QUERY` (tokio-postgres/src/prepare.rs) for
/// the vector OID: name `vector`, base type, no element, schema `public`;
/// and `typtype` is a `"char"` column (tokio-postgres reads it as `i8`).
#[test]
fn tokio_postgres_type_info() {
    let db = db();
    let sql = "\
SELECT t.typname, t.typtype, t.typelem, r.rngsubtype, t.typbasetype, n.nspname, t.typrelid
FROM pg_catalog.pg_type t
LEFT OUTER JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid
INNER JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid
WHERE t.oid = $1
";
    let got = run(&db, sql, vec![ScalarValue::UInt32(Some(50_001))]).unwrap();
    assert_eq!(
        got,
        vec![vec![
            "vector".to_owned(),
            "b".to_owned(),
            "0".to_owned(),
            "NULL".to_owned(),
            "0".to_owned(),
            "public".to_owned(),
            "0".to_owned()
        ]]
    );
    let prepared = block_on(db.query.prepare(sql)).unwrap();
    let plan_fields: Vec<_> = prepared
        .schema()
        .fields()
        .iter()
        .map(|f| (f.data_type().clone(), f.metadata().clone()))
        .collect();
    assert_eq!(plan_fields[2].0, DataType::UInt32, "typelem is an oid");
    assert_eq!(
        plan_fields[1]
            .1
            .get(valori_query::catalog::PG_TYPE_METADATA_KEY),
        Some(&"char".to_owned()),
        "typtype is a \"char\""
    );
}

/// SQLAlchemy 2's PostgreSQL dialect (as it sent them to this server
/// through psycopg, `%(x)s` bound as `$n`): `get_table_names` lists both
/// tables, `has_table` finds `docs` and not `nope`.
#[test]
fn sqlalchemy_reflection() {
    let db = db();
    let names = "SELECT pg_catalog.pg_class.relname 
FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace 
WHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1::VARCHAR, $2::VARCHAR]) AND pg_catalog.pg_class.relpersistence != $3::VARCHAR AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != $4::VARCHAR";
    let mut got = run(
        &db,
        names,
        vec![text("r"), text("p"), text("t"), text("pg_catalog")],
    )
    .unwrap();
    got.sort();
    assert_eq!(got, vec![vec!["docs".to_owned()], vec!["zeta".to_owned()]]);

    let has = "SELECT pg_catalog.pg_class.relname 
FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace 
WHERE pg_catalog.pg_class.relname IN ($1::VARCHAR) AND pg_catalog.pg_class.relkind = ANY (ARRAY[$2::VARCHAR, $3::VARCHAR, $4::VARCHAR, $5::VARCHAR, $6::VARCHAR]) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != $7::VARCHAR";
    let kinds = ["r", "p", "f", "v", "m"];
    let has_params = |table: &str| {
        let mut p = vec![text(table)];
        p.extend(kinds.iter().map(|k| text(k)));
        p.push(text("pg_catalog"));
        p
    };
    assert_eq!(
        run(&db, has, has_params("docs")).unwrap(),
        vec![vec!["docs".to_owned()]]
    );
    assert!(run(&db, has, has_params("nope")).unwrap().is_empty());
}

/// The tables follow the state: a table created after the session was
/// made is listed, with its OID findable through `to_regclass` and
/// `'name'::regclass`, and `regclass` prints back as the name.
#[test]
fn catalog_follows_the_state() {
    let db = db();
    let count = |db: &Db| {
        run(
            db,
            "SELECT count(*) FROM pg_class WHERE relkind = 'r'",
            vec![],
        )
        .unwrap()
    };
    assert_eq!(count(&db), vec![vec!["2".to_owned()]]);
    create(&db.engine, "later", 4, Metric::Cosine);
    assert_eq!(count(&db), vec![vec!["3".to_owned()]]);
    let got = run(
        &db,
        "SELECT c.oid = 'later'::regclass, c.oid = to_regclass('later'), c.oid::regclass FROM pg_class c WHERE c.relname = 'later'",
        vec![],
    )
    .unwrap();
    assert_eq!(
        got,
        vec![vec![
            "true".to_owned(),
            "true".to_owned(),
            "later".to_owned()
        ]]
    );
}

/// What the catalog cannot answer is an error naming it, never an empty
/// answer: an unknown catalog table, an unknown function, an unknown
/// relation cast to `regclass`, a cast to an unsupported catalog type.
#[test]
fn unanswerable_catalog_queries_fail() {
    let db = db();
    let cases = [
        ("SELECT * FROM pg_catalog.pg_nonexistent", "pg_nonexistent"),
        (
            "SELECT pg_catalog.pg_no_such_function(1)",
            "pg_no_such_function",
        ),
        ("SELECT 'nope'::regclass", "nope"),
        ("SELECT 'f'::regproc", "regproc"),
    ];
    for (sql, named) in cases {
        match run(&db, sql, vec![]) {
            Ok(rows) => panic!("{sql} answered {rows:?}"),
            Err(e) => assert!(
                e.to_string().to_lowercase().contains(named),
                "{sql}: {e} does not name {named}"
            ),
        }
    }
}

/// Helper check: values of a `"char"` column are one-character strings.
#[test]
fn char_columns_hold_one_character() {
    let db = db();
    let got = run(&db, "SELECT DISTINCT typtype FROM pg_type", vec![]).unwrap();
    assert_eq!(got, vec![vec!["b".to_owned()]]);
    let out = block_on(db.query.execute("SELECT relkind FROM pg_catalog.pg_class")).unwrap();
    let column = out.batches[0].column(0);
    assert_eq!(column.data_type(), &DataType::Utf8);
    // Tables (`r`) and their HNSW indexes (`i`).
    assert!(
        column
            .as_string::<i32>()
            .iter()
            .all(|v| matches!(v, Some("r" | "i")))
    );
    assert!(column.len() >= 2);
}

/// Proves `information_schema` describes the state with Postgres's
/// conventions (as Postgres 16 answers for a pgvector table): the user's
/// tables as `BASE TABLE`s of `public`, their columns in order with
/// Postgres's type names — `bigint`/`int8` with binary precision 64,
/// pgvector's type as `USER-DEFINED`/`vector`, an `integer[]` as
/// `ARRAY`/`_int4` — and NOT NULL; the catalog's own tables as views; a
/// table created later is listed; a view the schema does not have is an
/// error naming it, never "no rows".
#[test]
fn information_schema_describes_the_state() {
    let db = db();
    assert_eq!(
        run(
            &db,
            "SELECT table_catalog, table_name, table_type, is_insertable_into \
             FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
            vec![],
        )
        .unwrap(),
        vec![
            vec!["valori", "docs", "BASE TABLE", "YES"],
            vec!["valori", "zeta", "BASE TABLE", "YES"],
        ]
    );
    assert_eq!(
        run(
            &db,
            "SELECT column_name, ordinal_position, data_type, udt_name, is_nullable, \
             numeric_precision, numeric_precision_radix, numeric_scale, column_default \
             FROM information_schema.columns WHERE table_schema = 'public' \
             AND table_name = 'docs' ORDER BY ordinal_position",
            vec![],
        )
        .unwrap(),
        vec![
            vec!["id", "1", "bigint", "int8", "NO", "64", "2", "0", "NULL"],
            vec![
                "vec",
                "2",
                "USER-DEFINED",
                "vector",
                "NO",
                "NULL",
                "NULL",
                "NULL",
                "NULL"
            ],
            vec![
                "vec_q16", "3", "ARRAY", "_int4", "NO", "NULL", "NULL", "NULL", "NULL"
            ],
            vec!["tag", "4", "bigint", "int8", "NO", "64", "2", "0", "NULL"],
            vec![
                "metadata", "5", "bytea", "bytea", "NO", "NULL", "NULL", "NULL", "NULL"
            ],
        ]
    );
    assert_eq!(
        run(
            &db,
            "SELECT table_type FROM information_schema.tables \
             WHERE table_schema = 'pg_catalog' AND table_name = 'pg_class'",
            vec![],
        )
        .unwrap(),
        vec![vec!["VIEW"]]
    );
    assert_eq!(
        run(
            &db,
            "SELECT schema_name FROM information_schema.schemata ORDER BY schema_name",
            vec![],
        )
        .unwrap(),
        vec![
            vec!["information_schema"],
            vec!["pg_catalog"],
            vec!["public"]
        ]
    );
    create(&db.engine, "later", 4, Metric::Cosine);
    assert_eq!(
        run(
            &db,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'later'",
            vec![],
        )
        .unwrap(),
        vec![vec!["5"]]
    );
    let e = run(
        &db,
        "SELECT * FROM information_schema.check_constraints",
        vec![],
    )
    .unwrap_err();
    assert!(e.to_string().contains("check_constraints"), "{e}");
}

/// Runs a statement through the statement layer as the Postgres front end
/// does, writes included.
fn statement(db: &Db, sql: &str) {
    use valori_query::session::Session;
    use valori_query::statement::Access;
    block_on(async {
        let mut session = Session::default();
        let prepared = db.query.prepare(sql).await.unwrap();
        db.query
            .run(&prepared, Vec::new(), &mut session, Access::ReadWrite)
            .await
            .unwrap();
    });
}

/// pgvector's README table, its HNSW index and a btree index, plus a
/// table with a uuid key, a unique column and defaults of several types.
fn declared_db() -> Db {
    let db = db();
    for sql in [
        "CREATE TABLE items (id bigserial PRIMARY KEY, content text NOT NULL, category_id int DEFAULT 3, embedding vector(3))",
        "CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)",
        "CREATE INDEX ON items (category_id)",
        "CREATE TABLE users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text UNIQUE, n int DEFAULT -1, big bigint DEFAULT 3, big_text bigint DEFAULT '7', name text DEFAULT 'it''s', flag boolean DEFAULT true, created timestamptz DEFAULT now(), at timestamptz DEFAULT CURRENT_TIMESTAMP, meta jsonb DEFAULT '{}', d date DEFAULT '2020-01-01', none_ int DEFAULT NULL)",
    ] {
        statement(&db, sql);
    }
    db
}

fn oid_of(db: &Db, table: &str) -> String {
    run(
        db,
        &format!("SELECT oid FROM pg_catalog.pg_class WHERE relname = '{table}'"),
        vec![],
    )
    .unwrap()[0][0]
        .clone()
}

/// Proves psql 15's `\d items` queries (copied from `psql -E`) answer
/// what Postgres answers for pgvector's README table: the Default column
/// holds `nextval('items_id_seq'::regclass)` for the bigserial key and
/// `3` for `DEFAULT 3` (Postgres prints an integer constant bare), and
/// the indexes footer lists the primary key (`items_pkey`, printed by
/// psql as `PRIMARY KEY, btree (id)`) then the HNSW index under
/// Postgres's name for an unnamed index, `items_embedding_idx`, with the
/// btree index on `category_id` under Postgres's name for it,
/// `items_category_id_idx`, between them (psql sorts primary keys first,
/// then by name).
#[test]
fn psql_describe_declared_table() {
    let db = declared_db();
    let oid = oid_of(&db, "items");
    let columns = psql_columns_query(&oid);
    let got = run(&db, &columns, vec![]).unwrap();
    let got: Vec<Vec<&str>> = got
        .iter()
        .map(|r| r[..4].iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        got,
        vec![
            vec!["id", "bigint", "nextval('items_id_seq'::regclass)", "true"],
            vec!["content", "text", "NULL", "true"],
            vec!["category_id", "integer", "3", "false"],
            vec!["embedding", "vector(3)", "NULL", "false"],
        ]
    );

    let indexes = format!(
        r#"SELECT c2.relname, i.indisprimary, i.indisunique, i.indisclustered, i.indisvalid, pg_catalog.pg_get_indexdef(i.indexrelid, 0, true),
  pg_catalog.pg_get_constraintdef(con.oid, true), contype, condeferrable, condeferred, i.indisreplident, c2.reltablespace
FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i
  LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = i.indexrelid AND contype IN ('p','u','x'))
WHERE c.oid = '{oid}' AND c.oid = i.indrelid AND i.indexrelid = c2.oid
ORDER BY i.indisprimary DESC, c2.relname;"#
    );
    let got = run(&db, &indexes, vec![]).unwrap();
    assert_eq!(
        got,
        vec![
            vec![
                "items_pkey",
                "true",
                "true",
                "false",
                "true",
                "CREATE UNIQUE INDEX items_pkey ON public.items USING btree (id)",
                "PRIMARY KEY (id)",
                "p",
                "false",
                "false",
                "false",
                "0"
            ],
            vec![
                "items_category_id_idx",
                "false",
                "false",
                "false",
                "true",
                "CREATE INDEX items_category_id_idx ON public.items USING btree (category_id)",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "false",
                "0"
            ],
            vec![
                "items_embedding_idx",
                "false",
                "false",
                "false",
                "true",
                "CREATE INDEX items_embedding_idx ON public.items USING hnsw (embedding vector_l2_ops)",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "false",
                "0"
            ],
        ]
    );

    let info = format!(
        r#"SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, '', c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, am.amname
FROM pg_catalog.pg_class c
 LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)
LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)
WHERE c.oid = '{oid}';"#
    );
    let got = run(&db, &info, vec![]).unwrap();
    assert_eq!(got[0][1..3], ["r".to_owned(), "true".to_owned()]);

    // `\ds` and `\di` list the sequence and the indexes by kind.
    let mut kinds = run(
        &db,
        "SELECT relname, relkind FROM pg_catalog.pg_class WHERE relname LIKE 'items%' ORDER BY relname",
        vec![],
    )
    .unwrap();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            vec!["items", "r"],
            vec!["items_category_id_idx", "i"],
            vec!["items_embedding_idx", "i"],
            vec!["items_id_seq", "S"],
            vec!["items_pkey", "i"],
        ]
    );
    assert_eq!(
        run(
            &db,
            "SELECT pg_get_serial_sequence('items', 'id'), pg_get_serial_sequence('items', 'content')",
            vec![]
        )
        .unwrap(),
        vec![vec!["public.items_id_seq", "NULL"]]
    );
    assert_eq!(
        run(
            &db,
            "SELECT seqtypid, seqstart, seqincrement, seqmin, seqmax FROM pg_sequence WHERE seqrelid = 'items_id_seq'::regclass",
            vec![]
        )
        .unwrap(),
        vec![vec!["20", "1", "1", "1", "9223372036854775807"]]
    );
}

/// Proves defaults print as Postgres 16 prints them (`pg_get_expr` of
/// `pg_attrdef.adbin`, and `information_schema.columns.column_default`),
/// per Postgres's rules for constants (ruleutils.c `get_const_expr`):
/// a non-negative integer bare, a negative one quoted and labelled
/// (`'-1'::integer`), an integer written as a number and assigned to a
/// bigint column bare (the implicit cast is not printed), a string read
/// as the column's type and labelled (`'7'::bigint`, `'it''s'::text`,
/// `'{}'::jsonb`, `'2020-01-01'::date`), booleans bare; function calls as
/// `now()`, `gen_random_uuid()`; `CURRENT_TIMESTAMP` as written; and
/// `DEFAULT NULL` is no default (no `pg_attrdef` row, `atthasdef`
/// false).
#[test]
fn defaults_print_as_postgres_prints_them() {
    let db = declared_db();
    let oid = oid_of(&db, "users");
    let got = run(
        &db,
        &format!(
            "SELECT a.attname, a.atthasdef, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = {oid} ORDER BY a.attnum"
        ),
        vec![],
    )
    .unwrap();
    let expected = vec![
        vec!["id", "true", "gen_random_uuid()"],
        vec!["email", "false", "NULL"],
        vec!["n", "true", "'-1'::integer"],
        vec!["big", "true", "3"],
        vec!["big_text", "true", "'7'::bigint"],
        vec!["name", "true", "'it''s'::text"],
        vec!["flag", "true", "true"],
        vec!["created", "true", "now()"],
        vec!["at", "true", "CURRENT_TIMESTAMP"],
        vec!["meta", "true", "'{}'::jsonb"],
        vec!["d", "true", "'2020-01-01'::date"],
        vec!["none_", "false", "NULL"],
    ];
    assert_eq!(got, expected);
    let got = run(
        &db,
        "SELECT column_name, column_default FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position",
        vec![],
    )
    .unwrap();
    let want: Vec<Vec<&str>> = expected.iter().map(|r| vec![r[0], r[2]]).collect();
    assert_eq!(got, want);
}

/// Proves SQLAlchemy 2.1's `get_pk_constraint`, `get_unique_constraints`
/// and `get_indexes` queries (copied from the dialect, parameters
/// inlined) plan and answer as Postgres would: `generate_subscripts`
/// next to `unnest` in a select list numbers the key columns (1 for the
/// one column), the keys are `items_pkey (id)` and `users_email_key
/// (email)`, and the non-primary indexes are the btree index on
/// `category_id`, the HNSW index (not unique, access method hnsw) and
/// the unique constraint's index.
#[test]
fn sqlalchemy_keys_and_indexes() {
    let db = declared_db();
    let (items, users) = (oid_of(&db, "items"), oid_of(&db, "users"));
    let constraints = |contype: &str| {
        format!(
            r#"SELECT attr.conrelid, array_agg(CAST(attr.attname AS TEXT) ORDER BY attr.ord) AS cols, attr.conname, min(attr.description) AS description, min(attr.indnkeyatts) AS indnkeyatts, bool_and(attr.indnullsnotdistinct) AS indnullsnotdistinct 
FROM (SELECT con.conrelid AS conrelid, con.conname AS conname, con.description AS description, con.ord AS ord, con.indnkeyatts AS indnkeyatts, con.indnullsnotdistinct AS indnullsnotdistinct, pg_catalog.pg_attribute.attname AS attname 
FROM pg_catalog.pg_attribute JOIN (SELECT pg_catalog.pg_constraint.conrelid AS conrelid, pg_catalog.pg_constraint.conname AS conname, unnest(pg_catalog.pg_index.indkey) AS attnum, generate_subscripts(pg_catalog.pg_index.indkey, 1::INTEGER) AS ord, pg_catalog.pg_index.indnkeyatts AS indnkeyatts, pg_catalog.pg_index.indnullsnotdistinct AS indnullsnotdistinct, pg_catalog.pg_description.description AS description 
FROM pg_catalog.pg_constraint JOIN pg_catalog.pg_index ON pg_catalog.pg_constraint.conindid = pg_catalog.pg_index.indexrelid LEFT OUTER JOIN pg_catalog.pg_description ON pg_catalog.pg_description.objoid = pg_catalog.pg_constraint.oid AND pg_catalog.pg_description.classoid = CAST('pg_catalog.pg_constraint' AS REGCLASS) 
WHERE pg_catalog.pg_constraint.contype = '{contype}'::VARCHAR AND pg_catalog.pg_constraint.conrelid IN ({items}, {users})) AS con ON pg_catalog.pg_attribute.attnum = con.attnum AND pg_catalog.pg_attribute.attrelid = con.conrelid 
WHERE con.conrelid IN ({items}, {users})) AS attr GROUP BY attr.conrelid, attr.conname ORDER BY attr.conrelid, attr.conname"#
        )
    };
    let keys = |contype: &str| -> Vec<(String, String)> {
        let mut got: Vec<(String, String)> = run(&db, &constraints(contype), vec![])
            .unwrap()
            .into_iter()
            .map(|r| (r[2].clone(), r[1].clone()))
            .collect();
        got.sort();
        got
    };
    assert_eq!(
        keys("p"),
        vec![
            ("items_pkey".to_owned(), "[id]".to_owned()),
            ("users_pkey".to_owned(), "[id]".to_owned())
        ]
    );
    assert_eq!(
        keys("u"),
        vec![("users_email_key".to_owned(), "[email]".to_owned())]
    );

    let index_query = format!(
        r#"SELECT pg_catalog.pg_index.indrelid, pg_catalog.pg_class.relname, pg_catalog.pg_index.indisunique, pg_catalog.pg_index.indisvalid, pg_catalog.pg_constraint.conrelid IS NOT NULL AS has_constraint, pg_catalog.pg_index.indoption, pg_catalog.pg_class.reloptions, pg_catalog.pg_class.relam, CASE WHEN (pg_catalog.pg_index.indpred IS NOT NULL) THEN pg_catalog.pg_get_expr(pg_catalog.pg_index.indpred, pg_catalog.pg_index.indrelid) END AS filter_definition, pg_catalog.pg_index.indnkeyatts, pg_catalog.pg_index.indnullsnotdistinct, idx_cols.elements, idx_cols.elements_is_expr, idx_cols.elements_opclass 
FROM pg_catalog.pg_index JOIN pg_catalog.pg_class ON pg_catalog.pg_index.indexrelid = pg_catalog.pg_class.oid LEFT OUTER JOIN (SELECT idx_attr.indexrelid AS indexrelid, min(idx_attr.indrelid) AS min_1, array_agg(idx_attr.element ORDER BY idx_attr.ord) AS elements, array_agg(idx_attr.is_expr ORDER BY idx_attr.ord) AS elements_is_expr, array_agg(idx_attr.att_opclass ORDER BY idx_attr.ord) AS elements_opclass 
FROM (SELECT idx.indexrelid AS indexrelid, idx.indrelid AS indrelid, idx.ord AS ord, CASE WHEN (idx.attnum = 0::INTEGER) THEN pg_catalog.pg_get_indexdef(idx.indexrelid, idx.ord + 1::INTEGER, true) ELSE CAST(pg_catalog.pg_attribute.attname AS TEXT) END AS element, idx.attnum = 0::INTEGER AS is_expr, CAST(idx.att_opclass AS BIGINT) AS att_opclass 
FROM (SELECT pg_catalog.pg_index.indexrelid AS indexrelid, pg_catalog.pg_index.indrelid AS indrelid, unnest(pg_catalog.pg_index.indkey) AS attnum, unnest(pg_catalog.pg_index.indclass) AS att_opclass, generate_subscripts(pg_catalog.pg_index.indkey, 1::INTEGER) AS ord 
FROM pg_catalog.pg_index 
WHERE NOT pg_catalog.pg_index.indisprimary AND pg_catalog.pg_index.indrelid IN ({items}, {users})) AS idx LEFT OUTER JOIN pg_catalog.pg_attribute ON pg_catalog.pg_attribute.attnum = idx.attnum AND pg_catalog.pg_attribute.attrelid = idx.indrelid 
WHERE idx.indrelid IN ({items}, {users})) AS idx_attr GROUP BY idx_attr.indexrelid) AS idx_cols ON pg_catalog.pg_index.indexrelid = idx_cols.indexrelid LEFT OUTER JOIN pg_catalog.pg_constraint ON pg_catalog.pg_index.indrelid = pg_catalog.pg_constraint.conrelid AND pg_catalog.pg_index.indexrelid = pg_catalog.pg_constraint.conindid AND pg_catalog.pg_constraint.contype = ANY (ARRAY['p'::VARCHAR, 'u'::VARCHAR, 'x'::VARCHAR]) 
WHERE pg_catalog.pg_index.indrelid IN ({items}, {users}) AND NOT pg_catalog.pg_index.indisprimary ORDER BY pg_catalog.pg_index.indrelid, pg_catalog.pg_class.relname"#
    );
    let mut got: Vec<Vec<String>> = run(&db, &index_query, vec![])
        .unwrap()
        .into_iter()
        .map(|r| {
            vec![
                r[1].clone(),
                r[2].clone(),
                r[4].clone(),
                r[11].clone(),
                r[12].clone(),
            ]
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            vec![
                "items_category_id_idx",
                "false",
                "false",
                "[category_id]",
                "[false]"
            ],
            vec![
                "items_embedding_idx",
                "false",
                "false",
                "[embedding]",
                "[false]"
            ],
            vec!["users_email_key", "true", "true", "[email]", "[false]"],
        ]
    );
    let am = run(
        &db,
        "SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.relname = 'items_embedding_idx'",
        vec![],
    )
    .unwrap();
    assert_eq!(am, vec![vec!["hnsw"]]);
}

/// Proves `generate_subscripts(a, 1)` yields 1..length of `a` next to
/// `unnest(a)`, zipped row by row as Postgres evaluates two set-returning
/// functions in one select list, and nothing for an empty array or
/// another dimension.
#[test]
fn generate_subscripts_numbers_the_elements() {
    let db = db();
    let got = run(
        &db,
        "SELECT unnest(make_array(10, 20, 30)) AS v, generate_subscripts(make_array(10, 20, 30), 1) AS i",
        vec![],
    )
    .unwrap();
    assert_eq!(got, vec![vec!["10", "1"], vec!["20", "2"], vec!["30", "3"]]);
    let none = run(
        &db,
        "SELECT generate_subscripts(make_array(10, 20), 2) AS i",
        vec![],
    )
    .unwrap();
    assert!(none.is_empty(), "{none:?}");
}

/// The query psql 15 runs for the columns of `\d table` (from `psql -E`),
/// for the table of OID `oid`.
fn psql_columns_query(oid: &str) -> String {
    format!(
        r#"SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '{oid}' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;"#
    )
}

/// Proves `unnest` called as a table function under its schema's name
/// (`FROM pg_catalog.unnest(a) x`, as psql's `\d+` writes it) yields the
/// array's elements under the alias, as in Postgres: for a constant
/// array, for an array from the outer row of a correlated subquery
/// (evaluated per row), and none for a NULL array; and that psql 15's
/// `\d+ items` table query (copied from `psql -E`), which appends the
/// toast table's options that way, answers one row for the table.
#[test]
fn unnest_as_a_table_function() {
    let db = declared_db();
    assert_eq!(
        run(
            &db,
            "SELECT x FROM pg_catalog.unnest(ARRAY['a','b']) x",
            vec![]
        )
        .unwrap(),
        vec![vec!["a".to_owned()], vec!["b".to_owned()]]
    );
    assert_eq!(
        run(
            &db,
            "SELECT (SELECT string_agg(x, ',') FROM pg_catalog.unnest(t.a) x) AS joined FROM (VALUES (ARRAY['p','q']), (ARRAY['r'])) t(a)",
            vec![]
        )
        .unwrap(),
        vec![vec!["p,q".to_owned()], vec!["r".to_owned()]]
    );
    let oid = oid_of(&db, "items");
    let got = run(
        &db,
        &format!(
            "SELECT c.relchecks, c.relkind, c.relhasindex, pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')
, c.relpersistence, am.amname
FROM pg_catalog.pg_class c
 LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)
LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)
WHERE c.oid = '{oid}';"
        ),
        vec![],
    )
    .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(&got[0][1], "r");
    assert_eq!(&got[0][2], "true");
    assert_eq!(&got[0][5], "heap");
}

/// Proves the size functions count what `catalog::sizes` documents, for
/// rows inserted here: a table is, per row (deleted ones too), 17 bytes
/// (id, tag, tombstone), 4 per vector component and its metadata's
/// bytes, plus per scalar column a validity byte and the value; a btree
/// index is, per live row, the key and a 4-byte row number; the total is
/// the table and its indexes; an unknown OID is NULL and a catalog table
/// (computed at each scan) 0. And that `pg_size_pretty` prints them (and
/// numerics) by Postgres's rule.
#[test]
fn relation_sizes_count_the_rows() {
    let db = declared_db();
    statement(
        &db,
        "INSERT INTO docs (id, vec, tag, metadata) VALUES \
         (1, '[1,2,3]', 5, '{\"a\":1}'), (2, '[4,5,6]', 5, NULL)",
    );
    // Two rows of 17 + 3·4 bytes and the canonical metadata `{"a":1}`.
    let docs = 2 * (17 + 12) + 7;
    let sizes = |table: &str| {
        run(
            &db,
            &format!(
                "SELECT pg_table_size('{table}'), pg_relation_size('{table}'::regclass), \
                 pg_indexes_size('{table}'), pg_total_relation_size('{table}')"
            ),
            Vec::new(),
        )
        .unwrap()[0]
            .iter()
            .map(|v| v.parse::<i64>().unwrap())
            .collect::<Vec<_>>()
    };
    let got = sizes("docs");
    assert_eq!(got[..2], [docs, docs]);
    assert_eq!(got[3], got[0] + got[2]);

    statement(
        &db,
        "INSERT INTO items (content, category_id, embedding) VALUES \
         ('a', 1, '[1,0,0]'), ('bb', 2, '[0,1,0]'), ('ccc', NULL, '[0,0,1]')",
    );
    // Three rows of 17 + 3·4 bytes; id bigint (1 + 8 each), content text
    // (1 + its bytes: 1, 2, 3), category_id int (1 + 4 each, NULL too).
    let items = 3 * (17 + 12) + 3 * (1 + 8) + (3 + 6) + 3 * (1 + 4);
    let before = sizes("items");
    assert_eq!(before[..2], [items, items]);
    let index = |name: &str| {
        run(
            &db,
            &format!("SELECT pg_relation_size('{name}'), pg_indexes_size('{name}')"),
            Vec::new(),
        )
        .unwrap()[0]
            .clone()
    };
    // Per live row: the bigint key and a row number; the int key and one.
    assert_eq!(index("items_pkey"), ["36", "0"]);
    assert_eq!(index("items_category_id_idx"), ["24", "0"]);
    let hnsw: i64 = index("items_embedding_idx")[0].parse().unwrap();
    assert_eq!(before[2], 36 + 24 + hnsw);
    assert_eq!(before[3], items + before[2]);

    statement(&db, "DELETE FROM items WHERE content = 'bb'");
    // The deleted row stays in the table, and leaves the btree indexes.
    assert_eq!(sizes("items")[0], items);
    assert_eq!(index("items_pkey"), ["24", "0"]);
    assert_eq!(index("items_category_id_idx"), ["16", "0"]);
    // A sequence holds its value.
    assert_eq!(index("items_id_seq"), ["8", "0"]);

    let answer = run(
        &db,
        "SELECT pg_table_size(1), pg_table_size(NULL), pg_total_relation_size('pg_class'), \
         pg_relation_size('items', 'fsm'), pg_relation_size('items', 'main'), \
         pg_relation_size('items', NULL)",
        Vec::new(),
    )
    .unwrap();
    assert_eq!(
        answer,
        vec![vec!["NULL", "NULL", "0", "0", &items.to_string(), "NULL"]]
    );
    let err = run(&db, "SELECT pg_relation_size('items', 'heap')", Vec::new()).unwrap_err();
    assert!(err.to_string().contains("invalid fork name"), "{err}");
    let err = run(&db, "SELECT pg_table_size('nothing_here')", Vec::new()).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    // PostgreSQL's dbsize.sql values (the rule is checked in full by the
    // unit tests of catalog::sizes), through SQL's types; a literal with a
    // fraction is Postgres's numeric.
    let answer = run(
        &db,
        "SELECT pg_size_pretty(10239::bigint), pg_size_pretty(10240::bigint), \
         pg_size_pretty(-1000000000::bigint), pg_size_pretty(1000000.5), \
         pg_size_pretty(1000.5), pg_size_pretty(NULL::bigint), \
         pg_size_pretty(pg_table_size('docs'))",
        Vec::new(),
    )
    .unwrap();
    assert_eq!(
        answer,
        vec![vec![
            "10239 bytes",
            "10 kB",
            "-954 MB",
            "977 kB",
            "1000.5 bytes",
            "NULL",
            &format!("{docs} bytes"),
        ]]
    );
}
