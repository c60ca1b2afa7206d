//! Replication: a cluster of Valori nodes on openraft.
//!
//! - [`Node`] runs one member: openraft's `Raft` over a [`log_store::LogStore`]
//!   (the Raft log and vote, durable in the node's cluster directory), a
//!   [`state_machine::StateMachine`] that applies committed entries to the
//!   [`Engine`] with the same durable commit and `State::apply` as a single
//!   node, and [`network`] (length-prefixed messages over TCP on the cluster
//!   address, opened with the cluster key), with the entries of every write
//!   in the binary encoding of [`codec`].
//! - Client writes reach the cluster through the engine: [`Node::start`]
//!   installs a [`WriteGate`] so that `Engine::submit` from any front end
//!   proposes the event and returns once a majority has it durable and this
//!   node has applied it — or refuses it on a follower, naming the
//!   leader's client address.
//! - [`NodeStatus`] is what `valori cluster status` shows: role, term,
//!   commit and applied index, lag, and the state hash and log root at the
//!   applied index, with the checkpoints the nodes compare.

// openraft's trait methods return its `StorageError` (over 200 bytes); the
// helpers that build it return it too rather than box it and unbox it again.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, Membership, ServerState};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use valori_core::event::Event;
use valori_engine::{Engine, EngineError, Receipt, WriteGate};

pub use state_machine::{ApplyFault, CHECKPOINT_EVERY_ENTRIES};
pub use tls::ClusterTls;

/// A node's id in its cluster.
pub type NodeId = u64;

/// How other nodes and clients reach a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's cluster address (Raft traffic).
    pub cluster_addr: String,
    /// The node's REST address, named to clients that write to a follower.
    pub rest_addr: String,
    /// The node's Postgres address, named to Postgres clients that write
    /// to a follower; empty when not known (a node started without it).
    #[serde(default)]
    pub pg_addr: String,
}

impl Member {
    fn pg(&self) -> Option<String> {
        (!self.pg_addr.is_empty()).then(|| self.pg_addr.clone())
    }
}

/// The refusal of a follower, naming the leader it knows.
fn not_leader(leader: Option<Member>) -> EngineError {
    EngineError::NotLeader {
        leader_pg: leader.as_ref().and_then(Member::pg),
        leader: leader.map(|n| n.rest_addr),
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster {}, REST {}", self.cluster_addr, self.rest_addr)?;
        if !self.pg_addr.is_empty() {
            write!(f, ", Postgres {}", self.pg_addr)?;
        }
        Ok(())
    }
}

/// One replicated write: the canonical bytes of one or more events, in the
/// order they are applied. Client writes that wait while an earlier
/// proposal is in flight share one entry (see [`Node::write`]), so that
/// they share its fsyncs of the Raft log on every node.
///
/// Entries travel and are stored in the binary encoding of [`codec`]; the
/// serde form (JSON with base64, one event as `event` or several as
/// `events`) is kept to read Raft logs written before that encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub events: Vec<Vec<u8>>,
}

impl Serialize for Write {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use serde::ser::SerializeStruct as _;
        let events: Vec<String> = self
            .events
            .iter()
            .map(|e| base64::engine::general_purpose::STANDARD.encode(e))
            .collect();
        let mut st = s.serialize_struct("Write", 1)?;
        st.serialize_field("events", &events)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Write {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Write, D::Error> {
        use base64::Engine as _;
        #[derive(Deserialize)]
        struct Json {
            event: Option<String>,
            #[serde(default)]
            events: Vec<String>,
        }
        let json = Json::deserialize(d)?;
        let events = json
            .event
            .into_iter()
            .chain(json.events)
            .map(|text| {
                base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(serde::de::Error::custom)
            })
            .collect::<Result<Vec<Vec<u8>>, D::Error>>()?;
        Ok(Write { events })
    }
}

/// What applying an entry gave, on the node that applied it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    /// One result per event of the entry, in order; empty for entries that
    /// are not events. Never sent between nodes (a client's result is
    /// produced on the node it wrote to), so not serialized.
    #[serde(skip)]
    pub results: Vec<Result<Receipt, EngineError>>,
}

openraft::declare_raft_types!(
    /// openraft's types for Valori.
    pub TypeConfig:
        D = Write,
        R = Applied,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;

/// A node's position, recorded at every `CHECKPOINT_EVERY_ENTRIES`-th
/// Raft index; equal on every correct replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub index: u64,
    pub events: u64,
    pub state_hash: String,
    pub log_root: String,
}

/// What `valori cluster status` reports for one node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub member: Member,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// The leader's REST address, when known.
    pub leader_rest_addr: Option<String>,
    /// The leader's cluster address, when known.
    pub leader_cluster_addr: Option<String>,
    /// The leader's Postgres address, when known.
    #[serde(default)]
    pub leader_pg_addr: Option<String>,
    /// Highest index this node knows committed (the leader's commit index on
    /// the leader; on a follower, its applied index is the best it knows).
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    /// Entries committed but not yet applied here; on the leader, per
    /// follower, entries it has not yet matched.
    pub lag: u64,
    pub follower_lag: BTreeMap<NodeId, u64>,
    /// Events in the event log at the applied index.
    pub events: u64,
    pub state_hash: Option<String>,
    pub log_root: Option<String>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub checkpoints: Vec<Checkpoint>,
    /// Set when this replica found itself diverged and stopped serving.
    pub diverged: Option<String>,
    /// Snapshots received from the leader and installed since this node
    /// started: each time it was behind the part of the log the leader
    /// had retired.
    #[serde(default)]
    pub snapshots_installed: u64,
}

/// Errors of starting and running a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    #[error("cluster file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster file {} is damaged", path.display())]
    Damaged { path: PathBuf },
    #[error("cannot listen on the cluster address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("engine: {0}")]
    Engine(EngineError),
    #[error(
        "the data directory holds {events} events but no cluster state: a node joins a cluster with an empty data directory"
    )]
    NotEmpty { events: u64 },
    #[error("openraft: {reason}")]
    Raft { reason: String },
    #[error("joining through {addr}: {reason}")]
    Join { addr: String, reason: String },
}

/// How a node takes part in its cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// Where to listen for other nodes (port 0 picks one).
    pub listen: SocketAddr,
    /// The REST address clients are told to write to when this node leads.
    pub rest_addr: String,
    /// The Postgres address Postgres clients are told to write to when
    /// this node leads (empty: not named).
    pub pg_addr: String,
    /// The node's Raft log and vote live here.
    pub dir: PathBuf,
    /// Shared by every node; connections without it are refused.
    pub key: String,
    /// Mutual TLS between nodes, when set: connections from nodes without
    /// a certificate of the cluster's authority are refused.
    pub tls: Option<ClusterTls>,
    /// Start a new cluster with this node as its only voter (first start
    /// only; later starts find the cluster's state on disk).
    pub bootstrap: bool,
    /// Ask the node at this cluster address to add this one (as a voter,
    /// or as a learner with `learner`).
    pub join: Option<String>,
    /// Join as a learner: a non-voting replica that serves reads, until
    /// promoted ([`Node::promote`]).
    pub learner: bool,
    /// Base of the election timeout; the heartbeat is a third of it.
    pub election_timeout: Duration,
    /// Raft entries kept after a snapshot covers them, so that a follower a
    /// little behind catches up from the log rather than a snapshot.
    pub log_kept_after_snapshot: u64,
    /// Take a snapshot (and retire the Raft log it covers, but for
    /// `log_kept_after_snapshot` entries) every this many entries; `None`:
    /// only when asked ([`Node::snapshot`]).
    pub snapshot_every_entries: Option<u64>,
    #[doc(hidden)]
    pub fault: ApplyFault,
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> EngineError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f.leader_node),
        other => EngineError::Replication {
            reason: other.to_string(),
            outcome_unknown: false,
        },
    }
}

/// A running member of a cluster.
pub struct Node {
    pub id: NodeId,
    pub member: Member,
    pub raft: Raft,
    engine: Arc<Engine>,
    sm: state_machine::StateMachine,
    creds: Arc<network::Credentials>,
    runtime: tokio::runtime::Handle,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// One connection per other node, each behind its own lock: a call to
    /// a node that does not answer holds up only calls to that node.
    peers: std::sync::Mutex<BTreeMap<NodeId, Arc<tokio::sync::Mutex<network::Conn>>>>,
    /// Held through each membership change (admit, promote, remove):
    /// openraft refuses a change while another is uncommitted, so two
    /// nodes joining at once, or a join retried while an operator removes
    /// a node, would otherwise fail each other half-way.
    membership_change: tokio::sync::Mutex<()>,
    /// Client writes on their way to [`propose_loop`].
    proposals: tokio::sync::mpsc::Sender<Proposal>,
}

/// A client write waiting to be proposed, and where its result goes.
struct Proposal {
    event: Vec<u8>,
    reply: tokio::sync::oneshot::Sender<Result<Receipt, EngineError>>,
}

/// Proposals openraft has in hand at once. openraft 0.9 appends and
/// fsyncs each proposal on its own, on every node; writes that arrive
/// while this many are in flight wait and then share one entry, and so
/// one fsync of the Raft log per node (group commit, as the engine's own
/// queue does for a single node).
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 2;

/// Events in one entry at most.
pub const ENTRY_EVENTS_MAX: usize = 1024;

/// Bytes of events in one entry at most, unless one event alone is larger.
pub const ENTRY_EVENT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Client writes queued for proposal at most; a writer past it waits.
const PROPOSALS_QUEUED_MAX: usize = 4096;

/// Proposes the client writes queued in `rx`, at most
/// [`PROPOSALS_IN_FLIGHT_MAX`] entries at a time, each entry holding every
/// write that waited for it (up to [`ENTRY_EVENTS_MAX`] and
/// [`ENTRY_EVENT_BYTES_MAX`]), and answers each write with its own
/// event's result.
async fn propose_loop(raft: Raft, mut rx: tokio::sync::mpsc::Receiver<Proposal>) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
    let mut carried: Option<Proposal> = None;
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.event.len();
        let mut batch = vec![first];
        while batch.len() < ENTRY_EVENTS_MAX {
            let Ok(p) = rx.try_recv() else { break };
            if bytes + p.event.len() > ENTRY_EVENT_BYTES_MAX {
                carried = Some(p);
                break;
            }
            bytes += p.event.len();
            batch.push(p);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (events, replies): (Vec<Vec<u8>>, Vec<_>) =
                batch.into_iter().map(|p| (p.event, p.reply)).unzip();
            let results = propose(&raft, Write { events }).await;
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        });
    }
}

/// Proposes one entry and waits until it is committed and applied here:
/// one result per event.
async fn propose(raft: &Raft, write: Write) -> Vec<Result<Receipt, EngineError>> {
    let n = write.events.len();
    let every = |e: EngineError| vec![Err(e); n];
    match raft.client_write(write).await {
        Ok(response) if response.data.results.len() == n => response.data.results,
        Ok(_) => every(EngineError::Replication {
            reason: "the entry was committed but this node did not apply its events".to_owned(),
            outcome_unknown: true,
        }),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            every(not_leader(f.leader_node))
        }
        Err(e) => every(EngineError::Replication {
            reason: e.to_string(),
            outcome_unknown: true,
        }),
    }
}

/// The write gate installed in the engine: client writes become Raft
/// proposals.
#[derive(Debug)]
struct Gate {
    node: std::sync::Weak<Node>,
}

impl WriteGate for Gate {
    fn read_barrier(&self) -> valori_engine::ReadBarrier {
        let node = self.node.upgrade();
        Box::pin(async move {
            match node {
                Some(node) => node.read_barrier().await.map(|_| ()),
                None => Err(EngineError::Replication {
                    reason: "the node is shutting down".to_owned(),
                    outcome_unknown: false,
                }),
            }
        })
    }

    fn submit(&self, event: Event) -> Result<Receipt, EngineError> {
        let Some(node) = self.node.upgrade() else {
            return Err(EngineError::Replication {
                reason: "the node is shutting down".to_owned(),
                outcome_unknown: false,
            });
        };
        // Front ends call the engine from blocking threads; the proposal
        // runs on the runtime and this thread waits for its answer.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let runtime = node.runtime.clone();
        runtime.spawn(async move {
            let _ = tx.send(node.write(event).await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(EngineError::Replication {
                reason: "the write's task ended without an answer".to_owned(),
                outcome_unknown: true,
            })
        })
    }
}

impl ClusterConfig {
    /// A node with `key` in `dir`, listening on `listen`, that neither
    /// bootstraps nor joins; timings fit a cluster on one network.
    pub fn new(
        node_id: NodeId,
        listen: SocketAddr,
        rest_addr: String,
        dir: PathBuf,
        key: String,
    ) -> Self {
        ClusterConfig {
            node_id,
            listen,
            rest_addr,
            pg_addr: String::new(),
            dir,
            key,
            tls: None,
            bootstrap: false,
            join: None,
            learner: false,
            election_timeout: Duration::from_millis(DEFAULT_ELECTION_TIMEOUT_MS),
            log_kept_after_snapshot: DEFAULT_LOG_KEPT_AFTER_SNAPSHOT,
            snapshot_every_entries: None,
            fault: ApplyFault::default(),
        }
    }
}

/// How long a linearizable read waits for its read index and for this
/// node to apply it before it is refused.
pub const READ_BARRIER_TIMEOUT_MS: u64 = 5000;

/// Election timeout of a node unless configured.
pub const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 1000;

/// Raft entries a node keeps after a snapshot covers them unless
/// configured: a follower up to this far behind catches up from the log.
pub const DEFAULT_LOG_KEPT_AFTER_SNAPSHOT: u64 = 1000;

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts this node over `engine`: opens its Raft log, listens on the
    /// cluster address, installs the write gate, and bootstraps or joins
    /// as configured. Returns once listening (joining goes on in the
    /// background until it succeeds).
    pub async fn start(
        engine: Arc<Engine>,
        config: ClusterConfig,
    ) -> Result<Arc<Node>, ClusterError> {
        let dir = config.dir.clone();
        let io = |source| ClusterError::Io {
            path: dir.clone(),
            source,
        };
        let log = log_store::LogStore::open(&config.dir).map_err(io)?;
        let sm = state_machine::StateMachine::open(Arc::clone(&engine), &config.dir, config.fault)?;
        let fresh = log.is_empty() && !sm.has_snapshot();
        if fresh && engine.log_size() > 0 {
            return Err(ClusterError::NotEmpty {
                events: engine.log_size(),
            });
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ClusterError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local = listener.local_addr().map_err(io)?;
        let member = Member {
            cluster_addr: local.to_string(),
            rest_addr: config.rest_addr.clone(),
            pg_addr: config.pg_addr.clone(),
        };
        let timeout = config.election_timeout.as_millis().max(30) as u64;
        let raft_config = Config {
            cluster_name: "valori".to_owned(),
            heartbeat_interval: timeout / 3,
            election_timeout_min: timeout,
            election_timeout_max: timeout * 2,
            max_payload_entries: u64::from(valori_core::limits::CLUSTER_BATCH_ENTRIES_MAX),
            snapshot_max_chunk_size: u64::from(
                valori_core::limits::CLUSTER_SNAPSHOT_CHUNK_BYTES_MAX,
            ),
            // The Raft log is retired only as far as a durable engine
            // snapshot covers it (the snapshot record is fsynced first).
            snapshot_policy: match config.snapshot_every_entries {
                Some(n) => openraft::SnapshotPolicy::LogsSinceLast(n),
                None => openraft::SnapshotPolicy::Never,
            },
            max_in_snapshot_log_to_keep: config.log_kept_after_snapshot,
            // Each snapshot chunk is written and fsynced before the
            // follower answers; openraft's 200 ms default failed every
            // chunk of a large snapshot, and a follower that never
            // finished catching up campaigned forever.
            install_snapshot_timeout: timeout.saturating_mul(20).max(5_000),
            ..Config::default()
        };
        let raft_config = Arc::new(raft_config.validate().map_err(|e| ClusterError::Raft {
            reason: e.to_string(),
        })?);
        let tls = match &config.tls {
            Some(paths) => Some(tls::Tls::load(paths).map_err(|e| ClusterError::Raft {
                reason: e.to_string(),
            })?),
            None => None,
        };
        let creds = Arc::new(network::Credentials {
            token: network::key_token(&config.key),
            tls,
        });
        let raft = Raft::new(
            config.node_id,
            raft_config,
            network::Network {
                creds: Arc::clone(&creds),
            },
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| ClusterError::Raft {
            reason: e.to_string(),
        })?;
        let (proposals, proposals_rx) = tokio::sync::mpsc::channel(PROPOSALS_QUEUED_MAX);
        let node = Arc::new(Node {
            id: config.node_id,
            member: member.clone(),
            raft,
            engine: Arc::clone(&engine),
            sm,
            creds,
            runtime: tokio::runtime::Handle::current(),
            tasks: std::sync::Mutex::new(Vec::new()),
            peers: std::sync::Mutex::new(BTreeMap::new()),
            membership_change: tokio::sync::Mutex::new(()),
            proposals,
        });
        node.tasks_push(tokio::spawn(propose_loop(node.raft.clone(), proposals_rx)));
        engine.set_write_gate(Arc::new(Gate {
            node: Arc::downgrade(&node),
        }));
        let server = tokio::spawn(network::serve(listener, Arc::clone(&node)));
        node.tasks_push(server);
        let initialized = node
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft {
                reason: e.to_string(),
            })?;
        if !initialized && config.bootstrap {
            let members = BTreeMap::from([(config.node_id, member.clone())]);
            node.raft
                .initialize(members)
                .await
                .map_err(|e| ClusterError::Raft {
                    reason: e.to_string(),
                })?;
            tracing::info!(node = config.node_id, "bootstrapped a new cluster");
        }
        if !initialized && let Some(addr) = config.join.clone() {
            let joiner = Arc::clone(&node);
            let voter = !config.learner;
            let task = tokio::spawn(async move { joiner.join_loop(addr, voter).await });
            node.tasks_push(task);
        }
        let checker = Arc::clone(&node);
        let task = tokio::spawn(async move { checker.compare_loop().await });
        node.tasks_push(task);
        Ok(node)
    }

    fn tasks_push(&self, task: tokio::task::JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// The engine this node applies to.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Proposes `event` and waits until it is committed and applied here.
    /// The event shares an entry with the writes queued beside it (see
    /// [`PROPOSALS_IN_FLIGHT_MAX`]); its result is its own.
    pub async fn write(&self, event: Event) -> Result<Receipt, EngineError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let proposal = Proposal {
            event: event.encode(),
            reply,
        };
        if self.proposals.send(proposal).await.is_err() {
            return Err(EngineError::Replication {
                reason: "the node is shutting down".to_owned(),
                outcome_unknown: false,
            });
        }
        answer.await.unwrap_or_else(|_| {
            Err(EngineError::Replication {
                reason: "the proposal ended without an answer".to_owned(),
                outcome_unknown: true,
            })
        })
    }

    /// The read index a linearizable read waits for, as the leader: the
    /// commit index once a majority confirmed this node still leads
    /// (openraft's read index), after this node applied it.
    pub(crate) async fn read_index(&self) -> Result<Option<u64>, network::ReadIndexRefusal> {
        let limit = Duration::from_millis(READ_BARRIER_TIMEOUT_MS);
        let Ok(confirmed) = tokio::time::timeout(limit, self.raft.ensure_linearizable()).await
        else {
            return Err(network::ReadIndexRefusal::Failed(format!(
                "no read index within {limit:?}"
            )));
        };
        match confirmed {
            Ok(read) => Ok(read.map(|l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(network::ReadIndexRefusal::NotLeader(f.leader_node))
            }
            Err(e) => Err(network::ReadIndexRefusal::Failed(e.to_string())),
        }
    }

    /// Waits until this node has applied every entry the cluster committed
    /// before the call: the barrier of a linearizable read. The leader
    /// confirms its leadership with a majority and waits for its applied
    /// index to reach its commit index (the read index); a follower or
    /// learner asks the leader for that read index over the cluster
    /// address and waits until it has applied it itself. Returns the read
    /// index. Without a leader, or past [`READ_BARRIER_TIMEOUT_MS`], the
    /// read is refused (naming the leader when one is known).
    pub async fn read_barrier(&self) -> Result<Option<u64>, EngineError> {
        let limit = Duration::from_millis(READ_BARRIER_TIMEOUT_MS);
        let failed = |reason: String| EngineError::Replication {
            reason: format!("a linearizable read could not be confirmed: {reason}"),
            outcome_unknown: false,
        };
        let ask = async {
            match self.raft.get_read_log_id().await {
                Ok((read, _)) => Ok(read.map(|l| l.index)),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    let (Some(id), Some(leader)) = (f.leader_id, f.leader_node) else {
                        return Err(not_leader(None));
                    };
                    match self
                        .call(id, &leader.cluster_addr, &network::Rpc::ReadIndex)
                        .await
                    {
                        Ok(network::Reply::ReadIndex(Ok(index))) => Ok(index),
                        Ok(network::Reply::ReadIndex(Err(
                            network::ReadIndexRefusal::NotLeader(other),
                        ))) => Err(not_leader(other)),
                        Ok(network::Reply::ReadIndex(Err(network::ReadIndexRefusal::Failed(
                            reason,
                        )))) => Err(failed(format!("the leader at {leader}: {reason}"))),
                        Ok(other) => {
                            Err(failed(format!("the leader at {leader} answered {other:?}")))
                        }
                        Err(e) => Err(failed(format!("asking the leader at {leader}: {e}"))),
                    }
                }
                Err(e) => Err(failed(e.to_string())),
            }
        };
        let index = tokio::time::timeout(limit, ask)
            .await
            .map_err(|_| failed(format!("no read index within {limit:?}")))??;
        self.raft
            .wait(Some(limit))
            .applied_index_at_least(index, "linearizable read")
            .await
            .map_err(|e| failed(format!("applying up to the read index {index:?}: {e}")))?;
        Ok(index)
    }

    /// This node's view of itself and the cluster.
    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let applied = self
            .sm
            .shared
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // A Raft core stopped by a fatal error keeps its last metrics
        // (`leader`, say) but takes no further part in the cluster.
        let role = match m.state {
            _ if m.running_state.is_err() => "shutdown",
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Follower => "follower",
            ServerState::Shutdown => "shutdown",
        };
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        let leader_node = m.current_leader.and_then(|l| membership.get_node(&l));
        let leader_rest_addr = leader_node.map(|n| n.rest_addr.clone());
        let leader_cluster_addr = leader_node.map(|n| n.cluster_addr.clone());
        let leader_pg_addr = leader_node.and_then(Member::pg);
        let applied_index = applied.last_applied.map(|l| l.index);
        let mut follower_lag = BTreeMap::new();
        let commit_index = if m.state == ServerState::Leader {
            let last = m.last_log_index.unwrap_or(0);
            if let Some(repl) = &m.replication {
                for (id, matched) in repl.iter() {
                    if *id != self.id {
                        follower_lag
                            .insert(*id, last.saturating_sub(matched.map_or(0, |l| l.index)));
                    }
                }
            }
            // The leader applies in commit order right after committing;
            // its applied index trails its commit index by the entries in
            // flight.
            m.last_applied.map(|l| l.index)
        } else {
            m.last_applied.map(|l| l.index)
        };
        NodeStatus {
            node_id: self.id,
            member: self.member.clone(),
            role: role.to_owned(),
            term: m.current_term,
            leader: m.current_leader,
            leader_rest_addr,
            leader_cluster_addr,
            leader_pg_addr,
            commit_index,
            applied_index,
            last_log_index: m.last_log_index,
            lag: m
                .last_log_index
                .unwrap_or(0)
                .saturating_sub(applied_index.unwrap_or(0)),
            follower_lag,
            events: applied.events,
            state_hash: applied.state_hash.map(|h| h.to_string()),
            log_root: applied.log_root.map(|h| h.to_string()),
            voters,
            learners,
            checkpoints: applied.checkpoints,
            diverged: self.engine.fenced().map(|e| e.to_string()),
            snapshots_installed: applied.snapshots_installed,
        }
    }

    /// Adds `id` as a learner and waits for it to catch up; with `voter`,
    /// then makes it a voter (openraft's joint consensus). Only the leader
    /// admits.
    /// Admitting a node that is already a member as asked (same
    /// addresses; a voter when `voter`) changes nothing: a joining node
    /// whose answer was lost asks again.
    pub async fn admit(&self, id: NodeId, member: Member, voter: bool) -> Result<(), EngineError> {
        let _one_change = self.membership_change.lock().await;
        let (known, is_voter) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            (
                membership.get_node(&id).cloned(),
                membership.voter_ids().any(|v| v == id),
            )
        };
        if known.as_ref() == Some(&member) && (is_voter || !voter) {
            tracing::info!(node = id, voter, "already a member as asked");
            return Ok(());
        }
        if known.as_ref().is_some_and(|k| *k != member) {
            // A member that comes back at other addresses (restarted with
            // a wiped data directory on port 0): openraft's add_learner
            // keeps a known node's old addresses, so they are replaced
            // first, and replication follows the new ones.
            self.raft
                .change_membership(
                    ChangeMembers::SetNodes(BTreeMap::from([(id, member.clone())])),
                    true,
                )
                .await
                .map_err(membership_error)?;
            tracing::info!(node = id, %member, "a member rejoined at new addresses");
        }
        self.raft
            .add_learner(id, member, true)
            .await
            .map_err(membership_error)?;
        if voter && !is_voter {
            self.add_voter(id).await?;
        }
        tracing::info!(node = id, voter, "admitted a node");
        Ok(())
    }

    /// The current membership, which must know node `id`, on the leader.
    /// A follower refuses first, naming the leader: its view of the
    /// membership may trail the leader's, and only the leader changes it.
    fn membership_with(&self, id: NodeId) -> Result<Membership<NodeId, Member>, EngineError> {
        let (membership, state, leader) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            (
                metrics.membership_config.membership().clone(),
                metrics.state,
                metrics.current_leader,
            )
        };
        if state != ServerState::Leader {
            return Err(not_leader(
                leader.and_then(|l| membership.get_node(&l).cloned()),
            ));
        }
        if membership.get_node(&id).is_none() {
            return Err(EngineError::UnknownNode {
                node: id,
                members: membership.nodes().map(|(id, _)| *id).collect(),
            });
        }
        Ok(membership)
    }

    /// Makes the learner `id` a voter (joint consensus). Only the leader
    /// changes the membership.
    pub async fn promote(&self, id: NodeId) -> Result<(), EngineError> {
        let _one_change = self.membership_change.lock().await;
        self.add_voter(id).await
    }

    /// [`Node::promote`], with the membership change lock held.
    async fn add_voter(&self, id: NodeId) -> Result<(), EngineError> {
        self.membership_with(id)?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
        tracing::info!(node = id, "promoted a learner to voter");
        Ok(())
    }

    /// Removes node `id` from the cluster: a voter is first demoted (joint
    /// consensus), then the node is forgotten. Only the leader changes the
    /// membership.
    pub async fn remove(&self, id: NodeId) -> Result<(), EngineError> {
        let _one_change = self.membership_change.lock().await;
        let membership = self.membership_with(id)?;
        if membership.voter_ids().any(|v| v == id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
        }
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
        tracing::info!(node = id, "removed a node");
        Ok(())
    }

    async fn call(
        &self,
        id: NodeId,
        addr: &str,
        rpc: &network::Rpc,
    ) -> Result<network::Reply, network::CallError> {
        let conn = {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(peers.entry(id).or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(network::Conn::new(
                    addr.to_owned(),
                    Arc::clone(&self.creds),
                )))
            }))
        };
        let mut conn = conn.lock().await;
        if conn.addr() != addr {
            // The node came back at another address (a restart on port 0).
            *conn = network::Conn::new(addr.to_owned(), Arc::clone(&self.creds));
        }
        conn.call(rpc, Duration::from_secs(2)).await
    }

    /// Asks the node at `addr` to admit this one until it does; follows the
    /// leader when `addr` is not it.
    async fn join_loop(self: Arc<Self>, addr: String, voter: bool) {
        let mut target = addr;
        loop {
            let mut conn = network::Conn::new(target.clone(), Arc::clone(&self.creds));
            let rpc = network::Rpc::Join {
                id: self.id,
                member: self.member.clone(),
                voter,
            };
            match conn.call(&rpc, Duration::from_secs(60)).await {
                Ok(network::Reply::Join(Ok(()))) => {
                    tracing::info!(through = %target, "joined the cluster");
                    return;
                }
                Ok(network::Reply::Join(Err(reason))) => {
                    tracing::info!(through = %target, "join refused, retrying: {reason}");
                    // Follow the leader, if the node asked knows it.
                    if let Ok(network::Reply::Status(s)) = conn
                        .call(&network::Rpc::Status, Duration::from_secs(2))
                        .await
                        && let Some(leader) = s.leader_cluster_addr
                        && s.leader != Some(s.node_id)
                    {
                        target = leader;
                    }
                }
                Ok(other) => {
                    tracing::warn!(through = %target, "unexpected answer to a join: {other:?}")
                }
                Err(e) => tracing::info!("join through {target} failed, retrying: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every few heartbeats, asks the other voters for their checkpoints
    /// and compares those at the same Raft index with this node's own.
    /// When the others agree among themselves (a majority with this node
    /// outside it) and differ from this node, this node is the diverged
    /// one: it fences its engine (no reads, no writes) and says so. When
    /// one other node differs, it is reported.
    async fn compare_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if self.engine.fenced().is_some() {
                continue;
            }
            let status = self.status();
            let own: BTreeMap<u64, Checkpoint> = status
                .checkpoints
                .iter()
                .map(|c| (c.index, c.clone()))
                .collect();
            if own.is_empty() {
                continue;
            }
            let membership = self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .clone();
            let others: Vec<(NodeId, String)> = membership
                .voter_ids()
                .filter(|id| *id != self.id)
                .filter_map(|id| {
                    membership
                        .get_node(&id)
                        .map(|m| (id, m.cluster_addr.clone()))
                })
                .collect();
            let mut theirs: Vec<(NodeId, BTreeMap<u64, Checkpoint>)> = Vec::new();
            for (id, addr) in others {
                if let Ok(network::Reply::Status(s)) =
                    self.call(id, &addr, &network::Rpc::Status).await
                {
                    theirs.push((
                        id,
                        s.checkpoints.into_iter().map(|c| (c.index, c)).collect(),
                    ));
                }
            }
            for (index, mine) in own.iter().rev() {
                let at: Vec<(NodeId, &Checkpoint)> = theirs
                    .iter()
                    .filter_map(|(id, cps)| cps.get(index).map(|c| (*id, c)))
                    .collect();
                if at.is_empty() {
                    continue;
                }
                let differing: Vec<NodeId> = at
                    .iter()
                    .filter(|(_, c)| *c != mine)
                    .map(|(id, _)| *id)
                    .collect();
                if differing.is_empty() {
                    break;
                }
                let voters = membership.voter_ids().count();
                let others_agree = at.windows(2).all(|w| w[0].1 == w[1].1);
                if differing.len() == at.len() && others_agree && at.len() * 2 > voters {
                    let cluster = &at[0].1;
                    let reason = EngineError::Diverged {
                        index: *index,
                        local: valori_core::hash::Hash32::from_hex(&mine.state_hash)
                            .unwrap_or(valori_core::hash::Hash32([0; 32])),
                        cluster: valori_core::hash::Hash32::from_hex(&cluster.state_hash)
                            .unwrap_or(valori_core::hash::Hash32([0; 32])),
                    };
                    tracing::error!(index, local = %mine.state_hash, cluster = %cluster.state_hash, "this replica diverged from the cluster; it stops serving");
                    self.engine.fence(reason);
                } else {
                    for id in differing {
                        tracing::error!(
                            index,
                            node = id,
                            "node {id} differs from this node at Raft index {index}"
                        );
                    }
                }
                break;
            }
        }
    }

    /// Builds a snapshot (the engine's snapshot file at the applied index)
    /// and lets openraft retire the Raft log it covers.
    pub async fn snapshot(&self) -> Result<(), ClusterError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ClusterError::Raft {
                reason: e.to_string(),
            })
    }

    /// Stops Raft and the cluster listener. The engine stays open.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}
