//! The local deployer: starts the app's commands (or the demo service), waits until each is
//! ready, and stops them with their process groups.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::components::{AppUnit, ComponentError, Deployer, UnitRole};
use crate::config::{AppCommand, Readiness};
use crate::context::Context;
use crate::local::process::{tail, Child};

/// One process of the app, as the deployer starts it.
#[derive(Clone, Debug)]
pub struct UnitPlan {
    /// Unit name.
    pub name: String,
    /// Program and arguments (run directly, no shell) or `sh -c` line.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Readiness check.
    pub ready: Option<Readiness>,
}

/// Starts and stops the app on this machine.
#[derive(Default)]
pub struct LocalDeployer {
    children: Vec<Child>,
    endpoint: Option<String>,
    units: Vec<AppUnit>,
}

impl LocalDeployer {
    /// A deployer that has started nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; the small race is acceptable locally).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The demo's tracing: with `collect.otlp` its processes send their spans to the receiver (the
/// OpenTelemetry exporter's standard variable); without it they trace nothing.
fn demo_trace_env(ctx: &Context) -> Vec<(String, String)> {
    let Some(o) = &ctx.config.collect.otlp else {
        return Vec::new();
    };
    let endpoint = match o.listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        Ok(a) => format!("http://{a}"),
        Err(_) => format!("http://{}", o.listen),
    };
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
        // Export every 200 ms (the SDK's default is 5 s), so a short grace after each case
        // (`collect.otlp.grace`) sees the case's last spans.
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
    ]
}

/// The processes of the demo service: back ends first, then the front end calling them.
pub fn demo_plan(ctx: &Context) -> Result<(Vec<UnitPlan>, String), ComponentError> {
    let demo = &ctx.config.app.demo;
    let exe = std::env::current_exe()
        .map_err(|e| ComponentError::other(format!("cannot find the aefm executable: {e}")))?;
    let exe = exe.display().to_string();
    let port_err = |e: std::io::Error| ComponentError::other(format!("no free port: {e}"));
    let env = demo_trace_env(ctx);
    let mut plans = Vec::new();
    let mut backends = Vec::new();
    for i in 1..=demo.backends {
        let port = free_port().map_err(port_err)?;
        let url = format!("http://127.0.0.1:{port}");
        plans.push(UnitPlan {
            name: format!("back-{i}"),
            argv: vec![
                exe.clone(),
                "demo".into(),
                "serve".into(),
                "--role".into(),
                "back".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--work-us".into(),
                demo.back_work_us.to_string(),
                // Stable across runs (the default names a back end by its port).
                "--service-name".into(),
                format!("demo-back-{i}"),
            ],
            cwd: None,
            env: env.clone(),
            ready: Some(Readiness {
                tcp: None,
                http: Some(format!("{url}/health")),
            }),
        });
        backends.push(url);
    }
    let port = if demo.port == 0 {
        free_port().map_err(port_err)?
    } else {
        demo.port
    };
    let mut argv = vec![
        exe,
        "demo".into(),
        "serve".into(),
        "--role".into(),
        "front".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--work-us".into(),
        demo.front_work_us.to_string(),
        "--service-name".into(),
        "demo-front".into(),
    ];
    for b in &backends {
        argv.push("--backend".into());
        argv.push(b.clone());
    }
    let url = format!("http://127.0.0.1:{port}/");
    plans.push(UnitPlan {
        name: "front".into(),
        argv,
        cwd: None,
        env,
        ready: Some(Readiness {
            tcp: None,
            http: Some(format!("http://127.0.0.1:{port}/health")),
        }),
    });
    Ok((plans, url))
}

/// The shell text that runs `run`. A single simple command gets `exec` in front, so the shell
/// becomes the program: it is then the process AEFM started, which dies with AEFM even on
/// SIGKILL (`PR_SET_PDEATHSIG`) and gets its signals. Debian's `sh` forks for `sh -c 'prog'`, and
/// a forked program outlives a killed AEFM and holds the app's port on `--resume`. Anything else
/// (lists, pipes, redirections, assignments, builtins) runs as written: put `exec` before its
/// last command yourself.
pub fn exec_form(run: &str) -> String {
    const BUILTINS: [&str; 15] = [
        "exec", "cd", "export", ".", "source", "if", "for", "while", "until", "case", "{", "!",
        "set", "ulimit", "eval",
    ];
    let t = run.trim();
    let first = t.split_whitespace().next().unwrap_or("");
    let compound = t.contains([';', '&', '|', '<', '>', '(', ')', '`', '\n']);
    if t.is_empty() || compound || first.contains('=') || BUILTINS.contains(&first) {
        run.to_string()
    } else {
        format!("exec {t}")
    }
}

/// The processes of a command-list app.
pub fn command_plan(ctx: &Context, commands: &[AppCommand]) -> Vec<UnitPlan> {
    commands
        .iter()
        .map(|c| UnitPlan {
            name: c.name.clone(),
            argv: vec!["sh".into(), "-c".into(), exec_form(&c.run)],
            cwd: Some(
                c.cwd
                    .as_ref()
                    .map(|d| ctx.config.resolve(d))
                    .unwrap_or_else(|| ctx.config.base_dir.clone()),
            ),
            env: c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ready: c.ready.clone(),
        })
        .collect()
}

impl Deployer for LocalDeployer {
    fn deploy(&mut self, ctx: &Context) -> Result<(), ComponentError> {
        let cfg = &ctx.config;
        let (plans, endpoint) = if cfg.app.commands.is_empty() {
            let (p, u) = demo_plan(ctx)?;
            (p, Some(u))
        } else {
            (command_plan(ctx, &cfg.app.commands), None)
        };
        let log_dir = ctx.experiment_dir.join("app");
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| ComponentError::other(format!("{}: {e}", log_dir.display())))?;
        for plan in plans {
            let log = log_dir.join(format!("{}.log", plan.name));
            let mut cmd = Command::new(&plan.argv[0]);
            cmd.args(&plan.argv[1..]);
            if let Some(d) = &plan.cwd {
                cmd.current_dir(d);
            }
            cmd.envs(ctx.env());
            cmd.envs(plan.env.iter().cloned());
            let what = format!("app unit {:?}", plan.name);
            let mut child = Child::spawn(
                &plan.name,
                cmd,
                Some(cfg.app.cores.clone()),
                Some(&log),
                false,
            )
            .map_err(|e| ComponentError::Start {
                what: what.clone(),
                reason: format!("{}: {e}", plan.argv.join(" ")),
            })?;
            tracing::info!(unit = %plan.name, pid = child.pid(), "app unit started");
            let waited = wait_ready(
                &mut child,
                plan.ready.as_ref(),
                cfg.app.ready_timeout,
                &ctx.cancel,
            );
            let pid = child.pid();
            self.children.push(child);
            if let Err(reason) = waited {
                let out = tail(&log, 5);
                let reason = if out.is_empty() {
                    reason
                } else {
                    format!("{reason}; its output: {out}")
                };
                return Err(if reason.starts_with("exited") {
                    ComponentError::Died { what, reason }
                } else {
                    ComponentError::NotReady {
                        what,
                        waited_s: cfg.app.ready_timeout.as_secs_f64(),
                        reason,
                    }
                });
            }
            self.units.push(AppUnit {
                name: plan.name.clone(),
                service: plan
                    .name
                    .split('-')
                    .next()
                    .unwrap_or(&plan.name)
                    .to_string(),
                pid: Some(pid),
                node: None,
                role: UnitRole::App,
            });
        }
        self.endpoint = endpoint;
        Ok(())
    }

    fn endpoint(&self) -> Option<String> {
        self.endpoint.clone()
    }

    fn units(&self) -> Vec<AppUnit> {
        self.units.clone()
    }

    fn teardown(&mut self) -> Result<(), ComponentError> {
        // Front ends first (reverse start order), so back ends do not see errors from a live front.
        while let Some(mut c) = self.children.pop() {
            c.stop(Duration::from_secs(3));
            tracing::info!(unit = %c.name, "app unit stopped");
        }
        self.units.clear();
        Ok(())
    }

    fn check(&mut self) -> Result<(), ComponentError> {
        for c in &mut self.children {
            if let Some(st) = c.try_wait() {
                return Err(ComponentError::Died {
                    what: format!("app unit {:?}", c.name),
                    reason: st.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Waits until the readiness check passes, the process exits, or the timeout expires.
fn wait_ready(
    child: &mut Child,
    ready: Option<&Readiness>,
    timeout: Duration,
    cancel: &crate::load::CancelToken,
) -> Result<(), String> {
    let start = Instant::now();
    let mut last = String::from("no check passed yet");
    loop {
        if let Some(st) = child.try_wait() {
            return Err(format!("exited before it was ready ({st})"));
        }
        let ok = match ready {
            None => {
                // No check: running for a short moment counts as started.
                if start.elapsed() >= Duration::from_millis(200) {
                    return Ok(());
                }
                false
            }
            Some(r) => {
                let mut ok = true;
                if let Some(addr) = &r.tcp {
                    match tcp_ok(addr) {
                        Ok(()) => {}
                        Err(e) => {
                            ok = false;
                            last = format!("tcp {addr}: {e}");
                        }
                    }
                }
                if ok {
                    if let Some(url) = &r.http {
                        match http_ok(url) {
                            Ok(()) => {}
                            Err(e) => {
                                ok = false;
                                last = format!("GET {url}: {e}");
                            }
                        }
                    }
                }
                ok
            }
        };
        if ok {
            return Ok(());
        }
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        if start.elapsed() >= timeout {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tcp_ok(addr: &str) -> Result<(), String> {
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    TcpStream::connect_timeout(&sa, Duration::from_millis(500))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn http_ok(url: &str) -> Result<(), String> {
    match crate::probe::http_status(url, Duration::from_secs(1))? {
        code if code < 500 => Ok(()),
        code => Err(format!("status {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::exec_form;

    #[test]
    fn a_simple_command_is_execed_anything_else_runs_as_written() {
        assert_eq!(exec_form("./srv --port 8080"), "exec ./srv --port 8080");
        assert_eq!(exec_form("  $HOME/bin/srv "), "exec $HOME/bin/srv");
        for as_is in [
            "cd x && ./srv",
            "ulimit -n 9999; ./srv",
            "./srv | tee log",
            "./srv > log",
            "PORT=1 ./srv",
            "exec ./srv",
            "(./srv)",
            "a\nb",
        ] {
            assert_eq!(exec_form(as_is), as_is);
        }
    }
}
