//! End-to-end tests: wrk Lua scripts through the `aefm-load` binary against a recording server.
//!
//! The scripts live in `tests/scripts/` and were written for these tests. Each test checks what
//! actually arrived at the server (mix, bodies, headers, targets) or, for the error paths, that the
//! run fails with one line naming the file and line, exit code 1, and no load sent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aefm_tests::bins::bin;
use aefm_tests::recording_server::{Recorded, RecordingServer, Reply};

/// Path of a test script.
fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Runs `aefm-load` with `args` (and extra environment), killing it after 60 s.
fn aefm_load(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("aefm-load"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn aefm-load");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a successful run and returns stdout.
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "aefm-load failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Parses `a=1&b=2` into a map.
fn form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn kind(r: &Recorded) -> &str {
    r.header("X-Kind").unwrap_or("")
}

#[test]
fn mixed_workload_sends_the_mix_bodies_and_headers() {
    let server = RecordingServer::start();
    let url = server.url("/");
    let s = script("mixed.lua");
    let out = aefm_load(
        &[
            "-t2",
            "-c4",
            "-d3s",
            "-R500",
            "-H",
            "X-Cli: from-cli",
            "-s",
            s.to_str().unwrap(),
            &url,
        ],
        &[("AEFM_TEST_MAX_USER", "50")],
    );
    ok(&out);
    let reqs = server.requests();
    assert!(reqs.len() >= 600, "only {} requests arrived", reqs.len());
    let host = format!("{}", server.addr());
    let (mut reads, mut composes, mut orders) = (0usize, 0usize, 0usize);
    let mut users = std::collections::HashSet::new();
    for r in &reqs {
        assert_eq!(r.header("Host"), Some(host.as_str()), "{r:?}");
        // As in wrk, a script's own headers table gets Host copied in, not the -H headers.
        assert_eq!(r.header("X-Cli"), None, "{r:?}");
        match kind(r) {
            "read" => {
                reads += 1;
                assert_eq!(r.method, "GET");
                let query = r
                    .target
                    .strip_prefix("http://localhost:8080/api/timeline/read?")
                    .unwrap_or_else(|| panic!("absolute-form target expected: {}", r.target));
                let q = form(query);
                let user: u32 = q["user_id"].parse().unwrap();
                let start: u32 = q["start"].parse().unwrap();
                let stop: u32 = q["stop"].parse().unwrap();
                assert!((1..=50).contains(&user), "{user}");
                assert_eq!(stop, start + 10);
                users.insert(user);
                assert!(r.header("Content-Length").is_none(), "{r:?}");
                assert!(r.body.is_empty());
            }
            "compose" => {
                composes += 1;
                assert_eq!(
                    (r.method.as_str(), r.target.as_str()),
                    ("POST", "/api/post/compose")
                );
                assert_eq!(
                    r.header("Content-Type"),
                    Some("application/x-www-form-urlencoded")
                );
                assert_eq!(
                    r.header("Content-Length"),
                    Some(r.body.len().to_string().as_str())
                );
                let f = form(&r.body_text());
                let user = &f["user_id"];
                assert_eq!(f["username"], format!("user_{user}"));
                assert_eq!(f["post_type"], "0");
                // "hi @user_N <32 alnum>" form-encoded: '@' -> %40, '_' -> %5F, ' ' -> '+'.
                let text = &f["text"];
                assert!(text.starts_with("hi+%40user%5F"), "{text}");
                assert_eq!(text.rsplit('+').next().unwrap().len(), 32, "{text}");
            }
            "order" => {
                orders += 1;
                assert_eq!(
                    (r.method.as_str(), r.target.as_str()),
                    ("POST", "/api/order")
                );
                assert_eq!(r.header("Content-Type"), Some("application/json"));
                let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
                let id = v["order_id"].as_u64().unwrap();
                let q = v["quantity"].as_u64().unwrap();
                assert!((1..=1000).contains(&id) && (1..=5).contains(&q), "{v}");
                assert_eq!(v["item"].as_str().unwrap().len(), 8);
            }
            other => panic!("unexpected request kind {other:?}: {r:?}"),
        }
    }
    let n = reqs.len() as f64;
    let share = |k: usize| k as f64 / n;
    assert!((share(reads) - 0.6).abs() < 0.08, "reads {reads} of {n}");
    assert!(
        (share(composes) - 0.3).abs() < 0.08,
        "composes {composes} of {n}"
    );
    assert!((share(orders) - 0.1).abs() < 0.06, "orders {orders} of {n}");
    assert!(
        users.len() > 30,
        "random ids: only {} distinct users",
        users.len()
    );
}

#[test]
fn bare_require_socket_sets_the_global() {
    let server = RecordingServer::start();
    let s = script("bare_socket.lua");
    ok(&aefm_load(
        &[
            "-t1",
            "-c1",
            "-d1s",
            "-R20",
            "-s",
            s.to_str().unwrap(),
            &server.url("/"),
        ],
        &[],
    ));
    let reqs = server.requests();
    assert!(!reqs.is_empty());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for r in &reqs {
        let secs: u64 = r.target.strip_prefix("/bare/").unwrap().parse().unwrap();
        assert!(
            now.abs_diff(secs) < 120,
            "socket.gettime() gave {secs}, now {now}"
        );
        assert!(
            r.header("X-Version").unwrap().contains("aefm-load"),
            "{r:?}"
        );
    }
}

/// The replies `threads.lua` expects: `X-Echo: yes`, body `hello`, 404 for every 4th request.
fn echo_server() -> RecordingServer {
    RecordingServer::start_with(|r| {
        let n: u64 = r.target.rsplit('/').next().unwrap().parse().unwrap_or(0);
        Reply {
            status: if n.is_multiple_of(4) { 404 } else { 200 },
            headers: vec![("X-Echo".into(), "yes".into())],
            body: b"hello".to_vec(),
        }
    })
}

#[test]
fn setup_thread_state_response_and_done() {
    let server = echo_server();
    let s = script("threads.lua");
    let out = aefm_load(
        &[
            "-t2",
            "-c2",
            "-d2s",
            "-R100",
            "-s",
            s.to_str().unwrap(),
            &server.url("/"),
            "--",
            "lbl",
        ],
        &[],
    );
    let stdout = ok(&out);
    let reqs = server.requests();
    for id in ["1", "2"] {
        let mine: Vec<&Recorded> = reqs
            .iter()
            .filter(|r| r.header("X-Thread") == Some(&format!("t{id}")))
            .collect();
        assert!(mine.len() > 20, "thread {id}: {} requests", mine.len());
        for r in &mine {
            assert!(r.target.starts_with(&format!("/thread/{id}/")), "{r:?}");
            assert_eq!(r.header("X-Label"), Some("lbl"));
        }
    }
    for p in ["lua-p50=", "lua-p90=", "lua-p99="] {
        assert!(stdout.contains(p), "{p} missing from:\n{stdout}");
    }
    let threads: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("lua-thread"))
        .collect();
    assert_eq!(threads.len(), 2, "{stdout}");
    for line in threads {
        let f: HashMap<&str, i64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.parse().unwrap()))
            .collect();
        assert!(f["sent"] > 20, "{line}");
        assert!(f["s404"] > 0 && f["s200"] > f["s404"], "{line}");
        // Responses counted by response() never exceed the requests the thread made.
        assert!(
            f["s200"] + f["s404"] <= f["sent"] && f["s200"] + f["s404"] >= f["sent"] - 2,
            "{line}"
        );
    }
}

#[test]
fn static_script_and_pipelining() {
    let server = RecordingServer::start();
    let s = script("static_post.lua");
    ok(&aefm_load(
        &[
            "-t1",
            "-c1",
            "-d1s",
            "-R50",
            "-H",
            "X-Cli: from-cli",
            "-s",
            s.to_str().unwrap(),
            &server.url("/form?x=1"),
        ],
        &[],
    ));
    let reqs = server.requests();
    assert!(reqs.len() >= 10);
    for r in &reqs {
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("POST", "/form?x=1")
        );
        assert_eq!(r.body_text(), "a=1&b=2");
        assert_eq!(r.header("Content-Length"), Some("7"));
        assert_eq!(
            r.header("X-Cli"),
            Some("from-cli"),
            "-H headers are in wrk.headers"
        );
        assert_eq!(
            r.header("Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
    }

    let server = RecordingServer::start();
    let s = script("pipeline.lua");
    let stdout = ok(&aefm_load(
        &[
            "-t1",
            "-c1",
            "-d1s",
            "-R60",
            "-s",
            s.to_str().unwrap(),
            &server.url("/"),
        ],
        &[],
    ));
    let reqs = server.requests();
    assert!(reqs.len() >= 30, "{} requests\n{stdout}", reqs.len());
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.target, format!("/p/{}", i % 3 + 1), "pipelined order");
    }
}

#[test]
fn lua_path_modules_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("aefm_helper.lua"),
        "return { path = function() return '/from-module' end }",
    )
    .unwrap();
    let s = dir.path().join("uses_module.lua");
    std::fs::write(&s, "local h = require 'aefm_helper'\nfunction request() return wrk.format(nil, h.path()) end\n").unwrap();
    let server = RecordingServer::start();
    let lua_path = format!("{}/?.lua;;", dir.path().display());
    ok(&aefm_load(
        &[
            "-t1",
            "-c1",
            "-d1s",
            "-R20",
            "-s",
            s.to_str().unwrap(),
            &server.url("/"),
        ],
        &[("LUA_PATH", &lua_path)],
    ));
    let reqs = server.requests();
    assert!(!reqs.is_empty() && reqs.iter().all(|r| r.target == "/from-module"));
}

/// Debian's luasocket (package lua-socket), found through LUA_PATH/LUA_CPATH, wins over the
/// bundled module. Needs the binary to export the Lua C API (see loadgen/src/script/WIRING.md §4).
#[test]
fn system_luasocket_through_lua_cpath() {
    let core = "/usr/lib/x86_64-linux-gnu/lua/5.1/socket/core.so";
    if !std::path::Path::new(core).exists() {
        panic!("{core} missing: install the Debian package lua-socket");
    }
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("luasocket.lua");
    std::fs::write(&s, "local socket = require 'socket'\nfunction request() return wrk.format(nil, '/' .. socket._VERSION:gsub(' ', '_')) end\n").unwrap();
    let server = RecordingServer::start();
    ok(&aefm_load(
        &[
            "-t1",
            "-c1",
            "-d1s",
            "-R20",
            "-s",
            s.to_str().unwrap(),
            &server.url("/"),
        ],
        &[
            ("LUA_PATH", "/usr/share/lua/5.1/?.lua;;"),
            ("LUA_CPATH", "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;"),
        ],
    ));
    let reqs = server.requests();
    assert!(!reqs.is_empty());
    assert!(reqs[0].target.starts_with("/LuaSocket_"), "{:?}", reqs[0]);
}

/// Runs a failing script and checks: exit 1, one stderr line naming `file:line`, no load sent.
fn assert_fails_before_load(name: &str, line: u32, extra: &[&str]) {
    let server = RecordingServer::start();
    let s = script(name);
    let mut args = vec!["-t2", "-c2", "-d2s", "-R100", "-s", s.to_str().unwrap()];
    let url = server.url("/");
    args.push(&url);
    args.extend_from_slice(extra);
    let out = aefm_load(&args, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{name}: stderr:\n{stderr}");
    let wanted = format!("{name}:{line}:");
    assert!(
        stderr.contains(&wanted),
        "{name}: expected {wanted} in:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(&wanted)).collect();
    assert_eq!(lines.len(), 1, "{name}: one error line expected:\n{stderr}");
    assert!(
        server.requests().is_empty(),
        "{name}: load was sent despite the error"
    );
}

#[test]
fn missing_script_fails_before_load() {
    let server = RecordingServer::start();
    let out = aefm_load(
        &[
            "-t1",
            "-c1",
            "-d1s",
            "-R10",
            "-s",
            "/nonexistent/nosuch.lua",
            &server.url("/"),
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/nosuch.lua"), "{stderr}");
    assert!(server.requests().is_empty());
}

#[test]
fn syntax_error_fails_before_load() {
    assert_fails_before_load("err_syntax.lua", 3, &[]);
}

#[test]
fn syntax_error_is_reported_before_connecting() {
    // The script loads before the target is resolved or tried: with nothing listening, the
    // user still learns about the script first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = script("err_syntax.lua");
    let url = format!("http://127.0.0.1:{port}/");
    let out = aefm_load(
        &[
            "-t1",
            "-c1",
            "-d1s",
            "-R10",
            "-s",
            s.to_str().unwrap(),
            &url,
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("err_syntax.lua:3:"), "{stderr}");
    assert!(!stderr.contains("connect"), "{stderr}");
}

#[test]
fn load_error_fails_before_load() {
    assert_fails_before_load("err_load.lua", 3, &[]);
}

#[test]
fn init_error_fails_before_load() {
    assert_fails_before_load("err_init.lua", 3, &["--", "xyz"]);
}

#[test]
fn invalid_request_fails_before_load() {
    assert_fails_before_load("err_bad_request.lua", 2, &[]);
}

#[test]
fn request_error_during_run_stops_it() {
    let server = RecordingServer::start();
    let s = script("err_request_later.lua");
    bin("aefm-load"); // build first: the timing below is the run's alone
    let started = Instant::now();
    let out = aefm_load(
        &[
            "-t1",
            "-c1",
            "-d10s",
            "-R50",
            "-s",
            s.to_str().unwrap(),
            &server.url("/"),
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("err_request_later.lua:5: request number 20 failed"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the run went on after the error"
    );
    let n = server.requests().len();
    assert!(
        (15..20).contains(&n),
        "{n} requests arrived; 19 were made before the error"
    );
}

#[test]
fn response_error_during_run_stops_it() {
    let server = RecordingServer::start();
    let s = script("err_response.lua");
    bin("aefm-load"); // build first: the timing below is the run's alone
    let started = Instant::now();
    let out = aefm_load(
        &[
            "-t1",
            "-c1",
            "-d10s",
            "-R50",
            "-s",
            s.to_str().unwrap(),
            &server.url("/"),
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("err_response.lua:3:"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the run went on after the error"
    );
}

#[test]
fn delay_is_ignored_with_a_warning() {
    let server = RecordingServer::start();
    let s = script("delay.lua");
    let out = aefm_load(
        &[
            "-t1",
            "-c1",
            "-d1s",
            "-R20",
            "-s",
            s.to_str().unwrap(),
            &server.url("/"),
        ],
        &[],
    );
    ok(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("delay.lua:2: delay() is ignored"),
        "{stderr}"
    );
    assert!(
        server.requests().len() >= 10,
        "delay() must not slow the schedule"
    );
}

/// A Rust request generator (item 5): numbered GETs naming the thread.
struct Numbered {
    thread: usize,
    n: u64,
}

impl aefm_loadgen::source::RequestSource for Numbered {
    fn next_batch(
        &mut self,
    ) -> Result<aefm_loadgen::source::Batch, aefm_loadgen::source::SourceError> {
        self.n += 1;
        let req = format!(
            "GET /gen/{}/{} HTTP/1.1\r\nHost: test\r\n\r\n",
            self.thread, self.n
        );
        Ok(aefm_loadgen::source::Batch {
            bytes: req.into(),
            depth: 1,
        })
    }
}

fn spec(url: &str, workload: aefm_loadgen::source::Workload) -> aefm_loadgen::Spec {
    let mut spec = aefm_loadgen::Spec::new(url, 100.0);
    spec.threads = 2;
    spec.connections = 2;
    spec.duration = Duration::from_secs(1);
    spec.workload = workload;
    spec
}

#[test]
fn library_runs_a_script_and_a_rust_generator() {
    use aefm_loadgen::source::{ThreadContext, Workload};
    use std::sync::Arc;

    let server = echo_server();
    let workload = Workload::Script {
        path: script("threads.lua"),
        args: vec!["lib".into()],
    };
    let report = aefm_loadgen::run(
        &spec(&server.url("/"), workload),
        &aefm_loadgen::RunControl::new(),
    )
    .expect("scripted run");
    assert!(report.summary.requests >= 20, "{:?}", report.summary);
    let reqs = server.requests();
    assert!(reqs.iter().all(|r| r.header("X-Label") == Some("lib")));
    assert!(reqs.iter().any(|r| r.target.starts_with("/thread/2/")));

    let server = RecordingServer::start();
    let generator = Workload::Generator(Arc::new(|ctx: &ThreadContext| {
        Ok(Box::new(Numbered {
            thread: ctx.index,
            n: 0,
        }) as Box<dyn aefm_loadgen::source::RequestSource>)
    }));
    let report = aefm_loadgen::run(
        &spec(&server.url("/"), generator),
        &aefm_loadgen::RunControl::new(),
    )
    .expect("generator run");
    assert!(report.summary.requests >= 20, "{:?}", report.summary);
    let reqs = server.requests();
    for t in 0..2 {
        let mine: Vec<u64> = reqs
            .iter()
            .filter_map(|r| r.target.strip_prefix(&format!("/gen/{t}/")))
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(mine.len() >= 10, "thread {t}: {} requests", mine.len());
        assert!(mine.contains(&1), "thread {t} starts at 1");
    }
}

#[test]
fn library_reports_script_errors_with_file_and_line() {
    use aefm_loadgen::source::Workload;
    let server = RecordingServer::start();
    let workload = Workload::Script {
        path: script("err_init.lua"),
        args: vec!["zzz".into()],
    };
    let err = aefm_loadgen::run(
        &spec(&server.url("/"), workload),
        &aefm_loadgen::RunControl::new(),
    )
    .expect_err("init error");
    assert!(matches!(err, aefm_loadgen::Error::Source(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("err_init.lua:3: init refuses: zzz"), "{msg}");
    assert!(server.requests().is_empty());
}

#[test]
fn thread_stop_ends_the_thread_early() {
    let server = RecordingServer::start();
    let s = script("stop.lua");
    bin("aefm-load"); // build first: the timing below is the run's alone
    let started = Instant::now();
    ok(&aefm_load(
        &[
            "-t1",
            "-c1",
            "-d10s",
            "-R100",
            "-s",
            s.to_str().unwrap(),
            &server.url("/"),
        ],
        &[],
    ));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "thread:stop() did not end the run"
    );
    let n = server.requests().len();
    assert!(
        (10..=12).contains(&n),
        "{n} requests after stop at 10 responses"
    );
}
