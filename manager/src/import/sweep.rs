//! `test_cases` → `sweep` and `load`: the cartesian product's dimensions and their order, the
//! workload's per-process rate folded into total rates, rounds, interference ranges as pod counts
//! with per-kind pod sizes, and custom dimensions.

use serde_yaml::{Mapping, Value};

use super::original::{num_value, number, range, scalar_text, text};
use super::sections::Context;
use super::{get, map, Notes};
use crate::config::kubernetes::MEMCAP_HEADROOM;
use crate::kubernetes::quantity::parse_quantity;

/// What `test_cases` became.
#[derive(Default)]
pub(crate) struct Converted {
    /// Our `sweep:`.
    pub(crate) sweep: Mapping,
    /// Our `load:`.
    pub(crate) load: Mapping,
    /// Comment lines explaining `load:`.
    pub(crate) load_comment: Vec<String>,
    /// `kubernetes.interference.resources`: kind → `{cpu, memory}`.
    pub(crate) stress_resources: Mapping,
    /// Values for `extra:` (custom lists the original never varied).
    pub(crate) extra: Vec<(String, Value)>,
}

/// Our stressor kind of an original interference type.
fn kind_of(inf_type: &str) -> Option<&'static str> {
    Some(match inf_type {
        "cpu" => "cpu",
        "mem_capacity" => "memcap",
        "mem_bandwidth" => "membw",
        "network" => "net",
        _ => return None,
    })
}

type Bad = (String, String);

/// Converts `test_cases` (required by the original).
pub(crate) fn convert(
    root: &Mapping,
    ctx: &Context<'_>,
    notes: &mut Notes,
) -> Result<Converted, Bad> {
    let mut out = Converted::default();
    let Some(Value::Mapping(tc)) = get(root, "test_cases") else {
        return Err((
            "test_cases".into(),
            "missing (or not a mapping): the original needs it to generate any test case".into(),
        ));
    };
    let orders: Vec<String> = match get(tc, "orders") {
        Some(Value::Sequence(s)) => s.iter().map(scalar_text).collect(),
        _ => {
            return Err((
                "test_cases.orders".into(),
                "missing: a list of dimensions, innermost first".into(),
            ))
        }
    };
    let mut dims: Vec<String> = Vec::new(); // our names, in the original's (innermost-first) order
    let workload = workload(
        tc,
        orders.iter().any(|o| o == "workload"),
        ctx,
        notes,
        &mut out,
    )?;
    out.sweep.insert("rate".into(), workload);
    let rounds = rounds(tc, orders.iter().any(|o| o == "round"), notes)?;
    out.sweep.insert("rounds".into(), Value::from(rounds));
    let interference = interferences(tc, &orders, notes, &mut out)?;
    let custom = customs(tc, &orders, notes, &mut out)?;
    for (i, o) in orders.iter().enumerate() {
        let ours = match o.as_str() {
            "workload" => "rate".to_string(),
            "round" => "round".to_string(),
            name if interference.contains_key(name) || custom.contains_key(name) => name.into(),
            _ => {
                notes.add(
                    format!("test_cases.orders[{i}]"),
                    format!("{o:?} is neither workload, round, an interference type nor a list under test_cases (the original failed on it): left out"),
                );
                continue;
            }
        };
        if dims.contains(&ours) {
            notes.add(
                format!("test_cases.orders[{i}]"),
                format!("{o:?} is listed twice: kept once"),
            );
            continue;
        }
        dims.push(ours);
    }
    if !interference.is_empty() {
        out.sweep
            .insert("interference".into(), Value::Mapping(interference));
    }
    if !custom.is_empty() {
        out.sweep.insert("custom".into(), Value::Mapping(custom));
    }
    // The original listed the innermost (fastest-changing) dimension first; ours lists the
    // outermost first.
    let order: Vec<Value> = dims.into_iter().rev().map(Value::String).collect();
    out.sweep.insert("order".into(), Value::Sequence(order));
    Ok(out)
}

/// `test_cases.workload` → `sweep.rate` (totals) and `load.*`.
fn workload(
    tc: &Mapping,
    in_orders: bool,
    ctx: &Context<'_>,
    notes: &mut Notes,
    out: &mut Converted,
) -> Result<Value, Bad> {
    const KEY: &str = "test_cases.workload";
    let Some(Value::Mapping(w)) = get(tc, "workload") else {
        return Err((
            KEY.into(),
            "missing: the original's workload (configs and range)".into(),
        ));
    };
    let empty = Mapping::new();
    let configs = match get(w, "configs") {
        Some(Value::Mapping(c)) => c,
        _ => &empty,
    };
    load_settings(configs, ctx, notes, out);
    let raw = get(w, "range").unwrap_or(&Value::Null);
    let values = range(raw, &format!("{KEY}.range"))?.ok_or_else(|| {
        (
            format!("{KEY}.range"),
            "is null: no throughput to offer".to_string(),
        )
    })?;
    let totals: Vec<f64> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            number(v).ok_or_else(|| {
                (
                    format!("{KEY}.range[{i}]"),
                    format!("{} is not a number", scalar_text(v)),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    if !in_orders {
        notes.add(
            "test_cases.orders",
            "has no `workload`: the original sent no load at all; here every case needs a rate, so the workload range is swept as `rate` (innermost)",
        );
    }
    let per_process = get(configs, "rate").and_then(number).filter(|r| *r > 0.0);
    let Some(r) = per_process else {
        notes.add(
            format!("{KEY}.configs.rate"),
            "missing or not > 0 (the original divided by it): the range is taken as total rates",
        );
        return Ok(Value::Sequence(totals.into_iter().map(num_value).collect()));
    };
    let folded = fold(&totals, r, notes);
    let max_processes = totals.iter().map(|t| (t / r).floor()).fold(1.0, f64::max);
    connections(configs, max_processes, r, out);
    if folded == totals && matches!(raw, Value::Mapping(_)) {
        return Ok(raw.clone());
    }
    Ok(Value::Sequence(folded.into_iter().map(num_value).collect()))
}

/// The totals the original really offered: `throughput // rate` processes at `rate` each, with
/// a note for every value that changes, is zero (left out) or repeats (kept once).
fn fold(totals: &[f64], r: f64, notes: &mut Notes) -> Vec<f64> {
    const KEY: &str = "test_cases.workload.range";
    let mut out: Vec<f64> = Vec::new();
    let (mut changed, mut zero, mut repeated) = (Vec::new(), Vec::new(), Vec::new());
    for &t in totals {
        let total = (t / r).floor() * r;
        let (ts, tot) = (crate::config::fmt_num(t), crate::config::fmt_num(total));
        if total <= 0.0 {
            zero.push(ts);
            continue;
        }
        if total != t {
            changed.push(format!("{ts} -> {tot}"));
        }
        if out.contains(&total) {
            repeated.push(tot);
            continue;
        }
        out.push(total);
    }
    let rs = crate::config::fmt_num(r);
    if !changed.is_empty() {
        notes.add(KEY, format!("the original ran throughput // rate wrk processes at {rs} req/s each, so it offered less than written: {}; these totals are what this config offers", changed.join(", ")));
    }
    if !zero.is_empty() {
        notes.add(KEY, format!("{} is below configs.rate {rs}: the original started no wrk process and offered no load; left out", zero.join(", ")));
    }
    if !repeated.is_empty() {
        notes.add(
            KEY,
            format!(
                "several throughputs gave the same total ({}); each total is swept once",
                repeated.join(", ")
            ),
        );
    }
    out
}

/// `threads`, `url` and `script` of the workload's configs into `load:`.
fn load_settings(configs: &Mapping, ctx: &Context<'_>, notes: &mut Notes, out: &mut Converted) {
    const KEY: &str = "test_cases.workload.configs";
    if let Some(u) = get(configs, "url").and_then(text) {
        out.load.insert("url".into(), Value::String(u));
    } else {
        notes.add(
            format!("{KEY}.url"),
            "missing: set load.url to the application's entry point",
        );
    }
    if let Some(t) = get(configs, "threads")
        .and_then(number)
        .filter(|t| *t >= 1.0)
    {
        out.load.insert("threads".into(), num_value(t.floor()));
    }
    let Some(script) = get(configs, "script").and_then(text) else {
        return;
    };
    if script.contains("$MODULE_DEFAULT") {
        notes.add(format!("{KEY}.script"), format!("{script:?} is one of the original's bundled wrk scripts, which are not part of AEFM: set load.script to the script in your checkout of the application (DeathStarBench's <app>/wrk2/scripts/...), or start from `aefm init --app <app> --upstream <checkout>`, which finds it"));
        out.load_comment
            .push(format!("script: was {script} (see the notes at the end)"));
    } else if ctx.out_dir.join(&script).is_file() {
        out.load.insert("script".into(), Value::String(script));
    } else {
        notes.add(format!("{KEY}.script"), format!("{script} does not exist relative to the new config's directory ({}): set load.script to where it is", ctx.out_dir.display()));
    }
}

/// `connections`: the original opened `connections` per wrk process; one generator keeps as many
/// as the largest case's processes did, so the highest rate is not starved of connections.
fn connections(configs: &Mapping, max_processes: f64, r: f64, out: &mut Converted) {
    let Some(c) = get(configs, "connections")
        .and_then(number)
        .filter(|c| *c >= 1.0)
    else {
        return;
    };
    let total = (c.floor() * max_processes).max(1.0);
    let threads = out.load.get("threads").and_then(number).unwrap_or(1.0);
    out.load
        .insert("connections".into(), num_value(total.max(threads)));
    out.load_comment.push(format!(
        "connections: the original opened {} per wrk process and ran up to {} processes (throughput // rate {}); one generator keeps that many open for every rate",
        crate::config::fmt_num(c.floor()), crate::config::fmt_num(max_processes), crate::config::fmt_num(r)
    ));
    out.load_comment
        .push("threads: per process in the original; here the generator's threads in all".into());
}

/// `test_cases.round` → `sweep.rounds` (a count; the original's values were labels).
fn rounds(tc: &Mapping, in_orders: bool, notes: &mut Notes) -> Result<usize, Bad> {
    let values = range(get(tc, "round").unwrap_or(&Value::Null), "test_cases.round")?;
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        notes.add(
            "test_cases.round",
            "missing or empty (the original required it): one round",
        );
        return Ok(1);
    };
    if !in_orders {
        if values.len() > 1 {
            notes.add(
                "test_cases.round",
                "not in test_cases.orders, so the original never repeated a case: one round",
            );
        }
        return Ok(1);
    }
    let labels: Vec<String> = values.iter().map(scalar_text).collect();
    let expected: Vec<String> = (1..=values.len()).map(|i| i.to_string()).collect();
    if labels != expected {
        notes.add(
            "test_cases.round",
            format!(
                "rounds are numbered 1..{} here; the original labelled them {}",
                values.len(),
                labels.join(", ")
            ),
        );
    }
    Ok(values.len())
}

/// `test_cases.interferences` → `sweep.interference.<type>` levels (pods per node) and the
/// per-kind pod sizes.
fn interferences(
    tc: &Mapping,
    orders: &[String],
    notes: &mut Notes,
    out: &mut Converted,
) -> Result<Mapping, Bad> {
    let mut dims = Mapping::new();
    let Some(Value::Mapping(infs)) = get(tc, "interferences") else {
        return Ok(dims);
    };
    for (name, spec) in infs {
        let name = scalar_text(name);
        let key = format!("test_cases.interferences.{name}");
        let Some(kind) = kind_of(&name) else {
            notes.add(key, "not an interference type of the original (cpu, mem_capacity, mem_bandwidth, network; it failed on others): left out");
            continue;
        };
        if !orders.contains(&name) {
            notes.add(
                key,
                "not in test_cases.orders, so the original never started it: left out",
            );
            continue;
        }
        let empty = Mapping::new();
        let spec = spec.as_mapping().unwrap_or(&empty);
        let configs = get(spec, "configs")
            .and_then(Value::as_mapping)
            .unwrap_or(&empty);
        let Some(values) = range(
            get(spec, "range").unwrap_or(&Value::Null),
            &format!("{key}.range"),
        )?
        else {
            notes.add(
                format!("{key}.range"),
                "is null (the original crashed on it): left out",
            );
            continue;
        };
        let pod = pod_size(kind, configs, &key, notes);
        let mut levels = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let n = number(v)
                .filter(|n| *n >= 0.0 && n.fract() == 0.0)
                .ok_or_else(|| {
                    (
                        format!("{key}.range[{i}]"),
                        format!("{} is not a number of pods (0, 1, 2, ...)", scalar_text(v)),
                    )
                })?;
            levels.push(level(kind, n as u64, &pod));
        }
        out.stress_resources.insert(kind.into(), pod.resources);
        dims.insert(Value::String(name), Value::Sequence(levels));
    }
    Ok(dims)
}

/// One kind's pod size and what its levels need from it.
struct PodSize {
    resources: Value,
    memcap_size: Option<String>,
    bandwidth: Option<String>,
}

/// `configs.cpu_size`/`mem_size` → the kind's pod size (requests = limits, as the original);
/// memcap fills the pod's memory but for the stressor's own headroom.
fn pod_size(kind: &str, configs: &Mapping, key: &str, notes: &mut Notes) -> PodSize {
    let cpu = get(configs, "cpu_size").and_then(text);
    let mut memory = get(configs, "mem_size").and_then(text);
    let mut memcap_size = None;
    if kind == "memcap" {
        let bytes = memory.as_deref().and_then(parse_quantity);
        let Some(bytes) = bytes else {
            notes.add(format!("{key}.configs.mem_size"), "missing or not a quantity: each pod holds 512Mi (kubernetes.interference.memory) minus the stressor's headroom");
            memory = Some("512Mi".into());
            return memcap_pod(kind, cpu, memory, 512 << 20);
        };
        let mib = ((bytes - MEMCAP_HEADROOM as f64) / 1048576.0).floor();
        if mib < 32.0 {
            notes.add(
                format!("{key}.configs.mem_size"),
                format!(
                    "{} leaves no room beside the stressor's own {} MiB: pods get 64Mi",
                    memory.clone().unwrap_or_default(),
                    MEMCAP_HEADROOM >> 20
                ),
            );
            memory = Some("64Mi".into());
            return memcap_pod(kind, cpu, memory, 64 << 20);
        }
        memcap_size = Some(format!("{}MiB", mib as u64));
    }
    let bandwidth = (kind == "net")
        .then(|| get(configs, "throughput").and_then(text))
        .flatten();
    PodSize {
        resources: resources(cpu, memory),
        memcap_size,
        bandwidth,
    }
}

fn memcap_pod(kind: &str, cpu: Option<String>, memory: Option<String>, bytes: u64) -> PodSize {
    debug_assert_eq!(kind, "memcap");
    PodSize {
        resources: resources(cpu, memory),
        memcap_size: Some(format!("{}MiB", (bytes - MEMCAP_HEADROOM) >> 20)),
        bandwidth: None,
    }
}

fn resources(cpu: Option<String>, memory: Option<String>) -> Value {
    let mut m = Mapping::new();
    if let Some(c) = cpu {
        m.insert("cpu".into(), Value::String(c));
    }
    if let Some(mem) = memory {
        m.insert("memory".into(), Value::String(mem));
    }
    Value::Mapping(m)
}

/// One level: `none` for 0 pods, else the kind with `pods` (net: parallel streams of the ring).
fn level(kind: &str, n: u64, pod: &PodSize) -> Value {
    if n == 0 {
        return Value::String("none".into());
    }
    let mut pairs = vec![("kind", Value::String(kind.into()))];
    match kind {
        "net" => {
            let bw = pod
                .bandwidth
                .clone()
                .unwrap_or_else(|| crate::config::stress::DEFAULT_BANDWIDTH.into());
            let label = crate::sweep::sanitize(&format!("net-{bw}-x{n}"));
            pairs.push(("label", Value::String(label)));
            pairs.push(("bandwidth", Value::String(bw)));
            pairs.push(("streams", Value::from(n)));
        }
        _ => {
            if let Some(size) = &pod.memcap_size {
                pairs.push(("size", Value::String(size.clone())));
            }
            pairs.push(("pods", Value::from(n)));
        }
    }
    map(pairs)
}

/// Other lists under `test_cases` → `sweep.custom` when in `orders`, else `extra`.
fn customs(
    tc: &Mapping,
    orders: &[String],
    notes: &mut Notes,
    out: &mut Converted,
) -> Result<Mapping, Bad> {
    let mut dims = Mapping::new();
    const KNOWN: [&str; 4] = ["orders", "round", "workload", "interferences"];
    for (name, v) in tc {
        let name = scalar_text(name);
        if KNOWN.contains(&name.as_str()) {
            continue;
        }
        let key = format!("test_cases.{name}");
        if !orders.contains(&name) {
            notes.add(&key, format!("not in test_cases.orders, so the original never varied it: kept as extra.{name} for handlers and hooks"));
            out.extra.push((name, v.clone()));
            continue;
        }
        match v {
            Value::Sequence(s) if !s.is_empty() => {
                dims.insert(Value::String(name), v.clone());
            }
            Value::Mapping(m) if ["min", "max", "step"].iter().all(|f| get(m, f).is_some()) => {
                notes.add(&key, "a {min, max, step} custom dimension: the original iterated the mapping's keys (min, max, step) instead of the range (its bug); here it is the range");
                dims.insert(Value::String(name), v.clone());
            }
            other => notes.add(
                &key,
                format!("{} is not a list of values: left out", scalar_text(other)),
            ),
        }
    }
    Ok(dims)
}
