//! The checks of a certificate entry: `cert` and `key`, or `acme` with a
//! directory URL, domains and contacts that an ACME CA can accept.

use std::path::Path;

use super::super::error::ConfigError;
use super::super::schema::{AcmeChallenge, CertificateConfig, ListenerConfig};

/// Problems with each `tls.certificates[j]` of a listener.
pub(super) fn check(path: &Path, prefix: &str, l: &ListenerConfig, errors: &mut Vec<ConfigError>) {
    for (j, c) in l.tls.certificates.iter().enumerate() {
        let at = format!("{prefix}.tls.certificates[{j}]");
        check_entry(path, &at, c, errors);
    }
}

fn check_entry(path: &Path, at: &str, c: &CertificateConfig, errors: &mut Vec<ConfigError>) {
    let mut push = |field: &str, msg: &str, hint: &str| {
        errors.push(ConfigError::at(path, format!("{at}.{field}"), msg).hint(hint));
    };
    let files = !c.cert.as_os_str().is_empty() || !c.key.as_os_str().is_empty();
    let Some(a) = &c.acme else {
        if c.cert.as_os_str().is_empty() {
            push("cert", "missing", "set cert and key, or acme");
        }
        if c.key.as_os_str().is_empty() {
            push("key", "missing", "set cert and key, or acme");
        }
        return;
    };
    if files {
        push(
            "acme",
            "cannot be combined with cert or key",
            "an ACME entry keeps its files in acme.state_dir; remove cert and key",
        );
    }
    if !(a.directory.starts_with("https://") || a.directory.starts_with("http://")) {
        push(
            "acme.directory",
            "must be an http(s) URL",
            "e.g. https://acme-v02.api.letsencrypt.org/directory",
        );
    }
    if a.domains.is_empty() {
        push(
            "acme.domains",
            "needs at least one name",
            "list the names devices use to reach this listener",
        );
    }
    for (k, d) in a.domains.iter().enumerate() {
        if !valid_domain(d) {
            push(
                &format!("acme.domains[{k}]"),
                &format!("{d:?} is not a DNS name"),
                "HTTP-01 and TLS-ALPN-01 validate plain DNS names: no wildcards, IP addresses, ports or schemes",
            );
        }
    }
    for (k, m) in a.contact.iter().enumerate() {
        if !m.starts_with("mailto:") {
            push(
                &format!("acme.contact[{k}]"),
                &format!("{m:?} is not a mailto: URL"),
                "write contacts as mailto:ops@example.com",
            );
        }
    }
    match (a.challenge, a.http01_listen) {
        (AcmeChallenge::Http01, None) => push(
            "acme.http01_listen",
            "missing: challenge http-01 needs a listener for the CA's requests",
            "e.g. http01_listen: 0.0.0.0:80 (port 80 of every name must reach it), or challenge: tls-alpn-01",
        ),
        (AcmeChallenge::TlsAlpn01, Some(_)) => push(
            "acme.http01_listen",
            "is only used with challenge: http-01",
            "remove http01_listen: TLS-ALPN-01 is answered on this listener itself",
        ),
        _ => {}
    }
    if a.eab.as_ref().is_some_and(|e| e.kid.is_empty()) {
        push(
            "acme.eab.kid",
            "is empty",
            "use the key identifier your CA gave",
        );
    }
}

/// A DNS name HTTP-01 can validate: letters, digits, hyphens and dots,
/// labels of 1 to 63 characters, no wildcard.
fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::valid_domain;
    use crate::config::{parse, AcmeKeyType};
    use std::path::{Path, PathBuf};

    const ACME: &str = "
listeners:
  - name: mqtts
    listen: 127.0.0.1:8883
    backend: 127.0.0.1:1883
    tls:
      certificates:
        - acme:
            directory: https://127.0.0.1:14000/dir
            contact: [mailto:ops@example.com]
            domains: [moat.test]
            state_dir: acme
            http01_listen: 127.0.0.1:5002
";

    fn errors(text: &str) -> String {
        parse(Path::new("/etc/moat/moat.yaml"), text)
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn an_acme_entry_reads_its_files_from_state_dir() {
        let c = parse(Path::new("/etc/moat/moat.yaml"), ACME).expect("valid");
        let e = &c.config.listeners[0].tls.certificates[0];
        assert_eq!(e.cert, PathBuf::from("/etc/moat/acme/cert.pem"));
        assert_eq!(e.key, PathBuf::from("/etc/moat/acme/key.pem"));
        let a = e.acme.as_ref().expect("acme");
        assert_eq!(a.key_type, AcmeKeyType::EcdsaP256);
        assert_eq!(a.state_dir, PathBuf::from("/etc/moat/acme"));
    }

    #[test]
    fn bad_acme_input_names_the_field() {
        let e = errors(&ACME.replace("[moat.test]", "['*.moat.test']"));
        assert!(e.contains("certificates[0].acme.domains[0]"), "{e}");
        let e = errors(&ACME.replace("mailto:ops", "ops"));
        assert!(e.contains("acme.contact[0]"), "{e}");
        let e = errors(&ACME.replace("https://127", "ftp://127"));
        assert!(e.contains("acme.directory"), "{e}");
        let e = errors(&ACME.replace("        - acme:", "        - cert: a.pem\n          acme:"));
        assert!(e.contains("certificates[0].acme"), "{e}");
        assert!(e.contains("cannot be combined"), "{e}");
        let e = errors(&ACME.replace("state_dir", "stat_dir"));
        assert!(e.contains("did you mean `state_dir`?"), "{e}");
        let e = errors(&ACME.replace(
            "domains: [moat.test]",
            "domains: [moat.test]\n            key_type: rsa1024",
        ));
        assert!(e.contains("key_type"), "{e}");
        let e = errors(&ACME.replace("            http01_listen: 127.0.0.1:5002\n", ""));
        assert!(e.contains("certificates[0].acme.http01_listen"), "{e}");
        assert!(e.contains("missing"), "{e}");
        let e = errors(&ACME.replace(
            "http01_listen",
            "challenge: tls-alpn-01\n            http01_listen",
        ));
        assert!(e.contains("acme.http01_listen"), "{e}");
        assert!(e.contains("only used with challenge: http-01"), "{e}");
        let e = errors(&ACME.replace(
            "http01_listen",
            "challenge: dns-01\n            http01_listen",
        ));
        assert!(e.contains("challenge"), "{e}");
    }

    #[test]
    fn tls_alpn_01_needs_no_http_listener() {
        let text = ACME.replace(
            "            http01_listen: 127.0.0.1:5002\n",
            "            challenge: tls-alpn-01\n            key_type: ed25519\n",
        );
        let c = parse(Path::new("/etc/moat/moat.yaml"), &text).expect("valid");
        let a = c.config.listeners[0].tls.certificates[0]
            .acme
            .as_ref()
            .expect("acme");
        assert_eq!(a.challenge, crate::config::AcmeChallenge::TlsAlpn01);
        assert_eq!(a.http01_listen, None);
        assert_eq!(a.key_type, AcmeKeyType::Ed25519);
    }

    #[test]
    fn an_entry_without_files_or_acme_is_refused() {
        let e = errors(&ACME.replace(
            "        - acme:",
            "        - ocsp_file: x\n          acme2:",
        ));
        assert!(e.contains("acme2"), "{e}");
        let text =
            ACME.split("        - acme:").next().unwrap().to_string() + "        - key: k.pem\n";
        let e = errors(&text);
        assert!(e.contains("certificates[0].cert"), "{e}");
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn domains() {
        assert!(valid_domain("moat.test"));
        assert!(valid_domain("a-b.example.com"));
        assert!(!valid_domain("*.example.com"));
        assert!(!valid_domain("example.com:443"));
        assert!(!valid_domain("-a.example"));
        assert!(!valid_domain(""));
        assert!(!valid_domain("a..b"));
    }
}
