//! A TTL check's dead-man timer (Consul's `CheckTTL`): critical when not touched in time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{truncate_str, HealthStatus, Report, OUTPUT_MAX};

/// A TTL check's timer: critical with output "TTL expired" when not touched within `ttl`.
///
/// It reports once per expiry (like Consul's one-shot timer); the next touch starts a new
/// `ttl`. It stops when the token given to [`TtlTimer::spawn`] fires or when it is dropped.
#[derive(Debug)]
pub struct TtlTimer {
    shared: Arc<Shared>,
    _stop: DropGuard,
}

/// What the timer's task and its handle share.
#[derive(Debug, Default)]
struct Shared {
    /// Woken by every touch.
    touched: Notify,
    /// The output of the last update, quoted when the TTL expires.
    last_output: Mutex<String>,
}

impl TtlTimer {
    /// Starts the timer: it expires `ttl` from now unless touched.
    pub fn spawn(ttl: Duration, report: Report, cancel: CancellationToken) -> TtlTimer {
        let stop = cancel.child_token();
        let shared = Arc::new(Shared::default());
        let first_deadline = Instant::now() + ttl;
        tokio::spawn(run(
            ttl,
            first_deadline,
            report,
            stop.clone(),
            shared.clone(),
        ));
        TtlTimer {
            shared,
            _stop: stop.drop_guard(),
        }
    }

    /// Resets the deadline (called on every pass/warn/fail/update of the check).
    pub fn touch(&self) {
        self.shared.touched.notify_one();
    }

    /// Resets the deadline and remembers `output` to quote if the TTL expires, as Consul's
    /// `SetStatus` does; returns the output as Consul stores it (cut to 4 KiB with a note
    /// saying how much was captured).
    pub fn touch_with_output(&self, output: &str) -> String {
        let output = truncate_ttl_output(output);
        if let Ok(mut last) = self.shared.last_output.lock() {
            last.clone_from(&output);
        }
        self.touch();
        output
    }
}

/// Consul's `CheckTTL.SetStatus` truncation: `<first 4 KiB> ... (captured 4096 of N bytes)`.
pub fn truncate_ttl_output(output: &str) -> String {
    if output.len() <= OUTPUT_MAX {
        return output.to_string();
    }
    let mut head = output.to_string();
    truncate_str(&mut head, OUTPUT_MAX);
    format!(
        "{head} ... (captured {} of {} bytes)",
        OUTPUT_MAX,
        output.len()
    )
}

/// The timer's task.
async fn run(
    ttl: Duration,
    first_deadline: Instant,
    report: Report,
    stop: CancellationToken,
    shared: Arc<Shared>,
) {
    let mut deadline = Some(first_deadline);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = shared.touched.notified() => deadline = Some(Instant::now() + ttl),
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                if deadline.is_some() =>
            {
                deadline = None;
                tracing::warn!("check missed TTL, is now critical");
                report(HealthStatus::Critical, expired_output(&shared));
            }
        }
    }
}

/// Consul's `getExpiredOutput`: "TTL expired", quoting the last output when there was one.
fn expired_output(shared: &Shared) -> String {
    let last = shared
        .last_output
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    if last.is_empty() {
        "TTL expired".to_string()
    } else {
        format!("TTL expired (last output before timeout follows): {last}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::channel_report;
    use super::*;

    /// Lets the timer task run at the current (paused) instant.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expires_once_then_again_after_a_touch() {
        let (report, mut rx) = channel_report();
        let cancel = CancellationToken::new();
        let timer = TtlTimer::spawn(Duration::from_secs(10), report, cancel.clone());

        tokio::time::sleep(Duration::from_secs(9)).await;
        settle().await;
        assert!(rx.try_recv().is_err(), "not expired before the TTL");
        timer.touch();
        settle().await;
        tokio::time::sleep(Duration::from_secs(9)).await;
        settle().await;
        assert!(rx.try_recv().is_err(), "a touch restarts the TTL");

        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(
            rx.try_recv().ok(),
            Some((HealthStatus::Critical, "TTL expired".to_string()))
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        settle().await;
        assert!(rx.try_recv().is_err(), "one report per expiry");

        let stored = timer.touch_with_output("all good");
        assert_eq!(stored, "all good");
        settle().await;
        tokio::time::sleep(Duration::from_secs(11)).await;
        settle().await;
        assert_eq!(
            rx.try_recv().ok(),
            Some((
                HealthStatus::Critical,
                "TTL expired (last output before timeout follows): all good".to_string()
            ))
        );
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn stops_on_cancel_and_on_drop() {
        let (report, mut rx) = channel_report();
        let cancel = CancellationToken::new();
        let timer = TtlTimer::spawn(Duration::from_secs(1), report.clone(), cancel.clone());
        cancel.cancel();
        tokio::time::sleep(Duration::from_secs(5)).await;
        settle().await;
        assert!(rx.try_recv().is_err());
        drop(timer);

        let timer = TtlTimer::spawn(Duration::from_secs(1), report, CancellationToken::new());
        drop(timer);
        tokio::time::sleep(Duration::from_secs(5)).await;
        settle().await;
        assert!(rx.try_recv().is_err(), "a dropped timer reports nothing");
        // Every clone of the report is gone once both tasks ended.
        assert!(rx.recv().await.is_none());
    }

    #[test]
    fn long_output_is_cut_like_consul() {
        let long = "x".repeat(5000);
        let out = truncate_ttl_output(&long);
        assert!(out.starts_with(&"x".repeat(4096)));
        assert!(out.ends_with(" ... (captured 4096 of 5000 bytes)"));
        assert_eq!(truncate_ttl_output("short"), "short");
    }
}
