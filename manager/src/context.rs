//! The typed context handed to handlers and components: the config, the current test case, the
//! experiment directory, results of the current case, shared data, and a queue of custom events.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::components::{CollectSummary, Window};
use crate::config::Config;
use crate::load::{CancelToken, LoadReport};
use crate::sweep::TestCase;

/// Everything a handler can see and change. Components are passed beside it (`&mut Components`).
pub struct Context {
    /// The configuration as run.
    pub config: Arc<Config>,
    /// The experiment directory (`results/<name>-<timestamp>`).
    pub experiment_dir: PathBuf,
    /// All test cases in run order.
    pub cases: Arc<Vec<TestCase>>,
    /// The case being run (None outside a case).
    pub case: Option<TestCase>,
    /// Directory of the current case.
    pub case_dir: Option<PathBuf>,
    /// The load report of the current case, once load ran.
    pub report: Option<LoadReport>,
    /// The measured window of the current case, once load ran.
    pub window: Option<Window>,
    /// What the collector wrote for the current case.
    pub collected: Option<CollectSummary>,
    /// Reasons found so far why the current case's figures cannot be believed (the default
    /// handlers add the app and interference checks; a handler may add its own). They become the
    /// case's verdict with the load and collector checks (see [`crate::validity`]).
    pub findings: Vec<crate::validity::Reason>,
    /// Shared JSON values (the original's `manager.data`), kept across cases.
    pub data: BTreeMap<String, serde_json::Value>,
    /// Cancels the current load (Ctrl-C).
    pub cancel: CancelToken,
    /// Collections of the user's own ([`crate::experiment::Experiment::add_collection`]), run
    /// for every case after the built-in sources and recorded in `collection.json`.
    pub collections: Vec<aefm_collector::custom::CustomSource>,
    typed: HashMap<TypeId, Box<dyn Any + Send>>,
    pending: Vec<String>,
}

impl Context {
    /// A context for an experiment.
    pub fn new(config: Arc<Config>, experiment_dir: PathBuf, cases: Arc<Vec<TestCase>>) -> Self {
        Self {
            config,
            experiment_dir,
            cases,
            case: None,
            case_dir: None,
            report: None,
            window: None,
            collected: None,
            findings: Vec::new(),
            data: BTreeMap::new(),
            cancel: CancelToken::new(),
            collections: Vec::new(),
            typed: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Stores a typed value (one per type), for handlers that share Rust state.
    pub fn insert<T: Any + Send>(&mut self, value: T) {
        self.typed.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// The typed value of type `T`, if stored.
    pub fn get<T: Any + Send>(&self) -> Option<&T> {
        self.typed
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }

    /// The typed value of type `T`, mutably.
    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        self.typed
            .get_mut(&TypeId::of::<T>())
            .and_then(|b| b.downcast_mut())
    }

    /// Fires a custom event: its handlers (and `custom:<name>` hooks) run right after the
    /// current handler returns.
    pub fn fire(&mut self, event: impl Into<String>) {
        self.pending.push(event.into());
    }

    /// Takes the events fired since the last call.
    pub(crate) fn take_fired(&mut self) -> Vec<String> {
        std::mem::take(&mut self.pending)
    }

    /// Environment variables describing the experiment and the current case (for hooks and app
    /// commands): AEFM_EXPERIMENT, AEFM_EXPERIMENT_DIR, AEFM_CASE, AEFM_CASE_INDEX, AEFM_CASE_DIR,
    /// AEFM_RATE, AEFM_ROUND, AEFM_DIM_<NAME> per dimension and AEFM_EXTRA_<KEY> per entry of
    /// the config's `extra:`.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("AEFM_EXPERIMENT".to_string(), self.config.name.clone()),
            (
                "AEFM_EXPERIMENT_DIR".to_string(),
                self.experiment_dir.display().to_string(),
            ),
            ("AEFM_CASES".to_string(), self.cases.len().to_string()),
        ];
        v.extend(crate::config::extra_env(&self.config.extra));
        if let Some(c) = &self.case {
            v.push(("AEFM_CASE".into(), c.name.clone()));
            v.push(("AEFM_CASE_INDEX".into(), c.index.to_string()));
            v.push(("AEFM_RATE".into(), crate::config::fmt_num(c.rate())));
            v.push(("AEFM_ROUND".into(), c.round().to_string()));
            for (n, val) in c.labels() {
                v.push((crate::config::env_name("AEFM_DIM_", &n), val));
            }
        }
        if let Some(d) = &self.case_dir {
            v.push(("AEFM_CASE_DIR".into(), d.display().to_string()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_and_app_commands_see_extra_values() {
        let text = "name: t\nsweep:\n  rate: [1]\nextra:\n  data-port: 30628\n  hosts: [a, b]\n";
        let cfg = Config::parse(text, std::path::Path::new("c.yaml")).unwrap();
        let ctx = Context::new(Arc::new(cfg), PathBuf::from("/x"), Arc::new(Vec::new()));
        let env: BTreeMap<String, String> = ctx.env().into_iter().collect();
        assert_eq!(env["AEFM_EXTRA_DATA_PORT"], "30628");
        assert_eq!(env["AEFM_EXTRA_HOSTS"], r#"["a","b"]"#);
        assert_eq!(env["AEFM_EXPERIMENT"], "t");
    }
}
