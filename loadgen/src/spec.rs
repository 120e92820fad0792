//! What to run: the [`Spec`] (URL, threads, connections, rate, duration, model, ...), its
//! validation, and the parsed [`Target`] (scheme, host, port, request path) derived from the URL.

use std::time::Duration;

use crate::schedule::{Distribution, RateProfile};
use crate::source::Workload;

/// How requests are paced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Model {
    /// wrk2's model: every connection has its own fixed schedule (`t0 + k / r_c`) and at most one
    /// batch in flight; a connection that falls behind sends its backlog back to back. Open loop in
    /// aggregate, closed loop per connection.
    #[default]
    Wrk2,
    /// Open loop (DeathStarBench's wrk2 fork): each thread sends on its schedule whether or not
    /// earlier requests are outstanding, taking an idle connection or opening a new one, up to
    /// `max_connections` in total. Past the cap, requests wait for a connection (their latency
    /// still counts from their intended time).
    Open {
        /// Upper bound on open connections over all threads.
        max_connections: usize,
    },
}

/// What a connection that fell behind its schedule does when it is free again (wrk2's model).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// wrk2's way: the due requests go one at a time, each after the previous answer. After a
    /// server stall the backlog drains at `connections / round trip`, which adds to the
    /// corrected latencies of the requests that waited (a few per cent of a stall's tail).
    #[default]
    Serial,
    /// The due requests go pipelined, up to 64 batches in one write, so the backlog drains at
    /// the server's own speed, as it would with an open population of clients queued at the
    /// server. Needs a server that handles HTTP/1.1 pipelining; changes what an overload run
    /// measures (pipelined throughput), so it is off by default.
    Pipeline,
}

/// Pacing tolerance with fixed gaps when none is set: wrk2's own granularity (its timer is
/// 1 ms-grained and always late; ours sends up to this early, never late).
pub const DEFAULT_PACING_TOLERANCE: Duration = Duration::from_millis(1);
/// Pacing tolerance with random gaps (`-D exp|norm|zipf`) when none is set: small, because the
/// short gaps are the point of such a schedule.
pub const RANDOM_GAPS_PACING_TOLERANCE: Duration = Duration::from_micros(20);

/// Everything a run needs. Build with [`Spec::new`] and set fields; call [`Spec::validate`].
#[derive(Clone, Debug)]
pub struct Spec {
    /// `http://` or `https://` URL; its path, query and fragment form the request target.
    pub url: String,
    /// Worker threads (one OS thread each). wrk2 default: 2.
    pub threads: usize,
    /// Total connections, split evenly over threads (the remainder is dropped, as in wrk2).
    pub connections: usize,
    /// Length of the run (wrk2 default: 10 s).
    pub duration: Duration,
    /// Target throughput, requests/s over all threads (fractions allowed). With a
    /// [`Spec::rate_profile`], the profile's mean over `duration` (see
    /// [`Spec::set_rate_profile`]), for reports and warnings: the profile paces the run.
    pub rate: f64,
    /// A request whose response has not completed this long after its send counts as a timeout
    /// (once); the response is still awaited and its latency recorded. wrk2 default: 2 s.
    pub timeout: Duration,
    /// Extra request headers, name and value (`-H "Name: value"`).
    pub headers: Vec<(String, String)>,
    /// Where requests come from.
    pub workload: Workload,
    /// Pacing model.
    pub model: Model,
    /// Latencies of responses completing in the first `warmup` of each thread are discarded (and
    /// a `Thread calibration` line is reported, as wrk2's hidden 10 s calibration does). Counts,
    /// bytes, errors and the per-second series still cover the whole run. Default 0: record all.
    pub warmup: Duration,
    /// Cores to pin worker threads to, round-robin (`None`: no pinning).
    pub pin: Option<Vec<usize>>,
    /// With pipelining, record one latency per batch (the last response) instead of one per
    /// response (`-B`).
    pub batch_latency: bool,
    /// A request may leave up to this much *before* its intended time, so that sends due within
    /// this of each other share one wake-up; the worker never makes a request late, and an early
    /// request is timed from when it left. Larger saves generator CPU at moderate rates (each
    /// wake-up is costly, above all on virtual machines), smaller paces more exactly. `None`:
    /// [`DEFAULT_PACING_TOLERANCE`] (1 ms) with fixed gaps, [`RANDOM_GAPS_PACING_TOLERANCE`]
    /// (20 µs) with random ones; see [`Spec::effective_pacing_tolerance`].
    pub pacing_tolerance: Option<Duration>,
    /// How a connection behind its schedule catches up (`--catch-up`; default serial, wrk2's).
    pub catch_up: CatchUp,
    /// Distribution of the gaps between an arrival process's sends (`-D`; default fixed,
    /// wrk2's grid). See [`crate::schedule`].
    pub distribution: Distribution,
    /// Seed of the random gaps (`--seed`; default [`crate::schedule::DEFAULT_SEED`]): the same
    /// seed and spec give the same intended send times.
    pub seed: u64,
    /// A time-varying offered rate (`-R 1000:5000:60s`, `-R 1000@0s,5000@30s`,
    /// `--rate-file`); `None`: the constant `rate`. Set with [`Spec::set_rate_profile`].
    pub rate_profile: Option<RateProfile>,
    /// Share of requests (0..=1) that carry a W3C `traceparent` header with a fresh trace id and
    /// the sampled flag (`--traceparent`; default 0: none). The report keeps the slowest of them
    /// with their trace ids ([`crate::traced`]), so each can be joined with its server-side trace.
    pub traceparent: f64,
}

impl Spec {
    /// A spec with wrk2's defaults (2 threads, 10 connections, 10 s, 2 s timeout) for `url` at
    /// `rate` requests/s.
    pub fn new(url: impl Into<String>, rate: f64) -> Spec {
        Spec {
            url: url.into(),
            threads: 2,
            connections: 10,
            duration: Duration::from_secs(10),
            rate,
            timeout: Duration::from_secs(2),
            headers: Vec::new(),
            workload: Workload::Static,
            model: Model::Wrk2,
            warmup: Duration::ZERO,
            pin: None,
            batch_latency: false,
            pacing_tolerance: None,
            catch_up: CatchUp::Serial,
            distribution: Distribution::Fixed,
            seed: crate::schedule::DEFAULT_SEED,
            rate_profile: None,
            traceparent: 0.0,
        }
    }

    /// The pacing tolerance the run uses: the one set, else the default for the gap
    /// distribution (see [`Spec::pacing_tolerance`]).
    pub fn effective_pacing_tolerance(&self) -> Duration {
        self.pacing_tolerance.unwrap_or(match self.distribution {
            Distribution::Fixed => DEFAULT_PACING_TOLERANCE,
            _ => RANDOM_GAPS_PACING_TOLERANCE,
        })
    }

    /// Paces the run by `profile` and sets `rate` to its mean over `duration` (so set the
    /// duration first); a constant profile just sets `rate`.
    pub fn set_rate_profile(&mut self, profile: RateProfile) {
        match profile.as_constant() {
            Some(rate) => {
                self.rate = rate;
                self.rate_profile = None;
            }
            None => {
                self.rate = profile.mean_rate(self.duration);
                self.rate_profile = Some(profile);
            }
        }
    }

    /// The offered rate in effect: the profile, or the constant `rate`.
    pub fn profile(&self) -> Result<RateProfile, SpecError> {
        match &self.rate_profile {
            Some(p) => Ok(p.clone()),
            None => RateProfile::constant(self.rate).map_err(|e| SpecError::Value(e.0)),
        }
    }

    /// Checks values and the URL; returns the first problem.
    pub fn validate(&self) -> Result<(), SpecError> {
        Target::parse(&self.url)?;
        if self.threads == 0 {
            return Err(SpecError::Value("threads must be at least 1".into()));
        }
        if self.connections == 0 {
            return Err(SpecError::Value("connections must be at least 1".into()));
        }
        if self.connections < self.threads {
            return Err(SpecError::Value(format!(
                "number of connections ({}) must be >= threads ({})",
                self.connections, self.threads
            )));
        }
        if self.duration.is_zero() {
            return Err(SpecError::Value("duration must be greater than 0".into()));
        }
        if let Some(profile) = &self.rate_profile {
            check_profile(profile, self.rate, self.duration)?;
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(SpecError::Value(format!(
                "rate must be a positive number of requests/s (got {})",
                self.rate
            )));
        }
        if self.timeout.is_zero() {
            return Err(SpecError::Value("timeout must be greater than 0".into()));
        }
        if self.warmup >= self.duration {
            return Err(SpecError::Value(format!(
                "warmup ({:?}) must be shorter than the duration ({:?})",
                self.warmup, self.duration
            )));
        }
        if let Some(t) = self
            .pacing_tolerance
            .filter(|t| *t > Duration::from_secs(1))
        {
            return Err(SpecError::Value(format!(
                "pacing tolerance ({t:?}) must be at most 1s"
            )));
        }
        if let Model::Open { max_connections } = self.model {
            if max_connections < self.connections {
                return Err(SpecError::Value(format!(
                    "max connections ({max_connections}) must be >= connections ({})",
                    self.connections
                )));
            }
        }
        if let Some(pin) = &self.pin {
            check_pin(pin)?;
        }
        for (name, value) in &self.headers {
            crate::header::check_header(name, value)
                .map_err(|e| SpecError::Value(e.to_string()))?;
        }
        self.check_traceparent()
    }

    /// `traceparent` is a share, and the requests do not carry their own header already.
    fn check_traceparent(&self) -> Result<(), SpecError> {
        if !(0.0..=1.0).contains(&self.traceparent) {
            return Err(SpecError::Value(format!(
                "traceparent share must be between 0 and 1 (got {})",
                self.traceparent
            )));
        }
        let own = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("traceparent"));
        if self.traceparent > 0.0 && own {
            return Err(SpecError::Value(
                "--traceparent adds a traceparent header, but the request already has one (-H); \
                 drop one of them"
                    .into(),
            ));
        }
        Ok(())
    }

    /// How many of the slowest traced requests a run keeps (see [`crate::traced::slowest_bound`]):
    /// sized from the expected number of traced requests after the warm-up.
    pub fn traced_bound(&self) -> usize {
        let recorded = self.duration.saturating_sub(self.warmup).as_secs_f64();
        crate::traced::slowest_bound(self.rate * recorded * self.traceparent)
    }

    /// Connections each thread opens (`floor(connections / threads)`, as wrk2).
    pub fn connections_per_thread(&self) -> usize {
        self.connections / self.threads.max(1)
    }

    /// Things wrk2 does silently that deserve a warning: dropped connections, connections that
    /// would mostly idle, a rate below the thread count.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let per_thread = self.connections_per_thread();
        if self.threads > 0 && !self.connections.is_multiple_of(self.threads) {
            out.push(format!(
                "{} connections are not divisible by {} threads: {} connections per thread, {} in total",
                self.connections,
                self.threads,
                per_thread,
                per_thread * self.threads
            ));
        }
        if self.rate < self.threads as f64 {
            out.push(format!(
                "rate {} req/s is below the thread count {}: each thread sends less than 1 request/s",
                self.rate, self.threads
            ));
        }
        if self.model == Model::Wrk2 && per_thread > 0 && self.threads > 0 {
            let per_conn = self.rate / self.threads as f64 / per_thread as f64;
            if per_conn < 1.0 {
                out.push(format!(
                    "each connection sends one request every {:.1}s ({:.3} req/s); most connections will be idle",
                    1.0 / per_conn,
                    per_conn
                ));
            }
        }
        out
    }
}

/// A rate profile must offer requests during the run, and `rate` must be its mean (a duration
/// changed after [`Spec::set_rate_profile`] leaves it stale).
fn check_profile(profile: &RateProfile, rate: f64, duration: Duration) -> Result<(), SpecError> {
    let mean = profile.mean_rate(duration);
    if mean == 0.0 {
        return Err(SpecError::Value(format!(
            "the rate profile offers no requests in the run's {duration:?}"
        )));
    }
    if (rate - mean).abs() > 1e-9 * mean {
        return Err(SpecError::Value(format!(
            "rate ({rate}) is not the rate profile's mean over the duration ({mean}): \
             call Spec::set_rate_profile after setting the duration"
        )));
    }
    Ok(())
}

/// Checks a `--pin` core list against the CPUs this process may run on: pinning to a core
/// outside them fails silently in the kernel, and the run would not be pinned at all.
fn check_pin(pin: &[usize]) -> Result<(), SpecError> {
    if pin.is_empty() {
        return Err(SpecError::Value("pin: empty core list".into()));
    }
    let Some(allowed) = crate::system::allowed_cpus() else {
        return Ok(());
    };
    let outside: Vec<usize> = pin
        .iter()
        .copied()
        .filter(|c| !allowed.contains(c))
        .collect();
    if outside.is_empty() {
        return Ok(());
    }
    Err(SpecError::Value(format!(
        "pin: core {} is not among the CPUs this process may run on ({})",
        crate::system::format_cpus(&outside),
        crate::system::format_cpus(&allowed)
    )))
}

/// Why a spec is not runnable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The URL cannot be used.
    #[error("invalid URL: {url}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Value(String),
}

/// The parts of the URL the client needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or address as written (IPv6 without brackets).
    pub host: String,
    /// The port if the URL names one, as text (wrk's `wrk.port`).
    pub port: Option<String>,
    /// The port to connect to (explicit, or 80/443).
    pub port_number: u16,
    /// Request target: path, query and fragment, `/` when empty (as wrk2 sends it).
    pub path: String,
    /// Value of the default Host header: host, or host:port when the URL has a port.
    pub host_header: String,
}

impl Target {
    /// Parses and checks an http(s) URL.
    pub fn parse(url: &str) -> Result<Target, SpecError> {
        let err = |reason: &str| SpecError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = url::Url::parse(url).map_err(|e| err(&e.to_string()))?;
        let scheme = parsed.scheme().to_string();
        if scheme != "http" && scheme != "https" {
            return Err(err("scheme must be http or https"));
        }
        let host = match parsed.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(err("missing host")),
        };
        if host.is_empty() {
            return Err(err("missing host"));
        }
        // `url` drops a port equal to the scheme's default; wrk keeps whatever was written.
        let port = explicit_port(url);
        let port_number = parsed
            .port_or_known_default()
            .ok_or_else(|| err("no port"))?;
        // wrk2 sends everything from the first '/' after the authority: path, query, fragment,
        // as written (the `url` crate would normalise it, so take it from the original text).
        let after_scheme = &url[url.find("://").map(|i| i + 3).unwrap_or(0)..];
        let path = match after_scheme.find(['/', '?', '#']) {
            Some(i) if after_scheme[i..].starts_with('/') => after_scheme[i..].to_string(),
            Some(i) => format!("/{}", &after_scheme[i..]),
            None => "/".to_string(),
        };
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let host_header = match &port {
            Some(p) => format!("{bracketed}:{p}"),
            None => bracketed,
        };
        Ok(Target {
            url: url.to_string(),
            scheme,
            host,
            port,
            port_number,
            path,
            host_header,
        })
    }

    /// True for https.
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
    }
}

/// The port as written in the URL's authority, if any.
fn explicit_port(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let authority = &authority[authority.rfind('@').map(|i| i + 1).unwrap_or(0)..];
    let host_end = if authority.starts_with('[') {
        authority.find(']')? + 1
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let port = authority[host_end..].strip_prefix(':')?;
    (!port.is_empty()).then(|| port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_query_and_fragment() {
        let t = Target::parse("http://h:8080/a/b?x=1#frag").unwrap();
        assert_eq!(t.path, "/a/b?x=1#frag");
        assert_eq!(t.host_header, "h:8080");
        assert_eq!(t.port.as_deref(), Some("8080"));
        let t = Target::parse("https://example.org").unwrap();
        assert_eq!((t.path.as_str(), t.port_number), ("/", 443));
        assert_eq!(t.host_header, "example.org");
        let t = Target::parse("http://[::1]:80/").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.host_header, "[::1]:80");
        assert!(Target::parse("ftp://h/").is_err());
        assert!(Target::parse("localhost:8080").is_err());
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn rate_profile_keeps_rate_its_mean() {
        let mut s = Spec::new("http://127.0.0.1:1/", 100.0);
        assert_eq!(s.distribution, Distribution::Fixed);
        assert_eq!(s.profile().unwrap(), RateProfile::constant(100.0).unwrap());
        s.duration = Duration::from_secs(20);
        s.set_rate_profile(RateProfile::parse("1000:3000:10s").unwrap());
        assert_eq!(s.rate, 2500.0);
        assert!(s.validate().is_ok());
        assert_eq!(
            s.profile().unwrap(),
            RateProfile::parse("1000:3000:10s").unwrap()
        );
        s.duration = Duration::from_secs(10);
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("not the rate profile's mean"), "{e}");
        s.set_rate_profile(RateProfile::parse("0,100@20s").unwrap());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("offers no requests in the run's 10s"), "{e}");
        // A constant profile is the plain rate.
        s.set_rate_profile(RateProfile::constant(7.0).unwrap());
        assert_eq!((s.rate, s.rate_profile.is_none()), (7.0, true));
    }

    #[test]
    fn validation_and_warnings() {
        let mut s = Spec::new("http://127.0.0.1:1/", 100.0);
        assert!(s.validate().is_ok());
        s.rate = 0.0;
        assert!(s.validate().is_err());
        s.rate = 1.0;
        s.threads = 3;
        s.connections = 2;
        assert!(s.validate().is_err());
        s.connections = 10;
        s.pin = Some(vec![100_000]);
        let e = s.validate().unwrap_err().to_string();
        let allowed = crate::system::format_cpus(&crate::system::allowed_cpus().unwrap());
        assert!(e.contains("core 100000 is not among"), "{e}");
        assert!(e.ends_with(&format!("({allowed})")), "{e}");
        s.pin = Some(crate::system::allowed_cpus().unwrap());
        assert!(s.validate().is_ok());
        s.pin = None;
        let w = s.warnings();
        assert!(w.iter().any(|w| w.contains("not divisible")), "{w:?}");
        assert!(
            w.iter().any(|w| w.contains("below the thread count")),
            "{w:?}"
        );
    }
}
