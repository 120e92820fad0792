//! The other direction of the command line: a run's settings as `aefm-load` arguments, for a
//! controller that starts aefm-load elsewhere (the manager's Kubernetes Jobs). It lives beside
//! the parser so that the two cannot drift apart: the tests parse what is encoded here.

use std::path::PathBuf;
use std::time::Duration;

use super::ControlFlags;
use crate::schedule::{Distribution, DEFAULT_SEED};
use crate::spec::CatchUp;

/// The settings of a run that a controller passes to `aefm-load` on its command line.
/// [`LoadArgs::to_args`] encodes them; [`super::parse`] reads them back.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadArgs {
    /// The target URL.
    pub url: String,
    /// `-R`: the constant offered rate, requests/s.
    pub rate: f64,
    /// `-t`: worker threads.
    pub threads: usize,
    /// `-c`: connections, over all threads.
    pub connections: usize,
    /// `-d`: the whole run, warm-up included (as aefm-load counts it).
    pub duration: Duration,
    /// `--warmup`: latencies of this first part are discarded.
    pub warmup: Duration,
    /// `-T`: the response timeout.
    pub timeout: Duration,
    /// `-s`: the wrk Lua script, as a path where aefm-load runs.
    pub script: Option<PathBuf>,
    /// The script's arguments (after `--`); only passed with a script, as aefm-load ignores
    /// them otherwise.
    pub script_args: Vec<String>,
    /// `-D`: the gap distribution; left out when fixed (the default).
    pub distribution: Distribution,
    /// `--seed`: left out when the default.
    pub seed: u64,
    /// `--catch-up`: left out when serial (the default).
    pub catch_up: CatchUp,
    /// `--traceparent`: left out when 0 (the default).
    pub traceparent: f64,
    /// The start barrier and report framing flags.
    pub control: ControlFlags,
}

impl LoadArgs {
    /// Settings for `url` at `rate` with aefm-load's defaults for everything else.
    pub fn new(url: impl Into<String>, rate: f64) -> LoadArgs {
        LoadArgs {
            url: url.into(),
            rate,
            threads: 2,
            connections: 10,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(2),
            script: None,
            script_args: Vec::new(),
            distribution: Distribution::Fixed,
            seed: DEFAULT_SEED,
            catch_up: CatchUp::Serial,
            traceparent: 0.0,
            control: ControlFlags::default(),
        }
    }

    /// The arguments after the program name: options, the URL, then `--` and the script's
    /// arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = vec![
            "-t".to_string(),
            self.threads.to_string(),
            "-c".into(),
            self.connections.to_string(),
            "-d".into(),
            time_arg(self.duration),
            "--warmup".into(),
            time_arg(self.warmup),
            "-T".into(),
            time_arg(self.timeout),
            "-R".into(),
            // Display of an f64 is the shortest text that parses back to the same value.
            format!("{}", self.rate),
        ];
        if let Some(script) = &self.script {
            out.extend(["-s".to_string(), script.display().to_string()]);
        }
        if self.distribution != Distribution::Fixed {
            out.extend(["-D".to_string(), self.distribution.name().to_string()]);
        }
        if self.seed != DEFAULT_SEED {
            out.extend(["--seed".to_string(), self.seed.to_string()]);
        }
        if self.catch_up == CatchUp::Pipeline {
            out.extend(["--catch-up".to_string(), "pipeline".to_string()]);
        }
        if self.traceparent > 0.0 {
            out.extend(["--traceparent".to_string(), format!("{}", self.traceparent)]);
        }
        out.extend(self.control.to_args());
        out.push(self.url.clone());
        if self.script.is_some() && !self.script_args.is_empty() {
            out.push("--".into());
            out.extend(self.script_args.iter().cloned());
        }
        out
    }
}

/// A duration as a time argument: whole milliseconds when it is one, else microseconds (the
/// parser's finest unit; anything finer is dropped).
fn time_arg(d: Duration) -> String {
    if d.subsec_millis() * 1_000_000 == d.subsec_nanos() {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Command};
    use crate::source::Workload;
    use crate::spec::Spec;

    fn parse_back(args: &LoadArgs) -> (Spec, ControlFlags) {
        let mut full = vec!["aefm-load".to_string()];
        full.extend(args.to_args());
        match parse(&full).unwrap() {
            Command::Run { spec, control, .. } => (*spec, control),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_round_trip_through_the_parser() {
        let args = LoadArgs::new("http://h:1/p", 2000.0);
        let (s, control) = parse_back(&args);
        let d = Spec::new("http://h:1/p", 2000.0);
        assert_eq!((s.url.as_str(), s.rate), (d.url.as_str(), d.rate));
        assert_eq!((s.threads, s.connections), (d.threads, d.connections));
        assert_eq!(
            (s.duration, s.warmup, s.timeout),
            (d.duration, d.warmup, d.timeout)
        );
        assert_eq!(
            (s.distribution, s.seed, s.catch_up),
            (d.distribution, d.seed, d.catch_up)
        );
        assert!(matches!(s.workload, Workload::Static));
        assert_eq!(control, ControlFlags::default());
        // Defaults are not spelled out.
        let text = args.to_args();
        assert_eq!(s.traceparent, d.traceparent);
        for flag in ["-D", "--seed", "--catch-up", "--traceparent", "-s", "--"] {
            assert!(!text.iter().any(|a| a == flag), "{flag} in {text:?}");
        }
    }

    #[test]
    fn every_setting_round_trips_through_the_parser() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("post.lua");
        std::fs::write(&script, "request = function() return wrk.format() end\n").unwrap();
        let args = LoadArgs {
            url: "https://h:8443/x?y=1".into(),
            rate: 1000.0 / 3.0,
            threads: 3,
            connections: 7,
            duration: Duration::from_millis(61_500),
            warmup: Duration::from_micros(1_500_250),
            timeout: Duration::from_millis(2500),
            script: Some(script.clone()),
            script_args: vec!["a b".into(), "-c".into(), "http://not/a/url/flag".into()],
            distribution: Distribution::Exp,
            seed: 42,
            catch_up: CatchUp::Pipeline,
            traceparent: 0.125,
            control: ControlFlags {
                control_port: Some(7070),
                start_timeout: Some(Duration::from_secs(90)),
                report_frame: true,
                ..Default::default()
            },
        };
        let (s, control) = parse_back(&args);
        assert_eq!((s.url.as_str(), s.rate), (args.url.as_str(), args.rate));
        assert_eq!((s.threads, s.connections), (3, 7));
        assert_eq!(
            (s.duration, s.warmup, s.timeout),
            (args.duration, args.warmup, args.timeout)
        );
        assert_eq!(
            (s.distribution, s.seed, s.catch_up),
            (Distribution::Exp, 42, CatchUp::Pipeline)
        );
        assert_eq!(s.traceparent, 0.125);
        assert_eq!(control, args.control);
        match s.workload {
            Workload::Script { path, args: a } => {
                assert_eq!(path, script);
                assert_eq!(a, args.script_args);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn script_arguments_need_a_script() {
        let mut args = LoadArgs::new("http://h/", 10.0);
        args.script_args = vec!["x".into()];
        assert_eq!(args.to_args().last().unwrap(), "http://h/");
    }

    #[test]
    fn times_keep_microseconds() {
        assert_eq!(time_arg(Duration::from_millis(1500)), "1500ms");
        assert_eq!(time_arg(Duration::from_micros(1_500_250)), "1500250us");
        assert_eq!(time_arg(Duration::ZERO), "0ms");
    }
}
