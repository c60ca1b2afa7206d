//! A real `valori serve` process killed with SIGKILL under concurrent load
//! from Postgres and REST clients, restarted on the same directory, and
//! checked: every acknowledged write is present with its exact values, no
//! refused write is present, every write left without an answer is wholly
//! present or wholly absent, `valori verify` passes on the directory the
//! crash left, and the restarted server reports the state hash and log size
//! that verify's replay of the log computes.
//!
//! Cycles: `VALORI_SERVE_KILL_CYCLES` (default 8); seed of the op mix and
//! the kill moments: `VALORI_SERVE_KILL_SEED` (printed at the start; the
//! thread interleaving is not replayed by it).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::{NoTls, SimpleQueryMessage};

const DIM: usize = 4;

/// Records one client keeps before it turns to deleting, so that a long
/// soak's table (and each cycle's replay) stays bounded.
const LIVE_MAX: usize = 3_000;

/// SplitMix64: a seeded generator, so that a failing op mix can be named.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A record as stored: the Q16.16 integers, the tag and the metadata bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    q16: Vec<i32>,
    tag: u64,
    meta: Vec<u8>,
}

/// Component `j` of record `id`'s vector in quarters: exact in f32, in
/// decimal text and in Q16.16 (a quarter is 16384).
fn quarters(id: u64, j: usize) -> i64 {
    ((id * 31 + j as u64 * 7) % 2001) as i64 - 1000
}

fn vector_f32(id: u64) -> Vec<f32> {
    (0..DIM).map(|j| quarters(id, j) as f32 / 4.0).collect()
}

/// Record `id` as inserted: its vector, tag `id % 1000`, metadata
/// `{"i":id}` (the canonical JSON of what the clients send).
fn inserted(id: u64) -> Rec {
    Rec {
        q16: (0..DIM).map(|j| (quarters(id, j) * 16384) as i32).collect(),
        tag: id % 1000,
        meta: format!("{{\"i\":{id}}}").into_bytes(),
    }
}

/// Record `old` after `UPDATE … SET tag = tag, metadata = '{"u": u}'`.
fn updated(old: &Rec, tag: u64, u: u64) -> Rec {
    Rec {
        q16: old.q16.clone(),
        tag,
        meta: format!("{{\"u\":{u}}}").into_bytes(),
    }
}

fn vector_text(id: u64) -> String {
    let parts: Vec<String> = vector_f32(id).iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// A write whose answer never came: the records it touches as they were
/// before and as they would be after it.
#[derive(Debug)]
struct Pending {
    what: String,
    before: BTreeMap<u64, Option<Rec>>,
    after: BTreeMap<u64, Option<Rec>>,
}

/// One client's records (ids no other client touches) and its counts.
#[derive(Default)]
struct Model {
    live: BTreeMap<u64, Rec>,
    pending: Option<Pending>,
    acked: u64,
    refused: u64,
    unanswered: u64,
    /// Log positions of acknowledged REST writes (their receipts).
    acked_seqs: Vec<u64>,
}

impl Model {
    fn apply(&mut self, after: &BTreeMap<u64, Option<Rec>>) {
        for (id, rec) in after {
            match rec {
                Some(rec) => self.live.insert(*id, rec.clone()),
                None => self.live.remove(id),
            };
        }
    }

    /// Records `after` as the write's effect if it was acknowledged, or
    /// as possible if it got no answer.
    fn record(&mut self, outcome: Outcome, what: String, after: BTreeMap<u64, Option<Rec>>) {
        match outcome {
            Outcome::Acked => {
                self.acked += 1;
                self.apply(&after);
            }
            Outcome::Refused => self.refused += 1,
            Outcome::NoAnswer => {
                self.unanswered += 1;
                let before = after
                    .keys()
                    .map(|id| (*id, self.live.get(id).cloned()))
                    .collect();
                self.pending = Some(Pending {
                    what,
                    before,
                    after,
                });
            }
        }
    }

    /// Some live ids, for deletes, updates and duplicate inserts.
    fn pick_live(&self, rng: &mut Rng, n: usize) -> Vec<u64> {
        let ids: Vec<u64> = self.live.keys().copied().collect();
        if ids.is_empty() {
            return vec![];
        }
        let mut chosen: Vec<u64> = (0..n)
            .map(|_| ids[rng.below(ids.len() as u64) as usize])
            .collect();
        chosen.sort_unstable();
        chosen.dedup();
        chosen
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Acked,
    Refused,
    NoAnswer,
}

/// A started `valori serve`.
struct Server {
    child: Option<Child>,
    _stdout: BufReader<ChildStdout>,
    rest: String,
    pg_port: u16,
}

impl Server {
    fn start(dir: &Path, log: &Path) -> Server {
        Server::start_with(dir, log, &[])
    }

    /// Starts with `env` added to the environment.
    fn start_with(dir: &Path, log: &Path, env: &[(&str, &str)]) -> Server {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_valori"))
            .args([
                "serve",
                "--rest-addr",
                "127.0.0.1:0",
                "--pg-addr",
                "127.0.0.1:0",
                "--flight-addr",
                "127.0.0.1:0",
                "--index-threads",
                "1",
            ])
            .arg("--data-dir")
            .arg(dir)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        // "valori listening: rest http://HOST:PORT postgres postgres://HOST:PORT"
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.get(..2) != Some(&["valori", "listening:"][..]) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server did not start: {line:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let rest = words[3].trim_start_matches("http://").to_owned();
        let pg = words[5].trim_start_matches("postgres://");
        let pg_port = pg.rsplit(':').next().unwrap().parse().unwrap();
        Server {
            child: Some(child),
            _stdout: stdout,
            rest,
            pg_port,
        }
    }

    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    /// SIGTERM and a graceful exit.
    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
    }

    fn rest(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let answer = valori_wire::client::request(
            &self.rest,
            method,
            path,
            None,
            body.as_deref().map(str::as_bytes),
        )
        .unwrap();
        let value = answer.json().unwrap();
        (answer.status, value)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The answer to a REST write: acknowledged (with its log position),
/// refused with a 4xx, or none.
fn rest_write(
    addr: &str,
    method: &str,
    path: &str,
    body: &Value,
) -> (Outcome, Option<u64>, String) {
    let text = body.to_string();
    match valori_wire::client::request(addr, method, path, None, Some(text.as_bytes())) {
        Ok(answer) if (200..300).contains(&answer.status) => {
            let seq = answer.json().ok().and_then(|v| v["seq"].as_u64());
            (Outcome::Acked, seq, answer.text())
        }
        Ok(answer) if (400..500).contains(&answer.status) => (
            Outcome::Refused,
            None,
            format!("{} {}", answer.status, answer.text()),
        ),
        // A complete answer of any other status is a server failure, not a
        // crash: the test fails on it below.
        Ok(answer) => panic!("{method} {path}: {} {}", answer.status, answer.text()),
        Err(e) => (Outcome::NoAnswer, None, e.to_string()),
    }
}

/// A REST client: single inserts, batch inserts (some refused whole for a
/// duplicate id or a component out of range), deletes, tag updates and
/// the odd snapshot, until the server stops answering.
fn rest_client(addr: String, model: &mut Model, ids: &AtomicU64, mut rng: Rng) {
    let path = "/v1/collections/kv/records";
    loop {
        let choice = if model.live.len() > LIVE_MAX {
            80
        } else {
            rng.below(100)
        };
        let (outcome, seq, what, after, refusal_expected) = if choice < 35 {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            let body = json!({"id": id, "vector": vector_f32(id), "tag": id % 1000, "metadata": {"i": id}});
            let (outcome, seq, text) = rest_write(&addr, "POST", path, &body);
            (
                outcome,
                seq,
                format!("insert {id}: {text}"),
                BTreeMap::from([(id, Some(inserted(id)))]),
                false,
            )
        } else if choice < 70 {
            let n = 1 + rng.below(40);
            let first = ids.fetch_add(n, Ordering::Relaxed);
            let batch: Vec<u64> = (first..first + n).collect();
            let body = json!({
                "ids": batch,
                "vectors": batch.iter().map(|&i| vector_f32(i)).collect::<Vec<_>>(),
                "tags": batch.iter().map(|&i| i % 1000).collect::<Vec<_>>(),
                "metadata": batch.iter().map(|&i| json!({"i": i})).collect::<Vec<_>>(),
            });
            let (outcome, seq, text) = rest_write(&addr, "POST", &format!("{path}/batch"), &body);
            let after = batch.iter().map(|&i| (i, Some(inserted(i)))).collect();
            (
                outcome,
                seq,
                format!("batch {first}..+{n}: {text}"),
                after,
                false,
            )
        } else if choice < 78 {
            // Fresh ids and one that exists (409), or a component out of
            // range (400): refused whole.
            let n = 2 + rng.below(10);
            let first = ids.fetch_add(n, Ordering::Relaxed);
            let mut batch: Vec<u64> = (first..first + n).collect();
            let mut vectors: Vec<Vec<f32>> = batch.iter().map(|&i| vector_f32(i)).collect();
            match model.pick_live(&mut rng, 1).first() {
                Some(&dup) if rng.below(2) == 0 => {
                    batch.push(dup);
                    vectors.push(vector_f32(dup));
                }
                _ => vectors[(n / 2) as usize][1] = 40_000.0,
            }
            let body = json!({"ids": batch, "vectors": vectors});
            let (outcome, seq, text) = rest_write(&addr, "POST", &format!("{path}/batch"), &body);
            (
                outcome,
                seq,
                format!("refused batch {batch:?}: {text}"),
                BTreeMap::new(),
                true,
            )
        } else if choice < 88 {
            let Some(&id) = model.pick_live(&mut rng, 1).first() else {
                continue;
            };
            let (outcome, seq, text) = match valori_wire::client::request(
                &addr,
                "DELETE",
                &format!("{path}/{id}"),
                None,
                None,
            ) {
                Ok(a) if a.status == 200 => (
                    Outcome::Acked,
                    a.json().ok().and_then(|v| v["seq"].as_u64()),
                    a.text(),
                ),
                Ok(a) => panic!("DELETE {id}: {} {}", a.status, a.text()),
                Err(e) => (Outcome::NoAnswer, None, e.to_string()),
            };
            (
                outcome,
                seq,
                format!("delete {id}: {text}"),
                BTreeMap::from([(id, None)]),
                false,
            )
        } else if choice < 98 {
            let Some(&id) = model.pick_live(&mut rng, 1).first() else {
                continue;
            };
            let tag = 2_000_000 + rng.below(1000);
            let body = json!({"tag": tag});
            let (outcome, seq, text) = rest_write(&addr, "PUT", &format!("{path}/{id}/tag"), &body);
            let mut rec = model.live[&id].clone();
            rec.tag = tag;
            (
                outcome,
                seq,
                format!("tag {id}={tag}: {text}"),
                BTreeMap::from([(id, Some(rec))]),
                false,
            )
        } else {
            match valori_wire::client::request(&addr, "POST", "/v1/snapshots", None, None) {
                Ok(a) => assert_eq!(a.status, 201, "snapshot: {}", a.text()),
                Err(_) => return,
            }
            continue;
        };
        assert!(
            outcome != Outcome::Refused || refusal_expected,
            "refused unexpectedly: {what}"
        );
        assert!(
            outcome != Outcome::Acked || !refusal_expected,
            "accepted a write that must be refused: {what}"
        );
        if let Some(seq) = seq {
            model.acked_seqs.push(seq);
        }
        model.record(outcome, what, after);
        if outcome == Outcome::NoAnswer {
            return;
        }
    }
}

/// One row of a multi-row `INSERT`, in either vector form.
fn sql_row(id: u64, array: bool) -> String {
    let vec = if array {
        let parts: Vec<String> = vector_f32(id).iter().map(|x| x.to_string()).collect();
        format!("ARRAY[{}]", parts.join(", "))
    } else {
        format!("'{}'", vector_text(id))
    };
    format!("({id}, {vec}, {}, '{{\"i\": {id}}}')", id % 1000)
}

/// A Postgres client: single and multi-row `INSERT`s (some refused whole
/// for a duplicate id), `DELETE … IN`, and `UPDATE` of tag and metadata
/// over several ids, until the server stops answering.
async fn pg_client(port: u16, model: &mut Model, ids: &AtomicU64, mut rng: Rng) {
    let config = format!("host=127.0.0.1 port={port} user=kill dbname=valori connect_timeout=10");
    let Ok((client, connection)) = tokio_postgres::connect(&config, NoTls).await else {
        return;
    };
    tokio::spawn(connection);
    loop {
        let choice = if model.live.len() > LIVE_MAX {
            60
        } else {
            rng.below(100)
        };
        let (sql, after, expect_rows, refusal): (
            String,
            BTreeMap<u64, Option<Rec>>,
            Option<u64>,
            bool,
        ) = if choice < 50 {
            let n = if rng.below(3) == 0 {
                1
            } else {
                2 + rng.below(30)
            };
            let first = ids.fetch_add(n, Ordering::Relaxed);
            let rows: Vec<String> = (first..first + n)
                .map(|i| sql_row(i, rng.below(2) == 0))
                .collect();
            let sql = format!(
                "INSERT INTO kv (id, vec, tag, metadata) VALUES {}",
                rows.join(", ")
            );
            let after = (first..first + n).map(|i| (i, Some(inserted(i)))).collect();
            (sql, after, Some(n), false)
        } else if choice < 58 {
            let Some(&dup) = model.pick_live(&mut rng, 1).first() else {
                continue;
            };
            let n = 1 + rng.below(10);
            let first = ids.fetch_add(n, Ordering::Relaxed);
            let mut rows: Vec<String> = (first..first + n).map(|i| sql_row(i, false)).collect();
            rows.insert(rng.below(n + 1) as usize, sql_row(dup, false));
            let sql = format!(
                "INSERT INTO kv (id, vec, tag, metadata) VALUES {}",
                rows.join(", ")
            );
            (sql, BTreeMap::new(), None, true)
        } else if choice < 78 {
            let n = 1 + rng.below(8) as usize;
            let doomed = model.pick_live(&mut rng, n);
            if doomed.is_empty() {
                continue;
            }
            let list: Vec<String> = doomed.iter().map(u64::to_string).collect();
            let sql = format!("DELETE FROM kv WHERE id IN ({})", list.join(", "));
            let after = doomed.iter().map(|&i| (i, None)).collect();
            (sql, after, Some(doomed.len() as u64), false)
        } else {
            let n = 1 + rng.below(8) as usize;
            let chosen = model.pick_live(&mut rng, n);
            if chosen.is_empty() {
                continue;
            }
            let tag = 1_000_000 + rng.below(1000);
            let u = rng.below(1_000_000);
            let list: Vec<String> = chosen.iter().map(u64::to_string).collect();
            let sql = format!(
                "UPDATE kv SET tag = {tag}, metadata = '{{\"u\": {u}}}' WHERE id IN ({})",
                list.join(", ")
            );
            let after = chosen
                .iter()
                .map(|&i| (i, Some(updated(&model.live[&i], tag, u))))
                .collect();
            (sql, after, Some(chosen.len() as u64), false)
        };
        let outcome = match client.simple_query(&sql).await {
            Ok(messages) => {
                assert!(!refusal, "accepted a write that must be refused: {sql}");
                let rows = messages.iter().find_map(|m| match m {
                    SimpleQueryMessage::CommandComplete(n) => Some(*n),
                    _ => None,
                });
                assert_eq!(rows, expect_rows, "{sql}");
                Outcome::Acked
            }
            Err(e) => match e.as_db_error() {
                Some(db) => {
                    assert!(
                        refusal && db.code().code() == "23505",
                        "refused unexpectedly: {sql}: {db}"
                    );
                    Outcome::Refused
                }
                None => Outcome::NoAnswer,
            },
        };
        model.record(outcome, sql, after);
        if outcome == Outcome::NoAnswer {
            return;
        }
    }
}

/// Every row of `kv`, read over Postgres as stored (`vec_q16`, metadata
/// bytes).
async fn read_table(port: u16) -> BTreeMap<u64, Rec> {
    let config = format!("host=127.0.0.1 port={port} user=kill dbname=valori");
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
    tokio::spawn(connection);
    let messages = client
        .simple_query("SELECT id, vec_q16, tag, metadata FROM kv")
        .await
        .unwrap();
    let mut table = BTreeMap::new();
    for m in messages {
        let SimpleQueryMessage::Row(row) = m else {
            continue;
        };
        let id: u64 = row.get(0).unwrap().parse().unwrap();
        let q16 = row
            .get(1)
            .unwrap()
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .map(|c| c.parse().unwrap())
            .collect();
        let tag = row.get(2).unwrap().parse().unwrap();
        let hex = row.get(3).unwrap().strip_prefix("\\x").unwrap();
        let meta = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert!(
            table.insert(id, Rec { q16, tag, meta }).is_none(),
            "id {id} twice"
        );
    }
    table
}

/// `valori verify DIR`: it must pass; the events it replayed and the
/// state hash of the replay.
fn verify(dir: &Path) -> (u64, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_valori"))
        .arg("verify")
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "valori verify failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .to_owned()
    };
    (field("events ").parse().unwrap(), field("state_hash "))
}

/// Checks the restarted server's table against the models: writes left
/// without an answer resolve to wholly before or wholly after, and then the
/// table holds exactly the models' records.
fn check(table: &BTreeMap<u64, Rec>, models: &mut [Model]) {
    for model in models.iter_mut() {
        if let Some(p) = model.pending.take() {
            let seen: BTreeMap<u64, Option<Rec>> = p
                .before
                .keys()
                .map(|id| (*id, table.get(id).cloned()))
                .collect();
            if seen == p.after {
                model.apply(&p.after);
            } else {
                assert_eq!(
                    seen, p.before,
                    "a write without an answer is partly present: {}",
                    p.what
                );
            }
        }
    }
    let mut expected = BTreeMap::new();
    for model in models.iter() {
        expected.extend(model.live.iter().map(|(k, v)| (*k, v.clone())));
    }
    for (id, rec) in table {
        assert_eq!(
            expected.get(id),
            Some(rec),
            "id {id}: stored differs from every acknowledged write"
        );
    }
    for (id, rec) in &expected {
        assert_eq!(
            table.get(id),
            Some(rec),
            "acknowledged id {id} lost or changed"
        );
    }
}

#[test]
fn sigkill_under_load_keeps_every_acknowledged_write() {
    let cycles: u64 = std::env::var("VALORI_SERVE_KILL_CYCLES")
        .map(|v| v.parse().expect("VALORI_SERVE_KILL_CYCLES is a number"))
        .unwrap_or(8);
    let seed: u64 = std::env::var("VALORI_SERVE_KILL_SEED")
        .map(|v| v.parse().expect("VALORI_SERVE_KILL_SEED is a number"))
        .unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("serve_kill: seed {seed} (VALORI_SERVE_KILL_SEED={seed} to reuse), {cycles} cycles");
    let mut rng = Rng(seed);
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log: PathBuf = logs.path().join("serve.log");
    let started = Instant::now();

    let mut server = Server::start(data.path(), &log);
    let (status, created) = server.rest(
        "POST",
        "/v1/collections",
        Some(&json!({"name": "kv", "dim": DIM, "m": 8, "ef_construction": 32})),
    );
    assert_eq!(status, 201, "{created}");

    const PG_CLIENTS: usize = 2;
    const REST_CLIENTS: usize = 2;
    let mut models: Vec<Model> = (0..PG_CLIENTS + REST_CLIENTS)
        .map(|_| Model::default())
        .collect();
    let ids = Arc::new(AtomicU64::new(0));
    let mut kills_during_load = 0u64;
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(50 + rng.below(1500));
        let seeds: Vec<u64> = models.iter().map(|_| rng.next()).collect();
        let rest_addr = server.rest.clone();
        let pg_port = server.pg_port;
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (i, model) in models.iter_mut().enumerate() {
                let ids = Arc::clone(&ids);
                let client_rng = Rng(seeds[i]);
                let rest_addr = rest_addr.clone();
                handles.push(scope.spawn(move || {
                    if i < PG_CLIENTS {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap()
                            .block_on(pg_client(pg_port, model, &ids, client_rng));
                    } else {
                        rest_client(rest_addr, model, &ids, client_rng);
                    }
                }));
            }
            std::thread::sleep(kill_after);
            if handles.iter().all(|h| !h.is_finished()) {
                kills_during_load += 1;
            }
            server.kill();
            for h in handles {
                h.join().unwrap();
            }
        });

        let (events, replayed) = verify(data.path());
        server = Server::start(data.path(), &log);
        let (status, proof) = server.rest("GET", "/v1/proof/state", None);
        assert_eq!(status, 200, "{proof}");
        assert_eq!(
            proof["state_hash"], replayed,
            "restart vs replay, cycle {cycle}, seed {seed}"
        );
        assert_eq!(proof["log_size"], events, "cycle {cycle}, seed {seed}");
        for model in &models {
            for &seq in &model.acked_seqs {
                assert!(
                    seq < events,
                    "acknowledged seq {seq} beyond the log of {events} events"
                );
            }
        }
        let table = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(read_table(server.pg_port));
        check(&table, &mut models);
        let acked: u64 = models.iter().map(|m| m.acked).sum();
        println!(
            "cycle {cycle}: killed after {kill_after:?}, {events} events, {} rows, {acked} writes acknowledged so far",
            table.len()
        );
    }
    server.stop();
    verify(data.path());

    let sum = |f: fn(&Model) -> u64| models.iter().map(f).sum::<u64>();
    let (acked, refused, unanswered) =
        (sum(|m| m.acked), sum(|m| m.refused), sum(|m| m.unanswered));
    println!(
        "serve_kill: seed {seed}: {cycles} cycles ({kills_during_load} killed with every client busy), \
         {acked} writes acknowledged, {refused} refused, {unanswered} without an answer, {:?}",
        started.elapsed()
    );
    assert!(
        acked > 0 && refused > 0,
        "the load wrote nothing or refused nothing"
    );
}

/// `valori serve` runs with glibc's allocator asking for huge pages
/// (README, "Running the server"), in the same process (the id `serve`
/// was started with), restarted once, unless `VALORI_HUGE_PAGES=off`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn serve_asks_for_huge_pages_unless_switched_off() {
    let environment = |server: &Server| -> Vec<String> {
        let pid = server.child.as_ref().unwrap().id();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        environ
            .split(|&b| b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok().map(str::to_owned))
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let data = dir.path().join("data");
    for (env, restarted, tunables) in [
        (&[][..], true, Some("GLIBC_TUNABLES=glibc.malloc.hugetlb=1")),
        // The user's choice is kept.
        (
            &[("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")][..],
            false,
            Some("GLIBC_TUNABLES=glibc.malloc.hugetlb=0"),
        ),
        // Other tunables: restarted once (glibc 2.36 shows only the first
        // tunable in the variable once it has read it, which must not
        // make the process restart again and again).
        (
            &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")][..],
            true,
            None,
        ),
        (&[("VALORI_HUGE_PAGES", "off")][..], false, None),
    ] {
        let mut server = Server::start_with(&data, &log, env);
        // It answers: the restarted process is the one serving.
        assert_eq!(server.rest("GET", "/health", None).0, 200, "{env:?}");
        let vars = environment(&server);
        assert_eq!(
            vars.iter().any(|v| v == "VALORI_HUGE_PAGES_RESTARTED=1"),
            restarted,
            "{env:?}: {vars:?}"
        );
        if let Some(t) = tunables {
            assert!(vars.iter().any(|v| v == t), "{env:?}: {vars:?}");
        }
        if !restarted {
            assert!(
                !vars.iter().any(|v| v.contains("hugetlb=1")),
                "{env:?}: {vars:?}"
            );
        }
        server.stop();
    }
}

/// Proves a SIGTERM sent as soon as the server has said it is listening
/// stops it gracefully (exit status 0), every time: the signal handlers
/// are installed before that line, not when the shutdown future is first
/// polled, when a signal in between killed the process.
#[test]
fn sigterm_right_after_the_listening_line_is_a_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let data = dir.path().join("data");
    for _ in 0..10 {
        let mut server = Server::start(&data, &log);
        server.stop();
    }
}
