//! End-to-end tests: the aefm-stress container image (images/). Each stressor runs briefly in a
//! container with `--cpus` and `--memory`; memcap must honour the container's memory limit (and
//! refuse a request above it); a net client in one container must reach an iperf3 server in
//! another on a user-defined network.
//!
//! The image is built by `images/build.sh` (tag from `AEFM_IMAGE`, default the manager's
//! `interference.image` default, `aefm/aefm-stress:<version>`). Without docker or without the
//! image the tests print why and pass, unless `AEFM_REQUIRE_DOCKER` is set (CI sets it after
//! building the image), in which case they fail. Containers and networks get a unique name prefix
//! and are removed in all cases.
//!
//! One test builds both images (`aefm-stress`, `aefm-load`) with `images/build.sh` from a clean
//! copy of the repository under test-only tags, runs each, and removes them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aefm_interference::ReportLine;

fn image() -> String {
    std::env::var("AEFM_IMAGE").unwrap_or_else(|_| aefm::config::kubernetes::STRESS_IMAGE.into())
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

/// The repository these tests were built from (tests/ is one of its folders).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// What a clean clone holds: the tracked files and the new ones git does not ignore (so a change
/// not yet committed is tested too), never build output such as `images/rootfs/` or `target/`.
fn clean_copy(dst: &Path) -> Result<usize, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .map_err(|e| format!("git not available ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "not a git checkout: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut n = 0;
    for rel in String::from_utf8_lossy(&out.stdout).split('\0') {
        let src = repo().join(rel);
        // Deleted in the work tree but still tracked: a clone would not have it after commit.
        if rel.is_empty() || !src.is_file() {
            continue;
        }
        let to = dst.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
        // fs::copy keeps the permission bits (build.sh stays executable).
        std::fs::copy(&src, &to).map_err(|e| format!("{}: {e}", src.display()))?;
        n += 1;
    }
    Ok(n)
}

/// Removes the images of these tags on drop.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = Command::new("docker")
                .args(["rmi", "-f", tag])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// None when an image build can run here; else why not (a panic under AEFM_REQUIRE_DOCKER).
fn build_skip_reason() -> Option<String> {
    let docker = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let reason = match docker {
        Err(e) => Some(format!("docker not available ({e})")),
        Ok(s) if !s.success() => Some("no docker engine answers".to_string()),
        Ok(_) if Command::new("iperf3").arg("--version").output().is_err() => {
            Some("iperf3 not installed (images/build.sh copies the host's)".to_string())
        }
        Ok(_) => None,
    };
    if let Some(r) = &reason {
        if std::env::var_os("AEFM_REQUIRE_DOCKER").is_some() {
            panic!("AEFM_REQUIRE_DOCKER is set but {r}");
        }
        eprintln!("skipping image build test: {r}");
    }
    reason
}

fn ok_text(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn build_script_tags_are_the_manager_defaults() {
    let out = Command::new(repo().join("images/build.sh"))
        .arg("--print-tags")
        .output()
        .expect("run images/build.sh");
    let text = ok_text(&out, "images/build.sh --print-tags");
    let tags: Vec<&str> = text.lines().collect();
    assert_eq!(
        tags,
        [
            aefm::config::kubernetes::STRESS_IMAGE,
            aefm::config::kubernetes::LOAD_IMAGE
        ]
    );
    let defaults: aefm::config::kubernetes::KubernetesConfig =
        serde_yaml::from_str("namespace: a\nyaml_repo: r\n").unwrap();
    assert_eq!(defaults.interference.image, tags[0]);
    assert_eq!(defaults.load.image, tags[1]);
}

/// `images/build.sh` in a clean copy builds both images with nothing pulled; each runs: the
/// stressor's and the generator's help, iperf3 and the ring's shell loop tools in the stress
/// image, and one second of load from the load image to a server on this machine's loopback.
#[test]
fn both_images_build_from_a_clean_copy_and_run() {
    if build_skip_reason().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    match clean_copy(dir.path()) {
        Ok(n) => assert!(n > 10, "copied only {n} files"),
        Err(e) if std::env::var_os("AEFM_REQUIRE_DOCKER").is_some() => panic!("{e}"),
        Err(e) => return eprintln!("skipping image build test: {e}"),
    }
    assert!(!dir.path().join("images/rootfs").exists());
    let id = format!(
        "{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    let stress = format!("aefm-e2e/aefm-stress:{id}");
    let load = format!("aefm-e2e/aefm-load:{id}");
    let _cleanup = Images(vec![stress.clone(), load.clone()]);
    let mut build = Command::new(dir.path().join("images/build.sh"));
    // The workspace's target dir: dependencies are already built there (release for CI's image).
    let target = aefm_tests::bins::target_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .to_path_buf();
    build
        .env("CARGO_TARGET_DIR", target)
        .env("STRESS_IMAGE", &stress)
        .env("LOAD_IMAGE", &load);
    let out = aefm_tests::experiment::run_with_deadline(build, Duration::from_secs(45 * 60));
    let text = ok_text(&out, "images/build.sh in a clean copy");
    assert!(
        text.contains(&format!("built {stress}")) && text.contains(&format!("built {load}")),
        "{text}"
    );

    let help = ok_text(
        &docker(&["run", "--rm", &stress, "--help"]),
        "aefm-stress --help",
    );
    assert!(help.contains("Usage: aefm-stress"), "{help}");
    let help = ok_text(
        &docker(&["run", "--rm", &load, "--help"]),
        "aefm-load --help",
    );
    assert!(help.contains("Usage: aefm-load"), "{help}");
    let ring_tools = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        &stress,
        "-c",
        "sleep 0.1 && iperf3 --version",
    ]);
    let v = ok_text(&ring_tools, "sh, sleep and iperf3 in the stress image");
    assert!(v.contains("iperf"), "{v}");

    // Host networking reaches only this machine's loopback, where the test's server listens.
    let server = aefm_tests::http_server::HttpServer::start(Default::default());
    let url = server.url("/");
    let run = docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        &load,
        "-t1",
        "-c2",
        "-d1s",
        "-R20",
        "--json",
        "-",
        &url,
    ]);
    let json = ok_text(&run, "aefm-load in its image");
    let start = json
        .find('{')
        .unwrap_or_else(|| panic!("no JSON report: {json}"));
    let report: serde_json::Value = serde_json::Deserializer::from_str(&json[start..])
        .into_iter()
        .next()
        .expect("a JSON report")
        .unwrap_or_else(|e| panic!("bad JSON report ({e}): {json}"));
    let requests = report["summary"]["requests"].as_u64().unwrap_or(0);
    assert!(requests > 0, "{report}");
    assert!(!server.requests().is_empty(), "the server saw no request");
}
