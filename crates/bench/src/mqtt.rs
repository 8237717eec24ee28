//! The few MQTT 3.1.1 frames the load generator and the soak test need,
//! encoded and parsed by hand.

/// The CONNACK a broker sends to an accepted CONNECT (session not present).
pub const CONNACK_OK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

/// A client's DISCONNECT.
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn str16(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT with a clean session, no credentials and no will.
pub fn connect(client_id: &str, keep_alive: u16) -> Vec<u8> {
    connect_session(client_id, keep_alive, true)
}

/// CONNECT with no credentials and no will; `clean` false asks the broker
/// to keep the session (subscriptions and queued QoS 1 messages) across
/// disconnections.
pub fn connect_session(client_id: &str, keep_alive: u16, clean: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + client_id.len());
    str16(b"MQTT", &mut body);
    body.push(4); // protocol level 3.1.1
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    str16(client_id.as_bytes(), &mut body);
    let mut out = vec![0x10];
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// A QoS 0 PUBLISH to `topic` whose whole frame is `total` bytes long
/// (the payload fills the rest). `total` must leave room for the header
/// and topic and stay under 130 bytes (one length byte).
pub fn publish(topic: &str, total: usize) -> Vec<u8> {
    let head = 2 + 2 + topic.len();
    assert!(
        total >= head && total - 2 < 128,
        "publish size out of range"
    );
    let mut out = vec![0x30, (total - 2) as u8];
    str16(topic.as_bytes(), &mut out);
    out.extend((0..total - head).map(|i| b'a' + (i % 26) as u8));
    out
}

/// A client's PINGREQ.
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];

/// Packet types (the high nibble of the first byte).
pub const CONNACK: u8 = 2;
/// PUBLISH.
pub const PUBLISH: u8 = 3;
/// PUBACK.
pub const PUBACK: u8 = 4;
/// SUBACK.
pub const SUBACK: u8 = 9;

/// A QoS 1 PUBLISH of `payload` to `topic` with `packet_id`; `dup` marks a
/// retransmission.
pub fn publish_qos1(topic: &str, packet_id: u16, payload: &[u8], dup: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + topic.len() + payload.len());
    str16(topic.as_bytes(), &mut body);
    body.extend_from_slice(&packet_id.to_be_bytes());
    body.extend_from_slice(payload);
    let mut out = vec![0x32 | if dup { 0x08 } else { 0 }];
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// The PUBACK of a QoS 1 PUBLISH.
pub fn puback(packet_id: u16) -> [u8; 4] {
    let id = packet_id.to_be_bytes();
    [0x40, 0x02, id[0], id[1]]
}

/// A SUBSCRIBE to one topic filter at `qos`.
pub fn subscribe(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + filter.len());
    body.extend_from_slice(&packet_id.to_be_bytes());
    str16(filter.as_bytes(), &mut body);
    body.push(qos);
    let mut out = vec![0x82];
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// One complete frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The first byte: packet type (high nibble) and flags.
    pub header: u8,
    /// Where the variable header starts.
    pub body_start: usize,
    /// The frame's whole length.
    pub len: usize,
}

impl Frame {
    /// The packet type.
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }
}

/// The first frame of `buf`: `Ok(None)` while incomplete, an error when the
/// remaining length is malformed.
pub fn next_frame(buf: &[u8]) -> Result<Option<Frame>, &'static str> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut len = 0usize;
    let mut shift = 0;
    for i in 1..=4 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            let total = 1 + i + len;
            return Ok((buf.len() >= total).then_some(Frame {
                header: buf[0],
                body_start: 1 + i,
                len: total,
            }));
        }
        shift += 7;
    }
    Err("malformed remaining length")
}

/// A received PUBLISH: topic, packet id (QoS 1 and 2) and payload.
pub struct Publish<'a> {
    /// Its topic.
    pub topic: &'a [u8],
    /// The packet id, for QoS above 0.
    pub packet_id: Option<u16>,
    /// The payload.
    pub payload: &'a [u8],
}

/// Parses the PUBLISH `f` of `buf`.
pub fn parse_publish(buf: &[u8], f: Frame) -> Option<Publish<'_>> {
    let body = buf.get(f.body_start..f.len)?;
    let tlen = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let topic = body.get(2..2 + tlen)?;
    let mut at = 2 + tlen;
    let packet_id = if (f.header >> 1) & 0x03 > 0 {
        let id = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]);
        at += 2;
        Some(id)
    } else {
        None
    };
    Some(Publish {
        topic,
        packet_id,
        payload: body.get(at..)?,
    })
}

/// The packet id of a PUBACK or SUBACK `f` in `buf`.
pub fn packet_id(buf: &[u8], f: Frame) -> Option<u16> {
    let b = buf.get(f.body_start..f.body_start + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_frame() {
        let f = connect("d1", 60);
        assert_eq!(
            f,
            [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 2, b'd', b'1']
        );
    }

    #[test]
    fn publish_is_exactly_the_size_asked() {
        let f = publish("bench/t", 64);
        assert_eq!(f.len(), 64);
        assert_eq!(f[1] as usize, 62);
    }

    #[test]
    fn persistent_connect_has_no_clean_flag() {
        let f = connect_session("d1", 60, false);
        assert_eq!(f[9], 0);
    }

    #[test]
    fn qos1_publish_round_trip() {
        let f = publish_qos1("soak/1/d7", 513, b"7:42", true);
        assert_eq!(f[0], 0x3A);
        let fr = next_frame(&f).unwrap().unwrap();
        assert_eq!((fr.kind(), fr.len), (PUBLISH, f.len()));
        let p = parse_publish(&f, fr).unwrap();
        assert_eq!(p.topic, b"soak/1/d7");
        assert_eq!(p.packet_id, Some(513));
        assert_eq!(p.payload, b"7:42");
        assert_eq!(next_frame(&f[..f.len() - 1]).unwrap(), None);
        let ack = puback(513);
        let fr = next_frame(&ack).unwrap().unwrap();
        assert_eq!((fr.kind(), packet_id(&ack, fr)), (PUBACK, Some(513)));
    }

    #[test]
    fn subscribe_frame() {
        let f = subscribe(1, "soak/0/#", 1);
        assert_eq!(
            f,
            [0x82, 13, 0, 1, 0, 8, b's', b'o', b'a', b'k', b'/', b'0', b'/', b'#', 1]
        );
    }

    #[test]
    fn long_remaining_length() {
        let mut v = Vec::new();
        remaining_length(321, &mut v);
        assert_eq!(v, [0xC1, 0x02]);
    }
}
