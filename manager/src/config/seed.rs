//! The `seed:` section: the data an application needs before it can be measured (DeathStarBench's
//! social graph, or the media service's users, movies and casts), sent through its HTTP front end
//! after it is deployed and before the first case (see [`crate::seed`]).
//!
//! One flat section with a `kind` (so serde reports unknown keys with their line); the keys of
//! the other kind are refused by [`SeedConfig::validate`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::schema::Config;

/// Which application's data is seeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeedKind {
    /// DeathStarBench socialNetwork: users from a graph file, its edges as follows, optional posts.
    SocialGraph,
    /// DeathStarBench mediaMicroservices: TMDB casts and movies (info, plot, id), then users.
    Media,
}

/// Which follows an edge `a b` of the graph becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FollowMode {
    /// `a` follows `b` and `b` follows `a` (DeathStarBench's own script: its graphs are undirected).
    #[default]
    Both,
    /// Only `a` follows `b` (a directed graph).
    Forward,
}

/// The `seed:` section.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedConfig {
    /// `social-graph` or `media`. Required.
    pub kind: SeedKind,
    /// Base URL of the app's HTTP front end (nginx), e.g. `http://127.0.0.1:8080`. Default: the
    /// scheme, host and port of `load.url`.
    #[serde(default)]
    pub url: Option<String>,
    /// Requests in flight at once. Default `32`.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Further attempts of a request after a transport error, a timeout or a 5xx answer, with
    /// exponential backoff. Default `3`.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Time limit of one attempt (connect, send, answer). Default `10s`.
    #[serde(default = "default_timeout", with = "duration::serde_dur")]
    pub timeout: Duration,
    /// Requests that may still fail after their retries before the seed (and the experiment)
    /// fails. Default `0`: measuring against partial data measures something else.
    #[serde(default)]
    pub max_failures: u64,
    /// social-graph: the graph file (relative to the config file): an edge list (`a b` per line,
    /// ids from 0; `#` and `%` lines are comments), as DeathStarBench's `*.edges`, or a
    /// MatrixMarket `.mtx` file (ids from 1). Required for social-graph.
    #[serde(default)]
    pub graph: Option<PathBuf>,
    /// Number of users. social-graph default: the `<graph>.nodes` file beside an edge list
    /// (DeathStarBench's), the size line of a `.mtx`, else the largest id + 1. media default `1000`.
    #[serde(default)]
    pub users: Option<u64>,
    /// social-graph: `both` (default) or `forward`.
    #[serde(default)]
    pub follow: Option<FollowMode>,
    /// social-graph: posts composed per newly registered user. Default `0`.
    #[serde(default)]
    pub posts_per_user: Option<u32>,
    /// media: directory holding `casts.json` and `movies.json` (DeathStarBench's
    /// `datasets/tmdb`), relative to the config file. Required for media.
    #[serde(default)]
    pub dataset: Option<PathBuf>,
}

fn default_concurrency() -> usize {
    32
}
fn default_retries() -> u32 {
    3
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Users the media kind registers when `users` is not given (DeathStarBench's scripts).
pub const DEFAULT_MEDIA_USERS: u64 = 1000;

/// The two files of a TMDB dataset directory.
pub const TMDB_FILES: [&str; 2] = ["casts.json", "movies.json"];

impl SeedConfig {
    /// Checks the values serde cannot: bounds, the URL, and which keys belong to which kind.
    /// Errors are `(key, message)` with the key under `seed.`.
    pub(super) fn validate(&self, load_url: Option<&str>) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((format!("seed.{k}"), m));
        if self.concurrency == 0 {
            return err("concurrency", "must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return err("timeout", "must be greater than 0".into());
        }
        match (&self.url, load_url) {
            (Some(u), _) => check_url(u).map_err(|m| ("seed.url".to_string(), m))?,
            (None, Some(_)) => {}
            (None, None) => {
                return err(
                    "url",
                    "required when load.url is not set (the app's front end, e.g. http://127.0.0.1:8080)"
                        .into(),
                )
            }
        }
        let (needed, foreign): (&str, &[(&str, bool)]) = match self.kind {
            SeedKind::SocialGraph => ("graph", &[("dataset", self.dataset.is_some())]),
            SeedKind::Media => (
                "dataset",
                &[
                    ("graph", self.graph.is_some()),
                    ("follow", self.follow.is_some()),
                    ("posts_per_user", self.posts_per_user.is_some()),
                ],
            ),
        };
        let kind = self.kind_name();
        if let Some((k, _)) = foreign.iter().find(|(_, set)| *set) {
            return err(k, format!("is not a key of `kind: {kind}`"));
        }
        let has_needed = match self.kind {
            SeedKind::SocialGraph => self.graph.is_some(),
            SeedKind::Media => self.dataset.is_some(),
        };
        if !has_needed {
            return Err(("seed".into(), format!("`kind: {kind}` needs `{needed}`")));
        }
        if self.users == Some(0) {
            return err("users", "must be at least 1".into());
        }
        Ok(())
    }

    /// Checks that the files the section names exist and parse; `(key, message)` on the first
    /// that does not.
    pub(super) fn validate_files(&self, cfg: &Config) -> Result<(), (String, String)> {
        if let Some(g) = &self.graph {
            let p = cfg.resolve(g);
            if !p.is_file() {
                return Err((
                    "seed.graph".into(),
                    format!("graph file {} does not exist", p.display()),
                ));
            }
            // Parsed here too, so `aefm validate` names a bad line before anything is deployed.
            crate::seed::graph::load(&p, self.users)
                .map_err(|e| ("seed.graph".to_string(), e.to_string()))?;
        }
        if let Some(d) = &self.dataset {
            let dir = cfg.resolve(d);
            for f in TMDB_FILES {
                let p = dir.join(f);
                if !p.is_file() {
                    return Err((
                        "seed.dataset".into(),
                        format!(
                            "{} does not exist (a TMDB dataset directory holds {} and {})",
                            p.display(),
                            TMDB_FILES[0],
                            TMDB_FILES[1]
                        ),
                    ));
                }
            }
            crate::seed::tmdb::load(&dir)
                .map_err(|e| ("seed.dataset".to_string(), e.to_string()))?;
        }
        Ok(())
    }

    /// `social-graph` or `media`, as written in the config.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            SeedKind::SocialGraph => "social-graph",
            SeedKind::Media => "media",
        }
    }

    /// The base URL requests go to: `url`, else the origin of `load_url`.
    pub fn base_url(&self, load_url: Option<&str>) -> Option<String> {
        if let Some(u) = &self.url {
            return Some(u.trim_end_matches('/').to_string());
        }
        let u = url::Url::parse(load_url?).ok()?;
        Some(u.origin().ascii_serialization())
    }
}

/// An `http://` URL with a host (DeathStarBench's front ends speak plain HTTP).
fn check_url(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("{u:?}: {e}"))?;
    if parsed.scheme() != "http" || parsed.host_str().is_none() {
        return Err(format!(
            "{u:?}: expected http://HOST:PORT (plain HTTP, as DeathStarBench's front ends serve)"
        ));
    }
    Ok(())
}

/// The file path of `p` resolved against `base` (for the seeder, which has no `Config` method).
pub fn resolve_against(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const BASE: &str = "name: t\nsweep:\n  rate: [10]\n";

    fn parse(seed: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{seed}"), Path::new("c.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn social_graph_section_gets_defaults() {
        let c =
            parse("seed:\n  kind: social-graph\n  url: http://127.0.0.1:8080/\n  graph: g.edges\n")
                .unwrap();
        let s = c.seed.unwrap();
        assert_eq!(s.concurrency, 32);
        assert_eq!(s.retries, 3);
        assert_eq!(s.timeout, std::time::Duration::from_secs(10));
        assert_eq!(s.base_url(None).unwrap(), "http://127.0.0.1:8080");
    }

    #[test]
    fn url_defaults_to_the_origin_of_load_url() {
        let c = parse("load:\n  url: http://10.0.0.1:30080/wrk2-api/home-timeline/read\nseed:\n  kind: media\n  dataset: tmdb\n").unwrap();
        let s = c.seed.as_ref().unwrap();
        assert_eq!(
            s.base_url(c.load.url.as_deref()).unwrap(),
            "http://10.0.0.1:30080"
        );
        let e = parse("seed:\n  kind: media\n  dataset: tmdb\n").unwrap_err();
        assert!(
            e.contains("seed.url: required when load.url is not set"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = parse("seed:\n  kind: social-graph\n  url: http://h:1\n  grph: g\n").unwrap_err();
        assert!(
            e.contains("seed: unknown field `grph`") && e.contains("line 7"),
            "{e}"
        );
        let e = parse("seed:\n  kind: media\n  url: http://h:1\n  dataset: d\n  graph: g\n")
            .unwrap_err();
        assert!(
            e.contains("seed.graph: is not a key of `kind: media` at line 8"),
            "{e}"
        );
        let e = parse("seed:\n  kind: social-graph\n  url: http://h:1\n").unwrap_err();
        assert!(
            e.contains("seed: `kind: social-graph` needs `graph` at line 4"),
            "{e}"
        );
        let e = parse("seed:\n  kind: social-graph\n  url: https://h:1\n  graph: g\n").unwrap_err();
        assert!(e.contains("seed.url") && e.contains("plain HTTP"), "{e}");
        let e =
            parse("seed:\n  kind: social-graph\n  url: http://h:1\n  graph: g\n  concurrency: 0\n")
                .unwrap_err();
        assert!(
            e.contains("seed.concurrency: must be at least 1 at line 8"),
            "{e}"
        );
        let e = parse("seed:\n  kind: tweets\n").unwrap_err();
        assert!(e.contains("seed.kind: unknown variant `tweets`"), "{e}");
    }

    #[test]
    fn missing_files_are_config_errors_at_load() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("c.yaml");
        std::fs::write(
            &cfg,
            format!("{BASE}seed:\n  kind: social-graph\n  url: http://h:1\n  graph: nope.edges\n"),
        )
        .unwrap();
        let e = Config::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("seed.graph: graph file")
                && e.contains("nope.edges does not exist")
                && e.contains("line 7"),
            "{e}"
        );
        std::fs::create_dir(tmp.path().join("tmdb")).unwrap();
        std::fs::write(tmp.path().join("tmdb/casts.json"), "[]").unwrap();
        std::fs::write(
            &cfg,
            format!("{BASE}seed:\n  kind: media\n  url: http://h:1\n  dataset: tmdb\n"),
        )
        .unwrap();
        let e = Config::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("seed.dataset:") && e.contains("movies.json does not exist"),
            "{e}"
        );
        std::fs::write(tmp.path().join("tmdb/movies.json"), "[]").unwrap();
        Config::load(&cfg).unwrap();
    }
}
