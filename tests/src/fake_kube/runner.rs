//! Running Job pods: what a job runner returns ([`JobOutput`]: exit code, stdout, stderr, and,
//! when captured, both streams' lines in the order they were written, as a kubelet's log keeps
//! them), and a runner that starts the container's command as a local process
//! ([`local_process_runner`], what `fake-kube --run-jobs` uses).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::controllers::JobRun;
use super::JobRunner;

/// What a Job pod's container did.
#[derive(Debug, Clone, Default)]
pub struct JobOutput {
    /// Exit code (non-zero: the pod fails).
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// Both streams line by line with the time each line was written, in that order; empty when
    /// not captured (the log is then stdout followed by stderr).
    pub lines: Vec<(SystemTime, String)>,
}

impl JobOutput {
    /// An output whose timing was not captured.
    pub fn new(code: i32, stdout: impl Into<String>, stderr: impl Into<String>) -> JobOutput {
        JobOutput {
            code,
            stdout: stdout.into(),
            stderr: stderr.into(),
            lines: Vec::new(),
        }
    }

    /// The pod log when timing was not captured: stdout, then stderr, as a kubelet would show a
    /// container that wrote its diagnostics last.
    pub fn plain_log(&self) -> String {
        let mut log = self.stdout.clone();
        if !log.is_empty() && !log.ends_with('\n') && !self.stderr.is_empty() {
            log.push('\n');
        }
        log.push_str(&self.stderr);
        log
    }
}

/// The program a local runner starts for a Job container: its command's first word, else the
/// image's name without registry and tag (`registry/aefm/aefm-load:latest` → `aefm-load`).
pub fn program_of(run: &JobRun) -> (String, Vec<String>) {
    match run.command.split_first() {
        Some((p, rest)) => (p.clone(), rest.iter().chain(&run.args).cloned().collect()),
        None => {
            let last = run.image.rsplit('/').next().unwrap_or_default();
            let name = last.split([':', '@']).next().unwrap_or_default();
            (name.to_string(), run.args.clone())
        }
    }
}

/// Runs the Job's container as a local process (the program looked up on `PATH`, a
/// `--control-port` argument mapped to the local port the fake chose, see
/// [`super::proxy::map_control_port`]), capturing
/// stdout and stderr line by line with their times. A program that cannot be started exits 127
/// with the reason on stderr, as a shell would.
pub fn run_local(run: &JobRun) -> JobOutput {
    let (program, args) = program_of(run);
    // The container's declared ports are local ports here (what the pod proxy forwards to).
    let args = super::proxy::map_control_port(&args, &run.ports);
    let args = super::proxy::map_control_port(&args, &run.ports);
    let child = Command::new(&program)
        .args(&args)
        .envs(run.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("fake-kube: cannot run {program:?}: {e}\n");
            return JobOutput {
                code: 127,
                stderr: msg.clone(),
                lines: vec![(SystemTime::now(), msg.trim_end().to_string())],
                ..JobOutput::default()
            };
        }
    };
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = capture(child.stdout.take(), lines.clone());
    let err = capture(child.stderr.take(), lines.clone());
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(137);
    let mut lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()));
    lines.sort_by_key(|(t, _)| *t);
    JobOutput {
        code,
        stdout,
        stderr,
        lines,
    }
}

/// Reads a stream to its end on a thread, pushing each line with its time; returns the text.
fn capture(
    stream: Option<impl Read + Send + 'static>,
    lines: Arc<Mutex<Vec<(SystemTime, String)>>>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let Some(stream) = stream else {
            return String::new();
        };
        let mut reader = BufReader::new(stream);
        let mut all = String::new();
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&buf).into_owned();
            all.push_str(&text);
            lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((SystemTime::now(), text.trim_end_matches('\n').to_string()));
            buf.clear();
        }
        all
    })
}

/// A job runner that runs every Job pod's container locally ([`run_local`]).
pub fn local_process_runner() -> JobRunner {
    Arc::new(run_local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(command: &[&str], args: &[&str], image: &str) -> JobRun {
        JobRun {
            pod: ("pods".into(), "ns".into(), "p".into()),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            image: image.into(),
            env: vec![("GREETING".into(), "hi".into())],
            ports: vec![],
        }
    }

    #[test]
    fn local_processes_keep_both_streams_in_order() {
        let out = run_local(&run(
            &["sh", "-c"],
            &["echo \"$GREETING out\"; sleep 0.3; echo err >&2; sleep 0.3; echo '{}'; exit 3"],
            "",
        ));
        assert_eq!(out.code, 3);
        assert_eq!(out.stdout, "hi out\n{}\n");
        assert_eq!(out.stderr, "err\n");
        let lines: Vec<&str> = out.lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["hi out", "err", "{}"]);
        let missing = run_local(&run(&[], &[], "registry.local/aefm/no-such-program-xyz:1"));
        assert_eq!(missing.code, 127);
        assert!(
            missing.stderr.contains("no-such-program-xyz"),
            "{}",
            missing.stderr
        );
        assert_eq!(JobOutput::new(0, "a", "b").plain_log(), "a\nb");
    }
}
