//! Muster agent: a Consul-compatible service-discovery, health-checking and KV agent.
//!
//! Layout (see ARCHITECTURE.md at the repository root for the full map):
//! * [`cli`]: the `muster` command line, one module per command, all talking HTTP to an agent
//!   except `agent` itself.
//! * [`config`]: flags and JSON/HCL config files resolved into one [`config::Config`].
//! * [`server`]: wiring: builds the store, Raft, and the HTTP listener from a `Config`.
//! * [`dns`]: the DNS interface (hickory-server), answered from the state store.
//! * [`state`]: the in-memory tables, their indexes and the watch sets behind blocking queries.
//! * [`raft`]: openraft type config, the sled/in-memory log store and the state-machine adapter.
//! * [`http`]: the `/v1` API (axum), one module per endpoint family.
//! * [`filter`]: Consul's `?filter=` expression language, parsed once, evaluated per item.
//! * [`events`]: user events (ring buffer, filters, the delivery behind which gossip plugs in).
//! * [`watch`]: the watch engine behind `muster watch` and the agent's `watches`.

pub mod checks;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod error;
pub mod events;
pub mod filter;
pub mod gossip;
pub mod http;
pub mod leader;
pub mod local;
pub mod logs;
pub mod membership;
pub mod raft;
pub mod rpc;
pub mod server;
pub mod session_ttl;
pub mod state;
pub mod watch;

/// The Consul version whose HTTP API Muster implements; clients gate features on it.
pub const CONSUL_API_VERSION: &str = "1.22.0";
/// Muster's own version.
pub const MUSTER_VERSION: &str = env!("CARGO_PKG_VERSION");
