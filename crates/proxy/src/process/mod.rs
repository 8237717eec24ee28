//! The process around the gateway: who it runs as and what it may touch,
//! how it logs, what it tells its supervisor, and how it serves until a
//! signal stops it.
//!
//! - `server`: serving, signals and the drain;
//! - `confine`: the switch to an unprivileged user and the sandbox, after
//!   binding (`privileges`, `sandbox`);
//! - `systemd`: sd_notify for `Type=notify` units;
//! - `logging`: log level and format.

pub mod confine;
pub mod logging;
pub mod privileges;
pub mod sandbox;
pub mod server;
pub mod systemd;
