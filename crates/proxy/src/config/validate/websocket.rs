//! The checks of a listener's `websocket:` section: a path that is a
//! path, Origins that are origins, sizes that hold an MQTT packet, and an
//! ALPN list that lets browsers in.

use std::path::Path;

use super::super::error::ConfigError;
use super::super::schema::ListenerConfig;

/// Problems with `{prefix}.websocket` (and the `tls.alpn` it needs).
pub(super) fn check(path: &Path, prefix: &str, l: &ListenerConfig, errors: &mut Vec<ConfigError>) {
    let Some(ws) = &l.websocket else {
        return;
    };
    let mut push = |field: &str, msg: String, hint: &str| {
        errors.push(ConfigError::at(path, format!("{prefix}.{field}"), msg).hint(hint));
    };
    if let Err(why) = check_path(&ws.path) {
        push(
            "websocket.path",
            format!("{:?} {why}", ws.path),
            "write an absolute path such as /mqtt",
        );
    }
    for (k, origin) in ws.origins.iter().enumerate() {
        if let Err(why) = check_origin(origin) {
            push(
                &format!("websocket.origins[{k}]"),
                format!("{origin:?} {why}"),
                "write the origin as a browser sends it: scheme://host[:port], e.g. https://dash.example.com",
            );
        }
    }
    if ws.max_frame_size < 2 {
        push(
            "websocket.max_frame_size",
            "must be at least 2 bytes (the smallest MQTT packet)".into(),
            "remove it for the default of 1 MiB",
        );
    }
    if ws.max_message_size < ws.max_frame_size {
        push(
            "websocket.max_message_size",
            format!(
                "{} is smaller than max_frame_size ({})",
                ws.max_message_size, ws.max_frame_size
            ),
            "make it at least max_frame_size",
        );
    }
    let alpn = &l.tls.alpn;
    if alpn.iter().any(|p| p == "h2") {
        push(
            "tls.alpn",
            "lists h2, but WebSockets over HTTP/2 (RFC 8441) are not served".into(),
            "remove h2: browsers then use http/1.1 for wss://",
        );
    }
    if !alpn.is_empty() && !alpn.iter().any(|p| p == "http/1.1") {
        push(
            "tls.alpn",
            "does not list http/1.1, so a browser's wss:// handshake would be refused with no_application_protocol".into(),
            "add http/1.1 to tls.alpn, or remove tls.alpn",
        );
    }
}

/// Why `p` is not an acceptable request path.
fn check_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("does not start with /");
    }
    if p.len() > 1024 {
        return Err("is longer than 1024 bytes");
    }
    if p.chars()
        .any(|c| c == '?' || c == '#' || !c.is_ascii_graphic())
    {
        return Err("holds a query, a fragment, a space or a non-ASCII character");
    }
    Ok(())
}

/// Why `o` is not an origin (RFC 6454 serialization: scheme, host, port).
fn check_origin(o: &str) -> Result<(), &'static str> {
    let Some((scheme, rest)) = o.split_once("://") else {
        return Err("has no scheme");
    };
    if !matches!(scheme, "https" | "http") {
        return Err("has a scheme other than https or http");
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("is not just a host and port (no path, no trailing /)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_origin, check_path};

    #[test]
    fn paths() {
        assert!(check_path("/mqtt").is_ok());
        assert!(check_path("/a/b-c_d").is_ok());
        assert!(check_path("mqtt").is_err());
        assert!(check_path("/mqtt?x=1").is_err());
        assert!(check_path("/m qtt").is_err());
    }

    #[test]
    fn origins() {
        assert!(check_origin("https://dash.example.com").is_ok());
        assert!(check_origin("http://127.0.0.1:8080").is_ok());
        assert!(check_origin("dash.example.com").is_err());
        assert!(check_origin("https://dash.example.com/").is_err());
        assert!(check_origin("ftp://x").is_err());
        assert!(check_origin("null").is_err());
    }
}
