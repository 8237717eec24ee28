//! TLS: everything a handshake needs, built as one value per listener, and
//! the TLS session of each connection.
//!
//! [`ListenerTls`] bundles the rustls `ServerConfig` with the certificates
//! and client CAs it was built from. A listener holds the current one in an
//! `ArcSwap`; a reload builds a complete new one off to the side and swaps
//! it in, so handshakes never see a half-updated state. The session ticketer
//! is created once per listener and carried across reloads, so devices keep
//! resuming after a certificate rotation.

//!
//! - `state`: [`ListenerTls`] and [`Resumption`];
//! - `admin`: TLS on the admin endpoint, and the CLI's side of it;
//! - `acme_alpn`: TLS-ALPN-01 challenge answers for the ACME manager;
//! - `policy`: versions, suites and groups; weak suites refused. Pure;
//! - `certs`: reading and checking certificate chains and keys;
//! - `resolver`: SNI certificate selection, and each certificate's staple;
//! - `client_auth`: the client verifier (CA bundle, CRLs, allow-list) and
//!   the peer identity;
//! - `allow`: allow-list rules and matching. Pure;
//! - `files`: the in-memory snapshot of a listener's files, and its hash;
//! - `tickets`: session ticket keys shared between replicas;
//! - `stream`: one connection's TLS session on rustls' unbuffered API.

pub mod acme_alpn;
pub mod admin;
pub mod allow;
pub mod certs;
pub mod client_auth;
pub mod files;
pub mod policy;
pub mod resolver;
mod state;
pub mod stream;
pub mod tickets;

pub use state::{build_from, prepare, prepare_one, ListenerTls, Prepared, Resumption};
