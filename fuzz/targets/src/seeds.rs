//! Seed inputs made from real encodings: events encoded by the event
//! encoder, log segments, a snapshot and a checkpoint written by a real
//! engine, Postgres messages encoded by pgwire, JSON bodies serialized by
//! serde_json. `examples/write_seeds.rs` writes them to `fuzz/seeds/`.

use std::path::Path;

use valori_core::Metric;
use valori_core::event::{
    CollectionConfig, CollectionName, Event, IndexParams, NodeId, Record, RecordId,
};
use valori_core::golden::apply_workload;
use valori_core::state::State;
use valori_engine::Engine;
use valori_engine::wal::{FRAME_HEADER_BYTES, scan_segment};

/// One seed: target name, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn name(s: &str) -> CollectionName {
    CollectionName::new(s).expect("invariant: seed collection names are valid")
}

/// A small workload: collection `docs` (dimension 4, L2) with 8 records,
/// a tag change, two graph nodes and an edge. The SQL target queries it.
pub fn small_workload() -> Vec<Event> {
    let docs = name("docs");
    let mut events = vec![Event::CreateCollection {
        name: docs.clone(),
        config: CollectionConfig {
            dim: 4,
            metric: Metric::L2,
            index: IndexParams::default(),
        },
    }];
    for i in 0..8u64 {
        let x = i as i32;
        events.push(Event::Insert {
            collection: docs.clone(),
            record: Record {
                id: RecordId(i + 1),
                // Q16.16: i, -i, i/2, 1.
                vector: vec![x << 16, -(x << 16), x << 15, 1 << 16],
                tag: i % 3,
                metadata: format!(
                    "{{\"lang\":\"{}\",\"n\":{i}}}",
                    ["en", "fr"][i as usize % 2]
                )
                .into_bytes(),
            },
        });
    }
    events.push(Event::SetTag {
        collection: docs,
        id: RecordId(2),
        tag: 7,
    });
    events.push(Event::CreateNode {
        node: NodeId(1),
        label: 1,
    });
    events.push(Event::CreateNode {
        node: NodeId(2),
        label: 2,
    });
    events.push(Event::CreateEdge {
        from: NodeId(1),
        to: NodeId(2),
        label: 3,
    });
    events
}

/// Event seeds: the first event of each kind in the golden workload, and
/// the kinds it lacks from the small workload and a few built here.
fn event_seeds() -> Vec<Seed> {
    let mut found: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut state = State::new();
    let mut add = |bytes: &[u8]| {
        if let Ok(event) = Event::decode(bytes) {
            let kind = event.kind_name();
            if !found.iter().any(|(k, _)| *k == kind) {
                found.push((kind, bytes.to_vec()));
            }
        }
    };
    apply_workload(&mut state, |bytes, _| add(bytes));
    let docs = name("docs");
    let extra = [
        Event::Delete {
            collection: docs.clone(),
            id: RecordId(3),
        },
        Event::SetMetadata {
            collection: docs.clone(),
            id: RecordId(4),
            metadata: b"{\"a\":[1,2]}".to_vec(),
        },
        Event::DeleteNode { node: NodeId(2) },
        Event::DeleteEdge {
            from: NodeId(1),
            to: NodeId(2),
            label: 3,
        },
        Event::DeleteBatch {
            collection: docs.clone(),
            ids: vec![RecordId(1), RecordId(5)],
        },
        Event::UpdateBatch {
            collection: docs.clone(),
            ids: vec![RecordId(6)],
            tag: Some(9),
            metadata: Some(b"{}".to_vec()),
        },
        Event::DropCollections {
            names: vec![docs.clone(), name("other")],
        },
        Event::DropCollection { name: docs },
    ];
    for event in small_workload().iter().chain(extra.iter()) {
        add(&event.encode());
    }
    found
        .into_iter()
        .map(|(kind, bytes)| ("event", kind.to_owned(), bytes))
        .collect()
}

fn read_dir(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("seed generator: list directory")
        .map(|e| {
            let e = e.expect("seed generator: directory entry");
            let bytes = std::fs::read(e.path()).expect("seed generator: read file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .filter(|(n, _)| !n.ends_with(".tmp"))
        .collect();
    out.sort();
    out
}

/// Seeds of the file formats, from a real engine's data directory after
/// the small workload, a snapshot and a checkpoint.
fn file_seeds() -> Vec<Seed> {
    let dir = tempfile::tempdir().expect("seed generator: temporary directory");
    {
        let engine = Engine::open(dir.path()).expect("seed generator: open engine");
        for event in small_workload() {
            engine.submit(event).expect("seed generator: submit");
        }
        engine.wait_for_index().expect("seed generator: index");
        engine.snapshot().expect("seed generator: snapshot");
        engine.checkpoint().expect("seed generator: checkpoint");
    }
    let mut seeds = Vec::new();
    for (file, bytes) in read_dir(&dir.path().join(valori_engine::WAL_DIR)) {
        // Newest segment, intact; an older one (no damaged tail allowed);
        // newest with its last frame torn in the middle.
        let mut last = vec![1];
        last.extend_from_slice(&bytes);
        let mut older = vec![0];
        older.extend_from_slice(&bytes);
        let mut torn = last.clone();
        torn.truncate(torn.len() - 5);
        seeds.push(("wal_segment", format!("{file}.last"), last));
        seeds.push(("wal_segment", format!("{file}.older"), older));
        seeds.push(("wal_segment", format!("{file}.torn"), torn));
        let first = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        let scan = scan_segment(&bytes, first, true).expect("seed generator: scan");
        for frame in scan.frames.iter().take(6) {
            let start = frame.offset as usize;
            let end = start + FRAME_HEADER_BYTES + frame.payload.len();
            seeds.push((
                "wal_frame",
                format!("seq{}", frame.seq),
                bytes[start..end].to_vec(),
            ));
        }
    }
    for (file, bytes) in read_dir(&dir.path().join(valori_engine::SNAPSHOT_DIR)) {
        seeds.push(("snapshot", file, bytes));
    }
    let checkpoint = std::fs::read(dir.path().join(valori_engine::CHECKPOINT_FILE))
        .expect("seed generator: read checkpoint");
    seeds.push(("checkpoint", "checkpoint".to_owned(), checkpoint));
    seeds
}

/// Every seed of this build.
pub fn generate() -> Vec<Seed> {
    let mut seeds = event_seeds();
    seeds.extend(file_seeds());
    #[cfg(feature = "sql")]
    seeds.extend(text_seeds::all());
    seeds
}

#[cfg(feature = "sql")]
mod text_seeds {
    use bytes::{Bytes, BytesMut};
    use pgwire::messages::PgWireFrontendMessage;
    use pgwire::messages::extendedquery::{Bind, Describe, Execute, Parse, Sync};
    use pgwire::messages::simplequery::Query;
    use pgwire::messages::startup::Startup;
    use serde_json::json;

    use super::Seed;

    const DSL: &[&str] = &[
        "FROM docs NEAREST [0.1, -2, 3e-1, 1] K 3",
        "FROM docs NEAREST $q K 5 WHERE tag IN (0, 7) AND meta.lang = 'en' EF 64",
        "SELECT id, distance, meta.lang FROM docs NEAREST $q EXACT K 2",
        "FROM docs NEAREST $q K 4 WHERE (tag = 1 OR tag = 2) AND NOT id > 5",
        "FROM docs NEAREST $q K 1 WHERE meta.name = 'O''Brien' AND meta.n >= 2",
    ];

    const SQL: &[&str] = &[
        "SELECT id, tag FROM docs ORDER BY id",
        "SELECT id, vec <-> '[1,0,0,1]' AS d FROM docs WHERE tag = 7 ORDER BY d, id LIMIT 3",
        "SELECT count(*), sum(tag) FROM docs GROUP BY tag % 2",
        "SELECT id FROM docs WHERE metadata->>'lang' = 'en' AND id IN (1, 2, 3)",
        "SELECT a.id, b.id FROM docs a JOIN docs b ON a.tag = b.tag WHERE a.id < b.id",
        "SELECT * FROM information_schema.tables",
        "SELECT CAST('[1,2,3,4]' AS VARCHAR), 1 + 2 * 3, 'x' || 'y'",
        "WITH t AS (SELECT id FROM docs) SELECT max(id) FROM t WHERE 1=1 OR 1=2",
    ];

    const WRITES: &[&str] = &[
        "CREATE TABLE docs (id BIGINT PRIMARY KEY, vec VECTOR(4), tag BIGINT, metadata JSONB)",
        "CREATE TABLE IF NOT EXISTS docs (id BIGINT, vec VECTOR(4))",
        "DROP TABLE IF EXISTS docs, other",
        "CREATE INDEX i ON docs USING hnsw (vec vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
        "INSERT INTO docs (id, vec, tag, metadata) VALUES (1, '[1,2,3,4]', 7, '{\"lang\": \"en\"}'), (2, ARRAY[0,1,0,1], 7, NULL)",
        "INSERT INTO docs (vec, tag) VALUES ('[1,1,1,1]', 3)",
        "UPDATE docs SET tag = 8, metadata = '\\x00ff' WHERE id = 1",
        "DELETE FROM docs WHERE id IN (1, 2) OR id = 3",
        "COPY docs (id, vec, tag, metadata) FROM STDIN",
        "COPY docs (id, vec, tag) FROM STDIN WITH (FORMAT csv, HEADER)",
    ];

    fn pg_message(state: u8, messages: &[PgWireFrontendMessage]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        for m in messages {
            m.encode(&mut buf).expect("seed generator: encode message");
        }
        let mut out = vec![state];
        out.extend_from_slice(&buf);
        out
    }

    /// A binary one-dimensional array of `element` (OID) items.
    fn binary_array(element: u32, items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&1i32.to_be_bytes()); // ndim
        out.extend_from_slice(&0i32.to_be_bytes()); // flags
        out.extend_from_slice(&element.to_be_bytes());
        out.extend_from_slice(&(items.len() as i32).to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes()); // lower bound
        for item in items {
            out.extend_from_slice(&(item.len() as i32).to_be_bytes());
            out.extend_from_slice(item);
        }
        out
    }

    pub fn all() -> Vec<Seed> {
        let mut seeds = Vec::new();
        for (i, q) in DSL.iter().enumerate() {
            seeds.push(("dsl", format!("q{i}"), q.as_bytes().to_vec()));
        }
        for (i, q) in SQL.iter().enumerate() {
            seeds.push(("sql", format!("q{i}"), q.as_bytes().to_vec()));
        }
        for (i, q) in WRITES.iter().enumerate() {
            seeds.push(("sql_write", format!("w{i}"), q.as_bytes().to_vec()));
        }
        // pg_param: selector byte (type index in the target's list, high
        // bit for binary), then the value.
        let vector: Vec<u8> = {
            let mut v = 4u16.to_be_bytes().to_vec();
            v.extend_from_slice(&0u16.to_be_bytes());
            for x in [1.0f32, -2.5, 0.0, 3.25] {
                v.extend_from_slice(&x.to_be_bytes());
            }
            v
        };
        let f4 = |x: f32| x.to_be_bytes().to_vec();
        let params: Vec<(&str, u8, Vec<u8>)> = vec![
            ("bool", 0x80, vec![1]),
            ("int8", 0x80 | 3, 42i64.to_be_bytes().to_vec()),
            ("float8", 0x80 | 6, 0.5f64.to_be_bytes().to_vec()),
            ("jsonb", 0x80 | 9, [&[1u8][..], b"{\"a\":1}"].concat()),
            (
                "float4_array",
                0x80 | 11,
                binary_array(700, &[f4(1.0), f4(2.0), f4(-3.5)]),
            ),
            (
                "int8_array",
                0x80 | 15,
                binary_array(20, &[7i64.to_be_bytes().to_vec()]),
            ),
            ("vector", 0x80 | 16, vector),
            ("text_vector", 16, b"[1,2,3]".to_vec()),
            ("text_array", 11, b"{1.5,2,3}".to_vec()),
            ("text_bytea", 8, b"\\x00ff10".to_vec()),
            ("text_int", 2, b" -17 ".to_vec()),
        ];
        for (name, selector, value) in params {
            let mut bytes = vec![selector];
            bytes.extend_from_slice(&value);
            seeds.push(("pg_param", name.to_owned(), bytes));
        }
        let mut startup = Startup::new();
        startup.parameters.insert("user".into(), "valori".into());
        startup
            .parameters
            .insert("database".into(), "valori".into());
        seeds.push((
            "pg_message",
            "startup".to_owned(),
            pg_message(0, &[PgWireFrontendMessage::Startup(startup)]),
        ));
        seeds.push((
            "pg_message",
            "query".to_owned(),
            pg_message(
                1,
                &[PgWireFrontendMessage::Query(Query::new(
                    "SELECT id FROM docs".into(),
                ))],
            ),
        ));
        seeds.push((
            "pg_message",
            "extended".to_owned(),
            pg_message(
                1,
                &[
                    PgWireFrontendMessage::Parse(Parse::new(
                        Some("s1".into()),
                        "SELECT id FROM docs WHERE tag = $1".into(),
                        vec![20],
                    )),
                    PgWireFrontendMessage::Bind(Bind::new(
                        None,
                        Some("s1".into()),
                        vec![1],
                        vec![Some(Bytes::from(7i64.to_be_bytes().to_vec())), None],
                        vec![0],
                    )),
                    PgWireFrontendMessage::Describe(Describe::new(b'P', None)),
                    PgWireFrontendMessage::Execute(Execute::new(None, 0)),
                    PgWireFrontendMessage::Sync(Sync::new()),
                ],
            ),
        ));
        // rest_body: kind byte (index in BODIES), then the JSON body.
        let bodies = [
            json!({"name": "docs", "dim": 4, "metric": "cosine", "m": 16}),
            json!({"id": 1, "label": 2}),
            json!({"from": 1, "to": 2, "label": 3}),
            json!({"id": 9, "vector": [0.5, 1, -2, 0], "tag": 3, "metadata": {"lang": "en"}}),
            json!({"ids": [10, 11], "vectors": [[1, 2, 3, 4], [0, 0, 0, 1]], "tags": [1, 2], "metadata": [null, {"a": [1, 2]}]}),
            json!({"tag": 5}),
            json!({"metadata": {"nested": {"x": [1, "two", null, true]}}}),
            json!({"vector": [1, 0, 0, 1], "k": 3, "filter": "tag = 1 OR meta.lang = 'en'", "ef": 32, "exact": false}),
            json!({"query": "SELECT id FROM docs LIMIT 2"}),
            json!({"query": "FROM docs NEAREST $q K 2", "params": {"q": [1, 2, 3, 4]}}),
            json!({"collection": "docs", "id": 3, "vector": [1, 2, 3, 4]}),
            json!({"collection": "docs", "vector": [1, 2, 3, 4], "k": 1}),
            json!({"vectors": [[1, 2, 3, 4]], "ids": [12]}),
        ];
        for (kind, body) in bodies.iter().enumerate() {
            let mut bytes = vec![kind as u8];
            bytes.extend_from_slice(body.to_string().as_bytes());
            seeds.push((
                "rest_body",
                valori_wire::rest::fuzzing::BODIES[kind].to_owned(),
                bytes,
            ));
        }
        seeds
    }
}
