//! Traffic between the nodes of a cluster: length-prefixed JSON messages
//! over TCP on each node's cluster address.
//!
//! A connection opens with the caller's proof of the cluster key (a key
//! derived from it with BLAKE3, compared in constant time); a connection
//! without it is refused and closed. Each message is `len: u32 LE` and that
//! many bytes of JSON, at most `CLUSTER_MESSAGE_BYTES_MAX`. The key proves
//! membership; it does not encrypt: cluster addresses belong on loopback or
//! a private network.

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
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use valori_core::limits::CLUSTER_MESSAGE_BYTES_MAX;

use crate::{Member, NodeId, NodeStatus, TypeConfig};

/// What a node asks another.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Rpc {
    Hello {
        token: String,
    },
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
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

/// The proof of the cluster key a node sends when it connects.
pub(crate) fn key_token(key: &str) -> String {
    let derived = blake3::derive_key("valori cluster key v1", key.as_bytes());
    blake3::Hash::from(derived).to_hex().to_string()
}

async fn write_msg<W: AsyncWriteExt + Unpin, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|l| *l <= CLUSTER_MESSAGE_BYTES_MAX)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a cluster message of {} bytes exceeds the limit of {CLUSTER_MESSAGE_BYTES_MAX} bytes",
                    bytes.len()
                ),
            )
        })?;
    w.write_all(&len.to_le_bytes()).await?;
    w.write_all(&bytes).await?;
    w.flush().await
}

async fn read_msg<R: AsyncReadExt + Unpin, T: DeserializeOwned>(r: &mut R) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len);
    if len > CLUSTER_MESSAGE_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a cluster message announces {len} bytes, over the limit of {CLUSTER_MESSAGE_BYTES_MAX}"
            ),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await?;
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
    let (r, w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut w = BufWriter::new(w);
    let hello: Rpc = read_msg(&mut r).await?;
    let authentic = match &hello {
        Rpc::Hello { token } => {
            subtle::ConstantTimeEq::ct_eq(token.as_bytes(), node.token.as_bytes()).into()
        }
        _ => false,
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
    write_msg(&mut w, &Reply::Welcome).await?;
    loop {
        let rpc: Rpc = read_msg(&mut r).await?;
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
#[derive(Debug)]
pub(crate) struct Conn {
    addr: String,
    token: Arc<String>,
    stream: Option<(
        BufReader<tokio::net::tcp::OwnedReadHalf>,
        BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    )>,
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
}

impl Conn {
    pub(crate) fn new(addr: String, token: Arc<String>) -> Conn {
        Conn {
            addr,
            token,
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
            let (r, w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut w = BufWriter::new(w);
            let net = |source| CallError::Network {
                addr: addr.clone(),
                source,
            };
            write_msg(
                &mut w,
                &Rpc::Hello {
                    token: self.token.as_str().to_owned(),
                },
            )
            .await
            .map_err(net)?;
            match read_msg::<_, Reply>(&mut r).await.map_err(net)? {
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
        write_msg(w, rpc).await.map_err(net)?;
        let reply: Reply = read_msg(r).await.map_err(net)?;
        if let Reply::Refused(reason) = reply {
            return Err(CallError::Refused { addr, reason });
        }
        Ok(reply)
    }
}

/// Opens connections to the other nodes for openraft.
#[derive(Clone, Debug)]
pub(crate) struct Network {
    pub(crate) token: Arc<String>,
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
            conn: Conn::new(node.cluster_addr.clone(), Arc::clone(&self.token)),
        }
    }
}

fn rpc_error<E: std::error::Error>(e: CallError) -> RPCError<NodeId, Member, E> {
    match e {
        CallError::Unreachable { .. } | CallError::Refused { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        CallError::Network { .. } => RPCError::Network(NetworkError::new(&e)),
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
        match self
            .conn
            .call(&Rpc::Append(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
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
