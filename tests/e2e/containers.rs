//! End-to-end tests: the aefm-stress container image (images/). Each stressor runs briefly in a
//! container with `--cpus` and `--memory`; memcap must honour the container's memory limit (and
//! refuse a request above it); a net client in one container must reach an iperf3 server in
//! another on a user-defined network.
//!
//! The image is built by `images/build.sh` (tag from `AEFM_IMAGE`, default `aefm-stress:dev`).
//! Without docker or without the image the tests print why and pass, unless `AEFM_REQUIRE_DOCKER`
//! is set (CI sets it after building the image), in which case they fail. Containers and networks
//! get a unique name prefix and are removed in all cases.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aefm_interference::ReportLine;

fn image() -> String {
    std::env::var("AEFM_IMAGE").unwrap_or_else(|_| "aefm-stress:dev".into())
}

/// None when the tests can run; Some(reason) to skip. Panics instead when AEFM_REQUIRE_DOCKER is set.
fn skip_reason() -> Option<String> {
    let reason = match Command::new("docker")
        .args(["image", "inspect", &image()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Err(e) => Some(format!("docker not available ({e})")),
        Ok(s) if !s.success() => Some(format!("image {} not built (run images/build.sh)", image())),
        Ok(_) => None,
    };
    if let Some(r) = &reason {
        if std::env::var_os("AEFM_REQUIRE_DOCKER").is_some() {
            panic!("AEFM_REQUIRE_DOCKER is set but {r}");
        }
        eprintln!("skipping container test: {r}");
    }
    reason
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique name; the guard removes the container or network of that name on drop.
struct Named {
    name: String,
    network: bool,
}

impl Named {
    fn new(what: &str, network: bool) -> Self {
        let name = format!(
            "aefm-e2e-{}-{}-{what}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        Named { name, network }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let args: &[&str] = if self.network {
            &["network", "rm"]
        } else {
            &["rm", "-f"]
        };
        let _ = Command::new("docker")
            .args(args)
            .arg(&self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

fn lines(out: &Output) -> Vec<ReportLine> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad report line {l:?}: {e}")))
        .collect()
}

/// Runs the image with limits and stressor args; returns the output.
fn run_limited(c: &Named, cpus: &str, memory: &str, args: &[&str]) -> Output {
    let mut a = vec![
        "run",
        "--name",
        &c.name,
        "--cpus",
        cpus,
        "--memory",
        memory,
        "--memory-swap",
        memory,
    ];
    let img = image();
    a.push(&img);
    a.extend_from_slice(args);
    docker(&a)
}

fn final_line(out: &Output) -> ReportLine {
    assert!(
        out.status.success(),
        "container failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let l = lines(out);
    let last = l.last().cloned().expect("report lines");
    assert!(last.r#final, "{l:?}");
    last
}

#[test]
fn every_stressor_runs_in_a_limited_container() {
    if skip_reason().is_some() {
        return;
    }
    let cases: &[(&[&str], &str, &str)] = &[
        (&["cpu", "--load", "50", "--duration", "2s"], "cpu", "256m"),
        (
            &["memcap", "--size", "64MiB", "--duration", "2s"],
            "memcap",
            "256m",
        ),
        (
            // Longer: the arrays (up to the limit) are faulted in first.
            &["membw", "--rate", "1GB/s", "--duration", "4s"],
            "membw",
            "512m",
        ),
        (
            &[
                "cache",
                "--level",
                "l2",
                "--fraction",
                "0.5",
                "--duration",
                "2s",
            ],
            "cache",
            "256m",
        ),
    ];
    for (args, kind, mem) in cases {
        let c = Named::new(kind, false);
        let out = run_limited(&c, "1", mem, args);
        let last = final_line(&out);
        assert_eq!(&last.kind, kind);
        assert!(last.achieved > 0.0, "{last:?}");
        let secs: f64 = args[args.len() - 1].trim_end_matches('s').parse().unwrap();
        assert!(
            (secs - 0.1..secs + 1.0).contains(&last.elapsed_s),
            "{last:?}"
        );
        if *kind == "membw" {
            // 4x the LLC when 512 MiB can hold it; otherwise cut to what fits, and said so.
            let ws = last.detail_f64("working_set_bytes").unwrap();
            let llc = last.detail_f64("llc_bytes").unwrap();
            let capped = last.details["working_set_capped"] == serde_json::json!(true);
            assert!(ws < 512.0 * 1048576.0, "{last:?}");
            assert_eq!(capped, ws < 4.0 * llc, "{last:?}");
        }
    }
}

#[test]
fn cpu_sees_the_container_quota() {
    if skip_reason().is_some() {
        return;
    }
    let c = Named::new("quota", false);
    let out = run_limited(
        &c,
        "0.5",
        "128m",
        &["cpu", "--load", "100", "--duration", "2s"],
    );
    let last = final_line(&out);
    assert_eq!(last.detail_f64("quota_cores"), Some(0.5), "{last:?}");
    assert_eq!(
        last.detail_f64("workers"),
        Some(1.0),
        "one worker for half a core: {last:?}"
    );
    assert_eq!(last.detail_f64("quota_caps_pct"), Some(50.0), "{last:?}");
    // Throttled to the quota (measured, not assumed).
    assert!(last.achieved < 75.0, "{last:?}");
}

#[test]
fn memcap_honours_the_container_memory_limit() {
    if skip_reason().is_some() {
        return;
    }
    let c = Named::new("memcap50", false);
    let out = run_limited(
        &c,
        "1",
        "256m",
        &["memcap", "--size", "50%", "--duration", "2s"],
    );
    let last = final_line(&out);
    let limit = 256.0 * 1048576.0;
    assert_eq!(
        last.detail_f64("limit_bytes"),
        Some(limit),
        "limit read from the container's cgroup: {last:?}"
    );
    assert_eq!(last.target, limit / 2.0);
    assert!(
        last.achieved >= limit / 2.0 && last.achieved <= limit / 2.0 * 1.02 + 16.0 * 1048576.0,
        "{last:?}"
    );

    let c = Named::new("memcap-over", false);
    let out = run_limited(
        &c,
        "1",
        "256m",
        &["memcap", "--size", "300MiB", "--duration", "2s"],
    );
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(1), "refused, not OOM-killed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exceeds the memory limit") && err.contains("268435456"),
        "{err}"
    );
    assert!(lines(&out).is_empty());

    // 100 % of the limit leaves nothing for the process itself: refused with the maximum, not OOM-killed.
    let c = Named::new("memcap-full", false);
    let out = run_limited(
        &c,
        "1",
        "256m",
        &["memcap", "--size", "100%", "--duration", "2s"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at most"), "{err}");
}

#[test]
fn net_client_reaches_a_server_in_another_container() {
    if skip_reason().is_some() {
        return;
    }
    let net = Named::new("net", true);
    let out = docker(&["network", "create", &net.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let srv = Named::new("srv", false);
    let img = image();
    let out = docker(&[
        "run",
        "-d",
        "--name",
        &srv.name,
        "--network",
        &net.name,
        "--cpus",
        "1",
        "--memory",
        "128m",
        &img,
        "net",
        "--server",
        "--port",
        "5201",
        "--duration",
        "30s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = Named::new("cli", false);
    let target = format!("{}:5201", srv.name);
    let out = docker(&[
        "run",
        "--name",
        &cli.name,
        "--network",
        &net.name,
        "--cpus",
        "1",
        "--memory",
        "128m",
        &img,
        "net",
        "--target",
        &target,
        "--bandwidth",
        "100M",
        "--streams",
        "2",
        "--duration",
        "4s",
    ]);
    let last = final_line(&out);
    assert_eq!(last.kind, "net-client");
    assert_eq!(last.target, 200e6);
    // The server may start a moment after the client: restarts are allowed, the rate must show.
    let sent = last
        .detail_f64("iperf3_sent_bps")
        .expect("iperf3 JSON parsed");
    assert!((sent - 200e6).abs() < 0.2 * 200e6, "{last:?}");
    // Stopping the server container sends SIGTERM: it exits 0 with a final line.
    let t0 = std::time::Instant::now();
    let out = docker(&["stop", "-t", "10", &srv.name]);
    assert!(out.status.success());
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "server took {:?} to stop",
        t0.elapsed()
    );
    let logs = docker(&["logs", &srv.name]);
    let srv_last = lines(&logs).last().cloned().expect("server report");
    assert!(
        srv_last.r#final && srv_last.kind == "net-server",
        "{srv_last:?}"
    );
    assert!(srv_last.achieved > 0.0, "{srv_last:?}");
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &srv.name]);
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0");
}
