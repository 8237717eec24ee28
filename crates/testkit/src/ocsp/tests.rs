//! The responder against `openssl ocsp` as a client.

use super::*;
use crate::dir::TestDir;
use crate::openssl_ca::CaOptions;
use crate::ports::port_open;

/// `openssl ocsp` as a client (a POST to `url`): the status it prints
/// for `cert` after verifying the response against the CA.
fn query(ca: &OpensslCa, cert: &Path, url: &str) -> String {
    let out = openssl(
        ca.dir(),
        &[
            "ocsp",
            "-issuer",
            "ca.pem",
            "-cert",
            &path_arg(cert),
            "-url",
            url,
            "-CAfile",
            "ca.pem",
            "-timeout",
            "5",
        ],
    );
    out.lines()
        .find_map(|l| l.split_once(": ").map(|(_, s)| s.trim().to_string()))
        .unwrap_or(out)
}

/// A raw GET: the status (0 if the connection closed without one) and
/// the body.
fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Vec::new());
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, buf[end + 4..].to_vec())
}

#[test]
fn answers_post_and_get_from_the_index_and_comes_back_on_the_same_port() {
    let dir = TestDir::new();
    let mut responder = Responder::start(Behaviour::Status(503));
    let ca = Arc::new(OpensslCa::with_options(
        dir.path(),
        "ocsp-ca",
        &CaOptions::ocsp(responder.url()),
    ));
    assert_eq!(ca.ocsp_url(), Some(responder.url().as_str()));
    let server = ca.issue_server(dir.path(), "server");
    let aia = openssl(
        dir.path(),
        &["x509", "-noout", "-ocsp_uri", "-in", "server.pem"],
    );
    assert_eq!(aia.trim(), responder.url());
    responder.set(Behaviour::answer(ca.clone(), RespOpts::default()));

    // POST, as openssl sends it.
    assert_eq!(query(&ca, &server.cert, &responder.url()), "good");
    let hit = &responder.hit_log()[0];
    assert_eq!(hit.method, "POST");
    assert_eq!(
        hit.content_type.as_deref(),
        Some("application/ocsp-request")
    );
    ca.revoke(&server.cert);
    assert_eq!(query(&ca, &server.cert, &responder.url()), "revoked");

    // GET, with the request base64 in the path.
    openssl(
        dir.path(),
        &[
            "ocsp",
            "-issuer",
            &path_arg(&ca.cert),
            "-cert",
            "server.pem",
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
    );
    let request = std::fs::read(dir.join("req.der")).unwrap();
    let b64 = openssl(dir.path(), &["base64", "-A", "-in", "req.der"]);
    let (status, body) = get(responder.port(), &format!("/{}", b64.trim()));
    assert_eq!(status, 200);
    assert_eq!(responder.requests()[2], request);
    assert!(ca.describe(&body).contains("Cert Status: revoked"));
    assert_eq!(responder.hits(), 3);

    // Down, then up again on the same port.
    let port = responder.port();
    responder.stop();
    assert!(!responder.is_running());
    assert!(!port_open(port));
    responder.restart();
    assert_eq!(responder.port(), port);
    assert_eq!(query(&ca, &server.cert, &responder.url()), "revoked");
    assert_eq!(responder.hits(), 4);
}

#[test]
fn serves_fixed_responses_errors_and_silence() {
    let ca = OpensslCa::in_temp_dir("Test CA", &CaOptions::ocsp("http://127.0.0.1:9"));
    let server = ca.issue_server(ca.dir(), "server");
    let stranger = ca.issue_unrecorded(ca.dir(), "stranger");
    let text = ca.describe(&ca.respond(&stranger.cert, RespOpts::default()));
    assert!(text.contains("Cert Status: unknown"), "{text}");
    let text = ca.describe(&ca.respond(&server.cert, RespOpts::signer(Signer::Ca)));
    assert!(text.contains("Cert Status: good"), "{text}");

    let der = ca.respond(
        &server.cert,
        RespOpts {
            next_update: Some(Duration::from_secs(600)),
            ..RespOpts::default()
        },
    );
    let responder = Responder::start(Behaviour::Serve(der.clone()));
    assert_eq!(query(&ca, &server.cert, &responder.url()), "good");
    responder.set(Behaviour::Status(500));
    assert_eq!(get(responder.port(), "/x"), (500, Vec::new()));
    responder.set(Behaviour::Close);
    assert_eq!(get(responder.port(), "/x").0, 0);
    responder.set(Behaviour::Hang(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(get(responder.port(), "/x").0, 0);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(responder.hits(), 4);
}

#[test]
fn get_paths_decode_with_or_without_percent_encoding_and_slashes() {
    // A SEQUENCE whose base64 contains '/'.
    let der = [0x30, 0x03, 0xfb, 0xff, 0xbf];
    let b64 = "MAP7/78=";
    assert_eq!(request_from_path(&format!("/{b64}")), der);
    assert_eq!(request_from_path(&format!("/ca1/{b64}")), der);
    assert_eq!(request_from_path("/ca1/MAP7%2F78%3D"), der);
    assert!(request_from_path("/").is_empty());
    assert!(request_from_path("/not-base64!").is_empty());
}
