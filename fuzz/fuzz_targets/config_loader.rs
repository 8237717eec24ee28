//! Feeds arbitrary bytes to moat's configuration loader and checks that it
//! never panics, and that when it refuses a file every error it returns has
//! a message and names the file it was given (its `file`, and the path at
//! the start of each rendered error).
//!
//! Valid UTF-8 goes to `moat::config::parse(path, text)` as it is. Other
//! input is written to a scratch file and given to `moat::config::load`,
//! which reads text and must refuse it with an error that names the file;
//! its lossy decoding then goes to `parse` too, so the bytes still reach the
//! YAML parser.
//!
//! `parse` does no I/O: the certificate, key, CA and CRL paths a
//! configuration names are only resolved against the file's directory here,
//! and read later by `tls::files`. So an input naming /dev/zero or a FIFO
//! cannot block or exhaust it.
//!
//! A configuration that is accepted must be coherent: at least one
//! listener, unique names, one TLS policy per listener, and every file path
//! absolute (resolved against the absolute configuration path).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use moat::config::{self, ConfigErrors, ValidConfig};

/// Where the configuration claims to live: absolute, with a space and a
/// non-ASCII character, so that "names the file" is checked on an unusual
/// path. Nothing is ever read from it.
const PATH: &str = "/etc/moat fuzz/mœat.yaml";

fuzz_target!(|data: &[u8]| {
    let path = Path::new(PATH);
    match std::str::from_utf8(data) {
        Ok(text) => check(path, config::parse(path, text)),
        Err(_) => {
            let file = scratch_file();
            std::fs::write(file, data).expect("write the scratch file");
            let loaded = config::load(file);
            let _ = std::fs::remove_file(file);
            let errors = loaded.expect_err("invalid UTF-8 is refused");
            check_errors(file, &errors);
            assert!(errors.0[0].message.contains("cannot read"), "{errors}");
            let text = String::from_utf8_lossy(data);
            check(path, config::parse(path, &text));
        }
    }
});

/// A scratch file for this process, in the temporary directory; removed
/// after each use.
fn scratch_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("moat-fuzz-config-{}.yaml", std::process::id()))
    })
}

fn check(path: &Path, result: Result<ValidConfig, ConfigErrors>) {
    match result {
        Ok(valid) => check_valid(path, &valid),
        Err(errors) => check_errors(path, &errors),
    }
}

fn check_errors(path: &Path, errors: &ConfigErrors) {
    assert!(!errors.0.is_empty(), "an empty list of errors");
    let shown = path.display().to_string();
    for e in &errors.0 {
        assert_eq!(e.file, path, "{e}");
        assert!(!e.message.trim().is_empty(), "an empty message: {e:?}");
        if let Some(location) = &e.location {
            assert!(!location.trim().is_empty(), "an empty location: {e:?}");
        }
        if let Some(hint) = &e.hint {
            assert!(!hint.trim().is_empty(), "an empty hint: {e:?}");
        }
        assert!(e.to_string().starts_with(&shown), "{e}");
    }
    // What `moat` prints: one "error: <file>..." per problem. At least, as a
    // message may quote input that repeats the path.
    let rendered = errors.to_string();
    let prefix = format!("error: {shown}");
    assert!(rendered.starts_with(&prefix), "{rendered}");
    assert!(
        rendered.matches(&prefix).count() >= errors.0.len(),
        "{rendered}"
    );
}

fn check_valid(path: &Path, valid: &ValidConfig) {
    assert_eq!(valid.path, path);
    let listeners = &valid.config.listeners;
    assert!(!listeners.is_empty(), "accepted without listeners");
    assert_eq!(valid.policies.len(), listeners.len());
    let mut names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), listeners.len(), "duplicate listener names");
    for l in listeners {
        let tls = &l.tls;
        assert!(
            !tls.certificates.is_empty(),
            "{} has no certificates",
            l.name
        );
        let files = tls
            .certificates
            .iter()
            .flat_map(|c| [Some(&c.cert), Some(&c.key), c.ocsp_file.as_ref()])
            .chain([
                tls.client_auth.ca.as_ref(),
                tls.session_ticket_keys.as_ref(),
                tls.ocsp.static_file.as_ref(),
                tls.ocsp.cache_dir.as_ref(),
            ])
            .chain(tls.client_auth.crl.0.iter().map(Some))
            .flatten();
        for f in files {
            assert!(f.is_absolute(), "{} was not resolved", f.display());
        }
    }
    if let Some(admin) = &valid.config.admin {
        let tls = admin.tls.iter().flat_map(|t| {
            [
                Some(&t.cert),
                Some(&t.key),
                t.client_ca.as_ref(),
                t.cli_cert.as_ref(),
                t.cli_key.as_ref(),
            ]
        });
        for f in tls.chain([admin.token_file.as_ref()]).flatten() {
            assert!(f.is_absolute(), "{} was not resolved", f.display());
        }
    }
}
