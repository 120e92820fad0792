//! End-to-end tests: loadgen. The library and the `aefm-load` binary against the test server of
//! `aefm_tests::http_server`, started in each test. Bounds are generous: the box is shared.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aefm_loadgen::{run, Model, Report, RunControl, Spec};
use aefm_tests::bins::bin;
use aefm_tests::http_server::{HttpServer, ServerOptions};

fn spec(url: &str, rate: f64, secs: f64, threads: usize, conns: usize) -> Spec {
    let mut s = Spec::new(url, rate);
    s.threads = threads;
    s.connections = conns;
    s.duration = Duration::from_secs_f64(secs);
    s
}

#[test]
fn achieved_rate_counts_and_wire_request() {
    let server = HttpServer::start(ServerOptions::default());
    let mut s = spec(&server.url("/a/b?x=1"), 400.0, 2.0, 2, 4);
    s.headers.push(("X-Test".into(), "1".into()));
    let report = run(&s, &RunControl::new()).unwrap();
    let sum = &report.summary;
    assert!(
        (700..=820).contains(&sum.requests),
        "requests {}",
        sum.requests
    );
    assert!(
        (sum.achieved_rate - 400.0).abs() < 40.0,
        "{}",
        sum.achieved_rate
    );
    assert_eq!(sum.errors.total(), 0, "{:?}", sum.errors);
    assert_eq!(sum.responses.success, sum.requests);
    assert_eq!(report.corrected().len(), sum.requests);
    assert_eq!(report.uncorrected().len(), sum.requests);
    assert!(sum.sent >= sum.requests && sum.sent <= sum.requests + 4);
    // 16-byte bodies plus headers, every byte counted.
    assert!(sum.bytes > sum.requests * 40, "{}", sum.bytes);
    assert!(
        report.per_second.len() == 2,
        "{:?}",
        report.per_second.len()
    );
    let per_sec: u64 = report.per_second.iter().map(|s| s.completed).sum();
    assert_eq!(per_sec, sum.requests);
    // The server saw exactly what wrk would send.
    let reqs = server.requests();
    assert!(reqs.len() as u64 >= sum.requests);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/a/b?x=1"));
    assert_eq!(r.header("Host"), Some(server.addr().to_string().as_str()));
    assert_eq!(r.header("X-Test"), Some("1"));
    // Corrected latency is never below uncorrected.
    assert!(report.corrected.stats.p50 >= report.uncorrected.stats.p50);
}

#[test]
fn non_2xx_responses_are_counted() {
    let server = HttpServer::start(ServerOptions {
        status: 503,
        chunked: true,
        ..ServerOptions::default()
    });
    let report = run(
        &spec(&server.url("/"), 200.0, 1.0, 1, 2),
        &RunControl::new(),
    )
    .unwrap();
    let sum = &report.summary;
    assert!(sum.requests > 150, "{}", sum.requests);
    assert_eq!(sum.errors.status, sum.requests);
    assert_eq!(sum.responses.server_error, sum.requests);
    let text = aefm_loadgen::render_wrk2(&report, &Default::default());
    assert!(
        text.contains(&format!("  Non-2xx or 3xx responses: {}\n", sum.requests)),
        "{text}"
    );
}

#[test]
fn reconnects_after_connection_close() {
    let server = HttpServer::start(ServerOptions {
        close_every: Some(5),
        ..ServerOptions::default()
    });
    let report = run(
        &spec(&server.url("/"), 300.0, 1.5, 1, 2),
        &RunControl::new(),
    )
    .unwrap();
    let sum = &report.summary;
    assert!(sum.requests > 380, "{}", sum.requests);
    assert!(sum.reconnects >= sum.requests / 5 - 2, "{sum:?}");
    assert_eq!(sum.errors.read + sum.errors.connect, 0, "{:?}", sum.errors);
    // One test connect, two up front, then one per close.
    assert!(
        server.connection_count() >= sum.reconnects,
        "{}",
        server.connection_count()
    );
}

#[test]
fn https_with_keep_alive_and_reconnects() {
    // A TLS server with a self-signed certificate (not verified, like wrk2), closing every 10th
    // response: the rate holds, nothing fails, and the handshakes are redone after each close.
    let server = HttpServer::start(ServerOptions {
        tls: true,
        close_every: Some(10),
        ..ServerOptions::default()
    });
    let url = server.url("/secure");
    assert!(url.starts_with("https://"), "{url}");
    let report = run(&spec(&url, 200.0, 1.5, 1, 2), &RunControl::new()).unwrap();
    let sum = &report.summary;
    assert!((260..=310).contains(&sum.requests), "{sum:?}");
    assert_eq!(sum.errors.total(), 0, "{:?}", sum.errors);
    assert_eq!(sum.responses.success, sum.requests);
    assert!(sum.reconnects >= sum.requests / 10 - 2, "{sum:?}");
    let reqs = server.requests();
    assert_eq!(reqs[0].target, "/secure");
    assert_eq!(
        reqs[0].header("Host"),
        Some(server.addr().to_string().as_str())
    );
}

#[test]
fn timeouts_count_late_requests_not_idle_connections() {
    // Every response takes 300 ms against a 100 ms timeout: each request counts once, and its
    // latency is still recorded.
    let slow = HttpServer::start(ServerOptions {
        delay: Duration::from_millis(300),
        ..ServerOptions::default()
    });
    let mut s = spec(&slow.url("/"), 10.0, 1.5, 1, 2);
    s.timeout = Duration::from_millis(100);
    let report = run(&s, &RunControl::new()).unwrap();
    let sum = &report.summary;
    assert!(sum.requests >= 4, "{sum:?}");
    assert!(
        sum.errors.timeout >= sum.requests && sum.errors.timeout <= sum.requests + 2,
        "{sum:?}"
    );
    assert!(
        report.uncorrected.stats.min >= 290_000,
        "{:?}",
        report.uncorrected.stats
    );
    // Idle connections (one request every 5 s each) are not timeouts.
    let fast = HttpServer::start(ServerOptions::default());
    let mut s = spec(&fast.url("/"), 2.0, 1.5, 1, 10);
    s.timeout = Duration::from_millis(100);
    let report = run(&s, &RunControl::new()).unwrap();
    assert_eq!(report.summary.errors.timeout, 0, "{:?}", report.summary);
    assert!(report.summary.requests >= 2);
}

#[test]
fn open_model_keeps_rate_with_slow_server() {
    // 200 ms per response, one connection: wrk2's model could do 5 req/s; the open model opens
    // connections as needed and keeps 50 req/s.
    let server = HttpServer::start(ServerOptions {
        delay: Duration::from_millis(200),
        ..ServerOptions::default()
    });
    let mut s = spec(&server.url("/"), 50.0, 1.5, 1, 1);
    s.model = Model::Open {
        max_connections: 40,
    };
    let report = run(&s, &RunControl::new()).unwrap();
    let sum = &report.summary;
    assert!(sum.sent >= 70, "{sum:?}");
    assert!(sum.requests >= 55, "{sum:?}");
    assert!(
        server.connection_count() >= 8,
        "{}",
        server.connection_count()
    );
    assert!(
        report.corrected.stats.p50 < 400_000,
        "{:?}",
        report.corrected.stats
    );
}

#[test]
fn early_sends_never_record_less_than_the_service_time() {
    // A 5 ms pacing tolerance at 2000 req/s on one thread groups about twenty sends per timer
    // wake-up, half of them up to 5 ms early. Every response takes at least 2 ms, so no latency,
    // corrected or not, may be below that: an early send is timed from when it left.
    let server = HttpServer::start(ServerOptions {
        delay: Duration::from_millis(2),
        ..ServerOptions::default()
    });
    let mut s = spec(&server.url("/"), 2000.0, 1.0, 1, 20);
    s.pacing_tolerance = Some(Duration::from_millis(5));
    let report = run(&s, &RunControl::new()).unwrap();
    assert!(report.summary.requests > 500, "{:?}", report.summary);
    let (c, u) = (&report.corrected.stats, &report.uncorrected.stats);
    assert!(u.min >= 1_900, "{u:?}");
    assert!(c.min >= u.min, "corrected {c:?} uncorrected {u:?}");
    assert!(
        c.p50 >= u.p50 && c.p90 >= u.p90,
        "corrected {c:?} uncorrected {u:?}"
    );
}

#[test]
fn wrk2_model_records_stall_from_intended_time() {
    // Server stalls for ~600 ms in a 1.6 s run at 100 req/s: corrected max ~600 ms while the
    // requests sent after the stall look fast uncorrected.
    let server = HttpServer::start(ServerOptions::default());
    let s = spec(&server.url("/"), 100.0, 1.6, 1, 2);
    let handle = std::thread::spawn({
        let s = s.clone();
        move || run(&s, &RunControl::new())
    });
    std::thread::sleep(Duration::from_millis(500));
    server.set_stalled(true);
    std::thread::sleep(Duration::from_millis(600));
    server.set_stalled(false);
    let report = handle.join().unwrap().unwrap();
    let c = &report.corrected.stats;
    assert!(c.max >= 450_000 && c.max <= 900_000, "{c:?}");
    // About 60 requests were due during the stall: well over 2% of ~160 are slow corrected...
    assert!(c.p90 >= 100_000, "{c:?}");
    // ...but uncorrected only the two stuck in flight.
    let u = &report.uncorrected.stats;
    assert!(u.p90 < 100_000, "{u:?}");
    assert!(report.summary.requests >= 140, "{:?}", report.summary);
}

#[test]
fn cancel_returns_partial_report_and_progress_ticks() {
    let server = HttpServer::start(ServerOptions::default());
    let s = spec(&server.url("/"), 100.0, 30.0, 1, 2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let control = RunControl::new().with_progress({
        let seen = seen.clone();
        move |p| seen.lock().unwrap().push((p.elapsed, p.completed, p.rate))
    });
    let token = control.cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2300));
        token.cancel();
    });
    let t = Instant::now();
    let report = run(&s, &control).unwrap();
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(report.summary.cancelled);
    assert!(report.summary.duration_us < 4_000_000);
    assert!(report.summary.requests > 150, "{:?}", report.summary);
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!((seen[1].2 - 100.0).abs() < 20.0, "{seen:?}");
    assert!(seen[1].1 > seen[0].1);
}

#[test]
fn binary_prints_wrk2_report_and_writes_json_and_hdr_log() {
    let server = HttpServer::start(ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let hlog = dir.path().join("r.hlog");
    // AEFM's argument order: URL first, options after.
    let out = Command::new(bin("aefm-load"))
        .arg(server.url("/index.html"))
        .args(["-t", "1", "-c", "4", "-d", "2s", "-R", "300", "-U"])
        .arg("--json")
        .arg(&json)
        .arg("--hdr-log")
        .arg(&hlog)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("Running 2s test @ {}", server.url("/index.html"))
    );
    assert_eq!(lines[1], "  1 threads and 4 connections");
    assert_eq!(
        lines[2],
        "  Thread Stats   Avg      Stdev     Max   +/- Stdev"
    );
    assert!(lines[3].starts_with("    Latency   "));
    assert!(lines[4].starts_with("    Req/Sec   "));
    assert_eq!(
        lines[5],
        "  Latency Distribution (HdrHistogram - Recorded Latency)"
    );
    assert!(lines[6].starts_with(" 50.000%"));
    assert!(stdout.contains("\n\n  Detailed Percentile spectrum:\n       Value   Percentile   TotalCount 1/(1-Percentile)\n\n"));
    assert!(stdout.contains("#[Buckets =           27, SubBuckets     =         2048]\n----------------------------------------------------------\n\n  Latency Distribution (HdrHistogram - Uncorrected Latency (measured without taking delayed starts into account))\n"));
    let report = Report::from_json(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let n = report.summary.requests;
    assert!((500..=640).contains(&n), "{n}");
    assert!(
        stdout.contains(&format!("\n  {n} requests in 2.00s, ")),
        "{stdout}"
    );
    assert!(stdout.contains("\nRequests/sec: "));
    assert!(stdout.contains("\nTransfer/sec: "));
    // Footer total count agrees with the JSON histogram.
    assert!(stdout.contains(&format!(
        "Total count    = {:>12}]",
        report.corrected().len()
    )));
    // The interval log: one histogram per second, adding up to the whole corrected histogram.
    let log = std::fs::read_to_string(&hlog).unwrap();
    assert!(log.contains("#[StartTime: "));
    let mut total = 0;
    let mut intervals = 0;
    for line in log
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('"'))
    {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 4, "{line}");
        let h = aefm_loadgen::histogram::decode(fields[3]).unwrap();
        total += h.len();
        intervals += 1;
    }
    assert_eq!(intervals, 2, "{log}");
    assert_eq!(total, n);
}

#[test]
fn binary_json_on_stdout_replaces_text() {
    let server = HttpServer::start(ServerOptions::default());
    let out = Command::new(bin("aefm-load"))
        .args(["-t1", "-c1", "-d1", "-R50", "--json", "-"])
        .arg(server.url("/"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = Report::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(report.summary.requests >= 40);
}

#[test]
fn binary_bad_input_one_line_exit_1_before_load() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let exe = bin("aefm-load");
    for (args, needle) in [
        (vec!["-R", "10", "not-a-url"], "invalid URL"),
        (vec!["-R", "0", "http://127.0.0.1:1/"], "rate"),
        (
            vec!["-R", "10", "-c", "0", "http://127.0.0.1:1/"],
            "connections",
        ),
        (
            vec!["-R", "10", "-d", "-3", "http://127.0.0.1:1/"],
            "invalid duration",
        ),
        (vec!["http://127.0.0.1:1/"], "Throughput MUST"),
        (vec!["-R", "10", closed_url.as_str()], "unable to connect"),
        (
            vec!["-R", "10", "http://no-such-host.invalid/"],
            "unable to resolve",
        ),
    ] {
        let t = Instant::now();
        let out = Command::new(&exe).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.starts_with("aefm-load: "), "{args:?}: {stderr}");
        assert!(first.contains(needle), "{args:?}: {stderr}");
        assert!(
            out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("requests in")
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{args:?}");
    }
}

#[test]
fn binary_missing_script_fails_before_load() {
    let server = HttpServer::start(ServerOptions::default());
    let out = Command::new(bin("aefm-load"))
        .args(["-R", "10", "-d", "1", "-s", "/no/such/script.lua"])
        .arg(server.url("/"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("script.lua"), "{stderr}");
    assert_eq!(server.request_count(), 0);
}

#[test]
fn warmup_discards_early_latencies_but_counts_everything() {
    let server = HttpServer::start(ServerOptions::default());
    let mut s = spec(&server.url("/"), 200.0, 2.0, 1, 2);
    s.warmup = Duration::from_secs(1);
    let report = run(&s, &RunControl::new()).unwrap();
    let n = report.summary.requests;
    assert!(n >= 350, "{n}");
    let recorded = report.corrected().len();
    // About the second half only.
    assert!(
        recorded > n / 3 && recorded < n * 2 / 3,
        "{recorded} of {n}"
    );
    assert_eq!(report.calibration.len(), 1);
    assert!(report.calibration[0].sampling_interval_ms >= 10);
    let text = aefm_loadgen::render_wrk2(&report, &Default::default());
    assert!(
        text.starts_with("  Thread calibration: mean lat.: "),
        "{text}"
    );
}

/// The trace id of a `traceparent` value, when it is well formed (version 00, 32 and 16 lowercase
/// hex digits, sampled flag 01).
fn trace_id(value: &str) -> Option<&str> {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && parts[3] == "01")
        .then_some(parts[1])
}

fn aefm_load_json(args: &[&str], url: &str) -> Report {
    let out = Command::new(bin("aefm-load"))
        .args(args)
        .args(["--json", "-", url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    Report::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

#[test]
fn traceparent_marks_a_share_and_the_report_keeps_the_slowest_with_their_ids() {
    use aefm_tests::recording_server::{RecordingServer, Reply};
    // The server holds the traced requests whose trace id ends in 0 (1 in 16) for 30 ms.
    const HELD_US: u64 = 30_000;
    let held = |id: &str| id.ends_with('0');
    let server = RecordingServer::start_with(move |r| {
        if r.header("traceparent").and_then(trace_id).is_some_and(held) {
            std::thread::sleep(Duration::from_micros(HELD_US));
        }
        Reply::ok()
    });
    let report = aefm_load_json(
        &["-t1", "-c4", "-R200", "-d3s", "--traceparent", "0.5"],
        &server.url("/t"),
    );
    let requests = server.requests();
    let ids: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.header("traceparent"))
        .map(|v| trace_id(v).unwrap_or_else(|| panic!("malformed traceparent {v}")))
        .collect();
    let unique: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "trace ids repeat");
    // Half of ~600 requests: sd ~12, the margin is 5 sd.
    let share = ids.len() as f64 / requests.len() as f64;
    assert!((share - 0.5).abs() < 0.1, "{share}");
    let t = report.traced.expect("a traced section");
    assert_eq!(t.share, 0.5);
    // Every traced request answered is counted; a few may be in flight at the end.
    let n = t.requests as usize;
    assert!(n <= ids.len() && n + 8 >= ids.len(), "{n} of {}", ids.len());
    // Fewer than the bound (1,000): all are kept, slowest first.
    assert_eq!(t.slowest.len(), n);
    assert!(t
        .slowest
        .windows(2)
        .all(|w| w[0].latency_us >= w[1].latency_us));
    let start_us = (report.start_time * 1e6) as u64;
    let end_us = start_us + report.summary.duration_us;
    for r in &t.slowest {
        assert!(unique.contains(r.trace_id.as_str()), "{r:?}");
        assert_eq!(r.status, 200);
        assert!(r.latency_us >= r.uncorrected_us, "{r:?}");
        // Sends are never late and at most the pacing tolerance (1 ms) early.
        assert!(r.sent_us + 1_000 >= r.intended_us, "{r:?}");
        assert!((start_us..=end_us).contains(&r.intended_us), "{r:?}");
        if held(&r.trace_id) {
            assert!(r.uncorrected_us >= HELD_US, "{r:?}");
        }
    }
    // The held requests are the slow ones: they rank above the median of the rest.
    let rank = |h: bool| {
        let v: Vec<usize> = (0..n)
            .filter(|&i| held(&t.slowest[i].trace_id) == h)
            .collect();
        v[v.len() / 2]
    };
    assert!(
        rank(true) < rank(false),
        "held median rank {} vs {}",
        rank(true),
        rank(false)
    );
}

#[test]
fn traceparent_reaches_lua_requests_and_bad_shares_are_refused() {
    use aefm_tests::recording_server::RecordingServer;
    let server = RecordingServer::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        "request = function() return wrk.format(\"POST\", \"/lua\", nil, \"abc\") end\n",
    )
    .unwrap();
    let script = script.display().to_string();
    let report = aefm_load_json(
        &[
            "-t1",
            "-c2",
            "-R100",
            "-d1s",
            "--traceparent",
            "1",
            "-s",
            &script,
        ],
        &server.url("/"),
    );
    let requests = server.requests();
    assert!(requests.len() >= 50, "{}", requests.len());
    for r in &requests {
        assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/lua"));
        assert_eq!(r.body_text(), "abc");
        let v = r.header("traceparent").expect("every request traced");
        assert!(trace_id(v).is_some(), "{v}");
    }
    let t = report.traced.expect("a traced section");
    assert_eq!(t.requests, report.summary.requests);
    // Refused before any load, naming the problem.
    for (args, needle) in [
        (vec!["--traceparent", "1.5"], "invalid share '1.5'"),
        (
            vec!["--traceparent", "0.1", "-H", "traceparent: 00-x"],
            "already has one",
        ),
    ] {
        let out = Command::new(bin("aefm-load"))
            .args(["-R10", "-d1s"])
            .args(&args)
            .arg(server.url("/refused"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert!(server.requests().iter().all(|r| r.target != "/refused"));
}
