//! The proposer: group commit in front of Raft.
//!
//! openraft 0.9 appends each proposal as its own log write and waits for that write's fsync
//! before it takes the next proposal, so concurrent writes would each pay a full fsync, one
//! after another. The proposer instead keeps one proposal in flight: every write that arrives
//! meanwhile waits in its queue, and the next proposal carries all of them as one
//! [`Command::Batch`] entry — one append, one fsync, one apply pass. A lone write goes through
//! as itself, so an idle agent adds no latency.

use tokio::sync::{mpsc, oneshot};

use super::Raft;
use crate::error::Error;
use crate::state::{Command, Request, Response};

/// Most writes folded into one log entry.
const MAX_BATCH: usize = 1024;
/// Most bytes (keys and values, roughly) folded into one log entry; a single larger write
/// (up to the KV value limit) still goes through as an entry of its own.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// Roughly how many bytes `command` adds to a log entry.
fn weight(command: &Command) -> usize {
    const OVERHEAD: usize = 32;
    OVERHEAD
        + match command {
            Command::KvSet { key, value, .. } | Command::KvCas { key, value, .. } => {
                key.len() + value.len()
            }
            Command::KvDelete { key } | Command::KvDeleteCas { key, .. } => key.len(),
            Command::KvDeleteTree { prefix } => prefix.len(),
            Command::TombstoneReap { .. } => 0,
            Command::Batch(commands) => commands.iter().map(weight).sum(),
            Command::CatalogRegister(reg) => reg.approx_size(),
            Command::CatalogDeregister {
                node,
                service_id,
                check_id,
            } => {
                node.len()
                    + service_id.as_ref().map_or(0, String::len)
                    + check_id.as_ref().map_or(0, String::len)
            }
            c => c.session_txn_size(),
        }
}

type Reply = oneshot::Sender<Result<Response, Error>>;

/// Handle to the proposer task; cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<(Request, Reply)>,
}

impl Proposer {
    /// Starts the proposer task for `raft`. It ends when every handle is dropped.
    pub fn spawn(raft: Raft) -> Self {
        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(raft, rx));
        Proposer { queue }
    }

    /// Commits `request` and returns what apply answered for it.
    pub async fn write(&self, request: Request) -> Result<Response, Error> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((request, tx))
            .await
            .map_err(|_| Error::Raft("the agent is shutting down".into()))?;
        rx.await
            .map_err(|_| Error::Raft("the agent is shutting down".into()))?
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<(Request, Reply)>) {
    // A write taken from the queue that did not fit the previous batch starts the next one.
    let mut carried: Option<(Request, Reply)> = None;
    loop {
        let first = match carried.take() {
            Some(w) => w,
            None => match rx.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        let mut bytes = weight(&first.0.command);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    let w = weight(&next.0.command);
                    if bytes + w > MAX_BATCH_BYTES {
                        carried = Some(next);
                        break;
                    }
                    bytes += w;
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        if batch.len() == 1 {
            let (request, reply) = batch.swap_remove(0);
            let _ = reply.send(super::write(&raft, request).await);
            continue;
        }
        // The batch carries the latest proposer time of its writes.
        let time_ms = batch.iter().map(|(r, _)| r.time_ms).max().unwrap_or(0);
        let (commands, replies): (Vec<Command>, Vec<Reply>) =
            batch.into_iter().map(|(r, tx)| (r.command, tx)).unzip();
        let n = commands.len();
        let result = super::write(
            &raft,
            Request {
                time_ms,
                command: Command::Batch(commands),
            },
        )
        .await;
        match result {
            Ok(Response::Batch(responses)) if responses.len() == n => {
                for (reply, response) in replies.into_iter().zip(responses) {
                    let _ = reply.send(Ok(response));
                }
            }
            Ok(other) => {
                let msg = format!("batch of {n} writes answered {other:?}");
                tracing::error!("{msg}");
                for reply in replies {
                    let _ = reply.send(Err(Error::Raft(msg.clone())));
                }
            }
            Err(e) => {
                let shared = match &e {
                    Error::NoLeader => None,
                    e => Some(e.to_string()),
                };
                for reply in replies {
                    let _ = reply.send(Err(match &shared {
                        None => Error::NoLeader,
                        Some(m) => Error::Raft(m.clone()),
                    }));
                }
            }
        }
    }
}
