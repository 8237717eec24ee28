//! `GET /connections` and `DELETE /connections`: the query string parsed
//! into a filter, the filter matched against the registry's sessions, and
//! the JSON that lists them. Pure: the admin endpoint does the HTTP.
//!
//! Filters (all optional, combined with "and"):
//! - `listener`: the listener or route name;
//! - `identity`: the client certificate's common name, subject DN, or
//!   SHA-256 fingerprint (hex, colons and case ignored);
//! - `client_id`: the MQTT client id;
//! - `source`: the client's IP address.
//!
//! `limit` (default 100, at most 1000) and `offset` page a listing. An
//! unknown, repeated or malformed parameter is refused, naming it.
//!
//! Bans (`POST /bans`) name exactly one target, `identity`, `client_id` or
//! `source` (an address or a CIDR network), and an optional `duration`
//! (`30m`, `12h`, `7d`; none is forever).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::conn::bans::{Ban, Target};
use crate::conn::registry::Session;
use crate::tls::certs::{rfc3339, unix};

/// The listing's page size when none is asked for.
const DEFAULT_LIMIT: usize = 100;
/// The largest page.
const MAX_LIMIT: usize = 1000;

/// What a request selects.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filter {
    listener: Option<String>,
    identity: Option<String>,
    client_id: Option<String>,
    source: Option<IpAddr>,
}

/// A listing's page.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// Sessions skipped.
    pub offset: usize,
    /// Sessions shown at most.
    pub limit: usize,
}

/// A refused query: the parameter and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct QueryError(pub String);

impl Filter {
    /// Whether the filter selects anything less than every session.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `s` matches.
    pub fn matches(&self, s: &Session) -> bool {
        self.listener.as_ref().is_none_or(|l| *l == s.listener)
            && self
                .client_id
                .as_deref()
                .is_none_or(|c| s.client_id() == Some(c))
            && self.source.is_none_or(|ip| s.peer.ip() == ip)
            && self
                .identity
                .as_deref()
                .is_none_or(|want| s.identity.as_ref().is_some_and(|id| id.is_named(want)))
    }
}

/// Parses a query string (without the `?`). `paging` says whether `limit`
/// and `offset` are allowed (a listing) or not (a DELETE).
pub fn parse(query: Option<&str>, paging: bool) -> Result<(Filter, Page), QueryError> {
    let mut filter = Filter::default();
    let mut page = Page {
        offset: 0,
        limit: DEFAULT_LIMIT,
    };
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if seen.iter().any(|k| *k == key) {
            return Err(QueryError(format!("{key}: given more than once")));
        }
        seen.push(key.to_string());
        let value = value.into_owned();
        let non_empty = |v: String| {
            if v.is_empty() {
                Err(QueryError(format!("{key}: empty")))
            } else {
                Ok(v)
            }
        };
        match key.as_ref() {
            "listener" => filter.listener = Some(non_empty(value)?),
            "identity" => filter.identity = Some(non_empty(value)?),
            "client_id" => filter.client_id = Some(value),
            "source" => {
                let ip = value
                    .parse()
                    .map_err(|_| QueryError(format!("source: {value:?} is not an IP address")))?;
                filter.source = Some(ip);
            }
            "limit" if paging => {
                page.limit = match value.parse::<usize>() {
                    Ok(n @ 1..=MAX_LIMIT) => n,
                    _ => {
                        return Err(QueryError(format!(
                            "limit: {value:?} is not a number from 1 to {MAX_LIMIT}"
                        )))
                    }
                }
            }
            "offset" if paging => {
                page.offset = value
                    .parse()
                    .map_err(|_| QueryError(format!("offset: {value:?} is not a number")))?;
            }
            other => {
                let known = if paging {
                    "listener, identity, client_id, source, limit, offset"
                } else {
                    "listener, identity, client_id, source"
                };
                return Err(QueryError(format!(
                    "{other}: unknown parameter; known: {known}"
                )));
            }
        }
    }
    Ok((filter, page))
}

/// Parses `POST /bans`'s query: the target and how long the ban lasts.
pub fn parse_ban(query: Option<&str>) -> Result<(Target, Option<Duration>), QueryError> {
    let mut target = None;
    let mut duration = None;
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if seen.iter().any(|k| *k == key) {
            return Err(QueryError(format!("{key}: given more than once")));
        }
        seen.push(key.to_string());
        if value.is_empty() {
            return Err(QueryError(format!("{key}: empty")));
        }
        let t = match key.as_ref() {
            "identity" => Target::Identity(value.into_owned()),
            "client_id" => Target::ClientId(value.into_owned()),
            "source" => {
                let net = value
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| value.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        QueryError(format!(
                            "source: {value:?} is neither an IP address nor a CIDR network"
                        ))
                    })?;
                Target::Source(net.trunc())
            }
            "duration" => {
                let d = humantime::parse_duration(&value).map_err(|e| {
                    QueryError(format!(
                        "duration: {value:?} is not a duration ({e}); try 30m, 12h or 7d"
                    ))
                })?;
                duration = Some(d);
                continue;
            }
            other => {
                return Err(QueryError(format!(
                    "{other}: unknown parameter; known: identity, client_id, source, duration"
                )))
            }
        };
        if target.replace(t).is_some() {
            return Err(QueryError(format!(
                "{key}: a ban names one target (identity, client_id or source); set one ban each"
            )));
        }
    }
    let target = target
        .ok_or_else(|| QueryError("a ban needs a target: identity, client_id or source".into()))?;
    Ok((target, duration))
}

/// Whether live session `s` is what `target` bans.
pub fn banned(target: &Target, s: &Session) -> bool {
    match target {
        Target::Identity(_) => s
            .identity
            .as_ref()
            .is_some_and(|id| target.matches_identity(id)),
        Target::ClientId(c) => s.client_id() == Some(c.as_str()),
        Target::Source(net) => net.contains(&s.peer.ip()),
    }
}

/// One ban as `GET /bans` shows it.
pub fn ban_json(b: &Ban) -> serde_json::Value {
    serde_json::json!({
        "id": b.id,
        "kind": b.target.kind(),
        "value": b.target.value(),
        "since": rfc3339(unix(b.since)),
        "until": b.until.map(|u| rfc3339(unix(u))),
    })
}

/// One session as `GET /connections` shows it.
pub fn session_json(s: &Session, now: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "listener": s.listener,
        "source": s.peer.to_string(),
        "identity": s.identity.as_ref().map(|id| serde_json::json!({
            "subject": id.subject,
            "common_name": id.common_name,
            "sha256": id.sha256,
            "not_after": rfc3339(id.not_after),
        })),
        "client_id": s.client_id(),
        "since": rfc3339(unix(s.since)),
        "duration_s": now.duration_since(s.since).map_or(0, |d| d.as_secs()),
    })
}

/// The body of `GET /connections`: the page of matching sessions, and how
/// many match in all.
pub fn listing_json(
    sessions: &[Arc<Session>],
    filter: &Filter,
    page: &Page,
    now: SystemTime,
) -> serde_json::Value {
    let matching: Vec<&Arc<Session>> = sessions.iter().filter(|s| filter.matches(s)).collect();
    let shown: Vec<_> = matching
        .iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|s| session_json(s, now))
        .collect();
    serde_json::json!({
        "total": matching.len(),
        "offset": page.offset,
        "limit": page.limit,
        "connections": shown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::registry::{NewSession, Registered, Registry};
    use crate::tls::client_auth::PeerIdentity;
    use std::time::Duration;

    fn device(r: &Arc<Registry>, cn: &str, ip: &str, client_id: Option<&str>) -> Registered {
        let reg = r.register(NewSession {
            id: crate::conn::registry::test_id(),
            listener: if cn.starts_with("web") {
                "wss"
            } else {
                "mqtts"
            }
            .into(),
            peer: format!("{ip}:5000").parse().unwrap(),
            identity: Some(PeerIdentity {
                subject: format!("CN={cn}"),
                common_name: Some(cn.into()),
                sha256: format!("{:0>64}", cn.len()),
                not_after: 2_000_000_000,
            }),
            chain: None,
            max_lifetime: Duration::ZERO,
        });
        if let Some(c) = client_id {
            reg.set_client_id(c);
        }
        reg
    }

    fn select(r: &Registry, query: &str) -> Vec<u64> {
        let (f, _) = parse(Some(query), true).unwrap();
        r.sessions()
            .iter()
            .filter(|s| f.matches(s))
            .map(|s| s.id)
            .collect()
    }

    #[test]
    fn filters_select_by_each_field_and_combine() {
        let r = Arc::new(Registry::default());
        let a = device(&r, "pump-1", "10.0.0.1", Some("pump-1"));
        let b = device(&r, "pump-22", "10.0.0.2", None);
        let c = device(&r, "web-3", "10.0.0.1", Some("dash"));
        assert_eq!(
            select(&r, ""),
            [a.session().id, b.session().id, c.session().id]
        );
        assert_eq!(select(&r, "identity=pump-1"), [a.session().id]);
        assert_eq!(select(&r, "identity=CN%3Dpump-22"), [b.session().id]);
        let fp = format!("{:0>64}", 7).to_uppercase();
        assert_eq!(select(&r, &format!("identity={fp}")), [b.session().id]);
        assert_eq!(select(&r, "client_id=dash"), [c.session().id]);
        assert_eq!(
            select(&r, "source=10.0.0.1"),
            [a.session().id, c.session().id]
        );
        assert_eq!(select(&r, "source=10.0.0.1&listener=wss"), [c.session().id]);
        assert!(select(&r, "identity=pump").is_empty(), "no prefix match");
    }

    #[test]
    fn bad_parameters_are_named() {
        let err = |q: &str, paging| parse(Some(q), paging).unwrap_err().0;
        assert!(err("colour=red", true).starts_with("colour: unknown parameter"));
        assert!(err("source=pump", true).starts_with("source:"));
        assert!(err("limit=0", true).starts_with("limit:"));
        assert!(err("limit=5000", true).starts_with("limit:"));
        assert!(err("offset=-1", true).starts_with("offset:"));
        assert!(err("identity=", true).starts_with("identity: empty"));
        assert!(err("listener=a&listener=b", true).contains("more than once"));
        assert!(err("limit=5", false).starts_with("limit: unknown parameter"));
    }

    #[test]
    fn a_ban_names_one_target_and_an_optional_duration() {
        let ok = |q: &str| parse_ban(Some(q)).unwrap();
        assert_eq!(ok("identity=stolen").0, Target::Identity("stolen".into()));
        assert_eq!(
            ok("client_id=c&duration=2h").1,
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            ok("source=10.1.2.3/16").0,
            Target::Source("10.1.0.0/16".parse().unwrap())
        );
        assert_eq!(
            ok("source=192.0.2.7").0,
            Target::Source("192.0.2.7/32".parse().unwrap())
        );
        let err = |q: &str| parse_ban(Some(q)).unwrap_err().0;
        assert!(err("").contains("needs a target"));
        assert!(err("identity=a&client_id=b").starts_with("client_id: a ban names one target"));
        assert!(err("source=10.0.0.0/33").starts_with("source:"));
        assert!(err("identity=a&duration=soon").starts_with("duration:"));
        assert!(err("colour=red").starts_with("colour: unknown parameter"));
    }

    #[test]
    fn a_ban_selects_the_live_sessions_it_names() {
        let r = Arc::new(Registry::default());
        let a = device(&r, "pump-1", "10.0.0.1", Some("pump-1"));
        let b = device(&r, "web-2", "10.9.0.2", Some("dash"));
        let hits = |t: &Target| -> Vec<u64> {
            r.sessions()
                .iter()
                .filter(|s| banned(t, s))
                .map(|s| s.id)
                .collect()
        };
        assert_eq!(hits(&Target::Identity("pump-1".into())), [a.session().id]);
        assert_eq!(hits(&Target::ClientId("dash".into())), [b.session().id]);
        assert_eq!(
            hits(&Target::Source("10.9.0.0/16".parse().unwrap())),
            [b.session().id]
        );
        let json = ban_json(
            &r.bans
                .add(Target::ClientId("dash".into()), None, SystemTime::now()),
        );
        assert_eq!(json["kind"], "client_id");
        assert_eq!(json["until"], serde_json::Value::Null);
    }

    #[test]
    fn a_listing_pages_and_counts_every_match() {
        let r = Arc::new(Registry::default());
        let held: Vec<Registered> = (0..5)
            .map(|i| device(&r, &format!("d{i}"), "10.0.0.9", None))
            .collect();
        let (f, page) = parse(Some("limit=2&offset=3"), true).unwrap();
        let v = listing_json(&r.sessions(), &f, &page, SystemTime::now());
        assert_eq!(v["total"], 5);
        let ids: Vec<u64> = v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [held[3].session().id, held[4].session().id]);
        assert_eq!(v["connections"][0]["identity"]["common_name"], "d3");
        assert_eq!(v["connections"][0]["source"], "10.0.0.9:5000");
    }
}
