//! Loopback ports: free ones to listen on, open ones to wait for.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("addr"),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Raises this process's soft open-files limit to its hard limit, so that
/// a test holding many sessions (and the peers it starts afterwards, which
/// inherit it) is not stopped by a default of 1024. Returns the new limit.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE")
}
