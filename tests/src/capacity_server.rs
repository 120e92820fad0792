//! A test service whose latency is a known function of the offered rate, so a capacity search
//! has an answer known in advance: every request is answered at once while the arrivals of the
//! last `window` number at most `capacity × window`, and after `slow` otherwise.
//!
//! HTTP/1.1 with keep-alive, a thread per connection (blocking std I/O): tests drive it at a few
//! hundred requests per second over a few dozen connections, where this is simple and exact.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The service's rule.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// Requests per second above which answers are slow.
    pub capacity: f64,
    /// The window arrivals are counted over.
    pub window: Duration,
    /// The service time above capacity.
    pub slow: Duration,
}

/// Serves on `listener` until the process ends.
pub fn serve(listener: TcpListener, rule: Capacity) -> std::io::Result<()> {
    let arrivals: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
    for stream in listener.incoming() {
        let stream = stream?;
        let arrivals = arrivals.clone();
        std::thread::spawn(move || {
            let _ = connection(stream, rule, &arrivals);
        });
    }
    Ok(())
}

/// Whether a request arriving now is over capacity: arrivals within the window, this one
/// included, above `capacity × window`.
fn over(rule: Capacity, arrivals: &Mutex<VecDeque<Instant>>) -> bool {
    let now = Instant::now();
    let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    a.push_back(now);
    while a
        .front()
        .is_some_and(|t| now.duration_since(*t) > rule.window)
    {
        a.pop_front();
    }
    a.len() as f64 > rule.capacity * rule.window.as_secs_f64()
}

fn connection(
    stream: TcpStream,
    rule: Capacity,
    arrivals: &Mutex<VecDeque<Instant>>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // A request: its head up to the empty line (GET without a body).
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" && !first {
                break;
            }
            first = false;
        }
        if over(rule, arrivals) {
            std::thread::sleep(rule.slow);
        }
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_counts_the_window() {
        let rule = Capacity {
            capacity: 3.0,
            window: Duration::from_secs(10),
            slow: Duration::ZERO,
        };
        let a = Mutex::default();
        let verdicts: Vec<bool> = (0..40).map(|_| over(rule, &a)).collect();
        assert_eq!(verdicts.iter().filter(|v| !**v).count(), 30);
        assert!(verdicts[30..].iter().all(|v| *v));
    }
}
