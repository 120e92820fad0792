//! Unit tests of the script phases (load, setup, build, request/response, done) without a network.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use hdrhistogram::Histogram;

use super::*;
use crate::source::Response;

fn target() -> ScriptTarget {
    ScriptTarget::from_url(
        "http://127.0.0.1:8080/base?q=1",
        vec![("X-Cli".into(), "yes".into())],
    )
    .unwrap()
}

fn write_script(dir: &tempfile::TempDir, name: &str, code: &str) -> PathBuf {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(code.as_bytes()).unwrap();
    path
}

fn addr() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

fn ctx(index: usize) -> ThreadContext {
    ThreadContext {
        index,
        threads: 2,
        addr: addr(),
    }
}

/// Loads, sets up thread 0 and builds its source.
fn source_for(code: &str, args: &[&str]) -> Result<Box<dyn RequestSource>, SourceError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(&dir, "s.lua", code);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut main = MainScript::load(&path, &args, &target())?;
    let mut a = addr();
    let seed = main.setup_thread(0, &mut a)?;
    seed.build(&ctx(0))
}

fn text(batch: &Batch) -> String {
    String::from_utf8(batch.bytes.to_vec()).unwrap()
}

#[test]
fn target_from_url() {
    let t = ScriptTarget::from_url("http://h:81/a/b?x=1#f", vec![]).unwrap();
    assert_eq!(
        (
            t.scheme.as_str(),
            t.host.as_str(),
            t.port.as_deref(),
            t.path.as_str()
        ),
        ("http", "h", Some("81"), "/a/b?x=1#f")
    );
    let t = ScriptTarget::from_url("https://example.org", vec![]).unwrap();
    assert_eq!((t.port, t.path.as_str()), (None, "/"));
    let t = ScriptTarget::from_url("http://[::1]:80/x", vec![]).unwrap();
    assert_eq!((t.host.as_str(), t.port.as_deref()), ("::1", Some("80")));
    assert!(ScriptTarget::from_url("not a url", vec![]).is_err());
}

#[test]
fn static_request_from_wrk_fields() {
    let mut s = source_for(
        "wrk.method = 'POST'; wrk.body = 'abc'; wrk.headers['X-A'] = 'b'",
        &[],
    )
    .unwrap();
    assert!(!s.wants_responses());
    let b1 = s.next_batch().unwrap();
    let b2 = s.next_batch().unwrap();
    assert_eq!(b1, b2);
    assert_eq!(b1.depth, 1);
    let t = text(&b1);
    assert!(t.starts_with("POST /base?q=1 HTTP/1.1\r\n"), "{t}");
    for h in [
        "Host: 127.0.0.1:8080",
        "X-A: b",
        "X-Cli: yes",
        "Content-Length: 3",
    ] {
        assert!(t.contains(&format!("\r\n{h}\r\n")), "{h} in {t}");
    }
    assert!(t.ends_with("\r\n\r\nabc"));
}

#[test]
fn dynamic_request_called_every_batch_and_pipelining_counted() {
    let code = r#"
        local n = 0
        function request()
          n = n + 1
          if n % 2 == 0 then
            return wrk.format(nil, "/p/" .. n) .. wrk.format(nil, "/q/" .. n)
          end
          return wrk.format("GET", "http://other.example/abs/" .. n)
        end
    "#;
    let mut s = source_for(code, &[]).unwrap();
    let first = s.next_batch().unwrap();
    assert_eq!(first.depth, 1);
    assert!(text(&first).starts_with("GET http://other.example/abs/1 HTTP/1.1\r\n"));
    assert!(text(&first).contains("\r\nHost: 127.0.0.1:8080\r\n"));
    let second = s.next_batch().unwrap();
    assert_eq!(second.depth, 2);
    assert!(text(&second).contains("GET /q/2 HTTP/1.1"));
    assert_eq!(s.next_batch().unwrap().depth, 1);
}

#[test]
fn init_gets_url_and_args() {
    let code = r#"
        function init(args)
          path = "/" .. args[0] .. "/" .. #args .. "/" .. table.concat(args, ",")
        end
        function request() return wrk.format(nil, (path:gsub("[:?=]", "_"))) end
    "#;
    let mut s = source_for(code, &["a", "b"]).unwrap();
    let t = text(&s.next_batch().unwrap());
    assert!(
        t.starts_with("GET /http_//127.0.0.1_8080/base_q_1/2/a,b HTTP/1.1"),
        "{t}"
    );
}

#[test]
fn setup_transfers_values_and_changes_addr() {
    let dir = tempfile::tempdir().unwrap();
    let code = r#"
        local count = 0
        threads = {}
        function setup(thread)
          count = count + 1
          thread:set("id", count)
          thread:set("conf", { name = "t" .. count, list = {1, 2} })
          assert(thread:get("id") == count)
          if count == 2 then thread.addr = wrk.lookup("127.0.0.2", "9090")[1] end
          table.insert(threads, thread)
        end
        function init() seen = 0 end
        function request()
          seen = seen + 1
          return wrk.format(nil, "/t/" .. id .. "/" .. conf.name .. "/" .. conf.list[2] .. "/" .. tostring(wrk.thread.addr))
        end
        function done()
          result = {}
          for i, t in ipairs(threads) do result[i] = t:get("id") .. ":" .. t:get("seen") end
          result = table.concat(result, " ")
        end
    "#;
    let path = write_script(&dir, "setup.lua", code);
    let mut main = MainScript::load(&path, &[], &target()).unwrap();
    let mut a0 = addr();
    let seed0 = main.setup_thread(0, &mut a0).unwrap();
    let mut a1 = addr();
    let seed1 = main.setup_thread(1, &mut a1).unwrap();
    assert_eq!(a0, addr());
    assert_eq!(a1, "127.0.0.2:9090".parse().unwrap());
    let handles: Vec<_> = [(seed0, a0), (seed1, a1)]
        .into_iter()
        .enumerate()
        .map(|(i, (seed, a))| {
            std::thread::spawn(move || {
                let c = ThreadContext {
                    index: i,
                    threads: 2,
                    addr: a,
                };
                let mut s = seed.build(&c).unwrap();
                let mut last = String::new();
                for _ in 0..=i {
                    last = text(&s.next_batch().unwrap());
                }
                last
            })
        })
        .collect();
    let lines: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        lines[0].starts_with("GET /t/1/t1/2/127.0.0.1:8080 "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("GET /t/2/t2/2/127.0.0.2:9090 "),
        "{}",
        lines[1]
    );
    main.done(&done_input()).unwrap();
    let result: String = main.lua.globals().get("result").unwrap();
    assert_eq!(result, "1:1 2:2");
}

#[test]
fn thread_stop_from_response() {
    let code = r#"
        statuses = {}
        function response(status, headers, body)
          statuses[status] = (statuses[status] or 0) + 1
          if headers["X-Stop"] == "now" and body == "bye" then wrk.thread:stop() end
        end
    "#;
    let mut s = source_for(code, &[]).unwrap();
    assert!(s.wants_responses());
    assert!(!s.stop_requested());
    let headers = vec![("X-Stop".to_string(), "later".to_string())];
    let r = Response {
        status: 200,
        headers: &headers,
        body: b"",
    };
    s.on_response(&r).unwrap();
    assert!(!s.stop_requested());
    let headers = vec![("X-Stop".to_string(), "now".to_string())];
    let r = Response {
        status: 503,
        headers: &headers,
        body: b"bye",
    };
    s.on_response(&r).unwrap();
    assert!(s.stop_requested());
}

#[test]
fn errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.lua");
    let e = MainScript::load(&missing, &[], &target()).unwrap_err();
    assert!(e.message.contains("nope.lua"), "{}", e.message);

    let cases: &[(&str, &str)] = &[
        ("syntax", "x = = 1"),
        ("runtime", "\nlocal t = nil\nprint(t.x)"),
        ("module", "\n\nrequire 'no_such_module_aefm'"),
    ];
    for (name, code) in cases {
        let path = write_script(&dir, &format!("{name}.lua"), code);
        let e = MainScript::load(&path, &[], &target()).unwrap_err();
        assert!(e.message.contains(&format!("{name}.lua:")), "{}", e.message);
        assert!(!e.message.contains('\n'), "{}", e.message);
    }

    let e = source_for("function init(args)\n  error('bad init')\nend", &[])
        .err()
        .unwrap();
    assert!(e.message.contains("s.lua:2: bad init"), "{}", e.message);
    let e = source_for("\nfunction request()\n  return 42\nend", &[])
        .err()
        .unwrap();
    assert!(
        e.message.contains("s.lua:2: request() returned a number"),
        "{}",
        e.message
    );
    let e = source_for("function request()\n  return 'GET /\\r\\n'\nend", &[])
        .err()
        .unwrap();
    assert!(
        e.message
            .contains("s.lua:1: request(): invalid HTTP request"),
        "{}",
        e.message
    );
    let e = source_for(
        "function request()\n  return 'GET / HTTP/1.1\\r\\nHost: x\\r\\n'\nend",
        &[],
    )
    .err()
    .unwrap();
    assert!(
        e.message.contains("s.lua:1: request(): incomplete"),
        "{}",
        e.message
    );
    let e = source_for("wrk.method = 'BAD METHOD'", &[]).err().unwrap();
    assert!(e.message.contains("s.lua"), "{}", e.message);

    // An error on a later call stops the run with the error.
    let mut s = source_for(
        "local n = 0\nfunction request()\n  n = n + 1\n  if n > 1 then error('boom') end\n  return wrk.format()\nend",
        &[],
    )
    .unwrap();
    s.next_batch().unwrap();
    let e = s.next_batch().unwrap_err();
    assert!(e.message.contains("s.lua:4: boom"), "{}", e.message);

    let mut s = source_for("function response()\n  local x = nil .. 'a'\nend", &[]).unwrap();
    let r = Response {
        status: 200,
        headers: &[],
        body: b"",
    };
    let e = s.on_response(&r).unwrap_err();
    assert!(e.message.contains("s.lua:2:"), "{}", e.message);
}

#[test]
fn delay_is_reported_not_called() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(&dir, "d.lua", "\nfunction delay() return 10 end");
    let main = MainScript::load(&path, &[], &target()).unwrap();
    assert_eq!(main.warnings().len(), 1);
    assert!(
        main.warnings()[0].contains("d.lua:2: delay() is ignored"),
        "{:?}",
        main.warnings()
    );
}

fn done_input() -> DoneInput {
    let mut latency = Histogram::<u64>::new(3).unwrap();
    for v in [100u64, 200, 300, 400] {
        latency.record(v).unwrap();
    }
    let mut rps = Histogram::<u64>::new(3).unwrap();
    rps.record(1000).unwrap();
    DoneInput {
        duration_us: 2_000_000,
        requests: 4,
        bytes: 512,
        errors: DoneErrors {
            connect: 1,
            read: 2,
            write: 3,
            status: 4,
            timeout: 5,
        },
        latency,
        requests_per_sec: rps,
    }
}

#[test]
fn done_receives_summary_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let code = r#"
        function done(summary, latency, requests)
          local e = summary.errors
          out = table.concat({summary.duration, summary.requests, summary.bytes,
            e.connect, e.read, e.write, e.status, e.timeout,
            latency.min, latency.max, latency:percentile(50), #latency, latency[4],
            requests.mean, #requests}, " ")
        end
    "#;
    let path = write_script(&dir, "done.lua", code);
    let mut main = MainScript::load(&path, &[], &target()).unwrap();
    main.done(&done_input()).unwrap();
    let out: String = main.lua.globals().get("out").unwrap();
    assert_eq!(out, "2000000 4 512 1 2 3 4 5 100 400 200 4 400 1000 1");

    let path = write_script(
        &dir,
        "bad_done.lua",
        "function done()\n  error('late')\nend",
    );
    let mut main = MainScript::load(&path, &[], &target()).unwrap();
    let e = main.done(&done_input()).unwrap_err();
    assert!(e.message.contains("bad_done.lua:2: late"), "{}", e.message);
}

#[test]
fn lua_path_and_globals_after_use() {
    let dir = tempfile::tempdir().unwrap();
    write_script(
        &dir,
        "mymod.lua",
        "return { greet = function() return 'hi' end }",
    );
    let code = format!(
        r#"
        package.path = "{}/?.lua;" .. package.path
        local m = require "mymod"
        function string.shout(s) return s:upper() end
        function request() return wrk.format(nil, "/" .. encode(m.greet()):shout()) end
        function encode(s) return s .. "-" .. tostring(os.getenv("HOME") ~= nil) end
        "#,
        dir.path().display()
    );
    let mut s = source_for(&code, &[]).unwrap();
    let t = text(&s.next_batch().unwrap());
    assert!(t.starts_with("GET /HI-TRUE HTTP/1.1"), "{t}");
}
