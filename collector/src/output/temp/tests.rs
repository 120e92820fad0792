use super::*;

/// A pid above the kernel's limit (2^22): no process ever has it.
const NO_PID: u32 = (1 << 22) + 1;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn touch(dir: &Path, name: &str, age: Duration) {
    let f = std::fs::File::create(dir.join(name)).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn this_process_runs_and_a_reused_pid_is_another_process() {
    let me = ProcessStamp::current();
    assert_eq!(me.pid, std::process::id());
    assert!(me.is_running());
    let reused = ProcessStamp {
        start_ticks: me.start_ticks + 1,
        ..me
    };
    assert!(!reused.is_running());
    assert_eq!(ProcessStamp::of(NO_PID), None);
    let started = me.started().expect("start time from /proc");
    assert!(started <= SystemTime::now() + Duration::from_secs(2));
}

#[test]
fn temp_files_of_dead_writers_are_removed_and_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    let me = ProcessStamp::current();
    let dead = format!("{PREFIX}{NO_PID}.5.spans.csv.a1b2c3");
    let reused = format!("{PREFIX}{}.{}.x.csv.a1b2c3", me.pid, me.start_ticks + 1);
    let live = format!("{PREFIX}{}.{}.x.csv.d4e5f6", me.pid, me.start_ticks);
    let garbled = format!("{PREFIX}notapid.x.csv.a1b2c3");
    for n in [&dead, &reused, &live, &garbled, ".hidden", "spans.csv"] {
        touch(dir.path(), n, Duration::ZERO);
    }
    let sub = dir.path().join("cases/a");
    std::fs::create_dir_all(&sub).unwrap();
    touch(&sub, &dead, Duration::ZERO);

    let removed = remove_stale(dir.path()).unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    let mut kept = vec![live.clone(), garbled, ".hidden".into(), "cases".into()];
    kept.push("spans.csv".into());
    kept.sort();
    assert_eq!(names(dir.path()), kept);
    // The tree sweep reaches below.
    assert_eq!(remove_stale_tree(dir.path()), vec![sub.join(&dead)]);
    assert_eq!(names(&sub), Vec::<String>::new());
}

#[test]
fn earlier_versions_temp_files_go_only_when_older_than_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let old = Duration::from_secs(30 * 86_400);
    touch(dir.path(), ".tmpAb12Cd", old);
    touch(dir.path(), ".spans.csv.Xy34Zw", old);
    touch(dir.path(), ".notes.txt.Xy34Zw", old);
    touch(dir.path(), ".tmpNew123", Duration::ZERO);
    remove_stale(dir.path()).unwrap();
    assert_eq!(names(dir.path()), [".notes.txt.Xy34Zw", ".tmpNew123"]);
}

#[test]
fn the_first_write_in_a_directory_removes_what_a_killed_writer_left() {
    let dir = tempfile::tempdir().unwrap();
    let left = format!("{PREFIX}{NO_PID}.7.spans.csv.a1b2c3");
    touch(dir.path(), &left, Duration::ZERO);
    crate::output::write_atomic(dir.path(), "x.csv", |w| io::Write::write_all(w, b"a\n")).unwrap();
    assert_eq!(names(dir.path()), ["x.csv"]);
}

#[test]
fn files_get_0666_less_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    // The umask is per process: this is the only test here that changes it.
    for (mask, mode) in [(0o022, 0o644), (0o027, 0o640)] {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask has no preconditions.
        let before = unsafe { libc::umask(mask) };
        let t = create(dir.path(), "x.csv");
        // SAFETY: as above.
        unsafe { libc::umask(before) };
        let t = t.unwrap();
        assert!(t
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(PREFIX));
        let p = dir.path().join("x.csv");
        t.persist(&p).unwrap();
        let got = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "umask {mask:o}");
    }
}
