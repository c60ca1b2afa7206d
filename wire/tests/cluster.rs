//! Three `valori serve` processes on 127.0.0.1 ports they pick, formed
//! into a cluster from the command line (one bootstraps, two join), then
//! written to over REST, checked, the leader killed with SIGKILL and
//! restarted; every process is killed when the test ends.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use valori_wire::client::request;

const KEY: &str = "cluster test key";

struct Proc {
    child: Child,
    id: u64,
    rest: String,
    pg: String,
    cluster: String,
    dir: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts node `id` on `dir`, its cluster address `cluster_addr` (port 0
/// picks one), with `extra` flags; returns once it listens.
fn spawn(dir: &Path, id: u64, cluster_addr: &str, extra: &[&str]) -> Proc {
    spawn_with_env(dir, id, cluster_addr, extra, &[])
}

/// [`spawn`], with the environment variables `env` set.
fn spawn_with_env(
    dir: &Path,
    id: u64,
    cluster_addr: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    let log = dir.with_extension(format!("node{id}.log"));
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_valori"))
        .args([
            "serve",
            "--rest-addr",
            "127.0.0.1:0",
            "--pg-addr",
            "127.0.0.1:0",
        ])
        .args(["--flight-addr", "127.0.0.1:0", "--index-threads", "1"])
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--cluster-node-id",
            &id.to_string(),
            "--cluster-addr",
            cluster_addr,
        ])
        .args(["--cluster-election-timeout-ms", "300"])
        .env("VALORI_CLUSTER_KEY", KEY)
        .envs(env.iter().copied())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        lines.push(line);
    }
    // "valori listening: rest http://HOST:PORT postgres postgres://HOST:PORT"
    // "valori cluster: node N at HOST:PORT"
    let listening: Vec<&str> = lines[0].split_whitespace().collect();
    let cluster: Vec<&str> = lines[1].split_whitespace().collect();
    if listening.get(..2) != Some(&["valori", "listening:"][..])
        || cluster.get(..2) != Some(&["valori", "cluster:"][..])
    {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "node {id} did not start: {lines:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    Proc {
        child,
        id,
        rest: listening[3].trim_start_matches("http://").to_owned(),
        pg: listening[5].trim_start_matches("postgres://").to_owned(),
        cluster: cluster[5].to_owned(),
        dir: dir.to_owned(),
    }
}

/// Runs `valori ARGS`: its exit code, stdout and stderr.
fn valori(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_valori"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn call(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string().into_bytes());
    let r = request(addr, method, path, None, body.as_deref()).unwrap();
    let v = r.json().unwrap_or(Value::String(r.text()));
    (r.status, v)
}

fn status(p: &Proc) -> Option<Value> {
    let body = request(&p.rest, "GET", "/v1/cluster/status", None, None).ok()?;
    (body.status == 200).then(|| body.json().ok()).flatten()
}

fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn vector(id: u64) -> Vec<f64> {
    (0..4).map(|j| ((id * 7 + j) % 13) as f64 * 0.25).collect()
}

/// Inserts record `id` through `p`.
fn insert(p: &Proc, id: u64) -> (u16, Value) {
    call(
        &p.rest,
        "POST",
        "/v1/collections/docs/records",
        Some(json!({"id": id, "vector": vector(id), "tag": id % 3})),
    )
}

/// Waits until every node has applied `index`, then checks they report the
/// same event count, state hash and log root.
fn converged(nodes: &[&Proc], index: u64) -> Value {
    // Entries may still be in flight (a membership change): wait until
    // every node is at one applied index, at least `index`.
    let statuses: Vec<Value> = wait_for(
        Duration::from_secs(30),
        "every node at one applied index",
        || {
            let statuses: Vec<Value> = nodes.iter().filter_map(|p| status(p)).collect();
            let first = statuses.first()?["applied_index"].as_u64()?;
            (statuses.len() == nodes.len()
                && first >= index
                && statuses
                    .iter()
                    .all(|s| s["applied_index"].as_u64() == Some(first)))
            .then_some(statuses)
        },
    );
    for s in &statuses {
        assert_eq!(s["events"], statuses[0]["events"], "{s}");
        assert_eq!(s["state_hash"], statuses[0]["state_hash"], "{s}");
        assert_eq!(s["log_root"], statuses[0]["log_root"], "{s}");
        assert!(s["diverged"].is_null(), "{s}");
    }
    statuses[0].clone()
}

fn leader_of(nodes: &[&Proc]) -> Option<usize> {
    nodes
        .iter()
        .position(|p| status(p).is_some_and(|s| s["role"] == "leader"))
}

/// Three processes form a cluster from their flags; REST writes on the
/// leader reach all three (same event count, state hash and log root at
/// the same index; `valori cluster status` shows them, `valori verify
/// --url` passes against a follower); a write on a follower is refused
/// with a 503 naming the leader; after SIGKILL of the leader the other two
/// elect a new one that acknowledges writes, and the killed node restarted
/// on its directory catches up: every acknowledged record is on every node
/// with its exact vector.
#[test]
fn three_processes_replicate_fail_over_and_catch_up() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| root.path().join(format!("node{i}")))
        .collect();
    let mut nodes: Vec<Option<Proc>> = Vec::new();
    nodes.push(Some(spawn(
        &dirs[0],
        1,
        "127.0.0.1:0",
        &["--cluster-bootstrap"],
    )));
    let seed = nodes[0].as_ref().unwrap().cluster.clone();
    for i in 2..=3u64 {
        nodes.push(Some(spawn(
            &dirs[i as usize - 1],
            i,
            "127.0.0.1:0",
            &["--cluster-join", &seed],
        )));
    }
    {
        let n1 = nodes[0].as_ref().unwrap();
        wait_for(Duration::from_secs(60), "three voters", || {
            status(n1).filter(|s| s["voters"].as_array().is_some_and(|v| v.len() == 3))
        });
    }
    let all: Vec<&Proc> = nodes.iter().flatten().collect();
    let l = wait_for(Duration::from_secs(30), "a leader", || leader_of(&all));
    let leader = all[l];
    let (code, body) = call(
        &leader.rest,
        "POST",
        "/v1/collections",
        Some(json!({"name": "docs", "dim": 4})),
    );
    assert_eq!(code, 201, "{body}");
    let mut acked = Vec::new();
    for id in 0..20 {
        let (code, body) = insert(leader, id);
        assert_eq!(code, 201, "{body}");
        acked.push(id);
    }
    // A follower refuses a write and names the leader's REST address.
    let follower = all[(l + 1) % 3];
    let (code, body) = insert(follower, 1000);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.to_string().contains(&leader.rest),
        "names the leader {}: {body}",
        leader.rest
    );

    let index = status(leader).unwrap()["applied_index"].as_u64().unwrap();
    let s = converged(&all, index);
    assert_eq!(
        s["events"],
        json!(21),
        "create + 20 inserts, the refused write nowhere: {s}"
    );

    let urls: Vec<String> = all.iter().map(|p| format!("http://{}", p.rest)).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_valori"))
        .args(["cluster", "status"])
        .args(urls.iter().flat_map(|u| ["--url", u.as_str()]))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().count(),
        4,
        "a header and one line per node:\n{text}"
    );
    assert_eq!(
        text.matches(s["state_hash"].as_str().unwrap()).count(),
        3,
        "{text}"
    );
    assert_eq!(text.matches(" leader ").count(), 1, "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_valori"))
        .args(["verify", "--url", &format!("http://{}", follower.rest)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "verify --url against a follower:\n{text}"
    );
    assert!(text.contains(s["state_hash"].as_str().unwrap()), "{text}");

    // SIGKILL the leader; the other two elect a new one.
    let killed_id = leader.id;
    let killed_addr = leader.cluster.clone();
    let killed_term = status(leader).unwrap()["term"].as_u64().unwrap();
    drop(all);
    let mut killed = nodes[l].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let killed_dir = killed.dir.clone();
    drop(killed);
    let rest: Vec<&Proc> = nodes.iter().flatten().collect();
    let started = Instant::now();
    let nl = wait_for(Duration::from_secs(30), "a new leader", || {
        rest.iter().position(|p| {
            status(p).is_some_and(|s| {
                s["role"] == "leader" && s["term"].as_u64().unwrap_or(0) > killed_term
            })
        })
    });
    for id in 20..30 {
        let (code, body) = wait_for(
            Duration::from_secs(30),
            "the new leader to acknowledge",
            || {
                let (code, body) = insert(rest[nl], id);
                (code != 503).then_some((code, body))
            },
        );
        assert_eq!(code, 201, "{body}");
        acked.push(id);
    }
    eprintln!(
        "failover: first write acknowledged {:?} after SIGKILL",
        started.elapsed()
    );
    drop(rest);

    // The killed node comes back on its directory and address.
    let back = spawn(&killed_dir, killed_id, &killed_addr, &[]);
    nodes[l] = Some(back);
    let all: Vec<&Proc> = nodes.iter().flatten().collect();
    // The restarted node may briefly claim its old term's leadership from
    // its vote on disk; the leader that counts is the new term's.
    let index = wait_for(Duration::from_secs(30), "the new term's leader", || {
        all.iter().find_map(|p| {
            status(p)
                .filter(|s| s["role"] == "leader" && s["term"].as_u64().unwrap_or(0) > killed_term)
                .and_then(|s| s["applied_index"].as_u64())
        })
    });
    let s = converged(&all, index);
    assert_eq!(s["events"], json!(31), "{s}");
    assert_acked_everywhere(&all, &acked);
}

/// Starts nodes 1 (bootstrapping), 2 and 3 (joining) under `root` and waits
/// for three voters.
fn start_three(root: &Path) -> Vec<Proc> {
    start_three_with(root, &[])
}

/// [`start_three`], each node with the flags `extra`.
fn start_three_with(root: &Path, extra: &[&str]) -> Vec<Proc> {
    let flags = |first: &[&str]| -> Vec<String> {
        first.iter().chain(extra).map(|s| (*s).to_owned()).collect()
    };
    let args = flags(&["--cluster-bootstrap"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut nodes = vec![spawn(&root.join("node1"), 1, "127.0.0.1:0", &args)];
    let seed = nodes[0].cluster.clone();
    for i in 2..=3u64 {
        let args = flags(&["--cluster-join", &seed]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(spawn(
            &root.join(format!("node{i}")),
            i,
            "127.0.0.1:0",
            &args,
        ));
    }
    wait_for(Duration::from_secs(60), "three voters", || {
        status(&nodes[0]).filter(|s| s["voters"].as_array().is_some_and(|v| v.len() == 3))
    });
    nodes
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} node {}", p.id);
}

/// Waits until every thread of `p` is stopped (state `T` in
/// `/proc/PID/task/*/stat`): `kill -STOP` returns before the kernel has
/// stopped a process's running threads, and a request sent in between
/// may still be served and replicated.
fn wait_stopped(p: &Proc) {
    let tasks = format!("/proc/{}/task", p.child.id());
    wait_for(Duration::from_secs(10), "every thread stopped", || {
        let all = std::fs::read_dir(&tasks).ok()?.all(|task| {
            task.ok()
                .and_then(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                // "PID (COMM) STATE …": COMM may hold spaces, STATE follows its ')'.
                .and_then(|stat| {
                    stat.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with('T'))
                })
                .unwrap_or(false)
        });
        all.then_some(())
    });
}

/// A fourth process joins as a learner: it receives the log and serves
/// reads with the same state hash, but does not vote. `valori cluster
/// promote` and `remove` sent to a follower are refused naming the
/// leader, and for an unknown node naming the members, with nothing
/// changed; sent to the leader, promote makes the learner a voter (joint
/// consensus) and remove takes it out of the membership. Then the leader is paused (SIGSTOP): a write sent to it is
/// never acknowledged, the others elect a new leader that acknowledges
/// writes, and after SIGCONT the old leader steps down and converges, with
/// the unacknowledged write nowhere.
#[test]
fn a_learner_is_promoted_and_a_paused_leader_acknowledges_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_three(root.path());
    let all: Vec<&Proc> = nodes.iter().collect();
    let l = wait_for(Duration::from_secs(30), "a leader", || leader_of(&all));
    let leader = &nodes[l];
    let (code, body) = call(
        &leader.rest,
        "POST",
        "/v1/collections",
        Some(json!({"name": "docs", "dim": 4})),
    );
    assert_eq!(code, 201, "{body}");
    for id in 0..5 {
        let (code, body) = insert(leader, id);
        assert_eq!(code, 201, "{body}");
    }
    let learner = spawn(
        &root.path().join("node4"),
        4,
        "127.0.0.1:0",
        &["--cluster-join", &leader.cluster, "--cluster-learner"],
    );
    wait_for(Duration::from_secs(30), "a learner", || {
        status(leader).filter(|s| {
            s["learners"] == json!([4]) && s["voters"].as_array().is_some_and(|v| v.len() == 3)
        })
    });
    let index = status(leader).unwrap()["applied_index"].as_u64().unwrap();
    converged(&[leader, &learner], index);
    assert_eq!(status(&learner).unwrap()["role"], "learner");
    let (code, body) = call(&learner.rest, "GET", "/v1/collections/docs/records/3", None);
    assert_eq!(code, 200, "a learner serves reads: {body}");
    let (code, body) = insert(&learner, 99);
    assert_eq!(code, 503, "a learner refuses writes: {body}");

    // Membership changes through `valori cluster`: a follower refuses and
    // names the leader, the leader refuses a node it does not have and
    // names its members, then promotes and removes the learner.
    let leader_url = format!("http://{}", leader.rest);
    let follower_url = format!("http://{}", nodes[(l + 1) % 3].rest);
    for verb in ["promote", "remove"] {
        let (code, out, err) = valori(&["cluster", verb, "4", "--url", &follower_url]);
        assert_eq!(code, 1, "{verb} on a follower: {out}{err}");
        assert!(
            err.contains(&format!(
                "not the cluster's leader; send writes to the leader at {}",
                leader.rest
            )) && err.contains(&format!("valori cluster {verb} 4 --url {leader_url}")),
            "{verb} on a follower names the leader {}: {err}",
            leader.rest
        );
        let (code, out, err) = valori(&["cluster", verb, "9", "--url", &leader_url]);
        assert_eq!(code, 1, "{verb} of an unknown node: {out}{err}");
        assert!(
            err.contains("node 9 is not a member of the cluster; its members are 1, 2, 3, 4"),
            "{err}"
        );
    }
    let s = status(leader).unwrap();
    assert_eq!(
        s["voters"],
        json!([1, 2, 3]),
        "refusals change nothing: {s}"
    );
    assert_eq!(s["learners"], json!([4]), "refusals change nothing: {s}");
    let (code, out, err) = valori(&["cluster", "promote", "4", "--url", &leader_url]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "node 4 is a voter; voters: 1, 2, 3, 4; learners: none\n"
    );
    let s = status(leader).unwrap();
    assert_eq!(s["voters"], json!([1, 2, 3, 4]), "{s}");
    let (code, out, err) = valori(&["cluster", "remove", "4", "--url", &leader_url]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "node 4 is removed; voters: 1, 2, 3; learners: none\n");
    let s = status(leader).unwrap();
    assert_eq!(s["voters"], json!([1, 2, 3]), "{s}");
    assert_eq!(s["learners"], json!([]), "{s}");
    drop(learner);

    // Pause the leader; a write sent to it waits in its socket.
    let old_term = status(leader).unwrap()["term"].as_u64().unwrap();
    signal(leader, "-STOP");
    wait_stopped(leader);
    let paused_rest = leader.rest.clone();
    let pending = std::thread::spawn(move || {
        let body = json!({"id": 500, "vector": vector(500)}).to_string();
        request(
            &paused_rest,
            "POST",
            "/v1/collections/docs/records",
            None,
            Some(body.as_bytes()),
        )
        .map(|r| r.status)
    });
    let others: Vec<&Proc> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != l)
        .map(|(_, p)| p)
        .collect();
    let nl = wait_for(
        Duration::from_secs(30),
        "a new leader while the old one is paused",
        || {
            others.iter().position(|p| {
                status(p).is_some_and(|s| {
                    s["role"] == "leader" && s["term"].as_u64().unwrap_or(0) > old_term
                })
            })
        },
    );
    let (code, body) = insert(others[nl], 600);
    assert_eq!(code, 201, "the new leader acknowledges: {body}");
    signal(&nodes[l], "-CONT");
    let answer = pending.join().unwrap();
    assert!(
        !matches!(answer, Ok(201)),
        "a paused old leader acknowledged a write: {answer:?}"
    );
    let index = wait_for(Duration::from_secs(30), "the new term's leader", || {
        nodes.iter().find_map(|p| {
            status(p)
                .filter(|s| s["role"] == "leader" && s["term"].as_u64().unwrap_or(0) > old_term)
                .and_then(|s| s["applied_index"].as_u64())
        })
    });
    let all: Vec<&Proc> = nodes.iter().collect();
    converged(&all, index);
    for p in &all {
        let (code, _) = call(&p.rest, "GET", "/v1/collections/docs/records/500", None);
        assert_eq!(code, 404, "the unacknowledged write is on node {}", p.id);
        let (code, _) = call(&p.rest, "GET", "/v1/collections/docs/records/600", None);
        assert_eq!(code, 200, "the acknowledged write is on node {}", p.id);
    }
    nodes.clear();
}

/// A GET with `header: value` (the shared client sends no extra headers).
fn get_with_header(addr: &str, path: &str, header: &str, value: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{header}: {value}\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

async fn pg_connect(p: &Proc) -> tokio_postgres::Client {
    let (host, port) = p.pg.rsplit_once(':').unwrap();
    let config = format!("host={host} port={port} user=valori dbname=valori");
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// The value of the one sample of `name` (with its labels) in `text`.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// The labels of the `valori_cluster_applied_state` series in `text`,
/// with its value.
fn applied_state(text: &str) -> Option<(Vec<(String, String)>, u64)> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("valori_cluster_applied_state{"))?;
    let (labels, value) = line.split_once("} ")?;
    let labels = labels
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect();
    Some((labels, value.parse().ok()?))
}

/// Writes sent to a follower over the Postgres protocol are refused with
/// SQLSTATE 25006 (read_only_sql_transaction) and a message naming the
/// leader's REST and Postgres addresses, and change nothing. On a
/// follower, reads in a session with `SET valori.read_consistency =
/// 'linearizable'` and REST reads with `Valori-Read-Consistency:
/// linearizable` see every write the leader acknowledged just before;
/// unknown values are refused (22023, 400). Each node's Prometheus
/// metrics show its role, term, commit and applied index, the leader's
/// lag per follower, the divergence flag, and the applied index, event
/// count, state hash and log root that its REST status reports (the same
/// on the leader and the follower, at one applied index).
#[test]
fn followers_refuse_pg_writes_and_serve_linearizable_reads() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_three(root.path());
    let all: Vec<&Proc> = nodes.iter().collect();
    let l = wait_for(Duration::from_secs(30), "a leader", || leader_of(&all));
    let leader = &nodes[l];
    let follower = &nodes[(l + 1) % 3];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let on_leader = pg_connect(leader).await;
        let on_follower = pg_connect(follower).await;
        on_leader
            .batch_execute("CREATE TABLE docs (id BIGINT PRIMARY KEY, vec VECTOR(4), tag BIGINT)")
            .await
            .unwrap();
        on_leader
            .batch_execute("INSERT INTO docs (id, vec, tag) VALUES (1, '[1,2,3,4]', 1)")
            .await
            .unwrap();
        let index = status(leader).unwrap()["applied_index"].as_u64().unwrap();
        let before = converged(&[leader, follower], index);

        for write in [
            "INSERT INTO docs (id, vec, tag) VALUES (2, '[1,2,3,4]', 1)",
            "CREATE TABLE more (id BIGINT PRIMARY KEY, vec VECTOR(2))",
        ] {
            let e = on_follower.batch_execute(write).await.unwrap_err();
            let db = e.as_db_error().unwrap_or_else(|| panic!("{write}: {e:?}"));
            assert_eq!(db.code().code(), "25006", "{write}: {db:?}");
            assert!(
                db.message().contains(&leader.rest) && db.message().contains(&leader.pg),
                "{write}: the message names the leader's REST {} and Postgres {}: {}",
                leader.rest,
                leader.pg,
                db.message()
            );
        }
        let after = status(follower).unwrap();
        assert_eq!(after["events"], before["events"], "{after}");
        assert_eq!(after["state_hash"], before["state_hash"], "{after}");

        let e = on_follower
            .batch_execute("SET valori.read_consistency = 'eventual'")
            .await
            .unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{e:?}");
        on_follower
            .batch_execute("SET valori.read_consistency = 'linearizable'")
            .await
            .unwrap();
        let shown = on_follower
            .query_one("SHOW valori.read_consistency", &[])
            .await
            .unwrap();
        assert_eq!(shown.get::<_, String>(0), "linearizable");
        for id in 10..25i64 {
            on_leader
                .execute(
                    "INSERT INTO docs (id, vec, tag) VALUES ($1, '[1,2,3,4]', 2)",
                    &[&id],
                )
                .await
                .unwrap();
            let n: i64 = on_follower
                .query_one("SELECT count(*) FROM docs WHERE id = $1", &[&id])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 1, "a linearizable read on the follower misses row {id}");
            let (code, body) = get_with_header(
                &follower.rest,
                &format!("/v1/collections/docs/records/{id}"),
                "Valori-Read-Consistency",
                "linearizable",
            );
            assert_eq!(
                code, 200,
                "a linearizable REST read misses row {id}: {body}"
            );
        }
    });
    let (code, body) = get_with_header(
        &follower.rest,
        "/v1/collections/docs/records/1",
        "Valori-Read-Consistency",
        "eventual",
    );
    assert_eq!(code, 400, "{body}");

    let s = status(leader).unwrap();
    let (code, metrics) = call(&leader.rest, "GET", "/metrics", None);
    assert_eq!(code, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert_eq!(
        sample(&metrics, "valori_cluster_role{role=\"leader\"}"),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "valori_cluster_role{role=\"follower\"}"),
        Some(0)
    );
    assert_eq!(sample(&metrics, "valori_cluster_term"), s["term"].as_u64());
    assert_eq!(sample(&metrics, "valori_cluster_node_id"), Some(leader.id));
    assert!(
        sample(&metrics, "valori_cluster_applied_index").unwrap()
            >= s["applied_index"].as_u64().unwrap()
    );
    assert!(
        sample(&metrics, "valori_cluster_commit_index").is_some(),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "valori_cluster_diverged"), Some(0));
    for p in &nodes {
        if p.id != leader.id {
            let lag = format!(
                "valori_cluster_follower_lag_entries{{follower=\"{}\"}}",
                p.id
            );
            assert!(sample(&metrics, &lag).is_some(), "{lag} in {metrics}");
        }
    }
    let (code, metrics) = call(&follower.rest, "GET", "/metrics", None);
    assert_eq!(code, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert_eq!(
        sample(&metrics, "valori_cluster_role{role=\"follower\"}"),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "valori_cluster_node_id"),
        Some(follower.id)
    );
    assert_eq!(sample(&metrics, "valori_cluster_diverged"), Some(0));
    assert!(
        sample(&metrics, "valori_cluster_lag_entries").is_some(),
        "{metrics}"
    );

    // Nothing is written any more: both nodes rest at one applied index,
    // and each one's metrics carry the position and hashes of its status.
    let index = status(leader).unwrap()["applied_index"].as_u64().unwrap();
    let agreed = converged(&[leader, follower], index);
    for p in [leader, follower] {
        let s = status(p).unwrap();
        assert_eq!(s["applied_index"], agreed["applied_index"], "{s}");
        let (code, metrics) = call(&p.rest, "GET", "/metrics", None);
        assert_eq!(code, 200);
        let metrics = metrics.as_str().unwrap().to_owned();
        let (labels, value) = applied_state(&metrics)
            .unwrap_or_else(|| panic!("no valori_cluster_applied_state: {metrics}"));
        assert_eq!(value, 1);
        let expected: Vec<(String, String)> = [
            ("applied_index", s["applied_index"].to_string()),
            ("events", s["events"].to_string()),
            ("state_hash", s["state_hash"].as_str().unwrap().to_owned()),
            ("log_root", s["log_root"].as_str().unwrap().to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(labels, expected, "node {}", p.id);
        assert_eq!(s["state_hash"], agreed["state_hash"], "node {}", p.id);
    }
}

/// Every record of `acked` is on every node of `nodes`, with its exact
/// vector.
fn assert_acked_everywhere(nodes: &[&Proc], acked: &[u64]) {
    for p in nodes {
        for id in acked {
            let (code, body) = call(
                &p.rest,
                "GET",
                &format!("/v1/collections/docs/records/{id}"),
                None,
            );
            assert_eq!(code, 200, "node {} record {id}: {body}", p.id);
            let got: Vec<f64> = body["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(got, vector(*id), "node {} record {id}", p.id);
        }
    }
}

/// Inserts records `ids` on whichever of the running `nodes` leads (one
/// must still lead), each acknowledged, and adds them to `acked`.
fn insert_on_the_leader(nodes: &[Option<Proc>], ids: std::ops::Range<u64>, acked: &mut Vec<u64>) {
    let leader = nodes
        .iter()
        .flatten()
        .find(|p| status(p).is_some_and(|s| s["role"] == "leader"))
        .expect("the leader still leads");
    for id in ids {
        let (code, body) = insert(leader, id);
        assert_eq!(code, 201, "{body}");
        acked.push(id);
    }
}

/// Creates the collection `docs` on the leader of `nodes` and inserts
/// records `ids` there; returns the leader's index in `nodes`.
fn fill(nodes: &[&Proc], ids: std::ops::Range<u64>) -> usize {
    let l = wait_for(Duration::from_secs(30), "a leader", || leader_of(nodes));
    let (code, body) = call(
        &nodes[l].rest,
        "POST",
        "/v1/collections",
        Some(json!({"name": "docs", "dim": 4})),
    );
    assert_eq!(code, 201, "{body}");
    for id in ids {
        let (code, body) = insert(nodes[l], id);
        assert_eq!(code, 201, "{body}");
    }
    l
}

/// Stops `p` with SIGKILL; returns its id, data directory and cluster
/// address.
fn kill(p: Proc) -> (u64, PathBuf, String) {
    let mut p = p;
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    (p.id, p.dir.clone(), p.cluster.clone())
}

/// The value of `name` (a series without labels) in `p`'s metrics.
fn metric(p: &Proc, name: &str) -> Option<u64> {
    let (code, text) = call(&p.rest, "GET", "/metrics", None);
    assert_eq!(code, 200, "{text}");
    sample(text.as_str()?, name)
}

/// A follower stopped with SIGKILL while the leader writes on, takes
/// snapshots (`--cluster-snapshot-every 4`) and retires its Raft log
/// behind them (`--cluster-log-kept-after-snapshot 0`), catches up from
/// the leader's snapshot when restarted on its directory: it installs a
/// snapshot (its status and metrics count it), and every node ends with
/// the same event count, state hash and log root at the same index, with
/// every acknowledged write present with its exact vector.
#[test]
fn a_stopped_follower_catches_up_from_a_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let flags = [
        "--cluster-snapshot-every",
        "4",
        "--cluster-log-kept-after-snapshot",
        "0",
    ];
    let mut nodes: Vec<Option<Proc>> = start_three_with(root.path(), &flags)
        .into_iter()
        .map(Some)
        .collect();
    let all: Vec<&Proc> = nodes.iter().flatten().collect();
    let l = fill(&all, 0..10);
    let mut acked: Vec<u64> = (0..10).collect();
    let index = status(all[l]).unwrap()["applied_index"].as_u64().unwrap();
    converged(&all, index);
    drop(all);

    let f = (l + 1) % 3;
    let (id, dir, addr) = kill(nodes[f].take().unwrap());
    insert_on_the_leader(&nodes, 10..30, &mut acked);

    nodes[f] = Some(spawn(&dir, id, &addr, &flags));
    let all: Vec<&Proc> = nodes.iter().flatten().collect();
    let l = wait_for(Duration::from_secs(30), "a leader", || leader_of(&all));
    let index = status(all[l]).unwrap()["applied_index"].as_u64().unwrap();
    let s = converged(&all, index);
    assert_eq!(s["events"], json!(31), "create + 30 inserts: {s}");
    let back = nodes[f].as_ref().unwrap();
    let installed = status(back).unwrap()["snapshots_installed"].as_u64();
    assert!(
        installed.is_some_and(|n| n >= 1),
        "the restarted follower caught up without a snapshot: {installed:?}"
    );
    assert_eq!(
        metric(back, "valori_cluster_snapshots_installed_total"),
        installed
    );
    assert_acked_everywhere(&all, &acked);
}

/// A follower whose data directory is wiped (SIGKILL, directory removed)
/// and that is started again under its id with `--cluster-join` and new
/// cluster, REST and Postgres addresses is taken back by the leader (which
/// replaces the addresses it knew) and brought up to date from the log; a
/// write after the rejoin is applied on all three: every node ends with
/// three voters and the same event count, state hash and log root at the
/// same index, with every acknowledged write (before the wipe, while the
/// node was gone, after it came back) present.
#[test]
fn a_wiped_follower_rejoins_and_converges() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Option<Proc>> = start_three(root.path()).into_iter().map(Some).collect();
    let all: Vec<&Proc> = nodes.iter().flatten().collect();
    let l = fill(&all, 0..10);
    let mut acked: Vec<u64> = (0..10).collect();
    let index = status(all[l]).unwrap()["applied_index"].as_u64().unwrap();
    converged(&all, index);
    let seed = all[l].cluster.clone();
    drop(all);

    let f = (l + 1) % 3;
    let old = nodes[f].as_ref().map(|p| p.rest.clone()).unwrap();
    let (id, dir, old_addr) = kill(nodes[f].take().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    insert_on_the_leader(&nodes, 10..20, &mut acked);

    let back = spawn(&dir, id, "127.0.0.1:0", &["--cluster-join", &seed]);
    assert_ne!(back.cluster, old_addr);
    assert_ne!(back.rest, old);
    nodes[f] = Some(back);
    let all: Vec<&Proc> = nodes.iter().flatten().collect();
    let l = wait_for(Duration::from_secs(30), "a leader", || leader_of(&all));
    let index = status(all[l]).unwrap()["applied_index"].as_u64().unwrap();
    converged(&all, index);
    // Every node still runs Raft after the rejoin: a write on the leader
    // is applied on all three.
    let (code, body) = insert(all[l], 20);
    assert_eq!(code, 201, "{body}");
    acked.push(20);
    let index = status(all[l]).unwrap()["applied_index"].as_u64().unwrap();
    let s = converged(&all, index);
    assert_eq!(s["events"], json!(22), "create + 21 inserts: {s}");
    for p in &all {
        let s = status(p).unwrap();
        assert_eq!(s["voters"], json!([1, 2, 3]), "node {}: {s}", p.id);
    }
    let s = status(all[f]).unwrap();
    assert_eq!(
        s["snapshots_installed"],
        json!(0),
        "the leader kept its whole log; the node came back from it: {s}"
    );
    assert_acked_everywhere(&all, &acked);
}

/// A replica whose apply is corrupted on purpose is caught and stops
/// serving while the others serve. Node 3 runs a test build's apply
/// fault (`VALORI_TEST_DROP_ENTRY_AT=20`, the cluster crate's
/// `test-apply-fault` feature): it drops the event of Raft index 20.
/// At the checkpoint of index 64 the two others agree and node 3 differs:
/// its status reports it diverged, its `valori_cluster_diverged` is 1,
/// `valori cluster status` exits 1 naming it, and it refuses reads over
/// REST (503) and Postgres (58000) with the divergence's index and
/// hashes; the two
/// others report nothing diverged, hold every acknowledged write, and
/// the leader acknowledges a write that the other correct node applies.
#[test]
fn a_replica_whose_apply_is_corrupted_is_caught_and_stops_serving() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = vec![spawn(
        &root.path().join("node1"),
        1,
        "127.0.0.1:0",
        &["--cluster-bootstrap"],
    )];
    let seed = nodes[0].cluster.clone();
    nodes.push(spawn(
        &root.path().join("node2"),
        2,
        "127.0.0.1:0",
        &["--cluster-join", &seed],
    ));
    nodes.push(spawn_with_env(
        &root.path().join("node3"),
        3,
        "127.0.0.1:0",
        &["--cluster-join", &seed],
        &[("VALORI_TEST_DROP_ENTRY_AT", "20")],
    ));
    wait_for(Duration::from_secs(60), "three voters", || {
        status(&nodes[0]).filter(|s| s["voters"].as_array().is_some_and(|v| v.len() == 3))
    });
    let all: Vec<&Proc> = nodes.iter().collect();
    // Node 3 must not lead: a leader answers its clients from its own
    // apply, and the write of index 20 would fail instead of diverging.
    let l = wait_for(
        Duration::from_secs(30),
        "a leader other than node 3",
        || leader_of(&all).filter(|&l| l != 2),
    );
    let leader = all[l];
    let (code, body) = call(
        &leader.rest,
        "POST",
        "/v1/collections",
        Some(json!({"name": "docs", "dim": 4})),
    );
    assert_eq!(code, 201, "{body}");
    let checkpoint = 64;
    let mut acked = Vec::new();
    let mut id = 0;
    while status(leader).unwrap()["applied_index"].as_u64().unwrap() <= checkpoint {
        let (code, body) = insert(leader, id);
        assert_eq!(code, 201, "{body}");
        acked.push(id);
        id += 1;
    }
    let bad = &nodes[2];
    let s = wait_for(
        Duration::from_secs(30),
        "node 3 to find itself diverged",
        || status(bad).filter(|s| !s["diverged"].is_null()),
    );
    let reason = s["diverged"].as_str().unwrap().to_owned();
    assert!(
        reason.contains(&format!(
            "this replica diverged from the cluster at log index {checkpoint}"
        )),
        "{reason}"
    );
    assert_eq!(metric(bad, "valori_cluster_diverged"), Some(1));

    // It refuses reads, naming the divergence.
    let (code, body) = call(&bad.rest, "GET", "/v1/collections/docs/records/0", None);
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&reason),
        "{body}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = runtime.block_on(async {
        let client = pg_connect(bad).await;
        client
            .query_one("SELECT count(*) FROM docs", &[])
            .await
            .unwrap_err()
    });
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert!(db.message().contains(&reason), "{db:?}");
    assert_eq!(db.code().code(), "58000", "{db:?}");

    let urls: Vec<String> = all.iter().map(|p| format!("http://{}", p.rest)).collect();
    let args: Vec<&str> = ["cluster", "status"]
        .into_iter()
        .chain(urls.iter().flat_map(|u| ["--url", u.as_str()]))
        .collect();
    let (code, out, err) = valori(&args);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&urls[2]) && l.ends_with(&format!(" DIVERGED: {reason}"))),
        "{out}"
    );
    assert_eq!(out.matches("DIVERGED").count(), 1, "{out}");

    // The others agree, serve, and go on: a write on the leader reaches
    // the other correct node.
    let good: Vec<&Proc> = nodes[..2].iter().collect();
    for p in &good {
        assert_eq!(
            metric(p, "valori_cluster_diverged"),
            Some(0),
            "node {}",
            p.id
        );
    }
    let (code, body) = insert(leader, id);
    assert_eq!(code, 201, "{body}");
    acked.push(id);
    let index = status(leader).unwrap()["applied_index"].as_u64().unwrap();
    let s = converged(&good, index);
    assert_eq!(
        s["events"],
        json!(acked.len() + 1),
        "the create and every acknowledged insert: {s}"
    );
    assert_acked_everywhere(&good, &acked);
    let on_bad = status(bad).unwrap();
    assert_ne!(on_bad["state_hash"], s["state_hash"], "{on_bad}");
}
