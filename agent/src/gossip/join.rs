//! `-join` / `-retry-join` / `retry_join`: join the pool at start, retrying every
//! `retry_interval` up to `retry_max` attempts (0: forever). Logged once per change of state
//! (first failure, success), not on every attempt; exhausting `retry_max` stops the agent, as
//! Consul does.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Gossip;

/// Returns an error (after cancelling `shutdown`) when `max` attempts all failed.
pub async fn retry_join(
    gossip: Gossip,
    addrs: Vec<String>,
    interval: Duration,
    max: u32,
    shutdown: CancellationToken,
) -> Result<(), String> {
    tracing::info!(addrs = ?addrs, "Joining cluster...");
    let mut attempts: u32 = 0;
    let mut failing = false;
    loop {
        attempts = attempts.saturating_add(1);
        match gossip.join(&addrs).await {
            Ok(n) => {
                tracing::info!(
                    attempts,
                    "Join cluster completed. Synced with {n} initial agents"
                );
                return Ok(());
            }
            Err(_) if shutdown.is_cancelled() => return Ok(()),
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        error = %e.to_string().trim_end(),
                        "Join cluster failed, will retry every {}",
                        humantime::format_duration(interval)
                    );
                    failing = true;
                } else {
                    tracing::debug!(attempts, error = %e, "Join cluster failed again");
                }
            }
        }
        if max > 0 && attempts >= max {
            tracing::error!(attempts, "agent: max join retry exhausted, exiting");
            shutdown.cancel();
            return Err("agent: max join retry exhausted, exiting".to_string());
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
