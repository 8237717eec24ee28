//! YAML text to serde types, safely: the alias budget that stops a
//! "billion laughs" before it can grow, and serde_yaml's errors turned into
//! ones that name the file, the field and the line, with a "did you mean".

use std::fmt;
use std::path::Path;

use super::error::{ConfigError, ConfigErrors};
use super::schema::Config;

/// Parses configuration text into the schema's types: the alias budget
/// first, then serde with field paths.
pub fn deserialize(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    check_alias_expansion(path, text)?;
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| yaml_error(path, &e))
}

/// How much YAML aliases may add to a configuration beyond the file's own
/// length, counting one per value plus the bytes of each string.
///
/// Each alias (`*name`) repeats the whole value of its anchor (`&name`), so
/// nested ones multiply: a few kilobytes can stand for gigabytes (the
/// "billion laughs"). serde_yaml's own repetition limit counts alias jumps,
/// not what they repeat, and lets a 3 KB file grow past 2 GB.
const MAX_ALIAS_EXPANSION: usize = 1 << 18;

/// Refuses a document whose aliases expand it by more than
/// [`MAX_ALIAS_EXPANSION`], by walking it once, aliases expanded, without
/// keeping anything. The walk takes any kind of value, so it stops early
/// only on a YAML error (syntax, nesting, serde_yaml's own repetition
/// limit), which the real parse then reports with the field.
fn check_alias_expansion(path: &Path, text: &str) -> Result<(), ConfigError> {
    // Only an anchor (&name) and its aliases (*name) can expand a document.
    if !(text.contains('&') && text.contains('*')) {
        return Ok(());
    }
    let budget = Budget {
        left: std::cell::Cell::new(text.len().saturating_add(MAX_ALIAS_EXPANSION)),
        spent: std::cell::Cell::new(false),
    };
    match serde::de::DeserializeSeed::deserialize(&budget, serde_yaml::Deserializer::from_str(text))
    {
        Err(e) if budget.spent.get() => Err(ConfigError {
            file: path.to_path_buf(),
            location: e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column())),
            message: format!(
                "YAML aliases expand this file by more than {MAX_ALIAS_EXPANSION} values and bytes"
            ),
            hint: Some(
                "each alias (*name) repeats the whole value of its anchor (&name); write the values out, or do not nest aliases"
                    .to_string(),
            ),
        }),
        _ => Ok(()),
    }
}

/// What is left of the expansion budget, and whether it ran out.
struct Budget {
    left: std::cell::Cell<usize>,
    spent: std::cell::Cell<bool>,
}

impl Budget {
    fn spend<E: serde::de::Error>(&self, cost: usize) -> Result<(), E> {
        match self.left.get().checked_sub(cost) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.spent.set(true);
                Err(E::custom("alias expansion limit"))
            }
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for &Budget {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &Budget {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.spend(1)
    }
    // serde_yaml gives integers beyond 64 bits to these two, whose default
    // is an error: it would end the walk unspent and let a bomb after such
    // a value through (found reviewing fuzz/fuzz_targets/config_loader.rs's
    // fix). The other defaults forward to the methods here.
    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.spend(v.len().saturating_add(1))
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.spend(v.len().saturating_add(1))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.spend(1)?;
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.spend(1)?;
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.spend(1)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.spend(1)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag value`): the tag, then the value.
        let ((), variant) = data.variant_seed(self)?;
        serde::de::VariantAccess::newtype_variant_seed(variant, self)
    }
}

/// Turns a serde_yaml error into one that names the file, the field and the
/// line, and suggests the closest known key for a misspelt one.
fn yaml_error(path: &Path, e: &serde_path_to_error::Error<serde_yaml::Error>) -> ConfigErrors {
    let inner = e.inner();
    let text = inner.to_string();
    // serde_yaml writes "[<field path>: ]<message>[ at line L column C]".
    let body = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    let message = match body.split_once(": ") {
        Some((f, m)) if !f.contains(' ') => m.to_string(),
        _ => body.to_string(),
    };
    let field = e.path().to_string();
    let field = (!field.is_empty() && field != ".").then_some(field);
    let line = inner
        .location()
        .map(|l| format!("line {} column {}", l.line(), l.column()));
    let location = match (field, line) {
        (Some(f), Some(l)) => Some(format!("{f} ({l})")),
        (Some(f), None) => Some(f),
        (None, l) => l,
    };
    let hint = unknown_field_hint(&message).or_else(|| {
        if message.contains("missing field") {
            Some("see docs/configuration.md for the required keys".to_string())
        } else if message.contains("unknown variant") {
            Some("use one of the values listed".to_string())
        } else {
            None
        }
    });
    ConfigErrors(vec![ConfigError {
        file: path.to_path_buf(),
        location,
        message,
        hint,
    }])
}

/// For serde's "unknown field `x`, expected one of `a`, `b`", suggests the
/// closest expected name.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    // Abbreviations people bring from OpenSSL and other proxies.
    let alias = match unknown {
        "cn" | "CN" | "commonName" => Some("common_name"),
        "ou" | "OU" => Some("organizational_unit"),
        "san" | "dns_name" => Some("dns"),
        "fingerprint" | "sha256" | "pin" => Some("certificate_sha256"),
        "spki" | "pubkey_sha256" => Some("spki_sha256"),
        "crls" | "crl_file" => Some("crl"),
        "cafile" | "ca_file" | "ca_cert" => Some("ca"),
        "certfile" => Some("cert"),
        "keyfile" => Some("key"),
        "ciphers" => Some("cipher_suites"),
        "tls_version" => Some("min_version"),
        "port" | "bind" | "address" => Some("listen"),
        "upstream" | "target" | "broker" => Some("backend"),
        _ => None,
    };
    if let Some(a) = alias.filter(|a| expected.contains(a)) {
        return Some(format!("did you mean `{a}`?"));
    }
    let best = expected
        .iter()
        .map(|c| (strsim::damerau_levenshtein(unknown, c), *c))
        .min()?;
    if best.0 <= 3 || best.1.contains(unknown) || unknown.contains(best.1) {
        Some(format!("did you mean `{}`?", best.1))
    } else {
        Some(format!("valid keys here: {}", expected.join(", ")))
    }
}
