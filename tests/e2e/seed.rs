//! End-to-end tests of seeding (`aefm seed`, and `default:seed` inside `aefm run`) against a
//! recording server that answers as DeathStarBench's front end does: a second registration of a
//! user is an HTTP 500 saying it "already existed", follows and posts are answered `Success!`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aefm_tests::experiment::{experiment_dir, run_aefm, text, write_config};
use aefm_tests::recording_server::{Recorded, RecordingServer, Reply};

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

/// A form body as field -> value.
fn form(r: &Recorded) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&r.body).into_owned().collect()
}

/// A server that keeps the users registered and answers a repeat as DeathStarBench does.
fn dsb_like() -> RecordingServer {
    let users: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    RecordingServer::start_with(move |r| {
        if r.target.ends_with("/user/register") {
            let name = form(r).get("username").cloned().unwrap_or_default();
            if !users.lock().unwrap().insert(name.clone()) {
                return reply(
                    500,
                    &format!("User registration failure: User {name} already existed\n"),
                );
            }
        }
        reply(200, "Success!\n")
    })
}

fn by_path<'a>(reqs: &'a [Recorded], path: &str) -> Vec<&'a Recorded> {
    reqs.iter().filter(|r| r.target == path).collect()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The report's phase named `name`.
fn phase<'a>(rep: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    rep["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {rep}"))
}

/// A graph of 5 users (DeathStarBench's .nodes/.edges pair) with 4 edges.
fn graph_dir(dir: &Path) {
    std::fs::write(dir.join("g.nodes"), "5").unwrap();
    std::fs::write(dir.join("g.edges"), "# a comment\n1 0\n2 0\n3 1\n4 2\n").unwrap();
}

fn social_config(dir: &Path, url: &str, extra: &str) -> std::path::PathBuf {
    graph_dir(dir);
    write_config(
        dir,
        "c.yaml",
        &format!(
            "name: s\nsweep:\n  rate: [10]\nseed:\n  kind: social-graph\n  url: {url}\n  graph: g.edges\n  concurrency: 4\n{extra}"
        ),
    )
}

/// `aefm seed c.yaml --json JSON` in `dir`, which must succeed; its stdout.
fn seed_ok(dir: &std::path::Path, json: &str) -> String {
    let out = run_aefm(
        &["seed", "c.yaml", "--json", json],
        dir,
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn social_graph_is_seeded_and_a_rerun_succeeds_on_existing_users() {
    let tmp = tempfile::tempdir().unwrap();
    let server = dsb_like();
    social_config(tmp.path(), &server.url(""), "  posts_per_user: 2\n");
    let run = |json: &str| seed_ok(tmp.path(), json);
    let stdout = run("first.json");
    assert!(stdout.starts_with("seed ok (social-graph)"), "{stdout}");
    let reqs = server.requests();
    let registers = by_path(&reqs, "/wrk2-api/user/register");
    let follows = by_path(&reqs, "/wrk2-api/user/follow");
    let posts = by_path(&reqs, "/wrk2-api/post/compose");
    assert_eq!((registers.len(), follows.len(), posts.len()), (5, 8, 10));
    assert!(reqs.iter().all(|r| r.method == "POST"
        && r.header("content-type") == Some("application/x-www-form-urlencoded")));
    let mut ids: Vec<String> = registers
        .iter()
        .map(|r| form(r)["user_id"].clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["0", "1", "2", "3", "4"]);
    let f = form(
        registers
            .iter()
            .find(|r| form(r)["user_id"] == "3")
            .unwrap(),
    );
    assert_eq!(f["username"], "username_3");
    assert_eq!(f["first_name"], "first_name_3");
    assert_eq!(f["last_name"], "last_name_3");
    assert_eq!(f["password"], "password_3");
    // Both directions of every edge, and only those.
    let mut pairs: Vec<(String, String)> = follows
        .iter()
        .map(|r| {
            let f = form(r);
            (f["user_name"].clone(), f["followee_name"].clone())
        })
        .collect();
    pairs.sort();
    let u = |i: u32| format!("username_{i}");
    let edges = [
        (1, 0),
        (0, 1),
        (2, 0),
        (0, 2),
        (3, 1),
        (1, 3),
        (4, 2),
        (2, 4),
    ];
    let mut want: Vec<(String, String)> = edges.iter().map(|&(a, b)| (u(a), u(b))).collect();
    want.sort();
    assert_eq!(pairs, want);
    // Registration ends before the first follow.
    let first_follow = reqs
        .iter()
        .position(|r| r.target.ends_with("/follow"))
        .unwrap();
    assert!(reqs[first_follow..]
        .iter()
        .all(|r| !r.target.ends_with("/register")));
    let p = form(posts[0]);
    assert_eq!(p["post_type"], "0");
    assert_eq!(p["username"], format!("username_{}", p["user_id"]));
    assert!(!p["text"].is_empty());
    let rep = report(&tmp.path().join("first.json"));
    assert_eq!(rep["status"], "ok");
    assert_eq!(rep["users"], 5);
    assert_eq!(phase(&rep, "register")["created"], 5);
    assert_eq!(phase(&rep, "follow")["requests"], 8);

    // Again: the users exist (answered 500 "already existed", counted as success), the follows
    // are sent again, and no user is new, so no post is.
    let stdout = run("second.json");
    assert!(stdout.starts_with("seed ok"), "{stdout}");
    let reqs = server.requests();
    assert_eq!(by_path(&reqs, "/wrk2-api/user/register").len(), 10);
    assert_eq!(by_path(&reqs, "/wrk2-api/user/follow").len(), 16);
    assert_eq!(by_path(&reqs, "/wrk2-api/post/compose").len(), 10);
    let rep = report(&tmp.path().join("second.json"));
    let reg = phase(&rep, "register");
    assert_eq!(
        (reg["created"].as_u64(), reg["existing"].as_u64()),
        (Some(0), Some(5))
    );
    assert_eq!(reg["retries"], 0, "an existing user is not retried");
    let compose = phase(&rep, "compose");
    assert_eq!(compose["endpoint"], "/wrk2-api/post/compose");
    assert_eq!(
        (compose["planned"].as_u64(), compose["skipped"].as_u64()),
        (Some(0), Some(10))
    );
}

#[test]
fn transient_failures_are_retried_until_they_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    // Every body fails its first two attempts with a 503, then succeeds.
    let seen: Mutex<BTreeMap<Vec<u8>, u32>> = Mutex::new(BTreeMap::new());
    let answered = Arc::new(AtomicU64::new(0));
    let ok = answered.clone();
    let server = RecordingServer::start_with(move |r| {
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(r.body.clone()).or_default();
        *n += 1;
        if *n <= 2 {
            return reply(503, "<html>503 Service Temporarily Unavailable</html>");
        }
        ok.fetch_add(1, Ordering::SeqCst);
        reply(200, "Success!\n")
    });
    social_config(tmp.path(), &server.url(""), "  retries: 3\n");
    seed_ok(tmp.path(), "r.json");
    assert_eq!(
        answered.load(Ordering::SeqCst),
        13,
        "5 users and 8 follows, each answered once"
    );
    assert_eq!(server.requests().len(), 39);
    let rep = report(&tmp.path().join("r.json"));
    assert_eq!(phase(&rep, "register")["retries"], 10);
    assert_eq!(phase(&rep, "follow")["retries"], 16);
    assert_eq!(phase(&rep, "follow")["failures"], 0);
}

#[test]
fn media_dataset_is_seeded_in_phases() {
    let tmp = tempfile::tempdir().unwrap();
    let server = RecordingServer::start_with(|_| reply(200, "ok"));
    let d = tmp.path().join("tmdb");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(
        d.join("casts.json"),
        r#"[{"id": 10, "name": "A", "gender": 2, "biography": "bio"}, {"id": 11, "name": "B", "gender": 1, "biography": ""}, {"status_code": 34}]"#,
    )
    .unwrap();
    std::fs::write(
        d.join("movies.json"),
        r#"[{"id": 5, "title": "T 5", "overview": "plot 5", "poster_path": "/5.jpg", "vote_average": 7.5, "vote_count": 3,
             "cast": [{"cast_id": 1, "character": "C", "id": 10}]},
            {"id": 6, "title": "T 6", "overview": "plot 6", "poster_path": null, "vote_average": 6, "vote_count": 1, "cast": []}]"#,
    )
    .unwrap();
    write_config(
        tmp.path(),
        "c.yaml",
        &format!(
            "name: m\nsweep:\n  rate: [10]\nseed:\n  kind: media\n  url: {}\n  dataset: tmdb\n  users: 3\n",
            server.url("")
        ),
    );
    seed_ok(tmp.path(), "r.json");
    let reqs = server.requests();
    let json = |path: &str| -> Vec<serde_json::Value> {
        by_path(&reqs, path)
            .iter()
            .map(|r| {
                assert_eq!(r.header("content-type"), Some("application/json"));
                serde_json::from_slice(&r.body).unwrap()
            })
            .collect()
    };
    let mut casts = json("/wrk2-api/cast-info/write");
    casts.sort_by_key(|c| c["cast_info_id"].as_i64());
    assert_eq!(
        casts,
        [
            serde_json::json!({"cast_info_id": 10, "name": "A", "gender": true, "intro": "bio"}),
            serde_json::json!({"cast_info_id": 11, "name": "B", "gender": false, "intro": ""}),
        ]
    );
    let infos = json("/wrk2-api/movie-info/write");
    let five = infos.iter().find(|m| m["movie_id"] == "5").unwrap();
    assert_eq!(
        five["casts"],
        serde_json::json!([{"cast_id": 1, "character": "C", "cast_info_id": 10}])
    );
    assert_eq!(five["thumbnail_ids"], serde_json::json!(["/5.jpg"]));
    assert_eq!(json("/wrk2-api/plot/write").len(), 2);
    let movies: Vec<_> = by_path(&reqs, "/wrk2-api/movie/register")
        .iter()
        .map(|r| form(r))
        .collect();
    assert_eq!(movies.len(), 2);
    assert!(movies
        .iter()
        .any(|m| m["title"] == "T 6" && m["movie_id"] == "6"));
    let mut users: Vec<_> = by_path(&reqs, "/wrk2-api/user/register")
        .iter()
        .map(|r| form(r)["username"].clone())
        .collect();
    users.sort();
    assert_eq!(users, ["username_1", "username_2", "username_3"]);
    // Casts are all written before the first movie refers to them.
    let first_info = reqs
        .iter()
        .position(|r| r.target.ends_with("/movie-info/write"))
        .unwrap();
    assert!(reqs[first_info..]
        .iter()
        .all(|r| !r.target.ends_with("/cast-info/write")));
    let rep = report(&tmp.path().join("r.json"));
    assert_eq!(phase(&rep, "cast-info")["skipped"], 1);
    let names: Vec<_> = rep["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cast-info", "movie-info", "plot", "movie", "user"]);
}

#[test]
fn validate_names_a_bad_graph_line() {
    let tmp = tempfile::tempdir().unwrap();
    social_config(tmp.path(), "http://127.0.0.1:9", "");
    std::fs::write(tmp.path().join("g.edges"), "1 0\n2 zero\n").unwrap();
    let out = run_aefm(&["validate", "c.yaml"], tmp.path(), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("seed.graph:") && err.contains("g.edges:2: \"zero\" is not a user id"),
        "{err}"
    );
}

const RUN: &str = "name: r\nduration: 1s\nwarmup: 0s\nsettle: 0s\napp:\n  demo: {front_work_us: 10, back_work_us: 10, backends: 1}\nsweep:\n  rate: [20]\n";

#[test]
fn run_seeds_before_the_first_case_and_writes_seed_json() {
    let tmp = tempfile::tempdir().unwrap();
    let server = dsb_like();
    graph_dir(tmp.path());
    write_config(
        tmp.path(),
        "c.yaml",
        &format!(
            "{RUN}seed:\n  kind: social-graph\n  url: {}\n  graph: g.edges\n",
            server.url("")
        ),
    );
    let out = run_aefm(
        &["run", "c.yaml", "--no-progress"],
        tmp.path(),
        Duration::from_secs(120),
    );
    // 3: the case ran but a busy machine made it invalid; the seed is what is checked here.
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let dir = experiment_dir(&tmp.path().join("results"));
    let rep = report(&dir.join("seed.json"));
    assert_eq!(rep["status"], "ok");
    assert_eq!(phase(&rep, "follow")["created"], 8);
    assert_eq!(server.requests().len(), 13);
    assert!(
        dir.join("cases").read_dir().unwrap().count() == 1,
        "the case ran"
    );
}

#[test]
fn a_seed_that_keeps_failing_fails_the_run_before_any_load() {
    let tmp = tempfile::tempdir().unwrap();
    let server = RecordingServer::start_with(|r| {
        if r.target.ends_with("/follow") {
            reply(500, "Follow Failed: social-graph-service unavailable")
        } else {
            reply(200, "Success!")
        }
    });
    graph_dir(tmp.path());
    write_config(
        tmp.path(),
        "c.yaml",
        &format!(
            "{RUN}seed:\n  kind: social-graph\n  url: {}\n  graph: g.edges\n  retries: 1\n  concurrency: 1\n",
            server.url("")
        ),
    );
    let out = run_aefm(
        &["run", "c.yaml", "--no-progress"],
        tmp.path(),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("default:seed failed: seed failed in phase follow: 1 request(s) failed after up to 1 retries")
            && err.contains("Follow Failed: social-graph-service unavailable"),
        "{err}"
    );
    let dir = experiment_dir(&tmp.path().join("results"));
    let rep = report(&dir.join("seed.json"));
    assert_eq!(rep["status"], "failed");
    // Fail fast: the first follow failed twice (one retry), nothing more was sent.
    assert_eq!(
        by_path(&server.requests(), "/wrk2-api/user/follow").len(),
        2
    );
    let cases = dir.join("cases");
    assert!(
        !cases.exists() || cases.read_dir().unwrap().count() == 0,
        "no case ran"
    );
    let meta = std::fs::read_to_string(dir.join("metadata.json")).unwrap();
    assert!(meta.contains("\"failed\""), "{meta}");
}
