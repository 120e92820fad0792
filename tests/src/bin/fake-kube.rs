//! `fake-kube`: the test suite's fake Kubernetes API server, standalone, so the Kubernetes path of
//! AEFM can be walked by hand without a cluster. It writes a kubeconfig, prints the server URL and
//! runs until Ctrl-C or SIGTERM. Everything is in the library (`aefm_tests::fake_kube`); this only
//! parses flags.

use std::path::PathBuf;
use std::time::Duration;

use aefm_tests::fake_kube::{runner, FakeKube, Options};
use clap::Parser;
use serde_json::json;

/// A fake Kubernetes API server as strict as a real one, with fault injection.
///
/// Nodes are w1..wN (plus `control-plane`, tainted NoSchedule, with --control-plane). Pods are
/// scheduled against the nodes' CPU and memory, taints, host ports and affinity. With --run-jobs,
/// each Job pod runs its container command (or the image's name, e.g. `aefm-load`) as a local
/// process found on PATH, with the Job's args; its stdout and stderr become the pod log and its
/// exit code the pod phase. Everything else (app pods, interference pods) runs nothing: it just
/// becomes Ready after --ready-delay.
#[derive(Debug, Parser)]
#[command(name = "fake-kube", version)]
struct Args {
    /// Where to write the kubeconfig (context `fake`, namespace `default`).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Port on 127.0.0.1 (default: a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Number of worker nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Allocatable CPU of each worker.
    #[arg(long, default_value = "8")]
    node_cpu: String,
    /// Allocatable memory of each worker.
    #[arg(long, default_value = "32Gi")]
    node_memory: String,
    /// Images every worker reports as already pulled (comma-separated), e.g. for `aefm doctor`.
    #[arg(long, value_delimiter = ',')]
    node_images: Vec<String>,
    /// Add a control-plane node tainted NoSchedule.
    #[arg(long)]
    control_plane: bool,
    /// Cut every watch connection this long after it opened (e.g. 5s, 500ms, 1m).
    #[arg(long, value_parser = duration)]
    drop_watches_every: Option<Duration>,
    /// Every this long, expire every open watch with 410 Gone and compact the history.
    #[arg(long, value_parser = duration)]
    gone_every: Option<Duration>,
    /// Refuse a verb on a resource with 403, e.g. get:pods/log, create:pods/proxy, list:jobs
    /// (repeatable; `*` for any verb).
    #[arg(long, value_name = "VERB:RESOURCE")]
    deny: Vec<String>,
    /// Run Job pods as local processes.
    #[arg(long)]
    run_jobs: bool,
    /// Time from pod creation to Running and Ready.
    #[arg(long, value_parser = duration, default_value = "1s")]
    ready_delay: Duration,
}

/// `5s`, `500ms`, `1m`, or plain seconds.
fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 5s, 500ms, 1m)");
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn main() {
    let args = Args::parse();
    let mut denied = Vec::new();
    for d in &args.deny {
        match d.split_once(':') {
            Some((verb, res)) if !verb.is_empty() && !res.is_empty() => {
                denied.push((verb.to_string(), res.to_string()))
            }
            _ => {
                eprintln!("fake-kube: --deny {d:?}: expected VERB:RESOURCE, e.g. get:pods/log");
                std::process::exit(2);
            }
        }
    }
    let fake = FakeKube::start_with(Options { port: args.port });
    if args.control_plane {
        fake.add_tainted_node(
            "control-plane",
            "4",
            "8Gi",
            "10.0.0.10",
            json!({"node-role.kubernetes.io/control-plane": ""}),
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        );
    }
    let images: Vec<&str> = args.node_images.iter().map(String::as_str).collect();
    for i in 1..=args.nodes {
        let (name, ip) = (format!("w{i}"), format!("10.0.0.{}", 10 + i));
        fake.add_node(&name, &args.node_cpu, &args.node_memory, &ip, json!({}));
        fake.preload_images(&name, &images);
    }
    fake.faults(|f| {
        f.ready_delay = args.ready_delay;
        f.drop_watches_every = args.drop_watches_every;
        f.gone_every = args.gone_every;
        f.forbidden = denied;
    });
    if args.run_jobs {
        fake.set_job_runner(runner::local_process_runner());
    }
    if let Err(e) = fake.write_kubeconfig(&args.kubeconfig) {
        eprintln!("fake-kube: cannot write {}: {e}", args.kubeconfig.display());
        std::process::exit(1);
    }
    println!("{}", fake.url());
    eprintln!(
        "fake-kube: serving {} (kubeconfig {}); Ctrl-C to stop",
        fake.url(),
        args.kubeconfig.display()
    );
    wait_for_signal();
    drop(fake);
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}
