//! End-to-end tests: loadgen.
