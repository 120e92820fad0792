//! Unit tests of [`super::check`] with synthetic report lines: one per code and kind, and the
//! clean cases that must give no finding.

use super::*;
use crate::units::Size;

const T0: Duration = Duration::from_secs(1_800_000_000);

fn t(s: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + T0 + Duration::from_secs_f64(s)
}

/// A 10 s window from t(10) to t(20).
fn window() -> (SystemTime, SystemTime) {
    (t(10.0), t(20.0))
}

fn line(kind: &str, unit: &str, target: f64, achieved: f64) -> ReportLine {
    ReportLine {
        kind: kind.into(),
        elapsed_s: 0.0,
        target,
        achieved,
        unit: unit.into(),
        r#final: false,
        details: Default::default(),
    }
}

/// Lines once a second from `from` to `to` (inclusive), achieved from `f(second)`.
fn every_second(from: u32, to: u32, mk: impl Fn(u32) -> ReportLine) -> Vec<Observed> {
    (from..=to)
        .map(|s| Observed {
            at: t(s as f64 + 0.01),
            line: mk(s),
        })
        .collect()
}

fn cpu(load: f64) -> Stressor {
    Stressor::Cpu {
        workers: 1,
        load_pct: load,
        cpus: None,
    }
}

fn codes(f: &[Finding]) -> Vec<&str> {
    f.iter().map(|f| f.code.as_str()).collect()
}

fn run(s: &Stressor, lines: &[Observed]) -> Vec<Finding> {
    check("lvl", s, lines, window(), None, &Tolerances::default())
}

#[test]
fn a_cpu_stressor_at_its_target_for_the_whole_window_has_no_finding() {
    let lines = every_second(5, 25, |s| line("cpu", "%", 80.0, 79.0 + (s % 3) as f64));
    assert_eq!(run(&cpu(80.0), &lines), vec![]);
}

#[test]
fn cpu_below_target_names_the_figures() {
    let lines = every_second(5, 25, |_| line("cpu", "%", 80.0, 41.2));
    let f = run(&cpu(80.0), &lines);
    assert_eq!(codes(&f), [BELOW_TARGET]);
    assert_eq!(
        f[0].message,
        "lvl: achieved 41.2 % over the window (mean of 10 reports), target 80 % (±3 points)"
    );
    // Lines outside the window do not count: a bad start before it is fine.
    let mut lines = every_second(5, 9, |_| line("cpu", "%", 80.0, 10.0));
    lines.extend(every_second(10, 25, |_| line("cpu", "%", 80.0, 80.0)));
    assert_eq!(run(&cpu(80.0), &lines), vec![]);
}

#[test]
fn an_exit_before_the_end_or_a_final_line_in_the_window_is_exited() {
    let lines = every_second(5, 14, |_| line("cpu", "%", 50.0, 50.0));
    let f = check(
        "cpu-50",
        &cpu(50.0),
        &lines,
        window(),
        Some("signal: 9 (SIGKILL)"),
        &Tolerances::default(),
    );
    assert_eq!(codes(&f), [EXITED, NO_REPORTS]);
    assert_eq!(
        f[0].message,
        "cpu-50: ended before the window's end (signal: 9 (SIGKILL))"
    );
    assert!(
        f[1].message
            .contains("last report 6.0 s before the window end"),
        "{}",
        f[1].message
    );
    // Without process information, its final line in the window says it stopped.
    let mut lines = every_second(5, 18, |_| line("cpu", "%", 50.0, 50.0));
    lines.last_mut().unwrap().line.r#final = true;
    let f = run(&cpu(50.0), &lines);
    assert_eq!(codes(&f), [EXITED]);
    assert!(f[0].message.contains("final report 8.0 s into the window"));
}

#[test]
fn missing_late_and_gapped_reports_are_no_reports() {
    let f = run(&cpu(50.0), &[]);
    assert_eq!(codes(&f), [NO_REPORTS]);
    assert_eq!(f[0].message, "lvl: no report in the 10.0 s window");
    // First report 5 s late.
    let f = run(
        &cpu(50.0),
        &every_second(15, 25, |_| line("cpu", "%", 50.0, 50.0)),
    );
    assert_eq!(codes(&f), [NO_REPORTS]);
    assert!(f[0]
        .message
        .contains("first report 5.0 s after the window start"));
    // A 5 s hole in the middle.
    let mut lines = every_second(5, 12, |_| line("cpu", "%", 50.0, 50.0));
    lines.extend(every_second(17, 25, |_| line("cpu", "%", 50.0, 50.0)));
    let f = run(&cpu(50.0), &lines);
    assert_eq!(codes(&f), [NO_REPORTS]);
    assert!(
        f[0].message
            .contains("no report for 5.0 s from 2.0 s into the window"),
        "{}",
        f[0].message
    );
    // Every 2 s is within the default 3 s.
    let lines: Vec<_> = every_second(5, 25, |_| line("cpu", "%", 50.0, 50.0))
        .into_iter()
        .step_by(2)
        .collect();
    assert_eq!(run(&cpu(50.0), &lines), vec![]);
}

#[test]
fn an_error_detail_in_the_window_is_an_error() {
    let net = Stressor::NetClient {
        target: "nohost".into(),
        port: 1,
        bandwidth_bps: 10_000_000,
        streams: 1,
    };
    let lines = every_second(5, 25, |_| {
        let mut l = line("net-client", "bit/s", 10e6, 0.0);
        l.details.insert(
            "error".into(),
            "iperf3 -c nohost -p 1: unable to connect to server".into(),
        );
        l
    });
    let f = check(
        "net-10M",
        &net,
        &lines,
        window(),
        None,
        &Tolerances::default(),
    );
    assert_eq!(codes(&f), [ERROR, BELOW_TARGET]);
    assert_eq!(
        f[0].message,
        "net-10M: 10 of 10 reports in the window carry an error, the first: iperf3 -c nohost \
         -p 1: unable to connect to server"
    );
    assert_eq!(
        f[1].message,
        "net-10M: achieved 0 bit/s over the window (mean of 10 reports), target 10 Mbit/s (at \
         most 10 % below)"
    );
    // At 9.5 Mbit/s it is within 10 %.
    let ok = every_second(5, 25, |_| line("net-client", "bit/s", 10e6, 9.5e6));
    assert_eq!(run(&net, &ok), vec![]);
}

#[test]
fn memcap_resident_size_within_two_percent_and_16_mib() {
    let gib = 1024.0 * MIB;
    let s = Stressor::MemCap {
        size: Size::Bytes(1 << 30),
        retouch_per_s: None,
    };
    // 1 GiB + 30 MiB of RSS (the process itself) is within 20.5 + 16 MiB.
    let ok = every_second(5, 25, |_| line("memcap", "bytes", gib, gib + 30.0 * MIB));
    assert_eq!(run(&s, &ok), vec![]);
    // One second at 812 MiB (swapped out) is not.
    let bad = every_second(5, 25, |s| {
        let rss = if s == 13 { 812.0 * MIB } else { gib };
        line("memcap", "bytes", gib, rss)
    });
    let f = run(&s, &bad);
    assert_eq!(codes(&f), [BELOW_TARGET]);
    assert_eq!(
        f[0].message,
        "lvl: resident 812.0 MiB 3.0 s into the window, target 1024.0 MiB (±2 % + 16 MiB)"
    );
}

#[test]
fn membw_numeric_and_max_targets() {
    let paced = Stressor::MemBw {
        rate: Rate::GBps(2.0),
        workers: 1,
    };
    let f = run(
        &paced,
        &every_second(5, 25, |_| line("membw", "GB/s", 2.0, 1.5)),
    );
    assert_eq!(codes(&f), [BELOW_TARGET]);
    assert!(
        f[0].message.contains("achieved 1.500 GB/s") && f[0].message.contains("target 2.000 GB/s"),
        "{}",
        f[0].message
    );
    assert_eq!(
        run(
            &paced,
            &every_second(5, 25, |_| line("membw", "GB/s", 2.0, 1.85))
        ),
        vec![]
    );
    let max = Stressor::MemBw {
        rate: Rate::Max,
        workers: 1,
    };
    assert_eq!(
        run(
            &max,
            &every_second(5, 25, |_| line("membw", "GB/s", 0.0, 0.3))
        ),
        vec![]
    );
    let f = run(
        &max,
        &every_second(5, 25, |_| line("membw", "GB/s", 0.0, 0.0)),
    );
    assert_eq!(codes(&f), [BELOW_TARGET]);
    assert!(f[0].message.contains("moved nothing"), "{}", f[0].message);
}

#[test]
fn cache_footprint_reached_and_net_server_has_no_target() {
    let s = Stressor::Cache {
        level: crate::CacheLevel::Llc,
        fraction: 1.0,
    };
    let fp = 24.0 * MIB;
    assert_eq!(
        run(&s, &every_second(5, 25, |_| line("cache", "bytes", fp, fp))),
        vec![]
    );
    let f = run(
        &s,
        &every_second(5, 25, |s| {
            line("cache", "bytes", fp, if s == 12 { fp / 2.0 } else { fp })
        }),
    );
    assert_eq!(codes(&f), [BELOW_TARGET]);
    assert!(f[0]
        .message
        .contains("walked 12.00 MiB 2.0 s into the window"));
    let srv = Stressor::NetServer { port: 5201 };
    assert_eq!(
        run(
            &srv,
            &every_second(5, 25, |_| line("net-server", "bit/s", 0.0, 0.0))
        ),
        vec![]
    );
}
