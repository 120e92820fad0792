//! What the user sees: structured logs (tracing) on the console and in the experiment's log file,
//! and a progress bar over the test cases that log lines print around.

use std::io::Write;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);
static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Console writer: prints above the progress bar when one is shown.
#[derive(Clone, Copy, Default)]
pub struct Console;

/// A buffered console line, flushed on drop.
pub struct ConsoleLine(Vec<u8>);

impl Write for ConsoleLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleLine {
    fn drop(&mut self) {
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let bytes = std::mem::take(&mut self.0);
        match bar {
            Some(b) if !b.is_hidden() => b.suspend(|| {
                let _ = std::io::stderr().write_all(&bytes);
            }),
            _ => {
                let _ = std::io::stderr().write_all(&bytes);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for Console {
    type Writer = ConsoleLine;
    fn make_writer(&'a self) -> Self::Writer {
        ConsoleLine(Vec::new())
    }
}

/// Writer into the experiment's log file (nothing until [`set_log_file`]).
#[derive(Clone, Copy, Default)]
pub struct LogFile;

/// A buffered file line, flushed on drop.
pub struct FileLine(Vec<u8>);

impl Write for FileLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for FileLine {
    fn drop(&mut self) {
        if let Some(f) = FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = f.write_all(&self.0);
        }
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = FileLine;
    fn make_writer(&'a self) -> Self::Writer {
        FileLine(Vec::new())
    }
}

/// Installs logging: console at `level` (or `RUST_LOG`), file at debug. Safe to call twice.
pub fn init_logging(level: &str) {
    // kube's client logs every non-2xx answer at ERROR, including the ones AEFM expects and
    // handles (a 503 from a load pod not listening yet, a 410 the watch recovers from); our own
    // messages say what failed and where. They stay in aefm.log.
    let console_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},kube_client=off,kube_runtime=off")));
    let console = tracing_subscriber::fmt::layer()
        .with_writer(Console)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(console_filter);
    let file = tracing_subscriber::fmt::layer()
        .with_writer(LogFile)
        .with_ansi(false)
        .with_filter(EnvFilter::new("debug,hyper=info,hyper_util=info"));
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(file)
        .try_init();
}

/// Sends file logs to `path` (appending).
pub fn set_log_file(path: &std::path::Path) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    Ok(())
}

/// Shows a progress bar over `total` cases (hidden when stderr is not a terminal).
pub fn start_progress(total: u64, show: bool) -> ProgressBar {
    let pb = if show {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} cases [{elapsed_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(pb.clone());
    pb
}

/// Removes the progress bar.
pub fn finish_progress() {
    if let Some(b) = BAR.lock().unwrap_or_else(|e| e.into_inner()).take() {
        b.finish_and_clear();
    }
}
