//! The relays over real loopback sockets: both ways with half-close, no
//! buffer while idle, and the idle timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use prometheus_client::metrics::counter::Counter;

use super::{idle_timeout, relay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
    (a.expect("connect"), b.expect("accept").0)
}

#[tokio::test]
async fn relays_both_ways_with_half_close() {
    // client_end <-> [a | relay | b] <-> backend_end
    let (mut client_end, mut a) = pair().await;
    let (mut b, mut backend_end) = pair().await;
    let up = Counter::default();
    let down = Counter::default();
    let (u, d) = (up.clone(), down.clone());
    let task = tokio::spawn(async move { relay(&mut a, &mut b, u, d).await });

    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    client_end.write_all(&big).await.expect("write");
    client_end.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    backend_end
        .read_to_end(&mut got)
        .await
        .expect("backend reads to EOF");
    assert_eq!(got, big);

    // The other direction still works after the client's half-close.
    backend_end.write_all(b"connack").await.expect("write back");
    backend_end.shutdown().await.expect("close");
    let mut back = Vec::new();
    client_end
        .read_to_end(&mut back)
        .await
        .expect("client reads");
    assert_eq!(back, b"connack");

    let totals = task.await.expect("join").expect("relay ok");
    assert_eq!(totals.to_backend, big.len() as u64);
    assert_eq!(totals.to_client, 7);
    assert_eq!(up.get(), big.len() as u64);
    assert_eq!(down.get(), 7);
}

#[tokio::test]
async fn idle_relay_holds_no_buffer() {
    let (_client_end, mut a) = pair().await;
    let (mut b, _backend_end) = pair().await;
    let mut r = relay(&mut a, &mut b, Counter::default(), Counter::default());
    let polled = futures_poll_once(&mut r).await;
    assert!(polled.is_pending());
    assert!(!r.holds_buffers());
}

#[tokio::test(start_paused = true)]
async fn idle_relay_times_out_and_busy_one_does_not() {
    let (mut client_end, mut a) = pair().await;
    let (mut b, mut backend_end) = pair().await;
    let idle = std::time::Duration::from_secs(30);
    let task = tokio::spawn(async move {
        idle_timeout(
            relay(&mut a, &mut b, Counter::default(), Counter::default()),
            idle,
        )
        .await
    });
    // Traffic every 20 s keeps it open past several idle periods.
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_secs(20)).await;
        client_end.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 4];
        backend_end.read_exact(&mut got).await.expect("read");
    }
    assert!(!task.is_finished());
    tokio::time::sleep(std::time::Duration::from_secs(61)).await;
    let err = task.await.expect("join").expect_err("timed out");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

async fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
}
