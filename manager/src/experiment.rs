//! The experiment lifecycle: prepare the results directory, fire the events in order for every
//! test case, record each case (files, journal), and always clean up.
//!
//! Order: `start_experiment`, `init_environment`, then per case `start_<dim>` for each changed
//! dimension (outermost first), `start_single_test_case`, `start_data_collection`,
//! `end_single_test_case` (and `error` when a handler failed); finally `cleanup` and
//! `end_experiment`. A failing case handler fails that case only (unless `abort_on_error`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{build_components, BackendError};
use crate::components::Components;
use crate::config::Config;
use crate::context::Context;
use crate::events::{Event, HandlerFailure, Handlers};
use crate::results::journal::{self, Entry, Status};
use crate::results::metadata::status;
use crate::results::{self, case_files, plots, summary, Metadata, ResultsError};
use crate::schedule::Schedule;
use crate::sweep::{self, TestCase};
use crate::validity::{OnInvalid, Verdict};

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The config file (recorded in metadata and copied into the results).
    pub config_file: Option<PathBuf>,
    /// Resume an interrupted experiment: `Some(None)` = the newest one of this config.
    pub resume: Option<Option<PathBuf>>,
    /// Resume even when the config differs from the one the experiment ran with (the change is
    /// recorded in metadata.json), or when it is marked running on another host.
    pub resume_anyway: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop after this many cases were run (0 = no limit). For tests and dry runs.
    pub max_cases: usize,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The experiment directory.
    pub dir: PathBuf,
    /// Cases that ran to the end (status `ok`), in this or earlier runs.
    pub ok: usize,
    /// Of `ok`, the cases whose figures passed every validity check (an ok case journaled by an
    /// aefm older than verdicts is neither valid nor invalid).
    pub valid: usize,
    /// Of `ok`, the cases marked invalid (see [`crate::validity`]).
    pub invalid: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Cases skipped because an earlier run finished them.
    pub skipped: usize,
    /// Total cases of the sweep.
    pub total: usize,
    /// True when Ctrl-C stopped the run.
    pub interrupted: bool,
    /// Plot files.
    pub plots: Vec<PathBuf>,
}

/// Errors that stop an experiment.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Writing results failed.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// No components for the backend.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Setting up failed (start_experiment, init_environment) — before any load.
    #[error("{failure} (results so far in {dir})")]
    Setup {
        /// The failure.
        failure: HandlerFailure,
        /// The experiment directory.
        dir: PathBuf,
    },
    /// A case failed and `abort_on_error` is set.
    #[error("aborted (abort_on_error): {failure} (results so far in {dir})")]
    Aborted {
        /// The failure.
        failure: HandlerFailure,
        /// The experiment directory.
        dir: PathBuf,
    },
}

/// An experiment: config, handlers, and (optionally) user components.
pub struct Experiment {
    /// The configuration.
    pub config: Arc<Config>,
    /// Handler lists per event (defaults + hooks); change them before [`Experiment::run`].
    pub handlers: Handlers,
    /// Components; `None` = chosen by backend at run time.
    pub components: Option<Components>,
    /// Collections of the user's own ([`Experiment::add_collection`]).
    pub collections: Vec<aefm_collector::custom::CustomSource>,
}

impl Experiment {
    /// An experiment with the default handlers and the config's hooks.
    pub fn new(config: Config) -> Self {
        let mut handlers = crate::workflow::defaults(&config);
        crate::hooks::register(&mut handlers, &config.hooks);
        Self {
            config: Arc::new(config),
            handlers,
            components: None,
            collections: Vec::new(),
        }
    }

    /// Adds a collection of your own, run for every case after the built-in sources: `f` gets
    /// the case directory, the measured window and the query template context (case name,
    /// namespace, ...), writes its files into the directory and returns their paths, or says
    /// why it could not. Its files are recorded in the case's `collection.json` as
    /// `custom:<name>` like the built-in sources; a failure (or a panic) makes the case invalid
    /// (`collection_failed`) and never stops the experiment.
    pub fn add_collection(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(
                &Path,
                &aefm_collector::Window,
                &aefm_collector::TemplateContext,
            ) -> Result<Vec<PathBuf>, String>
            + Send
            + Sync
            + 'static,
    ) {
        self.collections
            .push(aefm_collector::custom::CustomSource::new(name, f));
    }

    /// Replaces the sweep's cases with an explicit list (each entry: dimension name -> value, as
    /// `sweep.cases` in a config file), checked against the config's dimensions; call it from
    /// the customize function of a project made by `aefm init`.
    pub fn set_cases(
        &mut self,
        entries: Vec<crate::config::cases::CaseEntry>,
    ) -> Result<(), crate::config::ConfigError> {
        self.config = Arc::new(self.config.with_cases(entries)?);
        Ok(())
    }

    /// The test cases in run order.
    pub fn cases(&self) -> Vec<TestCase> {
        sweep::expand(&self.config)
    }

    /// Runs the experiment to the end (or until Ctrl-C).
    pub fn run(mut self, opts: RunOptions) -> Result<Outcome, RunError> {
        let cfg = self.config.clone();
        let cases = Arc::new(sweep::expand(&cfg));
        let schedule = Schedule::new(&cfg, &cases);
        let (dir, mut meta, done) = prepare_dir(&cfg, &opts, &cases, &schedule)?;
        if let Err(e) = crate::ui::set_log_file(&dir.join("aefm.log")) {
            tracing::warn!(error = %e, "no log file");
        }
        tracing::info!(dir = %dir.display(), cases = cases.len(), "experiment {}", cfg.name);
        let mut components = match self.components.take() {
            Some(c) => c,
            None => build_components(&cfg)?,
        };
        let mut ctx = Context::new(cfg.clone(), dir.clone(), cases.clone());
        ctx.collections = std::mem::take(&mut self.collections);
        crate::signals::install();
        let watcher = crate::signals::watch(
            ctx.cancel.clone(),
            crate::signals::Running {
                dir: dir.clone(),
                config_file: meta.config_file.clone(),
                schedule: schedule.clone(),
            },
        );

        let dims: Vec<String> = sweep::dimensions(&cfg)
            .into_iter()
            .map(|d| d.name)
            .collect();
        let mut journal_entries = done;
        let skipped = journal_entries
            .values()
            .filter(|e| e.status == Status::Ok)
            .count();
        let pb = crate::ui::start_progress(schedule.worst_case_cases() as u64, opts.progress);
        pb.set_position(skipped as u64);

        let setup = self
            .handlers
            .trigger(&Event::StartExperiment, &mut ctx, &mut components)
            .and_then(|_| {
                self.handlers
                    .trigger(&Event::InitEnvironment, &mut ctx, &mut components)
            });
        if let Err(failure) = setup {
            let interrupted = ctx.cancel.is_cancelled();
            self.cleanup(&mut ctx, &mut components);
            crate::ui::finish_progress();
            watcher.stop();
            meta.status = if interrupted { "interrupted" } else { "failed" }.into();
            meta.ended = Some(results::now_rfc3339());
            meta.write(&dir)?;
            if interrupted {
                return Ok(Outcome {
                    dir,
                    ok: skipped,
                    valid: skipped,
                    invalid: 0,
                    failed: 0,
                    skipped,
                    total: cases.len(),
                    interrupted: true,
                    plots: Vec::new(),
                });
            }
            return Err(RunError::Setup { failure, dir });
        }

        let mut interrupted = false;
        let mut aborted: Option<HandlerFailure> = None;
        let mut stopped_invalid = false;
        let mut ran = 0usize;
        let run_start = Instant::now();
        let mut ran_est = Duration::ZERO;
        // Cases run in this run: a failed one is not retried within it (it is on --resume).
        let mut tried: HashSet<String> = HashSet::new();
        // The last case run and whether it ended ok: what the next case's changes are against.
        let mut prev: Option<(TestCase, bool)> = None;
        let mut next_index = journal_entries
            .values()
            .map(|e| e.index + 1)
            .max()
            .unwrap_or(0);
        loop {
            if ctx.cancel.is_cancelled() {
                interrupted = true;
                break;
            }
            if opts.max_cases > 0 && ran >= opts.max_cases {
                break;
            }
            let Some(mut case) = schedule.next(&journal_entries, &tried, next_index) else {
                break;
            };
            if schedule.is_dynamic() {
                next_index += 1;
            }
            pb.set_message(schedule.progress_message(
                &cfg,
                &cases,
                &journal_entries,
                &case,
                run_start,
                ran_est,
            ));
            case.changed = schedule.changed_dims(&dims, prev.as_ref(), &case);
            let (entry, failure) = self.run_attempts(&mut ctx, &mut components, &case, &dims)?;
            ran += 1;
            ran_est += sweep::estimate_case(&cfg, &case);
            tried.insert(case.name.clone());
            let cancelled = ctx.cancel.is_cancelled();
            if cancelled {
                // An interrupted case is not recorded: it reruns on --resume.
                interrupted = true;
                let _ = std::fs::remove_dir_all(dir.join("cases").join(&case.name));
                break;
            }
            prev = Some((case.clone(), entry.status == Status::Ok));
            journal::append(&dir, &entry)?;
            journal_entries.insert(entry.case.clone(), entry);
            summary::write(&dir, &dims, &journal_entries)?;
            pb.inc(1);
            if let Some(f) = failure {
                if cfg.abort_on_error {
                    aborted = Some(f);
                    break;
                }
            }
            if cfg.on_invalid == OnInvalid::Abort
                && is_invalid(&entry_verdict(&journal_entries, &case.name))
            {
                tracing::error!(case = %case.name, "on_invalid: abort: stopping the experiment after an invalid case");
                stopped_invalid = true;
                break;
            }
            if !cfg.cooldown.is_zero() && crate::workflow::sleep(&ctx, cfg.cooldown).is_err() {
                interrupted = true;
                break;
            }
        }
        crate::ui::finish_progress();
        ctx.case = None;
        ctx.case_dir = None;
        self.cleanup(&mut ctx, &mut components);
        if let Err(f) = self
            .handlers
            .trigger(&Event::EndExperiment, &mut ctx, &mut components)
        {
            tracing::error!(error = %f, "end_experiment failed");
        }
        watcher.stop();
        summary::write(&dir, &dims, &journal_entries)?;
        results::points::write(&dir, &journal_entries, |p| {
            schedule
                .stop_of(&journal_entries, &p.values, p.offered)
                .map(|s| s.as_str())
        })?;
        if schedule.search().is_some() {
            results::capacity::write(&dir, &schedule, &journal_entries)?;
        }
        // A dynamic sweep's size is what it ran; a fixed one's what it planned.
        let total = if schedule.is_dynamic() {
            journal_entries.len()
        } else {
            cases.len()
        };
        let plots = match plots::write_all(&dir, &journal_entries) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "plots not written");
                Vec::new()
            }
        };
        let counts = results::metadata::Counts::of(journal_entries.values());
        let ok = counts.ok;
        // Counts over this sweep's cases only (prepare_dir set aside those of an earlier config).
        meta.count(&journal_entries);
        meta.ended = Some(results::now_rfc3339());
        meta.status = if interrupted {
            status::INTERRUPTED
        } else if aborted.is_some() || stopped_invalid {
            status::FAILED
        } else if ok < total {
            status::FINISHED_WITH_FAILURES
        } else {
            status::FINISHED
        }
        .into();
        meta.write(&dir)?;
        if let Some(failure) = aborted {
            return Err(RunError::Aborted { failure, dir });
        }
        Ok(Outcome {
            dir,
            ok,
            valid: counts.valid,
            invalid: counts.invalid,
            failed: counts.failed,
            skipped,
            total,
            interrupted,
            plots,
        })
    }

    /// Runs a case, and with `on_invalid: rerun` again while it is invalid, up to
    /// `validity.attempts` attempts. Earlier attempts are journaled and their files kept in
    /// `cases/<case>.attempt-<n>/`; the last attempt is returned.
    fn run_attempts(
        &mut self,
        ctx: &mut Context,
        components: &mut Components,
        case: &TestCase,
        dims: &[String],
    ) -> Result<(Entry, Option<HandlerFailure>), RunError> {
        let cfg = self.config.clone();
        let mut case = case.clone();
        let mut attempt = 1;
        loop {
            let (mut entry, failure) = self.run_case(ctx, components, &case)?;
            entry.attempt = attempt;
            let again = cfg.on_invalid == OnInvalid::Rerun
                && attempt < cfg.validity.attempts
                && is_invalid(&entry.verdict)
                && !ctx.cancel.is_cancelled();
            if !again {
                return Ok((entry, failure));
            }
            journal::append(&ctx.experiment_dir, &entry)?;
            let cases_dir = ctx.experiment_dir.join("cases");
            let from = cases_dir.join(&case.name);
            let to = cases_dir.join(format!("{}.attempt-{attempt}", case.name));
            std::fs::rename(&from, &to).map_err(results::io(&to))?;
            tracing::warn!(case = %case.name, attempt, kept = %to.display(), "invalid: running the case again (on_invalid: rerun)");
            attempt += 1;
            // Everything is (re)started for the new attempt: a dead stressor comes back.
            case.changed = dims.to_vec();
            crate::workflow::forget_applied(ctx);
        }
    }

    /// Runs one case's events; returns its journal entry and the failure, if any.
    fn run_case(
        &mut self,
        ctx: &mut Context,
        components: &mut Components,
        case: &TestCase,
    ) -> Result<(Entry, Option<HandlerFailure>), RunError> {
        let case_dir = ctx.experiment_dir.join("cases").join(&case.name);
        std::fs::create_dir_all(&case_dir).map_err(results::io(&case_dir))?;
        tracing::info!(case = %case.name, index = case.index, "test case {}", case.describe());
        ctx.case = Some(case.clone());
        ctx.case_dir = Some(case_dir.clone());
        ctx.report = None;
        ctx.window = None;
        ctx.collected = None;
        ctx.findings.clear();
        let started = results::now_rfc3339();
        let mut events: Vec<Event> = case
            .changed
            .iter()
            .map(|d| Event::StartDimension(d.clone()))
            .collect();
        events.push(Event::StartSingleTestCase);
        events.push(Event::StartDataCollection);
        let mut failure = None;
        for ev in &events {
            if let Err(f) = self.handlers.trigger(ev, ctx, components) {
                failure = Some(f);
                break;
            }
        }
        if let Some(f) = &failure {
            if !ctx.cancel.is_cancelled() {
                ctx.data.insert(
                    "last_error".into(),
                    serde_json::Value::String(f.to_string()),
                );
                if let Err(e) = self.handlers.trigger(&Event::Error, ctx, components) {
                    tracing::error!(error = %e, "error handlers failed");
                }
                // Clean up after a failed case: interference off; the next case re-applies it.
                if let Err(e) = components.interference.clear() {
                    tracing::error!(error = %e, "clearing interference after a failed case");
                }
            }
        }
        if let Err(f) = self
            .handlers
            .trigger(&Event::EndSingleTestCase, ctx, components)
        {
            failure.get_or_insert(f);
        }
        let mut app_cpu = None;
        if let Some(r) = &ctx.report {
            if let Err(e) = case_files::write_load_files(&case_dir, r) {
                failure.get_or_insert(HandlerFailure {
                    event: "end_single_test_case".into(),
                    handler: "results".into(),
                    message: e.to_string(),
                });
            }
        }
        if let Some(c) = &ctx.collected {
            app_cpu = c.app_cpu_percent;
        }
        // Only a case that ran gets a verdict; a failed one has its error instead.
        let verdict = failure.is_none().then(|| crate::validity::judge(ctx));
        let r = ctx.report.as_ref();
        let entry = Entry {
            case: case.name.clone(),
            index: case.index,
            status: if failure.is_some() {
                Status::Failed
            } else {
                Status::Ok
            },
            error: failure.as_ref().map(|f| f.to_string()),
            values: case.labels(),
            offered: case.rate(),
            achieved: r.map(|r| r.achieved),
            requests: r.map(|r| r.requests),
            errors: r.map(|r| r.errors),
            latency: r.map(|r| r.latency.clone()),
            app_cpu_percent: app_cpu,
            other_cpu_cores: ctx.collected.as_ref().and_then(|c| c.other_cpu_cores),
            started,
            ended: results::now_rfc3339(),
            window_start: ctx.window.map(|w| results::rfc3339(w.start)),
            window_end: ctx.window.map(|w| results::rfc3339(w.end)),
            verdict: verdict.clone(),
            attempt: 1,
        };
        let case_json = serde_json::json!({
            "case": case,
            "status": entry.status,
            "validity": verdict.as_ref().map(|v| v.validity),
            "invalid_reasons": verdict.as_ref().map(|v| v.reasons.clone()).unwrap_or_default(),
            "error": entry.error,
            "started": entry.started,
            "ended": entry.ended,
            "window_start": entry.window_start,
            "window_end": entry.window_end,
            "app_cpu_percent": entry.app_cpu_percent,
            "other_cpu_cores": entry.other_cpu_cores,
            "load_start_spread_s": r.and_then(|r| r.start_spread_s),
            "collected": ctx.collected,
        });
        results::write_atomic(
            &case_dir.join("case.json"),
            serde_json::to_string_pretty(&case_json)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        match (&failure, &verdict) {
            (Some(f), _) if !ctx.cancel.is_cancelled() => {
                tracing::error!(case = %case.name, error = %f, "test case failed")
            }
            (None, Some(v)) if !v.is_valid() => {
                tracing::warn!(case = %case.name, reasons = %v.sentences(), "test case INVALID")
            }
            _ => {}
        }
        Ok((entry, failure))
    }

    fn cleanup(&mut self, ctx: &mut Context, components: &mut Components) {
        if let Err(e) = self.handlers.trigger(&Event::Cleanup, ctx, components) {
            tracing::error!(error = %e, "cleanup failed; stopping components directly");
        }
        // Whatever the handlers did, nothing AEFM started may survive.
        let _ = components.interference.clear();
        let _ = components.deployer.teardown();
    }
}

/// Creates or reopens the experiment directory; returns it, its metadata and the journal
/// entries of this sweep's cases. A resume is refused before anything starts when the experiment
/// still runs or its config changed (see [`results::resume::reopen`]).
fn prepare_dir(
    cfg: &Config,
    opts: &RunOptions,
    cases: &[TestCase],
    schedule: &Schedule,
) -> Result<(PathBuf, Metadata, std::collections::BTreeMap<String, Entry>), RunError> {
    let config_file = opts
        .config_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("-"));
    let config_text = std::fs::read_to_string(&config_file).ok();
    if let Some(explicit) = &opts.resume {
        let dir = results::resume_dir(cfg, explicit.as_deref())?;
        let (meta, done) = results::resume::reopen(
            &dir,
            cfg,
            &config_file,
            config_text.as_deref(),
            cases,
            schedule,
            opts.resume_anyway,
        )?;
        return Ok((dir, meta, done));
    }
    let dir = results::new_experiment_dir(cfg)?;
    let meta = Metadata::start(cfg, &config_file, schedule.worst_case_cases());
    meta.write(&dir)?;
    results::resume::save_config(&dir, cfg, config_text.as_deref())?;
    Ok((dir, meta, Default::default()))
}

/// The config file path for messages.
pub fn display_path(p: &Path) -> String {
    p.display().to_string()
}

/// True for a verdict that says invalid.
fn is_invalid(v: &Option<Verdict>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_valid())
}

/// The journaled verdict of a case.
fn entry_verdict(
    entries: &std::collections::BTreeMap<String, Entry>,
    case: &str,
) -> Option<Verdict> {
    entries.get(case).and_then(|e| e.verdict.clone())
}
