//! Validity: whether a case's figures can be believed.
//!
//! `status` says whether a case *ran* (`ok` / `failed`); validity says whether what it measured is
//! a measurement. A case is `invalid` when any check finds a reason, and every reason is kept:
//! a short machine-readable `code` and a human sentence. The checks and their default thresholds
//! are documented in `docs/results.md` ("Validity"); each threshold can be changed under the
//! config's `validity:` key.

pub mod collect;
pub mod load;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Valid or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    /// Every check passed.
    #[default]
    Valid,
    /// At least one check failed; the reasons say which.
    Invalid,
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Validity::Valid => "valid",
            Validity::Invalid => "invalid",
        })
    }
}

/// Why a case is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Machine-readable code, such as `rate_below_offered` (the list is in `docs/results.md`).
    pub code: String,
    /// A sentence for people, with the figures that failed the check.
    pub message: String,
}

impl Reason {
    /// A reason with its code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The verdict of one case: valid, or invalid with every reason found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Valid or invalid.
    pub validity: Validity,
    /// Every failed check (empty when valid).
    pub reasons: Vec<Reason>,
}

impl Verdict {
    /// The verdict of a list of reasons: valid when empty.
    pub fn from_reasons(reasons: Vec<Reason>) -> Self {
        Self {
            validity: if reasons.is_empty() {
                Validity::Valid
            } else {
                Validity::Invalid
            },
            reasons,
        }
    }

    /// True when valid.
    pub fn is_valid(&self) -> bool {
        self.validity == Validity::Valid
    }

    /// The reasons' codes joined with `;` (the `invalid_reasons` column of `summary.csv`).
    pub fn codes(&self) -> String {
        self.reasons
            .iter()
            .map(|r| r.code.as_str())
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The reasons' sentences joined with `; `.
    pub fn sentences(&self) -> String {
        self.reasons
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What to do with an invalid case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// Record it as invalid and go on (the default).
    #[default]
    Keep,
    /// Run it again, up to `validity.attempts` times in all, keeping every attempt's files.
    Rerun,
    /// Stop the experiment (exit code 3), keeping every result so far.
    Abort,
}

/// Thresholds of the validity checks (config key `validity:`). Every default is documented beside
/// its field and in `docs/results.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidityConfig {
    /// Largest shortfall of the achieved rate below the offered rate, as a fraction. Default `0.02`.
    pub rate_tolerance: f64,
    /// Fewest successful responses in the window. Default `1`.
    pub min_responses: u64,
    /// Largest share of errors (transport errors, timeouts, non-2xx) among the requests of the
    /// window that have an outcome (requests still in flight at the end are not counted).
    /// Default `0.01`.
    pub max_error_share: f64,
    /// Largest p99 of the generator's own send lag: above it the generator measured itself, not
    /// the server. Default `5ms`.
    #[serde(with = "crate::config::serde_dur")]
    pub max_send_lag_p99: Duration,
    /// Largest share of the run's wall time any generator thread may spend on a CPU: above it
    /// the generator was saturated. Default `0.9`.
    pub max_generator_busy: f64,
    /// cpu stressors: largest distance of the achieved from the target load, in percentage
    /// points. Default `3`.
    pub cpu_tolerance_points: f64,
    /// memcap stressors: largest relative distance of the resident size from the target.
    /// Default `0.02` (plus `memcap_slack_mib`).
    pub memcap_tolerance: f64,
    /// memcap stressors: absolute slack added to `memcap_tolerance`, MiB. Default `16`.
    pub memcap_slack_mib: f64,
    /// membw and net stressors with a numeric target: largest relative shortfall. Default `0.10`.
    pub bandwidth_tolerance: f64,
    /// Largest gap between a stressor's reports inside the window (they come once a second).
    /// Default `3s`.
    #[serde(with = "crate::config::serde_dur")]
    pub max_report_gap: Duration,
    /// Prometheus: smallest share of the expected samples present per series. Default `0.9`.
    pub min_scrape_share: f64,
    /// Traces: smallest trace coverage (traces found / requests sent), when a trace source is
    /// configured. Default `0.0` (sampling makes any coverage legitimate; raise it to demand one).
    pub min_trace_coverage: f64,
    /// With `on_invalid: rerun`, attempts per case in all (the first included). Default `3`.
    pub attempts: usize,
    /// Distributed load: largest spread of the generators' start instants (latest minus
    /// earliest); beyond it the merged figures describe a rate the service never got at once.
    /// Default `100ms`.
    #[serde(with = "crate::config::serde_dur")]
    pub max_load_start_spread: Duration,
    /// Largest mean CPU, in cores, that processes other than the app, the stressors and AEFM
    /// may use over the window (`other_cpu_cores`, measured by the local backend's host
    /// sampler; not measured on Kubernetes): above it the host was disturbed. Default none:
    /// measured and reported, never a reason (a shared machine is always a little busy).
    pub max_other_cpu: Option<f64>,
}

impl ValidityConfig {
    /// The stressor thresholds, for [`aefm_interference::verify::check`].
    pub fn tolerances(&self) -> aefm_interference::verify::Tolerances {
        aefm_interference::verify::Tolerances {
            cpu_points: self.cpu_tolerance_points,
            memcap_rel: self.memcap_tolerance,
            memcap_slack_bytes: self.memcap_slack_mib * 1048576.0,
            bandwidth_rel: self.bandwidth_tolerance,
            max_gap: self.max_report_gap,
        }
    }

    /// Checks the values serde cannot: the failing key under `validity.` and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(b) = self.max_other_cpu.filter(|b| !(*b >= 0.0 && b.is_finite())) {
            return Err((
                "validity.max_other_cpu",
                format!("{b} is not a number of cores: expected 0 or more (e.g. 0.5)"),
            ));
        }
        Ok(())
    }
}

impl Default for ValidityConfig {
    fn default() -> Self {
        Self {
            rate_tolerance: 0.02,
            min_responses: 1,
            max_error_share: 0.01,
            max_send_lag_p99: Duration::from_millis(5),
            max_generator_busy: 0.9,
            cpu_tolerance_points: 3.0,
            memcap_tolerance: 0.02,
            memcap_slack_mib: 16.0,
            bandwidth_tolerance: 0.10,
            max_report_gap: Duration::from_secs(3),
            min_scrape_share: 0.9,
            min_trace_coverage: 0.0,
            attempts: 3,
            max_load_start_spread: Duration::from_millis(100),
            max_other_cpu: None,
        }
    }
}

/// The verdict of a case that ran: the findings its handlers recorded (app, interference, your
/// own), the load checks on its report, and the collector checks. A case without a load report
/// measured nothing and is invalid (`no_load_report`).
pub fn judge(ctx: &crate::context::Context) -> Verdict {
    let cfg = &ctx.config.validity;
    let mut reasons = ctx.findings.clone();
    match &ctx.report {
        Some(r) => reasons.extend(load::check(&load::LoadFigures::of(r), cfg)),
        None => reasons.push(Reason::new(
            "no_load_report",
            "no load report: the case sent no load, so it measured nothing",
        )),
    }
    if let Some(c) = &ctx.collected {
        reasons.extend(collect::check(c, cfg));
    }
    Verdict::from_reasons(reasons)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(validity: &str) -> Result<Config, String> {
        let text = format!("name: t\nsweep: {{rate: [10]}}\n{validity}");
        Config::parse(&text, Path::new("c.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn max_other_cpu_is_unset_by_default_and_must_not_be_negative() {
        assert_eq!(parse("").unwrap().validity.max_other_cpu, None);
        let cfg = parse("validity:\n  max_other_cpu: 0.5\n").unwrap();
        assert_eq!(cfg.validity.max_other_cpu, Some(0.5));
        let e = parse("validity:\n  max_other_cpu: -1\n").unwrap_err();
        assert!(
            e.contains("validity.max_other_cpu") && e.contains("-1"),
            "{e}"
        );
    }
}
