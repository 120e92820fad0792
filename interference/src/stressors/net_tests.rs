//! Unit tests of the network stressor: targets, iperf3 arguments and JSON, and when a run failed.

use super::*;

#[test]
fn targets() {
    assert_eq!(
        split_target("10.0.0.1", 5201).unwrap(),
        ("10.0.0.1".into(), 5201)
    );
    assert_eq!(
        split_target("srv:7000", 5201).unwrap(),
        ("srv".into(), 7000)
    );
    assert_eq!(
        split_target("[::1]:7000", 5201).unwrap(),
        ("::1".into(), 7000)
    );
    assert_eq!(split_target("::1", 5201).unwrap(), ("::1".into(), 5201));
    assert!(split_target("srv:http", 5201)
        .unwrap_err()
        .to_string()
        .contains("srv:http"));
    assert!(split_target(":80", 5201).is_err());
}

#[test]
fn client_args_and_json() {
    let m = Mode::Client {
        target: "h".into(),
        port: 9,
        bandwidth_bps: 1_000_000_000,
        streams: 2,
    };
    assert_eq!(
        iperf_args(&m, 10).join(" "),
        "-c h -p 9 -b 1000000000 -P 2 -t 10 --connect-timeout 5000 -J"
    );
    let json = r#"{"start":{},"end":{"sum_sent":{"start":0,"end":3.0,"seconds":3.0,"bytes":374996992,"bits_per_second":999924650.4,"retransmits":0,"sender":true}}}"#;
    let (b, s, bps, e) = parse_client_json(json).unwrap();
    assert_eq!((b, s, e), (374996992, 3.0, None));
    assert!((bps - 999924650.4).abs() < 1.0);
    let (b, _, _, e) = parse_client_json(r#"{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}"#).unwrap();
    assert_eq!(b, 0);
    assert!(e.unwrap().contains("unable to connect"));
    assert!(parse_client_json("not json").is_none());
}

#[test]
fn failing_runs_and_silent_clients_fail_the_run() {
    let client = Mode::Client {
        target: "nohost".into(),
        port: 1,
        bandwidth_bps: 1,
        streams: 1,
    };
    let mut t = Totals {
        attempts: 6,
        ..Default::default()
    };
    t.fail("iperf3 -c nohost -p 1: unable to connect to server: Name or service not known".into());
    let e = final_error(&client, &t, 3.0).unwrap();
    assert!(
        e.starts_with("never reached its server (6 attempts in 3.0 s): iperf3 -c nohost -p 1")
            && e.contains("Name or service not known"),
        "{e}"
    );
    // Recovered: no error; failing again at the end: an error that says so.
    t.worked();
    assert_eq!(final_error(&client, &t, 3.0), None);
    t.fail("iperf3 -c nohost -p 1: connection reset".into());
    assert!(final_error(&client, &t, 3.0)
        .unwrap()
        .starts_with("failing at the end"));
    // A client that never failed but never sent anything either.
    let quiet = Totals {
        attempts: 1,
        ..Default::default()
    };
    assert_eq!(
        final_error(&client, &quiet, 2.0).unwrap(),
        "iperf3 -c nohost -p 1 sent nothing in 2.0 s (1 attempt)"
    );
    // A server without clients is fine.
    assert_eq!(final_error(&Mode::Server { port: 5 }, &quiet, 2.0), None);
}
