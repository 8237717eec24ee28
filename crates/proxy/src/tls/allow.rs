//! Device allow-lists: which verified client certificates may connect.
//!
//! A rule names one or more fields of the device certificate; a device
//! matches a rule when every field the rule names matches, and is admitted
//! when it matches any rule. With no rules, every certificate the CA bundle
//! verifies is admitted. Text fields take `*` globs; pins are SHA-256
//! fingerprints of the whole certificate or of its public key (SPKI), in hex
//! with or without colons, as `openssl x509 -fingerprint -sha256` prints
//! them.
//!
//! Pure logic: the facts are extracted from the certificate once, then
//! matched without I/O.

use serde::Deserialize;
use x509_parser::prelude::*;

use super::certs::sha256_hex;

/// One allow-list rule, as written in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// Subject common name (glob).
    pub common_name: Option<String>,
    /// A SAN DNS name (glob, case-insensitive).
    pub dns: Option<String>,
    /// A SAN URI, such as a SPIFFE ID (glob).
    pub uri: Option<String>,
    /// A SAN email or the subject emailAddress (glob, case-insensitive).
    pub email: Option<String>,
    /// A subject organizational unit (glob).
    pub organizational_unit: Option<String>,
    /// SHA-256 of the whole certificate (hex, colons optional).
    pub certificate_sha256: Option<String>,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo (hex, colons optional).
    pub spki_sha256: Option<String>,
}

impl AllowRule {
    /// Checks the rule itself; returns a message for each problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let fields = [
            &self.common_name,
            &self.dns,
            &self.uri,
            &self.email,
            &self.organizational_unit,
            &self.certificate_sha256,
            &self.spki_sha256,
        ];
        if fields.iter().all(|f| f.is_none()) {
            out.push("an empty rule would admit every device; name at least one of common_name, dns, uri, email, organizational_unit, certificate_sha256, spki_sha256".to_string());
        }
        for (name, pin) in [
            ("certificate_sha256", &self.certificate_sha256),
            ("spki_sha256", &self.spki_sha256),
        ] {
            if let Some(p) = pin {
                if normalize_pin(p).is_none() {
                    out.push(format!(
                        "{name} {p:?} is not a SHA-256 fingerprint: expected 64 hex digits, with or without colons"
                    ));
                }
            }
        }
        for (name, glob) in [
            ("common_name", &self.common_name),
            ("dns", &self.dns),
            ("uri", &self.uri),
            ("email", &self.email),
            ("organizational_unit", &self.organizational_unit),
        ] {
            if glob.as_deref() == Some("") {
                out.push(format!("{name} is empty; use \"*\" to match any value"));
            }
        }
        out
    }

    /// Whether the device's facts match every field this rule names.
    pub fn matches(&self, d: &DeviceFacts) -> bool {
        let any = |pattern: &Option<String>, values: &[String], fold: bool| match pattern {
            None => true,
            Some(p) => values.iter().any(|v| glob(p, v, fold)),
        };
        let pin = |pattern: &Option<String>, value: &str| match pattern {
            None => true,
            Some(p) => normalize_pin(p).as_deref() == Some(value),
        };
        any(&self.common_name, &d.common_names, false)
            && any(&self.dns, &d.dns, true)
            && any(&self.uri, &d.uris, false)
            && any(&self.email, &d.emails, true)
            && any(&self.organizational_unit, &d.organizational_units, false)
            && pin(&self.certificate_sha256, &d.certificate_sha256)
            && pin(&self.spki_sha256, &d.spki_sha256)
    }
}

/// Lower-case hex without colons, if `p` is 64 hex digits.
pub fn normalize_pin(p: &str) -> Option<String> {
    let hex: String = p
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// `*` matches any run of characters (including none); everything else is
/// literal. Hand-written: the configuration needs only `*`, and a regex or
/// globset dependency would bring more syntax to get wrong than it saves.
pub fn glob(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = if case_insensitive {
        (
            pattern.to_lowercase().chars().collect(),
            value.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), value.chars().collect())
    };
    // Iterative matching with backtracking to the last star: linear in
    // practice, no recursion.
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// What allow-list rules can look at in a device certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFacts {
    /// Subject common names.
    pub common_names: Vec<String>,
    /// SAN DNS names.
    pub dns: Vec<String>,
    /// SAN URIs.
    pub uris: Vec<String>,
    /// SAN emails and subject emailAddress.
    pub emails: Vec<String>,
    /// Subject organizational units.
    pub organizational_units: Vec<String>,
    /// SHA-256 of the certificate, lower-case hex.
    pub certificate_sha256: String,
    /// SHA-256 of the SubjectPublicKeyInfo, lower-case hex.
    pub spki_sha256: String,
    /// The subject, for logs.
    pub subject: String,
}

impl DeviceFacts {
    /// Extracts the facts from a DER certificate.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let text = |attr: &AttributeTypeAndValue<'_>| attr.as_str().ok().map(str::to_string);
        let subject = cert.subject();
        let mut facts = Self {
            common_names: subject.iter_common_name().filter_map(text).collect(),
            organizational_units: subject
                .iter_organizational_unit()
                .filter_map(text)
                .collect(),
            emails: subject.iter_email().filter_map(text).collect(),
            certificate_sha256: sha256_hex(der),
            spki_sha256: sha256_hex(cert.public_key().raw),
            subject: subject.to_string(),
            ..Self::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => facts.dns.push(d.to_string()),
                    GeneralName::URI(u) => facts.uris.push(u.to_string()),
                    GeneralName::RFC822Name(e) => facts.emails.push(e.to_string()),
                    _ => {}
                }
            }
        }
        Some(facts)
    }
}

/// Which rule (by index) admits the device, if any.
pub fn first_match(rules: &[AllowRule], facts: &DeviceFacts) -> Option<usize> {
    rules.iter().position(|r| r.matches(facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> DeviceFacts {
        DeviceFacts {
            common_names: vec!["sensor-0042".into()],
            dns: vec!["sensor-0042.devices.example.com".into()],
            uris: vec!["spiffe://example.com/device/0042".into()],
            emails: vec!["ops@Example.com".into()],
            organizational_units: vec!["fleet-a".into()],
            certificate_sha256: "ab".repeat(32),
            spki_sha256: "cd".repeat(32),
            subject: "CN=sensor-0042".into(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob("sensor-*", "sensor-0042", false));
        assert!(glob("*", "", false));
        assert!(glob("*-00*2", "sensor-0042", false));
        assert!(!glob("sensor-*", "Sensor-0042", false));
        assert!(glob("SENSOR-*", "sensor-1", true));
        assert!(!glob("sensor", "sensor-1", false));
        assert!(glob("a*b*c", "aXXbYYc", false));
        assert!(!glob("a*b*c", "aXXbYY", false));
        assert!(glob("**", "anything", false));
    }

    #[test]
    fn rules_and_fields() {
        let f = facts();
        let rule = |r: AllowRule| r.matches(&f);
        assert!(rule(AllowRule {
            common_name: Some("sensor-*".into()),
            ..Default::default()
        }));
        assert!(!rule(AllowRule {
            common_name: Some("camera-*".into()),
            ..Default::default()
        }));
        assert!(rule(AllowRule {
            dns: Some("*.DEVICES.example.com".into()),
            ..Default::default()
        }));
        assert!(rule(AllowRule {
            uri: Some("spiffe://example.com/device/*".into()),
            ..Default::default()
        }));
        assert!(rule(AllowRule {
            email: Some("*@example.com".into()),
            ..Default::default()
        }));
        assert!(rule(AllowRule {
            organizational_unit: Some("fleet-a".into()),
            ..Default::default()
        }));
        // Every named field must match.
        assert!(!rule(AllowRule {
            common_name: Some("sensor-*".into()),
            organizational_unit: Some("fleet-b".into()),
            ..Default::default()
        }));
        let colons = (0..32).map(|_| "AB").collect::<Vec<_>>().join(":");
        assert!(rule(AllowRule {
            certificate_sha256: Some(colons),
            ..Default::default()
        }));
        assert!(rule(AllowRule {
            spki_sha256: Some("CD".repeat(32)),
            ..Default::default()
        }));
        assert!(!rule(AllowRule {
            spki_sha256: Some("ab".repeat(32)),
            ..Default::default()
        }));
        let rules = vec![
            AllowRule {
                common_name: Some("camera-*".into()),
                ..Default::default()
            },
            AllowRule {
                common_name: Some("sensor-*".into()),
                ..Default::default()
            },
        ];
        assert_eq!(first_match(&rules, &f), Some(1));
    }

    #[test]
    fn rule_problems() {
        assert_eq!(AllowRule::default().problems().len(), 1);
        let bad = AllowRule {
            certificate_sha256: Some("abc".into()),
            ..Default::default()
        };
        assert!(bad.problems()[0].contains("64 hex digits"));
        assert!(normalize_pin(&format!("sha256:{}", "0A".repeat(32))).is_some());
        let empty = AllowRule {
            common_name: Some(String::new()),
            ..Default::default()
        };
        assert!(empty.problems()[0].contains("use \"*\""));
    }
}
