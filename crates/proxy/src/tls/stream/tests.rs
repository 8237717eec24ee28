//! The TLS stream against a real rustls client over loopback TCP.

use super::*;
use std::io;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::TcpStream;

/// A server configuration and a client that trusts it, for "localhost".
fn configs() -> (Arc<ServerConfig>, tokio_rustls::TlsConnector) {
    configs_with(rustls::server::WebPkiClientVerifier::no_client_auth())
}

/// The same, with `verifier` checking client certificates.
fn configs_with(
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> (Arc<ServerConfig>, tokio_rustls::TlsConnector) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let der = CertificateDer::from(cert.der().to_vec());
    let server = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        Arc::new(server),
        tokio_rustls::TlsConnector::from(Arc::new(client)),
    )
}

/// A TLS client connected to a handshaken server stream.
async fn pair() -> (tokio_rustls::client::TlsStream<TcpStream>, TlsStream) {
    let (server, connector) = configs();
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let serve = async {
        let (tcp, _) = l.accept().await.expect("accept");
        let start = accept(tcp).await.expect("ClientHello");
        assert_eq!(start.client_hello().server_name(), Some("localhost"));
        start.finish(server).await.expect("handshake")
    };
    let connect = async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        connector
            .connect(name, tcp)
            .await
            .expect("client handshake")
    };
    tokio::join!(connect, serve)
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn carries_data_both_ways_and_closes_cleanly() {
    let (mut client, mut server) = pair().await;
    let sent = data(300_000);
    let client_side = async {
        client.write_all(&sent).await.expect("client writes");
        client.shutdown().await.expect("client close_notify");
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.expect("client reads");
        back
    };
    let server_side = async {
        let mut got = Vec::new();
        // The client's close_notify ends the read cleanly.
        server.read_to_end(&mut got).await.expect("server reads");
        server.write_all(&got).await.expect("server writes");
        server.shutdown().await.expect("server close_notify");
        got
    };
    let (back, got) = tokio::join!(client_side, server_side);
    assert_eq!(got, sent);
    assert_eq!(back, sent);
}

#[tokio::test]
async fn reads_and_writes_at_once() {
    // Both directions busy at the same time through one task's halves,
    // as the relay drives them.
    let (client, server) = pair().await;
    let (mut sr, mut sw) = tokio::io::split(server);
    let echo = tokio::spawn(async move {
        let n = tokio::io::copy(&mut sr, &mut sw).await.expect("echo");
        sw.shutdown().await.expect("close");
        n
    });
    let (mut cr, mut cw) = tokio::io::split(client);
    let sent = data(2_000_000);
    let expected = sent.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(7_000) {
            cw.write_all(chunk).await.expect("write");
        }
        cw.shutdown().await.expect("close");
    });
    let mut back = Vec::new();
    cr.read_to_end(&mut back).await.expect("read");
    writer.await.expect("writer");
    assert_eq!(echo.await.expect("echo task"), expected.len() as u64);
    assert_eq!(back, expected);
}

#[tokio::test]
async fn an_idle_session_holds_no_buffer() {
    let (mut client, mut server) = pair().await;
    client.write_all(b"ping").await.expect("write");
    let mut got = [0u8; 4];
    server.read_exact(&mut got).await.expect("read");
    server.write_all(b"pong").await.expect("write back");
    client.read_exact(&mut got).await.expect("read back");
    assert_eq!(&got, b"pong");
    assert_eq!(server.holds_buffers(), [false; 3]);
}

#[tokio::test]
async fn key_updates_keep_the_session_going() {
    let (mut client, mut server) = pair().await;
    for round in 0..5u8 {
        client
            .get_mut()
            .1
            .refresh_traffic_keys()
            .expect("key update");
        client.write_all(&[round; 100]).await.expect("write");
        let mut got = [0u8; 100];
        server
            .read_exact(&mut got)
            .await
            .expect("read after key update");
        assert_eq!(got, [round; 100]);
        server.write_all(&got).await.expect("write back");
        client.read_exact(&mut got).await.expect("read back");
        assert_eq!(got, [round; 100]);
    }
}

#[tokio::test]
async fn a_tcp_end_without_close_notify_is_an_unexpected_eof() {
    let (client, mut server) = pair().await;
    let (mut tcp, _) = client.into_inner();
    // A FIN, not a reset: the client's socket still holds unread
    // session tickets, and dropping it would send RST.
    tcp.shutdown().await.expect("FIN");
    let mut got = Vec::new();
    let err = server
        .read_to_end(&mut got)
        .await
        .expect_err("no close_notify");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn not_tls_gets_an_alert_and_an_error() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let client = async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut reply = Vec::new();
        let _ = tcp.read_to_end(&mut reply).await;
        reply
    };
    let server = async {
        let (tcp, _) = l.accept().await.expect("accept");
        accept(tcp).await.err().expect("refused")
    };
    let (reply, err) = tokio::join!(client, server);
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(inner, Some(rustls::Error::InvalidMessage(_))),
        "{err}"
    );
    // A TLS alert record: content type 21.
    assert_eq!(reply.first(), Some(&21), "{reply:?}");
}

/// Runs a handshake the server ends with an error. Returns the
/// client's error (from the handshake, or from its first read when a
/// TLS 1.3 client finished first) and the server's, each with the
/// rustls error inside it.
async fn refused(
    server: Arc<ServerConfig>,
    connector: tokio_rustls::TlsConnector,
) -> (
    (io::Error, Option<rustls::Error>),
    (io::Error, Option<rustls::Error>),
) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let serve = async {
        let (tcp, _) = l.accept().await.expect("accept");
        let start = accept(tcp).await.expect("ClientHello");
        start.finish(server).await.err().expect("handshake refused")
    };
    let connect = async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        match connector.connect(name, tcp).await {
            Err(e) => e,
            Ok(mut tls) => {
                let mut byte = [0u8; 1];
                tls.read(&mut byte)
                    .await
                    .expect_err("refused after the client's handshake")
            }
        }
    };
    let (client, server) = tokio::join!(connect, serve);
    let inner = |e: &io::Error| {
        e.get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .cloned()
    };
    let (c, s) = (inner(&client), inner(&server));
    ((client, c), (server, s))
}

#[tokio::test]
async fn a_client_alert_fails_the_handshake() {
    // The client does not trust the certificate: it sends the alert,
    // and the server reports having received it.
    let (server, _) = configs();
    let client_config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let ((client, _), (server, inner)) = refused(server, connector).await;
    assert!(
        matches!(inner, Some(rustls::Error::AlertReceived(_))),
        "{server}"
    );
    assert_eq!(client.kind(), io::ErrorKind::InvalidData, "{client}");
}

#[tokio::test]
async fn a_refused_handshake_tells_the_client_why() {
    // The server speaks only "mqtt", the client only "h2": rustls
    // refuses mid-handshake, and its alert must reach the client.
    let (server, connector) = configs();
    let mut server = (*server).clone();
    server.alpn_protocols = vec![b"mqtt".to_vec()];
    let mut client = (*connector.config()).as_ref().clone();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let ((client, client_inner), (server, server_inner)) =
        refused(Arc::new(server), connector).await;
    assert!(
        matches!(server_inner, Some(rustls::Error::NoApplicationProtocol)),
        "{server}"
    );
    assert!(
        matches!(
            client_inner,
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol
            ))
        ),
        "{client}"
    );
}

#[tokio::test]
async fn a_missing_client_certificate_is_refused_with_an_alert() {
    // TLS 1.3: the client's empty Certificate and its Finished arrive
    // together, so rustls fails while still holding the Finished.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .self_signed(&ca_key)
        .expect("ca");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .expect("verifier");
    let (server, connector) = configs_with(verifier);
    let ((client, client_inner), (server, server_inner)) = refused(server, connector).await;
    assert!(
        matches!(server_inner, Some(rustls::Error::NoCertificatesPresented)),
        "{server}"
    );
    assert!(
        matches!(
            client_inner,
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            ))
        ),
        "{client}"
    );
}

/// Copies `from` to `to` a few bytes per write, each flushed on its own
/// with no delay, so that the reader sees records in pieces.
async fn trickle(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut buf = [0u8; 64];
    let mut step = 1;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in buf[..n].chunks(step) {
            if to.write_all(piece).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        step = step % 5 + 1;
    }
    let _ = to.shutdown().await;
}

#[tokio::test]
async fn records_arriving_in_pieces_are_put_together() {
    let (server_config, connector) = configs();
    let server_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server_addr = server_l.local_addr().expect("addr");
    let middle_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let middle_addr = middle_l.local_addr().expect("addr");
    tokio::spawn(async move {
        let (a, _) = middle_l.accept().await.expect("accept");
        let b = TcpStream::connect(server_addr).await.expect("connect");
        a.set_nodelay(true).expect("nodelay");
        b.set_nodelay(true).expect("nodelay");
        let (ar, aw) = a.into_split();
        let (br, bw) = b.into_split();
        tokio::join!(trickle(ar, bw), trickle(br, aw));
    });
    let sent = data(40_000);
    let serve = async {
        let (tcp, _) = server_l.accept().await.expect("accept");
        let start = accept(tcp).await.expect("ClientHello");
        let mut tls = start.finish(server_config).await.expect("handshake");
        let mut got = vec![0u8; sent.len()];
        tls.read_exact(&mut got).await.expect("read");
        tls.write_all(&got).await.expect("write");
        tls.shutdown().await.expect("close");
        got
    };
    let connect = async {
        let tcp = TcpStream::connect(middle_addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("handshake");
        tls.write_all(&sent).await.expect("write");
        let mut back = Vec::new();
        tls.read_to_end(&mut back).await.expect("read");
        back
    };
    let (back, got) = tokio::join!(connect, serve);
    assert_eq!(got, sent);
    assert_eq!(back, sent);
}
