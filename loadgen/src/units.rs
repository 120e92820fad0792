//! Numbers with units: parsing the command line's `2k`, `30s`, `500ms`, and formatting the report's
//! `1.20ms`, `5.14k`, `25.90MB` exactly as wrk2's `units.c` does.

use std::time::Duration;

/// Why a number with a unit could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The text is not a number followed by a known unit.
    #[error("invalid number '{0}' (expected e.g. 100, 2k, 1.5M)")]
    Metric(String),
    /// The text is not a duration.
    #[error("invalid duration '{0}' (expected e.g. 30, 30s, 1.5s, 500ms, 2m, 1h)")]
    Time(String),
}

/// Splits `"1.5k"` into `(1.5, "k")`; `None` when there is no leading number.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(end);
    if num.is_empty() || num == "." {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    Some((value, unit))
}

/// Reads a metric number as wrk2 does (`k`, `M`, `G`, `T`, `P`, case-insensitive, so `1m` is a
/// million), and also accepts fractions (`1.5k`, `0.5`), which wrk2 rejects.
pub fn parse_metric(text: &str) -> Result<f64, UnitError> {
    let err = || UnitError::Metric(text.to_string());
    let (value, unit) = split_number(text.trim()).ok_or_else(err)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        _ => return Err(err()),
    };
    let v = value * scale;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(err())
    }
}

/// Reads a metric count that must be a whole number (connections, threads).
pub fn parse_count(text: &str) -> Result<u64, UnitError> {
    let v = parse_metric(text)?;
    if v.fract() != 0.0 || v > u64::MAX as f64 {
        return Err(UnitError::Metric(text.to_string()));
    }
    Ok(v as u64)
}

/// Reads a duration: a bare number is seconds; units `us`, `ms`, `s`, `m` (minutes), `h`,
/// case-insensitive like wrk2 (so `1M` is a minute). Fractions are accepted (`1.5s`).
pub fn parse_time(text: &str) -> Result<Duration, UnitError> {
    let err = || UnitError::Time(text.to_string());
    let (value, unit) = split_number(text.trim()).ok_or_else(err)?;
    let secs = match unit.to_ascii_lowercase().as_str() {
        "" | "s" => value,
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| err())
}

/// One of wrk's unit ladders: a base unit and the bigger ones, each `scale` times the previous.
struct Ladder {
    scale: f64,
    base: &'static str,
    units: &'static [&'static str],
}

const TIME_US: Ladder = Ladder {
    scale: 1000.0,
    base: "us",
    units: &["ms", "s"],
};
const TIME_S: Ladder = Ladder {
    scale: 60.0,
    base: "s",
    units: &["m", "h"],
};
const BINARY: Ladder = Ladder {
    scale: 1024.0,
    base: "",
    units: &["K", "M", "G", "T", "P"],
};
const METRIC: Ladder = Ladder {
    scale: 1000.0,
    base: "",
    units: &["k", "M", "G", "T", "P"],
};

/// wrk's `format_units`: climbs while the amount is at least 0.85 of the next unit, but never to
/// the ladder's last unit (that is how wrk's loop is written, so hours and PB never appear).
fn format_units(n: f64, ladder: &Ladder, precision: usize) -> String {
    let mut amount = n;
    let mut unit = ladder.base;
    let threshold = ladder.scale * 0.85;
    let mut i = 0;
    while i + 1 < ladder.units.len() && amount >= threshold {
        amount /= ladder.scale;
        unit = ladder.units[i];
        i += 1;
    }
    format!("{amount:.precision$}{unit}")
}

/// A latency in µs as wrk prints it: `829.00us`, `1.20ms`, `5.00s`, `1.02m`.
pub fn format_time_us(n: f64) -> String {
    if n.is_nan() {
        return "-nanus".to_string();
    }
    if n >= 1_000_000.0 {
        format_units(n / 1_000_000.0, &TIME_S, 2)
    } else {
        format_units(n, &TIME_US, 2)
    }
}

/// A duration in seconds with no decimals, as in `Running 2m test`.
pub fn format_time_s(n: f64) -> String {
    format_units(n, &TIME_S, 0)
}

/// A byte count with binary units and two decimals (`25.90M`; the caller appends `B`).
pub fn format_binary(n: f64) -> String {
    format_units(n, &BINARY, 2)
}

/// A number with metric units and two decimals (`5.17k`).
pub fn format_metric(n: f64) -> String {
    if n.is_nan() {
        return "-nan".to_string();
    }
    format_units(n, &METRIC, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_like_wrk2_plus_fractions() {
        assert_eq!(parse_metric("2k").unwrap(), 2000.0);
        assert_eq!(parse_metric("1K").unwrap(), 1000.0);
        assert_eq!(parse_metric("1m").unwrap(), 1e6);
        assert_eq!(parse_metric("1.5k").unwrap(), 1500.0);
        assert_eq!(parse_metric("0.5").unwrap(), 0.5);
        assert!(parse_metric("10x").is_err());
        assert!(parse_metric("-5").is_err());
        assert!(parse_metric("").is_err());
        assert!(parse_metric("k").is_err());
        assert_eq!(parse_count("3").unwrap(), 3);
        assert!(parse_count("1.5").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_time("2S").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_time("1M").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_time("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_time("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_time("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_time("10sec").is_err());
        assert!(parse_time("-1s").is_err());
    }

    #[test]
    fn formats_match_wrk() {
        assert_eq!(format_time_us(814.15), "814.15us");
        assert_eq!(format_time_us(900.0), "0.90ms");
        assert_eq!(format_time_us(3618.0), "3.62ms");
        assert_eq!(format_time_us(5_000_000.0), "5.00s");
        assert_eq!(format_time_us(61_000_000.0), "1.02m");
        assert_eq!(format_time_s(15.0), "15s");
        assert_eq!(format_time_s(90.0), "2m");
        assert_eq!(format_binary(80.0), "80.00");
        assert_eq!(format_binary(0.89 * 1024.0), "0.89K");
        assert_eq!(format_metric(5170.0), "5.17k");
        assert_eq!(format_metric(381.44), "381.44");
    }
}
