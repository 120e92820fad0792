//! End-to-end tests: the offered load's shape. Inter-arrival distributions (`-D`) seen in the
//! actual send times, rate profiles seen in the per-second series, and coordinated-omission
//! correction against a changing schedule through a server stall. Bounds hold on a busy
//! 2-core machine: sends can be late by milliseconds there, so the checks are on statistics
//! far apart for the shapes they tell apart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aefm_loadgen::schedule::{Distribution, RateProfile};
use aefm_loadgen::source::{Batch, RequestSource, SourceError, Workload};
use aefm_loadgen::{run, Model, RunControl, Spec};
use aefm_tests::http_server::{HttpServer, ServerOptions};

/// A source that notes the instant of every send (the engine asks for a batch just before it
/// writes it).
struct Noting {
    batch: Batch,
    sends: Arc<Mutex<Vec<Instant>>>,
}

impl RequestSource for Noting {
    fn next_batch(&mut self) -> Result<Batch, SourceError> {
        self.sends.lock().unwrap().push(Instant::now());
        Ok(self.batch.clone())
    }
}

fn noting(spec: &mut Spec) -> Arc<Mutex<Vec<Instant>>> {
    let sends = Arc::new(Mutex::new(Vec::new()));
    let s = sends.clone();
    let host = spec
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let bytes = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    spec.workload = Workload::Generator(Arc::new(move |_| {
        Ok(Box::new(Noting {
            batch: Batch {
                bytes: bytes.clone().into(),
                depth: 1,
            },
            sends: s.clone(),
        }))
    }));
    sends
}

/// Gaps between consecutive sends, in seconds.
fn gaps(sends: &[Instant]) -> Vec<f64> {
    sends
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

fn mean_cv(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt() / mean)
}

/// Kolmogorov–Smirnov distance between the gaps and an exponential law of mean `mean`.
fn ks_exponential(x: &[f64], mean: f64) -> f64 {
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.iter()
        .enumerate()
        .map(|(i, v)| {
            let f = 1.0 - (-v / mean).exp();
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

fn spec(url: &str, rate: f64, secs: u64) -> Spec {
    let mut s = Spec::new(url, rate);
    s.threads = 1;
    s.connections = 4;
    s.duration = Duration::from_secs(secs);
    s
}

#[test]
fn exponential_gaps_are_exponential_fixed_gaps_are_even() {
    let server = HttpServer::start(ServerOptions::default());
    // The open model sends on the thread's one process whatever is outstanding, so the sends
    // show the schedule itself; the least pacing tolerance keeps close gaps apart.
    let run_with = |d: Distribution| {
        let mut s = spec(&server.url("/"), 100.0, 6);
        s.model = Model::Open {
            max_connections: 40,
        };
        s.distribution = d;
        s.seed = 7;
        s.pacing_tolerance = Some(Duration::from_micros(5));
        let sends = noting(&mut s);
        let report = run(&s, &RunControl::new()).unwrap();
        assert_eq!(
            report.summary.errors.total(),
            0,
            "{:?}",
            report.summary.errors
        );
        let g = gaps(&sends.lock().unwrap());
        assert!(g.len() > 550, "{} sends", g.len());
        g
    };
    // A busy machine can wake the worker milliseconds late and bunch a few sends: each check
    // gets three runs and fails only if all three miss.
    let judge = |d: Distribution, check: &dyn Fn(&[f64]) -> Result<(), String>| {
        let mut misses = Vec::new();
        for _ in 0..3 {
            match check(&run_with(d)) {
                Ok(()) => return,
                Err(e) => misses.push(e),
            }
        }
        panic!("{d:?} gaps missed in all three runs: {misses:?}");
    };
    judge(Distribution::Exp, &|g| {
        let (mean, cv) = mean_cv(g);
        // n ~ 600: the 1 % critical value is 0.067; fixed gaps would be at ~0.63.
        let d = ks_exponential(g, mean);
        if (mean - 0.01).abs() < 0.0006 && (0.85..1.15).contains(&cv) && d < 0.1 {
            Ok(())
        } else {
            Err(format!(
                "mean gap {mean}, coefficient of variation {cv}, KS distance {d}"
            ))
        }
    });
    judge(Distribution::Fixed, &|g| {
        let (mean, cv) = mean_cv(g);
        let d = ks_exponential(g, mean);
        if (mean - 0.01).abs() < 0.0003 && cv < 0.25 && d > 0.4 {
            Ok(())
        } else {
            Err(format!(
                "mean gap {mean}, coefficient of variation {cv}, KS distance {d}"
            ))
        }
    });
}

#[test]
fn a_ramp_and_a_step_show_in_the_per_second_series() {
    let server = HttpServer::start(ServerOptions::default());
    for text in ["100:500:4s", "100@0s,400@2s,200@4s"] {
        let mut s = spec(&server.url("/"), 1.0, 6);
        s.set_rate_profile(RateProfile::parse(text).unwrap());
        let report = run(&s, &RunControl::new()).unwrap();
        let profile = RateProfile::parse(text).unwrap();
        assert_eq!(report.per_second.len(), 6, "{text}");
        for (i, sec) in report.per_second.iter().enumerate() {
            let want = profile.offered_in(i as u64);
            // The last second is as long as the run really was (a little over 1 s).
            assert!(
                (sec.offered - want).abs() <= want * 0.01,
                "{text} second {i}: offered {} want {want}",
                sec.offered
            );
            assert!(
                (sec.sent as f64 - want).abs() <= want * 0.05 + 4.0,
                "{text} second {i}: sent {} want {want}",
                sec.sent
            );
        }
        let total = profile.cumulative(6.0);
        let sent = report.summary.sent as f64;
        assert!(
            (sent - total).abs() <= total * 0.01 + 4.0,
            "{text}: {sent} vs {total}"
        );
    }
}

#[test]
fn correction_follows_the_changing_schedule_through_a_stall() {
    // A ramp from 100 to 300 req/s over 3 s; the server stalls for 500 ms in the middle.
    // Every request due during the stall completes when it ends, so the number of corrected
    // latencies of at least x is the number of requests due in [stall start, stall end - x):
    // the integral of the ramp, not of a constant rate. The stall's edges are placed by this
    // test's own thread, which a busy machine can delay: three tries, failing only if all miss.
    let mut misses = Vec::new();
    for _ in 0..3 {
        match stall_in_a_ramp() {
            Ok(()) => return,
            Err(e) => misses.push(e),
        }
    }
    panic!("all three runs missed: {misses:#?}");
}

/// One run of [`correction_follows_the_changing_schedule_through_a_stall`].
fn stall_in_a_ramp() -> Result<(), String> {
    let server = Arc::new(HttpServer::start(ServerOptions::default()));
    let profile = RateProfile::parse("100:300:3s").unwrap();
    let mut s = spec(&server.url("/"), 1.0, 4);
    s.set_rate_profile(profile.clone());
    let started = Arc::new(Mutex::new(None));
    let control = RunControl::new().on_start({
        let started = started.clone();
        move || *started.lock().unwrap() = Some(Instant::now())
    });
    let runner = std::thread::spawn(move || run(&s, &control));
    while started.lock().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let t0 = started.lock().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(1400));
    server.set_stalled(true);
    let s0 = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    server.set_stalled(false);
    let s1 = t0.elapsed().as_secs_f64();
    let report = runner.join().unwrap().unwrap();
    let h = &report.corrected.histogram;
    for x in [0.1, 0.3] {
        let want = profile.cumulative(s1 - x) - profile.cumulative(s0);
        let got = h.count_between((x * 1e6) as u64, u64::MAX) as f64;
        // The start instant is known to ~10 ms (r ~ 200/s: ~2 requests), a stall's edges to a
        // few ms; the server answers in well under x.
        if (got - want).abs() > want * 0.1 + 6.0 {
            return Err(format!(
                "latencies >= {x}s: {got}, the schedule says {want:.1} (stall {s0:.3}..{s1:.3})"
            ));
        }
    }
    let max = report.corrected.stats.max as f64 / 1e6;
    if !(0.45..0.8).contains(&max) {
        return Err(format!("corrected max {max}"));
    }
    Ok(())
}
