//! Consul's `StatusHandler`: success/failure thresholds between a check's runs and its reports.

use super::HealthStatus;

/// Counts consecutive successes and failures of one check and decides, as Consul's
/// `StatusHandler` does, which results are reported:
///
/// * passing or warning counts as a success: it resets the failure count and is reported once
///   `success_before_passing` successes came in a row;
/// * critical counts as a failure: it resets the success count and is reported as critical
///   once `failures_before_critical` failures came in a row, else as warning once
///   `failures_before_warning` did;
/// * below a threshold nothing is reported: the check keeps its previous status *and* output
///   (Consul only logs "Check passed but has not reached success threshold").
///
/// Both counters start at their thresholds, so the first result after registration is
/// reported at once whatever the thresholds are (Consul's `NewStatusHandler`).
#[derive(Debug, Clone)]
pub struct StatusHandler {
    success_before_passing: u32,
    success_counter: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
    failures_counter: u32,
}

impl StatusHandler {
    /// A handler with Consul's thresholds; the caller applies Consul's default of
    /// `failures_before_warning` (= `failures_before_critical` when unset).
    pub fn new(
        success_before_passing: u32,
        failures_before_warning: u32,
        failures_before_critical: u32,
    ) -> StatusHandler {
        StatusHandler {
            success_before_passing,
            success_counter: success_before_passing,
            failures_before_warning,
            failures_before_critical,
            failures_counter: failures_before_critical,
        }
    }

    /// Takes one run's result; returns what to report, if anything.
    pub fn update(
        &mut self,
        status: HealthStatus,
        output: String,
    ) -> Option<(HealthStatus, String)> {
        match status {
            HealthStatus::Passing | HealthStatus::Warning => {
                self.success_counter = self.success_counter.saturating_add(1);
                self.failures_counter = 0;
                if self.success_counter >= self.success_before_passing {
                    return Some((status, output));
                }
                tracing::debug!(
                    status = status.as_str(),
                    success_count = self.success_counter,
                    success_threshold = self.success_before_passing,
                    "check passed but has not reached success threshold"
                );
                None
            }
            HealthStatus::Critical | HealthStatus::Maintenance => {
                self.failures_counter = self.failures_counter.saturating_add(1);
                self.success_counter = 0;
                if self.failures_counter >= self.failures_before_critical {
                    return Some((status, output));
                }
                if self.failures_counter >= self.failures_before_warning {
                    return Some((HealthStatus::Warning, output));
                }
                tracing::debug!(
                    failure_count = self.failures_counter,
                    warning_threshold = self.failures_before_warning,
                    failure_threshold = self.failures_before_critical,
                    "check failed but has not reached warning/failure threshold"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    fn feed(h: &mut StatusHandler, s: HealthStatus) -> Option<HealthStatus> {
        h.update(s, format!("{s:?}")).map(|(s, _)| s)
    }

    #[test]
    fn no_thresholds_reports_everything() {
        let mut h = StatusHandler::new(0, 0, 0);
        for s in [Passing, Critical, Warning, Critical, Passing] {
            assert_eq!(feed(&mut h, s), Some(s));
        }
    }

    #[test]
    fn first_result_is_reported_at_once() {
        let mut h = StatusHandler::new(3, 3, 3);
        assert_eq!(feed(&mut h, Critical), Some(Critical));
        let mut h = StatusHandler::new(3, 3, 3);
        assert_eq!(feed(&mut h, Passing), Some(Passing));
    }

    #[test]
    fn success_before_passing() {
        let mut h = StatusHandler::new(2, 0, 0);
        assert_eq!(feed(&mut h, Critical), Some(Critical));
        assert_eq!(
            feed(&mut h, Passing),
            None,
            "one success is below the threshold"
        );
        assert_eq!(feed(&mut h, Passing), Some(Passing));
        assert_eq!(feed(&mut h, Passing), Some(Passing));
        // A failure resets the success count.
        assert_eq!(feed(&mut h, Critical), Some(Critical));
        assert_eq!(feed(&mut h, Warning), None, "warning counts as a success");
        assert_eq!(feed(&mut h, Warning), Some(Warning));
    }

    #[test]
    fn failures_before_critical_and_warning() {
        // Consul's default: warning threshold = critical threshold.
        let mut h = StatusHandler::new(0, 3, 3);
        assert_eq!(feed(&mut h, Passing), Some(Passing));
        assert_eq!(feed(&mut h, Critical), None);
        assert_eq!(feed(&mut h, Critical), None);
        assert_eq!(feed(&mut h, Critical), Some(Critical));
        // A success in between resets the failure count.
        assert_eq!(feed(&mut h, Passing), Some(Passing));
        assert_eq!(feed(&mut h, Critical), None);
        assert_eq!(feed(&mut h, Passing), Some(Passing));

        let mut h = StatusHandler::new(0, 1, 3);
        assert_eq!(feed(&mut h, Passing), Some(Passing));
        assert_eq!(feed(&mut h, Critical), Some(Warning));
        assert_eq!(feed(&mut h, Critical), Some(Warning));
        assert_eq!(feed(&mut h, Critical), Some(Critical));
        assert_eq!(feed(&mut h, Critical), Some(Critical));
    }

    #[test]
    fn output_travels_with_the_reported_status() {
        let mut h = StatusHandler::new(0, 1, 2);
        h.update(Passing, "ok".into());
        assert_eq!(
            h.update(Critical, "boom".into()),
            Some((Warning, "boom".to_string()))
        );
    }
}
