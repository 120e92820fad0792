//! The experiment lifecycle: prepare the results directory, fire the events in order for every
//! test case, record each case (files, journal), and always clean up.
//!
//! Order: `start_experiment`, `init_environment`, then per case `start_<dim>` for each changed
//! dimension (outermost first), `start_single_test_case`, `start_data_collection`,
//! `end_single_test_case` (and `error` when a handler failed); finally `cleanup` and
//! `end_experiment`. A failing case handler fails that case only (unless `abort_on_error`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{build_components, BackendError};
use crate::components::Components;
use crate::config::Config;
use crate::context::Context;
use crate::events::{Event, HandlerFailure, Handlers};
use crate::results::journal::{self, Entry, Status};
use crate::results::{self, case_files, plots, summary, Metadata, ResultsError};
use crate::sweep::{self, TestCase};

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The config file (recorded in metadata and copied into the results).
    pub config_file: Option<PathBuf>,
    /// Resume an interrupted experiment: `Some(None)` = the newest one of this config.
    pub resume: Option<Option<PathBuf>>,
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
    /// Cases finished in this or earlier runs.
    pub ok: usize,
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
        }
    }

    /// The test cases in run order.
    pub fn cases(&self) -> Vec<TestCase> {
        sweep::expand(&self.config)
    }

    /// Runs the experiment to the end (or until Ctrl-C).
    pub fn run(mut self, opts: RunOptions) -> Result<Outcome, RunError> {
        let cfg = self.config.clone();
        let cases = Arc::new(sweep::expand(&cfg));
        let (dir, mut meta, done) = prepare_dir(&cfg, &opts, cases.len())?;
        if let Err(e) = crate::ui::set_log_file(&dir.join("aefm.log")) {
            tracing::warn!(error = %e, "no log file");
        }
        tracing::info!(dir = %dir.display(), cases = cases.len(), "experiment {}", cfg.name);
        let mut components = match self.components.take() {
            Some(c) => c,
            None => build_components(&cfg)?,
        };
        let mut ctx = Context::new(cfg.clone(), dir.clone(), cases.clone());
        crate::signals::install();
        let watcher = spawn_watcher(ctx.cancel.clone());

        let dims: Vec<String> = sweep::dimensions(&cfg)
            .into_iter()
            .map(|d| d.name)
            .collect();
        let mut journal_entries = done;
        let skipped = cases
            .iter()
            .filter(|c| {
                journal_entries
                    .get(&c.name)
                    .is_some_and(|e| e.status == Status::Ok)
            })
            .count();
        let pb = crate::ui::start_progress(cases.len() as u64, opts.progress);
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
        let mut force_all_changed = true; // first case run fires every start_<dim>
        let mut ran = 0usize;
        let run_start = Instant::now();
        let mut ran_est = Duration::ZERO;
        for case in cases.iter() {
            if journal_entries
                .get(&case.name)
                .is_some_and(|e| e.status == Status::Ok)
            {
                // Skipped cases break the chain of "changed" dimensions.
                force_all_changed = true;
                continue;
            }
            if ctx.cancel.is_cancelled() {
                interrupted = true;
                break;
            }
            if opts.max_cases > 0 && ran >= opts.max_cases {
                break;
            }
            let remaining: Duration = cases[case.index..]
                .iter()
                .filter(|c| !journal_entries.contains_key(&c.name))
                .map(|c| sweep::estimate_case(&cfg, c))
                .sum();
            // Scale the estimate by how long cases really took so far.
            let scale = if ran_est.is_zero() {
                1.0
            } else {
                run_start.elapsed().as_secs_f64() / ran_est.as_secs_f64()
            };
            pb.set_message(format!(
                "{}  ETA {}",
                case.name,
                crate::config::format_duration(Duration::from_secs(
                    remaining.mul_f64(scale.clamp(0.5, 5.0)).as_secs()
                ))
            ));
            let mut case = case.clone();
            if force_all_changed {
                case.changed = dims.clone();
            }
            let (entry, failure) = self.run_case(&mut ctx, &mut components, &case)?;
            ran += 1;
            ran_est += sweep::estimate_case(&cfg, &case);
            force_all_changed = entry.status != Status::Ok;
            let cancelled = ctx.cancel.is_cancelled();
            if cancelled {
                // An interrupted case is not recorded: it reruns on --resume.
                interrupted = true;
                let _ = std::fs::remove_dir_all(dir.join("cases").join(&case.name));
                break;
            }
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
        let plots = match plots::write_all(&dir, &journal_entries) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "plots not written");
                Vec::new()
            }
        };
        let ok = journal_entries
            .values()
            .filter(|e| e.status == Status::Ok)
            .count();
        let failed = journal_entries
            .values()
            .filter(|e| e.status == Status::Failed)
            .count();
        meta.ok_cases = ok;
        meta.failed_cases = failed;
        meta.ended = Some(results::now_rfc3339());
        meta.status = if interrupted {
            "interrupted"
        } else if aborted.is_some() {
            "failed"
        } else if ok < cases.len() {
            "finished-with-failures"
        } else {
            "finished"
        }
        .into();
        meta.write(&dir)?;
        if let Some(failure) = aborted {
            return Err(RunError::Aborted { failure, dir });
        }
        Ok(Outcome {
            dir,
            ok,
            failed,
            skipped,
            total: cases.len(),
            interrupted,
            plots,
        })
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
            started,
            ended: results::now_rfc3339(),
            window_start: ctx.window.map(|w| results::rfc3339(w.start)),
            window_end: ctx.window.map(|w| results::rfc3339(w.end)),
        };
        let case_json = serde_json::json!({
            "case": case,
            "status": entry.status,
            "error": entry.error,
            "started": entry.started,
            "ended": entry.ended,
            "window_start": entry.window_start,
            "window_end": entry.window_end,
            "app_cpu_percent": entry.app_cpu_percent,
            "collected": ctx.collected,
        });
        results::write_atomic(
            &case_dir.join("case.json"),
            serde_json::to_string_pretty(&case_json)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        match &failure {
            Some(f) if !ctx.cancel.is_cancelled() => {
                tracing::error!(case = %case.name, error = %f, "test case failed")
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

/// Creates or reopens the experiment directory; returns it, its metadata and the journal.
fn prepare_dir(
    cfg: &Config,
    opts: &RunOptions,
    ncases: usize,
) -> Result<(PathBuf, Metadata, std::collections::BTreeMap<String, Entry>), RunError> {
    let config_file = opts
        .config_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("-"));
    let config_text = std::fs::read_to_string(&config_file).ok();
    match &opts.resume {
        Some(explicit) => {
            let dir = results::resume_dir(cfg, explicit.as_deref())?;
            let mut meta =
                Metadata::read(&dir).unwrap_or_else(|_| Metadata::start(cfg, &config_file, ncases));
            meta.resumed.push(results::now_rfc3339());
            meta.status = "running".into();
            meta.ended = None;
            meta.write(&dir)?;
            if let (Some(new), Ok(old)) = (
                &config_text,
                std::fs::read_to_string(dir.join("config.yaml")),
            ) {
                if *new != old {
                    tracing::warn!(dir = %dir.display(), "the config differs from the one this experiment started with; cases whose names changed will run again");
                }
            }
            let done = journal::read(&dir)?;
            tracing::info!(
                dir = %dir.display(),
                finished = done.values().filter(|e| e.status == Status::Ok).count(),
                "resuming"
            );
            Ok((dir, meta, done))
        }
        None => {
            let dir = results::new_experiment_dir(cfg)?;
            let meta = Metadata::start(cfg, &config_file, ncases);
            meta.write(&dir)?;
            if let Some(t) = &config_text {
                results::write_atomic(&dir.join("config.yaml"), t.as_bytes())?;
            }
            let resolved = serde_yaml::to_string(cfg).unwrap_or_default();
            results::write_atomic(&dir.join("config.resolved.yaml"), resolved.as_bytes())?;
            Ok((dir, meta, Default::default()))
        }
    }
}

struct Watcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Watcher {
    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Turns signals into cancellation: the first cancels the current case; the second kills every
/// child AEFM started and exits.
fn spawn_watcher(cancel: crate::load::CancelToken) -> Watcher {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let base = crate::signals::count();
    std::thread::spawn(move || {
        let mut warned = false;
        while !s.load(std::sync::atomic::Ordering::SeqCst) {
            let n = crate::signals::count().saturating_sub(base);
            if n >= 1 && !warned {
                warned = true;
                cancel.cancel();
                tracing::warn!("interrupted: stopping the current case and cleaning up (Ctrl-C again to exit at once)");
            }
            if n >= 2 {
                crate::local::process::kill_all();
                eprintln!("aefm: second interrupt: killed everything AEFM started; exiting");
                std::process::exit(130);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    Watcher { stop }
}

/// `aefm plan`: the cases in run order with estimated durations.
pub fn plan_text(cfg: &Config) -> String {
    use std::fmt::Write as _;
    let cases = sweep::expand(cfg);
    let mut s = String::new();
    let shape: Vec<String> = sweep::dimensions(cfg)
        .iter()
        .map(|d| format!("{} ({})", d.name, d.values.len()))
        .collect();
    let _ = writeln!(
        s,
        "experiment {}: {} test cases = {}",
        cfg.name,
        cases.len(),
        shape.join(" x ")
    );
    let _ = writeln!(
        s,
        "per case: warm-up {} + load {} + cool-down {} + grace {} (+ settle {} when interference changes)",
        crate::config::format_duration(cfg.warmup),
        crate::config::format_duration(cfg.duration),
        crate::config::format_duration(cfg.cooldown),
        crate::config::format_duration(sweep::grace(cfg)),
        crate::config::format_duration(cfg.settle),
    );
    let _ = writeln!(s);
    let mut total = Duration::ZERO;
    for c in &cases {
        let est = sweep::estimate_case(cfg, c);
        total += est;
        let _ = writeln!(
            s,
            "{:>4}  {:<50} ~{:>6}  starts: {}",
            c.index,
            c.name,
            crate::config::format_duration(Duration::from_secs(est.as_secs())),
            c.changed.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\nestimated total: {} (plus app start-up)",
        crate::config::format_duration(Duration::from_secs(total.as_secs()))
    );
    s
}

/// The config file path for messages.
pub fn display_path(p: &Path) -> String {
    p.display().to_string()
}
