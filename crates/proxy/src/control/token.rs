//! The admin API's bearer token: read once at start-up from
//! `admin.token_file`, kept only as its SHA-256 digest, and compared in
//! constant time.
//!
//! Comparing digests rather than the tokens makes the comparison's length
//! fixed, so neither the time taken nor an early exit says how much of a
//! guess was right, or how long the token is.

use std::path::Path;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{digest, SHA256};

/// Tokens shorter than this are refused: they could be guessed.
const MIN_TOKEN_LEN: usize = 16;

/// The admin token, as its digest.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    // Never the digest: it identifies the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

impl AdminToken {
    /// The token in `text` (a file's contents: surrounding white space,
    /// a trailing newline included, is not part of it).
    pub fn parse(text: &str) -> Result<Self, String> {
        let token = text.trim();
        if token.is_empty() {
            return Err(
                "the file is empty; write a token into it, e.g. `openssl rand -hex 32 > FILE`"
                    .into(),
            );
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token is {} characters, at least {MIN_TOKEN_LEN} are needed; generate one with `openssl rand -hex 32`",
                token.len()
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the token contains white space or control characters; an Authorization header cannot carry them".into());
        }
        Ok(Self {
            digest: sha256(token.as_bytes()),
        })
    }

    /// Reads the token from `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("admin.token_file: cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("admin.token_file: {}: {e}", path.display()))
    }

    /// Whether an `Authorization` header value carries this token as
    /// `Bearer <token>`.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let presented = authorization
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .unwrap_or(b"");
        // Always hash and compare, even with nothing presented, so that a
        // missing header takes as long as a wrong one.
        let ok = verify_slices_are_equal(&sha256(presented.trim_ascii()), &self.digest).is_ok();
        ok && authorization.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn the_right_bearer_token_is_accepted() {
        let t = AdminToken::parse(&format!("{TOKEN}\n")).unwrap();
        assert!(t.accepts(Some(format!("Bearer {TOKEN}").as_bytes())));
    }

    #[test]
    fn anything_else_is_refused() {
        let t = AdminToken::parse(TOKEN).unwrap();
        assert!(!t.accepts(None));
        assert!(!t.accepts(Some(b"")));
        assert!(!t.accepts(Some(TOKEN.as_bytes())), "no Bearer scheme");
        assert!(!t.accepts(Some(format!("Basic {TOKEN}").as_bytes())));
        assert!(!t.accepts(Some(format!("Bearer {TOKEN}x").as_bytes())));
        assert!(!t.accepts(Some(b"Bearer 0123456789abcdef012")));
    }

    #[test]
    fn weak_or_empty_tokens_are_refused_with_a_way_out() {
        assert!(AdminToken::parse(" \n").unwrap_err().contains("empty"));
        assert!(AdminToken::parse("short")
            .unwrap_err()
            .contains("openssl rand"));
        assert!(AdminToken::parse("0123456789 abcdef0123").is_err());
    }

    #[test]
    fn debug_output_hides_the_token() {
        let t = AdminToken::parse(TOKEN).unwrap();
        assert_eq!(format!("{t:?}"), "AdminToken(..)");
    }
}
