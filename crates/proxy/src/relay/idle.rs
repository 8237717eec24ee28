//! The idle timeout: a relay ends once no byte has moved either way for a
//! while, with a timer re-armed only when it fires, not on every byte.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// A relay that can say how many bytes it has moved, for idle detection.
pub trait Traffic {
    /// Bytes moved so far, both ways.
    fn moved(&self) -> u64;
}

/// A relay that ends with [`io::ErrorKind::TimedOut`] once no byte has
/// moved either way for `idle`. The timer is re-armed only when it fires,
/// not on every byte, so a busy connection costs nothing extra.
pub struct IdleTimeout<F> {
    inner: F,
    idle: std::time::Duration,
    /// No timer at all for an idle timeout of zero.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    seen: u64,
}

/// Wraps `relay` with an idle timeout; zero means none.
pub fn idle_timeout<F: Traffic>(relay: F, idle: std::time::Duration) -> IdleTimeout<F> {
    IdleTimeout {
        seen: relay.moved(),
        inner: relay,
        idle,
        sleep: (!idle.is_zero()).then(|| Box::pin(tokio::time::sleep(idle))),
    }
}

impl<F> IdleTimeout<F> {
    /// The relay inside.
    pub fn get_ref(&self) -> &F {
        &self.inner
    }

    /// The relay inside, to tell it to stop.
    pub fn get_mut(&mut self) -> &mut F {
        &mut self.inner
    }
}

impl<F, T> Future for IdleTimeout<F>
where
    F: Future<Output = io::Result<T>> + Traffic + Unpin,
{
    type Output = io::Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = Pin::new(&mut self.inner).poll(cx) {
            return Poll::Ready(out);
        }
        let this = &mut *self;
        let Some(sleep) = this.sleep.as_mut() else {
            return Poll::Pending;
        };
        loop {
            ready!(sleep.as_mut().poll(cx));
            let now = this.inner.moved();
            if now == this.seen {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no traffic for {}", humantime::format_duration(this.idle)),
                )));
            }
            this.seen = now;
            let deadline = tokio::time::Instant::now() + this.idle;
            sleep.as_mut().reset(deadline);
        }
    }
}
