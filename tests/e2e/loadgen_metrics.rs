//! End-to-end test: `aefm-load --metrics-addr` serves live Prometheus metrics during a run. The
//! binary runs against the test server of `aefm_tests::http_server`; the test scrapes
//! `/metrics` with a plain TCP stream mid-run, parses it with `prometheus-parse` and compares it
//! with the final JSON report. Bounds are generous: the box is shared.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aefm_loadgen::Report;
use aefm_tests::bins::bin;
use aefm_tests::http_server::{HttpServer, ServerOptions};
use prometheus_parse::{Scrape, Value};

/// `GET /metrics` on `addr`: the parsed body.
fn scrape(addr: SocketAddr) -> Scrape {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The one sample named `name`.
fn value(scrape: &Scrape, name: &str) -> Value {
    let found: Vec<_> = scrape.samples.iter().filter(|s| s.metric == name).collect();
    assert_eq!(found.len(), 1, "{name}: {:?}", scrape.samples);
    found[0].value.clone()
}

fn counter(scrape: &Scrape, name: &str) -> f64 {
    match value(scrape, name) {
        Value::Counter(v) => v,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn gauge(scrape: &Scrape, name: &str) -> f64 {
    match value(scrape, name) {
        Value::Gauge(v) => v,
        other => panic!("{name} is not a gauge: {other:?}"),
    }
}

#[test]
fn binary_serves_live_metrics_consistent_with_its_report() {
    let server = HttpServer::start(ServerOptions::default());
    let mut child = Command::new(bin("aefm-load"))
        .arg(server.url("/"))
        .args(["-t1", "-c4", "-d3s", "-R200", "--json", "-"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The binary says where it serves (port 0 asked: the kernel chose); stderr is kept whole
    // for failure messages.
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = mpsc::channel();
    let stderr_reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("aefm-load: serving metrics on http://") {
                let addr: SocketAddr = rest.trim_end_matches("/metrics").parse().unwrap();
                let _ = addr_tx.send(addr);
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("aefm-load never said where it serves metrics");

    // Scrape once the run has gone on for 1.5 s (by its own elapsed gauge).
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let s = scrape(addr);
        if gauge(&s, "aefm_load_running") == 1.0 && gauge(&s, "aefm_load_elapsed_seconds") >= 1.5 {
            break s;
        }
        assert!(Instant::now() < deadline, "the run never got 1.5 s in");
        std::thread::sleep(Duration::from_millis(100));
    };
    let sent = counter(&live, "aefm_load_requests_sent_total");
    let completed = counter(&live, "aefm_load_responses_completed_total");
    let errors = counter(&live, "aefm_load_errors_total");
    assert!(completed > 0.0, "nothing completed 1.5 s in");
    assert!(sent >= completed, "sent {sent} < completed {completed}");
    assert_eq!(gauge(&live, "aefm_load_target_requests_per_second"), 200.0);
    assert_eq!(gauge(&live, "aefm_load_duration_seconds"), 3.0);
    // Every completed response has its latency in the histogram, +Inf bucket included.
    let Value::Histogram(buckets) = value(&live, "aefm_load_latency_seconds") else {
        panic!("latency is not a histogram");
    };
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
    let inf = buckets.last().unwrap();
    assert!(inf.less_than.is_infinite());
    assert_eq!(inf.count, completed);
    assert_eq!(
        value(&live, "aefm_load_latency_seconds_count"),
        Value::Untyped(completed)
    );

    let out = child.wait_with_output().unwrap();
    let stderr = stderr_reader.join().unwrap();
    assert!(out.status.success(), "{stderr}");
    let report = Report::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let sum = &report.summary;
    assert!(
        sum.requests as f64 >= completed,
        "{} < {completed}",
        sum.requests
    );
    assert!(sum.sent as f64 >= sent, "{} < {sent}", sum.sent);
    assert!(sum.errors.total() as f64 >= errors);
    assert!(report.corrected().len() as f64 >= inf.count);
    // The endpoint ended with the run.
    assert!(
        TcpStream::connect(addr).is_err(),
        "still serving after the run"
    );
}

#[test]
fn binary_refuses_an_address_in_use_before_any_load() {
    let server = HttpServer::start(ServerOptions::default());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(bin("aefm-load"))
        .arg(server.url("/"))
        .args(["-t1", "-c1", "-d1s", "-R10"])
        .args(["--metrics-addr", &addr.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    assert_eq!(server.request_count(), 0, "load was sent");
}
