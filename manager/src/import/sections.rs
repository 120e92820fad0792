//! The original's deployment, collection and free keys → our top-level sections: `duration`,
//! `results_dir`, `collect`, `kubernetes` (namespace, nodes, pod_spec, replicas, app_img,
//! yaml_repo, interference pod sizes) and `extra`.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::original::{number, scalar_text, text};
use super::sweep::Converted;
use super::{get, map, Notes, Section};

/// What every step of a conversion may look at.
pub(crate) struct Context<'a> {
    /// The original config.
    pub(crate) root: &'a Mapping,
    /// Its file.
    pub(crate) source: &'a Path,
    /// Directory of the new config.
    pub(crate) out_dir: &'a Path,
}

/// Keys of the original that a section below converts (everything else goes to `extra`).
const KNOWN: [&str; 13] = [
    "file_paths",
    "app",
    "port",
    "replicas",
    "namespace",
    "app_img",
    "duration",
    "prometheus_host",
    "jaeger_host",
    "jaeger_entrance",
    "nodes",
    "pod_spec",
    "test_cases",
];

type Bad = (String, String);

/// Every section of our config, in the order they are written.
pub(crate) fn build(
    ctx: &Context<'_>,
    sweep: Converted,
    notes: &mut Notes,
) -> Result<Vec<Section>, Bad> {
    let root = ctx.root;
    let name = experiment_name(ctx.source);
    let mut out = vec![
        Section {
            comment: vec!["experiment name: from the original file's name".into()],
            key: "name",
            value: Value::String(name.clone()),
        },
        Section {
            comment: vec!["the original ran on Kubernetes only".into()],
            key: "backend",
            value: Value::String("kubernetes".into()),
        },
    ];
    match get(root, "duration").and_then(number).filter(|d| *d > 0.0) {
        Some(d) => out.push(Section {
            comment: vec!["from `duration` (seconds). The original had no warm-up: wrk2's first ~10 s calibrate and were measured; here `warmup` (default 1s) runs before the measured window".into()],
            key: "duration",
            value: Value::String(format!("{}s", crate::config::fmt_num(d))),
        }),
        None => notes.add("duration", "missing or not a number of seconds: our default (10s) applies"),
    }
    file_paths(root, notes, &mut out);
    if !sweep.load.is_empty() {
        let mut comment =
            vec!["from test_cases.workload.configs (url, threads, connections, script)".into()];
        comment.extend(sweep.load_comment.iter().cloned());
        out.push(Section {
            comment,
            key: "load",
            value: Value::Mapping(sweep.load.clone()),
        });
    }
    out.push(Section {
        comment: vec![
            "from test_cases: rate = workload.range as total req/s (throughput // rate processes x rate),".into(),
            "rounds = round, interference.<type> = interferences.<type>.range as pods per node,".into(),
            "order = orders reversed (the original listed the innermost dimension first, we list the outermost)".into(),
        ],
        key: "sweep",
        value: Value::Mapping(sweep.sweep.clone()),
    });
    if let Some(c) = collect(root, notes) {
        out.push(Section {
            comment: vec!["from prometheus_host, jaeger_host, jaeger_entrance".into()],
            key: "collect",
            value: c,
        });
    }
    out.push(Section {
        comment: vec![
            "from namespace, file_paths.yaml_repo, app_img, pod_spec, replicas, nodes and the interferences' configs (pod sizes).".into(),
            "Interference pods go to the aefm-interference namespace (the original used `interference`); see docs/kubernetes.md".into(),
        ],
        key: "kubernetes",
        value: kubernetes(root, &name, &sweep.stress_resources, notes),
    });
    if let Some(extra) = extra(root, sweep.extra, notes) {
        out.push(Section {
            comment: vec!["the original's other keys, for handlers (ctx.config.extra) and hooks (AEFM_EXTRA_<KEY>)".into()],
            key: "extra",
            value: extra,
        });
    }
    Ok(out)
}

/// The file's stem with the characters our names allow (`sample_configs`).
fn experiment_name(source: &Path) -> String {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let s = crate::sweep::sanitize(&stem);
    if s.is_empty() {
        "imported".into()
    } else {
        s
    }
}

/// `file_paths.collector_data` → `results_dir`; the others have no counterpart.
fn file_paths(root: &Mapping, notes: &mut Notes, out: &mut Vec<Section>) {
    let Some(Value::Mapping(fp)) = get(root, "file_paths") else {
        return;
    };
    for (k, v) in fp {
        let k = scalar_text(k);
        let key = format!("file_paths.{k}");
        match k.as_str() {
            "collector_data" => match text(v) {
                Some(d) => out.push(Section {
                    comment: vec!["from file_paths.collector_data: each run gets its own <results_dir>/<name>-<timestamp>/ (docs/results.md)".into()],
                    key: "results_dir",
                    value: Value::String(d),
                }),
                None => notes.add(key, "not a path: results go to `results/`"),
            },
            "log" => notes.add(key, "no counterpart: each experiment logs to <experiment dir>/aefm.log (debug level), hooks to hooks.log"),
            "wrk_output_path" => notes.add(key, "no counterpart: each case's load report is cases/<case>/loadgen.json (and loadgen.txt, wrk2's text), its throughput in summary.csv"),
            "yaml_repo" => {} // kubernetes.yaml_repo
            _ => notes.add(key, "no counterpart (handlers can read values you put under extra:)"),
        }
    }
}

/// `prometheus_host`, `jaeger_host` + `jaeger_entrance` → `collect`.
fn collect(root: &Mapping, notes: &mut Notes) -> Option<Value> {
    let mut c = Mapping::new();
    if let Some(p) = get(root, "prometheus_host").and_then(text) {
        c.insert("prometheus".into(), map([("url", Value::String(p))]));
    }
    match (get(root, "jaeger_host").and_then(text), get(root, "jaeger_entrance").and_then(text)) {
        (Some(url), Some(service)) => {
            c.insert("jaeger".into(), map([("url", Value::String(url)), ("service", Value::String(service))]));
        }
        (Some(_), None) => notes.add("jaeger_host", "without jaeger_entrance (the entry service to query): no trace collection; add collect.jaeger with url and service"),
        (None, Some(_)) => notes.add("jaeger_entrance", "without jaeger_host: no trace collection; add collect.jaeger with url and service"),
        (None, None) => {}
    }
    (!c.is_empty()).then_some(Value::Mapping(c))
}

/// The `kubernetes:` section.
fn kubernetes(root: &Mapping, name: &str, stress: &Mapping, notes: &mut Notes) -> Value {
    let mut k = Mapping::new();
    let ns = get(root, "namespace").and_then(text).unwrap_or_else(|| {
        notes.add(
            "namespace",
            format!("missing (the original required it): the namespace is {name:?}"),
        );
        name.to_string()
    });
    k.insert("namespace".into(), Value::String(ns));
    k.insert("yaml_repo".into(), Value::String(yaml_repo(root, notes)));
    if let Some(img) = get(root, "app_img").and_then(text) {
        k.insert("app_image".into(), Value::String(img));
    }
    if let Some(Value::Mapping(p)) = get(root, "pod_spec") {
        let mut r = Mapping::new();
        for (from, to) in [("cpu_size", "cpu"), ("mem_size", "memory")] {
            if let Some(v) = get(p, from).and_then(text) {
                r.insert(to.into(), Value::String(v));
            }
        }
        k.insert("pod_resources".into(), Value::Mapping(r));
    }
    if let Some(Value::Mapping(r)) = get(root, "replicas") {
        let mut out = Mapping::new();
        for (n, v) in r {
            match number(v).filter(|v| *v >= 0.0 && v.fract() == 0.0) {
                Some(v) => {
                    out.insert(n.clone(), Value::from(v as i64));
                }
                None => notes.add(
                    format!("replicas.{}", scalar_text(n)),
                    format!("{} is not a replica count: left out", scalar_text(v)),
                ),
            }
        }
        k.insert("replicas".into(), Value::Mapping(out));
    }
    if let Some(nodes) = nodes(root, notes) {
        k.insert("nodes".into(), nodes);
    }
    if !stress.is_empty() {
        k.insert(
            "interference".into(),
            map([("resources", Value::Mapping(stress.clone()))]),
        );
    }
    Value::Mapping(k)
}

/// `file_paths.yaml_repo`; the original's bundled repositories (`$MODULE_DEFAULT/<app>`) are not
/// part of AEFM, so they become a directory of that name next to the config, with a note.
fn yaml_repo(root: &Mapping, notes: &mut Notes) -> String {
    let repo = get(root, "file_paths")
        .and_then(Value::as_mapping)
        .and_then(|fp| get(fp, "yaml_repo"))
        .and_then(text);
    match repo {
        Some(r) if r.contains("$MODULE_DEFAULT") => {
            let app = r.trim_start_matches("$MODULE_DEFAULT").trim_matches('/');
            let dir = if app.is_empty() {
                "yaml_repo".to_string()
            } else {
                app.to_string()
            };
            notes.add("file_paths.yaml_repo", format!("{r:?} is the original's bundled manifests, which are not part of AEFM: kubernetes.yaml_repo is {dir:?} (relative to the new config) until you point it at a folder with infra/ and under_test/ (`aefm init --app <app> --upstream <checkout>` builds one from the application's own repository)"));
            dir
        }
        Some(r) => r,
        None => {
            notes.add("file_paths.yaml_repo", "missing: kubernetes.yaml_repo is \"yaml_repo\" until you point it at a folder with infra/ and under_test/");
            "yaml_repo".into()
        }
    }
}

/// `nodes[]` with their roles (testbed, infra; others left out).
fn nodes(root: &Mapping, notes: &mut Notes) -> Option<Value> {
    let Some(Value::Sequence(list)) = get(root, "nodes") else {
        return None;
    };
    let mut out = Vec::new();
    for (i, n) in list.iter().enumerate() {
        let key = format!("nodes[{i}]");
        let Some(m) = n.as_mapping() else {
            notes.add(key, "not a mapping {name, roles, ip}: left out");
            continue;
        };
        let Some(name) = get(m, "name").and_then(text) else {
            notes.add(key, "has no name: left out");
            continue;
        };
        let mut roles = Vec::new();
        for r in get(m, "roles")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            match scalar_text(r).as_str() {
                role @ ("testbed" | "infra" | "loadgen") => roles.push(Value::String(role.into())),
                other => notes.add(
                    format!("{key}.roles"),
                    format!("{other:?} is not a role (testbed, infra, loadgen): left out"),
                ),
            }
        }
        let mut node = vec![("name", Value::String(name))];
        if let Some(ip) = get(m, "ip").and_then(text) {
            node.push(("ip", Value::String(ip)));
        }
        node.push(("roles", Value::Sequence(roles)));
        out.push(map(node));
    }
    Some(Value::Sequence(out))
}

/// Top-level keys the original kept as free attributes, `app` and `port` (only its data-init
/// scripts read them) and custom lists it never varied.
fn extra(root: &Mapping, more: Vec<(String, Value)>, notes: &mut Notes) -> Option<Value> {
    let mut m = Mapping::new();
    for (k, v) in root {
        let ks = scalar_text(k);
        if !KNOWN.contains(&ks.as_str()) {
            m.insert(Value::String(ks), v.clone());
        }
    }
    for key in ["app", "port"] {
        if let Some(v) = get(root, key) {
            m.insert(Value::String(key.into()), v.clone());
            notes.add(key, format!("used only by the original's data-init scripts (social graph, movie database) after a restart, which AEFM does not ship: kept as extra.{key} (AEFM_EXTRA_{}); run your data init as a hook, e.g. `hooks: [{{on: init_environment, run: \"python3 <checkout>/socialNetwork/scripts/init_social_graph.py ...\"}}]`, after the deploy", key.to_uppercase()));
        }
    }
    for (k, v) in more {
        let k = if m.contains_key(k.as_str()) {
            format!("test_cases_{k}")
        } else {
            k
        };
        m.insert(Value::String(k), v);
    }
    (!m.is_empty()).then_some(Value::Mapping(m))
}
