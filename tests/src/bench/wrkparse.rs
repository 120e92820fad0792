//! Parser of the text report of wrk 4, wrk2 and aefm-load (which prints wrk2's format): banner,
//! calibration lines, Thread Stats rows, the corrected (`HdrHistogram - Recorded Latency`),
//! uncorrected (`-U`) and wrk 4 (`--latency`) distribution blocks with their detailed spectra,
//! totals, socket errors, non-2xx count, Requests/sec and Transfer/sec. Latencies are in µs,
//! byte counts in bytes; values wrk2 prints as `nan` become `None`. Lines it does not know (a
//! script's `done()` output, warnings) are skipped.

use serde::Serialize;

/// Which latency distribution block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    /// wrk2's `Latency Distribution (HdrHistogram - Recorded Latency)`.
    Corrected,
    /// wrk2's `-U` block (`... Uncorrected Latency ...`).
    Uncorrected,
    /// wrk 4's `Latency Distribution` (`--latency`; with coordinated omission).
    Wrk,
}

/// The `Avg Stdev Max +/- Stdev` columns of a Thread Stats row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StatsRow {
    /// Mean.
    pub avg: Option<f64>,
    /// Standard deviation.
    pub stdev: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Share of samples within mean ± stdev, %.
    pub within_stdev_pct: Option<f64>,
}

/// One row of a detailed percentile spectrum.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SpectrumRow {
    /// Value, ms (as printed).
    pub value_ms: f64,
    /// Percentile as a fraction.
    pub percentile: f64,
    /// Cumulative count.
    pub total_count: u64,
}

/// One latency distribution block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Distribution {
    /// Which block.
    pub kind: Block,
    /// `(percent, latency µs)` rows as printed, e.g. `(99.9, 2990.0)`.
    pub percentiles: Vec<(f64, f64)>,
    /// Detailed spectrum rows.
    pub spectrum: Vec<SpectrumRow>,
    /// Footer: mean, ms.
    pub mean_ms: Option<f64>,
    /// Footer: standard deviation, ms.
    pub stddev_ms: Option<f64>,
    /// Footer: max, ms.
    pub max_ms: Option<f64>,
    /// Footer: total count.
    pub total_count: Option<u64>,
}

/// wrk's four socket error counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SocketErrors {
    /// Failed connects.
    pub connect: u64,
    /// Read errors.
    pub read: u64,
    /// Write errors.
    pub write: u64,
    /// Timeouts.
    pub timeout: u64,
}

/// Everything a report says; fields absent from the report are `None` / empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WrkReport {
    /// The `Running <label> test` duration label, e.g. `15s`.
    pub duration_label: Option<String>,
    /// Target URL.
    pub url: Option<String>,
    /// Threads.
    pub threads: Option<u32>,
    /// Connections.
    pub connections: Option<u32>,
    /// wrk2's per-thread calibration: (mean latency ms, sampling interval ms).
    pub calibration: Vec<(f64, u64)>,
    /// Thread Stats `Latency` row, µs.
    pub latency_stats_us: Option<StatsRow>,
    /// Thread Stats `Req/Sec` row.
    pub req_sec_stats: Option<StatsRow>,
    /// Distribution blocks in order.
    pub distributions: Vec<Distribution>,
    /// Completed requests (`N requests in ...`).
    pub requests: Option<u64>,
    /// Runtime, s.
    pub runtime_s: Option<f64>,
    /// Bytes read.
    pub bytes_read: Option<f64>,
    /// Socket errors (the line is only printed when one is non-zero).
    pub socket_errors: Option<SocketErrors>,
    /// Non-2xx or 3xx responses.
    pub non_2xx_3xx: Option<u64>,
    /// Requests/sec.
    pub requests_per_sec: Option<f64>,
    /// Transfer/sec, bytes.
    pub transfer_per_sec: Option<f64>,
}

impl WrkReport {
    /// The block of `kind`.
    pub fn block(&self, kind: Block) -> Option<&Distribution> {
        self.distributions.iter().find(|d| d.kind == kind)
    }

    /// Latency (µs) at `percent` (e.g. 99.9; 100 for max) in block `kind`.
    pub fn percentile(&self, kind: Block, percent: f64) -> Option<f64> {
        let d = self.block(kind)?;
        let row = d
            .percentiles
            .iter()
            .find(|(p, _)| (p - percent).abs() < 1e-6);
        row.map(|&(_, v)| v)
    }

    /// Socket errors plus non-2xx responses.
    pub fn errors(&self) -> u64 {
        let s = self.socket_errors.unwrap_or_default();
        s.connect + s.read + s.write + s.timeout + self.non_2xx_3xx.unwrap_or(0)
    }
}

/// A latency as wrk prints it (`829.00us`, `1.20ms`, `1.42s`, `0.85m`, `1.00h`), in µs.
pub fn time_us(s: &str) -> Option<f64> {
    let units = [
        ("us", 1.0),
        ("ms", 1e3),
        ("s", 1e6),
        ("m", 60e6),
        ("h", 3600e6),
    ];
    let (num, scale) = units
        .iter()
        .find_map(|&(u, k)| s.strip_suffix(u).map(|n| (n, k)))?;
    let us = num.parse::<f64>().ok().filter(|v| v.is_finite())? * scale;
    // wrk prints at most 3 decimals of any unit: round away the float noise of the scaling.
    Some((us * 1e3).round() / 1e3)
}

/// A metric count (`5.17k`, `846.42`, `1.2M`).
pub fn metric(s: &str) -> Option<f64> {
    let (num, scale) = match s.char_indices().last()? {
        (i, c @ ('k' | 'M' | 'G' | 'T' | 'P')) => (&s[..i], 1e3f64.powi(prefix_power(c))),
        _ => (s, 1.0),
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v * scale)
}

/// A byte count in binary units (`25.90MB`, `80.00B`).
pub fn binary(s: &str) -> Option<f64> {
    let s = s.strip_suffix('B')?;
    let (num, scale) = match s.char_indices().last()? {
        (i, c @ ('K' | 'M' | 'G' | 'T' | 'P')) => (&s[..i], 1024f64.powi(prefix_power(c))),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

fn prefix_power(c: char) -> i32 {
    match c {
        'k' | 'K' => 1,
        'M' => 2,
        'G' => 3,
        'T' => 4,
        _ => 5,
    }
}

/// Parses a whole report.
pub fn parse(text: &str) -> WrkReport {
    let mut p = Parser::default();
    for line in text.lines() {
        p.line(line.trim());
    }
    p.out
}

#[derive(Default)]
struct Parser {
    out: WrkReport,
    /// Index of the distribution block being read.
    cur: Option<usize>,
    in_spectrum: bool,
}

impl Parser {
    fn line(&mut self, s: &str) {
        if self.cur.is_some() && self.block_line(s) {
            return;
        }
        let _ = self.header_line(s) || self.block_start(s) || self.footer_line(s);
    }

    fn header_line(&mut self, s: &str) -> bool {
        let w: Vec<&str> = s.split_whitespace().collect();
        match w.as_slice() {
            ["Running", label, "test", "@", url, ..] => {
                self.out.duration_label = Some(label.to_string());
                self.out.url = Some(url.to_string());
            }
            [t, "threads", "and", c, "connections", ..] => {
                self.out.threads = t.parse().ok();
                self.out.connections = c.parse().ok();
            }
            ["Thread", "calibration:", "mean", "lat.:", mean, "rate", "sampling", "interval:", iv] =>
            {
                let mean = mean.trim_end_matches(',').strip_suffix("ms");
                let mean = mean.and_then(|m| m.parse().ok());
                let iv = iv.strip_suffix("ms").and_then(|m| m.parse().ok());
                if let (Some(m), Some(i)) = (mean, iv) {
                    self.out.calibration.push((m, i));
                }
            }
            ["Latency", a, b, c, d] => self.out.latency_stats_us = Some(stats(a, b, c, d, time_us)),
            ["Req/Sec", a, b, c, d] => self.out.req_sec_stats = Some(stats(a, b, c, d, metric)),
            _ => return false,
        }
        true
    }

    fn block_start(&mut self, s: &str) -> bool {
        let Some(rest) = s.strip_prefix("Latency Distribution") else {
            return false;
        };
        let kind = if rest.contains("Uncorrected") {
            Block::Uncorrected
        } else if rest.contains("HdrHistogram") {
            Block::Corrected
        } else {
            Block::Wrk
        };
        self.out.distributions.push(Distribution {
            kind,
            percentiles: Vec::new(),
            spectrum: Vec::new(),
            mean_ms: None,
            stddev_ms: None,
            max_ms: None,
            total_count: None,
        });
        self.cur = Some(self.out.distributions.len() - 1);
        self.in_spectrum = false;
        true
    }

    /// A line inside a distribution block; false ends nothing and lets other parsers look.
    fn block_line(&mut self, s: &str) -> bool {
        let d = &mut self.out.distributions[self.cur.unwrap_or_default()];
        let w: Vec<&str> = s.split_whitespace().collect();
        if s.starts_with("-----") {
            (self.cur, self.in_spectrum) = (None, false);
            return true;
        }
        if s.starts_with("Detailed Percentile spectrum") {
            self.in_spectrum = true;
            return true;
        }
        if !self.in_spectrum {
            if let [p, v] = w.as_slice() {
                let pct = p.strip_suffix('%').and_then(|p| p.parse::<f64>().ok());
                if let (Some(pct), Some(v)) = (pct, time_us(v)) {
                    d.percentiles.push((pct, v));
                    return true;
                }
            }
            return false;
        }
        spectrum_line(d, s, &w)
    }

    fn footer_line(&mut self, s: &str) -> bool {
        let w: Vec<&str> = s.split([' ', ',']).filter(|t| !t.is_empty()).collect();
        match w.as_slice() {
            [n, "requests", "in", t, b, "read"] => {
                self.out.requests = n.parse().ok();
                self.out.runtime_s = time_us(t).map(|us| us / 1e6);
                self.out.bytes_read = binary(b);
                self.cur = None;
            }
            ["Socket", "errors:", "connect", c, "read", r, "write", wr, "timeout", t] => {
                let n = |x: &str| x.parse().unwrap_or(0);
                self.out.socket_errors = Some(SocketErrors {
                    connect: n(c),
                    read: n(r),
                    write: n(wr),
                    timeout: n(t),
                });
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => self.out.non_2xx_3xx = n.parse().ok(),
            ["Requests/sec:", r] => self.out.requests_per_sec = r.parse().ok(),
            ["Transfer/sec:", b] => self.out.transfer_per_sec = binary(b),
            _ => return false,
        }
        true
    }
}

/// A spectrum row (`0.803 0.500000 11876 2.00`) or a `#[...]` footer line.
fn spectrum_line(d: &mut Distribution, s: &str, w: &[&str]) -> bool {
    if let [v, p, n, _] = w {
        if let (Ok(v), Ok(p), Ok(n)) = (v.parse(), p.parse(), n.parse()) {
            d.spectrum.push(SpectrumRow {
                value_ms: v,
                percentile: p,
                total_count: n,
            });
            return true;
        }
    }
    let Some(inner) = s.strip_prefix("#[").and_then(|r| r.strip_suffix(']')) else {
        return false;
    };
    for field in inner.split(',') {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "Mean" => d.mean_ms = v.parse().ok().filter(|x: &f64| x.is_finite()),
            "StdDeviation" => d.stddev_ms = v.parse().ok().filter(|x: &f64| x.is_finite()),
            "Max" => d.max_ms = v.parse().ok(),
            "Total count" => d.total_count = v.parse().ok(),
            _ => {}
        }
    }
    true
}

fn stats(a: &str, b: &str, c: &str, d: &str, conv: fn(&str) -> Option<f64>) -> StatsRow {
    let pct = d.strip_suffix('%').and_then(|x| x.parse::<f64>().ok());
    StatsRow {
        avg: conv(a),
        stdev: conv(b),
        max: conv(c),
        within_stdev_pct: pct.filter(|x| x.is_finite()),
    }
}

#[cfg(test)]
#[path = "wrkparse_tests.rs"]
mod tests;
