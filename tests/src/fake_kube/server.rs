//! The HTTP side of the fake API server: discovery documents, RBAC on every request
//! ([`super::rbac`]), routing of the REST verbs with the real status codes and `Status` bodies,
//! lists with resourceVersion semantics and paging, watch streams ([`super::watch`]), pod logs
//! ([`super::logs`]), writes ([`super::writes`]) and SelfSubjectAccessReview.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::deletion::DeleteOptions;
use super::logs::{pod_log, LogQuery};
use super::rbac::{self, Attributes};
use super::store::{self, matches_fields, matches_labels, status, ResourceType, RESOURCES};
use super::watch::{watch_stream, WatchParams};
use super::writes::{create, delete, delete_collection, patch, replace};
use super::Shared;

/// Response body of every answer.
pub type Body = BoxBody<Bytes, Infallible>;

/// A whole response with a content type.
pub fn full(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed())
        .expect("valid response")
}

/// A JSON response.
pub fn json_resp(code: u16, v: &Value) -> Response<Body> {
    full(
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        "application/json",
        v.to_string(),
    )
}

/// A failure `Status` response.
pub fn err(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_resp(code, &status(code, reason, message))
}

/// A `Status` body as the response, with its code.
pub fn status_resp(s: &Value) -> Response<Body> {
    json_resp(s["code"].as_u64().unwrap_or(500) as u16, s)
}

/// Query parameters, percent-decoded.
fn query(uri: &http::Uri) -> Vec<(String, String)> {
    let q = uri.query().unwrap_or_default();
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

fn discovery(group_version: &str) -> Option<Value> {
    if group_version == "authorization.k8s.io/v1" {
        return Some(rbac::discovery());
    }
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.api_version() == group_version)
        .flat_map(|r| {
            let verbs = json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]);
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
pub struct Target {
    /// The resource.
    pub rt: &'static ResourceType,
    /// Namespace in the path.
    pub namespace: Option<String>,
    /// Object name in the path.
    pub name: Option<String>,
    /// Subresource (`log`, `status`, `proxy`, ...).
    pub sub: Option<String>,
    /// What follows the subresource (a proxied path).
    pub rest: Vec<String>,
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
        rest: rest.iter().skip(3).map(|s| s.to_string()).collect(),
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
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "unknown",
    }
}

/// Serves one connection; a watch on it may cut it abruptly (an injected drop).
pub async fn serve_connection(shared: Arc<Shared>, stream: tokio::net::TcpStream) {
    let cut = CancellationToken::new();
    let c = cut.clone();
    let svc = hyper::service::service_fn(move |req| handle_on(shared.clone(), req, c.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = cut.cancelled() => {}
    }
}

/// Answers one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    handle_on(shared, req, CancellationToken::new()).await
}

/// Answers one request received on a connection that `cut` can close.
async fn handle_on(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    cut: CancellationToken,
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
    if let Some(r) = fixed_documents(path) {
        return Ok(r);
    }
    if rbac::is_review_path(path) && method == Method::POST {
        return Ok(match serde_json::from_slice::<Value>(&body) {
            Ok(review) => match rbac::access_review(&shared.faults(), &review) {
                Ok(v) => json_resp(201, &v),
                Err(s) => status_resp(&s),
            },
            Err(e) => err(400, "BadRequest", &format!("invalid body: {e}")),
        });
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
    let attrs = Attributes {
        verb: v.to_string(),
        group: t.rt.group.to_string(),
        resource: t.rt.plural.to_string(),
        subresource: t.sub.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
    };
    if rbac::denied(&shared.faults(), &attrs) {
        return Ok(status_resp(&rbac::forbidden_status(&attrs)));
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    Ok(match (v, t.sub.as_deref()) {
        ("watch", None) => watch_stream(
            shared,
            t.rt,
            t.namespace.clone(),
            WatchParams {
                rv: param("resourceVersion"),
                labels: param("labelSelector"),
                fields: param("fieldSelector"),
                timeout: param("timeoutSeconds"),
                bookmarks: matches!(param("allowWatchBookmarks").as_deref(), Some("true" | "1")),
                send_initial_events: matches!(
                    param("sendInitialEvents").as_deref(),
                    Some("true" | "1")
                ),
            },
            cut,
        ),
        ("list", None) => list(&shared, &t, &param),
        ("get", Some("log")) if t.rt.plural == "pods" => {
            match LogQuery::parse(&param).and_then(|lq| pod_log(&shared, &ns, &name, &lq)) {
                Ok(log) => full(StatusCode::OK, "text/plain", log),
                Err(s) => status_resp(&s),
            }
        }
        ("get", None | Some("status")) => match shared.store().get(t.rt.plural, &ns, &name) {
            Some(o) => json_resp(200, &o),
            None => not_found(t.rt, &name),
        },
        ("create", None) => match serde_json::from_slice::<Value>(&body) {
            Ok(obj) => create(&shared, &t, obj),
            Err(e) => err(400, "BadRequest", &format!("invalid body: {e}")),
        },
        ("patch", None) => patch(&shared, &t, &content_type, &body, &param),
        ("update", None) => match serde_json::from_slice::<Value>(&body) {
            Ok(obj) => replace(&shared, &t, obj),
            Err(e) => err(400, "BadRequest", &format!("invalid body: {e}")),
        },
        ("delete", None) => delete(&shared, &t, &name, &DeleteOptions::parse(&body, &q)),
        ("deletecollection", None) => delete_collection(&shared, &t, &body, &q, &param),
        // The pod proxy (`pods/NAME:PORT/proxy/...`, RBAC `pods/proxy`) reaches the Job pod's
        // local process.
        (_, Some("proxy")) if t.rt.plural == "pods" => {
            match super::proxy::route(&shared, &method, &uri, &body).await {
                Some(r) => r,
                None => not_found(t.rt, &name),
            }
        }
        // Further subresources are routed here, after RBAC.
        (_, Some(sub)) => err(
            404,
            "NotFound",
            &format!(
                "the server could not find the requested resource ({} {sub})",
                t.rt.plural
            ),
        ),
        _ => err(
            405,
            "MethodNotAllowed",
            &format!("{method} is not supported on {path}"),
        ),
    })
}

/// 404 for a named object.
pub fn not_found(rt: &ResourceType, name: &str) -> Response<Body> {
    let mut s = status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", rt.plural),
    );
    s["details"] = json!({"name": name, "group": rt.group, "kind": rt.plural});
    status_resp(&s)
}

/// `/version`, `/api`, `/apis` and the discovery documents of each group version.
fn fixed_documents(path: &str) -> Option<Response<Body>> {
    match path {
        "/version" => {
            return Some(json_resp(
                200,
                &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-aefm-fake", "platform": "linux/amd64"}),
            ))
        }
        "/api" => {
            return Some(json_resp(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
            ))
        }
        "/apis" => {
            let groups: Vec<Value> = ["apps", "batch", "authorization.k8s.io"]
                .iter()
                .map(|g| json!({"name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}], "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}}))
                .collect();
            return Some(json_resp(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ));
        }
        _ => {}
    }
    let trimmed = path.trim_matches('/');
    let gv = trimmed
        .strip_prefix("api/")
        .or_else(|| trimmed.strip_prefix("apis/"))?;
    discovery(gv).map(|d| json_resp(200, &d))
}

/// A list, with the real resourceVersion semantics (unset: most recent; `0`: any; `N`: not older
/// than N, or exactly N with `resourceVersionMatch=Exact`) and paging (`limit`, `continue`).
fn list(shared: &Shared, t: &Target, param: &dyn Fn(&str) -> Option<String>) -> Response<Body> {
    let store = shared.store();
    if let Some(rv) = param("resourceVersion").filter(|v| !v.is_empty() && v != "0") {
        let Ok(n) = rv.parse::<u64>() else {
            return err(
                400,
                "BadRequest",
                &format!("invalid resource version {rv:?}"),
            );
        };
        let exact = param("resourceVersionMatch").as_deref() == Some("Exact");
        if n > store.rv {
            let mut s = status(
                504,
                "Timeout",
                &format!("Too large resource version: {n}, current: {}", store.rv),
            );
            s["details"] = json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1});
            return status_resp(&s);
        }
        if exact && (store.too_old(n) || n != store.rv) {
            return err(410, "Expired", &format!("The resourceVersion for the provided list is too old. (requested {n}, current {})", store.rv));
        }
    }
    let items: Vec<Value> = store
        .list(t.rt.plural, t.namespace.as_deref())
        .into_iter()
        .filter(|o| param("labelSelector").is_none_or(|s| matches_labels(o, &s)))
        .filter(|o| param("fieldSelector").is_none_or(|s| matches_fields(o, &s)))
        .collect();
    let offset: usize = match param("continue").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match c.split_once(':').and_then(|(_, o)| o.parse().ok()) {
            Some(o) => o,
            None => return err(400, "BadRequest", &format!("invalid continue token {c:?}")),
        },
    };
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let end = limit.map_or(items.len(), |l| (offset + l).min(items.len()));
    let page: Vec<Value> = items
        .get(offset..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let mut meta = json!({"resourceVersion": store.rv.to_string()});
    if end < items.len() {
        meta["continue"] = json!(format!("{}:{end}", store.rv));
        meta["remainingItemCount"] = json!(items.len() - end);
    }
    json_resp(
        200,
        &json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": meta, "items": page}),
    )
}
