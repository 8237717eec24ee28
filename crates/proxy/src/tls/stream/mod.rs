//! The TLS session of one client connection, over its TCP socket, holding no
//! buffer while the connection is idle.
//!
//! This is hand-written instead of using tokio-rustls. tokio-rustls drives
//! rustls' buffered `ServerConnection`, which keeps a receive buffer of at
//! least 4 KiB for the connection's whole life: rustls sizes it before every
//! socket read and never gives it back. For a fleet of mostly idle devices
//! that buffer was 40% of moat's memory per connection (docs/benchmarks.md,
//! idle memory). Here rustls' unbuffered API does all of the TLS work, and
//! this module only owns the bytes: ciphertext received but not yet
//! processed, plaintext decrypted but not yet read, and ciphertext not yet
//! sent. Each lives in a buffer borrowed from a per-thread pool only while it
//! holds bytes, so an idle connection holds rustls' state and nothing else.
//!
//! [`accept`] reads the ClientHello, so that the caller can pick the
//! configuration by SNI or by the client's suites (as rustls' `Acceptor`
//! allows), and [`StartHandshake::finish`] completes the handshake. The
//! resulting [`TlsStream`] behaves as tokio-rustls' stream does: a TCP end
//! without close_notify reads as [`io::ErrorKind::UnexpectedEof`], shutdown
//! sends close_notify, and rustls errors come back as
//! [`io::ErrorKind::InvalidData`] errors wrapping the [`rustls::Error`].
//!
//! - `accept`: reading the ClientHello and finishing the handshake;
//! - `session`: the [`TlsStream`] itself, driving rustls' unbuffered API;
//! - `pending`: the bytes waiting, in pooled buffers held only while there
//!   are some.

mod accept;
mod pending;
mod session;
#[cfg(test)]
mod tests;

pub use accept::accept;
pub use session::TlsStream;
