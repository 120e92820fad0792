//! The typed sweep: the one conversion of `sweep:` into dimensions with their values, made when
//! the config is parsed and used by `validate`, `plan`, `run` and the backends.
//!
//! The conversion is bounded: every dimension's length and the number of cases are computed
//! arithmetically from the config (a `{min, max, step}` range is counted, not expanded) before
//! any value is produced, and a sweep over [`MAX_CASES`] is refused naming its dimensions. Its
//! errors are the sweep's validation errors.

use serde::Serialize;

use super::range::{CustomValues, NumberRange};
use super::schema::{Backend, Config, SweepConfig};
use super::search::SearchConfig;
use super::stress::{InterferenceLevelSpec, StressLevel};
use super::{fmt_num, safe_char};

/// Most test cases a sweep may have. A case takes seconds at least, so 100,000 cases is more
/// than a day of load; a larger sweep is almost always a typo (`step: 1` for `step: 100`).
pub const MAX_CASES: u128 = 100_000;

/// The value of one dimension in one test case.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DimValue {
    /// Offered rate (req/s), round number, or a numeric custom value.
    Number(f64),
    /// A string custom value.
    Text(String),
    /// An interference level (`None` = no interference for that dimension).
    Interference(Option<StressLevel>),
}

impl DimValue {
    /// The value as written in case names, CSV cells and environment variables.
    pub fn display(&self) -> String {
        match self {
            DimValue::Number(n) => fmt_num(*n),
            DimValue::Text(s) => s.clone(),
            DimValue::Interference(None) => "none".into(),
            DimValue::Interference(Some(s)) => s.label().to_string(),
        }
    }
}

/// One sweep dimension with its values.
#[derive(Clone, Debug, PartialEq)]
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

/// The converted sweep: its dimensions in run order (outermost first) and the number of cases.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypedSweep {
    /// Dimensions from outermost (changes least often) to innermost.
    pub dimensions: Vec<Dimension>,
    /// The number of test cases (the product of the dimensions' lengths, or the explicit
    /// list's length with its rounds), at most [`MAX_CASES`].
    pub cases: usize,
    /// An explicit case list (`sweep.cases`): each case as the index of its value in every
    /// dimension, in run order. `None`: the cartesian product.
    pub list: Option<Vec<Vec<usize>>>,
}

/// A sweep error: the dotted key and what is wrong with it.
pub(crate) type Bad = (String, String);

fn bad(key: impl Into<String>, message: impl Into<String>) -> Bad {
    (key.into(), message.into())
}

/// A dimension before its values exist: enough to count it and to produce them.
struct Shape<'a> {
    name: String,
    key: String,
    kind: DimKind,
    len: u128,
    /// `1000000000000 rates`, for the bound's message.
    counted: String,
    source: Source<'a>,
}

enum Source<'a> {
    Range(NumberRange),
    Values(Vec<DimValue>),
    Custom(&'a [serde_yaml::Value]),
}

impl TypedSweep {
    /// Converts the `sweep:` section: checks every dimension, counts the cases, refuses a sweep
    /// over [`MAX_CASES`], then produces the values in run order.
    /// The backend decides what a level needs (a net level on a cluster has no `target`).
    pub(crate) fn build(sweep: &SweepConfig, backend: Backend) -> Result<TypedSweep, Bad> {
        let shapes = shapes(sweep, backend)?;
        check_names(sweep, &shapes)?;
        // An explicit list is bounded by its own length, not by the product of its dimensions.
        let cases = match &sweep.cases {
            None => check_bound(&shapes)?,
            Some(_) => 0,
        };
        let mut all: Vec<Dimension> = shapes.into_iter().map(materialise).collect();
        // Configured order first, the rest in the default order after them.
        let mut dimensions = Vec::with_capacity(all.len());
        for name in &sweep.order {
            if let Some(i) = all.iter().position(|d| &d.name == name) {
                dimensions.push(all.remove(i));
            }
        }
        dimensions.extend(all);
        let Some(entries) = &sweep.cases else {
            return Ok(TypedSweep {
                dimensions,
                cases,
                list: None,
            });
        };
        let list = super::cases::combos(entries, &dimensions)?;
        if list.len() as u128 > MAX_CASES {
            return Err(bad(
                "sweep.cases",
                format!(
                    "{} cases with their rounds, more than the limit of {MAX_CASES}",
                    list.len()
                ),
            ));
        }
        Ok(TypedSweep {
            dimensions,
            cases: list.len(),
            list: Some(list),
        })
    }
}

/// Every dimension in the default order (round, interference, custom, rate), counted.
fn shapes(sweep: &SweepConfig, backend: Backend) -> Result<Vec<Shape<'_>>, Bad> {
    let convert = match backend {
        Backend::Local => StressLevel::new,
        Backend::Kubernetes => StressLevel::for_cluster,
    };
    let mut out = Vec::new();
    sweep.rounds.check().map_err(|m| bad("sweep.rounds", m))?;
    // Adaptive rounds are numbered as they run: the typed sweep holds round 1, the template
    // every later round copies (`crate::schedule`).
    let rounds = if sweep.rounds.is_adaptive() {
        1
    } else {
        sweep.rounds.max()
    };
    out.push(Shape {
        name: "round".into(),
        key: "sweep.rounds".into(),
        kind: DimKind::Round,
        len: rounds as u128,
        counted: format!("{rounds} rounds"),
        source: Source::Values((1..=rounds).map(|r| DimValue::Number(r as f64)).collect()),
    });
    for (name, levels) in &sweep.interference {
        let key = format!("sweep.interference.{name}");
        if levels.is_empty() {
            return Err(bad(key, "needs at least one level (`none` is a level)"));
        }
        let mut values = Vec::with_capacity(levels.len());
        let mut labels: Vec<String> = Vec::with_capacity(levels.len());
        for (i, l) in levels.iter().enumerate() {
            let level = match l {
                InterferenceLevelSpec::None => None,
                InterferenceLevelSpec::Stress(s) => Some(
                    convert((**s).clone())
                        .map_err(|e| bad(format!("{key}[{i}]"), e.to_string()))?,
                ),
            };
            // Labels name the cases and their directories: two equal ones would overwrite
            // each other's results.
            let label = level
                .as_ref()
                .map_or("none".to_string(), |l| l.label().to_string());
            if let Some(j) = labels.iter().position(|x| *x == label) {
                return Err(bad(
                    format!("{key}[{i}]"),
                    format!("label {label:?} is also the label of {key}[{j}]: cases would share names and overwrite each other's results (give one an explicit `label`)"),
                ));
            }
            labels.push(label);
            values.push(DimValue::Interference(level));
        }
        out.push(Shape {
            name: name.clone(),
            counted: format!("{} levels", values.len()),
            key,
            kind: DimKind::Interference,
            len: values.len() as u128,
            source: Source::Values(values),
        });
    }
    for (name, values) in &sweep.custom {
        let key = format!("sweep.custom.{name}");
        let len = values.len().map_err(|m| bad(&key, m))?;
        if len == 0 {
            return Err(bad(
                key,
                "needs at least one value (a list or {min, max, step} with step > 0)",
            ));
        }
        let source = match values {
            CustomValues::List(v) => Source::Custom(v),
            CustomValues::Range { min, max, step } => Source::Range(NumberRange::Range {
                min: *min,
                max: *max,
                step: *step,
            }),
        };
        out.push(Shape {
            name: name.clone(),
            counted: format!("{} gives {len} values", values.describe()),
            key,
            kind: DimKind::Custom,
            len,
            source,
        });
    }
    if sweep.cases.is_some() && (sweep.rate.is_some() || sweep.search.is_some()) {
        let other = if sweep.rate.is_some() {
            "rate"
        } else {
            "search"
        };
        return Err(bad(
            "sweep.cases",
            format!("and sweep.{other} exclude each other: each case gives its own rate (drop sweep.{other})"),
        ));
    }
    out.push(match (&sweep.rate, &sweep.search) {
        (None, None) if sweep.cases.is_some() => {
            let values = super::cases::rates(sweep.cases.as_deref().unwrap_or_default())?;
            Shape {
                name: "rate".into(),
                key: "sweep.cases".into(),
                kind: DimKind::Rate,
                len: values.len() as u128,
                counted: format!("{} rates", values.len()),
                source: Source::Values(values),
            }
        }
        (Some(rate), None) => rate_shape(rate)?,
        (None, Some(search)) => search_shape(search)?,
        (None, None) => return Err(bad("sweep.rate", "is required: a list of offered rates, {min, max, step}, or a `sweep.search` for the highest rate that meets an SLO")),
        (Some(_), Some(_)) => return Err(bad("sweep.search", "and sweep.rate exclude each other: the search chooses the rates (drop sweep.rate)")),
    });
    Ok(out)
}

/// The rate dimension of a search: one value, the first probe, which the schedule replaces by
/// each probe's rate.
fn search_shape(search: &SearchConfig) -> Result<Shape<'static>, Bad> {
    search
        .check()
        .map_err(|(k, m)| bad(format!("sweep.search.{k}"), m))?;
    Ok(Shape {
        name: "rate".into(),
        key: "sweep.search".into(),
        kind: DimKind::Rate,
        len: 1,
        counted: "a search".into(),
        source: Source::Values(vec![DimValue::Number(search.first())]),
    })
}

/// The rate dimension: every rate > 0 (checked on the bounds of a range, not its values).
fn rate_shape(rate: &NumberRange) -> Result<Shape<'static>, Bad> {
    const KEY: &str = "sweep.rate";
    let positive = "needs at least one rate, all > 0 requests per second";
    let len = rate.len().map_err(|m| bad(KEY, m))?;
    let ok = match rate {
        NumberRange::List(v) => !v.is_empty() && v.iter().all(|r| *r > 0.0 && r.is_finite()),
        NumberRange::Range { min, .. } => *min > 0.0,
    };
    if !ok {
        return Err(bad(KEY, positive));
    }
    if let NumberRange::List(v) = rate {
        // Two equal rates make two cases of one name: the second would overwrite the first.
        if let Some((i, r)) = v.iter().enumerate().find(|(i, r)| v[..*i].contains(r)) {
            return Err(bad(
                format!("{KEY}[{i}]"),
                format!("{} is listed twice: cases would share names and overwrite each other's results (use sweep.rounds to repeat)", fmt_num(*r)),
            ));
        }
    }
    Ok(Shape {
        name: "rate".into(),
        key: KEY.into(),
        kind: DimKind::Rate,
        len,
        counted: format!("{} gives {len} rates", rate.describe()),
        source: Source::Range(rate.clone()),
    })
}

/// Dimension names become file names and must be unique; `order` must name dimensions.
fn check_names(sweep: &SweepConfig, shapes: &[Shape<'_>]) -> Result<(), Bad> {
    let names: Vec<&str> = shapes.iter().map(|s| s.name.as_str()).collect();
    for s in shapes {
        if !s.name.chars().all(safe_char) {
            return Err(bad(
                &s.key,
                "dimension names use only letters, digits, '.', '_' and '-'",
            ));
        }
        // The first user dimension that shares its name is the one to rename.
        if s.kind != DimKind::Round && names.iter().filter(|n| **n == s.name).count() > 1 {
            return Err(bad(
                &s.key,
                format!(
                    "dimension name {:?} is used twice (`round` and `rate` are built in)",
                    s.name
                ),
            ));
        }
    }
    for (i, o) in sweep.order.iter().enumerate() {
        if !names.contains(&o.as_str()) {
            return Err(bad(
                "sweep.order",
                format!(
                    "entry {i} {o:?} is not a dimension; dimensions are: {}",
                    names.join(", ")
                ),
            ));
        }
        if sweep.order[..i].contains(o) {
            return Err(bad("sweep.order", format!("{o:?} is listed twice")));
        }
    }
    Ok(())
}

/// The number of cases, computed from the lengths alone; over [`MAX_CASES`] is an error naming
/// the dimensions (largest first) and the count.
fn check_bound(shapes: &[Shape<'_>]) -> Result<usize, Bad> {
    let total = shapes
        .iter()
        .try_fold(1u128, |acc, s| acc.checked_mul(s.len));
    if let Some(n) = total.filter(|n| *n <= MAX_CASES) {
        return Ok(n as usize);
    }
    let mut big: Vec<&Shape<'_>> = shapes.iter().filter(|s| s.len > 1).collect();
    big.sort_by_key(|s| std::cmp::Reverse(s.len));
    let named: Vec<String> = big
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == 0 {
                s.counted.clone()
            } else {
                format!("{}: {}", s.key, s.counted)
            }
        })
        .collect();
    let count = total.map_or_else(|| "more than 2^128".to_string(), |n| n.to_string());
    Err(bad(
        &big[0].key,
        format!(
            "{}; the sweep would have {count} cases, more than the limit of {MAX_CASES} (use fewer values or a larger step)",
            named.join(", ")
        ),
    ))
}

/// Produces a dimension's values; only called once the sweep is known to be within the bound.
fn materialise(s: Shape<'_>) -> Dimension {
    let values = match s.source {
        Source::Values(v) => v,
        Source::Range(r) => r
            .values()
            .expect("a range within the case bound expands")
            .into_iter()
            .map(DimValue::Number)
            .collect(),
        Source::Custom(v) => v.iter().map(custom_value).collect(),
    };
    Dimension {
        name: s.name,
        kind: s.kind,
        values,
    }
}

/// A scalar of a custom dimension as a value: numbers stay numbers, the rest is text.
pub(super) fn custom_value(x: &serde_yaml::Value) -> DimValue {
    match x {
        serde_yaml::Value::Number(n) => DimValue::Number(n.as_f64().unwrap_or(0.0)),
        serde_yaml::Value::String(s) => DimValue::Text(s.clone()),
        serde_yaml::Value::Bool(b) => DimValue::Text(b.to_string()),
        other => DimValue::Text(
            serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
    }
}

impl Config {
    /// The sweep's dimensions with their values, in run order (outermost first), as converted
    /// when the config was parsed.
    pub fn dimensions(&self) -> &[Dimension] {
        &self.typed_sweep().dimensions
    }

    /// The number of test cases, computed when the config was parsed (at most [`MAX_CASES`]).
    pub fn case_count(&self) -> usize {
        self.typed_sweep().cases
    }

    /// The explicit case list (`sweep.cases`) as value indices per dimension in run order;
    /// `None` for the cartesian product.
    pub fn case_list(&self) -> Option<&[Vec<usize>]> {
        self.typed_sweep().list.as_deref()
    }

    /// The rates of the sweep, in configured order.
    pub fn rates(&self) -> Vec<f64> {
        self.dimensions()
            .iter()
            .find(|d| d.kind == DimKind::Rate)
            .map(|d| {
                d.values
                    .iter()
                    .filter_map(|v| match v {
                        DimValue::Number(n) => Some(*n),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The converted sweep. A config made by [`Config::parse`] or [`Config::load`] has it; one
    /// deserialized by other means gets it converted on first use (empty if the sweep is invalid:
    /// such a config was never validated).
    fn typed_sweep(&self) -> &TypedSweep {
        self.typed
            .get_or_init(|| TypedSweep::build(&self.sweep, self.backend).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;

    fn parse(sweep: &str) -> Result<Config, String> {
        Config::parse(&format!("name: t\nsweep:\n{sweep}"), Path::new("c.yaml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_rate_listed_twice_is_refused() {
        let e = parse("  rate: [100, 200, 100]\n").unwrap_err();
        assert!(
            e.contains("sweep.rate[2]") && e.contains("100 is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn equal_interference_labels_in_one_dimension_are_refused() {
        let e = parse("  rate: [1]\n  interference:\n    cpu: [none, {kind: cpu, label: x, load: 50}, {kind: cpu, label: x, load: 90}]\n").unwrap_err();
        assert!(e.contains("sweep.interference.cpu[2]"), "{e}");
        assert!(
            e.contains("also the label of sweep.interference.cpu[1]"),
            "{e}"
        );
    }

    #[test]
    fn dimensions_are_converted_once_in_run_order() {
        let c = parse("  rate: {min: 100, max: 300, step: 100}\n  rounds: 2\n  interference:\n    stress: [none, {kind: cpu, load: 50}]\n  custom:\n    size: [s, 2]\n  order: [rate]\n").unwrap();
        let names: Vec<&str> = c.dimensions().iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["rate", "round", "stress", "size"]);
        assert_eq!(c.case_count(), 3 * 2 * 2 * 2);
        assert_eq!(c.rates(), vec![100.0, 200.0, 300.0]);
        match &c.dimensions()[2].values[1] {
            DimValue::Interference(Some(l)) => {
                assert_eq!(l.label(), "cpu-50");
                assert!(matches!(
                    l.in_pod().stressor,
                    aefm_interference::Stressor::Cpu { load_pct, .. } if load_pct == 50.0
                ));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.dimensions()[3].values[1], DimValue::Number(2.0));
        // A clone carries the converted sweep; it is not converted again.
        assert_eq!(c.clone().dimensions(), c.dimensions());
    }

    #[test]
    fn a_huge_range_is_refused_quickly_naming_the_dimension_and_count() {
        let started = Instant::now();
        let e = parse("  rate: {min: 1, max: 1000000000000, step: 1}\n").unwrap_err();
        // Generous: counting is microseconds; expanding 10^12 rates would take hours.
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        assert_eq!(
            e,
            "c.yaml: sweep.rate: {min: 1, max: 1000000000000, step: 1} gives 1000000000000 rates; \
             the sweep would have 1000000000000 cases, more than the limit of 100000 (use fewer \
             values or a larger step) at line 3"
        );
    }

    #[test]
    fn the_bound_counts_the_product_and_names_every_large_dimension() {
        let e = parse("  rate: {min: 10, max: 1000, step: 10}\n  rounds: 30\n  custom:\n    x: {min: 0, max: 49, step: 1}\n").unwrap_err();
        assert!(e.contains("c.yaml: sweep.rate: {min: 10, max: 1000, step: 10} gives 100 rates, sweep.custom.x: {min: 0, max: 49, step: 1} gives 50 values, sweep.rounds: 30 rounds; the sweep would have 150000 cases, more than the limit of 100000"), "{e}");
        // Exactly at the limit is accepted.
        let c = parse("  rate: {min: 10, max: 1000, step: 10}\n  rounds: 20\n  custom:\n    x: {min: 0, max: 49, step: 1}\n").unwrap();
        assert_eq!(c.case_count(), 100_000);
        // Products beyond u128 do not wrap.
        let e = parse("  rate: {min: 1, max: 1e300, step: 1}\n  custom:\n    x: {min: 0, max: 1e300, step: 1e-300}\n").unwrap_err();
        assert!(e.contains("more than 2^128 cases"), "{e}");
    }

    #[test]
    fn invalid_ranges_and_rates_are_named() {
        let e = parse("  rate: {min: 1, max: 10, step: 0}\n").unwrap_err();
        assert!(
            e.contains("sweep.rate: step 0 must be > 0 at line 3"),
            "{e}"
        );
        let e = parse("  rate: {min: 10, max: 1, step: 1}\n").unwrap_err();
        assert!(e.contains("sweep.rate: max 1 is below min 10"), "{e}");
        let e = parse("  rate: {min: 0, max: 10, step: 5}\n").unwrap_err();
        assert!(
            e.contains("sweep.rate: needs at least one rate, all > 0"),
            "{e}"
        );
        let e = parse("  rate: []\n").unwrap_err();
        assert!(e.contains("sweep.rate: needs at least one rate"), "{e}");
        let e = parse("  rate: [1]\n  custom:\n    x: {min: 0, max: 1, step: -1}\n").unwrap_err();
        assert!(
            e.contains("sweep.custom.x: step -1 must be > 0 at line 5"),
            "{e}"
        );
        let e = parse("  rate: [1]\n  custom:\n    x: []\n").unwrap_err();
        assert!(
            e.contains("sweep.custom.x: needs at least one value"),
            "{e}"
        );
    }
}
