//! Checks of a run that need no network, for `aefm validate` and the like: the spec's values and
//! headers, output files, and a wrk Lua script loaded and run as a real run would up to its first `request()`.
//! Nothing is connected and no request is sent.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use crate::run::Error;
use crate::script::{MainScript, ScriptTarget};
use crate::source::{ThreadContext, Workload};
use crate::spec::{Spec, Target};

/// Loads the wrk Lua script at `path` with script arguments `args` for `url`, and runs it as a
/// one-thread run would before its first send: the script's top level, `setup(thread)`, then in
/// a thread state `init(args)` and the first `request()`, whose result is checked to be valid
/// HTTP (the same check a run does). Returns the script's warnings (for example an ignored
/// `delay()`). Errors name the file and line. Nothing is connected.
pub fn check_script(path: &Path, args: &[String], url: &str) -> Result<Vec<String>, Error> {
    let mut spec = Spec::new(url, 1.0);
    spec.threads = 1;
    spec.connections = 1;
    spec.workload = Workload::Script {
        path: path.to_path_buf(),
        args: args.to_vec(),
    };
    check_spec(&spec)
}

/// Everything about `spec` that can be checked without the network: its values and headers
/// ([`Spec::validate`], including `pin` against the allowed CPUs) and, for a script workload, the
/// script as [`check_script`] checks it, for each of the spec's threads with its headers.
/// Returns the warnings a run would print first.
pub fn check_spec(spec: &Spec) -> Result<Vec<String>, Error> {
    spec.validate()?;
    let target = Target::parse(&spec.url)?;
    let mut warnings = spec.warnings();
    let Workload::Script { path, args } = &spec.workload else {
        return Ok(warnings);
    };
    let st = ScriptTarget::of(&target, spec.headers.clone());
    let mut main = MainScript::load(path, args, &st)?;
    warnings.extend(main.warnings().iter().cloned());
    let addr = placeholder_addr(&target);
    for index in 0..spec.threads {
        let mut a = addr;
        let seed = main.setup_thread(index, &mut a)?;
        let ctx = ThreadContext {
            index,
            threads: spec.threads,
            addr: a,
        };
        // Builds the thread's state, runs init() and checks the first request().
        drop(seed.build(&ctx)?);
    }
    Ok(warnings)
}

/// An output file (`--json`, `--hdr-log`) cannot be written where asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot write {}: {reason}", path.display())]
pub struct OutputFileError {
    /// The file as given.
    pub path: std::path::PathBuf,
    /// What is wrong (missing directory, not writable, a directory).
    pub reason: String,
}

/// Checks, before any load, that a file can be created or replaced at `path`: its directory
/// exists and is writable, and `path` is not a directory (nor an existing read-only file).
/// Creates nothing.
pub fn check_output_file(path: &Path) -> Result<(), OutputFileError> {
    let fail = |reason: String| OutputFileError {
        path: path.to_path_buf(),
        reason,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(e) => {
            return Err(fail(format!(
                "directory {} {}",
                dir.display(),
                not_there(&e)
            )))
        }
        Ok(m) if !m.is_dir() => return Err(fail(format!("{} is not a directory", dir.display()))),
        Ok(_) => {}
    }
    if path.is_dir() {
        return Err(fail("it is a directory".into()));
    }
    let check = if path.exists() { path } else { dir };
    if !writable(check) {
        return Err(fail(format!("{} is not writable", check.display())));
    }
    Ok(())
}

/// "does not exist" or the error.
fn not_there(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        "does not exist".into()
    } else {
        format!("cannot be read: {e}")
    }
}

/// access(2) with W_OK: the kernel's answer for this process (root, ACLs, read-only mounts).
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// The address a script's `thread.addr` starts from: the host's first address when it resolves
/// here, otherwise the unspecified address with the URL's port (a host that only resolves where
/// the load runs must not fail a check).
fn placeholder_addr(target: &Target) -> SocketAddr {
    (target.host.as_str(), target.port_number)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], target.port_number)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn output_files_need_an_existing_writable_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_output_file(&dir.path().join("r.json")).is_ok());
        assert!(check_output_file(Path::new("relative.json")).is_ok());
        let e = check_output_file(&dir.path().join("missing/r.json")).unwrap_err();
        assert!(e.to_string().contains("missing does not exist"), "{e}");
        assert!(e.to_string().contains("r.json"), "{e}");
        let e = check_output_file(dir.path()).unwrap_err();
        assert!(e.reason.contains("is a directory"), "{e}");
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = check_output_file(&file.join("r.json")).unwrap_err();
        assert!(e.reason.contains("is not a directory"), "{e}");
    }

    #[test]
    fn a_good_script_passes_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            &dir,
            "ok.lua",
            "init = function(args) n = tonumber(args[1]) end\nrequest = function() return wrk.format('GET', '/' .. n) end\ndelay = function() return 1 end\n",
        );
        // Port 1 on localhost: nothing listens, and nothing is connected.
        let w = check_script(&p, &["7".into()], "http://127.0.0.1:1/").unwrap();
        assert!(w.iter().any(|w| w.contains("delay() is ignored")), "{w:?}");
    }

    #[test]
    fn a_script_failing_in_request_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            &dir,
            "bad.lua",
            "-- line 1\nrequest = function()\n  error('no request today')\nend\n",
        );
        let e = check_script(&p, &[], "http://127.0.0.1:1/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.lua:3"), "{e}");
        assert!(e.contains("no request today"), "{e}");
        let p = script(&dir, "junk.lua", "request = function() return 'junk' end\n");
        let e = check_script(&p, &[], "http://127.0.0.1:1/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("junk.lua"), "{e}");
        assert!(e.contains("HTTP"), "{e}");
    }

    #[test]
    fn setup_and_init_run_per_thread_and_headers_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            &dir,
            "threads.lua",
            "setup = function(t) t:set('id', 1) end\ninit = function() if id ~= 1 then error('setup value missing') end end\n",
        );
        let mut spec = Spec::new("http://unresolvable.invalid:8080/", 10.0);
        spec.workload = Workload::Script {
            path: p,
            args: vec![],
        };
        assert!(check_spec(&spec).is_ok());
        spec.headers.push(("X".into(), "a\r\nb".into()));
        let e = check_spec(&spec).unwrap_err().to_string();
        assert!(e.contains("CR"), "{e}");
        let e = check_script(Path::new("/no/such.lua"), &[], "http://h/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/no/such.lua"), "{e}");
    }
}
