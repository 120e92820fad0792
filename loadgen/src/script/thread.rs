//! wrk's `thread` object: the handle `setup(thread)` and `done()` see in the main state, and
//! `wrk.thread` in a thread's own state.
//!
//! Lua states cannot move between OS threads, so values cross as [`Transfer`] copies: the
//! `thread:set` calls made in `setup` travel to the thread in its seed, and when a thread's source
//! is dropped at the end of the run its globals are copied back so `thread:get` in `done` sees them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mlua::{Lua, MetaMethod, UserData, UserDataMethods, Value};

use super::runtime::LuaAddr;

/// A Lua value that can be copied from one state to another: nil, boolean, number, string, or a
/// table of those (wrk's rule). Anything else raises "cannot transfer '<type>' to thread".
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Transfer {
    Nil,
    Bool(bool),
    Number(f64),
    String(Vec<u8>),
    Table(Vec<(Transfer, Transfer)>),
}

/// Tables nested deeper than this cannot be transferred.
const MAX_DEPTH: usize = 32;

/// Most table entries one transfer may copy (bounds the work on huge or heavily shared tables).
const MAX_ENTRIES: usize = 1_000_000;

impl Transfer {
    /// Copies `value` out of a state.
    pub fn from_lua(value: &Value) -> mlua::Result<Transfer> {
        let mut path = Vec::new();
        let mut budget = MAX_ENTRIES;
        Self::copy(value, &mut path, &mut budget)
    }

    /// `path` holds the tables being copied (to refuse cycles); `budget` the entries left.
    fn copy(
        value: &Value,
        path: &mut Vec<*const std::ffi::c_void>,
        budget: &mut usize,
    ) -> mlua::Result<Transfer> {
        Ok(match value {
            Value::Nil => Transfer::Nil,
            Value::Boolean(b) => Transfer::Bool(*b),
            Value::Integer(i) => Transfer::Number(*i as f64),
            Value::Number(n) => Transfer::Number(*n),
            Value::String(s) => Transfer::String(s.as_bytes().to_vec()),
            Value::Table(t) => {
                let ptr = t.to_pointer();
                if path.contains(&ptr) || path.len() >= MAX_DEPTH {
                    return Err(mlua::Error::runtime(
                        "cannot transfer 'table' to thread (cyclic or nested too deep)",
                    ));
                }
                path.push(ptr);
                let mut entries = Vec::new();
                for pair in t.pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    *budget = budget.checked_sub(1).ok_or_else(|| {
                        mlua::Error::runtime("cannot transfer 'table' to thread (too large)")
                    })?;
                    entries.push((Self::copy(&k, path, budget)?, Self::copy(&v, path, budget)?));
                }
                path.pop();
                Transfer::Table(entries)
            }
            other => {
                return Err(mlua::Error::runtime(format!(
                    "cannot transfer '{}' to thread",
                    super::error::type_name(other)
                )))
            }
        })
    }

    /// Recreates the value in `lua`.
    pub fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        Ok(match self {
            Transfer::Nil => Value::Nil,
            Transfer::Bool(b) => Value::Boolean(*b),
            Transfer::Number(n) => Value::Number(*n),
            Transfer::String(s) => Value::String(lua.create_string(s)?),
            Transfer::Table(entries) => {
                let t = lua.create_table_with_capacity(0, entries.len())?;
                for (k, v) in entries {
                    t.raw_set(k.to_lua(lua)?, v.to_lua(lua)?)?;
                }
                Value::Table(t)
            }
        })
    }
}

/// What the main state and a worker thread share about that thread.
#[derive(Debug)]
pub(crate) struct ThreadShared {
    /// The thread's index, from 0.
    pub index: usize,
    /// The address the thread connects to (`thread.addr`).
    pub addr: Mutex<SocketAddr>,
    /// `thread:set` values made in the main state; before the thread starts they travel in its
    /// seed, and `thread:get` reads them back until the thread's final globals are known.
    pub values: Mutex<HashMap<String, Transfer>>,
    /// The thread's globals when its source was dropped (end of the run), for `done`.
    pub finals: Mutex<Option<HashMap<String, Transfer>>>,
    /// Set by `thread:stop()` in either state; read by the source's `stop_requested`.
    pub stop: AtomicBool,
}

impl ThreadShared {
    pub fn new(index: usize, addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            index,
            addr: Mutex::new(addr),
            values: Mutex::new(HashMap::new()),
            finals: Mutex::new(None),
            stop: AtomicBool::new(false),
        })
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Records the thread's transferable globals (functions, userdata and the standard
    /// libraries, which hold functions, are left out).
    pub fn capture_finals(&self, lua: &Lua) {
        let mut finals = HashMap::new();
        for (k, v) in lua.globals().pairs::<Value, Value>().flatten() {
            if let Value::String(name) = k {
                if let Ok(value) = Transfer::from_lua(&v) {
                    finals.insert(name.to_string_lossy(), value);
                }
            }
        }
        *self.finals.lock().unwrap_or_else(PoisonError::into_inner) = Some(finals);
    }
}

/// Both thread objects wrap the same shared record; this gives access to it.
trait SharedThread {
    fn shared(&self) -> &ThreadShared;
}

impl SharedThread for MainThread {
    fn shared(&self) -> &ThreadShared {
        &self.0
    }
}

impl SharedThread for OwnThread {
    fn shared(&self) -> &ThreadShared {
        &self.0
    }
}

/// What the main-state and the thread-state objects have in common: `stop()`, reading
/// `thread.addr`, and `tostring(thread)`.
fn add_common_methods<T, M>(methods: &mut M)
where
    T: SharedThread + UserData + 'static,
    M: UserDataMethods<T>,
{
    methods.add_method("stop", |_, this, ()| {
        this.shared().stop.store(true, Ordering::Relaxed);
        Ok(())
    });
    methods.add_meta_method(MetaMethod::Index, |_, this, key: Value| {
        match key.to_string()?.as_str() {
            "addr" => Ok(Some(LuaAddr(
                *this
                    .shared()
                    .addr
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            ))),
            _ => Ok(None),
        }
    });
    methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
        Ok(format!("thread {}", this.shared().index))
    });
}

/// The `thread` object of the main state (`setup(thread)`, kept by scripts for `done`).
pub(crate) struct MainThread(pub Arc<ThreadShared>);

impl UserData for MainThread {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |lua, this, name: String| {
            let finals = this.0.finals.lock().unwrap_or_else(PoisonError::into_inner);
            let value = match finals.as_ref() {
                Some(f) => f.get(&name).cloned(),
                None => this
                    .0
                    .values
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&name)
                    .cloned(),
            };
            value.unwrap_or(Transfer::Nil).to_lua(lua)
        });
        methods.add_method("set", |_, this, (name, value): (String, Value)| {
            let value = Transfer::from_lua(&value)?;
            this.0
                .values
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name, value);
            Ok(())
        });
        add_common_methods(methods);
        methods.add_meta_method(
            MetaMethod::NewIndex,
            |_, this, (key, value): (Value, Value)| {
                if key.to_string()? == "addr" {
                    if let Value::UserData(ud) = &value {
                        if let Ok(addr) = ud.borrow::<LuaAddr>() {
                            *this.0.addr.lock().unwrap_or_else(PoisonError::into_inner) = addr.0;
                            return Ok(());
                        }
                    }
                }
                Err(mlua::Error::runtime(format!(
                    "cannot set '{}' on thread",
                    super::error::type_name(&value)
                )))
            },
        );
    }
}

/// `wrk.thread` in a thread's own state: `get`/`set` read and write that state's globals.
pub(crate) struct OwnThread(pub Arc<ThreadShared>);

impl UserData for OwnThread {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |lua, _, name: String| {
            lua.globals().get::<Value>(name)
        });
        methods.add_method("set", |lua, _, (name, value): (String, Value)| {
            Transfer::from_lua(&value)?;
            lua.globals().set(name, value)
        });
        add_common_methods(methods);
        methods.add_meta_method(
            MetaMethod::NewIndex,
            |_, _, (key, value): (Value, Value)| -> mlua::Result<()> {
                if key.to_string()? == "addr" {
                    return Err(mlua::Error::runtime(
                        "cannot change thread.addr while the thread runs in aefm-load (set it in setup(thread))",
                    ));
                }
                Err(mlua::Error::runtime(format!(
                    "cannot set '{}' on thread",
                    super::error::type_name(&value)
                )))
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_round_trip_and_refusal() {
        let a = Lua::new();
        let b = Lua::new();
        let v: Value = a
            .load("return {1, 'two', x = {y = true}, [3.5] = false}")
            .eval()
            .unwrap();
        let t = Transfer::from_lua(&v).unwrap();
        b.globals().set("t", t.to_lua(&b).unwrap()).unwrap();
        let s: String = b
            .load("return t[1] .. t[2] .. tostring(t.x.y) .. tostring(t[3.5])")
            .eval()
            .unwrap();
        assert_eq!(s, "1twotruefalse");
        let f: Value = a.load("return print").eval().unwrap();
        let err = Transfer::from_lua(&f).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot transfer 'function' to thread"),
            "{err}"
        );
        let cyclic: Value = a.load("local t = {} t.t = t return t").eval().unwrap();
        assert!(Transfer::from_lua(&cyclic).is_err());
        // Shared (not cyclic) subtables are fine; a doubling chain is cut by the entry budget.
        let shared: Value = a
            .load("local s = {1} return {a = s, b = s}")
            .eval()
            .unwrap();
        assert!(Transfer::from_lua(&shared).is_ok());
        let dag: Value = a
            .load("local t = {1} for i = 1, 30 do t = {t, t} end return t")
            .eval()
            .unwrap();
        assert!(Transfer::from_lua(&dag).is_err());
    }

    #[test]
    fn main_thread_object() {
        let lua = Lua::new();
        let shared = ThreadShared::new(2, "127.0.0.1:80".parse().unwrap());
        lua.globals()
            .set("thread", MainThread(shared.clone()))
            .unwrap();
        lua.globals()
            .set("other", LuaAddr("127.0.0.2:81".parse().unwrap()))
            .unwrap();
        lua.load("assert(tostring(thread.addr) == '127.0.0.1:80'); thread.addr = other; thread:set('id', 7); assert(thread:get('id') == 7); thread:stop()")
            .exec()
            .unwrap();
        assert_eq!(
            *shared.addr.lock().unwrap(),
            "127.0.0.2:81".parse().unwrap()
        );
        assert!(shared.stop_requested());
        let err = lua.load("thread.foo = 1").exec().unwrap_err();
        assert!(
            err.to_string().contains("cannot set 'number' on thread"),
            "{err}"
        );
        let err = lua.load("thread:set('f', print)").exec().unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot transfer 'function' to thread"),
            "{err}"
        );
    }
}
