//! `aefm plan`: what an experiment will do, before it does it: the test cases in run order, what
//! each starts, and how long it should take.

use std::time::Duration;

use crate::config::Config;
use crate::sweep;

/// `aefm plan`: the cases in run order with estimated durations.
pub fn plan_text(cfg: &Config) -> String {
    use std::fmt::Write as _;
    let cases = sweep::expand(cfg);
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
