//! The collector checks: where Prometheus or Jaeger is configured, its data for the case must be
//! there (queries answered, scrapes present, traces found), and every custom collection must have
//! succeeded; and, with `max_other_cpu` set, the host must not have been busy with anything else
//! beyond it.

use super::{Reason, ValidityConfig};
use crate::components::CollectSummary;

/// Runs the collector checks on what the collector reported for a case.
pub fn check(c: &CollectSummary, cfg: &ValidityConfig) -> Vec<Reason> {
    let mut out = Vec::new();
    let external: Vec<&String> = c
        .errors
        .iter()
        .filter(|e| {
            ["prometheus", "jaeger", "otlp", "custom:"]
                .iter()
                .any(|p| e.starts_with(p))
        })
        .collect();
    if !external.is_empty() {
        out.push(Reason::new(
            "collection_failed",
            format!(
                "{} configured source(s) failed: {}",
                external.len(),
                external
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ));
    }
    let mut short = Vec::new();
    for (source, comp) in &c.completeness {
        let Some(share) = comp.share() else { continue };
        if source.starts_with("prometheus") && share < cfg.min_scrape_share {
            short.push(format!(
                "{source}: {} of {} points ({:.0} %)",
                comp.present,
                comp.expected,
                share * 100.0
            ));
        }
        if (source == "jaeger" || source == "otlp") && share < cfg.min_trace_coverage {
            out.push(Reason::new(
                "trace_coverage_low",
                format!(
                    "{} traces for {} requests sent: coverage {:.1} %, below {:.1} %",
                    comp.present,
                    comp.expected,
                    share * 100.0,
                    cfg.min_trace_coverage * 100.0
                ),
            ));
        }
    }
    if !short.is_empty() {
        out.push(Reason::new(
            "prometheus_missing_scrapes",
            format!(
                "scrapes missing in the window (at least {:.0} % of the points needed): {}",
                cfg.min_scrape_share * 100.0,
                short.join("; ")
            ),
        ));
    }
    out.extend(host_disturbed(c, cfg));
    out
}

/// `host_disturbed` when processes other than the app, the stressors and AEFM used more CPU over
/// the window than `max_other_cpu` allows: the case measured the host's noise too. With a bound
/// but no figure, `noise_unmeasured`: a bound the user asked for and we could not check must not
/// pass as a quiet host. Nothing without a bound.
fn host_disturbed(c: &CollectSummary, cfg: &ValidityConfig) -> Option<Reason> {
    let bound = cfg.max_other_cpu?;
    let Some(other) = c.other_cpu_cores else {
        let why = c.noise_error.as_deref().unwrap_or("not measured");
        return Some(Reason::new(
            "noise_unmeasured",
            format!(
                "validity.max_other_cpu is {bound}, but the CPU used by others over the \
                 window could not be measured: {why}"
            ),
        ));
    };
    (other > bound).then(|| {
        Reason::new(
            "host_disturbed",
            format!(
                "processes other than the app, the stressors and AEFM used {other:.2} cores \
                 over the window (other_cpu_cores), above {bound} (validity.max_other_cpu)"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aefm_collector::case::Completeness;

    fn summary(comp: Vec<(&str, u64, u64)>, errors: Vec<&str>) -> CollectSummary {
        CollectSummary {
            errors: errors.into_iter().map(String::from).collect(),
            completeness: comp
                .into_iter()
                .map(|(s, present, expected)| (s.to_string(), Completeness { present, expected }))
                .collect(),
            ..Default::default()
        }
    }

    fn codes(c: &CollectSummary, cfg: &ValidityConfig) -> Vec<String> {
        check(c, cfg).into_iter().map(|r| r.code).collect()
    }

    #[test]
    fn complete_sources_pass() {
        let c = summary(
            vec![("prometheus:cpu", 22, 22), ("jaeger", 10, 1000)],
            vec![],
        );
        assert!(codes(&c, &ValidityConfig::default()).is_empty());
    }

    #[test]
    fn missing_scrapes_and_low_coverage_are_named() {
        let c = summary(
            vec![("prometheus:cpu", 10, 22), ("jaeger", 10, 1000)],
            vec![],
        );
        let cfg = ValidityConfig {
            min_trace_coverage: 0.5,
            ..Default::default()
        };
        let r = check(&c, &cfg);
        let codes: Vec<&str> = r.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["trace_coverage_low", "prometheus_missing_scrapes"]);
        assert!(
            r[1].message.contains("prometheus:cpu: 10 of 22"),
            "{}",
            r[1].message
        );
    }

    #[test]
    fn a_failed_query_is_collection_failed_but_host_notes_are_not() {
        let c = summary(
            vec![],
            vec!["prometheus:cpu: connection refused", "host: pid 7 exited"],
        );
        assert_eq!(codes(&c, &ValidityConfig::default()), ["collection_failed"]);
    }

    #[test]
    fn other_cpu_beyond_the_bound_is_host_disturbed() {
        let c = CollectSummary {
            other_cpu_cores: Some(0.75),
            ..summary(vec![], vec![])
        };
        // No bound (the default): measured, never a reason.
        assert!(check(&c, &ValidityConfig::default()).is_empty());
        let bounded = |b| ValidityConfig {
            max_other_cpu: Some(b),
            ..Default::default()
        };
        let r = check(&c, &bounded(0.5));
        let v = super::super::Verdict::from_reasons(r.clone());
        assert!(!v.is_valid());
        assert_eq!(v.codes(), "host_disturbed");
        assert!(
            r[0].message.contains("0.75 cores") && r[0].message.contains("above 0.5"),
            "{}",
            r[0].message
        );
        assert!(check(&c, &bounded(0.75)).is_empty(), "at the bound is fine");
        // A bound without a figure is a reason of its own, with why it is missing.
        let unmeasured = CollectSummary {
            noise_error: Some("noise.host_cpu returned no value".into()),
            ..summary(vec![], vec![])
        };
        let r = check(&unmeasured, &bounded(0.5));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, "noise_unmeasured");
        assert!(
            r[0].message.contains("returned no value"),
            "{}",
            r[0].message
        );
        // Without a bound a missing figure is not judged.
        assert!(check(&unmeasured, &ValidityConfig::default()).is_empty());
    }
}
