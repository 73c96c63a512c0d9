//! Go duration strings (`"10s"`, `"1m30s"`, `"500ms"`), the format Consul reads and writes.

use std::time::Duration;

/// Formats a duration the way Consul parses it: whole seconds as `"10s"`, otherwise
/// milliseconds as `"1500ms"` (sub-millisecond parts are dropped; callers validate minimums).
pub(crate) fn format(d: Duration) -> String {
    let millis = d.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{millis}ms")
    }
}

/// Parses a Go duration: a sequence of `<number><unit>` with units `ns`, `us`, `µs`, `ms`,
/// `s`, `m`, `h` (decimal fractions allowed, as in `"1.5s"`). `"0"` is zero.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub(crate) fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for d in [
            Duration::from_secs(10),
            Duration::from_millis(1500),
            Duration::from_secs(300),
        ] {
            assert_eq!(parse(&format(d)), Some(d));
        }
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("10"), None);
        assert_eq!(parse("s"), None);
    }
}
