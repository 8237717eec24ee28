//! Value types of the schema that YAML has no word for: durations written
//! the human way, and a value that may be written alone or as a list.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A duration written the human way: `10s`, `500ms`, `2m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, rather than parsing after the fact, so that the error
        // is raised inside the field and its path names the field.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 10s, 500ms or 2m")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(text.trim())
                    .map(HumanDuration)
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid duration {text:?} ({e}); write it with a unit, like 10s, 500ms or 2m"
                        ))
                    })
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a bare number ({n}) has no unit; write {n}s or {n}ms"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{n} is not a duration; write it like 10s"
                )))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A value written either alone or as a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            Many(Vec<T>),
            One(T),
        }
        match Either::deserialize(d) {
            Ok(Either::Many(v)) => Ok(Self(v)),
            Ok(Either::One(x)) => Ok(Self(vec![x])),
            Err(_) => Err(serde::de::Error::custom(
                "expected a file name or a list of file names",
            )),
        }
    }
}
