//! The leader's session TTL timers: outside the deterministic state machine, as in Consul.
//!
//! Each session with a TTL gets a deadline of twice its TTL (Consul's `SessionTTLMultiplier`:
//! a session is guaranteed to live at least its TTL, and is invalidated by 2×TTL unrenewed).
//! Renewing resets the deadline; when one passes, the leader proposes `SessionDestroy` through
//! the normal write path, so the invalidation (and the release or deletion of the session's
//! keys) is one replicated command. The deadlines live only in the leader's memory: a server
//! that gains leadership starts every TTL session's timer afresh, which can only lengthen a
//! session's life, never shorten it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::server::Agent;
use crate::state::Command;

/// Consul's multiplier between a session's TTL and the moment it is invalidated.
pub const TTL_MULTIPLIER: u32 = 2;
/// How often the timers look for sessions created or destroyed elsewhere.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Deadline per session ID (on the leader only).
#[derive(Default)]
pub struct Timers {
    deadlines: Mutex<HashMap<String, Instant>>,
    wake: Notify,
}

/// A session's TTL as a duration; `None` for none (empty, zero or unparsable).
pub fn ttl_of(ttl: &str) -> Option<Duration> {
    if ttl.is_empty() {
        return None;
    }
    muster_api::duration::parse(ttl)
        .ok()
        .filter(|d| !d.is_zero())
}

impl Timers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.deadlines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (Re)starts `id`'s timer: invalidation at 2×TTL from now.
    pub fn reset(&self, id: &str, ttl: Duration) {
        self.lock()
            .insert(id.to_string(), Instant::now() + ttl * TTL_MULTIPLIER);
        self.wake.notify_one();
    }
}

/// Runs while the agent runs: on the leader, proposes the destruction of expired sessions.
pub async fn run(agent: Arc<Agent>) {
    let timers = agent.session_timers.clone();
    loop {
        let leader = agent.raft.metrics().borrow().current_leader == Some(agent.raft_id);
        let mut next = Instant::now() + SYNC_EVERY;
        if !leader {
            // A new leader starts every timer afresh.
            timers.lock().clear();
        } else {
            let tables = agent.store.read();
            let now = Instant::now();
            let expired: Vec<String> = {
                let mut map = timers.lock();
                map.retain(|id, _| tables.sessions.rows.contains_key(id));
                for row in tables.sessions.rows.values() {
                    if let Some(ttl) = ttl_of(&row.ttl) {
                        map.entry(row.id.clone())
                            .or_insert_with(|| now + ttl * TTL_MULTIPLIER);
                    }
                }
                if let Some(first) = map.values().min() {
                    next = next.min(*first);
                }
                map.iter()
                    .filter(|(_, d)| **d <= now)
                    .map(|(id, _)| id.clone())
                    .collect()
            };
            for id in expired {
                tracing::info!(session = %id, "session TTL expired; invalidating");
                match agent
                    .write(Command::SessionDestroy { id: id.clone() })
                    .await
                {
                    Ok(_) => {
                        timers.lock().remove(&id);
                    }
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "invalidating an expired session failed; will retry")
                    }
                }
            }
        }
        tokio::select! {
            _ = agent.shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            _ = timers.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parsing() {
        assert_eq!(ttl_of(""), None);
        assert_eq!(ttl_of("0s"), None);
        assert_eq!(ttl_of("15s"), Some(Duration::from_secs(15)));
        assert_eq!(ttl_of("junk"), None);
    }
}
