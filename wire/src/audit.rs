//! `valori verify --url`: checks a live server without trusting it.
//!
//! The server's word is taken for nothing. What the auditor holds — a
//! tree head (`--trusted-size`, `--trusted-root`) and optionally an event
//! it wrote — is the starting point:
//!
//! 1. the server's current head (log size and root) must extend the
//!    trusted head: a consistency proof from it, checked here;
//! 2. every event of the log is fetched (`GET /v1/proof/log`), checked by
//!    inclusion against that head, and replayed with the same
//!    `State::apply` the server uses;
//! 3. the replayed state hash must equal the one the server claims, and
//!    the replayed graphs, built block by block, must reach each index
//!    hash the server claims;
//! 4. the newest snapshot, downloaded, must load (trailer, structure,
//!    recorded hashes), and its log leaves, state hash and index hash must
//!    equal those of the replay at its event count.
//!
//! Each check names the claim it tests ([`Claim`]), so a failure says
//! exactly which of the server's claims is false. Everything downloaded is
//! bounded ([`AuditLimits`]).

use std::cell::Cell;
use std::fmt;

use serde_json::Value;
use valori_columnar::snapshot::{SnapshotMeta, read_snapshot};
use valori_core::event::{CollectionName, Event};
use valori_core::hash::Hash32;
use valori_core::merkle::{MerkleLog, leaf_hash, verify_consistency, verify_inclusion};
use valori_core::state::State;
use valori_engine::index::RayonPlanner;
use valori_engine::verify::Finding;

use crate::client;

/// Default of [`AuditLimits::download_bytes_max`]: 4 GiB.
pub const AUDIT_DOWNLOAD_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

/// Default of [`AuditLimits::events_max`].
pub const AUDIT_EVENTS_MAX: u64 = 10_000_000;

/// A tree head the auditor already holds (from an earlier audit, a
/// receipt, or another replica): the log of `size` events had `root`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedHead {
    pub size: u64,
    pub root: Hash32,
}

/// Bounds on what an audit downloads and replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditLimits {
    /// Bytes of answers (heads and bodies) downloaded in all.
    pub download_bytes_max: u64,
    /// Events the audit replays; a longer log is refused before any is
    /// fetched.
    pub events_max: u64,
}

impl Default for AuditLimits {
    fn default() -> Self {
        AuditLimits {
            download_bytes_max: AUDIT_DOWNLOAD_BYTES_MAX,
            events_max: AUDIT_EVENTS_MAX,
        }
    }
}

/// What to check.
#[derive(Debug, Default)]
pub struct AuditRequest {
    /// `http://host:port`.
    pub url: String,
    pub key: Option<String>,
    /// An event's position and its canonical encoding, as its writer
    /// recorded it: the log must hold exactly these bytes there.
    pub event: Option<(u64, Vec<u8>)>,
    /// The head the server's log must extend.
    pub trusted: Option<TrustedHead>,
    pub limits: AuditLimits,
}

/// A claim of the server that the audit tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The log holds the events the server says it holds: at least the
    /// trusted head's, and every one up to the head it reports, served in
    /// order.
    LogSize,
    /// The server's head extends the trusted head.
    ConsistencyFromTrustedHead,
    /// The event served at `seq` is in the log under the head's root.
    EventInclusion { seq: u64 },
    /// The event at `seq` is a well-formed event.
    EventDecodes { seq: u64 },
    /// The event at `seq` applies to the state before it.
    EventReplays { seq: u64 },
    /// The log holds, at `seq`, the event the auditor gave.
    GivenEvent { seq: u64 },
    /// The state hash of the head.
    StateHash,
    /// A collection's index hash at the head.
    IndexHash { collection: String },
    /// The newest snapshot loads (trailer, structure, recorded hashes).
    Snapshot { events: u64 },
    /// The snapshot's log leaves and root are the log's first events.
    SnapshotLogLeaves { events: u64 },
    /// The snapshot's state hash is the replay's at its event count.
    SnapshotStateHash { events: u64 },
    /// The snapshot's index hash is the replay's at its event count.
    SnapshotIndexHash { events: u64 },
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::LogSize => f.write_str("log size"),
            Claim::ConsistencyFromTrustedHead => f.write_str("consistency from trusted head"),
            Claim::EventInclusion { seq } => write!(f, "event {seq} inclusion"),
            Claim::EventDecodes { seq } => write!(f, "event {seq} decoding"),
            Claim::EventReplays { seq } => write!(f, "event {seq} replay"),
            Claim::GivenEvent { seq } => write!(f, "given event {seq}"),
            Claim::StateHash => f.write_str("state hash"),
            Claim::IndexHash { collection } => write!(f, "index hash of collection {collection}"),
            Claim::Snapshot { events } => write!(f, "snapshot at {events} events"),
            Claim::SnapshotLogLeaves { .. } => f.write_str("snapshot log leaves"),
            Claim::SnapshotStateHash { .. } => f.write_str("snapshot state hash"),
            Claim::SnapshotIndexHash { .. } => f.write_str("snapshot index hash"),
        }
    }
}

/// One tested claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub claim: Claim,
    pub ok: bool,
    /// What was compared, with the values.
    pub detail: String,
}

/// The checks, each passed or failed, and the head they were made against.
#[derive(Debug, Default)]
pub struct AuditReport {
    pub checks: Vec<Check>,
    /// What the audit could not check and why (no trusted head, no
    /// snapshot), for the reader.
    pub notes: Vec<String>,
    /// The head the server claimed.
    pub log_size: u64,
    pub log_root: Option<Hash32>,
    /// The state hash of the replay, when the whole log was replayed.
    pub state_hash: Option<Hash32>,
}

impl AuditReport {
    pub fn is_ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The claims that failed, in the order they were tested.
    pub fn failed(&self) -> Vec<&Claim> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| &c.claim)
            .collect()
    }

    /// Notes and checks as lines for printing.
    pub fn findings(&self) -> Vec<Finding> {
        self.notes
            .iter()
            .map(|n| Finding {
                ok: true,
                message: n.clone(),
            })
            .chain(self.checks.iter().map(|c| Finding {
                ok: c.ok,
                message: format!("{}: {}", c.claim, c.detail),
            }))
            .collect()
    }

    fn check(&mut self, claim: Claim, ok: bool, detail: String) {
        self.checks.push(Check { claim, ok, detail });
    }
}

/// Why an audit could not run to its end. A lie the audit can name is a
/// failed [`Check`], not an error; these are failures to talk to the
/// server, answers that are not what the API describes, and the bounds.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("{url:?}: {source}")]
    Url { url: String, source: std::io::Error },
    #[error("GET {path}: {source}")]
    Request {
        path: String,
        source: std::io::Error,
    },
    #[error("GET {path}: status {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("GET {path}: the answer {what}")]
    Malformed { path: String, what: String },
    #[error(
        "the audit may download at most {limit} bytes (--download-bytes-max); GET {path} exceeds what is left"
    )]
    DownloadBound { path: String, limit: u64 },
    #[error(
        "the server's log holds {size} events, more than the {limit} the audit may replay (--events-max)"
    )]
    EventsBound { size: u64, limit: u64 },
}

struct Api {
    addr: String,
    prefix: String,
    key: Option<String>,
    /// Bytes the audit may still download.
    remaining: Cell<u64>,
    limit: u64,
}

impl Api {
    /// `GET path`, any status, within the download bound.
    fn get_any(&self, path: &str) -> Result<client::Response, AuditError> {
        let full = format!("{}{path}", self.prefix);
        let answer = client::request_bounded(
            &self.addr,
            "GET",
            &full,
            self.key.as_deref(),
            None,
            self.remaining.get(),
        )
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::FileTooLarge {
                AuditError::DownloadBound {
                    path: full.clone(),
                    limit: self.limit,
                }
            } else {
                AuditError::Request {
                    path: full.clone(),
                    source,
                }
            }
        })?;
        self.remaining.set(
            self.remaining
                .get()
                .saturating_sub(answer.body.len() as u64),
        );
        Ok(answer)
    }

    fn get(&self, path: &str) -> Result<client::Response, AuditError> {
        let answer = self.get_any(path)?;
        if answer.status != 200 {
            return Err(AuditError::Status {
                path: path.to_owned(),
                status: answer.status,
                body: answer.text(),
            });
        }
        Ok(answer)
    }

    fn json(&self, path: &str) -> Result<Value, AuditError> {
        parse_json(&self.get(path)?, path)
    }
}

fn parse_json(answer: &client::Response, path: &str) -> Result<Value, AuditError> {
    serde_json::from_slice(&answer.body).map_err(|e| AuditError::Malformed {
        path: path.to_owned(),
        what: format!("is not JSON: {e}"),
    })
}

fn malformed(path: &str, what: String) -> AuditError {
    AuditError::Malformed {
        path: path.to_owned(),
        what,
    }
}

fn hash_field(value: &Value, field: &str, path: &str) -> Result<Hash32, AuditError> {
    value[field]
        .as_str()
        .and_then(Hash32::from_hex)
        .ok_or_else(|| malformed(path, format!("has no hash {field:?}")))
}

fn number(value: &Value, field: &str, path: &str) -> Result<u64, AuditError> {
    value[field]
        .as_u64()
        .ok_or_else(|| malformed(path, format!("has no number {field:?}")))
}

fn hash_list(value: &Value, field: &str, path: &str) -> Result<Vec<Hash32>, AuditError> {
    value[field]
        .as_array()
        .ok_or_else(|| malformed(path, format!("has no list {field:?}")))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(Hash32::from_hex)
                .ok_or_else(|| malformed(path, format!("{field} holds a bad hash: {h}")))
        })
        .collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What the server claims its head is.
struct Head {
    size: u64,
    root: Hash32,
    state_hash: Hash32,
    /// Per collection, in the server's order: its index hash as built so
    /// far (`None` when it reports none).
    indexes: Vec<(String, Option<Hash32>)>,
}

fn head(api: &Api) -> Result<Head, AuditError> {
    let path = "/v1/proof/state";
    let value = api.json(path)?;
    let indexes = value["collections"]
        .as_array()
        .ok_or_else(|| malformed(path, "has no list \"collections\"".into()))?
        .iter()
        .map(|c| {
            let name = c["name"]
                .as_str()
                .ok_or_else(|| malformed(path, "names no collection".into()))?;
            Ok((
                name.to_owned(),
                c["index_hash"].as_str().and_then(Hash32::from_hex),
            ))
        })
        .collect::<Result<_, AuditError>>()?;
    Ok(Head {
        size: number(&value, "log_size", path)?,
        root: hash_field(&value, "log_root", path)?,
        state_hash: hash_field(&value, "state_hash", path)?,
        indexes,
    })
}

/// Runs every check. `Err` when the audit cannot run (the server does not
/// answer as the API describes, or a bound is reached); a false claim is a
/// failed check in the report.
pub fn audit(request: &AuditRequest) -> Result<AuditReport, AuditError> {
    let (addr, prefix) = client::parse_url(&request.url).map_err(|source| AuditError::Url {
        url: request.url.clone(),
        source,
    })?;
    let api = Api {
        addr,
        prefix,
        key: request.key.clone(),
        remaining: Cell::new(request.limits.download_bytes_max),
        limit: request.limits.download_bytes_max,
    };
    let mut report = AuditReport::default();
    let head = head(&api)?;
    let (size, root) = (head.size, head.root);
    report.log_size = size;
    report.log_root = Some(root);

    // 1. The head must extend what the auditor already trusts; a head that
    //    does not is a different log, and nothing else about it matters.
    match request.trusted {
        None => report.notes.push(format!(
            "no trusted head given: the server's head ({size} events, root {root}) is taken as \
             the start; pin it next time with --trusted-size {size} --trusted-root {root}"
        )),
        Some(trusted) => {
            if trusted.size > size {
                report.check(
                    Claim::LogSize,
                    false,
                    format!(
                        "the server reports {size} events, fewer than the {} of the trusted head: \
                         its log was truncated or rolled back",
                        trusted.size
                    ),
                );
                return Ok(report);
            }
            let mut refused = None;
            let ok = if trusted.size == size {
                trusted.root == root
            } else {
                let path = format!("/v1/proof/consistency?from={}&to={size}", trusted.size);
                let answer = api.get_any(&path)?;
                if answer.status == 200 {
                    let hashes = hash_list(&parse_json(&answer, &path)?, "path", &path)?;
                    verify_consistency(trusted.size, size, &trusted.root, &root, &hashes)
                } else {
                    // A head the server cannot prove consistent is as
                    // good as one that is not.
                    refused = Some(format!(
                        "; the server gives no consistency proof (status {}: {})",
                        answer.status,
                        answer.text()
                    ));
                    false
                }
            };
            let detail = format!(
                "the server's log of {size} events (root {root}) {} the trusted head of {} events \
                 (root {}){}",
                if ok { "extends" } else { "does not extend" },
                trusted.size,
                trusted.root,
                refused.unwrap_or_default()
            );
            report.check(Claim::ConsistencyFromTrustedHead, ok, detail);
            if !ok {
                return Ok(report);
            }
        }
    }
    if size > request.limits.events_max {
        return Err(AuditError::EventsBound {
            size,
            limit: request.limits.events_max,
        });
    }

    // 2. The newest snapshot at or below the head: loaded now, compared
    //    with the replay when it reaches the snapshot's event count.
    let list = api.json("/v1/snapshots")?;
    let newest = list["snapshots"].as_array().and_then(|l| {
        l.iter()
            .filter_map(|s| s["events"].as_u64())
            .filter(|&e| e <= size)
            .max()
    });
    let snapshot: Option<SnapshotMeta> = match newest {
        None => {
            report.notes.push(
                "no snapshot on the server at or below its head: the state is rebuilt from the \
                 log alone"
                    .into(),
            );
            None
        }
        Some(events) => {
            let path = format!("/v1/snapshots/{events}");
            let bytes = api.get(&path)?.body;
            match read_snapshot(&bytes) {
                Ok((_, meta)) if meta.events == events => {
                    report.check(
                        Claim::Snapshot { events },
                        true,
                        format!(
                            "{} bytes load: trailer, structure, state hash {} and index hash {} \
                             recomputed from the file",
                            bytes.len(),
                            meta.state_hash,
                            meta.index_hash
                        ),
                    );
                    Some(meta)
                }
                Ok((_, meta)) => {
                    report.check(
                        Claim::Snapshot { events },
                        false,
                        format!(
                            "the file served as the snapshot at {events} events covers {}",
                            meta.events
                        ),
                    );
                    None
                }
                Err(e) => {
                    report.check(Claim::Snapshot { events }, false, e.to_string());
                    None
                }
            }
        }
    };

    // 3. Replay every event, each checked by inclusion under the head.
    let planner = RayonPlanner::new(std::thread::available_parallelism().map_or(1, usize::from));
    let mut state = State::new();
    let mut merkle = MerkleLog::new();
    if let Some(meta) = snapshot.as_ref().filter(|m| m.events == 0) {
        compare_snapshot(&mut report, &mut state, &merkle, meta, &planner);
    }
    let mut next = 0u64;
    'pages: while next < size {
        let path = format!("/v1/proof/log?from={next}&size={size}");
        let answer = api.get_any(&path)?;
        if answer.status != 200 {
            report.check(
                Claim::LogSize,
                false,
                format!(
                    "the server reports {size} events but does not serve event {next} (status {}: \
                     {}); the state cannot be rebuilt from verified events",
                    answer.status,
                    answer.text()
                ),
            );
            break;
        }
        let page = parse_json(&answer, &path)?;
        let entries = page["events"]
            .as_array()
            .ok_or_else(|| malformed(&path, "has no list \"events\"".into()))?;
        if entries.is_empty() {
            report.check(
                Claim::LogSize,
                false,
                format!("the server reports {size} events but serves none from event {next} on"),
            );
            break;
        }
        for entry in entries {
            let seq = number(entry, "seq", &path)?;
            if seq != next {
                report.check(
                    Claim::LogSize,
                    false,
                    format!("asked for event {next}, the server served event {seq}"),
                );
                break 'pages;
            }
            let bytes = entry["event"]
                .as_str()
                .and_then(unhex)
                .ok_or_else(|| malformed(&path, format!("event {seq} is not hex")))?;
            let proof = hash_list(entry, "path", &path)?;
            let leaf = leaf_hash(&bytes);
            if !verify_inclusion(&leaf, seq, size, &proof, &root) {
                report.check(
                    Claim::EventInclusion { seq },
                    false,
                    format!(
                        "event {seq} as served (leaf {leaf}) and its inclusion path do not lead \
                         to the head's root {root} of {size} events"
                    ),
                );
                break 'pages;
            }
            if let Some((given_seq, given)) = &request.event
                && *given_seq == seq
            {
                let ok = *given == bytes;
                report.check(
                    Claim::GivenEvent { seq },
                    ok,
                    format!(
                        "the log holds, at {seq}, {} the given event (leaf {leaf}, given {})",
                        if ok { "exactly" } else { "not" },
                        leaf_hash(given)
                    ),
                );
            }
            let event = match Event::decode(&bytes) {
                Ok(e) => e,
                Err(e) => {
                    report.check(Claim::EventDecodes { seq }, false, e.to_string());
                    break 'pages;
                }
            };
            if let Err(e) = state.apply(&event) {
                report.check(
                    Claim::EventReplays { seq },
                    false,
                    format!("rejected on replay: {e}"),
                );
                break 'pages;
            }
            merkle.push_leaf(leaf);
            next += 1;
            if let Some(meta) = snapshot.as_ref().filter(|m| m.events == next) {
                compare_snapshot(&mut report, &mut state, &merkle, meta, &planner);
            }
        }
    }
    if let Some((seq, _)) = &request.event
        && *seq >= size
    {
        report.check(
            Claim::GivenEvent { seq: *seq },
            false,
            format!("the server's log holds {size} events, not event {seq}"),
        );
    }
    if next < size {
        return Ok(report);
    }
    let ok = merkle.root() == root;
    report.check(
        Claim::LogSize,
        ok,
        format!(
            "all {size} events served, each checked by inclusion, and replayed; their root is {}",
            merkle.root()
        ),
    );

    // 4. The state and index hashes the server claims, from the replay.
    let replayed = state.state_hash();
    report.check(
        Claim::StateHash,
        replayed == head.state_hash,
        format!(
            "the server claims {}, the replay of its {size} verified events gives {replayed}",
            head.state_hash
        ),
    );
    report.state_hash = Some(replayed);
    for (name, claimed) in &head.indexes {
        let Some(claimed) = claimed else { continue };
        let claim = Claim::IndexHash {
            collection: name.clone(),
        };
        let collection = CollectionName::new(name)
            .ok()
            .and_then(|n| state.collection_for_restore(&n));
        let Some(c) = collection else {
            report.check(
                claim,
                false,
                format!("the server reports collection {name}, the replay has none"),
            );
            continue;
        };
        // The server's graph grows block by block in the background: build
        // the replay's one block at a time until it has the claimed hash
        // or every complete block is built.
        let mut found = c.index_hash() == *claimed;
        while !found {
            let Some(plans) = c.plan_index_block(&planner) else {
                break;
            };
            c.link_index_block(plans);
            found = c.index_hash() == *claimed;
        }
        report.check(
            claim,
            found,
            format!(
                "the server claims {claimed}; the replay's graph {} (at {} of {} rows built)",
                if found {
                    "has it"
                } else {
                    "has no such hash at any block"
                },
                c.indexed_rows(),
                c.rows()
            ),
        );
    }
    Ok(report)
}

/// Compares the snapshot with the replay at its event count; builds every
/// complete block first, as the server does before writing a snapshot.
fn compare_snapshot(
    report: &mut AuditReport,
    state: &mut State,
    merkle: &MerkleLog,
    meta: &SnapshotMeta,
    planner: &RayonPlanner,
) {
    let events = meta.events;
    let leaves_ok = merkle.leaves() == &meta.log_leaves[..] && merkle.root() == meta.log_root;
    report.check(
        Claim::SnapshotLogLeaves { events },
        leaves_ok,
        format!(
            "the snapshot records log root {} over {} leaves; the verified log's first {events} \
             events give {}",
            meta.log_root,
            meta.log_leaves.len(),
            merkle.root()
        ),
    );
    let replayed = state.state_hash();
    report.check(
        Claim::SnapshotStateHash { events },
        replayed == meta.state_hash,
        format!(
            "the snapshot records {}, the replay of the first {events} verified events gives \
             {replayed}",
            meta.state_hash
        ),
    );
    state.build_indexes(planner);
    let replayed = state.index_hash();
    report.check(
        Claim::SnapshotIndexHash { events },
        replayed == meta.index_hash,
        format!(
            "the snapshot records {}, the replay's graphs at {events} events give {replayed}",
            meta.index_hash
        ),
    );
}
