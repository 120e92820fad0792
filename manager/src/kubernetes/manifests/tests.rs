//! Tests of loading and rewriting the YAML repository.

use super::*;

fn cfg() -> KubernetesConfig {
    serde_yaml::from_str(
        r#"
namespace: social
yaml_repo: /nonexistent
app_image: repo/app:1
image_pull_policy: Always
pod_resources: {cpu: "0.1", memory: 100Mi}
replicas: {frontend: 4}
nodes:
  - {name: w1, roles: [infra]}
  - {name: w2, roles: [testbed]}
  - {name: w3, roles: [testbed]}
"#,
    )
    .unwrap()
}

const APP: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: frontend}
spec: {ports: [{port: 5000}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend, labels: {app: frontend}}
spec:
  replicas: 1
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec:
      affinity:
        podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: []}
        nodeAffinity: {old: true}
      containers:
        - {name: app, image: APP_IMG, resources: {limits: {cpu: "4"}}}
        - {name: sidecar, image: jaeger-agent}
---
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv1}
"#;

fn rewritten(set: ManifestSet) -> Vec<Manifest> {
    let c = cfg();
    let mut ms = parse_documents(Path::new("app.yaml"), APP).unwrap();
    rewrite_set(
        &RewriteContext {
            config: &c,
            experiment: "exp1",
        },
        set,
        &mut ms,
    )
    .unwrap();
    ms
}

#[test]
fn parses_multi_documents_and_skips_empty_ones() {
    let ms = parse_documents(Path::new("app.yaml"), APP).unwrap();
    assert_eq!(
        ms.iter().map(|m| m.kind()).collect::<Vec<_>>(),
        ["Service", "Deployment", "PersistentVolume"]
    );
    assert_eq!(ms[2].document, 4);
}

#[test]
fn list_kinds_are_expanded_and_bad_documents_named() {
    let list = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
    assert_eq!(parse_documents(Path::new("l.yaml"), list).unwrap().len(), 2);
    let err = parse_documents(
        Path::new("bad.yaml"),
        "apiVersion: v1\nkind: X\n---\nkind: [",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("bad.yaml: document 1: missing metadata.name"),
        "{err}"
    );
}

#[test]
fn namespace_only_on_namespaced_kinds() {
    let ms = rewritten(ManifestSet::UnderTest);
    assert_eq!(ms[0].namespace(), Some("social"));
    assert_eq!(ms[1].namespace(), Some("social"));
    assert_eq!(ms[2].namespace(), None);
}

#[test]
fn image_placeholder_resources_replicas_pull_policy() {
    let ms = rewritten(ManifestSet::UnderTest);
    let d = &ms[1].object;
    let cs = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs[0]["image"], "repo/app:1");
    assert_eq!(cs[1]["image"], "jaeger-agent");
    assert_eq!(
        cs[0]["resources"],
        json!({"requests": {"cpu": "0.1", "memory": "100Mi"}, "limits": {"cpu": "0.1", "memory": "100Mi"}})
    );
    assert!(cs[1].get("resources").is_none());
    assert_eq!(cs[0]["imagePullPolicy"], "Always");
    assert_eq!(cs[1]["imagePullPolicy"], "Always");
    assert_eq!(d["spec"]["replicas"], 4);
}

#[test]
fn affinity_by_role_keeps_pod_anti_affinity() {
    let ms = rewritten(ManifestSet::UnderTest);
    let aff = &ms[1].object["spec"]["template"]["spec"]["affinity"];
    assert!(aff["podAntiAffinity"].is_object());
    let values = &aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"];
    assert_eq!(values, &json!(["w2", "w3"]));
    let c = cfg();
    let mut infra = parse_documents(Path::new("app.yaml"), APP).unwrap();
    // infra: no replicas map check, no resources, infra nodes.
    rewrite_set(
        &RewriteContext {
            config: &KubernetesConfig {
                replicas: Default::default(),
                ..c
            },
            experiment: "e",
        },
        ManifestSet::Infra,
        &mut infra,
    )
    .unwrap();
    let d = &infra[1].object;
    assert_eq!(
        d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"][0]["values"],
        json!(["w1"])
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "4"}})
    );
}

#[test]
fn labels_on_object_and_template_not_selector() {
    let ms = rewritten(ManifestSet::UnderTest);
    let d = &ms[1].object;
    assert_eq!(d["metadata"]["labels"][labels::EXPERIMENT], "exp1");
    assert_eq!(d["metadata"]["labels"]["app"], "frontend");
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"][labels::EXPERIMENT],
        "exp1"
    );
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"app": "frontend"}})
    );
}

#[test]
fn placeholder_without_image_and_unknown_replicas_fail() {
    let mut c = cfg();
    c.app_image = None;
    let mut ms = parse_documents(Path::new("app.yaml"), APP).unwrap();
    let e = rewrite_set(
        &RewriteContext {
            config: &c,
            experiment: "e",
        },
        ManifestSet::UnderTest,
        &mut ms,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("APP_IMG") && e.to_string().contains("app.yaml: document 2"),
        "{e}"
    );
    let mut c = cfg();
    c.replicas.insert("fronted".into(), 2);
    let mut ms = parse_documents(Path::new("app.yaml"), APP).unwrap();
    let e = rewrite_set(
        &RewriteContext {
            config: &c,
            experiment: "e",
        },
        ManifestSet::UnderTest,
        &mut ms,
    )
    .unwrap_err();
    assert!(e.to_string().contains("kubernetes.replicas.fronted"), "{e}");
}
