//! Moving bytes between a device and the broker, both ways, until both sides
//! are done.
//!
//! `tokio::io::copy_bidirectional` keeps two 8 KiB buffers for the whole
//! life of a connection. An MQTT fleet is mostly idle connections, so that
//! would pin 1.6 GB for 100k devices doing nothing. This relay holds a
//! buffer only while data is moving: each direction first waits for the
//! source to become readable with no buffer at all, then borrows one from a
//! per-thread pool, reads and writes until the source would block, and
//! gives the buffer back. An idle connection holds no relay buffer.
//!
//! Half-close is kept: when one side finishes sending (FIN, or TLS
//! close_notify), the other side's write half is shut down, and the other
//! direction carries on until it finishes too.
//!
//! - `direction`: what both pumps share for one direction: the pooled
//!   buffer, the wait that holds none, counting, flushing and shutdown;
//! - `bytes`: the byte pump of opaque listeners;
//! - `mqtt`: the MQTT pump, with the guard (`guard::packets`) deciding on
//!   every packet;
//! - `idle`: the idle timeout around either.

mod bytes;
mod direction;
mod idle;
pub mod mqtt;
#[cfg(test)]
mod tests;
pub mod throttle;

pub use bytes::relay;
pub use idle::idle_timeout;
