//! The README's first requests, run as written against a started `valori`
//! binary: curl for REST, psql for SQL, then a proof that `valori verify`
//! confirms from the files after a graceful shutdown.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The lines of the README block fenced as `sh quickstart`.
fn quickstart_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("```sh quickstart\n")
        .expect("README has a quickstart block");
    let block = &readme[start + "```sh quickstart\n".len()..];
    let end = block.find("```").unwrap();
    block[..end]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

struct Server {
    child: Option<Child>,
    rest: String,
    pg: String,
}

impl Server {
    fn start(dir: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_valori"))
            .args([
                "serve",
                "--rest-addr",
                "127.0.0.1:0",
                "--pg-addr",
                "127.0.0.1:0",
                "--flight-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // "valori listening: rest http://HOST:PORT postgres postgres://HOST:PORT"
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words.get(..2),
            Some(&["valori", "listening:"][..]),
            "{line}"
        );
        let rest = words[3].trim_start_matches("http://").to_owned();
        let pg = words[5].trim_start_matches("postgres://").to_owned();
        Server {
            child: Some(child),
            rest,
            pg,
        }
    }

    fn port(addr: &str) -> &str {
        addr.rsplit(':').next().unwrap()
    }

    /// SIGTERM, then wait for the graceful exit; the server's stderr.
    fn stop(mut self) -> String {
        let child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "server exited with {}: {log}",
            out.status
        );
        log
    }
}

impl Drop for Server {
    /// A failed test must not leave its server running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run(command: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{command}\nexit {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn readme_first_requests_work_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let commands = quickstart_commands();
    assert_eq!(commands.len(), 5, "{commands:?}");
    let outputs: Vec<String> = commands
        .iter()
        .map(|c| {
            let c = c
                .replace(
                    "localhost:3000",
                    &format!("127.0.0.1:{}", Server::port(&server.rest)),
                )
                .replace("-p 5433", &format!("-p {}", Server::port(&server.pg)));
            run(&c)
        })
        .collect();
    let json = |i: usize| -> Value {
        serde_json::from_str(&outputs[i]).unwrap_or_else(|e| panic!("{e}: {}", outputs[i]))
    };

    assert_eq!(json(0)["name"], "docs");
    assert_eq!(json(1)["ids"], serde_json::json!([0, 1, 2]));
    // [1,0,0] is nearest itself (0), then [0.9,0.1,0] (2) at
    // sqrt(0.01 + 0.01) in Q16.16.
    let hits = json(2)["hits"].as_array().unwrap().clone();
    let ids: Vec<u64> = hits.iter().map(|h| h["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [0, 2]);
    assert_eq!(hits[0]["distance"].as_f64().unwrap(), 0.0);
    let d = hits[1]["distance"].as_f64().unwrap();
    assert!((d - 0.02f64.sqrt()).abs() < 1e-4, "{d}");
    assert_eq!(hits[1]["metadata"]["lang"], "en");

    // psql's aligned table: a header, a rule, then `id | tag | distance`.
    let rows: Vec<Vec<String>> = outputs[3]
        .lines()
        .filter(|l| l.contains('|'))
        .skip(1)
        .map(|l| l.split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{}", outputs[3]);
    assert_eq!(rows[0][..2], ["0", "7"]);
    assert_eq!(rows[1][..2], ["2", "8"]);
    let psql_d: f64 = rows[1][2].parse().unwrap();
    assert!((psql_d - d).abs() < 1e-9, "{psql_d} vs {d}");

    let proof = json(4);
    assert_eq!(proof["log_size"], 2);
    let state_hash = proof["state_hash"].as_str().unwrap().to_owned();

    let log = server.stop();
    assert!(log.contains("open to anyone"), "{log}");
    assert!(log.contains("checkpoint written"), "{log}");
    let verify = Command::new(env!("CARGO_BIN_EXE_valori"))
        .arg("verify")
        .arg(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{report}");
    assert!(
        report.contains(&format!("state_hash {state_hash}")),
        "verify disagrees with the served proof: {report}"
    );
}

/// Beyond loopback without users the server refuses to start, and says why.
#[test]
fn open_access_beyond_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_valori"))
        .args([
            "serve",
            "--rest-addr",
            "0.0.0.0:0",
            "--pg-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without credentials"), "{err}");
}
