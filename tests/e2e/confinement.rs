//! Privilege: moat binds a port below 1024 as root and then runs as an
//! unprivileged user (every thread, with no way back), and the optional
//! Landlock sandbox keeps file access to the configured directories while
//! renewals inside them still land.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use moat_testkit::*;

fn is_root() -> bool {
    status_field(std::process::id(), "Uid").is_some_and(|v| v.split_whitespace().all(|x| x == "0"))
}

/// A field of /proc/<pid>/status.
fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

/// A port below 1024 that root can bind on 127.0.0.1 right now.
fn free_privileged_port() -> u16 {
    (700..1024)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("no free port below 1024")
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Whether `port` serves the certificate of (normalised) serial `want`
/// for `localhost` within 5 s.
fn serves_within_5s(port: u16, want: &str) -> bool {
    wait_until(Duration::from_secs(5), || {
        norm_serial(&served_serial(port, "localhost")) == want
    })
}

#[test]
fn binds_a_privileged_port_as_root_then_every_thread_runs_as_the_user() {
    if !is_root() {
        // Without root there is nothing to switch from: moat says so and
        // does not start.
        let g = Gateway::new()
            .backend(1883)
            .no_admin()
            .top_yaml("user: root\n")
            .prepare();
        let mut moat = Moat::spawn(g.path(), "moat.yaml", &g.yaml, None);
        let status = moat.wait_exit(Duration::from_secs(10)).expect("moat exits");
        assert_eq!(status.code(), Some(1), "{}", moat.logs());
        assert!(
            moat.logs().contains("needs moat to start as root"),
            "{}",
            moat.logs()
        );
        return;
    }
    let g = Gateway::new()
        .listen_port(free_privileged_port())
        .top_yaml("user: nobody\n")
        .prepare();
    let (dir, port, ca, server) = (&g.dir, g.port, g.ca(), &g.server);
    let (uid, gid) = (id(&["-u", "nobody"]), id(&["-g", "nobody"]));
    // The files belong to the user, the key readable by it alone, as an
    // operator would set them up.
    chmod(dir.path(), 0o755);
    std::os::unix::fs::chown(&server.key, Some(uid), Some(gid)).expect("chown key");
    chmod(&server.key, 0o600);
    let moat = g.start_moat();
    assert!(
        moat.logs().contains("running as an unprivileged user"),
        "{}",
        moat.logs()
    );

    // Every thread: real, effective, saved and file-system ids, no
    // capabilities, no supplementary groups beyond the user's.
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", moat.pid()))
        .expect("tasks")
        .map(|e| e.expect("task").file_name().into_string().expect("tid"))
        .collect();
    assert!(tasks.len() > 1, "a multi-threaded runtime: {tasks:?}");
    for tid in &tasks {
        let status = std::fs::read_to_string(format!("/proc/{}/task/{tid}/status", moat.pid()))
            .expect("task status");
        let field = |f: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{f}:")))
                .map(|v| v.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert_eq!(field("Uid"), vec![uid.to_string(); 4], "thread {tid}");
        assert_eq!(field("Gid"), vec![gid.to_string(); 4], "thread {tid}");
        assert_eq!(field("CapEff"), vec!["0000000000000000"], "thread {tid}");
        assert_eq!(field("CapPrm"), vec!["0000000000000000"], "thread {tid}");
        assert!(
            field("Groups").iter().all(|g| *g == gid.to_string()),
            "thread {tid}: {:?}",
            field("Groups")
        );
    }

    // It serves on the privileged port.
    let tls = Tls::ca(&ca.cert);
    let out = mosquitto_pub("localhost", port, Some(&tls), "t", "as nobody");
    assert!(out.status.success(), "{out:?}\n{}", moat.logs());

    // The key's permissions change under it: the reload fails, says why,
    // and the certificate in service stays.
    let served = norm_serial(&served_serial(port, "localhost"));
    chmod(&server.key, 0o000);
    moat.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(5), || moat
            .metric("moat_certificate_reloads_total", "result=\"failure\"")
            >= 1.0),
        "{}",
        moat.logs()
    );
    let logs = moat.logs();
    assert!(
        logs.contains(&server.key.display().to_string()) && logs.contains("Permission denied"),
        "{logs}"
    );
    assert_eq!(norm_serial(&served_serial(port, "localhost")), served);
    assert_eq!(moat.get("/readyz").0, 200);

    // Readable again and renewed: the new certificate is served.
    let next = ca.issue(
        dir.path(),
        "next",
        &Issue::server("localhost", &["localhost"]),
    );
    // Each file written next to its target, owned by the user, then renamed
    // into place, as an operator's renewal hook would.
    for (from, to) in [(&next.key, &server.key), (&next.cert, &server.cert)] {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).expect("copy");
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).expect("chown");
        std::fs::rename(&tmp, to).expect("rename");
    }
    let want = norm_serial(&next.serial());
    assert!(serves_within_5s(port, &want), "{}", moat.logs());
}

#[test]
fn landlock_confines_reads_to_the_configured_directories() {
    let outside = TestDir::new();
    let s = Gateway::new()
        .cert_at("tls", "server")
        .top_yaml("sandbox:\n  landlock: required\n")
        .start();
    let (moat, port, ca, server) = (&s.moat, s.port, s.ca(), &s.server);
    let tls_dir = s.dir.join("tls");
    assert_eq!(
        moat.metric("moat_landlock_enforced", ""),
        1.0,
        "{}",
        moat.logs()
    );
    assert!(
        moat.logs().contains("Landlock sandbox enforced"),
        "{}",
        moat.logs()
    );
    assert_eq!(status_field(moat.pid(), "NoNewPrivs").as_deref(), Some("1"));
    let out = mosquitto_pub(
        "localhost",
        port,
        Some(&Tls::ca(&ca.cert)),
        "t",
        "sandboxed",
    );
    assert!(out.status.success(), "{out:?}\n{}", moat.logs());

    // A renewal inside the configured directory lands.
    let next = ca.issue(
        &tls_dir,
        "next",
        &Issue::server("localhost", &["localhost"]),
    );
    replace_atomically(&next, &server.cert, &server.key);
    let want = norm_serial(&next.serial());
    assert!(serves_within_5s(port, &want), "{}", moat.logs());

    // Files elsewhere cannot be read, even by root: point the configured
    // paths at a certificate outside through symlinks.
    let far = ca.issue(
        outside.path(),
        "far",
        &Issue::server("localhost", &["localhost"]),
    );
    let failures = moat.metric("moat_certificate_reloads_total", "result=\"failure\"");
    for (link, target) in [(&server.key, &far.key), (&server.cert, &far.cert)] {
        let tmp = link.with_extension("link-new");
        std::os::unix::fs::symlink(target, &tmp).expect("symlink");
        std::fs::rename(&tmp, link).expect("rename");
    }
    moat.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(5), || moat
            .metric("moat_certificate_reloads_total", "result=\"failure\"")
            > failures),
        "{}",
        moat.logs()
    );
    assert!(moat.logs().contains("Permission denied"), "{}", moat.logs());
    assert_eq!(norm_serial(&served_serial(port, "localhost")), want);

    // Control: without the sandbox the same files load.
    let control = Gateway::new()
        .in_dir(outside)
        .backend(s.broker().port)
        .cert(server.clone())
        .no_admin()
        .start();
    let control_port = control.port;
    assert_eq!(
        norm_serial(&served_serial(control_port, "localhost")),
        norm_serial(&far.serial()),
        "{}",
        control.moat.logs()
    );
}
