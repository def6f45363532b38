//! The `simnet` command line.

fn main() {}
