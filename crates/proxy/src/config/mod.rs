//! The configuration file: its schema, parsing and validation.
//!
//! This module owns the user-facing contract documented in
//! `docs/configuration.md`. It turns YAML text into typed structs and checks
//! everything that can be checked without touching the network or the
//! certificate files: unknown keys (with a "did you mean"), value ranges,
//! duplicate names and addresses, TLS policy names, log filters. Paths are
//! resolved relative to the directory of the configuration file. Input that
//! would take unbounded time or memory is refused before it can: YAML
//! aliases that expand too far, log filters that compile regexes.
//!
//! It does no I/O beyond reading the configuration file itself, so that the
//! validation rules can be unit-tested and fuzzed.
//!
//! - `schema`: the serde types, with their defaults;
//! - `yaml`: text to those types, with the alias budget and errors that
//!   name the field and line;
//! - `resolve`: routes expanded into listeners, paths made absolute;
//! - `validate`: the rules serde cannot express, one function per section;
//! - `error`: what a problem looks like.

mod error;
mod resolve;
mod schema;
#[cfg(test)]
mod tests;
mod validate;
mod yaml;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, ConfigErrors};
pub use schema::*;
pub use validate::{addresses_clash, named_backends, NamedBackend};

use crate::tls::policy::TlsPolicy;

/// A configuration that parsed and passed every check that needs no files.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// The configuration file.
    pub path: PathBuf,
    /// The settings as written, with relative paths resolved.
    pub config: Config,
    /// The TLS policy of each listener, in the same order as `listeners`.
    pub policies: Vec<TlsPolicy>,
}

impl ValidConfig {
    /// The listeners with their TLS policies.
    pub fn listeners(&self) -> impl Iterator<Item = (&ListenerConfig, &TlsPolicy)> {
        self.config.listeners.iter().zip(self.policies.iter())
    }
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<ValidConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        location: None,
        message: format!("cannot read the configuration file: {e}"),
        hint: Some(match e.kind() {
            std::io::ErrorKind::NotFound => {
                "check the path given to --config; relative paths start from the current directory"
                    .to_string()
            }
            std::io::ErrorKind::PermissionDenied => {
                "make the file readable by the user moat runs as".to_string()
            }
            _ => "check that the path names a readable text file".to_string(),
        }),
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text. `path` names the file in
/// messages and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<ValidConfig, ConfigErrors> {
    let mut config = yaml::deserialize(path, text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    resolve::expand_routes(&mut config);
    resolve::resolve_paths(&mut config, base);
    let policies = validate::validate(path, &config)?;
    resolve::acme_files(&mut config);
    Ok(ValidConfig {
        path: path.to_path_buf(),
        config,
        policies,
    })
}
