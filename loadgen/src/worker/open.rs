//! The open model (DeathStarBench's wrk2 fork): each thread sends on its schedule whether or not
//! earlier requests are outstanding, on an idle connection of its pool or a new one up to a cap.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{exchange, Shared};
use crate::connection::Connection;
use crate::source::Batch;

/// Connections of the open model, shared by the request tasks of one thread.
struct Pool {
    idle: RefCell<Vec<Connection>>,
    open: Cell<usize>,
    cap: usize,
    freed: Notify,
}

/// The open model's dispatcher: sends on the thread's schedule whether or not earlier requests
/// are outstanding, each on an idle connection or a new one (up to the cap).
pub(super) async fn open_dispatch(
    sh: Rc<Shared>,
    initial: Vec<Connection>,
    cap: usize,
    first: Instant,
    period: f64,
) {
    let stop_at = sh.stop_at.get();
    let pool = Rc::new(Pool {
        open: Cell::new(initial.len()),
        idle: RefCell::new(initial),
        cap,
        freed: Notify::new(),
    });
    let mut k: u64 = 0;
    loop {
        let intended = first + Duration::from_secs_f64(k as f64 * period);
        if intended >= stop_at {
            return;
        }
        if Instant::now() < intended {
            sh.timer.sleep_until(intended).await;
        }
        let batch = match sh.source.borrow_mut().next_batch() {
            Ok(b) => b,
            Err(e) => return sh.fail(e),
        };
        k += batch.depth.max(1) as u64;
        tokio::task::spawn_local(open_request(sh.clone(), pool.clone(), batch, intended));
    }
}

/// One request of the open model; re-sent once on a fresh connection when a reused connection
/// closed before any byte of the response (a keep-alive race).
async fn open_request(sh: Rc<Shared>, pool: Rc<Pool>, batch: Batch, intended: Instant) {
    let mut backoff = Duration::from_millis(1);
    let mut resent = false;
    loop {
        let mut ready = intended;
        let mut conn = loop {
            if let Some(c) = pool.idle.borrow_mut().pop() {
                break c;
            }
            if pool.open.get() < pool.cap {
                pool.open.set(pool.open.get() + 1);
                if Instant::now() >= sh.stop_at.get() {
                    // The run is over; the worker drops this task.
                    std::future::pending::<()>().await;
                }
                match sh.open(sh.connect_deadline()).await {
                    Some(c) => {
                        // Connection set-up is the server's time, not the generator's lag.
                        ready = Instant::now();
                        break c;
                    }
                    None => {
                        pool.open.set(pool.open.get() - 1);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(200));
                        continue;
                    }
                }
            }
            pool.freed.notified().await;
        };
        let flight = sh.flight();
        let times = (intended, ready, Instant::now());
        let out = exchange(&sh, &mut conn, &batch, times, &flight).await;
        if out.reusable {
            pool.idle.borrow_mut().push(conn);
        } else {
            pool.open.set(pool.open.get() - 1);
        }
        pool.freed.notify_one();
        // Re-sent at most once, and only after what looks like a keep-alive race: a request
        // that failed otherwise is lost (counted), not retried ahead of the schedule.
        if out.resend && !resent {
            resent = true;
            continue;
        }
        if sh.source.borrow().stop_requested() {
            sh.end.notify_one();
        }
        return;
    }
}
