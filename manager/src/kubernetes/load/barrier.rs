//! The start barrier of distributed load, manager side: every load pod running and its
//! `aefm-load --control-port` answering `GET /ready`, then one instant T sent to all of them with
//! `POST /start?at=T`, through the API server's pod proxy (no Service, no route from this machine
//! to the pods needed). T leaves a lead of at least a second and several times the slowest proxy
//! round trip, so every pod has its instant well before it comes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::Client;

use super::super::error::KubeError;
use super::job::CONTROL_PORT;
use super::pods::{refresh, GenState, Generator};

/// Smallest lead between choosing T and T.
const MIN_LEAD: Duration = Duration::from_secs(1);
/// The lead is at least this many slowest round trips.
const LEAD_ROUND_TRIPS: u32 = 4;
/// Pause between polls.
const POLL: Duration = Duration::from_millis(250);

/// What the barrier did.
#[derive(Clone, Debug)]
pub struct Started {
    /// The instant every ready pod was told to start at.
    pub at: SystemTime,
    /// The slowest `/ready` round trip through the proxy.
    pub slowest_round_trip: Duration,
}

/// A request to `path` (with query) on a load pod's control port, through the pod proxy.
fn proxy_request(ns: &str, pod: &str, method: http::Method, path: &str) -> http::Request<Vec<u8>> {
    http::Request::builder()
        .method(method)
        .uri(format!(
            "/api/v1/namespaces/{ns}/pods/{pod}:{CONTROL_PORT}/proxy/{path}"
        ))
        .body(Vec::new())
        .expect("a valid request")
}

/// Waits until every generator is ready or failed (those not ready by `deadline` are failed
/// with what their pod waits for), then sends T to every ready one. Returns `None` when no pod
/// became ready. `cancelled` is polled between rounds.
pub async fn start_all(
    client: &Client,
    ns: &str,
    selector: &str,
    gens: &mut [Generator],
    deadline: Instant,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Option<Started>, KubeError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut ready: BTreeSet<usize> = BTreeSet::new();
    let mut slowest = Duration::ZERO;
    loop {
        if cancelled() {
            return Err(KubeError::Cancelled);
        }
        let listed = refresh(&pods, selector, gens).await;
        if let Err(e) = &listed {
            // A transient API error only delays the barrier; the deadline bounds it.
            tracing::debug!("listing load pods: {e}");
        }
        for (i, g) in gens.iter().enumerate() {
            if g.state != GenState::Running || ready.contains(&i) {
                continue;
            }
            let Some(pod) = &g.pod else { continue };
            let t0 = Instant::now();
            let req = proxy_request(ns, pod, http::Method::GET, "ready");
            if client.request_text(req).await.is_ok() {
                slowest = slowest.max(t0.elapsed());
                ready.insert(i);
            }
        }
        ready.retain(|i| gens[*i].state == GenState::Running);
        let settled = gens
            .iter()
            .enumerate()
            .all(|(i, g)| ready.contains(&i) || matches!(g.state, GenState::Failed(_)));
        if settled {
            break;
        }
        if Instant::now() >= deadline {
            listed?;
            for (i, g) in gens.iter_mut().enumerate() {
                if !ready.contains(&i) {
                    let why = match &g.state {
                        GenState::Waiting(w) => w.clone(),
                        GenState::Running => "its control port never answered /ready".into(),
                        other => format!("{other:?}"),
                    };
                    g.fail(format!("not ready for the start barrier in time: {why}"));
                }
            }
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    if ready.is_empty() {
        return Ok(None);
    }
    let lead = MIN_LEAD.max(slowest * LEAD_ROUND_TRIPS);
    let at = SystemTime::now() + lead;
    let nanos = aefm_loadgen::control::unix_nanos(at);
    let sends = ready.iter().map(|&i| {
        let pod = gens[i].pod.clone().unwrap_or_default();
        let path = format!("start?at={nanos}");
        async move {
            let mut last = String::new();
            // Retries are safe: the same instant again is answered 200.
            for _ in 0..3 {
                let req = proxy_request(ns, &pod, http::Method::POST, &path);
                match client.request_text(req).await {
                    Ok(_) => return (i, Ok(())),
                    Err(e) => last = e.to_string(),
                }
                if SystemTime::now() >= at {
                    break;
                }
            }
            (i, Err(last))
        }
    });
    for (i, r) in futures::future::join_all(sends).await {
        if let Err(e) = r {
            gens[i].fail(format!("the start signal did not reach it: {e}"));
        }
    }
    Ok(Some(Started {
        at,
        slowest_round_trip: slowest,
    }))
}
