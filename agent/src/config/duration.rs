//! Duration strings as Consul writes them: Go's `time.ParseDuration` syntax ("30s", "1m30s",
//! "1.5h", "0", ".5s", "+5s", "100μs"), read with humantime and, for what humantime refuses, a
//! small parser of Go's grammar.

use std::time::Duration;

/// Parses a Go-style duration string. Negative durations are refused (no setting takes one).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("invalid duration \"{s}\": must not be negative"));
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(d),
        Err(_) => parse_go(s).ok_or_else(|| {
            format!("invalid duration \"{s}\" (expected a number and a unit: ns, us, ms, s, m or h, e.g. \"30s\" or \"1m30s\")")
        }),
    }
}

/// Go's grammar: `[+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+`, or a bare "0".
fn parse_go(s: &str) -> Option<Duration> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(r) => {
                let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                r.split_at(n)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = after_num
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_num.len());
        let (unit, after_unit) = after_num.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        total = total.checked_add(whole.checked_mul(nanos_per_unit)?)?;
        if !frac_part.is_empty() {
            // Keep at most 18 fractional digits: beyond nanosecond precision for any unit.
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().ok()?;
            let scale = 10u128.checked_pow(u32::try_from(digits.len()).ok()?)?;
            total = total.checked_add(frac.checked_mul(nanos_per_unit)? / scale)?;
        }
        rest = after_unit;
    }
    let secs = u64::try_from(total / 1_000_000_000).ok()?;
    let nanos = u32::try_from(total % 1_000_000_000).ok()?;
    Some(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
    }

    #[test]
    fn go_only_forms_that_humantime_refuses() {
        assert!(humantime::parse_duration(".5s").is_err());
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("+5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("100μs"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_go("1h0.5m"), Some(Duration::from_secs(3630)));
        assert_eq!(
            parse_go("2h45m"),
            Some(Duration::from_secs(2 * 3600 + 45 * 60))
        );
    }

    #[test]
    fn refused() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_go(".s").is_none());
        assert!(parse_go("99999999999999999999999h").is_none());
    }
}
