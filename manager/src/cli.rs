//! The `aefm` command line. The binary (and every project made by `aefm init`) calls [`main`] or
//! [`main_with`]; subcommands parse their arguments and call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::experiment::{Experiment, RunOptions};

/// Automated performance experiments on microservices.
#[derive(Debug, Parser)]
#[command(name = "aefm", version, about)]
pub struct Cli {
    /// Console log level (error, warn, info, debug, trace); RUST_LOG overrides.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Commands,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run an experiment.
    Run {
        /// The config file.
        config: PathBuf,
        /// Resume an interrupted experiment, skipping finished cases: `--resume` = the newest
        /// experiment of this config, `--resume=DIR` = that experiment directory.
        #[arg(long, value_name = "DIR", num_args = 0..=1, require_equals = true)]
        resume: Option<Option<PathBuf>>,
        /// With --resume: go on even when the config differs from the one the experiment ran with
        /// (the differences are recorded in metadata.json; finished cases not in the new sweep
        /// are set aside), or when it is marked running on another host.
        #[arg(long, requires = "resume")]
        resume_anyway: bool,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Where an experiment stands: status (running, crashed, finished, interrupted...), cases
    /// done, valid, invalid, failed, what is left, and the command that resumes it.
    Status {
        /// An experiment directory, or a config file (its newest experiment).
        target: PathBuf,
    },
    /// Write experiments' results in another tool's layout: `--format original` writes the five
    /// CSV files of the original Python AEFM (docs/export.md). Cases with status ok and valid are
    /// exported; several directories merge into one set of files.
    Export {
        /// Experiment directories (what `aefm run` printed as `results:`).
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// The layout: `original`.
        #[arg(long)]
        format: String,
        /// Output directory (created when missing).
        #[arg(long, value_name = "OUTDIR")]
        out: PathBuf,
        /// Export invalid cases too (and ok cases never checked for validity); no column marks
        /// them.
        #[arg(long)]
        include_invalid: bool,
        /// Overwrite exported files already in OUTDIR.
        #[arg(long)]
        force: bool,
    },
    /// Check a config file; print nothing but errors (exit 1) or `ok`.
    Validate {
        /// The config file.
        config: PathBuf,
    },
    /// Send the app its data (the config's `seed:` section) now, as `aefm run` does after
    /// deploying it; print per-phase figures. Safe to repeat: records that exist count as sent.
    Seed {
        /// The config file.
        config: PathBuf,
        /// Also write the figures as JSON (what `aefm run` writes to `seed.json`) to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Print the test cases in run order with estimated durations.
    Plan {
        /// The config file.
        config: PathBuf,
    },
    /// Scaffold a Rust project that customises the experiment with handlers, with a config for
    /// the demo service or (--app) for a benchmark application in your checkout of it.
    Init {
        /// Target directory (created; must be empty or absent).
        #[arg(short, long, default_value = "aefm-experiment")]
        dir: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
        /// Write the config for this application (needs --upstream).
        #[arg(long, value_enum, requires = "upstream")]
        app: Option<crate::scaffold::apps::App>,
        /// Your checkout of the application's repository (DeathStarBench, train-ticket).
        #[arg(long, value_name = "PATH", requires = "app")]
        upstream: Option<PathBuf>,
        /// The project's `aefm` dependency: this checkout of AEFM.
        #[arg(long, value_name = "PATH", conflicts_with = "aefm_git")]
        aefm_path: Option<PathBuf>,
        /// The project's `aefm` dependency: this git repository.
        #[arg(long, value_name = "URL")]
        aefm_git: Option<String>,
        /// With --aefm-git: the revision (commit, tag or branch).
        #[arg(long, value_name = "REV", requires = "aefm_git")]
        aefm_rev: Option<String>,
    },
    /// Convert a config of the original (Python) AEFM into one of ours; keys it cannot convert
    /// are listed on stderr with what to use instead.
    ImportConfig {
        /// The original config (e.g. sample_configs.yaml).
        original: PathBuf,
        /// Where to write ours (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite the output file.
        #[arg(long)]
        force: bool,
    },
    /// The built-in demo service; `aefm demo serve --help` for tracing it with OpenTelemetry.
    Demo {
        /// What to do.
        #[command(subcommand)]
        cmd: DemoCommand,
    },
    /// Collect data for a time window by hand (Prometheus, Jaeger, host, load reports).
    Collect {
        /// What to collect.
        #[command(subcommand)]
        cmd: aefm_collector::cli::CollectCommand,
    },
    /// Remove everything an experiment left on the cluster (Kubernetes backend).
    Clean(crate::kubernetes::cli::CleanArgs),
    /// Inspect the cluster and write a starter config (Kubernetes backend).
    AutoConfig(crate::kubernetes::cli::AutoConfigArgs),
    /// Check the cluster for an experiment before any load: permissions, nodes, room for the
    /// interference, images (Kubernetes backend).
    Doctor(crate::kubernetes::cli::DoctorArgs),
}

/// `aefm demo ...`.
#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Serve one demo process until SIGTERM or Ctrl-C.
    ///
    /// With --otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) it sends OpenTelemetry traces over
    /// OTLP/HTTP (protobuf) to <URL>/v1/traces: the front end's SERVER span `front` (the child of
    /// the request's W3C `traceparent` when it has one, as `aefm-load --traceparent` sends), one
    /// CLIENT span `call back-<port>` per back-end call, passed on as `traceparent`, and each
    /// back end's SERVER span `back`. Queued spans are flushed when the process stops. Without
    /// an endpoint nothing is traced and requests pay nothing for it.
    Serve {
        /// front (calls the back ends) or back.
        #[arg(long, value_enum)]
        role: DemoRole,
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Back-end base URL (repeat for several; front only).
        #[arg(long)]
        backend: Vec<String>,
        /// CPU work per request, microseconds of CPU time.
        #[arg(long, default_value_t = 100)]
        work_us: u64,
        /// Send traces to this OTLP/HTTP base URL (plain http, e.g. http://127.0.0.1:4318);
        /// default: OTEL_EXPORTER_OTLP_ENDPOINT, else no tracing.
        #[arg(long, value_name = "URL")]
        otlp_endpoint: Option<String>,
        /// The spans' service.name; default demo-front, or demo-back-<listen port>.
        #[arg(long, value_name = "NAME")]
        service_name: Option<String>,
    },
}

/// Demo roles.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DemoRole {
    /// Front end.
    Front,
    /// Back end.
    Back,
}

/// Runs the `aefm` command line with the default workflow.
pub fn main() -> ExitCode {
    main_with(|_| {})
}

/// Runs the `aefm` command line; `customize` changes the experiment (handlers, components)
/// before `run`. This is what a project made by `aefm init` calls.
pub fn main_with(customize: impl FnOnce(&mut Experiment)) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_exit(&e),
    };
    match dispatch(cli, customize) {
        Ok(code) => code,
        Err(e) => {
            crate::ui::finish_progress();
            eprintln!("aefm: error: {}", crate::events::error_chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

/// `aefm import-config`: writes the converted config, lists the notes on stderr, and fails when
/// the result does not validate.
fn import_config(
    original: &std::path::Path,
    output: Option<&std::path::Path>,
    force: bool,
) -> CliResult {
    let out_dir = output
        .and_then(|o| o.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let imported = crate::import::import_file(original, out_dir)?;
    match output {
        Some(o) if o.exists() && !force => {
            return Err(format!("{} already exists (use --force to overwrite)", o.display()).into())
        }
        Some(o) => {
            std::fs::write(o, &imported.yaml).map_err(|e| format!("{}: {e}", o.display()))?;
            eprintln!("wrote {}", o.display());
        }
        None => print!("{}", imported.yaml),
    }
    for n in &imported.notes {
        eprintln!("aefm: import: {n}");
    }
    if let Some(e) = imported.invalid {
        return Err(format!("the converted config does not validate, fix it by hand: {e}").into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints clap's answer: `--help` and `--version` exit 0, usage errors (unknown flag, missing
/// argument, in every subcommand including `aefm collect`) exit 1 as documented; clap's own
/// code would be 2.
fn usage_exit(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error + Send + Sync>>;

fn dispatch(cli: Cli, customize: impl FnOnce(&mut Experiment)) -> CliResult {
    match cli.command {
        Commands::Validate { config } => {
            let cfg = Config::load(&config)?;
            for w in crate::load::check_config(&cfg, &config)? {
                eprintln!("aefm: warning: {w}");
            }
            if cfg.sweep.search.is_some() || cfg.sweep.rounds.is_adaptive() {
                let cases = crate::sweep::expand(&cfg);
                let worst = crate::schedule::Schedule::new(&cfg, &cases).worst_case_cases();
                println!(
                    "ok: {} (test cases decided while running: at most {worst}; `aefm plan` shows how)",
                    config.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            // Counted when the config was loaded: no case is expanded to answer.
            let n = cfg.case_count();
            println!("ok: {} ({} test cases)", config.display(), n);
            Ok(ExitCode::SUCCESS)
        }
        Commands::Seed { config, json } => {
            crate::ui::init_logging(&cli.log_level);
            let cfg = Config::load(&config)?;
            // No signal handler: Ctrl-C ends the process, and a seed leaves nothing to clean up.
            let result = crate::seed::run(&cfg, &crate::load::CancelToken::new());
            let report = match &result {
                Ok(r) => Some(r),
                Err(e) => e.report(),
            };
            if let Some(r) = report {
                print!("{}", crate::seed::summary(r));
                if let Some(path) = &json {
                    let text = serde_json::to_string_pretty(r)?;
                    crate::results::write_atomic(path, text.as_bytes())?;
                }
            }
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Plan { config } => {
            // Customized as `run` would be: a project's own case list is what it plans.
            let mut exp = Experiment::new(Config::load(&config)?);
            customize(&mut exp);
            let cfg = exp.config.clone();
            print!("{}", crate::plan::plan_text(&cfg));
            if cfg.backend == crate::config::Backend::Kubernetes {
                println!("\n# Manifests that would be applied:");
                print!("{}", crate::kubernetes::plan_manifests(&cfg)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Commands::Export {
            dirs,
            format,
            out,
            include_invalid,
            force,
        } => {
            let report = crate::export::export(&crate::export::Options {
                dirs,
                out,
                format: format.parse()?,
                include_invalid,
                force,
            })?;
            for n in &report.notes {
                eprintln!("aefm: note: {n}");
            }
            for f in &report.files {
                println!("{}", f.display());
            }
            println!("cases:   {} exported", report.cases);
            Ok(ExitCode::SUCCESS)
        }
        Commands::Status { target } => {
            let dir = if target.is_dir() {
                target
            } else {
                crate::results::resume_dir(&Config::load(&target)?, None)?
            };
            print!("{}", crate::results::status::Report::read(&dir)?);
            Ok(ExitCode::SUCCESS)
        }
        Commands::Run {
            config,
            resume,
            resume_anyway,
            no_progress,
        } => {
            crate::ui::init_logging(&cli.log_level);
            let cfg = Config::load(&config)?;
            for w in crate::load::check_config(&cfg, &config)? {
                tracing::warn!("{w}");
            }
            let mut exp = Experiment::new(cfg);
            customize(&mut exp);
            let opts = RunOptions {
                config_file: Some(config.clone()),
                resume,
                resume_anyway,
                progress: !no_progress,
                max_cases: 0,
            };
            let out = exp.run(opts)?;
            println!("results: {}", out.dir.display());
            println!(
                "summary: {}",
                out.dir.join(crate::results::summary::FILE).display()
            );
            if !out.plots.is_empty() {
                println!("plots:   {}", out.dir.join("plots").display());
            }
            println!(
                "cases:   {} valid, {} invalid, {} failed, {} of {} done{}",
                out.valid,
                out.invalid,
                out.failed,
                out.ok + out.failed,
                out.total,
                if out.skipped > 0 {
                    format!(" ({} finished earlier)", out.skipped)
                } else {
                    String::new()
                }
            );
            if out.interrupted {
                eprintln!(
                    "aefm: interrupted; finished cases are kept. Resume with: {}",
                    crate::results::resume_command(&config.display().to_string(), &out.dir)
                );
                return Ok(ExitCode::from(130));
            }
            if out.failed > 0 || out.invalid > 0 {
                eprintln!(
                    "aefm: {} test case(s) failed and {} invalid; see summary.csv (columns error, validity, invalid_reasons) and aefm.log",
                    out.failed, out.invalid
                );
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
        Commands::Clean(args) => crate::kubernetes::cli::clean(args).map(|()| ExitCode::SUCCESS),
        Commands::Doctor(args) => crate::kubernetes::cli::doctor(args).map(|()| ExitCode::SUCCESS),
        Commands::AutoConfig(args) => {
            crate::kubernetes::cli::auto_config(args).map(|()| ExitCode::SUCCESS)
        }
        Commands::Init {
            dir,
            force,
            app,
            upstream,
            aefm_path,
            aefm_git,
            aefm_rev,
        } => {
            let source = match (aefm_path, aefm_git) {
                (Some(p), _) => crate::scaffold::AefmSource::Path(p),
                (None, Some(url)) => crate::scaffold::AefmSource::Git { url, rev: aefm_rev },
                (None, None) => crate::scaffold::AefmSource::Default,
            };
            let app = app.zip(upstream.as_deref());
            let files = crate::scaffold::init(&dir, force, &source, app)?;
            if app.is_some() {
                for f in &files {
                    println!("created {}", f.display());
                }
                println!(
                    "next: the numbered steps at the top of {}, then aefm run {0} (or cargo run -- run config.yaml in {} for your own handlers)",
                    dir.join("config.yaml").display(),
                    dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            for f in &files {
                println!("created {}", f.display());
            }
            println!("next: cd {} && cargo run -- run config.yaml", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Commands::ImportConfig {
            original,
            output,
            force,
        } => import_config(&original, output.as_deref(), force),
        Commands::Collect { cmd } => {
            for w in aefm_collector::cli::execute(&cmd)? {
                println!("{}: {}", w.path.display(), w.what);
            }
            Ok(ExitCode::SUCCESS)
        }
        Commands::Demo { cmd } => match cmd {
            DemoCommand::Serve {
                role,
                listen,
                backend,
                work_us,
                otlp_endpoint,
                service_name,
            } => {
                let server = crate::demo::DemoServer {
                    role: match role {
                        DemoRole::Front => crate::demo::Role::Front,
                        DemoRole::Back => crate::demo::Role::Back,
                    },
                    listen,
                    backends: backend,
                    work_us,
                    otlp_endpoint: crate::demo::otlp_endpoint(
                        otlp_endpoint,
                        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok(),
                    ),
                    service_name,
                };
                server.serve()?;
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}
