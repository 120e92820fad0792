//! End-to-end tests: manager.
