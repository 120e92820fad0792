//! The default handlers: the standard workflow of an experiment, registered per event by
//! [`defaults`]. Users replace or extend them through [`crate::events::Handlers`].
//!
//! | event | default handler |
//! |---|---|
//! | start_experiment | `default:preflight`: Prometheus/Jaeger answer, before anything starts |
//! | init_environment | `default:deploy`: start the app, wait until ready; the load target answers |
//! | init_environment | `default:seed` (with a `seed:` section): send the app its data, write `seed.json` |
//! | start_<interference dim> | `default:apply_interference`: running stressors = the case's levels, then settle |
//! | start_single_test_case | `default:run_load`: warm-up + measured load, host sampling; then the app and the stressors are checked (see [`crate::validity`]) |
//! | start_data_collection | `default:collect`: wait the grace period, collect into the case dir |
//! | cleanup | `default:teardown`: stop interference, stop the app |

use std::time::{Duration, Instant, SystemTime};

use crate::components::{ComponentError, Components, Window};
use crate::context::Context;
use crate::events::{Event, HandlerError, Handlers};
use crate::load::LoadSpec;

/// The default handler lists for a config (without hooks).
pub fn defaults(cfg: &crate::config::Config) -> Handlers {
    let mut h = Handlers::empty();
    h.append(Event::StartExperiment, "default:preflight", preflight);
    h.append(Event::InitEnvironment, "default:deploy", deploy);
    if cfg.seed.is_some() {
        h.append(Event::InitEnvironment, "default:seed", seed);
    }
    for dim in cfg.sweep.interference.keys() {
        h.append(
            Event::StartDimension(dim.clone()),
            "default:apply_interference",
            apply_interference,
        );
    }
    h.append(Event::StartSingleTestCase, "default:run_load", run_load);
    h.append(Event::StartDataCollection, "default:collect", collect);
    h.append(Event::Cleanup, "default:teardown", teardown);
    h
}

/// Sleeps `d`, returning early with `Cancelled` when the context's cancel token fires.
pub fn sleep(ctx: &Context, d: Duration) -> Result<(), ComponentError> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if ctx.cancel.is_cancelled() {
            return Err(ComponentError::Cancelled);
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

/// `default:preflight`: external sources answer before any load is sent.
pub fn preflight(ctx: &mut Context, c: &mut Components) -> Result<(), HandlerError> {
    c.collector.preflight(ctx)?;
    Ok(())
}

/// `default:deploy`: the app is up and ready.
pub fn deploy(ctx: &mut Context, c: &mut Components) -> Result<(), HandlerError> {
    c.deployer.deploy(ctx)?;
    if let Some(u) = c.deployer.endpoint() {
        tracing::info!(endpoint = %u, "app ready");
    }
    check_load_target(ctx, c)?;
    Ok(())
}

/// `default:seed`: the app gets its data (the config's `seed:` section) before the first case;
/// `seed.json` in the experiment directory says what was sent, also when it failed. A failed seed
/// fails the experiment: load against an empty database measures nothing.
pub fn seed(ctx: &mut Context, _c: &mut Components) -> Result<(), HandlerError> {
    let result = crate::seed::run(&ctx.config, &ctx.cancel);
    let report = match &result {
        Ok(r) => Some(r),
        Err(e) => e.report(),
    };
    if let Some(r) = report {
        crate::seed::write_report(&ctx.experiment_dir, r)?;
    }
    result?;
    Ok(())
}

/// The load target accepts connections, checked once before the first case: an unreachable
/// `load.url` stops the experiment with one error instead of failing every case. Only where the
/// load is sent from this machine (on Kubernetes the load Jobs run inside the cluster, whose
/// addresses this machine may not reach).
pub fn check_load_target(ctx: &Context, c: &Components) -> Result<(), ComponentError> {
    if ctx.config.backend != crate::config::Backend::Local {
        return Ok(());
    }
    let Some(url) = ctx
        .config
        .load
        .url
        .clone()
        .or_else(|| c.deployer.endpoint())
    else {
        return Ok(());
    };
    crate::probe::tcp_reachable(&url, Duration::from_secs(3)).map_err(|reason| {
        ComponentError::Unreachable {
            what: "load target (load.url)".into(),
            url,
            reason,
        }
    })
}

/// Marker: the case index interference was last applied for (several interference dimensions
/// may change at once; apply once per case).
struct AppliedFor(usize);

/// Forgets which case interference was applied for, so the next `start_<dim>` applies it again
/// (a rerun of the same case restarts a stressor that died).
pub(crate) fn forget_applied(ctx: &mut Context) {
    ctx.insert(AppliedFor(usize::MAX));
}

/// `default:apply_interference`: running stressors = the case's levels; then wait `settle`.
pub fn apply_interference(ctx: &mut Context, c: &mut Components) -> Result<(), HandlerError> {
    let Some(case) = ctx.case.clone() else {
        return Ok(());
    };
    if ctx.get::<AppliedFor>().is_some_and(|a| a.0 == case.index) {
        return Ok(());
    }
    let wanted = case.interference();
    c.interference.apply(ctx, &wanted)?;
    ctx.insert(AppliedFor(case.index));
    if !wanted.is_empty() {
        sleep(ctx, ctx.config.settle)?;
    }
    Ok(())
}

/// The load spec of the current case.
pub fn load_spec(ctx: &Context, c: &Components) -> Result<LoadSpec, ComponentError> {
    let cfg = &ctx.config;
    let case = ctx
        .case
        .as_ref()
        .ok_or_else(|| ComponentError::other("no current test case"))?;
    let url = cfg
        .load
        .url
        .clone()
        .or_else(|| c.deployer.endpoint())
        .ok_or_else(|| {
            ComponentError::other("load.url is not set and the deployer knows no endpoint")
        })?;
    // Checked before the first case (`load::check_config`); an error here is a changed config.
    let headers = cfg
        .load
        .headers
        .iter()
        .map(|h| aefm_loadgen::parse_header(h).map_err(|e| ComponentError::other(e.to_string())))
        .collect::<Result<_, _>>()?;
    Ok(LoadSpec::from_config(cfg, url, case.rate(), headers))
}

/// `default:run_load`: sample the host, send warm-up and measured load, keep the report.
pub fn run_load(ctx: &mut Context, c: &mut Components) -> Result<(), HandlerError> {
    c.deployer.check()?;
    let spec = load_spec(ctx, c)?;
    let mut units = c.deployer.units();
    units.extend(c.interference.units());
    c.collector.begin(ctx, &units)?;
    let cancel = ctx.cancel.clone();
    let report = c.workload.run(ctx, &spec, &cancel)?;
    if report.cancelled || cancel.is_cancelled() {
        return Err(Box::new(ComponentError::Cancelled));
    }
    let end = report.started + Duration::from_secs_f64(report.window_s);
    let window = Window {
        start: report.started,
        end: end.min(SystemTime::now()),
    };
    ctx.window = Some(window);
    // The app must have lived through the whole window: if it died, this case is the invalid
    // one (the next case then fails at its start, since the app is gone).
    if let Err(e) = c.deployer.check() {
        ctx.findings.push(crate::validity::Reason::new(
            "app_died",
            format!("the app stopped during the load: {e}"),
        ));
    }
    // Every stressor ran at its target for the whole window, by its own reports.
    let tol = ctx.config.validity.tolerances();
    let found = c.interference.verify(&window, &tol);
    ctx.findings.extend(found);
    tracing::info!(
        offered = report.offered,
        achieved = format!("{:.1}", report.achieved),
        p50_ms = format!("{:.2}", report.latency.p50_us / 1000.0),
        p99_ms = format!("{:.2}", report.latency.p99_us / 1000.0),
        errors = report.errors,
        "load done"
    );
    ctx.report = Some(report);
    Ok(())
}

/// `default:collect`: wait for late data, then collect into the case directory.
pub fn collect(ctx: &mut Context, c: &mut Components) -> Result<(), HandlerError> {
    let (Some(dir), Some(window)) = (ctx.case_dir.clone(), ctx.window) else {
        return Ok(());
    };
    sleep(ctx, crate::sweep::grace(&ctx.config))?;
    let summary = c
        .collector
        .collect(ctx, &dir, &window, ctx.report.as_ref())?;
    for e in &summary.errors {
        tracing::warn!(error = %e, "collection source failed");
    }
    ctx.collected = Some(summary);
    Ok(())
}

/// `default:teardown`: stop interference, then the app.
pub fn teardown(_ctx: &mut Context, c: &mut Components) -> Result<(), HandlerError> {
    let a = c.interference.clear();
    let b = c.deployer.teardown();
    a?;
    b?;
    Ok(())
}
