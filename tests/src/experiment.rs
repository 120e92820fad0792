//! Running `aefm` experiments from tests: the binary (with `aefm-stress` beside it), a config in a
//! temp dir, a deadline that kills an overrunning run, and readers of the files it leaves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `aefm` binary, with `aefm-stress` built beside it.
pub fn aefm() -> PathBuf {
    crate::bins::bin("aefm-stress");
    crate::bins::bin("aefm")
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `cmd` to completion, killing it (SIGKILL) if it overruns `limit`.
pub fn run_with_deadline(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let killer = std::thread::spawn(move || {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if d2.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let out = child.wait_with_output().expect("wait");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = killer.join();
    out
}

/// Runs `aefm ARGS` in `dir` (deadline `limit`) and returns the output.
pub fn run_aefm(args: &[&str], dir: &Path, limit: Duration) -> Output {
    let mut cmd = Command::new(aefm());
    cmd.args(args).current_dir(dir);
    run_with_deadline(cmd, limit)
}

/// The only experiment directory under `results`.
pub fn experiment_dir(results: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// A CSV file as rows of column -> value (RFC 4180 quoting understood).
pub fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let mut rd = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = rd.headers().expect("a header row").clone();
    rd.records()
        .map(|r| {
            let r = r.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            header
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// Text of a byte buffer.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_commas_and_empty_cells() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "a,b,c\n1,\"x, \"\"y\"\"\",\n").unwrap();
        let rows = read_csv(&path);
        assert_eq!(rows[0]["b"], "x, \"y\"");
        assert_eq!(rows[0]["c"], "");
    }
}
