//! The configuration file's part in a reload: `moat.yaml` is read again on
//! every reload, whatever asked for it, and what changed in it is applied
//! live: allow-lists, client-auth settings, topic ACLs and MQTT limits,
//! backends, timeouts, certificate paths, SNI routes (added, changed or
//! removed: `routes`). What is fixed when the process starts (addresses and
//! sockets, the set of listeners, admission limits, the admin endpoint,
//! logging, the user and
//! the sandbox) is compared too: a change there refuses the whole file,
//! naming each field that needs a restart, and the running configuration
//! stays. A file that does not parse or validate is refused the same way,
//! with the error `moat check` would print.
//!
//! The comparison is pure ([`needs_restart`]); [`ConfigSource`] holds the
//! configuration in service.

use std::sync::Mutex;

use tracing::{error, info};

use crate::config::{self, ListenerConfig, ValidConfig};
use crate::metrics::Metrics;

/// What a fresh read of the configuration file came to.
#[derive(Debug)]
pub enum ConfigRead {
    /// The same settings as in service.
    Unchanged,
    /// New settings to apply.
    Changed(Box<ValidConfig>),
    /// The file cannot be used; the one in service stays.
    Refused(String),
}

/// The configuration in service, and the file it came from.
pub struct ConfigSource {
    current: Mutex<ValidConfig>,
    failures: prometheus_client::metrics::counter::Counter,
    pending: prometheus_client::metrics::gauge::Gauge,
    /// The last refusal's text, so that a periodic check reports it once.
    failed: Mutex<Option<String>>,
}

impl ConfigSource {
    /// The source of `config`, which is in service.
    pub fn new(config: ValidConfig, metrics: &Metrics) -> Self {
        Self {
            current: Mutex::new(config),
            failures: metrics.config_reload_failures.clone(),
            pending: metrics.config_reload_pending.clone(),
            failed: Mutex::new(None),
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, ValidConfig> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the file again and compares it with what is in service.
    /// Refusals are logged here, once per distinct refusal unless
    /// `explicit` (an operator asked).
    pub fn read(&self, explicit: bool) -> ConfigRead {
        let path = self.current().path.clone();
        let read = match config::load(&path) {
            Err(e) => ConfigRead::Refused(e.to_string()),
            Ok(new) => {
                let restart = needs_restart(&self.current(), &new);
                if !restart.is_empty() {
                    ConfigRead::Refused(format!(
                        "{}: these settings are fixed while moat runs; restart it to change them:\n  {}",
                        path.display(),
                        restart.join("\n  ")
                    ))
                } else if new.config == self.current().config {
                    ConfigRead::Unchanged
                } else {
                    ConfigRead::Changed(Box::new(new))
                }
            }
        };
        match &read {
            ConfigRead::Refused(e) => self.refused(e, explicit),
            ConfigRead::Unchanged => *self.failed() = None,
            // Cleared once applied: a new route may still refuse it.
            ConfigRead::Changed(_) => {}
        }
        if let ConfigRead::Unchanged = read {
            self.pending.set(0);
        }
        read
    }

    fn failed(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that the file cannot be used, for `why`: logged (once per
    /// distinct refusal unless `explicit`), counted, and pending.
    pub fn refused(&self, why: &str, explicit: bool) {
        let path = self.path();
        let mut failed = self.failed();
        self.pending.set(1);
        if explicit || failed.as_deref() != Some(why) {
            self.failures.inc();
            error!(file = %path.display(), error = %why, "configuration reload failed; still serving the previous configuration");
        }
        *failed = Some(why.to_string());
    }

    /// Puts `new` in service (once every listener took its part).
    pub fn applied(&self, new: ValidConfig) {
        self.pending.set(0);
        *self.failed() = None;
        info!(file = %new.path.display(), "configuration reloaded");
        *self.current() = new;
    }

    /// The configuration file's path.
    pub fn path(&self) -> std::path::PathBuf {
        self.current().path.clone()
    }
}

/// Every setting that differs between `old` and `new` and cannot change
/// while moat runs, as `field: old -> new` lines; empty when `new` can be
/// applied live.
pub fn needs_restart(old: &ValidConfig, new: &ValidConfig) -> Vec<String> {
    let (o, n) = (&old.config, &new.config);
    let mut out = Vec::new();
    let mut top = |field: &str, same: bool| {
        if !same {
            out.push(format!("{field} changed"));
        }
    };
    top("admin", o.admin == n.admin);
    top("log", o.log == n.log);
    top("shutdown", o.shutdown == n.shutdown);
    top("development", o.development == n.development);
    top("reload", o.reload == n.reload);
    top("user", o.user == n.user);
    top("group", o.group == n.group);
    top("sandbox", o.sandbox == n.sandbox);
    // The listeners own sockets: their set is fixed. Routes (named
    // `listener/route`) may come and go (`routes`); those in both files
    // keep their fixed settings.
    let parents = |c: &ValidConfig| -> Vec<String> {
        c.config
            .listeners
            .iter()
            .filter(|l| l.route.is_none())
            .map(|l| l.name.clone())
            .collect()
    };
    if parents(old) != parents(new) {
        out.push(format!(
            "listeners: {:?} -> {:?} (adding, removing or renaming a listener; routes may change live)",
            parents(old),
            parents(new)
        ));
        return out;
    }
    for (i, b) in n.listeners.iter().enumerate() {
        if let Some(a) = o.listeners.iter().find(|a| a.name == b.name) {
            out.extend(listener_restart(i, a, b));
        }
    }
    out
}

/// The fixed settings of one listener (or expanded route) that differ.
fn listener_restart(i: usize, a: &ListenerConfig, b: &ListenerConfig) -> Vec<String> {
    let at = |field: &str| format!("listeners[{i}] ({}).{field}", a.name);
    let mut out = Vec::new();
    if a.listen != b.listen {
        out.push(format!("{}: {} -> {}", at("listen"), a.listen, b.listen));
    }
    if a.backlog != b.backlog {
        out.push(format!("{}: {} -> {}", at("backlog"), a.backlog, b.backlog));
    }
    if a.max_connections != b.max_connections {
        out.push(format!(
            "{}: {} -> {}",
            at("max_connections"),
            a.max_connections,
            b.max_connections
        ));
    }
    if a.limits != b.limits {
        out.push(format!("{} changed", at("limits")));
    }
    if a.timeouts.tcp_keepalive != b.timeouts.tcp_keepalive {
        out.push(format!("{} changed", at("timeouts.tcp_keepalive")));
    }
    if a.mqtt.is_some() != b.mqtt.is_some() {
        out.push(format!("{}: turning MQTT awareness on or off", at("mqtt")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = "
admin:
  listen: 127.0.0.1:9090
listeners:
  - name: mqtts
    listen: 127.0.0.1:8883
    backend: 127.0.0.1:1883
    mqtt: {}
    tls:
      certificates:
        - cert: tls/server.pem
          key: tls/server.key
";

    fn parse(text: &str) -> ValidConfig {
        config::parse(Path::new("/etc/moat/moat.yaml"), text).expect("valid")
    }

    #[test]
    fn policy_and_backends_change_live() {
        let old = parse(BASE);
        let new = parse(&BASE.replace("127.0.0.1:1883", "127.0.0.1:1884").replace(
            "mqtt: {}",
            "mqtt:\n      acl:\n        - publish: [\"a/#\"]",
        ));
        assert!(
            needs_restart(&old, &new).is_empty(),
            "{:?}",
            needs_restart(&old, &new)
        );
        assert_ne!(old.config, new.config);
    }

    #[test]
    fn routes_come_and_go_live_but_listeners_do_not() {
        let old = parse(BASE);
        let route = "    routes:\n      - name: b\n        server_names: [b.example]\n        backend: 127.0.0.1:1884\n        tls:\n          certificates:\n            - cert: tls/b.pem\n              key: tls/b.key\n";
        let with_route =
            parse(&BASE.replace("    mqtt: {}\n", &format!("    mqtt: {{}}\n{route}")));
        assert!(needs_restart(&old, &with_route).is_empty());
        assert!(needs_restart(&with_route, &old).is_empty());
        let renamed = parse(&BASE.replace(
            "    mqtt: {}\n",
            &format!("    mqtt: {{}}\n{}", route.replace("name: b", "name: c")),
        ));
        assert!(needs_restart(&with_route, &renamed).is_empty());
        let second = format!("{BASE}  - name: other\n    listen: 127.0.0.1:8884\n    backend: 127.0.0.1:1883\n    tls:\n      certificates:\n        - cert: tls/server.pem\n          key: tls/server.key\n");
        let restart = needs_restart(&old, &parse(&second));
        assert!(restart[0].starts_with("listeners: "), "{restart:?}");
    }

    #[test]
    fn addresses_listeners_and_admission_need_a_restart_and_are_named() {
        let old = parse(BASE);
        let moved = parse(&BASE.replace("127.0.0.1:8883", "127.0.0.1:8884"));
        assert_eq!(
            needs_restart(&old, &moved),
            ["listeners[0] (mqtts).listen: 127.0.0.1:8883 -> 127.0.0.1:8884"]
        );
        let renamed = parse(&BASE.replace("name: mqtts", "name: devices"));
        assert!(needs_restart(&old, &renamed)[0].starts_with("listeners: "));
        let admin = parse(&BASE.replace("127.0.0.1:9090", "127.0.0.1:9091"));
        assert_eq!(needs_restart(&old, &admin), ["admin changed"]);
        let opaque = parse(&BASE.replace("    mqtt: {}\n", ""));
        assert!(needs_restart(&old, &opaque)[0].contains("MQTT awareness"));
    }
}
