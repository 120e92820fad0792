//! Seeding: filling the application's databases before it is measured, natively over HTTP.
//!
//! DeathStarBench's apps start empty; measuring them so measures errors. The config's `seed:`
//! section names what to send (see [`crate::config::SeedConfig`]): the social network's users
//! and follow graph from a graph file ([`graph`], [`social`]), or the media service's casts,
//! movies and users from a TMDB dataset ([`tmdb`], [`media`]). [`runner`] sends each phase's
//! requests concurrently with retries. The default workflow seeds after `default:deploy`
//! (handler `default:seed`), and `aefm seed CONFIG` seeds by hand.
//!
//! A seed is idempotent where the app lets it be (a record that exists counts as success, see
//! [`runner`]), timed per phase ([`SeedReport`], written as `seed.json`), and fails when more
//! than `max_failures` requests still fail after their retries.

pub mod graph;
pub mod media;
pub mod runner;
pub mod social;
pub mod tmdb;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::config::{Config, SeedConfig, SeedKind, DEFAULT_MEDIA_USERS};
use crate::load::CancelToken;
use runner::{PhaseOutcome, PhaseStats, Runner, Settings, Stop};

/// The file the report is written to in the experiment directory.
pub const REPORT_FILE: &str = "seed.json";

/// What a seed did (`seed.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeedReport {
    /// `social-graph` or `media`.
    pub kind: String,
    /// The base URL requests went to.
    pub url: String,
    /// The graph file or dataset directory.
    pub source: PathBuf,
    /// Users seeded.
    pub users: u64,
    /// Start time (RFC 3339, UTC).
    pub started: String,
    /// Wall time of the whole seed.
    pub seconds: f64,
    /// `ok`, `failed` or `interrupted`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Per phase, in run order.
    pub phases: Vec<PhaseStats>,
}

impl SeedReport {
    /// Requests finished over all phases (retries not counted).
    pub fn requests(&self) -> u64 {
        self.phases.iter().map(|p| p.requests).sum()
    }

    /// Failures over all phases.
    pub fn failures(&self) -> u64 {
        self.phases.iter().map(|p| p.failures).sum()
    }
}

/// Why a seed did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The config has no `seed:` section.
    #[error("the config has no `seed:` section")]
    NotConfigured,
    /// Neither `seed.url` nor `load.url` is set.
    #[error("seed.url is not set and load.url gives no origin")]
    NoUrl,
    /// The graph file is unusable.
    #[error("seed.graph: {0}")]
    Graph(#[from] graph::GraphError),
    /// The dataset is unusable.
    #[error("seed.dataset: {0}")]
    Dataset(#[from] tmdb::DatasetError),
    /// The HTTP client's runtime could not start.
    #[error("seed: cannot start the HTTP client's runtime")]
    Runtime(#[source] std::io::Error),
    /// Requests still failed after their retries (the report says which).
    #[error("{}", report.error.as_deref().unwrap_or("seed failed"))]
    Failed {
        /// What was done; written to `seed.json` all the same.
        report: Box<SeedReport>,
    },
    /// Ctrl-C.
    #[error("seed interrupted")]
    Cancelled {
        /// What was done.
        report: Box<SeedReport>,
    },
}

impl SeedError {
    /// The report of a seed that ran (and failed or was interrupted).
    pub fn report(&self) -> Option<&SeedReport> {
        match self {
            SeedError::Failed { report } | SeedError::Cancelled { report } => Some(report),
            _ => None,
        }
    }
}

/// The phases run so far (their stats), and whether the last one stopped the seed.
#[derive(Default)]
pub(crate) struct Phases {
    list: Vec<PhaseStats>,
}

impl Phases {
    /// Records a phase; its `existing` indexes, or why it stopped.
    pub(crate) fn push(&mut self, out: PhaseOutcome) -> Result<Vec<u64>, Stop> {
        self.list.push(out.stats);
        match out.stopped {
            Some(s) => Err(s),
            None => Ok(out.existing),
        }
    }
}

/// Seeds the app with the config's `seed:` section.
pub fn run(config: &Config, cancel: &CancelToken) -> Result<SeedReport, SeedError> {
    let seed = config.seed.as_ref().ok_or(SeedError::NotConfigured)?;
    let url = seed
        .base_url(config.load.url.as_deref())
        .ok_or(SeedError::NoUrl)?;
    run_section(seed, &config.base_dir, &url, cancel)
}

/// Seeds `url` with a `seed:` section whose paths are relative to `base_dir`.
pub fn run_section(
    seed: &SeedConfig,
    base_dir: &Path,
    url: &str,
    cancel: &CancelToken,
) -> Result<SeedReport, SeedError> {
    let settings = Settings {
        base_url: url.trim_end_matches('/').to_string(),
        concurrency: seed.concurrency,
        retries: seed.retries,
        timeout: seed.timeout,
        max_failures: seed.max_failures,
    };
    let resolve = |p: &Path| crate::config::seed::resolve_against(base_dir, p);
    // Parse first: a bad file is reported before any request.
    let (source, users, plan): (PathBuf, u64, Plan) = match seed.kind {
        SeedKind::SocialGraph => {
            let path = resolve(seed.graph.as_deref().unwrap_or(Path::new("")));
            let g = graph::load(&path, seed.users)?;
            tracing::info!(graph = %path.display(), users = g.users, users_from = %g.users_from, edges = g.edges.len(), "seed graph");
            (path, g.users, Plan::Social(g))
        }
        SeedKind::Media => {
            let dir = resolve(seed.dataset.as_deref().unwrap_or(Path::new("")));
            let d = tmdb::load(&dir)?;
            let users = seed.users.unwrap_or(DEFAULT_MEDIA_USERS);
            tracing::info!(dataset = %dir.display(), casts = d.casts.len(), movies = d.movies.len(), users, "seed dataset");
            (dir, users, Plan::Media(d))
        }
    };
    let mut runner = Runner::new(settings, cancel.clone()).map_err(SeedError::Runtime)?;
    let started = crate::results::now_rfc3339();
    let clock = Instant::now();
    let mut phases = Phases::default();
    let result = match &plan {
        Plan::Social(g) => social::seed(
            &mut runner,
            g,
            seed.follow.unwrap_or_default(),
            seed.posts_per_user.unwrap_or(0),
            &mut phases,
        ),
        Plan::Media(d) => media::seed(&mut runner, d, users, &mut phases),
    };
    let mut report = SeedReport {
        kind: seed.kind_name().to_string(),
        url: url.to_string(),
        source,
        users,
        started,
        seconds: clock.elapsed().as_secs_f64(),
        status: "ok".into(),
        error: None,
        phases: phases.list,
    };
    match result {
        Ok(()) => Ok(report),
        Err(Stop::Cancelled) => {
            report.status = "interrupted".into();
            report.error = Some("interrupted".into());
            Err(SeedError::Cancelled {
                report: Box::new(report),
            })
        }
        Err(Stop::TooManyFailures) => {
            report.status = "failed".into();
            report.error = Some(failure_message(&report, seed));
            Err(SeedError::Failed {
                report: Box::new(report),
            })
        }
    }
}

enum Plan {
    Social(graph::Graph),
    Media(tmdb::Dataset),
}

/// `seed failed in phase follow: 3 requests still failing after 3 retries (max_failures 0),
/// e.g. POST ...: HTTP 500: ...`.
fn failure_message(report: &SeedReport, seed: &SeedConfig) -> String {
    let last = report.phases.last();
    let example = last
        .and_then(|p| p.failure_examples.first())
        .map(|e| format!(", e.g. {e}"))
        .unwrap_or_default();
    format!(
        "seed failed in phase {}: {} request(s) failed after up to {} retries (seed.max_failures: {}), so no load was sent: the app would be measured without its data{example}",
        last.map_or("-", |p| p.phase.as_str()),
        report.failures(),
        seed.retries,
        seed.max_failures,
    )
}

/// Writes `seed.json` into `dir`; returns its path.
pub fn write_report(
    dir: &Path,
    report: &SeedReport,
) -> Result<PathBuf, crate::results::ResultsError> {
    let path = dir.join(REPORT_FILE);
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    crate::results::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// One line per phase, for the `aefm seed` command.
pub fn summary(report: &SeedReport) -> String {
    let mut s = format!(
        "seed {} ({}) at {}: {} requests in {:.1}s\n",
        report.status,
        report.kind,
        report.url,
        report.requests(),
        report.seconds
    );
    for p in &report.phases {
        s.push_str(&format!(
            "  {:<11} {:>8} requests  {:>8} created  {:>8} existing  {:>4} failed  {:>6} retries  {:>7.1}s  {:>8.0} req/s\n",
            p.phase, p.requests, p.created, p.existing, p.failures, p.retries, p.seconds, p.requests_per_second
        ));
    }
    s
}
