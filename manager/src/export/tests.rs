//! The export against hand-built experiment directories: headers as the original wrote them,
//! rows mapped case by case, what is left out and why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;
use crate::results::journal::{self, Entry, Status};
use crate::validity::{Reason, Verdict};

/// The original's columns, verbatim from its spec (aefm-original.md §6.3-6.5 and §10).
const ORIGINAL_THROUGHPUT: &[&str] = &["real_throughput"];
const ORIGINAL_RAW: &[&str] = &[
    "trace_id",
    "parent_id",
    "trace_time",
    "start_time",
    "end_time",
    "child_id",
    "child_operation",
    "parent_operation",
    "child_ms",
    "child_pod",
    "parent_ms",
    "parent_pod",
    "parent_duration",
    "child_duration",
    "merged_child_duration",
    "step",
    "exact_parent_duration",
];
const ORIGINAL_STATISTICAL: &[&str] = &["microservice", "pod", "p50", "p95"];
const ORIGINAL_END_TO_END: &[&str] = &["trace_id", "trace_duration"];
const ORIGINAL_HARDWARE: &[&str] = &["microservice", "pod", "cpu_usage", "mem_usage"];
/// Dropped on purpose: the corrected self time has no steps.
const DROPPED: &[&str] = &["merged_child_duration", "step"];

const EDGES: &str = "trace_id,parent_id,trace_time,start_time,end_time,child_id,child_operation,parent_operation,child_ms,child_pod,parent_ms,parent_pod,parent_duration,child_duration,exact_parent_duration,child_self_duration,ref_type\n\
t1,a,1000,1010,1510,b,\"GET /x, y\",front,back,back-0,front,front-0,900,500,400,500,CHILD_OF\n\
t1,a,1000,1020,1320,c,call,front,back2,back2-0,front,front-0,900,300,400,300,CHILD_OF\n";
const PODS: &str = "microservice,pod,count,errors,self_mean,self_p50,self_p90,self_p95,self_p99,total_mean,total_p50,total_p90,total_p95,total_p99\n\
front,front-0,1,0,400,400,400,400,400,900,900,900,900,900\n";
const E2E: &str =
    "trace_id,trace_time,trace_duration,extent,spans,roots,orphans,root_ms,root_operation,errors\n\
t1,1000,900,900,3,1,0,front,front,0\n";

/// An experiment directory being built.
struct Fixture {
    dir: PathBuf,
    index: usize,
}

impl Fixture {
    fn new(root: &Path, name: &str) -> Fixture {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(journal::FILE), "").unwrap();
        Fixture { dir, index: 0 }
    }

    /// Adds a case: `values` as (dimension, case.json value); journal values are their display.
    fn case(
        &mut self,
        values: &[(&str, serde_json::Value)],
        status: Status,
        valid: bool,
    ) -> PathBuf {
        let display = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "none".to_string(),
            serde_json::Value::Object(o) => o["label"].as_str().unwrap().to_string(),
            serde_json::Value::String(s) => s.clone(),
            n => crate::config::fmt_num(n.as_f64().unwrap()),
        };
        let labels: Vec<(String, String)> = values
            .iter()
            .map(|(n, v)| (n.to_string(), display(v)))
            .collect();
        let name = labels
            .iter()
            .map(|(n, v)| format!("{n}-{v}"))
            .collect::<Vec<_>>()
            .join("_");
        let rate = values
            .iter()
            .find(|(n, _)| *n == "rate")
            .unwrap()
            .1
            .as_f64()
            .unwrap();
        let entry = Entry {
            values: labels,
            offered: rate,
            achieved: Some(rate * 0.99),
            verdict: (status == Status::Ok).then(|| {
                if valid {
                    Verdict::default()
                } else {
                    Verdict::from_reasons(vec![Reason::new("rate_below_offered", "slow")])
                }
            }),
            ..Entry::sample(&name, self.index, status)
        };
        self.index += 1;
        journal::append(&self.dir, &entry).unwrap();
        let case_dir = self.dir.join("cases").join(&name);
        std::fs::create_dir_all(&case_dir).unwrap();
        let pairs: Vec<serde_json::Value> = values.iter().map(|(n, v)| json!([n, v])).collect();
        let case_json = json!({"case": {"index": entry.index, "name": name, "values": pairs}, "status": entry.status});
        std::fs::write(case_dir.join("case.json"), case_json.to_string()).unwrap();
        case_dir
    }

    fn traces(case: &Path) {
        std::fs::write(case.join("edges.csv"), EDGES).unwrap();
        std::fs::write(case.join("pods.csv"), PODS).unwrap();
        std::fs::write(case.join("end_to_end.csv"), E2E).unwrap();
    }
}

fn cpu90() -> serde_json::Value {
    json!({"kind": "cpu", "load": 90.0, "label": "cpu-90"})
}

fn options(dirs: &[&Path], out: &Path) -> Options {
    Options {
        dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
        out: out.to_path_buf(),
        format: Format::Original,
        include_invalid: false,
        force: false,
    }
}

/// Header and rows (column -> value) of an exported file.
fn read(out: &Path, name: &str) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let mut rd = csv::Reader::from_path(out.join(name)).unwrap();
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    let rows = rd
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect();
    (header, rows)
}

/// Two ok cases (no interference, cpu-90) of a traced experiment.
fn two_cases(root: &Path) -> Fixture {
    let mut f = Fixture::new(root, "exp-1");
    for stress in [serde_json::Value::Null, cpu90()] {
        let c = f.case(
            &[
                ("round", json!(1.0)),
                ("stress", stress),
                ("rate", json!(100.0)),
            ],
            Status::Ok,
            true,
        );
        Fixture::traces(&c);
    }
    f
}

#[test]
fn headers_are_the_originals_with_the_test_case_columns_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let f = two_cases(tmp.path());
    let out = tmp.path().join("out");
    export(&options(&[&f.dir], &out)).unwrap();
    let raw: Vec<&str> = ORIGINAL_RAW
        .iter()
        .copied()
        .filter(|c| !DROPPED.contains(c))
        .collect();
    for (file, original) in [
        (files::THROUGHPUT, ORIGINAL_THROUGHPUT),
        (files::RAW, &raw[..]),
        (files::STATISTICAL, ORIGINAL_STATISTICAL),
        (files::END_TO_END, ORIGINAL_END_TO_END),
        (files::HARDWARE, ORIGINAL_HARDWARE),
    ] {
        let (header, _) = read(&out, file);
        let mut want: Vec<&str> = original.to_vec();
        want.extend(["round", "throughput", "cpu"]);
        assert_eq!(header, want, "{file}");
    }
}

#[test]
fn rows_are_copied_per_case_with_their_test_case_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let f = two_cases(tmp.path());
    let out = tmp.path().join("out");
    let report = export(&options(&[&f.dir], &out)).unwrap();
    assert_eq!(report.cases, 2);

    let (_, tp) = read(&out, files::THROUGHPUT);
    assert_eq!(tp.len(), 2);
    assert_eq!(tp[0]["real_throughput"], "99");
    assert_eq!(tp[0]["throughput"], "100");
    assert_eq!(tp[0]["round"], "1");
    assert_eq!(tp[0]["cpu"], "none");
    assert_eq!(tp[1]["cpu"], "cpu-90");

    let (_, raw) = read(&out, files::RAW);
    assert_eq!(raw.len(), 4, "two edges per case");
    assert_eq!(
        raw[0]["child_operation"], "GET /x, y",
        "quoted cell survives"
    );
    assert_eq!(raw[0]["exact_parent_duration"], "400");
    assert_eq!(raw[0]["child_duration"], "500");
    assert_eq!(raw[0]["start_time"], "1010");
    assert_eq!(raw[1]["child_ms"], "back2");
    assert_eq!(
        raw.iter().map(|r| r["cpu"].as_str()).collect::<Vec<_>>(),
        ["none", "none", "cpu-90", "cpu-90"]
    );

    let (_, stats) = read(&out, files::STATISTICAL);
    assert_eq!(stats.len(), 2);
    assert_eq!(
        (stats[0]["microservice"].as_str(), stats[0]["pod"].as_str()),
        ("front", "front-0")
    );
    assert_eq!(
        (stats[0]["p50"].as_str(), stats[0]["p95"].as_str()),
        ("400", "400")
    );

    let (_, e2e) = read(&out, files::END_TO_END);
    assert_eq!(e2e.len(), 2);
    assert_eq!(e2e[1]["trace_duration"], "900");
    assert_eq!(e2e[1]["cpu"], "cpu-90");
    assert!(out.join(NOTES).is_file());
}

#[test]
fn only_ok_and_valid_cases_unless_invalid_ones_are_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let mut f = Fixture::new(tmp.path(), "exp");
    let v = |rate: f64| [("round", json!(1.0)), ("rate", json!(rate))];
    f.case(&v(10.0), Status::Ok, true);
    f.case(&v(20.0), Status::Ok, false);
    f.case(&v(30.0), Status::Failed, false);
    let out = tmp.path().join("out");
    let report = export(&options(&[&f.dir], &out)).unwrap();
    let (header, rows) = read(&out, files::THROUGHPUT);
    assert_eq!(
        header,
        ["real_throughput", "round", "throughput"],
        "no `valid` column"
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["throughput"], "10");
    let notes = report.notes.join("\n");
    assert!(notes.contains("1 failed case(s) not exported"), "{notes}");
    assert!(notes.contains("pass --include-invalid"), "{notes}");

    let with_invalid = Options {
        include_invalid: true,
        force: true,
        ..options(&[&f.dir], &out)
    };
    export(&with_invalid).unwrap();
    let (_, rows) = read(&out, files::THROUGHPUT);
    let rates: Vec<&str> = rows.iter().map(|r| r["throughput"].as_str()).collect();
    assert_eq!(rates, ["10", "20"], "invalid included, failed never");
}

#[test]
fn a_case_without_traces_adds_no_trace_rows_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let mut f = Fixture::new(tmp.path(), "exp");
    let traced = f.case(
        &[("round", json!(1.0)), ("rate", json!(5.0))],
        Status::Ok,
        true,
    );
    Fixture::traces(&traced);
    f.case(
        &[("round", json!(2.0)), ("rate", json!(5.0))],
        Status::Ok,
        true,
    );
    let out = tmp.path().join("out");
    let report = export(&options(&[&f.dir], &out)).unwrap();
    assert_eq!(read(&out, files::THROUGHPUT).1.len(), 2);
    let (_, raw) = read(&out, files::RAW);
    assert_eq!(raw.len(), 2);
    assert!(raw.iter().all(|r| r["round"] == "1"));
    let note = report
        .notes
        .iter()
        .find(|n| n.contains("round-2"))
        .expect("a note on the untraced case");
    assert!(
        note.contains("edges.csv, pods.csv, end_to_end.csv"),
        "{note}"
    );
    let text = std::fs::read_to_string(out.join(NOTES)).unwrap();
    assert!(text.contains(note.as_str()), "{text}");
}

#[test]
fn hardware_is_the_peak_percent_of_the_limit_per_pod() {
    let tmp = tempfile::tempdir().unwrap();
    let mut f = Fixture::new(tmp.path(), "exp");
    let c = f.case(
        &[("round", json!(1.0)), ("rate", json!(5.0))],
        Status::Ok,
        true,
    );
    std::fs::write(
        c.join("prometheus.csv"),
        "timestamp,source,metric,labels,value\n\
         1,prometheus,pod_cpu_limit_share,container=app;pod=web-7d9f-x2x,0.25\n\
         2,prometheus,pod_cpu_limit_share,container=app;pod=web-7d9f-x2x,0.5\n\
         3,prometheus,pod_cpu_limit_share,container=app;pod=web-7d9f-x2x,NaN\n\
         1,prometheus,pod_memory_limit_share,pod=web-7d9f-x2x,0.125\n\
         1,prometheus,pod_cpu_limit_share,container=a;pod=db-0,0.1\n\
         1,prometheus,pod_cpu_limit_share,container=b;pod=db-0,0.2\n\
         1,prometheus,pod_memory_limit_share,pod=db-0,0.75\n\
         1,prometheus,pod_cpu_cores,container=app;pod=web-7d9f-x2x,9\n",
    )
    .unwrap();
    std::fs::write(c.join("pod_map.csv"), "pod,service,node\ndb-0,db,n1\n").unwrap();
    let out = tmp.path().join("out");
    let report = export(&options(&[&f.dir], &out)).unwrap();
    let (_, hw) = read(&out, files::HARDWARE);
    assert_eq!(hw.len(), 2);
    let db = &hw[0];
    assert_eq!(
        (db["microservice"].as_str(), db["pod"].as_str()),
        ("db", "db-0")
    );
    assert_eq!(db["cpu_usage"], "", "two containers: no pod share");
    assert_eq!(db["mem_usage"], "75");
    let web = &hw[1];
    assert_eq!(
        web["microservice"], "web",
        "the original's name rule without a pod map"
    );
    assert_eq!(web["cpu_usage"], "50", "the peak, NaN left out");
    assert_eq!(web["mem_usage"], "12.5");
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("pod db-0 has 2 containers")));
}

#[test]
fn without_prometheus_the_hardware_file_has_its_header_only() {
    let tmp = tempfile::tempdir().unwrap();
    let f = two_cases(tmp.path());
    let out = tmp.path().join("out");
    let report = export(&options(&[&f.dir], &out)).unwrap();
    assert!(read(&out, files::HARDWARE).1.is_empty());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("hardware_data.csv has its header only")),
        "{:?}",
        report.notes
    );
}

#[test]
fn experiments_merge_with_the_union_of_their_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let a = two_cases(tmp.path());
    let mut b = Fixture::new(tmp.path(), "exp-2");
    let membw = json!({"kind": "membw", "rate": "max", "label": "membw-max"});
    b.case(
        &[
            ("round", json!(1.0)),
            ("stress", membw),
            ("pod", json!("big")),
            ("rate", json!(50.0)),
        ],
        Status::Ok,
        true,
    );
    let out = tmp.path().join("out");
    let report = export(&options(&[&a.dir, &b.dir], &out)).unwrap();
    let (header, rows) = read(&out, files::THROUGHPUT);
    assert_eq!(
        header,
        [
            "real_throughput",
            "round",
            "throughput",
            "cpu",
            "mem_bandwidth",
            "custom_pod"
        ]
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (
            rows[0]["mem_bandwidth"].as_str(),
            rows[0]["custom_pod"].as_str()
        ),
        ("none", "")
    );
    assert_eq!(
        (rows[2]["cpu"].as_str(), rows[2]["mem_bandwidth"].as_str()),
        ("none", "membw-max")
    );
    assert_eq!(rows[2]["custom_pod"], "big");
    assert!(report.notes.iter().any(|n| n.contains("`custom_pod`")));
}

#[test]
fn two_dimensions_of_one_kind_share_its_column() {
    let tmp = tempfile::tempdir().unwrap();
    let mut f = Fixture::new(tmp.path(), "exp");
    let cpu = |l: &str| json!({"kind": "cpu", "load": 10.0, "label": l});
    f.case(
        &[
            ("round", json!(1.0)),
            ("near", cpu("cpu-a")),
            ("far", cpu("cpu-b")),
            ("rate", json!(5.0)),
        ],
        Status::Ok,
        true,
    );
    f.case(
        &[
            ("round", json!(1.0)),
            ("near", serde_json::Value::Null),
            ("far", cpu("cpu-b")),
            ("rate", json!(5.0)),
        ],
        Status::Ok,
        true,
    );
    let out = tmp.path().join("out");
    export(&options(&[&f.dir], &out)).unwrap();
    let (header, rows) = read(&out, files::THROUGHPUT);
    assert_eq!(header, ["real_throughput", "round", "throughput", "cpu"]);
    assert_eq!(rows[0]["cpu"], "cpu-a+cpu-b");
    assert_eq!(rows[1]["cpu"], "cpu-b");
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let f = two_cases(tmp.path());
    let out = tmp.path().join("out");
    let e = "csv".parse::<Format>().unwrap_err().to_string();
    assert!(
        e.contains("\"csv\"") && e.contains("supported formats: original"),
        "{e}"
    );

    let e = export(&options(&[&f.dir, tmp.path()], &out)).unwrap_err();
    assert!(matches!(e, ExportError::NotResults { .. }), "{e}");
    assert!(
        e.to_string().contains(&tmp.path().display().to_string()),
        "{e}"
    );

    let e = export(&options(&[&f.dir, &f.dir.join(".")], &out)).unwrap_err();
    assert!(matches!(e, ExportError::Duplicate { .. }), "{e}");

    export(&options(&[&f.dir], &out)).unwrap();
    let e = export(&options(&[&f.dir], &out)).unwrap_err().to_string();
    assert!(
        e.contains("throughput_data.csv") && e.contains("--force"),
        "{e}"
    );

    std::fs::write(
        f.dir.join("cases/round-1_stress-none_rate-100/edges.csv"),
        "trace_id\nx\n",
    )
    .unwrap();
    let forced = Options {
        force: true,
        ..options(&[&f.dir], &out)
    };
    let before = std::fs::read_to_string(out.join(files::THROUGHPUT)).unwrap();
    let e = export(&forced).unwrap_err().to_string();
    assert!(
        e.contains("edges.csv") && e.contains("no column `parent_id`"),
        "{e}"
    );
    // Nothing replaced, nothing left behind.
    assert_eq!(
        std::fs::read_to_string(out.join(files::THROUGHPUT)).unwrap(),
        before
    );
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".aefm-tmp")),
        "{names:?}"
    );
}
