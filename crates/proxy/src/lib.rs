//! moat: a TLS gateway for MQTT brokers.
//!
//! moat terminates TLS (and mutual TLS) in front of a plaintext broker such
//! as Mosquitto, and relays bytes to it. See `docs/architecture.md` for the
//! path of one connection and the role of each module.
#![warn(missing_docs)]

pub mod admin;
pub mod backend;
pub mod check;
pub mod cli;
pub mod config;
pub mod devcerts;
pub mod import;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod ocsp;
mod pool;
pub mod privileges;
pub mod proxy_protocol;
pub mod relay;
pub mod reload;
pub mod sandbox;
pub mod server;
pub mod systemd;
pub mod tls;
pub mod workers;
