//! `aefm init --app` against fake checkouts: every app's config validates, the YAML repository
//! links the right files into the right set, and a wrong checkout names what is missing.

use std::path::Path;

use super::super::{init, AefmSource, ScaffoldError};
use super::*;
use crate::config::Config;

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n";

/// A checkout with the files `app` needs (and a few it must leave alone).
fn checkout(app: App) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let files: &[&str] = match app {
        App::HotelReservation => &[
            "hotelReservation/kubernetes/frontend/frontend-deployment.yaml",
            "hotelReservation/kubernetes/frontend/frontend-proxy.yaml",
            "hotelReservation/kubernetes/geo/mongodb-geo-deployment.yaml",
            "hotelReservation/kubernetes/reserve/reservation-pvc.yaml",
            "hotelReservation/kubernetes/scripts/helper.yaml",
            "hotelReservation/wrk2/scripts/hotel-reservation/mixed-workload_type_1.lua",
        ],
        App::SocialNetwork => &[
            "socialNetwork/helm-chart/socialnetwork/Chart.yaml",
            "socialNetwork/wrk2/scripts/social-network/read-home-timeline.lua",
            GRAPH,
        ],
        App::MediaMicroservices => &[
            "mediaMicroservices/helm-chart/mediamicroservices/Chart.yaml",
            "mediaMicroservices/wrk2/scripts/media-microservices/compose-review.lua",
            "mediaMicroservices/datasets/tmdb/casts.json",
            "mediaMicroservices/datasets/tmdb/movies.json",
        ],
        App::TrainTicket => &[
            "deployment/kubernetes-manifests/k8s-with-jaeger/ts-deployment-part1.yml",
            "deployment/kubernetes-manifests/k8s-with-jaeger/ts-deployment-part2.yml",
            "deployment/kubernetes-manifests/k8s-with-jaeger/ts-deployment-part3.yml",
        ],
    };
    for f in files {
        let p = d.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        // Datasets as DeathStarBench has them: an edge list, TMDB records.
        let text = match *f {
            GRAPH => "0 1\n1 2\n",
            f if f.ends_with("casts.json") => r#"[{"id": 1, "name": "A", "gender": 1}]"#,
            f if f.ends_with("movies.json") => r#"[{"id": 2, "title": "B", "cast": []}]"#,
            _ => DEPLOYMENT,
        };
        std::fs::write(p, text).unwrap();
    }
    d
}

const GRAPH: &str = "socialNetwork/datasets/social-graph/socfb-Reed98/socfb-Reed98.edges";

const ALL: [App; 4] = [
    App::HotelReservation,
    App::SocialNetwork,
    App::MediaMicroservices,
    App::TrainTicket,
];

#[test]
fn every_apps_config_validates_against_its_checkout() {
    for app in ALL {
        let up = checkout(app);
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("exp");
        init(&dir, false, &AefmSource::Default, Some((app, up.path()))).unwrap();
        let cfg = Config::load(&dir.join("config.yaml")).unwrap_or_else(|e| panic!("{app:?}: {e}"));
        let k = cfg.kubernetes.as_ref().unwrap();
        assert_eq!(k.namespace, spec(app).namespace);
        assert!(k.load.always, "{app:?}");
        let script = cfg.resolve(cfg.load.script.as_ref().unwrap());
        assert!(script.is_file(), "{app:?}: {}", script.display());
        assert_eq!(cfg.case_count(), 4 * 4 * 2 * 2, "{app:?}");
        let url = cfg.load.url.as_deref().unwrap();
        assert!(
            url.contains(&format!(".{}.svc.cluster.local:", k.namespace)),
            "{url}"
        );
        // Social and media send the checkout's own data after each deploy, from this machine.
        match (&cfg.seed, spec(app).seed) {
            (None, None) => {}
            (Some(seed), Some(want)) => {
                assert_eq!(
                    seed.url.as_deref(),
                    Some("http://127.0.0.1:8080"),
                    "{app:?}"
                );
                let data = seed.graph.as_ref().or(seed.dataset.as_ref()).unwrap();
                assert!(data.ends_with(want.path), "{app:?}: {}", data.display());
            }
            (got, _) => panic!("{app:?}: seed {got:?}"),
        }
        match spec(app).manifests {
            Manifests::Helm(_) => assert!(dir.join("repo/render.sh").is_file(), "{app:?}"),
            _ => assert!(
                dir.join("repo/under_test").read_dir().unwrap().count() > 0,
                "{app:?}"
            ),
        }
    }
}

#[test]
fn plain_manifests_are_linked_into_their_set_not_copied() {
    let up = checkout(App::HotelReservation);
    let out = tempfile::tempdir().unwrap();
    init(
        out.path(),
        false,
        &AefmSource::Default,
        Some((App::HotelReservation, up.path())),
    )
    .unwrap();
    let names = |set: &str| {
        let mut v: Vec<String> = std::fs::read_dir(out.path().join("repo").join(set))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names("infra"),
        [
            "geo_mongodb-geo-deployment.yaml",
            "reserve_reservation-pvc.yaml"
        ]
    );
    assert_eq!(names("under_test"), ["frontend_frontend-deployment.yaml"]);
    let link = out
        .path()
        .join("repo/under_test/frontend_frontend-deployment.yaml");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    let manifests =
        crate::kubernetes::manifests::load_dir(&out.path().join("repo/under_test")).unwrap();
    assert_eq!(manifests.len(), 1);
}

#[test]
fn a_checkout_without_the_apps_files_is_refused_naming_each_missing_one() {
    let empty = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("exp");
    let e = init(
        &dir,
        false,
        &AefmSource::Default,
        Some((App::SocialNetwork, empty.path())),
    )
    .unwrap_err();
    assert!(matches!(e, ScaffoldError::Upstream(_)), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("not a checkout of DeathStarBench"), "{m}");
    assert!(
        m.contains("socialNetwork/wrk2/scripts/social-network/read-home-timeline.lua"),
        "{m}"
    );
    assert!(m.contains("socialNetwork/helm-chart/socialnetwork"), "{m}");
    assert!(!dir.exists(), "nothing is written for a wrong checkout");
    // A chart folder without its Chart.yaml, and a manifests folder without manifests.
    std::fs::create_dir_all(empty.path().join("socialNetwork/helm-chart/socialnetwork")).unwrap();
    let m = init(
        &dir,
        false,
        &AefmSource::Default,
        Some((App::SocialNetwork, empty.path())),
    )
    .unwrap_err()
    .to_string();
    assert!(m.contains("socialnetwork/Chart.yaml"), "{m}");
    std::fs::create_dir_all(empty.path().join("hotelReservation/kubernetes")).unwrap();
    let m = init(
        &dir,
        false,
        &AefmSource::Default,
        Some((App::HotelReservation, empty.path())),
    )
    .unwrap_err()
    .to_string();
    assert!(m.contains("hotelReservation/kubernetes/**/*.yaml"), "{m}");
    let m = init(
        &dir,
        false,
        &AefmSource::Default,
        Some((App::TrainTicket, Path::new("/nonexistent"))),
    )
    .unwrap_err()
    .to_string();
    assert!(
        m.contains("FudanSELab/train-ticket") && m.contains("ts-deployment-part1.yml"),
        "{m}"
    );
}

#[test]
fn the_helm_render_script_quotes_the_chart_path() {
    let s = spec(App::MediaMicroservices);
    let text = render_script(&s, Path::new("/home/o'neil/DSB/chart"));
    assert!(text.contains(r"'/home/o'\''neil/DSB/chart'"), "{text}");
    assert!(text.contains("--namespace media-microservices"));
}
