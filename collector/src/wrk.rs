//! Parser of wrk and wrk2 text reports (for compatibility with runs made with those tools).
//!
//! Several reports may be concatenated (the original AEFM stored the stdout of all wrk processes
//! of a test case in one file): each `Running ...` line starts a new run.

use crate::error::{Error, Result};

/// One wrk or wrk2 run, as printed. Latencies in µs, bytes in bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkRun {
    /// Target URL from the `Running` line.
    pub url: String,
    /// Configured duration (seconds) from the `Running` line.
    pub configured_secs: f64,
    /// Threads and connections.
    pub threads: u64,
    /// Connections.
    pub connections: u64,
    /// `Latency` row of the thread stats: mean, stdev, max (µs; NaN when wrk printed `-nan`).
    pub latency_mean_us: f64,
    /// Standard deviation.
    pub latency_stdev_us: f64,
    /// Maximum.
    pub latency_max_us: f64,
    /// Percentiles (percent, µs) of the corrected ("Recorded") distribution, or wrk's only one.
    pub corrected: Vec<(f64, f64)>,
    /// Percentiles of wrk2's uncorrected distribution (`-U`).
    pub uncorrected: Vec<(f64, f64)>,
    /// Completed requests.
    pub requests: u64,
    /// Runtime in seconds from the `N requests in T` line.
    pub runtime_secs: f64,
    /// Bytes read.
    pub bytes_read: f64,
    /// Socket errors: connect, read, write, timeout.
    pub socket_errors: [u64; 4],
    /// Non-2xx or 3xx responses.
    pub non_2xx: u64,
    /// `Requests/sec`.
    pub requests_per_sec: f64,
    /// `Transfer/sec` in bytes.
    pub transfer_per_sec: f64,
}

impl WrkRun {
    /// All errors: socket errors plus non-2xx/3xx responses.
    pub fn errors(&self) -> u64 {
        self.socket_errors.iter().sum::<u64>() + self.non_2xx
    }
}

/// A latency with its unit (`814.15us`, `1.11ms`, `2.5s`, `1.2m`) in µs; `-nan…` is NaN.
pub fn parse_latency(s: &str) -> Option<f64> {
    if s.starts_with("-nan") || s.starts_with("nan") {
        return Some(f64::NAN);
    }
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60e6)
    } else if let Some(v) = s.strip_suffix('h') {
        (v, 3600e6)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

/// Bytes with binary units (`25.90MB`, `80.00B`, `0.89KB`).
pub fn parse_bytes(s: &str) -> Option<f64> {
    let units = [
        ("TB", 1u64 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
        ("B", 1),
    ];
    for (u, m) in units {
        if let Some(v) = s.strip_suffix(u) {
            return v.parse::<f64>().ok().map(|v| v * m as f64);
        }
    }
    s.parse().ok()
}

/// Parses one or more concatenated wrk/wrk2 reports. `path` names the input in errors.
pub fn parse(text: &str, path: &str) -> Result<Vec<WrkRun>> {
    let err = |line: usize, message: String| Error::Parse {
        path: path.to_string(),
        line,
        message,
    };
    let mut runs: Vec<WrkRun> = Vec::new();
    #[derive(PartialEq)]
    enum Block {
        None,
        Corrected,
        Uncorrected,
        Spectrum,
    }
    let mut block = Block::None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix("Running ") {
            // "Running 15s test @ http://..."
            let mut run = WrkRun::default();
            let mut parts = rest.splitn(2, " test @ ");
            run.configured_secs = parts
                .next()
                .and_then(parse_latency)
                .map_or(0.0, |us| us / 1e6);
            run.url = parts.next().unwrap_or("").trim().to_string();
            runs.push(run);
            block = Block::None;
            continue;
        }
        let Some(run) = runs.last_mut() else {
            if line.is_empty() {
                continue;
            }
            return Err(err(
                n,
                format!("expected a `Running ... test @ URL` line first, found `{line}`"),
            ));
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("Latency Distribution") {
            block = if line.contains("Uncorrected") {
                Block::Uncorrected
            } else {
                Block::Corrected
            };
        } else if line.starts_with("Detailed Percentile spectrum") {
            block = Block::Spectrum;
        } else if line.starts_with("----") {
            block = Block::None;
        } else if f.len() >= 4 && f[1] == "threads" && f[2] == "and" {
            run.threads = f[0]
                .parse()
                .map_err(|_| err(n, format!("bad thread count `{}`", f[0])))?;
            run.connections = f[3]
                .parse()
                .map_err(|_| err(n, format!("bad connection count `{}`", f[3])))?;
        } else if f.first() == Some(&"Latency") && f.len() >= 4 {
            let v = |s: &str| parse_latency(s).ok_or_else(|| err(n, format!("bad latency `{s}`")));
            run.latency_mean_us = v(f[1])?;
            run.latency_stdev_us = v(f[2])?;
            run.latency_max_us = v(f[3])?;
        } else if f.len() == 2
            && f[0].ends_with('%')
            && block != Block::Spectrum
            && block != Block::None
        {
            let p: f64 = f[0]
                .trim_end_matches('%')
                .parse()
                .map_err(|_| err(n, format!("bad percentile `{}`", f[0])))?;
            let v = parse_latency(f[1]).ok_or_else(|| err(n, format!("bad latency `{}`", f[1])))?;
            if block == Block::Uncorrected {
                &mut run.uncorrected
            } else {
                &mut run.corrected
            }
            .push((p, v));
        } else if f.len() >= 5 && f[1] == "requests" && f[2] == "in" {
            run.requests = f[0]
                .parse()
                .map_err(|_| err(n, format!("bad request count `{}`", f[0])))?;
            run.runtime_secs = parse_latency(f[3].trim_end_matches(','))
                .ok_or_else(|| err(n, format!("bad runtime `{}`", f[3])))?
                / 1e6;
            run.bytes_read =
                parse_bytes(f[4]).ok_or_else(|| err(n, format!("bad byte count `{}`", f[4])))?;
            block = Block::None;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                let kv: Vec<&str> = part.split_whitespace().collect();
                if kv.len() != 2 {
                    return Err(err(n, format!("bad socket error field `{part}`")));
                }
                let v: u64 = kv[1]
                    .parse()
                    .map_err(|_| err(n, format!("bad count `{}`", kv[1])))?;
                let idx = match kv[0] {
                    "connect" => 0,
                    "read" => 1,
                    "write" => 2,
                    "timeout" => 3,
                    other => return Err(err(n, format!("unknown socket error kind `{other}`"))),
                };
                run.socket_errors[idx] = v;
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.non_2xx = rest
                .trim()
                .parse()
                .map_err(|_| err(n, format!("bad count `{}`", rest.trim())))?;
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            run.requests_per_sec = rest
                .trim()
                .parse()
                .map_err(|_| err(n, format!("bad rate `{}`", rest.trim())))?;
        } else if let Some(rest) = line.strip_prefix("Transfer/sec:") {
            run.transfer_per_sec = parse_bytes(rest.trim())
                .ok_or_else(|| err(n, format!("bad rate `{}`", rest.trim())))?;
        }
    }
    if runs.is_empty() {
        return Err(err(
            0,
            "no wrk report found (no `Running ... test @ URL` line)".into(),
        ));
    }
    if let Some(pos) = runs
        .iter()
        .position(|r| r.requests_per_sec == 0.0 && r.requests == 0 && r.runtime_secs == 0.0)
    {
        return Err(err(
            0,
            format!("run {} is truncated: no `N requests in T` line", pos + 1),
        ));
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK2_U: &str = "Running 15s test @ http://127.0.0.1:8080/index.html
  1 threads and 50 connections
  Thread calibration: mean lat.: 0.819ms, rate sampling interval: 10ms
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   814.15us  442.55us   3.62ms   65.38%
    Req/Sec     5.17k   381.44     7.50k    69.49%
  Latency Distribution (HdrHistogram - Recorded Latency)
 50.000%  803.00us
 75.000%    1.11ms
 90.000%    1.35ms
 99.000%    2.02ms
 99.900%    2.99ms
 99.990%    3.51ms
 99.999%    3.62ms
100.000%    3.62ms

  Detailed Percentile spectrum:
       Value   Percentile   TotalCount 1/(1-Percentile)

       0.055     0.000000            1         1.00
       3.619     1.000000        23750          inf
#[Mean    =        0.814, StdDeviation   =        0.443]
#[Max     =        3.618, Total count    =        23750]
#[Buckets =           27, SubBuckets     =         2048]
----------------------------------------------------------

  Latency Distribution (HdrHistogram - Uncorrected Latency (measured without taking delayed starts into account))
 50.000%  104.00us
 75.000%  133.00us
 90.000%  171.00us
 99.000%  308.00us
 99.900%    1.72ms
 99.990%    2.65ms
 99.999%    2.65ms
100.000%    2.65ms

  Detailed Percentile spectrum:
       Value   Percentile   TotalCount 1/(1-Percentile)

       0.019     0.000000            1         1.00
       2.655     1.000000        23750          inf
#[Mean    =        0.117, StdDeviation   =        0.111]
#[Max     =        2.654, Total count    =        23750]
#[Buckets =           27, SubBuckets     =         2048]
----------------------------------------------------------
  74403 requests in 15.00s, 25.90MB read
Requests/sec:   4960.01
Transfer/sec:      1.73MB
";

    const WRK2_EMPTY: &str = "Running 12s test @ http://127.0.0.1:8080/index.html
  1 threads and 10 connections
  Thread calibration: mean lat.: 0.823ms, rate sampling interval: 10ms
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     -nanus    -nanus   0.00us    0.00%
    Req/Sec     0.00      0.00     0.00    100.00%
  30 requests in 12.06s, 10.69KB read
  Socket errors: connect 0, read 0, write 0, timeout 40
Requests/sec:      2.49
Transfer/sec:      0.89KB
";

    #[test]
    fn parses_the_wrk2_sample_with_both_distributions() {
        let runs = parse(WRK2_U, "x").unwrap();
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        assert_eq!((r.threads, r.connections), (1, 50));
        assert_eq!(r.url, "http://127.0.0.1:8080/index.html");
        assert_eq!(r.configured_secs, 15.0);
        assert!((r.latency_mean_us - 814.15).abs() < 1e-9);
        assert!((r.latency_max_us - 3620.0).abs() < 1e-9);
        assert_eq!(r.corrected.len(), 8);
        assert_eq!(r.corrected[0], (50.0, 803.0));
        assert!((r.corrected[1].1 - 1110.0).abs() < 1e-9);
        assert_eq!(r.uncorrected.len(), 8);
        assert_eq!(r.uncorrected[3], (99.0, 308.0));
        assert_eq!(r.requests, 74403);
        assert_eq!(r.runtime_secs, 15.0);
        assert!((r.bytes_read - 25.90 * 1048576.0).abs() < 1.0);
        assert_eq!(r.requests_per_sec, 4960.01);
        assert_eq!(r.errors(), 0);
    }

    #[test]
    fn parses_nan_latencies_and_socket_errors_and_concatenation() {
        let both = format!("{WRK2_EMPTY}{WRK2_U}");
        let runs = parse(&both, "x").unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs[0].latency_mean_us.is_nan());
        assert_eq!(runs[0].socket_errors, [0, 0, 0, 40]);
        assert_eq!(runs[0].errors(), 40);
        assert_eq!(runs[0].requests, 30);
        assert!((runs[0].runtime_secs - 12.06).abs() < 1e-9);
        assert_eq!(runs[1].requests, 74403);
    }

    #[test]
    fn parses_plain_wrk_and_rejects_garbage() {
        let wrk = "Running 10s test @ http://h/\n  2 threads and 10 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.20ms  300.00us   9.00ms   80.00%\n    Req/Sec     4.10k   200.00     5.00k    70.00%\n  Latency Distribution\n     50%    1.10ms\n     75%    1.30ms\n     90%    1.60ms\n     99%    2.50ms\n  81234 requests in 10.00s, 12.00MB read\n  Non-2xx or 3xx responses: 12\nRequests/sec:   8123.40\nTransfer/sec:      1.20MB\n";
        let r = &parse(wrk, "x").unwrap()[0];
        assert_eq!(
            r.corrected,
            vec![
                (50.0, 1100.0),
                (75.0, 1300.0),
                (90.0, 1600.0),
                (99.0, 2500.0)
            ]
        );
        assert_eq!(r.non_2xx, 12);
        let e = parse("hello\n", "f.txt").unwrap_err().to_string();
        assert!(e.starts_with("f.txt:1:"), "{e}");
        let e = parse("Running 1s test @ u\n  1 threads and 1 connections\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = parse("Running 1s test @ u\n  x threads and 1 connections\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f:2:"), "{e}");
    }
}
