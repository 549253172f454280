//! Shared test helpers: the cluster kit is the `coffer-testkit` crate (benches use it too).

#![allow(dead_code, unused_imports)]

pub use coffer_testkit::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_coffer");
