use super::*;

const T1: &str = "0af7651916cd43dd8448eb211c80319c";
const T2: &str = "00000000000000000000000000000abc";

fn req(trace: &str, span: &str, sent: u64, latency: u64, uncorrected: u64) -> TracedRequest {
    TracedRequest {
        trace_id: trace.into(),
        span_id: span.into(),
        intended_us: sent - (latency - uncorrected),
        sent_us: sent,
        latency_us: latency,
        uncorrected_us: uncorrected,
        status: 200,
    }
}

/// spans.csv with: trace T1 = front (child of the client span b7ad...) with two parallel calls,
/// the later-ending one leading to a leaf; trace T2 (as Jaeger shortens it) with one root span,
/// an operation name with a comma; plus a trace nobody asked for.
fn spans_csv(dir: &Path) -> std::path::PathBuf {
    let rows = [
        crate::traces::SPANS_HEADER.to_string(),
        format!(
            "{T1},f1,b7ad6b7169203331,ORPHAN,front,front-0,GET /,1000100,1008100,8000,2000,2,false"
        ),
        format!("{T1},c1,f1,CHILD_OF,front,front-0,call a,1001000,1004000,3000,100,1,false"),
        format!("{T1},c2,f1,CHILD_OF,front,front-0,call b,1001000,1007000,6000,200,1,false"),
        format!("{T1},a1,c1,CHILD_OF,back-a,a-0,work,1001100,1003900,2800,2800,0,false"),
        format!("{T1},b1,c2,CHILD_OF,back-b,b-0,work,1001100,1006900,5800,5800,0,false"),
        "abc,r,,ROOT,solo,solo-0,\"get, put\",2000000,2000500,500,500,0,false".to_string(),
        "ffff,x,,ROOT,other,o-0,op,1,2,1,1,0,false".to_string(),
    ];
    let path = dir.join("spans.csv");
    std::fs::write(&path, rows.join("\n") + "\n").unwrap();
    path
}

fn read(path: &Path) -> Vec<Vec<String>> {
    let mut rd = csv::Reader::from_path(path).unwrap();
    rd.records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

#[test]
fn each_slow_request_is_split_around_its_servers_entry_span() {
    let dir = tempfile::tempdir().unwrap();
    let spans = spans_csv(dir.path());
    let traced = Traced {
        share: 1.0,
        requests: 10,
        bound: 1000,
        slowest: vec![
            // Sent at 1,000,000, answered 9,000 µs later; due 3,000 µs before it was sent.
            req(T1, "b7ad6b7169203331", 1_000_000, 12_000, 9_000),
            req(T2, "1111111111111111", 1_999_800, 1_000, 1_000),
            req("1234", "1", 5, 900, 900),
        ],
    };
    let written = write_join(dir.path(), &traced, &spans).unwrap();
    assert_eq!(written.len(), 2);
    let rows = read(&dir.path().join("join.csv"));
    assert_eq!(rows.len(), 3);
    let r = &rows[0];
    let col = |name: &str| JOIN_HEADER.split(',').position(|h| h == name).unwrap();
    assert_eq!(r[col("found")], "true");
    assert_eq!(r[col("spans")], "5");
    assert_eq!(r[col("generator_lag_us")], "3000");
    assert_eq!(r[col("server_service")], "front");
    assert_eq!(r[col("server_us")], "8000");
    // Entry span starts 100 µs after the send and ends 900 µs before the response arrived.
    assert_eq!(r[col("before_server_us")], "100");
    assert_eq!(r[col("after_server_us")], "900");
    assert_eq!(
        r[col("critical_path")],
        "front:GET /:2000 > front:call b:200 > back-b:work:5800"
    );
    // Jaeger's shortened id matches; the comma in the operation survives quoting.
    assert_eq!(rows[1][col("server_operation")], "get, put");
    assert_eq!(rows[1][col("before_server_us")], "200");
    assert_eq!(rows[1][col("after_server_us")], "300");
    // A trace the source never had.
    assert_eq!(rows[2][col("found")], "false");
    assert_eq!(rows[2][col("server_us")], "");

    let summary: HashMap<String, String> = read(&dir.path().join("join_summary.csv"))
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(summary["slow_requests"], "3");
    assert_eq!(summary["found"], "2");
    assert_eq!(summary["latency_mean_us"], "6500.0");
    assert_eq!(summary["server_mean_us"], "4250.0");
    assert_eq!(summary["generator_lag_mean_us"], "1500.0");
    // back-b's 5,800 µs of self time over two requests, against a 6,500 µs mean latency.
    assert_eq!(summary["critical_self_share:back-b"], "0.4462");
    // 10 traced requests: the slowest 1 % is the slowest one, T1.
    assert_eq!(summary["tail_requests"], "1");
    assert_eq!(summary["tail_found"], "1");
    assert_eq!(summary["tail_latency_mean_us"], "12000.0");
    assert_eq!(summary["tail_before_server_mean_us"], "100.0");
    assert_eq!(summary["tail_critical_self_share:back-b"], "0.4833");
}

#[test]
fn a_spans_table_without_its_columns_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let spans = dir.path().join("spans.csv");
    std::fs::write(&spans, "trace_id,span_id\nx,y\n").unwrap();
    let traced = Traced {
        share: 1.0,
        requests: 1,
        bound: 10,
        slowest: vec![req(T1, "1", 10, 5, 5)],
    };
    let e = write_join(dir.path(), &traced, &spans)
        .unwrap_err()
        .to_string();
    assert!(e.contains("spans.csv") && e.contains("parent_id"), "{e}");
}
