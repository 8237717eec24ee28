//! Listening sockets, bound before the runtime starts, while the process
//! is one thread and may still be root: one per connection worker for each
//! listener (`SO_REUSEPORT`), and the admin endpoint's.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::ValidConfig;

/// Why binding failed: a port in use, a missing address (exit code 1).
#[derive(Debug)]
pub struct BindError(pub String);

/// Binds a listening socket with the configured backlog. It is a std
/// socket (non-blocking) so that binding can happen before the runtime
/// starts, while the process is still one thread and may still be root.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    Ok(bind_group(addr, backlog, Duration::ZERO, 1)?.remove(0))
}

/// Binds `n` listening sockets to one address, one per connection worker,
/// with `SO_REUSEPORT`: the kernel spreads new connections over them, and
/// each worker accepts its own (as nginx's `reuseport`). The first socket
/// binds before it allows sharing, so a port that anything else holds is
/// refused as usual (`AddrInUse`), even another moat's. Port 0 binds the
/// rest to the port the first one got.
///
/// `TCP_NODELAY` and the keep-alive probes (after `tcp_keepalive` of
/// silence; zero leaves them off) are set on the listening sockets, and
/// Linux copies them to every connection they accept: five `setsockopt`
/// calls per connection fewer (docs/benchmarks.md, "What moved the
/// numbers"). `accepted_sockets_inherit_nodelay_and_keepalive` checks that
/// the kernel does.
pub fn bind_group(
    addr: SocketAddr,
    backlog: u32,
    tcp_keepalive: Duration,
    n: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    let open = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if !tcp_keepalive.is_zero() {
            socket.set_tcp_keepalive(&keepalive(tcp_keepalive))?;
        }
        Ok(socket)
    };
    let first = open()?;
    first.bind(&addr.into())?;
    let mut sockets = vec![first];
    if n > 1 {
        sockets[0].set_reuse_port(true)?;
        let bound = sockets[0].local_addr()?;
        for _ in 1..n {
            let socket = open()?;
            socket.set_reuse_port(true)?;
            socket.bind(&bound)?;
            sockets.push(socket);
        }
    }
    sockets
        .into_iter()
        .map(|s| {
            s.listen(backlog)?;
            Ok(s.into())
        })
        .collect()
}

/// Keep-alive probes after `idle` of silence, every 10 s, six of them: a
/// device that vanished without a FIN is dropped about a minute later.
fn keepalive(idle: Duration) -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(Duration::from_secs(10))
        .with_retries(6)
}

/// Every listening socket, bound before the runtime starts (and before a
/// switch to an unprivileged user).
pub struct Bound {
    /// By listener name (routes share their parent's sockets): one socket
    /// per connection worker (see [`bind_group`]).
    pub listeners: std::collections::HashMap<String, Vec<std::net::TcpListener>>,
    /// The admin endpoint's socket.
    pub admin: Option<std::net::TcpListener>,
}

/// Binds every listener (one socket per connection worker, `workers` of
/// them) and the admin endpoint; fails on the first port that cannot be
/// bound, naming it.
pub fn bind_all(config: &ValidConfig, workers: usize) -> Result<Bound, BindError> {
    let mut listeners = std::collections::HashMap::new();
    for (l, _) in config.listeners().filter(|(l, _)| l.route.is_none()) {
        let group =
            bind_group(l.listen, l.backlog, l.timeouts.tcp_keepalive.0, workers).map_err(|e| {
                BindError(format!(
                    "listener {:?}: cannot listen on {}: {e}{}",
                    l.name,
                    l.listen,
                    bind_hint(&e)
                ))
            })?;
        listeners.insert(l.name.clone(), group);
    }
    let admin = match &config.config.admin {
        Some(a) => Some(bind(a.listen, 128).map_err(|e| {
            BindError(format!(
                "admin: cannot listen on {}: {e}{}",
                a.listen,
                bind_hint(&e)
            ))
        })?),
        None => None,
    };
    Ok(Bound { listeners, admin })
}

fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "\n  hint: another process uses this port (find it with `ss -ltnp`), or another listener in this file does"
        }
        std::io::ErrorKind::PermissionDenied => {
            "\n  hint: ports below 1024 need root or CAP_NET_BIND_SERVICE"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "\n  hint: this machine has no such address; use 0.0.0.0 or one of its own addresses"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port_and_keeps_others_off_it() {
        let group =
            bind_group("127.0.0.1:0".parse().expect("addr"), 128, Duration::ZERO, 3).expect("bind");
        assert_eq!(group.len(), 3);
        let port = group[0].local_addr().expect("addr").port();
        assert!(group
            .iter()
            .all(|s| s.local_addr().expect("addr").port() == port));
        // Another process (or another moat) cannot bind the port.
        let taken = bind(SocketAddr::from(([127, 0, 0, 1], port)), 128).expect_err("port taken");
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
        // The kernel spreads connections over the group's sockets.
        let clients: Vec<_> = (0..60)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let accepted: Vec<usize> = group
            .iter()
            .map(|s| std::iter::from_fn(|| s.accept().ok()).count())
            .collect();
        assert_eq!(accepted.iter().sum::<usize>(), clients.len());
        assert!(accepted.iter().all(|&n| n > 0), "{accepted:?}");
    }

    /// Accepts one connection on `listener`, which is non-blocking.
    fn accept_one(listener: &std::net::TcpListener) -> std::net::TcpStream {
        for _ in 0..500 {
            if let Ok((s, _)) = listener.accept() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no connection arrived");
    }

    #[test]
    fn accepted_sockets_inherit_nodelay_and_keepalive() {
        let idle = Duration::from_secs(45);
        let group = bind_group("127.0.0.1:0".parse().expect("addr"), 128, idle, 2).expect("bind");
        let addr = group[0].local_addr().expect("addr");
        let clients: Vec<_> = (0..8)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let mut checked = 0;
        for listener in &group {
            while let Ok((accepted, _)) = listener.accept() {
                let s = socket2::SockRef::from(&accepted);
                assert!(
                    s.tcp_nodelay().expect("nodelay"),
                    "TCP_NODELAY not inherited"
                );
                assert!(
                    s.keepalive().expect("keepalive"),
                    "SO_KEEPALIVE not inherited"
                );
                assert_eq!(s.tcp_keepalive_time().expect("idle"), idle);
                assert_eq!(
                    s.tcp_keepalive_interval().expect("interval"),
                    Duration::from_secs(10)
                );
                assert_eq!(s.tcp_keepalive_retries().expect("retries"), 6);
                checked += 1;
            }
        }
        assert_eq!(checked, clients.len());

        // Zero turns the probes off; TCP_NODELAY stays.
        let plain = bind("127.0.0.1:0".parse().expect("addr"), 128).expect("bind");
        let _client = std::net::TcpStream::connect(plain.local_addr().expect("addr"));
        let accepted = accept_one(&plain);
        let s = socket2::SockRef::from(&accepted);
        assert!(s.tcp_nodelay().expect("nodelay"));
        assert!(!s.keepalive().expect("keepalive"));
    }

    #[test]
    fn a_group_refuses_a_port_in_use() {
        let holder = bind("127.0.0.1:0".parse().expect("addr"), 128).expect("bind");
        let addr = holder.local_addr().expect("addr");
        let err = bind_group(addr, 128, Duration::ZERO, 2).expect_err("port taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
