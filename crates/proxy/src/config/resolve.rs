//! What parsing does after serde: SNI routes become listeners of their
//! own, and relative paths are anchored at the configuration file's
//! directory.

use std::path::{Path, PathBuf};

use super::schema::{Config, ListenerConfig, RouteOf};

/// Turns each route into a listener of its own (named `parent/route`,
/// sharing the parent's address, timeouts and limits), placed after its
/// parent, so that every later stage treats routes like listeners.
pub fn expand_routes(config: &mut Config) {
    let mut out = Vec::with_capacity(config.listeners.len());
    for (i, mut l) in std::mem::take(&mut config.listeners)
        .into_iter()
        .enumerate()
    {
        let routes = std::mem::take(&mut l.routes);
        let parent = l.clone();
        out.push(l);
        for (k, r) in routes.into_iter().enumerate() {
            out.push(ListenerConfig {
                name: format!("{}/{}", parent.name, r.name),
                backend: r.backend,
                balance: r.balance.or(parent.balance),
                tls: r.tls,
                backend_proxy_protocol: r.backend_proxy_protocol,
                mqtt: r.mqtt,
                routes: Vec::new(),
                route: Some(RouteOf {
                    parent: parent.name.clone(),
                    server_names: r
                        .server_names
                        .iter()
                        .map(|n| n.to_ascii_lowercase())
                        .collect(),
                    field: format!("listeners[{i}].routes[{k}]"),
                }),
                ..parent.clone()
            });
        }
    }
    config.listeners = out;
}

/// Makes every path in the configuration absolute, from `base`.
pub fn resolve_paths(config: &mut Config, base: &Path) {
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if let Some(admin) = config.admin.as_mut() {
        if let Some(f) = admin.token_file.as_mut() {
            resolve(f);
        }
        if let Some(t) = admin.tls.as_mut() {
            resolve(&mut t.cert);
            resolve(&mut t.key);
            for f in [&mut t.client_ca, &mut t.cli_cert, &mut t.cli_key]
                .into_iter()
                .flatten()
            {
                resolve(f);
            }
        }
    }
    for l in &mut config.listeners {
        for c in &mut l.tls.certificates {
            if let Some(a) = &mut c.acme {
                resolve(&mut a.state_dir);
                if let Some(f) = &mut a.ca_bundle {
                    resolve(f);
                }
                if let Some(e) = &mut a.eab {
                    resolve(&mut e.hmac_key_file);
                }
                if let Some(k) = &mut a.account_key {
                    resolve(k);
                }
            }
            // Empty means not written (an ACME entry); validation tells.
            if !c.cert.as_os_str().is_empty() {
                resolve(&mut c.cert);
            }
            if !c.key.as_os_str().is_empty() {
                resolve(&mut c.key);
            }
            if let Some(f) = &mut c.ocsp_file {
                resolve(f);
            }
        }
        if let Some(d) = &mut l.tls.ocsp.cache_dir {
            resolve(d);
        }
        if let Some(k) = &mut l.tls.session_ticket_keys {
            resolve(k);
        }
        if let Some(f) = &mut l.tls.ocsp.static_file {
            resolve(f);
        }
        if let Some(ca) = &mut l.tls.client_auth.ca {
            resolve(ca);
        }
        for crl in &mut l.tls.client_auth.crl.0 {
            resolve(crl);
        }
    }
}

/// Points each ACME entry's `cert` and `key` at the files its manager
/// keeps in `state_dir`, so that loading and reloading treat it like any
/// other certificate. Runs after validation.
pub fn acme_files(config: &mut Config) {
    for l in &mut config.listeners {
        for c in &mut l.tls.certificates {
            if let Some(a) = &c.acme {
                c.cert = a.state_dir.join("cert.pem");
                c.key = a.state_dir.join("key.pem");
            }
        }
    }
}
