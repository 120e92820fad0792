//! # aefm-interference
//!
//! Resource stressors with their intensity in physical units, for performance experiments that
//! measure a service while a neighbour competes for CPU, memory capacity, memory bandwidth,
//! caches or the network. It replaces the iBench programs the original AEFM ran in pods, which
//! took only a duration, sized themselves from the host instead of the container, mis-sized the
//! caches and depended on `-O0`.
//!
//! - [`Stressor`]: `Cpu` (duty cycle per pinned worker), `MemCap` (bytes or % of the cgroup limit,
//!   resident, near-zero CPU), `MemBw` (STREAM copy over >= 4x LLC, or as much as a
//!   cgroup limit holds, reported as `working_set_capped`; `max` or paced GB/s), `Cache`
//!   (fraction of L1d/L2/LLC from sysfs, random pointer chase), `NetServer`/`NetClient` (iperf3,
//!   restarted if it dies).
//! - [`run()`]: runs one stressor for a wall-clock duration or until a [`StopSignal`], writing
//!   JSON report lines ([`ReportLine`]: target next to achieved) each second and at the end.
//! - [`InterferenceSpec`]: stressor + duration + metrics address + placement; renders to
//!   `aefm-stress` arguments ([`InterferenceSpec::to_args`], encoded beside their parser) or starts
//!   as a local process ([`InterferenceSpec::spawn_local`] -> [`LocalStressor`]). The Kubernetes
//!   pod that runs a spec on a cluster is rendered by the manager
//!   (`aefm::kubernetes::interference::pod::render`): this crate runs alone in a container and
//!   depends on no Kubernetes types.
//! - [`verify::check`]: judges a stressor's report lines over a measured window (it ran
//!   throughout, reported no error, reached its target) with [`verify::Tolerances`].
//! - [`cgroup`] and [`geometry`]: what the process may use (memory limit, CPU quota, allowed
//!   CPUs) and the cache sizes, read from `/sys` and `/proc`.
//!
//! The binary `aefm-stress` is a thin command line over [`run()`].
//!
//! ```no_run
//! use std::time::Duration;
//! use aefm_interference::{find_stress_binary, InterferenceSpec, Stressor};
//!
//! let mut spec = InterferenceSpec::new(Stressor::Cpu { workers: 1, load_pct: 50.0, cpus: None });
//! spec.duration = Some(Duration::from_secs(30));
//! // The command line a container runs ...
//! assert_eq!(spec.to_args(), ["cpu", "--workers", "1", "--load", "50", "--duration", "30s"]);
//! // ... or a local process.
//! let exe = find_stress_binary().expect("aefm-stress next to this program or on PATH");
//! let mut s = spec.spawn_local(&exe)?;
//! let first = s.wait_running(Duration::from_secs(5))?;
//! println!("{} at {} {} (target {})", first.kind, first.achieved, first.unit, first.target);
//! let last = s.stop(Duration::from_secs(2))?;
//! # let _ = last;
//! # Ok::<(), aefm_interference::Error>(())
//! ```

pub mod cgroup;
pub mod error;
pub mod geometry;
pub mod local;
pub mod metrics;
pub mod report;
pub mod run;
pub mod spec;
pub mod stop;
pub mod stressors;
pub mod units;
pub mod verify;

pub use error::{Error, Result};
pub use geometry::CacheLevel;
pub use local::LocalStressor;
pub use report::ReportLine;
pub use run::{run, RunOptions};
pub use spec::{find_stress_binary, InterferenceSpec, Placement, Stressor};
pub use stop::StopSignal;
pub use units::{Rate, Size};
