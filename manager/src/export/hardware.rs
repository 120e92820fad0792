//! `hardware_data.csv`: per pod, the peak CPU and memory use over the case's window in percent of
//! the pod's limit, as the original computed it, from the case's Prometheus rows (the default
//! queries `pod_cpu_limit_share` and `pod_memory_limit_share`, the original's two queries as 0-1
//! shares). Without those rows (local backend, no `collect.prometheus`, or a cluster without the
//! recording rules) a case contributes nothing; nothing is estimated from other data.

use std::collections::BTreeMap;
use std::path::Path;

use aefm_collector::output::{decode_labels, fmt_f64};

use super::cases::{Case, ColumnSet};
use super::table::{Finished, Table};
use super::traces::column_indices;
use super::{csv_err, files, ExportError};

/// `hardware_data.csv`'s data columns.
pub const COLUMNS: [&str; 4] = ["microservice", "pod", "cpu_usage", "mem_usage"];

/// The Prometheus query names the two usage columns come from.
const CPU_METRIC: &str = "pod_cpu_limit_share";
const MEM_METRIC: &str = "pod_memory_limit_share";

/// Cases named in a note before the rest are counted.
const LISTED: usize = 3;

/// Peaks of one case, per pod.
#[derive(Debug, Default)]
struct Peaks {
    /// Peak CPU share per pod and container.
    cpu: BTreeMap<String, BTreeMap<String, f64>>,
    /// Peak memory share per pod.
    mem: BTreeMap<String, f64>,
}

/// Writes `hardware_data.csv`; notes every case without the data it needs.
pub fn write(
    out: &Path,
    cols: &ColumnSet,
    cases: &[Case],
    notes: &mut Vec<String>,
) -> Result<Finished, ExportError> {
    let mut t = Table::create(out, files::HARDWARE, &COLUMNS, cols)?;
    let mut without = Vec::new();
    for c in cases {
        let path = c.dir.join("prometheus.csv");
        if !path.is_file() {
            without.push(c.label());
            continue;
        }
        let peaks = read_peaks(&path)?;
        if peaks.cpu.is_empty() && peaks.mem.is_empty() {
            notes.push(format!(
                "{}: prometheus.csv has no {CPU_METRIC} or {MEM_METRIC} series (they need the \
                 kube-prometheus-stack recording rules, kube-state-metrics v2 and pod limits); \
                 no rows in {}",
                c.label(),
                files::HARDWARE
            ));
            continue;
        }
        let services = pod_services(&c.dir.join("pod_map.csv"))?;
        for row in rows(&peaks, &services, &c.label(), notes) {
            t.row(&row, c)?;
        }
    }
    note_without(&without, cases.len(), notes);
    t.finish()
}

/// The note on cases without Prometheus data.
fn note_without(without: &[String], total: usize, notes: &mut Vec<String>) {
    if without.is_empty() {
        return;
    }
    let why = "no `collect.prometheus`; the local backend has no pod limits";
    if without.len() == total {
        notes.push(format!(
            "{} has its header only: no exported case has a prometheus.csv ({why})",
            files::HARDWARE
        ));
        return;
    }
    let mut named = without[..without.len().min(LISTED)].join(", ");
    if without.len() > LISTED {
        named.push_str(&format!(" and {} more", without.len() - LISTED));
    }
    notes.push(format!(
        "{named}: no prometheus.csv ({why}); no rows in {}",
        files::HARDWARE
    ));
}

/// The rows of one case: every pod with a CPU or memory peak, in pod order. A pod whose CPU
/// share comes in several series (one per container) has no single share of its pod limit: its
/// cell is left empty, as is a cell whose series is missing.
fn rows(
    peaks: &Peaks,
    services: &BTreeMap<String, String>,
    case: &str,
    notes: &mut Vec<String>,
) -> Vec<[String; 4]> {
    let mut pods: Vec<&String> = peaks.cpu.keys().chain(peaks.mem.keys()).collect();
    pods.sort();
    pods.dedup();
    pods.into_iter()
        .map(|pod| {
            let cpu = match peaks.cpu.get(pod) {
                Some(by_container) if by_container.len() == 1 => {
                    by_container.values().next().map(|v| percent(*v))
                }
                Some(by_container) => {
                    notes.push(format!(
                        "{case}: pod {pod} has {} containers with CPU limits ({}); cpu_usage left \
                         empty (a share per container is not a share of the pod)",
                        by_container.len(),
                        by_container.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                    None
                }
                None => None,
            };
            let service = services
                .get(pod)
                .cloned()
                .unwrap_or_else(|| deployment_of(pod));
            [
                service,
                pod.clone(),
                cpu.unwrap_or_default(),
                peaks.mem.get(pod).map(|v| percent(*v)).unwrap_or_default(),
            ]
        })
        .collect()
}

/// A 0-1 share as the original's percent.
fn percent(share: f64) -> String {
    fmt_f64(share * 100.0)
}

/// The original's microservice of a pod without a pod map: the pod name without its last two
/// `-` segments (a Deployment's `<name>-<replicaset hash>-<pod hash>`); empty when it has fewer.
fn deployment_of(pod: &str) -> String {
    let parts: Vec<&str> = pod.split('-').collect();
    if parts.len() < 3 {
        return String::new();
    }
    parts[..parts.len() - 2].join("-")
}

/// The peak of each CPU and memory share series of a `prometheus.csv`.
fn read_peaks(path: &Path) -> Result<Peaks, ExportError> {
    let mut rd = csv::Reader::from_path(path).map_err(csv_err(path))?;
    let idx = column_indices(&mut rd, path, &["metric", "labels", "value"])?;
    let mut peaks = Peaks::default();
    for record in rd.records() {
        let r = record.map_err(csv_err(path))?;
        let metric = &r[idx[0]];
        if metric != CPU_METRIC && metric != MEM_METRIC {
            continue;
        }
        // NaN (a limit of 0, a missing point) is no measurement: left out of the peak.
        let Some(value) = r[idx[2]].parse::<f64>().ok().filter(|v| v.is_finite()) else {
            continue;
        };
        let labels = decode_labels(&r[idx[1]]);
        let Some(pod) = labels.get("pod") else {
            continue;
        };
        let slot = if metric == CPU_METRIC {
            let container = labels.get("container").cloned().unwrap_or_default();
            peaks
                .cpu
                .entry(pod.clone())
                .or_default()
                .entry(container)
                .or_insert(f64::MIN)
        } else {
            peaks.mem.entry(pod.clone()).or_insert(f64::MIN)
        };
        *slot = slot.max(value);
    }
    Ok(peaks)
}

/// `pod -> service` from a case's `pod_map.csv` (Kubernetes; owner references), empty without.
fn pod_services(path: &Path) -> Result<BTreeMap<String, String>, ExportError> {
    if !path.is_file() {
        return Ok(BTreeMap::new());
    }
    let mut rd = csv::Reader::from_path(path).map_err(csv_err(path))?;
    let idx = column_indices(&mut rd, path, &["pod", "service"])?;
    let mut out = BTreeMap::new();
    for record in rd.records() {
        let r = record.map_err(csv_err(path))?;
        out.insert(r[idx[0]].to_string(), r[idx[1]].to_string());
    }
    Ok(out)
}
