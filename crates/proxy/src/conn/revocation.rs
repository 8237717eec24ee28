//! The live re-check of online revocation
//! (`tls.client_auth.revocation_recheck`): on a listener that asks device
//! certificates' OCSP responders or CRL distribution points, every live
//! session is checked again every so often, through the same caches as
//! at connect, so a fleet costs one query per certificate, or one download
//! per CRL, per answer's lifetime, not one per session per round. This is
//! also what refreshes those answers on a timer when no device connects.
//! A session whose certificate is now revoked is closed (reason
//! `revoked`, an MQTT 5 DISCONNECT first where the session is MQTT-aware).
//!
//! An answer that cannot be had closes nothing, whatever the mode:
//! `require` (fail closed) governs who gets in, and a connected fleet is
//! not dropped because a responder is down for a minute. CRL files
//! (`client_auth.crl`) reach live sessions on reload instead
//! (`control::reload::recheck`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::{JoinHandle, JoinSet};
use tracing::warn;

use super::context::{Context, Live};
use super::registry::{CloseReason, Session};

/// Sessions checked at once per listener: enough that a responder that
/// times out does not make a round of 100,000 sessions take days, few
/// enough not to flood it when its answers lapse together.
const PARALLEL: usize = 32;

/// When each listener's next round is due, and the round in progress, so
/// that a slow round is never overlapped by the next.
#[derive(Default)]
pub struct Rechecks {
    rounds: HashMap<String, Round>,
}

struct Round {
    next: Instant,
    running: Option<JoinHandle<()>>,
}

impl Rechecks {
    /// Starts a round on every listener (or route) of `all` whose
    /// interval has passed since its last one (or since it was first seen)
    /// and whose last round is over.
    pub fn start_due(&mut self, all: &[Arc<Context>], now: Instant) {
        self.rounds
            .retain(|name, _| all.iter().any(|c| &c.name == name));
        for ctx in all {
            let every = ctx.live.load().config.tls.client_auth.revocation_recheck();
            let Some(every) = every else {
                self.rounds.remove(&ctx.name);
                continue;
            };
            let round = self.rounds.entry(ctx.name.clone()).or_insert(Round {
                next: now + every,
                running: None,
            });
            let busy = round.running.as_ref().is_some_and(|h| !h.is_finished());
            if due(round.next, now) && !busy {
                round.next = now + every;
                round.running = Some(tokio::spawn(recheck(ctx.clone())));
            }
        }
    }
}

/// Whether a round planned for `next` is due at `now`.
fn due(next: Instant, now: Instant) -> bool {
    now >= next
}

/// One round on `ctx`: every live session with a verified device
/// certificate is checked again; the revoked are told to stop.
async fn recheck(ctx: Arc<Context>) {
    let live = ctx.live.load_full();
    let started = Instant::now();
    let mut queue = ctx
        .sessions
        .sessions_of(&ctx.name)
        .into_iter()
        .filter(|s| s.chain.is_some() && s.identity.is_some());
    let mut set = JoinSet::new();
    let mut revoked = Vec::new();
    loop {
        while set.len() < PARALLEL {
            let Some(s) = queue.next() else { break };
            let (ctx, live) = (ctx.clone(), live.clone());
            set.spawn(async move {
                let revoked = is_revoked(&ctx, &live, &s).await;
                (s, revoked)
            });
        }
        match set.join_next().await {
            Some(Ok((s, true))) => revoked.push(s),
            Some(_) => {}
            None => break,
        }
    }
    if revoked.is_empty() {
        return;
    }
    warn!(
        listener = %ctx.name,
        sessions = revoked.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "closing live sessions whose device certificate is now revoked (revocation_recheck)"
    );
    for s in &revoked {
        ctx.sessions.stop(s.id, CloseReason::Revoked);
    }
}

/// Whether the OCSP answer or the CRL about `s`'s device now says revoked.
async fn is_revoked(ctx: &Context, live: &Live, s: &Session) -> bool {
    let (Some(chain), Some(identity)) = (&s.chain, &s.identity) else {
        return false;
    };
    let (settings, cas) = (&live.config.tls.client_auth, &live.tls.client_ca_ders);
    ctx.metrics.sessions_rechecked.inc();
    super::ocsp::revokes(&ctx.ocsp, settings, cas, chain, identity).await
        || super::crl::revokes(&ctx.crl, settings, cas, chain).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_round_is_due_at_its_time_and_not_before() {
        let t = Instant::now();
        let every = Duration::from_secs(60);
        assert!(!due(t + every, t));
        assert!(!due(t + every, t + every - Duration::from_millis(1)));
        assert!(due(t + every, t + every));
        assert!(due(t + every, t + every * 2));
    }
}
