//! Creating a Lua state that looks like wrk's: standard libraries, the `wrk` table, the bundled
//! `socket` module, then the user's script.
//!
//! The same function builds the main state and every thread's state, so the script sees the same
//! world in each (as in wrk, its top-level code runs once per state).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mlua::{Lua, LuaOptions, MetaMethod, StdLib, Table, UserData, UserDataMethods, Value};

use super::error::lua_error;
use super::ScriptTarget;
use crate::source::SourceError;

/// The plain-Lua part of the API (`wrk.format`, `wrk.init`, the socket loader).
const PRELUDE: &str = include_str!("prelude.lua");

/// How long `wrk.connect` waits for a test connection (wrk's is blocking, without a limit).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A script's source, read once and shared by every state that runs it.
#[derive(Clone, Debug)]
pub(crate) struct ScriptSource {
    /// The path as the user gave it; used as the chunk name, so errors read `path:line: ...`.
    pub path: Arc<str>,
    /// The file's bytes.
    pub code: Arc<[u8]>,
}

impl ScriptSource {
    /// Reads the script; a missing or unreadable file is an error naming it.
    pub fn read(path: &Path) -> Result<Self, SourceError> {
        let code = std::fs::read(path)
            .map_err(|e| SourceError::new(format!("cannot open script {}: {e}", path.display())))?;
        Ok(Self {
            path: Arc::from(path.display().to_string()),
            code: Arc::from(code),
        })
    }
}

/// An address as seen by scripts (`wrk.lookup`, `thread.addr`); `tostring` gives `ip:port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LuaAddr(pub SocketAddr);

impl UserData for LuaAddr {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.0.to_string()));
        methods.add_meta_method(MetaMethod::Eq, |_, this, other: Value| {
            Ok(match other {
                Value::UserData(ud) => ud.borrow::<LuaAddr>().is_ok_and(|o| o.0 == this.0),
                _ => false,
            })
        });
    }
}

/// Creates a state with all of LuaJIT's standard libraries, the `wrk` table for `target`, the
/// prelude and the bundled `socket` module, then runs the script in it.
pub(crate) fn new_state(script: &ScriptSource, target: &ScriptTarget) -> Result<Lua, SourceError> {
    // SAFETY: all standard libraries (ffi, debug, C modules through LUA_CPATH) as wrk's
    // luaL_openlibs gives them. A wrk script is trusted code, like a shell script; loading C
    // modules such as luasocket is part of the API the issue asks for.
    let lua = unsafe { Lua::unsafe_new_with(StdLib::ALL, LuaOptions::default()) };
    install_api(&lua, target)
        .map_err(|e| lua_error(&script.path, "setting up the Lua state", &e))?;
    lua.load(&script.code[..])
        .set_name(format!("@{}", script.path))
        .exec()
        .map_err(|e| lua_error(&script.path, "loading the script", &e))?;
    Ok(lua)
}

/// Fills the globals the script expects before it runs.
fn install_api(lua: &Lua, target: &ScriptTarget) -> mlua::Result<()> {
    let wrk = lua.create_table()?;
    wrk.set("scheme", target.scheme.as_str())?;
    wrk.set("host", target.host.as_str())?;
    wrk.set("port", target.port.as_deref())?;
    wrk.set("method", "GET")?;
    wrk.set("path", target.path.as_str())?;
    let headers = lua.create_table()?;
    for (name, value) in &target.headers {
        headers.set(name.as_str(), value.as_str())?;
    }
    wrk.set("headers", headers)?;
    wrk.set("lookup", lua.create_function(lookup)?)?;
    wrk.set(
        "connect",
        lua.create_function(|_, addr: mlua::UserDataRef<LuaAddr>| {
            Ok(TcpStream::connect_timeout(&addr.0, CONNECT_TIMEOUT).is_ok())
        })?,
    )?;
    wrk.set("time_us", lua.create_function(|_, ()| Ok(now_us()))?)?;
    lua.globals().set("wrk", wrk)?;

    lua.load(PRELUDE)
        .set_name("=aefm-load prelude")
        .call::<()>(socket_module(lua)?)?;
    Ok(())
}

/// `wrk.lookup(host, service)`: the addresses `host:service` resolves to. wrk exits the whole
/// process when resolution fails; here it raises a Lua error instead, which stops the run with a
/// message unless the script catches it with `pcall`.
fn lookup(lua: &Lua, (host, service): (String, Value)) -> mlua::Result<Table> {
    let service = match service {
        Value::Nil => "80".to_string(),
        other => lua
            .coerce_string(other)?
            .map(|s| s.to_string_lossy())
            .unwrap_or_default(),
    };
    let port: u16 = match service.parse() {
        Ok(p) => p,
        Err(_) => match service.as_str() {
            "http" => 80,
            "https" => 443,
            _ => {
                return Err(mlua::Error::runtime(format!(
                    "unable to resolve {host}:{service}: unknown service"
                )))
            }
        },
    };
    let addrs = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| mlua::Error::runtime(format!("unable to resolve {host}:{service}: {e}")))?;
    lua.create_sequence_from(addrs.map(LuaAddr))
}

/// Wall-clock microseconds since the Unix epoch, as wrk2's `wrk.time_us` returns them.
fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as f64)
        .unwrap_or(0.0)
}

/// The bundled `socket` module: the clock and sleep of luasocket, which is all the benchmark
/// scripts in the wild use (`socket.gettime()` to seed the RNG).
fn socket_module(lua: &Lua) -> mlua::Result<Table> {
    let socket = lua.create_table()?;
    socket.set(
        "gettime",
        lua.create_function(|_, ()| {
            Ok(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0))
        })?,
    )?;
    socket.set(
        "sleep",
        lua.create_function(|_, seconds: f64| {
            if seconds.is_finite() && seconds > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(seconds.min(86_400.0)));
            }
            Ok(())
        })?,
    )?;
    socket.set("_VERSION", "aefm-load bundled socket (gettime, sleep)")?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> ScriptTarget {
        ScriptTarget {
            url: "http://127.0.0.1:8080/a?b=1".into(),
            scheme: "http".into(),
            host: "127.0.0.1".into(),
            port: Some("8080".into()),
            path: "/a?b=1".into(),
            headers: vec![("X-Test".into(), "1".into())],
        }
    }

    fn state(code: &str) -> Lua {
        let script = ScriptSource {
            path: Arc::from("inline.lua"),
            code: Arc::from(code.as_bytes()),
        };
        new_state(&script, &target()).expect("state")
    }

    #[test]
    fn wrk_table_holds_the_target() {
        let lua = state("");
        let v: String = lua
            .load("return wrk.scheme..'|'..wrk.host..'|'..wrk.port..'|'..wrk.method..'|'..wrk.path..'|'..wrk.headers['X-Test']..'|'..tostring(wrk.body)")
            .eval()
            .unwrap();
        assert_eq!(v, "http|127.0.0.1|8080|GET|/a?b=1|1|nil");
    }

    #[test]
    fn lua_51_semantics() {
        let lua = state("math.randomseed(1234.5678); x = tostring(38.0); y = '10' + 5");
        let x: String = lua.globals().get("x").unwrap();
        let y: f64 = lua.globals().get("y").unwrap();
        assert_eq!(x, "38");
        assert_eq!(y, 15.0);
    }

    #[test]
    fn format_defaults_host_and_content_length() {
        let lua = state("wrk.init({})");
        let req: String = lua
            .load("local h = {} local r = wrk.format('POST', 'http://x/y', h, 'abc') return r .. '#' .. h.Host")
            .eval()
            .unwrap();
        assert!(req.starts_with("POST http://x/y HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nContent-Length: 3\r\n"), "{req}");
        assert!(req.contains("\r\nHost: 127.0.0.1:8080\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\nabc#127.0.0.1:8080"), "{req}");
        let plain: String = lua.load("return wrk.format()").eval().unwrap();
        assert!(plain.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{plain}");
        assert!(!plain.contains("Content-Length"), "{plain}");
        assert!(plain.ends_with("\r\n\r\n"), "{plain}");
    }

    #[test]
    fn format_removes_content_length_without_body() {
        let lua = state("wrk.init({})");
        let req: String = lua
            .load("return wrk.format('GET', '/', {['Content-Length'] = 9})")
            .eval()
            .unwrap();
        assert!(!req.contains("Content-Length"), "{req}");
    }

    #[test]
    fn ipv6_host_gets_brackets() {
        let mut t = target();
        t.host = "::1".into();
        let script = ScriptSource {
            path: Arc::from("inline.lua"),
            code: Arc::from(&b"wrk.init({})"[..]),
        };
        let lua = new_state(&script, &t).unwrap();
        let host: String = lua.load("return wrk.headers.Host").eval().unwrap();
        assert_eq!(host, "[::1]:8080");
    }

    #[test]
    fn socket_module_both_forms() {
        let lua = state("require 'socket'; t = socket.gettime(); local s = require('socket'); same = (s == socket)");
        let t: f64 = lua.globals().get("t").unwrap();
        assert!(t > 1.0e9);
        assert!(lua.globals().get::<bool>("same").unwrap());
    }

    #[test]
    fn lookup_and_time() {
        let lua = state("");
        let s: String = lua
            .load("local a = wrk.lookup('127.0.0.1', '8080') return tostring(a[1])")
            .eval()
            .unwrap();
        assert_eq!(s, "127.0.0.1:8080");
        let err = lua
            .load("return wrk.lookup('no-such-host.invalid', 'http')")
            .exec()
            .unwrap_err();
        assert!(err.to_string().contains("unable to resolve"), "{err}");
        let t: f64 = lua.load("return wrk.time_us()").eval().unwrap();
        assert!(t > 1.0e15);
    }

    #[test]
    fn connect_reports_reachability() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lua = state("");
        let ok: bool = lua
            .load(format!(
                "return wrk.connect(wrk.lookup('127.0.0.1', {port})[1])"
            ))
            .eval()
            .unwrap();
        assert!(ok);
        drop(listener);
        let ok: bool = lua
            .load(format!(
                "return wrk.connect(wrk.lookup('127.0.0.1', {port})[1])"
            ))
            .eval()
            .unwrap();
        assert!(!ok);
    }
}
