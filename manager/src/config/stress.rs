//! From a stressor level of the config ([`StressSpec`]) to the interference library's
//! [`InterferenceSpec`]. This is the one place that applies the documented defaults and parses
//! the unit strings of a level, so that the local backend's processes, the Kubernetes backend's
//! pods and config validation all see the same stressor; both backends then render it with
//! [`InterferenceSpec::to_args`].

use std::time::Duration;

use aefm_interference::stressors::net::split_target;
use aefm_interference::{units, CacheLevel, InterferenceSpec, Stressor};

use super::{StressKind, StressSpec};

/// Default `load` of a cpu stressor: percent of a CPU per worker.
pub const DEFAULT_LOAD: f64 = 100.0;
/// Default `rate` of a membw stressor.
pub const DEFAULT_RATE: &str = "max";
/// Default cache `level`.
pub const DEFAULT_LEVEL: &str = "llc";
/// Default cache `fraction`.
pub const DEFAULT_FRACTION: f64 = 1.0;
/// Default net `bandwidth` per stream.
pub const DEFAULT_BANDWIDTH: &str = "1G";
/// Default net `streams`.
pub const DEFAULT_STREAMS: u32 = 1;
/// Port of a net `target` that names none: iperf3's, as `aefm-stress net` assumes.
pub const DEFAULT_NET_PORT: u16 = 5201;

/// Why a stressor level cannot become an [`InterferenceSpec`].
#[derive(Debug, thiserror::Error)]
pub enum StressSpecError {
    /// A key the kind requires is missing.
    #[error("{kind} needs `{key}` ({hint})")]
    Missing {
        /// The stressor kind.
        kind: StressKind,
        /// The missing key.
        key: &'static str,
        /// What a value looks like.
        hint: &'static str,
    },
    /// A value does not parse (the library's message names the value and the accepted forms).
    #[error("`{key}`: {error}")]
    Invalid {
        /// The key holding the value.
        key: &'static str,
        /// The parse error.
        error: aefm_interference::Error,
    },
}

impl StressSpec {
    /// The stressor this level describes, with the config's defaults applied.
    ///
    /// `cores`: the app cores a local stressor runs beside. With them, `workers` defaults to one per
    /// core and a cpu stressor is pinned to them (the process is restricted to them as well:
    /// `placement.cpus`). Without them (a pod), `workers` defaults to `aefm-stress`'s own choice,
    /// one per CPU the pod's quota allows. `duration`: how long it runs; None = until stopped.
    /// Labels and the rest of the placement are left to the caller.
    pub fn to_interference(
        &self,
        cores: Option<&[usize]>,
        duration: Option<Duration>,
    ) -> Result<InterferenceSpec, StressSpecError> {
        let invalid = |key| move |error| StressSpecError::Invalid { key, error };
        // 0 = aefm-stress decides (one worker per CPU it may use).
        let workers = self.workers.unwrap_or(cores.map_or(0, <[usize]>::len));
        let stressor = match self.kind {
            StressKind::Cpu => Stressor::Cpu {
                workers,
                load_pct: self.load.unwrap_or(DEFAULT_LOAD),
                cpus: cores.map(<[usize]>::to_vec),
            },
            StressKind::Memcap => {
                let size = self.size.as_deref().ok_or(StressSpecError::Missing {
                    kind: self.kind,
                    key: "size",
                    hint: "e.g. 1GiB or 50%",
                })?;
                Stressor::MemCap {
                    size: units::parse_size(size).map_err(invalid("size"))?,
                    retouch_per_s: None,
                }
            }
            StressKind::Membw => Stressor::MemBw {
                rate: units::parse_rate(self.rate.as_deref().unwrap_or(DEFAULT_RATE))
                    .map_err(invalid("rate"))?,
                workers,
            },
            StressKind::Cache => Stressor::Cache {
                level: CacheLevel::parse(self.level.as_deref().unwrap_or(DEFAULT_LEVEL))
                    .map_err(invalid("level"))?,
                fraction: self.fraction.unwrap_or(DEFAULT_FRACTION),
            },
            StressKind::Net => {
                let target = self.target.as_deref().ok_or(StressSpecError::Missing {
                    kind: self.kind,
                    key: "target",
                    hint: "host:port of an iperf3 server",
                })?;
                let (host, port) =
                    split_target(target, DEFAULT_NET_PORT).map_err(invalid("target"))?;
                let bandwidth = self.bandwidth.as_deref().unwrap_or(DEFAULT_BANDWIDTH);
                Stressor::NetClient {
                    target: host,
                    port,
                    bandwidth_bps: units::parse_bandwidth(bandwidth)
                        .map_err(invalid("bandwidth"))?,
                    streams: self.streams.unwrap_or(DEFAULT_STREAMS),
                }
            }
        };
        let mut spec = InterferenceSpec::new(stressor);
        spec.duration = duration;
        spec.placement.cpus = cores.map(<[usize]>::to_vec);
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use aefm_interference::{Rate, Size};

    use super::*;

    fn level(yaml: &str) -> StressSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn args(yaml: &str, cores: Option<&[usize]>) -> String {
        level(yaml)
            .to_interference(cores, Some(Duration::from_secs(30)))
            .unwrap()
            .to_args()
            .join(" ")
    }

    #[test]
    fn cpu_locally_is_pinned_to_the_app_cores() {
        let s = level("{kind: cpu, load: 80}")
            .to_interference(Some(&[0, 1]), Some(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(
            s.stressor,
            Stressor::Cpu {
                workers: 2,
                load_pct: 80.0,
                cpus: Some(vec![0, 1])
            }
        );
        assert_eq!(s.placement.cpus, Some(vec![0, 1]));
        assert_eq!(
            s.to_args().join(" "),
            "cpu --workers 2 --load 80 --cpus 0,1 --duration 30s"
        );
    }

    #[test]
    fn cpu_in_a_pod_leaves_workers_to_the_quota() {
        assert_eq!(args("{kind: cpu}", None), "cpu --load 100 --duration 30s");
        assert_eq!(
            args("{kind: cpu, workers: 2, load: 90}", None),
            "cpu --workers 2 --load 90 --duration 30s"
        );
        let s = level("{kind: cpu}").to_interference(None, None).unwrap();
        assert_eq!(s.placement.cpus, None);
        assert_eq!(s.to_args(), ["cpu", "--load", "100"]);
    }

    #[test]
    fn memcap_parses_the_size() {
        let s = level("{kind: memcap, size: 50%}")
            .to_interference(None, None)
            .unwrap();
        assert_eq!(
            s.stressor,
            Stressor::MemCap {
                size: Size::PercentOfLimit(50.0),
                retouch_per_s: None
            }
        );
        assert_eq!(
            args("{kind: memcap, size: 1GiB}", Some(&[3])),
            "memcap --size 1073741824 --duration 30s"
        );
    }

    #[test]
    fn membw_defaults_to_max() {
        assert_eq!(
            args("{kind: membw}", Some(&[0, 1, 2])),
            "membw --rate max --workers 3 --duration 30s"
        );
        let s = level("{kind: membw, rate: 500MB/s, workers: 1}")
            .to_interference(None, None)
            .unwrap();
        assert_eq!(
            s.stressor,
            Stressor::MemBw {
                rate: Rate::GBps(0.5),
                workers: 1
            }
        );
        assert_eq!(
            args("{kind: membw}", None),
            "membw --rate max --duration 30s"
        );
    }

    #[test]
    fn cache_defaults_to_the_whole_llc() {
        assert_eq!(
            args("{kind: cache}", Some(&[0])),
            "cache --level llc --fraction 1 --duration 30s"
        );
        assert_eq!(
            args("{kind: cache, level: L2, fraction: 0.5}", None),
            "cache --level l2 --fraction 0.5 --duration 30s"
        );
    }

    #[test]
    fn net_splits_the_target_and_parses_the_bandwidth() {
        let s = level("{kind: net, target: 'srv:7000', bandwidth: 500M, streams: 2}")
            .to_interference(Some(&[0]), None)
            .unwrap();
        assert_eq!(
            s.stressor,
            Stressor::NetClient {
                target: "srv".into(),
                port: 7000,
                bandwidth_bps: 500_000_000,
                streams: 2
            }
        );
        assert_eq!(
            args("{kind: net, target: '::1'}", None),
            "net --target [::1]:5201 --bandwidth 1000000000 --streams 1 --duration 30s"
        );
    }

    #[test]
    fn missing_and_invalid_values_name_the_key() {
        let e = |yaml: &str| {
            level(yaml)
                .to_interference(None, None)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e("{kind: memcap}"),
            "memcap needs `size` (e.g. 1GiB or 50%)"
        );
        assert_eq!(
            e("{kind: net}"),
            "net needs `target` (host:port of an iperf3 server)"
        );
        for (yaml, key) in [
            ("{kind: memcap, size: 1XB}", "`size`: invalid size \"1XB\""),
            ("{kind: membw, rate: fast}", "`rate`: invalid rate \"fast\""),
            (
                "{kind: cache, level: l4}",
                "`level`: invalid cache level \"l4\"",
            ),
            (
                "{kind: net, target: 'h:0'}",
                "`target`: invalid target \"h:0\"",
            ),
            (
                "{kind: net, target: h, bandwidth: 1GB/s}",
                "`bandwidth`: invalid bandwidth \"1GB/s\"",
            ),
        ] {
            assert!(e(yaml).starts_with(key), "{yaml}: {}", e(yaml));
        }
    }
}
