//! `aefm plan`: what an experiment will do, before it does it: the test cases in run order, what
//! each starts, and how long it should take.

use std::time::Duration;

use crate::config::Config;
use crate::sweep;

/// `aefm plan`: the cases in run order with estimated durations.
pub fn plan_text(cfg: &Config) -> String {
    use std::fmt::Write as _;
    let cases = sweep::expand(cfg);
    let schedule = crate::schedule::Schedule::new(cfg, &cases);
    if schedule.is_dynamic() {
        return dynamic_text(cfg, &schedule);
    }
    let mut s = String::new();
    let shape: Vec<String> = sweep::dimensions(cfg)
        .iter()
        .map(|d| format!("{} ({})", d.name, d.values.len()))
        .collect();
    let _ = writeln!(
        s,
        "experiment {}: {} test cases = {}",
        cfg.name,
        cases.len(),
        shape.join(" x ")
    );
    let _ = writeln!(
        s,
        "per case: warm-up {} + load {} + cool-down {} + grace {} (+ settle {} when interference changes)",
        crate::config::format_duration(cfg.warmup),
        crate::config::format_duration(cfg.duration),
        crate::config::format_duration(cfg.cooldown),
        crate::config::format_duration(sweep::grace(cfg)),
        crate::config::format_duration(cfg.settle),
    );
    let _ = writeln!(s);
    let mut total = Duration::ZERO;
    for c in &cases {
        let est = sweep::estimate_case(cfg, c);
        total += est;
        let _ = writeln!(
            s,
            "{:>4}  {:<50} ~{:>6}  starts: {}",
            c.index,
            c.name,
            crate::config::format_duration(Duration::from_secs(est.as_secs())),
            c.changed.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\nestimated total: {} (plus app start-up)",
        crate::config::format_duration(Duration::from_secs(total.as_secs()))
    );
    s
}

/// The plan of a sweep decided while running: what each group or point runs at most, and the
/// worst-case time (every search taking its most probes, every point its most rounds).
fn dynamic_text(cfg: &Config, schedule: &crate::schedule::Schedule) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let per_case = schedule.templates().first().map_or(Duration::ZERO, |c| {
        sweep::estimate_case(cfg, c) + cfg.settle
    });
    let rounds = match cfg.sweep.rounds {
        crate::config::Rounds::Fixed(n) => format!("{n} round(s) per point"),
        crate::config::Rounds::Adaptive { min, max, ci } => format!(
            "{min} to {max} rounds per point, until the 95 % interval of {} is within ±{}% of its mean",
            schedule.figure().name(),
            crate::config::fmt_num(ci * 100.0)
        ),
    };
    let _ = writeln!(
        s,
        "experiment {}: decided while running; {rounds}",
        cfg.name
    );
    let groups: Vec<String> = schedule
        .templates()
        .iter()
        .map(|t| crate::results::points::level_of(&t.labels()))
        .fold(Vec::new(), |mut v, l| {
            if !v.contains(&l) {
                v.push(l);
            }
            v
        });
    if let Some(search) = schedule.search() {
        let probes = crate::schedule::search::worst_case_probes(search);
        let _ = writeln!(
            s,
            "capacity search: the highest rate with {} in {}..{} req/s, to within {} (first probe {}): at most {probes} probes per level",
            search.slo,
            crate::config::fmt_num(search.min),
            crate::config::fmt_num(search.max),
            search.precision,
            crate::config::fmt_num(search.first()),
        );
        let _ = writeln!(s, "levels ({}), interleaved:", groups.len());
    } else {
        let _ = writeln!(
            s,
            "points ({}), interleaved by round:",
            schedule.templates().len()
        );
    }
    for g in &groups {
        let _ = writeln!(s, "  {g}");
    }
    let worst = schedule.worst_case_cases();
    let _ = writeln!(
        s,
        "per case: about {} (warm-up, load, cool-down, grace, settle: levels interleave, so interference restarts)",
        crate::config::format_duration(Duration::from_secs(per_case.as_secs()))
    );
    let _ = writeln!(
        s,
        "\nworst case: {worst} test cases, {} (plus app start-up); void rounds (invalid not by the service's doing) are replaced up to validity.attempts - 1 times per point on top",
        crate::config::format_duration(Duration::from_secs((per_case * worst as u32).as_secs()))
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_plan_gives_its_worst_case() {
        let cfg = Config::parse(
            "name: cap\nduration: 2s\nwarmup: 500ms\nsweep:\n  search: {slo: p99 <= 5ms, min: 50, max: 3200, precision: 10}\n  rounds: {min: 2, max: 4, ci: 0.1}\n  interference:\n    stress: [none, {kind: cpu, load: 50}]\n",
            std::path::Path::new("c.yaml"),
        )
        .unwrap();
        let text = plan_text(&cfg);
        let probes = crate::schedule::search::worst_case_probes(cfg.sweep.search.as_ref().unwrap());
        assert!(
            text.contains(&format!("at most {probes} probes per level")),
            "{text}"
        );
        assert!(text.contains("p99 <= 5ms in 50..3200 req/s"), "{text}");
        assert!(
            text.contains(&format!("worst case: {} test cases", 2 * probes * 4)),
            "{text}"
        );
        assert!(text.contains("  stress=cpu-50"), "{text}");
    }
}
