//! Test-case expansion: the cartesian product of the sweep's dimensions, in the configured order,
//! or the explicit case list (`sweep.cases`), optionally shuffled with a seed, with the list of
//! dimensions whose value changed per case.
//!
//! The dimensions and their values are the config's typed sweep ([`Config::dimensions`]),
//! converted and bounded once when the config was loaded; nothing is recomputed here.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::config::{safe_char, Config, StressLevel};

pub use crate::config::{DimKind, DimValue, Dimension};

/// An interference level wanted for a case: which dimension asked for it, and the stressor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterferenceLevel {
    /// The sweep dimension that holds this level.
    pub dimension: String,
    /// The level's label (`cpu-90`).
    pub label: String,
    /// The stressor and its intensity, converted when the config was loaded; a backend only adds
    /// where it runs ([`StressLevel::beside`], [`StressLevel::in_pod`]).
    pub spec: StressLevel,
}

/// One test case.
#[derive(Clone, Debug, Serialize)]
pub struct TestCase {
    /// Position in run order, from 0.
    pub index: usize,
    /// File-name-safe identifier, stable for a given config: `round-1_stress-cpu-90_rate-200`.
    pub name: String,
    /// Dimension values in `order` (outermost first).
    pub values: Vec<(String, DimValue)>,
    /// Dimensions whose value differs from the previous case in run order (all for the first).
    pub changed: Vec<String>,
}

impl TestCase {
    /// The offered rate in requests per second.
    pub fn rate(&self) -> f64 {
        match self.get("rate") {
            Some(DimValue::Number(n)) => *n,
            _ => 0.0,
        }
    }

    /// The round (repetition), from 1.
    pub fn round(&self) -> usize {
        match self.get("round") {
            Some(DimValue::Number(n)) => *n as usize,
            _ => 1,
        }
    }

    /// The value of a dimension.
    pub fn get(&self, dim: &str) -> Option<&DimValue> {
        self.values.iter().find(|(n, _)| n == dim).map(|(_, v)| v)
    }

    /// The interference levels this case wants running (levels `none` left out).
    pub fn interference(&self) -> Vec<InterferenceLevel> {
        self.values
            .iter()
            .filter_map(|(n, v)| match v {
                DimValue::Interference(Some(s)) => Some(InterferenceLevel {
                    dimension: n.clone(),
                    label: s.label().to_string(),
                    spec: s.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// `dim=value` pairs as display strings, in order.
    pub fn labels(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(n, v)| (n.clone(), v.display()))
            .collect()
    }

    /// `[round: 1, stress: cpu-90, rate: 200]`, for logs.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .labels()
            .into_iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        format!("[{}]", parts.join(", "))
    }
}

/// The dimensions of a config, in run order (outermost first): the typed sweep made when the
/// config was loaded.
pub fn dimensions(cfg: &Config) -> Vec<Dimension> {
    cfg.dimensions().to_vec()
}

/// Expands a config into its test cases, in run order.
pub fn expand(cfg: &Config) -> Vec<TestCase> {
    let dims = cfg.dimensions();
    // At most `config::MAX_CASES`: the config's conversion refused larger sweeps.
    let total = cfg.case_count();
    let mut combos = match cfg.case_list() {
        Some(list) => list.to_vec(),
        None => product(dims, total),
    };
    if let Some(sh) = &cfg.sweep.shuffle {
        let mut rng = rand::rngs::StdRng::seed_from_u64(sh.seed);
        combos.shuffle(&mut rng);
    }
    let mut cases: Vec<TestCase> = Vec::with_capacity(total);
    let mut prev: Option<&Vec<usize>> = None;
    for (index, combo) in combos.iter().enumerate() {
        let values: Vec<(String, DimValue)> = dims
            .iter()
            .zip(combo)
            .map(|(d, &i)| (d.name.clone(), d.values[i].clone()))
            .collect();
        let changed = dims
            .iter()
            .enumerate()
            .filter(|(k, _)| prev.is_none_or(|p| p[*k] != combo[*k]))
            .map(|(_, d)| d.name.clone())
            .collect();
        let name = case_name(&values);
        cases.push(TestCase {
            index,
            name,
            values,
            changed,
        });
        prev = Some(combo);
    }
    cases
}

/// The cartesian product as value indices, odometer order: the last (innermost) dimension
/// turns fastest.
fn product(dims: &[Dimension], total: usize) -> Vec<Vec<usize>> {
    let mut combos: Vec<Vec<usize>> = Vec::with_capacity(total);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..total {
        combos.push(idx.clone());
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d].values.len() {
                break;
            }
            idx[d] = 0;
        }
    }
    combos
}

/// A case's file-name-safe identifier: `dim-value` pairs in order, joined by `_`
/// (`round-1_stress-cpu-90_rate-200`).
pub fn case_name(values: &[(String, DimValue)]) -> String {
    values
        .iter()
        .map(|(n, v)| format!("{n}-{}", sanitize(&v.display())))
        .collect::<Vec<_>>()
        .join("_")
}

/// Replaces every character that is unsafe in a file name with `_`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if safe_char(c) { c } else { '_' })
        .collect()
}

/// Estimated wall time of one case: settle (when interference changes), warm-up, load, cool-down
/// and the collection grace period.
pub fn estimate_case(cfg: &Config, case: &TestCase) -> Duration {
    let interference_changed = case
        .changed
        .iter()
        .any(|c| cfg.sweep.interference.contains_key(c));
    let mut d = cfg.warmup + cfg.duration + cfg.cooldown + grace(cfg);
    if interference_changed {
        d += cfg.settle;
    }
    d
}

/// How long the manager waits after a case for late data.
pub fn grace(cfg: &Config) -> Duration {
    let mut g = cfg.collect.grace;
    if let Some(p) = &cfg.collect.prometheus {
        g = g.max(p.grace);
    }
    if let Some(j) = &cfg.collect.jaeger {
        g = g.max(j.grace);
    }
    g
}

/// Per-dimension value counts, for `aefm plan`.
pub fn shape(cfg: &Config) -> BTreeMap<String, usize> {
    cfg.dimensions()
        .iter()
        .map(|d| (d.name.clone(), d.values.len()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(extra: &str) -> Config {
        let text = format!("name: t\nsweep:\n  rate: [100, 200]\n{extra}");
        Config::parse(&text, Path::new("c.yaml")).unwrap()
    }

    #[test]
    fn product_in_default_order_rate_innermost() {
        let c = cfg("  rounds: 2\n  interference:\n    stress: [none, {kind: cpu, load: 50}]\n");
        let cases = expand(&c);
        assert_eq!(cases.len(), 8);
        assert_eq!(cases[0].name, "round-1_stress-none_rate-100");
        assert_eq!(cases[1].name, "round-1_stress-none_rate-200");
        assert_eq!(cases[2].name, "round-1_stress-cpu-50_rate-100");
        assert_eq!(cases[7].name, "round-2_stress-cpu-50_rate-200");
        assert_eq!(cases[0].changed, vec!["round", "stress", "rate"]);
        assert_eq!(cases[1].changed, vec!["rate"]);
        assert_eq!(cases[2].changed, vec!["stress", "rate"]);
        assert_eq!(cases[2].interference().len(), 1);
        assert!(cases[0].interference().is_empty());
        let names: std::collections::HashSet<_> = cases.iter().map(|c| &c.name).collect();
        assert_eq!(names.len(), 8);
    }

    #[test]
    fn cases_carry_the_levels_converted_with_the_config() {
        let c = cfg("  interference:\n    stress: [none, {kind: membw, rate: 2GB/s}]\n");
        let cases = expand(&c);
        assert_eq!(cases.len(), c.case_count());
        let stored = match &c.dimensions()[1].values[1] {
            DimValue::Interference(Some(l)) => l,
            other => panic!("{other:?}"),
        };
        let wanted = cases[2].interference();
        assert_eq!(wanted.len(), 1);
        assert_eq!(&wanted[0].spec, stored);
        assert_eq!(wanted[0].label, "membw-2GB/s");
        assert_eq!(
            wanted[0].spec.in_pod().stressor,
            aefm_interference::Stressor::MemBw {
                rate: aefm_interference::Rate::GBps(2.0),
                workers: 0
            }
        );
    }

    #[test]
    fn configured_order_and_custom_dims() {
        let c = cfg("  custom:\n    size: [small, big]\n  order: [rate]\n");
        let cases = expand(&c);
        assert_eq!(cases.len(), 4);
        assert_eq!(cases[0].name, "rate-100_round-1_size-small");
        assert_eq!(cases[1].name, "rate-100_round-1_size-big");
        assert_eq!(cases[2].rate(), 200.0);
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let c = cfg("  rounds: 3\n  shuffle: {seed: 7}\n");
        let a: Vec<String> = expand(&c).into_iter().map(|c| c.name).collect();
        let b: Vec<String> = expand(&c).into_iter().map(|c| c.name).collect();
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        let plain = cfg("  rounds: 3\n");
        let mut p: Vec<String> = expand(&plain).into_iter().map(|c| c.name).collect();
        p.sort();
        assert_eq!(sorted, p);
    }

    #[test]
    fn names_are_file_safe() {
        let c = cfg("  custom:\n    path: ['a/b|c=d']\n");
        for case in expand(&c) {
            assert!(case.name.chars().all(safe_char), "{}", case.name);
        }
    }
}
