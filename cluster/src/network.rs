//! Traffic between the nodes of a cluster: length-prefixed messages over
//! TCP on each node's cluster address.
//!
//! A connection opens with the caller's proof of the cluster key (a key
//! derived from it with BLAKE3, compared in constant time) and the
//! version of this protocol; a connection without the key, or speaking
//! another version, is refused and closed. Each message is `len: u32 LE`
//! and that many bytes, at most `CLUSTER_MESSAGE_BYTES_MAX` (the greeting
//! at most [`HELLO_BYTES_MAX`]): a kind byte, then the body. What every
//! write sends — `AppendEntries` and its answer — and snapshot chunks are
//! in the binary encoding of [`crate::codec`]; the rest (votes, status,
//! joins, refusals, errors) is JSON. The key proves membership; it does
//! not encrypt. With TLS configured ([`crate::tls`]), every connection is
//! mutual TLS first (both nodes present certificates of the cluster's
//! authority) and the greeting runs inside it; without, cluster addresses
//! belong on loopback or a private network.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use valori_core::limits::CLUSTER_MESSAGE_BYTES_MAX;

use crate::codec::{Decoder, Encoder};
use crate::{Member, NodeId, NodeStatus, TypeConfig};

/// The version of this protocol, sent in the greeting: nodes of one
/// cluster run the same version (version 1 sent everything as JSON).
pub(crate) const PROTOCOL_VERSION: u32 = 2;

/// Largest greeting, read before the caller has proved the cluster key.
pub(crate) const HELLO_BYTES_MAX: u32 = 4096;

/// Bytes reserved at once while a message arrives: a length announced by
/// a peer reserves no more than this before the bytes themselves come.
const RECEIVE_RESERVE_BYTES_MAX: u32 = 1024 * 1024;

/// The kind byte of a message.
const KIND_JSON: u8 = 0;
const KIND_APPEND: u8 = 1;
const KIND_APPEND_OK: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;

/// What a node asks another.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Rpc {
    Hello {
        token: String,
        /// [`PROTOCOL_VERSION`]; absent (0) from nodes of version 1.
        #[serde(default)]
        protocol: u32,
    },
    /// Binary only ([`crate::codec`]).
    #[serde(skip)]
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    /// Binary only ([`crate::codec`]).
    #[serde(skip)]
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    Status,
    /// A follower's request for the leader's read index (a linearizable
    /// read on the follower).
    ReadIndex,
    Join {
        id: NodeId,
        member: Member,
        voter: bool,
    },
}

/// The answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Welcome,
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Status(Box<NodeStatus>),
    /// The leader's read index, confirmed by a majority and applied on the
    /// leader; or why it cannot give one.
    ReadIndex(Result<Option<u64>, ReadIndexRefusal>),
    Join(Result<(), String>),
    Refused(String),
}

/// Why a node gave no read index.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ReadIndexRefusal {
    /// It is not the leader; the leader it knows, if any.
    NotLeader(Option<Member>),
    /// It could not confirm its leadership (no majority answered).
    Failed(String),
}

/// What a node proves itself with: the cluster key's token, and its TLS
/// material when configured.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub(crate) token: String,
    pub(crate) tls: Option<crate::tls::Tls>,
}

/// The two halves of a connection, TLS or plain.
type Reader = BufReader<Box<dyn AsyncRead + Unpin + Send + Sync>>;
type Writer = BufWriter<Box<dyn AsyncWrite + Unpin + Send + Sync>>;

fn halves<S>(stream: S) -> (Reader, Writer)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let (r, w) = tokio::io::split(stream);
    (
        BufReader::new(Box::new(r) as Box<dyn AsyncRead + Unpin + Send + Sync>),
        BufWriter::new(Box::new(w) as Box<dyn AsyncWrite + Unpin + Send + Sync>),
    )
}

/// How long a TLS handshake, and then the greeting, may take before the
/// connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The proof of the cluster key a node sends when it connects.
pub(crate) fn key_token(key: &str) -> String {
    let derived = blake3::derive_key("valori cluster key v1", key.as_bytes());
    blake3::Hash::from(derived).to_hex().to_string()
}

/// A message as its kind byte and body.
pub(crate) trait Message: Sized {
    fn encode(&self, out: &mut Vec<u8>) -> io::Result<()>;
    fn decode(kind: u8, body: &[u8]) -> io::Result<Self>;
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn json<T: Serialize>(out: &mut Vec<u8>, msg: &T) -> io::Result<()> {
    out.push(KIND_JSON);
    serde_json::to_writer(out, msg).map_err(io::Error::other)
}

fn binary<T>(
    body: &[u8],
    what: &'static str,
    f: impl FnOnce(&mut Decoder<'_>) -> Result<T, crate::codec::DecodeError>,
) -> io::Result<T> {
    let mut d = Decoder::new(body);
    let v = f(&mut d).map_err(invalid)?;
    d.finish(what).map_err(invalid)?;
    Ok(v)
}

impl Message for Rpc {
    fn encode(&self, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Rpc::Append(r) => {
                out.push(KIND_APPEND);
                Encoder::new(out).append_request(r);
                Ok(())
            }
            Rpc::Snapshot(r) => {
                out.push(KIND_SNAPSHOT);
                Encoder::new(out).snapshot_request(r);
                Ok(())
            }
            other => json(out, other),
        }
    }

    fn decode(kind: u8, body: &[u8]) -> io::Result<Rpc> {
        match kind {
            KIND_JSON => serde_json::from_slice(body).map_err(invalid),
            KIND_APPEND => {
                binary(body, "an append request", |d| d.append_request()).map(Rpc::Append)
            }
            KIND_SNAPSHOT => {
                binary(body, "a snapshot chunk", |d| d.snapshot_request()).map(Rpc::Snapshot)
            }
            other => Err(invalid(format!(
                "a cluster request of unknown kind {other}"
            ))),
        }
    }
}

impl Message for Reply {
    fn encode(&self, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Reply::Append(Ok(r)) => {
                out.push(KIND_APPEND_OK);
                Encoder::new(out).append_response(r);
                Ok(())
            }
            other => json(out, other),
        }
    }

    fn decode(kind: u8, body: &[u8]) -> io::Result<Reply> {
        match kind {
            KIND_JSON => serde_json::from_slice(body).map_err(invalid),
            KIND_APPEND_OK => binary(body, "an append answer", |d| d.append_response())
                .map(|r| Reply::Append(Ok(r))),
            other => Err(invalid(format!("a cluster answer of unknown kind {other}"))),
        }
    }
}

/// Frames `msg` as `len: u32 LE`, kind, body.
pub(crate) fn frame<T: Message>(msg: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; 4];
    msg.encode(&mut out)?;
    let body = out.len() - 4;
    let len = u32::try_from(body)
        .ok()
        .filter(|l| *l <= CLUSTER_MESSAGE_BYTES_MAX)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a cluster message of {body} bytes exceeds the limit of {CLUSTER_MESSAGE_BYTES_MAX} bytes"
                ),
            )
        })?;
    out[..4].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Reads one message's kind and body from a frame's bytes after its length.
pub(crate) fn unframe<T: Message>(body: &[u8]) -> io::Result<T> {
    let (kind, rest) = body
        .split_first()
        .ok_or_else(|| invalid("an empty cluster message"))?;
    T::decode(*kind, rest)
}

async fn write_msg<W: AsyncWriteExt + Unpin, T: Message>(w: &mut W, msg: &T) -> io::Result<()> {
    w.write_all(&frame(msg)?).await?;
    w.flush().await
}

/// Reads one message of at most `max` bytes. Memory is reserved as the
/// bytes arrive, not for the length the peer announces.
async fn read_msg<R: AsyncReadExt + Unpin, T: Message>(r: &mut R, max: u32) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len);
    if len > max {
        return Err(invalid(format!(
            "a cluster message announces {len} bytes, over the limit of {max}"
        )));
    }
    let mut buf = Vec::with_capacity(len.min(RECEIVE_RESERVE_BYTES_MAX) as usize);
    (&mut *r).take(u64::from(len)).read_to_end(&mut buf).await?;
    if buf.len() != len as usize {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "a cluster message ends after {} of its {len} bytes",
                buf.len()
            ),
        ));
    }
    unframe(&buf)
}

/// Serves the cluster address until the task is aborted, which also ends
/// every connection it serves.
pub(crate) async fn serve(listener: TcpListener, node: Arc<crate::Node>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cluster address: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let node = Arc::clone(&node);
        conns.spawn(async move {
            if let Err(e) = serve_conn(stream, &node).await
                && e.kind() != io::ErrorKind::UnexpectedEof
            {
                tracing::debug!(%peer, "cluster connection closed: {e}");
            }
        });
    }
}

async fn serve_conn(stream: TcpStream, node: &crate::Node) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = match &node.creds.tls {
        Some(tls) => {
            let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))
                .and_then(|r| r);
            match accepted {
                Ok(s) => halves(s),
                Err(e) => {
                    tracing::warn!("refused a cluster connection: TLS: {e}");
                    return Ok(());
                }
            }
        }
        None => halves(stream),
    };
    // A caller that connects and never greets would otherwise hold its
    // task and socket for as long as it likes without proving the key.
    let hello: Rpc =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_msg(&mut r, HELLO_BYTES_MAX)).await {
            Ok(hello) => hello?,
            Err(_) => {
                tracing::warn!(
                    "refused a cluster connection: no greeting within {HANDSHAKE_TIMEOUT:?}"
                );
                return Ok(());
            }
        };
    let (authentic, protocol) = match &hello {
        Rpc::Hello { token, protocol } => (
            subtle::ConstantTimeEq::ct_eq(token.as_bytes(), node.creds.token.as_bytes()).into(),
            *protocol,
        ),
        _ => (false, 0),
    };
    if !authentic {
        tracing::warn!("refused a cluster connection without the cluster key");
        write_msg(
            &mut w,
            &Reply::Refused("the cluster key is missing or wrong".to_owned()),
        )
        .await?;
        return Ok(());
    }
    if protocol != PROTOCOL_VERSION {
        tracing::warn!(
            protocol,
            "refused a cluster connection from a node of another version"
        );
        write_msg(
            &mut w,
            &Reply::Refused(format!(
                "the node speaks cluster protocol {protocol}, this node {PROTOCOL_VERSION}: every node of a cluster runs the same version"
            )),
        )
        .await?;
        return Ok(());
    }
    write_msg(&mut w, &Reply::Welcome).await?;
    loop {
        let rpc: Rpc = read_msg(&mut r, CLUSTER_MESSAGE_BYTES_MAX).await?;
        let reply = match rpc {
            Rpc::Hello { .. } => Reply::Welcome,
            Rpc::Append(req) => Reply::Append(node.raft.append_entries(req).await),
            Rpc::Vote(req) => Reply::Vote(node.raft.vote(req).await),
            Rpc::Snapshot(req) => Reply::Snapshot(node.raft.install_snapshot(req).await),
            Rpc::Status => Reply::Status(Box::new(node.status())),
            Rpc::ReadIndex => Reply::ReadIndex(node.read_index().await),
            Rpc::Join { id, member, voter } => Reply::Join(
                node.admit(id, member, voter)
                    .await
                    .map_err(|e| e.to_string()),
            ),
        };
        write_msg(&mut w, &reply).await?;
    }
}

/// One connection to another node, opened on first use and again after a
/// failure.
pub(crate) struct Conn {
    addr: String,
    creds: Arc<Credentials>,
    stream: Option<(Reader, Writer)>,
}

/// Why a call to another node failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("cannot reach {addr}: {source}")]
    Unreachable { addr: String, source: io::Error },
    #[error("{addr}: {source}")]
    Network { addr: String, source: io::Error },
    #[error("{addr} refused the connection: {reason}")]
    Refused { addr: String, reason: String },
    /// The message is over `CLUSTER_MESSAGE_BYTES_MAX`; nothing was sent.
    #[error("to {addr}: {source}")]
    TooLarge { addr: String, source: io::Error },
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.addr)
            .field("connected", &self.stream.is_some())
            .finish_non_exhaustive()
    }
}

impl Conn {
    pub(crate) fn new(addr: String, creds: Arc<Credentials>) -> Conn {
        Conn {
            addr,
            creds,
            stream: None,
        }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) async fn call(&mut self, rpc: &Rpc, timeout: Duration) -> Result<Reply, CallError> {
        let result = tokio::time::timeout(timeout, self.call_inner(rpc)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(CallError::Network {
                addr: self.addr.clone(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                ),
            }),
        };
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn call_inner(&mut self, rpc: &Rpc) -> Result<Reply, CallError> {
        let addr = self.addr.clone();
        if self.stream.is_none() {
            let stream =
                TcpStream::connect(&addr)
                    .await
                    .map_err(|source| CallError::Unreachable {
                        addr: addr.clone(),
                        source,
                    })?;
            let _ = stream.set_nodelay(true);
            let net = |source| CallError::Network {
                addr: addr.clone(),
                source,
            };
            let (mut r, mut w) = match &self.creds.tls {
                Some(tls) => {
                    let name = crate::tls::server_name(&addr).map_err(net)?;
                    let connected = tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        tls.connector().connect(name, stream),
                    )
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))
                    .and_then(|r| r)
                    .map_err(|e| CallError::Refused {
                        addr: addr.clone(),
                        reason: format!("TLS: {e}"),
                    })?;
                    halves(connected)
                }
                None => halves(stream),
            };
            write_msg(
                &mut w,
                &Rpc::Hello {
                    token: self.creds.token.clone(),
                    protocol: PROTOCOL_VERSION,
                },
            )
            .await
            .map_err(net)?;
            match read_msg::<_, Reply>(&mut r, HELLO_BYTES_MAX)
                .await
                .map_err(net)?
            {
                Reply::Welcome => {}
                Reply::Refused(reason) => return Err(CallError::Refused { addr, reason }),
                other => {
                    return Err(CallError::Network {
                        addr,
                        source: io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("unexpected greeting {other:?}"),
                        ),
                    });
                }
            }
            self.stream = Some((r, w));
        }
        let Some((r, w)) = self.stream.as_mut() else {
            unreachable!("invariant: connected above");
        };
        let net = |source| CallError::Network {
            addr: addr.clone(),
            source,
        };
        let bytes = frame(rpc).map_err(|source| CallError::TooLarge {
            addr: addr.clone(),
            source,
        })?;
        w.write_all(&bytes).await.map_err(net)?;
        w.flush().await.map_err(net)?;
        let reply: Reply = read_msg(r, CLUSTER_MESSAGE_BYTES_MAX).await.map_err(net)?;
        if let Reply::Refused(reason) = reply {
            return Err(CallError::Refused { addr, reason });
        }
        Ok(reply)
    }
}

/// Opens connections to the other nodes for openraft.
#[derive(Clone, Debug)]
pub(crate) struct Network {
    pub(crate) creds: Arc<Credentials>,
}

/// openraft's handle on one other node.
#[derive(Debug)]
pub(crate) struct Peer {
    target: NodeId,
    conn: Conn,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        Peer {
            target,
            conn: Conn::new(node.cluster_addr.clone(), Arc::clone(&self.creds)),
        }
    }
}

fn rpc_error<E: std::error::Error>(e: CallError) -> RPCError<NodeId, Member, E> {
    match e {
        CallError::Unreachable { .. } | CallError::Refused { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        CallError::Network { .. } | CallError::TooLarge { .. } => {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

fn unexpected<E: std::error::Error>(reply: &Reply) -> RPCError<NodeId, Member, E> {
    let e = io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected reply {reply:?}"),
    );
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let entries = rpc.entries.len() as u64;
        let answer = match self.conn.call(&Rpc::Append(rpc), option.hard_ttl()).await {
            // Entries that do not fit one message: openraft sends fewer
            // at a time when told (it would retry the same ones after a
            // network error). One entry always fits (an event is far
            // below the message limit).
            Err(CallError::TooLarge { .. }) if entries > 1 => {
                return Err(RPCError::PayloadTooLarge(
                    openraft::error::PayloadTooLarge::new_entries_hint(entries / 2),
                ));
            }
            other => other.map_err(rpc_error)?,
        };
        match answer {
            Reply::Append(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .conn
            .call(&Rpc::Snapshot(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
            Reply::Snapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        match self
            .conn
            .call(&Rpc::Vote(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
            Reply::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    use super::*;

    fn append() -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new(2, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 4)),
            leader_commit: Some(LogId::new(CommittedLeaderId::new(2, 1), 3)),
            entries: vec![Entry {
                log_id: LogId::new(CommittedLeaderId::new(2, 1), 5),
                payload: EntryPayload::Normal(crate::Write {
                    events: vec![vec![7; 1000]],
                }),
            }],
        }
    }

    fn round_trip<T: Message>(msg: &T) -> T {
        let bytes = frame(msg).expect("frames");
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        assert_eq!(len as usize, bytes.len() - 4);
        unframe(&bytes[4..]).expect("unframes")
    }

    /// Appends and their answers travel in the binary encoding, the rest
    /// as JSON, and each comes back as it was sent.
    #[test]
    fn messages_round_trip_in_their_encoding() {
        let req = append();
        let bytes = frame(&Rpc::Append(req.clone())).expect("frames");
        assert_eq!(bytes[4], KIND_APPEND);
        // The event's bytes are in the message as they are, not in base64.
        assert!(bytes.windows(1000).any(|w| w == [7; 1000]));
        match round_trip(&Rpc::Append(req.clone())) {
            Rpc::Append(back) => {
                assert_eq!(back.vote, req.vote);
                assert_eq!(back.prev_log_id, req.prev_log_id);
                assert_eq!(back.leader_commit, req.leader_commit);
                assert_eq!(back.entries, req.entries);
            }
            other => panic!("{other:?}"),
        }
        let ok = Reply::Append(Ok(AppendEntriesResponse::HigherVote(Vote::new(3, 2))));
        assert_eq!(frame(&ok).expect("frames")[4], KIND_APPEND_OK);
        assert!(matches!(
            round_trip(&ok),
            Reply::Append(Ok(AppendEntriesResponse::HigherVote(v))) if v == Vote::new(3, 2)
        ));
        let hello = Rpc::Hello {
            token: "t".to_owned(),
            protocol: PROTOCOL_VERSION,
        };
        assert_eq!(frame(&hello).expect("frames")[4], KIND_JSON);
        assert!(matches!(
            round_trip(&hello),
            Rpc::Hello { token, protocol: PROTOCOL_VERSION } if token == "t"
        ));
        // A greeting of a version 1 node (JSON, no protocol) reads as 0.
        let old = br#"{"Hello":{"token":"t"}}"#;
        let mut body = vec![KIND_JSON];
        body.extend_from_slice(old);
        assert!(matches!(
            unframe::<Rpc>(&body),
            Ok(Rpc::Hello { protocol: 0, .. })
        ));
    }

    /// Malformed frames are errors, not panics: empty, unknown kind, a
    /// binary body cut short or followed by extra bytes, JSON carrying an
    /// append (only the binary form is accepted).
    #[test]
    fn malformed_messages_are_refused() {
        assert!(unframe::<Rpc>(&[]).is_err());
        assert!(unframe::<Rpc>(&[9, 1, 2]).is_err());
        assert!(unframe::<Reply>(&[KIND_APPEND, 0]).is_err());
        let bytes = frame(&Rpc::Append(append())).expect("frames");
        for cut in [5, 20, bytes.len() - 1] {
            let e = unframe::<Rpc>(&bytes[4..cut]).expect_err("cut short");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        }
        let mut long = bytes[4..].to_vec();
        long.push(0);
        assert!(unframe::<Rpc>(&long).is_err());
        let mut json = vec![KIND_JSON];
        json.extend_from_slice(br#"{"Append":{}}"#);
        assert!(unframe::<Rpc>(&json).is_err());
    }

    /// A length over the limit is refused before its bytes are read, and
    /// a stream that ends before the announced length is an error.
    #[tokio::test]
    async fn lengths_are_bounded_before_reading() {
        let mut over = &(HELLO_BYTES_MAX + 1).to_le_bytes()[..];
        let e = read_msg::<_, Rpc>(&mut over, HELLO_BYTES_MAX)
            .await
            .expect_err("over the limit");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let mut short: Vec<u8> = u32::MAX.to_le_bytes().to_vec();
        short.extend_from_slice(&[KIND_JSON, b'{']);
        let e = read_msg::<_, Rpc>(&mut &short[..], u32::MAX)
            .await
            .expect_err("cut short");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        let hello = Rpc::Hello {
            token: "t".to_owned(),
            protocol: PROTOCOL_VERSION,
        };
        let bytes = frame(&hello).expect("frames");
        assert!(matches!(
            read_msg::<_, Rpc>(&mut &bytes[..], HELLO_BYTES_MAX).await,
            Ok(Rpc::Hello { .. })
        ));
    }
}
