//! Exports the Lua C API from aefm-load, so C modules on LUA_CPATH (luasocket) can load into the
//! statically linked LuaJIT.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--export-dynamic");
    }
}
