//! Duration strings as Consul writes them (Go's `time.ParseDuration` syntax): one parser for
//! the whole project lives in `muster_api::duration`; this names it for the config code.

use std::time::Duration;

/// Parses a Go-style duration string ("30s", "1m30s", "1.5h", "0"); negative ones are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    muster_api::duration::parse(s)
}
