//! `loadbench co`: one coordinated-omission test. Starts a stall server (in-process, or the
//! `stall-server` binary as a child pinned to its own core), runs a generator command template
//! pinned to another core, places the server's stalls on the generator's recorded window, and
//! prints the model next to the report per percentile with a PASS/FAIL verdict.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use super::measure::{self, Measured};
use super::model::{self, StallModel, Tolerance, Verdict};
use super::run::{self, Finished};
use super::stall::{self, Anchor, Schedule, StallConfig, StallServer};

/// Options of `loadbench co`.
#[derive(Clone, Debug, clap::Args)]
pub struct CoArgs {
    /// Generator command template; placeholders {url} {rate} {conns} {threads} {duration}
    /// (seconds) and {json} (a file for aefm-load's --json report, read instead of stdout).
    #[arg(long)]
    pub cmd: String,
    /// Total request rate.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Connections.
    #[arg(long, default_value_t = 10)]
    pub conns: u32,
    /// Threads.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Run length, s.
    #[arg(long, default_value_t = 40.0)]
    pub duration: f64,
    /// First stall, s after the first request.
    #[arg(long, default_value_t = 15.0)]
    pub stall_at: f64,
    /// Stall length, s.
    #[arg(long, default_value_t = 5.0)]
    pub stall_for: f64,
    /// Period of repeated stalls, s (0: once).
    #[arg(long, default_value_t = 0.0)]
    pub stall_every: f64,
    /// Number of stalls when periodic.
    #[arg(long, default_value_t = 1)]
    pub stall_count: u32,
    /// When the generator starts recording, s after its start: `auto` (aefm-load's --warmup
    /// from its JSON; wrk2's calibration if the report has calibration lines; else 0), `wrk2`
    /// (10 s + 5 ms × connections per thread), or seconds.
    #[arg(long, default_value = "auto")]
    pub record_start: String,
    /// Judge only these percentiles (p50 p75 p90 p99 p99.9 p99.99 max; comma-separated; default:
    /// every one on the stall's ramp).
    #[arg(long, value_delimiter = ',')]
    pub judge: Vec<String>,
    /// Relative tolerance.
    #[arg(long, default_value_t = 0.015)]
    pub tolerance: f64,
    /// Absolute tolerance, ms.
    #[arg(long, default_value_t = 2.0)]
    pub tolerance_ms: f64,
    /// Core list for the generator (taskset; empty: no pinning).
    #[arg(long, default_value = "0")]
    pub gen_core: String,
    /// Core list for the stall server when it runs as a child.
    #[arg(long, default_value = "1")]
    pub server_core: String,
    /// Run the stall server in this process (not pinned) instead of as a child.
    #[arg(long)]
    pub in_process: bool,
    /// The stall-server binary (default: next to this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Print the verdict as one JSON line too.
    #[arg(long)]
    pub json: bool,
}

/// The stall server, wherever it runs.
enum Server {
    InProcess(StallServer),
    Child {
        child: Child,
        port: u16,
        events: Arc<Mutex<Vec<Value>>>,
    },
}

impl Server {
    fn start(a: &CoArgs) -> anyhow::Result<Server> {
        if a.in_process {
            let config = StallConfig {
                addr: "127.0.0.1:0".parse()?,
                schedule: Schedule {
                    at: a.stall_at,
                    length: a.stall_for,
                    every: a.stall_every,
                    count: a.stall_count,
                },
                anchor: Anchor::FirstRequest,
                body_size: 64,
                status: 200,
                delay: Duration::ZERO,
                close_every: 0,
            };
            let quiet: stall::EventSink = Arc::new(|_: &Value| {});
            return Ok(Server::InProcess(StallServer::start(config, quiet)?));
        }
        spawn_child(a)
    }

    fn port(&self) -> u16 {
        match self {
            Server::InProcess(s) => s.addr().port(),
            Server::Child { port, .. } => *port,
        }
    }

    /// Stops the server and returns the stalls it logged, as wall-clock (start, end).
    fn finish(self) -> Vec<(f64, f64)> {
        match self {
            Server::InProcess(s) => s.stall_windows_wall(),
            Server::Child {
                mut child, events, ..
            } => {
                run::terminate(&mut child);
                let ev = events.lock().unwrap();
                let windows = ev.iter().filter(|e| e["event"] == "stall_begin");
                windows
                    .filter_map(|e| {
                        Some((e["planned_start"].as_f64()?, e["planned_end"].as_f64()?))
                    })
                    .collect()
            }
        }
    }
}

fn spawn_child(a: &CoArgs) -> anyhow::Result<Server> {
    let bin = match &a.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("stall-server"),
    };
    let argv: Vec<String> = [
        bin.display().to_string(),
        "--port=0".into(),
        format!("--stall-at={}", a.stall_at),
        format!("--stall-for={}", a.stall_for),
        format!("--stall-every={}", a.stall_every),
        format!("--stall-count={}", a.stall_count),
    ]
    .into();
    let argv = run::pinned(argv, Some(&a.server_core));
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let events = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().context("stall-server stderr")?;
    let ev = events.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["event"] == "listening" {
                let _ = tx.send(v["port"].as_u64().unwrap_or(0) as u16);
            }
            ev.lock().unwrap().push(v);
        }
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(port) if port > 0 => Ok(Server::Child {
            child,
            port,
            events,
        }),
        _ => {
            run::terminate(&mut child);
            bail!("stall-server did not report its port")
        }
    }
}

/// Runs one test, prints the table and verdict; true on PASS.
pub fn run_co(a: &CoArgs) -> anyhow::Result<bool> {
    let server = Server::start(a)?;
    let json_file = tempfile::NamedTempFile::new()?;
    let vars = [
        ("url", format!("http://127.0.0.1:{}/", server.port())),
        ("rate", format!("{}", a.rate)),
        ("conns", a.conns.to_string()),
        ("threads", a.threads.to_string()),
        ("duration", format!("{}", a.duration)),
        ("json", json_file.path().display().to_string()),
    ];
    let cmd = run::expand(&a.cmd, &vars);
    let argv = run::pinned(run::split_words(&cmd), Some(&a.gen_core));
    println!("generator: {}", argv.join(" "));
    let t0 = run::wall_now();
    let finished = run::run(&argv);
    let stalls = server.finish();
    let finished = finished.with_context(|| format!("running {cmd}"))?;
    let uses_json = a.cmd.contains("{json}");
    let m = measure::measure(uses_json.then(|| json_file.path()), &finished.stdout);
    let verdict = judge(a, &m, &stalls, t0, &finished)?;
    Ok(verdict.pass && finished.code == 0)
}

/// Places the stalls on the recorded window, prints the comparison and returns the verdict.
fn judge(
    a: &CoArgs,
    m: &Measured,
    stalls: &[(f64, f64)],
    t0: f64,
    f: &Finished,
) -> anyhow::Result<Verdict> {
    let start = m.start_time.unwrap_or(t0);
    let runtime = if m.runtime_s > 0.0 {
        m.runtime_s
    } else {
        f.wall_s
    };
    let rec = record_start(a, m)?;
    let inside = |&&(s, e): &&(f64, f64)| s - start >= rec && e - start <= runtime;
    let k = stalls.iter().filter(inside).count() as u32;
    let model = StallModel {
        rate: a.rate,
        stall_s: a.stall_for,
        window_s: runtime - rec,
        stalls: k,
    };
    println!(
        "exit code {}, requests {}, Requests/sec {:.2}, errors {}, runtime {runtime:.3}s",
        f.code, m.requests, m.achieved, m.errors
    );
    for (s, e) in stalls {
        println!(
            "stall planned [+{:.3}s, +{:.3}s] after the generator's start",
            s - start,
            e - start
        );
    }
    println!(
        "recorded window +{rec:.3}s..+{runtime:.3}s: W = {:.3}s, K = {k}, S = {}s",
        model.window_s, a.stall_for
    );
    let tol = Tolerance {
        relative: a.tolerance,
        absolute_s: a.tolerance_ms / 1e3,
        ..Tolerance::default()
    };
    let v = model::check(&model, &|n| m.corrected_s(n), &a.judge, &tol);
    print_table(&v, &model, m, a.conns);
    print_verdict(&v, &tol, f);
    if a.json {
        println!(
            "{}",
            serde_json::json!({"verdict": v, "model": format!("{model:?}"), "measured": m})
        );
    }
    Ok(v)
}

/// The recording start, s after the generator's start.
fn record_start(a: &CoArgs, m: &Measured) -> anyhow::Result<f64> {
    let wrk2 = 10.0 + 0.005 * (a.conns / a.threads.max(1)) as f64;
    Ok(match a.record_start.as_str() {
        "wrk2" => wrk2,
        "auto" if m.calibrated => wrk2,
        "auto" => m.warmup_s.unwrap_or(0.0),
        s => s.parse().with_context(|| format!("--record-start {s:?}"))?,
    })
}

fn fmt_s(v: Option<f64>) -> String {
    match v {
        None => "baseline".into(),
        Some(v) if v >= 1.0 => format!("{v:.3}s"),
        Some(v) => format!("{:.2}ms", v * 1e3),
    }
}

fn print_table(v: &Verdict, model: &StallModel, m: &Measured, conns: u32) {
    println!(
        "{:>8} {:>12} {:>12} {:>8} {:>5}   {:>12} {:>12}",
        "pctile", "model", "corrected", "dev %", "ok", "model -U", "measured -U"
    );
    for r in &v.rows {
        let measured = r.measured_s.map_or("-".into(), |x| fmt_s(Some(x)));
        let unc = m
            .uncorrected_s(&r.name)
            .map_or("-".into(), |x| fmt_s(Some(x)));
        let dev = r
            .deviation
            .map_or("".into(), |d| format!("{:.2}", d * 100.0));
        let ok = r.ok.map_or("", |o| if o { "yes" } else { "NO" });
        let unc_model = fmt_s(model.uncorrected(r.q, conns));
        println!(
            "{:>8} {:>12} {:>12} {:>8} {:>5}   {:>12} {:>12}",
            r.name,
            fmt_s(r.expected_s),
            measured,
            dev,
            ok,
            unc_model,
            unc
        );
    }
}

fn print_verdict(v: &Verdict, tol: &Tolerance, f: &Finished) {
    let worst = v
        .worst
        .as_ref()
        .and_then(|w| v.rows.iter().find(|r| &r.name == w));
    let worst = worst.map_or("nothing judged (no percentile on the ramp)".into(), |r| {
        format!(
            "worst deviation {:.2} % at {}",
            r.deviation.unwrap_or(f64::NAN) * 100.0,
            r.name
        )
    });
    let pass = v.pass && f.code == 0;
    println!(
        "verdict: {} ({worst}; tolerance {:.1} % or {:.0} ms)",
        if pass { "PASS" } else { "FAIL" },
        tol.relative * 100.0,
        tol.absolute_s * 1e3
    );
    if f.code != 0 {
        println!(
            "generator exit code {}; stderr tail: {}",
            f.code,
            tail(&f.stderr, 600)
        );
    }
}

/// The last `n` bytes of `s` (on a char boundary).
pub fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}
