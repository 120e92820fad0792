//! End-to-end tests: collector.
