//! `aefm status`: where an experiment stands, from its directory alone: its status (a `running`
//! experiment whose process is gone is `crashed`), the cases done (valid, invalid, failed), what
//! is left, and the command that resumes it.

use std::fmt;
use std::path::{Path, PathBuf};

use super::metadata::{status, Counts, Liveness, Metadata};
use super::{journal, resume, ResultsError};
use crate::config::Config;

/// Case names listed under "left"; the rest are counted.
const LISTED: usize = 5;

/// Where an experiment stands.
#[derive(Clone, Debug)]
pub struct Report {
    /// The experiment directory.
    pub dir: PathBuf,
    /// Its metadata.
    pub meta: Metadata,
    /// `running`, `crashed`, `finished`, `finished-with-failures`, `interrupted` or `failed`.
    pub status: String,
    /// Cases of the sweep.
    pub total: usize,
    /// Counts over the cases of the sweep that ran (ok or failed).
    pub counts: Counts,
    /// Cases of the sweep not run yet or failed (they run on resume), in run order.
    pub left: Vec<String>,
    /// Finished cases that are not in the sweep (an earlier config, `--resume-anyway`).
    pub set_aside: usize,
}

impl Report {
    /// Reads the experiment in `dir`. The sweep comes from its `config.resolved.yaml`; without
    /// one that parses, from metadata.json's case count.
    pub fn read(dir: &Path) -> Result<Report, ResultsError> {
        let meta = Metadata::read(dir)?;
        let journal = journal::read(dir)?;
        let resolved = dir.join(resume::RESOLVED);
        let cases = std::fs::read_to_string(&resolved)
            .ok()
            .and_then(|t| Config::parse(&t, &resolved).ok())
            .map(|cfg| {
                let cases = crate::sweep::expand(&cfg);
                let schedule = crate::schedule::Schedule::new(&cfg, &cases);
                (cases, schedule)
            });
        let (total, counts, left, set_aside) = match cases {
            Some((_, schedule)) if schedule.is_dynamic() => {
                let (done, aside) = resume::remap(journal, &schedule);
                // What a dynamic sweep has left is decided as it runs: its worst case is shown.
                let total = schedule.worst_case_cases().max(done.len());
                (total, Counts::of(done.values()), Vec::new(), aside.len())
            }
            Some((cases, schedule)) => {
                let (done, aside) = resume::remap(journal, &schedule);
                let left = cases
                    .iter()
                    .filter(|c| {
                        done.get(&c.name)
                            .is_none_or(|e| e.status == journal::Status::Failed)
                    })
                    .map(|c| c.name.clone())
                    .collect();
                (cases.len(), Counts::of(done.values()), left, aside.len())
            }
            None => (meta.cases, Counts::of(journal.values()), Vec::new(), 0),
        };
        Ok(Report {
            dir: dir.to_path_buf(),
            status: meta.effective_status().to_string(),
            meta,
            total,
            counts,
            left,
            set_aside,
        })
    }

    /// The command that goes on with the experiment, unless it is finished or still running.
    pub fn resume_command(&self) -> Option<String> {
        let running = self.status == status::RUNNING;
        let complete = self.counts.ok >= self.total;
        (!running && !complete).then(|| super::resume_command(&self.meta.config_file, &self.dir))
    }

    fn status_line(&self) -> String {
        let m = &self.meta;
        let pid = m.pid.map_or_else(|| "?".into(), |p| p.to_string());
        let since = m.resumed.last().unwrap_or(&m.started);
        match (self.status.as_str(), m.liveness()) {
            (status::CRASHED, _) => format!(
                "crashed (its aefm, pid {pid} on {}, is gone; it started {since})",
                m.host
            ),
            (status::RUNNING, Liveness::Alive) => format!("running (aefm pid {pid}, since {since})"),
            (status::RUNNING, Liveness::Elsewhere(h)) => format!(
                "running on host {h} (aefm pid {pid}, since {since}), or crashed there: this host cannot tell"
            ),
            (status::RUNNING, _) => {
                "running, or crashed: an older aefm recorded no pid".to_string()
            }
            (s, _) => match &m.ended {
                Some(e) => format!("{s} (ended {e})"),
                None => s.to_string(),
            },
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(f, "experiment: {}", self.meta.name)?;
        writeln!(f, "directory:  {}", self.dir.display())?;
        writeln!(f, "status:     {}", self.status_line())?;
        let unchecked = c.ok - c.valid - c.invalid;
        writeln!(
            f,
            "cases:      {} of {} done: {} valid, {} invalid, {} failed{}",
            c.ok + c.failed,
            self.total,
            c.valid,
            c.invalid,
            c.failed,
            if unchecked > 0 {
                format!(", {unchecked} ok without a verdict (older aefm)")
            } else {
                String::new()
            }
        )?;
        let not_run = self.total.saturating_sub(c.ok + c.failed);
        write!(
            f,
            "left:       {} ({} not run, {} failed to run again)",
            not_run + c.failed,
            not_run,
            c.failed
        )?;
        if !self.left.is_empty() {
            let mut names: Vec<&str> = self.left.iter().take(LISTED).map(String::as_str).collect();
            let more = format!("and {} more", self.left.len().saturating_sub(LISTED));
            if self.left.len() > LISTED {
                names.push(&more);
            }
            write!(f, ": {}", names.join(", "))?;
        }
        writeln!(f)?;
        if self.set_aside > 0 {
            writeln!(
                f,
                "set aside:  {} finished cases of an earlier config, not in this sweep (journal.jsonl, cases/)",
                self.set_aside
            )?;
        }
        if let Some(cmd) = self.resume_command() {
            writeln!(f, "resume:     {cmd}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::journal::{Entry, Status};
    use crate::validity::{Reason, Verdict};

    fn entry(case: &crate::sweep::TestCase, status: Status, verdict: Option<Verdict>) -> Entry {
        Entry {
            verdict,
            ..Entry::sample(&case.name, case.index, status)
        }
    }

    #[test]
    fn a_crashed_experiment_reports_counts_what_is_left_and_the_resume_command() {
        let d = tempfile::tempdir().unwrap();
        let text = "name: s\nsweep: {rate: [10, 20, 30, 40]}\n";
        let cfg = Config::parse(text, Path::new("s.yaml")).unwrap();
        let cases = crate::sweep::expand(&cfg);
        let mut meta = Metadata::start(&cfg, Path::new("s.yaml"), cases.len());
        meta.pid = Some((1 << 22) + 1); // no such process: crashed
        meta.write(d.path()).unwrap();
        resume::save_config(d.path(), &cfg, Some(text)).unwrap();
        let invalid = Verdict::from_reasons(vec![Reason::new("no_responses", "none")]);
        journal::append(
            d.path(),
            &entry(&cases[0], Status::Ok, Some(Verdict::default())),
        )
        .unwrap();
        journal::append(d.path(), &entry(&cases[1], Status::Ok, Some(invalid))).unwrap();
        journal::append(d.path(), &entry(&cases[2], Status::Failed, None)).unwrap();

        let r = Report::read(d.path()).unwrap();
        assert_eq!(r.status, "crashed");
        let c = r.counts;
        assert_eq!((c.ok, c.valid, c.invalid, c.failed), (2, 1, 1, 1));
        assert_eq!(r.left, [cases[2].name.clone(), cases[3].name.clone()]);
        let text = r.to_string();
        assert!(text.contains("status:     crashed"), "{text}");
        assert!(
            text.contains("3 of 4 done: 1 valid, 1 invalid, 1 failed"),
            "{text}"
        );
        assert!(
            text.contains("left:       2 (1 not run, 1 failed to run again)"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "resume:     aefm run s.yaml --resume={}",
                d.path().display()
            )),
            "{text}"
        );
    }

    #[test]
    fn a_finished_experiment_offers_no_resume() {
        let d = tempfile::tempdir().unwrap();
        let text = "name: s\nsweep: {rate: [10]}\n";
        let cfg = Config::parse(text, Path::new("s.yaml")).unwrap();
        let cases = crate::sweep::expand(&cfg);
        let mut meta = Metadata::start(&cfg, Path::new("s.yaml"), 1);
        meta.status = status::FINISHED.into();
        meta.write(d.path()).unwrap();
        resume::save_config(d.path(), &cfg, None).unwrap();
        journal::append(d.path(), &entry(&cases[0], Status::Ok, None)).unwrap();
        let r = Report::read(d.path()).unwrap();
        assert_eq!(r.status, "finished");
        assert_eq!(r.resume_command(), None);
        assert!(r.to_string().contains("1 ok without a verdict"), "{r}");
    }
}
