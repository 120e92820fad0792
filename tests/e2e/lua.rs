//! End-to-end tests: lua.
