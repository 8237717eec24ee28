//! Session ticket keys shared between replicas, from a file.
//!
//! By default each moat process makes its own rotating ticket keys, so a
//! device that reconnects to another replica behind a load balancer makes
//! a full handshake. With `tls.session_ticket_keys`, every replica reads
//! the same keys (say, from a Kubernetes Secret), like nginx's
//! `ssl_session_ticket_key`: the first key encrypts new tickets, every key
//! decrypts, so keys are rotated by adding a new first line everywhere,
//! then, a ticket lifetime later, dropping the last.
//!
//! File format: one key per line, the base64 of 48 random bytes
//! (`openssl rand -base64 48`): a 16-byte key name, then a 32-byte
//! AES-256-GCM key. Blank lines and `#` comments are ignored. A ticket is
//! `name || nonce || AES-256-GCM(plaintext)` with the name as associated
//! data.
//!
//! Hand-written because rustls' own ticketer generates its keys and cannot
//! take them from outside; the AEAD itself is aws-lc's.

use std::fmt;
use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use rustls::server::ProducesTickets;

use super::certs::CertError;

/// Bytes of one key: 16 of name, 32 of AES-256 key.
pub const KEY_BYTES: usize = 48;
const NAME_BYTES: usize = 16;

/// How long clients may keep a ticket: 12 hours, like rustls' default.
const LIFETIME_SECS: u32 = 12 * 3600;

struct TicketKey {
    name: [u8; NAME_BYTES],
    key: LessSafeKey,
}

/// A ticketer with keys from a file.
pub struct SharedTicketer {
    keys: Vec<TicketKey>,
    rng: SystemRandom,
}

impl fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SharedTicketer")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl SharedTicketer {
    /// Parses a key file's contents.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, CertError> {
        let err = |line: usize, message: String| {
            CertError {
            file: path.to_path_buf(),
            message: format!("line {line}: {message}"),
            hint: "each line must be the base64 of 48 random bytes; make one with `openssl rand -base64 48`".into(),
        }
        };
        let text = std::str::from_utf8(bytes).map_err(|_| err(1, "the file is not text".into()))?;
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(line)
                .map_err(|e| err(i + 1, format!("not base64: {e}")))?;
            if raw.len() != KEY_BYTES {
                return Err(err(
                    i + 1,
                    format!("{} bytes; a key is {KEY_BYTES}", raw.len()),
                ));
            }
            let mut name = [0u8; NAME_BYTES];
            name.copy_from_slice(&raw[..NAME_BYTES]);
            let key = UnboundKey::new(&AES_256_GCM, &raw[NAME_BYTES..])
                .map_err(|_| err(i + 1, "not a usable AES-256 key".into()))?;
            if keys.iter().any(|k: &TicketKey| k.name == name) {
                return Err(err(i + 1, "the same key appears twice".into()));
            }
            keys.push(TicketKey {
                name,
                key: LessSafeKey::new(key),
            });
        }
        if keys.is_empty() {
            return Err(CertError {
                file: path.to_path_buf(),
                message: "the file holds no session ticket key".into(),
                hint: "write at least one line made with `openssl rand -base64 48`".into(),
            });
        }
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let k = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_BYTES + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&k.name);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        k.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&k.name),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let name = cipher.get(..NAME_BYTES)?;
        let nonce: [u8; NONCE_LEN] = cipher
            .get(NAME_BYTES..NAME_BYTES + NONCE_LEN)?
            .try_into()
            .ok()?;
        let k = self.keys.iter().find(|k| k.name == name)?;
        let mut body = cipher.get(NAME_BYTES + NONCE_LEN..)?.to_vec();
        let plain = k
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&k.name),
                &mut body,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(seed: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([seed; KEY_BYTES])
    }

    fn ticketer(lines: &[String]) -> SharedTicketer {
        SharedTicketer::parse(Path::new("keys"), lines.join("\n").as_bytes()).expect("valid keys")
    }

    #[test]
    fn round_trip_and_rotation() {
        let old = ticketer(&[key_line(1)]);
        let ticket = old.encrypt(b"session state").expect("encrypts");
        assert_eq!(old.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        // Rotation: a new first key encrypts, the old one still decrypts.
        let rotated = ticketer(&[key_line(2), "# old key".into(), key_line(1)]);
        assert_eq!(
            rotated.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        let new_ticket = rotated.encrypt(b"x").expect("encrypts");
        assert_eq!(&new_ticket[..16], &[2u8; 16]);
        // Once the old key is gone, its tickets are refused.
        let dropped = ticketer(&[key_line(2)]);
        assert!(dropped.decrypt(&ticket).is_none());
        assert!(dropped.decrypt(&new_ticket).is_some());
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let t = ticketer(&[key_line(1)]);
        let mut ticket = t.encrypt(b"state").expect("encrypts");
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert!(t.decrypt(&ticket).is_none());
        assert!(t.decrypt(b"").is_none());
        assert!(t.decrypt(&[1u8; 20]).is_none());
    }

    #[test]
    fn bad_files_name_the_line() {
        let e = SharedTicketer::parse(Path::new("keys"), b"\n# c\nnot base64!\n").expect_err("bad");
        assert!(e.message.starts_with("line 3: not base64"), "{e}");
        let short = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
        let e = SharedTicketer::parse(Path::new("keys"), short.as_bytes()).expect_err("short");
        assert!(e.message.contains("32 bytes; a key is 48"), "{e}");
        let e = SharedTicketer::parse(Path::new("keys"), b"# nothing\n").expect_err("empty");
        assert!(e.message.contains("no session ticket key"), "{e}");
        let dup = format!("{}\n{}", key_line(3), key_line(3));
        assert!(SharedTicketer::parse(Path::new("keys"), dup.as_bytes()).is_err());
        assert!(!format!("{:?}", ticketer(&[key_line(1)])).contains("1, 1"));
    }
}
