//! Tests of the report parser on real reports: aefm-load's (captured from the binary), Debian's
//! wrk 4 (captured), and wrk2's (written to its documented layout: one stall run with `-U` and
//! socket errors, one run that recorded nothing and prints `nan`).

use super::*;

const AEFM_U: &str = include_str!("fixtures/aefm-load-U.txt");
const AEFM_PLAIN: &str = include_str!("fixtures/aefm-load-plain.txt");
const WRK_LATENCY: &str = include_str!("fixtures/wrk-latency.txt");
const WRK_NON2XX: &str = include_str!("fixtures/wrk-non2xx.txt");
const WRK2_STALL: &str = include_str!("fixtures/wrk2-stall-U.txt");
const WRK2_NAN: &str = include_str!("fixtures/wrk2-nan.txt");

#[test]
fn units() {
    assert_eq!(time_us("829.00us"), Some(829.0));
    assert_eq!(time_us("1.20ms"), Some(1200.0));
    assert_eq!(time_us("1.42s"), Some(1_420_000.0));
    assert_eq!(time_us("0.85m"), Some(51_000_000.0));
    assert_eq!(time_us("1.00h"), Some(3_600_000_000.0));
    assert_eq!(time_us("-nanus"), None);
    assert_eq!(time_us("12"), None);
    assert_eq!(metric("5.17k"), Some(5170.0));
    assert_eq!(metric("846.42"), Some(846.42));
    assert_eq!(metric("1.5M"), Some(1_500_000.0));
    assert_eq!(binary("25.90MB"), Some(25.90 * 1024.0 * 1024.0));
    assert_eq!(binary("80.00B"), Some(80.0));
    assert_eq!(binary("0.89KB"), Some(0.89 * 1024.0));
}

#[test]
fn aefm_load_report_with_both_blocks() {
    let r = parse(AEFM_U);
    assert_eq!(r.duration_label.as_deref(), Some("2s"));
    assert_eq!(r.url.as_deref(), Some("http://127.0.0.1:18181/index.html"));
    assert_eq!((r.threads, r.connections), (Some(1), Some(10)));
    let lat = r.latency_stats_us.unwrap();
    assert_eq!(
        (lat.avg, lat.max, lat.within_stdev_pct),
        (Some(359.79), Some(8330.0), Some(92.05))
    );
    assert_eq!(r.req_sec_stats.unwrap().avg, Some(1000.0));
    assert_eq!(r.distributions.len(), 2);
    let c = r.block(Block::Corrected).unwrap();
    assert_eq!(c.percentiles.len(), 8);
    assert_eq!(r.percentile(Block::Corrected, 50.0), Some(138.0));
    assert_eq!(r.percentile(Block::Corrected, 99.0), Some(4160.0));
    assert_eq!(r.percentile(Block::Corrected, 100.0), Some(8330.0));
    assert_eq!((c.max_ms, c.total_count), (Some(8.328), Some(2000)));
    assert_eq!(c.mean_ms, Some(0.360));
    let first = c.spectrum[0];
    assert_eq!(
        (first.value_ms, first.percentile, first.total_count),
        (0.095, 0.0, 1)
    );
    assert_eq!(c.spectrum.last().unwrap().total_count, 2000);
    let u = r.block(Block::Uncorrected).unwrap();
    assert_eq!((u.max_ms, u.total_count), (Some(8.320), Some(2000)));
    assert_eq!(u.spectrum.last().unwrap().percentile, 1.0);
    assert_eq!((r.requests, r.runtime_s), (Some(2000), Some(2.0)));
    assert_eq!(r.bytes_read, Some(712.89 * 1024.0));
    assert_eq!(r.requests_per_sec, Some(1000.0));
    assert_eq!(r.transfer_per_sec, Some(356.45 * 1024.0));
    assert_eq!(
        (r.socket_errors, r.non_2xx_3xx, r.errors()),
        (None, None, 0)
    );
}

#[test]
fn aefm_load_report_without_latency_blocks() {
    let r = parse(AEFM_PLAIN);
    assert!(r.distributions.is_empty());
    assert_eq!((r.requests, r.requests_per_sec), (Some(2000), Some(1000.0)));
    assert_eq!(r.latency_stats_us.unwrap().max, Some(6470.0));
}

#[test]
fn wrk4_latency_block_and_non2xx() {
    let r = parse(WRK_LATENCY);
    let d = r.block(Block::Wrk).unwrap();
    assert_eq!(
        d.percentiles,
        vec![
            (50.0, 545.0),
            (75.0, 1790.0),
            (90.0, 3370.0),
            (99.0, 5860.0)
        ]
    );
    assert!(r.block(Block::Corrected).is_none());
    assert_eq!((r.requests, r.runtime_s), (Some(10910), Some(1.0)));
    assert_eq!(r.req_sec_stats.unwrap().stdev, Some(3910.0));
    let n = parse(WRK_NON2XX);
    assert_eq!((n.non_2xx_3xx, n.errors()), (Some(11690), 11690));
    assert_eq!(n.runtime_s, Some(1.01));
}

#[test]
fn wrk2_stall_report_with_calibration_and_errors() {
    let r = parse(WRK2_STALL);
    assert_eq!(r.calibration, vec![(1.042, 10)]);
    assert_eq!(r.percentile(Block::Corrected, 90.0), Some(2_050_000.0));
    assert_eq!(r.percentile(Block::Corrected, 99.9), Some(4_970_000.0));
    assert_eq!(r.percentile(Block::Uncorrected, 99.9), Some(1260.0));
    assert_eq!(r.percentile(Block::Uncorrected, 99.99), Some(5_000_000.0));
    let c = r.block(Block::Corrected).unwrap();
    assert_eq!((c.total_count, c.stddev_ms), (Some(29950), Some(1110.412)));
    assert_eq!(c.spectrum.len(), 9);
    let e = r.socket_errors.unwrap();
    assert_eq!((e.connect, e.read, e.write, e.timeout), (0, 0, 0, 10));
    assert_eq!(
        (r.requests, r.runtime_s, r.errors()),
        (Some(39981), Some(40.0), 10)
    );
}

#[test]
fn wrk2_nan_values_become_none() {
    let r = parse(WRK2_NAN);
    let lat = r.latency_stats_us.unwrap();
    assert_eq!((lat.avg, lat.stdev, lat.max), (None, None, Some(0.0)));
    assert!(r.distributions.is_empty());
    assert_eq!(r.socket_errors.unwrap().timeout, 40);
    assert_eq!(r.requests_per_sec, Some(2.49));
}

#[test]
fn unknown_lines_and_garbage_are_skipped() {
    let r = parse("hello\nRequests/sec: oops\n#[Max = 3]\n  5 requests in 1.00s, 1.00KB read\n");
    assert_eq!(r.requests, Some(5));
    assert_eq!(r.requests_per_sec, None);
    assert!(r.distributions.is_empty());
}
