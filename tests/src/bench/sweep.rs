//! `loadbench sweep`: runs one or more generator command templates once per rate × repeat,
//! alternating the generators inside each repeat (so they share the machine's state), each
//! pinned to a core and reaped with its own CPU accounting. Prints a row per run, then medians
//! per rate and generator, with ratios against a baseline generator.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Serialize;

use super::measure::{self, Measured};
use super::run;

/// Options of `loadbench sweep`.
#[derive(Clone, Debug, clap::Args)]
pub struct SweepArgs {
    /// `NAME=TEMPLATE`, repeatable; placeholders {url} {rate} {json} (a file for aefm-load's
    /// --json report, read instead of stdout).
    #[arg(long = "cmd", required = true)]
    pub cmds: Vec<String>,
    /// Target URL.
    #[arg(long, default_value = "http://127.0.0.1:18080/index.html")]
    pub url: String,
    /// Rates (comma-separated); a label such as `max` when the templates have no {rate}.
    #[arg(long, value_delimiter = ',', default_value = "5000,20000,50000")]
    pub rates: Vec<String>,
    /// Runs per rate and generator.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Core list for the generator (taskset; empty: no pinning).
    #[arg(long, default_value = "0")]
    pub core: String,
    /// Pause between runs, s.
    #[arg(long, default_value_t = 1.0)]
    pub pause: f64,
    /// Append one JSON object per run to this file.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// Generator the ratios divide by (default: the first --cmd).
    #[arg(long)]
    pub baseline: Option<String>,
}

/// One run of a sweep.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Generator name.
    pub name: String,
    /// Rate label.
    pub rate: String,
    /// Repeat index.
    pub rep: u32,
    /// The command run.
    pub cmd: String,
    /// Exit code.
    pub code: i32,
    /// Generator user CPU, s.
    pub user_s: f64,
    /// Generator system CPU, s.
    pub sys_s: f64,
    /// Peak RSS, KiB.
    pub maxrss_kb: u64,
    /// CPU µs per completed request.
    pub cpu_us_per_request: f64,
    /// What the report says.
    pub measured: Measured,
}

impl Row {
    fn gap_p50_us(&self) -> Option<f64> {
        let m = &self.measured;
        Some(m.corrected_us.get("p50")? - m.uncorrected_us.get("p50")?)
    }
}

/// Runs the sweep; prints rows and the summary.
pub fn run_sweep(a: &SweepArgs) -> anyhow::Result<Vec<Row>> {
    let cmds = parse_cmds(&a.cmds)?;
    println!(
        "{:<10} {:>8} {:>3} {:>11} {:>9} {:>7} {:>7} {:>8} {:>10} {:>10} {:>10} {:>10} {:>7} {:>8}",
        "generator",
        "rate",
        "rep",
        "achieved/s",
        "requests",
        "user s",
        "sys s",
        "us/req",
        "corr p50",
        "corr p99",
        "unc p50",
        "unc p99",
        "errors",
        "rss MiB"
    );
    let mut rows = Vec::new();
    for rate in &a.rates {
        for rep in 0..a.repeat {
            for (name, template) in &cmds {
                let row = run_one(a, name, template, rate, rep)?;
                print_row(&row);
                if let Some(path) = &a.jsonl {
                    append_jsonl(path, &row)?;
                }
                rows.push(row);
                std::thread::sleep(std::time::Duration::from_secs_f64(a.pause));
            }
        }
    }
    let baseline = a.baseline.clone().unwrap_or_else(|| cmds[0].0.clone());
    print_summary(&rows, &a.rates, &cmds, &baseline);
    Ok(rows)
}

/// `NAME=TEMPLATE` pairs.
fn parse_cmds(cmds: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    cmds.iter()
        .map(|c| match c.split_once('=') {
            Some((n, t)) if !n.is_empty() && !n.contains(' ') => Ok((n.to_string(), t.to_string())),
            _ => bail!("--cmd {c:?}: expected NAME=TEMPLATE"),
        })
        .collect()
}

fn run_one(a: &SweepArgs, name: &str, template: &str, rate: &str, rep: u32) -> anyhow::Result<Row> {
    let json = tempfile::NamedTempFile::new()?;
    let vars = [
        ("url", a.url.clone()),
        ("rate", rate.to_string()),
        ("json", json.path().display().to_string()),
    ];
    let cmd = run::expand(template, &vars);
    let argv = run::pinned(run::split_words(&cmd), Some(&a.core));
    let f = run::run(&argv).with_context(|| format!("running {cmd}"))?;
    let m = measure::measure(template.contains("{json}").then(|| json.path()), &f.stdout);
    if f.code != 0 {
        eprintln!(
            "{name}: exit code {}: {}",
            f.code,
            super::co::tail(&f.stderr, 400)
        );
    }
    Ok(Row {
        name: name.to_string(),
        rate: rate.to_string(),
        rep,
        cmd,
        code: f.code,
        user_s: f.user_s,
        sys_s: f.sys_s,
        maxrss_kb: f.maxrss_kb,
        cpu_us_per_request: f.cpu_s() * 1e6 / m.requests.max(1) as f64,
        measured: m,
    })
}

fn append_jsonl(path: &PathBuf, row: &Row) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{}", serde_json::to_string(row)?)?;
    Ok(())
}

/// A latency in µs the way the tables show it.
fn us(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.2}s", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.2}ms", v / 1e3),
        Some(v) => format!("{v:.0}us"),
    }
}

fn print_row(r: &Row) {
    let m = &r.measured;
    println!(
        "{:<10} {:>8} {:>3} {:>11.1} {:>9} {:>7.2} {:>7.2} {:>8.2} {:>10} {:>10} {:>10} {:>10} {:>7} {:>8.1}",
        r.name, r.rate, r.rep, m.achieved, m.requests, r.user_s, r.sys_s, r.cpu_us_per_request,
        us(m.corrected_us.get("p50").copied()), us(m.corrected_us.get("p99").copied()),
        us(m.uncorrected_us.get("p50").copied()), us(m.uncorrected_us.get("p99").copied()),
        m.errors,
        r.maxrss_kb as f64 / 1024.0
    );
}

/// Median of the values present (`None` when none is).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Medians of one generator at one rate.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Medians {
    achieved: Option<f64>,
    cpu_us: Option<f64>,
    gap_us: Option<f64>,
    errors: Option<f64>,
}

fn medians(rows: &[&Row]) -> Medians {
    let of = |f: &dyn Fn(&Row) -> Option<f64>| median(rows.iter().filter_map(|r| f(r)).collect());
    Medians {
        achieved: of(&|r| Some(r.measured.achieved)),
        cpu_us: of(&|r| Some(r.cpu_us_per_request)),
        gap_us: of(&|r| r.gap_p50_us()),
        errors: of(&|r| Some(r.measured.errors as f64)),
    }
}

fn print_summary(rows: &[Row], rates: &[String], cmds: &[(String, String)], baseline: &str) {
    println!("-- medians per rate (us/req = generator user+sys CPU / completed requests; gap = corrected - uncorrected p50; ratios against {baseline})");
    println!(
        "{:<10} {:>8} {:>11} {:>9} {:>8} {:>10} {:>7} {:>10} {:>10}",
        "generator",
        "rate",
        "achieved/s",
        "error %",
        "us/req",
        "gap p50",
        "errors",
        "rps ratio",
        "cpu ratio"
    );
    for rate in rates {
        let of = |name: &str| {
            let sel: Vec<&Row> = rows
                .iter()
                .filter(|r| &r.rate == rate && r.name == name)
                .collect();
            medians(&sel)
        };
        let base = of(baseline);
        for (name, _) in cmds {
            let m = of(name);
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
                _ => "-".into(),
            };
            let err_pct = match (rate.parse::<f64>(), m.achieved) {
                (Ok(r), Some(a)) if r > 0.0 => format!("{:.3}", 100.0 * (a - r) / r),
                _ => "-".into(),
            };
            println!(
                "{:<10} {:>8} {:>11.1} {:>9} {:>8.2} {:>10} {:>7.0} {:>10} {:>10}",
                name,
                rate,
                m.achieved.unwrap_or(0.0),
                err_pct,
                m.cpu_us.unwrap_or(0.0),
                us(m.gap_us),
                m.errors.unwrap_or(0.0),
                ratio(m.achieved, base.achieved),
                ratio(m.cpu_us, base.cpu_us)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
    }

    #[test]
    fn cmds_need_a_name() {
        let ok = parse_cmds(&["wrk2=wrk2 -R{rate} {url}".into()]).unwrap();
        assert_eq!(
            ok,
            vec![("wrk2".to_string(), "wrk2 -R{rate} {url}".to_string())]
        );
        assert!(parse_cmds(&["wrk2 -R{rate} {url}".into()]).is_err());
    }
}
