//! The fake API server's object store: objects by resource, namespace and name, a global
//! resourceVersion, and the event history watches replay (ADDED, MODIFIED, DELETED). Like etcd
//! and the watch cache, only the last [`Store::window`] events are kept: a watch from a
//! resourceVersion older than that is answered 410 Gone ([`Store::too_old`]).

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};

/// A resource type the fake serves.
#[derive(Debug, Clone, Copy)]
pub struct ResourceType {
    /// Plural (`deployments`).
    pub plural: &'static str,
    /// Group, empty for core.
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
}

impl ResourceType {
    /// `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Every resource the fake serves.
pub const RESOURCES: &[ResourceType] = &[
    ResourceType {
        plural: "namespaces",
        group: "",
        version: "v1",
        kind: "Namespace",
        namespaced: false,
    },
    ResourceType {
        plural: "nodes",
        group: "",
        version: "v1",
        kind: "Node",
        namespaced: false,
    },
    ResourceType {
        plural: "persistentvolumes",
        group: "",
        version: "v1",
        kind: "PersistentVolume",
        namespaced: false,
    },
    ResourceType {
        plural: "pods",
        group: "",
        version: "v1",
        kind: "Pod",
        namespaced: true,
    },
    ResourceType {
        plural: "services",
        group: "",
        version: "v1",
        kind: "Service",
        namespaced: true,
    },
    ResourceType {
        plural: "configmaps",
        group: "",
        version: "v1",
        kind: "ConfigMap",
        namespaced: true,
    },
    ResourceType {
        plural: "secrets",
        group: "",
        version: "v1",
        kind: "Secret",
        namespaced: true,
    },
    ResourceType {
        plural: "serviceaccounts",
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        namespaced: true,
    },
    ResourceType {
        plural: "persistentvolumeclaims",
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        namespaced: true,
    },
    ResourceType {
        plural: "deployments",
        group: "apps",
        version: "v1",
        kind: "Deployment",
        namespaced: true,
    },
    ResourceType {
        plural: "replicasets",
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        namespaced: true,
    },
    ResourceType {
        plural: "statefulsets",
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        namespaced: true,
    },
    ResourceType {
        plural: "daemonsets",
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        namespaced: true,
    },
    ResourceType {
        plural: "jobs",
        group: "batch",
        version: "v1",
        kind: "Job",
        namespaced: true,
    },
];

/// Finds a resource by group and plural.
pub fn resource(group: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// Finds a resource by kind.
pub fn resource_of_kind(kind: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

/// Key of an object: (plural, namespace or "", name).
pub type Key = (String, String, String);

/// One recorded change.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Plural of the object's resource.
    pub plural: String,
    /// `ADDED`, `MODIFIED`, `DELETED`.
    pub kind: &'static str,
    /// The object after the change (before, for DELETED).
    pub object: Value,
}

/// Events kept by default (a real API server keeps about five minutes of them).
pub const DEFAULT_WINDOW: usize = 10_000;

/// Objects plus history.
#[derive(Debug)]
pub struct Store {
    /// Objects.
    pub objects: BTreeMap<Key, Value>,
    /// Last resourceVersion handed out.
    pub rv: u64,
    /// The retained changes, oldest first.
    pub events: VecDeque<Event>,
    /// Highest resourceVersion whose event is no longer retained (0: none dropped yet).
    pub compacted: u64,
    /// How many events are retained.
    pub window: usize,
    uid: u64,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            objects: BTreeMap::new(),
            rv: 0,
            events: VecDeque::new(),
            compacted: 0,
            window: DEFAULT_WINDOW,
            uid: 0,
        }
    }
}

impl Store {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, event: Event) {
        self.events.push_back(event);
        while self.events.len() > self.window {
            if let Some(e) = self.events.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    /// Forgets every retained event, as an etcd compaction does: watches must then start from
    /// the current resourceVersion (a fresh list).
    pub fn compact(&mut self) {
        self.events.clear();
        self.compacted = self.rv;
    }

    /// Whether a watch from `rv` can no longer be served (events after it were dropped).
    pub fn too_old(&self, rv: u64) -> bool {
        rv < self.compacted
    }

    /// The 410 `Expired` message for a watch from `rv`, worded as a real API server does.
    pub fn too_old_message(&self, rv: u64) -> String {
        format!("too old resource version: {rv} ({})", self.compacted + 1)
    }

    /// Inserts a new object: fills uid, resourceVersion, generation, creationTimestamp.
    pub fn create(&mut self, plural: &str, mut obj: Value) -> Value {
        let rv = self.bump();
        self.uid += 1;
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", self.uid));
        meta["resourceVersion"] = json!(rv.to_string());
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!(now_rfc3339());
        let key = key_of(plural, &obj);
        self.objects.insert(key, obj.clone());
        self.record(Event {
            rv,
            plural: plural.to_string(),
            kind: "ADDED",
            object: obj.clone(),
        });
        obj
    }

    /// Replaces an existing object if it changed; bumps generation when `spec` changed.
    /// Returns the stored object.
    pub fn update(&mut self, plural: &str, mut obj: Value) -> Value {
        let key = key_of(plural, &obj);
        let Some(old) = self.objects.get(&key).cloned() else {
            return self.create(plural, obj);
        };
        let mut cmp = obj.clone();
        cmp["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        cmp["metadata"]["generation"] = old["metadata"]["generation"].clone();
        if cmp == old {
            return old;
        }
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        obj["metadata"]["generation"] = json!(if obj["spec"] != old["spec"] {
            generation + 1
        } else {
            generation
        });
        let rv = self.bump();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key, obj.clone());
        self.record(Event {
            rv,
            plural: plural.to_string(),
            kind: "MODIFIED",
            object: obj.clone(),
        });
        obj
    }

    /// Removes one object now (a DELETED event), leaving what it owns.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let obj = self.objects.remove(key)?;
        let rv = self.bump();
        let mut gone = obj.clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(Event {
            rv,
            plural: key.0.clone(),
            kind: "DELETED",
            object: gone,
        });
        Some(obj)
    }

    /// Removes an object and, recursively, every object it owns, at once (what the pod garbage
    /// collector does to pods of a vanished node; API deletions go through
    /// [`super::deletion::request`]).
    pub fn delete(&mut self, key: &Key) -> Option<Value> {
        let obj = self.remove(key)?;
        let uid = obj["metadata"]["uid"].clone();
        let owned: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in owned {
            self.delete(&k);
        }
        Some(obj)
    }

    /// Objects of a resource (in a namespace, or all).
    pub fn list(&self, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((p, ns, _), _)| p == plural && namespace.is_none_or(|n| n == ns))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// One object.
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.objects
            .get(&(plural.to_string(), namespace.to_string(), name.to_string()))
            .cloned()
    }
}

/// Key of an object under `plural`.
pub fn key_of(plural: &str, obj: &Value) -> Key {
    (
        plural.to_string(),
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Whether an object's labels match a label selector (`a=b,c!=d,e,!f,g in (x,y)`).
pub fn matches_labels(obj: &Value, selector: &str) -> bool {
    let labels = &obj["metadata"]["labels"];
    let get = |k: &str| labels[k].as_str().map(str::to_string);
    split_selector(selector).iter().all(|term| {
        let term = term.trim();
        if term.is_empty() {
            return true;
        }
        if let Some((k, rest)) = term.split_once(" in ") {
            let vals: Vec<&str> = rest
                .trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(str::trim)
                .collect();
            return get(k.trim()).is_some_and(|v| vals.contains(&v.as_str()));
        }
        if let Some((k, v)) = term.split_once("!=") {
            return get(k.trim()).as_deref() != Some(v.trim());
        }
        if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            return get(k.trim()).as_deref() == Some(v.trim());
        }
        if let Some(k) = term.strip_prefix('!') {
            return get(k).is_none();
        }
        get(term).is_some()
    })
}

/// Splits on commas outside parentheses.
fn split_selector(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

/// Whether an object matches a field selector (`metadata.name=x,metadata.namespace=y`).
pub fn matches_fields(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (k, v, neg) = match term.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((k, v)) => (k, v, false),
                None => return true,
            },
        };
        let mut cur = obj;
        for part in k.split('.') {
            cur = &cur[part];
        }
        (cur.as_str().unwrap_or_default() == v) != neg
    })
}

/// Deep merge for server-side apply: maps merge key by key, everything else is replaced.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(bv) if bv.is_object() && v.is_object() => merge(bv, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The current time as the API server writes timestamps (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    format!("{:.0}", k8s_openapi::jiff::Timestamp::now())
}

/// A Kubernetes `Status` failure body.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let o =
            json!({"metadata": {"name": "a", "namespace": "n", "labels": {"x": "1", "y": "2"}}});
        assert!(matches_labels(&o, "x=1,y"));
        assert!(matches_labels(&o, "x in (1,3),!z"));
        assert!(!matches_labels(&o, "x!=1"));
        assert!(matches_fields(&o, "metadata.name=a,metadata.namespace=n"));
        assert!(!matches_fields(&o, "metadata.name=b"));
    }

    #[test]
    fn delete_cascades_to_owned() {
        let mut s = Store::default();
        let d = s.create(
            "deployments",
            json!({"metadata": {"name": "d", "namespace": "n"}}),
        );
        s.create("pods", json!({"metadata": {"name": "p", "namespace": "n", "ownerReferences": [{"uid": d["metadata"]["uid"]}]}}));
        s.delete(&("deployments".into(), "n".into(), "d".into()));
        assert!(s.list("pods", None).is_empty());
    }

    #[test]
    fn history_is_a_window() {
        let mut s = Store {
            window: 3,
            ..Store::default()
        };
        for i in 0..5 {
            s.create(
                "configmaps",
                json!({"metadata": {"name": format!("c{i}"), "namespace": "n"}}),
            );
        }
        assert_eq!(s.events.len(), 3);
        assert_eq!(s.events[0].rv, 3);
        assert!(s.too_old(1) && !s.too_old(2) && !s.too_old(5));
        assert_eq!(s.too_old_message(1), "too old resource version: 1 (3)");
        s.compact();
        assert!(s.events.is_empty() && s.too_old(4) && !s.too_old(5));
    }
}
