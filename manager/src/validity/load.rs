//! The load checks: did the generator offer the rate it was asked to, did the app answer, and did
//! the generator measure the server rather than itself.

use super::{Reason, ValidityConfig};
use crate::load::LoadReport;

/// What the load checks need of a case's load report, gathered in one place so the checks are
/// pure arithmetic (and testable without a run).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadFigures {
    /// Offered rate, req/s.
    pub offered: f64,
    /// Achieved rate over the window, req/s.
    pub achieved: f64,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// Responses completed in the window (any status).
    pub responses: u64,
    /// Errors in the window: transport errors, timeouts and non-2xx/3xx responses.
    pub errors: u64,
    /// Of `errors`, those that were responses with an error status (they are also in `responses`).
    pub status_errors: u64,
    /// Requests sent and still unanswered when the run ended.
    pub outstanding: u64,
    /// p99 of the generator's own send lag, µs, when known.
    pub send_lag_p99_us: Option<u64>,
    /// Number of send-lag samples.
    pub send_lag_count: u64,
    /// The busiest generator thread's CPU share of the run (0..1), when known.
    pub generator_busy: f64,
    /// Distributed load: latest generator start minus earliest, seconds.
    pub start_spread_s: Option<f64>,
    /// Distributed load: generators whose report is missing (`who: why`).
    pub failed_generators: Vec<String>,
}

impl LoadFigures {
    /// The figures of a manager load report (the generator's own report supplies the status
    /// split, outstanding requests and the send lag).
    pub fn of(r: &LoadReport) -> Self {
        let raw = r.raw.as_ref();
        let status_errors = raw
            .map(|x| x.summary.errors.status)
            .unwrap_or(0)
            .min(r.errors);
        Self {
            offered: r.offered,
            achieved: r.achieved,
            window_s: r.window_s,
            responses: r.requests,
            errors: r.errors,
            status_errors,
            outstanding: raw.map(|x| x.summary.outstanding).unwrap_or(0),
            send_lag_p99_us: raw.map(|x| x.send_lag.stats.p99),
            send_lag_count: raw.map(|x| x.send_lag.stats.count).unwrap_or(0),
            generator_busy: raw.map(|x| x.summary.generator_busy).unwrap_or(0.0),
            start_spread_s: r.start_spread_s,
            failed_generators: r.failed_generators.clone(),
        }
    }

    /// Successful responses: responses that were not error statuses.
    pub fn successes(&self) -> u64 {
        self.responses.saturating_sub(self.status_errors)
    }

    /// Errors over every request of the window that has an outcome: responses and failed
    /// attempts that got no response. A request still outstanding at the end is not an error
    /// by itself: one sent in the window's last milliseconds is normally in flight (1 of 50 at
    /// 50 req/s over 1 s would be 2 %). One outstanding for longer than the timeout is already a
    /// timeout in `errors`; a server that stopped answering shows in the rate check.
    pub fn error_share(&self) -> f64 {
        let attempts = self.responses + (self.errors - self.status_errors);
        if attempts == 0 {
            0.0
        } else {
            self.errors as f64 / attempts as f64
        }
    }
}

/// Requests at the window's edges that the rate check forgives (a request sent just before the
/// end whose answer lands after it, one scheduled just before the start).
const RATE_EDGE_REQUESTS: f64 = 2.0;

/// Runs the load checks; every failed check is one reason.
pub fn check(f: &LoadFigures, cfg: &ValidityConfig) -> Vec<Reason> {
    let mut out = Vec::new();
    if f.successes() < cfg.min_responses.max(1) {
        out.push(Reason::new(
            "no_responses",
            format!(
                "{} successful responses in the window (at least {} needed): {} responses, {} errors; the app measured nothing",
                f.successes(),
                cfg.min_responses.max(1),
                f.responses,
                f.errors
            ),
        ));
    }
    let share = f.error_share();
    if share > cfg.max_error_share {
        out.push(Reason::new(
            "error_share",
            format!(
                "{:.2} % of requests failed ({} errors{}), more than {:.2} %",
                share * 100.0,
                f.errors,
                if f.outstanding > 0 {
                    format!(
                        "; {} more still in flight at the end, not counted",
                        f.outstanding
                    )
                } else {
                    String::new()
                },
                cfg.max_error_share * 100.0
            ),
        ));
    }
    if f.offered > 0.0 {
        let dev = f.achieved / f.offered - 1.0;
        // A short window holds few requests: one or two at its edges are not a rate error.
        let expected = f.offered * f.window_s;
        let off = (f.achieved - f.offered).abs() * f.window_s;
        let allowed = (cfg.rate_tolerance * expected).max(RATE_EDGE_REQUESTS) + 1e-6;
        if dev.abs() > cfg.rate_tolerance && off > allowed {
            let (code, word) = if dev < 0.0 {
                ("rate_below_offered", "below")
            } else {
                ("rate_above_offered", "above")
            };
            out.push(Reason::new(
                code,
                format!(
                    "achieved {:.1} req/s, {:.1} % {word} the offered {} req/s (tolerance {:.1} %)",
                    f.achieved,
                    dev.abs() * 100.0,
                    crate::config::fmt_num(f.offered),
                    cfg.rate_tolerance * 100.0
                ),
            ));
        }
    }
    if let Some(r) = overloaded(f, cfg) {
        out.push(r);
    }
    out.extend(distributed(f, cfg));
    out
}

/// Distributed load: every generator reported (a missing one's requests are in no figure), and
/// they started together (else the merged figures describe a rate never offered at once).
fn distributed(f: &LoadFigures, cfg: &ValidityConfig) -> Vec<Reason> {
    let mut out = Vec::new();
    if !f.failed_generators.is_empty() {
        out.push(Reason::new(
            "load_pod_failed",
            format!(
                "{} load generator(s) gave no report, so the figures hold only the others' requests: {}",
                f.failed_generators.len(),
                f.failed_generators.join("; ")
            ),
        ));
    }
    let bound = cfg.max_load_start_spread.as_secs_f64();
    if let Some(spread) = f.start_spread_s.filter(|s| *s > bound) {
        out.push(Reason::new(
            "load_start_spread",
            format!(
                "the load generators started {:.3} s apart (bound {:.3} s): the merged rate was never offered at once",
                spread, bound
            ),
        ));
    }
    out
}

/// The generator measured itself rather than the server: it sent late (send-lag p99 over its
/// bound) or one of its threads was busy nearly all the time (a saturated thread delays every
/// send and every read, which the send lag alone does not see when all connections are behind).
fn overloaded(f: &LoadFigures, cfg: &ValidityConfig) -> Option<Reason> {
    let bound = cfg.max_send_lag_p99.as_micros() as u64;
    let mut why = Vec::new();
    if let Some(p99) = f.send_lag_p99_us.filter(|_| f.send_lag_count > 0) {
        if p99 > bound {
            why.push(format!(
                "its own send lag p99 is {:.2} ms (bound {:.2} ms)",
                p99 as f64 / 1000.0,
                bound as f64 / 1000.0
            ));
        }
    }
    if f.generator_busy > cfg.max_generator_busy {
        why.push(format!(
            "its busiest thread was on a CPU {:.0} % of the time (bound {:.0} %)",
            f.generator_busy * 100.0,
            cfg.max_generator_busy * 100.0
        ));
    }
    (!why.is_empty()).then(|| {
        Reason::new(
            "generator_overloaded",
            format!(
                "the generator was overloaded: {}; its delays, not the server's, are in the latencies (use more load threads or cores, or a lower rate)",
                why.join(" and ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> LoadFigures {
        LoadFigures {
            offered: 100.0,
            achieved: 99.5,
            window_s: 10.0,
            responses: 995,
            errors: 0,
            status_errors: 0,
            outstanding: 0,
            send_lag_p99_us: Some(80),
            send_lag_count: 995,
            generator_busy: 0.2,
            start_spread_s: Some(0.004),
            failed_generators: vec![],
        }
    }

    #[test]
    fn distributed_load_needs_every_generator_and_one_start() {
        let f = LoadFigures {
            start_spread_s: Some(0.25),
            failed_generators: vec!["load pod aefm-load-x-1-abcde: Evicted".into()],
            ..good()
        };
        let r = check(&f, &ValidityConfig::default());
        let codes: Vec<&str> = r.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["load_pod_failed", "load_start_spread"]);
        assert!(
            r[0].message.contains("aefm-load-x-1-abcde: Evicted"),
            "{}",
            r[0].message
        );
        assert!(r[1].message.contains("0.250 s"), "{}", r[1].message);
        let cfg = ValidityConfig {
            max_load_start_spread: std::time::Duration::from_millis(300),
            ..Default::default()
        };
        assert_eq!(check(&f, &cfg).len(), 1);
    }

    fn codes(f: &LoadFigures) -> Vec<String> {
        check(f, &ValidityConfig::default())
            .into_iter()
            .map(|r| r.code)
            .collect()
    }

    #[test]
    fn a_good_case_is_valid() {
        assert!(codes(&good()).is_empty());
    }

    #[test]
    fn no_answer_at_all_is_no_responses_and_rate_below() {
        let f = LoadFigures {
            achieved: 0.0,
            responses: 0,
            outstanding: 16,
            ..good()
        };
        assert_eq!(codes(&f), ["no_responses", "rate_below_offered"]);
    }

    #[test]
    fn a_request_in_flight_at_the_end_is_not_an_error() {
        // 50 req/s over 1 s: 49 answered, the 50th sent 20 ms before the end, still in flight.
        let f = LoadFigures {
            offered: 50.0,
            window_s: 1.0,
            achieved: 49.0,
            responses: 49,
            outstanding: 1,
            ..good()
        };
        assert_eq!(f.error_share(), 0.0);
        assert!(codes(&f).is_empty(), "{:?}", codes(&f));
    }

    #[test]
    fn requests_outstanding_past_the_timeout_count_once_as_timeouts() {
        // The generator counts a flight older than the timeout as a timeout error and still
        // reports it outstanding: 30 timeouts of 1,000 attempts is 3 %, not 6 %.
        let f = LoadFigures {
            responses: 970,
            errors: 30,
            outstanding: 30,
            ..good()
        };
        assert!((f.error_share() - 30.0 / 1000.0).abs() < 1e-12);
        assert!(codes(&f).contains(&"error_share".to_string()));
    }

    #[test]
    fn garbage_answers_are_errors_without_successes() {
        // 8,222 read errors and 0 responses: what a server answering garbage gives.
        let f = LoadFigures {
            achieved: 0.0,
            responses: 0,
            errors: 8222,
            ..good()
        };
        let c = codes(&f);
        assert!(c.contains(&"no_responses".to_string()), "{c:?}");
        assert!(c.contains(&"error_share".to_string()), "{c:?}");
    }

    #[test]
    fn error_statuses_are_responses_but_not_successes() {
        let f = LoadFigures {
            responses: 995,
            errors: 995,
            status_errors: 995,
            ..good()
        };
        assert_eq!(f.successes(), 0);
        assert!((f.error_share() - 1.0).abs() < 1e-12);
        assert_eq!(codes(&f), ["no_responses", "error_share"]);
    }

    #[test]
    fn thresholds_are_the_configured_ones() {
        let f = LoadFigures {
            achieved: 97.0,
            errors: 10,
            ..good()
        };
        // 10 / 1005 = 0.995 % is within 1 %; 3 % below the rate is outside 2 %.
        assert_eq!(codes(&f), ["rate_below_offered"]);
        let cfg = ValidityConfig {
            rate_tolerance: 0.05,
            max_error_share: 0.005,
            ..Default::default()
        };
        let c: Vec<String> = check(&f, &cfg).into_iter().map(|r| r.code).collect();
        assert_eq!(c, ["error_share"]);
    }

    #[test]
    fn two_requests_at_the_edges_of_a_short_window_are_forgiven() {
        // 50 req/s for 1 s: 48 answers is 4 % short but only 2 requests.
        let f = LoadFigures {
            offered: 50.0,
            window_s: 1.0,
            achieved: 48.0,
            responses: 48,
            ..good()
        };
        assert!(codes(&f).is_empty(), "{:?}", codes(&f));
        let f = LoadFigures {
            achieved: 47.0,
            responses: 47,
            ..f
        };
        assert_eq!(codes(&f), ["rate_below_offered"]);
    }

    #[test]
    fn a_late_generator_is_overloaded() {
        let f = LoadFigures {
            send_lag_p99_us: Some(12_000),
            ..good()
        };
        let r = check(&f, &ValidityConfig::default());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, "generator_overloaded");
        assert!(r[0].message.contains("12.00 ms"), "{}", r[0].message);
    }

    #[test]
    fn a_saturated_generator_thread_is_overloaded_too() {
        let f = LoadFigures {
            generator_busy: 0.97,
            ..good()
        };
        let r = check(&f, &ValidityConfig::default());
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].code, "generator_overloaded");
        assert!(r[0].message.contains("97 %"), "{}", r[0].message);
    }

    #[test]
    fn above_the_offered_rate_is_flagged_too() {
        let f = LoadFigures {
            achieved: 110.0,
            ..good()
        };
        assert_eq!(codes(&f), ["rate_above_offered"]);
    }
}
