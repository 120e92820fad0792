//! End-to-end tests: interference.
