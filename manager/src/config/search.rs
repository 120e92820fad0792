//! The two adaptive parts of a sweep: `sweep.search` (find the highest offered rate that meets an
//! SLO, per interference level) and `sweep.rounds: {min, max, ci}` (repeat a point until its
//! confidence interval is narrow enough).
//!
//! Both are read here as written and checked once ([`SearchConfig::check`], [`Rounds::check`]);
//! what they decide at run time is `crate::schedule`'s job. The deserializers are written by hand,
//! as in `range`, so a wrong form keeps its key path and line and names the accepted forms.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration::{format_duration, parse_duration};
use super::fmt_num;
use crate::load::Percentiles;

/// How many times each point runs: a fixed count, or adaptively until confident.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rounds {
    /// Exactly this many rounds (`rounds: 3`).
    Fixed(usize),
    /// At least `min` rounds, then more until the 95 % confidence interval of the judged
    /// percentile is narrower than `ci` (its half-width relative to the mean), or `max` rounds.
    Adaptive {
        /// Fewest rounds (at least 2 for an interval to exist, unless `max` is 1).
        min: usize,
        /// Most rounds.
        max: usize,
        /// Target half-width of the 95 % interval relative to the mean (`0.05`: ±5 %).
        ci: f64,
    },
}

impl Default for Rounds {
    fn default() -> Self {
        Rounds::Fixed(1)
    }
}

impl Rounds {
    /// The most rounds a point can take.
    pub fn max(&self) -> usize {
        match self {
            Rounds::Fixed(n) => *n,
            Rounds::Adaptive { max, .. } => *max,
        }
    }

    /// The fewest rounds a point takes.
    pub fn min(&self) -> usize {
        match self {
            Rounds::Fixed(n) => *n,
            Rounds::Adaptive { min, .. } => *min,
        }
    }

    /// Whether the number of rounds is decided while running.
    pub fn is_adaptive(&self) -> bool {
        matches!(self, Rounds::Adaptive { .. })
    }

    /// Checks the bounds; the message names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Rounds::Fixed(0) => Err("must be at least 1".into()),
            Rounds::Fixed(_) => Ok(()),
            Rounds::Adaptive { min, max, ci } => {
                if min == 0 || max < min {
                    Err(format!("needs 1 <= min <= max (min {min}, max {max})"))
                } else if !(ci > 0.0 && ci < 1.0) {
                    Err(format!("ci is the target half-width of the 95 % interval relative to the mean, between 0 and 1 exclusive (0.05 = ±5 %), not {ci}"))
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl Serialize for Rounds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct A {
            min: usize,
            max: usize,
            ci: f64,
        }
        match *self {
            Rounds::Fixed(n) => s.serialize_u64(n as u64),
            Rounds::Adaptive { min, max, ci } => A { min, max, ci }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Rounds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rounds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of rounds or {min, max, ci}")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Rounds, E> {
                Ok(Rounds::Fixed(n as usize))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Rounds, E> {
                usize::try_from(n)
                    .map(Rounds::Fixed)
                    .map_err(|_| E::custom(format!("{n} rounds: must be at least 1")))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Rounds, M::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct A {
                    min: usize,
                    max: usize,
                    ci: f64,
                }
                let a = A::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Rounds::Adaptive {
                    min: a.min,
                    max: a.max,
                    ci: a.ci,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Which latency figure an SLO bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// Mean.
    Mean,
    /// Maximum.
    Max,
}

impl Figure {
    const ALL: [(&'static str, Figure); 6] = [
        ("p50", Figure::P50),
        ("p90", Figure::P90),
        ("p99", Figure::P99),
        ("p99.9", Figure::P999),
        ("mean", Figure::Mean),
        ("max", Figure::Max),
    ];

    /// The name as written (`p99.9`).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    /// This figure of a case's corrected latency, µs.
    pub fn of(self, l: &Percentiles) -> f64 {
        match self {
            Figure::P50 => l.p50_us,
            Figure::P90 => l.p90_us,
            Figure::P99 => l.p99_us,
            Figure::P999 => l.p999_us,
            Figure::Mean => l.mean_us,
            Figure::Max => l.max_us,
        }
    }
}

/// A latency objective: `p99 <= 5ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slo {
    /// The bounded figure.
    pub figure: Figure,
    /// The bound (inclusive).
    pub bound: Duration,
}

impl Slo {
    /// Parses `p99 <= 5ms` (also `p99<=5ms`, `<` taken as `<=`).
    pub fn parse(s: &str) -> Result<Slo, String> {
        let form = "write it as `<figure> <= <duration>`, e.g. `p99 <= 5ms`; figures: p50, p90, p99, p99.9, mean, max";
        let (name, bound) = s
            .split_once("<=")
            .or_else(|| s.split_once('<'))
            .ok_or_else(|| format!("{s:?}: {form}"))?;
        let name = name.trim().to_ascii_lowercase();
        let figure = Figure::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| format!("{s:?}: unknown figure {name:?}; {form}"))?;
        let bound = parse_duration(bound).map_err(|e| format!("{s:?}: {e}; {form}"))?;
        if bound.is_zero() {
            return Err(format!("{s:?}: the bound must be above 0"));
        }
        Ok(Slo { figure, bound })
    }

    /// The bound in µs, the unit of [`Percentiles`].
    pub fn bound_us(&self) -> f64 {
        self.bound.as_secs_f64() * 1e6
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} <= {}",
            self.figure.name(),
            format_duration(self.bound)
        )
    }
}

impl Serialize for Slo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Slo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Slo::parse(&s).map_err(de::Error::custom)
    }
}

/// How close the search brackets the capacity: the gap between the highest passing and the
/// lowest failing rate at which it stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Precision {
    /// In requests per second (`precision: 10`).
    Absolute(f64),
    /// Relative to the highest passing rate (`precision: 5%`).
    Relative(f64),
}

impl Precision {
    /// The largest acceptable gap (req/s) when `pass` is the highest passing rate.
    pub fn gap(&self, pass: f64) -> f64 {
        match *self {
            Precision::Absolute(a) => a,
            Precision::Relative(r) => r * pass,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Precision::Absolute(a) => f.write_str(&fmt_num(a)),
            Precision::Relative(r) => write!(f, "{}%", fmt_num(r * 100.0)),
        }
    }
}

impl Serialize for Precision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Precision::Absolute(a) => s.serialize_f64(a),
            Precision::Relative(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Precision;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("requests per second (10) or a share of the capacity (5%)")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Precision, E> {
                Ok(Precision::Absolute(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Precision, E> {
                Ok(Precision::Absolute(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Precision, E> {
                Ok(Precision::Absolute(v as f64))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Precision, E> {
                let bad = || {
                    E::custom(format!(
                        "{s:?}: write requests per second (10) or a share of the capacity (5%)"
                    ))
                };
                match s.trim().strip_suffix('%') {
                    Some(p) => p
                        .trim()
                        .parse::<f64>()
                        .map(|p| Precision::Relative(p / 100.0))
                        .map_err(|_| bad()),
                    None => s
                        .trim()
                        .parse::<f64>()
                        .map(Precision::Absolute)
                        .map_err(|_| bad()),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `sweep.search`: for each interference level (and custom value), the highest offered rate that
/// meets the SLO, by exponential probing from `start` then bisection, each probe a test case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// The objective a probe must meet (besides being valid): `p99 <= 5ms`.
    pub slo: Slo,
    /// Lowest rate probed, req/s: a level failing here has a capacity below it.
    pub min: f64,
    /// Highest rate probed, req/s: a level passing here has a capacity of at least it.
    pub max: f64,
    /// First rate probed; doubled while probes pass. Default: `min`.
    #[serde(default)]
    pub start: Option<f64>,
    /// Stop when the highest passing and the lowest failing rate are this close: req/s, or a
    /// share of the passing rate (`5%`).
    pub precision: Precision,
}

impl SearchConfig {
    /// The first probe's rate.
    pub fn first(&self) -> f64 {
        self.start.unwrap_or(self.min)
    }

    /// Checks the range and precision; returns the offending sub-key and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.min > 0.0 && self.min.is_finite()) {
            return Err(("min", format!("must be a rate above 0, not {}", self.min)));
        }
        if !(self.max >= self.min && self.max.is_finite()) {
            return Err((
                "max",
                format!(
                    "must be at least min ({}), not {}",
                    fmt_num(self.min),
                    self.max
                ),
            ));
        }
        if let Some(s) = self.start {
            if !(s >= self.min && s <= self.max) {
                return Err((
                    "start",
                    format!(
                        "must be within min..max ({}..{}), not {s}",
                        fmt_num(self.min),
                        fmt_num(self.max)
                    ),
                ));
            }
        }
        let ok = match self.precision {
            Precision::Absolute(a) => a >= 1.0 && a.is_finite(),
            Precision::Relative(r) => r > 0.0 && r < 1.0,
        };
        if !ok {
            return Err((
                "precision",
                format!(
                    "{}: use at least 1 req/s, or a share between 0% and 100% exclusive",
                    self.precision
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_forms() {
        let s = Slo::parse("p99 <= 5ms").unwrap();
        assert_eq!((s.figure, s.bound), (Figure::P99, Duration::from_millis(5)));
        assert_eq!(Slo::parse("P99.9<2.5ms").unwrap().figure, Figure::P999);
        assert_eq!(s.to_string(), "p99 <= 5ms");
        assert!(Slo::parse("p98 <= 5ms")
            .unwrap_err()
            .contains("unknown figure \"p98\""));
        assert!(Slo::parse("p99 = 5ms")
            .unwrap_err()
            .contains("e.g. `p99 <= 5ms`"));
        assert!(Slo::parse("p99 <= 0ms").is_err());
    }

    #[test]
    fn rounds_forms() {
        let r: Rounds = serde_yaml::from_str("3").unwrap();
        assert_eq!(r, Rounds::Fixed(3));
        let r: Rounds = serde_yaml::from_str("{min: 2, max: 6, ci: 0.1}").unwrap();
        assert_eq!(
            r,
            Rounds::Adaptive {
                min: 2,
                max: 6,
                ci: 0.1
            }
        );
        assert!(r.check().is_ok());
        assert!(Rounds::Adaptive {
            min: 3,
            max: 2,
            ci: 0.1
        }
        .check()
        .is_err());
        assert!(Rounds::Adaptive {
            min: 2,
            max: 3,
            ci: 5.0
        }
        .check()
        .unwrap_err()
        .contains("0.05 = ±5 %"));
        assert!(serde_yaml::from_str::<Rounds>("{min: 2, max: 6, cl: 0.1}")
            .unwrap_err()
            .to_string()
            .contains("unknown field `cl`"));
        let back = serde_yaml::to_string(&r).unwrap();
        assert_eq!(serde_yaml::from_str::<Rounds>(&back).unwrap(), r);
    }

    #[test]
    fn precision_forms_and_checks() {
        let s: SearchConfig =
            serde_yaml::from_str("{slo: p99 <= 5ms, min: 50, max: 800, precision: 5%}").unwrap();
        assert_eq!(s.precision, Precision::Relative(0.05));
        assert_eq!(s.first(), 50.0);
        assert!(s.check().is_ok());
        let s: SearchConfig =
            serde_yaml::from_str("{slo: p99 <= 5ms, min: 50, max: 40, precision: 10}").unwrap();
        assert_eq!(s.check().unwrap_err().0, "max");
        let s: SearchConfig =
            serde_yaml::from_str("{slo: p99 <= 5ms, min: 50, max: 400, precision: 0.5}").unwrap();
        assert_eq!(s.check().unwrap_err().0, "precision");
        let e = serde_yaml::from_str::<SearchConfig>(
            "{slo: p99 <= 5ms, min: 50, max: 400, precision: lots}",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("\"lots\": write requests per second"),
            "{e}"
        );
    }
}
