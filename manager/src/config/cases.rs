//! An explicit case list (`sweep.cases`) instead of the cartesian product: each entry picks one
//! value per dimension, and the list, repeated for every round, is the sweep.
//!
//! The original AEFM let a user replace its case list with any iterable; researchers use that
//! for the points a full product would waste hours on (a few rates per level, a diagonal, the
//! points a reviewer asked for). An entry names its `rate` (any rate > 0) and a level label (or
//! `none`) for each interference dimension it sets; an interference dimension it leaves out is
//! `none` when that is one of its levels, and a custom dimension it leaves out must have one value
//! only. Rounds: an entry may fix its `round`; otherwise it runs in every round, the whole list
//! once per round when `round` is the outermost dimension (the default: drift spreads over the
//! list), else each entry's rounds back to back. The cases then run exactly as a product's do:
//! same names, journal, `--resume`, validity and `on_invalid`.

use std::collections::BTreeMap;

use super::fmt_num;
use super::schema::Config;
use super::typed::{custom_value, Bad, DimKind, DimValue, Dimension, TypedSweep};
use super::ConfigError;

/// One entry of `sweep.cases`: dimension name -> value.
pub type CaseEntry = BTreeMap<String, serde_yaml::Value>;

fn key(i: usize, dim: &str) -> String {
    if dim.is_empty() {
        format!("sweep.cases[{i}]")
    } else {
        format!("sweep.cases[{i}].{dim}")
    }
}

/// The rate dimension's values: every entry's `rate` (> 0), each once, in first-seen order.
pub(super) fn rates(entries: &[CaseEntry]) -> Result<Vec<DimValue>, Bad> {
    if entries.is_empty() {
        return Err(("sweep.cases".into(), "needs at least one case".into()));
    }
    let mut out: Vec<DimValue> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let rate = match e.get("rate") {
            None => return Err((key(i, ""), "needs a `rate` (requests per second)".into())),
            Some(v) => v.as_f64().filter(|r| *r > 0.0 && r.is_finite()),
        };
        let Some(rate) = rate else {
            return Err((
                key(i, "rate"),
                "must be a number > 0 (requests per second)".into(),
            ));
        };
        let v = DimValue::Number(rate);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// The cases of the list as value indices per dimension (in `dims`' order), rounds included.
/// Errors name the entry and the dimension: an unknown dimension, a value that is not one of
/// the dimension's, a dimension that must be given, a case listed twice.
pub(super) fn combos(entries: &[CaseEntry], dims: &[Dimension]) -> Result<Vec<Vec<usize>>, Bad> {
    let round = dims.iter().position(|d| d.kind == DimKind::Round);
    let mut points: Vec<(Vec<usize>, Option<usize>)> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if let Some(unknown) = e.keys().find(|k| !dims.iter().any(|d| &d.name == *k)) {
            let names: Vec<&str> = dims.iter().map(|d| d.name.as_str()).collect();
            return Err((
                key(i, unknown),
                format!("is not a dimension; dimensions are: {}", names.join(", ")),
            ));
        }
        let mut combo = Vec::with_capacity(dims.len());
        let mut fixed_round = None;
        for (k, d) in dims.iter().enumerate() {
            let idx = pick(i, d, e.get(&d.name))?;
            if Some(k) == round && e.contains_key(&d.name) {
                fixed_round = Some(idx);
            }
            combo.push(idx);
        }
        if let Some(j) = points
            .iter()
            .position(|(c, r)| *c == combo && *r == fixed_round)
        {
            return Err((
                key(i, ""),
                format!("is the same case as sweep.cases[{j}]: its results would overwrite those of the other"),
            ));
        }
        points.push((combo, fixed_round));
    }
    Ok(with_rounds(points, round, dims))
}

/// The index of an entry's value in a dimension (`None`: the entry leaves it out).
fn pick(i: usize, d: &Dimension, given: Option<&serde_yaml::Value>) -> Result<usize, Bad> {
    let wanted = match (given, d.kind) {
        (None, DimKind::Round) => return Ok(0),
        (None, DimKind::Interference) => "none".to_string(),
        (None, _) if d.values.len() == 1 => return Ok(0),
        (None, _) => {
            return Err((
                key(i, ""),
                format!("needs `{}`: one of {}", d.name, listing(d)),
            ))
        }
        (Some(serde_yaml::Value::Null), DimKind::Interference) => "none".to_string(),
        (Some(v), DimKind::Rate | DimKind::Round) => match v.as_f64() {
            Some(n) => fmt_num(n),
            None => return Err((key(i, &d.name), "must be a number".into())),
        },
        (Some(v), _) => custom_value(v).display(),
    };
    d.values
        .iter()
        .position(|v| v.display() == wanted)
        .ok_or_else(|| {
            let what = if given.is_none() {
                format!("is left out, so it would be `none`, which is not one of its levels: give one of {}", listing(d))
            } else {
                format!("{wanted:?} is not one of its values: {}", listing(d))
            };
            (key(i, &d.name), what)
        })
}

/// A dimension's values for messages (the first 8).
fn listing(d: &Dimension) -> String {
    let mut shown: Vec<String> = d.values.iter().take(8).map(|v| v.display()).collect();
    if d.values.len() > 8 {
        shown.push(format!("and {} more", d.values.len() - 8));
    }
    shown.join(", ")
}

/// Expands the points over the rounds: the list once per round when `round` is the outermost
/// dimension, else each point's rounds in a row; a point with a fixed round runs once.
fn with_rounds(
    points: Vec<(Vec<usize>, Option<usize>)>,
    round: Option<usize>,
    dims: &[Dimension],
) -> Vec<Vec<usize>> {
    let Some(r) = round else {
        return points.into_iter().map(|(c, _)| c).collect();
    };
    let rounds = dims[r].values.len();
    let at = |c: &[usize], k: usize| {
        let mut c = c.to_vec();
        c[r] = k;
        c
    };
    let mut out = Vec::new();
    if r == 0 {
        for k in 0..rounds {
            for (c, fixed) in &points {
                if fixed.is_none_or(|f| f == k) {
                    out.push(at(c, k));
                }
            }
        }
    } else {
        for (c, fixed) in &points {
            match fixed {
                Some(f) => out.push(at(c, *f)),
                None => out.extend((0..rounds).map(|k| at(c, k))),
            }
        }
    }
    out
}

impl Config {
    /// This config with `entries` as its explicit case list (replacing `sweep.rate`,
    /// `sweep.search` and any `sweep.cases`), checked as `sweep.cases` in a file is: the way a
    /// handler project supplies its own cases (`Experiment::set_cases`). The list is part of the
    /// resolved config, so `--resume` notices when it changed.
    pub fn with_cases(&self, entries: Vec<CaseEntry>) -> Result<Config, ConfigError> {
        let mut cfg = self.clone();
        cfg.sweep.rate = None;
        cfg.sweep.search = None;
        cfg.sweep.cases = Some(entries);
        let typed = TypedSweep::build(&cfg.sweep, cfg.backend).map_err(|(key, message)| {
            ConfigError::Invalid {
                path: "(case list given by a handler)".into(),
                key,
                message,
                line: None,
            }
        })?;
        cfg.typed = std::sync::OnceLock::new();
        let _ = cfg.typed.set(typed);
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;
    use crate::sweep;

    fn parse(sweep: &str) -> Result<Config, String> {
        Config::parse(&format!("name: t\nsweep:\n{sweep}"), Path::new("c.yaml"))
            .map_err(|e| e.to_string())
    }

    const LEVELS: &str = "  interference:\n    cpu: [none, {kind: cpu, label: cpu-50, load: 50}]\n  custom:\n    variant: [a, b]\n";

    fn names(cfg: &Config) -> Vec<String> {
        sweep::expand(cfg).into_iter().map(|c| c.name).collect()
    }

    #[test]
    fn the_list_runs_in_its_order_once_per_round() {
        let cfg = parse(&format!(
            "{LEVELS}  rounds: 2\n  cases:\n    - {{rate: 200, variant: a}}\n    - {{rate: 100, cpu: cpu-50, variant: b}}\n"
        ))
        .unwrap();
        assert_eq!(
            names(&cfg),
            [
                "round-1_cpu-none_variant-a_rate-200",
                "round-1_cpu-cpu-50_variant-b_rate-100",
                "round-2_cpu-none_variant-a_rate-200",
                "round-2_cpu-cpu-50_variant-b_rate-100",
            ]
        );
        assert_eq!(cfg.case_count(), 4);
        assert_eq!(cfg.rates(), [200.0, 100.0]);
        let cases = sweep::expand(&cfg);
        assert_eq!(cases[1].changed, ["cpu", "variant", "rate"]);
    }

    #[test]
    fn rounds_inside_run_back_to_back_and_a_fixed_round_runs_once() {
        let cfg = parse(&format!(
            "{LEVELS}  rounds: 2\n  order: [rate]\n  cases:\n    - {{rate: 200, variant: a}}\n    - {{rate: 100, variant: b, round: 2}}\n"
        ))
        .unwrap();
        assert_eq!(
            names(&cfg),
            [
                "rate-200_round-1_cpu-none_variant-a",
                "rate-200_round-2_cpu-none_variant-a",
                "rate-100_round-2_cpu-none_variant-b",
            ]
        );
    }

    #[test]
    fn bad_entries_are_named_with_what_is_allowed() {
        let with = |cases: &str| parse(&format!("{LEVELS}  cases:\n{cases}")).unwrap_err();
        let e = with("    - {rate: 100, variant: a}\n    - {rate: 100, cpu: cpu-90, variant: a}\n");
        assert!(
            e.contains("sweep.cases[1].cpu")
                && e.contains("\"cpu-90\"")
                && e.contains("none, cpu-50"),
            "{e}"
        );
        assert!(e.contains("line 9"), "{e}");
        let e = with("    - {rate: 100}\n");
        assert!(
            e.contains("sweep.cases[0]") && e.contains("needs `variant`: one of a, b"),
            "{e}"
        );
        let e = with("    - {rate: 100, variant: a, cores: 2}\n");
        assert!(
            e.contains("sweep.cases[0].cores") && e.contains("is not a dimension"),
            "{e}"
        );
        let e = with("    - {variant: a}\n");
        assert!(e.contains("needs a `rate`"), "{e}");
        let e = with("    - {rate: 100, variant: a}\n    - {rate: 100.0, variant: a, cpu: none}\n");
        assert!(
            e.contains("sweep.cases[1]") && e.contains("same case as sweep.cases[0]"),
            "{e}"
        );
        let e = parse(&format!(
            "{LEVELS}  rate: [1]\n  cases:\n    - {{rate: 1, variant: a}}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("sweep.cases") && e.contains("exclude each other"),
            "{e}"
        );
    }

    #[test]
    fn a_handler_replaces_the_product_with_its_list() {
        let cfg = parse(&format!("{LEVELS}  rate: [100, 200, 300]\n")).unwrap();
        assert_eq!(cfg.case_count(), 12);
        let entry = |rate: u64, variant: &str| {
            serde_yaml::from_str(&format!("{{rate: {rate}, variant: {variant}}}")).unwrap()
        };
        let listed = cfg
            .with_cases(vec![entry(300, "b"), entry(100, "a")])
            .unwrap();
        assert_eq!(
            names(&listed),
            [
                "round-1_cpu-none_variant-b_rate-300",
                "round-1_cpu-none_variant-a_rate-100"
            ]
        );
        let e = cfg
            .with_cases(vec![entry(300, "c")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sweep.cases[0].variant") && e.contains("handler"),
            "{e}"
        );
    }
}
