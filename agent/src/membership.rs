//! The membership view: who is in the cluster, as gossip sees it.
//!
//! This is the seam between gossip (`gossip`, which produces the view with foca) and its
//! consumers: Raft membership (bootstrap-expect, learners, dead-server cleanup), server
//! discovery for forwarding, the leader's reconcile of `serfHealth` into the catalog, and
//! `/v1/agent/members`. Producers publish a whole [`MemberSet`] through a `tokio::sync::watch`
//! channel whenever anything changes; consumers compare what they need. Tags follow Consul's
//! serf tags so `members -detailed` prints what Consul users know.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Serf's member states, numbered as Consul's API reports them (`Status` in `/v1/agent/members`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberStatus {
    Alive = 1,
    Leaving = 2,
    Left = 3,
    Failed = 4,
}

impl MemberStatus {
    /// The word `consul members` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }
}

/// Tag keys, as Consul's serf tags spell them.
pub mod tags {
    /// `consul` for servers, `node` for client agents.
    pub const ROLE: &str = "role";
    pub const ROLE_SERVER: &str = "consul";
    pub const ROLE_CLIENT: &str = "node";
    /// Datacenter.
    pub const DC: &str = "dc";
    /// Server RPC port (servers only).
    pub const PORT: &str = "port";
    /// Node ID (a UUID); also the Raft server ID of a server.
    pub const ID: &str = "id";
    /// `-bootstrap-expect` value of a server started with it.
    pub const EXPECT: &str = "expect";
    /// Present (`1`) on a server started with `-bootstrap`.
    pub const BOOTSTRAP: &str = "bootstrap";
    /// Build version, e.g. `1.22.0:muster-0.1.0`.
    pub const BUILD: &str = "build";
    /// Consul protocol version.
    pub const VSN: &str = "vsn";
    /// Raft protocol version (3).
    pub const RAFT_VSN: &str = "raft_vsn";
    /// Segment (always empty here).
    pub const SEGMENT: &str = "segment";
}

/// One member of the LAN pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Node name.
    pub name: String,
    /// Gossip address (the node's advertise address).
    pub addr: IpAddr,
    /// Gossip port.
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: MemberStatus,
}

impl MemberInfo {
    pub fn is_server(&self) -> bool {
        self.tags.get(tags::ROLE).map(String::as_str) == Some(tags::ROLE_SERVER)
    }

    /// The server RPC address of a server member (its gossip address and its `port` tag).
    pub fn server_rpc_addr(&self) -> Option<std::net::SocketAddr> {
        if !self.is_server() {
            return None;
        }
        let port: u16 = self.tags.get(tags::PORT)?.parse().ok()?;
        Some(std::net::SocketAddr::new(self.addr, port))
    }

    pub fn node_id(&self) -> Option<&str> {
        self.tags.get(tags::ID).map(String::as_str)
    }
}

/// Every member known, this agent included, sorted by name.
pub type MemberSet = Arc<Vec<MemberInfo>>;

/// What consumers hold: the latest set, and a way to wait for the next.
pub type MembershipView = tokio::sync::watch::Receiver<MemberSet>;
