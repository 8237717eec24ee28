//! The TLS policy: protocol versions, cipher suites and key exchange groups.
//!
//! This module maps the names operators write (IANA names, the OpenSSL names
//! copied from Mosquitto or nginx configs, curve aliases) onto rustls'
//! types, and refuses anything weak with a reason and a modern replacement.
//! The default is TLS 1.2 and 1.3, ECDHE only, AEAD only, with the
//! post-quantum hybrid X25519MLKEM768 preferred when the client offers it.
//!
//! It also decides who picks the suite. With the default suites moat does,
//! like BoringSSL: AES-128-GCM first, then AES-256-GCM, then
//! ChaCha20-Poly1305, whatever the client's order, unless the client puts
//! ChaCha20-Poly1305 first (a sign that it has no AES hardware, like many
//! microcontrollers), in which case the client's order decides
//! ([`client_prefers_chacha20`]). AES-128-GCM is as safe as AES-256-GCM
//! here, and its suites run the key schedule on SHA-256, which CPUs with
//! SHA extensions compute in hardware, where SHA-384 is software. With
//! `cipher_suites` set, the list is an allowlist and the client's order
//! decides, as it always has.
//!
//! Pure logic: no I/O.

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{self as provider, cipher_suite, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};

/// The resolved TLS policy of one listener.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    /// Enabled protocol versions, newest first.
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// The crypto provider restricted to the allowed suites and groups.
    pub provider: Arc<CryptoProvider>,
    /// Whether moat picks the suite in its own order (the default suites),
    /// rather than the client (an operator's `cipher_suites`).
    pub server_order: bool,
}

impl TlsPolicy {
    /// The default policy: TLS 1.2 and 1.3 with every suite and group of
    /// [`SUITES`] and [`GROUPS`].
    pub fn default_policy() -> Self {
        build("1.2", &[], &[]).unwrap_or_else(|_| unreachable!("the default policy is valid"))
    }
}

/// A problem with one policy field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// `min_version`, `cipher_suites[i]` or `groups[i]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub hint: Option<String>,
}

impl PolicyProblem {
    fn new(field: impl Into<String>, message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            hint,
        }
    }
}

/// A supported suite with the names it may be written as.
struct SuiteName {
    suite: SupportedCipherSuite,
    iana: &'static str,
    openssl: &'static str,
}

/// Every suite moat can negotiate, in moat's order of preference (Mozilla's
/// and BoringSSL's: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305). All are
/// AEAD with ephemeral (EC)DHE key exchange.
static SUITES: &[SuiteName] = &[
    SuiteName {
        suite: cipher_suite::TLS13_AES_128_GCM_SHA256,
        iana: "TLS_AES_128_GCM_SHA256",
        openssl: "TLS_AES_128_GCM_SHA256",
    },
    SuiteName {
        suite: cipher_suite::TLS13_AES_256_GCM_SHA384,
        iana: "TLS_AES_256_GCM_SHA384",
        openssl: "TLS_AES_256_GCM_SHA384",
    },
    SuiteName {
        suite: cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        iana: "TLS_CHACHA20_POLY1305_SHA256",
        openssl: "TLS_CHACHA20_POLY1305_SHA256",
    },
    SuiteName {
        suite: cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        iana: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
    },
    SuiteName {
        suite: cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        iana: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
    },
    SuiteName {
        suite: cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        iana: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
    },
    SuiteName {
        suite: cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        iana: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        openssl: "ECDHE-RSA-AES128-GCM-SHA256",
    },
    SuiteName {
        suite: cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        iana: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        openssl: "ECDHE-RSA-AES256-GCM-SHA384",
    },
    SuiteName {
        suite: cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        iana: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        openssl: "ECDHE-RSA-CHACHA20-POLY1305",
    },
];

/// A supported key exchange group with its accepted names.
struct GroupName {
    group: &'static dyn SupportedKxGroup,
    names: &'static [&'static str],
    default: bool,
}

/// Every group moat can use; the defaults in default preference order.
static GROUPS: &[GroupName] = &[
    GroupName {
        group: kx_group::X25519MLKEM768,
        names: &["X25519MLKEM768"],
        default: true,
    },
    GroupName {
        group: kx_group::X25519,
        names: &["X25519"],
        default: true,
    },
    GroupName {
        group: kx_group::SECP256R1,
        names: &["secp256r1", "P-256", "prime256v1"],
        default: true,
    },
    GroupName {
        group: kx_group::SECP384R1,
        names: &["secp384r1", "P-384"],
        default: true,
    },
    GroupName {
        group: kx_group::SECP256R1MLKEM768,
        names: &["SecP256r1MLKEM768", "P256MLKEM768"],
        default: false,
    },
    GroupName {
        group: kx_group::MLKEM768,
        names: &["MLKEM768"],
        default: false,
    },
];

/// The name an operator would recognise for a suite (IANA).
pub fn suite_name(suite: SupportedCipherSuite) -> &'static str {
    SUITES
        .iter()
        .find(|s| s.suite.suite() == suite.suite())
        .map(|s| s.iana)
        .unwrap_or("unknown")
}

/// The OpenSSL name of a suite (what HAProxy and brokers print).
pub fn openssl_suite_name(suite: SupportedCipherSuite) -> &'static str {
    SUITES
        .iter()
        .find(|s| s.suite.suite() == suite.suite())
        .map(|s| s.openssl)
        .unwrap_or("unknown")
}

/// Why a suite name cannot be used, or `None` when it can.
pub fn suite_problem(name: &str) -> Option<String> {
    parse_suite(name)
        .err()
        .map(|(message, hint)| format!("{message}; {hint}"))
}

/// Whether a client that offers `client` (its suites, in its order) should
/// have its own order followed: when the first of them that `ours` contains
/// is a ChaCha20-Poly1305 suite. Clients list their TLS 1.3 suites first,
/// so for a TLS 1.3 client this is its first TLS 1.3 suite, BoringSSL's
/// signal of a device without AES hardware.
pub fn client_prefers_chacha20(client: &[CipherSuite], ours: &[SupportedCipherSuite]) -> bool {
    client
        .iter()
        .find(|c| ours.iter().any(|s| s.suite() == **c))
        .is_some_and(|c| {
            matches!(
                c,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                    | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            )
        })
}

/// Builds a policy from the configured strings.
pub fn build(
    min_version: &str,
    suites: &[String],
    groups: &[String],
) -> Result<TlsPolicy, Vec<PolicyProblem>> {
    let mut problems = Vec::new();

    let versions = match parse_min_version(min_version) {
        Ok(v) => v,
        Err(p) => {
            problems.push(p);
            vec![&rustls::version::TLS13, &rustls::version::TLS12]
        }
    };

    let mut chosen_suites = Vec::new();
    for (index, entry) in suites.iter().enumerate() {
        // An OpenSSL-style "A:B:C" list, as copied from Mosquitto's
        // `ciphers`, counts as several entries.
        for name in entry.split(':').map(str::trim).filter(|n| !n.is_empty()) {
            match parse_suite(name) {
                Ok(s) => {
                    if !chosen_suites
                        .iter()
                        .any(|c: &SupportedCipherSuite| c.suite() == s.suite())
                    {
                        chosen_suites.push(s);
                    }
                }
                Err((message, hint)) => problems.push(PolicyProblem::new(
                    format!("cipher_suites[{index}]"),
                    message,
                    Some(hint),
                )),
            }
        }
    }
    if suites.is_empty() {
        chosen_suites = SUITES.iter().map(|s| s.suite).collect();
    } else if problems.is_empty() {
        let has13 = chosen_suites
            .iter()
            .any(|s| s.version() == &rustls::version::TLS13);
        let has12 = chosen_suites
            .iter()
            .any(|s| s.version() == &rustls::version::TLS12);
        if versions.contains(&&rustls::version::TLS13) && !has13 {
            problems.push(PolicyProblem::new(
                "cipher_suites",
                "no TLS 1.3 suite is listed, so TLS 1.3 clients could not connect",
                Some("add TLS_AES_128_GCM_SHA256 and TLS_AES_256_GCM_SHA384, or remove cipher_suites to use the secure default".into()),
            ));
        }
        if versions.contains(&&rustls::version::TLS12) && !has12 {
            problems.push(PolicyProblem::new(
                "cipher_suites",
                "no TLS 1.2 suite is listed, so TLS 1.2 clients could not connect",
                Some("set min_version: \"1.3\", or add ECDHE-ECDSA-AES128-GCM-SHA256 / ECDHE-RSA-AES128-GCM-SHA256".into()),
            ));
        }
    }

    let mut chosen_groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for (i, name) in groups.iter().enumerate() {
        match parse_group(name) {
            Ok(g) => {
                if !chosen_groups.iter().any(|c| c.name() == g.name()) {
                    chosen_groups.push(g);
                }
            }
            Err((message, hint)) => problems.push(PolicyProblem::new(
                format!("groups[{i}]"),
                message,
                Some(hint),
            )),
        }
    }
    if groups.is_empty() {
        chosen_groups = GROUPS
            .iter()
            .filter(|g| g.default)
            .map(|g| g.group)
            .collect();
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(TlsPolicy {
        versions,
        provider: Arc::new(CryptoProvider {
            cipher_suites: chosen_suites,
            kx_groups: chosen_groups,
            ..provider::default_provider()
        }),
        server_order: suites.is_empty(),
    })
}

fn parse_min_version(v: &str) -> Result<Vec<&'static SupportedProtocolVersion>, PolicyProblem> {
    let norm = v.trim().to_ascii_lowercase();
    let norm = norm
        .strip_prefix("tlsv")
        .or_else(|| norm.strip_prefix("tls"))
        .unwrap_or(&norm)
        .trim();
    match norm {
        "1.2" | "1_2" => Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]),
        "1.3" | "1_3" => Ok(vec![&rustls::version::TLS13]),
        "1" | "1.0" | "1.1" | "1_0" | "1_1" => Err(PolicyProblem::new(
            "min_version",
            format!("TLS {norm} is not supported: TLS 1.0 and 1.1 are deprecated by RFC 8996 and fail PCI DSS and every TLS scanner"),
            Some("use \"1.2\" (the default) or \"1.3\"; devices that only speak TLS 1.0/1.1 need a firmware update".into()),
        )),
        _ => Err(PolicyProblem::new(
            "min_version",
            format!("{v:?} is not a TLS version moat supports"),
            Some("use \"1.2\" or \"1.3\"".into()),
        )),
    }
}

fn parse_suite(name: &str) -> Result<SupportedCipherSuite, (String, String)> {
    let upper = name.to_ascii_uppercase().replace(' ', "");
    for s in SUITES {
        let rustls_name = s.suite.suite().as_str().unwrap_or("");
        if upper == s.iana || upper == s.openssl || upper == rustls_name {
            return Ok(s.suite);
        }
    }
    if let Some(reason) = weakness(&upper) {
        return Err((
            format!("cipher suite {name:?} is refused: {reason}"),
            format!(
                "use {} instead, or remove cipher_suites to use the secure default",
                modern_equivalent(&upper)
            ),
        ));
    }
    if is_openssl_cipher_string(&upper) {
        return Err((
            format!("{name:?} is an OpenSSL cipher-string keyword, not a cipher suite name"),
            "list suite names such as ECDHE-ECDSA-AES128-GCM-SHA256, or remove cipher_suites: the default already excludes everything weak".into(),
        ));
    }
    let closest = SUITES
        .iter()
        .flat_map(|s| [s.iana, s.openssl])
        .min_by_key(|c| strsim::levenshtein(&upper, c))
        .unwrap_or("TLS_AES_128_GCM_SHA256");
    Err((
        format!("unknown cipher suite {name:?}"),
        format!(
            "did you mean {closest}? Supported: {}",
            SUITES
                .iter()
                .map(|s| s.openssl)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// Why a recognised but unacceptable suite is refused.
fn weakness(n: &str) -> Option<&'static str> {
    let has = |s: &str| n.contains(s);
    let reason = if has("NULL") {
        "it does not encrypt at all"
    } else if has("EXP") && (n.starts_with("EXP") || has("EXPORT")) {
        "export-grade ciphers are breakable in minutes (FREAK, Logjam)"
    } else if has("RC4") {
        "RC4 is broken (RFC 7465 forbids it)"
    } else if has("DES") {
        "DES and 3DES use a 64-bit block and are broken by Sweet32"
    } else if has("ANON") || n.starts_with("ADH") || n.starts_with("AECDH") {
        "anonymous suites authenticate nobody"
    } else if has("PSK") || has("SRP") {
        "PSK and SRP suites are not supported; moat authenticates with certificates"
    } else if has("CAMELLIA") || has("ARIA") || has("SEED") || has("IDEA") {
        "this cipher is not offered by moat's TLS library; AES-GCM and ChaCha20-Poly1305 are"
    } else if has("CCM") {
        "AES-CCM is not offered; use AES-GCM"
    } else if n.starts_with("TLS_RSA_") || n.starts_with("RSA-") || looks_like_openssl_rsa_kx(n) {
        "static RSA key exchange has no forward secrecy and is open to ROBOT-style attacks"
    } else if n.starts_with("TLS_DHE_") || n.starts_with("DHE-") || n.starts_with("EDH-") {
        "finite-field DHE is not offered: it is slow and prone to weak parameters (Logjam); ECDHE gives the same forward secrecy"
    } else if n.starts_with("TLS_ECDH_") || n.starts_with("ECDH-") {
        "static ECDH key exchange has no forward secrecy"
    } else if has("CBC")
        || has("_SHA") && !has("GCM") && !has("CHACHA")
        || n.ends_with("-SHA")
        || n.ends_with("-SHA256") && !has("GCM")
        || n.ends_with("-SHA384") && !has("GCM")
    {
        "CBC-mode suites are not AEAD and have a history of padding-oracle attacks (Lucky13, POODLE)"
    } else {
        return None;
    };
    Some(reason)
}

/// OpenSSL names static-RSA suites without a key exchange prefix:
/// `AES128-GCM-SHA256`, `AES256-SHA`.
fn looks_like_openssl_rsa_kx(n: &str) -> bool {
    n.starts_with("AES") || n.starts_with("CHACHA")
}

fn is_openssl_cipher_string(n: &str) -> bool {
    n.contains(['!', '+', '@'])
        || matches!(
            n,
            "HIGH"
                | "MEDIUM"
                | "LOW"
                | "DEFAULT"
                | "ALL"
                | "COMPLEMENTOFDEFAULT"
                | "COMPLEMENTOFALL"
                | "EECDH"
                | "ECDHE"
                | "KECDHE"
                | "EDH"
                | "AESGCM"
                | "AES"
                | "ARSA"
                | "AECDSA"
                | "SUITEB128"
                | "SUITEB192"
                | "FIPS"
                | "SECURE"
        )
}

/// The supported suite closest in spirit to a refused one: same
/// authentication and key size, but ECDHE and GCM.
fn modern_equivalent(n: &str) -> &'static str {
    let ecdsa = n.contains("ECDSA");
    let big =
        n.contains("256") && !n.contains("AES_128") && !n.contains("AES128") || n.contains("384");
    let openssl_style = !n.starts_with("TLS_");
    match (openssl_style, ecdsa, big) {
        (true, true, true) => "ECDHE-ECDSA-AES256-GCM-SHA384",
        (true, true, false) => "ECDHE-ECDSA-AES128-GCM-SHA256",
        (true, false, true) => "ECDHE-RSA-AES256-GCM-SHA384",
        (true, false, false) => "ECDHE-RSA-AES128-GCM-SHA256",
        (false, true, true) => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        (false, true, false) => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        (false, false, true) => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        (false, false, false) => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    }
}

fn parse_group(name: &str) -> Result<&'static dyn SupportedKxGroup, (String, String)> {
    let trimmed = name.trim();
    for g in GROUPS {
        if g.names.iter().any(|n| n.eq_ignore_ascii_case(trimmed)) {
            return Ok(g.group);
        }
    }
    let lower = trimmed.to_ascii_lowercase();
    let supported = GROUPS
        .iter()
        .map(|g| g.names[0])
        .collect::<Vec<_>>()
        .join(", ");
    let message = if lower.starts_with("ffdhe") {
        format!("group {trimmed:?} is refused: finite-field groups are slow and not offered")
    } else if matches!(lower.as_str(), "secp521r1" | "p-521" | "x448") {
        format!("group {trimmed:?} is not offered by moat's TLS library")
    } else {
        format!("unknown key exchange group {trimmed:?}")
    };
    Err((
        message,
        format!("use one of {supported}, or remove groups to use the default"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn suite_err(name: &str) -> PolicyProblem {
        build("1.2", &s(&[name]), &[])
            .expect_err("refused")
            .remove(0)
    }

    #[test]
    fn default_policy_is_modern() {
        let p = TlsPolicy::default_policy();
        assert_eq!(p.versions.len(), 2);
        assert_eq!(p.provider.cipher_suites.len(), 9);
        assert!(p.server_order);
        let names: Vec<_> = p
            .provider
            .cipher_suites
            .iter()
            .map(|c| openssl_suite_name(*c))
            .collect();
        assert_eq!(
            names,
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-RSA-CHACHA20-POLY1305",
            ]
        );
        let first = p.provider.kx_groups[0].name();
        assert_eq!(first, rustls::NamedGroup::X25519MLKEM768);
        assert_eq!(p.provider.kx_groups[1].name(), rustls::NamedGroup::X25519);
        assert_eq!(
            p.provider.kx_groups[2].name(),
            rustls::NamedGroup::secp256r1
        );
    }

    #[test]
    fn openssl_and_iana_names_are_accepted() {
        let p = build(
            "1.2",
            &s(&[
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "tls_aes_128_gcm_sha256",
                "TLS13_AES_256_GCM_SHA384",
            ]),
            &[],
        )
        .expect("valid");
        assert!(
            !p.server_order,
            "an operator's list leaves the choice to the client"
        );
        let names: Vec<_> = p
            .provider
            .cipher_suites
            .iter()
            .map(|c| suite_name(*c))
            .collect();
        assert_eq!(
            names,
            [
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384"
            ]
        );
    }

    #[test]
    fn chacha20_first_clients_keep_their_order() {
        use CipherSuite as C;
        let ours = TlsPolicy::default_policy().provider.cipher_suites.clone();
        let prefers = |client: &[C]| client_prefers_chacha20(client, &ours);
        // OpenSSL's and rustls' default order.
        assert!(!prefers(&[
            C::TLS13_AES_256_GCM_SHA384,
            C::TLS13_CHACHA20_POLY1305_SHA256,
            C::TLS13_AES_128_GCM_SHA256,
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ]));
        // A device without AES hardware.
        assert!(prefers(&[
            C::TLS13_CHACHA20_POLY1305_SHA256,
            C::TLS13_AES_128_GCM_SHA256,
        ]));
        // Suites moat does not offer do not count; TLS 1.2-only clients too.
        assert!(prefers(&[
            C::TLS_EMPTY_RENEGOTIATION_INFO_SCSV,
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ]));
        assert!(!prefers(&[
            C::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
            C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ]));
        assert!(!prefers(&[]));
        // ChaCha20 first but not allowed by the operator: AES decides.
        let aes_only = build("1.3", &s(&["TLS_AES_128_GCM_SHA256"]), &[]).expect("valid");
        assert!(!client_prefers_chacha20(
            &[
                C::TLS13_CHACHA20_POLY1305_SHA256,
                C::TLS13_AES_128_GCM_SHA256
            ],
            &aes_only.provider.cipher_suites
        ));
    }

    #[test]
    fn mosquitto_colon_list_is_split() {
        let p = build(
            "1.3",
            &s(&["TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"]),
            &[],
        )
        .expect("valid");
        assert_eq!(p.provider.cipher_suites.len(), 2);
    }

    #[test]
    fn cbc_is_refused_with_gcm_suggestion() {
        let e = suite_err("ECDHE-ECDSA-AES128-SHA");
        assert_eq!(e.field, "cipher_suites[0]");
        assert!(e.message.contains("CBC"), "{e:?}");
        assert!(e.hint.unwrap().contains("ECDHE-ECDSA-AES128-GCM-SHA256"));

        let e = suite_err("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384");
        assert!(e.message.contains("CBC"), "{e:?}");
        assert!(e
            .hint
            .unwrap()
            .contains("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"));
    }

    #[test]
    fn rsa_key_exchange_is_refused() {
        for n in [
            "AES128-GCM-SHA256",
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
            "AES256-SHA",
        ] {
            let e = suite_err(n);
            assert!(e.message.contains("forward secrecy"), "{n}: {e:?}");
        }
        let e = suite_err("AES256-GCM-SHA384");
        assert!(e.hint.unwrap().contains("ECDHE-RSA-AES256-GCM-SHA384"));
    }

    #[test]
    fn other_weak_suites_have_reasons() {
        for (n, why) in [
            ("DES-CBC3-SHA", "Sweet32"),
            ("RC4-SHA", "RC4"),
            ("NULL-SHA256", "encrypt"),
            ("EXP-RC4-MD5", "export"),
            ("DHE-RSA-AES128-GCM-SHA256", "finite-field"),
            ("ECDH-ECDSA-AES128-GCM-SHA256", "static ECDH"),
            ("ADH-AES128-GCM-SHA256", "anonymous"),
            ("PSK-AES128-GCM-SHA256", "PSK"),
            ("ECDHE-ECDSA-AES128-CCM", "CCM"),
            ("ECDHE-RSA-CAMELLIA128-SHA256", "not offered"),
        ] {
            let e = suite_err(n);
            assert!(e.message.contains(why), "{n}: {e:?}");
        }
    }

    #[test]
    fn cipher_strings_and_typos_are_explained() {
        let e = suite_err("HIGH:!aNULL");
        assert!(e.message.contains("OpenSSL cipher-string"), "{e:?}");
        let e = suite_err("ECDHE-ECDSA-AES256-GCM-SHA348");
        assert!(e.message.contains("unknown"), "{e:?}");
        assert!(e
            .hint
            .unwrap()
            .contains("did you mean ECDHE-ECDSA-AES256-GCM-SHA384"));
    }

    #[test]
    fn suites_must_cover_the_enabled_versions() {
        let e = build("1.2", &s(&["TLS_AES_128_GCM_SHA256"]), &[]).expect_err("no 1.2 suite");
        assert!(e[0].message.contains("TLS 1.2 clients"), "{e:?}");
        let e = build("1.2", &s(&["ECDHE-RSA-AES128-GCM-SHA256"]), &[]).expect_err("no 1.3");
        assert!(e[0].message.contains("TLS 1.3 clients"), "{e:?}");
        assert!(build("1.3", &s(&["TLS_AES_128_GCM_SHA256"]), &[]).is_ok());
    }

    #[test]
    fn versions() {
        assert_eq!(parse_min_version("1.3").expect("ok").len(), 1);
        assert_eq!(parse_min_version("tlsv1.2").expect("ok").len(), 2);
        assert_eq!(parse_min_version("TLSv1.3").expect("ok").len(), 1);
        for old in ["1.0", "1.1", "tlsv1.1", "1"] {
            let e = parse_min_version(old).expect_err("old");
            assert!(e.message.contains("RFC 8996"), "{old}");
        }
        assert!(parse_min_version("2.0")
            .expect_err("bad")
            .message
            .contains("not a TLS version"));
    }

    #[test]
    fn groups() {
        let p = build("1.2", &[], &s(&["P-256", "x25519"])).expect("ok");
        let names: Vec<_> = p.provider.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            [rustls::NamedGroup::secp256r1, rustls::NamedGroup::X25519]
        );
        let e = build("1.2", &[], &s(&["ffdhe2048"])).expect_err("ffdhe");
        assert_eq!(e[0].field, "groups[0]");
        assert!(e[0].message.contains("finite-field"));
        let e = build("1.2", &[], &s(&["curve25519"])).expect_err("unknown");
        assert!(e[0].hint.as_ref().expect("hint").contains("X25519MLKEM768"));
    }
}
