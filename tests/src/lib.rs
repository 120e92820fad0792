//! Harness shared by the end-to-end tests: binaries, test servers, fakes of external services.

pub mod bins;
pub mod recording_server;
pub mod http_server;
pub mod fake_kube;
pub mod jaeger;
pub mod prometheus;
