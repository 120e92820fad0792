//! The HTTP side of the fake API server: discovery documents, REST verbs on the store with the
//! real status codes and `Status` bodies, server-side apply, watch streams and pod logs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};

use super::store::{self, matches_fields, matches_labels, merge, status, ResourceType, RESOURCES};
use super::Shared;

type Body = BoxBody<Bytes, Infallible>;

fn full(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed())
        .expect("valid response")
}

fn json_resp(code: u16, v: &Value) -> Response<Body> {
    full(
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        "application/json",
        v.to_string(),
    )
}

fn err(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_resp(code, &status(code, reason, message))
}

/// Query parameters, percent-decoded.
fn query(uri: &http::Uri) -> Vec<(String, String)> {
    let q = uri.query().unwrap_or_default();
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

fn discovery(group_version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.api_version() == group_version)
        .flat_map(|r| {
            let verbs = json!(["create", "delete", "get", "list", "patch", "update", "watch"]);
            let mut v = vec![json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs})];
            if r.plural == "pods" {
                v.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
            }
            v.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
            v
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// Parsed REST path.
struct Target {
    rt: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, more @ ..] => {
            (Some(ns.to_string()), [&[*plural][..], more].concat())
        }
        other => (None, other.to_vec()),
    };
    let rt = store::resource(group, rest.first()?)?;
    Some(Target {
        rt,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

fn verb(method: &Method, t: &Target, watch: bool) -> &'static str {
    match (method.as_str(), t.name.is_some()) {
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        _ => "unknown",
    }
}

/// Answers one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    shared.log_request(&method, &uri);
    if let Some(code) = shared.faults().error_status {
        let reason = match code {
            503 => "ServiceUnavailable",
            429 => "TooManyRequests",
            _ => "InternalError",
        };
        return Ok(err(
            code,
            reason,
            "the fake API server was told to fail this request",
        ));
    }
    let path = uri.path();
    match path {
        "/version" => {
            return Ok(json_resp(
                200,
                &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-aefm-fake", "platform": "linux/amd64"}),
            ))
        }
        "/api" => {
            return Ok(json_resp(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
            ))
        }
        "/apis" => {
            let groups: Vec<Value> = ["apps", "batch"]
                .iter()
                .map(|g| json!({"name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}], "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}}))
                .collect();
            return Ok(json_resp(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ));
        }
        _ => {}
    }
    let gv = path
        .trim_matches('/')
        .strip_prefix("api/")
        .or_else(|| path.trim_matches('/').strip_prefix("apis/"));
    if let Some(d) = gv.and_then(discovery) {
        return Ok(json_resp(200, &d));
    }
    let Some(t) = parse_path(path) else {
        return Ok(err(
            404,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
        ));
    };
    let q = query(&uri);
    let param = |k: &str| q.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.clone());
    let watch = matches!(param("watch").as_deref(), Some("true" | "1"));
    let v = verb(&method, &t, watch);
    if shared.forbidden(v, t.rt.plural) {
        let ns_part = t
            .namespace
            .as_ref()
            .map(|n| format!(" in the namespace \"{n}\""))
            .unwrap_or_default();
        let msg = format!(
            "{}{} is forbidden: User \"system:serviceaccount:aefm:runner\" cannot {v} resource \"{}\" in API group \"{}\"{ns_part}",
            t.rt.plural,
            t.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default(),
            t.rt.plural,
            t.rt.group
        );
        return Ok(err(403, "Forbidden", &msg));
    }
    let ns = t.namespace.clone().unwrap_or_default();
    Ok(match (v, t.sub.as_deref()) {
        ("watch", _) => watch_stream(
            shared,
            &t,
            param("resourceVersion"),
            param("labelSelector"),
            param("fieldSelector"),
            param("timeoutSeconds"),
        ),
        ("list", _) => {
            let store = shared.store();
            let items: Vec<Value> = store
                .list(t.rt.plural, t.namespace.as_deref())
                .into_iter()
                .filter(|o| param("labelSelector").is_none_or(|s| matches_labels(o, &s)))
                .filter(|o| param("fieldSelector").is_none_or(|s| matches_fields(o, &s)))
                .collect();
            json_resp(
                200,
                &json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {"resourceVersion": store.rv.to_string()}, "items": items}),
            )
        }
        ("get", Some("log")) => {
            let name = t.name.clone().unwrap_or_default();
            let timestamps = matches!(param("timestamps").as_deref(), Some("true" | "1"));
            let since = match (param("sinceTime"), param("sinceSeconds")) {
                (Some(t), _) => match t.parse::<k8s_openapi::jiff::Timestamp>() {
                    Ok(ts) => Some(std::time::SystemTime::from(ts)),
                    Err(e) => return Ok(err(400, "BadRequest", &format!("sinceTime {t:?}: {e}"))),
                },
                (None, Some(s)) => match s.parse::<u64>() {
                    Ok(secs) => Some(std::time::SystemTime::now() - Duration::from_secs(secs)),
                    Err(e) => {
                        return Ok(err(400, "BadRequest", &format!("sinceSeconds {s:?}: {e}")))
                    }
                },
                (None, None) => None,
            };
            match shared.log_of(&ns, &name, timestamps, since) {
                Some(log) => full(StatusCode::OK, "text/plain", log),
                None => err(404, "NotFound", &format!("pods \"{name}\" not found")),
            }
        }
        ("get", _) => {
            let name = t.name.clone().unwrap_or_default();
            match shared.store().get(t.rt.plural, &ns, &name) {
                Some(o) => json_resp(200, &o),
                None => err(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", t.rt.plural),
                ),
            }
        }
        ("create", _) => match serde_json::from_slice::<Value>(&body) {
            Ok(obj) => create(&shared, &t, obj),
            Err(e) => err(400, "BadRequest", &format!("invalid body: {e}")),
        },
        ("patch", _) => {
            if content_type != "application/apply-patch+yaml" {
                return Ok(err(
                    415,
                    "UnsupportedMediaType",
                    &format!("the fake only supports server-side apply, not {content_type}"),
                ));
            }
            if param("fieldManager").is_none() {
                return Ok(err(
                    400,
                    "BadRequest",
                    "PATCH, fieldManager: Required value: is required for apply patch",
                ));
            }
            match serde_yaml::from_slice::<Value>(&body) {
                Ok(obj) => apply(&shared, &t, obj, &param("fieldManager").unwrap_or_default()),
                Err(e) => err(400, "BadRequest", &format!("invalid apply body: {e}")),
            }
        }
        ("delete", _) => {
            let name = t.name.clone().unwrap_or_default();
            let mut store = shared.store();
            match store.delete(&(t.rt.plural.to_string(), ns.clone(), name.clone())) {
                Some(_) => json_resp(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": t.rt.plural}}),
                ),
                None => err(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", t.rt.plural),
                ),
            }
        }
        _ => err(
            405,
            "MethodNotAllowed",
            &format!("{method} is not supported on {path}"),
        ),
    })
}

fn check_namespace(shared: &Shared, t: &Target, ns: &str) -> Option<Response<Body>> {
    if t.rt.namespaced && shared.store().get("namespaces", "", ns).is_none() {
        return Some(err(
            404,
            "NotFound",
            &format!("namespaces \"{ns}\" not found"),
        ));
    }
    None
}

fn check_quota(shared: &Shared, t: &Target, ns: &str, name: &str) -> Option<Response<Body>> {
    let limit = shared.faults().pod_quota?;
    if t.rt.plural != "pods" {
        return None;
    }
    let used = shared.store().list("pods", Some(ns)).len();
    (used >= limit).then(|| {
        err(403, "Forbidden", &format!("pods \"{name}\" is forbidden: exceeded quota: aefm-quota, requested: pods=1, used: pods={used}, limited: pods={limit}"))
    })
}

#[allow(clippy::result_large_err)] // the error is the HTTP answer itself, built once per request
fn prepare(t: &Target, mut obj: Value) -> Result<(Value, String, String), Response<Body>> {
    let ns = if t.rt.namespaced {
        t.namespace
            .clone()
            .or_else(|| obj["metadata"]["namespace"].as_str().map(str::to_string))
            .unwrap_or_else(|| "default".into())
    } else {
        String::new()
    };
    let name = obj["metadata"]["name"]
        .as_str()
        .map(str::to_string)
        .or_else(|| t.name.clone())
        .unwrap_or_default();
    if name.is_empty() {
        return Err(err(
            422,
            "Invalid",
            &format!(
                "{} \"\" is invalid: metadata.name: Required value: name is required",
                t.rt.kind
            ),
        ));
    }
    if t.rt.namespaced {
        obj["metadata"]["namespace"] = json!(ns);
    }
    obj["apiVersion"] = json!(t.rt.api_version());
    obj["kind"] = json!(t.rt.kind);
    Ok((obj, ns, name))
}

fn create(shared: &Shared, t: &Target, obj: Value) -> Response<Body> {
    let (obj, ns, name) = match prepare(t, obj) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(r) = check_namespace(shared, t, &ns).or_else(|| check_quota(shared, t, &ns, &name))
    {
        return r;
    }
    let mut store = shared.store();
    if store.get(t.rt.plural, &ns, &name).is_some() {
        return err(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", t.rt.plural),
        );
    }
    let created = store.create(t.rt.plural, obj);
    drop(store);
    shared.after_create(t.rt.plural, &created);
    json_resp(201, &created)
}

fn apply(shared: &Shared, t: &Target, obj: Value, manager: &str) -> Response<Body> {
    let (mut obj, ns, name) = match prepare(t, obj) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if t.name.as_deref().is_some_and(|n| n != name) {
        return err(
            400,
            "BadRequest",
            &format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                t.name.clone().unwrap_or_default()
            ),
        );
    }
    if let Some(r) = check_namespace(shared, t, &ns) {
        return r;
    }
    let existing = shared.store().get(t.rt.plural, &ns, &name);
    obj["metadata"]["managedFields"] =
        json!([{"manager": manager, "operation": "Apply", "apiVersion": t.rt.api_version()}]);
    match existing {
        None => {
            if let Some(r) = check_quota(shared, t, &ns, &name) {
                return r;
            }
            let created = shared.store().create(t.rt.plural, obj);
            shared.after_create(t.rt.plural, &created);
            json_resp(201, &created)
        }
        Some(mut old) => {
            if t.rt.plural == "pods" && old["spec"]["containers"] != Value::Null {
                let mut new_spec = old["spec"].clone();
                merge(&mut new_spec, &obj["spec"]);
                // Like the real server: a pod's spec is immutable apart from a few fields.
                let mut old_cmp = old["spec"].clone();
                old_cmp["nodeName"] = Value::Null;
                let mut new_cmp = new_spec.clone();
                new_cmp["nodeName"] = Value::Null;
                if old_cmp != new_cmp {
                    return err(422, "Invalid", &format!("Pod \"{name}\" is invalid: spec: Forbidden: pod updates may not change fields other than image"));
                }
            }
            let status = old["status"].clone();
            merge(&mut old, &obj);
            old["status"] = status;
            json_resp(200, &shared.store().update(t.rt.plural, old))
        }
    }
}

/// A watch: replays events after `resourceVersion` (all current objects as ADDED when it is empty
/// or `0`), then streams new ones, one JSON line each, until `timeoutSeconds`.
fn watch_stream(
    shared: Arc<Shared>,
    t: &Target,
    rv: Option<String>,
    labels: Option<String>,
    fields: Option<String>,
    timeout: Option<String>,
) -> Response<Body> {
    let plural = t.rt.plural.to_string();
    let ns = t.namespace.clone();
    let timeout = Duration::from_secs(timeout.and_then(|t| t.parse().ok()).unwrap_or(290).min(290));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let mut changes = shared.subscribe();
    let matches = move |o: &Value| {
        ns.as_deref()
            .is_none_or(|n| o["metadata"]["namespace"] == n)
            && labels.as_deref().is_none_or(|s| matches_labels(o, s))
            && fields.as_deref().is_none_or(|s| matches_fields(o, s))
    };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sent_until: u64 = match rv.as_deref() {
            None | Some("") | Some("0") => {
                let (now, initial) = {
                    let store = shared.store();
                    let initial: Vec<Value> = store
                        .list(&plural, None)
                        .into_iter()
                        .filter(|o| matches(o))
                        .collect();
                    (store.rv, initial)
                };
                for o in initial {
                    let line = json!({"type": "ADDED", "object": o}).to_string() + "\n";
                    if tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_err() {
                        return;
                    }
                }
                now
            }
            Some(v) => v.parse().unwrap_or(0),
        };
        loop {
            // Mark the current change as seen before reading, so a change made while we send
            // wakes the select below.
            changes.borrow_and_update();
            let batch: Vec<(u64, String)> = {
                let store = shared.store();
                store
                    .events
                    .iter()
                    .filter(|e| e.rv > sent_until && e.plural == plural && matches(&e.object))
                    .map(|e| {
                        (
                            e.rv,
                            json!({"type": e.kind, "object": e.object}).to_string() + "\n",
                        )
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .chain(std::iter::once((store.rv, String::new())))
                    .collect()
            };
            for (rv, line) in batch {
                sent_until = sent_until.max(rv);
                if !line.is_empty() && tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("valid response")
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
