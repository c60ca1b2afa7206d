//! The targets that link the query layer and the front ends.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use pgwire::api::Type;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};
use valori_core::Metric;
use valori_engine::Engine;
use valori_query::QueryEngine;
use valori_query::dsl::{self, to_sql};
use valori_query::settings::SearchSettings;
use valori_wire::pg::types::{param_value, vector_type};
use valori_wire::rest::fuzzing::{BODIES, parse_body};

/// Text of the input: the input itself when it is UTF-8, else its lossy
/// decoding (so that mutations of text seeds still reach the parser).
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The query DSL: parse, then lower to SQL (without an engine) with a
/// parameter `$q` of dimension 4, under L2 and cosine.
pub fn dsl(data: &[u8]) {
    let text = text(data);
    if let Ok(query) = dsl::parse(&text) {
        let params = BTreeMap::from([("q".to_owned(), vec![0.5, -1.0, 2.0, 0.25])]);
        for metric in [Metric::L2, Metric::Cosine] {
            let _ = to_sql(&query, metric, &params, &SearchSettings::default());
        }
    }
}

/// An engine with one small collection, and a runtime to query it on,
/// made once per process.
struct SqlFixture {
    _dir: tempfile::TempDir,
    query: QueryEngine,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static SqlFixture {
    static FIXTURE: OnceLock<SqlFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("fuzz fixture: temporary directory");
        let engine = Engine::open(dir.path()).expect("fuzz fixture: open engine");
        for event in crate::seeds::small_workload() {
            engine.submit(event).expect("fuzz fixture: populate");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("fuzz fixture: runtime");
        SqlFixture {
            _dir: dir,
            query: QueryEngine::new(Arc::new(engine)),
            runtime,
        }
    })
}

/// SQL text through the planner and executor (`QueryEngine::execute`,
/// read-only) over the collection `docs` (dimension 4, 8 rows): any
/// statement is answered or refused with an error; the state is unchanged.
pub fn sql(data: &[u8]) {
    let f = fixture();
    let text = text(data);
    let before = f.query.engine().log_size();
    let _ = f.runtime.block_on(f.query.execute(&text));
    assert_eq!(
        f.query.engine().log_size(),
        before,
        "a read-only statement wrote to the log"
    );
}

/// The SQL write statement parser (`valori_query::write::parse`).
pub fn sql_write(data: &[u8]) {
    if let Ok(Some(statement)) = valori_query::write::parse(&text(data)) {
        let _ = statement.command();
        let _ = statement.parameter_columns();
    }
}

/// The parameter types a Postgres client may bind.
fn param_types() -> [Type; 17] {
    [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::OID,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        Type::BYTEA,
        Type::JSONB,
        Type::TEXT,
        Type::FLOAT4_ARRAY,
        Type::FLOAT8_ARRAY,
        Type::INT2_ARRAY,
        Type::INT4_ARRAY,
        Type::INT8_ARRAY,
        vector_type(),
    ]
}

/// A Postgres parameter value (`param_value`). The first byte picks the
/// type (low 7 bits, modulo the list) and the format (high bit: binary);
/// the rest is the value.
pub fn pg_param(data: &[u8]) {
    let Some((&selector, value)) = data.split_first() else {
        return;
    };
    let types = param_types();
    let ty = &types[usize::from(selector & 0x7f) % types.len()];
    let _ = param_value(Some(value), selector & 0x80 != 0, ty);
}

/// Postgres frontend messages as pgwire decodes them off the socket. The
/// first byte picks the state: bit 0 set means past startup (regular
/// messages), clear means the first message of a connection. Messages are
/// decoded until the bytes run out or one is refused.
pub fn pg_message(data: &[u8]) {
    let Some((&state, bytes)) = data.split_first() else {
        return;
    };
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    if state & 1 == 1 {
        ctx.awaiting_frontend_ssl = false;
        ctx.awaiting_frontend_startup = false;
    }
    let mut buf = BytesMut::from(bytes);
    // Each decoded message consumes bytes, so this ends; the bound is
    // there for a decoder that would not.
    for _ in 0..=bytes.len() {
        match PgWireFrontendMessage::decode(&mut buf, &ctx) {
            Ok(Some(_)) if ctx.awaiting_frontend_ssl => {
                ctx.awaiting_frontend_ssl = false;
            }
            Ok(Some(_)) => {
                ctx.awaiting_frontend_startup = false;
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// A REST request body, read as its handler reads it. The first byte picks
/// the body type (modulo the list of `BODIES`); the rest is the body.
pub fn rest_body(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let _ = parse_body(usize::from(kind) % BODIES.len(), body);
}
