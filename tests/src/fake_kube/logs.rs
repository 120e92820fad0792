//! Pod logs as the API server serves them from the kubelet: the container must be named when the
//! pod has several (`a container name must be specified ...`), must exist, and must have started
//! (`container "x" in pod "y" is waiting to start: ContainerCreating`); then the log (the job
//! runner's stdout and stderr, or lines written by the test), with `timestamps`,
//! `sinceTime`/`sinceSeconds`, `tailLines` and `limitBytes` applied.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::store::status;
use super::Shared;

/// The query of a log request.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// `container`.
    pub container: Option<String>,
    /// `timestamps=true`: each line prefixed by its RFC 3339 time (nanoseconds) and a space.
    pub timestamps: bool,
    /// `sinceTime` or `sinceSeconds`: only timed lines written at or after it.
    pub since: Option<SystemTime>,
    /// `tailLines`.
    pub tail_lines: Option<usize>,
    /// `limitBytes`.
    pub limit_bytes: Option<usize>,
    /// `previous=true`.
    pub previous: bool,
}

impl LogQuery {
    /// Reads the query parameters; a malformed one is a 400 Status.
    pub fn parse(param: &dyn Fn(&str) -> Option<String>) -> Result<LogQuery, Value> {
        let bad = |what: &str, v: &str, e: &dyn std::fmt::Display| {
            status(400, "BadRequest", &format!("{what} {v:?}: {e}"))
        };
        let since = match (param("sinceTime"), param("sinceSeconds")) {
            (Some(t), _) => Some(SystemTime::from(
                t.parse::<k8s_openapi::jiff::Timestamp>()
                    .map_err(|e| bad("sinceTime", &t, &e))?,
            )),
            (None, Some(s)) => {
                let secs: u64 = s.parse().map_err(|e| bad("sinceSeconds", &s, &e))?;
                Some(SystemTime::now() - Duration::from_secs(secs))
            }
            (None, None) => None,
        };
        let num = |k: &str| -> Result<Option<usize>, Value> {
            param(k)
                .map(|v| v.parse().map_err(|e| bad(k, &v, &e)))
                .transpose()
        };
        let flag = |k: &str| matches!(param(k).as_deref(), Some("true" | "1"));
        Ok(LogQuery {
            container: param("container").filter(|c| !c.is_empty()),
            timestamps: flag("timestamps"),
            since,
            tail_lines: num("tailLines")?,
            limit_bytes: num("limitBytes")?,
            previous: flag("previous"),
        })
    }
}

fn stamp(t: SystemTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(t)
        .map(|ts| format!("{ts:.9} "))
        .unwrap_or_default()
}

/// Checks the container the request names (or implies) against the pod; the Status on error.
fn container_of(pod: &Value, name: &str, q: &LogQuery) -> Result<String, Value> {
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let bad = |m: String| Err(status(400, "BadRequest", &m));
    let container = match &q.container {
        Some(c) if names.contains(c) => c.clone(),
        Some(c) => return bad(format!("container {c} is not valid for pod {name}")),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return bad(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            ))
        }
    };
    if pod["spec"]["nodeName"].is_null() {
        return bad(format!("pod {name} does not have a host assigned"));
    }
    let st = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == container.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    if q.previous && st["restartCount"].as_i64().unwrap_or(0) == 0 {
        return bad(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        ));
    }
    let waiting = st["state"]["waiting"]["reason"]
        .as_str()
        .map(str::to_string)
        .or_else(|| st.is_null().then(|| "ContainerCreating".to_string()));
    match waiting.as_deref() {
        // A crash-looping container has a last instance whose log is served.
        None | Some("CrashLoopBackOff") => Ok(container),
        Some(reason) => {
            let why = match reason {
                "ErrImagePull" => "image can't be pulled",
                "ImagePullBackOff" => "trying and failing to pull image",
                other => other,
            };
            bad(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {why}"
            ))
        }
    }
}

/// A pod's log as the API server returns it: the whole text, then the timed lines; or the Status
/// (404, 400) a real server answers.
pub fn pod_log(shared: &Shared, ns: &str, name: &str, q: &LogQuery) -> Result<String, Value> {
    let key = ("pods".to_string(), ns.to_string(), name.to_string());
    let pod = shared
        .store()
        .get("pods", ns, name)
        .ok_or_else(|| status(404, "NotFound", &format!("pods \"{name}\" not found")))?;
    container_of(&pod, name, q)?;
    let world = shared.world();
    let plain = world.logs.get(&key).cloned().unwrap_or_default();
    let timed = world.log_lines.get(&key).cloned().unwrap_or_default();
    drop(world);
    let mut text = String::new();
    if timed.is_empty() && q.since.is_none() && !q.timestamps {
        // Exactly what was stored (a job's output keeps its own line ends).
        text = plain;
    } else {
        if q.since.is_none() {
            let now = SystemTime::now();
            for l in plain.lines() {
                if q.timestamps {
                    text.push_str(&stamp(now));
                }
                text.push_str(l);
                text.push('\n');
            }
        }
        for (at, l) in timed {
            if q.since.is_some_and(|s| at < s) {
                continue;
            }
            if q.timestamps {
                text.push_str(&stamp(at));
            }
            text.push_str(&l);
            text.push('\n');
        }
    }
    if let Some(n) = q.tail_lines {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        text = lines[lines.len().saturating_sub(n)..].concat();
    }
    if let Some(limit) = q.limit_bytes {
        let mut cut = limit.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_container_must_be_named_and_started() {
        let pod = |statuses: Value| {
            json!({"spec": {"nodeName": "w1", "containers": [{"name": "a"}, {"name": "b"}]},
                   "status": {"containerStatuses": statuses}})
        };
        let running = pod(
            json!([{"name": "a", "state": {"running": {}}}, {"name": "b", "state": {"running": {}}}]),
        );
        let q = |c: Option<&str>| LogQuery {
            container: c.map(str::to_string),
            ..LogQuery::default()
        };
        let msg =
            |r: Result<String, Value>| r.unwrap_err()["message"].as_str().unwrap().to_string();
        assert_eq!(
            msg(container_of(&running, "p", &q(None))),
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(container_of(&running, "p", &q(Some("b"))).unwrap(), "b");
        assert_eq!(
            msg(container_of(&running, "p", &q(Some("c")))),
            "container c is not valid for pod p"
        );
        let creating =
            pod(json!([{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}]));
        assert_eq!(
            msg(container_of(&creating, "p", &q(Some("a")))),
            "container \"a\" in pod \"p\" is waiting to start: ContainerCreating"
        );
    }
}
