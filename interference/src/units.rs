//! Parsing of the physical units on the command line: sizes, memory-bandwidth rates, network
//! bandwidths, durations and CPU lists. Hand-written (a few dozen lines) because each needs its own
//! error message naming the bad value and the accepted forms, and because `50%` and `max` are not
//! units any size crate knows.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A memory size: absolute, or a share of the memory limit (cgroup limit, else host memory).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Size {
    /// Bytes.
    Bytes(u64),
    /// Percent (0 < p <= 100) of the memory limit.
    PercentOfLimit(f64),
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Bytes(b) => write!(f, "{b}"),
            Size::PercentOfLimit(p) => write!(f, "{p}%"),
        }
    }
}

/// A memory-bandwidth target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Rate {
    /// As fast as the kernel goes.
    Max,
    /// A total target in GB/s (1e9 bytes per second, STREAM counting: bytes read + bytes written).
    GBps(f64),
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Max => write!(f, "max"),
            Rate::GBps(r) => write!(f, "{r}GB/s"),
        }
    }
}

/// Splits "12.5GiB" into (12.5, "GiB"); the number must be finite and non-negative.
fn split_number<'a>(what: &'static str, text: &'a str) -> Result<(f64, &'a str)> {
    let t = text.trim();
    let end = t
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(t.len());
    if end == 0 {
        return Err(Error::parse(what, text, "expected a number first"));
    }
    let n: f64 = t[..end]
        .parse()
        .map_err(|_| Error::parse(what, text, "not a number"))?;
    if !n.is_finite() {
        return Err(Error::parse(what, text, "not a finite number"));
    }
    Ok((n, t[end..].trim()))
}

/// Parses a size: `1GiB`, `512MiB`, `64KiB`, `1Gi` (binary), `1GB`, `1G` (decimal, 1e9), plain
/// bytes, or `50%` of the memory limit.
pub fn parse_size(text: &str) -> Result<Size> {
    let (n, unit) = split_number("size", text)?;
    let mult: f64 =
        match unit.to_ascii_lowercase().as_str() {
            "%" => {
                if n <= 0.0 || n > 100.0 {
                    return Err(Error::parse(
                        "size",
                        text,
                        "a percentage must be in (0, 100]",
                    ));
                }
                return Ok(Size::PercentOfLimit(n));
            }
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "ki" | "kib" => 1024.0,
            "mi" | "mib" => 1024.0 * 1024.0,
            "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
            "ti" | "tib" => 1024.0f64.powi(4),
            _ => return Err(Error::parse(
                "size",
                text,
                "unknown unit; use B, KiB, MiB, GiB, TiB (binary), kB, MB, GB, TB (decimal) or %",
            )),
        };
    let bytes = n * mult;
    if bytes < 1.0 || bytes > u64::MAX as f64 / 2.0 {
        return Err(Error::parse(
            "size",
            text,
            "must be at least 1 byte and below 2^63",
        ));
    }
    Ok(Size::Bytes(bytes.round() as u64))
}

/// Parses a memory-bandwidth rate: `max`, or `8GB/s`, `500MB/s` (the `/s` is optional; decimal units).
pub fn parse_rate(text: &str) -> Result<Rate> {
    if text.trim().eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    let (n, unit) = split_number("rate", text)?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit.strip_suffix("/s").unwrap_or(&unit);
    let gb = match unit {
        "gb" | "g" | "" => n,
        "mb" | "m" => n / 1e3,
        "tb" | "t" => n * 1e3,
        _ => {
            return Err(Error::parse(
                "rate",
                text,
                "use max, or GB/s, MB/s (e.g. 8GB/s)",
            ))
        }
    };
    if gb <= 0.0 {
        return Err(Error::parse("rate", text, "must be above zero (or max)"));
    }
    Ok(Rate::GBps(gb))
}

/// Parses a network bandwidth in bits per second: `1G`, `100M`, `1Gbit`, `1Gbit/s`, `2.5g`, or plain
/// bits/s. Units are decimal, as in iperf3 (`1M` = 1,000,000 bit/s).
pub fn parse_bandwidth(text: &str) -> Result<u64> {
    let (n, unit) = split_number("bandwidth", text)?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit.strip_suffix("/s").unwrap_or(&unit);
    let unit = unit
        .strip_suffix("bps")
        .or_else(|| unit.strip_suffix("bit"))
        .unwrap_or(unit);
    let mult = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        _ => {
            return Err(Error::parse(
                "bandwidth",
                text,
                "use bits per second with an optional K, M, G suffix (e.g. 1G, 100M, 1Gbit/s)",
            ))
        }
    };
    let bps = (n * mult).round();
    if bps < 1.0 || bps > u64::MAX as f64 / 2.0 {
        return Err(Error::parse("bandwidth", text, "must be at least 1 bit/s"));
    }
    Ok(bps as u64)
}

/// Parses a duration on the wall clock: `10s`, `500ms`, `2m`, `1h`, `1.5s`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let (n, unit) = split_number("duration", text)?;
    let secs = match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => {
            return Err(Error::parse(
                "duration",
                text,
                "use a number with ms, s, m, h or d (e.g. 10s)",
            ))
        }
    };
    if secs <= 0.0 || secs > 1e9 {
        return Err(Error::parse("duration", text, "must be above zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration the way [`parse_duration`] reads it back (milliseconds when not whole seconds).
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

/// Parses a CPU list as in cpusets: `0,2-3,8`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    let t = text.trim();
    if t.is_empty() {
        return Ok(cpus);
    }
    for part in t.split(',') {
        let part = part.trim();
        let bad = || {
            Error::parse(
                "CPU list",
                text,
                format!("bad item {part:?}; expected e.g. 0,2-3"),
            )
        };
        if let Some((a, b)) = part.split_once('-') {
            let a: usize = a.trim().parse().map_err(|_| bad())?;
            let b: usize = b.trim().parse().map_err(|_| bad())?;
            if b < a || b - a > 65536 {
                return Err(bad());
            }
            cpus.extend(a..=b);
        } else {
            cpus.push(part.parse().map_err(|_| bad())?);
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Formats a CPU list as comma-separated ids.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB").unwrap(), Size::Bytes(1 << 30));
        assert_eq!(parse_size("1Gi").unwrap(), Size::Bytes(1 << 30));
        assert_eq!(parse_size("512MiB").unwrap(), Size::Bytes(512 << 20));
        assert_eq!(parse_size("1GB").unwrap(), Size::Bytes(1_000_000_000));
        assert_eq!(parse_size("4096").unwrap(), Size::Bytes(4096));
        assert_eq!(parse_size("1.5KiB").unwrap(), Size::Bytes(1536));
        assert_eq!(parse_size("50%").unwrap(), Size::PercentOfLimit(50.0));
        for bad in ["", "GiB", "1XB", "-1GiB", "0", "150%", "0%", "1..2G"] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("max").unwrap(), Rate::Max);
        assert_eq!(parse_rate("MAX").unwrap(), Rate::Max);
        assert_eq!(parse_rate("8GB/s").unwrap(), Rate::GBps(8.0));
        assert_eq!(parse_rate("500MB/s").unwrap(), Rate::GBps(0.5));
        assert_eq!(parse_rate("2.5").unwrap(), Rate::GBps(2.5));
        for bad in ["fast", "8Gbit", "0GB/s", "GB/s"] {
            assert!(parse_rate(bad).unwrap_err().to_string().contains(bad));
        }
    }

    #[test]
    fn bandwidths() {
        assert_eq!(parse_bandwidth("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bandwidth("100M").unwrap(), 100_000_000);
        assert_eq!(parse_bandwidth("1Gbit/s").unwrap(), 1_000_000_000);
        assert_eq!(parse_bandwidth("2.5g").unwrap(), 2_500_000_000);
        assert_eq!(parse_bandwidth("1000").unwrap(), 1000);
        for bad in ["1GB/s", "x", "0"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["ten", "10x", "0s", ""] {
            assert!(parse_duration(bad)
                .unwrap_err()
                .to_string()
                .contains(&format!("{bad:?}")));
        }
        for d in [Duration::from_secs(3), Duration::from_millis(1500)] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0,2-3,8").unwrap(), vec![0, 2, 3, 8]);
        assert_eq!(parse_cpu_list("1\n").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert_eq!(format_cpu_list(&[0, 2]), "0,2");
    }
}
