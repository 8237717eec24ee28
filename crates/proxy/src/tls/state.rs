//! [`ListenerTls`]: one complete TLS state of a listener, built as one
//! value from files already read, and [`Resumption`], the keys that let
//! devices resume and outlive it. [`prepare`] builds every listener's at
//! start-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::server::{
    NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::ServerConfig;

use super::certs::{self, CertError, CertInfo, LoadedCert};
use super::files::{Digest, Sources};
use super::policy::{self, TlsPolicy};
use super::{client_auth, resolver, tickets};
use crate::config::{ListenerConfig, ValidConfig};

/// Number of TLS 1.2 session IDs remembered per listener.
const SESSION_CACHE_SIZE: usize = 4096;

/// What logs and reload answers say for a listener that serves no
/// certificate yet.
pub const NO_CERTIFICATE_YET: &str = "none yet (ACME pending)";

/// The complete TLS state of a listener at one point in time.
pub struct ListenerTls {
    /// What handshakes use: the client's order of suites decides.
    pub server_config: Arc<ServerConfig>,
    /// The same configuration with moat's order of suites deciding
    /// (AES-128-GCM first), for clients that do not put ChaCha20-Poly1305
    /// first; `None` when the operator lists `cipher_suites`. It shares
    /// everything else (resolver, verifier, ticket keys, session cache)
    /// with `server_config`. See [`ListenerTls::config_for`].
    pub server_order_config: Option<Arc<ServerConfig>>,
    /// The served certificates, in configuration order.
    pub certs: Vec<LoadedCert>,
    /// For each of `certs`, its index in `tls.certificates` (they differ
    /// while an ACME entry is pending).
    pub entries: Vec<usize>,
    /// The ACME entries (indices in `tls.certificates`) with no certificate
    /// yet: their names are refused, and the process is not ready.
    pub pending: Vec<usize>,
    /// The client CA bundle (empty without mutual TLS).
    pub client_cas: Vec<CertInfo>,
    /// The client CA bundle, DER, in the same order (the issuers OCSP
    /// checks of device certificates need).
    pub client_ca_ders: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The client CA bundle file, if any.
    pub client_ca_path: Option<PathBuf>,
    /// The CRLs for client certificates.
    pub crls: Vec<client_auth::CrlInfo>,
    /// The certificate resolver (for connecting stapling tasks).
    pub resolver: Arc<resolver::SniResolver>,
    /// The client verifier, to re-check resumed sessions.
    pub client_verifier: Option<Arc<client_auth::DeviceVerifier>>,
    /// When this state was built.
    pub loaded_at: SystemTime,
    /// Hash of every file it was built from.
    pub digest: Digest,
    /// Hash of the files that decide who may connect.
    pub client_auth_digest: Digest,
    /// Hash of the session ticket key file.
    pub ticket_keys_digest: Digest,
}

impl ListenerTls {
    /// The serial of the default (first served) certificate, or a note
    /// that none is served yet (every entry a pending ACME one).
    pub fn default_serial(&self) -> String {
        self.certs.first().map_or_else(
            || NO_CERTIFICATE_YET.to_string(),
            |c| c.leaf().serial.clone(),
        )
    }

    /// The index in `tls.certificates` of served certificate `index`.
    pub fn entry(&self, index: usize) -> usize {
        self.entries.get(index).copied().unwrap_or(index)
    }

    /// Verifies a client chain against this state's client-auth settings
    /// (CA bundle, CRLs, allow-list) as of now; Ok when the listener does
    /// not verify clients. A resumed session's check, and a reload's
    /// re-check of every live session.
    pub fn verify_client(
        &self,
        chain: &[rustls::pki_types::CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let (Some(verifier), Some((end_entity, intermediates))) =
            (&self.client_verifier, chain.split_first())
        else {
            return Ok(());
        };
        use rustls::server::danger::ClientCertVerifier;
        verifier
            .verify_client_cert(
                end_entity,
                intermediates,
                rustls::pki_types::UnixTime::now(),
            )
            .map(|_| ())
    }

    /// The configuration for a client that offers `client_suites`: moat's
    /// order, unless the client puts ChaCha20-Poly1305 first
    /// ([`policy::client_prefers_chacha20`]) or the operator listed the
    /// suites; then the client's.
    pub fn config_for(&self, client_suites: &[rustls::CipherSuite]) -> &Arc<ServerConfig> {
        match &self.server_order_config {
            Some(ours)
                if !policy::client_prefers_chacha20(
                    client_suites,
                    &self.server_config.crypto_provider().cipher_suites,
                ) =>
            {
                ours
            }
            _ => &self.server_config,
        }
    }
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("certs", &self.certs)
            .field("client_cas", &self.client_cas.len())
            .finish_non_exhaustive()
    }
}

/// What lets devices resume sessions: the ticket keys (TLS 1.3 and 1.2) and
/// the TLS 1.2 session-ID cache. Created once per listener and kept across
/// certificate reloads.
#[derive(Clone)]
pub struct Resumption {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

impl Resumption {
    /// The resumption state a new TLS state of `listener` should use, built
    /// from `sources`, given the state in service (if any). Returns it and
    /// whether it replaced the ticket keys.
    ///
    /// - With `session_ticket_keys`, the keys come from that file (shared
    ///   with other replicas) and change only when it does.
    /// - Otherwise the process's own keys stay across certificate reloads,
    ///   and are replaced when the client CA bundle changes.
    ///
    /// Either way the TLS 1.2 session cache is kept.
    pub fn for_state(
        sources: &Sources,
        previous: Option<(&Resumption, &ListenerTls)>,
    ) -> Result<(Self, bool), CertError> {
        let cache = previous.map(|(r, _)| r.cache.clone());
        let cache = cache.unwrap_or_else(|| ServerSessionMemoryCache::new(SESSION_CACHE_SIZE));
        if let Some(file) = &sources.ticket_keys {
            if let Some((r, tls)) = previous {
                if tls.ticket_keys_digest == sources.ticket_keys_digest() {
                    return Ok((r.clone(), false));
                }
            }
            let shared = tickets::SharedTicketer::parse(&file.path, &file.bytes)?;
            return Ok((
                Self {
                    ticketer: Arc::new(shared),
                    cache,
                },
                previous.is_some(),
            ));
        }
        match previous {
            Some((r, tls))
                if tls.client_auth_digest == sources.client_auth_digest()
                    && tls.ticket_keys_digest == sources.ticket_keys_digest() =>
            {
                Ok((r.clone(), false))
            }
            _ => {
                let ticketer =
                    rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| CertError {
                        file: PathBuf::from("(session ticket keys)"),
                        message: format!("cannot create session ticket keys: {e}"),
                        hint: "this is a bug or a broken system random source; please report it"
                            .into(),
                    })?;
                Ok((Self { ticketer, cache }, previous.is_some()))
            }
        }
    }
}

/// Builds a listener's state from files already read.
pub fn build_from(
    listener: &ListenerConfig,
    policy: &TlsPolicy,
    sources: &Sources,
    resumption: Option<&Resumption>,
    now: SystemTime,
) -> Result<ListenerTls, CertError> {
    let mut loaded = Vec::with_capacity(sources.certs.len());
    let (mut entries, mut pending) = (Vec::new(), Vec::new());
    for (i, entry) in sources.certs.iter().enumerate() {
        let Some((c, k)) = entry else {
            pending.push(i);
            continue;
        };
        loaded.push(certs::load(
            &c.path,
            &c.bytes,
            &k.path,
            &k.bytes,
            &policy.provider,
            now,
        )?);
        entries.push(i);
    }
    let pending_names: Vec<&str> = pending
        .iter()
        .filter_map(|&i| listener.tls.certificates[i].acme.as_ref())
        .flat_map(|a| a.domains.iter().map(String::as_str))
        .collect();
    let client_auth = client_auth::build(
        &listener.tls.client_auth,
        sources.client_ca.as_ref(),
        &sources.crls,
        &policy.provider,
    )?;

    let builder = ServerConfig::builder_with_provider(policy.provider.clone())
        .with_protocol_versions(&policy.versions)
        .map_err(|e| CertError {
            file: PathBuf::from(&listener.name),
            message: format!("TLS policy is inconsistent: {e}"),
            hint: "check min_version, cipher_suites and groups".into(),
        })?;
    let builder = match &client_auth.verifier {
        Some(v) => builder.with_client_cert_verifier(v.clone()),
        None => builder.with_no_client_auth(),
    };
    let resolver = Arc::new(resolver::SniResolver::new(&loaded, &pending_names));
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = listener
        .tls
        .alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    match (listener.tls.session_tickets, resumption) {
        (true, Some(r)) => {
            config.ticketer = r.ticketer.clone();
            config.session_storage = r.cache.clone();
            // One ticket per handshake, not rustls' (and OpenSSL's) two:
            // a device holds one connection, and each resumption brings a
            // fresh ticket. The second cost CPU on every handshake and
            // bytes on every device's link (docs/benchmarks.md).
            config.send_tls13_tickets = 1;
        }
        _ => {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
    }
    // Two configurations that differ only in who picks the suite; cloning
    // shares the resolver, verifier, ticketer and session cache (all `Arc`).
    let server_order_config = policy.server_order.then(|| {
        let mut ours = config.clone();
        ours.ignore_client_order = true;
        Arc::new(ours)
    });
    Ok(ListenerTls {
        server_config: Arc::new(config),
        server_order_config,
        certs: loaded,
        entries,
        pending,
        client_cas: client_auth.cas,
        client_ca_ders: client_auth.ca_ders,
        client_ca_path: listener.tls.client_auth.ca.clone(),
        crls: client_auth.crls,
        resolver,
        client_verifier: client_auth.verifier,
        loaded_at: now,
        digest: sources.digest(),
        client_auth_digest: sources.client_auth_digest(),
        ticket_keys_digest: sources.ticket_keys_digest(),
    })
}

/// Every listener's TLS state, built and checked, before anything is bound.
pub struct Prepared {
    /// The TLS state of each listener, in configuration order.
    pub tls: Vec<ListenerTls>,
    /// Each listener's resumption keys.
    pub resumption: Vec<Resumption>,
}

/// Loads the certificates and keys of one listener (or route) that is
/// new: its TLS state and fresh resumption keys.
pub fn prepare_one(
    l: &ListenerConfig,
    policy: &TlsPolicy,
    now: SystemTime,
) -> Result<(ListenerTls, Resumption), CertError> {
    let sources = Sources::read(l)?;
    let (resumption, _) = Resumption::for_state(&sources, None)?;
    let state = build_from(l, policy, &sources, Some(&resumption), now)?;
    Ok((state, resumption))
}

/// Loads every certificate and key of every listener. Reports all
/// problems, not just the first.
pub fn prepare(config: &ValidConfig) -> Result<Prepared, Vec<CertError>> {
    let now = SystemTime::now();
    let mut errors = Vec::new();
    let mut states = Vec::new();
    let mut resumptions = Vec::new();
    for (l, policy) in config.listeners() {
        match prepare_one(l, policy, now) {
            Ok((state, resumption)) => {
                states.push(state);
                resumptions.push(resumption);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(Prepared {
            tls: states,
            resumption: resumptions,
        })
    } else {
        Err(errors)
    }
}
