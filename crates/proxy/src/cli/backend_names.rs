//! `moat check`'s look-up of the backends' host names: every node written
//! as a name must resolve, where `moat check` runs, to at least one
//! address, or the check fails with the node's field
//! (`listeners[0].backend[1]`). `moat run` does not refuse such a name: it
//! resolves names at every connect, and a broker that is not in the DNS yet
//! (a Pod still starting) is only down for now. `moat check --no-resolve`
//! skips the look-ups, to check a configuration away from the network it
//! runs in.
//!
//! An entry with `discover:` is looked up the way `moat run` does it
//! (`conn::discovery`: A/AAAA or SRV, against `backend_dns.servers` or the
//! system's), and the nodes found are listed; an entry that finds none is
//! an error too, though `moat run` would wait for its nodes.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::{
    named_backends, BackendDnsConfig, BackendNode, ConfigError, NamedBackend, ValidConfig,
};
use crate::conn::discovery::{Answer, Resolver};

/// What a name resolved to, or why it did not.
type Lookup = Result<Vec<SocketAddr>, String>;

/// What `moat check` found for the backend names.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The names that found no address, as errors naming their field.
    pub errors: Vec<ConfigError>,
    /// One line per discovered entry: its field, its name and its nodes.
    pub discovered: Vec<String>,
}

/// Resolves every backend name of `config`: plain names with the system's
/// resolver, discovered entries as `moat run` does.
pub fn resolve(config: &ValidConfig) -> Resolved {
    let mut runtime = None;
    resolve_with(config, |node| match node.discover {
        None => node
            .address
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|e| e.to_string()),
        Some(_) => {
            let rt = match &runtime {
                Some(rt) => rt,
                None => {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.insert(rt)
                }
            };
            discover(rt, node)
        }
    })
}

/// Looks a discovered entry up once, with its listener's DNS servers.
fn discover(rt: &tokio::runtime::Runtime, node: &NamedBackend) -> Lookup {
    let dns = BackendDnsConfig {
        servers: node.servers.clone(),
        ..BackendDnsConfig::default()
    };
    let entry = BackendNode {
        address: node.address.clone(),
        weight: 1,
        backup: false,
        name: None,
        discover: node.discover,
    };
    rt.block_on(async {
        let resolver = Resolver::new(&dns)?;
        match resolver.lookup(&entry).await {
            Answer::Found(mut found) => {
                found.sort();
                found.dedup();
                Ok(found)
            }
            Answer::Failed(e) => Err(e),
        }
    })
}

/// The names that `resolve` (called once per distinct name, way of
/// looking up and servers) finds no address for, in the order of the
/// file, and the nodes of the discovered entries.
fn resolve_with(
    config: &ValidConfig,
    mut resolve: impl FnMut(&NamedBackend) -> Lookup,
) -> Resolved {
    let mut seen: HashMap<String, Lookup> = HashMap::new();
    let mut out = Resolved::default();
    for node in named_backends(&config.config) {
        let key = format!("{}|{:?}|{:?}", node.address, node.discover, node.servers);
        let lookup = seen.entry(key).or_insert_with(|| resolve(&node));
        let why = match lookup {
            Ok(addresses) if !addresses.is_empty() => {
                if let Some(d) = node.discover {
                    let nodes: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                    out.discovered.push(format!(
                        "{}: {} (discover: {}) has {} node(s): {}",
                        node.field,
                        node.address,
                        d.as_str(),
                        nodes.len(),
                        nodes.join(", ")
                    ));
                }
                continue;
            }
            Ok(_) => "resolves to no address".to_string(),
            Err(e) => format!("does not resolve: {e}"),
        };
        let hint = if node.discover.is_some() {
            "check the name and the DNS servers (backend_dns.servers, else /etc/resolv.conf); \
             to check the configuration away from the network it runs in, add --no-resolve"
        } else {
            "check the name and the DNS servers this host uses (/etc/resolv.conf); \
             to check the configuration away from the network it runs in, add --no-resolve"
        };
        out.errors.push(
            ConfigError::at(&config.path, node.field, format!("{} {why}", node.address)).hint(hint),
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
        let errors = resolve_with(c, |n| {
            let a = n.address.as_str();
            asked.push(a.to_string());
            match a {
                "good:1883" => Ok(vec!["10.0.0.1:1883".parse().expect("addr")]),
                "empty:1883" => Ok(Vec::new()),
                _ => Err("failed to lookup address information".into()),
            }
        })
        .errors;
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

    #[test]
    fn discovered_entries_list_their_nodes_and_one_that_finds_none_names_its_field() {
        let c = config(&format!(
            "  - name: mqtts\n    listen: 127.0.0.1:8883\n    backend:\n      - {{ address: _mqtt._tcp.brokers.test, discover: srv }}\n      - {{ address: gone.test:1883, discover: addresses }}\n    backend_dns: {{ servers: [127.0.0.1:5353] }}\n{TLS}"
        ));
        let mut asked = Vec::new();
        let r = resolve_with(&c, |n| {
            asked.push((n.address.clone(), n.discover, n.servers.clone()));
            match n.address.as_str() {
                "_mqtt._tcp.brokers.test" => Ok(vec![
                    "127.0.0.1:1883".parse().expect("addr"),
                    "127.0.0.1:1884".parse().expect("addr"),
                ]),
                _ => Ok(Vec::new()),
            }
        });
        assert_eq!(asked[0].1, Some(crate::config::Discover::Srv));
        assert_eq!(
            asked[0].2,
            ["127.0.0.1:5353"],
            "with the listener's servers"
        );
        assert_eq!(
            r.discovered,
            ["listeners[0].backend[0]: _mqtt._tcp.brokers.test (discover: srv) has 2 node(s): 127.0.0.1:1883, 127.0.0.1:1884"]
        );
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        let e = r.errors[0].to_string();
        assert!(
            e.contains("listeners[0].backend[1]: gone.test:1883 resolves to no address")
                && e.contains("backend_dns.servers"),
            "{e}"
        );
    }
}
