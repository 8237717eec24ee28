//! The few MQTT 3.1.1 frames the load generator needs, encoded by hand.

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
    let mut body = Vec::with_capacity(16 + client_id.len());
    str16(b"MQTT", &mut body);
    body.push(4); // protocol level 3.1.1
    body.push(0x02); // clean session
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
    fn long_remaining_length() {
        let mut v = Vec::new();
        remaining_length(321, &mut v);
        assert_eq!(v, [0xC1, 0x02]);
    }
}
