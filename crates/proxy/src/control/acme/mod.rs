//! Built-in ACME (issue 19): certificates obtained and renewed by moat.
//!
//! Only the pure renewal schedule exists so far (`schedule`); the
//! ordering client, challenge answering and config are still to come.

pub mod schedule;
