//! The benchmark workloads, in WAT, with plain Rust reference implementations.
