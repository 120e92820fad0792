//! The `aefm-load` command line: wrk2's options (short and long, before or after the URL, `--`
//! then script arguments, unit suffixes, `-U` implying `-L`), plus aefm-load's own (`--json`,
//! `--hdr-log`, `--warmup`, `--model`, `--max-connections`, `--pin`, `--metrics-addr`, and for
//! distributed runs [`ControlFlags`]: `--control-port`, `--start-at`, `--start-timeout`,
//! `--header-file`, `--report-frame`). Parsing turns arguments into a [`Spec`] and output options; it never
//! touches the network (it reads `--header-file`). Rate profiles (`-R 1000:5000:60s`,
//! `-R 1000@0s,5000@30s`, `--rate-file`), `-D`/`--seed` and the refusal of DeathStarBench's
//! fork-only flags are here too; their model is [`crate::schedule`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Parser;

use crate::schedule::{Distribution, RateProfile};
use crate::source::Workload;
use crate::spec::{CatchUp, Model, Spec};
use crate::units::{parse_count, parse_time};

mod encode;
pub use encode::LoadArgs;

/// The usage text, modelled on wrk2's.
pub const USAGE: &str = "\
Usage: aefm-load <options> <url> [-- script args]
  Options:
    -c, --connections <N>  Connections to keep open (default 10)
    -d, --duration    <T>  Duration of test (default 10s)
    -t, --threads     <N>  Number of threads to use (default 2)

    -s, --script      <S>  Load Lua script file
    -H, --header      <H>  Add header to request (\"Name: value\")
    -L  --latency          Print latency statistics
    -U  --u_latency        Print uncorrected latency statistics (implies -L)
    -T, --timeout     <T>  Count a request as timed out after T (default 2s)
    -B, --batch_latency    Measure latency of whole
                           batches of pipelined ops
                           (as opposed to each op)
    -v, --version          Print version details
    -R, --rate        <T>  work rate (throughput)
                           in requests/sec (total)
                           [Required Parameter]
                           Also 1000:5000:60s (ramp from 1000 to 5000 over 60s,
                           then hold) or 1000@0s,5000@30s,2000~60s (step to a
                           rate at a time with @, ramp to reach it with ~)
    -D, --dist        <S>  Gaps between sends: fixed (default), exp (Poisson),
                           norm (sd 0.25 of the mean), zipf (as DeathStarBench)

  aefm-load options:
        --seed        <N>  Seed of the random gaps of -D (default 0; same seed,
                           same schedule)
        --rate-file   <F>  Offered rate from F instead of -R: lines
                           'TIME RATE [step|ramp]', the first at 0
        --json        <F>  Write the JSON report to F ('-': stdout, instead of the text report)
        --hdr-log     <F>  Write an HdrHistogram interval log (1 s, corrected latency) to F
        --warmup      <T>  Discard latencies of the first T (default 0; '10s' is like wrk2)
        --model       <M>  wrk2 (default: per-connection schedule) or open (open loop)
        --max-connections <N>  Connection cap of the open model (default 10 x connections)
        --pin         <L>  Pin threads to cores, round-robin (e.g. 0,1 or 0-3)
        --pacing-tolerance <T>  Let requests leave up to T early (never late), so sends
                           within T share a wake-up (default 1ms; 20us with -D
                           exp|norm|zipf, whose short gaps are the point)
        --catch-up    <C>  serial (default, wrk2's) or pipeline: how a connection behind
                           its schedule sends its due requests (pipeline: up to 64 in one
                           write, so a backlog drains at the server's speed)
        --header-file <F>  Add the headers of file F, one \"Name: value\" a line
                           (secrets stay out of the command line)
        --control-port <P> Listen on P: GET /ready, then wait for
                           POST /start?at=<unix ns> and start at that instant
        --start-at    <T>  Start at T (unix nanoseconds or RFC 3339)
        --start-timeout <T>  Give up waiting for the start signal after T
                           (default 600s)
        --report-frame     Print the JSON report as framed lines (base64 of gzip)
                           instead of the text report (for container logs)
        --metrics-addr <A> Serve live Prometheus metrics on A (IP:PORT, e.g.
                           0.0.0.0:9102, or :PORT) at GET /metrics during the run
        --traceparent <S>  Add a W3C traceparent header (sampled) to share S (0 to 1)
                           of the requests; the JSON report keeps the slowest of them
                           with their trace ids (everything above p99, bounded)

  DeathStarBench's wrk2 fork: -D works, -S is accepted (one URL is always
  separate); -P, -p, -r and several URLs are not supported.

  Numeric arguments may include a SI unit (1k, 1M, 1G) and fractions (1.5k)
  Time arguments may include a time unit (500ms, 1.5s, 2m, 2h)
";

#[derive(Parser, Debug)]
#[command(
    name = "aefm-load",
    disable_help_flag = true,
    disable_version_flag = true,
    allow_negative_numbers = true
)]
struct Args {
    #[arg(short = 'c', long = "connections", value_parser = parse_count, default_value = "10")]
    connections: u64,
    #[arg(short = 'd', long = "duration", value_parser = parse_time, default_value = "10")]
    duration: Duration,
    #[arg(short = 't', long = "threads", value_parser = parse_count, default_value = "2")]
    threads: u64,
    #[arg(short = 's', long = "script")]
    script: Option<PathBuf>,
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    #[arg(short = 'L', long = "latency")]
    latency: bool,
    #[arg(short = 'U', long = "u_latency", alias = "u-latency")]
    u_latency: bool,
    #[arg(short = 'B', long = "batch_latency", alias = "batch-latency")]
    batch_latency: bool,
    #[arg(short = 'T', long = "timeout", value_parser = parse_time, default_value = "2")]
    timeout: Duration,
    #[arg(short = 'R', long = "rate", value_parser = parse_rate)]
    rate: Option<RateProfile>,
    #[arg(long = "rate-file")]
    rate_file: Option<PathBuf>,
    #[arg(short = 'D', long = "dist", value_parser = parse_dist, default_value = "fixed")]
    dist: Distribution,
    #[arg(long = "seed", default_value_t = crate::schedule::DEFAULT_SEED)]
    seed: u64,
    /// DeathStarBench's fork: -P, -p, -r are refused by [`fork_only`]; -S is a no-op.
    #[arg(short = 'P', hide = true)]
    fork_print_each: bool,
    #[arg(short = 'p', hide = true)]
    fork_print_p99: bool,
    #[arg(short = 'r', long = "requests", hide = true)]
    fork_requests: bool,
    #[arg(short = 'S', long = "separate", hide = true)]
    _fork_separate: bool,
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[arg(short = 'h', short_alias = '?', long = "help")]
    help: bool,
    #[arg(long = "json")]
    json: Option<String>,
    #[arg(long = "hdr-log")]
    hdr_log: Option<PathBuf>,
    #[arg(long = "warmup", value_parser = parse_time, default_value = "0")]
    warmup: Duration,
    #[arg(long = "model", value_parser = ["wrk2", "open"], default_value = "wrk2")]
    model: String,
    #[arg(long = "max-connections", value_parser = parse_count)]
    max_connections: Option<u64>,
    #[arg(long = "pin", value_parser = parse_cores)]
    pin: Option<Cores>,
    #[arg(long = "pacing-tolerance", value_parser = parse_time)]
    pacing_tolerance: Option<Duration>,
    #[arg(long = "catch-up", value_parser = ["serial", "pipeline"], default_value = "serial")]
    catch_up: String,
    #[arg(long = "header-file")]
    header_file: Option<PathBuf>,
    #[arg(long = "control-port")]
    control_port: Option<u16>,
    #[arg(long = "start-at", value_parser = crate::control::parse_start_at)]
    start_at: Option<SystemTime>,
    #[arg(long = "start-timeout", value_parser = parse_time)]
    start_timeout: Option<Duration>,
    #[arg(long = "report-frame")]
    report_frame: bool,
    #[arg(long = "metrics-addr", value_parser = parse_metrics_addr)]
    metrics_addr: Option<SocketAddr>,
    #[arg(long = "traceparent", value_parser = parse_share, default_value = "0")]
    traceparent: f64,
    url: Option<String>,
    args: Vec<String>,
}

/// A core list (a newtype so clap takes it as one value).
#[derive(Clone, Debug)]
struct Cores(Vec<usize>);

/// `0,2,4` or `0-3` or a mix.
fn parse_cores(text: &str) -> Result<Cores, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let bad = || format!("invalid core list '{text}' (expected e.g. 0,1 or 0-3)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(Cores(out))
}

/// `-R`: a constant rate or a profile (see [`RateProfile::parse`]).
fn parse_rate(text: &str) -> Result<RateProfile, String> {
    RateProfile::parse(text).map_err(|e| e.0)
}

/// `--traceparent`: a share of requests, 0 to 1.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "invalid share '{text}' (expected a number from 0 to 1, e.g. 0.1)"
        )),
    }
}

/// `-D`: a distribution name.
fn parse_dist(text: &str) -> Result<Distribution, String> {
    text.parse().map_err(|e: crate::schedule::ProfileError| e.0)
}

/// Refuses the flags of DeathStarBench's wrk2 fork that have no counterpart here, naming them.
fn fork_only(a: &Args) -> Result<(), CliError> {
    let unsupported = [
        (
            a.fork_print_each,
            "-P",
            "it writes each request's latency to files; use --json or --hdr-log",
        ),
        (
            a.fork_print_p99,
            "-p",
            "it writes the p99 latency every 0.2s to a file; use --hdr-log or --metrics-addr",
        ),
        (
            a.fork_requests,
            "-r",
            "it prints the number of sent requests; --json reports it (summary.sent)",
        ),
    ];
    if let Some((_, flag, why)) = unsupported.into_iter().find(|(given, ..)| *given) {
        return Err(CliError(format!(
            "{flag} is a flag of DeathStarBench's wrk2 fork that aefm-load does not support: {why}"
        )));
    }
    // Without a script, extra arguments are ignored: a URL there is the fork's multi-URL run.
    if let (None, Some(url)) = (&a.script, a.args.iter().find(|x| x.contains("://"))) {
        return Err(CliError(format!(
            "several URLs ({url}) are a feature of DeathStarBench's wrk2 fork that aefm-load \
             does not support: run one aefm-load per URL"
        )));
    }
    Ok(())
}

/// The offered rate of `-R` or `--rate-file` (exactly one of them).
fn rate_profile(a: &Args) -> Result<RateProfile, CliError> {
    match (&a.rate, &a.rate_file) {
        (Some(_), Some(_)) => Err(CliError("-R and --rate-file exclude each other".into())),
        (Some(p), None) => Ok(p.clone()),
        (None, Some(path)) => {
            RateProfile::read_file(path).map_err(|e| CliError(format!("--rate-file {e}")))
        }
        (None, None) => Err(CliError(
            "Throughput MUST be specified with the --rate or -R option".into(),
        )),
    }
}

/// `IP:PORT` (`0.0.0.0:9102`, `[::]:9102`, `127.0.0.1:0`) or `:PORT` (all IPv4 interfaces).
/// No host names: parsing never touches the network.
fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_string(),
    };
    full.parse().map_err(|_| {
        format!("invalid metrics address '{text}' (expected IP:PORT, e.g. 0.0.0.0:9102, or :PORT)")
    })
}

/// Where and how to print the results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// `-L`/`-U`: the corrected distribution block.
    pub latency: bool,
    /// `-U`: the uncorrected block.
    pub u_latency: bool,
    /// `--json`: a file, or `-` for stdout.
    pub json: Option<String>,
    /// `--hdr-log`: interval log file.
    pub hdr_log: Option<PathBuf>,
    /// `--metrics-addr`: serve live Prometheus metrics there during the run (see
    /// [`crate::metrics`]).
    pub metrics_addr: Option<SocketAddr>,
}

impl Output {
    /// True when the JSON report replaces the text report on stdout.
    pub fn json_on_stdout(&self) -> bool {
        self.json.as_deref() == Some("-")
    }
}

/// How a run is started and reported when a controller drives it (distributed load): flags
/// encoded here, beside their parser, so the command line a controller builds
/// ([`ControlFlags::to_args`]) is exactly what [`parse`] reads back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlFlags {
    /// `--control-port`: wait for `POST /start?at=` on this port (see [`crate::control`]).
    pub control_port: Option<u16>,
    /// `--start-at`: start at this instant.
    pub start_at: Option<SystemTime>,
    /// `--start-timeout`: how long to wait for the start signal (default [`DEFAULT_START_TIMEOUT`]).
    pub start_timeout: Option<Duration>,
    /// `--header-file`: a file of `Name: value` lines, added to the `-H` headers.
    pub header_file: Option<PathBuf>,
    /// `--report-frame`: the JSON report as frame lines on stdout (see [`crate::frame`]).
    pub report_frame: bool,
}

/// How long `--control-port` waits for its start signal by default.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(600);

impl ControlFlags {
    /// The flags as `aefm-load` arguments (to put before the URL).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = self.control_port {
            out.extend(["--control-port".to_string(), p.to_string()]);
        }
        if let Some(at) = self.start_at {
            out.extend([
                "--start-at".to_string(),
                crate::control::unix_nanos(at).to_string(),
            ]);
        }
        if let Some(t) = self.start_timeout {
            out.extend([
                "--start-timeout".to_string(),
                format!("{}ms", t.as_millis()),
            ]);
        }
        if let Some(f) = &self.header_file {
            out.extend(["--header-file".to_string(), f.display().to_string()]);
        }
        if self.report_frame {
            out.push("--report-frame".into());
        }
        out
    }

    /// The start timeout in effect.
    pub fn start_timeout(&self) -> Duration {
        self.start_timeout.unwrap_or(DEFAULT_START_TIMEOUT)
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run a test.
    Run {
        /// The run.
        spec: Box<Spec>,
        /// Output options.
        output: Output,
        /// Things accepted but worth a warning (e.g. a header without `: `).
        warnings: Vec<String>,
        /// Start barrier and report framing.
        control: ControlFlags,
    },
    /// Print the usage (exit 0).
    Help,
    /// Print the version (exit 0).
    Version,
}

/// Bad command-line input: one line for stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

/// The version line.
pub fn version() -> String {
    format!(
        "aefm-load {} (wrk2-compatible, timerfd pacing, rustls)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Parses a full argument list (program name first).
pub fn parse<I, T>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let a = Args::try_parse_from(args).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("invalid arguments");
        CliError(first.trim_start_matches("error: ").to_string())
    })?;
    if a.help {
        return Ok(Command::Help);
    }
    let Some(url) = a.url.clone() else {
        if a.version {
            return Ok(Command::Version);
        }
        return Err(CliError("missing URL".into()));
    };
    fork_only(&a)?;
    let profile = rate_profile(&a)?;
    let mut warnings = Vec::new();
    let mut headers = Vec::new();
    for h in &a.headers {
        let (name, value) =
            crate::header::parse_header(h).map_err(|e| CliError(format!("-H: {e}")))?;
        let after_colon = &h[name.len() + 1..];
        if !value.is_empty() && !after_colon.starts_with([' ', '\t']) {
            warnings.push(format!(
                "header '{h}' has no space after ':' (wrk2 would ignore it); sending '{name}: {value}'"
            ));
        }
        headers.push((name, value));
    }
    if let Some(path) = &a.header_file {
        headers.extend(
            crate::header::read_header_file(path)
                .map_err(|e| CliError(format!("--header-file {e}")))?,
        );
    }
    if a.control_port.is_some() && a.start_at.is_some() {
        return Err(CliError(
            "--control-port and --start-at exclude each other".into(),
        ));
    }
    let threads = a.threads as usize;
    let connections = a.connections as usize;
    let model = match a.model.as_str() {
        "open" => Model::Open {
            max_connections: a
                .max_connections
                .map(|m| m as usize)
                .unwrap_or(connections.saturating_mul(10)),
        },
        _ => {
            if a.max_connections.is_some() {
                warnings.push("--max-connections only applies to --model open".into());
            }
            Model::Wrk2
        }
    };
    let workload = match a.script {
        Some(path) => Workload::Script {
            path,
            args: a.args.clone(),
        },
        None => Workload::Static,
    };
    let mut spec = Spec {
        url,
        threads,
        connections,
        duration: a.duration,
        // Set from the profile (after the duration, which its mean depends on).
        rate: 0.0,
        timeout: a.timeout,
        headers,
        workload,
        model,
        warmup: a.warmup,
        pin: a.pin.map(|c| c.0),
        batch_latency: a.batch_latency,
        pacing_tolerance: a.pacing_tolerance,
        catch_up: if a.catch_up == "pipeline" {
            CatchUp::Pipeline
        } else {
            CatchUp::Serial
        },
        distribution: a.dist,
        seed: a.seed,
        rate_profile: None,
        traceparent: a.traceparent,
    };
    spec.set_rate_profile(profile);
    spec.validate().map_err(|e| CliError(e.to_string()))?;
    Ok(Command::Run {
        spec: Box::new(spec),
        output: Output {
            latency: a.latency || a.u_latency,
            u_latency: a.u_latency,
            json: a.json,
            hdr_log: a.hdr_log,
            metrics_addr: a.metrics_addr,
        },
        warnings,
        control: ControlFlags {
            control_port: a.control_port,
            start_at: a.start_at,
            start_timeout: a.start_timeout,
            header_file: a.header_file,
            report_frame: a.report_frame,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> (Spec, Output, Vec<String>) {
        let mut full = vec!["aefm-load"];
        full.extend_from_slice(args);
        match parse(full).unwrap() {
            Command::Run {
                spec,
                output,
                warnings,
                ..
            } => (*spec, output, warnings),
            other => panic!("{other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        let mut full = vec!["aefm-load"];
        full.extend_from_slice(args);
        parse(full).unwrap_err().0
    }

    #[test]
    fn wrk2_style_attached_values_and_url_first() {
        let (s, o, _) = run(&[
            "-t2",
            "-c100",
            "-d60s",
            "-R2000",
            "--latency",
            "http://h:1/p",
        ]);
        assert_eq!((s.threads, s.connections, s.rate), (2, 100, 2000.0));
        assert_eq!(s.duration, Duration::from_secs(60));
        assert!(o.latency && !o.u_latency);
        // AEFM's order: URL first, options after.
        let (s, _, _) = run(&[
            "http://h:1/p",
            "-t",
            "4",
            "-c",
            "8",
            "-d",
            "2m",
            "-s",
            "x.lua",
            "-R",
            "1.5k",
        ]);
        assert_eq!((s.threads, s.connections, s.rate), (4, 8, 1500.0));
        assert_eq!(s.duration, Duration::from_secs(120));
        assert!(matches!(s.workload, Workload::Script { .. }));
    }

    #[test]
    fn long_options_script_args_and_u_implies_l() {
        let (s, o, _) = run(&[
            "--threads=1",
            "--connections",
            "1",
            "--duration",
            "500ms",
            "--rate",
            "0.5",
            "--timeout",
            "1.5s",
            "-U",
            "-B",
            "-H",
            "A: b",
            "--header",
            "Host: x",
            "http://h/",
            "--",
            "a",
            "-b",
        ]);
        assert!(o.latency && o.u_latency);
        assert!(s.batch_latency);
        assert_eq!(s.duration, Duration::from_millis(500));
        assert_eq!(s.timeout, Duration::from_millis(1500));
        assert_eq!(s.rate, 0.5);
        assert_eq!(s.headers.len(), 2);
        match s.workload {
            Workload::Static => {}
            _ => panic!("no script given"),
        }
        let (s, _, _) = run(&["-R1", "-s", "f.lua", "http://h/", "--", "a", "-b"]);
        match s.workload {
            Workload::Script { args, .. } => assert_eq!(args, vec!["a", "-b"]),
            _ => panic!(),
        }
    }

    #[test]
    fn extensions() {
        // Pinning is checked against the CPUs this process may use: pin to the first of them.
        let cpu = crate::system::allowed_cpus().unwrap()[0];
        let pin = format!("{cpu}-{cpu},{cpu}");
        let (s, o, _) = run(&[
            "-R10",
            "--json",
            "-",
            "--hdr-log",
            "x.hlog",
            "--warmup",
            "5s",
            "--model",
            "open",
            "--pin",
            &pin,
            "--pacing-tolerance",
            "200us",
            "http://h/",
        ]);
        assert!(o.json_on_stdout());
        assert_eq!(s.pacing_tolerance, Some(Duration::from_micros(200)));
        assert_eq!(s.warmup, Duration::from_secs(5));
        assert_eq!(
            s.model,
            Model::Open {
                max_connections: 100
            }
        );
        assert_eq!(s.pin, Some(vec![cpu, cpu]));
        assert_eq!(parse_cores("0-1,3").unwrap().0, vec![0, 1, 3]);
        assert!(parse_cores("3-1").is_err());
        let e = err(&["-R10", "--pin", "100000", "http://h/"]);
        assert!(
            e.contains("not among the CPUs this process may run on"),
            "{e}"
        );
    }

    #[test]
    fn bad_input_gives_one_line() {
        for (args, needle) in [
            (&["http://h/"][..], "Throughput MUST"),
            (&["-R0", "http://h/"][..], "rate"),
            (&["-R-5", "http://h/"][..], "invalid"),
            (&["-R10", "-c0", "http://h/"][..], "connections"),
            (&["-R10", "-t0", "http://h/"][..], "threads"),
            (&["-R10", "-d0", "http://h/"][..], "duration"),
            (
                &["-R10", "--pacing-tolerance", "2s", "http://h/"][..],
                "pacing tolerance",
            ),
            (&["-R10", "-t4", "-c2", "http://h/"][..], "connections"),
            (&["-R10", "-d", "10sec", "http://h/"][..], "10sec"),
            (&["-R10", "ftp://h/"][..], "invalid URL"),
            (&["-R10", "nohost"][..], "invalid URL"),
            (&["-R10"][..], "missing URL"),
            (&["-R10", "-x", "http://h/"][..], "-x"),
            (
                &["-R10", "-H", "novalue", "http://h/"][..],
                "invalid header",
            ),
            (&["-R10", "-H", "X Y: 1", "http://h/"][..], "header name"),
            (&["-R10", "-H", "X: 1\r\nY: 2", "http://h/"][..], "CR"),
        ] {
            let e = err(args);
            assert!(e.contains(needle), "{args:?}: {e}");
            assert!(!e.contains('\n'), "{args:?}: multi-line: {e}");
        }
    }

    #[test]
    fn metrics_address_forms() {
        let (_, o, _) = run(&["-R1", "http://h/"]);
        assert_eq!(o.metrics_addr, None);
        for (arg, want) in [
            ("0.0.0.0:9102", "0.0.0.0:9102"),
            (":9102", "0.0.0.0:9102"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("[::]:9102", "[::]:9102"),
        ] {
            let (_, o, _) = run(&["-R1", "--metrics-addr", arg, "http://h/"]);
            assert_eq!(o.metrics_addr, Some(want.parse().unwrap()), "{arg}");
        }
        for bad in ["localhost:9102", "9102", "0.0.0.0", ":http"] {
            let e = err(&["-R1", "--metrics-addr", bad, "http://h/"]);
            assert!(
                e.contains("invalid metrics address") && e.contains(bad),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn header_without_space_is_accepted_with_warning() {
        let (s, _, w) = run(&["-R1", "-H", "X:y", "http://h/"]);
        assert_eq!(s.headers, vec![("X".to_string(), "y".to_string())]);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn deathstarbench_command_shape_parses() {
        // DeathStarBench's documented command line.
        let dsb = "-D exp -t 2 -c 10 -d 30 -L -s script.lua http://h:8080/ -R 100";
        let (s, o, _) = run(&dsb.split(' ').collect::<Vec<_>>());
        assert_eq!(s.distribution, Distribution::Exp);
        assert_eq!((s.threads, s.connections, s.rate), (2, 10, 100.0));
        assert_eq!(s.duration, Duration::from_secs(30));
        assert!(o.latency && s.rate_profile.is_none());
        assert!(matches!(s.workload, Workload::Script { .. }));
        assert_eq!(s.seed, crate::schedule::DEFAULT_SEED);
        let (s, _, _) = run(&["--dist=zipf", "--seed", "77", "-S", "-R1k", "http://h/"]);
        assert_eq!((s.distribution, s.seed), (Distribution::Zipf, 77));
        let (s, _, _) = run(&["-R1", "http://h/"]);
        assert_eq!(s.distribution, Distribution::Fixed);
    }

    #[test]
    fn fork_only_flags_are_named() {
        for flag in ["-P", "-p", "-r", "--requests"] {
            let e = err(&["-R10", flag, "http://h/"]);
            let short = if flag == "--requests" { "-r" } else { flag };
            assert!(
                e.starts_with(&format!(
                    "{short} is a flag of DeathStarBench's wrk2 fork that aefm-load does not support: "
                )),
                "{flag}: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        let e = err(&["-R10", "http://a/", "http://b/"]);
        assert!(
            e.starts_with("several URLs (http://b/) are a feature of DeathStarBench"),
            "{e}"
        );
        let e = err(&["-R10", "-D", "uniform", "http://h/"]);
        assert!(e.contains("invalid distribution 'uniform'"), "{e}");
    }

    #[test]
    fn rate_profiles_from_r_and_rate_file() {
        let (s, _, _) = run(&["-d", "120", "-R", "1000:5000:60s", "http://h/"]);
        assert_eq!(s.rate, 4000.0);
        let profile = s.rate_profile.expect("a ramp is a profile");
        assert_eq!(
            profile,
            RateProfile::ramp(1000.0, 5000.0, Duration::from_secs(60)).unwrap()
        );
        let (s, _, _) = run(&["-d", "60", "-R", "1000@0s,5000@30s", "http://h/"]);
        assert_eq!(s.rate, 3000.0);
        assert_eq!(s.rate_profile.unwrap().offered_in(45), 5000.0);
        let (s, _, _) = run(&["-R", "10M", "http://h/"]);
        assert_eq!((s.rate, s.rate_profile), (1e7, None));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rates");
        std::fs::write(&file, "0 100\n5s 300 ramp\n").unwrap();
        let f = file.to_str().unwrap();
        let (s, _, _) = run(&["-d", "10", "--rate-file", f, "http://h/"]);
        assert_eq!(s.rate, 250.0);
        for (args, needle) in [
            (
                &["-R", "5", "--rate-file", f, "http://h/"][..],
                "exclude each other",
            ),
            (
                &["-R", "1000@0s,5000@0s", "http://h/"][..],
                "'5000@0s': times must increase",
            ),
            (&["-R", "1k:2k", "http://h/"][..], "invalid rate '1k:2k'"),
            (
                &["-d", "5", "-R", "0,9@10s", "http://h/"][..],
                "offers no requests",
            ),
            (
                &["--rate-file", "/nonexistent/r", "http://h/"][..],
                "--rate-file /nonexistent/r",
            ),
        ] {
            let e = err(args);
            assert!(e.contains(needle), "{args:?}: {e}");
            assert!(!e.contains('\n'), "{args:?}: {e}");
        }
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse(["aefm-load", "-h"]), Ok(Command::Help)));
        assert!(matches!(parse(["aefm-load", "--help"]), Ok(Command::Help)));
        assert!(matches!(parse(["aefm-load", "-v"]), Ok(Command::Version)));
    }

    #[test]
    fn control_flags_round_trip_through_the_parser() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("headers");
        std::fs::write(
            &file,
            "# secrets\nAuthorization: Bearer s3cret\n\nX-Tenant: a\n",
        )
        .unwrap();
        for flags in [
            ControlFlags {
                control_port: Some(7070),
                start_timeout: Some(Duration::from_millis(90_500)),
                header_file: Some(file.clone()),
                report_frame: true,
                ..Default::default()
            },
            ControlFlags {
                start_at: Some(crate::control::parse_start_at("1767225600123456789").unwrap()),
                ..Default::default()
            },
            ControlFlags::default(),
        ] {
            let mut args = vec!["aefm-load".to_string(), "-R10".into()];
            args.extend(flags.to_args());
            args.push("http://h/".into());
            match parse(&args).unwrap() {
                Command::Run { spec, control, .. } => {
                    assert_eq!(control, flags);
                    let n = if flags.header_file.is_some() { 2 } else { 0 };
                    assert_eq!(spec.headers.len(), n);
                }
                other => panic!("{other:?}"),
            }
        }
        let (s, _, _) = run(&[
            "-R1",
            "-H",
            "A: b",
            "--header-file",
            file.to_str().unwrap(),
            "http://h/",
        ]);
        assert_eq!(
            s.headers,
            [
                ("A", "b"),
                ("Authorization", "Bearer s3cret"),
                ("X-Tenant", "a")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        // A bad line is named by number; the value never appears in the error.
        std::fs::write(&file, "Authorization: ok\nX s3cret: v\n").unwrap();
        let e = err(&["-R1", "--header-file", file.to_str().unwrap(), "http://h/"]);
        assert!(e.contains("line 2") && !e.contains("s3cret"), "{e}");
        let e = err(&["-R1", "--control-port", "1", "--start-at", "5", "http://h/"]);
        assert!(e.contains("exclude"), "{e}");
        let e = err(&["-R1", "--start-at", "tomorrow", "http://h/"]);
        assert!(e.contains("tomorrow"), "{e}");
    }
}
