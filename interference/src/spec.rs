//! The interference spec the manager builds: which stressor at which intensity, for how long, where.
//! It renders to `aefm-stress` arguments (encoded here, beside their parser) and spawns as a local
//! process ([`crate::local`]). Pod manifests are the manager's business
//! (`aefm::kubernetes::interference::pod`): this crate runs alone in a container and needs no
//! Kubernetes types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::geometry::CacheLevel;
use crate::units::{format_cpu_list, format_duration, Rate, Size};

/// One stressor and its intensity, in physical units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stressor {
    /// `workers` threads (0 = one per effective CPU), each at `load_pct` % of a CPU, pinned to `cpus`
    /// (default: all allowed CPUs).
    Cpu {
        /// Worker threads; 0 = one per CPU the cpuset and quota allow.
        workers: usize,
        /// Target utilisation of each worker, 0..=100.
        load_pct: f64,
        /// CPUs to pin to (must be allowed).
        cpus: Option<Vec<usize>>,
    },
    /// Hold `size` of memory resident; optionally rewrite every page `retouch_per_s` times a second.
    MemCap {
        /// Bytes, or a percentage of the memory limit.
        size: Size,
        /// Full re-touch passes per second (None: touch once and hold).
        retouch_per_s: Option<f64>,
    },
    /// Stream memory at `rate` with `workers` threads (0 = one per effective CPU).
    MemBw {
        /// `Max` or a total GB/s target.
        rate: Rate,
        /// Worker threads; 0 = one per effective CPU.
        workers: usize,
    },
    /// Keep `fraction` of a cache level's size resident.
    Cache {
        /// L1d, L2 or LLC.
        level: CacheLevel,
        /// Footprint as a fraction of the level's size (0 < f <= 16).
        fraction: f64,
    },
    /// An iperf3 server on `port`.
    NetServer {
        /// TCP port.
        port: u16,
    },
    /// An iperf3 client sending `streams` streams of `bandwidth_bps` each to `target:port`.
    NetClient {
        /// Server host name or address.
        target: String,
        /// Server port.
        port: u16,
        /// Bits per second per stream (iperf3 `-b`).
        bandwidth_bps: u64,
        /// Parallel streams (iperf3 `-P`).
        streams: u32,
    },
}

impl Stressor {
    /// The `aefm-stress` subcommand and the report `kind` prefix.
    pub fn kind(&self) -> &'static str {
        match self {
            Stressor::Cpu { .. } => "cpu",
            Stressor::MemCap { .. } => "memcap",
            Stressor::MemBw { .. } => "membw",
            Stressor::Cache { .. } => "cache",
            Stressor::NetServer { .. } => "net-server",
            Stressor::NetClient { .. } => "net-client",
        }
    }
}

/// Where a stressor runs and what it may use. Locally only `cpus` applies; `node` and the limits
/// are read by the manager's pod renderer, as plain strings so that this crate needs no Kubernetes
/// types (tolerations and labels are the manager's alone).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Kubernetes node (`kubernetes.io/hostname`); ignored locally.
    pub node: Option<String>,
    /// Local runs: restrict the whole process to these CPUs (affinity set before exec). Pods: not
    /// expressible (needs the static CPU manager); use the stressor's own `cpus`.
    pub cpus: Option<Vec<usize>>,
    /// Pod CPU request and limit (a Kubernetes quantity, e.g. `1` or `500m`).
    pub cpu_limit: Option<String>,
    /// Pod memory request and limit (e.g. `4Gi`).
    pub memory_limit: Option<String>,
}

/// A complete interference request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterferenceSpec {
    /// What to stress and how hard.
    pub stressor: Stressor,
    /// Wall-clock duration; None = until stopped.
    pub duration: Option<Duration>,
    /// Serve Prometheus metrics here (`--metrics-addr`).
    pub metrics_addr: Option<SocketAddr>,
    /// Node, CPUs and resource limits.
    pub placement: Placement,
}

impl InterferenceSpec {
    /// A spec with no duration, placement or metrics.
    pub fn new(stressor: Stressor) -> Self {
        InterferenceSpec {
            stressor,
            duration: None,
            metrics_addr: None,
            placement: Placement::default(),
        }
    }

    /// `aefm-stress` arguments (without the program name).
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        fn push(a: &mut Vec<String>, k: &str, v: String) {
            a.push(k.to_string());
            a.push(v);
        }
        let sub = match &self.stressor {
            Stressor::Cpu {
                workers,
                load_pct,
                cpus,
            } => {
                if *workers > 0 {
                    push(&mut a, "--workers", workers.to_string());
                }
                push(&mut a, "--load", load_pct.to_string());
                if let Some(c) = cpus.as_ref().filter(|c| !c.is_empty()) {
                    push(&mut a, "--cpus", format_cpu_list(c));
                }
                "cpu"
            }
            Stressor::MemCap {
                size,
                retouch_per_s,
            } => {
                push(&mut a, "--size", size.to_string());
                if let Some(r) = retouch_per_s {
                    push(&mut a, "--retouch", r.to_string());
                }
                "memcap"
            }
            Stressor::MemBw { rate, workers } => {
                push(&mut a, "--rate", rate.to_string());
                if *workers > 0 {
                    push(&mut a, "--workers", workers.to_string());
                }
                "membw"
            }
            Stressor::Cache { level, fraction } => {
                push(&mut a, "--level", level.as_str().to_string());
                push(&mut a, "--fraction", fraction.to_string());
                "cache"
            }
            Stressor::NetServer { port } => {
                a.push("--server".into());
                push(&mut a, "--port", port.to_string());
                "net"
            }
            Stressor::NetClient {
                target,
                port,
                bandwidth_bps,
                streams,
            } => {
                let host = if target.contains(':') {
                    format!("[{target}]")
                } else {
                    target.clone()
                };
                push(&mut a, "--target", format!("{host}:{port}"));
                push(&mut a, "--bandwidth", bandwidth_bps.to_string());
                push(&mut a, "--streams", streams.to_string());
                "net"
            }
        };
        let mut args = vec![sub.to_string()];
        args.append(&mut a);
        if let Some(d) = self.duration {
            args.push("--duration".into());
            args.push(format_duration(d));
        }
        if let Some(m) = self.metrics_addr {
            args.push("--metrics-addr".into());
            args.push(m.to_string());
        }
        args
    }
}

/// The `aefm-stress` binary: next to the current executable (or its parent directory, for test
/// executables in `target/<profile>/deps`), then on `$PATH`.
pub fn find_stress_binary() -> Option<PathBuf> {
    let name = "aefm-stress";
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent();
        for _ in 0..2 {
            if let Some(d) = dir {
                let p = d.join(name);
                if p.is_file() {
                    return Some(p);
                }
                dir = d.parent();
            }
        }
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d: PathBuf| d.join(name))
        .find(|p: &PathBuf| Path::new(p).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: Stressor) -> InterferenceSpec {
        let mut sp = InterferenceSpec::new(s);
        sp.duration = Some(Duration::from_secs(30));
        sp
    }

    #[test]
    fn args_for_every_kind() {
        let a = |s| spec(s).to_args().join(" ");
        assert_eq!(
            a(Stressor::Cpu {
                workers: 2,
                load_pct: 50.0,
                cpus: Some(vec![0, 1])
            }),
            "cpu --workers 2 --load 50 --cpus 0,1 --duration 30s"
        );
        assert_eq!(
            a(Stressor::MemCap {
                size: Size::PercentOfLimit(50.0),
                retouch_per_s: None
            }),
            "memcap --size 50% --duration 30s"
        );
        assert_eq!(
            a(Stressor::MemCap {
                size: Size::Bytes(1 << 30),
                retouch_per_s: Some(0.5)
            }),
            "memcap --size 1073741824 --retouch 0.5 --duration 30s"
        );
        assert_eq!(
            a(Stressor::MemBw {
                rate: Rate::GBps(8.0),
                workers: 1
            }),
            "membw --rate 8GB/s --workers 1 --duration 30s"
        );
        assert_eq!(
            a(Stressor::MemBw {
                rate: Rate::Max,
                workers: 0
            }),
            "membw --rate max --duration 30s"
        );
        assert_eq!(
            a(Stressor::Cache {
                level: CacheLevel::L2,
                fraction: 0.5
            }),
            "cache --level l2 --fraction 0.5 --duration 30s"
        );
        assert_eq!(
            a(Stressor::NetServer { port: 5201 }),
            "net --server --port 5201 --duration 30s"
        );
        assert_eq!(
            a(Stressor::NetClient {
                target: "10.0.0.2".into(),
                port: 5201,
                bandwidth_bps: 1_000_000_000,
                streams: 2
            }),
            "net --target 10.0.0.2:5201 --bandwidth 1000000000 --streams 2 --duration 30s"
        );
        assert!(a(Stressor::NetClient {
            target: "::1".into(),
            port: 7,
            bandwidth_bps: 1,
            streams: 1
        })
        .contains("--target [::1]:7"));
        let mut s = InterferenceSpec::new(Stressor::NetServer { port: 1 });
        s.metrics_addr = Some("0.0.0.0:9100".parse().unwrap());
        assert_eq!(
            s.to_args().join(" "),
            "net --server --port 1 --metrics-addr 0.0.0.0:9100"
        );
    }
}
