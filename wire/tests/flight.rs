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
