//! aefm-loadgen: a wrk2-compatible constant-throughput HTTP load generator (crate docs to come).

pub mod source;
