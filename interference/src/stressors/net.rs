//! Network stressor: drives iperf3. Server mode runs `iperf3 -s -p PORT`; client mode runs
//! `iperf3 -c HOST -p PORT -b BW -P STREAMS -t T -J` (`-b` is per stream, as in iperf3 and the
//! original AEFM, so the target is `BW x STREAMS`). A supervisor thread restarts iperf3 whenever it
//! exits before the duration ends (server not up yet, connection reset, crash), with a 0.5 s pause.
//!
//! Per-second achieved bits/s come from the iperf3 process's `/proc/PID/io` byte counters (`wchar`
//! for the client's socket writes, `rchar` for the server's reads): iperf3 3.12 has no streaming
//! JSON output and its text intervals would need fragile parsing. The final figure for a client is
//! iperf3's own `end.sum_sent` from its JSON, summed over runs.
//! The child gets `PR_SET_PDEATHSIG = SIGKILL`, so it dies with `aefm-stress` even on SIGKILL.
//!
//! Errors: whenever iperf3 exits by itself with an error (refused, unreachable, name unknown,
//! address in use) the stressor is failing until a later run works (a client moved data, a server
//! stayed up a second); while failing, every report line carries the error. A run that ends failing,
//! or a client that never sent anything, puts the error on the final line, and `aefm-stress`
//! exits 1 saying why.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{details, round, Active, Ctx};
use crate::error::{Error, Result};
use crate::stop::sleep_polling;

/// What iperf3 is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mode {
    Server {
        port: u16,
    },
    Client {
        target: String,
        port: u16,
        bandwidth_bps: u64,
        streams: u32,
    },
}

/// The iperf3 program: `$AEFM_IPERF3`, else `iperf3` on `$PATH`.
pub fn find_iperf3() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AEFM_IPERF3") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("iperf3"))
            .find(|p| p.is_file())
    })
}

/// Splits `HOST[:PORT]` (also `[v6addr]:PORT`); the port defaults to `default_port`.
pub fn split_target(text: &str, default_port: u16) -> Result<(String, u16)> {
    let bad = |r: &str| Error::parse("target", text, r.to_string());
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("empty host"));
    }
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("missing ]"))?;
        (h, after.strip_prefix(':'))
    } else if t.matches(':').count() == 1 {
        let (h, p) = t.split_once(':').unwrap_or((t, ""));
        (h, Some(p))
    } else {
        (t, None)
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("port must be 1..65535"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

/// How long an iperf3 client waits for its control connection, in ms.
const CONNECT_TIMEOUT_MS: u64 = 5000;
/// Bytes a client run must write before it counts as working (iperf3's own error output is about
/// 1 KB, its first data write 128 KiB).
const WORKING_BYTES: u64 = 16 * 1024;
/// How long a server run must stay up before it counts as working.
const SERVER_UP: Duration = Duration::from_secs(1);
/// How long past its deadline a client's iperf3 may run to end by itself: its `-t` is the
/// remaining time rounded up to a second, and it starts after the deadline was set.
const CLIENT_END_GRACE: Duration = Duration::from_millis(1500);

/// iperf3 arguments for one run of `secs` seconds.
pub(crate) fn iperf_args(mode: &Mode, secs: u64) -> Vec<String> {
    match mode {
        Mode::Server { port } => vec!["-s".into(), "-p".into(), port.to_string()],
        Mode::Client {
            target,
            port,
            bandwidth_bps,
            streams,
        } => vec![
            "-c".into(),
            target.clone(),
            "-p".into(),
            port.to_string(),
            "-b".into(),
            bandwidth_bps.to_string(),
            "-P".into(),
            streams.to_string(),
            "-t".into(),
            secs.to_string(),
            // An unreachable host fails (and is retried) instead of hanging in connect().
            "--connect-timeout".into(),
            CONNECT_TIMEOUT_MS.to_string(),
            "-J".into(),
        ],
    }
}

/// (bytes sent, seconds, bits/s, error) from an iperf3 client's `-J` output.
pub fn parse_client_json(text: &str) -> Option<(u64, f64, f64, Option<String>)> {
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    let err = v.get("error").and_then(|e| e.as_str()).map(str::to_string);
    let sent = v.pointer("/end/sum_sent");
    let bytes = sent
        .and_then(|s| s.get("bytes"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let secs = sent
        .and_then(|s| s.get("seconds"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let bps = sent
        .and_then(|s| s.get("bits_per_second"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    Some((bytes, secs, bps, err))
}

/// `wchar` (written) or `rchar` (read) of a process.
fn io_counter(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(key)?
            .trim_start_matches(':')
            .trim()
            .parse()
            .ok()
    })
}

#[derive(Default)]
struct Totals {
    json_bytes: u64,
    json_secs: f64,
    last_error: Option<String>,
    /// Set when a run failed, cleared when a later run works: the stressor is failing now.
    failing: Option<String>,
    /// Runs started, and whether any run ever worked.
    attempts: u32,
    ever_worked: bool,
}

impl Totals {
    fn fail(&mut self, what: String) {
        self.last_error = Some(what.clone());
        self.failing = Some(what);
    }

    fn worked(&mut self) {
        self.failing = None;
        self.ever_worked = true;
    }
}

struct Shared {
    bytes: AtomicU64,
    restarts: AtomicU32,
    running: AtomicBool,
    totals: Mutex<Totals>,
}

fn read_all(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

fn terminate(child: &mut Child) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    // iperf3 prints its JSON totals on SIGTERM; give it time on a busy machine.
    while t0.elapsed() < Duration::from_secs(2) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn supervise(
    exe: PathBuf,
    mode: Mode,
    deadline: Option<Instant>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) {
    let counter = if matches!(mode, Mode::Server { .. }) {
        "rchar"
    } else {
        "wchar"
    };
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining.is_some_and(|r| r.is_zero()) {
            break;
        }
        if !first {
            shared.restarts.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        // iperf3 caps -t at 86400 s; runs without a duration restart after a day.
        let secs = remaining
            .map(|r| r.as_secs_f64().ceil() as u64)
            .unwrap_or(86400)
            .clamp(1, 86400);
        let mut cmd = Command::new(&exe);
        // Own process group: a terminal's Ctrl-C reaches aefm-stress only, which then stops iperf3
        // itself (and still prints iperf3's totals); PR_SET_PDEATHSIG covers a killed parent.
        cmd.process_group(0);
        cmd.args(iperf_args(&mode, secs))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; runs in the forked child before exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let mut t = shared.totals.lock().unwrap_or_else(|e| e.into_inner());
                t.attempts += 1;
                t.fail(format!("cannot start {}: {e}", exe.display()));
                drop(t);
                if sleep_polling(&stop, Duration::from_millis(500)) {
                    break;
                }
                continue;
            }
        };
        shared.running.store(true, Ordering::Relaxed);
        shared
            .totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .attempts += 1;
        let started = Instant::now();
        let mut working = false;
        let out = child.stdout.take().map(read_all);
        let err = child.stderr.take().map(read_all);
        let pid = child.id();
        let mut last = io_counter(pid, counter).unwrap_or(0);
        let mut exited_by_itself = false;
        let mut run_bytes = 0u64;
        loop {
            if let Some(now) = io_counter(pid, counter) {
                shared
                    .bytes
                    .fetch_add(now.saturating_sub(last), Ordering::Relaxed);
                run_bytes += now.saturating_sub(last);
                last = now;
            }
            let works = match mode {
                Mode::Server { .. } => started.elapsed() >= SERVER_UP,
                Mode::Client { .. } => run_bytes >= WORKING_BYTES,
            };
            if works && !working {
                working = true;
                shared
                    .totals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .worked();
            }
            if let Ok(Some(_)) = child.try_wait() {
                exited_by_itself = true;
                break;
            }
            // A client's iperf3 was given the run's remaining seconds (rounded up): past the
            // deadline it gets a grace to end by itself and print its totals, which a SIGTERM
            // on a busy machine can cut short.
            let grace = match mode {
                Mode::Client { .. } => CLIENT_END_GRACE,
                Mode::Server { .. } => Duration::ZERO,
            };
            if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d + grace)
            {
                terminate(&mut child);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        shared.running.store(false, Ordering::Relaxed);
        let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
        // `wchar` also counted iperf3's own output (its JSON, error text): take it back out.
        let printed = (stdout.len() + stderr.len()) as u64;
        if counter == "wchar" {
            let _ = shared
                .bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(printed.min(run_bytes)))
                });
        }
        let mut totals = shared.totals.lock().unwrap_or_else(|e| e.into_inner());
        let what = describe(&mode);
        if let Some((bytes, secs, _bps, error)) = parse_client_json(&stdout) {
            totals.json_bytes += bytes;
            totals.json_secs += secs;
            if bytes > 0 {
                totals.worked();
            }
            if let Some(e) = error.filter(|_| exited_by_itself) {
                totals.fail(format!("{what}: {e}"));
            }
        } else if exited_by_itself {
            let line = stderr
                .lines()
                .chain(stdout.lines())
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("exited");
            totals.fail(format!("{what}: {}", line.trim()));
        }
        drop(totals);
        if exited_by_itself && sleep_polling(&stop, Duration::from_millis(500)) {
            break;
        }
    }
}

/// The iperf3 command a run stands for, for messages: `iperf3 -c HOST -p PORT` or `iperf3 -s -p PORT`.
fn describe(mode: &Mode) -> String {
    match mode {
        Mode::Server { port } => format!("iperf3 -s -p {port}"),
        Mode::Client { target, port, .. } => format!("iperf3 -c {target} -p {port}"),
    }
}

/// A running network stressor.
pub(crate) struct NetStress {
    mode: Mode,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    start: Instant,
    last: Instant,
    last_bytes: u64,
}

/// Finds iperf3 and starts the supervisor.
pub(crate) fn start(ctx: &Ctx, mode: Mode) -> Result<NetStress> {
    if let Mode::Client {
        streams,
        bandwidth_bps,
        ..
    } = &mode
    {
        if *streams == 0 || *streams > 128 {
            return Err(Error::Invalid {
                what: "streams",
                reason: format!("{streams} is not within 1..128 (iperf3's limit)"),
            });
        }
        if *bandwidth_bps == 0 {
            return Err(Error::Invalid {
                what: "bandwidth",
                reason: "must be above 0 bit/s".into(),
            });
        }
    }
    let exe = find_iperf3().ok_or_else(|| Error::Spawn {
        program: "iperf3".into(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not found on PATH (install iperf3 or set AEFM_IPERF3)",
        ),
    })?;
    let shared = Arc::new(Shared {
        bytes: AtomicU64::new(0),
        restarts: AtomicU32::new(0),
        running: AtomicBool::new(false),
        totals: Mutex::default(),
    });
    let start = Instant::now();
    let deadline = ctx.duration.map(|d| start + d);
    let (m, s, stop) = (mode.clone(), shared.clone(), ctx.stop.clone());
    let exe2: PathBuf = Path::new(&exe).to_path_buf();
    let handle = std::thread::Builder::new()
        .name("iperf3".into())
        .spawn(move || supervise(exe2, m, deadline, s, stop))
        .map_err(|e| Error::Spawn {
            program: "iperf3 supervisor thread".into(),
            source: e,
        })?;
    Ok(NetStress {
        mode,
        shared,
        handle: Some(handle),
        start,
        last: start,
        last_bytes: 0,
    })
}

impl NetStress {
    fn details(&self) -> Map<String, Value> {
        let t = self.shared.totals.lock().unwrap_or_else(|e| e.into_inner());
        let mut d = details([
            (
                "restarts",
                json!(self.shared.restarts.load(Ordering::Relaxed)),
            ),
            (
                "iperf3_running",
                json!(self.shared.running.load(Ordering::Relaxed)),
            ),
            ("last_error", json!(t.last_error)),
        ]);
        match &self.mode {
            Mode::Server { port } => {
                d.insert("port".into(), json!(port));
            }
            Mode::Client {
                target,
                port,
                bandwidth_bps,
                streams,
            } => {
                d.insert("server".into(), json!(format!("{target}:{port}")));
                d.insert("bandwidth_per_stream_bps".into(), json!(bandwidth_bps));
                d.insert("streams".into(), json!(streams));
            }
        }
        d
    }
}

impl Active for NetStress {
    fn kind(&self) -> &'static str {
        match self.mode {
            Mode::Server { .. } => "net-server",
            Mode::Client { .. } => "net-client",
        }
    }
    fn unit(&self) -> &'static str {
        "bit/s"
    }
    fn target(&self) -> f64 {
        match &self.mode {
            Mode::Server { .. } => 0.0,
            Mode::Client {
                bandwidth_bps,
                streams,
                ..
            } => *bandwidth_bps as f64 * *streams as f64,
        }
    }
    fn sample(&mut self) -> (f64, Map<String, Value>) {
        let now = Instant::now();
        let b = self.shared.bytes.load(Ordering::Relaxed);
        let bps = (b - self.last_bytes) as f64 * 8.0 / (now - self.last).as_secs_f64().max(1e-9);
        self.last = now;
        self.last_bytes = b;
        (round(bps, 0), self.details())
    }
    fn failure(&mut self) -> Option<String> {
        self.shared
            .totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failing
            .clone()
    }
    fn finish(mut self: Box<Self>) -> (f64, Map<String, Value>) {
        let elapsed = self.start.elapsed().as_secs_f64().max(1e-9);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let s = &self;
        let counted = s.shared.bytes.load(Ordering::Relaxed) as f64 * 8.0 / elapsed;
        let mut d = s.details();
        d.insert("counted_bps".into(), json!(round(counted, 0)));
        let t = s.shared.totals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = final_error(&s.mode, &t, elapsed) {
            d.insert(crate::report::ERROR_KEY.into(), json!(e));
        }
        let achieved = if t.json_secs > 0.0 {
            let bps = t.json_bytes as f64 * 8.0 / t.json_secs;
            d.insert("iperf3_sent_bps".into(), json!(round(bps, 0)));
            d.insert("iperf3_seconds".into(), json!(round(t.json_secs, 3)));
            bps
        } else {
            counted
        };
        drop(t);
        (round(achieved, 0), d)
    }
}

/// Why the run as a whole failed, or None: it ended failing (the last runs could not do their
/// job), or a client never sent anything.
fn final_error(mode: &Mode, t: &Totals, elapsed_s: f64) -> Option<String> {
    let attempts = match t.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    if let Some(e) = &t.failing {
        let what = if t.ever_worked {
            "failing at the end"
        } else if matches!(mode, Mode::Client { .. }) {
            "never reached its server"
        } else {
            "never stayed up"
        };
        return Some(format!("{what} ({attempts} in {elapsed_s:.1} s): {e}"));
    }
    match mode {
        Mode::Client { .. } if !t.ever_worked => Some(format!(
            "{} sent nothing in {elapsed_s:.1} s ({attempts})",
            describe(mode)
        )),
        _ => None,
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
