//! Test-case expansion: the cartesian product of the sweep's dimensions, in the configured order,
//! optionally shuffled with a seed, with the list of dimensions whose value changed per case.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::config::{
    fmt_num, safe_char, Config, CustomValues, InterferenceLevelSpec, NumberRange, StressSpec,
};

/// The value of one dimension in one test case.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DimValue {
    /// Offered rate (req/s), round number, or a numeric custom value.
    Number(f64),
    /// A string custom value.
    Text(String),
    /// An interference level (`None` = no interference for that dimension).
    Interference(Option<StressSpec>),
}

impl DimValue {
    /// The value as written in case names, CSV cells and environment variables.
    pub fn display(&self) -> String {
        match self {
            DimValue::Number(n) => fmt_num(*n),
            DimValue::Text(s) => s.clone(),
            DimValue::Interference(None) => "none".into(),
            DimValue::Interference(Some(s)) => s.label(),
        }
    }
}

/// One sweep dimension with its values.
#[derive(Clone, Debug)]
pub struct Dimension {
    /// Name (`rate`, `round`, an interference or custom dimension).
    pub name: String,
    /// What kind of dimension it is.
    pub kind: DimKind,
    /// Values in configured order.
    pub values: Vec<DimValue>,
}

/// What a dimension controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DimKind {
    /// The offered rate.
    Rate,
    /// The repetition index.
    Round,
    /// An interference dimension.
    Interference,
    /// A user-defined dimension (available to handlers and hooks only).
    Custom,
}

/// An interference level wanted for a case: which dimension asked for it, and the stressor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterferenceLevel {
    /// The sweep dimension that holds this level.
    pub dimension: String,
    /// The level's label (`cpu-90`).
    pub label: String,
    /// The stressor and its intensity.
    pub spec: StressSpec,
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
                    label: s.label(),
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

/// The dimensions of a config, in run order (outermost first).
pub fn dimensions(cfg: &Config) -> Vec<Dimension> {
    let mut all: Vec<Dimension> = Vec::new();
    all.push(Dimension {
        name: "round".into(),
        kind: DimKind::Round,
        values: (1..=cfg.sweep.rounds)
            .map(|r| DimValue::Number(r as f64))
            .collect(),
    });
    for (name, levels) in &cfg.sweep.interference {
        all.push(Dimension {
            name: name.clone(),
            kind: DimKind::Interference,
            values: levels
                .iter()
                .map(|l| match l {
                    InterferenceLevelSpec::None => DimValue::Interference(None),
                    InterferenceLevelSpec::Stress(s) => DimValue::Interference(Some((**s).clone())),
                })
                .collect(),
        });
    }
    for (name, values) in &cfg.sweep.custom {
        let values = match values {
            CustomValues::List(v) => v
                .iter()
                .map(|x| match x {
                    serde_yaml::Value::Number(n) => DimValue::Number(n.as_f64().unwrap_or(0.0)),
                    serde_yaml::Value::String(s) => DimValue::Text(s.clone()),
                    serde_yaml::Value::Bool(b) => DimValue::Text(b.to_string()),
                    other => DimValue::Text(
                        serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    ),
                })
                .collect(),
            CustomValues::Range { min, max, step } => NumberRange::Range {
                min: *min,
                max: *max,
                step: *step,
            }
            .values()
            .unwrap_or_default()
            .into_iter()
            .map(DimValue::Number)
            .collect(),
        };
        all.push(Dimension {
            name: name.clone(),
            kind: DimKind::Custom,
            values,
        });
    }
    all.push(Dimension {
        name: "rate".into(),
        kind: DimKind::Rate,
        values: cfg.rates().into_iter().map(DimValue::Number).collect(),
    });
    // Configured order first, the rest in the default order after them.
    let mut ordered = Vec::new();
    for name in &cfg.sweep.order {
        if let Some(i) = all.iter().position(|d| &d.name == name) {
            ordered.push(all.remove(i));
        }
    }
    ordered.extend(all);
    ordered
}

/// Expands a config into its test cases, in run order.
pub fn expand(cfg: &Config) -> Vec<TestCase> {
    let dims = dimensions(cfg);
    let total: usize = dims.iter().map(|d| d.values.len()).product();
    let mut combos: Vec<Vec<usize>> = Vec::with_capacity(total);
    // Odometer over value indices: the last (innermost) dimension turns fastest.
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
        let name = values
            .iter()
            .map(|(n, v)| format!("{n}-{}", sanitize(&v.display())))
            .collect::<Vec<_>>()
            .join("_");
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
    dimensions(cfg)
        .into_iter()
        .map(|d| (d.name, d.values.len()))
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
