//! Stressor levels: the schema of a level (`none` or a [`StressSpec`]) and its one conversion into
//! the interference library's [`InterferenceSpec`], a [`StressLevel`].
//!
//! The conversion applies the documented defaults and parses the unit strings of a level. It runs
//! once, when the config is loaded, so that a bad value fails there naming its key and line; the
//! local backend's processes and the Kubernetes backend's pods then only add what depends on
//! where the stressor runs (cores, duration), with [`StressLevel::beside`] and
//! [`StressLevel::in_pod`], and render it with [`InterferenceSpec::to_args`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aefm_interference::stressors::net::split_target;
use aefm_interference::{units, CacheLevel, InterferenceSpec, Stressor};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::{fmt_num, safe_char};

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
    /// A value parses but is out of its range (`load: 150`, `workers: 0`, a label with `/`).
    #[error("{0}")]
    OutOfRange(String),
}

/// Kind of stressor, as in `aefm-stress <kind>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StressKind {
    /// CPU duty cycle.
    Cpu,
    /// Memory capacity held.
    Memcap,
    /// Memory bandwidth.
    Membw,
    /// Cache thrashing.
    Cache,
    /// Network traffic (iperf3) to a target.
    Net,
}

impl fmt::Display for StressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StressKind::Cpu => "cpu",
            StressKind::Memcap => "memcap",
            StressKind::Membw => "membw",
            StressKind::Cache => "cache",
            StressKind::Net => "net",
        })
    }
}

/// One level of an interference dimension: `none`, or a stressor with its intensity.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum InterferenceLevelSpec {
    /// No interference.
    None,
    /// A stressor.
    Stress(Box<StressSpec>),
}

/// A stressor and its intensity, in the stressor's own units, as written in the config;
/// [`StressLevel::new`] turns it into what `aefm-stress` runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StressSpec {
    /// Which stressor. Required.
    pub kind: StressKind,
    /// Name in case names and plots. Default: derived (`cpu-90`, `membw-max`).
    #[serde(default)]
    pub label: Option<String>,
    /// Worker threads (cpu, membw). Default `1` per app core (Kubernetes: one per CPU of the pod's
    /// limit).
    #[serde(default)]
    pub workers: Option<usize>,
    /// cpu: load per worker in percent (1-100). Default `100`.
    #[serde(default)]
    pub load: Option<f64>,
    /// membw: `max` or a rate such as `2GB/s`. Default `max`.
    #[serde(default)]
    pub rate: Option<String>,
    /// memcap: size such as `1GiB` or `50%`. Required for memcap.
    #[serde(default)]
    pub size: Option<String>,
    /// cache: `l1d`, `l2` or `llc`. Default `llc`.
    #[serde(default)]
    pub level: Option<String>,
    /// cache: fraction of the cache to thrash. Default `1.0`.
    #[serde(default)]
    pub fraction: Option<f64>,
    /// net: `host[:port]` of an iperf3 server. Required for net.
    #[serde(default)]
    pub target: Option<String>,
    /// net: bandwidth such as `1G`. Default `1G`.
    #[serde(default)]
    pub bandwidth: Option<String>,
    /// net: parallel streams. Default `1`.
    #[serde(default)]
    pub streams: Option<u32>,
    /// Kubernetes only: identical interference pods per node for this level (the original AEFM's
    /// interference `range`), so the number of pods can be swept as levels. Default
    /// `kubernetes.interference.pods_per_node`. Not for `net` (the iperf3 ring has one pod per
    /// node) nor the local backend (one stressor process; use `workers`).
    #[serde(default)]
    pub pods: Option<u32>,
}

impl StressSpec {
    /// The label used in case names, summaries and plot legends.
    pub fn label(&self) -> String {
        if let Some(l) = &self.label {
            return l.clone();
        }
        let detail = match self.kind {
            StressKind::Cpu => fmt_num(self.load.unwrap_or(DEFAULT_LOAD)),
            StressKind::Membw => self.rate.as_deref().unwrap_or(DEFAULT_RATE).into(),
            StressKind::Memcap => self.size.clone().unwrap_or_default(),
            StressKind::Cache => self.level.as_deref().unwrap_or(DEFAULT_LEVEL).into(),
            StressKind::Net => self
                .bandwidth
                .as_deref()
                .unwrap_or(DEFAULT_BANDWIDTH)
                .into(),
        };
        // The pod count is part of the level: two levels that differ only in it must not share
        // a case name.
        match self.pods {
            Some(n) => format!("{}-{}-x{n}", self.kind, detail),
            None => format!("{}-{}", self.kind, detail),
        }
    }
}

impl<'de> Deserialize<'de> for InterferenceLevelSpec {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Hand-written so that `none` is a plain word and a stressor a mapping, while errors
        // inside the mapping keep serde_yaml's key path and line (an untagged enum loses both).
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InterferenceLevelSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`none` or a mapping such as `{kind: cpu, load: 90}`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                if s == "none" {
                    Ok(InterferenceLevelSpec::None)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(s), &self))
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(InterferenceLevelSpec::None)
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Self::Value, M::Error> {
                StressSpec::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(|s| InterferenceLevelSpec::Stress(Box::new(s)))
            }
        }
        d.deserialize_any(V)
    }
}

impl StressSpec {
    /// Checks the values serde cannot: ranges and the label's characters.
    fn check_ranges(&self) -> Result<(), StressSpecError> {
        let out = |m: String| Err(StressSpecError::OutOfRange(m));
        if let Some(l) = &self.label {
            if l.is_empty() || !l.chars().all(safe_char) {
                return out(format!(
                    "label {l:?} must use only letters, digits, '.', '_' and '-'"
                ));
            }
        }
        if let Some(load) = self.load {
            if !(load > 0.0 && load <= 100.0) {
                return out(format!("load {load} must be in (0, 100] percent"));
            }
        }
        if self.workers == Some(0) {
            return out("workers must be at least 1".into());
        }
        if self.pods == Some(0) {
            return out("pods must be at least 1".into());
        }
        if self.pods.is_some() && self.kind == StressKind::Net {
            return out(
                "`pods` does not apply to net: the iperf3 ring runs one pod per node".into(),
            );
        }
        Ok(())
    }

    /// The stressor with the defaults applied and the units parsed; `workers` 0 (aefm-stress
    /// decides: one per CPU it may use) when the level gives none. Without `need_target`, a net
    /// level may leave out its target (left empty for the Kubernetes ring to fill in).
    fn parse(&self, need_target: bool) -> Result<Stressor, StressSpecError> {
        let invalid = |key| move |error| StressSpecError::Invalid { key, error };
        let workers = self.workers.unwrap_or(0);
        Ok(match self.kind {
            StressKind::Cpu => Stressor::Cpu {
                workers,
                load_pct: self.load.unwrap_or(DEFAULT_LOAD),
                cpus: None,
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
                let (host, port) = match self.target.as_deref() {
                    Some(t) => split_target(t, DEFAULT_NET_PORT).map_err(invalid("target"))?,
                    None if !need_target => (String::new(), DEFAULT_NET_PORT),
                    None => {
                        return Err(StressSpecError::Missing {
                            kind: self.kind,
                            key: "target",
                            hint: "host:port of an iperf3 server",
                        })
                    }
                };
                let bandwidth = self.bandwidth.as_deref().unwrap_or(DEFAULT_BANDWIDTH);
                Stressor::NetClient {
                    target: host,
                    port,
                    bandwidth_bps: units::parse_bandwidth(bandwidth)
                        .map_err(invalid("bandwidth"))?,
                    streams: self.streams.unwrap_or(DEFAULT_STREAMS),
                }
            }
        })
    }
}

/// A stressor level converted once, when the config is loaded: the level as written, its label
/// and its [`InterferenceSpec`] with the config's defaults applied and every unit parsed.
///
/// Shared, not copied: every test case holding the level points at the same conversion, so a
/// sweep of many cases costs a pointer per case and level.
#[derive(Clone, Debug, PartialEq)]
pub struct StressLevel(Arc<Converted>);

#[derive(Debug, PartialEq)]
struct Converted {
    spec: StressSpec,
    label: String,
    interference: InterferenceSpec,
}

impl StressLevel {
    /// Converts a level for the local backend; the error names the key and the accepted forms.
    pub fn new(spec: StressSpec) -> Result<Self, StressSpecError> {
        if spec.pods.is_some() {
            return Err(StressSpecError::OutOfRange(
                "`pods` (interference pods per node) is for the Kubernetes backend; locally one \
                 stressor process runs beside the app (size it with `workers`)"
                    .into(),
            ));
        }
        Self::convert(spec, false)
    }

    /// Converts a level for the Kubernetes backend, where a net level needs no `target`: its
    /// iperf3 ring aims each node's client at the next node.
    pub fn for_cluster(spec: StressSpec) -> Result<Self, StressSpecError> {
        Self::convert(spec, true)
    }

    fn convert(spec: StressSpec, on_cluster: bool) -> Result<Self, StressSpecError> {
        spec.check_ranges()?;
        let interference = InterferenceSpec::new(spec.parse(!on_cluster)?);
        Ok(Self(Arc::new(Converted {
            label: spec.label(),
            spec,
            interference,
        })))
    }

    /// The level as written in the config.
    pub fn spec(&self) -> &StressSpec {
        &self.0.spec
    }

    /// Which stressor.
    pub fn kind(&self) -> StressKind {
        self.0.spec.kind
    }

    /// Interference pods per node the level asks for (Kubernetes), if it names a number.
    pub fn pods(&self) -> Option<u32> {
        self.0.spec.pods
    }

    /// The label used in case names, summaries and plot legends (`cpu-90`).
    pub fn label(&self) -> &str {
        &self.0.label
    }

    /// The stressor as a pod runs it: no cores, no duration (it runs until stopped), and
    /// `workers` as given or left to `aefm-stress` (one per CPU the pod's quota allows).
    pub fn in_pod(&self) -> InterferenceSpec {
        self.0.interference.clone()
    }

    /// The stressor beside the app on `cores` for `duration` (None = until stopped): `workers`
    /// defaults to one per core, and a cpu stressor is pinned to them (the process is restricted
    /// to them as well: `placement.cpus`). Labels and the rest of the placement are left to the
    /// caller.
    pub fn beside(&self, cores: &[usize], duration: Option<Duration>) -> InterferenceSpec {
        let mut s = self.in_pod();
        let default_workers = self.0.spec.workers.is_none();
        match &mut s.stressor {
            Stressor::Cpu { workers, cpus, .. } => {
                if default_workers {
                    *workers = cores.len();
                }
                *cpus = Some(cores.to_vec());
            }
            Stressor::MemBw { workers, .. } if default_workers => *workers = cores.len(),
            _ => {}
        }
        s.duration = duration;
        s.placement.cpus = Some(cores.to_vec());
        s
    }
}

/// Written as the level it was read from.
impl Serialize for StressLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.spec.serialize(s)
    }
}

/// Read as a [`StressSpec`], then converted; a conversion error keeps serde's key path and line.
impl<'de> Deserialize<'de> for StressLevel {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StressLevel::new(StressSpec::deserialize(d)?).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use aefm_interference::{Rate, Size};

    use super::*;

    fn spec(yaml: &str) -> StressSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn level(yaml: &str) -> StressLevel {
        StressLevel::new(spec(yaml)).unwrap()
    }

    /// Locally (cores given) or in a pod (none), as the two backends place a level.
    fn place(l: &StressLevel, cores: Option<&[usize]>, d: Option<Duration>) -> InterferenceSpec {
        match cores {
            Some(c) => l.beside(c, d),
            None => InterferenceSpec {
                duration: d,
                ..l.in_pod()
            },
        }
    }

    fn args(yaml: &str, cores: Option<&[usize]>) -> String {
        place(&level(yaml), cores, Some(Duration::from_secs(30)))
            .to_args()
            .join(" ")
    }

    #[test]
    fn cpu_locally_is_pinned_to_the_app_cores() {
        let s = place(
            &level("{kind: cpu, load: 80}"),
            Some(&[0, 1]),
            Some(Duration::from_secs(30)),
        );
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
        let s = place(&level("{kind: cpu}"), None, None);
        assert_eq!(s.placement.cpus, None);
        assert_eq!(s.to_args(), ["cpu", "--load", "100"]);
    }

    #[test]
    fn memcap_parses_the_size() {
        let s = place(&level("{kind: memcap, size: 50%}"), None, None);
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
        let s = place(
            &level("{kind: membw, rate: 500MB/s, workers: 1}"),
            None,
            None,
        );
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
        let s = place(
            &level("{kind: net, target: 'srv:7000', bandwidth: 500M, streams: 2}"),
            Some(&[0]),
            None,
        );
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
        let e = |yaml: &str| StressLevel::new(spec(yaml)).unwrap_err().to_string();
        assert_eq!(
            e("{kind: memcap}"),
            "memcap needs `size` (e.g. 1GiB or 50%)"
        );
        assert_eq!(
            e("{kind: net}"),
            "net needs `target` (host:port of an iperf3 server)"
        );
        // On a cluster the ring aims the clients; the bandwidth is still checked.
        let ring = StressLevel::for_cluster(spec("{kind: net, bandwidth: 2G}")).unwrap();
        assert!(matches!(
            ring.in_pod().stressor,
            Stressor::NetClient {
                bandwidth_bps: 2_000_000_000,
                ..
            }
        ));
        assert!(StressLevel::for_cluster(spec("{kind: net, bandwidth: fast}")).is_err());
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
        assert_eq!(
            e("{kind: cpu, load: 150}"),
            "load 150 must be in (0, 100] percent"
        );
        assert_eq!(e("{kind: cpu, workers: 0}"), "workers must be at least 1");
        assert!(e("{kind: cpu, label: 'a/b'}").starts_with("label \"a/b\" must use only"));
    }

    #[test]
    fn pods_per_node_is_a_cluster_level_key_in_the_label() {
        let cluster = |yaml: &str| StressLevel::for_cluster(spec(yaml)).map_err(|e| e.to_string());
        let l = cluster("{kind: cpu, load: 50, pods: 3}").unwrap();
        assert_eq!((l.label(), l.pods()), ("cpu-50-x3", Some(3)));
        // Levels that differ only in their pod count get different names.
        assert_ne!(
            cluster("{kind: memcap, size: 1GiB, pods: 2}")
                .unwrap()
                .label(),
            cluster("{kind: memcap, size: 1GiB}").unwrap().label()
        );
        assert_eq!(cluster("{kind: cpu}").unwrap().pods(), None);
        assert_eq!(
            cluster("{kind: cpu, pods: 0}").unwrap_err(),
            "pods must be at least 1"
        );
        assert!(cluster("{kind: net, pods: 2}")
            .unwrap_err()
            .contains("iperf3 ring runs one pod per node"));
        // Locally there are no pods: said, not ignored.
        let e = StressLevel::new(spec("{kind: cpu, pods: 2}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("for the Kubernetes backend"), "{e}");
    }

    #[test]
    fn a_level_serializes_as_written_and_deserializes_converted() {
        let l: StressLevel = serde_yaml::from_str("{kind: membw, rate: 2GB/s}").unwrap();
        assert_eq!(l.label(), "membw-2GB/s");
        assert_eq!(l.kind(), StressKind::Membw);
        assert_eq!(l.spec().rate.as_deref(), Some("2GB/s"));
        let text = serde_yaml::to_string(&l).unwrap();
        assert!(text.contains("rate: 2GB/s"), "{text}");
        let e = serde_yaml::from_str::<StressLevel>("{kind: membw, rate: fast}").unwrap_err();
        assert!(e.to_string().contains("`rate`: invalid rate"), "{e}");
    }
}
