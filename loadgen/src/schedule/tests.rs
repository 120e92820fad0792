//! Tests of [`Schedule`] and [`Distribution`]: the statistics of the gaps, the mean rate, the
//! per-second counts under ramps and steps, wrk2's grid, and seeds.

use super::*;

const ALL: [Distribution; 4] = [
    Distribution::Fixed,
    Distribution::Exp,
    Distribution::Norm,
    Distribution::Zipf,
];

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The first `n` intended times, in seconds.
fn times(s: &mut Schedule, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| secs(s.next().expect("open-ended")))
        .collect()
}

fn constant(rate: f64) -> RateProfile {
    RateProfile::constant(rate).unwrap()
}

/// Arrivals of share-1 process per second `0..seconds`.
fn per_second(profile: &RateProfile, d: Distribution, seconds: u64) -> Vec<u64> {
    let s = Schedule::new(profile, d, 1.0, Duration::ZERO, 7).until(Duration::from_secs(seconds));
    let mut counts = vec![0u64; seconds as usize];
    for t in s {
        counts[t.as_secs() as usize] += 1;
    }
    counts
}

fn assert_counts_follow(profile: &RateProfile, seconds: u64) {
    let counts = per_second(profile, Distribution::Fixed, seconds);
    for (i, &n) in counts.iter().enumerate() {
        let expected = profile.offered_in(i as u64);
        assert!(
            (n as f64 - expected).abs() <= 1.0,
            "second {i}: {n} arrivals, {expected} offered"
        );
    }
}

/// Kolmogorov–Smirnov statistic of `gaps` (in mean gaps) against the unit exponential.
fn ks_exp(mut gaps: Vec<f64>) -> f64 {
    let n = gaps.len() as f64;
    gaps.sort_by(f64::total_cmp);
    gaps.iter()
        .enumerate()
        .map(|(i, &x)| {
            let cdf = 1.0 - (-x).exp();
            (cdf - i as f64 / n).max((i + 1) as f64 / n - cdf)
        })
        .fold(0.0, f64::max)
}

/// Gaps of the first `n + 1` times, in mean gaps of `rate`.
fn unit_gaps(d: Distribution, rate: f64, n: usize, seed: u64) -> Vec<f64> {
    let mut s = Schedule::new(&constant(rate), d, 1.0, Duration::ZERO, seed);
    let t = times(&mut s, n + 1);
    t.windows(2).map(|w| (w[1] - w[0]) * rate).collect()
}

#[test]
fn exp_gaps_pass_kolmogorov_smirnov() {
    let n = 20_000;
    let critical = 1.63 / (n as f64).sqrt();
    let d = ks_exp(unit_gaps(Distribution::Exp, 800.0, n, 42));
    assert!(d < critical, "KS D = {d}, 1 % critical value {critical}");
    // The test has power: the other distributions fail it.
    for other in [Distribution::Fixed, Distribution::Norm, Distribution::Zipf] {
        let d = ks_exp(unit_gaps(other, 800.0, n, 42));
        assert!(d > critical, "{other}: KS D = {d}");
    }
}

#[test]
fn fixed_gaps_have_no_spread() {
    let mut s = Schedule::new(
        &constant(2000.0),
        Distribution::Fixed,
        1.0,
        Duration::ZERO,
        1,
    );
    let t = times(&mut s, 10_001);
    let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    let cv = var.sqrt() / mean;
    assert!(cv < 1e-9, "coefficient of variation {cv}");
    assert!((mean - 1.0 / 2000.0).abs() < 1e-12, "mean gap {mean}");
}

#[test]
fn random_gaps_spread_as_documented() {
    // Coefficient of variation of the gaps: exp 1, norm 0.25, zipf sqrt(E[k²]/E[k]² - 1) = 1.15.
    for (d, lo, hi) in [
        (Distribution::Exp, 0.97, 1.03),
        (Distribution::Norm, 0.24, 0.26),
        (Distribution::Zipf, 1.0, 1.3),
    ] {
        let gaps = unit_gaps(d, 100.0, 50_000, 3);
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!(cv > lo && cv < hi, "{d}: cv {cv}");
        assert!(gaps.iter().all(|&g| g >= 0.0), "{d}: negative gap");
    }
}

#[test]
fn zipf_gaps_are_ranks_scaled_to_the_mean() {
    let mean = zipf_mean();
    assert!((1.3..1.4).contains(&mean), "E[k] = {mean}");
    let mut s = Schedule::new(&constant(1.0), Distribution::Zipf, 1.0, Duration::ZERO, 5);
    let t = times(&mut s, 20_001);
    let ones = t
        .windows(2)
        .filter(|w| ((w[1] - w[0]) * mean - 1.0).abs() < 1e-6)
        .count();
    // P(k = 1) = 1 / sum(k^-3) = 0.832.
    let p = ones as f64 / 20_000.0;
    assert!((p - 0.832).abs() < 0.02, "share of rank-1 gaps {p}");
}

#[test]
fn mean_rate_holds_for_every_distribution() {
    let n = 200_000;
    for d in ALL {
        for (rate, share) in [(5000.0, 1.0), (20_000.0, 0.1)] {
            let mut s = Schedule::new(&constant(rate), d, share, Duration::ZERO, 11);
            let t = times(&mut s, n + 1);
            let measured = n as f64 / t[n];
            let expected = rate * share;
            assert!(
                (measured / expected - 1.0).abs() < 0.01,
                "{d} share {share}: {measured} req/s, expected {expected}"
            );
        }
    }
}

#[test]
fn ramp_counts_follow_the_integral() {
    let ramp = RateProfile::parse("1000:5000:60s").unwrap();
    assert_counts_follow(&ramp, 70);
    let down = RateProfile::parse("3000,200~20s,200@25s,1500~30s").unwrap();
    assert_counts_follow(&down, 40);
    // Every distribution follows a ramp on average: the last 10 s offer 5000 req/s.
    for d in ALL {
        let counts = per_second(&ramp, d, 70);
        let late: u64 = counts[60..].iter().sum();
        let early: u64 = counts[..10].iter().sum();
        let expected_early = ramp.offered_between(0.0, 10.0);
        assert!((late as f64 / 50_000.0 - 1.0).abs() < 0.02, "{d}: {late}");
        assert!(
            (early as f64 / expected_early - 1.0).abs() < 0.02,
            "{d}: {early}"
        );
    }
}

#[test]
fn step_counts_follow_including_pauses() {
    let steps = RateProfile::parse("1000@0s,5000@3s,0@5s,2500@7.5s").unwrap();
    assert_counts_follow(&steps, 10);
    let counts = per_second(&steps, Distribution::Exp, 10);
    assert_eq!(&counts[5..7], &[0, 0], "nothing sent while the rate is 0");
    // Starting with a pause: the first send is at the pause's end.
    let late_start = RateProfile::parse("0,100@2s").unwrap();
    let mut s = Schedule::new(&late_start, Distribution::Fixed, 1.0, Duration::ZERO, 0);
    assert_eq!(s.next(), Some(Duration::from_secs(2)));
}

#[test]
fn a_profile_ending_at_zero_ends_the_schedule() {
    // 1000 req/s ramping to 0 over 10 s: 5000 requests, then none for ever.
    let p = RateProfile::parse("1000,0~10s").unwrap();
    let mut s = Schedule::new(&p, Distribution::Fixed, 1.0, Duration::ZERO, 0);
    let mut n = 0;
    let mut last = Duration::ZERO;
    for t in s.by_ref() {
        assert!(t >= last && t <= Duration::from_secs(10), "{t:?}");
        last = t;
        n += 1;
    }
    assert!((n as i64 - 5000).abs() <= 1, "{n} requests");
    assert_eq!(s.next(), None);
}

#[test]
fn fixed_constant_is_the_wrk2_grid_exactly() {
    // wrk2's model: connection i of c carries 1/c of the rate, phase i/rate.
    for (rate, conns) in [(2000.0, 10usize), (333.0, 7), (1e6, 1000), (0.5, 1)] {
        let share = 1.0 / conns as f64;
        let period = 1.0 / (rate * share);
        for i in [0, conns / 2, conns - 1] {
            let phase = Duration::from_secs_f64(i as f64 / rate);
            let mut s = Schedule::new(&constant(rate), Distribution::Fixed, share, phase, 9);
            for k in 0..5000u64 {
                let grid = phase + Duration::from_secs_f64(k as f64 * period);
                assert_eq!(s.next(), Some(grid), "rate {rate}, conn {i}, k {k}");
            }
        }
    }
}

#[test]
fn until_ends_before_the_end() {
    let end = Duration::from_millis(1500);
    let mut s = Schedule::new(
        &constant(100.0),
        Distribution::Fixed,
        1.0,
        Duration::ZERO,
        0,
    )
    .until(end);
    let all: Vec<Duration> = s.by_ref().collect();
    assert_eq!(all.len(), 150);
    assert!(all.iter().all(|&t| t < end));
    assert_eq!(s.next(), None);
}

#[test]
fn times_never_go_back_across_segments() {
    let p = RateProfile::parse("10,40000~0.5s,3@1s,90000~1.2s,0@1.5s,7000@2s").unwrap();
    for d in ALL {
        let s =
            Schedule::new(&p, d, 0.3, Duration::from_micros(17), 2).until(Duration::from_secs(4));
        let mut last = Duration::ZERO;
        let mut n = 0;
        for t in s {
            assert!(t >= last, "{d}: {t:?} after {last:?}");
            last = t;
            n += 1;
        }
        let expected = p.cumulative(4.0) * 0.3;
        assert!(
            (n as f64 / expected - 1.0).abs() < 0.05,
            "{d}: {n} vs {expected}"
        );
    }
}

#[test]
fn seeds_reproduce_and_differ() {
    let p = RateProfile::parse("1000:3000:10s").unwrap();
    for d in [Distribution::Exp, Distribution::Norm, Distribution::Zipf] {
        let run = |seed| {
            let mut s = Schedule::new(&p, d, 0.5, Duration::ZERO, seed);
            times(&mut s, 1000)
        };
        assert_eq!(run(stream_seed(1, 3)), run(stream_seed(1, 3)), "{d}");
        assert_ne!(run(stream_seed(1, 3)), run(stream_seed(1, 4)), "{d}");
        assert_ne!(run(stream_seed(1, 3)), run(stream_seed(2, 3)), "{d}");
    }
    let mut seeds: Vec<u64> = (0..10_000).map(|i| stream_seed(DEFAULT_SEED, i)).collect();
    seeds.sort_unstable();
    seeds.dedup();
    assert_eq!(seeds.len(), 10_000);
}

#[test]
fn distribution_names() {
    for d in ALL {
        assert_eq!(d.name().parse::<Distribution>(), Ok(d));
        assert_eq!(d.to_string(), d.name());
    }
    assert_eq!(Distribution::default(), Distribution::Fixed);
    let e = "poisson".parse::<Distribution>().unwrap_err().0;
    assert!(
        e.contains("'poisson'") && e.contains("fixed, exp, norm or zipf"),
        "{e}"
    );
}
