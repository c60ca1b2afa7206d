//! Clusters of three nodes in one process, each with its own engine and
//! data directory, talking over TCP on 127.0.0.1 ports they pick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use valori_cluster::{ApplyFault, ClusterConfig, Node, NodeStatus};
use valori_core::Metric;
use valori_core::event::{CollectionConfig, Event, IndexParams};
use valori_core::state::State;
use valori_engine::stress::{DIM, batch, collection};
use valori_engine::{Engine, EngineError, Receipt};

const KEY: &str = "test cluster key";

struct TestNode {
    node: Arc<Node>,
    engine: Arc<Engine>,
    dir: TempDir,
}

fn config(id: u64, dir: &TempDir) -> ClusterConfig {
    let mut c = ClusterConfig::new(
        id,
        "127.0.0.1:0".parse().expect("invariant: a literal address"),
        format!("rest-of-node-{id}"),
        dir.path().join("cluster"),
        KEY.to_owned(),
    );
    c.election_timeout = Duration::from_millis(300);
    c
}

async fn start(mut c: ClusterConfig, dir: TempDir) -> TestNode {
    let engine = {
        let path = dir.path().join("data");
        Arc::new(
            tokio::task::spawn_blocking(move || Engine::open(path))
                .await
                .expect("open task")
                .expect("engine opens"),
        )
    };
    c.dir = dir.path().join("cluster");
    let node = Node::start(Arc::clone(&engine), c)
        .await
        .expect("node starts");
    TestNode { node, engine, dir }
}

/// Starts node 1 (bootstrapping) and nodes 2 and 3 (joining through it),
/// with `faults[i]` applied to node i+1, and waits for three voters.
async fn three_nodes(faults: [ApplyFault; 3]) -> Vec<TestNode> {
    three_nodes_with(faults, |_| {}).await
}

async fn three_nodes_with(
    faults: [ApplyFault; 3],
    tweak: impl Fn(&mut ClusterConfig),
) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    let d1 = TempDir::new().expect("tempdir");
    let mut c1 = config(1, &d1);
    tweak(&mut c1);
    c1.bootstrap = true;
    c1.fault = faults[0];
    nodes.push(start(c1, d1).await);
    let seed = nodes[0].node.member.cluster_addr.clone();
    for id in 2..=3u64 {
        let d = TempDir::new().expect("tempdir");
        let mut c = config(id, &d);
        c.join = Some(seed.clone());
        c.fault = faults[(id - 1) as usize];
        tweak(&mut c);
        nodes.push(start(c, d).await);
    }
    wait_for(Duration::from_secs(30), "three voters", || {
        let s = nodes[0].node.status();
        s.voters.len() == 3
    })
    .await;
    nodes
}

async fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leader(nodes: &[TestNode]) -> Option<usize> {
    nodes.iter().position(|n| n.node.status().role == "leader")
}

async fn submit(engine: &Arc<Engine>, event: Event) -> Result<Receipt, EngineError> {
    let engine = Arc::clone(engine);
    tokio::task::spawn_blocking(move || engine.submit(event))
        .await
        .expect("submit task")
}

fn create() -> Event {
    Event::CreateCollection {
        name: collection(),
        config: CollectionConfig {
            dim: DIM,
            metric: Metric::L2,
            index: IndexParams::default(),
        },
    }
}

fn insert(b: u64) -> Event {
    Event::InsertBatch {
        collection: collection(),
        batch: batch(b, 5),
    }
}

/// The state hash of applying `events` in order to an empty state: a
/// reference computed without the engine or the cluster.
fn reference_hash(events: &[Event]) -> String {
    let mut state = State::default();
    for e in events {
        state.apply(e).expect("reference apply");
    }
    state.state_hash().to_string()
}

/// Waits until every listed node has applied `index` and returns their
/// statuses.
async fn applied_everywhere(nodes: &[&TestNode], index: u64) -> Vec<NodeStatus> {
    wait_for(Duration::from_secs(30), "every node to apply", || {
        nodes
            .iter()
            .all(|n| n.node.status().applied_index.is_some_and(|a| a >= index))
    })
    .await;
    nodes.iter().map(|n| n.node.status()).collect()
}

/// The root `engine`'s log had at `size` events (as its inclusion proofs
/// give it).
fn root_at(engine: &Engine, size: u64) -> valori_core::hash::Hash32 {
    engine
        .inclusion_proof(0, Some(size))
        .expect("a root at that size")
        .root
}

/// Consistency proofs between the log sizes `pairs` that `prover` gives
/// verify (RFC 9162) against the roots `witness` reports at those sizes,
/// another replica's roots. The control, so that a verification that
/// accepts anything fails: each proof is refused against the witness's
/// root one event short of the new size.
fn assert_consistent_across(prover: &TestNode, witness: &TestNode, pairs: &[(u64, u64)]) {
    use valori_core::merkle::verify_consistency;
    for &(old, new) in pairs {
        assert!(
            old + 1 < new,
            "the control needs a root between {old} and {new}"
        );
        let proof = prover
            .engine
            .consistency_proof(old, new)
            .expect("a consistency proof");
        let (old_root, new_root) = (root_at(&witness.engine, old), root_at(&witness.engine, new));
        assert!(
            verify_consistency(old, new, &old_root, &new_root, &proof.path),
            "node {}'s proof {old}..{new} against node {}'s roots",
            prover.node.id,
            witness.node.id
        );
        let short = root_at(&witness.engine, new - 1);
        assert!(
            !verify_consistency(old, new, &old_root, &short, &proof.path),
            "node {}'s proof {old}..{new} verifies against the root at {}",
            prover.node.id,
            new - 1
        );
    }
}

async fn stop(nodes: Vec<TestNode>) {
    for n in nodes {
        n.node.shutdown().await;
    }
}

/// Writes on the leader reach every node: all three apply the same events
/// in the same order and report the same event count, state hash and log
/// root at the same Raft index, equal to a reference state built from the
/// acknowledged events alone; an inclusion proof from a follower matches
/// the leader's, and consistency proofs from each follower verify against
/// the leader's roots and the leader's against each follower's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_reach_the_same_state_at_the_same_index() {
    let nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    let mut acked = vec![create()];
    submit(&nodes[l].engine, create()).await.expect("create");
    for b in 0..30 {
        let r = submit(&nodes[l].engine, insert(b)).await.expect("insert");
        assert_eq!(r.seq, b + 1, "events are numbered in log order");
        acked.push(insert(b));
    }
    let index = nodes[l].node.status().applied_index.expect("applied");
    let all: Vec<&TestNode> = nodes.iter().collect();
    let statuses = applied_everywhere(&all, index).await;
    let expected = reference_hash(&acked);
    for s in &statuses {
        assert_eq!(s.applied_index, Some(index), "node {}", s.node_id);
        assert_eq!(s.events, acked.len() as u64, "node {}", s.node_id);
        assert_eq!(
            s.state_hash.as_deref(),
            Some(expected.as_str()),
            "node {}",
            s.node_id
        );
        assert_eq!(s.log_root, statuses[0].log_root, "node {}", s.node_id);
    }
    let f = (l + 1) % 3;
    let on_leader = nodes[l].engine.inclusion_proof(7, None).expect("proof");
    let on_follower = nodes[f].engine.inclusion_proof(7, None).expect("proof");
    assert_eq!(on_leader, on_follower);
    let size = acked.len() as u64;
    let pairs = [(1, size), (7, size), (8, 16), (13, size - 5)];
    for f in (0..3).filter(|&f| f != l) {
        assert_consistent_across(&nodes[f], &nodes[l], &pairs);
        assert_consistent_across(&nodes[l], &nodes[f], &pairs);
    }
    stop(nodes).await;
}

/// Writes sent at once on the leader share Raft entries (fewer entries
/// than writes) and each is answered with its own event's result: one
/// write that the state refuses (its collection does not exist) is
/// refused alone, every other is acknowledged with its own sequence
/// number, and every node ends with the state of the acknowledged events
/// applied in sequence order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_entries_and_keep_their_own_results() {
    const WRITERS: u64 = 32;
    const EACH: u64 = 8;
    let nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    submit(&nodes[l].engine, create()).await.expect("create");
    let before = nodes[l].node.status().applied_index.expect("applied");
    let refused = Event::InsertBatch {
        collection: valori_core::event::CollectionName::new("absent")
            .expect("invariant: a valid literal name"),
        batch: batch(9_999, 5),
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let engine = Arc::clone(&nodes[l].engine);
            let refused = refused.clone();
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let event = if w == 0 && i == 3 {
                            refused.clone()
                        } else {
                            insert(w * EACH + i)
                        };
                        (event.clone(), engine.submit(event))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    for w in writers {
        for (event, result) in w.join().expect("writer thread") {
            match result {
                Ok(receipt) => acked.push((receipt.seq, event)),
                Err(e) => errors.push((event, e)),
            }
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, refused);
    assert!(errors[0].1.is_user_error(), "{:?}", errors[0].1);
    acked.sort_by_key(|(seq, _)| *seq);
    let seqs: Vec<u64> = acked.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=WRITERS * EACH - 1).collect::<Vec<_>>());
    let index = nodes[l].node.status().applied_index.expect("applied");
    assert!(
        index - before < WRITERS * EACH,
        "{} writes took {} entries",
        WRITERS * EACH,
        index - before
    );
    let all: Vec<&TestNode> = nodes.iter().collect();
    let statuses = applied_everywhere(&all, index).await;
    let events: Vec<Event> = std::iter::once(create())
        .chain(acked.into_iter().map(|(_, e)| e))
        .collect();
    let expected = reference_hash(&events);
    for s in &statuses {
        assert_eq!(s.events, events.len() as u64, "node {}", s.node_id);
        assert_eq!(
            s.state_hash.as_deref(),
            Some(expected.as_str()),
            "node {}",
            s.node_id
        );
        assert_eq!(s.log_root, statuses[0].log_root, "node {}", s.node_id);
    }
    stop(nodes).await;
}

/// A write sent to a follower is refused, naming the leader's REST
/// address, and changes nothing anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_on_a_follower_names_the_leader() {
    let nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    submit(&nodes[l].engine, create()).await.expect("create");
    let f = (l + 1) % 3;
    let index = nodes[l].node.status().applied_index.expect("applied");
    applied_everywhere(&[&nodes[f]], index).await;
    let before = nodes[f].engine.proof().expect("proof");
    let err = submit(&nodes[f].engine, insert(0))
        .await
        .expect_err("refused");
    let leader_rest = nodes[l].node.member.rest_addr.clone();
    match &err {
        EngineError::NotLeader { leader, .. } => {
            assert_eq!(leader.as_deref(), Some(leader_rest.as_str()))
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert!(err.to_string().contains(&leader_rest), "{err}");
    assert_eq!(nodes[f].engine.proof().expect("proof"), before);
    stop(nodes).await;
}

/// A follower that is stopped and restarted on the same directories
/// catches up from the Raft log without applying anything twice: its event
/// count and state hash equal the leader's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_follower_catches_up_without_applying_twice() {
    let mut nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    let mut acked = vec![create()];
    submit(&nodes[l].engine, create()).await.expect("create");
    for b in 0..10 {
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
        acked.push(insert(b));
    }
    // Applying these twice would change the log: after the drop, the
    // inserts above would be accepted again.
    let drop_it = Event::DropCollection { name: collection() };
    submit(&nodes[l].engine, drop_it.clone())
        .await
        .expect("drop");
    submit(&nodes[l].engine, create())
        .await
        .expect("create again");
    acked.extend([drop_it, create()]);
    let f = (l + 1) % 3;
    let index = nodes[l].node.status().applied_index.expect("applied");
    applied_everywhere(&[&nodes[f]], index).await;
    let stopped = nodes.remove(f);
    stopped.node.shutdown().await;
    let id = stopped.node.id;
    let addr = stopped.node.member.cluster_addr.clone();
    let dir = stopped.dir;
    drop(stopped.node);
    // The node's tasks end after shutdown; the engine (and its directory
    // lock) closes with the last of them.
    let engine = stopped.engine;
    wait_for(
        Duration::from_secs(10),
        "the stopped node to release its engine",
        || Arc::strong_count(&engine) == 1,
    )
    .await;
    drop(engine);
    let l = leader(&nodes).expect("a leader");
    for b in 10..20 {
        submit(&nodes[l].engine, insert(b))
            .await
            .expect("insert with one node down");
        acked.push(insert(b));
    }
    // The cluster knows the node by its address: it comes back on it.
    let mut c = config(id, &dir);
    c.listen = addr.parse().expect("a socket address");
    let restarted = start(c, dir).await;
    nodes.push(restarted);
    let index = nodes[l].node.status().applied_index.expect("applied");
    let all: Vec<&TestNode> = nodes.iter().collect();
    let statuses = applied_everywhere(&all, index).await;
    let expected = reference_hash(&acked);
    for s in &statuses {
        assert_eq!(s.events, acked.len() as u64, "node {}", s.node_id);
        assert_eq!(
            s.state_hash.as_deref(),
            Some(expected.as_str()),
            "node {}",
            s.node_id
        );
    }
    stop(nodes).await;
}

/// A replica whose apply is corrupted (it drops one event) is caught at
/// the next checkpoint: it fences itself and refuses reads with the
/// divergence, while the two correct nodes keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_diverged_replica_is_caught_and_stops_serving_reads() {
    let faults = [
        ApplyFault::default(),
        ApplyFault::default(),
        ApplyFault {
            drop_entry_at: Some(20),
            ..ApplyFault::default()
        },
    ];
    let nodes = three_nodes(faults).await;
    // Node 3 must not lead: a leader's own apply answers its clients.
    wait_for(
        Duration::from_secs(30),
        "a leader other than node 3",
        || leader(&nodes).is_some_and(|l| l != 2),
    )
    .await;
    let l = leader(&nodes).expect("a leader");
    submit(&nodes[l].engine, create()).await.expect("create");
    let mut b = 0;
    while nodes[l].node.status().applied_index.unwrap_or(0)
        < valori_cluster::CHECKPOINT_EVERY_ENTRIES + 1
    {
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
        b += 1;
    }
    wait_for(
        Duration::from_secs(30),
        "node 3 to find itself diverged",
        || nodes[2].node.status().diverged.is_some(),
    )
    .await;
    match nodes[2]
        .engine
        .read(|s| s.collections_pending_index().len())
    {
        Err(EngineError::Diverged { index, .. }) => {
            assert_eq!(index % valori_cluster::CHECKPOINT_EVERY_ENTRIES, 0)
        }
        other => panic!("a diverged replica must refuse reads, got {other:?}"),
    }
    for n in &nodes[..2] {
        assert!(n.node.status().diverged.is_none(), "node {}", n.node.id);
        n.engine.read(|_| ()).expect("correct replicas serve reads");
    }
    stop(nodes).await;
}

/// A node that joins after the leader retired its Raft log behind a
/// snapshot catches up from the snapshot: its engine installs the
/// leader's snapshot file (checked against the state hash and log root it
/// claims), then the entries after it, and ends with the same event count,
/// state hash and log root; inclusion proofs of events that it never
/// received one by one match the leader's, and consistency proofs from a
/// size inside its snapshot to one after it verify against the leader's
/// roots (and the leader's against its roots).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_catches_up_from_a_snapshot() {
    let mut nodes = three_nodes_with([ApplyFault::default(); 3], |c| {
        c.log_kept_after_snapshot = 0
    })
    .await;
    let l = leader(&nodes).expect("a leader");
    let mut acked = vec![create()];
    submit(&nodes[l].engine, create()).await.expect("create");
    for b in 0..20 {
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
        acked.push(insert(b));
    }
    nodes[l].node.snapshot().await.expect("snapshot");
    let leader_raft = nodes[l].node.raft.clone();
    wait_for(
        Duration::from_secs(30),
        "the leader to retire its log",
        || leader_raft.metrics().borrow().purged.is_some(),
    )
    .await;
    for b in 20..25 {
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
        acked.push(insert(b));
    }
    let d = TempDir::new().expect("tempdir");
    let mut c = config(4, &d);
    c.join = Some(nodes[l].node.member.cluster_addr.clone());
    c.log_kept_after_snapshot = 0;
    nodes.push(start(c, d).await);
    wait_for(Duration::from_secs(30), "four voters", || {
        nodes[l].node.status().voters.len() == 4
    })
    .await;
    let index = nodes[l].node.status().applied_index.expect("applied");
    let all: Vec<&TestNode> = nodes.iter().collect();
    let statuses = applied_everywhere(&all, index).await;
    let expected = reference_hash(&acked);
    for s in &statuses {
        assert_eq!(s.events, acked.len() as u64, "node {}", s.node_id);
        assert_eq!(
            s.state_hash.as_deref(),
            Some(expected.as_str()),
            "node {}",
            s.node_id
        );
        assert_eq!(s.log_root, statuses[0].log_root, "node {}", s.node_id);
    }
    assert!(
        nodes[3].engine.snapshots().expect("snapshots").len() == 1,
        "the new node installed a snapshot"
    );
    let on_leader = nodes[l].engine.inclusion_proof(3, None).expect("proof");
    let on_new = nodes[3].engine.inclusion_proof(3, None).expect("proof");
    assert_eq!(on_leader, on_new);
    let size = acked.len() as u64;
    let pairs = [(3, size), (1, 21), (10, size - 2)];
    assert_consistent_across(&nodes[3], &nodes[l], &pairs);
    assert_consistent_across(&nodes[l], &nodes[3], &pairs);
    stop(nodes).await;
}

/// A linearizable read on a follower that trails the commit index (its
/// apply is slowed) sees every write acknowledged before it: the read
/// barrier gets the leader's read index and waits until the follower has
/// applied it, while a default read on the same follower at that moment
/// still answers from its older applied state. On the leader the barrier
/// returns a read index it has already applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_linearizable_read_on_a_trailing_follower_sees_every_acknowledged_write() {
    let slow = ApplyFault {
        apply_delay: Some(Duration::from_millis(1200)),
        ..ApplyFault::default()
    };
    let nodes = three_nodes([ApplyFault::default(), ApplyFault::default(), slow]).await;
    let l = leader(&nodes).expect("a leader");
    assert_ne!(l, 2, "the slowed node must not lead for this test");
    submit(&nodes[l].engine, create()).await.expect("create");
    let index = nodes[l].node.status().applied_index.expect("applied");
    applied_everywhere(&[&nodes[2]], index).await;
    for b in 0..3 {
        let before = nodes[2].engine.log_size();
        let receipt = submit(&nodes[l].engine, insert(b)).await.expect("insert");
        let acked = receipt.seq + 1;
        // Acknowledged by the leader and the other follower; the slowed
        // follower has not applied it yet.
        assert_eq!(
            nodes[2].engine.log_size(),
            before,
            "the slowed follower already applied write {b}: the test proves nothing"
        );
        let read_index = nodes[2]
            .engine
            .read_barrier()
            .await
            .map(|()| nodes[2].node.status().applied_index)
            .expect("a linearizable read on the follower");
        assert!(
            nodes[2].engine.log_size() >= acked,
            "after the barrier the follower has {} events, the acknowledged write is event {acked}",
            nodes[2].engine.log_size()
        );
        let leader_applied = nodes[l].node.status().applied_index;
        assert!(
            read_index >= leader_applied,
            "{read_index:?} < {leader_applied:?}"
        );
    }
    let on_leader = nodes[l].node.read_barrier().await.expect("leader barrier");
    assert!(
        on_leader <= nodes[l].node.status().applied_index,
        "the leader's read index {on_leader:?} is applied"
    );
    assert_eq!(
        nodes[2].engine.proof().expect("proof"),
        nodes[l].engine.proof().expect("proof")
    );
    stop(nodes).await;
}

/// A follower whose data directory is wiped (engine and Raft log) and that
/// rejoins under the same id, at a new cluster address, is brought back by
/// the leader from the log: it ends with the leader's event count, state
/// hash and log root, equal to a reference built from the acknowledged
/// events alone, including those written while it was gone. The leader
/// keeps leading through the rejoin (its Raft does not stop at the node's
/// log being shorter than it last matched): a write after the rejoin is
/// acknowledged by it and applied on all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_rejoins_under_its_id_and_converges() {
    let mut nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    let mut acked = vec![create()];
    submit(&nodes[l].engine, create()).await.expect("create");
    for b in 0..10 {
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
        acked.push(insert(b));
    }
    let f = (l + 1) % 3;
    let index = nodes[l].node.status().applied_index.expect("applied");
    applied_everywhere(&[&nodes[f]], index).await;
    let gone = nodes.remove(f);
    let id = gone.node.id;
    let old_addr = gone.node.member.cluster_addr.clone();
    gone.node.shutdown().await;
    let TestNode { node, engine, dir } = gone;
    drop(node);
    drop(engine);
    std::fs::remove_dir_all(dir.path()).expect("wipe");
    std::fs::create_dir_all(dir.path()).expect("recreate");
    let l = leader(&nodes).expect("a leader");
    for b in 10..15 {
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
        acked.push(insert(b));
    }
    let mut c = config(id, &dir);
    c.join = Some(nodes[l].node.member.cluster_addr.clone());
    let back = start(c, dir).await;
    assert_ne!(back.node.member.cluster_addr, old_addr);
    nodes.push(back);
    let new_addr = nodes[2].node.member.cluster_addr.clone();
    wait_for(
        Duration::from_secs(30),
        "the new address in the membership",
        || {
            let s = nodes[l]
                .node
                .raft
                .metrics()
                .borrow()
                .membership_config
                .clone();
            s.membership()
                .get_node(&id)
                .is_some_and(|m| m.cluster_addr == new_addr)
        },
    )
    .await;
    let term = nodes[l].node.status().term;
    submit(&nodes[l].engine, insert(15))
        .await
        .expect("the leader acknowledges a write after the rejoin");
    acked.push(insert(15));
    let index = nodes[l].node.status().applied_index.expect("applied");
    let all: Vec<&TestNode> = nodes.iter().collect();
    let statuses = applied_everywhere(&all, index).await;
    let expected = reference_hash(&acked);
    let s = nodes[l].node.status();
    assert_eq!((s.role.as_str(), s.term), ("leader", term), "{s:?}");
    for s in &statuses {
        assert_eq!(s.voters.len(), 3, "node {}", s.node_id);
        assert_eq!(s.events, acked.len() as u64, "node {}", s.node_id);
        assert_eq!(
            s.state_hash.as_deref(),
            Some(expected.as_str()),
            "node {}",
            s.node_id
        );
        assert_eq!(s.log_root, statuses[0].log_root, "node {}", s.node_id);
    }
    stop(nodes).await;
}

/// A follower restarted on its directories applies again, from the Raft
/// log, entries its engine already holds; a checkpoint index it passes
/// while doing so must not be recorded with the engine's later state. Its
/// checkpoints equal the leader's at every common index (one taken after
/// the restart included), and it is never fenced as diverged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_follower_replaying_past_a_checkpoint_is_not_taken_for_diverged() {
    let mut nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    submit(&nodes[l].engine, create()).await.expect("create");
    let every = valori_cluster::CHECKPOINT_EVERY_ENTRIES;
    while nodes[l].node.status().applied_index.expect("applied") < every + 10 {
        let b = nodes[l].engine.log_size();
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
    }
    let f = (l + 1) % 3;
    let index = nodes[l].node.status().applied_index.expect("applied");
    applied_everywhere(&[&nodes[f]], index).await;
    let stopped = nodes.remove(f);
    stopped.node.shutdown().await;
    let id = stopped.node.id;
    let addr = stopped.node.member.cluster_addr.clone();
    let dir = stopped.dir;
    drop(stopped.node);
    let engine = stopped.engine;
    wait_for(
        Duration::from_secs(10),
        "the stopped node to release its engine",
        || Arc::strong_count(&engine) == 1,
    )
    .await;
    drop(engine);
    let mut c = config(id, &dir);
    c.listen = addr.parse().expect("a socket address");
    nodes.push(start(c, dir).await);
    let l = leader(&nodes).expect("a leader");
    while nodes[l].node.status().applied_index.expect("applied") < 2 * every + 5 {
        let b = nodes[l].engine.log_size();
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
    }
    let index = nodes[l].node.status().applied_index.expect("applied");
    let all: Vec<&TestNode> = nodes.iter().collect();
    applied_everywhere(&all, index).await;
    // Several rounds of the nodes' checkpoint comparison.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let leader_status = nodes[l].node.status();
    let restarted = nodes[2].node.status();
    assert!(
        restarted.diverged.is_none(),
        "the restarted node was fenced: {:?}",
        restarted.diverged
    );
    let mut common = 0;
    for mine in &restarted.checkpoints {
        if let Some(theirs) = leader_status
            .checkpoints
            .iter()
            .find(|c| c.index == mine.index)
        {
            assert_eq!(mine, theirs, "checkpoint at Raft index {}", mine.index);
            common += 1;
        }
    }
    assert!(
        restarted.checkpoints.iter().any(|c| c.index == 2 * every),
        "a checkpoint after the restart: {:?}",
        restarted.checkpoints
    );
    assert!(common > 0);
    stop(nodes).await;
}

/// A linearizable read on a follower is not held up by another node that
/// accepts connections but never answers: the follower's calls to each
/// node wait on their own connection, so the read index it asks of the
/// leader comes back while its checkpoint comparison waits on the silent
/// node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_node_does_not_hold_up_a_followers_linearizable_reads() {
    let mut nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    submit(&nodes[l].engine, create()).await.expect("create");
    let silent = (l + 2) % 3;
    let reader = (l + 1) % 3;
    let gone = nodes.remove(silent);
    let addr = gone.node.member.cluster_addr.clone();
    gone.node.shutdown().await;
    // Accepts connections on the silent node's address and never answers.
    let started = Instant::now();
    let listener = loop {
        match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => break l,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the silent node's address stays in use: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let hole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let reader = if reader > silent { reader - 1 } else { reader };
    let l = if l > silent { l - 1 } else { l };
    // Let the reader's checkpoint comparison start waiting on the hole.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut slowest = Duration::ZERO;
    for b in 0..12 {
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
        let started = Instant::now();
        nodes[reader]
            .engine
            .read_barrier()
            .await
            .expect("a linearizable read on the follower");
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        slowest < Duration::from_millis(1000),
        "a linearizable read waited {slowest:?} behind the silent node"
    );
    hole.abort();
    drop(gone);
    stop(nodes).await;
}

/// A join asked again by a node that is already a voter at the same
/// addresses (its first answer lost, or its retry late) changes nothing:
/// no membership entry is written that could race an operator's change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_join_of_a_voter_writes_nothing() {
    let nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    let f = (l + 1) % 3;
    // Three voters show already in the joint configuration; wait for the
    // last join to finish (one configuration, every entry applied).
    wait_for(Duration::from_secs(30), "the last join to finish", || {
        let m = nodes[l].node.raft.metrics().borrow().clone();
        m.membership_config.membership().get_joint_config().len() == 1
            && m.last_applied.map(|a| a.index) == m.last_log_index
    })
    .await;
    let before = nodes[l].node.status();
    let member = nodes[f].node.member.clone();
    nodes[l]
        .node
        .admit(nodes[f].node.id, member, true)
        .await
        .expect("a repeated join is accepted");
    let after = nodes[l].node.status();
    assert_eq!(after.last_log_index, before.last_log_index);
    assert_eq!(after.voters, before.voters);
    stop(nodes).await;
}

/// Two membership changes asked at once on the leader (here: removing
/// both followers) are made one after the other, not refused because the
/// other is under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_asked_at_once_are_made_in_turn() {
    let nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    let (a, b) = (nodes[(l + 1) % 3].node.id, nodes[(l + 2) % 3].node.id);
    let leader_node = &nodes[l].node;
    let (ra, rb) = tokio::join!(leader_node.remove(a), leader_node.remove(b));
    ra.expect("the first removal");
    rb.expect("the second removal");
    let s = leader_node.status();
    assert_eq!(s.voters, vec![leader_node.id], "{s:?}");
    assert!(s.learners.is_empty(), "{s:?}");
    stop(nodes).await;
}

/// An `ALTER TABLE` event replicates like any other: after a table is
/// created, filled, given a column (with a value for its rows), has a
/// column renamed and is renamed itself, every node reports the state
/// hash of a reference state built from the same events, and a follower
/// holds the table under its new name in its new shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn altered_tables_replicate() {
    use valori_core::event::{Batch, CollectionName, RecordId};
    use valori_core::table::{
        AlterAction, ColumnDef, ColumnType, ColumnValues, ScalarType, TableSchema, column_flags,
    };
    let items = CollectionName::new("items").expect("a valid name");
    let column = |name: &str, ty, type_mod, flags| ColumnDef {
        name: name.to_owned(),
        ty,
        type_mod,
        flags,
        default: None,
        index: None,
        references: None,
    };
    let mut rows = Batch::new(2);
    let mut keys = ColumnValues::default();
    for id in 1..=3i64 {
        rows.push(RecordId(id as u64), &[id as i32, 0], 0, &[]);
        keys.push(Some(&id.to_le_bytes()));
    }
    let events = vec![
        Event::CreateTable {
            name: items.clone(),
            config: CollectionConfig {
                dim: 2,
                metric: Metric::L2,
                index: IndexParams::default(),
            },
            schema: TableSchema {
                uniques: Default::default(),
                columns: vec![
                    column(
                        "id",
                        ColumnType::Scalar(ScalarType::Int64),
                        0,
                        column_flags::PRIMARY_KEY,
                    ),
                    column("embedding", ColumnType::Vector { half: false }, 2, 0),
                ],
            },
        },
        Event::InsertRows {
            collection: items.clone(),
            batch: rows,
            columns: vec![keys],
        },
        Event::AlterTable {
            collection: items.clone(),
            actions: vec![
                AlterAction::AddColumn {
                    column: ColumnDef {
                        default: Some("5".to_owned()),
                        index: None,
                        references: None,
                        ..column("score", ColumnType::Scalar(ScalarType::Int32), 0, 0)
                    },
                    value: Some(5i32.to_le_bytes().to_vec()),
                },
                AlterAction::RenameColumn {
                    from: "embedding".to_owned(),
                    to: "vec_of_item".to_owned(),
                },
                AlterAction::RenameTable {
                    to: CollectionName::new("things").expect("a valid name"),
                },
            ],
        },
    ];
    let nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    for e in &events {
        submit(&nodes[l].engine, e.clone()).await.expect("submit");
    }
    let index = nodes[l].node.status().applied_index.expect("applied");
    let all: Vec<&TestNode> = nodes.iter().collect();
    let expected = reference_hash(&events);
    for s in applied_everywhere(&all, index).await {
        assert_eq!(
            s.state_hash.as_deref(),
            Some(expected.as_str()),
            "node {}",
            s.node_id
        );
    }
    let f = (l + 1) % 3;
    let shape = nodes[f]
        .engine
        .read(|state| {
            let c = state.collection(&CollectionName::new("things").expect("a valid name"))?;
            let t = c.table()?;
            let names: Vec<String> = t.schema().columns.iter().map(|c| c.name.clone()).collect();
            let scores: Vec<Option<Vec<u8>>> = (0..c.rows())
                .map(|r| t.columns()[1].get(r).map(<[u8]>::to_vec))
                .collect();
            Some((names, scores, state.collection(&items).is_none()))
        })
        .expect("read")
        .expect("the renamed table");
    assert_eq!(shape.0, ["id", "vec_of_item", "score"]);
    assert_eq!(shape.1, vec![Some(5i32.to_le_bytes().to_vec()); 3]);
    assert!(shape.2, "the old name is gone");
    stop(nodes).await;
}

/// The greeting a node sends on a cluster connection, with the token of
/// `key` derived as the protocol defines it (BLAKE3 `derive_key` under
/// "valori cluster key v1", in hex), framed as `len: u32 LE`, kind 0
/// (JSON), body.
fn hello_frame(key: &str) -> Vec<u8> {
    let token = blake3::Hash::from(blake3::derive_key("valori cluster key v1", key.as_bytes()))
        .to_hex()
        .to_string();
    json_frame(&format!(
        r#"{{"Hello":{{"token":"{token}","protocol":2}}}}"#
    ))
}

fn json_frame(body: &str) -> Vec<u8> {
    let mut frame = ((body.len() + 1) as u32).to_le_bytes().to_vec();
    frame.push(0);
    frame.extend_from_slice(body.as_bytes());
    frame
}

/// What one read of a cluster connection gave.
#[derive(Debug)]
enum Answer {
    /// A message of kind JSON, parsed.
    Json(serde_json::Value),
    /// The node closed the connection (end of stream or reset).
    Closed,
    /// Nothing within the wait.
    Silent,
}

/// Reads one framed answer from `stream`, waiting at most `limit`.
async fn read_answer(stream: &mut tokio::net::TcpStream, limit: Duration) -> Answer {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await?;
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        stream.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    match tokio::time::timeout(limit, read).await {
        Err(_) => Answer::Silent,
        Ok(Err(_)) => Answer::Closed,
        Ok(Ok(body)) => {
            assert_eq!(body.first(), Some(&0), "a JSON answer: {body:?}");
            Answer::Json(serde_json::from_slice(&body[1..]).expect("a JSON answer"))
        }
    }
}

/// What must not change when a caller without the key talks to a node.
fn footprint(n: &TestNode) -> impl PartialEq + std::fmt::Debug + use<> {
    let s = n.node.status();
    (
        s.voters,
        s.learners,
        s.last_log_index,
        s.applied_index,
        s.events,
        s.state_hash,
        s.log_root,
    )
}

/// Without TLS, a node's cluster address serves only callers that prove
/// the cluster key. A join sent with no greeting first, and a greeting
/// with another key's token, are each answered with a refusal and the
/// connection is closed (a join sent after the refusal gets no answer);
/// a connection that sends nothing is closed after the greeting's
/// deadline. The leader's membership, Raft log, event count, state hash
/// and log root are the same afterwards. The control: the same greeting
/// with the right key is welcomed and a status request is then answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_address_refuses_callers_without_the_key() {
    use tokio::io::AsyncWriteExt;
    let nodes = three_nodes([ApplyFault::default(); 3]).await;
    let l = leader(&nodes).expect("a leader");
    submit(&nodes[l].engine, create()).await.expect("create");
    for b in 0..3 {
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
    }
    let index = nodes[l].node.status().applied_index.expect("applied");
    let all: Vec<&TestNode> = nodes.iter().collect();
    applied_everywhere(&all, index).await;
    let before = footprint(&nodes[l]);
    let addr = nodes[l].node.member.cluster_addr.clone();
    let join = json_frame(
        r#"{"Join":{"id":9,"member":{"cluster_addr":"127.0.0.1:9","rest_addr":"intruder","pg_addr":""},"voter":true}}"#,
    );
    let wait = Duration::from_secs(10);
    let refused = |a: &Answer| matches!(a, Answer::Json(v) if v["Refused"].as_str().is_some_and(|r| r.contains("cluster key")));

    // A join with no greeting.
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(&join).await.expect("send");
    let answer = read_answer(&mut conn, wait).await;
    assert!(refused(&answer), "{answer:?}");
    let answer = read_answer(&mut conn, wait).await;
    assert!(matches!(answer, Answer::Closed), "{answer:?}");

    // A greeting with another key, then a join.
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(&hello_frame("another cluster's key"))
        .await
        .expect("send");
    let answer = read_answer(&mut conn, wait).await;
    assert!(refused(&answer), "{answer:?}");
    let _ = conn.write_all(&join).await;
    let answer = read_answer(&mut conn, wait).await;
    assert!(matches!(answer, Answer::Closed), "{answer:?}");

    // No greeting at all: closed after the deadline (5 s), not held open.
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let answer = read_answer(&mut conn, wait).await;
    assert!(matches!(answer, Answer::Closed), "{answer:?}");

    // Time for a join, had one been admitted, to reach the membership.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(footprint(&nodes[l]), before);

    // The control: the right key is welcomed, and the node then answers.
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(&hello_frame(KEY)).await.expect("send");
    let answer = read_answer(&mut conn, wait).await;
    assert!(
        matches!(&answer, Answer::Json(v) if v == "Welcome"),
        "{answer:?}"
    );
    conn.write_all(&json_frame(r#""Status""#))
        .await
        .expect("send");
    let answer = read_answer(&mut conn, wait).await;
    assert!(
        matches!(&answer, Answer::Json(v) if v["Status"]["node_id"] == nodes[l].node.id),
        "{answer:?}"
    );
    assert_eq!(footprint(&nodes[l]), before);
    stop(nodes).await;
}

/// Writes a certificate authority named `ca` into `dir` and, signed by
/// it, a certificate for 127.0.0.1 named `node`, with `openssl` (as an
/// operator makes them): `<ca>.pem`, `<node>.pem`, `<node>.key`.
fn make_certs(dir: &std::path::Path, ca: &str, node: &str) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ca_key = format!("{ca}.key");
    let ca_pem = format!("{ca}.pem");
    if !dir.join(&ca_pem).exists() {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca_pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
        ]);
    }
    let key = format!("{node}.key");
    let csr = format!("{node}.csr");
    let pem = format!("{node}.pem");
    let ext = format!("{node}.ext");
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("write ext");
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        &format!("/CN={node}"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &pem,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
}

/// With mutual TLS configured, three nodes whose certificates the
/// cluster's authority signed form a cluster and replicate writes to one
/// state hash; a node with the cluster key but a certificate of another
/// authority is refused (it never becomes a member), and so is a plain
/// TCP connection that sends the key's greeting without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_admits_only_nodes_of_the_cluster_authority() {
    let certs = TempDir::new().expect("tempdir");
    for n in ["n1", "n2", "n3"] {
        make_certs(certs.path(), "ca", n);
    }
    make_certs(certs.path(), "other", "intruder");
    let tls = |ca: &str, node: &str| valori_cluster::ClusterTls {
        cert: certs.path().join(format!("{node}.pem")),
        key: certs.path().join(format!("{node}.key")),
        ca: certs.path().join(format!("{ca}.pem")),
    };
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let d = TempDir::new().expect("tempdir");
        let mut c = config(id, &d);
        c.tls = Some(tls("ca", &format!("n{id}")));
        if id == 1 {
            c.bootstrap = true;
        } else {
            c.join = Some(
                nodes
                    .iter()
                    .map(|n: &TestNode| n.node.member.cluster_addr.clone())
                    .next()
                    .expect("node 1"),
            );
        }
        nodes.push(start(c, d).await);
    }
    wait_for(Duration::from_secs(30), "three voters over TLS", || {
        nodes[0].node.status().voters.len() == 3
    })
    .await;
    let l = leader(&nodes).expect("a leader");
    let mut acked = vec![create()];
    submit(&nodes[l].engine, create()).await.expect("create");
    for b in 0..5 {
        submit(&nodes[l].engine, insert(b)).await.expect("insert");
        acked.push(insert(b));
    }
    let index = nodes[l].node.status().applied_index.expect("applied");
    let all: Vec<&TestNode> = nodes.iter().collect();
    let expected = reference_hash(&acked);
    for s in applied_everywhere(&all, index).await {
        assert_eq!(
            s.state_hash.as_deref(),
            Some(expected.as_str()),
            "node {}",
            s.node_id
        );
    }

    // The cluster key alone, over plain TCP: the TLS server drops it.
    let seed = nodes[0].node.member.cluster_addr.clone();
    let mut plain = tokio::net::TcpStream::connect(&seed)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The greeting a node sends, with the right key's token (as
    // network.rs derives it): without TLS it would be welcomed.
    let token = blake3::Hash::from(blake3::derive_key("valori cluster key v1", KEY.as_bytes()))
        .to_hex()
        .to_string();
    let hello = format!(r#"{{"Hello":{{"token":"{token}","protocol":2}}}}"#);
    let mut frame = ((hello.len() + 1) as u32).to_le_bytes().to_vec();
    frame.push(0);
    frame.extend_from_slice(hello.as_bytes());
    let _ = plain.write_all(&frame).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_)))
            && !String::from_utf8_lossy(&answer).contains("Welcome"),
        "a plain connection was answered: {answer:?}"
    );

    // The key and a certificate of another authority: never admitted.
    let d = TempDir::new().expect("tempdir");
    let mut c = config(4, &d);
    c.tls = Some(tls("other", "intruder"));
    c.join = Some(seed);
    let intruder = start(c, d).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = nodes[0].node.status();
    assert_eq!(s.voters.len(), 3);
    assert!(!s.voters.contains(&4) && !s.learners.contains(&4), "{s:?}");
    intruder.node.shutdown().await;
    stop(nodes).await;
}
