use super::*;
use crate::results::journal::Status;

fn cfg(text: &str) -> Config {
    Config::parse(text, Path::new("t.yaml")).unwrap()
}

const BASE: &str = "name: a\nduration: 2s\nsweep: {rate: [10, 20]}\n";

#[test]
fn same_config_has_no_difference_and_ignored_keys_are_ignored() {
    let a = comparable(&cfg(BASE));
    assert_eq!(diff(&a, &a), vec![]);
    let b = comparable(&cfg(
        "name: b\nresults_dir: elsewhere\nduration: 2s\nsweep: {rate: [10, 20]}\n",
    ));
    assert_eq!(diff(&a, &b), vec![]);
}

#[test]
fn differences_name_the_key_path_and_both_values() {
    let a = comparable(&cfg(BASE));
    let b = comparable(&cfg("name: a\nduration: 3s\nsweep: {rate: [10, 30]}\n"));
    let d: Vec<String> = diff(&a, &b).iter().map(|d| d.to_string()).collect();
    assert!(
        d.contains(&"duration: \"2s\" -> \"3s\"".to_string()),
        "{d:?}"
    );
    assert!(d.iter().any(|s| s.starts_with("sweep.rate")), "{d:?}");
    assert_eq!(d.len(), 2, "{d:?}");

    // Lists of another length differ as a whole; a key only on one side is (absent).
    let x: Value = serde_yaml::from_str("{a: [1, 2], b: {c: 1}}").unwrap();
    let y: Value = serde_yaml::from_str("{a: [1, 2, 3], b: {d: 1}}").unwrap();
    let d: Vec<String> = diff(&x, &y).iter().map(|d| d.to_string()).collect();
    assert_eq!(
        d,
        [
            "a: [1,2] -> [1,2,3]",
            "b.c: 1 -> (absent)",
            "b.d: (absent) -> 1"
        ]
    );
}

#[test]
fn a_refusal_lists_a_few_differences_then_counts_the_rest() {
    let many: Vec<Difference> = (0..7)
        .map(|i| Difference {
            path: format!("k{i}"),
            old: "1".into(),
            new: "2".into(),
        })
        .collect();
    let msg = refusal(Path::new("results/x"), &many).to_string();
    assert!(msg.contains("k0: 1 -> 2; k1: 1 -> 2"), "{msg}");
    assert!(msg.contains("k3: 1 -> 2; and 3 more"), "{msg}");
    assert!(!msg.contains("k4"), "{msg}");
    assert!(msg.contains("--resume-anyway"), "{msg}");
    assert!(msg.contains("results/x/config.resolved.yaml"), "{msg}");
}

#[test]
fn the_saved_config_is_compared_and_its_directory_counts() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(BASE);
    let meta = Metadata::start(&c, Path::new("t.yaml"), 2);
    assert_eq!(config_differences(d.path(), &meta, &c)[0].old, "(missing)");
    save_config(d.path(), &c, Some(BASE)).unwrap();
    assert_eq!(config_differences(d.path(), &meta, &c), vec![]);
    let mut moved = c.clone();
    moved.base_dir = "/elsewhere".into();
    let diffs = config_differences(d.path(), &meta, &moved);
    assert_eq!(diffs.len(), 1);
    assert_eq!(diffs[0].path, CONFIG_DIR);

    let kept = replace_config(d.path(), &cfg("name: a\nsweep: {rate: [5]}\n"), None, 1).unwrap();
    assert_eq!(kept, "config.resolved.1.yaml");
    assert!(d.path().join("config.1.yaml").is_file());
    assert!(d.path().join(&kept).is_file());
    assert_eq!(config_differences(d.path(), &meta, &c).len(), 2);
}

fn entry(case: &str, index: usize) -> Entry {
    Entry::sample(case, index, Status::Ok)
}

#[test]
fn entries_take_this_sweeps_indices_and_others_are_set_aside() {
    let cases = crate::sweep::expand(&cfg("name: a\nsweep: {rate: [5, 10, 20]}\n"));
    let old = crate::sweep::expand(&cfg(BASE));
    let mut done = BTreeMap::new();
    for c in &old {
        done.insert(c.name.clone(), entry(&c.name, c.index));
    }
    let schedule =
        crate::schedule::Schedule::new(&cfg("name: a\nsweep: {rate: [5, 10, 20]}\n"), &cases);
    let (kept, aside) = remap(done, &schedule);
    // rate 10 and 20 are cases 1 and 2 of the new sweep: no index repeats.
    let mut idx: Vec<usize> = kept.values().map(|e| e.index).collect();
    idx.sort();
    assert_eq!(idx, [1, 2]);
    assert!(aside.is_empty());

    let (kept, aside) = remap(
        [("gone".to_string(), entry("gone", 0))]
            .into_iter()
            .collect(),
        &schedule,
    );
    assert!(kept.is_empty());
    assert_eq!(aside, ["gone"]);
}
