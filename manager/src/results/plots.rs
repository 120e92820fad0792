//! SVG plots (plotters): latency percentiles against offered rate, one line per interference
//! level (and custom value) through the means over valid rounds with their 95 % confidence
//! intervals (the figures of `points.csv`), invalid cases hollow; and latency over time per case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::case_files::PER_SECOND;
use super::journal::{Entry, Status};
use super::points::{self, Estimate};
use super::ResultsError;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// Writes every plot into `<dir>/plots`; returns the files written.
pub fn write_all(
    dir: &Path,
    entries: &BTreeMap<String, Entry>,
) -> Result<Vec<PathBuf>, ResultsError> {
    let plots = dir.join("plots");
    std::fs::create_dir_all(plots.join("timeline")).map_err(super::io(&plots))?;
    let mut out = Vec::new();
    let points = points::build(entries);
    let titles = ["p50", "p90", "p99", "p99.9"];
    for (k, (stem, _)) in points::FIGURES.iter().enumerate() {
        let series = rate_series(&points, entries, k);
        if series.is_empty() {
            continue;
        }
        let p = plots.join(format!("latency_vs_rate_{stem}.svg"));
        rate_chart(&p, titles[k], &series)?;
        out.push(p);
    }
    for e in entries.values().filter(|e| e.status == Status::Ok) {
        if let Some(p) = timeline(dir, &plots, e)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// The latency-over-time plot of one case, from its per-second CSV (none if it has none).
fn timeline(dir: &Path, plots: &Path, e: &Entry) -> Result<Option<PathBuf>, ResultsError> {
    let csv = dir.join("cases").join(&e.case).join(PER_SECOND);
    let Ok(text) = std::fs::read_to_string(&csv) else {
        return Ok(None);
    };
    let mut series: Series = BTreeMap::new();
    for line in text.lines().skip(1) {
        let c: Vec<f64> = line
            .split(',')
            .map(|x| x.parse().unwrap_or(f64::NAN))
            .collect();
        if c.len() < 7 || c[1] == 0.0 {
            continue;
        }
        series.entry("p50".into()).or_default().push((c[0], c[3]));
        series.entry("p99".into()).or_default().push((c[0], c[5]));
        series.entry("max".into()).or_default().push((c[0], c[6]));
    }
    if series.is_empty() {
        return Ok(None);
    }
    let p = plots.join("timeline").join(format!("{}.svg", e.case));
    let invalid = if points::counts(e) { "" } else { " (invalid)" };
    line_chart(
        &p,
        &format!("latency over time: {}{invalid}", e.case),
        "second of window",
        "latency (ms)",
        &series,
    )?;
    Ok(Some(p))
}

/// One line of a latency-vs-rate plot: a level's means with their intervals, and the values of
/// its invalid cases (drawn hollow, outside the line).
#[derive(Default)]
struct RateSeries {
    /// (rate, estimate over the valid rounds), rates ascending.
    means: Vec<(f64, Estimate)>,
    /// (rate, value) of each ok case whose verdict is invalid.
    invalid: Vec<(f64, f64)>,
}

/// The series of figure `k` of [`points::FIGURES`], per level, in the points' order.
fn rate_series(
    points: &[points::Point],
    entries: &BTreeMap<String, Entry>,
    k: usize,
) -> Vec<(String, RateSeries)> {
    let mut out: Vec<(String, RateSeries)> = Vec::new();
    let slot = |out: &mut Vec<(String, RateSeries)>, level: String| -> usize {
        if let Some(i) = out.iter().position(|(l, _)| *l == level) {
            return i;
        }
        out.push((level, RateSeries::default()));
        out.len() - 1
    };
    for p in points {
        let i = slot(&mut out, p.level());
        if let Some(e) = p.latency[k] {
            out[i].1.means.push((p.offered, e));
        }
    }
    let pick = points::FIGURES[k].1;
    for e in entries.values() {
        let Some(l) = e.latency.as_ref() else {
            continue;
        };
        if e.status != Status::Ok || points::counts(e) {
            continue;
        }
        let i = slot(&mut out, points::level_of(&e.values));
        out[i].1.invalid.push((e.offered, pick(l) / 1000.0));
    }
    out
}

/// Axis ranges of a latency-vs-rate plot. The y range covers every mean, interval and invalid
/// value up to 3x the largest mean: an interval over 2 rounds (t = 12.7) or an overloaded app's
/// invalid case would otherwise flatten every line; what lies above is drawn up to the top edge.
fn rate_ranges(series: &[(String, RateSeries)]) -> ((f64, f64), f64) {
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    let (mut means, mut highest) = (0.0f64, 0.0f64);
    for (_, s) in series {
        for (x, e) in &s.means {
            (x0, x1) = (x0.min(*x), x1.max(*x));
            means = means.max(e.mean);
            highest = highest.max(e.high().unwrap_or(e.mean));
        }
        for (x, y) in &s.invalid {
            (x0, x1) = (x0.min(*x), x1.max(*x));
            highest = highest.max(*y);
        }
    }
    if x0 >= x1 {
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    }
    let top = if means > 0.0 {
        highest.min(means * 3.0).max(means)
    } else {
        highest
    };
    ((x0, x1), if top > 0.0 { top * 1.1 } else { 1.0 })
}

/// Latency against offered rate: per level a line through the means over valid rounds, a 95 %
/// interval bar at each mean, and a hollow marker per invalid case. Levels are nudged apart
/// along x so bars at the same rate do not hide each other.
fn rate_chart(
    path: &Path,
    figure: &str,
    series: &[(String, RateSeries)],
) -> Result<(), ResultsError> {
    let err = |e: String| ResultsError::Plot {
        path: path.to_path_buf(),
        message: e,
    };
    let ((x0, x1), y1) = rate_ranges(series);
    let pad = (x1 - x0) * 0.06;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{figure} latency vs offered rate (mean over valid rounds, 95 % CI)"),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - pad)..(x1 + pad), 0.0..y1)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("offered rate (req/s)")
        .y_desc(format!("{figure} latency (ms)"))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let k = series.len() as f64;
    for (i, (name, s)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let dx = (i as f64 - (k - 1.0) / 2.0) * (x1 - x0) * 0.012;
        let means: Vec<(f64, f64)> = s.means.iter().map(|(x, e)| (x + dx, e.mean)).collect();
        chart
            .draw_series(LineSeries::new(means.clone(), color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        let cap = (x1 - x0) * 0.008;
        let bars = s.means.iter().filter_map(|(x, e)| {
            let (lo, hi, x) = (e.low()?.max(0.0), e.high()?, x + dx);
            let mut path = vec![(x - cap, lo), (x + cap, lo), (x, lo), (x, hi.min(y1))];
            if hi <= y1 {
                path.extend([(x - cap, hi), (x + cap, hi)]);
            } // else the bar runs into the top edge, without a cap: it goes on
            Some(PathElement::new(path, color.stroke_width(2)))
        });
        chart.draw_series(bars).map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(means.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| err(e.to_string()))?;
        let hollow = s
            .invalid
            .iter()
            .map(|(x, y)| Circle::new((x + dx, y.min(y1)), 5, color.stroke_width(2)));
        chart.draw_series(hollow).map_err(|e| err(e.to_string()))?;
    }
    if series.iter().any(|(_, s)| !s.invalid.is_empty()) {
        chart
            .draw_series(std::iter::once(Circle::new((x0 - pad, 0.0), 0, WHITE)))
            .map_err(|e| err(e.to_string()))?
            .label("hollow: invalid case (not in the means)")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, BLACK.stroke_width(2)));
    }
    finish(&mut chart, &root).map_err(err)
}

/// A chart with f64 axes on an SVG file.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws the legend (upper left) and writes the SVG file.
fn finish<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    root: &DrawingArea<SVGBackend<'b>, Shift>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &Series,
) -> Result<(), ResultsError> {
    let err = |e: String| ResultsError::Plot {
        path: path.to_path_buf(),
        message: e,
    };
    let pts = series.values().flatten();
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for (x, y) in pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        if y.is_finite() {
            y1 = y1.max(*y);
        }
    }
    if x0 >= x1 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    let pad = (x1 - x0) * 0.05;
    let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - pad)..(x1 + pad), 0.0..y1)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, (name, data)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let data: Vec<(f64, f64)> = data
            .iter()
            .copied()
            .filter(|(_, y)| y.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(data.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(|e| err(e.to_string()))?;
    }
    finish(&mut chart, &root).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validity::{Reason, Verdict};

    fn entry(index: usize, stress: &str, rate: f64, round: usize, p99_ms: f64) -> Entry {
        Entry::measured(index, stress, rate, round, p99_ms, rate)
    }

    #[test]
    fn rate_plot_draws_intervals_and_hollow_invalid_cases() {
        let mut list = Vec::new();
        for round in 1..=3 {
            for (i, rate) in [200.0, 400.0, 600.0].into_iter().enumerate() {
                let k = round as f64 * 0.1;
                let base = list.len();
                list.push(entry(base, "none", rate, round, 1.0 + i as f64 * 0.5 + k));
                list.push(entry(base + 1, "cpu-40", rate, round, 2.0 + i as f64 + k));
            }
        }
        // An invalid case far above the rest: hollow, on the top edge, not in the means.
        let mut bad = entry(99, "cpu-40", 600.0, 4, 500.0);
        bad.verdict = Some(Verdict::from_reasons(vec![Reason::new("x", "y")]));
        list.push(bad);
        let j: BTreeMap<String, Entry> = list.into_iter().map(|e| (e.case.clone(), e)).collect();
        let d = tempfile::tempdir().unwrap();
        let files = write_all(d.path(), &j).unwrap();
        assert_eq!(files.len(), 4, "{files:?}");
        let svg = std::fs::read_to_string(d.path().join("plots/latency_vs_rate_p99.svg")).unwrap();
        // Per level: a line, its legend line and a bar per rate (all 2 px), a filled marker per
        // mean; the invalid case is one hollow marker.
        let red = |tail: &str| svg.matches(&format!("stroke=\"#D62728\" {tail}")).count();
        assert_eq!(red("stroke-width=\"2\" points"), 5, "{svg}");
        assert_eq!(
            svg.matches("fill=\"#D62728\" stroke=\"none\"").count(),
            3,
            "{svg}"
        );
        assert_eq!(
            svg.matches("fill=\"none\" stroke=\"#D62728\"").count(),
            1,
            "{svg}"
        );
        assert!(svg.contains("hollow: invalid case"), "{svg}");
        // The y axis stops at 3x the largest interval end, not at the invalid 500 ms.
        let series = rate_series(&points::build(&j), &j, 2);
        let (_, top) = rate_ranges(&series);
        assert!(top < 20.0, "{top}");
        assert_eq!(series[1].1.means[2].1.n, 3);
    }
}
