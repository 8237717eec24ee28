//! Closed sets of label values: each metric label that says why (a
//! handshake failed, a connection was refused, a session was closed) is an
//! enum whose every value is known, so that a typo cannot make a new
//! series, and every series exists at zero from the start for `rate()` and
//! alerts to see.
//!
//! [`reasons!`] declares such an enum with its label values; [`ByReason`]
//! holds one pre-resolved counter per value, so counting is an index and an
//! atomic add.

use std::marker::PhantomData;

use prometheus_client::metrics::counter::Counter;

/// A closed set of values of one metric label.
pub trait Reason: Copy + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The label value.
    fn as_str(self) -> &'static str;
    /// The position in [`Reason::ALL`].
    fn index(self) -> usize;
}

/// Declares an enum of label values:
///
/// ```text
/// reasons! {
///     /// Why a connection was refused.
///     pub enum RejectReason {
///         /// The listener is full.
///         MaxConnections => "max_connections",
///     }
/// }
/// ```
macro_rules! reasons {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// The label value (also what log lines say).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }
        }

        impl $crate::metrics::reason::Reason for $name {
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
            fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use reasons;

/// One counter per value of `R`, all created (at zero) up front.
pub struct ByReason<R> {
    counters: Box<[Counter]>,
    _reason: PhantomData<fn(R)>,
}

impl<R: Reason> ByReason<R> {
    /// The counters, each made by `counter` from its label value.
    pub fn new(mut counter: impl FnMut(&'static str) -> Counter) -> Self {
        Self {
            counters: R::ALL.iter().map(|r| counter(r.as_str())).collect(),
            _reason: PhantomData,
        }
    }

    /// Counts one for `reason`.
    pub fn inc(&self, reason: R) {
        self.counters[reason.index()].inc();
    }

    /// The counter of `reason`.
    #[cfg(test)]
    pub fn get(&self, reason: R) -> &Counter {
        &self.counters[reason.index()]
    }
}

impl<R> Clone for ByReason<R> {
    fn clone(&self) -> Self {
        Self {
            counters: self.counters.clone(),
            _reason: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    reasons! {
        /// A test set.
        pub enum Why {
            /// One.
            First => "first",
            /// Two.
            Second => "second",
        }
    }

    #[test]
    fn every_value_has_its_counter_and_label() {
        assert_eq!(Why::ALL, &[Why::First, Why::Second]);
        assert_eq!(Why::Second.as_str(), "second");
        assert_eq!(Why::First.to_string(), "first");
        let mut made = Vec::new();
        let by = ByReason::<Why>::new(|label| {
            made.push(label);
            Counter::default()
        });
        assert_eq!(made, ["first", "second"]);
        by.inc(Why::Second);
        by.inc(Why::Second);
        assert_eq!(by.get(Why::First).get(), 0);
        assert_eq!(by.get(Why::Second).get(), 2);
    }
}
