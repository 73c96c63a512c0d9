//! UTC timestamps written and read as RFC 3339.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::TimestampError;

/// A point in time in UTC, with nanosecond precision, written as RFC 3339
/// (`2026-01-02T03:04:05.678Z`).
///
/// Display uses 3, 6 or 9 fractional digits, the fewest that keep the value exact (JavaScript's
/// `Date.toISOString()` writes 3). Parsing accepts any number of fractional digits, `Z` or a
/// numeric offset (`+02:00`), and a lowercase `t`/`z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// A timestamp `secs` seconds and `nanos` nanoseconds after the Unix epoch; `None` when
    /// `nanos` is a second or more, or the year falls outside `0..=9999`.
    pub fn from_unix(secs: i64, nanos: u32) -> Option<Self> {
        // 0000-01-01 and 9999-12-31T23:59:59.
        if nanos >= 1_000_000_000 || !(-62_167_219_200..=253_402_300_799).contains(&secs) {
            return None;
        }
        Some(Self { secs, nanos })
    }

    /// Seconds since the Unix epoch.
    pub const fn unix_seconds(&self) -> i64 {
        self.secs
    }

    /// The sub-second part, in nanoseconds.
    pub const fn subsec_nanos(&self) -> u32 {
        self.nanos
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(e) => {
                let d = e.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    (-secs, 0)
                } else {
                    (-secs - 1, 1_000_000_000 - d.subsec_nanos())
                }
            }
        };
        let secs = secs.clamp(-62_167_219_200, 253_402_300_799);
        Self { secs, nanos }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        let nanos = Duration::from_nanos(u64::from(t.nanos));
        if t.secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(t.secs.unsigned_abs()) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs()) + nanos
        }
    }
}

// Howard Hinnant's `days_from_civil` and `civil_from_days`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

const fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )?;
        if self.nanos.is_multiple_of(1_000_000) {
            write!(f, ".{:03}Z", self.nanos / 1_000_000)
        } else if self.nanos.is_multiple_of(1_000) {
            write!(f, ".{:06}Z", self.nanos / 1_000)
        } else {
            write!(f, ".{:09}Z", self.nanos)
        }
    }
}

fn digits(s: &[u8], at: usize, n: usize) -> Result<u32, TimestampError> {
    let part = s.get(at..at + n).ok_or(TimestampError::Syntax)?;
    let mut v = 0u32;
    for &b in part {
        if !b.is_ascii_digit() {
            return Err(TimestampError::Syntax);
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Ok(v)
}

fn expect(s: &[u8], at: usize, allowed: &[u8]) -> Result<(), TimestampError> {
    match s.get(at) {
        Some(b) if allowed.contains(b) => Ok(()),
        _ => Err(TimestampError::Syntax),
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.as_bytes();
        let year = digits(s, 0, 4)?;
        expect(s, 4, b"-")?;
        let month = digits(s, 5, 2)?;
        expect(s, 7, b"-")?;
        let day = digits(s, 8, 2)?;
        expect(s, 10, b"Tt ")?;
        let hour = digits(s, 11, 2)?;
        expect(s, 13, b":")?;
        let minute = digits(s, 14, 2)?;
        expect(s, 16, b":")?;
        let second = digits(s, 17, 2)?;
        let mut at = 19;
        let mut nanos = 0u32;
        if s.get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            while s.get(at).is_some_and(u8::is_ascii_digit) {
                if at - start < 9 {
                    nanos = nanos * 10 + u32::from(s[at] - b'0');
                }
                at += 1;
            }
            if at == start {
                return Err(TimestampError::Syntax);
            }
            for _ in (at - start)..9 {
                nanos *= 10;
            }
        }
        let offset = match s.get(at) {
            Some(b'Z' | b'z') if at + 1 == s.len() => 0i64,
            Some(&sign @ (b'+' | b'-')) if at + 6 == s.len() => {
                let h = digits(s, at + 1, 2)?;
                expect(s, at + 3, b":")?;
                let m = digits(s, at + 4, 2)?;
                if h > 23 || m > 59 {
                    return Err(TimestampError::OutOfRange);
                }
                let off = i64::from(h * 3600 + m * 60);
                if sign == b'+' { off } else { -off }
            }
            _ => return Err(TimestampError::Syntax),
        };
        let y = i64::from(year);
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(y, month)
            || hour > 23
            || minute > 59
            // A leap second is read as the last second of its minute.
            || second > 60
        {
            return Err(TimestampError::OutOfRange);
        }
        let secs = days_from_civil(y, month, day) * 86_400
            + i64::from(hour * 3600 + minute * 60 + second.min(59))
            - offset;
        Self::from_unix(secs, nanos).ok_or(TimestampError::OutOfRange)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_to_iso_string() {
        let t = Timestamp::from_unix(1_700_000_000, 123_000_000).unwrap();
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            Timestamp::from_unix(0, 0).unwrap().to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_unix(0, 1).unwrap().to_string(),
            "1970-01-01T00:00:00.000000001Z"
        );
        assert_eq!(
            Timestamp::from_unix(-1, 0).unwrap().to_string(),
            "1969-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let a: Timestamp = "2024-02-29T12:00:00+02:00".parse().unwrap();
        let b: Timestamp = "2024-02-29t10:00:00.000000000z".parse().unwrap();
        assert_eq!(a, b);
        let c: Timestamp = "2024-02-29T10:00:00.5Z".parse().unwrap();
        assert_eq!(c.subsec_nanos(), 500_000_000);
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00Zjunk",
            "２024-01-01T00:00:00Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn system_time_round_trip() {
        let now = SystemTime::now();
        assert_eq!(SystemTime::from(Timestamp::from(now)), now);
        let before = UNIX_EPOCH - Duration::from_millis(1500);
        let t = Timestamp::from(before);
        assert_eq!((t.unix_seconds(), t.subsec_nanos()), (-2, 500_000_000));
        assert_eq!(SystemTime::from(t), before);
    }
}
