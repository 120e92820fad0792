//! The stall server of the coordinated-omission benchmark: an HTTP/1.1 keep-alive server that
//! answers at once (pipelined requests in one write, bodies by Content-Length or chunked, always
//! a Content-Length), except that it **freezes completely** — no responses, no accepts — for
//! `stall_for` starting `stall_at` after the anchor (the first request, or the start), once or
//! `stall_count` times `stall_every` apart. Events go out as JSON lines with wall-clock stamps.
//!
//! One thread per connection on std: the benchmark uses few connections, and a thread that
//! frames a whole read buffer and answers it with one write drains a post-stall backlog at
//! hundreds of thousands of requests per second. `crate::http_server` records every request
//! (allocating per request), which would make the drain rate part of the measurement.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::framing::{frame, Framed};

/// When the stall clock starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Anchor {
    /// At the first request the server receives (lines the stall up with the generator's start).
    FirstRequest,
    /// When the server starts listening.
    Start,
}

/// When the server freezes: stall `k` (0-based, `k < count`) covers
/// `[anchor + at + k·every, anchor + at + k·every + length)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Start of the first stall after the anchor, s.
    pub at: f64,
    /// Length of each stall, s (0: never stall).
    pub length: f64,
    /// Period of the stalls, s (0: once).
    pub every: f64,
    /// Number of stalls (with `every` > 0).
    pub count: u32,
}

impl Schedule {
    /// The planned stalls as (start, end) seconds after the anchor.
    pub fn windows(&self) -> Vec<(f64, f64)> {
        self.iter().collect()
    }

    /// The planned stalls, without allocating (this runs before every write).
    fn iter(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let n = match (self.length > 0.0, self.every > 0.0) {
            (false, _) => 0,
            (true, true) => self.count,
            (true, false) => 1,
        };
        (0..n)
            .map(|k| self.at + k as f64 * self.every)
            .map(|s| (s, s + self.length))
    }

    /// Seconds left in the stall that covers `t` (seconds after the anchor), if any.
    pub fn remaining(&self, t: f64) -> Option<f64> {
        self.iter()
            .find(|&(s, e)| s <= t && t < e)
            .map(|(_, e)| e - t)
    }
}

/// Everything the server does besides stalling.
#[derive(Clone, Debug)]
pub struct StallConfig {
    /// Listen address, e.g. `127.0.0.1:0` (port 0: any free port).
    pub addr: SocketAddr,
    /// The stalls.
    pub schedule: Schedule,
    /// When the stall clock starts.
    pub anchor: Anchor,
    /// Response body size in bytes.
    pub body_size: usize,
    /// Status code of every response.
    pub status: u16,
    /// Service time added to each batch of responses.
    pub delay: Duration,
    /// Close the connection (with `Connection: close`) on every Nth response (0: never).
    pub close_every: u64,
}

/// Where events go: one JSON object per event (the server adds `t`, wall-clock seconds).
pub type EventSink = Arc<dyn Fn(&Value) + Send + Sync>;

/// A sink that writes JSON lines to stderr.
pub fn stderr_sink() -> EventSink {
    Arc::new(|v: &Value| eprintln!("{v}"))
}

/// Counters of a server's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Responses sent.
    pub served: u64,
    /// Responses held back by a stall.
    pub delayed_by_stall: u64,
    /// Connections accepted.
    pub connections: u64,
}

struct Shared {
    config: StallConfig,
    sink: EventSink,
    /// Monotonic and wall clock at the same moment, to stamp events in wall time.
    base: (Instant, f64),
    /// Anchor as nanoseconds after `base.0` plus one (0: not yet).
    anchor: AtomicU64,
    served: AtomicU64,
    delayed: AtomicU64,
    connections: AtomicU64,
    stop: AtomicBool,
    responses: Responses,
}

impl Shared {
    fn wall(&self, at: Instant) -> f64 {
        self.base.1 + at.saturating_duration_since(self.base.0).as_secs_f64()
    }

    fn emit(&self, mut event: Value) {
        event["t"] = json!(self.wall(Instant::now()));
        (self.sink)(&event);
    }

    fn anchor(&self) -> Option<Instant> {
        match self.anchor.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.base.0 + Duration::from_nanos(n - 1)),
        }
    }

    /// Sets the anchor to now unless it is set; logs it the first time.
    fn set_anchor(&self, what: &str) {
        let n = self.base.0.elapsed().as_nanos() as u64 + 1;
        let won = self
            .anchor
            .compare_exchange(0, n, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            self.emit(json!({"event": "anchor", "what": what}));
        }
    }

    /// Blocks while a stall is on; true if it had to.
    fn wait_out_stall(&self) -> bool {
        let mut waited = false;
        while let Some(anchor) = self.anchor() {
            let t = anchor.elapsed().as_secs_f64();
            match self.config.schedule.remaining(t) {
                Some(left) if !self.stop.load(Ordering::Relaxed) => {
                    waited = true;
                    std::thread::sleep(Duration::from_secs_f64(left.min(0.1)));
                }
                _ => break,
            }
        }
        waited
    }
}

/// The three response variants, prebuilt so a batch is assembled by copying.
struct Responses {
    keep: Vec<u8>,
    keep_10: Vec<u8>,
    close: Vec<u8>,
}

impl Responses {
    fn new(status: u16, body_size: usize) -> Responses {
        let reason = if status == 200 { "OK" } else { "Status" };
        let body = vec![b'x'; body_size];
        let build = |extra: &str| {
            let head = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n\
                 Content-Length: {body_size}\r\n{extra}\r\n"
            );
            [head.as_bytes(), &body].concat()
        };
        Responses {
            keep: build(""),
            keep_10: build("Connection: keep-alive\r\n"),
            close: build("Connection: close\r\n"),
        }
    }

    fn pick(&self, f: &Framed, close: bool) -> &[u8] {
        match (close, f.keep_alive_10) {
            (true, _) => &self.close,
            (false, true) => &self.keep_10,
            (false, false) => &self.keep,
        }
    }
}

/// A running stall server; stops accepting when dropped.
pub struct StallServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl StallServer {
    /// Binds, logs `listening` and starts serving.
    pub fn start(config: StallConfig, sink: EventSink) -> io::Result<StallServer> {
        let listener = TcpListener::bind(config.addr)?;
        // std listens with a backlog of 128; a generator opening many connections at once
        // would see SYN drops (and connect timeouts) with that.
        // SAFETY: listen on a valid listening socket only changes its backlog.
        unsafe { libc::listen(listener.as_raw_fd(), 4096) };
        let addr = listener.local_addr()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            responses: Responses::new(config.status, config.body_size),
            config,
            sink,
            base: (Instant::now(), now.as_secs_f64()),
            anchor: AtomicU64::new(0),
            served: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        shared.emit(listening_event(&shared.config, addr));
        if shared.config.anchor == Anchor::Start {
            shared.set_anchor("start");
        }
        let (sh, sh2) = (shared.clone(), shared.clone());
        let threads = vec![
            std::thread::spawn(move || accept_loop(listener, sh)),
            std::thread::spawn(move || monitor(sh2)),
        ];
        Ok(StallServer {
            addr,
            shared,
            threads,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Wall-clock time of the anchor (seconds since the epoch), once set.
    pub fn anchor_wall(&self) -> Option<f64> {
        self.shared.anchor().map(|a| self.shared.wall(a))
    }

    /// The planned stalls in wall-clock seconds, once the anchor is set.
    pub fn stall_windows_wall(&self) -> Vec<(f64, f64)> {
        let Some(anchor) = self.anchor_wall() else {
            return Vec::new();
        };
        let windows = self.shared.config.schedule.windows();
        windows
            .into_iter()
            .map(|(s, e)| (anchor + s, anchor + e))
            .collect()
    }

    /// Counters so far.
    pub fn summary(&self) -> Summary {
        Summary {
            served: self.shared.served.load(Ordering::Relaxed),
            delayed_by_stall: self.shared.delayed.load(Ordering::Relaxed),
            connections: self.shared.connections.load(Ordering::Relaxed),
        }
    }

    /// Logs the `summary` event.
    pub fn log_summary(&self) {
        let s = self.summary();
        self.shared
            .emit(json!({"event": "summary", "served": s.served,
            "responses_delayed_by_stall": s.delayed_by_stall, "connections": s.connections}));
    }
}

impl Drop for StallServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the blocking accept
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn listening_event(c: &StallConfig, addr: SocketAddr) -> Value {
    let s = c.schedule;
    json!({"event": "listening", "host": addr.ip().to_string(), "port": addr.port(),
        "config": {"stall_at": s.at, "stall_for": s.length, "stall_every": s.every,
        "stall_count": s.count, "anchor": format!("{:?}", c.anchor), "body_size": c.body_size,
        "status": c.status, "delay_ms": c.delay.as_secs_f64() * 1e3, "close_every": c.close_every}})
}

fn accept_loop(listener: TcpListener, sh: Arc<Shared>) {
    loop {
        sh.wait_out_stall();
        let accepted = listener.accept();
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, _)) = accepted else { continue };
        // A connection that raced into accept just as a stall began is only served after it.
        sh.wait_out_stall();
        sh.connections.fetch_add(1, Ordering::Relaxed);
        let sh = sh.clone();
        std::thread::spawn(move || serve(stream, &sh));
    }
}

/// Logs `stall_begin` and `stall_end` at the planned times, traffic or not.
fn monitor(sh: Arc<Shared>) {
    let anchor = loop {
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        match sh.anchor() {
            Some(a) => break a,
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    for (k, (s, e)) in sh.config.schedule.windows().into_iter().enumerate() {
        let (begin, end) = (secs_after(anchor, s), secs_after(anchor, e));
        let planned =
            json!({"index": k, "planned_start": sh.wall(begin), "planned_end": sh.wall(end)});
        for (at, name) in [(begin, "stall_begin"), (end, "stall_end")] {
            if !sleep_until(&sh, at) {
                return;
            }
            let mut ev = planned.clone();
            ev["event"] = json!(name);
            sh.emit(ev);
        }
    }
}

fn secs_after(at: Instant, secs: f64) -> Instant {
    at + Duration::from_secs_f64(secs)
}

/// Sleeps until `at` in short steps; false if the server stopped meanwhile.
fn sleep_until(sh: &Shared, at: Instant) -> bool {
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return false;
        }
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Serves one connection until the peer closes, a close is due, or the server stops.
fn serve(mut stream: TcpStream, sh: &Shared) {
    let _ = stream.set_nodelay(true);
    // Wakes the read now and then so a stopped server's threads end.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 64 * 1024];
    let (mut filled, mut out) = (0usize, Vec::with_capacity(64 * 1024));
    while !sh.stop.load(Ordering::Relaxed) {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0); // a request (with body) larger than the buffer
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return,
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        out.clear();
        let Ok(Batch { used, close, count }) = answer_batch(&buf[..filled], &mut out, sh) else {
            return;
        };
        buf.copy_within(used..filled, 0);
        filled -= used;
        if count > 0 && send_batch(&mut stream, &out, count, sh).is_err() {
            return;
        }
        if close {
            return;
        }
    }
}

/// What [`answer_batch`] framed.
struct Batch {
    /// Bytes of input used.
    used: usize,
    /// The connection closes after the batch.
    close: bool,
    /// Responses in the batch.
    count: u64,
}

/// Frames every complete request in `input` and appends its response to `out`.
fn answer_batch(
    input: &[u8],
    out: &mut Vec<u8>,
    sh: &Shared,
) -> Result<Batch, super::framing::FrameError> {
    let (mut used, mut count) = (0, 0);
    while let Some(f) = frame(&input[used..])? {
        used += f.len;
        count += 1;
        if sh.anchor.load(Ordering::Relaxed) == 0 && sh.config.anchor == Anchor::FirstRequest {
            sh.set_anchor("first-request");
        }
        let every = sh.config.close_every;
        let n = sh.served.fetch_add(1, Ordering::Relaxed) + 1;
        let close = f.close || (every > 0 && n.is_multiple_of(every));
        out.extend_from_slice(sh.responses.pick(&f, close));
        if close {
            return Ok(Batch { used, close, count });
        }
    }
    Ok(Batch {
        used,
        close: false,
        count,
    })
}

/// Writes a batch after the service delay, once no stall is on.
fn send_batch(stream: &mut TcpStream, out: &[u8], count: u64, sh: &Shared) -> io::Result<()> {
    if !sh.config.delay.is_zero() {
        std::thread::sleep(sh.config.delay);
    }
    if sh.wait_out_stall() {
        sh.delayed.fetch_add(count, Ordering::Relaxed);
    }
    stream.write_all(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn schedule(at: f64, length: f64, every: f64, count: u32) -> Schedule {
        Schedule {
            at,
            length,
            every,
            count,
        }
    }

    #[test]
    fn schedule_windows_and_remaining() {
        let once = schedule(15.0, 5.0, 0.0, 0);
        assert_eq!(once.windows(), vec![(15.0, 20.0)]);
        assert_eq!(once.remaining(14.9), None);
        assert_eq!(once.remaining(16.0), Some(4.0));
        assert_eq!(once.remaining(20.0), None);
        let periodic = schedule(12.0, 1.0, 5.0, 3);
        assert_eq!(periodic.windows().len(), 3);
        assert_eq!(periodic.remaining(22.5), Some(0.5));
        assert_eq!(periodic.remaining(27.5), None);
        assert!(schedule(1.0, 0.0, 0.0, 1).windows().is_empty());
    }

    fn start(
        stall_at: f64,
        stall_for: f64,
        close_every: u64,
    ) -> (StallServer, Arc<Mutex<Vec<Value>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let config = StallConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            schedule: schedule(stall_at, stall_for, 0.0, 1),
            anchor: Anchor::FirstRequest,
            body_size: 5,
            status: 200,
            delay: Duration::ZERO,
            close_every,
        };
        let sink: EventSink = Arc::new(move |v: &Value| ev.lock().unwrap().push(v.clone()));
        (StallServer::start(config, sink).unwrap(), events)
    }

    /// Reads until `n` responses (each ends with the 5-byte body `xxxxx`) arrived.
    fn read_responses(s: &mut TcpStream, n: usize) -> String {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.windows(5).filter(|w| w == b"xxxxx").count() < n {
            let k = s.read(&mut chunk).expect("read");
            assert!(k > 0, "server closed early");
            got.extend_from_slice(&chunk[..k]);
        }
        String::from_utf8(got).unwrap()
    }

    #[test]
    fn answers_pipelined_requests_with_bodies() {
        let (server, _) = start(100.0, 1.0, 0);
        let mut s = TcpStream::connect(server.addr()).unwrap();
        let reqs = "GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
                    POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        s.write_all(reqs.as_bytes()).unwrap();
        let got = read_responses(&mut s, 3);
        assert_eq!(got.matches("HTTP/1.1 200 OK\r\n").count(), 3);
        assert_eq!(got.matches("Content-Length: 5\r\n").count(), 3);
        assert_eq!(server.summary().served, 3);
    }

    /// The stall starts at the anchor (the first request), so that request and one on a
    /// connection opened during the stall are both held for its 0.5 s; afterwards answers are
    /// immediate. Bounds only from below (the anchor is set after the send), so a slow machine
    /// cannot break it.
    #[test]
    fn freezes_for_the_stall_then_answers() {
        let (server, events) = start(0.0, 0.5, 0);
        let mut a = TcpStream::connect(server.addr()).unwrap();
        let sent = Instant::now();
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut b = TcpStream::connect(server.addr()).unwrap();
        b.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        read_responses(&mut a, 1);
        assert!(
            sent.elapsed() >= Duration::from_millis(500),
            "answered after {:?}",
            sent.elapsed()
        );
        read_responses(&mut b, 1);
        assert!(sent.elapsed() >= Duration::from_millis(500));
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        read_responses(&mut a, 1);
        assert_eq!(server.summary().served, 3);
        assert!(server.summary().delayed_by_stall >= 1);
        let (s, e) = server.stall_windows_wall()[0];
        assert!((e - s - 0.5).abs() < 1e-9);
        std::thread::sleep(Duration::from_millis(150)); // the monitor logs stall_end
        let names: Vec<String> = events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["event"].to_string())
            .collect();
        for name in ["listening", "anchor", "stall_begin", "stall_end"] {
            assert!(
                names.iter().any(|n| n.contains(name)),
                "{name} missing: {names:?}"
            );
        }
    }

    #[test]
    fn close_every_closes_the_connection() {
        let (server, _) = start(100.0, 1.0, 2);
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap(); // ends when the server closes
        assert_eq!(got.matches("HTTP/1.1 200").count(), 2);
        assert_eq!(got.matches("Connection: close").count(), 1);
    }
}
