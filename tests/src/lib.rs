//! Harness shared by the end-to-end tests: binaries, test servers, fakes of external services.

pub mod bins;
