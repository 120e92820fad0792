//! Live metrics of a running load (`--metrics-addr ADDR`, [`crate::RunControl::with_metrics`]):
//! `GET /metrics` in the Prometheus text exposition format, version 0.0.4, so that a cluster's
//! Prometheus scrapes distributed generators while they run (the report still comes at the end).
//!
//! The coordinator updates the numbers on every worker tick (each thread reports once a
//! second), so they trail the workers by at most a second; the workers never touch them.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `aefm_load_running` | gauge | 1 from the run's start instant to its end, else 0 |
//! | `aefm_load_target_requests_per_second` | gauge | the spec's rate (all threads) |
//! | `aefm_load_achieved_requests_per_second` | gauge | completed responses per second over the last complete second |
//! | `aefm_load_requests_sent_total` | counter | requests written |
//! | `aefm_load_responses_completed_total` | counter | responses completed (any status) |
//! | `aefm_load_errors_total` | counter | errors of every kind (socket, status, TLS, protocol) |
//! | `aefm_load_elapsed_seconds` | gauge | time since the run's start (frozen at its end) |
//! | `aefm_load_duration_seconds` | gauge | the run's planned duration |
//! | `aefm_load_progress_ratio` | gauge | elapsed / duration, 0 to 1 |
//! | `aefm_load_start_time_seconds` | gauge | the start instant, unix seconds (0 before) |
//! | `aefm_load_latency_seconds` | histogram | corrected latency (from each request's intended send time) |
//!
//! Errors come as one total because the per-second ticks carry only the total (the kinds are
//! in the final report); bytes and in-flight requests are not in the ticks either.
//!
//! The latency histogram holds every completed response's corrected latency, warm-up
//! included (as the report's per-second series), in fixed buckets [`LATENCY_BUCKETS_US`]
//! (100 µs to 60 s, plus `+Inf`). It is filled from the ticks' HdrHistograms: a value counts in
//! the bucket of its HdrHistogram bucket's lowest value and adds that bucket's middle value to
//! `_sum`, both exact to the HdrHistogram's 3 significant digits (0.1 %).
//!
//! The server is a few lines of blocking HTTP/1.1 on its own thread, one request per connection,
//! rather than a server crate: the coordinator has no async runtime to lend, and one endpoint
//! scraped every few seconds needs no more. It answers `GET` and `HEAD /metrics`, 404 for other
//! paths, 405 for other methods, and stops when the run ends.

use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// Upper bounds (`le`) of the latency histogram's buckets, in µs (the exposition gives them in
/// seconds: 0.0001 to 60); a last `+Inf` bucket follows.
pub const LATENCY_BUCKETS_US: [u64; 18] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// How long a scraper may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The metrics endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {error}")]
pub struct MetricsError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why (kept out of the error's source chain so the message is said once).
    pub error: std::io::Error,
}

/// Where the run is.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Preparing, or waiting for its start.
    Before,
    /// Released on this start instant.
    Running(Instant),
    /// Ended after running this long.
    Ended(Duration),
}

/// Corrected latencies in the fixed buckets.
#[derive(Clone, Debug, Default)]
struct Latency {
    /// Per bucket (not cumulative), the last one above every bound.
    counts: [u64; LATENCY_BUCKETS_US.len() + 1],
    sum_seconds: f64,
}

impl Latency {
    fn add(&mut self, h: &Histogram<u64>) {
        for v in h.iter_recorded() {
            let at = v.value_iterated_to();
            let lowest = h.lowest_equivalent(at);
            let bucket = LATENCY_BUCKETS_US.partition_point(|&le| le < lowest);
            self.counts[bucket] += v.count_at_value();
            self.sum_seconds += v.count_at_value() as f64 * h.median_equivalent(at) as f64 / 1e6;
        }
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Everything the endpoint shows.
#[derive(Clone, Debug)]
struct State {
    phase: Phase,
    start_unix: f64,
    target_rate: f64,
    duration: Duration,
    sent: u64,
    completed: u64,
    errors: u64,
    last_second_rate: f64,
    latency: Latency,
}

impl Default for State {
    fn default() -> Self {
        State {
            phase: Phase::Before,
            start_unix: 0.0,
            target_rate: 0.0,
            duration: Duration::ZERO,
            sent: 0,
            completed: 0,
            errors: 0,
            last_second_rate: 0.0,
            latency: Latency::default(),
        }
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `/metrics` endpoint of one run: listening from [`MetricsServer::bind`] until the run ends
/// (or the server is dropped). Give it to the run with [`crate::RunControl::with_metrics`].
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    state: Shared,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0: any free port; see [`MetricsServer::local_addr`]) and answers
    /// on a background thread. Every metric is 0 until the run starts.
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer, MetricsError> {
        let fail = |error| MetricsError { addr, error };
        let listener = TcpListener::bind(addr).map_err(fail)?;
        let local = listener.local_addr().map_err(fail)?;
        let state = Shared::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopped) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("aefm-load-metrics".into())
            .spawn(move || accept_loop(&listener, &shared, &stopped))
            .map_err(fail)?;
        Ok(MetricsServer {
            addr: local,
            state,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The address it listens on (with the port chosen when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The exposition text `GET /metrics` answers now.
    pub fn render(&self) -> String {
        let state = lock(&self.state).clone();
        render(&state, Instant::now())
    }

    /// The run's clock starts at `start` (`start_wall` on the wall clock).
    pub(crate) fn run_started(
        &self,
        target_rate: f64,
        duration: Duration,
        start: Instant,
        start_wall: SystemTime,
    ) {
        let mut s = lock(&self.state);
        s.phase = Phase::Running(start);
        s.target_rate = target_rate;
        s.duration = duration;
        s.start_unix = start_wall
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
    }

    /// Adds one thread's tick: its counters and corrected latencies.
    pub(crate) fn record_tick(
        &self,
        sent: u64,
        completed: u64,
        errors: u64,
        latency: &Histogram<u64>,
    ) {
        let mut s = lock(&self.state);
        s.sent += sent;
        s.completed += completed;
        s.errors += errors;
        s.latency.add(latency);
    }

    /// The achieved rate of the second all threads just completed.
    pub(crate) fn record_second_rate(&self, rate: f64) {
        lock(&self.state).last_second_rate = rate;
    }

    /// The run is over (or failed before its start): `running` goes to 0, the elapsed time
    /// stops, and the server stops listening.
    pub(crate) fn run_ended(&self) {
        {
            let mut s = lock(&self.state);
            if let Phase::Running(start) = s.phase {
                let ran = Instant::now().saturating_duration_since(start);
                s.phase = Phase::Ended(ran.min(s.duration));
            }
        }
        self.shutdown();
    }

    /// Stops the listening thread: sets the flag, then wakes its blocking `accept` with a
    /// connection of our own. If that connection fails the thread is left to end at the next
    /// scrape rather than waiting for it.
    fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let wake = SocketAddr::new(ip, self.addr.port());
        if TcpStream::connect_timeout(&wake, IO_TIMEOUT).is_ok() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Answers connections one at a time until the stop flag is set.
fn accept_loop(listener: &TcpListener, state: &Shared, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(stream) = stream {
            answer(stream, state);
        }
    }
}

/// Reads one request's head: (method, path without the query), or None when the client sent
/// no complete request in time.
fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let target = req.path.unwrap_or_default();
                let path = target.split_once('?').map_or(target, |(p, _)| p);
                return Some((req.method.unwrap_or_default().to_string(), path.to_string()));
            }
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => {}
            _ => return None,
        }
    }
}

/// Answers one request on `stream` and closes it (errors just drop the connection).
fn answer(mut stream: TcpStream, state: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Some((method, path)) = read_request(&mut stream) else {
        return;
    };
    let (status, content_type, body) = match (method.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/metrics") => {
            let snapshot = lock(state).clone();
            let text = render(&snapshot, Instant::now());
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text)
        }
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "GET /metrics\n".into()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".into(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nallow: GET, HEAD\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(body.as_bytes());
    }
}

/// The exposition of `s` at `now`.
fn render(s: &State, now: Instant) -> String {
    let (running, elapsed) = match s.phase {
        Phase::Before => (false, Duration::ZERO),
        Phase::Running(start) => (now >= start, now.saturating_duration_since(start)),
        Phase::Ended(ran) => (false, ran),
    };
    let progress = if s.duration.is_zero() {
        0.0
    } else {
        (elapsed.as_secs_f64() / s.duration.as_secs_f64()).min(1.0)
    };
    let rows = [
        (
            "aefm_load_running",
            "gauge",
            "1 while the load runs, else 0.",
            if running { 1.0 } else { 0.0 },
        ),
        (
            "aefm_load_target_requests_per_second",
            "gauge",
            "Target rate of the run, requests per second (all threads).",
            s.target_rate,
        ),
        (
            "aefm_load_achieved_requests_per_second",
            "gauge",
            "Responses completed per second over the last complete second.",
            s.last_second_rate,
        ),
        (
            "aefm_load_requests_sent_total",
            "counter",
            "Requests written.",
            s.sent as f64,
        ),
        (
            "aefm_load_responses_completed_total",
            "counter",
            "Responses completed (any status).",
            s.completed as f64,
        ),
        (
            "aefm_load_errors_total",
            "counter",
            "Errors of every kind (socket, timeout, status, TLS, protocol).",
            s.errors as f64,
        ),
        (
            "aefm_load_elapsed_seconds",
            "gauge",
            "Time since the run's start, seconds (frozen at its end).",
            elapsed.as_secs_f64(),
        ),
        (
            "aefm_load_duration_seconds",
            "gauge",
            "Planned duration of the run, seconds.",
            s.duration.as_secs_f64(),
        ),
        (
            "aefm_load_progress_ratio",
            "gauge",
            "Elapsed time over the planned duration, 0 to 1.",
            progress,
        ),
        (
            "aefm_load_start_time_seconds",
            "gauge",
            "Start instant of the run, unix seconds (0 before the start).",
            s.start_unix,
        ),
    ];
    let mut out = String::with_capacity(4096);
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    render_latency(&mut out, &s.latency);
    out
}

/// The latency histogram: cumulative buckets, `+Inf`, `_sum` and `_count`.
fn render_latency(out: &mut String, l: &Latency) {
    let name = "aefm_load_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Corrected latency (from the intended send time) of completed responses, seconds.\n# TYPE {name} histogram"
    );
    let mut cumulative = 0;
    for (le, count) in LATENCY_BUCKETS_US.iter().zip(l.counts) {
        cumulative += count;
        let le = *le as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let count = l.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", l.sum_seconds);
    let _ = writeln!(out, "{name}_count {count}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::{new_histogram, record};
    use prometheus_parse::{Scrape, Value};
    use std::io::{Read, Write};

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    fn value(scrape: &Scrape, name: &str) -> Value {
        let found: Vec<_> = scrape.samples.iter().filter(|s| s.metric == name).collect();
        assert_eq!(found.len(), 1, "{name}");
        found[0].value.clone()
    }

    fn histogram_of(values_us: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &v in values_us {
            record(&mut h, v);
        }
        h
    }

    /// A state with two ticks, one per thread, of known latencies.
    fn sample_state() -> State {
        let mut s = State {
            phase: Phase::Running(Instant::now() - Duration::from_secs(3)),
            duration: Duration::from_secs(12),
            target_rate: 250.0,
            start_unix: 1_767_225_600.5,
            last_second_rate: 6.0,
            ..State::default()
        };
        for (sent, completed, errors, values) in [
            (3u64, 3u64, 0u64, &[50u64, 300, 1_000][..]),
            (4, 3, 1, &[1_001, 2_000_000, 100_000_000][..]),
        ] {
            s.sent += sent;
            s.completed += completed;
            s.errors += errors;
            s.latency.add(&histogram_of(values));
        }
        s
    }

    #[test]
    fn exposition_parses_with_types_and_cumulative_buckets() {
        let text = render(&sample_state(), Instant::now());
        let scrape = parse(&text);
        for (name, counter) in [
            ("aefm_load_requests_sent_total", 7.0),
            ("aefm_load_responses_completed_total", 6.0),
            ("aefm_load_errors_total", 1.0),
        ] {
            assert_eq!(value(&scrape, name), Value::Counter(counter), "{name}");
            assert!(scrape.docs.contains_key(name), "{name} has no HELP");
        }
        for (name, gauge) in [
            ("aefm_load_running", 1.0),
            ("aefm_load_target_requests_per_second", 250.0),
            ("aefm_load_achieved_requests_per_second", 6.0),
            ("aefm_load_duration_seconds", 12.0),
            ("aefm_load_start_time_seconds", 1_767_225_600.5),
        ] {
            assert_eq!(value(&scrape, name), Value::Gauge(gauge), "{name}");
        }
        let Value::Gauge(elapsed) = value(&scrape, "aefm_load_elapsed_seconds") else {
            panic!("elapsed is not a gauge");
        };
        assert!((3.0..60.0).contains(&elapsed), "{elapsed}");
        let Value::Gauge(progress) = value(&scrape, "aefm_load_progress_ratio") else {
            panic!("progress is not a gauge");
        };
        assert!((0.25..=1.0).contains(&progress), "{progress}");

        let Value::Histogram(buckets) = value(&scrape, "aefm_load_latency_seconds") else {
            panic!("latency is not a histogram: {text}");
        };
        assert_eq!(buckets.len(), LATENCY_BUCKETS_US.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0].less_than < w[1].less_than));
        assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
        let at = |le: f64| buckets.iter().find(|b| b.less_than == le).unwrap().count;
        // 50 µs; 300 µs; 1000 µs is `le` 1 ms exactly, 1001 µs the next bucket; 2 s; 100 s.
        assert_eq!(at(0.0001), 1.0);
        assert_eq!(at(0.0005), 2.0);
        assert_eq!(at(0.001), 3.0);
        assert_eq!(at(0.0025), 4.0);
        assert_eq!(at(1.0), 4.0);
        assert_eq!(at(2.5), 5.0);
        assert_eq!(at(60.0), 5.0);
        let inf = buckets.last().unwrap();
        assert!(inf.less_than.is_infinite());
        assert_eq!(
            value(&scrape, "aefm_load_latency_seconds_count"),
            Value::Untyped(inf.count)
        );
        assert_eq!(inf.count, 6.0);
        let Value::Untyped(sum) = value(&scrape, "aefm_load_latency_seconds_sum") else {
            panic!("no _sum");
        };
        let exact = (50 + 300 + 1_000 + 1_001 + 2_000_000 + 100_000_000) as f64 / 1e6;
        assert!((sum - exact).abs() < exact * 0.001, "{sum} vs {exact}");
    }

    #[test]
    fn before_and_after_the_run_nothing_runs() {
        let mut s = State::default();
        let scrape = parse(&render(&s, Instant::now()));
        assert_eq!(value(&scrape, "aefm_load_running"), Value::Gauge(0.0));
        assert_eq!(
            value(&scrape, "aefm_load_progress_ratio"),
            Value::Gauge(0.0)
        );
        // A start instant still ahead (a start barrier) is not running yet.
        s.phase = Phase::Running(Instant::now() + Duration::from_secs(3600));
        s.duration = Duration::from_secs(10);
        let scrape = parse(&render(&s, Instant::now()));
        assert_eq!(value(&scrape, "aefm_load_running"), Value::Gauge(0.0));
        s.phase = Phase::Ended(Duration::from_secs(10));
        let scrape = parse(&render(&s, Instant::now()));
        assert_eq!(value(&scrape, "aefm_load_running"), Value::Gauge(0.0));
        assert_eq!(
            value(&scrape, "aefm_load_progress_ratio"),
            Value::Gauge(1.0)
        );
        assert_eq!(
            value(&scrape, "aefm_load_elapsed_seconds"),
            Value::Gauge(10.0)
        );
    }

    fn request(addr: SocketAddr, line: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "{line} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn server_answers_get_and_head_only_on_metrics_and_stops_with_the_run() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let now = Instant::now();
        server.run_started(100.0, Duration::from_secs(5), now, SystemTime::now());
        server.record_tick(5, 4, 1, &histogram_of(&[700, 800, 900, 3_000]));
        let get = request(addr, "GET /metrics?x=1");
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(
            get.contains("content-type: text/plain; version=0.0.4"),
            "{get}"
        );
        let (_, body) = get.split_once("\r\n\r\n").unwrap();
        assert!(
            body.contains("aefm_load_responses_completed_total 4\n"),
            "{body}"
        );
        assert!(
            body.contains("aefm_load_latency_seconds_bucket{le=\"0.001\"} 3\n"),
            "{body}"
        );
        assert!(body.contains("aefm_load_running 1\n"), "{body}");
        let head = request(addr, "HEAD /metrics");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        assert!(request(addr, "GET /").starts_with("HTTP/1.1 404"));
        assert!(request(addr, "POST /metrics").starts_with("HTTP/1.1 405"));
        server.run_ended();
        assert!(server.render().contains("aefm_load_running 0\n"));
        assert!(
            TcpStream::connect(addr).is_err(),
            "still listening after the run"
        );
    }

    #[test]
    fn an_address_in_use_is_named_in_the_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = MetricsServer::bind(addr).unwrap_err().to_string();
        assert!(e.contains(&addr.to_string()) && !e.contains('\n'), "{e}");
    }
}
