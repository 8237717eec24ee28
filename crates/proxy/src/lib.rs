//! moat: a TLS gateway for MQTT brokers.
//!
//! moat terminates TLS (and mutual TLS) in front of a plaintext broker such
//! as Mosquitto, and relays bytes to it. The modules follow the path of one
//! connection, and each depends only on those below it
//! (`scripts/check-structure` keeps it so):
//!
//! - `cli`: the command line and the start-up sequence;
//! - `process`: serving, signals and the drain; privileges, sandbox,
//!   systemd, logging;
//! - `control`: reloads, OCSP stapling, readiness, the admin endpoint;
//! - `listen`: sockets, workers and accept loops;
//! - `conn`: one connection: admission, handshake, identity, session;
//! - `transport`: raw MQTT or MQTT in WebSocket frames, on the TLS stream;
//! - `relay`, `guard`, `tls`, [`proxy_protocol`]: moving bytes, MQTT
//!   policy, TLS, the PROXY header;
//! - [`config`], `metrics`, `pool`: the configuration, the metric registry,
//!   the buffer pools.
//!
//! See `docs/architecture.md` for the choices behind them. The library's
//! public surface is what the binary and the fuzz targets need: [`main`],
//! and the two pure modules the fuzz targets drive.
#![warn(missing_docs)]

mod cli;
pub mod config;
mod conn;
mod control;
mod guard;
mod listen;
mod metrics;
mod pool;
mod process;
pub mod proxy_protocol;
mod relay;
mod tls;
mod transport;

pub use cli::main;
