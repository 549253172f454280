//! Shared test helpers: the cluster kit lives in `coffer::testkit` (benches use it too).

#![allow(dead_code, unused_imports)]

pub use coffer::testkit::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_coffer");
