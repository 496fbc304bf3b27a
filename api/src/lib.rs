//! Muster's wire types (Consul's JSON field names) and an async HTTP client with blocking
//! queries. Used by the CLI, templater, bench and tests; the agent serialises its HTTP answers
//! with these same types so the two can never disagree.

mod agent_client;
pub mod catalog;
pub mod client;
pub mod duration;
pub mod event;
pub mod monitor;
pub mod operator;
pub mod session;
pub mod tls;
pub mod txn;
pub mod types;

pub use catalog::*;
pub use client::{Client, ClientConfig, Error, QueryMeta, QueryOptions};
pub use event::UserEvent;
pub use operator::{RaftConfiguration, RaftServer};
pub use session::{ServiceCheck, SessionEntry, SessionRequest};
pub use tls::TlsConfig;
pub use txn::{
    CheckTxnOp, KvTxnOp, NodeTxnOp, ServiceTxnOp, TxnError, TxnOp, TxnResponse, TxnResult,
};
pub use types::*;
