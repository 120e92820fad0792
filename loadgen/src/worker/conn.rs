//! One client connection inside the worker loop: where it stands (down, connecting, up), what it
//! sent and awaits (its *flights*), and how its bytes become recorded responses.
//!
//! A read that ends a connection says what becomes of the requests it still owed ([`End`]): a
//! reused connection closed before any byte of its answer is most likely the server's keep-alive
//! timeout, so those requests may be sent again at once on a new connection (once); after any
//! other failure their schedule slots are used up, so a broken server is never retried faster
//! than the schedule.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::socket::Sock;
use super::stats::{Answer, Stats};
use super::traceparent::TraceContext;
use crate::parser::{escape_bytes, Parsed, ResponseParser};
use crate::source::{Batch, RequestSource, Response};

/// Initial read buffer per connection; small so 10 000 connections stay cheap. It grows for
/// large responses.
const READ_BUF: usize = 4096;
/// Most bytes of a bad answer kept for the warning.
const SAMPLE: usize = 64;

/// A request (one batch) waiting to be sent.
pub(super) struct Pending {
    /// When it is due.
    pub intended: Instant,
    /// The batch to send again after a keep-alive race; `None`: ask the source.
    pub batch: Option<Batch>,
    /// Already sent once and lost to a keep-alive race.
    pub resent: bool,
    /// The `traceparent` ids `batch` carries (a resend keeps its trace).
    pub trace: Option<TraceContext>,
}

/// A batch on the wire.
pub(super) struct Flight {
    pub intended: Instant,
    pub sent: Instant,
    pub batch: Batch,
    pub answered: usize,
    /// Counted as a timeout already.
    pub late: bool,
    pub resent: bool,
    /// The `traceparent` ids its first request carried.
    pub trace: Option<TraceContext>,
}

impl Flight {
    fn depth(&self) -> usize {
        self.batch.depth.max(1)
    }

    /// The request again, for a new connection.
    pub(super) fn again(self) -> Pending {
        Pending {
            intended: self.intended,
            batch: Some(self.batch),
            resent: true,
            trace: self.trace,
        }
    }
}

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// No socket; a new connect may start at this instant.
    Down(Instant),
    /// TCP connect under way, to finish by the deadline.
    Connecting(Instant),
    /// TLS handshake under way, to finish by the deadline.
    Handshaking(Instant),
    /// Ready for requests.
    Up,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// A keep-alive race: what it owed may be sent again at once (counted as a read error).
    Race,
    /// An error (counted): what it owed is lost.
    Lost,
    /// The server announced the close (`Connection: close`) or closed an idle connection:
    /// what it owed goes back to be sent, nothing is an error.
    Closed,
    /// The request source failed; the run stops.
    Fatal,
}

/// What a read needs from its worker.
pub(super) struct ReadCtx<'a> {
    pub stats: &'a mut Stats,
    pub source: &'a mut dyn RequestSource,
    pub collect: bool,
    pub batch_latency: bool,
    pub fatal: &'a mut Option<crate::source::SourceError>,
    /// Set when a read came without the kernel's arrival time (timestamps not yet enabled in
    /// the kernel, or a socket type without them): the worker then wakes for every response.
    pub stampless: &'a mut bool,
}

/// The wall-clock and monotonic clocks read together, to place kernel arrival stamps.
#[derive(Clone, Copy)]
pub(super) struct Now {
    pub instant: Instant,
    pub wall_ns: i128,
}

impl Now {
    /// Reads both clocks.
    pub(super) fn read() -> Now {
        let instant = Instant::now();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Now {
            instant,
            wall_ns: wall,
        }
    }

    /// The monotonic instant of a kernel arrival stamp, never before `floor` (the send) nor
    /// after now: a wall clock stepped meanwhile cannot produce an impossible latency.
    pub(super) fn arrival(&self, stamp: Option<i128>, floor: Instant) -> Instant {
        let Some(stamp) = stamp else {
            return self.instant;
        };
        let age = (self.wall_ns - stamp).max(0);
        let age = Duration::from_nanos(age.min(u64::MAX as i128) as u64);
        self.instant
            .checked_sub(age)
            .unwrap_or(floor)
            .max(floor)
            .min(self.instant)
    }
}

/// One connection.
pub(super) struct Conn {
    pub sock: Option<Sock>,
    pub phase: Phase,
    buf: BytesMut,
    parser: ResponseParser,
    /// Responses completed on this socket.
    served: u64,
    /// Batches sent and not fully answered, oldest first.
    pub flights: VecDeque<Flight>,
    /// Bytes the socket did not take yet.
    unsent: BytesMut,
    /// Registered for writability too.
    pub writing: bool,
    /// When it last became free to send (connected, or its last response arrived).
    pub ready: Instant,
    /// Delay before the next connect after a failed one.
    pub backoff: Duration,
    /// Counted among the connections whose socket events matter now.
    pub watched: bool,
    /// Counted among the connections holding part of a response.
    pub partial: bool,
    /// Responses are collected for the request source.
    collect: bool,
}

impl Conn {
    /// A connection that has not connected yet.
    pub(super) fn new(collect: bool, now: Instant) -> Conn {
        Conn {
            sock: None,
            phase: Phase::Down(now),
            buf: BytesMut::with_capacity(READ_BUF),
            parser: ResponseParser::new(collect),
            served: 0,
            flights: VecDeque::new(),
            unsent: BytesMut::new(),
            writing: false,
            ready: now,
            backoff: Duration::from_millis(1),
            watched: false,
            partial: false,
            collect,
        }
    }

    /// True while the worker must read this connection as its data arrives rather than at its
    /// next wake-up: part of a response has been read, and the rest may wait for room in the
    /// socket buffer. (Several batches in flight are not a reason: waking for each arrival during
    /// a pipelined catch-up measured slower, and a read that finds several responses gives them
    /// the arrival time of the last, late rather than early.)
    pub(super) fn needs_attention(&self) -> bool {
        !self.flights.is_empty() && (!self.buf.is_empty() || !self.parser.idle())
    }

    /// True once a response has completed on this socket: a close before the next response is
    /// then most likely the server's keep-alive timeout, not a broken server.
    pub(super) fn reused(&self) -> bool {
        self.served > 0
    }

    /// True when requests can go now.
    pub(super) fn idle(&self) -> bool {
        self.phase == Phase::Up && self.flights.is_empty() && self.unsent.is_empty()
    }

    /// A fresh socket for this connection (its read state starts over).
    pub(super) fn attach(&mut self, sock: Sock, phase: Phase) {
        self.sock = Some(sock);
        self.phase = phase;
        self.buf.clear();
        self.parser = ResponseParser::new(self.collect);
        self.served = 0;
        self.unsent.clear();
        self.writing = false;
    }

    /// Closes the socket (dropping it ends its epoll registration); returns what it still owed.
    pub(super) fn detach(&mut self, retry_at: Instant) -> (VecDeque<Flight>, Option<Sock>) {
        self.phase = Phase::Down(retry_at);
        self.unsent.clear();
        self.writing = false;
        (std::mem::take(&mut self.flights), self.sock.take())
    }

    /// Writes `bytes` (after anything still unsent); `Ok(false)` when some wait for writability.
    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<bool> {
        let sock = self.sock.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        if !self.unsent.is_empty() {
            self.unsent.extend_from_slice(bytes);
            return Ok(false);
        }
        let n = sock.send(bytes)?;
        if n < bytes.len() {
            self.unsent.extend_from_slice(&bytes[n..]);
            return Ok(false);
        }
        Ok(!sock.tls_pending())
    }

    /// Sends what the socket refused before; `Ok(true)` when all is out.
    pub(super) fn flush(&mut self) -> io::Result<bool> {
        let sock = self.sock.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        while !self.unsent.is_empty() {
            let n = sock.send(&self.unsent)?;
            if n == 0 {
                return Ok(false);
            }
            let _ = self.unsent.split_to(n);
        }
        sock.flush()
    }

    /// Counts each flight outstanding longer than `timeout` as one timeout, once; the response
    /// is still awaited so that its real latency is recorded.
    pub(super) fn sweep(&mut self, now: Instant, timeout: Duration, stats: &mut Stats) {
        for f in self.flights.iter_mut().filter(|f| !f.late) {
            if now.saturating_duration_since(f.sent) >= timeout {
                f.late = true;
                stats.errors.timeout += 1;
            }
        }
    }

    /// Reads what arrived and records the responses it completes. `Err` says how the connection
    /// ended (the caller closes it).
    pub(super) fn read(&mut self, ctx: &mut ReadCtx<'_>, now: &Now) -> Result<(), End> {
        loop {
            let Some(sock) = self.sock.as_mut() else {
                return Ok(());
            };
            let spare = self.buf.capacity() - self.buf.len();
            let got = match sock.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(self.read_failed(ctx.stats)),
            };
            if got.bytes == 0 {
                return Err(self.at_eof(ctx, now));
            }
            ctx.stats.bytes += got.bytes as u64;
            if got.stamp.is_none() {
                *ctx.stampless = true;
            }
            let floor = self.flights.front().map_or(now.instant, |f| f.sent);
            let at = now.arrival(got.stamp, floor);
            self.parse_all(ctx, at)?;
            if got.bytes < spare {
                // The kernel had no more than this (level-triggered epoll says so otherwise).
                return Ok(());
            }
        }
    }

    /// A socket error while reading (a reset, say).
    fn read_failed(&self, stats: &mut Stats) -> End {
        stats.errors.read += 1;
        if self.nothing_of_the_answer() && self.served > 0 {
            End::Race
        } else {
            End::Lost
        }
    }

    /// True when nothing of the oldest flight's answer has come.
    fn nothing_of_the_answer(&self) -> bool {
        self.parser.idle()
            && self.buf.is_empty()
            && self.flights.front().is_none_or(|f| f.answered == 0)
    }

    /// The peer closed the connection.
    fn at_eof(&mut self, ctx: &mut ReadCtx<'_>, now: &Now) -> End {
        if let Some(p) = self.parser.eof() {
            // A body delimited by the close.
            self.served += 1;
            if let Err(end) = self.complete(p, ctx, now.instant) {
                return end;
            }
        }
        if self.flights.is_empty() && self.buf.is_empty() {
            return End::Closed;
        }
        if self.nothing_of_the_answer() {
            return self.read_failed(ctx.stats);
        }
        let part = if self.parser.idle() {
            "inside the response head"
        } else {
            "after the response head"
        };
        let buf = &self.buf;
        ctx.stats.protocol_error(|| {
            format!(
                "cut short: the server closed the connection {part} (unparsed: {})",
                escape_bytes(buf, SAMPLE)
            )
        });
        End::Lost
    }

    /// Completes every response the buffer holds.
    fn parse_all(&mut self, ctx: &mut ReadCtx<'_>, at: Instant) -> Result<(), End> {
        loop {
            match self.parser.parse(&mut self.buf) {
                Ok(Some(p)) => {
                    self.served += 1;
                    self.complete(p, ctx, at)?;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    let buf = &self.buf;
                    ctx.stats.protocol_error(|| {
                        format!("not HTTP ({}): {}", e.0, escape_bytes(buf, SAMPLE))
                    });
                    return Err(End::Lost);
                }
            }
        }
    }

    /// Records one response against the oldest flight.
    fn complete(&mut self, p: Parsed, ctx: &mut ReadCtx<'_>, at: Instant) -> Result<(), End> {
        let Some(f) = self.flights.front_mut() else {
            ctx.stats
                .protocol_error(|| format!("a response nobody asked for (status {})", p.status));
            return Err(End::Lost);
        };
        f.answered += 1;
        let last = f.answered == f.depth();
        ctx.stats.answered(&Answer {
            intended: f.intended,
            sent: f.sent,
            at,
            status: p.status,
            timed: !ctx.batch_latency || last,
            // The trace is its batch's first request's: timed at the first answer, or under -B
            // at the batch's last.
            trace: if (ctx.batch_latency && last) || (!ctx.batch_latency && f.answered == 1) {
                f.trace
            } else {
                None
            },
        });
        if last {
            self.flights.pop_front();
        }
        self.ready = at;
        if ctx.collect {
            let resp = Response {
                status: p.status,
                headers: &p.headers,
                body: &p.body,
            };
            if let Err(e) = ctx.source.on_response(&resp) {
                ctx.fatal.get_or_insert(e);
                return Err(End::Fatal);
            }
            // A script's response() ran after the arrival: its time is the generator's.
            self.ready = Instant::now();
        }
        if !p.keep_alive {
            ctx.stats.reconnects += 1;
            return Err(End::Closed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::StaticSource;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";

    /// A connected `Conn` and the server's end.
    fn pair() -> (Conn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (sock, _) = super::super::socket::connect(l.local_addr().unwrap(), None).unwrap();
        let (peer, _) = l.accept().unwrap();
        let mut c = Conn::new(false, Instant::now());
        c.attach(sock, Phase::Up);
        (c, peer)
    }

    fn send(c: &mut Conn, stats: &mut Stats, intended: Instant) {
        let batch = Batch {
            bytes: bytes::Bytes::from_static(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            depth: 1,
        };
        let now = Instant::now();
        stats.sent(1, intended, now, now);
        assert!(c.write(&batch.bytes).unwrap());
        c.flights.push_back(Flight {
            intended,
            sent: now,
            batch,
            answered: 0,
            late: false,
            resent: false,
            trace: None,
        });
    }

    /// Reads until `done` holds or a second passes; the last read's result.
    fn read_until(
        c: &mut Conn,
        stats: &mut Stats,
        done: impl Fn(&Conn, &Stats) -> bool,
    ) -> Result<(), End> {
        let mut source = StaticSource::new(Batch {
            bytes: bytes::Bytes::new(),
            depth: 1,
        });
        let mut fatal = None;
        let mut stampless = false;
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let mut ctx = ReadCtx {
                stats,
                source: &mut source,
                collect: false,
                batch_latency: false,
                fatal: &mut fatal,
                stampless: &mut stampless,
            };
            let r = c.read(&mut ctx, &Now::read());
            if r.is_err() || done(c, stats) || Instant::now() > until {
                return r;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_response_read_late_is_timed_from_its_arrival() {
        let (mut c, mut peer) = pair();
        let mut stats = Stats::new(true, None);
        // The kernel switches receive timestamps on a moment after the first socket asks:
        // one exchange first, so the measured one is stamped.
        let mut req = [0u8; 64];
        send(&mut c, &mut stats, Instant::now());
        let _ = peer.read(&mut req).unwrap();
        peer.write_all(OK).unwrap();
        read_until(&mut c, &mut stats, |c, _| c.flights.is_empty()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        send(&mut c, &mut stats, t0);
        let _ = peer.read(&mut req).unwrap();
        peer.write_all(OK).unwrap();
        let answered = Instant::now();
        std::thread::sleep(Duration::from_millis(60));
        read_until(&mut c, &mut stats, |c, _| c.flights.is_empty()).unwrap();
        assert_eq!(stats.requests, 2);
        assert_eq!(stats.in_flight, 0);
        assert!(c.idle());
        // `ready` is the arrival, not the read 60 ms later.
        assert!(
            c.ready <= answered + Duration::from_millis(20),
            "ready {:?} after the answer",
            c.ready - answered
        );
        assert!(c.ready >= t0);
    }

    #[test]
    fn a_reused_connection_closed_before_any_answer_is_a_race_a_new_one_is_lost() {
        let (mut c, mut peer) = pair();
        let mut stats = Stats::new(true, None);
        send(&mut c, &mut stats, Instant::now());
        let mut req = [0u8; 64];
        let _ = peer.read(&mut req).unwrap();
        peer.write_all(OK).unwrap();
        read_until(&mut c, &mut stats, |c, _| c.flights.is_empty()).unwrap();
        send(&mut c, &mut stats, Instant::now());
        drop(peer);
        let end = read_until(&mut c, &mut stats, |_, _| false).unwrap_err();
        assert_eq!(end, End::Race);
        assert_eq!(stats.errors.read, 1);

        let (mut c, peer) = pair();
        let mut stats = Stats::new(true, None);
        send(&mut c, &mut stats, Instant::now());
        drop(peer);
        assert_eq!(
            read_until(&mut c, &mut stats, |_, _| false).unwrap_err(),
            End::Lost
        );
    }

    #[test]
    fn an_answer_cut_short_and_bytes_that_are_not_http_are_protocol_errors() {
        let (mut c, mut peer) = pair();
        let mut stats = Stats::new(true, None);
        send(&mut c, &mut stats, Instant::now());
        // Read the request first: closing with unread bytes would send a reset, not a FIN.
        let mut req = [0u8; 64];
        let _ = peer.read(&mut req).unwrap();
        peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
            .unwrap();
        drop(peer);
        assert_eq!(
            read_until(&mut c, &mut stats, |_, _| false).unwrap_err(),
            End::Lost
        );
        assert_eq!(stats.errors.protocol, 1);
        assert!(stats.first_bad.as_deref().unwrap().contains("cut short"));

        let (mut c, mut peer) = pair();
        let mut stats = Stats::new(true, None);
        send(&mut c, &mut stats, Instant::now());
        peer.write_all(b"SSH-2.0-OpenSSH\r\n").unwrap();
        assert_eq!(
            read_until(&mut c, &mut stats, |_, _| false).unwrap_err(),
            End::Lost
        );
        assert!(stats.first_bad.as_deref().unwrap().contains("not HTTP"));
    }

    #[test]
    fn an_announced_close_ends_the_connection_without_an_error() {
        let (mut c, mut peer) = pair();
        let mut stats = Stats::new(true, None);
        send(&mut c, &mut stats, Instant::now());
        peer.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert_eq!(
            read_until(&mut c, &mut stats, |_, _| false).unwrap_err(),
            End::Closed
        );
        assert_eq!(stats.requests, 1);
        assert_eq!(stats.reconnects, 1);
        assert_eq!(stats.errors.total(), 0);
    }

    #[test]
    fn a_flight_past_the_timeout_counts_once() {
        let (mut c, _peer) = pair();
        let mut stats = Stats::new(true, None);
        send(&mut c, &mut stats, Instant::now());
        let later = Instant::now() + Duration::from_secs(3);
        c.sweep(later, Duration::from_secs(2), &mut stats);
        c.sweep(later, Duration::from_secs(2), &mut stats);
        assert_eq!(stats.errors.timeout, 1);
    }

    #[test]
    fn arrival_stamps_stay_between_the_send_and_now() {
        let now = Now::read();
        let floor = now.instant - Duration::from_millis(5);
        // A stamp from the future (a wall clock stepped back) is now; one from long ago, the send.
        assert_eq!(
            now.arrival(Some(now.wall_ns + 1_000_000_000), floor),
            now.instant
        );
        assert_eq!(
            now.arrival(Some(now.wall_ns - 60_000_000_000), floor),
            floor
        );
        let a = now.arrival(Some(now.wall_ns - 2_000_000), floor);
        assert_eq!(now.instant - a, Duration::from_millis(2));
        assert_eq!(now.arrival(None, floor), now.instant);
    }
}
