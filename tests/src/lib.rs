//! Harness shared by the end-to-end tests: binaries, test servers, fakes of external services.

pub mod bench;
pub mod bins;
pub mod capacity_server;
pub mod experiment;
pub mod fake_kube;
pub mod http_server;
pub mod jaeger;
pub mod prometheus;
pub mod recording_server;
