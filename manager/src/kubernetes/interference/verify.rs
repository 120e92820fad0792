//! Checks the interference pods of a case from their own evidence: each pod's log, read with the
//! kubelet's timestamps, becomes report lines with the time they were written, judged by
//! [`aefm_interference::verify::check`]; a pod that is not running, or whose container (re)started
//! during the window, ended before the window's end. `aefm-stress` pods log JSON report lines;
//! the iperf3 ring's client containers log iperf3's text, whose interval lines and errors are
//! turned into the same report lines.

use std::time::{Duration, SystemTime};

use aefm_interference::verify::{check, Finding, Observed, Tolerances, EXITED};
use aefm_interference::{ReportLine, Stressor};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams};

use super::super::client::Kube;
use super::super::error::KubeError;
use super::super::labels;
use super::selector;

/// A level placed on the cluster, as its check needs it.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The level's label (`cpu-80`), for messages.
    pub label: String,
    /// The kind label its pods carry (`cpu`, `net`).
    pub kind: String,
    /// What its pods run (for a net level: each ring client's stressor).
    pub stressor: Stressor,
}

/// Checks every pod of every placed level over `window` (start, end); returns the findings.
/// Errors when the pods or their logs cannot be read.
pub async fn verify(
    kube: &Kube,
    namespace: &str,
    experiment: &str,
    levels: &[Placed],
    window: (SystemTime, SystemTime),
    tol: &Tolerances,
) -> Result<Vec<Finding>, KubeError> {
    let api: Api<Pod> = Api::namespaced(kube.client().clone(), namespace);
    let sel = selector(experiment);
    let pods = api
        .list(&ListParams::default().labels(&sel))
        .await
        .map_err(|e| KubeError::from_kube("list", format!("pods in {namespace} ({sel})"), e))?;
    // Lines from a little before the window: the first in-window report may be late.
    let since = window.0 - tol.max_gap - Duration::from_secs(2);
    let mut out = Vec::new();
    for level in levels {
        let mine: Vec<&Pod> = pods
            .items
            .iter()
            .filter(|p| label_of(p, labels::INTERFERENCE) == Some(level.kind.as_str()))
            .collect();
        if mine.is_empty() {
            out.push(Finding {
                code: EXITED.into(),
                message: format!(
                    "{}: no interference pod of kind {} in namespace {namespace}",
                    level.label, level.kind
                ),
            });
        }
        for pod in mine {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let ring = level.kind == "net";
            let params = LogParams {
                container: ring.then(|| "client".to_string()),
                timestamps: true,
                since_time: Timestamp::try_from(since).ok(),
                ..Default::default()
            };
            let text = api.logs(&name, &params).await.map_err(|e| {
                KubeError::from_kube("read log of", format!("Pod/{namespace}/{name}"), e)
            })?;
            let lines = parse_log(&text, ring.then_some(&level.stressor));
            let ended = pod_ended(pod, window);
            out.extend(check(
                &format!("{} (pod {name})", level.label),
                &level.stressor,
                &lines,
                window,
                ended.as_deref(),
                tol,
            ));
        }
    }
    Ok(out)
}

fn label_of<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// A log read with timestamps (`<RFC 3339> <text>` per line) as report lines with their times.
/// `iperf3`: the stressor of an iperf3 ring client, whose text output is translated; None for
/// `aefm-stress` JSON lines. Lines that are neither are skipped.
pub fn parse_log(text: &str, iperf3: Option<&Stressor>) -> Vec<Observed> {
    text.lines()
        .filter_map(|l| {
            let (ts, rest) = l.split_once(' ')?;
            let at = SystemTime::from(ts.parse::<Timestamp>().ok()?);
            let line = match iperf3 {
                None => serde_json::from_str::<ReportLine>(rest).ok()?,
                Some(s) => iperf3_line(rest, s)?,
            };
            Some(Observed { at, line })
        })
        .collect()
}

/// One line of an iperf3 client's text output as a report line: an interval (`[  5]   0.00-1.00
/// sec  119 MBytes  1000 Mbits/sec ...`, the `[SUM]` line with several streams) or an error
/// (`iperf3: error - ...`). End-of-run totals (`sender`, `receiver`) and other text give None.
pub fn iperf3_line(text: &str, stressor: &Stressor) -> Option<ReportLine> {
    let Stressor::NetClient {
        bandwidth_bps,
        streams,
        ..
    } = stressor
    else {
        return None;
    };
    let target = *bandwidth_bps as f64 * *streams as f64;
    let mut details = serde_json::Map::new();
    let achieved = if let Some(e) = text.trim().strip_prefix("iperf3: error - ") {
        details.insert(
            aefm_interference::report::ERROR_KEY.into(),
            format!("iperf3: {e}").into(),
        );
        0.0
    } else {
        let t = text.trim_end();
        let sum = t.starts_with("[SUM]");
        let stream = t.starts_with('[') && !sum && !t.starts_with("[ ID]");
        // With several streams only the sum counts; with one there is no sum line.
        let wanted = if *streams > 1 { sum } else { stream };
        if !wanted || t.ends_with("sender") || t.ends_with("receiver") || !t.contains(" sec ") {
            return None;
        }
        bits_per_second(t)?
    };
    Some(ReportLine {
        kind: "net-client".into(),
        elapsed_s: 0.0,
        target,
        achieved,
        unit: "bit/s".into(),
        r#final: false,
        details,
    })
}

/// The `N [KMG]bits/sec` figure of an iperf3 interval line, in bit/s (iperf3 scales bits by 1000).
fn bits_per_second(line: &str) -> Option<f64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| w.ends_with("bits/sec"))?;
    let value: f64 = words.get(i.checked_sub(1)?)?.parse().ok()?;
    let scale = match words[i].chars().next()? {
        'K' | 'k' => 1e3,
        'M' | 'm' => 1e6,
        'G' | 'g' => 1e9,
        'T' | 't' => 1e12,
        _ => 1.0,
    };
    Some(value * scale)
}

/// Why the pod did not run through the whole window, or None: it is not running, or one of
/// its containers is not running or (re)started after the window's start.
pub fn pod_ended(pod: &Pod, (start, end): (SystemTime, SystemTime)) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("the pod is being deleted".into());
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    if phase != "Running" {
        return Some(format!("the pod is {phase}"));
    }
    let secs = |t: SystemTime| match t.duration_since(start) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    for cs in status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
    {
        if let Some(why) = container_ended(cs, start, end, secs) {
            return Some(why);
        }
    }
    None
}

fn container_ended(
    cs: &ContainerStatus,
    start: SystemTime,
    end: SystemTime,
    secs: impl Fn(SystemTime) -> f64,
) -> Option<String> {
    let state = cs.state.as_ref();
    let Some(running) = state.and_then(|s| s.running.as_ref()) else {
        let why = state
            .and_then(|s| {
                s.waiting
                    .as_ref()
                    .and_then(|w| w.reason.clone())
                    .or_else(|| s.terminated.as_ref().and_then(|t| t.reason.clone()))
            })
            .unwrap_or_else(|| "no state".into());
        return Some(format!("container {} is not running ({why})", cs.name));
    };
    let started = running.started_at.as_ref().map(|t| SystemTime::from(t.0));
    if started.is_none_or(|s| s <= start) {
        return None;
    }
    let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let finished = last.and_then(|t| t.finished_at.as_ref().map(|f| SystemTime::from(f.0)));
    if finished.is_some_and(|f| f >= end) {
        // The previous run covered the window; it ended after it.
        return None;
    }
    Some(format!(
        "container {} restarted {:.1} s into the window ({} restarts; last exit code {}{})",
        cs.name,
        started.map_or(0.0, &secs),
        cs.restart_count,
        last.map_or("unknown".to_string(), |t| t.exit_code.to_string()),
        last.and_then(|t| t.reason.as_deref())
            .map(|r| format!(", {r}"))
            .unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(streams: u32) -> Stressor {
        Stressor::NetClient {
            target: "10.0.0.2".into(),
            port: 34567,
            bandwidth_bps: 1_000_000_000,
            streams,
        }
    }

    #[test]
    fn iperf3_text_becomes_report_lines() {
        let log = "\
2026-12-07T10:00:00.500000000Z Connecting to host 10.0.0.2, port 34567
2026-12-07T10:00:01.500000000Z [  5]   0.00-1.00   sec   119 MBytes   998 Mbits/sec    0    512 KBytes
2026-12-07T10:00:02.500000000Z [  5]   1.00-2.00   sec   119 MBytes  1.00 Gbits/sec    0    512 KBytes
2026-12-07T10:00:03.000000000Z [  5]   0.00-2.00   sec   238 MBytes   999 Mbits/sec    0             sender
2026-12-07T10:00:04.000000000Z iperf3: error - unable to connect to server: Connection refused
";
        let lines = parse_log(log, Some(&client(1)));
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0].line.achieved, 998e6);
        assert_eq!(lines[1].line.achieved, 1e9);
        assert_eq!(lines[0].line.target, 1e9);
        assert_eq!(
            lines[2].line.error(),
            Some("iperf3: unable to connect to server: Connection refused")
        );
        let t0: SystemTime =
            SystemTime::from("2026-12-07T10:00:01.5Z".parse::<Timestamp>().unwrap());
        assert_eq!(lines[0].at, t0);
        // Several streams: only the sums.
        let multi = "\
2026-12-07T10:00:01Z [  5]   0.00-1.00   sec  60 MBytes   500 Mbits/sec
2026-12-07T10:00:01Z [  7]   0.00-1.00   sec  60 MBytes   500 Mbits/sec
2026-12-07T10:00:01Z [SUM]   0.00-1.00   sec   120 MBytes  1.01 Gbits/sec    0
";
        let lines = parse_log(multi, Some(&client(2)));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line.achieved, 1.01e9);
        assert_eq!(lines[0].line.target, 2e9);
    }

    #[test]
    fn json_lines_keep_their_kubelet_time() {
        let log = "2026-12-07T10:00:01.25Z {\"kind\":\"cpu\",\"elapsed_s\":1.0,\"target\":80.0,\"achieved\":79.5,\"unit\":\"%\"}\nnot a line\n2026-12-07T10:00:02Z garbage\n";
        let lines = parse_log(log, None);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line.kind, "cpu");
        assert_eq!(lines[0].line.achieved, 79.5);
    }

    #[test]
    fn a_container_restarted_in_the_window_ended_it() {
        let pod = |started: &str, restarts: i32| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "status": {"phase": "Running", "containerStatuses": [{
                    "name": "aefm-stress", "image": "i", "imageID": "", "ready": true,
                    "restartCount": restarts,
                    "state": {"running": {"startedAt": started}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                                 "finishedAt": "2026-12-07T10:00:04Z"}}
                }]}
            }))
            .unwrap()
        };
        let at = |s: &str| SystemTime::from(s.parse::<Timestamp>().unwrap());
        let window = (at("2026-12-07T10:00:00Z"), at("2026-12-07T10:00:10Z"));
        assert_eq!(pod_ended(&pod("2026-12-07T09:00:00Z", 0), window), None);
        let why = pod_ended(&pod("2026-12-07T10:00:05Z", 1), window).unwrap();
        assert_eq!(
            why,
            "container aefm-stress restarted 5.0 s into the window (1 restarts; last exit code 137, OOMKilled)"
        );
        let mut pending = pod("2026-12-07T09:00:00Z", 0);
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        assert_eq!(pod_ended(&pending, window).unwrap(), "the pod is Pending");
    }
}
