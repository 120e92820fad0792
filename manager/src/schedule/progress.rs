//! What the run loop asks of the schedule besides the next case: which dimensions a case
//! starts (so `start_<dim>` handlers fire only on change) and the progress line with the time
//! left.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Schedule;
use crate::config::Config;
use crate::results::journal::Entry;
use crate::sweep::{self, TestCase};

impl Schedule {
    /// The dimensions a case starts: every one for the first case run and after a failed one;
    /// in a fixed sweep its planned changes unless cases were skipped before it; in a dynamic one
    /// those whose value differs from the last case run.
    pub fn changed_dims(
        &self,
        dims: &[String],
        prev: Option<&(TestCase, bool)>,
        case: &TestCase,
    ) -> Vec<String> {
        match prev {
            Some((p, true)) if self.is_dynamic() => dims
                .iter()
                .filter(|d| p.get(d) != case.get(d))
                .cloned()
                .collect(),
            Some((p, true)) if p.index + 1 == case.index => case.changed.clone(),
            _ => dims.to_vec(),
        }
    }

    /// The progress line: the case and the time left (a fixed sweep's remaining cases, scaled by
    /// how long cases really took; a dynamic one's worst case).
    pub fn progress_message(
        &self,
        cfg: &Config,
        cases: &[TestCase],
        entries: &BTreeMap<String, Entry>,
        case: &TestCase,
        run_start: Instant,
        ran_est: Duration,
    ) -> String {
        let per_case = cases
            .first()
            .map_or(Duration::ZERO, |c| sweep::estimate_case(cfg, c));
        let remaining: Duration = if self.is_dynamic() {
            per_case * self.worst_case_cases().saturating_sub(entries.len()) as u32
        } else {
            cases[case.index.min(cases.len())..]
                .iter()
                .filter(|c| !entries.contains_key(&c.name))
                .map(|c| sweep::estimate_case(cfg, c))
                .sum()
        };
        let scale = if ran_est.is_zero() {
            1.0
        } else {
            run_start.elapsed().as_secs_f64() / ran_est.as_secs_f64()
        };
        let eta = Duration::from_secs(remaining.mul_f64(scale.clamp(0.5, 5.0)).as_secs());
        let word = if self.is_dynamic() { "at most" } else { "ETA" };
        format!(
            "{}  {word} {}",
            case.name,
            crate::config::format_duration(eta)
        )
    }
}
