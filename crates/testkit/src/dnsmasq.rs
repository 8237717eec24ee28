//! A real DNS server for the tests of backend discovery: dnsmasq on
//! 127.0.0.1 (UDP and TCP on one free port), answering only the records a
//! test gives it (`--host-record`, `--srv-host`): no upstream, no
//! /etc/hosts, no configuration file. A test changes the records by
//! restarting it on the same port.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::free_port;
use crate::require::require;
use crate::wait::wait_until;

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Option<Child>,
    /// Its port, on 127.0.0.1, UDP and TCP.
    pub port: u16,
    log: PathBuf,
}

impl Dnsmasq {
    /// Starts dnsmasq with `records`, each a dnsmasq option such as
    /// `--srv-host=_mqtt._tcp.brokers.test,node.test,1883` or
    /// `--host-record=node.test,127.0.0.1,::1`.
    pub fn start(dir: &Path, records: &[String]) -> Self {
        require("dnsmasq", "dnsmasq-base");
        let port = free_port();
        let mut d = Self {
            child: None,
            port,
            log: dir.join(format!("dnsmasq-{port}.log")),
        };
        d.set_records(records);
        d
    }

    /// Restarts it on the same port, answering `records` only.
    pub fn set_records(&mut self, records: &[String]) {
        self.stop();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--user=root",
                "--pid-file=",
                "--cache-size=0",
                "--log-queries",
            ])
            .arg(format!("--port={}", self.port))
            .arg(format!("--log-facility={}", self.log.display()))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        assert!(
            wait_until(Duration::from_secs(10), || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            }),
            "dnsmasq did not start on port {}; log: {}",
            self.port,
            self.logs()
        );
    }

    /// Its log so far (the queries it answered).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it: look-ups then time out.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}
