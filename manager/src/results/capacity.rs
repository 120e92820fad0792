//! capacity.csv and plots/capacity.svg: a capacity search's answer per group (interference level
//! with its custom values): the highest offered rate that met the SLO, the bracket around it,
//! how many probes and cases it took, and the capacity relative to the same group without
//! interference. Rebuilt from the journal, like `summary.csv`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::journal::Entry;
use super::summary::cell;
use super::{write_atomic, ResultsError};
use crate::config::{fmt_num, DimValue};
use crate::schedule::{key_without, search, Bracket, Schedule, SearchStatus};

/// The file's name in the experiment directory.
pub const FILE: &str = "capacity.csv";

/// One group's search result.
#[derive(Clone, Debug, PartialEq)]
pub struct Capacity {
    /// The group's dimension values (display form), without rate and round.
    pub group: Vec<(String, String)>,
    /// How the search ended.
    pub status: SearchStatus,
    /// Highest passing and lowest failing rate.
    pub bracket: Bracket,
    /// Rates probed.
    pub probes: usize,
    /// Cases run (rounds of every probe, void ones included).
    pub cases: usize,
    /// Capacity over the capacity of the same group without interference.
    pub relative: Option<f64>,
    /// The judged figure at the capacity: mean over its rounds and its 95 % interval, ms.
    pub at_capacity: Option<crate::results::points::Estimate>,
    /// Why the rounds at the capacity stopped.
    pub rounds_stop: Option<&'static str>,
}

/// Every group's result, in sweep order.
pub fn build(schedule: &Schedule, entries: &BTreeMap<String, Entry>) -> Vec<Capacity> {
    let Some(cfg) = schedule.search() else {
        return Vec::new();
    };
    let drop = ["round", "rate"];
    let mut seen: Vec<Vec<(String, String)>> = Vec::new();
    let mut out: Vec<Capacity> = Vec::new();
    for t in schedule.templates() {
        let group = key_without(&t.labels(), &drop);
        if seen.contains(&group) {
            continue;
        }
        seen.push(group.clone());
        let mine: Vec<&Entry> = entries
            .values()
            .filter(|e| key_without(&e.values, &drop) == group)
            .collect();
        let probes = schedule.probes(&mine);
        let bracket = Bracket::of(&probes);
        let status = match search::next(cfg, &probes) {
            search::Step::Done(s) => s,
            search::Step::Probe(_) => SearchStatus::Incomplete,
        };
        let at = bracket.pass.map(|r| schedule.point(&mine, r));
        out.push(Capacity {
            group,
            status,
            bracket,
            probes: probes.len(),
            cases: mine.len(),
            relative: None,
            at_capacity: at.as_ref().and_then(|p| p.estimate()),
            rounds_stop: at.and_then(|p| p.stop).map(|s| s.as_str()),
        });
    }
    // Relative to the group with every interference dimension at `none` and the same custom
    // values; only when both capacities were found inside the range.
    let interference: Vec<String> = schedule
        .templates()
        .first()
        .map(|t| {
            t.values
                .iter()
                .filter(|(_, v)| matches!(v, DimValue::Interference(_)))
                .map(|(n, _)| n.clone())
                .collect()
        })
        .unwrap_or_default();
    let found = |c: &Capacity| {
        (c.status == SearchStatus::Found)
            .then_some(c.bracket.pass)
            .flatten()
    };
    type Labels = Vec<(String, String)>;
    let bases: Vec<(Labels, Option<f64>)> = out
        .iter()
        .filter(|c| {
            c.group
                .iter()
                .all(|(n, v)| !interference.contains(n) || v == "none")
        })
        .map(|c| (without(&c.group, &interference), found(c)))
        .collect();
    for c in &mut out {
        let key = without(&c.group, &interference);
        let base = bases.iter().find(|(k, _)| *k == key).and_then(|(_, b)| *b);
        c.relative = match (found(c), base) {
            (Some(x), Some(b)) if b > 0.0 => Some(x / b),
            _ => None,
        };
    }
    out
}

fn without(values: &[(String, String)], names: &[String]) -> Vec<(String, String)> {
    values
        .iter()
        .filter(|(n, _)| !names.contains(n))
        .cloned()
        .collect()
}

/// The group's label: `stress=cpu-90 size=big`, or `all cases`.
pub fn label(c: &Capacity) -> String {
    crate::results::points::level_of(&c.group)
}

/// Renders capacity.csv.
pub fn render(schedule: &Schedule, rows: &[Capacity]) -> String {
    let slo = schedule
        .search()
        .map(|s| s.slo.to_string())
        .unwrap_or_default();
    let dims: Vec<String> = rows
        .first()
        .map(|c| c.group.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    let mut s = String::new();
    for d in &dims {
        let _ = write!(s, "{},", cell(d));
    }
    let fig = schedule.figure().name().replace('.', "_");
    let _ = writeln!(s, "slo,status,capacity_rps,pass_rps,fail_rps,relative_to_no_interference,probes,cases,{fig}_ms_at_capacity,{fig}_ms_ci95_low,{fig}_ms_ci95_high,rounds_stop,inversions");
    let num = |v: Option<f64>| v.map(fmt_num).unwrap_or_default();
    let ms = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    for c in rows {
        for (_, v) in &c.group {
            let _ = write!(s, "{},", cell(v));
        }
        let capacity = match c.status {
            SearchStatus::BelowMin | SearchStatus::Unmeasured => None,
            _ => c.bracket.pass,
        };
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            cell(&slo),
            c.status.as_str(),
            num(capacity),
            num(c.bracket.pass),
            num(c.bracket.fail),
            c.relative.map(|r| format!("{r:.4}")).unwrap_or_default(),
            c.probes,
            c.cases,
            ms(c.at_capacity.map(|e| e.mean)),
            ms(c.at_capacity.and_then(|e| e.low()).map(|l| l.max(0.0))),
            ms(c.at_capacity.and_then(|e| e.high())),
            c.rounds_stop.unwrap_or(""),
            c.bracket.inversions,
        );
    }
    s
}

/// Writes capacity.csv and plots/capacity.svg; returns the rows.
pub fn write(
    dir: &Path,
    schedule: &Schedule,
    entries: &BTreeMap<String, Entry>,
) -> Result<Vec<Capacity>, ResultsError> {
    let rows = build(schedule, entries);
    write_atomic(&dir.join(FILE), render(schedule, &rows).as_bytes())?;
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(super::io(&plots))?;
    if let Err(e) = plot(&plots.join("capacity.svg"), schedule, &rows) {
        tracing::warn!(error = %e, "capacity plot not written");
    }
    Ok(rows)
}

/// A bar per group at its capacity, with the bracket (highest pass to lowest fail) as a whisker.
fn plot(path: &PathBuf, schedule: &Schedule, rows: &[Capacity]) -> Result<(), ResultsError> {
    let err = |e: String| ResultsError::Plot {
        path: path.clone(),
        message: e,
    };
    let top = rows
        .iter()
        .filter_map(|c| c.bracket.fail.or(c.bracket.pass))
        .fold(1.0f64, f64::max)
        * 1.1;
    let slo = schedule
        .search()
        .map(|s| s.slo.to_string())
        .unwrap_or_default();
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("capacity at {slo} per level (bar: highest passing rate; whisker: to the lowest failing)"), ("sans-serif", 15))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top)
        .map_err(|e| err(e.to_string()))?;
    let labels: Vec<String> = rows.iter().map(label).collect();
    chart
        .configure_mesh()
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc("offered rate (req/s)")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let color = RGBColor(31, 119, 180);
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, c)| {
            let y = c.bracket.pass?;
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), y),
                ],
                color.mix(0.6).filled(),
            );
            bar.set_margin(0, 0, 20, 20);
            Some(bar)
        }))
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, c)| {
            let (lo, hi) = (c.bracket.pass?, c.bracket.fail?);
            Some(PathElement::new(
                vec![
                    (SegmentValue::CenterOf(i), lo),
                    (SegmentValue::CenterOf(i), hi),
                ],
                BLACK.stroke_width(2),
            ))
        }))
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests;
