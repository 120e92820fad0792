//! Watch streams as a real API server serves them: synthetic ADDED events for the current state
//! when the watch starts without a resourceVersion (or at `0`), the retained events after a given
//! one, or an ERROR event carrying a 410 `Expired` Status when that resourceVersion is older than
//! the retained window. Streams end cleanly at `timeoutSeconds`, send BOOKMARK events with the
//! current resourceVersion when `allowWatchBookmarks=true`, and suffer the injected faults:
//! connections cut abruptly every [`Faults::drop_watches_every`] (as a load balancer or a restarting
//! API server does), a 410 on the next watches ([`Faults::gone_next_watches`]) or on every open
//! watch at once ([`crate::fake_kube::FakeKube::expire_watches`], [`Faults::gone_every`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use super::controllers::Faults;
use super::server::{err, Body};
use super::store::{matches_fields, matches_labels, status, ResourceType};
use super::Shared;

/// Default stream length when the client gives no `timeoutSeconds` (a real server picks 30 to
/// 60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// How often an open watch looks at the faults and the bookmark clock.
const TICK: Duration = Duration::from_millis(100);

/// What the client asked for.
#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    /// `resourceVersion`.
    pub rv: Option<String>,
    /// `labelSelector`.
    pub labels: Option<String>,
    /// `fieldSelector`.
    pub fields: Option<String>,
    /// `timeoutSeconds`.
    pub timeout: Option<String>,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `sendInitialEvents=true` (streaming list): initial state, then a BOOKMARK marking its end.
    pub send_initial_events: bool,
}

fn line(v: Value) -> Result<Frame<Bytes>, Infallible> {
    Ok(Frame::data(Bytes::from(v.to_string() + "\n")))
}

fn expired(message: &str) -> Value {
    json!({"type": "ERROR", "object": status(410, "Expired", message)})
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}})
}

/// Takes one of the injected "410 on the next watch" faults, if any is left.
fn take_gone(shared: &Shared) -> bool {
    let mut f = shared.faults_mut();
    if f.gone_next_watches > 0 {
        f.gone_next_watches -= 1;
        return true;
    }
    false
}

/// Answers a watch request. `cut` closes the whole connection without ending the chunked body, as
/// a dropped TCP connection looks to the client.
pub fn watch_stream(
    shared: Arc<Shared>,
    rt: &'static ResourceType,
    namespace: Option<String>,
    p: WatchParams,
    cut: CancellationToken,
) -> Response<Body> {
    let start_rv: Option<u64> = match p.rv.as_deref() {
        None | Some("") | Some("0") => None,
        Some(v) => match v.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                return err(
                    400,
                    "BadRequest",
                    &format!("invalid resource version {v:?}"),
                )
            }
        },
    };
    let timeout = p
        .timeout
        .as_deref()
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let labels = p.labels.clone();
    let fields = p.fields.clone();
    let matches = move |o: &Value| {
        namespace
            .as_deref()
            .is_none_or(|n| o["metadata"]["namespace"] == n)
            && labels.as_deref().is_none_or(|s| matches_labels(o, s))
            && fields.as_deref().is_none_or(|s| matches_fields(o, s))
    };
    // Subscribed before answering, so nothing that happens after the answer is missed.
    let mut expiry = shared.expiry.subscribe();
    expiry.borrow_and_update();
    let stream = Stream {
        changes: shared.subscribe(),
        expiry,
        gone_now: take_gone(&shared),
        shared,
        rt,
        tx,
        bookmarks: p.bookmarks,
    };
    tokio::spawn(async move {
        stream
            .run(start_rv, p.send_initial_events, timeout, cut, &matches)
            .await;
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream_from(rx))))
        .expect("valid response")
}

struct Stream {
    shared: Arc<Shared>,
    rt: &'static ResourceType,
    tx: Sender<Result<Frame<Bytes>, Infallible>>,
    bookmarks: bool,
    changes: tokio::sync::watch::Receiver<u64>,
    expiry: tokio::sync::watch::Receiver<u64>,
    /// An injected 410 for this watch.
    gone_now: bool,
}

/// Why a stream stopped sending.
enum End {
    /// The client went away or the stream ended.
    Closed,
    /// The connection is to be cut.
    Cut,
}

impl Stream {
    async fn send(&self, v: Value) -> Result<(), End> {
        self.tx.send(line(v)).await.map_err(|_| End::Closed)
    }

    async fn run(
        mut self,
        start_rv: Option<u64>,
        initial_events: bool,
        timeout: Duration,
        cut: CancellationToken,
        matches: &(dyn Fn(&Value) -> bool + Send + Sync),
    ) {
        if let Err(End::Cut) = self.serve(start_rv, initial_events, timeout, matches).await {
            cut.cancel();
            // Keep the body open until the connection is gone, so it cannot end cleanly first.
            self.tx.closed().await;
        }
    }

    async fn serve(
        &mut self,
        start_rv: Option<u64>,
        initial_events: bool,
        timeout: Duration,
        matches: &(dyn Fn(&Value) -> bool + Send + Sync),
    ) -> Result<(), End> {
        let opened = tokio::time::Instant::now();
        let gone_now = self.gone_now;
        let mut sent_until = match start_rv {
            Some(rv) => {
                let msg = {
                    let store = self.shared.store();
                    (gone_now || store.too_old(rv)).then(|| store.too_old_message(rv))
                };
                if let Some(m) = msg {
                    return self.send(expired(&m)).await;
                }
                rv
            }
            None => {
                if gone_now {
                    let m = format!("too old resource version: 1 ({})", self.shared.store().rv);
                    return self.send(expired(&m)).await;
                }
                self.initial_state(initial_events, matches).await?
            }
        };
        let mut last_bookmark = tokio::time::Instant::now();
        loop {
            // Mark the current change as seen before reading, so a change made while we send
            // wakes the select below.
            self.changes.borrow_and_update();
            sent_until = self.send_new(sent_until, matches).await?;
            let faults: Faults = self.shared.faults();
            if faults
                .drop_watches_every
                .is_some_and(|every| opened.elapsed() >= every)
            {
                return Err(End::Cut);
            }
            if self.bookmarks && last_bookmark.elapsed() >= faults.bookmark_every {
                self.send(bookmark(self.rt, sent_until, false)).await?;
                last_bookmark = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = self.changes.changed() => {}
                _ = self.expiry.changed() => {
                    let m = self.shared.store().too_old_message(sent_until);
                    return self.send(expired(&m)).await;
                }
                _ = tokio::time::sleep(TICK) => {}
                _ = tokio::time::sleep_until(opened + timeout) => return Ok(()),
                _ = self.tx.closed() => return Err(End::Closed),
            }
        }
    }

    /// Synthetic ADDED events for the current state; returns its resourceVersion.
    async fn initial_state(
        &self,
        end_bookmark: bool,
        matches: &(dyn Fn(&Value) -> bool + Send + Sync),
    ) -> Result<u64, End> {
        let (now, initial) = {
            let store = self.shared.store();
            let initial: Vec<Value> = store
                .list(self.rt.plural, None)
                .into_iter()
                .filter(|o| matches(o))
                .collect();
            (store.rv, initial)
        };
        for o in initial {
            self.send(json!({"type": "ADDED", "object": o})).await?;
        }
        if end_bookmark && self.bookmarks {
            self.send(bookmark(self.rt, now, true)).await?;
        }
        Ok(now)
    }

    /// Sends the retained events after `sent_until`; a watcher that fell behind the window is
    /// told 410 and closed, as a real server closes a watcher it can no longer serve.
    async fn send_new(
        &self,
        sent_until: u64,
        matches: &(dyn Fn(&Value) -> bool + Send + Sync),
    ) -> Result<u64, End> {
        let (batch, now, behind) = {
            let store = self.shared.store();
            if store.too_old(sent_until) {
                (
                    Vec::new(),
                    store.rv,
                    Some(store.too_old_message(sent_until)),
                )
            } else {
                let batch: Vec<Value> = store
                    .events
                    .iter()
                    .filter(|e| {
                        e.rv > sent_until && e.plural == self.rt.plural && matches(&e.object)
                    })
                    .map(|e| json!({"type": e.kind, "object": e.object}))
                    .collect();
                (batch, store.rv, None)
            }
        };
        if let Some(m) = behind {
            self.send(expired(&m)).await?;
            return Err(End::Closed);
        }
        for e in batch {
            self.send(e).await?;
        }
        Ok(now)
    }
}

fn stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
