//! TLS scanners against moat's defaults: sslyze checks Mozilla's
//! "intermediate" profile on a plain and a mutual-TLS listener, and the
//! "modern" profile on `tls.profile: modern`; testssl finds nothing of
//! severity LOW or above on the default listener with stapling on.
//!
//! The default listeners serve a 365-day certificate ("intermediate"
//! allows up to 366); the "modern" ones an 89-day one ("modern" wants
//! fewer than 90).

use std::process::Command;
use std::sync::Arc;

use moat_testkit::*;

struct Setup {
    dir: TestDir,
    _broker: Mosquitto,
    _responder: Responder,
    ca: Arc<OpensslCa>,
    device: CertFiles,
    plain: u16,
    mtls: u16,
    modern: u16,
    /// The default policy with the 89-day certificate: a control for
    /// "modern" that can fail on TLS settings alone.
    control: u16,
    _moat: Moat,
}

fn setup() -> Setup {
    let dir = TestDir::new();
    let broker = Mosquitto::start(dir.path());
    let responder = Responder::start(Behaviour::Close);
    let ca = Arc::new(OpensslCa::with_options(
        dir.path(),
        "ca",
        &CaOptions::ocsp(responder.url()),
    ));
    responder.set(Behaviour::answer(ca.clone(), RespOpts::default()));
    let server = ca.issue_server(dir.path(), "server");
    let served = ca.chain(dir.path(), "chain.pem", &server);
    let short = ca.issue_server_for_days(dir.path(), "short", 89);
    let short_served = ca.chain(dir.path(), "short-chain.pem", &short);
    let device = ca.issue_client(dir.path(), "device", "/CN=device-1", None);
    let (plain, mtls, modern, control) = (free_port(), free_port(), free_port(), free_port());
    let moat = Moat::start(
        dir.path(),
        &config_yaml(
            None,
            &[
                listener_yaml("plain", plain, broker.port, &[&served], "", ""),
                listener_yaml(
                    "mtls",
                    mtls,
                    broker.port,
                    &[&served],
                    &format!(
                        "client_auth: {{ mode: required, ca: {} }}",
                        ca.cert.display()
                    ),
                    "",
                ),
                listener_yaml(
                    "modern",
                    modern,
                    broker.port,
                    &[&short_served],
                    "profile: modern",
                    "",
                ),
                listener_yaml("control", control, broker.port, &[&short_served], "", ""),
            ],
        ),
        None,
    );
    Setup {
        dir,
        _broker: broker,
        _responder: responder,
        ca,
        device,
        plain,
        mtls,
        modern,
        control,
        _moat: moat,
    }
}

/// Runs sslyze's Mozilla compliance check; the output.
fn sslyze_mozilla(s: &Setup, port: u16, profile: &str, client: bool) -> (bool, String) {
    require("sslyze", "sslyze");
    let mut cmd = Command::new("timeout");
    cmd.args(["180", "sslyze", "--quiet"])
        .arg(format!("--mozilla_config={profile}"))
        .arg(format!("--certinfo_ca_file={}", s.ca.cert.display()));
    if client {
        cmd.arg(format!("--cert={}", s.device.cert.display()))
            .arg(format!("--key={}", s.device.key.display()))
            .arg("--keyform=PEM");
    }
    let out = cmd
        .arg(format!("localhost:{port}{{127.0.0.1}}"))
        .output()
        .expect("run sslyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn mozilla_intermediate_on_the_default_and_mutual_tls_listeners_and_modern_on_its_profile() {
    let s = setup();
    let (ok, out) = sslyze_mozilla(&s, s.plain, "intermediate", false);
    assert!(
        ok && out.contains("OK - Compliant"),
        "default listener:\n{out}"
    );
    let (ok, out) = sslyze_mozilla(&s, s.mtls, "intermediate", true);
    assert!(
        ok && out.contains("OK - Compliant"),
        "mutual-TLS listener:\n{out}"
    );
    let (ok, out) = sslyze_mozilla(&s, s.modern, "modern", false);
    assert!(
        ok && out.contains("OK - Compliant"),
        "profile: modern:\n{out}"
    );
    // Control: the default policy is not "modern" (it keeps TLS 1.2), so
    // the check can fail, and fails on the TLS versions alone.
    let (ok, out) = sslyze_mozilla(&s, s.control, "modern", false);
    assert!(
        !ok && !out.contains("OK - Compliant"),
        "the default must not pass as modern:\n{out}"
    );
    assert!(
        out.contains("tls_versions"),
        "the control must fail on TLS versions:\n{out}"
    );
}

#[test]
fn testssl_finds_nothing_of_severity_low_or_above() {
    require("testssl", "testssl.sh");
    let s = setup();
    // Stapling is on (the CA names a real responder); wait for the staple.
    assert!(wait_until(std::time::Duration::from_secs(15), || {
        let (_, out) = s_client(
            s.plain,
            &[
                "-status",
                "-servername",
                "localhost",
                "-CAfile",
                s.ca.cert.to_str().unwrap(),
            ],
            "",
        );
        out.contains("Cert Status: good")
    }));
    let json = s.dir.join("testssl.json");
    let out = Command::new("timeout")
        .args([
            "600",
            "testssl",
            "--warnings",
            "batch",
            "--color",
            "0",
            "--ip",
            "127.0.0.1",
        ])
        .arg("--jsonfile-pretty")
        .arg(&json)
        .arg("--add-ca")
        .arg(&s.ca.cert)
        .args(["-p", "-E", "-S", "-U"])
        .arg(format!("localhost:{}", s.plain))
        .output()
        .expect("run testssl");
    let text =
        std::fs::read_to_string(&json).unwrap_or_else(|_| panic!("testssl wrote no JSON: {out:?}"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("testssl JSON");
    let mut items = Vec::new();
    for result in v["scanResult"].as_array().expect("scanResult") {
        for (_, section) in result.as_object().expect("sections") {
            for item in section.as_array().into_iter().flatten() {
                let field = |k: &str| item[k].as_str().unwrap_or("").to_string();
                items.push((field("id"), field("severity"), field("finding")));
            }
        }
    }
    let findings: Vec<_> = items
        .iter()
        // A CAA record is a DNS matter, out of a gateway's hands.
        .filter(|(id, sev, _)| {
            matches!(sev.as_str(), "LOW" | "MEDIUM" | "HIGH" | "CRITICAL") && id != "DNS_CAArecord"
        })
        .map(|(id, sev, finding)| format!("{id} {sev}: {finding}"))
        .collect();
    assert!(
        findings.is_empty(),
        "testssl findings:\n{}",
        findings.join("\n")
    );
    // And it did look: it saw TLS 1.3 and the staple.
    let finding = |id: &str| {
        items
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, _, f)| f.clone())
            .unwrap_or_default()
    };
    assert!(
        finding("TLS1_3").starts_with("offered"),
        "TLS1_3: {:?}\n{text}",
        finding("TLS1_3")
    );
    let staple = finding("OCSP_stapling");
    assert!(
        staple.starts_with("offered"),
        "OCSP_stapling: {staple:?}\n{text}"
    );
}
