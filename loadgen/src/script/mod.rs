//! wrk Lua scripts: the whole wrk2 scripting API on LuaJIT.
//!
//! A script runs in one **main state** ([`MainScript`], on the thread that started the run) and
//! in one **state per worker thread** (built on that thread from a [`ThreadSeed`]), exactly as in
//! wrk: its top-level code runs `threads + 1` times. No Lua state or lock is shared between
//! threads; values cross only as copies (`thread:set` / `thread:get`).
//!
//! Phases, in order:
//! 1. [`MainScript::load`] runs the script in the main state.
//! 2. [`MainScript::setup_thread`] calls `setup(thread)` for each thread; the script may read or
//!    change `thread.addr` and `thread:set` globals for that thread.
//! 3. [`ThreadSeed::build`], on the worker thread: a new state runs the script, receives the
//!    transferred globals and `wrk.thread`, and `init(args)` runs (`args[0]` is the URL, `args[1..]`
//!    the words after `--`). The first `request()` is called and checked to be valid HTTP, so a bad
//!    script fails before any load; that first request is then sent (wrk2 discards it).
//! 4. The returned [`RequestSource`] calls `request()` for every batch when the script defines
//!    one (otherwise the `wrk.request()` string is reused), counts the pipelined requests in each
//!    batch, and calls `response(status, headers, body)` only when the script defines it.
//! 5. [`MainScript::done`] calls `done(summary, latency, requests)` after the report.
//!
//! Where aefm-load deliberately differs from wrk2 (all louder, none quieter):
//! - a missing file, a syntax error, an error at load or in `init`, and a `request()` that does
//!   not return valid HTTP are errors naming the file and line (wrk2 prints a line and sends
//!   `GET /`); an error in `request()` or `response()` during the run stops the run;
//! - `wrk.lookup` raises a Lua error when resolution fails (wrk exits the process);
//! - `delay()` is **not called**: under the constant-rate schedule (`-R`) the schedule alone
//!   decides when requests go out, as in wrk2. A script that defines `delay` gets a one-time
//!   warning ([`MainScript::warnings`]) so nobody believes it is honoured;
//! - `thread:get` in `done` reads the thread's globals as they were when it finished; during
//!   `setup` it sees the values given with `thread:set` (the thread's state does not exist yet);
//! - `thread.addr` can be changed in `setup`, not while the thread runs (that raises an error).
//!
//! Modules: `require "socket"` works without luasocket through a bundled module (`gettime`,
//! `sleep`). It is a fallback loader placed after the `LUA_PATH`/`LUA_CPATH` loaders, so an
//! installed luasocket on those paths wins. `require "socket"` also sets the global `socket`, which
//! scripts written for old luasocket builds rely on.
//!
//! ```no_run
//! use aefm_loadgen::script::{MainScript, ScriptTarget};
//! use aefm_loadgen::source::ThreadContext;
//!
//! let target = ScriptTarget::from_url("http://127.0.0.1:8080/", vec![]).unwrap();
//! let mut main = MainScript::load(std::path::Path::new("mix.lua"), &["--users".into(), "100".into()], &target)?;
//! let mut addr = "127.0.0.1:8080".parse().unwrap();
//! let seed = main.setup_thread(0, &mut addr)?;
//! let handle = std::thread::spawn(move || -> Result<usize, aefm_loadgen::source::SourceError> {
//!     let ctx = ThreadContext { index: 0, threads: 1, addr };
//!     let mut source = seed.build(&ctx)?;
//!     Ok(source.next_batch()?.depth)
//! });
//! # Ok::<(), aefm_loadgen::source::SourceError>(())
//! ```

mod error;
mod request;
mod runtime;
mod stats;
mod thread;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use mlua::{Function, Lua, Value};

use crate::source::{Batch, RequestSource, SourceError, ThreadContext};
use error::{lua_error, script_error};
use request::{count_requests, ScriptedSource};
use runtime::{new_state, ScriptSource};
use thread::{MainThread, OwnThread, ThreadShared};

pub use stats::{DoneErrors, DoneInput};

/// The target as the script sees it in the `wrk` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptTarget {
    /// The URL as given on the command line (`args[0]` in `init`).
    pub url: String,
    /// `wrk.scheme`: `http` or `https`.
    pub scheme: String,
    /// `wrk.host`: the host without brackets.
    pub host: String,
    /// `wrk.port`: the port as written in the URL, or `None` when the URL has none.
    pub port: Option<String>,
    /// `wrk.path`: path, query and fragment; `/` when the URL has no path.
    pub path: String,
    /// `wrk.headers`: the `-H` headers, in order.
    pub headers: Vec<(String, String)>,
}

impl ScriptTarget {
    /// The script's view of a parsed target, with the `-H` headers.
    pub fn of(t: &crate::spec::Target, headers: Vec<(String, String)>) -> Self {
        Self {
            url: t.url.clone(),
            scheme: t.scheme.clone(),
            host: t.host.clone(),
            port: t.port.clone(),
            path: t.path.clone(),
            headers,
        }
    }

    /// Splits `url` the way wrk does (the port only when written, the path with query and
    /// fragment). Errors name the URL.
    pub fn from_url(url: &str, headers: Vec<(String, String)>) -> Result<Self, SourceError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| SourceError::new(format!("invalid URL {url}: {e}")))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| SourceError::new(format!("invalid URL {url}: no host")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        // The port as written: url::Url drops a port equal to the scheme's default, wrk keeps it.
        let authority = url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
            .unwrap_or("");
        let after_host = authority.rsplit_once(']').map_or(authority, |(_, p)| p);
        let port = after_host
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .filter(|p| !p.is_empty());
        let start = url
            .find("://")
            .map(|i| i + 3 + authority.len())
            .unwrap_or(url.len());
        let rest = &url[start..];
        let path = if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        };
        Ok(Self {
            url: url.to_string(),
            scheme: parsed.scheme().to_string(),
            host,
            port,
            path,
            headers,
        })
    }
}

/// The script's main state: `setup` and `done` run here. Lives on the thread that started the run.
pub struct MainScript {
    lua: Lua,
    script: ScriptSource,
    args: Vec<String>,
    target: ScriptTarget,
    warnings: Vec<String>,
}

impl std::fmt::Debug for MainScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MainScript")
            .field("script", &self.script.path)
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl MainScript {
    /// Loads the script in the main state. Missing file, syntax error, runtime error at load:
    /// an error naming `file:line`.
    pub fn load(
        path: &Path,
        args: &[String],
        target: &ScriptTarget,
    ) -> Result<MainScript, SourceError> {
        let script = ScriptSource::read(path)?;
        let lua = new_state(&script, target)?;
        let mut warnings = Vec::new();
        if let Ok(Value::Function(f)) = lua.globals().get::<Value>("delay") {
            let line = f.info().line_defined.unwrap_or(0);
            let w = format!(
                "{}:{line}: delay() is ignored: under the constant-rate schedule (-R) the schedule decides when requests are sent, as in wrk2",
                script.path
            );
            tracing::warn!("{w}");
            warnings.push(w);
        }
        Ok(MainScript {
            lua,
            script,
            args: args.to_vec(),
            target: target.clone(),
            warnings,
        })
    }

    /// Warnings found at load (for example a `delay()` that will not be called), one line each,
    /// for the caller to print.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// wrk's `setup(thread)` for thread `index`; the script may read or change `thread.addr`
    /// (so `addr` is in/out) and `thread:set` values that must reach that thread's state.
    /// Returns the `Send` seed the worker thread builds its source from.
    pub fn setup_thread(
        &mut self,
        index: usize,
        addr: &mut SocketAddr,
    ) -> Result<ThreadSeed, SourceError> {
        let shared = ThreadShared::new(index, *addr);
        let globals = self.lua.globals();
        if let Ok(Value::Function(setup)) = globals.get::<Value>("setup") {
            setup
                .call::<()>(MainThread(shared.clone()))
                .map_err(|e| lua_error(&self.script.path, "in setup(thread)", &e))?;
        }
        *addr = *shared.addr.lock().unwrap_or_else(PoisonError::into_inner);
        let capture_on_drop = matches!(globals.get::<Value>("done"), Ok(Value::Function(_)));
        Ok(ThreadSeed {
            script: self.script.clone(),
            args: self.args.clone(),
            target: self.target.clone(),
            shared,
            capture_on_drop,
        })
    }

    /// wrk's `done(summary, latency, requests)`, called after the text report is printed.
    /// Build `input` from a run's report with [`DoneInput::from_report`]. Does nothing when the
    /// script has no `done`. The worker threads' sources must have been dropped first, so
    /// `thread:get` sees their final globals.
    pub fn done(&mut self, input: &DoneInput) -> Result<(), SourceError> {
        let Ok(Value::Function(done)) = self.lua.globals().get::<Value>("done") else {
            return Ok(());
        };
        let call = || -> mlua::Result<()> {
            let summary = stats::summary_table(&self.lua, input)?;
            let latency = stats::Stats(input.latency.clone());
            let requests = stats::Stats(input.requests_per_sec.clone());
            done.call::<()>((summary, latency, requests))
        };
        call().map_err(|e| lua_error(&self.script.path, "in done()", &e))
    }
}

/// Everything a worker thread needs to build its own Lua state. `Send`.
#[derive(Debug)]
pub struct ThreadSeed {
    script: ScriptSource,
    args: Vec<String>,
    target: ScriptTarget,
    shared: Arc<ThreadShared>,
    capture_on_drop: bool,
}

impl ThreadSeed {
    /// On the worker thread: a new Lua state runs the script, gets the `thread:set` globals and
    /// `wrk.thread`, and `init(args)` runs; then the first request is made and checked to parse as
    /// HTTP. Any failure is an error naming `file:line`.
    pub fn build(self, ctx: &ThreadContext) -> Result<Box<dyn RequestSource>, SourceError> {
        let path = self.script.path.clone();
        *self
            .shared
            .addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = ctx.addr;
        let lua = new_state(&self.script, &self.target)?;
        let prepare = || -> mlua::Result<()> {
            let globals = lua.globals();
            let values = self
                .shared
                .values
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for (name, value) in &values {
                globals.set(name.as_str(), value.to_lua(&lua)?)?;
            }
            let wrk: mlua::Table = globals.get("wrk")?;
            wrk.set("thread", OwnThread(self.shared.clone()))?;
            Ok(())
        };
        prepare().map_err(|e| lua_error(&path, "preparing the thread state", &e))?;

        let init = || -> mlua::Result<()> {
            let args = lua.create_table()?;
            args.raw_set(0, self.target.url.as_str())?;
            for (i, a) in self.args.iter().enumerate() {
                args.raw_set(i + 1, a.as_str())?;
            }
            let wrk: mlua::Table = lua.globals().get("wrk")?;
            let wrk_init: Function = wrk.get("init")?;
            wrk_init.call::<()>(args)
        };
        init().map_err(|e| lua_error(&path, "in init(args)", &e))?;

        let globals = lua.globals();
        let request = match globals.get::<Value>("request") {
            Ok(Value::Function(f)) => Some(f),
            _ => None,
        };
        let response = match globals.get::<Value>("response") {
            Ok(Value::Function(f)) => Some(f),
            _ => None,
        };
        let request_line = request.as_ref().and_then(|f| f.info().line_defined);
        let mut source = ScriptedSource {
            lua,
            path: path.clone(),
            request,
            request_line,
            fixed: None,
            first: None,
            response,
            shared: self.shared,
            capture_on_drop: self.capture_on_drop,
        };
        match source.request.clone() {
            Some(request) => source.first = Some(source.call_request(&request)?),
            None => source.fixed = Some(fixed_request(&source.lua, &path)?),
        }
        Ok(Box::new(source))
    }
}

/// The request `wrk.request()` returns (computed once in `wrk.init`), checked.
fn fixed_request(lua: &Lua, path: &str) -> Result<Batch, SourceError> {
    let get = || -> mlua::Result<Value> {
        let wrk: mlua::Table = lua.globals().get("wrk")?;
        let request: Function = wrk.get("request")?;
        request.call(())
    };
    let value = get().map_err(|e| lua_error(path, "in wrk.request()", &e))?;
    let Value::String(s) = value else {
        return Err(script_error(
            path,
            None,
            &format!(
                "wrk.request() returned a {}, expected a string",
                error::type_name(&value)
            ),
        ));
    };
    let bytes = Bytes::copy_from_slice(&s.as_bytes());
    let depth = count_requests(&bytes).map_err(|m| {
        script_error(
            path,
            None,
            &format!("the request built from the wrk table: {m}"),
        )
    })?;
    Ok(Batch { bytes, depth })
}

#[cfg(test)]
mod tests;
