//! SVG plots (plotters): latency percentiles against offered rate, one line per interference
//! level (and custom value), averaged over rounds; and latency over time per case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::case_files::PER_SECOND;
use super::journal::{Entry, Status};
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

/// Picks one figure out of a case's latency percentiles.
type Pick = fn(&crate::load::Percentiles) -> f64;

/// Writes every plot into `<dir>/plots`; returns the files written.
pub fn write_all(
    dir: &Path,
    entries: &BTreeMap<String, Entry>,
) -> Result<Vec<PathBuf>, ResultsError> {
    let plots = dir.join("plots");
    std::fs::create_dir_all(plots.join("timeline")).map_err(super::io(&plots))?;
    let mut out = Vec::new();
    let pick: [(&str, &str, Pick); 4] = [
        ("p50", "p50", |l| l.p50_us),
        ("p90", "p90", |l| l.p90_us),
        ("p99", "p99", |l| l.p99_us),
        ("p99_9", "p99.9", |l| l.p999_us),
    ];
    for (file, title, f) in pick {
        let series = by_level(entries, f);
        if series.is_empty() {
            continue;
        }
        let p = plots.join(format!("latency_vs_rate_{file}.svg"));
        line_chart(
            &p,
            &format!("{title} latency vs offered rate"),
            "offered rate (req/s)",
            "latency (ms)",
            &series,
        )?;
        out.push(p);
    }
    for e in entries.values().filter(|e| e.status == Status::Ok) {
        let csv = dir.join("cases").join(&e.case).join(PER_SECOND);
        let Ok(text) = std::fs::read_to_string(&csv) else {
            continue;
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
            continue;
        }
        let p = plots.join("timeline").join(format!("{}.svg", e.case));
        line_chart(
            &p,
            &format!("latency over time: {}", e.case),
            "second of window",
            "latency (ms)",
            &series,
        )?;
        out.push(p);
    }
    Ok(out)
}

/// Line label per case: every dimension except rate and round (`no interference` if none).
fn level_label(e: &Entry) -> String {
    let parts: Vec<String> = e
        .values
        .iter()
        .filter(|(n, _)| n != "rate" && n != "round")
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    if parts.is_empty() {
        "all cases".into()
    } else {
        parts.join(" ")
    }
}

/// Mean over rounds of a percentile, per level label, per offered rate (ms).
fn by_level(entries: &BTreeMap<String, Entry>, f: Pick) -> Series {
    let mut acc: BTreeMap<String, BTreeMap<u64, (f64, f64, usize)>> = BTreeMap::new();
    for e in entries.values().filter(|e| e.status == Status::Ok) {
        let Some(l) = &e.latency else { continue };
        let slot = acc
            .entry(level_label(e))
            .or_default()
            .entry((e.offered * 1000.0) as u64)
            .or_insert((e.offered, 0.0, 0));
        slot.1 += f(l) / 1000.0;
        slot.2 += 1;
    }
    acc.into_iter()
        .map(|(k, m)| {
            (
                k,
                m.into_values().map(|(x, s, n)| (x, s / n as f64)).collect(),
            )
        })
        .collect()
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
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
