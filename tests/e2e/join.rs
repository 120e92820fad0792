//! End-to-end tests: each slow client request joined with its server-side trace. aefm-load sends
//! `traceparent` headers to a server whose delays the test controls (a queueing delay before its
//! span starts, then the span's work); the server's spans are served by a fake Jaeger whose
//! search misses most of them (they are only served by id); a whole case is collected and
//! `join.csv` must show the queueing delay as the gap before the server's span.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aefm_collector::case::{collect_case, CaseSources};
use aefm_collector::jaeger::JaegerSettings;
use aefm_collector::prometheus::TemplateContext;
use aefm_collector::Window;
use aefm_loadgen::{run, RunControl, Spec};
use aefm_tests::jaeger::{span, FakeJaeger, Mode, Ref, SpanSpec, TraceSpec};
use aefm_tests::recording_server::{RecordingServer, Reply};

/// Waited before the server's span starts (the queueing the join must find).
const QUEUE: Duration = Duration::from_millis(20);
/// The span's own work.
const WORK: Duration = Duration::from_millis(4);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// One server span as the server saw it: trace id, parent (the client's span), start, end.
type Seen = Arc<Mutex<Vec<(String, String, u64, u64)>>>;

/// A server that queues each traced request for [`QUEUE`], then "works" for [`WORK`] inside
/// its span, and records the span.
fn delaying_server(seen: Seen) -> RecordingServer {
    RecordingServer::start_with(move |r| {
        if let Some(tp) = r.header("traceparent") {
            let parts: Vec<&str> = tp.split('-').collect();
            std::thread::sleep(QUEUE);
            let start = now_us();
            std::thread::sleep(WORK);
            let end = now_us();
            seen.lock()
                .unwrap()
                .push((parts[1].to_string(), parts[2].to_string(), start, end));
        }
        Reply::ok()
    })
}

/// The span trees of what the server saw: its span (child of the client's span, so an orphan
/// in the trace) and one database call inside it.
fn traces(seen: &Seen) -> Vec<TraceSpec> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(trace, parent, start, end)| {
            let server = SpanSpec {
                parent: Some((Ref::ChildOf, parent.clone())),
                ..span("5e", None, "srv", "GET /", *start, end - start)
            };
            let db = span(
                "db",
                Some((Ref::ChildOf, "5e")),
                "db",
                "query",
                start + 500,
                2_000,
            );
            TraceSpec {
                id: trace.clone(),
                spans: vec![server, db],
            }
        })
        .collect()
}

fn csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut rd = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let h = rd.headers().unwrap().clone();
    rd.records()
        .map(|r| {
            let r = r.unwrap();
            h.iter()
                .zip(r.iter())
                .map(|(a, b)| (a.into(), b.into()))
                .collect()
        })
        .collect()
}

#[test]
fn a_known_queueing_delay_shows_up_as_the_gap_before_the_servers_span() {
    let seen: Seen = Arc::default();
    let server = delaying_server(seen.clone());
    let mut spec = Spec::new(server.url("/"), 40.0);
    spec.threads = 1;
    spec.connections = 4;
    spec.duration = Duration::from_secs(2);
    spec.traceparent = 1.0;
    let report = run(&spec, &RunControl::new()).unwrap();
    let traced = report.traced.clone().expect("traced requests");
    assert!(traced.slowest.len() >= 60, "{}", traced.slowest.len());

    // Jaeger's search finds only one trace in ten: the rest must be fetched by id.
    let all = traces(&seen);
    let hidden: BTreeSet<String> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 0)
        .map(|(_, t)| t.id.clone())
        .collect();
    let fake = FakeJaeger::start_hiding(all, Mode::Normal, hidden);
    let mut jaeger = JaegerSettings::new(fake.url(), "srv");
    jaeger.grace = Duration::ZERO;
    let start = UNIX_EPOCH + Duration::from_secs_f64(report.start_time);
    let end = start + Duration::from_micros(report.summary.duration_us) + Duration::from_secs(1);
    let window = Window::new(start, end).unwrap();
    let sources = CaseSources {
        jaeger: Some(jaeger),
        loadgen: Some(report),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let outcome = collect_case(dir.path(), &window, &TemplateContext::default(), &sources);
    assert!(outcome.all_ok(), "{:?}", outcome.errors());

    let rows = csv(&dir.path().join("join.csv"));
    assert_eq!(rows.len(), traced.slowest.len());
    let (q, w) = (QUEUE.as_micros() as i64, WORK.as_micros() as i64);
    for r in &rows {
        assert_eq!(r["found"], "true", "{r:?}");
        assert_eq!(r["server_service"], "srv");
        let num = |k: &str| {
            r[k].parse::<i64>()
                .unwrap_or_else(|_| panic!("{k} in {r:?}"))
        };
        // Sleeps last at least as long as asked; a busy machine adds, never subtracts. The
        // margins hold for delays of up to a second on a loaded box; 2 ms below allows for the
        // generator's mapping of its monotonic clock onto the wall clock.
        const SLACK: i64 = 2_000;
        assert!(
            (q - SLACK..q + 1_000_000).contains(&num("before_server_us")),
            "{r:?}"
        );
        assert!((w..w + 1_000_000).contains(&num("server_us")), "{r:?}");
        assert!(num("after_server_us") >= -SLACK, "{r:?}");
        assert_eq!(
            num("before_server_us") + num("server_us") + num("after_server_us"),
            num("uncorrected_us"),
            "{r:?}"
        );
        assert!(
            r["critical_path"].starts_with("srv:GET /:")
                && r["critical_path"].contains(" > db:query:2000"),
            "{r:?}"
        );
    }
    let summary: BTreeMap<String, String> = csv(&dir.path().join("join_summary.csv"))
        .into_iter()
        .map(|r| (r["key"].clone(), r["value"].clone()))
        .collect();
    assert_eq!(summary["found"], rows.len().to_string());
    // The queueing is most of each request's time on a quiet machine; a busy one only adds to
    // the other parts, so the bound is loose.
    let before: f64 = summary["before_server_share"].parse().unwrap();
    assert!(before > 0.2, "{summary:?}");
    let traces_summary = std::fs::read_to_string(dir.path().join("traces_summary.csv")).unwrap();
    let fetched = traces_summary
        .lines()
        .find_map(|l| l.strip_prefix("fetched_by_id,"))
        .expect("fetched_by_id");
    assert!(
        fetched.parse::<usize>().unwrap() >= rows.len() * 8 / 10,
        "{traces_summary}"
    );
}
