//! Sources of the user's own: a function a handler registers (a database dump, `perf` output, a
//! custom exporter) that writes files into the case directory. They run after the built-in
//! sources and are recorded in `collection.json` as `custom:<name>` exactly like them: the files
//! they wrote, or why they failed. A panic in one is that source's failure, not the run's.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::case::SourceOutcome;
use crate::error::Error;
use crate::output::Written;
use crate::prometheus::TemplateContext;
use crate::window::Window;

/// The function of a custom source: given the case directory, the measured window and the
/// template context (case name, namespace, ...), it writes its files into the directory and
/// returns their paths, or says why it could not.
pub type CollectFn =
    dyn Fn(&Path, &Window, &TemplateContext) -> Result<Vec<PathBuf>, String> + Send + Sync;

/// A named custom source (cheap to clone: the function is shared).
#[derive(Clone)]
pub struct CustomSource {
    /// Name in `collection.json` (as `custom:<name>`) and in error messages.
    pub name: String,
    /// What it does.
    pub collect: Arc<CollectFn>,
}

impl CustomSource {
    /// A source named `name` running `f`.
    pub fn new(
        name: impl Into<String>,
        f: impl Fn(&Path, &Window, &TemplateContext) -> Result<Vec<PathBuf>, String>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        CustomSource {
            name: name.into(),
            collect: Arc::new(f),
        }
    }

    /// Runs the source for a case. A file it names that does not exist is a failure: the
    /// record must not list files that are not there.
    pub fn run(&self, dir: &Path, window: &Window, ctx: &TemplateContext) -> SourceOutcome {
        let called = catch_unwind(AssertUnwindSafe(|| (self.collect)(dir, window, ctx)));
        let result = match called {
            Err(_) => Err("panicked".to_string()),
            Ok(Err(e)) => Err(e),
            Ok(Ok(paths)) => match paths.iter().find(|p| !p.is_file()) {
                Some(p) => Err(format!(
                    "says it wrote {}, which is not a file",
                    p.display()
                )),
                None => Ok(paths
                    .into_iter()
                    .map(|path| Written {
                        path,
                        what: format!("custom collection {}", self.name),
                    })
                    .collect()),
            },
        };
        SourceOutcome {
            source: format!("custom:{}", self.name),
            result: result.map_err(|message| Error::Custom {
                name: self.name.clone(),
                message,
            }),
            completeness: None,
        }
    }
}

impl std::fmt::Debug for CustomSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomSource({})", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn window() -> Window {
        let end = SystemTime::now();
        Window {
            start: end - Duration::from_secs(5),
            end,
        }
    }

    #[test]
    fn files_written_errors_and_panics_are_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = TemplateContext {
            case: "c1".into(),
            ..Default::default()
        };
        let ok = CustomSource::new("dump", |d, _, ctx| {
            let p = d.join("dump.txt");
            std::fs::write(&p, &ctx.case).map_err(|e| e.to_string())?;
            Ok(vec![p])
        });
        let out = ok.run(dir.path(), &window(), &ctx);
        assert_eq!(out.source, "custom:dump");
        let files = out.result.unwrap();
        assert_eq!(std::fs::read_to_string(&files[0].path).unwrap(), "c1");

        let failing = CustomSource::new("db", |_, _, _| Err("connection refused".into()));
        let e = failing.run(dir.path(), &window(), &ctx).result.unwrap_err();
        assert!(e.to_string().contains("db") && e.to_string().contains("connection refused"));

        let lying = CustomSource::new("ghost", |d, _, _| Ok(vec![d.join("nothing")]));
        let e = lying.run(dir.path(), &window(), &ctx).result.unwrap_err();
        assert!(e.to_string().contains("not a file"), "{e}");

        let panicking = CustomSource::new("boom", |_, _, _| panic!("bug"));
        let e = panicking
            .run(dir.path(), &window(), &ctx)
            .result
            .unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
    }
}
