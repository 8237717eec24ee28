//! SNI routes added and removed by a reloaded configuration file.
//!
//! A listener owns its socket, so the set of listeners is fixed while moat
//! runs; its routes (expanded to `listener/route` entries) are not. A new
//! route is built aside first, like any reload: its certificates are read
//! and verified, and one that cannot be loaded refuses the whole file, so
//! that nothing of it is applied. Then it gets its own context (admission,
//! metrics, TLS state, stapling) and joins its listener's SNI table, and
//! the catalog of listeners (readiness, `/certificates`, the file watcher).
//! A removed route leaves its listener's table: new connections for its
//! names go where the listener sends unclaimed names; its live sessions
//! go on until they end (`DELETE /connections?listener=...` closes them
//! now), and its certificate and reload series leave `/metrics`.
//!
//! Which names come and go ([`diff`]) is pure.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use super::swap::ReloadTarget;
use crate::config::ValidConfig;
use crate::conn::context::{Catalog, Context};
use crate::metrics::Metrics;
use crate::tls::certs::CertError;

/// The route names `new` adds and those it removes, against `current`
/// (both in configuration order).
pub fn diff(current: &[String], new: &[String]) -> (Vec<String>, Vec<String>) {
    let added = new
        .iter()
        .filter(|n| !current.contains(n))
        .cloned()
        .collect();
    let removed = current
        .iter()
        .filter(|n| !new.contains(n))
        .cloned()
        .collect();
    (added, removed)
}

/// What a configuration file does to the routes.
pub struct RouteChange {
    /// Every target in `new`'s order: those kept, and the new routes.
    pub targets: Vec<Arc<ReloadTarget>>,
    /// The names of the new routes, already in service (not reloaded).
    pub added: Vec<String>,
    /// The targets of the routes that left.
    pub removed: Vec<Arc<ReloadTarget>>,
}

/// Builds the routes `new` adds (all of them, or none: the first that
/// cannot be loaded is the error) and lists the targets in `new`'s order.
/// Nothing is in service yet: see [`put_in_service`].
pub fn plan(
    targets: &[Arc<ReloadTarget>],
    new: &ValidConfig,
    metrics: &Arc<Metrics>,
) -> Result<RouteChange, CertError> {
    let names = |it: &mut dyn Iterator<Item = String>| it.collect::<Vec<_>>();
    let current = names(&mut targets.iter().map(|t| t.ctx.name.clone()));
    let wanted = names(&mut new.listeners().map(|(l, _)| l.name.clone()));
    let (added, removed) = diff(&current, &wanted);
    if added.is_empty() && removed.is_empty() {
        return Ok(RouteChange {
            targets: targets.to_vec(),
            added,
            removed: Vec::new(),
        });
    }
    // `settings::needs_restart` refused a file that changes the listeners,
    // so every name that comes or goes is a route, and a registry exists.
    let sessions = targets[0].ctx.sessions.clone();
    let challenges = targets[0].ctx.challenges.clone();
    let now = SystemTime::now();
    let mut built = Vec::new();
    for (l, policy) in new.listeners().filter(|(l, _)| added.contains(&l.name)) {
        let (tls, resumption) = crate::tls::prepare_one(l, policy, now)?;
        built.push((l, policy, tls, resumption));
    }
    let mut fresh: Vec<Arc<ReloadTarget>> = built
        .into_iter()
        .map(|(l, policy, tls, resumption)| {
            let ctx = Context::new(
                l,
                policy.clone(),
                tls,
                metrics,
                Vec::new(),
                sessions.clone(),
                challenges.clone(),
            );
            Arc::new(ReloadTarget::new(Arc::new(ctx), resumption, metrics))
        })
        .collect();
    let mut ordered = Vec::with_capacity(wanted.len());
    for name in &wanted {
        let kept = targets.iter().find(|t| &t.ctx.name == name);
        let target = match kept {
            Some(t) => t.clone(),
            None => {
                let i = fresh.iter().position(|t| &t.ctx.name == name);
                fresh.swap_remove(i.expect("every added route was built"))
            }
        };
        ordered.push(target);
    }
    let removed = targets
        .iter()
        .filter(|t| removed.contains(&t.ctx.name))
        .cloned()
        .collect();
    Ok(RouteChange {
        targets: ordered,
        added,
        removed,
    })
}

/// Puts the routes of `targets` (every listener and route, in
/// configuration order) in their listeners' SNI tables and in the catalog,
/// and retires the `removed` ones.
pub fn put_in_service(
    targets: &[Arc<ReloadTarget>],
    added: &[String],
    removed: &[Arc<ReloadTarget>],
    catalog: &Catalog,
) {
    for parent in targets.iter().filter(|t| t.is_listener()) {
        let routes = targets
            .iter()
            .filter(|t| t.route_of() == Some(parent.ctx.name.clone()))
            .map(|t| t.ctx.clone())
            .collect();
        parent.set_routes(routes);
    }
    catalog.store(Arc::new(targets.iter().map(|t| t.ctx.clone()).collect()));
    for t in targets.iter().filter(|t| added.contains(&t.ctx.name)) {
        info!(route = %t.ctx.name, "SNI route added");
        crate::listen::log_listening(&t.ctx);
    }
    for t in removed {
        let live = t.ctx.sessions.sessions_of(&t.ctx.name).len();
        t.retire();
        warn!(
            route = %t.ctx.name,
            live_sessions = live,
            "SNI route removed; its live sessions go on until they end"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn added_and_removed_routes_are_named_in_order() {
        let current = names(&["mqtts", "mqtts/a", "mqtts/b"]);
        let new = names(&["mqtts", "mqtts/b", "mqtts/c", "mqtts/d"]);
        assert_eq!(
            diff(&current, &new),
            (names(&["mqtts/c", "mqtts/d"]), names(&["mqtts/a"]))
        );
        assert_eq!(diff(&current, &current), (Vec::new(), Vec::new()));
    }
}
