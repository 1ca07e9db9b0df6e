//! The services this node answers: `Admin` for consoles and `Peer` for
//! other nodes, and the dispatcher that hands each accepted channel to the
//! right one.

use std::sync::Arc;

use futures::StreamExt;
use hangar_common::NodeId;
use hangar_common::ids::PeerAddr;
use hangar_common::layout::AssignmentReport;
use hangar_common::layout::cluster::{ClusterLayout, StagedRole};
use hangar_common::rpc::{
    self, Admin, ClusterStatus, LayoutView, NodeStatus, Peer, PingRequest, PingResponse, RpcError,
};
use hangar_common::transport::{ChannelKind, SecureChannel};
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};

use crate::layout::LayoutManager;
use crate::net::{Dispatch, Gossip, Net};

/// The pieces the services need.
#[derive(Clone)]
pub struct Services {
    pub net: Arc<Net>,
    pub layout: Arc<LayoutManager>,
}

async fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(fut);
}

impl Dispatch for Services {
    fn serve(&self, ch: SecureChannel) {
        match ch.remote_hello.kind {
            ChannelKind::Admin => {
                let server = AdminServer { s: self.clone() };
                let transport = rpc::rpc_transport(ch);
                tokio::spawn(
                    BaseChannel::with_defaults(transport)
                        .execute(server.serve())
                        .for_each(spawn),
                );
            }
            ChannelKind::Peer | ChannelKind::Bulk => {
                let server = PeerServer {
                    s: self.clone(),
                    remote: ch.remote,
                };
                let transport = rpc::rpc_transport(ch);
                tokio::spawn(
                    BaseChannel::with_defaults(transport)
                        .execute(server.serve())
                        .for_each(spawn),
                );
            }
        }
    }
}

#[derive(Clone)]
struct PeerServer {
    s: Services,
    remote: NodeId,
}

impl Peer for PeerServer {
    async fn ping(self, _: Context, req: PingRequest) -> PingResponse {
        // A ping is a sign of life: make sure we know how to reach the
        // caller, and cut short our backoff if we thought it down.
        self.s.net.learn(self.remote, Some(req.from_addr.clone()));
        self.s.layout.ping_response()
    }

    async fn pull_layout(self, _: Context) -> ClusterLayout {
        self.s.layout.current()
    }

    async fn push_layout(self, _: Context, layout: ClusterLayout) {
        self.s.layout.merge_from(&layout, self.remote);
    }
}

#[derive(Clone)]
struct AdminServer {
    s: Services,
}

impl Services {
    pub fn status(&self) -> ClusterStatus {
        let layout = self.layout.current();
        let staged = layout.effective_staged();
        let peers = self.net.peers();
        let mut ids: Vec<NodeId> = layout
            .known_nodes()
            .into_iter()
            .chain(peers.keys().copied())
            .chain(std::iter::once(self.net.id))
            .collect();
        ids.sort();
        ids.dedup();
        let nodes = ids
            .into_iter()
            .map(|id| {
                let base = NodeStatus {
                    id,
                    addr: None,
                    is_self: id == self.net.id,
                    up: false,
                    down_since_ms: None,
                    last_seen_ms: None,
                    rtt_ms: None,
                    agent_version: None,
                    role: layout.roles.get(&id).cloned(),
                    staged: staged.get(&id).cloned(),
                    layout_version: None,
                    partitions: (0..hangar_common::layout::PARTITIONS)
                        .filter(|p| layout.nodes_of(*p).contains(&id))
                        .count(),
                };
                if id == self.net.id {
                    NodeStatus {
                        addr: Some(self.net.public_addr().to_string()),
                        up: true,
                        last_seen_ms: Some(hangar_common::crdt::now_msec()),
                        rtt_ms: Some(0.0),
                        agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
                        layout_version: Some(layout.version),
                        ..base
                    }
                } else if let Some(p) = peers.get(&id) {
                    NodeStatus {
                        addr: p.addr.clone(),
                        up: p.up,
                        down_since_ms: p.down_since_ms,
                        last_seen_ms: p.last_seen_ms,
                        rtt_ms: p.rtt_ms,
                        agent_version: p.agent_version.clone(),
                        layout_version: p.layout_version,
                        ..base
                    }
                } else {
                    base
                }
            })
            .collect();
        ClusterStatus {
            node: self.net.id,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            layout_version: layout.version,
            replication_factor: layout.replication_factor,
            health: layout.health(|n| self.net.is_up(n)),
            nodes,
        }
    }

    pub fn layout_view(&self) -> LayoutView {
        let layout = self.layout.current();
        let preview = (!layout.effective_staged().is_empty()).then(|| layout.preview());
        LayoutView { layout, preview }
    }
}

impl Admin for AdminServer {
    async fn status(self, _: Context) -> ClusterStatus {
        self.s.status()
    }

    async fn connect_node(self, _: Context, peer: PeerAddr) -> Result<(), RpcError> {
        if peer.id == self.s.net.id {
            return Err(RpcError::BadRequest(format!(
                "{} is the node you are connected to; give the id@address of another node",
                peer.id.short()
            )));
        }
        self.s
            .net
            .connect_now(&peer)
            .await
            .map_err(|e| RpcError::Unreachable {
                node: peer.id.short(),
                reason: e.to_string(),
            })
    }

    async fn layout(self, _: Context) -> LayoutView {
        self.s.layout_view()
    }

    async fn layout_stage(
        self,
        _: Context,
        changes: Vec<(NodeId, StagedRole)>,
    ) -> Result<LayoutView, RpcError> {
        for (_, change) in &changes {
            if let StagedRole::Set(role) = change
                && role.zone.trim().is_empty()
            {
                return Err(RpcError::BadRequest("a zone name cannot be empty".into()));
            }
        }
        self.s.layout.stage(changes);
        Ok(self.s.layout_view())
    }

    async fn layout_apply(self, _: Context, version: u64) -> Result<AssignmentReport, RpcError> {
        Ok(self.s.layout.apply(version)?)
    }

    async fn layout_revert(self, _: Context) -> Result<LayoutView, RpcError> {
        self.s.layout.revert();
        Ok(self.s.layout_view())
    }
}
