//! Time windows and the time syntax of the command line: Unix seconds, RFC 3339, `now`, `now-5m`.
//!
//! Parsing of RFC 3339 timestamps and of durations (`10s`, `5m`, `1h30m`, ISO 8601 `PT5M`) is done
//! by `jiff`; only the `now±duration` wrapper is ours.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The time window of one test case, inclusive at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant of the window.
    pub start: SystemTime,
    /// Last instant of the window (inclusive).
    pub end: SystemTime,
}

impl Window {
    /// A window; fails when `end` is before `start`.
    pub fn new(start: SystemTime, end: SystemTime) -> Result<Self> {
        if end < start {
            return Err(Error::Invalid {
                what: "window",
                message: format!("end {} is before start {}", rfc3339(end), rfc3339(start)),
            });
        }
        Ok(Window { start, end })
    }

    /// Length of the window.
    pub fn duration(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }

    /// Start as Unix seconds.
    pub fn start_secs(&self) -> f64 {
        unix_secs(self.start)
    }

    /// End as Unix seconds.
    pub fn end_secs(&self) -> f64 {
        unix_secs(self.end)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", rfc3339(self.start), rfc3339(self.end))
    }
}

/// Unix seconds (float) of a time; times before the epoch give negative values.
pub fn unix_secs(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Unix microseconds of a time (Jaeger's unit).
pub fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// RFC 3339 rendering (UTC, millisecond precision as jiff prints it).
pub fn rfc3339(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.to_string(),
        Err(_) => format!("{:.3}", unix_secs(t)),
    }
}

/// Parses a duration: `10s`, `5m`, `1h30m`, `250ms`, ISO 8601 `PT5M`, or bare seconds (`30`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let bad = |m: String| Error::Invalid {
        what: "duration",
        message: format!("`{s}`: {m}"),
    };
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| bad(e.to_string()));
    }
    let sd: jiff::SignedDuration = s.parse().map_err(|e: jiff::Error| bad(e.to_string()))?;
    if sd.is_negative() {
        return Err(bad("negative".into()));
    }
    Ok(sd.unsigned_abs())
}

/// Unix seconds as a decimal string, exactly (no float rounding: `1700000000.181` stays .181).
fn parse_unix(t: &str) -> Option<Duration> {
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = int.parse().ok()?;
    let mut nanos = 0u32;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(Duration::new(secs, nanos))
}

/// Parses a time: Unix seconds (`1732500000`, `1732500000.25`), RFC 3339
/// (`2026-11-25T01:00:00Z`), `now`, or `now-5m` / `now+30s`.
pub fn parse_time(s: &str) -> Result<SystemTime> {
    parse_time_at(s, SystemTime::now())
}

/// [`parse_time`] with an explicit "now" (for tests and for one consistent now per command).
pub fn parse_time_at(s: &str, now: SystemTime) -> Result<SystemTime> {
    let t = s.trim();
    let bad = |m: String| Error::Invalid {
        what: "time",
        message: format!(
            "`{t}`: {m} (expected Unix seconds, RFC 3339 such as 2026-11-25T01:00:00Z, or now-5m)"
        ),
    };
    if let Some(rest) = t.strip_prefix("now") {
        let rest = rest.trim();
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, d) = rest.split_at(1);
        let d = parse_duration(d).map_err(|e| bad(e.to_string()))?;
        return match sign {
            "-" => now
                .checked_sub(d)
                .ok_or_else(|| bad("before the epoch".into())),
            "+" => now.checked_add(d).ok_or_else(|| bad("out of range".into())),
            _ => Err(bad("expected now-DURATION or now+DURATION".into())),
        };
    }
    if let Some(d) = parse_unix(t) {
        return Ok(UNIX_EPOCH + d);
    }
    let ts: jiff::Timestamp = t.parse().map_err(|e: jiff::Error| {
        // jiff's message helps for a mistyped timestamp, not for a word like `yesterday`.
        if t.starts_with(|c: char| c.is_ascii_digit()) {
            bad(e.to_string())
        } else {
            bad("not a time".into())
        }
    })?;
    Ok(SystemTime::from(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_time_at("now-5m", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_000_000 - 300)
        );
        assert_eq!(parse_time_at("now", now).unwrap(), now);
        assert_eq!(
            parse_time_at("1700000000.5", now).unwrap(),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)
        );
        assert_eq!(
            parse_time_at("1700000000.181", now).unwrap(),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_181)
        );
        assert_eq!(
            parse_time_at("1970-01-01T00:01:00Z", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(60)
        );
        assert_eq!(
            parse_time_at("1970-01-01T01:01:00+01:00", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(60)
        );
        assert!(parse_time_at("yesterday", now).is_err());
        assert!(parse_time_at("now*5m", now).is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn window_rejects_reversed() {
        let a = UNIX_EPOCH + Duration::from_secs(10);
        assert!(Window::new(a, a - Duration::from_secs(1)).is_err());
        assert_eq!(Window::new(a, a).unwrap().duration(), Duration::ZERO);
    }
}
