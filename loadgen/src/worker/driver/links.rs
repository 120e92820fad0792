//! The connections' lives: connect, TLS handshake, up, failure with back-off, close (what a
//! closed connection owed goes back to be sent, or is lost), and reconnecting.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use super::Driver;
use crate::worker::conn::{End, Pending, Phase};
use crate::worker::pace::Pace;
use crate::worker::poller::Interest;
use crate::worker::socket::{self, Handshake};

impl Driver<'_> {
    pub(super) fn connect(&mut self, i: usize, now: Instant, deadline: Instant) {
        let tls = self.cfg.endpoint.tls.as_ref();
        match socket::connect(self.cfg.endpoint.addr, tls) {
            Ok((sock, _)) => {
                let fd = sock.fd();
                self.conns[i].attach(sock, Phase::Connecting(deadline));
                if self.poller.add(fd, i as u64, Interest::ReadWrite).is_err() {
                    return self.connect_failed(i, false, now);
                }
                self.watch(i, true);
            }
            Err(_) => self.connect_failed(i, false, now),
        }
    }

    pub(super) fn connected(&mut self, i: usize, now: Instant) {
        let conn = &mut self.conns[i];
        if conn.sock.as_ref().is_some_and(|s| s.is_tls()) {
            conn.phase = Phase::Handshaking(now + self.cfg.timeout);
            return self.handshake(i, now);
        }
        self.up(i, now);
    }

    pub(super) fn handshake(&mut self, i: usize, now: Instant) {
        let Some(sock) = self.conns[i].sock.as_mut() else {
            return;
        };
        match sock.handshake() {
            Ok(Handshake::Done) => self.up(i, now),
            Ok(Handshake::Pending) => {}
            Err(_) => self.connect_failed(i, true, now),
        }
    }

    pub(super) fn up(&mut self, i: usize, now: Instant) {
        let conn = &mut self.conns[i];
        conn.phase = Phase::Up;
        conn.ready = now;
        conn.backoff = Duration::from_millis(1);
        if let Some(s) = conn.sock.as_ref() {
            let _ = self.poller.modify(s.fd(), i as u64, Interest::Read);
        }
        self.watch(i, false);
        self.free(i, now);
    }

    /// A failed connect or handshake: counted; retried after a capped back-off (never spinning).
    pub(super) fn connect_failed(&mut self, i: usize, tls: bool, now: Instant) {
        if tls {
            self.stats.errors.tls += 1;
        } else {
            self.stats.errors.connect += 1;
        }
        let conn = &mut self.conns[i];
        let retry = now + conn.backoff;
        conn.backoff = (conn.backoff * 2).min(Duration::from_millis(200));
        conn.detach(retry);
        self.watch(i, false);
        self.went_down(i, retry);
    }

    pub(super) fn watch(&mut self, i: usize, on: bool) {
        let conn = &mut self.conns[i];
        let was = conn.watched;
        conn.watched = on;
        match (was, on) {
            (false, true) => self.watching += 1,
            (true, false) => self.watching -= 1,
            _ => {}
        }
    }

    /// Connections that are still connecting past their deadline fail as timed out.
    pub(super) fn expire_connects(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            match self.conns[i].phase {
                Phase::Connecting(d) if d <= now => self.connect_failed(i, false, now),
                Phase::Handshaking(d) if d <= now => self.connect_failed(i, true, now),
                _ => {}
            }
        }
    }

    /// Closes connection `i`; what it owed is given back or lost as `end` says.
    pub(super) fn close(&mut self, i: usize, end: End, now: Instant) {
        if end == End::Fatal {
            self.stopped = true;
        }
        let (flights, _sock) = self.conns[i].detach(now);
        self.watch(i, false);
        self.set_partial(i, false);
        let mut back: Vec<Pending> = Vec::new();
        for f in flights {
            self.stats.in_flight = self
                .stats
                .in_flight
                .saturating_sub((f.batch.depth.max(1) - f.answered) as u64);
            match end {
                End::Race if !f.resent => back.push(f.again()),
                End::Closed => back.push(Pending {
                    intended: f.intended,
                    batch: None,
                    resent: false,
                    trace: None,
                }),
                _ => {}
            }
        }
        self.give_back(i, back);
        self.went_down(i, now);
    }

    /// Requests a closed connection owed go back to be sent first, oldest first.
    pub(super) fn give_back(&mut self, i: usize, back: Vec<Pending>) {
        let queue = match &mut self.pace {
            Pace::Wrk2(p) => &mut p.slots[i].again,
            Pace::Open(p) => &mut p.queue,
        };
        for p in back.into_iter().rev() {
            queue.push_front(p);
        }
    }

    pub(super) fn went_down(&mut self, i: usize, retry: Instant) {
        match &mut self.pace {
            Pace::Wrk2(p) => {
                p.unqueue(i);
                self.down.push(Reverse((retry, i)));
            }
            Pace::Open(p) => {
                p.idle.retain(|&c| c != i);
                self.spare.push(i);
            }
        }
    }

    /// wrk2's model reconnects every connection whose back-off has passed.
    pub(super) fn reconnect_due(&mut self, now: Instant) {
        while let Some(&Reverse((t, i))) = self.down.peek() {
            if t > now {
                return;
            }
            self.down.pop();
            if self.conns[i].phase == Phase::Down(t) {
                let deadline = (now + self.cfg.timeout).min(self.stop_at);
                self.connect(i, now, deadline);
            }
        }
    }
}
