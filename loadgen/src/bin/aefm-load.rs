//! `aefm-load`: wrk2's command line on top of the aefm-loadgen library.

use std::io::Write as _;
use std::process::ExitCode;

use aefm_loadgen::check::check_output_file;
use aefm_loadgen::cli::{self, Command, USAGE};
use aefm_loadgen::{
    render_banner, render_wrk2, write_interval_log, ReportOptions, Run, RunControl,
};
use anyhow::Context as _;

/// mimalloc rather than glibc's malloc: a wrk script's `request()` builds several Lua strings per
/// request, and with mimalloc scripted throughput is about 7 % higher (bench/lua.sh); unscripted
/// load allocates almost nothing per request and is unchanged.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aefm-load: {e}");
            eprint!("{USAGE}");
            return ExitCode::from(1);
        }
    };
    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("{}", cli::version());
            ExitCode::SUCCESS
        }
        Command::Run {
            spec,
            output,
            warnings,
            control,
        } => match run(&spec, &output, &warnings, &control) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("aefm-load: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn run(
    spec: &aefm_loadgen::Spec,
    output: &cli::Output,
    warnings: &[String],
    flags: &cli::ControlFlags,
) -> anyhow::Result<()> {
    // Output files are checked before any load: a typo in a directory must not cost a run.
    if let Some(path) = output.json.as_deref().filter(|p| *p != "-") {
        check_output_file(std::path::Path::new(path)).context("--json")?;
    }
    if let Some(path) = &output.hdr_log {
        check_output_file(path).context("--hdr-log")?;
    }
    for w in warnings {
        eprintln!("aefm-load: warning: {w}");
    }
    // The metrics address is bound first: one in use fails before anything else, and a
    // scraper sees `aefm_load_running 0` while the run prepares and waits for its start.
    let metrics = output
        .metrics_addr
        .map(aefm_loadgen::metrics::MetricsServer::bind)
        .transpose()?;
    if let Some(m) = &metrics {
        eprintln!(
            "aefm-load: serving metrics on http://{}/metrics",
            m.local_addr()
        );
    }
    // The control port opens before the (possibly slow) preparation, so a controller sees
    // "preparing" rather than a refused connection.
    let barrier = flags
        .control_port
        .map(aefm_loadgen::control::ControlServer::bind)
        .transpose()?;
    let mut prepared = Run::prepare(spec)?;
    for w in prepared.warnings() {
        eprintln!("aefm-load: warning: {w}");
    }
    let start_at = match &barrier {
        Some(b) => {
            b.set_ready();
            eprintln!(
                "aefm-load: ready; waiting for POST /start on port {}",
                b.port()
            );
            Some(b.wait_start(flags.start_timeout())?)
        }
        None => flags.start_at,
    };
    let text = !output.json_on_stdout() && !flags.report_frame;
    let mut stdout = std::io::stdout();
    let banner = render_banner(
        &spec.url,
        spec.duration.as_secs_f64(),
        spec.threads,
        spec.connections,
    );
    // The banner appears once every thread's script and connections are ready, like wrk2.
    let mut control = RunControl::new().on_start(move || {
        if text {
            let mut out = std::io::stdout();
            let _ = out.write_all(banner.as_bytes());
            let _ = out.flush();
        }
    });
    if let Some(at) = start_at {
        control = control.start_at(at);
    }
    if let Some(m) = metrics {
        control = control.with_metrics(m);
    }
    // Ctrl-C ends the run early with the normal report and exit 0, like wrk2.
    ctrl_c::cancel_on_ctrl_c(control.cancel.clone())?;
    let report = prepared.execute(&control)?;
    if text {
        let opts = ReportOptions {
            latency: output.latency,
            u_latency: output.u_latency,
            send_lag: output.latency,
        };
        print!("{}", render_wrk2(&report, &opts));
        stdout.flush().ok();
    }
    for w in aefm_loadgen::report::diagnose(&report) {
        eprintln!("aefm-load: warning: {w}");
    }
    if flags.report_frame {
        print!("{}", aefm_loadgen::frame::encode(&report));
        stdout.flush().ok();
    }
    if let Some(path) = &output.json {
        let json = report.to_json();
        if path == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json + "\n").with_context(|| format!("writing {path}"))?;
        }
    }
    if let Some(path) = &output.hdr_log {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        write_interval_log(&report, &mut file)
            .and_then(|()| file.flush())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    prepared.finish(&report)?;
    Ok(())
}

/// Ctrl-C without an async runtime: a SIGINT handler writes one byte to a pipe (all a handler may
/// safely do) and a thread waiting on the pipe cancels the run.
mod ctrl_c {
    use std::fs::File;
    use std::io::Read as _;
    use std::os::fd::FromRawFd as _;
    use std::sync::atomic::{AtomicI32, Ordering};

    use aefm_loadgen::CancelToken;

    /// Write end of the pipe, for the handler.
    static PIPE: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn on_sigint(_: libc::c_int) {
        let fd = PIPE.load(Ordering::Relaxed);
        // SAFETY: write(2) is async-signal-safe; the byte is a static.
        unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
    }

    /// The first Ctrl-C cancels `token` (the run stops and reports, like wrk2); the handler is
    /// then removed, so a second Ctrl-C stops the process at once.
    pub fn cancel_on_ctrl_c(token: CancelToken) -> std::io::Result<()> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        PIPE.store(fds[1], Ordering::Relaxed);
        // SAFETY: fds[0] is a fresh descriptor owned by nothing else.
        let mut wake = unsafe { File::from_raw_fd(fds[0]) };
        set_handler(on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t)?;
        std::thread::spawn(move || {
            if wake.read_exact(&mut [0u8]).is_ok() {
                token.cancel();
                let _ = set_handler(libc::SIG_DFL);
            }
        });
        Ok(())
    }

    /// Installs `handler` (a function address or `SIG_DFL`) for SIGINT. SA_RESTART, so that
    /// blocking calls elsewhere are not cut short by the signal.
    fn set_handler(handler: libc::sighandler_t) -> std::io::Result<()> {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler only calls
        // write(2).
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler;
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
