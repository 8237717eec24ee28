//! The control plane: what runs beside the connections on the main
//! runtime and changes or reports their state, never their bytes.
//!
//! - `reload`: certificate reloads, whatever triggers them;
//! - `acme`: built-in ACME renewal (so far its schedule);
//! - `stapling`: the OCSP stapling tasks of every served certificate;
//! - `tls_series`: the certificate and CRL validity metrics;
//! - `health`: readiness;
//! - `admin`: the admin HTTP endpoint; `token` its bearer token,
//!   `access` who may use which endpoint, and `connections` its listing
//!   and closing of live sessions.

pub mod access;
pub mod acme;
pub mod admin;
mod connections;
pub mod health;
pub mod reload;
pub mod stapling;
mod tls_series;
pub mod token;
