//! Turning Lua errors into one-line [`SourceError`]s that name the script file and line.

use crate::source::SourceError;

/// The innermost message of an mlua error, without the stack traceback mlua appends.
fn innermost(err: &mlua::Error) -> String {
    match err {
        mlua::Error::CallbackError { cause, .. } => innermost(cause),
        mlua::Error::WithContext { cause, .. } => innermost(cause),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(message) => message.clone(),
        mlua::Error::MemoryError(message) => format!("out of memory: {message}"),
        other => other.to_string(),
    }
}

/// A one-line error for a failure of `script` while doing `context` (e.g. "in request()").
///
/// Lua's own messages already read `path:line: message`; when one does not mention the script
/// (an `error()` with a table or level 0, an error inside a C function), the path is prefixed so the
/// user always learns which file failed.
pub(crate) fn lua_error(script: &str, context: &str, err: &mlua::Error) -> SourceError {
    let message = innermost(err);
    // The message proper, up to the traceback, on one line (a module load error puts the
    // dlopen reason on a second line).
    let lines: Vec<&str> = message
        .lines()
        .take_while(|l| !l.starts_with("stack traceback:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines.join(" ");
    let first = if joined.is_empty() {
        "error with no message"
    } else {
        joined.as_str()
    };
    let file_name = std::path::Path::new(script)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| script.to_string());
    if first.contains(&file_name) {
        SourceError::new(format!("{first} ({context})"))
    } else {
        SourceError::new(format!("{script}: {first} ({context})"))
    }
}

/// An error about the script that is not a Lua error (a bad return value, an invalid request),
/// located at `line` of the script when known.
pub(crate) fn script_error(script: &str, line: Option<usize>, message: &str) -> SourceError {
    match line {
        Some(line) => SourceError::new(format!("{script}:{line}: {message}")),
        None => SourceError::new(format!("{script}: {message}")),
    }
}

/// Lua's name for a value's type (`number` for integers too, as LuaJIT has no integer type).
pub(crate) fn type_name(value: &mlua::Value) -> &'static str {
    match value {
        mlua::Value::Integer(_) => "number",
        other => other.type_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_file_and_line_and_drops_traceback() {
        let lua = mlua::Lua::new();
        let err = lua
            .load("\n\nlocal x = nil; return x.y")
            .set_name("@dir/s.lua")
            .exec()
            .unwrap_err();
        let e = lua_error("dir/s.lua", "loading the script", &err);
        assert!(e.message.starts_with("dir/s.lua:3: "), "{}", e.message);
        assert!(!e.message.contains('\n'), "{}", e.message);
        assert!(e.message.ends_with("(loading the script)"), "{}", e.message);
    }

    #[test]
    fn prefixes_file_when_missing() {
        let lua = mlua::Lua::new();
        let err = lua
            .load("error('plain', 0)")
            .set_name("@s.lua")
            .exec()
            .unwrap_err();
        let e = lua_error("s.lua", "in request()", &err);
        assert_eq!(e.message, "s.lua: plain (in request())");
    }
}
