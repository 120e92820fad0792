//! Locating the workspace's binaries (`aefm-load`, `aefm-stress`, `aefm`) from an end-to-end test.
//!
//! Cargo sets `CARGO_BIN_EXE_<name>` only for binaries of the package under test, and these tests live
//! in their own package. So the harness looks for the binary beside the test executable
//! (`target/<profile>/`) and builds it once with cargo when it is missing or older than a source file
//! (unless [`BUILT_ENV`] says the binaries were just built).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// `target/<profile>`: the directory that holds the test executable's `deps/` folder.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-exe>
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Set (by scripts/test, right after `cargo build --workspace --bins`) when every workspace
/// binary is fresh: [`bin`] then uses them as they are instead of running cargo.
pub const BUILT_ENV: &str = "AEFM_TEST_BINS_BUILT";

/// Path of a workspace binary, built with `cargo build` on first use in this test process.
///
/// The build always runs once per process (cargo makes it a no-op when nothing changed), so a test
/// never runs a binary older than the sources.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let path = target_dir().join(name);
    // scripts/test builds every binary before any test runs and says so: asking cargo again from
    // a test would wait on the build-directory lock that the other test lane's `cargo test`
    // holds while its tests run (minutes, in CI).
    if std::env::var_os(BUILT_ENV).is_some() && path.exists() {
        return path;
    }
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let profile_release = target_dir().file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // `--workspace`, not `-p`: cargo resolves features over the whole workspace, as the
        // test build did, so a binary built beside the tests is not rebuilt with other features.
        cmd.args(["build", "--quiet", "--workspace", "--bin", name]);
        if profile_release {
            cmd.arg("--release");
        }
        if let Some(target) = target_dir().parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build of {name} failed");
        built.push(name.to_string());
    }
    assert!(path.exists(), "{} not found after build", path.display());
    path
}
