//! End-to-end tests: kubernetes.
