//! Arrow Flight against a started server, with arrow-flight's own client:
//! collections listed, exported and loaded; bad batches refused whole;
//! credentials and roles; and each result read back over REST.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError as ClientError;
use arrow_flight::{FlightClient, FlightDescriptor, Ticket};
use futures::TryStreamExt;
use prost::Message as _;
use serde_json::{Value, json};
use tonic::transport::Channel;
use valori_query::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Float32Array, Float64Array, Int64Array, ListArray,
    RecordBatch, StringArray, UInt64Array,
};
use valori_query::datafusion::arrow::datatypes::{
    DataType, Field, Float32Type, Int32Type, Schema, UInt64Type,
};
use valori_wire::auth::User;
use valori_wire::config::ServeArgs;

#[path = "common/server.rs"]
mod server;
use server::Server;

const WRITE_KEY: &str = "w-key-1";
const READ_KEY: &str = "r-key-2";

async fn client(server: &Server, key: Option<&str>) -> FlightClient {
    let channel = Channel::from_shared(format!("http://{}", server.flight))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightClient::new(channel);
    if let Some(key) = key {
        client
            .add_header("authorization", &format!("Bearer {key}"))
            .unwrap();
    }
    client
}

fn rest(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string().into_bytes());
    let answer = valori_wire::client::request(
        &server.rest.to_string(),
        method,
        path,
        Some(WRITE_KEY),
        body.as_deref(),
    )
    .unwrap();
    let value = answer.json().unwrap_or(Value::Null);
    (answer.status, value)
}

fn f32_list(rows: &[&[f32]]) -> ArrayRef {
    Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(
        rows.iter().map(|r| Some(r.iter().map(|&x| Some(x)))),
    ))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

/// DoPut of `batches` into `collection`; the server's `PutResult`
/// metadata, or the error.
async fn put(
    client: &mut FlightClient,
    collection: &str,
    batches: Vec<RecordBatch>,
) -> Result<Value, ClientError> {
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![collection.into()])))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    let results: Vec<_> = client.do_put(data).await?.try_collect().await?;
    Ok(serde_json::from_slice(&results[0].app_metadata).unwrap())
}

async fn get(client: &mut FlightClient, ticket: &str) -> Result<Vec<RecordBatch>, ClientError> {
    client
        .do_get(Ticket::new(ticket.as_bytes().to_vec()))
        .await?
        .try_collect()
        .await
}

/// The gRPC status code of a failed call.
fn code(err: &ClientError) -> tonic::Code {
    match err {
        ClientError::Tonic(status) => status.code(),
        other => panic!("not a status: {other}"),
    }
}

/// What a write changes: the log and the state hash (index hashes also
/// move as the background builder links blocks).
fn written(server: &Server) -> (u64, String, String) {
    let p = server.engine.proof().unwrap();
    (
        p.log_size,
        p.log_root.to_string(),
        p.hashes.state.to_string(),
    )
}

fn state_hash(server: &Server) -> String {
    server.engine.proof().unwrap().hashes.state.to_string()
}

fn users() -> Vec<User> {
    vec![
        format!("alice:{WRITE_KEY}:write").parse().unwrap(),
        format!("bob:{READ_KEY}:read").parse().unwrap(),
    ]
}

fn create(server: &Server, name: &str, dim: u32) {
    let (status, body) = rest(
        server,
        "POST",
        "/v1/collections",
        Some(json!({"name": name, "dim": dim, "metric": "l2"})),
    );
    assert_eq!(status, 201, "{body}");
}

/// Proves a DoPut lands as one event whose state equals the same rows
/// inserted over REST on a second server (same state hash); that DoGet of
/// the collection gives the rows back exactly (raw Q16.16 as the REST
/// record shows it, the f32 view, tags, canonical JSON metadata) with the
/// log size, root and state hash of the state it read; and that
/// ListFlights and GetFlightInfo describe it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_get_matches_rest() {
    let flight = Server::start(ServeArgs::default());
    let other = Server::start(ServeArgs::default());
    create(&flight, "items", 2);
    create(&other, "items", 2);

    let mut c = client(&flight, None).await;
    let put_meta = put(
        &mut c,
        "items",
        vec![batch(vec![
            ("id", Arc::new(Int64Array::from(vec![10, 11, 12]))),
            (
                "vector",
                f32_list(&[&[0.5, -1.0], &[0.25, 2.0], &[3.0, 0.125]]),
            ),
            ("tag", Arc::new(Int64Array::from(vec![1, 2, 1]))),
            (
                "metadata",
                Arc::new(StringArray::from(vec![
                    Some(r#"{"b": 1, "a": "x"}"#),
                    None,
                    Some("[1, 2]"),
                ])),
            ),
        ])],
    )
    .await
    .unwrap();
    assert_eq!(put_meta["rows"], 3);
    assert_eq!(put_meta["seq"], 1, "one event after the collection's");

    let (status, body) = rest(
        &other,
        "POST",
        "/v1/collections/items/records/batch",
        Some(json!({
            "ids": [10, 11, 12],
            "vectors": [[0.5, -1.0], [0.25, 2.0], [3.0, 0.125]],
            "tags": [1, 2, 1],
            "metadata": [{"b": 1, "a": "x"}, null, [1, 2]],
        })),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(state_hash(&flight), state_hash(&other));

    let batches = get(&mut c, "items").await.unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3);
    let b = &batches[0];
    let proof = flight.engine.proof().unwrap();
    let meta = b.schema().metadata().clone();
    assert_eq!(meta["valori.log_size"], proof.log_size.to_string());
    assert_eq!(meta["valori.log_root"], proof.log_root.to_string());
    assert_eq!(meta["valori.state_hash"], proof.hashes.state.to_string());
    assert_eq!(
        meta["valori.collection_hash"],
        proof.hashes.collections[0].1.to_string()
    );
    let ids = b.column_by_name("id").unwrap().as_primitive::<UInt64Type>();
    assert_eq!(ids.values().to_vec(), vec![10, 11, 12]);
    // Q16.16: 0.5 is 32768 and -1.0 is -65536, independent of the server.
    let raw = b.column_by_name("vector").unwrap().as_fixed_size_list();
    assert_eq!(
        raw.value(0).as_primitive::<Int32Type>().values().to_vec(),
        vec![32768, -65536]
    );
    let f32s = b.column_by_name("vector_f32").unwrap().as_fixed_size_list();
    assert_eq!(
        f32s.value(2)
            .as_primitive::<Float32Type>()
            .values()
            .to_vec(),
        vec![3.0, 0.125]
    );
    let tags = b
        .column_by_name("tag")
        .unwrap()
        .as_primitive::<UInt64Type>();
    assert_eq!(tags.values().to_vec(), vec![1, 2, 1]);
    let metadata = b.column_by_name("metadata").unwrap().as_binary::<i32>();
    assert_eq!(metadata.value(0), br#"{"a":"x","b":1}"#);
    assert_eq!(metadata.value(1), b"");
    // The REST record shows the same stored vector.
    let (_, record) = rest(&other, "GET", "/v1/collections/items/records/10", None);
    assert_eq!(record["vector"], json!([0.5, -1.0]), "{record}");

    let infos: Vec<_> = c
        .list_flights(bytes::Bytes::new())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].total_records, 3);
    let info_meta: Value = serde_json::from_slice(&infos[0].app_metadata).unwrap();
    assert_eq!(info_meta["state_hash"], proof.hashes.state.to_string());
    let schema = c
        .get_schema(FlightDescriptor::new_path(vec!["items".into()]))
        .await
        .unwrap();
    assert_eq!(
        schema.field_with_name("vector").unwrap().data_type(),
        raw.data_type()
    );
    let info = c
        .get_flight_info(FlightDescriptor::new_path(vec!["items".into()]))
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    assert_eq!(&ticket.ticket[..], b"items");
}

/// Proves an export that spans several batches is complete and in row
/// order, that an exact export (raw `vector`) loads back into a new
/// collection with the same collection hash, and that a SQL ticket runs
/// through the statement layer (a KNN query answers what REST's
/// `/v1/sql` answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_export_round_trips_and_sql_tickets() {
    let server = Server::start(ServeArgs::default());
    create(&server, "big", 8);
    let mut c = client(&server, None).await;
    let n: i64 = 300_000;
    for chunk in 0..3 {
        let ids: Vec<i64> = (chunk * 100_000..(chunk + 1) * 100_000).collect();
        let values: Vec<f64> = ids
            .iter()
            .flat_map(|&i| (0..8).map(move |j| ((i * 7 + j) % 1000) as f64 / 16.0))
            .collect();
        let vectors = Arc::new(ListArray::new(
            Arc::new(Field::new("item", DataType::Float64, false)),
            valori_query::datafusion::arrow::buffer::OffsetBuffer::from_lengths(
                std::iter::repeat_n(8, ids.len()),
            ),
            Arc::new(Float64Array::from(values)),
            None,
        ));
        put(
            &mut c,
            "big",
            vec![batch(vec![
                ("id", Arc::new(Int64Array::from(ids))),
                ("vector", vectors),
            ])],
        )
        .await
        .unwrap();
    }
    let batches = get(&mut c, "big").await.unwrap();
    assert!(batches.len() > 1, "{} batches", batches.len());
    let ids: Vec<u64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(ids, (0..n as u64).collect::<Vec<_>>());
    let v = batches[1]
        .column_by_name("vector_f32")
        .unwrap()
        .as_fixed_size_list();
    let first_id = batches[1].column(0).as_primitive::<UInt64Type>().value(0) as i64;
    let expected: Vec<f32> = (0..8)
        .map(|j| ((first_id * 7 + j) % 1000) as f32 / 16.0)
        .collect();
    assert_eq!(
        v.value(0).as_primitive::<Float32Type>().values().to_vec(),
        expected
    );

    // The export loads back exactly (raw Q16.16, ids, tags, metadata):
    // dropped and created again, the collection hashes as before.
    let hash_of = |server: &Server| server.engine.proof().unwrap().hashes.collections[0].1;
    let original = hash_of(&server);
    let (status, body) = rest(&server, "DELETE", "/v1/collections/big", None);
    assert!(status == 200 || status == 204, "{status} {body}");
    create(&server, "big", 8);
    assert_ne!(hash_of(&server), original);
    for b in &batches {
        let exact = b.project(&[0, 1, 2, 3]).unwrap();
        put(&mut c, "big", vec![exact]).await.unwrap();
    }
    assert_eq!(
        hash_of(&server),
        original,
        "the copy hashes as the original"
    );

    let sql = "SELECT id FROM big ORDER BY vec <-> '[1,2,3,4,5,6,7,8]' LIMIT 5";
    let got = get(&mut c, sql).await.unwrap();
    let flight_ids: Vec<u64> = got
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
        .collect();
    let (status, body) = rest(&server, "POST", "/v1/sql", Some(json!({ "query": sql })));
    assert_eq!(status, 200, "{body}");
    let rest_ids: Vec<u64> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_u64().unwrap())
        .collect();
    assert_eq!(flight_ids.len(), 5);
    assert_eq!(flight_ids, rest_ids);
}

/// Proves every kind of bad DoPut is refused whole with a clear error —
/// wrong dimension, NaN, a component beyond Q16.16, wrong column types, a
/// negative id, an unknown column, an unknown collection, more records
/// than one event holds — and that none of them changes the log or the
/// state hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_whole() {
    let server = Server::start(ServeArgs::default());
    create(&server, "items", 2);
    let mut c = client(&server, None).await;
    put(
        &mut c,
        "items",
        vec![batch(vec![("vector", f32_list(&[&[1.0, 2.0]]))])],
    )
    .await
    .unwrap();
    let before = written(&server);

    let good = || f32_list(&[&[1.0, 2.0], &[3.0, 4.0]]);
    let cases: Vec<(&str, Vec<RecordBatch>, &str)> = vec![
        (
            "wrong dimension",
            vec![batch(vec![("vector", f32_list(&[&[1.0, 2.0, 3.0]]))])],
            "dimension",
        ),
        (
            "NaN in the second batch",
            vec![
                batch(vec![("vector", good())]),
                batch(vec![("vector", f32_list(&[&[1.0, f32::NAN]]))]),
            ],
            "vector 2 of the batch",
        ),
        (
            "beyond Q16.16",
            vec![batch(vec![("vector", f32_list(&[&[1.0e6, 0.0]]))])],
            "vector 0 of the batch",
        ),
        (
            "vector of strings",
            vec![batch(vec![(
                "vector",
                Arc::new(StringArray::from(vec!["[1,2]"])) as ArrayRef,
            )])],
            "has type Utf8",
        ),
        (
            "negative id",
            vec![batch(vec![
                ("vector", good()),
                ("id", Arc::new(Int64Array::from(vec![5, -1]))),
            ])],
            "row 1",
        ),
        (
            "float tags",
            vec![batch(vec![
                ("vector", good()),
                ("tag", Arc::new(Float32Array::from(vec![1.0, 2.0]))),
            ])],
            "integer",
        ),
        (
            "unknown column",
            vec![batch(vec![
                ("vector", good()),
                ("colour", Arc::new(UInt64Array::from(vec![1, 2]))),
            ])],
            "colour",
        ),
        (
            "duplicate id",
            vec![batch(vec![
                ("vector", good()),
                ("id", Arc::new(Int64Array::from(vec![0, 7]))),
            ])],
            "",
        ),
        (
            "binary vector",
            vec![batch(vec![(
                "vector",
                Arc::new(BinaryArray::from(vec![&b"ab"[..]])) as ArrayRef,
            )])],
            "has type Binary",
        ),
    ];
    for (what, batches, needle) in cases {
        let err = put(&mut c, "items", batches).await.expect_err(what);
        let text = err.to_string();
        assert!(text.contains(needle), "{what}: {text}");
        assert!(
            [tonic::Code::InvalidArgument, tonic::Code::AlreadyExists].contains(&code(&err)),
            "{what}: {text}"
        );
    }
    let err = put(&mut c, "nowhere", vec![batch(vec![("vector", good())])])
        .await
        .expect_err("unknown collection");
    assert_eq!(code(&err), tonic::Code::NotFound, "{err}");

    let n = valori_core::limits::BATCH_RECORDS_MAX as usize + 1;
    let values = Float32Array::from(vec![0.5f32; n * 2]);
    let vectors = Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        valori_query::datafusion::arrow::buffer::OffsetBuffer::from_lengths(std::iter::repeat_n(
            2, n,
        )),
        Arc::new(values),
        None,
    ));
    let big = batch(vec![("vector", vectors as ArrayRef)]);
    let halves = vec![big.slice(0, n / 2), big.slice(n / 2, n - n / 2)];
    let err = put(&mut c, "items", halves).await.expect_err("too many");
    assert!(err.to_string().contains("more than"), "{err}");

    assert_eq!(written(&server), before, "nothing was written");
    // The server still answers.
    assert_eq!(get(&mut c, "items").await.unwrap()[0].num_rows(), 1);
}

/// Proves Flight uses the server's users: no credentials and a wrong key
/// are refused, a read key lists and reads but cannot load, a write key
/// loads, and the handshake turns a basic login into the bearer token
/// that then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_roles() {
    let server = Server::start(ServeArgs {
        users: users(),
        ..ServeArgs::default()
    });
    create(&server, "items", 2);
    let one = || vec![batch(vec![("vector", f32_list(&[&[1.0, 2.0]]))])];

    let mut nobody = client(&server, None).await;
    let err = get(&mut nobody, "items").await.expect_err("no key");
    assert_eq!(code(&err), tonic::Code::Unauthenticated, "{err}");
    let mut wrong = client(&server, Some("nope")).await;
    let err = put(&mut wrong, "items", one())
        .await
        .expect_err("wrong key");
    assert_eq!(code(&err), tonic::Code::Unauthenticated, "{err}");

    let mut reader = client(&server, Some(READ_KEY)).await;
    let before = written(&server);
    let err = put(&mut reader, "items", one())
        .await
        .expect_err("read key");
    assert_eq!(code(&err), tonic::Code::PermissionDenied, "{err}");
    let err = get(&mut reader, "INSERT INTO items (vec) VALUES ('[1,2]')")
        .await
        .expect_err("read key writing SQL");
    assert_eq!(code(&err), tonic::Code::PermissionDenied, "{err}");
    assert_eq!(written(&server), before);
    let empty = get(&mut reader, "items").await.unwrap();
    assert_eq!(empty.iter().map(|b| b.num_rows()).sum::<usize>(), 0);

    let mut writer = client(&server, Some(WRITE_KEY)).await;
    put(&mut writer, "items", one()).await.unwrap();

    let mut login = client(&server, None).await;
    login
        .add_header("authorization", "Basic Ym9iOnIta2V5LTI=") // bob:r-key-2
        .unwrap();
    let token = login.handshake(bytes::Bytes::new()).await.unwrap();
    assert_eq!(&token[..], READ_KEY.as_bytes());
    let mut after = client(&server, Some(std::str::from_utf8(&token).unwrap())).await;
    assert_eq!(get(&mut after, "items").await.unwrap()[0].num_rows(), 1);
}

/// Proves Flight SQL with arrow-flight's `FlightSqlServiceClient`: an
/// update reports its rows, a statement and a prepared statement with a
/// bound parameter answer through the statement layer (the KNN query as
/// REST answers it), the handshake logs in, and the catalog calls list
/// the collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_client() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};

    let server = Server::start(ServeArgs {
        users: users(),
        ..ServeArgs::default()
    });
    let channel = Channel::from_shared(format!("http://{}", server.flight))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut sql = FlightSqlServiceClient::new(channel);
    let token = sql.handshake("alice", WRITE_KEY).await.unwrap();
    assert_eq!(&token[..], WRITE_KEY.as_bytes());
    sql.set_token(WRITE_KEY.to_owned());

    let created = sql
        .execute_update(
            "CREATE TABLE docs (id BIGINT PRIMARY KEY, vec VECTOR(2), tag BIGINT, metadata JSONB)"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(created, 0);
    let inserted = sql
        .execute_update(
            "INSERT INTO docs (id, vec, tag) VALUES (1, '[1,0]', 5), (2, '[0,1]', 5), (3, '[1,1]', 6)"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(inserted, 3);

    async fn rows(
        sql: &mut FlightSqlServiceClient<Channel>,
        info: arrow_flight::FlightInfo,
    ) -> Vec<u64> {
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let batches: Vec<RecordBatch> = sql
            .do_get(ticket)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
            .collect()
    }
    // GetSchema of a write prepares it and runs nothing.
    let before = written(&server);
    let insert = arrow_flight::sql::CommandStatementQuery {
        query: "INSERT INTO docs (id, vec) VALUES (9, '[1,1]')".into(),
        transaction_id: None,
    };
    let mut plain = client(&server, Some(WRITE_KEY)).await;
    let schema = plain
        .get_schema(FlightDescriptor::new_cmd(
            arrow_flight::sql::ProstMessageExt::as_any(&insert).encode_to_vec(),
        ))
        .await
        .unwrap();
    assert_eq!(schema.fields().len(), 2, "{schema:?}");
    assert_eq!(written(&server), before);

    let info = sql
        .execute("SELECT id FROM docs ORDER BY id".into(), None)
        .await
        .unwrap();
    assert_eq!(rows(&mut sql, info).await, vec![1, 2, 3]);

    let knn = "SELECT id FROM docs WHERE tag = $1 ORDER BY vec <-> '[0.9,0.2]' LIMIT 2";
    let mut prepared = sql.prepare(knn.into(), None).await.unwrap();
    assert_eq!(prepared.parameter_schema().unwrap().fields().len(), 1);
    let param = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![5]))],
    )
    .unwrap();
    prepared.set_parameters(param).unwrap();
    let info = prepared.execute().await.unwrap();
    let got = rows(&mut sql, info).await;
    let (status, body) = valori_wire::client::request(
        &server.rest.to_string(),
        "POST",
        "/v1/sql",
        Some(WRITE_KEY),
        Some(
            json!({"query": knn.replace("$1", "5")})
                .to_string()
                .as_bytes(),
        ),
    )
    .map(|a| (a.status, a.json().unwrap()))
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let rest_ids: Vec<u64> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_u64().unwrap())
        .collect();
    assert_eq!(got, rest_ids);
    assert_eq!(got, vec![1, 2]);
    prepared.close().await.unwrap();

    let info = sql
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: Some("pub%".into()),
        })
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let schemas: Vec<RecordBatch> = sql
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(schemas[0].num_rows(), 1);
    let info = sql
        .get_tables(CommandGetTables {
            include_schema: true,
            ..CommandGetTables::default()
        })
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let tables: Vec<RecordBatch> = sql
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let names = tables[0]
        .column_by_name("table_name")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(names.value(0), "docs");
}

/// Proves Flight SQL's catalog commands answer with the schemas the Flight
/// SQL specification gives (`FlightSql.proto`: `GetCatalogs` <catalog_name:
/// utf8 not null>, `GetDbSchemas` <catalog_name: utf8, db_schema_name: utf8
/// not null>, `GetTableTypes` <table_type: utf8 not null>) and with values
/// the other front ends agree with: the one catalog is the database SQL
/// names (`current_database()`, `table_catalog`), the catalog and schema
/// are the ones a qualified SQL name resolves in, every `table_type` that `GetTables`
/// reports is one `GetTableTypes` lists, and the tables are exactly those
/// `information_schema.tables` lists in `public` over SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_catalog_commands() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};

    let server = Server::start(ServeArgs::default());
    create(&server, "alpha", 2);
    sql_rows(
        &server,
        "CREATE TABLE beta (id bigserial PRIMARY KEY, embedding vector(2), note text)",
    );
    let channel = Channel::from_shared(format!("http://{}", server.flight))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut sql = FlightSqlServiceClient::new(channel);

    async fn fetch(
        sql: &mut FlightSqlServiceClient<Channel>,
        info: arrow_flight::FlightInfo,
    ) -> (Schema, Vec<RecordBatch>) {
        let announced = info.clone().try_decode_schema().unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let batches: Vec<RecordBatch> = sql
            .do_get(ticket)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        for b in &batches {
            assert_eq!(
                b.schema().as_ref(),
                &announced,
                "stream differs from FlightInfo"
            );
        }
        (announced, batches)
    }
    fn strings(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
        batches
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name(column).unwrap().as_string::<i32>();
                (0..c.len())
                    .map(|i| (!c.is_null(i)).then(|| c.value(i).to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    let info = sql.get_catalogs().await.unwrap();
    let (schema, batches) = fetch(&mut sql, info).await;
    assert_eq!(
        schema,
        Schema::new(vec![Field::new("catalog_name", DataType::Utf8, false)])
    );
    let catalogs = strings(&batches, "catalog_name");
    assert_eq!(catalogs.len(), 1, "{catalogs:?}");
    let catalog = catalogs[0].clone().unwrap();

    let info = sql
        .get_db_schemas(CommandGetDbSchemas::default())
        .await
        .unwrap();
    let (schema, batches) = fetch(&mut sql, info).await;
    assert_eq!(
        schema,
        Schema::new(vec![
            Field::new("catalog_name", DataType::Utf8, true),
            Field::new("db_schema_name", DataType::Utf8, false),
        ])
    );
    assert_eq!(
        strings(&batches, "catalog_name"),
        vec![Some(catalog.clone())]
    );
    let db_schemas = strings(&batches, "db_schema_name");
    assert_eq!(db_schemas.len(), 1, "{db_schemas:?}");
    let db_schema = db_schemas[0].clone().unwrap();
    // A filter that matches nothing answers no rows, with the same schema.
    let info = sql
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: Some("nothing%".into()),
        })
        .await
        .unwrap();
    let (_, batches) = fetch(&mut sql, info).await;
    assert!(strings(&batches, "db_schema_name").is_empty());

    // The catalog is the database the Postgres front end names, and the
    // catalog and schema listed are where SQL finds the tables.
    assert_eq!(
        sql_rows(&server, "SELECT current_database()"),
        vec![json!([catalog])]
    );
    for table in ["alpha", "beta"] {
        let q = format!("SELECT count(*) FROM \"{catalog}\".\"{db_schema}\".{table}");
        assert_eq!(sql_rows(&server, &q), vec![json!([0])], "{q}");
    }
    // Writes take the qualified name too.
    sql_rows(
        &server,
        &format!("INSERT INTO {catalog}.{db_schema}.alpha (id, vec) VALUES (1, '[1,0]')"),
    );
    assert_eq!(sql_rows(&server, "SELECT id FROM alpha"), vec![json!([1])]);
    sql_rows(
        &server,
        &format!("DELETE FROM {catalog}.{db_schema}.alpha WHERE id = 1"),
    );
    assert_eq!(
        sql_rows(&server, "SELECT count(*) FROM alpha"),
        vec![json!([0])]
    );

    let info = sql.get_table_types().await.unwrap();
    let (schema, batches) = fetch(&mut sql, info).await;
    assert_eq!(
        schema,
        Schema::new(vec![Field::new("table_type", DataType::Utf8, false)])
    );
    let types: Vec<String> = strings(&batches, "table_type")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let mut sorted = types.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(types, sorted, "ordered by table_type, no repeats");

    let info = sql.get_tables(CommandGetTables::default()).await.unwrap();
    let (_, batches) = fetch(&mut sql, info).await;
    let listed: Vec<String> = strings(&batches, "table_name")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    for t in strings(&batches, "table_type") {
        let t = t.unwrap();
        assert!(types.contains(&t), "GetTables type {t} not in {types:?}");
    }
    for (column, expected) in [("catalog_name", &catalog), ("db_schema_name", &db_schema)] {
        let got = strings(&batches, column);
        assert_eq!(got.len(), listed.len());
        assert!(got.iter().all(|c| c.as_ref() == Some(expected)), "{got:?}");
    }
    let over_sql: Vec<String> = sql_rows(
        &server,
        "SELECT table_name, table_catalog FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_name",
    )
    .into_iter()
    .map(|r| {
        assert_eq!(r[1], json!(catalog));
        r[0].as_str().unwrap().to_owned()
    })
    .collect();
    assert_eq!(over_sql, vec!["alpha", "beta"]);
    assert_eq!(listed, over_sql);
}

/// Proves a collection's export is one state even while it is written:
/// an `UPDATE` of tags and a `DELETE` committed after the first
/// batch was read change nothing in the later batches (every tag is the
/// snapshot's, every row is there), and the stream's log size is the one
/// before those writes. A collection dropped during its export ends the
/// stream with an error instead of rows of another collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_one_state_under_writes() {
    let server = Server::start(ServeArgs::default());
    let mut c = client(&server, None).await;
    let n: i64 = 600_000;
    let load = |name: &'static str| {
        let server = &server;
        async move {
            create(server, name, 8);
            let mut c = client(server, None).await;
            for chunk in 0..(n / 100_000) {
                let ids: Vec<i64> = (chunk * 100_000..(chunk + 1) * 100_000).collect();
                let vectors = Arc::new(ListArray::new(
                    Arc::new(Field::new("item", DataType::Float32, false)),
                    valori_query::datafusion::arrow::buffer::OffsetBuffer::from_lengths(
                        std::iter::repeat_n(8, ids.len()),
                    ),
                    Arc::new(Float32Array::from(vec![0.25f32; ids.len() * 8])),
                    None,
                ));
                put(
                    &mut c,
                    name,
                    vec![batch(vec![
                        ("id", Arc::new(Int64Array::from(ids))),
                        ("vector", vectors),
                    ])],
                )
                .await
                .unwrap();
            }
        }
    };
    load("big").await;
    let log_size = server.engine.proof().unwrap().log_size;

    let mut stream = c.do_get(Ticket::new(b"big".to_vec())).await.unwrap();
    let first = stream.try_next().await.unwrap().unwrap();
    assert_eq!(
        first.schema().metadata()["valori.log_size"],
        log_size.to_string()
    );
    for sql in [
        "UPDATE big SET tag = 9 WHERE id IN (0, 1, 299999, 599999)",
        "DELETE FROM big WHERE id IN (599998, 599999)",
    ] {
        let (status, body) = rest(&server, "POST", "/v1/sql", Some(json!({ "query": sql })));
        assert_eq!(status, 200, "{sql}: {body}");
    }
    assert_eq!(server.engine.proof().unwrap().log_size, log_size + 2);
    let mut batches = vec![first];
    while let Some(b) = stream.try_next().await.unwrap() {
        batches.push(b);
    }
    assert!(batches.len() >= 4, "{} batches", batches.len());
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, n as usize, "deleted rows are still in the export");
    for b in &batches {
        let tags = b
            .column_by_name("tag")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert!(
            tags.values().iter().all(|&t| t == 0),
            "a tag of a later state"
        );
    }

    load("gone").await;
    let mut stream = c.do_get(Ticket::new(b"gone".to_vec())).await.unwrap();
    stream.try_next().await.unwrap().unwrap();
    let (status, body) = rest(&server, "DELETE", "/v1/collections/gone", None);
    assert!(status == 200 || status == 204, "{status} {body}");
    let mut failed = None;
    loop {
        match stream.try_next().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed.expect("the export of a dropped collection fails");
    assert_eq!(code(&err), tonic::Code::AlreadyExists, "{err}");
    assert!(
        err.to_string().contains("dropped during the export"),
        "{err}"
    );
}

/// The `app_metadata` of the first and of the last message of a DoGet.
async fn first_and_last_metadata(
    stream: arrow_flight::decode::FlightRecordBatchStream,
) -> (Value, Value, usize) {
    let messages: Vec<_> = stream.into_inner().try_collect().await.unwrap();
    let json = |m: &arrow_flight::decode::DecodedFlightData| -> Value {
        serde_json::from_slice(&m.inner.app_metadata).unwrap()
    };
    let rows = messages
        .iter()
        .map(|m| match &m.payload {
            arrow_flight::decode::DecodedPayload::RecordBatch(b) => b.num_rows(),
            _ => 0,
        })
        .sum();
    (json(&messages[0]), json(messages.last().unwrap()), rows)
}

/// The provenance JSON of the server's current state.
fn state_json(server: &Server) -> Value {
    let (log_size, log_root, state_hash) = written(server);
    json!({"log_size": log_size, "log_root": log_root, "state_hash": state_hash})
}

/// Proves SQL query tickets carry provenance: the `FlightInfo` the state
/// when it was made; the stream's first message the state before the
/// statement ran, and its last message `from` (that state), `to` (the
/// state once the statement finished) and `consistent` (true: nothing was
/// written in between) — over plain Flight (a SQL ticket) and over Flight
/// SQL (a statement and a prepared statement), before and after a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_tickets_carry_provenance() {
    use arrow_flight::sql::client::FlightSqlServiceClient;

    let server = Server::start(ServeArgs::default());
    create(&server, "big", 8);
    let mut c = client(&server, None).await;
    let n = 100_000i64;
    put(
        &mut c,
        "big",
        vec![batch(vec![
            ("id", Arc::new(Int64Array::from((0..n).collect::<Vec<_>>()))),
            (
                "vector",
                Arc::new(ListArray::new(
                    Arc::new(Field::new("item", DataType::Float32, false)),
                    valori_query::datafusion::arrow::buffer::OffsetBuffer::from_lengths(
                        std::iter::repeat_n(8, n as usize),
                    ),
                    Arc::new(Float32Array::from(vec![0.5f32; n as usize * 8])),
                    None,
                )),
            ),
        ])],
    )
    .await
    .unwrap();
    let quiet = state_json(&server);
    let sql = "SELECT id, tag FROM big WHERE tag = 0";

    // Plain Flight: FlightInfo, then a quiet read.
    let info = c
        .get_flight_info(FlightDescriptor::new_cmd(sql.as_bytes().to_vec()))
        .await
        .unwrap();
    let info_meta: Value = serde_json::from_slice(&info.app_metadata).unwrap();
    assert_eq!(info_meta, quiet);
    let stream = c
        .do_get(Ticket::new(sql.as_bytes().to_vec()))
        .await
        .unwrap();
    let (first, last, rows) = first_and_last_metadata(stream).await;
    assert_eq!(rows, n as usize);
    assert_eq!(first, quiet);
    assert_eq!(
        last,
        json!({"from": quiet, "to": quiet, "consistent": true})
    );

    let (status, body) = rest(
        &server,
        "POST",
        "/v1/sql",
        Some(json!({"query": "UPDATE big SET tag = 3 WHERE id = 5"})),
    );
    assert_eq!(status, 200, "{body}");
    let after = state_json(&server);
    assert_ne!(after, quiet);

    // Flight SQL: a statement and a prepared statement, nothing written.
    let channel = Channel::from_shared(format!("http://{}", server.flight))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut fsql = FlightSqlServiceClient::new(channel);
    let info = fsql.execute(sql.into(), None).await.unwrap();
    let info_meta: Value = serde_json::from_slice(&info.app_metadata).unwrap();
    assert_eq!(info_meta, after);
    let stream = fsql
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    let (first, last, rows) = first_and_last_metadata(stream).await;
    assert_eq!(rows, n as usize - 1);
    assert_eq!(first, after);
    assert_eq!(
        last,
        json!({"from": after, "to": after, "consistent": true})
    );
    let mut prepared = fsql
        .prepare("SELECT id FROM big WHERE id < 10".into(), None)
        .await
        .unwrap();
    let info = prepared.execute().await.unwrap();
    let info_meta: Value = serde_json::from_slice(&info.app_metadata).unwrap();
    assert_eq!(info_meta, after);
    let stream = fsql
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    let (_, last, rows) = first_and_last_metadata(stream).await;
    assert_eq!(rows, 10);
    assert_eq!(last["consistent"], json!(true));
    // An empty answer: one message carries both.
    let stream = c
        .do_get(Ticket::new(
            b"SELECT id FROM big WHERE id > 1000000".to_vec(),
        ))
        .await
        .unwrap();
    let (first, last, rows) = first_and_last_metadata(stream).await;
    assert_eq!(rows, 0);
    assert_eq!(first, last);
    assert_eq!(last["consistent"], json!(true));
}

/// Proves `GetXdbcTypeInfo` answers with the schema the Flight SQL
/// protocol requires (FlightSql.proto, `CommandGetXdbcTypeInfo`: field
/// names, types and nullability as listed there), rows ordered by
/// `data_type` then `type_name`, the table columns' types among them, and
/// that asking for one `data_type` answers only its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xdbc_type_info_has_the_required_schema() {
    use arrow_flight::sql::CommandGetXdbcTypeInfo;
    use arrow_flight::sql::client::FlightSqlServiceClient;

    let server = Server::start(ServeArgs {
        users: users(),
        ..ServeArgs::default()
    });
    let channel = Channel::from_shared(format!("http://{}", server.flight))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut sql = FlightSqlServiceClient::new(channel);
    sql.set_token(READ_KEY.to_owned());

    async fn fetch(
        sql: &mut FlightSqlServiceClient<Channel>,
        data_type: Option<i32>,
    ) -> Vec<RecordBatch> {
        let info = sql
            .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type })
            .await
            .unwrap();
        sql.do_get(info.endpoint[0].ticket.clone().unwrap())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }
    let batches = fetch(&mut sql, None).await;
    let schema = batches[0].schema();
    let utf8_list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)));
    let required: Vec<(&str, DataType, bool)> = vec![
        ("type_name", DataType::Utf8, false),
        ("data_type", DataType::Int32, false),
        ("column_size", DataType::Int32, true),
        ("literal_prefix", DataType::Utf8, true),
        ("literal_suffix", DataType::Utf8, true),
        ("create_params", utf8_list, true),
        ("nullable", DataType::Int32, false),
        ("case_sensitive", DataType::Boolean, false),
        ("searchable", DataType::Int32, false),
        ("unsigned_attribute", DataType::Boolean, true),
        ("fixed_prec_scale", DataType::Boolean, false),
        ("auto_increment", DataType::Boolean, true),
        ("local_type_name", DataType::Utf8, true),
        ("minimum_scale", DataType::Int32, true),
        ("maximum_scale", DataType::Int32, true),
        ("sql_data_type", DataType::Int32, false),
        ("datetime_subcode", DataType::Int32, true),
        ("num_prec_radix", DataType::Int32, true),
        ("interval_precision", DataType::Int32, true),
    ];
    let got: Vec<(&str, DataType, bool)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
        .collect();
    assert_eq!(got, required);

    let names: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let c = b.column(0).as_string::<i32>();
            (0..c.len())
                .map(|i| c.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let codes: Vec<i32> = batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Int32Type>().values().to_vec())
        .collect();
    for name in [
        "BIGINT",
        "VECTOR",
        "BYTEA",
        "JSONB",
        "DOUBLE PRECISION",
        "REAL",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    let mut sorted: Vec<(i32, String)> = codes.iter().copied().zip(names.clone()).collect();
    sorted.sort();
    assert_eq!(
        sorted,
        codes.iter().copied().zip(names.clone()).collect::<Vec<_>>()
    );
    // XDBC_BIGINT is -5 (java.sql.Types.BIGINT).
    let bigint = fetch(&mut sql, Some(-5)).await;
    let only: Vec<&str> = bigint
        .iter()
        .flat_map(|b| {
            let c = b.column(0).as_string::<i32>();
            (0..c.len()).map(|i| c.value(i)).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(only, vec!["BIGINT"]);
}

/// Proves the last message of a query stream says `consistent: false`,
/// with `to` the later state, when a write commits while the statement's
/// batches are still being produced: the batches come from a channel
/// that the test feeds around a write, so the write lands mid-stream
/// whatever the network buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_stream_reports_a_write_during_the_answer() {
    use valori_wire::flight::export::Provenance;
    use valori_wire::flight::{Results, encode_query};

    let server = Server::start(ServeArgs::default());
    create(&server, "w", 2);
    let before = state_json(&server);
    let start = Provenance::of(&server.engine, None).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::UInt64, false)]));
    let one = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(UInt64Array::from(vec![1u64]))],
    )
    .unwrap();
    let (tx, rx) = futures::channel::mpsc::unbounded::<
        Result<RecordBatch, valori_wire::flight::FlightError>,
    >();
    let stream = encode_query(
        Arc::clone(&server.engine),
        start,
        Results {
            schema,
            batches: Box::pin(rx),
        },
    );
    tx.unbounded_send(Ok(one.clone())).unwrap();
    let reader = tokio::spawn(async move { stream.try_collect::<Vec<_>>().await.unwrap() });
    let (status, body) = rest(
        &server,
        "POST",
        "/v1/collections/w/records",
        Some(json!({"vector": [1.0, 2.0]})),
    );
    assert_eq!(status, 201, "{body}");
    tx.unbounded_send(Ok(one)).unwrap();
    drop(tx);
    let messages = reader.await.unwrap();
    let after = state_json(&server);
    let first: Value = serde_json::from_slice(&messages[0].app_metadata).unwrap();
    let last: Value = serde_json::from_slice(&messages.last().unwrap().app_metadata).unwrap();
    assert_eq!(first, before);
    assert_eq!(
        last,
        json!({"from": before, "to": after, "consistent": false})
    );
    // Only the first and the last message carry metadata.
    for m in &messages[1..messages.len() - 1] {
        assert!(m.app_metadata.is_empty());
    }
}

/// `POST /v1/sql` on `server`: the answer's rows.
fn sql_rows(server: &Server, query: &str) -> Vec<Value> {
    let (status, body) = rest(server, "POST", "/v1/sql", Some(json!({ "query": query })));
    assert_eq!(status, 200, "{query}: {body}");
    body["rows"].as_array().cloned().unwrap_or_default()
}

/// The declaration of the table the declared-table tests use.
const ITEMS: &str = "CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3), \
    content text NOT NULL, category_id int DEFAULT 7, price double precision, active boolean, \
    seen timestamptz, meta jsonb, blob bytea, labels text[], uid uuid UNIQUE)";

/// Proves a table with declared columns is listed, described and exported
/// over plain Flight with its declared columns and their Arrow types (text
/// as Utf8, int as Int32, timestamptz as Timestamp(µs, UTC), jsonb and uuid
/// as Utf8, bytea as Binary, text[] as List<Utf8>) plus the exact Q16.16
/// view of its vector; that the rows equal what SQL over REST answers
/// (Q16.16 checked against `round(x · 65536)` computed here); that the
/// provenance is the engine's proof; and that the export with deleted rows
/// carries record ids and tombstones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_table_listed_described_and_exported() {
    let server = Server::start(ServeArgs::default());
    sql_rows(&server, ITEMS);
    sql_rows(
        &server,
        "INSERT INTO items (embedding, content, category_id, price, active, seen, meta, blob, labels, uid) VALUES \
         ('[0.5,-1,2]', 'first', 3, 1.25, true, '2024-05-06 07:08:09+00', '{\"b\":1,\"a\":[1,2]}', '\\x0102', ARRAY['x','y'], 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), \
         ('[1,1,1]', 'second', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    );
    sql_rows(
        &server,
        "INSERT INTO items (embedding, content, price, active, meta, labels) VALUES \
         ('[-0.25,0,3.5]', 'third', 2.5, false, '[]', '{}')",
    );
    sql_rows(&server, "DELETE FROM items WHERE id = 2");

    let mut c = client(&server, None).await;
    let infos: Vec<arrow_flight::FlightInfo> = c
        .list_flights(bytes::Bytes::new())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let info = infos
        .iter()
        .find(|i| i.flight_descriptor.as_ref().unwrap().path == vec!["items".to_owned()])
        .expect("items is listed");
    assert_eq!(info.total_records, 2, "live rows");
    let listed = Schema::try_from(info.clone()).unwrap();
    let types: Vec<(String, DataType)> = listed
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let f32_3 = DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 3);
    let q16_3 = DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Int32, false)), 3);
    let utc = DataType::Timestamp(
        valori_query::datafusion::arrow::datatypes::TimeUnit::Microsecond,
        Some("UTC".into()),
    );
    let labels = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let expected: Vec<(String, DataType)> = [
        ("id", DataType::Int64),
        ("embedding", f32_3),
        ("content", DataType::Utf8),
        ("category_id", DataType::Int32),
        ("price", DataType::Float64),
        ("active", DataType::Boolean),
        ("seen", utc),
        ("meta", DataType::Utf8),
        ("blob", DataType::Binary),
        ("labels", labels),
        ("uid", DataType::Utf8),
        ("embedding_q16", q16_3),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_owned(), t))
    .collect();
    assert_eq!(types, expected);
    // GetFlightInfo and GetSchema describe it the same way.
    let one = c
        .get_flight_info(FlightDescriptor::new_path(vec!["items".into()]))
        .await
        .unwrap();
    assert_eq!(Schema::try_from(one).unwrap().fields(), listed.fields());
    let schema = c
        .get_schema(FlightDescriptor::new_path(vec!["items".into()]))
        .await
        .unwrap();
    assert_eq!(schema.fields(), listed.fields());

    let before = written(&server);
    let batches = get(&mut c, "items").await.unwrap();
    let b =
        valori_query::datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches)
            .unwrap();
    assert_eq!(b.num_rows(), 2);
    let meta = b.schema().metadata().clone();
    assert_eq!(meta["valori.log_size"], before.0.to_string());
    assert_eq!(meta["valori.log_root"], before.1);
    assert_eq!(meta["valori.state_hash"], before.2);
    let proof = server.engine.proof().unwrap();
    let items_hash = proof
        .hashes
        .collections
        .iter()
        .find(|(n, _)| n.as_str() == "items")
        .map(|(_, h)| h.to_string())
        .unwrap();
    assert_eq!(meta["valori.collection_hash"], items_hash);

    // The same rows as SQL over REST answers them.
    let rows = sql_rows(
        &server,
        "SELECT id, content, category_id, price, active, meta, uid FROM items ORDER BY id",
    );
    assert_eq!(rows.len(), 2);
    let ids = b
        .column_by_name("id")
        .unwrap()
        .as_primitive::<valori_query::datafusion::arrow::datatypes::Int64Type>();
    let content = b.column_by_name("content").unwrap().as_string::<i32>();
    let category = b
        .column_by_name("category_id")
        .unwrap()
        .as_primitive::<Int32Type>();
    let meta_col = b.column_by_name("meta").unwrap().as_string::<i32>();
    let uid = b.column_by_name("uid").unwrap().as_string::<i32>();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(json!(ids.value(i)), row[0]);
        assert_eq!(json!(content.value(i)), row[1]);
        assert_eq!(json!(category.value(i)), row[2]);
        assert_eq!(
            meta_col.value(i),
            row[5].as_str().unwrap_or(&row[5].to_string())
        );
        if row[6].is_null() {
            assert!(uid.is_null(i));
        } else {
            assert_eq!(json!(uid.value(i)), row[6]);
        }
    }
    assert_eq!(ids.values().to_vec(), vec![1, 3]);
    assert_eq!(
        category.values().to_vec(),
        vec![3, 7],
        "DEFAULT 7 filled the third row"
    );
    let blob = b.column_by_name("blob").unwrap().as_binary::<i32>();
    assert_eq!(blob.value(0), &[1u8, 2]);
    assert!(blob.is_null(1));
    let labels = b.column_by_name("labels").unwrap().as_list::<i32>();
    assert_eq!(
        labels
            .value(0)
            .as_string::<i32>()
            .iter()
            .collect::<Vec<_>>(),
        vec![Some("x"), Some("y")]
    );
    assert_eq!(labels.value(1).len(), 0);
    let seen =
        b.column_by_name("seen")
            .unwrap()
            .as_primitive::<valori_query::datafusion::arrow::datatypes::TimestampMicrosecondType>();
    // 2024-05-06T07:08:09Z in microseconds since the epoch.
    assert_eq!(seen.value(0), 1_714_979_289_000_000);
    // Q16.16: round(x · 65536) of the inserted components.
    let q16 = b
        .column_by_name("embedding_q16")
        .unwrap()
        .as_fixed_size_list();
    let expect_q16 = |xs: [f64; 3]| xs.map(|x| (x * 65536.0).round() as i32).to_vec();
    assert_eq!(
        q16.value(0).as_primitive::<Int32Type>().values().to_vec(),
        expect_q16([0.5, -1.0, 2.0])
    );
    assert_eq!(
        q16.value(1).as_primitive::<Int32Type>().values().to_vec(),
        expect_q16([-0.25, 0.0, 3.5])
    );
    let f32s = b.column_by_name("embedding").unwrap().as_fixed_size_list();
    assert_eq!(
        f32s.value(1)
            .as_primitive::<Float32Type>()
            .values()
            .to_vec(),
        vec![-0.25, 0.0, 3.5]
    );
    // A SQL ticket over the table answers the same declared columns.
    let by_sql = get(&mut c, "SELECT * FROM items ORDER BY id")
        .await
        .unwrap();
    let sql_fields: Vec<String> = by_sql[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        sql_fields,
        expected[..11]
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
    );

    // With deleted rows: every row, its record id and tombstone.
    let all = get(&mut c, r#"{"collection": "items", "deleted": true}"#)
        .await
        .unwrap();
    let all =
        valori_query::datafusion::arrow::compute::concat_batches(&all[0].schema(), &all).unwrap();
    assert_eq!(all.num_rows(), 3);
    let record_ids = all
        .column_by_name("record_id")
        .unwrap()
        .as_primitive::<UInt64Type>();
    assert_eq!(
        record_ids.values().to_vec(),
        vec![1, 2, 3],
        "integer key = record id"
    );
    let deleted = all.column_by_name("deleted").unwrap().as_boolean();
    assert_eq!(
        deleted.iter().collect::<Vec<_>>(),
        vec![Some(false), Some(true), Some(false)]
    );
    assert_eq!(all.schema().metadata()["valori.rows"], "3");
    assert_eq!(
        all.schema().metadata()["valori.sequences"],
        "3,0,0,0,0,0,0,0,0,0"
    );
    assert_eq!(written(&server), before, "reading wrote nothing");
}

/// The declaration of the table the load tests use: a serial key, a
/// vector, a NOT NULL column, a default, a unique column.
const LOADED: &str = "CREATE TABLE loaded (id bigserial PRIMARY KEY, embedding vector(2), \
    content text NOT NULL, category_id int DEFAULT 7, price real, code text UNIQUE)";

/// Proves a DoPut into a table with declared columns is the same write as
/// SQL `INSERT` of the same values: the serial key and the DEFAULT are
/// filled as INSERT fills them, and a second server given the INSERT
/// reaches the same state hash; the rows read back over REST SQL; and
/// CommandStatementIngest (ADBC's adbc_ingest) appends through the same
/// path, while mode create and replace of the existing table are refused,
/// and mode create of a new table with declared-style columns is refused
/// naming CREATE TABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_table_put_and_ingest_are_insert() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use arrow_flight::sql::{
        CommandStatementIngest, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
    };

    let flight = Server::start(ServeArgs::default());
    let other = Server::start(ServeArgs::default());
    sql_rows(&flight, LOADED);
    sql_rows(&other, LOADED);

    let mut c = client(&flight, None).await;
    let answer = put(
        &mut c,
        "loaded",
        vec![
            batch(vec![
                ("embedding", f32_list(&[&[0.5, -1.0], &[0.25, 2.0]])),
                ("content", Arc::new(StringArray::from(vec!["a", "b"]))),
                ("price", Arc::new(Float32Array::from(vec![Some(1.5), None]))),
            ]),
            batch(vec![
                ("embedding", f32_list(&[&[3.0, 0.125]])),
                ("content", Arc::new(StringArray::from(vec!["c"]))),
                ("price", Arc::new(Float32Array::from(vec![Some(0.1)]))),
            ]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(answer["rows"], 3);
    assert_eq!(written(&flight).0, 2, "one event after the CREATE TABLE");
    sql_rows(
        &other,
        "INSERT INTO loaded (embedding, content, price) VALUES \
         ('[0.5,-1]', 'a', 1.5), ('[0.25,2]', 'b', NULL), ('[3,0.125]', 'c', 0.1)",
    );
    assert_eq!(state_hash(&flight), state_hash(&other));
    let rows = sql_rows(
        &flight,
        "SELECT id, content, category_id, embedding FROM loaded ORDER BY id",
    );
    assert_eq!(
        rows,
        vec![
            json!([1, "a", 7, [0.5, -1.0]]),
            json!([2, "b", 7, [0.25, 2.0]]),
            json!([3, "c", 7, [3.0, 0.125]]),
        ]
    );

    let channel = Channel::from_shared(format!("http://{}", flight.flight))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut sql = FlightSqlServiceClient::new(channel);
    let ingest = |mode: TableExistsOption| CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Fail.into(),
            if_exists: mode.into(),
        }),
        table: "loaded".into(),
        ..CommandStatementIngest::default()
    };
    let more = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![100]))),
        ("embedding", f32_list(&[&[1.0, 1.0]])),
        ("content", Arc::new(StringArray::from(vec!["d"]))),
        ("code", Arc::new(StringArray::from(vec!["X1"]))),
    ]);
    let n = sql
        .execute_ingest(
            ingest(TableExistsOption::Append),
            futures::stream::iter([Ok(more.clone())]),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    sql_rows(
        &other,
        "INSERT INTO loaded (id, embedding, content, code) VALUES (100, '[1,1]', 'd', 'X1')",
    );
    assert_eq!(state_hash(&flight), state_hash(&other));
    assert_eq!(
        sql_rows(
            &flight,
            "SELECT id, category_id, code FROM loaded WHERE id = 100"
        ),
        vec![json!([100, 7, "X1"])]
    );
    let before = written(&flight);
    for mode in [TableExistsOption::Fail, TableExistsOption::Replace] {
        let err = sql
            .execute_ingest(ingest(mode), futures::stream::iter([Ok(more.clone())]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exists") || err.contains("declared columns"),
            "{err}"
        );
    }
    // Mode create of a new name with columns other than the fixed
    // layout's declares a table from the batch's schema (the option names
    // its key): two events, the CREATE TABLE and the rows, the same state
    // as that CREATE TABLE and INSERT over SQL on the other server.
    let create = CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Create.into(),
            if_exists: TableExistsOption::Fail.into(),
        }),
        table: "fresh".into(),
        options: [("valori.primary_key".to_owned(), "id".to_owned())].into(),
        ..CommandStatementIngest::default()
    };
    let vectors = Arc::new(
        valori_query::datafusion::arrow::array::FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, true)),
            2,
            Arc::new(valori_query::datafusion::arrow::array::Float32Array::from(
                vec![1.0, 1.0, 0.5, -2.0],
            )),
            None,
        )
        .unwrap(),
    ) as ArrayRef;
    let fresh = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![5, 6]))),
        ("embedding", vectors),
        (
            "content",
            Arc::new(StringArray::from(vec![Some("e"), None])),
        ),
    ]);
    let n = sql
        .execute_ingest(create, futures::stream::iter([Ok(fresh)]))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(written(&flight).0, before.0 + 2);
    sql_rows(
        &other,
        "CREATE TABLE \"fresh\" (\"id\" bigint PRIMARY KEY, \"embedding\" vector(2), \"content\" text)",
    );
    sql_rows(
        &other,
        "INSERT INTO fresh VALUES (5, '[1,1]', 'e'), (6, '[0.5,-2]', NULL)",
    );
    assert_eq!(state_hash(&flight), state_hash(&other));
}

/// Proves each kind of bad batch into a table with declared columns is
/// refused whole, with a message naming what is wrong, and leaves the log
/// and the state hash as they were (the good rows of the same stream are
/// not written either): an unknown column, a wrong type, NULL in a NOT
/// NULL column, a duplicate key (with the table and within the stream), a
/// duplicate unique value, a wrong dimension, a NaN, and the exact Q16.16
/// view given as the vector. (Columns that change between batches, which
/// arrow-flight's encoder cannot send, are refused by
/// `ingest::tests::table_loads_are_checked_per_batch`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_table_bad_batches_are_refused_whole() {
    let server = Server::start(ServeArgs::default());
    sql_rows(&server, LOADED);
    sql_rows(
        &server,
        "INSERT INTO loaded (id, embedding, content, code) VALUES (1, '[1,0]', 'x', 'K')",
    );
    let mut c = client(&server, None).await;
    let good = || {
        batch(vec![
            ("embedding", f32_list(&[&[0.5, 0.5]])),
            ("content", Arc::new(StringArray::from(vec!["ok"]))),
        ])
    };
    let q16 = Arc::new(
        valori_query::datafusion::arrow::array::FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Int32, false)),
            2,
            Arc::new(valori_query::datafusion::arrow::array::Int32Array::from(
                vec![65536, 0],
            )),
            None,
        )
        .unwrap(),
    ) as ArrayRef;
    let cases: Vec<(&str, Vec<RecordBatch>, &str)> = vec![
        (
            "unknown column",
            vec![batch(vec![
                ("embedding", f32_list(&[&[0.5, 0.5]])),
                ("content", Arc::new(StringArray::from(vec!["ok"]))),
                ("colour", Arc::new(StringArray::from(vec!["red"]))),
            ])],
            "\"colour\" is not a column of table loaded",
        ),
        (
            "wrong type",
            vec![batch(vec![
                ("embedding", f32_list(&[&[0.5, 0.5]])),
                ("content", Arc::new(StringArray::from(vec!["ok"]))),
                ("category_id", Arc::new(StringArray::from(vec!["7"]))),
            ])],
            "column \"category_id\" has type Utf8; expected an integer type",
        ),
        (
            "null in not null",
            vec![
                good(),
                batch(vec![
                    ("embedding", f32_list(&[&[0.5, 0.5]])),
                    ("content", Arc::new(StringArray::from(vec![None::<&str>]))),
                ]),
            ],
            "null value in column \"content\"",
        ),
        (
            "duplicate key with the table",
            vec![batch(vec![
                ("id", Arc::new(Int64Array::from(vec![5, 1]))),
                ("embedding", f32_list(&[&[0.5, 0.5], &[1.0, 1.0]])),
                ("content", Arc::new(StringArray::from(vec!["a", "b"]))),
            ])],
            "duplicate key value violates unique constraint \"loaded_pkey\"",
        ),
        (
            "duplicate key within the stream",
            vec![batch(vec![
                ("id", Arc::new(Int64Array::from(vec![6, 6]))),
                ("embedding", f32_list(&[&[0.5, 0.5], &[1.0, 1.0]])),
                ("content", Arc::new(StringArray::from(vec!["a", "b"]))),
            ])],
            "loaded_pkey",
        ),
        (
            "duplicate unique value",
            vec![batch(vec![
                ("embedding", f32_list(&[&[0.5, 0.5]])),
                ("content", Arc::new(StringArray::from(vec!["a"]))),
                ("code", Arc::new(StringArray::from(vec!["K"]))),
            ])],
            "loaded_code_key",
        ),
        (
            "wrong dimension",
            vec![
                good(),
                batch(vec![
                    ("embedding", f32_list(&[&[0.5, 0.5, 0.5]])),
                    ("content", Arc::new(StringArray::from(vec!["a"]))),
                ]),
            ],
            "expected 2 dimensions, not 3",
        ),
        (
            "nan",
            vec![batch(vec![
                ("embedding", f32_list(&[&[0.5, f32::NAN]])),
                ("content", Arc::new(StringArray::from(vec!["a"]))),
            ])],
            "embedding",
        ),
        (
            "exact view as the vector",
            vec![batch(vec![
                ("embedding", q16),
                ("content", Arc::new(StringArray::from(vec!["a"]))),
            ])],
            "expected a list of Float32 or Float64",
        ),
    ];
    for (what, batches, message) in cases {
        let before = written(&server);
        let err = put(&mut c, "loaded", batches).await.expect_err(what);
        // Bad values are INVALID_ARGUMENT; a taken key is ALREADY_EXISTS.
        assert!(
            matches!(
                code(&err),
                tonic::Code::InvalidArgument | tonic::Code::AlreadyExists
            ),
            "{what}: {err}"
        );
        let ClientError::Tonic(status) = &err else {
            panic!("{what}: not a status: {err}");
        };
        assert!(status.message().contains(message), "{what}: {err}");
        assert_eq!(written(&server), before, "{what}: nothing written");
    }
    assert_eq!(
        sql_rows(&server, "SELECT count(*) FROM loaded"),
        vec![json!([1])]
    );
}

/// Proves Flight SQL reaches tables with declared columns through the
/// statement layer: a prepared KNN query with a parameter over a declared
/// table answers the ids REST's `/v1/sql` answers, and `GetTables` with
/// `include_schema` shows the declared columns with their Arrow types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_table_over_flight_sql() {
    use arrow_flight::sql::CommandGetTables;
    use arrow_flight::sql::client::FlightSqlServiceClient;

    let server = Server::start(ServeArgs::default());
    let channel = Channel::from_shared(format!("http://{}", server.flight))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut sql = FlightSqlServiceClient::new(channel);
    sql.execute_update(LOADED.into(), None).await.unwrap();
    let inserted = sql
        .execute_update(
            "INSERT INTO loaded (embedding, content, category_id) VALUES \
             ('[1,0]', 'a', 1), ('[0,1]', 'b', 1), ('[0.9,0.1]', 'c', 2), ('[0.8,0.3]', 'd', 1)"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(inserted, 4);

    let knn = "SELECT id, content FROM loaded WHERE category_id = $1 \
               ORDER BY embedding <-> '[1,0]' LIMIT 2";
    let mut prepared = sql.prepare(knn.into(), None).await.unwrap();
    prepared
        .set_parameters(
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
                vec![Arc::new(Int64Array::from(vec![1]))],
            )
            .unwrap(),
        )
        .unwrap();
    let info = prepared.execute().await.unwrap();
    let batches: Vec<RecordBatch> = sql
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let got: Vec<Value> = batches
        .iter()
        .flat_map(|b| {
            let ids = b
                .column(0)
                .as_primitive::<valori_query::datafusion::arrow::datatypes::Int64Type>()
                .clone();
            let content = b.column(1).as_string::<i32>().clone();
            (0..b.num_rows())
                .map(move |i| json!([ids.value(i), content.value(i)]))
                .collect::<Vec<_>>()
        })
        .collect();
    let rest_rows = sql_rows(&server, &knn.replace("$1", "1"));
    assert_eq!(got, rest_rows);
    assert_eq!(got, vec![json!([1, "a"]), json!([4, "d"])]);

    let info = sql
        .get_tables(CommandGetTables {
            include_schema: true,
            ..CommandGetTables::default()
        })
        .await
        .unwrap();
    let tables: Vec<RecordBatch> = sql
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let t = &tables[0];
    let names = t.column_by_name("table_name").unwrap().as_string::<i32>();
    let row = (0..t.num_rows())
        .find(|&i| names.value(i) == "loaded")
        .expect("loaded is listed");
    let ipc = t.column_by_name("table_schema").unwrap().as_binary::<i32>();
    let decoded =
        valori_query::datafusion::arrow::ipc::convert::try_schema_from_ipc_buffer(ipc.value(row))
            .unwrap();
    let columns: Vec<(String, DataType)> = decoded
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("id".to_owned(), DataType::Int64),
            (
                "embedding".to_owned(),
                DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 2)
            ),
            ("content".to_owned(), DataType::Utf8),
            ("category_id".to_owned(), DataType::Int32),
            ("price".to_owned(), DataType::Float32),
            ("code".to_owned(), DataType::Utf8),
        ]
    );
}
