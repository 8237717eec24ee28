//! [`WsStream`] against hand-made client frames over an in-memory pipe:
//! fragmentation both ways, control frames answered, each violation ending
//! with its close code, and no buffer kept once bytes have moved.

use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::{Limits, ProtocolError, Violation, WsStream};
use std::sync::Arc;

use hyper::body::Bytes;
use prometheus_client::metrics::counter::Counter;

use crate::metrics::reason::ByReason;

fn limits() -> Limits {
    Limits {
        max_frame: 64,
        max_message: 100,
        violations: Arc::new(ByReason::new(|_| Counter::default())),
    }
}

/// A client frame: masked unless `mask` is `None`.
fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader {
        is_final: fin,
        opcode,
        mask,
        ..FrameHeader::default()
    };
    let mut out = Vec::new();
    header.format(payload.len() as u64, &mut out).unwrap();
    let mut body = payload.to_vec();
    if let Some(m) = mask {
        super::unmask(&mut body, m, 0);
    }
    out.extend_from_slice(&body);
    out
}

fn binary(fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(OpCode::Data(Data::Binary), fin, payload, Some([1, 2, 3, 4]))
}

fn pair() -> (WsStream<DuplexStream>, DuplexStream) {
    let (server, client) = duplex(64 * 1024);
    (WsStream::new(server, Bytes::new(), limits()), client)
}

/// Everything the server side reads until EOF or an error.
async fn read_all(ws: &mut WsStream<DuplexStream>) -> (Vec<u8>, Option<std::io::Error>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        match ws.read(&mut buf).await {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e)),
        }
    }
}

/// The next frame the client receives: opcode byte, payload.
async fn next_frame(client: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await.unwrap();
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            client.read_exact(&mut l).await.unwrap();
            u16::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    client.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

fn violation(e: &std::io::Error) -> Violation {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<ProtocolError>())
        .expect("a WebSocket protocol error")
        .0
}

#[tokio::test]
async fn packets_split_across_frames_and_several_in_one() {
    let (mut ws, mut client) = pair();
    let mut wire = binary(false, b"\x10\x03ab");
    wire.extend(frame(
        OpCode::Data(Data::Continue),
        true,
        b"c\xe0\x00",
        Some([9, 8, 7, 6]),
    ));
    wire.extend(binary(true, b"\xc0\x00\xc0\x00"));
    client.write_all(&wire).await.unwrap();
    drop(client);
    let (got, err) = read_all(&mut ws).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, b"\x10\x03abc\xe0\x00\xc0\x00\xc0\x00");
    assert!(!ws.holds_buffer());
}

#[tokio::test]
async fn writes_become_binary_frames_of_one_record_at_most() {
    let (mut ws, mut client) = pair();
    let big = vec![7u8; 20_000];
    ws.write_all(&big).await.unwrap();
    ws.flush().await.unwrap();
    let (op, first) = next_frame(&mut client).await;
    assert_eq!(op, 0x82, "a final binary frame");
    assert_eq!(first.len(), super::MAX_OUT_PAYLOAD);
    let (_, second) = next_frame(&mut client).await;
    assert_eq!(first.len() + second.len(), big.len());
    assert!(!ws.holds_buffer(), "no buffer once the bytes are sent");
}

#[tokio::test]
async fn ping_gets_its_pong_and_close_its_close() {
    let (mut ws, mut client) = pair();
    let mut wire = frame(
        OpCode::Control(Control::Ping),
        true,
        b"hi",
        Some([5, 5, 5, 5]),
    );
    wire.extend(binary(true, b"xy"));
    wire.extend(frame(
        OpCode::Control(Control::Close),
        true,
        &[0x03, 0xe9, b'b', b'y', b'e'],
        Some([1, 1, 1, 1]),
    ));
    client.write_all(&wire).await.unwrap();
    let (got, err) = read_all(&mut ws).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, b"xy");
    assert_eq!(next_frame(&mut client).await, (0x8a, b"hi".to_vec()));
    // 1001 echoed back.
    assert_eq!(next_frame(&mut client).await, (0x88, vec![0x03, 0xe9]));
}

/// Sends `wire`, and checks the read fails with `want` and the client
/// gets a close frame with `code`.
async fn refused(wire: Vec<u8>, want: Violation, code: u16) {
    let (mut ws, mut client) = pair();
    client.write_all(&wire).await.unwrap();
    let (_, err) = read_all(&mut ws).await;
    let err = err.expect("the read fails");
    assert_eq!(violation(&err), want, "{err}");
    assert_eq!(ws.limits.violations.get(want).get(), 1, "counted once");
    assert_eq!(
        next_frame(&mut client).await,
        (0x88, code.to_be_bytes().to_vec())
    );
}

#[tokio::test]
async fn text_frames_are_refused_with_1003() {
    let text = frame(OpCode::Data(Data::Text), true, b"hello", Some([1, 2, 3, 4]));
    refused(text, Violation::TextFrame, 1003).await;
}

#[tokio::test]
async fn unmasked_frames_are_refused_with_1002() {
    let bare = frame(OpCode::Data(Data::Binary), true, b"\x10\x00", None);
    refused(bare, Violation::Unmasked, 1002).await;
}

#[tokio::test]
async fn oversized_frames_and_messages_are_refused_with_1009() {
    refused(binary(true, &[0; 65]), Violation::FrameTooBig, 1009).await;
    let mut wire = binary(false, &[0; 60]);
    wire.extend(frame(
        OpCode::Data(Data::Continue),
        true,
        &[0; 60],
        Some([1, 2, 3, 4]),
    ));
    refused(wire, Violation::MessageTooBig, 1009).await;
}

#[tokio::test]
async fn broken_fragmentation_and_close_frames_are_refused_with_1002() {
    let stray = frame(OpCode::Data(Data::Continue), true, b"x", Some([1, 2, 3, 4]));
    refused(stray, Violation::BadContinuation, 1002).await;
    let mut nested = binary(false, b"a");
    nested.extend(binary(true, b"b"));
    refused(nested, Violation::BadContinuation, 1002).await;
    let one_byte = frame(
        OpCode::Control(Control::Close),
        true,
        &[3],
        Some([1, 2, 3, 4]),
    );
    refused(one_byte, Violation::BadClose, 1002).await;
    let long_ping = frame(
        OpCode::Control(Control::Ping),
        true,
        &[0; 126],
        Some([1, 2, 3, 4]),
    );
    refused(long_ping, Violation::BadControl, 1002).await;
}

#[tokio::test]
async fn shutdown_sends_a_normal_close() {
    let (mut ws, mut client) = pair();
    ws.write_all(b"\x20\x02\x00\x00").await.unwrap();
    ws.shutdown().await.unwrap();
    assert_eq!(
        next_frame(&mut client).await,
        (0x82, b"\x20\x02\x00\x00".to_vec())
    );
    assert_eq!(next_frame(&mut client).await, (0x88, vec![0x03, 0xe8]));
}

#[tokio::test]
async fn bytes_behind_the_request_are_read_first() {
    let (server, mut client) = duplex(1024);
    let early = Bytes::from(binary(true, b"ab"));
    let mut ws = WsStream::new(server, early, limits());
    client.write_all(&binary(true, b"cd")).await.unwrap();
    drop(client);
    let (got, err) = read_all(&mut ws).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, b"abcd");
}
