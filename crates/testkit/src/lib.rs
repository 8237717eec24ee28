//! The shared test kit: real processes, real peers, real PKI.
//!
//! Every test starts what it needs on 127.0.0.1 with free ports: a real
//! Mosquitto, the real `moat` binary, and real clients (`mosquitto_pub`,
//! `mosquitto_sub`, `openssl s_client`, dnsmasq, sslyze, MQTT.js in headless
//! Chromium), and an OCSP responder whose answers `openssl ocsp` makes.
//! Certificates are generated at test time with rcgen or openssl; no
//! private key is ever committed.
//!
//! A missing peer fails the test with the Debian package to install; it is
//! never skipped. `scripts/test` installs them all.
//!
//! The end-to-end tests (`tests/`, one binary) use it; [`Gateway`] starts
//! the usual scene (a scratch directory, Mosquitto, a CA, a server
//! certificate and moat in front of the broker) in one expression.

pub mod binary;
pub mod browser;
pub mod clients;
pub mod config;
pub mod dir;
pub mod dnsmasq;
pub mod gateway;
pub mod http;
pub mod ocsp;
pub mod openssl_ca;
pub mod paho;
pub mod pebble;
pub mod pki;
pub mod ports;
pub mod procs;
pub mod prometheus;
pub mod require;
pub mod wait;
pub mod websocket;

pub use binary::*;
pub use browser::*;
pub use clients::*;
pub use config::*;
pub use dir::*;
pub use dnsmasq::*;
pub use gateway::*;
pub use http::*;
pub use ocsp::*;
pub use openssl_ca::*;
pub use paho::*;
pub use pebble::*;
pub use pki::*;
pub use ports::*;
pub use procs::*;
pub use prometheus::*;
pub use require::*;
pub use wait::*;
pub use websocket::*;
