//! `valori verify --url`: checks a live server's answers without trusting
//! it. An event the auditor holds must be in the log (its leaf hash, the
//! inclusion path, the root); the newest snapshot, downloaded, must
//! rebuild to the state hash it records, its log leaves must give its log
//! root, and that log must be a prefix of the server's current log
//! (consistency proof).

use serde_json::Value;
use valori_core::hash::Hash32;
use valori_core::merkle::{MerkleLog, leaf_hash, verify_consistency, verify_inclusion};
use valori_engine::verify::Finding;

use crate::client;

/// What to check.
#[derive(Debug, Default)]
pub struct AuditRequest {
    /// `http://host:port`.
    pub url: String,
    pub key: Option<String>,
    /// An event's position and its canonical encoding.
    pub event: Option<(u64, Vec<u8>)>,
}

/// The checks, each passed or failed, and the server's current state.
#[derive(Debug, Default)]
pub struct AuditReport {
    pub findings: Vec<Finding>,
    pub log_size: u64,
    pub log_root: Option<Hash32>,
    pub state_hash: Option<Hash32>,
}

impl AuditReport {
    pub fn is_ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }

    fn check(&mut self, ok: bool, message: String) {
        self.findings.push(Finding { ok, message });
    }
}

struct Api {
    addr: String,
    prefix: String,
    key: Option<String>,
}

impl Api {
    fn get(&self, path: &str) -> Result<client::Response, String> {
        let full = format!("{}{path}", self.prefix);
        let answer = client::request(&self.addr, "GET", &full, self.key.as_deref(), None)
            .map_err(|e| format!("GET {full}: {e}"))?;
        if answer.status != 200 {
            return Err(format!(
                "GET {full}: status {}: {}",
                answer.status,
                answer.text()
            ));
        }
        Ok(answer)
    }

    fn json(&self, path: &str) -> Result<Value, String> {
        self.get(path)?.json()
    }
}

fn hash(value: &Value, field: &str) -> Result<Hash32, String> {
    value[field]
        .as_str()
        .and_then(Hash32::from_hex)
        .ok_or_else(|| format!("answer has no hash {field:?}: {value}"))
}

fn number(value: &Value, field: &str) -> Result<u64, String> {
    value[field]
        .as_u64()
        .ok_or_else(|| format!("answer has no number {field:?}: {value}"))
}

fn hashes(value: &Value, field: &str) -> Result<Vec<Hash32>, String> {
    value[field]
        .as_array()
        .ok_or_else(|| format!("answer has no list {field:?}"))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(Hash32::from_hex)
                .ok_or_else(|| format!("{field} holds a bad hash: {h}"))
        })
        .collect()
}

/// Runs every check; a failure to talk to the server is an `Err`.
pub fn audit(request: &AuditRequest) -> Result<AuditReport, String> {
    let (addr, prefix) = client::parse_url(&request.url).map_err(|e| e.to_string())?;
    let api = Api {
        addr,
        prefix,
        key: request.key.clone(),
    };
    let mut report = AuditReport::default();
    let state = api.json("/v1/proof/state")?;
    let size = number(&state, "log_size")?;
    let root = hash(&state, "log_root")?;
    report.log_size = size;
    report.log_root = Some(root);
    report.state_hash = Some(hash(&state, "state_hash")?);

    if let Some((seq, event)) = &request.event {
        let proof = api.json(&format!("/v1/proof/event/{seq}"))?;
        let leaf = leaf_hash(event);
        report.check(
            hash(&proof, "leaf")? == leaf,
            format!("event {seq}: its content hashes to the server's leaf {leaf}"),
        );
        let served = proof["event"].as_str().unwrap_or_default();
        report.check(
            served == crate::rest::hex(event),
            format!("event {seq}: the server's copy of the event equals the one given"),
        );
        let proof_size = number(&proof, "size")?;
        let proof_root = hash(&proof, "root")?;
        let path = hashes(&proof, "path")?;
        report.check(
            verify_inclusion(&leaf, *seq, proof_size, &path, &proof_root),
            format!(
                "event {seq}: inclusion path leads to root {proof_root} of {proof_size} events"
            ),
        );
        consistency(&api, &mut report, proof_size, proof_root, size, root)?;
    }

    let list = api.json("/v1/snapshots")?;
    let newest = list["snapshots"]
        .as_array()
        .and_then(|l| l.iter().filter_map(|s| s["events"].as_u64()).max());
    let Some(events) = newest else {
        report.check(
            false,
            "no snapshot on the server to check the state hash against (POST /v1/snapshots \
             with a write key creates one)"
                .into(),
        );
        return Ok(report);
    };
    let bytes = api.get(&format!("/v1/snapshots/{events}"))?.body;
    match valori_columnar::snapshot::read_snapshot(&bytes) {
        Err(e) => report.check(
            false,
            format!("snapshot at {events} events does not load: {e}"),
        ),
        Ok((state, meta)) => {
            let computed = state.state_hash_uncached();
            report.check(
                computed == meta.state_hash,
                format!(
                    "snapshot at {events} events ({} bytes) rebuilds to its recorded state hash {}",
                    bytes.len(),
                    meta.state_hash
                ),
            );
            let leaves_root = MerkleLog::from_leaves(meta.log_leaves.clone()).root();
            report.check(
                leaves_root == meta.log_root && meta.log_leaves.len() as u64 == meta.events,
                format!(
                    "snapshot's {} log leaves give its log root {}",
                    meta.events, meta.log_root
                ),
            );
            consistency(&api, &mut report, meta.events, meta.log_root, size, root)?;
            if meta.events == size {
                report.check(
                    Some(computed) == report.state_hash,
                    format!("server's state hash equals the snapshot's at {size} events"),
                );
            }
        }
    }
    Ok(report)
}

/// Checks that the log of `old` events with `old_root` is a prefix of the
/// server's log of `new` events with `new_root`.
fn consistency(
    api: &Api,
    report: &mut AuditReport,
    old: u64,
    old_root: Hash32,
    new: u64,
    new_root: Hash32,
) -> Result<(), String> {
    if old == new {
        report.check(
            old_root == new_root,
            format!("root at {old} events equals the server's current root"),
        );
        return Ok(());
    }
    let (lo, lo_root, hi, hi_root) = if old < new {
        (old, old_root, new, new_root)
    } else {
        (new, new_root, old, old_root)
    };
    let proof = api.json(&format!("/v1/proof/consistency?from={lo}&to={hi}"))?;
    let path = hashes(&proof, "path")?;
    report.check(
        verify_consistency(lo, hi, &lo_root, &hi_root, &path),
        format!("log of {lo} events is a prefix of the log of {hi} events (consistency proof)"),
    );
    Ok(())
}
