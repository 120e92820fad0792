//! Running a generator: command templates (`{url} {rate} {conns} {threads} {duration} {json}`),
//! pinning with taskset, and the child's own CPU time from `wait4`'s rusage (user + sys of that
//! process and everything it waited for), which is what "CPU µs per request" divides.

use std::io::{self, Read};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Instant;

/// Substitutes `{name}` placeholders; unknown ones stay as they are.
pub fn expand(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |s, (k, v)| {
        s.replace(&format!("{{{k}}}"), v)
    })
}

/// Splits a command line into words: whitespace separates, single and double quotes group (no
/// escapes inside single quotes, `\"` and `\\` inside double quotes), as a shell would for the
/// simple commands the templates hold.
pub fn split_words(s: &str) -> Vec<String> {
    let (mut words, mut cur, mut has) = (Vec::new(), String::new(), false);
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if has {
                    words.push(std::mem::take(&mut cur));
                }
                has = false;
            }
            (None, '\'' | '"') => (quote, has) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                cur.extend(chars.next());
                has = true;
            }
            (_, c) => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        words.push(cur);
    }
    words
}

/// `taskset -c CORE argv...` when a core is given and taskset exists, else `argv`.
pub fn pinned(argv: Vec<String>, core: Option<&str>) -> Vec<String> {
    match core.filter(|c| !c.is_empty()) {
        Some(c) if has_taskset() => [vec!["taskset".into(), "-c".into(), c.into()], argv].concat(),
        _ => argv,
    }
}

fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A finished child: its output, exit code and resource use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Finished {
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Exit code (128 + signal when killed).
    pub code: i32,
    /// User CPU, s.
    pub user_s: f64,
    /// System CPU, s.
    pub sys_s: f64,
    /// Peak resident set, KiB.
    pub maxrss_kb: u64,
    /// Wall time from spawn to exit, s.
    pub wall_s: f64,
}

impl Finished {
    /// User + system CPU, s.
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Runs `argv` to its end, capturing stdout and stderr, and reaps it with `wait4` so its
/// rusage is its own (not that of other children of this process).
pub fn run(argv: &[String]) -> io::Result<Finished> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let start = Instant::now();
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let (code, usage) = wait4(&child)?;
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Finished {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        code,
        user_s: tv(usage.ru_utime),
        sys_s: tv(usage.ru_stime),
        maxrss_kb: usage.ru_maxrss as u64,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// Reads a pipe to its end on a thread.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Waits for `child` and returns its exit code and rusage. std's `Child` is not used to wait
/// afterwards (it would find the pid reaped, which it tolerates on drop).
fn wait4(child: &Child) -> io::Result<(i32, libc::rusage)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data, zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, usage))
}

/// Sends SIGTERM to a child (so it can log its summary), then waits for it.
pub fn terminate(child: &mut Child) {
    // SAFETY: kill with a valid signal on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
}

/// Seconds since the Unix epoch, now.
pub fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_fills_known_placeholders() {
        let vars = [
            ("url", "http://x/".to_string()),
            ("rate", "800".to_string()),
        ];
        let s = expand("wrk2 -R{rate} {url} {json}", &vars);
        assert_eq!(s, "wrk2 -R800 http://x/ {json}");
    }

    #[test]
    fn split_words_handles_quotes() {
        let w = split_words(r#"a  'b c' "d \"e\"" f\ g ''"#);
        assert_eq!(w, vec!["a", "b c", "d \"e\"", "f g", ""]);
    }

    #[test]
    fn run_captures_output_exit_code_and_cpu() {
        let argv = split_words("sh -c 'echo out; echo err >&2; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exit 3'");
        let f = run(&argv).unwrap();
        assert_eq!(
            (f.stdout.as_str(), f.stderr.as_str(), f.code),
            ("out\n", "err\n", 3)
        );
        assert!(f.cpu_s() > 0.0, "{f:?}");
        assert!(f.maxrss_kb > 0);
    }
}
