//! `moat import-mosquitto`: a Mosquitto configuration's TLS listeners,
//! translated into the moat configuration that replaces them.
//!
//! Each Mosquitto listener with a `certfile` becomes a moat listener on the
//! same address, forwarding to a plaintext Mosquitto on 127.0.0.1:1883.
//! Mapped: `listener`, `cafile`, `capath`, `certfile`, `keyfile`,
//! `require_certificate`, `use_identity_as_username`,
//! `use_subject_as_username`, `crlfile`, `ciphers`, `ciphers_tls1.3`,
//! `tls_version`. Weak cipher suites are left out with moat's reason.
//! Every other option of a TLS listener is kept as a comment saying why it
//! has no equivalent, and the output ends with the checklist for switching
//! Mosquitto to plaintext on localhost.
//!
//! Pure: text in, text out.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

use super::exit::EXIT_BAD_INPUT;
use crate::tls::policy;

/// Runs `moat import-mosquitto FILE`: the translation goes to standard
/// output.
pub fn run(file: &Path) -> ExitCode {
    match std::fs::read_to_string(file) {
        Ok(text) => {
            print!("{}", translate(&file.display().to_string(), &text));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: {}: cannot read the Mosquitto configuration: {e}",
                file.display()
            );
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// One `listener` block of a Mosquitto configuration.
#[derive(Debug, Default)]
struct MosquittoListener {
    port: u16,
    bind: Option<String>,
    /// `(option, value, line number)` in file order.
    options: Vec<(String, String, usize)>,
}

impl MosquittoListener {
    fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v == "true")
    }
}

/// Options a moat listener takes over, and what they need no comment for.
const MAPPED: &[&str] = &[
    "cafile",
    "capath",
    "certfile",
    "keyfile",
    "require_certificate",
    "use_identity_as_username",
    "use_subject_as_username",
    "crlfile",
    "ciphers",
    "ciphers_tls1.3",
    "tls_version",
];

/// Why an unmapped option of a TLS listener has no moat equivalent.
fn unmapped_reason(key: &str) -> &'static str {
    match key {
        "psk_hint" | "psk_file" => "moat authenticates with certificates, not TLS pre-shared keys",
        "dhparamfile" => "moat offers no finite-field DHE; ECDHE and X25519MLKEM768 need no parameters",
        "tls_engine" | "tls_engine_kpass_sha1" | "tls_keyform" => {
            "moat reads PEM keys from files; hardware engines are not supported"
        }
        "keyfile_password" => "moat needs a decrypted key: `openssl pkey -in KEY -out KEY.dec`, protected with 0600",
        "protocol" => "moat speaks MQTT over TLS only; keep WebSocket listeners on Mosquitto or put an HTTP proxy in front",
        "http_dir" => "served by Mosquitto's WebSocket listener, not by moat",
        "max_connections" => "set listeners[].max_connections in moat (default 50000) and keep the broker's own limit",
        "allow_anonymous" | "password_file" | "acl_file" | "auth_plugin" | "plugin" | "auth_opt" => {
            "an authentication setting: keep it on the plaintext Mosquitto listener (moat can add topic ACLs at the edge: docs/mqtt.md)"
        }
        "mount_point" | "max_qos" | "max_topic_alias" | "use_username_as_clientid" => {
            "an MQTT setting of the broker: keep it on the plaintext Mosquitto listener"
        }
        "socket_domain" | "bind_interface" => "set the address in the moat listener's `listen` instead",
        _ => "no moat equivalent; keep it on the plaintext Mosquitto listener if it still applies",
    }
}

fn parse(text: &str) -> (Vec<MosquittoListener>, Vec<String>) {
    let mut listeners = Vec::new();
    let mut notes = Vec::new();
    // Options before the first `listener` belong to the default listener,
    // whose port is set with `port`.
    let mut current = MosquittoListener {
        port: 1883,
        ..Default::default()
    };
    let mut default_used = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (line, ""),
        };
        match key {
            "listener" => {
                if default_used || !current.options.is_empty() {
                    listeners.push(std::mem::take(&mut current));
                }
                default_used = true;
                let mut parts = value.split_whitespace();
                current.port = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                current.bind = parts.next().map(str::to_string);
            }
            "port" if !default_used => current.port = value.parse().unwrap_or(1883),
            "include_dir" => notes.push(format!(
                "line {}: include_dir {value}: not read; run the import on each included file too",
                n + 1
            )),
            "per_listener_settings" => {}
            _ => current
                .options
                .push((key.to_string(), value.to_string(), n + 1)),
        }
    }
    listeners.push(current);
    (listeners, notes)
}

fn yaml_string(s: &str) -> String {
    format!("{s:?}")
}

/// Translates a Mosquitto configuration. `source` names the file in the
/// output's comments.
pub fn translate(source: &str, text: &str) -> String {
    let (listeners, notes) = parse(text);
    let tls: Vec<&MosquittoListener> = listeners
        .iter()
        .filter(|l| l.get("certfile").is_some())
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# moat configuration generated by `moat import-mosquitto {source}`."
    );
    let _ = writeln!(
        out,
        "# Review it, then check it with `moat check --config moat.yaml`."
    );
    for note in &notes {
        let _ = writeln!(out, "# NOTE: {note}");
    }
    if tls.is_empty() {
        let _ = writeln!(
            out,
            "# {source} has no TLS listener (no listener with certfile): nothing to import."
        );
        let _ = writeln!(out, "listeners: []");
        return out;
    }
    let _ = writeln!(out, "listeners:");
    for (i, l) in tls.iter().enumerate() {
        listener(&mut out, source, i, l);
    }
    checklist(&mut out, source, tls[0].port);
    out
}

/// One Mosquitto TLS listener as a moat listener.
fn listener(out: &mut String, source: &str, i: usize, l: &MosquittoListener) {
    let name = if i == 0 {
        "mqtts".to_string()
    } else {
        format!("mqtts-{}", l.port)
    };
    let host = match l.bind.as_deref() {
        None => "0.0.0.0".to_string(),
        Some(h) if h.contains(':') => format!("[{h}]"),
        Some(h) => h.to_string(),
    };
    let _ = writeln!(out, "  - name: {name}");
    let _ = writeln!(out, "    listen: {host}:{}", l.port);
    let _ = writeln!(out, "    backend: 127.0.0.1:1883          # Mosquitto, now plaintext on localhost (see the checklist below)");
    let _ = writeln!(out, "    tls:");
    let _ = writeln!(out, "      certificates:");
    let _ = writeln!(
        out,
        "        - cert: {}",
        yaml_string(l.get("certfile").unwrap_or(""))
    );
    match l.get("keyfile") {
        Some(k) => {
            let _ = writeln!(out, "          key: {}", yaml_string(k));
        }
        None => {
            let _ = writeln!(
                out,
                "          key: \"\"   # TODO: Mosquitto had no keyfile for this listener"
            );
        }
    }
    match l.get("tls_version") {
        Some("tlsv1.3") => {
            let _ = writeln!(out, "      min_version: \"1.3\"");
        }
        Some("tlsv1.2") | None => {}
        Some(other) => {
            let _ = writeln!(
                    out,
                    "      # tls_version {other}: moat never allows TLS below 1.2 (RFC 8996); it offers 1.2 and 1.3"
                );
        }
    }
    cipher_suites(out, l);
    client_auth(out, l);
    let identity = l.flag("use_identity_as_username");
    let subject = l.flag("use_subject_as_username");
    if identity || subject {
        let _ = writeln!(out, "    mqtt:");
        let _ = writeln!(
            out,
            "      username: identity               # use_{}_as_username",
            if subject { "subject" } else { "identity" }
        );
        if subject {
            let _ = writeln!(out, "      identity: subject");
        }
    }
    for (key, value, line) in &l.options {
        if !MAPPED.contains(&key.as_str()) {
            let _ = writeln!(
                out,
                "    # {source}:{line}: `{key} {value}`: {}",
                unmapped_reason(key)
            );
        }
    }
}

/// `ciphers` and `ciphers_tls1.3`, weak suites left out with the reason.
fn cipher_suites(out: &mut String, l: &MosquittoListener) {
    let mut suites = Vec::new();
    for key in ["ciphers", "ciphers_tls1.3"] {
        let Some(list) = l.get(key) else { continue };
        for name in list.split(':').map(str::trim).filter(|n| !n.is_empty()) {
            match policy::suite_problem(name) {
                None => suites.push(name.to_string()),
                Some(why) => {
                    let _ = writeln!(out, "      # {key}: {name} left out: {why}");
                }
            }
        }
    }
    if !suites.is_empty() {
        // moat needs a suite for every enabled version: keep both
        // families when only one was listed, with a note.
        let has13 = suites
            .iter()
            .any(|s| s.starts_with("TLS_AES") || s.starts_with("TLS_CHACHA"));
        let has12 = suites
            .iter()
            .any(|s| !(s.starts_with("TLS_AES") || s.starts_with("TLS_CHACHA")));
        if !has13 {
            let _ = writeln!(out, "      # Mosquitto's `ciphers` covers TLS 1.2 only; moat's TLS 1.3 default suites are added.");
            suites.extend(
                [
                    "TLS_AES_256_GCM_SHA384",
                    "TLS_AES_128_GCM_SHA256",
                    "TLS_CHACHA20_POLY1305_SHA256",
                ]
                .map(String::from),
            );
        }
        if !has12 && l.get("tls_version") != Some("tlsv1.3") {
            let _ = writeln!(
                out,
                "      # only TLS 1.3 suites were listed: TLS 1.2 is turned off."
            );
            let _ = writeln!(out, "      min_version: \"1.3\"");
        }
        let _ = writeln!(out, "      cipher_suites: [{}]", suites.join(", "));
    }
}

/// `require_certificate`, `cafile`/`capath` and `crlfile`.
fn client_auth(out: &mut String, l: &MosquittoListener) {
    let require = l.flag("require_certificate");
    let ca = l.get("cafile");
    let capath = l.get("capath");
    if require {
        let _ = writeln!(out, "      client_auth:");
        let _ = writeln!(out, "        mode: required");
        match (ca, capath) {
            (Some(ca), _) => {
                let _ = writeln!(out, "        ca: {}", yaml_string(ca));
            }
            (None, Some(dir)) => {
                let _ = writeln!(out, "        ca: {}   # from capath {dir}: moat needs one bundle file, make it with `cat {dir}/*.pem > {dir}/bundle.pem`", yaml_string(&format!("{dir}/bundle.pem")));
            }
            (None, None) => {
                let _ = writeln!(
                    out,
                    "        ca: \"\"   # TODO: Mosquitto had no cafile or capath"
                );
            }
        }
        if let Some(crl) = l.get("crlfile") {
            let _ = writeln!(out, "        crl: {}", yaml_string(crl));
        }
    } else if ca.is_some() || capath.is_some() {
        let _ = writeln!(out, "      # cafile/capath without require_certificate: Mosquitto asked devices for no certificate, so neither does moat.");
    }
}

/// The checklist for switching Mosquitto to plaintext on localhost.
fn checklist(out: &mut String, source: &str, port: u16) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "# Checklist for switching Mosquitto to plaintext on localhost:"
    );
    let _ = writeln!(
        out,
        "#  1. In {source}, replace each TLS listener above with `listener 1883 127.0.0.1`,"
    );
    let _ = writeln!(
        out,
        "#     and remove its cafile, capath, certfile, keyfile, crlfile, ciphers, ciphers_tls1.3,"
    );
    let _ = writeln!(
        out,
        "#     tls_version, require_certificate and use_*_as_username lines: moat does TLS now."
    );
    let _ = writeln!(
        out,
        "#     Keep allow_anonymous, password_file and acl_file on that listener."
    );
    let _ = writeln!(
        out,
        "#  2. Make sure nothing else can reach 1883: it is bound to 127.0.0.1 only, and your"
    );
    let _ = writeln!(out, "#     firewall closes it from outside.");
    let _ = writeln!(
        out,
        "#  3. If Mosquitto keyed ACLs on the certificate's CN (use_identity_as_username), the"
    );
    let _ = writeln!(out, "#     `mqtt: {{ username: identity }}` above sends it as the username (Mosquitto 2.0 has no");
    let _ = writeln!(
        out,
        "#     PROXY protocol; 2.1+ can read it with backend_proxy_protocol: v2 instead)."
    );
    let _ = writeln!(
        out,
        "#  4. `moat check --config moat.yaml`, restart Mosquitto, start moat."
    );
    let _ = writeln!(out, "#  5. Test with the devices' own CA file:");
    let _ = writeln!(
        out,
        "#     mosquitto_sub -h <this host> -p {} --cafile <ca.pem> -t '#' -v",
        port
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const GUIDE: &str = "
# A typical Mosquitto TLS guide
per_listener_settings true
listener 1883 localhost
allow_anonymous true

listener 8883
cafile /etc/mosquitto/ca_certificates/ca.crt
certfile /etc/mosquitto/certs/server.crt
keyfile /etc/mosquitto/certs/server.key
ciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384
";

    fn parsed(yaml: &str) -> crate::config::ValidConfig {
        crate::config::parse(Path::new("/etc/moat/moat.yaml"), yaml)
            .unwrap_or_else(|e| panic!("generated YAML is not a valid configuration: {e}\n{yaml}"))
    }

    #[test]
    fn the_typical_guide() {
        let y = translate("mosquitto.conf", GUIDE);
        let c = parsed(&y);
        assert_eq!(c.config.listeners.len(), 1, "only the TLS listener: {y}");
        let l = &c.config.listeners[0];
        assert_eq!(l.listen.to_string(), "0.0.0.0:8883");
        assert_eq!(l.backend, "127.0.0.1:1883");
        assert_eq!(
            l.tls.certificates[0].cert,
            Path::new("/etc/mosquitto/certs/server.crt")
        );
        assert_eq!(l.tls.client_auth.mode, crate::config::ClientAuthMode::None);
        assert!(l
            .tls
            .cipher_suites
            .contains(&"ECDHE-ECDSA-AES256-GCM-SHA384".to_string()));
        assert!(l
            .tls
            .cipher_suites
            .contains(&"ECDHE-RSA-AES256-GCM-SHA384".to_string()));
        assert!(
            y.contains("cafile/capath without require_certificate"),
            "{y}"
        );
        assert!(
            y.contains("Checklist for switching Mosquitto to plaintext on localhost"),
            "{y}"
        );
    }

    #[test]
    fn mutual_tls_identity_crl_and_unmapped_options() {
        let conf = "port 8883\ncafile ca.pem\ncertfile s.pem\nkeyfile s.key\nrequire_certificate true\nuse_identity_as_username true\ncrlfile c.crl\ntls_version tlsv1.1\nciphers AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256\npsk_hint hint\ndhparamfile dh.pem\n";
        let y = translate("m.conf", conf);
        let c = parsed(&y);
        let l = &c.config.listeners[0];
        assert_eq!(l.listen.port(), 8883);
        assert_eq!(
            l.tls.client_auth.mode,
            crate::config::ClientAuthMode::Required
        );
        assert_eq!(l.tls.client_auth.crl.0.len(), 1);
        assert_eq!(
            l.mqtt.as_ref().expect("mqtt").username,
            crate::config::UsernamePolicy::Identity
        );
        assert!(y.contains("AES128-SHA left out"), "{y}");
        assert!(y.contains("TLS below 1.2"), "{y}");
        assert!(y.contains("m.conf:10: `psk_hint hint`"), "{y}");
        assert!(
            y.contains("`dhparamfile dh.pem`: moat offers no finite-field DHE"),
            "{y}"
        );
    }

    #[test]
    fn no_tls_listener() {
        let y = translate("m.conf", "listener 1883\nallow_anonymous true\n");
        assert!(y.contains("nothing to import"), "{y}");
    }
}
