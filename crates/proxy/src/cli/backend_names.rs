//! `moat check`'s look-up of the backends' host names: every node written
//! as a name must resolve, where `moat check` runs, to at least one
//! address, or the check fails with the node's field
//! (`listeners[0].backend[1]`). `moat run` does not refuse such a name: it
//! resolves names at every connect, and a broker that is not in the DNS yet
//! (a Pod still starting) is only down for now. `moat check --no-resolve`
//! skips the look-ups, to check a configuration away from the network it
//! runs in.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::{named_backends, ConfigError, ValidConfig};

/// What a name resolved to, or why it did not.
type Lookup = Result<Vec<SocketAddr>, String>;

/// Resolves every backend name of `config` with the system's resolver;
/// the names that do not resolve, as errors naming their field.
pub fn unresolved(config: &ValidConfig) -> Vec<ConfigError> {
    unresolved_with(config, |address| {
        address
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|e| e.to_string())
    })
}

/// The names that `resolve` (called once per distinct `host:port`) finds
/// no address for, in the order of the file.
fn unresolved_with(
    config: &ValidConfig,
    mut resolve: impl FnMut(&str) -> Lookup,
) -> Vec<ConfigError> {
    let mut seen: HashMap<String, Lookup> = HashMap::new();
    let mut out = Vec::new();
    for node in named_backends(&config.config) {
        let lookup = seen
            .entry(node.address.clone())
            .or_insert_with(|| resolve(&node.address));
        let why = match lookup {
            Ok(addresses) if !addresses.is_empty() => continue,
            Ok(_) => "resolves to no address".to_string(),
            Err(e) => format!("does not resolve: {e}"),
        };
        out.push(
            ConfigError::at(&config.path, node.field, format!("{} {why}", node.address)).hint(
                "check the name and the DNS servers this host uses (/etc/resolv.conf); \
                 to check the configuration away from the network it runs in, add --no-resolve",
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(listeners: &str) -> ValidConfig {
        let text = format!("listeners:\n{listeners}");
        crate::config::parse(Path::new("/etc/moat/moat.yaml"), &text).expect("valid")
    }

    const TLS: &str = "    tls:\n      certificates:\n        - cert: tls/server.pem\n          key: tls/server.key\n";

    /// Resolves only `good:1883`, and records every look-up.
    fn run(c: &ValidConfig) -> (Vec<String>, Vec<String>) {
        let mut asked = Vec::new();
        let errors = unresolved_with(c, |a| {
            asked.push(a.to_string());
            match a {
                "good:1883" => Ok(vec!["10.0.0.1:1883".parse().expect("addr")]),
                "empty:1883" => Ok(Vec::new()),
                _ => Err("failed to lookup address information".into()),
            }
        });
        (errors.iter().map(ToString::to_string).collect(), asked)
    }

    #[test]
    fn a_single_named_broker_that_does_not_resolve_names_the_backend_field() {
        let c = config(&format!(
            "  - name: mqtts\n    listen: 127.0.0.1:8883\n    backend: nowhere:1883\n{TLS}"
        ));
        let (errors, _) = run(&c);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "/etc/moat/moat.yaml: listeners[0].backend: nowhere:1883 does not resolve: failed to lookup"
            ),
            "{errors:?}"
        );
        assert!(errors[0].contains("hint: ") && errors[0].contains("--no-resolve"));
    }

    #[test]
    fn list_nodes_and_route_nodes_are_named_by_index_and_ip_addresses_are_not_looked_up() {
        let c = config(&format!(
            "  - name: mqtts\n    listen: 127.0.0.1:8883\n    backend: [127.0.0.1:1883, good:1883, nowhere:1883, '[::1]:1883']\n{TLS}    routes:\n      - name: devices\n        server_names: [devices.example.com]\n        backend: [good:1883, {{ address: empty:1883, backup: true }}]\n{}",
            TLS.replace("    ", "        ")
        ));
        let (errors, asked) = run(&c);
        assert_eq!(
            asked,
            ["good:1883", "nowhere:1883", "empty:1883"],
            "each name once, no IPs"
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("listeners[0].backend[2]: nowhere:1883 does not resolve"),
            "{errors:?}"
        );
        assert!(
            errors[1]
                .contains("listeners[0].routes[0].backend[1]: empty:1883 resolves to no address"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_configuration_of_ip_addresses_needs_no_look_up() {
        let c = config(&format!(
            "  - name: mqtts\n    listen: 127.0.0.1:8883\n    backend: 127.0.0.1:1883\n{TLS}"
        ));
        assert_eq!(run(&c), (Vec::new(), Vec::new()));
    }
}
