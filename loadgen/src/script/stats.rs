//! The objects `done(summary, latency, requests)` receives.
//!
//! `latency` and `requests` are wrk's "stats" objects: `min`, `max`, `mean`, `stdev`,
//! `percentile(p)`, `#stats` (sample count) and `stats[i]` (the value at percentile
//! `100 * i / #stats`, which stands in for wrk's raw samples).

use hdrhistogram::Histogram;
use mlua::{Lua, MetaMethod, Table, UserData, UserDataMethods, Value};

/// Socket error counters, as in wrk's `summary.errors`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoneErrors {
    /// Failed connects and TLS handshakes.
    pub connect: u64,
    /// Read errors and answers that were not HTTP or were cut short.
    pub read: u64,
    /// Write errors.
    pub write: u64,
    /// Responses with a status above 399.
    pub status: u64,
    /// Requests that timed out.
    pub timeout: u64,
}

/// What `done()` is told about the run: the figures of wrk's `summary` plus the two histograms.
#[derive(Clone, Debug)]
pub struct DoneInput {
    /// Run time in microseconds.
    pub duration_us: u64,
    /// Completed responses over the whole run.
    pub requests: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Socket error counters.
    pub errors: DoneErrors,
    /// Corrected latency histogram, in microseconds.
    pub latency: Histogram<u64>,
    /// The per-thread Req/Sec samples.
    pub requests_per_sec: Histogram<u64>,
}

impl DoneInput {
    /// The figures `done()` gets from a run's report: wrk's summary, the corrected latency
    /// histogram and the per-thread Req/Sec samples.
    pub fn from_report(report: &crate::Report) -> DoneInput {
        let s = &report.summary;
        DoneInput {
            duration_us: s.duration_us,
            requests: s.requests,
            bytes: s.bytes,
            // wrk has no TLS or protocol kinds: it counts them as connect and read errors.
            errors: DoneErrors {
                connect: s.errors.connect + s.errors.tls,
                read: s.errors.read + s.errors.protocol,
                write: s.errors.write,
                status: s.errors.status,
                timeout: s.errors.timeout,
            },
            latency: report.corrected.histogram.clone(),
            requests_per_sec: report.requests_per_thread.histogram.clone(),
        }
    }
}

/// A stats object over one histogram.
pub(crate) struct Stats(pub Histogram<u64>);

impl Stats {
    fn percentile(&self, p: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        self.0.value_at_percentile(p.clamp(0.0, 100.0))
    }
}

impl UserData for Stats {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("percentile", |_, this, p: f64| Ok(this.percentile(p)));
        methods.add_meta_method(MetaMethod::Len, |_, this, ()| Ok(this.0.len()));
        methods.add_meta_method(MetaMethod::Index, |_, this, key: Value| {
            let h = &this.0;
            let empty = h.is_empty();
            Ok(match key {
                Value::Integer(i) => Value::Number(index_value(this, i as f64)),
                Value::Number(i) => Value::Number(index_value(this, i)),
                Value::String(s) => match s.as_bytes().as_ref() {
                    b"min" => Value::Number(if empty { 0.0 } else { h.min() as f64 }),
                    b"max" => Value::Number(if empty { 0.0 } else { h.max() as f64 }),
                    b"mean" => Value::Number(if empty { 0.0 } else { h.mean() }),
                    b"stdev" => Value::Number(if empty { 0.0 } else { h.stdev() }),
                    _ => Value::Nil,
                },
                _ => Value::Nil,
            })
        });
    }
}

/// `stats[i]`: the value at percentile `100 * i / #stats`.
fn index_value(stats: &Stats, i: f64) -> f64 {
    let n = stats.0.len();
    if n == 0 || i < 1.0 || i > n as f64 {
        return 0.0;
    }
    stats.percentile(100.0 * i / n as f64) as f64
}

/// Builds wrk's `summary` table.
pub(crate) fn summary_table(lua: &Lua, input: &DoneInput) -> mlua::Result<Table> {
    let summary = lua.create_table()?;
    summary.set("duration", input.duration_us)?;
    summary.set("requests", input.requests)?;
    summary.set("bytes", input.bytes)?;
    let errors = lua.create_table()?;
    errors.set("connect", input.errors.connect)?;
    errors.set("read", input.errors.read)?;
    errors.set("write", input.errors.write)?;
    errors.set("status", input.errors.status)?;
    errors.set("timeout", input.errors.timeout)?;
    summary.set("errors", errors)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_object_interface() {
        let lua = Lua::new();
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=100u64 {
            h.record(v * 10).unwrap();
        }
        lua.globals().set("s", Stats(h)).unwrap();
        let out: String = lua
            .load("return table.concat({s.min, s.max, s.mean, math.floor(s.stdev), s:percentile(50), #s, s[100], tostring(s.nope)}, ' ')")
            .eval()
            .unwrap();
        assert_eq!(out, "10 1000 505 288 500 100 1000 nil");
        lua.globals()
            .set("e", Stats(Histogram::<u64>::new(3).unwrap()))
            .unwrap();
        let out: String = lua
            .load("return table.concat({e.min, e.max, e.mean, e:percentile(99), #e, e[1]}, ' ')")
            .eval()
            .unwrap();
        assert_eq!(out, "0 0 0 0 0 0");
    }
}
