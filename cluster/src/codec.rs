//! The binary encoding of what travels on every write: Raft entries (in
//! the Raft log and in `AppendEntries`), `AppendEntries` and its answer,
//! and snapshot chunks.
//!
//! Integers are little-endian of fixed width (`u8`, `u32`, `u64`); byte
//! strings and text are `len: u32` and that many bytes; sequences are
//! `count: u32` and that many items; an optional value is a `u8` tag (0
//! none, 1 some) and the value. Every length and count read is checked
//! against the bytes that remain before anything is allocated for it, so a
//! malformed or hostile input is a [`DecodeError`], never a panic or an
//! allocation larger than the input.
//!
//! | item | layout |
//! |---|---|
//! | log id | `term: u64`, `node: u64`, `index: u64` |
//! | vote | `term: u64`, `node: u64`, `committed: u8` |
//! | member | `cluster_addr`, `rest_addr`, `pg_addr` (text each) |
//! | membership | `configs: u32`, each `ids: u32` × `u64`; `nodes: u32`, each `id: u64`, member |
//! | entry | log id, `kind: u8` (0 blank, 1 events: `count: u32` × bytes, 2 membership) |
//! | append request | vote, optional prev log id, optional commit log id, `entries: u32` × entry |
//! | append answer | `kind: u8` (0 success, 1 partial: optional log id, 2 conflict, 3 higher vote: vote) |
//! | snapshot chunk | vote, optional last log id, optional membership log id, membership, snapshot id (text), `offset: u64`, data (bytes), `done: u8` |

use std::collections::{BTreeMap, BTreeSet};

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote,
};

use crate::{Member, NodeId, TypeConfig, Write};

/// Why bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{what} needs {need} bytes, {left} are left")]
    Truncated {
        what: &'static str,
        need: u64,
        left: u64,
    },
    #[error("{what} has the unknown tag {tag}")]
    Tag { what: &'static str, tag: u8 },
    #[error("{what} is not UTF-8")]
    Utf8 { what: &'static str },
    #[error("{left} bytes follow the end of the {what}")]
    Trailing { what: &'static str, left: u64 },
}

/// Appends encodings to a buffer.
pub(crate) struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Encoder<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Encoder { out }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        // Every message is bounded by `CLUSTER_MESSAGE_BYTES_MAX` (1 GiB)
        // and every log record by the same entries, far below 4 GiB.
        let n = u32::try_from(n).expect("invariant: a cluster item is shorter than 4 GiB");
        self.u32(n);
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.out.extend_from_slice(v);
    }

    fn text(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub(crate) fn log_id(&mut self, id: &LogId<NodeId>) {
        self.u64(id.leader_id.term);
        self.u64(id.leader_id.node_id);
        self.u64(id.index);
    }

    fn opt_log_id(&mut self, id: &Option<LogId<NodeId>>) {
        match id {
            None => self.u8(0),
            Some(id) => {
                self.u8(1);
                self.log_id(id);
            }
        }
    }

    fn vote(&mut self, v: &Vote<NodeId>) {
        self.u64(v.leader_id.term);
        self.u64(v.leader_id.node_id);
        self.u8(u8::from(v.committed));
    }

    fn membership(&mut self, m: &Membership<NodeId, Member>) {
        let configs = m.get_joint_config();
        self.len(configs.len());
        for config in configs {
            self.len(config.len());
            for id in config {
                self.u64(*id);
            }
        }
        self.len(m.nodes().count());
        for (id, member) in m.nodes() {
            self.u64(*id);
            self.text(&member.cluster_addr);
            self.text(&member.rest_addr);
            self.text(&member.pg_addr);
        }
    }

    pub(crate) fn entry(&mut self, e: &Entry<TypeConfig>) {
        self.log_id(&e.log_id);
        match &e.payload {
            EntryPayload::Blank => self.u8(0),
            EntryPayload::Normal(w) => {
                self.u8(1);
                self.len(w.events.len());
                for event in &w.events {
                    self.bytes(event);
                }
            }
            EntryPayload::Membership(m) => {
                self.u8(2);
                self.membership(m);
            }
        }
    }

    pub(crate) fn append_request(&mut self, r: &AppendEntriesRequest<TypeConfig>) {
        self.vote(&r.vote);
        self.opt_log_id(&r.prev_log_id);
        self.opt_log_id(&r.leader_commit);
        self.len(r.entries.len());
        for e in &r.entries {
            self.entry(e);
        }
    }

    pub(crate) fn append_response(&mut self, r: &AppendEntriesResponse<NodeId>) {
        match r {
            AppendEntriesResponse::Success => self.u8(0),
            AppendEntriesResponse::PartialSuccess(id) => {
                self.u8(1);
                self.opt_log_id(id);
            }
            AppendEntriesResponse::Conflict => self.u8(2),
            AppendEntriesResponse::HigherVote(v) => {
                self.u8(3);
                self.vote(v);
            }
        }
    }

    pub(crate) fn snapshot_request(&mut self, r: &InstallSnapshotRequest<TypeConfig>) {
        self.vote(&r.vote);
        self.opt_log_id(&r.meta.last_log_id);
        self.opt_log_id(r.meta.last_membership.log_id());
        self.membership(r.meta.last_membership.membership());
        self.text(&r.meta.snapshot_id);
        self.u64(r.offset);
        self.bytes(&r.data);
        self.u8(u8::from(r.done));
    }
}

/// Reads encodings from a byte string, refusing what does not fit in it.
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
}

/// Bytes of the smallest encoded item of each sequence: a count is checked
/// against the bytes left for that many items before a `Vec` is reserved.
const NODE_ID_BYTES_MIN: usize = 8;
const CONFIG_BYTES_MIN: usize = 4;
const MEMBER_BYTES_MIN: usize = 8 + 3 * 4;
const ENTRY_BYTES_MIN: usize = 3 * 8 + 1;
const EVENT_BYTES_MIN: usize = 4;

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Decoder { buf }
    }

    /// Refuses bytes left over after the item `what`.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing {
                what,
                left: self.buf.len() as u64,
            })
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                what,
                need: n as u64,
                left: self.buf.len() as u64,
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::Tag { what, tag }),
        }
    }

    /// A count of items of at least `item_bytes` each, checked against the
    /// bytes left.
    fn count(&mut self, item_bytes: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        let need = n.saturating_mul(item_bytes);
        if need > self.buf.len() {
            return Err(DecodeError::Truncated {
                what,
                need: need as u64,
                left: self.buf.len() as u64,
            });
        }
        Ok(n)
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.count(1, what)?;
        self.take(n, what)
    }

    fn text(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let bytes = self.bytes(what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8 { what })
    }

    pub(crate) fn log_id(&mut self) -> Result<LogId<NodeId>, DecodeError> {
        let term = self.u64("a log id's term")?;
        let node = self.u64("a log id's node")?;
        let index = self.u64("a log id's index")?;
        Ok(LogId::new(CommittedLeaderId::new(term, node), index))
    }

    fn opt_log_id(&mut self) -> Result<Option<LogId<NodeId>>, DecodeError> {
        if self.bool("an optional log id")? {
            Ok(Some(self.log_id()?))
        } else {
            Ok(None)
        }
    }

    fn vote(&mut self) -> Result<Vote<NodeId>, DecodeError> {
        let term = self.u64("a vote's term")?;
        let node = self.u64("a vote's node")?;
        let committed = self.bool("a vote's committed flag")?;
        let mut vote = Vote::new(term, node);
        vote.committed = committed;
        Ok(vote)
    }

    fn membership(&mut self) -> Result<Membership<NodeId, Member>, DecodeError> {
        let n = self.count(CONFIG_BYTES_MIN, "a membership's configs")?;
        let mut configs = Vec::with_capacity(n);
        for _ in 0..n {
            let ids = self.count(NODE_ID_BYTES_MIN, "a membership config")?;
            let mut config = BTreeSet::new();
            for _ in 0..ids {
                config.insert(self.u64("a voter id")?);
            }
            configs.push(config);
        }
        let n = self.count(MEMBER_BYTES_MIN, "a membership's nodes")?;
        let mut nodes = BTreeMap::new();
        for _ in 0..n {
            let id = self.u64("a node id")?;
            let member = Member {
                cluster_addr: self.text("a cluster address")?,
                rest_addr: self.text("a REST address")?,
                pg_addr: self.text("a Postgres address")?,
            };
            nodes.insert(id, member);
        }
        Ok(Membership::new(configs, nodes))
    }

    pub(crate) fn entry(&mut self) -> Result<Entry<TypeConfig>, DecodeError> {
        let log_id = self.log_id()?;
        let payload = match self.u8("an entry's kind")? {
            0 => EntryPayload::Blank,
            1 => {
                let n = self.count(EVENT_BYTES_MIN, "an entry's events")?;
                let mut events = Vec::with_capacity(n);
                for _ in 0..n {
                    events.push(self.bytes("an entry's event")?.to_vec());
                }
                EntryPayload::Normal(Write { events })
            }
            2 => EntryPayload::Membership(self.membership()?),
            tag => {
                return Err(DecodeError::Tag {
                    what: "an entry's kind",
                    tag,
                });
            }
        };
        Ok(Entry { log_id, payload })
    }

    pub(crate) fn append_request(
        &mut self,
    ) -> Result<AppendEntriesRequest<TypeConfig>, DecodeError> {
        let vote = self.vote()?;
        let prev_log_id = self.opt_log_id()?;
        let leader_commit = self.opt_log_id()?;
        let n = self.count(ENTRY_BYTES_MIN, "the entries of an append request")?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(self.entry()?);
        }
        Ok(AppendEntriesRequest {
            vote,
            prev_log_id,
            leader_commit,
            entries,
        })
    }

    pub(crate) fn append_response(&mut self) -> Result<AppendEntriesResponse<NodeId>, DecodeError> {
        Ok(match self.u8("an append answer's kind")? {
            0 => AppendEntriesResponse::Success,
            1 => AppendEntriesResponse::PartialSuccess(self.opt_log_id()?),
            2 => AppendEntriesResponse::Conflict,
            3 => AppendEntriesResponse::HigherVote(self.vote()?),
            tag => {
                return Err(DecodeError::Tag {
                    what: "an append answer's kind",
                    tag,
                });
            }
        })
    }

    pub(crate) fn snapshot_request(
        &mut self,
    ) -> Result<InstallSnapshotRequest<TypeConfig>, DecodeError> {
        let vote = self.vote()?;
        let last_log_id = self.opt_log_id()?;
        let membership_log_id = self.opt_log_id()?;
        let membership = self.membership()?;
        let snapshot_id = self.text("a snapshot id")?;
        let offset = self.u64("a snapshot chunk's offset")?;
        let data = self.bytes("a snapshot chunk")?.to_vec();
        let done = self.bool("a snapshot chunk's last flag")?;
        Ok(InstallSnapshotRequest {
            vote,
            meta: SnapshotMeta {
                last_log_id,
                last_membership: StoredMembership::new(membership_log_id, membership),
                snapshot_id,
            },
            offset,
            data,
            done,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: u64) -> Member {
        Member {
            cluster_addr: format!("127.0.0.1:{}", 7000 + i),
            rest_addr: format!("127.0.0.1:{}", 8000 + i),
            pg_addr: if i.is_multiple_of(2) {
                String::new()
            } else {
                format!("127.0.0.1:{}", 5400 + i)
            },
        }
    }

    fn membership() -> Membership<NodeId, Member> {
        Membership::new(
            vec![BTreeSet::from([1, 2]), BTreeSet::from([1, 2, 3])],
            (1..=4).map(|i| (i, member(i))).collect::<BTreeMap<_, _>>(),
        )
    }

    fn log_id(term: u64, node: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn entries() -> Vec<Entry<TypeConfig>> {
        vec![
            Entry {
                log_id: log_id(1, 1, 1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(1, 1, 2),
                payload: EntryPayload::Membership(membership()),
            },
            Entry {
                log_id: log_id(2, 3, 3),
                payload: EntryPayload::Normal(Write {
                    events: vec![Vec::new()],
                }),
            },
            Entry {
                log_id: log_id(2, 3, u64::MAX),
                payload: EntryPayload::Normal(Write {
                    events: vec![(0..=255u8).cycle().take(70_000).collect(), vec![1, 2, 3]],
                }),
            },
        ]
    }

    fn request() -> AppendEntriesRequest<TypeConfig> {
        let mut vote = Vote::new(7, 3);
        vote.committed = true;
        AppendEntriesRequest {
            vote,
            prev_log_id: Some(log_id(6, 2, 41)),
            leader_commit: None,
            entries: entries(),
        }
    }

    fn encoded(f: impl FnOnce(&mut Encoder<'_>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut Encoder::new(&mut out));
        out
    }

    /// Every entry kind decodes to the entry that was encoded, and an
    /// append request with all of them to the same request.
    #[test]
    fn entries_and_append_requests_round_trip() {
        for e in entries() {
            let bytes = encoded(|w| w.entry(&e));
            let mut r = Decoder::new(&bytes);
            assert_eq!(r.entry().expect("decodes"), e);
            r.finish("an entry").expect("no trailing bytes");
        }
        let req = request();
        let bytes = encoded(|w| w.append_request(&req));
        let mut r = Decoder::new(&bytes);
        let back = r.append_request().expect("decodes");
        r.finish("a request").expect("no trailing bytes");
        assert_eq!(back.vote, req.vote);
        assert_eq!(back.prev_log_id, req.prev_log_id);
        assert_eq!(back.leader_commit, req.leader_commit);
        assert_eq!(back.entries, req.entries);
    }

    /// Each kind of append answer, and a snapshot chunk, decode to what was
    /// encoded.
    #[test]
    fn answers_and_snapshot_chunks_round_trip() {
        for resp in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::PartialSuccess(Some(log_id(3, 1, 9))),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new(9, 2)),
        ] {
            let bytes = encoded(|w| w.append_response(&resp));
            let mut r = Decoder::new(&bytes);
            assert_eq!(r.append_response().expect("decodes"), resp);
            r.finish("an answer").expect("no trailing bytes");
        }
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new(4, 1),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(4, 1, 640)),
                last_membership: StoredMembership::new(Some(log_id(2, 1, 3)), membership()),
                snapshot_id: "640-1000-ab-cd".to_owned(),
            },
            offset: 1 << 20,
            data: vec![0xA5; 4096],
            done: true,
        };
        let bytes = encoded(|w| w.snapshot_request(&req));
        let mut r = Decoder::new(&bytes);
        assert_eq!(r.snapshot_request().expect("decodes"), req);
        r.finish("a chunk").expect("no trailing bytes");
    }

    /// Every proper prefix of an encoding is refused as truncated (never a
    /// panic), and a byte appended to it is refused as trailing.
    #[test]
    fn truncated_and_overlong_inputs_are_refused() {
        let req = request();
        // Without the 70 KB entry, so that every prefix can be tried.
        let small = AppendEntriesRequest::<TypeConfig> {
            entries: req.entries[..3].to_vec(),
            ..req.clone()
        };
        let bytes = encoded(|w| w.append_request(&small));
        for cut in 0..bytes.len() {
            let mut r = Decoder::new(&bytes[..cut]);
            match r.append_request() {
                Err(DecodeError::Truncated { .. }) => {}
                other => panic!("a prefix of {cut} bytes gave {other:?}"),
            }
        }
        let mut long = bytes.clone();
        long.push(0);
        let mut r = Decoder::new(&long);
        r.append_request().expect("the request itself decodes");
        assert!(matches!(
            r.finish("a request"),
            Err(DecodeError::Trailing { left: 1, .. })
        ));
    }

    /// Lengths and counts that claim more than the input holds are refused
    /// before anything is allocated for them, and unknown tags are refused.
    #[test]
    fn oversized_lengths_and_unknown_tags_are_refused() {
        // An event entry whose length claims 4 GiB - 1 bytes.
        let mut bytes = encoded(|w| w.entry(&entries()[2]));
        let len_at = bytes.len() - 4;
        bytes[len_at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Decoder::new(&bytes).entry(),
            Err(DecodeError::Truncated { need, .. }) if need == u64::from(u32::MAX)
        ));
        // An append request that claims u32::MAX entries in a few bytes.
        let mut bytes = encoded(|w| {
            w.append_request(&AppendEntriesRequest {
                entries: Vec::new(),
                ..request()
            })
        });
        let len_at = bytes.len() - 4;
        bytes[len_at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Decoder::new(&bytes).append_request(),
            Err(DecodeError::Truncated { .. })
        ));
        // A membership that claims u32::MAX configs.
        let mut bytes = encoded(|w| w.entry(&entries()[1]));
        bytes[25..29].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Decoder::new(&bytes).entry(),
            Err(DecodeError::Truncated { .. })
        ));
        // Unknown kinds, a flag that is neither 0 nor 1, broken UTF-8.
        let mut bytes = encoded(|w| w.entry(&entries()[0]));
        bytes[24] = 9;
        assert_eq!(
            Decoder::new(&bytes).entry(),
            Err(DecodeError::Tag {
                what: "an entry's kind",
                tag: 9
            })
        );
        assert!(matches!(
            Decoder::new(&[4]).append_response(),
            Err(DecodeError::Tag { tag: 4, .. })
        ));
        let mut bytes = encoded(|w| w.vote(&Vote::new(1, 1)));
        bytes[16] = 2;
        assert!(matches!(
            Decoder::new(&bytes).vote(),
            Err(DecodeError::Tag { tag: 2, .. })
        ));
        let mut bytes = encoded(|w| w.entry(&entries()[1]));
        let addr_at = bytes.len() - 4 - member(4).pg_addr.len() - member(4).rest_addr.len();
        bytes[addr_at] = 0xFF;
        assert!(matches!(
            Decoder::new(&bytes).entry(),
            Err(DecodeError::Utf8 { .. })
        ));
    }

    /// A small deterministic generator (splitmix64), so that a failing
    /// case is replayed from the seed its message prints.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_entry(rng: &mut Rng) -> Entry<TypeConfig> {
        let log_id = log_id(rng.next(), rng.next(), rng.next());
        let payload = match rng.below(3) {
            0 => EntryPayload::Blank,
            1 => EntryPayload::Normal(Write {
                events: (0..rng.below(4))
                    .map(|_| (0..rng.below(300)).map(|_| rng.next() as u8).collect())
                    .collect(),
            }),
            _ => {
                let voters: BTreeSet<NodeId> =
                    (0..1 + rng.below(4)).map(|_| rng.below(8)).collect();
                let nodes: BTreeMap<NodeId, Member> =
                    voters.iter().map(|id| (*id, member(*id))).collect();
                EntryPayload::Membership(Membership::new(vec![voters], nodes))
            }
        };
        Entry { log_id, payload }
    }

    /// Random append requests decode to what was encoded, and the same
    /// bytes with random damage (a byte changed, bytes cut off or added)
    /// decode to an error or to some request, never a panic. Each case
    /// prints its seed when it fails.
    #[test]
    fn random_requests_round_trip_and_damage_never_panics() {
        for seed in 0..2_000u64 {
            let mut rng = Rng(seed);
            let req = AppendEntriesRequest::<TypeConfig> {
                vote: Vote::new(rng.next(), rng.next()),
                prev_log_id: (rng.below(2) == 0)
                    .then(|| log_id(rng.next(), rng.next(), rng.next())),
                leader_commit: None,
                entries: (0..rng.below(5)).map(|_| random_entry(&mut rng)).collect(),
            };
            let bytes = encoded(|w| w.append_request(&req));
            let mut d = Decoder::new(&bytes);
            let back = d
                .append_request()
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(back.entries, req.entries, "seed {seed}");
            assert_eq!(back.vote, req.vote, "seed {seed}");
            assert_eq!(back.prev_log_id, req.prev_log_id, "seed {seed}");
            d.finish("a request")
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let mut damaged = bytes.clone();
            match rng.below(3) {
                0 => {
                    let at = rng.below(damaged.len() as u64) as usize;
                    damaged[at] = rng.next() as u8;
                }
                1 => damaged.truncate(rng.below(damaged.len() as u64) as usize),
                _ => damaged.extend((0..1 + rng.below(8)).map(|_| rng.next() as u8)),
            }
            let mut d = Decoder::new(&damaged);
            if d.append_request().is_ok() {
                let _ = d.finish("a request");
            }
        }
    }
}
