//! Host sampler: per-process-tree and whole-host CPU, memory and network from procfs, every
//! interval, on a background thread, each target tagged with its role.
//!
//! procfs is read by hand (`/proc/<pid>/stat`, `/proc/stat`, `/proc/meminfo`, `/proc/net/dev`):
//! the `procfs` crate is not in the workspace, and the handful of fields needed here are a few
//! lines of parsing each, with no allocation per process beyond the line buffer.
//!
//! Rows (long format, `source = host`):
//! * per target (labels `role`, `pid`, `comm`, and `unit` when the target is named):
//!   `process_cpu_percent` (CPU time of the process
//!   tree as % of one core, including reaped children), `process_rss_bytes`, `process_threads`,
//!   `process_count` (processes in the tree);
//! * host (no labels): `host_cpu_busy_share` (0–1 of all cores), `host_memory_used_bytes`
//!   (MemTotal − MemAvailable), `host_memory_available_bytes`,
//!   `host_network_receive_bytes_per_second`, `host_network_transmit_bytes_per_second`
//!   (all interfaces but `lo`, in the sampler's network namespace).
//!
//! Rates need two samples, so they start at the second tick.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::output::{Labels, MetricRow};
use crate::window::unix_secs;

/// What a sampled process is, in the experiment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// The application under test.
    App,
    /// An interference generator (`aefm-stress`, iBench).
    Interference,
    /// The load generator.
    Generator,
    /// Anything else, named.
    Other(String),
}

impl Role {
    /// The label value: `app`, `interference`, `generator`, or the given name.
    pub fn as_str(&self) -> &str {
        match self {
            Role::App => "app",
            Role::Interference => "interference",
            Role::Generator => "generator",
            Role::Other(s) => s,
        }
    }

    /// Parses a label value back (anything unknown becomes `Other`).
    pub fn parse(s: &str) -> Role {
        match s {
            "app" => Role::App,
            "interference" => Role::Interference,
            "generator" => Role::Generator,
            other => Role::Other(other.to_string()),
        }
    }
}

/// A process to sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Process ID.
    pub pid: u32,
    /// Its role.
    pub role: Role,
    /// Sum over the process and all its descendants.
    pub include_children: bool,
    /// A name for the rows' `unit` label (the manager's unit names: `front`, `back-1`, ...).
    pub name: Option<String>,
}

impl Target {
    /// The process `pid` and all its descendants, unnamed.
    pub fn tree(pid: u32, role: Role) -> Target {
        Target {
            pid,
            role,
            include_children: true,
            name: None,
        }
    }

    /// The process `pid` alone (its threads, not its children), unnamed.
    pub fn process(pid: u32, role: Role) -> Target {
        Target {
            include_children: false,
            ..Target::tree(pid, role)
        }
    }

    /// The same target, with a `unit` label.
    pub fn named(self, name: impl Into<String>) -> Target {
        Target {
            name: Some(name.into()),
            ..self
        }
    }
}

/// Everything a sampler recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSamples {
    /// Samples in long format (`source = host`).
    pub rows: Vec<MetricRow>,
    /// Problems met (a target that never existed, a target that exited, unreadable files).
    pub errors: Vec<String>,
}

/// Samples targets and the host on a background thread until stopped.
#[derive(Debug)]
pub struct Sampler {
    targets: Arc<Mutex<Vec<Target>>>,
    stop: mpsc::Sender<()>,
    handle: JoinHandle<HostSamples>,
}

impl Sampler {
    /// Starts sampling now and then every `interval`.
    pub fn start(targets: Vec<Target>, interval: Duration) -> Sampler {
        let targets = Arc::new(Mutex::new(targets));
        let (stop, rx) = mpsc::channel();
        let shared = Arc::clone(&targets);
        let handle = std::thread::Builder::new()
            .name("aefm-host-sampler".into())
            .spawn(move || run(shared, interval.max(Duration::from_millis(10)), rx))
            .expect("spawning a thread only fails when the system is out of resources");
        Sampler {
            targets,
            stop,
            handle,
        }
    }

    /// Adds a target from the next tick on.
    pub fn add(&self, target: Target) {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(target);
    }

    /// Takes a last sample, stops, and returns everything recorded.
    pub fn stop(self) -> HostSamples {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or_else(|_| HostSamples {
            rows: Vec::new(),
            errors: vec!["host sampler thread panicked".into()],
        })
    }
}

/// One process from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ProcStat {
    ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
    threads: u64,
    start: u64,
    rss_pages: u64,
}

fn read_stat(pid: u32) -> Option<(String, ProcStat)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s)
}

/// Parses `/proc/<pid>/stat`; `comm` may contain spaces and parentheses, so split at the last `)`.
fn parse_stat(s: &str) -> Option<(String, ProcStat)> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let f: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((
        comm,
        ProcStat {
            ppid: n(1)? as u32,
            ticks: n(11)? + n(12)? + n(13)? + n(14)?,
            threads: n(17)?,
            start: n(19)?,
            rss_pages: n(21)?,
        },
    ))
}

fn all_processes() -> HashMap<u32, ProcStat> {
    let mut out = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if let Some((_, st)) = read_stat(pid) {
                    out.insert(pid, st);
                }
            }
        }
    }
    out
}

/// `(busy, total)` jiffies of all CPUs from `/proc/stat`.
fn host_cpu() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is already in user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// `(MemTotal, MemAvailable)` in bytes.
fn host_mem() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((get("MemTotal:")?, get("MemAvailable:")?))
}

/// `(rx, tx)` bytes over every interface but `lo`.
fn host_net() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/net/dev").ok()?;
    let (mut rx, mut tx) = (0, 0);
    for line in s.lines().skip(2) {
        let (name, rest) = line.split_once(':')?;
        if name.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        rx += v.first().copied().unwrap_or(0);
        tx += v.get(8).copied().unwrap_or(0);
    }
    Some((rx, tx))
}

struct TargetState {
    comm: String,
    start: u64,
    last_ticks: u64,
    gone: bool,
}

fn run(
    targets: Arc<Mutex<Vec<Target>>>,
    interval: Duration,
    stop: mpsc::Receiver<()>,
) -> HostSamples {
    // SAFETY: sysconf has no preconditions.
    let clk_tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let mut out = HostSamples::default();
    let mut states: HashMap<(u32, String), TargetState> = HashMap::new();
    let mut last_cpu: Option<(u64, u64)> = None;
    let mut last_net: Option<(u64, u64)> = None;
    let mut last_at: Option<Instant> = None;
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        let ts = unix_secs(SystemTime::now());
        let elapsed = last_at.map(|t| now.duration_since(t).as_secs_f64());
        let list = targets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let procs = if list.iter().any(|t| t.include_children) {
            all_processes()
        } else {
            HashMap::new()
        };
        let mut push = |metric: &str, labels: &Labels, value: f64| {
            out.rows.push(MetricRow {
                timestamp: ts,
                source: "host".into(),
                metric: metric.into(),
                labels: labels.clone(),
                value,
            })
        };
        for t in &list {
            let key = (t.pid, t.role.as_str().to_string());
            let root = if t.include_children {
                procs.get(&t.pid).copied()
            } else {
                read_stat(t.pid).map(|x| x.1)
            };
            let state = states.get_mut(&key);
            let Some(root) = root.filter(|r| state.as_ref().is_none_or(|s| s.start == r.start))
            else {
                match state {
                    Some(s) if !s.gone => {
                        s.gone = true;
                        out.errors.push(format!(
                            "pid {} ({}) exited; sampling of it stopped",
                            t.pid,
                            t.role.as_str()
                        ));
                    }
                    None => {
                        states.insert(
                            key,
                            TargetState {
                                comm: String::new(),
                                start: 0,
                                last_ticks: 0,
                                gone: true,
                            },
                        );
                        out.errors.push(format!(
                            "pid {} ({}) does not exist",
                            t.pid,
                            t.role.as_str()
                        ));
                    }
                    _ => {}
                }
                continue;
            };
            // Tree members: the root and every descendant (by ppid), each counted once.
            let (mut ticks, mut rss, mut threads, mut count) =
                (root.ticks, root.rss_pages, root.threads, 1u64);
            if t.include_children {
                let mut frontier = vec![t.pid];
                let mut guard = 0;
                while let Some(p) = frontier.pop() {
                    guard += 1;
                    if guard > 100_000 {
                        break;
                    }
                    for (&cpid, c) in &procs {
                        if c.ppid == p && cpid != p {
                            ticks += c.ticks;
                            rss += c.rss_pages;
                            threads += c.threads;
                            count += 1;
                            frontier.push(cpid);
                        }
                    }
                }
            }
            let state = states.entry(key).or_insert_with(|| TargetState {
                comm: read_stat(t.pid).map(|x| x.0).unwrap_or_default(),
                start: root.start,
                last_ticks: ticks,
                gone: false,
            });
            let mut labels = Labels::new();
            labels.insert("role".into(), t.role.as_str().into());
            labels.insert("pid".into(), t.pid.to_string());
            labels.insert("comm".into(), state.comm.clone());
            if let Some(name) = &t.name {
                labels.insert("unit".into(), name.clone());
            }
            if let Some(dt) = elapsed.filter(|d| *d > 0.0) {
                // A child that exited unreaped drops out of the sum: never report negative CPU.
                let dticks = ticks.saturating_sub(state.last_ticks) as f64;
                push(
                    "process_cpu_percent",
                    &labels,
                    dticks / clk_tck / dt * 100.0,
                );
            }
            state.last_ticks = ticks;
            push("process_rss_bytes", &labels, (rss * page) as f64);
            push("process_threads", &labels, threads as f64);
            push("process_count", &labels, count as f64);
        }
        let none = Labels::new();
        if let Some(cpu) = host_cpu() {
            if let Some((b0, t0)) = last_cpu {
                let dt = cpu.1.saturating_sub(t0);
                if dt > 0 {
                    push(
                        "host_cpu_busy_share",
                        &none,
                        cpu.0.saturating_sub(b0) as f64 / dt as f64,
                    );
                }
            }
            last_cpu = Some(cpu);
        }
        if let Some((total, avail)) = host_mem() {
            push(
                "host_memory_used_bytes",
                &none,
                total.saturating_sub(avail) as f64,
            );
            push("host_memory_available_bytes", &none, avail as f64);
        }
        if let Some(net) = host_net() {
            if let (Some((r0, t0)), Some(dt)) = (last_net, elapsed.filter(|d| *d > 0.0)) {
                push(
                    "host_network_receive_bytes_per_second",
                    &none,
                    net.0.saturating_sub(r0) as f64 / dt,
                );
                push(
                    "host_network_transmit_bytes_per_second",
                    &none,
                    net.1.saturating_sub(t0) as f64 / dt,
                );
            }
            last_net = Some(net);
        }
        last_at = Some(now);
        next += interval;
        match stop.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 4 0 5555 1000000 321 18446744073709551615";
        let (comm, st) = parse_stat(line).unwrap();
        assert_eq!(comm, "a) b (c)");
        assert_eq!(st.ppid, 1);
        assert_eq!(st.ticks, 250 + 50 + 7 + 3);
        assert_eq!(st.threads, 4);
        assert_eq!(st.start, 5555);
        assert_eq!(st.rss_pages, 321);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn samples_itself_and_reports_missing_pids() {
        let me = std::process::id();
        let s = Sampler::start(
            vec![
                Target::tree(me, Role::Generator).named("me"),
                Target::process(u32::MAX - 1, Role::App),
            ],
            Duration::from_millis(50),
        );
        std::thread::sleep(Duration::from_millis(180));
        let out = s.stop();
        let rss: Vec<&MetricRow> = out
            .rows
            .iter()
            .filter(|r| r.metric == "process_rss_bytes")
            .collect();
        assert!(rss.len() >= 2, "{rss:?}");
        assert!(rss[0].value > 1e6);
        assert_eq!(rss[0].labels["role"], "generator");
        assert_eq!(rss[0].labels["unit"], "me");
        assert!(out.rows.iter().any(|r| r.metric == "host_cpu_busy_share"));
        assert!(out.rows.iter().any(|r| r.metric == "process_cpu_percent"));
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    }
}
