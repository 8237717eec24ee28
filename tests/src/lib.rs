//! The kit under its old name: crates that still import `moat_e2e`
//! (crates/stapling's tests) keep building until they move to
//! `moat_testkit`.

pub use moat_testkit::*;
