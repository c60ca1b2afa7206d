//! Runs every `suites/*.slt` file and every `suites/wire/*.slt` file over
//! the Postgres protocol: each against a server started in-process on
//! 127.0.0.1:0 over a fresh engine seeded with the fixture, through
//! tokio-postgres's extended protocol. Values are formatted from their
//! binary Postgres form exactly as the in-process runner formats the
//! Arrow values ([`valori_sqllogictest::format_value`]'s rules), so the
//! same expected results hold on both paths. The engine name (a
//! sqllogictest label) is `postgres-wire`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls};
use valori_engine::Engine;
use valori_query::QueryEngine;

/// A statement's failure, with its SQLSTATE.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WireError(String);

impl From<tokio_postgres::Error> for WireError {
    fn from(e: tokio_postgres::Error) -> WireError {
        match e.as_db_error() {
            Some(db) => WireError(format!("{} (SQLSTATE {})", db.message(), db.code().code())),
            None => WireError(e.to_string()),
        }
    }
}

/// Any value, as its raw binary bytes.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn be<const N: usize>(raw: &[u8]) -> [u8; N] {
    raw.try_into().unwrap()
}

/// One-dimensional binary array elements.
fn array_items(raw: &[u8]) -> Vec<Option<&[u8]>> {
    let word = |at: usize| i32::from_be_bytes(be(&raw[at..at + 4]));
    if word(0) == 0 {
        return Vec::new();
    }
    let len = word(12) as usize;
    let mut at = 20;
    let mut out = Vec::new();
    for _ in 0..len {
        let n = word(at);
        if n < 0 {
            out.push(None);
            at += 4;
        } else {
            out.push(Some(&raw[at + 4..at + 4 + n as usize]));
            at += 4 + n as usize;
        }
    }
    out
}

/// A value formatted by the in-process runner's rules.
fn format(ty: &Type, raw: Option<&[u8]>) -> String {
    let Some(raw) = raw else {
        return "NULL".to_owned();
    };
    let text = match *ty {
        Type::BOOL => (raw[0] != 0).to_string(),
        Type::INT2 => i16::from_be_bytes(be(raw)).to_string(),
        Type::INT4 => i32::from_be_bytes(be(raw)).to_string(),
        Type::INT8 => i64::from_be_bytes(be(raw)).to_string(),
        Type::FLOAT4 => f32::from_be_bytes(be(raw)).to_string(),
        Type::FLOAT8 => f64::from_be_bytes(be(raw)).to_string(),
        Type::BYTEA => {
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            format!("\\x{hex}")
        }
        Type::INT4_ARRAY | Type::INT8_ARRAY | Type::FLOAT8_ARRAY => {
            let element = match *ty {
                Type::INT4_ARRAY => Type::INT4,
                Type::INT8_ARRAY => Type::INT8,
                _ => Type::FLOAT8,
            };
            let items: Vec<String> = array_items(raw)
                .into_iter()
                .map(|item| format(&element, item))
                .collect();
            format!("[{}]", items.join(","))
        }
        _ if ty.name() == "vector" => {
            let items: Vec<String> = raw[4..]
                .chunks_exact(4)
                .map(|c| f32::from_be_bytes(be(c)).to_string())
                .collect();
            format!("[{}]", items.join(","))
        }
        _ => String::from_utf8_lossy(raw).into_owned(),
    };
    if text.is_empty() {
        "(empty)".to_owned()
    } else {
        text
    }
}

fn column_type(ty: &Type) -> DefaultColumnType {
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 => DefaultColumnType::Integer,
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => DefaultColumnType::FloatingPoint,
        Type::TEXT | Type::VARCHAR | Type::NAME => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

/// A Postgres connection as a sqllogictest database.
struct PgDb {
    client: Client,
}

#[async_trait]
impl AsyncDB for PgDb {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        let statement = self.client.prepare(sql).await?;
        if statement.columns().is_empty() {
            let n = self.client.execute(&statement, &[]).await?;
            return Ok(DBOutput::StatementComplete(n));
        }
        let rows = self.client.query(&statement, &[]).await?;
        let types: Vec<Type> = statement
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        let rows = rows
            .iter()
            .map(|row| {
                types
                    .iter()
                    .enumerate()
                    .map(|(i, ty)| {
                        let raw: Option<Raw> = row.get(i);
                        format(ty, raw.as_ref().map(|r| r.0.as_slice()))
                    })
                    .collect()
            })
            .collect();
        Ok(DBOutput::Rows {
            types: types.iter().map(column_type).collect(),
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "postgres-wire"
    }
}

/// Runs one suite against a fresh seeded server.
async fn run_suite(path: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let engine = Arc::new(Engine::open(dir.path()).map_err(|e| e.to_string())?);
    valori_sqllogictest::seed_fixture(&engine).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(valori_wire::pg::serve(
        listener,
        QueryEngine::new(Arc::clone(&engine)),
        Arc::new(valori_wire::auth::Auth::default()),
        async {
            let _ = stopped.await;
        },
    ));
    let config = format!("host=127.0.0.1 port={port} user=slt dbname=valori");
    let mut runner = sqllogictest::Runner::new(move || {
        let config = config.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
            tokio::spawn(connection);
            Ok::<PgDb, WireError>(PgDb { client })
        }
    });
    // The runner's default accepts any declared column types.
    runner.with_column_validator(sqllogictest::strict_column_validator);
    let result = runner.run_file_async(path).await.map_err(|e| e.to_string());
    drop(runner);
    let _ = stop.send(());
    server
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    result
}

fn suites(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    out.sort();
    out
}

/// Proves every suite, the shared ones and the wire-only ones (DDL,
/// writes, errors), passes over the Postgres protocol, and that the
/// promised suites exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_suite_passes_over_the_wire() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites");
    let mut all = suites(&root);
    all.extend(suites(&root.join("wire")));
    let names: Vec<String> = all
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    for required in [
        "basic.slt",
        "vectors.slt",
        "ddl.slt",
        "writes.slt",
        "errors.slt",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "missing suite {required}: {names:?}"
        );
    }
    let mut failures = Vec::new();
    for suite in &all {
        match run_suite(suite).await {
            Ok(()) => println!("ok   {}", suite.display()),
            Err(e) => failures.push(format!("FAIL {}:\n{e}", suite.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Proves the wire runner checks the column types a `query` record
/// declares: a suite whose values are right but whose type letters are
/// wrong fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_column_types_fail_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("types.slt");
    std::fs::write(
        &suite,
        "query IT\nSELECT id, tag FROM docs WHERE id = 1\n----\n1 7\n",
    )
    .unwrap();
    let e = run_suite(&suite).await.unwrap_err();
    // The runner marks the differing letters with brackets.
    let plain = e.replace(['[', ']'], "");
    assert!(
        plain.contains("Expected IT") && plain.contains("Actual   II"),
        "{e}"
    );
    std::fs::write(
        &suite,
        "query II\nSELECT id, tag FROM docs WHERE id = 1\n----\n1 7\n",
    )
    .unwrap();
    run_suite(&suite).await.unwrap();
}
