//! Deletion as a real API server and its garbage collector do it, asynchronously: a pod bound to
//! a node gets `deletionTimestamp` and `deletionGracePeriodSeconds` (the request's grace period,
//! else the pod's `terminationGracePeriodSeconds`, else 30 s) and disappears when its containers
//! have stopped, i.e. after the shorter of its grace period and [`Faults::termination_delay`];
//! watches see MODIFIED then DELETED. Objects with finalizers wait for them
//! (`foregroundDeletion` until their dependents are gone, `kubernetes.io/pvc-protection` until no
//! pod uses the claim); a namespace is Terminating until everything in it is gone. Dependents
//! follow their owner (background or foreground) or are orphaned (`propagationPolicy: Orphan`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::controllers::{Faults, World};
#[cfg(test)]
use super::store::key_of;
use super::store::{now_rfc3339, Key, Store};

/// The finalizer that keeps an owner until its dependents are gone.
const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that keeps a claim while a pod uses it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

/// What a DELETE asked for (query or `DeleteOptions` body).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace: Option<i64>,
    /// `propagationPolicy`: `Background` (default here), `Foreground`, `Orphan`.
    pub propagation: Option<String>,
}

impl DeleteOptions {
    /// Reads the options from the body (JSON `DeleteOptions`) and the query, the query winning.
    pub fn parse(body: &[u8], query: &[(String, String)]) -> DeleteOptions {
        let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let q = |k: &str| query.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.clone());
        DeleteOptions {
            grace: q("gracePeriodSeconds")
                .and_then(|s| s.parse().ok())
                .or_else(|| b["gracePeriodSeconds"].as_i64()),
            propagation: q("propagationPolicy")
                .or_else(|| b["propagationPolicy"].as_str().map(str::to_string)),
        }
    }
}

/// The outcome of a DELETE.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Removed now (the object as it was).
    Gone(Value),
    /// Marked for deletion; still there (the object with its `deletionTimestamp`).
    Pending(Value),
}

fn dependents(store: &Store, uid: &Value) -> Vec<Key> {
    store
        .objects
        .iter()
        .filter(|(_, o)| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *uid))
        })
        .map(|(k, _)| k.clone())
        .collect()
}

fn finalizers(o: &Value) -> Vec<String> {
    o["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

fn rfc3339_in(secs: i64) -> String {
    let t = k8s_openapi::jiff::Timestamp::now()
        + k8s_openapi::jiff::SignedDuration::from_secs(secs.max(0));
    format!("{t:.0}")
}

/// Deletes one object as the API server does; `None` if it does not exist.
pub fn request(
    store: &mut Store,
    world: &mut World,
    faults: &Faults,
    key: &Key,
    opts: &DeleteOptions,
) -> Option<Deleted> {
    let mut obj = store.objects.get(key)?.clone();
    if obj["metadata"]["deletionTimestamp"].is_string() {
        if key.0 == "pods" && opts.grace == Some(0) {
            remove(store, world, faults, key);
            return Some(Deleted::Gone(obj));
        }
        return Some(Deleted::Pending(obj));
    }
    let uid = obj["metadata"]["uid"].clone();
    let deps = dependents(store, &uid);
    let mut fins = finalizers(&obj);
    match opts.propagation.as_deref() {
        Some("Orphan") => orphan(store, &deps, &uid),
        Some("Foreground") if !deps.is_empty() => fins.push(FOREGROUND.into()),
        _ => {}
    }
    if key.0 == "namespaces" {
        obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
        obj["status"]["phase"] = json!("Terminating");
        return Some(Deleted::Pending(store.update("namespaces", obj)));
    }
    if key.0 == "pods" {
        let grace = opts
            .grace
            .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        let running = obj["spec"]["nodeName"].is_string()
            && !matches!(
                obj["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
        if grace > 0 && running {
            obj["metadata"]["deletionTimestamp"] = json!(rfc3339_in(grace));
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            if !fins.is_empty() {
                obj["metadata"]["finalizers"] = json!(fins);
            }
            let stop = Duration::from_secs(grace as u64).min(faults.termination_delay);
            world.terminating.insert(key.clone(), Instant::now() + stop);
            return Some(Deleted::Pending(store.update("pods", obj)));
        }
    }
    if !fins.is_empty() {
        obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        obj["metadata"]["finalizers"] = json!(fins);
        return Some(Deleted::Pending(store.update(&key.0, obj)));
    }
    remove(store, world, faults, key);
    Some(Deleted::Gone(obj))
}

fn orphan(store: &mut Store, deps: &[Key], uid: &Value) {
    for k in deps {
        let Some(mut d) = store.objects.get(k).cloned() else {
            continue;
        };
        if let Some(refs) = d["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"] != *uid);
        }
        store.update(&k.0, d);
    }
}

/// Removes the object now; its dependents are deleted in the background (pods gracefully).
pub fn remove(store: &mut Store, world: &mut World, faults: &Faults, key: &Key) {
    let Some(obj) = store.remove(key) else {
        return;
    };
    world.terminating.remove(key);
    world.born.remove(key);
    let background = DeleteOptions {
        grace: None,
        propagation: Some("Background".into()),
    };
    for d in dependents(store, &obj["metadata"]["uid"]) {
        request(store, world, faults, &d, &background);
    }
}

/// Whether a pod that has not terminated uses the claim.
fn claim_in_use(store: &Store, pvc: &Value) -> bool {
    let ns = pvc["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = &pvc["metadata"]["name"];
    store.list("pods", Some(ns)).iter().any(|p| {
        !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            && p["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["persistentVolumeClaim"]["claimName"] == *name)
    })
}

/// One garbage-collector tick: removes pods whose containers have stopped, namespaces emptied,
/// and objects whose finalizers are done.
pub fn collect(store: &mut Store, world: &mut World, faults: &Faults) {
    let now = Instant::now();
    let due: Vec<Key> = world
        .terminating
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(k, _)| k.clone())
        .collect();
    for k in due {
        remove(store, world, faults, &k);
    }
    let marked: Vec<(Key, Value)> = store
        .objects
        .iter()
        .filter(|(_, o)| o["metadata"]["deletionTimestamp"].is_string())
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (key, o) in marked {
        if key.0 == "namespaces" {
            finish_namespace(store, world, faults, &key);
            continue;
        }
        if key.0 == "pods" && world.terminating.contains_key(&key) {
            continue;
        }
        let mut fins = finalizers(&o);
        let before = fins.len();
        fins.retain(|f| match f.as_str() {
            FOREGROUND => !dependents(store, &o["metadata"]["uid"]).is_empty(),
            PVC_PROTECTION => claim_in_use(store, &o),
            _ => true,
        });
        if fins.is_empty() {
            remove(store, world, faults, &key);
        } else if fins.len() != before {
            let mut o = o.clone();
            o["metadata"]["finalizers"] = json!(fins);
            store.update(&key.0, o);
        }
    }
}

/// Deletes everything in a Terminating namespace, then the namespace once it is empty.
fn finish_namespace(store: &mut Store, world: &mut World, faults: &Faults, key: &Key) {
    let ns = &key.2;
    let inside: Vec<Key> = store
        .objects
        .keys()
        .filter(|(_, n, _)| n == ns)
        .cloned()
        .collect();
    if inside.is_empty() {
        remove(store, world, faults, key);
        return;
    }
    let background = DeleteOptions {
        grace: None,
        propagation: Some("Background".into()),
    };
    for k in inside {
        request(store, world, faults, &k, &background);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Store, World, Faults) {
        let faults = Faults {
            termination_delay: Duration::from_millis(50),
            ..Faults::default()
        };
        (Store::default(), World::default(), faults)
    }

    #[test]
    fn running_pods_terminate_after_the_delay_and_owners_cascade() {
        let (mut s, mut w, f) = setup();
        let rs = s.create(
            "replicasets",
            json!({"metadata": {"name": "r", "namespace": "n"}}),
        );
        s.create("pods", json!({"metadata": {"name": "p", "namespace": "n", "ownerReferences": [{"uid": rs["metadata"]["uid"]}]},
                                "spec": {"nodeName": "w1"}, "status": {"phase": "Running"}}));
        s.create(
            "pods",
            json!({"metadata": {"name": "q", "namespace": "n"}, "spec": {}}),
        );
        let rs_key = key_of("replicasets", &rs);
        assert!(matches!(
            request(&mut s, &mut w, &f, &rs_key, &DeleteOptions::default()),
            Some(Deleted::Gone(_))
        ));
        let p = s.get("pods", "n", "p").unwrap();
        assert!(p["metadata"]["deletionTimestamp"].is_string());
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
        // An unscheduled pod goes at once.
        let q = ("pods".to_string(), "n".to_string(), "q".to_string());
        assert!(matches!(
            request(&mut s, &mut w, &f, &q, &DeleteOptions::default()),
            Some(Deleted::Gone(_))
        ));
        collect(&mut s, &mut w, &f);
        assert!(s.get("pods", "n", "p").is_some(), "still terminating");
        std::thread::sleep(Duration::from_millis(80));
        collect(&mut s, &mut w, &f);
        assert!(s.get("pods", "n", "p").is_none());
        let kinds: Vec<&str> = s
            .events
            .iter()
            .filter(|e| e.object["metadata"]["name"] == "p")
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
    }

    #[test]
    fn orphans_foreground_and_claims_in_use() {
        let (mut s, mut w, f) = setup();
        let j = s.create("jobs", json!({"metadata": {"name": "j", "namespace": "n"}}));
        s.create("pods", json!({"metadata": {"name": "p", "namespace": "n", "ownerReferences": [{"uid": j["metadata"]["uid"]}]},
                                "spec": {"nodeName": "w1", "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]},
                                "status": {"phase": "Running"}}));
        let jk = key_of("jobs", &j);
        let fg = DeleteOptions {
            grace: None,
            propagation: Some("Foreground".into()),
        };
        assert!(matches!(
            request(&mut s, &mut w, &f, &jk, &fg),
            Some(Deleted::Pending(_))
        ));
        s.create(
            "persistentvolumeclaims",
            json!({"metadata": {"name": "c", "namespace": "n", "finalizers": [PVC_PROTECTION]}}),
        );
        let ck = (
            "persistentvolumeclaims".to_string(),
            "n".to_string(),
            "c".to_string(),
        );
        assert!(matches!(
            request(&mut s, &mut w, &f, &ck, &DeleteOptions::default()),
            Some(Deleted::Pending(_))
        ));
        collect(&mut s, &mut w, &f);
        assert!(
            s.get("jobs", "n", "j").is_some()
                && s.get("persistentvolumeclaims", "n", "c").is_some()
        );
        let pk = ("pods".to_string(), "n".to_string(), "p".to_string());
        let now = DeleteOptions {
            grace: Some(0),
            propagation: None,
        };
        request(&mut s, &mut w, &f, &pk, &now);
        collect(&mut s, &mut w, &f);
        assert!(
            s.get("jobs", "n", "j").is_none(),
            "foreground owner goes after its pods"
        );
        assert!(
            s.get("persistentvolumeclaims", "n", "c").is_none(),
            "claim freed"
        );
        // Orphan keeps the dependents, without the owner reference.
        let d = s.create(
            "deployments",
            json!({"metadata": {"name": "d", "namespace": "n"}}),
        );
        s.create("replicasets", json!({"metadata": {"name": "r", "namespace": "n", "ownerReferences": [{"uid": d["metadata"]["uid"]}]}}));
        let orphan = DeleteOptions {
            grace: None,
            propagation: Some("Orphan".into()),
        };
        request(&mut s, &mut w, &f, &key_of("deployments", &d), &orphan);
        assert_eq!(
            s.get("replicasets", "n", "r").unwrap()["metadata"]["ownerReferences"],
            json!([])
        );
    }
}
