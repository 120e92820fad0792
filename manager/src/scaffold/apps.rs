//! `aefm init --app`: a config for one of the usual benchmark applications, against the user's
//! checkout of its upstream repository. Nothing of theirs is copied: the YAML repository is
//! symbolic links into the checkout (plain manifests) or a script that renders the checkout's
//! Helm chart, and the load script is the checkout's own wrk2 script (Train-Ticket has none: a
//! small one of ours is written).

use std::path::{Path, PathBuf};

/// The applications `aefm init --app` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum App {
    /// DeathStarBench hotelReservation.
    HotelReservation,
    /// DeathStarBench socialNetwork.
    SocialNetwork,
    /// DeathStarBench mediaMicroservices.
    MediaMicroservices,
    /// FudanSELab train-ticket.
    TrainTicket,
}

/// The upstream checkout lacks what the application's config needs.
#[derive(Debug, thiserror::Error)]
#[error("{upstream}: not a checkout of {repo} with {app}: missing {}", missing.join(", "))]
pub struct UpstreamError {
    /// The application.
    pub app: &'static str,
    /// The repository to clone.
    pub repo: &'static str,
    /// The path given with `--upstream`.
    pub upstream: String,
    /// Paths (relative to the checkout) that do not exist.
    pub missing: Vec<String>,
}

/// Where an application's manifests are in its checkout.
enum Manifests {
    /// Plain manifests anywhere below this folder, sorted into infra/ (databases, caches,
    /// tracing, volumes) and under_test/ by file name.
    Tree(&'static str),
    /// Given files for each set.
    Files {
        infra: &'static [&'static str],
        under_test: &'static [&'static str],
    },
    /// A Helm chart, rendered by `repo/render.sh`.
    Helm(&'static str),
}

/// What AEFM needs to know about one application.
struct Spec {
    name: &'static str,
    repo: &'static str,
    namespace: &'static str,
    manifests: Manifests,
    /// wrk2 script in the checkout (None: ours is written).
    script: Option<&'static str>,
    service: &'static str,
    port: u16,
    jaeger_service: &'static str,
    pod: (&'static str, &'static str),
    rates: &'static str,
    note: &'static str,
    /// The data sent after each deploy (`seed:`), from the checkout's own dataset.
    seed: Option<SeedSpec>,
}

/// An app's `seed:` section: its kind, the key naming its data and that data in the checkout.
struct SeedSpec {
    kind: &'static str,
    key: &'static str,
    path: &'static str,
}

const DSB: &str = "DeathStarBench (git clone https://github.com/delimitrou/DeathStarBench)";

fn spec(app: App) -> Spec {
    match app {
        App::HotelReservation => Spec {
            name: "hotel-reservation",
            repo: DSB,
            namespace: "hotel-reservation",
            manifests: Manifests::Tree("hotelReservation/kubernetes"),
            script: Some("hotelReservation/wrk2/scripts/hotel-reservation/mixed-workload_type_1.lua"),
            service: "frontend",
            port: 5000,
            jaeger_service: "frontend",
            pod: ("0.5", "256Mi"),
            rates: "[200, 400, 600, 800]",
            note: "the services seed their own databases: no data init is needed",
            seed: None,
        },
        App::SocialNetwork => Spec {
            name: "social-network",
            repo: DSB,
            namespace: "social-network",
            manifests: Manifests::Helm("socialNetwork/helm-chart/socialnetwork"),
            script: Some("socialNetwork/wrk2/scripts/social-network/read-home-timeline.lua"),
            service: "nginx-thrift",
            port: 8080,
            jaeger_service: "nginx-web-server",
            pod: ("0.5", "256Mi"),
            rates: "[100, 200, 300, 400]",
            note: "the `seed:` section registers the users of the checkout's Reed98 graph and posts its follow edges after each deploy (aefm seed config.yaml does it alone)",
            seed: Some(SeedSpec {
                kind: "social-graph",
                key: "graph",
                path: "socialNetwork/datasets/social-graph/socfb-Reed98/socfb-Reed98.edges",
            }),
        },
        App::MediaMicroservices => Spec {
            name: "media-microservices",
            repo: DSB,
            namespace: "media-microservices",
            manifests: Manifests::Helm("mediaMicroservices/helm-chart/mediamicroservices"),
            script: Some("mediaMicroservices/wrk2/scripts/media-microservices/compose-review.lua"),
            service: "nginx-web-server",
            port: 8080,
            jaeger_service: "nginx-web-server",
            pod: ("0.5", "256Mi"),
            rates: "[100, 200, 300, 400]",
            note: "the `seed:` section writes the checkout's TMDB casts and movies and registers the users after each deploy; seed a fresh deployment only (its front end answers a duplicate with a bare 500)",
            seed: Some(SeedSpec {
                kind: "media",
                key: "dataset",
                path: "mediaMicroservices/datasets/tmdb",
            }),
        },
        App::TrainTicket => Spec {
            name: "train-ticket",
            repo: "Train-Ticket (git clone https://github.com/FudanSELab/train-ticket)",
            namespace: "train-ticket",
            manifests: Manifests::Files {
                infra: &["deployment/kubernetes-manifests/k8s-with-jaeger/ts-deployment-part1.yml"],
                under_test: &[
                    "deployment/kubernetes-manifests/k8s-with-jaeger/ts-deployment-part2.yml",
                    "deployment/kubernetes-manifests/k8s-with-jaeger/ts-deployment-part3.yml",
                ],
            },
            script: None,
            service: "ts-ui-dashboard",
            port: 8080,
            jaeger_service: "ts-travel-service",
            // The Java services start with a 1.5 GiB heap: a smaller limit gets them OOM-killed.
            pod: ("1", "2Gi"),
            rates: "[20, 40, 60, 80]",
            note: "the services seed their own databases; they take minutes to become ready",
            seed: None,
        },
    }
}

/// Checks the checkout, then returns the text files to write into `dir`: `config.yaml`, and
/// `repo/render.sh` (Helm charts) or `train-query.lua` (Train-Ticket).
pub fn files(
    app: App,
    upstream: &Path,
    dir: &Path,
) -> Result<Vec<(PathBuf, String)>, UpstreamError> {
    let s = spec(app);
    check(&s, upstream)?;
    let upstream = upstream
        .canonicalize()
        .unwrap_or_else(|_| upstream.to_path_buf());
    let mut out = vec![(dir.join("config.yaml"), config_text(&s, &upstream))];
    if let Manifests::Helm(chart) = s.manifests {
        out.push((
            dir.join("repo/render.sh"),
            render_script(&s, &upstream.join(chart)),
        ));
    }
    if s.script.is_none() {
        out.push((dir.join(TRAIN_SCRIPT), TRAIN_QUERY_LUA.to_string()));
    }
    Ok(out)
}

/// The files the config needs in the checkout; all missing ones named at once.
fn check(s: &Spec, upstream: &Path) -> Result<(), UpstreamError> {
    let mut need: Vec<&str> = s.script.into_iter().collect();
    need.extend(s.seed.as_ref().map(|d| d.path));
    match &s.manifests {
        Manifests::Tree(d) => need.push(d),
        Manifests::Files { infra, under_test } => {
            need.extend(infra.iter().chain(under_test.iter()))
        }
        Manifests::Helm(c) => need.push(c),
    }
    let mut missing: Vec<String> = need
        .iter()
        .filter(|p| !upstream.join(p).exists())
        .map(|p| p.to_string())
        .collect();
    if let Manifests::Helm(c) = s.manifests {
        let chart = format!("{c}/Chart.yaml");
        if upstream.join(c).exists() && !upstream.join(&chart).is_file() {
            missing.push(chart);
        }
    }
    if let Manifests::Tree(d) = s.manifests {
        if upstream.join(d).is_dir() && tree_manifests(&upstream.join(d)).is_empty() {
            missing.push(format!("{d}/**/*.yaml"));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(UpstreamError {
        app: s.name,
        repo: s.repo,
        upstream: upstream.display().to_string(),
        missing,
    })
}

/// Fills `dir/repo/{infra,under_test}` with symbolic links to the checkout's manifests (plain
/// manifests only; a Helm chart is rendered by `repo/render.sh`). Returns the links made.
pub fn link_repo(
    app: App,
    upstream: &Path,
    dir: &Path,
    force: bool,
) -> Result<Vec<PathBuf>, super::ScaffoldError> {
    let upstream = upstream
        .canonicalize()
        .unwrap_or_else(|_| upstream.to_path_buf());
    let links: Vec<(&str, PathBuf, PathBuf)> = match spec(app).manifests {
        Manifests::Helm(_) => return Ok(Vec::new()),
        Manifests::Files { infra, under_test } => {
            let up = &upstream;
            let set = |name: &'static str, files: &[&str]| {
                files
                    .iter()
                    .map(|f| (name, PathBuf::from(f), up.join(f)))
                    .collect::<Vec<_>>()
            };
            let mut v = set("infra", infra);
            v.extend(set("under_test", under_test));
            v
        }
        Manifests::Tree(d) => tree_manifests(&upstream.join(d))
            .into_iter()
            .map(|(rel, abs)| {
                (
                    if is_infra(&rel) {
                        "infra"
                    } else {
                        "under_test"
                    },
                    rel,
                    abs,
                )
            })
            .collect(),
    };
    let mut out = Vec::new();
    for (set, rel, target) in links {
        // Flattened: the repository reads one folder per set, not recursively.
        let name = rel.to_string_lossy().replace('/', "_");
        let link = dir.join("repo").join(set).join(name);
        let io = |source| super::ScaffoldError::Io {
            path: link.clone(),
            source,
        };
        std::fs::create_dir_all(link.parent().unwrap_or(dir)).map_err(io)?;
        if link.symlink_metadata().is_ok() {
            if !force {
                return Err(super::ScaffoldError::Exists(link));
            }
            std::fs::remove_file(&link).map_err(io)?;
        }
        std::os::unix::fs::symlink(&target, &link).map_err(io)?;
        out.push(link);
    }
    Ok(out)
}

/// Every `*.yaml`/`*.yml` below `root` (sorted), as (path relative to root, absolute path),
/// leaving out service-mesh sidecar files and the checkout's helper scripts.
fn tree_manifests(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_lowercase();
            if p.is_dir() {
                if name != "scripts" {
                    stack.push(p);
                }
            } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
                && !name.contains("proxy")
                && !name.contains("ingressgateway")
            {
                let rel = p
                    .strip_prefix(root)
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| p.clone());
                out.push((rel, p));
            }
        }
    }
    out.sort();
    out
}

/// Stateful backends, tracing and storage go to infra/ (never resized, on infra nodes).
fn is_infra(rel: &Path) -> bool {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    [
        "mongo",
        "memcached",
        "redis",
        "jaeger",
        "consul",
        "rabbitmq",
        "mysql",
        "persistent-volume",
        "pvc",
    ]
    .iter()
    .any(|k| name.contains(k))
}

/// File name of the Train-Ticket load script `aefm init` writes.
const TRAIN_SCRIPT: &str = "train-query.lua";

/// AEFM's own Train-Ticket request (the project ships no wrk2 script): a trip search, which
/// needs no login.
const TRAIN_QUERY_LUA: &str = r#"-- Train-Ticket trip search, written by `aefm init --app train-ticket`: every request asks
-- for the trains left from Shang Hai to Su Zhou tomorrow (POST /api/v1/travelservice/trips/left,
-- open without a login), through ts-ui-dashboard.
local ok, day = pcall(os.date, "!%Y-%m-%d", os.time() + 86400)
if not ok then day = "2030-01-01" end
wrk.method = "POST"
wrk.path = "/api/v1/travelservice/trips/left"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"startingPlace":"Shang Hai","endPlace":"Su Zhou","departureTime":"' .. day .. '"}'
"#;

/// `repo/render.sh`: renders the checkout's chart with `helm template` and sorts each object
/// into infra/ or under_test/ by the chart it came from.
fn render_script(s: &Spec, chart: &Path) -> String {
    format!(
        r#"#!/bin/sh
# Written by `aefm init --app {name}`: renders the Helm chart of your checkout into this YAML
# repository (infra/: databases, caches, tracing; under_test/: the services). Run it once, and
# again after changing the chart or its values: sh repo/render.sh [helm template options]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$here/infra" "$here/under_test"
mkdir -p "$here/infra" "$here/under_test"
helm template {name} {chart} --namespace {ns} "$@" | awk -v dir="$here" '
  /^---/ {{ if (f != "") close(f); n++; f = ""; next }}
  /^# Source: / {{ set = ($3 ~ /(mongo|memcached|redis|jaeger|rabbitmq|mcrouter)/) ? "infra" : "under_test" }}
  NF && set != "" {{ if (f == "") f = dir "/" set "/" sprintf("%04d", n) ".yaml"; print > f }}
'
echo "rendered: $(ls "$here/infra" | wc -l) infra, $(ls "$here/under_test" | wc -l) under_test objects"
"#,
        name = s.name,
        chart = shell_quote(&chart.display().to_string()),
        ns = s.namespace,
    )
}

/// `'text'` for sh, with embedded quotes escaped.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The config: the checkout's script and entry service, load from inside the cluster, rates and
/// interference levels that fit their pods.
fn config_text(s: &Spec, upstream: &Path) -> String {
    let script = match s.script {
        Some(p) => upstream.join(p).display().to_string(),
        None => TRAIN_SCRIPT.to_string(),
    };
    let repo_step = match s.manifests {
        Manifests::Helm(_) => {
            "# 1. sh repo/render.sh   (renders the checkout's Helm chart into repo/; needs helm)\n"
        }
        _ => "# 1. repo/ links to the checkout's manifests (infra/: databases, caches, tracing).\n",
    };
    format!(
        r#"# {name} from your checkout at {upstream}, written by `aefm init --app {name}`.
# Schema: docs/config.md; the Kubernetes keys: docs/kubernetes.md; this app: docs/apps.md.
{repo_step}# 2. Fill in kubernetes.nodes below (`aefm auto-config -o -` lists your nodes and proposes roles).
# 3. kubectl -n {ns} port-forward svc/jaeger 16686 &   (Jaeger must answer before any load)
# 4. aefm doctor config.yaml && aefm run config.yaml
# Data: {note}.
name: {name}
backend: kubernetes
duration: 30s
warmup: 10s          # the services fill caches and connection pools first
load:
  # Load runs as Jobs inside the cluster (kubernetes.load.always), so the service's cluster name works.
  url: http://{svc}.{ns}.svc.cluster.local:{port}/
  threads: 2
  connections: 64
  script: {script}
  distribution: exp  # Poisson arrivals, as DeathStarBench's wrk2 fork offers
sweep:
  rate: {rates}      # total requests per second
  rounds: 2
  interference:
    # Busy cores beside the services: N one-CPU pods per testbed node.
    cpu: [none, {{kind: cpu, pods: 1}}, {{kind: cpu, pods: 2}}, {{kind: cpu, pods: 4}}]
    # Memory held on each testbed node.
    memcap: [none, {{kind: memcap, size: 2GiB}}]
  order: [round, memcap, cpu, rate]
collect:
  jaeger: {{url: "http://localhost:16686", service: {jaeger}}}
  # prometheus: {{url: "http://localhost:9090"}}   # kube-prometheus-stack, port-forwarded
kubernetes:
  namespace: {ns}
  yaml_repo: repo
  pod_resources: {{cpu: "{cpu}", memory: {mem}}}   # each service's first container, requests = limits
  # nodes:
  #   - {{name: worker-1, roles: [infra]}}
  #   - {{name: worker-2, roles: [testbed]}}
  #   - {{name: worker-3, roles: [testbed, loadgen]}}
  interference:
    resources:
      cpu: {{cpu: "1", memory: 128Mi}}
      memcap: {{cpu: "0.1", memory: 2176Mi}}   # the 2GiB level plus the stressor's own room
  load:
    always: true
  readiness_timeout_secs: 600
"#,
        name = s.name,
        upstream = upstream.display(),
        ns = s.namespace,
        note = s.note,
        svc = s.service,
        port = s.port,
        rates = s.rates,
        jaeger = s.jaeger_service,
        cpu = s.pod.0,
        mem = s.pod.1,
    ) + &seed_text(s, upstream)
}

/// The `seed:` section of an app with data to send: through a port-forward from this machine,
/// since the load's URL is a cluster name that only the in-cluster Jobs resolve.
fn seed_text(s: &Spec, upstream: &Path) -> String {
    let Some(d) = &s.seed else {
        return String::new();
    };
    format!(
        r#"seed:                # after each deploy, before the first case (docs/config.md, seed)
  kind: {kind}
  # Sent from this machine: kubectl -n {ns} port-forward svc/{svc} {port} &
  url: http://127.0.0.1:{port}
  {key}: {path}
"#,
        kind = d.kind,
        ns = s.namespace,
        svc = s.service,
        port = s.port,
        key = d.key,
        path = upstream.join(d.path).display(),
    )
}

#[cfg(test)]
mod tests;
