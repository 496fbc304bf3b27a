//! Go's duration syntax (`time.ParseDuration`/`Duration.String`), which Consul uses on the wire
//! (`?wait=30s`), in config files (`"interval": "10s"`) and in flags.

use std::time::Duration;

/// Parses a Go duration: `[+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+` or a bare `0`, e.g.
/// `300ms`, `1.5h`, `2h45m`, `.5s`. Exact (integer arithmetic); negative durations are refused.
pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("invalid duration {s:?}: must not be negative"));
    }
    parse_go(s).ok_or_else(|| {
        format!("invalid duration {s:?} (expected a number and a unit: ns, us, ms, s, m or h, e.g. \"30s\" or \"1m30s\")")
    })
}

/// Go's grammar, without the sign check: `[+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+`, or a bare "0".
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

/// Formats like Go's `Duration.String` for whole units most Consul values use: `1h2m3s`, `30s`,
/// `150ms`, `0s`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}µs", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let frac = d.subsec_nanos();
    let sec_part = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{:09}", frac);
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => sec_part,
        (0, m) => format!("{m}m{sec_part}"),
        (h, m) => format!("{h}h{m}m{sec_part}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("150ms"), Ok(Duration::from_millis(150)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("+5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("100μs"), Ok(Duration::from_micros(100)));
        assert_eq!(parse("1h0.5m"), Ok(Duration::from_secs(3630)));
        for bad in [
            "",
            "abc",
            "10",
            "-5s",
            "5x",
            "s",
            "1..5s",
            ".s",
            "99999999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(30)), "30s");
        assert_eq!(format(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(format(Duration::from_secs(600)), "10m0s");
        assert_eq!(format(Duration::from_millis(150)), "150ms");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(
            parse(&format(Duration::from_millis(90_500))),
            Ok(Duration::from_millis(90_500))
        );
    }
}
