//! One resilient way to wait on the cluster, used by every wait of the backend: deploy readiness,
//! load Jobs, interference pods, deletions.
//!
//! A wait is a `kube` watcher (list, then watch from the list's resourceVersion) whose view of the
//! selected objects is judged again on every event and on a short tick. What a long wait meets on
//! a real cluster is survived: a watch that the server or a load balancer closes is reopened from
//! the last resourceVersion; a 410 Gone (that version expired) makes the watcher list again; a
//! failed request (API server restarting, connection refused, 5xx, 429) is retried with back-off.
//! Each interruption and each recovery is logged. Only answers that retrying cannot change (RBAC
//! 401/403, 404 for the kind, another 4xx) end the wait at once, as an API error.
//!
//! [`bounded`] puts the deadline and the run's cancel token around a wait (Ctrl-C ends it within
//! [`CANCEL_POLL`]); [`FailFast`] turns pods that waiting will not fix into an early error, each
//! after its own grace (the classification is [`super::readiness::pod_trouble`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;

use super::error::{error_chain, KubeError};
use super::readiness::{pod_problem, pod_trouble, Trouble};
use crate::config::kubernetes::KubernetesConfig;
use crate::load::CancelToken;

/// How often a wait looks at its cancel token.
pub const CANCEL_POLL: Duration = Duration::from_millis(150);

/// How often a wait judges its view again without an event (graces expire without one).
const RECHECK: Duration = Duration::from_millis(500);

/// A crash-looping container is given up on after this many restarts: an application that
/// crashes until its database answers usually recovers within the first ones.
pub const CRASH_LOOP_RESTARTS: i32 = 3;

/// How long stuck pods are tolerated before a wait gives up on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    /// A pod the scheduler cannot place (`kubernetes.unschedulable_grace_secs`).
    pub unschedulable: Duration,
    /// A pod whose image pull keeps failing (`kubernetes.image_pull_grace_secs`).
    pub image_pull: Duration,
}

impl Grace {
    /// The graces of the `kubernetes:` section.
    pub fn of(cfg: &KubernetesConfig) -> Grace {
        Grace {
            unschedulable: Duration::from_secs(cfg.unschedulable_grace_secs),
            image_pull: Duration::from_secs(cfg.image_pull_grace_secs),
        }
    }
}

/// Deadline, patience with stuck pods, and cancellation of one wait.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The wait fails as timed out after this long.
    pub timeout: Duration,
    /// How long stuck pods are tolerated.
    pub grace: Grace,
    /// Ends the wait with [`KubeError::Cancelled`] once cancelled.
    pub cancel: CancelToken,
}

impl Limits {
    /// A wait of `timeout` with the section's graces, ended early by `cancel` (the run's token).
    pub fn new(cfg: &KubernetesConfig, timeout: Duration, cancel: &CancelToken) -> Limits {
        Limits {
            timeout,
            grace: Grace::of(cfg),
            cancel: cancel.clone(),
        }
    }

    /// A cleanup wait: bounded by `timeout` but not cancellable, so that the Ctrl-C which asked
    /// for the cleanup does not also cut it short.
    pub fn cleanup(cfg: &KubernetesConfig, timeout: Duration) -> Limits {
        Limits::new(cfg, timeout, &CancelToken::new())
    }
}

/// Runs `wait` until it ends (`Ok(Some)` or its error), `limits.timeout` passes (`Ok(None)`: the
/// caller explains what is missing), or `limits.cancel` is cancelled ([`KubeError::Cancelled`],
/// noticed within [`CANCEL_POLL`]; a token cancelled before the call stops it at once).
pub async fn bounded<T>(
    limits: &Limits,
    wait: impl Future<Output = Result<T, KubeError>>,
) -> Result<Option<T>, KubeError> {
    if limits.cancel.is_cancelled() {
        return Err(KubeError::Cancelled);
    }
    let deadline = tokio::time::Instant::now().checked_add(limits.timeout);
    let expiry = async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(wait, expiry);
    let mut poll = tokio::time::interval(CANCEL_POLL);
    loop {
        tokio::select! {
            biased;
            _ = poll.tick() => {
                if limits.cancel.is_cancelled() {
                    return Err(KubeError::Cancelled);
                }
            }
            r = &mut wait => return r.map(Some),
            _ = &mut expiry => return Ok(None),
        }
    }
}

/// Watches the objects of `api` selected by `config` and returns what `decide` returns first
/// (`None`: keep watching). `decide` sees every selected object by name, only once a complete
/// list has arrived, after each change and every [`RECHECK`]. Transient failures are survived (see
/// the module doc); `what` names the watched objects in logs and errors.
pub async fn watch_until<K, T>(
    api: Api<K>,
    config: watcher::Config,
    what: &str,
    mut decide: impl FnMut(&BTreeMap<String, K>) -> Option<Result<T, KubeError>>,
) -> Result<T, KubeError>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = watcher::watcher(api, config)
        .backoff(WatchBackoff::default())
        .boxed();
    let mut view = View::default();
    let mut interruptions = 0u32;
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(event)) => {
                    if interruptions > 0 {
                        tracing::info!("watch of {what} resumed after {interruptions} interruption(s)");
                        interruptions = 0;
                    }
                    view.apply(event);
                }
                Some(Err(e)) => {
                    if let Some(fatal) = fatal(&e, what) {
                        return Err(fatal);
                    }
                    log_interruption(what, &e, interruptions);
                    interruptions += 1;
                    continue;
                }
                None => {
                    return Err(KubeError::Transport {
                        action: "watch".into(),
                        object: what.to_string(),
                        message: "the watch stream ended".into(),
                    })
                }
            },
            _ = tick.tick() => {}
        }
        if let Some(objects) = view.listed() {
            if let Some(r) = decide(objects) {
                return r;
            }
        }
    }
}

/// The first interruption of a run of them is a warning, the rest debug (a flapping connection
/// must not flood the log); a 410 is routine (the watcher lists again) and only debug.
fn log_interruption(what: &str, e: &watcher::Error, before: u32) {
    let gone = matches!(e, watcher::Error::WatchError(s) if s.code == 410);
    if gone {
        tracing::debug!("watch of {what}: resourceVersion expired (410 Gone); listing again");
    } else if before == 0 {
        tracing::warn!(
            "watch of {what} interrupted ({}); retrying with back-off",
            error_chain(e)
        );
    } else {
        tracing::debug!("watch of {what} still failing: {}", error_chain(e));
    }
}

/// The error ending a wait when retrying cannot help; `None` for what is worth retrying.
fn fatal(e: &watcher::Error, what: &str) -> Option<KubeError> {
    let (action, status) = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => ("list", s.as_ref()),
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => ("watch", s.as_ref()),
        watcher::Error::WatchError(s) => ("watch", s.as_ref()),
        watcher::Error::NoResourceVersion => {
            return Some(KubeError::Transport {
                action: "watch".into(),
                object: what.to_string(),
                message: error_chain(e),
            })
        }
        _ => return None,
    };
    permanent(status.code).then(|| KubeError::Api {
        action: action.into(),
        object: what.to_string(),
        code: status.code,
        reason: status.reason.clone(),
        message: status.message.clone(),
    })
}

/// Whether an API answer with this HTTP status stays the same however often it is retried: the
/// 4xx answers except 408 (timeout), 410 (expired version: list again) and 429 (throttled).
pub fn permanent(code: u16) -> bool {
    (400..500).contains(&code) && !matches!(code, 408 | 410 | 429)
}

/// Exponential back-off between watch retries: 200 ms doubling to 5 s, from the start again
/// after any success. Shorter than kube's default (up to 30 s): a wait has a deadline, and one
/// client's retries do not burden an API server.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (now * 2).min(Self::MAX);
        Some(now)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// The watched objects by name as the watcher's events describe them: a (re)list is buffered
/// and replaces the view only once complete, so a decision never sees half a list.
struct View<K> {
    objects: BTreeMap<String, K>,
    relisting: Option<BTreeMap<String, K>>,
    listed: bool,
}

impl<K> Default for View<K> {
    fn default() -> Self {
        View {
            objects: BTreeMap::new(),
            relisting: None,
            listed: false,
        }
    }
}

impl<K: Resource> View<K> {
    fn apply(&mut self, event: Event<K>) {
        let name = |o: &K| o.meta().name.clone().unwrap_or_default();
        match event {
            Event::Init => self.relisting = Some(BTreeMap::new()),
            Event::InitApply(o) => {
                self.relisting
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name(&o), o);
            }
            Event::InitDone => {
                self.objects = self.relisting.take().unwrap_or_default();
                self.listed = true;
            }
            Event::Apply(o) => {
                self.objects.insert(name(&o), o);
            }
            Event::Delete(o) => {
                self.objects.remove(&name(&o));
            }
        }
    }

    /// The objects, once a first complete list has arrived.
    fn listed(&self) -> Option<&BTreeMap<String, K>> {
        self.listed.then_some(&self.objects)
    }
}

/// Decides when a pod is past hope, remembering since when each pod has been unschedulable or
/// failing to pull its image. See [`FailFast::judge`] for the rules.
#[derive(Debug)]
pub struct FailFast {
    grace: Grace,
    since: HashMap<(String, &'static str), Instant>,
}

impl FailFast {
    /// A judge with these graces and no history.
    pub fn new(grace: Grace) -> FailFast {
        FailFast {
            grace,
            since: HashMap::new(),
        }
    }

    /// Judges `pods` as seen at `now`: returns the first pod that waiting will not fix, with the
    /// rule that says so (`None`: keep waiting). A pod that exited for good or whose image can
    /// never be pulled is given up on at once; a crash loop after [`CRASH_LOOP_RESTARTS`]
    /// restarts; an unschedulable pod, or one whose image pull fails, once that has lasted its
    /// grace without a break (a pod that recovers starts its grace again).
    pub fn judge<'a>(
        &mut self,
        pods: impl IntoIterator<Item = &'a Pod>,
        now: Instant,
    ) -> Option<(&'a Pod, String)> {
        let mut seen = HashSet::new();
        let mut verdict = None;
        for p in pods {
            let Some(trouble) = pod_trouble(p) else {
                continue;
            };
            let id = p
                .metadata
                .uid
                .clone()
                .or_else(|| p.metadata.name.clone())
                .unwrap_or_default();
            let key = (id, trouble.class());
            let first = *self.since.entry(key.clone()).or_insert(now);
            seen.insert(key);
            let held = now.saturating_duration_since(first);
            if verdict.is_none() {
                verdict = self.rule(trouble, held).map(|rule| (p, rule));
            }
        }
        self.since.retain(|k, _| seen.contains(k));
        verdict
    }

    fn rule(&self, trouble: Trouble, held: Duration) -> Option<String> {
        let secs = held.as_secs();
        match trouble {
            Trouble::Exited => Some("exited and will not be restarted".into()),
            Trouble::BadImage => Some("its image can never be pulled".into()),
            Trouble::CrashLoop(n) if n >= CRASH_LOOP_RESTARTS => {
                Some(format!("crash-looping, {n} restarts"))
            }
            Trouble::ImagePull if held >= self.grace.image_pull => Some(format!(
                "image pull failing for {secs}s (image_pull_grace_secs)"
            )),
            Trouble::Unschedulable if held >= self.grace.unschedulable => Some(format!(
                "unschedulable for {secs}s (unschedulable_grace_secs)"
            )),
            _ => None,
        }
    }
}

/// The line naming a pod given up on: `pod ns/name: <its problem> [<the rule>]`.
pub fn failing_line(p: &Pod, rule: &str) -> String {
    format!(
        "pod {}/{}: {} [{rule}]",
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
        pod_problem(p).unwrap_or_else(|| "no problem reported".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grace(secs: u64) -> Grace {
        Grace {
            unschedulable: Duration::from_secs(secs),
            image_pull: Duration::from_secs(secs),
        }
    }

    fn pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Always"},
            "status": status,
        }))
        .unwrap()
    }

    fn unschedulable(name: &str) -> Pod {
        pod(
            name,
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                   "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]}),
        )
    }

    fn waiting(name: &str, reason: &str, restarts: i32) -> Pod {
        pod(
            name,
            json!({"phase": "Pending", "containerStatuses": [{"name": "c", "image": "i", "imageID": "",
                   "ready": false, "restartCount": restarts, "state": {"waiting": {"reason": reason}}}]}),
        )
    }

    #[test]
    fn unschedulable_fails_only_after_an_unbroken_grace() {
        let mut judge = FailFast::new(grace(30));
        let t0 = Instant::now();
        let p = unschedulable("a");
        assert!(judge.judge([&p], t0).is_none());
        assert!(judge.judge([&p], t0 + Duration::from_secs(29)).is_none());
        // Scheduled for a moment: the grace starts again.
        assert!(judge.judge([], t0 + Duration::from_secs(29)).is_none());
        assert!(judge.judge([&p], t0 + Duration::from_secs(31)).is_none());
        let (who, rule) = judge.judge([&p], t0 + Duration::from_secs(62)).unwrap();
        assert_eq!(who.metadata.name.as_deref(), Some("a"));
        assert!(rule.contains("unschedulable for 31s"), "{rule}");
        let line = failing_line(who, &rule);
        assert!(
            line.starts_with("pod ns/a: pending: Unschedulable (0/3 nodes are available"),
            "{line}"
        );
        // A zero grace gives up at the first sight.
        assert!(FailFast::new(grace(0)).judge([&p], t0).is_some());
    }

    #[test]
    fn image_pull_errors_share_one_grace_and_bad_images_fail_at_once() {
        let mut judge = FailFast::new(grace(10));
        let t0 = Instant::now();
        let err = waiting("a", "ErrImagePull", 0);
        let backoff = waiting("a", "ImagePullBackOff", 0);
        assert!(judge.judge([&err], t0).is_none());
        assert!(judge
            .judge([&backoff], t0 + Duration::from_secs(5))
            .is_none());
        let (_, rule) = judge.judge([&err], t0 + Duration::from_secs(10)).unwrap();
        assert!(rule.contains("image pull failing for 10s"), "{rule}");
        let bad = waiting("b", "InvalidImageName", 0);
        assert!(FailFast::new(grace(10)).judge([&bad], t0).is_some());
    }

    #[test]
    fn crash_loops_fail_after_a_few_restarts_and_healthy_pods_never() {
        let mut judge = FailFast::new(grace(30));
        let t0 = Instant::now();
        assert!(judge
            .judge([&waiting("a", "CrashLoopBackOff", 1)], t0)
            .is_none());
        let looping = waiting("a", "CrashLoopBackOff", CRASH_LOOP_RESTARTS);
        let (_, rule) = judge.judge([&looping], t0).unwrap();
        assert!(rule.contains("crash-looping, 3 restarts"), "{rule}");
        let creating = waiting("c", "ContainerCreating", 0);
        let running = pod(
            "r",
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
        );
        let late = t0 + Duration::from_secs(3600);
        assert!(judge.judge([&creating, &running], t0).is_none());
        assert!(judge.judge([&creating, &running], late).is_none());
    }

    #[test]
    fn only_lasting_api_answers_are_fatal() {
        for code in [400, 401, 403, 404, 422] {
            assert!(permanent(code), "{code}");
        }
        for code in [408, 410, 429, 500, 503, 504] {
            assert!(!permanent(code), "{code}");
        }
        let status = |code| kube::core::Status::failure("m", "R").with_code(code);
        let gone = watcher::Error::WatchError(Box::new(status(410)));
        assert!(fatal(&gone, "pods in ns").is_none());
        let denied = watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status(403))));
        let e = fatal(&denied, "pods in ns").unwrap();
        assert!(
            matches!(e, KubeError::Api { code: 403, ref action, .. } if action == "list"),
            "{e}"
        );
        let down = watcher::Error::WatchStartFailed(kube::Error::Api(Box::new(status(503))));
        assert!(fatal(&down, "pods in ns").is_none());
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = WatchBackoff::default();
        let first: Vec<u128> = b.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(first, [200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(200)));
    }

    #[test]
    fn the_view_replaces_its_objects_only_when_a_relist_is_complete() {
        let obj = |n: &str| pod(n, json!({}));
        let mut v: View<Pod> = View::default();
        v.apply(Event::Init);
        v.apply(Event::InitApply(obj("a")));
        assert!(v.listed().is_none(), "half a list is never judged");
        v.apply(Event::InitDone);
        v.apply(Event::Apply(obj("b")));
        assert_eq!(v.listed().unwrap().len(), 2);
        // After a 410 the watcher lists again: the old view stays until the new one is whole.
        v.apply(Event::Init);
        v.apply(Event::InitApply(obj("b")));
        assert_eq!(v.listed().unwrap().len(), 2);
        v.apply(Event::InitDone);
        assert_eq!(
            v.listed().unwrap().keys().collect::<Vec<_>>(),
            [&"b".to_string()]
        );
        v.apply(Event::Delete(obj("b")));
        assert!(v.listed().unwrap().is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bounded_times_out_and_cancels() {
        let cfg: KubernetesConfig = serde_yaml::from_str("namespace: a\nyaml_repo: r\n").unwrap();
        let never = std::future::pending::<Result<(), KubeError>>;
        let limits = Limits::cleanup(&cfg, Duration::from_millis(300));
        assert!(bounded(&limits, never()).await.unwrap().is_none());
        let cancel = CancelToken::new();
        let limits = Limits::new(&cfg, Duration::from_secs(5), &cancel);
        cancel.cancel();
        assert!(matches!(
            bounded(&limits, never()).await,
            Err(KubeError::Cancelled)
        ));
        let done = bounded(&limits, async { Ok(1) }).await;
        assert!(matches!(done, Err(KubeError::Cancelled)), "cancel first");
        let limits = Limits::cleanup(&cfg, Duration::from_secs(5));
        assert_eq!(bounded(&limits, async { Ok(1) }).await.unwrap(), Some(1));
    }
}
