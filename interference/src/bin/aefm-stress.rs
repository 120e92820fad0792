//! `aefm-stress`: run one stressor (cpu, memcap, membw, cache, net) with its intensity in physical
//! units and report target vs achieved as JSON lines. Parses arguments and calls the library.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use aefm_interference::{units, CacheLevel, RunOptions, StopSignal, Stressor};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

const KINDS: &[&str] = &["cpu", "memcap", "membw", "cache", "net"];

#[derive(Parser)]
#[command(
    name = "aefm-stress",
    version,
    about = "Resource stressors with intensity in physical units; JSON report lines on stdout"
)]
struct Cli {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(Args)]
struct Common {
    /// Wall-clock duration (10s, 500ms, 5m); default: until SIGTERM/SIGINT.
    #[arg(long, short = 'd', value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Serve Prometheus text metrics on this address (e.g. 0.0.0.0:9100).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Kind {
    /// N workers, each held at a CPU utilisation by a 10 ms duty cycle, pinned to allowed CPUs.
    Cpu {
        /// Workers (default: one per CPU allowed by the cpuset and the CPU quota).
        #[arg(long, short = 'w')]
        workers: Option<usize>,
        /// Target utilisation of each worker, 0-100 (a trailing % is accepted).
        #[arg(long, short = 'l', value_parser = parse_pct)]
        load: f64,
        /// CPUs to pin to, e.g. 0,2-3 (must be allowed).
        #[arg(long, value_parser = parse_cpus)]
        cpus: Option<CpuList>,
        #[command(flatten)]
        common: Common,
    },
    /// Hold memory resident: bytes (1GiB, 512MiB, 1GB) or a percentage of the memory limit (50%).
    Memcap {
        /// Size: 1GiB, 512MiB, 2GB, 1073741824, or 50% (of the cgroup limit, else host memory).
        #[arg(long, short = 's', value_parser = parse_size)]
        size: units::Size,
        /// Re-touch every page this many times per second (default: touch once, then hold).
        #[arg(long)]
        retouch: Option<f64>,
        #[command(flatten)]
        common: Common,
    },
    /// Stream memory (STREAM copy over >= 4x the LLC): max, or a total target such as 8GB/s.
    Membw {
        /// max, or GB/s (8GB/s, 500MB/s).
        #[arg(long, short = 'r', value_parser = parse_rate)]
        rate: units::Rate,
        /// Workers (default: one per allowed CPU within the quota).
        #[arg(long, short = 'w')]
        workers: Option<usize>,
        #[command(flatten)]
        common: Common,
    },
    /// Keep a fraction of a cache level resident (sizes from sysfs).
    Cache {
        /// l1d, l2 or llc.
        #[arg(long, value_parser = parse_level)]
        level: CacheLevel,
        /// Footprint as a fraction of the level's size (0 < F <= 16).
        #[arg(long, short = 'f')]
        fraction: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Network interference with iperf3: a server, or a client towards a server.
    #[command(group(clap::ArgGroup::new("mode").required(true).args(["server", "target"])))]
    Net {
        /// Run an iperf3 server.
        #[arg(long, conflicts_with_all = ["target", "bandwidth", "streams"])]
        server: bool,
        /// Server to send to: HOST or HOST:PORT.
        #[arg(long, short = 't')]
        target: Option<String>,
        /// Port (server: listen; client: default when --target has none).
        #[arg(long, short = 'p', default_value_t = 5201)]
        port: u16,
        /// Bandwidth per stream in bits/s (1G, 100M, 1Gbit/s).
        #[arg(long, short = 'b', value_parser = parse_bandwidth, default_value = "1G")]
        bandwidth: u64,
        /// Parallel streams.
        #[arg(long, short = 'P', default_value_t = 1)]
        streams: u32,
        #[command(flatten)]
        common: Common,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    units::parse_duration(s).map_err(|e| e.to_string())
}
fn parse_size(s: &str) -> Result<units::Size, String> {
    units::parse_size(s).map_err(|e| e.to_string())
}
fn parse_rate(s: &str) -> Result<units::Rate, String> {
    units::parse_rate(s).map_err(|e| e.to_string())
}
fn parse_bandwidth(s: &str) -> Result<u64, String> {
    units::parse_bandwidth(s).map_err(|e| e.to_string())
}
/// A parsed CPU list (a newtype: clap would treat a bare `Vec` as a multi-value argument).
#[derive(Clone)]
struct CpuList(Vec<usize>);

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    units::parse_cpu_list(s)
        .map(CpuList)
        .map_err(|e| e.to_string())
}
fn parse_level(s: &str) -> Result<CacheLevel, String> {
    CacheLevel::parse(s).map_err(|e| e.to_string())
}
fn parse_pct(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%');
    match t.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("invalid load {s:?}: expected a percentage 0-100")),
    }
}

fn into_stressor(kind: Kind) -> Result<(Stressor, Common)> {
    Ok(match kind {
        Kind::Cpu {
            workers,
            load,
            cpus,
            common,
        } => (
            Stressor::Cpu {
                workers: workers.unwrap_or(0),
                load_pct: load,
                cpus: cpus.map(|c| c.0),
            },
            common,
        ),
        Kind::Memcap {
            size,
            retouch,
            common,
        } => (
            Stressor::MemCap {
                size,
                retouch_per_s: retouch,
            },
            common,
        ),
        Kind::Membw {
            rate,
            workers,
            common,
        } => (
            Stressor::MemBw {
                rate,
                workers: workers.unwrap_or(0),
            },
            common,
        ),
        Kind::Cache {
            level,
            fraction,
            common,
        } => (Stressor::Cache { level, fraction }, common),
        Kind::Net {
            server: true,
            port,
            common,
            ..
        } => (Stressor::NetServer { port }, common),
        Kind::Net {
            target,
            port,
            bandwidth,
            streams,
            common,
            ..
        } => {
            let t = target.context("--target HOST[:PORT] or --server is required")?;
            let (host, port) = aefm_interference::stressors::net::split_target(&t, port)?;
            (
                Stressor::NetClient {
                    target: host,
                    port,
                    bandwidth_bps: bandwidth,
                    streams,
                },
                common,
            )
        }
    })
}

fn main() -> ExitCode {
    // Unknown kinds: name the valid ones (clap alone only says "unrecognized subcommand").
    if let Some(first) = std::env::args().nth(1) {
        if !first.starts_with('-') && first != "help" && !KINDS.contains(&first.as_str()) {
            eprintln!(
                "error: unknown stressor kind {first:?}; valid kinds: {}",
                KINDS.join(", ")
            );
            return ExitCode::FAILURE;
        }
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_exit(&e),
    };
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints clap's answer; `--help` and `--version` exit 0, usage errors 1 (clap's own code is 2,
/// the README promises 1 for every error).
fn usage_exit(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn real_main(cli: Cli) -> Result<()> {
    let (stressor, common) = into_stressor(cli.kind)?;
    let stop = StopSignal::install().context("installing the SIGTERM/SIGINT handlers")?;
    let opts = RunOptions {
        duration: common.duration,
        metrics_addr: common.metrics_addr,
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let last = aefm_interference::run(&stressor, &opts, &stop, &mut out)
        .with_context(|| format!("{} stressor", stressor.kind()))?;
    // Started but could not do its job: the report says so in JSON, stderr and the exit code too.
    if let Some(e) = last.error() {
        anyhow::bail!("{} stressor failed: {e}", stressor.kind());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use aefm_interference::{InterferenceSpec, Rate, Size};

    use super::*;

    /// What `to_args` writes is what this parser reads back: the manager builds pods and local
    /// processes from `to_args`, so a drift between the two would run a different stressor.
    #[test]
    fn to_args_round_trips_through_the_parser() {
        let stressors = [
            Stressor::Cpu {
                workers: 2,
                load_pct: 37.5,
                cpus: Some(vec![0, 3]),
            },
            Stressor::Cpu {
                workers: 0,
                load_pct: 100.0,
                cpus: None,
            },
            Stressor::MemCap {
                size: Size::PercentOfLimit(50.0),
                retouch_per_s: Some(0.5),
            },
            Stressor::MemCap {
                size: Size::Bytes(1 << 30),
                retouch_per_s: None,
            },
            Stressor::MemBw {
                rate: Rate::GBps(8.0),
                workers: 3,
            },
            Stressor::MemBw {
                rate: Rate::Max,
                workers: 0,
            },
            Stressor::Cache {
                level: CacheLevel::L2,
                fraction: 0.25,
            },
            Stressor::NetServer { port: 5202 },
            Stressor::NetClient {
                target: "fd00::2".into(),
                port: 7,
                bandwidth_bps: 2_000_000_000,
                streams: 3,
            },
        ];
        for (i, stressor) in stressors.into_iter().enumerate() {
            let mut spec = InterferenceSpec::new(stressor);
            if i % 2 == 0 {
                spec.duration = Some(Duration::from_millis(1500));
                spec.metrics_addr = Some("0.0.0.0:9100".parse().unwrap());
            }
            let args = spec.to_args();
            let cli =
                Cli::try_parse_from(std::iter::once("aefm-stress".to_string()).chain(args.clone()))
                    .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let (stressor, common) = into_stressor(cli.kind).unwrap();
            assert_eq!(stressor, spec.stressor, "{args:?}");
            assert_eq!(common.duration, spec.duration, "{args:?}");
            assert_eq!(common.metrics_addr, spec.metrics_addr, "{args:?}");
        }
    }
}
