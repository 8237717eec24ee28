//! The rules serde cannot express, one function per section: value
//! ranges, settings that exclude or need each other, duplicate names and
//! addresses, TLS policy names, log filters. Every problem is collected,
//! not just the first, so that an operator fixes them all in one round.
//!
//! Pure: it reads no file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

mod acme;
mod backends;
mod limits;
mod websocket;

pub use backends::NamedBackend;

use super::error::{ConfigError, ConfigErrors};
use super::schema::{
    AdminConfig, AdminHealth, ClientAuthMode, ClientIdPolicy, ClientOcspMode, Config,
    ListenerConfig, MqttConfig, RouteOf, Stapling, TlsProfile, UsernamePolicy,
};
use crate::tls::policy::{self, TlsPolicy};

/// Checks the rules that serde cannot express. Returns every problem found,
/// not just the first, or the TLS policy of each listener.
pub fn validate(path: &Path, config: &Config) -> Result<Vec<TlsPolicy>, ConfigErrors> {
    let mut errors = Vec::new();
    let mut policies = Vec::new();
    check_process(path, config, &mut errors);
    if let Some(admin) = &config.admin {
        check_admin(path, admin, &mut errors);
    }
    let prefixes = field_prefixes(config);
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let prefix = &prefixes[i];
        check_naming(path, config, &prefixes, i, &mut names, &mut errors);
        check_limits(path, prefix, l, &mut errors);
        check_client_auth(path, prefix, l, &mut errors);
        if let Some(m) = &l.mqtt {
            check_mqtt(path, prefix, m, l.tls.client_auth.mode, &mut errors);
        }
        check_ocsp(path, prefix, l, &mut errors);
        check_tls(path, prefix, l, &mut errors);
        websocket::check(path, prefix, l, &mut errors);
        acme::check(path, prefix, l, &mut errors);
        if let Some(p) = tls_policy(path, prefix, l, &mut errors) {
            policies.push(p);
        }
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The process-wide sections: listeners present, log filter, user and
/// group, reload timing.
fn check_process(path: &Path, config: &Config, errors: &mut Vec<ConfigError>) {
    if config.listeners.is_empty() {
        errors.push(
            ConfigError::at(path, "listeners", "no listeners are configured")
                .hint("add at least one entry under `listeners:`; see config/example.yaml"),
        );
    }

    if filters_fields_by_value(&config.log.level) {
        errors.push(
            ConfigError::at(
                path,
                "log.level",
                format!(
                    "{:?} filters span fields by value, which is not accepted here: each value is compiled into an automaton of unbounded size, so a short one can take minutes and gigabytes",
                    config.log.level
                ),
            )
            .hint("filter by target or span name instead, e.g. info,moat::conn=debug"),
        );
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        errors.push(
            ConfigError::at(
                path,
                "log.level",
                format!("invalid level {:?}: {e}", config.log.level),
            )
            .hint("use error, warn, info, debug or trace"),
        );
    }

    for (field, value) in [("user", &config.user), ("group", &config.group)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            errors.push(
                ConfigError::at(path, field, "is empty")
                    .hint("name an account such as moat (or a numeric id), or remove the key"),
            );
        }
    }
    if config.group.is_some() && config.user.is_none() {
        errors.push(
            ConfigError::at(path, "group", "is set without user")
                .hint("set user as well; moat switches group and user together"),
        );
    }

    if config.reload.debounce.0 > Duration::from_secs(60) {
        errors.push(
            ConfigError::at(path, "reload.debounce", "must be at most 60s")
                .hint("a long debounce delays every certificate rotation; 500ms is the default"),
        );
    }
    let interval = config.reload.check_interval.0;
    if !interval.is_zero() && interval < Duration::from_secs(1) {
        errors.push(
            ConfigError::at(
                path,
                "reload.check_interval",
                "must be 0s (off) or at least 1s",
            )
            .hint("the check reads every certificate file; 60s is the default"),
        );
    }
}

/// The admin endpoint: health checks closed only when there are
/// credentials to ask for, and the CLI's client certificate complete and
/// of use.
fn check_admin(path: &Path, admin: &AdminConfig, errors: &mut Vec<ConfigError>) {
    let client_ca = admin.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    if admin.health == AdminHealth::Authenticated && admin.token_file.is_none() && !client_ca {
        errors.push(
            ConfigError::at(
                path,
                "admin.health",
                "is authenticated, but the admin endpoint has no credentials to ask for",
            )
            .hint("set admin.token_file or admin.tls.client_ca, or use health: open"),
        );
    }
    let Some(tls) = &admin.tls else {
        return;
    };
    match (&tls.cli_cert, &tls.cli_key) {
        (Some(_), None) => errors.push(
            ConfigError::at(path, "admin.tls.cli_cert", "is set without admin.tls.cli_key")
                .hint("give the CLI's client certificate and its key together"),
        ),
        (None, Some(_)) => errors.push(
            ConfigError::at(path, "admin.tls.cli_key", "is set without admin.tls.cli_cert")
                .hint("give the CLI's client certificate and its key together"),
        ),
        (Some(_), Some(_)) if !client_ca => errors.push(
            ConfigError::at(
                path,
                "admin.tls.cli_cert",
                "is set, but without admin.tls.client_ca the admin endpoint asks for no client certificate",
            )
            .hint("set admin.tls.client_ca to require client certificates, or remove cli_cert and cli_key"),
        ),
        _ => {}
    }
}

/// Every backend node written with a host name (not an IP address), with
/// its field, in the order of the file: what `moat check` resolves.
pub fn named_backends(config: &Config) -> Vec<NamedBackend> {
    let prefixes = field_prefixes(config);
    config
        .listeners
        .iter()
        .zip(&prefixes)
        .flat_map(|(l, prefix)| backends::named_nodes(prefix, l))
        .collect()
}

/// Where each listener is in the file, e.g. `listeners[0]`, or
/// `listeners[0].routes[1]` for a route (routes were expanded into
/// listeners of their own, after their parent).
fn field_prefixes(config: &Config) -> Vec<String> {
    let mut top = 0usize;
    config
        .listeners
        .iter()
        .map(|l| match &l.route {
            Some(r) => r.field.clone(),
            None => {
                top += 1;
                format!("listeners[{}]", top - 1)
            }
        })
        .collect()
}

/// A listener's name (unique, or a valid route name) and its address (not
/// shared with another listener or the admin endpoint).
fn check_naming<'a>(
    path: &Path,
    config: &'a Config,
    prefixes: &[String],
    i: usize,
    names: &mut HashMap<&'a str, usize>,
    errors: &mut Vec<ConfigError>,
) {
    let l = &config.listeners[i];
    let prefix = &prefixes[i];
    let at = |field: &str| format!("{prefix}.{field}");
    if let Some(r) = &l.route {
        check_route(path, prefix, l, r, config, errors);
    } else if !valid_name(&l.name) {
        errors.push(
            ConfigError::at(path, at("name"), format!("invalid name {:?}", l.name))
                .hint("use 1 to 64 letters, digits, '-' or '_'; it appears in metric labels"),
        );
    }
    if let Some(j) = names.insert(&l.name, i) {
        errors.push(
            ConfigError::at(
                path,
                at("name"),
                format!(
                    "listener name {:?} is already used by listeners[{j}]",
                    l.name
                ),
            )
            .hint("give each listener its own name"),
        );
    }
    for (j, other) in config.listeners[..i].iter().enumerate() {
        // Routes share their listener's address by design.
        if l.route.is_some() || other.route.is_some() {
            continue;
        }
        if addresses_clash(l.listen, other.listen) {
            errors.push(
                ConfigError::at(
                    path,
                    at("listen"),
                    format!(
                        "{} clashes with {} ({:?}) on {}",
                        l.listen, prefixes[j], other.name, other.listen
                    ),
                )
                .hint("two listeners cannot share an address and port; change one port"),
            );
        }
    }
    if let Some(admin) = &config.admin {
        if addresses_clash(l.listen, admin.listen) {
            errors.push(
                ConfigError::at(
                    path,
                    at("listen"),
                    format!("{} clashes with admin.listen {}", l.listen, admin.listen),
                )
                .hint("the admin endpoint needs a port of its own"),
            );
        }
    }
}

/// The backend, certificates present, connection and handshake limits,
/// backlog and timeouts.
fn check_limits(path: &Path, prefix: &str, l: &ListenerConfig, errors: &mut Vec<ConfigError>) {
    let at = |field: &str| format!("{prefix}.{field}");
    backends::check_backends(path, prefix, l, errors);
    if l.tls.certificates.is_empty() {
        errors.push(
            ConfigError::at(
                path,
                at("tls.certificates"),
                "no certificates are configured",
            )
            .hint("add at least one `- cert: ... key: ...` entry"),
        );
    }
    if l.max_connections == 0 {
        errors.push(
            ConfigError::at(path, at("max_connections"), "must be at least 1")
                .hint("remove it to use the default of 50000"),
        );
    }
    if l.limits.max_handshakes == 0 {
        errors.push(
            ConfigError::at(path, at("limits.max_handshakes"), "must be at least 1")
                .hint("remove it to use the default of 8192"),
        );
    }
    if !(l.limits.per_ip_rate >= 0.0 && l.limits.per_ip_rate.is_finite()) {
        errors.push(
            ConfigError::at(
                path,
                at("limits.per_ip_rate"),
                "must be a number of connections per second, 0 or more",
            )
            .hint("0 turns the limit off; the default is 1000"),
        );
    }
    if l.backlog == 0 || l.backlog > 65_535 {
        errors.push(
            ConfigError::at(path, at("backlog"), "must be between 1 and 65535")
                .hint("remove it to use the default of 4096"),
        );
    }
    for (field, d) in [
        ("timeouts.handshake", l.timeouts.handshake),
        ("timeouts.connect", l.timeouts.connect),
    ] {
        if d.0.is_zero() {
            errors.push(
                ConfigError::at(path, at(field), "must be longer than zero")
                    .hint("a timeout of zero would refuse every connection"),
            );
        }
    }
}

/// `tls.client_auth`: a CA bundle exactly when certificates are asked for,
/// and allow-list rules that make sense.
fn check_client_auth(path: &Path, prefix: &str, l: &ListenerConfig, errors: &mut Vec<ConfigError>) {
    let at = |field: &str| format!("{prefix}.{field}");
    let ca = &l.tls.client_auth;
    match (ca.mode, &ca.ca) {
        (ClientAuthMode::None, Some(_)) => errors.push(
            ConfigError::at(
                path,
                at("tls.client_auth.ca"),
                "a client CA is set but client_auth.mode is none, so it would be ignored",
            )
            .hint("set client_auth.mode to required or optional, or remove ca"),
        ),
        (ClientAuthMode::Optional | ClientAuthMode::Required, None) => errors.push(
            ConfigError::at(
                path,
                at("tls.client_auth.ca"),
                format!("client_auth.mode is {} but no CA bundle is given", ca.mode),
            )
            .hint("set ca to the PEM bundle of the CA that issues your device certificates"),
        ),
        _ => {}
    }
    if ca.mode == ClientAuthMode::None {
        for (field, set) in [
            ("allow", !ca.allow.is_empty()),
            ("crl", !ca.crl.0.is_empty()),
        ] {
            if set {
                errors.push(
                    ConfigError::at(
                        path,
                        at(&format!("tls.client_auth.{field}")),
                        format!(
                            "{field} is set but client_auth.mode is none, so it would be ignored"
                        ),
                    )
                    .hint("set client_auth.mode to required (or optional) with a ca bundle"),
                );
            }
        }
    }
    check_client_ocsp(path, prefix, l, errors);
    for (k, rule) in ca.allow.iter().enumerate() {
        for problem in rule.problems() {
            errors.push(
                ConfigError::at(path, at(&format!("tls.client_auth.allow[{k}]")), problem)
                    .hint("see docs/device-identity.md for allow-list rules"),
            );
        }
    }
}

/// The longest `tls.client_auth.ocsp_timeout`: a device waits this long
/// for its check, after its handshake.
const MAX_CLIENT_OCSP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest `tls.client_auth.crl_fetch_timeout`.
const MAX_CRL_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `tls.client_auth.ocsp` and `crl_distribution_points` need client
/// certificates; their timeouts a bounded, non-zero time, and only with
/// their check on.
fn check_client_ocsp(path: &Path, prefix: &str, l: &ListenerConfig, errors: &mut Vec<ConfigError>) {
    let ca = &l.tls.client_auth;
    let at = |field: &str| format!("{prefix}.tls.client_auth.{field}");
    let checks = [
        (
            "ocsp",
            ca.ocsp,
            "ocsp_timeout",
            ca.ocsp_timeout_setting,
            MAX_CLIENT_OCSP_TIMEOUT,
            "3s",
        ),
        (
            "crl_distribution_points",
            ca.crl_distribution_points,
            "crl_fetch_timeout",
            ca.crl_fetch_timeout_setting,
            MAX_CRL_FETCH_TIMEOUT,
            "5s",
        ),
    ];
    for (name, mode, timeout_name, timeout, max, default) in checks {
        if mode != ClientOcspMode::Off && ca.mode == ClientAuthMode::None {
            errors.push(
                ConfigError::at(
                    path,
                    at(name),
                    format!(
                        "{name} is {mode} but client_auth.mode is none, so there is no device certificate to check"
                    ),
                )
                .hint(format!("set client_auth.mode to required (or optional) with a ca bundle, or {name}: off")),
            );
        }
        let Some(timeout) = timeout else {
            continue;
        };
        if mode == ClientOcspMode::Off {
            errors.push(
                ConfigError::at(
                    path,
                    at(timeout_name),
                    format!("{timeout_name} is set but {name} is off, so it would be ignored"),
                )
                .hint(format!(
                    "set {name}: prefer or {name}: require, or remove {timeout_name}"
                )),
            );
        }
        if timeout.0.is_zero() || timeout.0 > max {
            errors.push(
                ConfigError::at(
                    path,
                    at(timeout_name),
                    format!(
                        "must be longer than zero and at most {}s, not {}",
                        max.as_secs(),
                        humantime::format_duration(timeout.0)
                    ),
                )
                .hint(format!("devices wait for their check after the handshake; a few seconds is plenty (default {default})")),
            );
        }
    }
    check_revocation_recheck(path, &at, ca, errors);
    if ca.ocsp_cache_dir.is_some() && ca.ocsp == ClientOcspMode::Off {
        errors.push(
            ConfigError::at(
                path,
                at("ocsp_cache_dir"),
                "ocsp_cache_dir is set but ocsp is off, so nothing would be kept there",
            )
            .hint("set ocsp: prefer or ocsp: require, or remove ocsp_cache_dir"),
        );
    }
}

/// The longest `tls.client_auth.revocation_recheck`.
const MAX_REVOCATION_RECHECK: std::time::Duration = std::time::Duration::from_secs(86_400);

/// `revocation_recheck` needs an online check to repeat, and is `0s` (off)
/// or 1 s to a day.
fn check_revocation_recheck(
    path: &Path,
    at: &dyn Fn(&str) -> String,
    ca: &super::schema::ClientAuthConfig,
    errors: &mut Vec<ConfigError>,
) {
    let Some(every) = ca.revocation_recheck_setting else {
        return;
    };
    if ca.ocsp == ClientOcspMode::Off && ca.crl_distribution_points == ClientOcspMode::Off {
        errors.push(
            ConfigError::at(
                path,
                at("revocation_recheck"),
                "revocation_recheck is set but ocsp and crl_distribution_points are off, so there is nothing to check again",
            )
            .hint("turn on ocsp or crl_distribution_points, or remove revocation_recheck (CRL files reach live sessions on reload without it)"),
        );
    }
    let d = every.0;
    if !d.is_zero() && (d < std::time::Duration::from_secs(1) || d > MAX_REVOCATION_RECHECK) {
        errors.push(
            ConfigError::at(
                path,
                at("revocation_recheck"),
                format!(
                    "must be 0s (only at connect) or 1s to 24h, not {}",
                    humantime::format_duration(d)
                ),
            )
            .hint("the re-check reuses cached answers, so a minute (the default) costs little"),
        );
    }
}

/// Session tickets, ALPN names, and the profile against `min_version`.
fn check_tls(path: &Path, prefix: &str, l: &ListenerConfig, errors: &mut Vec<ConfigError>) {
    let at = |field: &str| format!("{prefix}.{field}");
    if l.tls.session_ticket_keys.is_some() && !l.tls.session_tickets {
        errors.push(
            ConfigError::at(
                path,
                at("tls.session_ticket_keys"),
                "session_tickets is false, so the ticket keys would be ignored",
            )
            .hint("remove session_ticket_keys, or set session_tickets: true"),
        );
    }
    for (k, proto) in l.tls.alpn.iter().enumerate() {
        if proto.is_empty() || proto.len() > 255 {
            errors.push(
                ConfigError::at(
                    path,
                    at(&format!("tls.alpn[{k}]")),
                    "an ALPN protocol name must be 1 to 255 bytes",
                )
                .hint("for MQTT, use \"mqtt\""),
            );
        }
    }
    if l.tls.profile == Some(TlsProfile::Modern)
        && l.tls
            .min_version
            .as_deref()
            .is_some_and(|v| v.trim_start_matches(|c: char| !c.is_ascii_digit()) != "1.3")
    {
        errors.push(
            ConfigError::at(
                path,
                at("tls.min_version"),
                "profile modern means TLS 1.3 only, but min_version allows older versions",
            )
            .hint("remove min_version, or use profile: intermediate"),
        );
    }
}

/// The listener's TLS policy from its version, suites and groups, or the
/// problems with them.
fn tls_policy(
    path: &Path,
    prefix: &str,
    l: &ListenerConfig,
    errors: &mut Vec<ConfigError>,
) -> Option<TlsPolicy> {
    let at = |field: &str| format!("{prefix}.{field}");
    match policy::build(
        l.tls.effective_min_version(),
        &l.tls.cipher_suites,
        &l.tls.groups,
    ) {
        Ok(p) => Some(p),
        Err(problems) => {
            for p in problems {
                errors.push(ConfigError {
                    file: path.to_path_buf(),
                    location: Some(at(&format!("tls.{}", p.field))),
                    message: p.message,
                    hint: p.hint,
                });
            }
            None
        }
    }
}

fn check_route(
    path: &Path,
    prefix: &str,
    l: &ListenerConfig,
    r: &RouteOf,
    config: &Config,
    errors: &mut Vec<ConfigError>,
) {
    let at = |field: &str| format!("{prefix}.{field}");
    let route_name = l.name.rsplit('/').next().unwrap_or("");
    if !valid_name(route_name) {
        errors.push(
            ConfigError::at(
                path,
                at("name"),
                format!("invalid route name {route_name:?}"),
            )
            .hint("use 1 to 64 letters, digits, '-' or '_'"),
        );
    }
    if r.server_names.is_empty() {
        errors.push(
            ConfigError::at(
                path,
                at("server_names"),
                "a route needs at least one server name",
            )
            .hint("list the names (or *.wildcards) whose clients go to this route's backend"),
        );
    }
    for (k, name) in r.server_names.iter().enumerate() {
        let bare = name.strip_prefix("*.").unwrap_or(name);
        let ok = !bare.is_empty()
            && bare.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !ok {
            errors.push(
                ConfigError::at(
                    path,
                    at(&format!("server_names[{k}]")),
                    format!("{name:?} is not a host name"),
                )
                .hint(
                    "write a DNS name such as tenant-a.mqtt.example.com, or *.tenant-a.example.com",
                ),
            );
        }
        let taken = config.listeners.iter().find(|o| {
            o.name != l.name
                && o.route
                    .as_ref()
                    .is_some_and(|or| or.parent == r.parent && or.server_names.contains(name))
        });
        if let Some(o) = taken {
            errors.push(
                ConfigError::at(
                    path,
                    at(&format!("server_names[{k}]")),
                    format!("{name:?} is already routed to {:?}", o.name),
                )
                .hint("each server name can select only one route"),
            );
        }
    }
}

fn check_ocsp(path: &Path, prefix: &str, l: &ListenerConfig, errors: &mut Vec<ConfigError>) {
    let at = |field: &str| format!("{prefix}.tls.ocsp.{field}");
    let o = &l.tls.ocsp;
    if !(o.refresh_fraction > 0.0 && o.refresh_fraction < 1.0) {
        errors.push(
            ConfigError::at(
                path,
                at("refresh_fraction"),
                "must be between 0 and 1, exclusive",
            )
            .hint("0.5 (the default) refreshes halfway through each response's validity"),
        );
    }
    if let Some(url) = &o.responder_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(
                ConfigError::at(
                    path,
                    at("responder_url"),
                    format!("{url:?} is not an http:// or https:// URL"),
                )
                .hint("OCSP responders are reached over HTTP, e.g. http://ocsp.example.com"),
            );
        }
    }
    let per_cert = l.tls.certificates.iter().any(|c| c.ocsp_file.is_some());
    if o.static_file.is_some() && (l.tls.certificates.len() > 1 || per_cert) {
        errors.push(
            ConfigError::at(
                path,
                at("static_file"),
                "static_file names one response, but this listener has several certificates",
            )
            .hint("set ocsp_file on each certificate entry instead"),
        );
    }
    if o.responder_url.is_some() && (o.static_file.is_some() || per_cert) {
        errors.push(
            ConfigError::at(
                path,
                at("responder_url"),
                "a responder URL and a static response file exclude each other",
            )
            .hint("use static files for air-gapped sites, a responder URL otherwise"),
        );
    }
    if o.stapling == Stapling::Off
        && (o.static_file.is_some() || per_cert || o.responder_url.is_some())
    {
        errors.push(
            ConfigError::at(
                path,
                at("stapling"),
                "stapling is false, so the other ocsp settings would be ignored",
            )
            .hint("set stapling: auto or true, or remove the other settings"),
        );
    }
}

fn check_mqtt(
    path: &Path,
    prefix: &str,
    m: &MqttConfig,
    auth: ClientAuthMode,
    errors: &mut Vec<ConfigError>,
) {
    let at = |field: &str| format!("{prefix}.mqtt.{field}");
    if m.connect_timeout.0.is_zero() {
        errors.push(ConfigError::at(
            path,
            at("connect_timeout"),
            "must be longer than zero",
        ));
    }
    if !(16..=268_435_455).contains(&m.max_packet_size) {
        errors.push(
            ConfigError::at(
                path,
                at("max_packet_size"),
                "must be between 16 and 268435455 bytes",
            )
            .hint("1048576 (1 MiB) is the default"),
        );
    }
    let needs_identity = m.client_id != ClientIdPolicy::Any
        || m.username == UsernamePolicy::Identity
        || m.acl.iter().flatten().any(|r| r.uses_identity());
    if needs_identity && auth == ClientAuthMode::None {
        errors.push(
            ConfigError::at(
                path,
                at("client_id"),
                "client_id, username: identity or %i in the ACL need the device's certificate, but tls.client_auth.mode is none",
            )
            .hint("set tls.client_auth.mode: required and a ca bundle"),
        );
    }
    limits::check(path, prefix, &m.limits, m.max_packet_size, errors);
    for (k, rule) in m.acl.iter().flatten().enumerate() {
        for problem in rule.problems() {
            errors.push(
                ConfigError::at(path, at(&format!("acl[{k}]")), problem)
                    .hint("see docs/mqtt.md for ACL rules"),
            );
        }
    }
}

/// Whether a log filter matches span fields by value (`[span{field=value}]`).
/// tracing-subscriber compiles each such value into a DFA with no size
/// limit, so `(a|b)*a(a|b)(a|b)...` of 300 bytes takes minutes and
/// gigabytes, in validation and again when logging starts.
fn filters_fields_by_value(level: &str) -> bool {
    level
        .split('{')
        .skip(1)
        .any(|fields| fields.split('}').next().unwrap_or("").contains('='))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Two listen addresses clash when the ports are equal and the addresses are
/// equal or either is the wildcard of a family that covers the other.
pub fn addresses_clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let (ia, ib) = (a.ip(), b.ip());
    // On Linux, [::] is dual-stack by default and covers IPv4 too.
    let covers = |w: std::net::IpAddr, o: std::net::IpAddr| {
        w.is_unspecified() && (w.is_ipv6() || o.is_ipv4())
    };
    ia == ib || covers(ia, ib) || covers(ib, ia)
}
