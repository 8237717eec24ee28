//! The usual scene of an end-to-end test, in one expression: a scratch
//! directory, a Mosquitto broker, a CA, a server certificate and moat with
//! one TLS listener in front of the broker and an admin endpoint.
//!
//! ```no_run
//! use moat_testkit::Gateway;
//! let g = Gateway::new()
//!     .listener_yaml("limits: { per_ip_connections: 2 }")
//!     .start();
//! assert_eq!(g.moat.get("/readyz").0, 200);
//! ```

use std::path::Path;

use crate::config::{config_yaml, listener_yaml};
use crate::dir::TestDir;
use crate::pki::{to_traditional_key, Ca, CertFiles, Issue, KeyAlg};
use crate::ports::free_port;
use crate::procs::{Moat, Mosquitto};

/// What to start: built with its methods, then [`Gateway::start`] (or
/// [`Gateway::prepare`] for a test that starts moat itself).
pub struct Gateway {
    dir: Option<TestDir>,
    broker: bool,
    broker_conf: String,
    ca: Option<Ca>,
    ca_name: (String, String),
    cert: Option<CertFiles>,
    cert_at: (String, String),
    listener: String,
    backend: Option<u16>,
    tls_yaml: String,
    listener_yaml: String,
    top_yaml: String,
    client_auth: Option<String>,
    admin: bool,
    admin_yaml: String,
    /// Name, certificates (`None`: the main listener's) and `tls:` lines.
    more: Vec<(String, Option<Vec<CertFiles>>, String)>,
    server: ServerCert,
    extra_certs: Vec<CertFiles>,
    port: Option<u16>,
}

/// How the issued server certificate differs from the default one.
#[derive(Default)]
struct ServerCert {
    sans: Option<Vec<String>>,
    alg: Option<KeyAlg>,
    ca_alg: Option<KeyAlg>,
    traditional: bool,
}

impl Default for Gateway {
    fn default() -> Self {
        Self::new()
    }
}

impl Gateway {
    /// The defaults: a new directory, a broker, CA `ca` (`CN=Test CA`), a
    /// `localhost` certificate `server`, listener `mqtts`, an admin port.
    pub fn new() -> Self {
        Self {
            dir: None,
            broker: true,
            broker_conf: String::new(),
            ca: None,
            ca_name: ("ca".into(), "Test CA".into()),
            cert: None,
            cert_at: (String::new(), "server".into()),
            listener: "mqtts".into(),
            backend: None,
            tls_yaml: String::new(),
            listener_yaml: String::new(),
            top_yaml: String::new(),
            client_auth: None,
            admin: true,
            admin_yaml: String::new(),
            more: Vec::new(),
            server: ServerCert::default(),
            extra_certs: Vec::new(),
            port: None,
        }
    }

    /// Works in `dir` (which may already hold files the YAML names).
    pub fn in_dir(mut self, dir: TestDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Extra Mosquitto configuration lines.
    pub fn broker_conf(mut self, conf: &str) -> Self {
        self.broker_conf = conf.into();
        self
    }

    /// No broker: the listener's backend is `port` (say, a dead one).
    pub fn backend(mut self, port: u16) -> Self {
        self.broker = false;
        self.backend = Some(port);
        self
    }

    /// The CA's file stem and common name.
    pub fn ca_named(mut self, stem: &str, cn: &str) -> Self {
        self.ca_name = (stem.into(), cn.into());
        self
    }

    /// Uses a CA the test made (it may have issued more from it).
    pub fn ca(mut self, ca: Ca) -> Self {
        self.ca = Some(ca);
        self
    }

    /// Issues the server certificate as `<subdir>/<stem>` in the directory.
    pub fn cert_at(mut self, subdir: &str, stem: &str) -> Self {
        self.cert_at = (subdir.into(), stem.into());
        self
    }

    /// Serves `cert` instead of issuing one; without [`Gateway::ca`] there
    /// is then no CA (the test has its own).
    pub fn cert(mut self, cert: CertFiles) -> Self {
        self.cert = Some(cert);
        self
    }

    /// The listener's name.
    pub fn listener(mut self, name: &str) -> Self {
        self.listener = name.into();
        self
    }

    /// Lines under the listener's `tls:`.
    pub fn tls_yaml(mut self, yaml: &str) -> Self {
        self.tls_yaml = yaml.into();
        self
    }

    /// Lines under the listener, after any given before (by an earlier
    /// call or [`Gateway::mqtt_aware`]): calls add up, none replaces.
    pub fn listener_yaml(mut self, yaml: &str) -> Self {
        if !self.listener_yaml.is_empty() && !self.listener_yaml.ends_with('\n') {
            self.listener_yaml.push('\n');
        }
        self.listener_yaml.push_str(yaml);
        self
    }

    /// The listener's `mqtt:` settings (one per line), which make it
    /// MQTT-aware.
    pub fn mqtt_aware(self, mqtt: &str) -> Self {
        let mut extra = String::from("mqtt:\n");
        for line in mqtt.lines() {
            extra.push_str(&format!("  {line}\n"));
        }
        self.listener_yaml(&extra)
    }

    /// Top-level YAML before the rest (`shutdown:`, `reload:`...).
    pub fn top_yaml(mut self, yaml: &str) -> Self {
        self.top_yaml = yaml.into();
        self
    }

    /// The `reload:` settings (lines indented by two).
    pub fn reload(self, settings: &str) -> Self {
        self.top_yaml(&format!("reload:\n{settings}\n"))
    }

    /// Client certificates in `mode` (`required`, `optional`) from a new
    /// device CA (`devices-ca`, `CN=Device CA`), [`Running::devices`].
    pub fn client_auth(mut self, mode: &str) -> Self {
        self.client_auth = Some(mode.into());
        self
    }

    /// More `admin:` settings (lines indented by two), such as
    /// `  token_file: ...`.
    pub fn admin_yaml(mut self, yaml: &str) -> Self {
        self.admin_yaml = yaml.into();
        self
    }

    /// No admin endpoint.
    pub fn no_admin(mut self) -> Self {
        self.admin = false;
        self
    }

    /// One more listener on its own port (in [`Running::ports`]) to the
    /// same backend, with these certificates and `tls:` lines.
    pub fn also_listener(mut self, name: &str, certs: &[&CertFiles], tls_yaml: &str) -> Self {
        let certs = certs.iter().map(|c| (*c).clone()).collect();
        self.more.push((name.into(), Some(certs), tls_yaml.into()));
        self
    }

    /// As [`Gateway::also_listener`], serving the main listener's
    /// certificate.
    pub fn also_listener_with_its_cert(mut self, name: &str, tls_yaml: &str) -> Self {
        self.more.push((name.into(), None, tls_yaml.into()));
        self
    }

    /// Everything but moat: the directory, broker, PKI, ports and the YAML.
    pub fn prepare(self) -> Prepared {
        let dir = self.dir.unwrap_or_default();
        let broker = self
            .broker
            .then(|| Mosquitto::start_with(dir.path(), &self.broker_conf));
        let ca = match (self.ca, &self.cert) {
            (Some(ca), _) => Some(ca),
            (None, Some(_)) => None,
            (None, None) => Some(Ca::with_alg(
                dir.path(),
                &self.ca_name.0,
                &self.ca_name.1,
                self.server.ca_alg.unwrap_or(KeyAlg::EcdsaP256),
            )),
        };
        let server = self.cert.unwrap_or_else(|| {
            let (sub, stem) = &self.cert_at;
            let out = dir.path().join(sub);
            std::fs::create_dir_all(&out).expect("mkdir");
            let ca = ca.as_ref().expect("a CA");
            self.server.issue(ca, &out, stem)
        });
        let devices = self
            .client_auth
            .as_ref()
            .map(|_| Ca::new(dir.path(), "devices-ca", "Device CA"));
        let mut tls_yaml = self.tls_yaml;
        if let (Some(mode), Some(d)) = (&self.client_auth, &devices) {
            tls_yaml.push_str(&format!(
                "\nclient_auth:\n  mode: {mode}\n  ca: {}\n",
                d.cert.display()
            ));
        }
        let backend = self
            .backend
            .or(broker.as_ref().map(|b| b.port))
            .expect("a backend");
        let port = self.port.unwrap_or_else(free_port);
        let admin = self.admin.then(free_port);
        let mut served = vec![&server];
        served.extend(self.extra_certs.iter());
        let mut listeners = vec![listener_yaml(
            &self.listener,
            port,
            backend,
            &served,
            &tls_yaml,
            &self.listener_yaml,
        )];
        let mut ports = Vec::new();
        for (name, certs, tls) in &self.more {
            let p = free_port();
            let certs: Vec<&CertFiles> = match certs {
                Some(certs) => certs.iter().collect(),
                None => vec![&server],
            };
            listeners.push(listener_yaml(name, p, backend, &certs, tls, ""));
            ports.push(p);
        }
        let mut yaml = format!("{}{}", self.top_yaml, config_yaml(admin, &listeners));
        if let (Some(a), false) = (admin, self.admin_yaml.is_empty()) {
            let section = format!("admin:\n  listen: 127.0.0.1:{a}\n");
            yaml = yaml.replacen(&section, &format!("{section}{}\n", self.admin_yaml), 1);
        }
        Prepared {
            dir,
            broker,
            ca,
            devices,
            server,
            port,
            ports,
            admin,
            yaml,
        }
    }

    /// Prepares everything and starts moat, waiting until it is ready.
    pub fn start(self) -> Running {
        let prepared = self.prepare();
        let moat = prepared.start_moat();
        Running { prepared, moat }
    }

    /// The issued server certificate's subject alternative names (the
    /// common name stays `localhost`); the default is `localhost` alone.
    pub fn server_sans(mut self, sans: &[&str]) -> Self {
        self.server.sans = Some(sans.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The issued server certificate's key algorithm (ECDSA P-256 unless
    /// set).
    pub fn server_alg(mut self, alg: KeyAlg) -> Self {
        self.server.alg = Some(alg);
        self
    }

    /// The key algorithm of the CA the gateway makes (ECDSA P-256 unless
    /// set).
    pub fn ca_alg(mut self, alg: KeyAlg) -> Self {
        self.server.ca_alg = Some(alg);
        self
    }

    /// The issued server key in its traditional encoding (PKCS#1 for RSA,
    /// SEC1 for EC) instead of PKCS#8.
    pub fn traditional_key(mut self) -> Self {
        self.server.traditional = true;
        self
    }

    /// More certificates on the main listener, after the server
    /// certificate (which stays the first, the one served without SNI).
    pub fn more_certs(mut self, certs: &[&CertFiles]) -> Self {
        self.extra_certs.extend(certs.iter().map(|c| (*c).clone()));
        self
    }

    /// The main listener on `port` (say, one below 1024) instead of a
    /// free one the kit picks.
    pub fn listen_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

impl ServerCert {
    /// Issues the server certificate `<out>/<stem>` from `ca`.
    fn issue(&self, ca: &Ca, out: &Path, stem: &str) -> CertFiles {
        let sans: Vec<&str> = match &self.sans {
            Some(s) => s.iter().map(String::as_str).collect(),
            None => vec!["localhost"],
        };
        let opts = Issue::server("localhost", &sans).alg(self.alg.unwrap_or(KeyAlg::EcdsaP256));
        let mut cert = ca.issue(out, stem, &opts);
        if self.traditional {
            cert.key = to_traditional_key(&cert.key);
        }
        cert
    }
}

/// A prepared scene: all but moat.
pub struct Prepared {
    /// The scratch directory.
    pub dir: TestDir,
    broker: Option<Mosquitto>,
    ca: Option<Ca>,
    /// The device CA of [`Gateway::client_auth`].
    pub devices: Option<Ca>,
    /// The certificate the listener serves.
    pub server: CertFiles,
    /// The listener's port.
    pub port: u16,
    /// The ports of [`Gateway::also_listener`]s, in order.
    pub ports: Vec<u16>,
    /// The admin port, if any.
    pub admin: Option<u16>,
    /// The configuration moat runs with.
    pub yaml: String,
}

impl Prepared {
    /// Starts moat with [`Prepared::yaml`] and waits until it is ready.
    pub fn start_moat(&self) -> Moat {
        Moat::start(self.dir.path(), &self.yaml, self.admin)
    }

    /// Makes the listener's backend the list of brokers on `ports` (a
    /// cluster), named `node-0`, `node-1`, ... (so the hash, and which
    /// devices each node gets, does not depend on the random ports), in
    /// place of the one broker [`Gateway::backend`] gave.
    pub fn cluster_of(&mut self, ports: &[u16]) {
        let entries: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{{ address: 127.0.0.1:{p}, name: node-{i} }}"))
            .collect();
        self.backend_list(&entries);
    }

    /// Makes the listener's backend the list of `entries`, each written as
    /// a YAML list item (`127.0.0.1:1883`, or a flow mapping such as
    /// `{ address: _mqtt._tcp.brokers.test, discover: srv }`), in place of
    /// the one broker [`Gateway::backend`] gave.
    pub fn backend_list(&mut self, entries: &[String]) {
        let one = self
            .yaml
            .lines()
            .find(|l| l.trim_start().starts_with("backend: 127.0.0.1:"))
            .expect("a listener with one backend")
            .to_string();
        let indent = &one[..one.len() - one.trim_start().len()];
        let list: String = entries
            .iter()
            .map(|e| format!("\n{indent}  - {e}"))
            .collect();
        self.yaml = self
            .yaml
            .replacen(&one, &format!("{indent}backend:{list}"), 1);
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The broker.
    pub fn broker(&self) -> &Mosquitto {
        self.broker.as_ref().expect("this gateway has no broker")
    }

    /// The broker, to stop or restart.
    pub fn broker_mut(&mut self) -> &mut Mosquitto {
        self.broker.as_mut().expect("this gateway has no broker")
    }

    /// The CA that issued [`Prepared::server`].
    pub fn ca(&self) -> &Ca {
        self.ca
            .as_ref()
            .expect("this gateway serves a given certificate")
    }

    /// The device CA of [`Gateway::client_auth`].
    pub fn devices(&self) -> &Ca {
        self.devices
            .as_ref()
            .expect("this gateway has no client_auth")
    }

    /// `mosquitto_*` TLS options that trust the CA.
    pub fn tls(&self) -> crate::clients::Tls {
        crate::clients::Tls::ca(&self.ca().cert)
    }

    /// Another moat with the same configuration, run in the subdirectory
    /// `name` with its main listener on a new port: a second replica
    /// behind the same load balancer. Returns it and that port. Only for
    /// a scene without an admin port (two processes cannot share it).
    pub fn replica(&self, name: &str) -> (Moat, u16) {
        assert!(self.admin.is_none(), "a replica needs Gateway::no_admin");
        let port = free_port();
        let yaml = self.yaml.replacen(
            &format!("listen: 127.0.0.1:{}\n", self.port),
            &format!("listen: 127.0.0.1:{port}\n"),
            1,
        );
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir replica");
        (Moat::start(&dir, &yaml, None), port)
    }

    /// Writes [`Prepared::yaml`] to `moat.yaml` in the directory and
    /// returns its path, for a test that starts moat its own way (another
    /// environment, a shell with limits).
    pub fn write_config(&self) -> std::path::PathBuf {
        self.dir.write("moat.yaml", &self.yaml)
    }
}

/// A running scene: [`Prepared`] (through `Deref`) and moat.
pub struct Running {
    /// All but moat.
    pub prepared: Prepared,
    /// The running moat.
    pub moat: Moat,
}

/// Devices of a scene with mutual TLS: sessions held, messages published.
impl Running {
    /// `mosquitto_*` TLS options presenting `device`.
    pub fn device_tls(&self, device: &CertFiles) -> crate::clients::Tls {
        crate::clients::Tls::ca(&self.ca().cert).with_client(&device.cert, &device.key)
    }

    /// A `mosquitto_sub` session of `device` on topic `t` (client id
    /// `name`), held for up to 60 s.
    pub fn hold(&self, device: &CertFiles, name: &str) -> crate::clients::Sub {
        let tls = self.device_tls(device);
        crate::clients::Sub::spawn(self.dir.path(), name, self.port, Some(&tls), "t", 1000, 60)
    }

    /// Publishes `msg` on `topic` as `device`; whether mosquitto_pub
    /// succeeded.
    pub fn publish_as(&self, device: &CertFiles, topic: &str, msg: &str) -> bool {
        let tls = self.device_tls(device);
        crate::clients::mosquitto_pub("localhost", self.port, Some(&tls), topic, msg)
            .status
            .success()
    }

    /// Publishes `msg` on `t` as `publisher` until every one of `subs`
    /// printed it, which proves each is subscribed (up to 10 s).
    pub fn until_all_receive(
        &self,
        publisher: &CertFiles,
        subs: &[&crate::clients::Sub],
        msg: &str,
    ) {
        let got = crate::wait::wait_until(std::time::Duration::from_secs(10), || {
            assert!(
                self.publish_as(publisher, "t", msg),
                "publishing {msg:?} failed"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
            subs.iter().all(|sub| sub.output().contains(msg))
        });
        assert!(
            got,
            "not every subscriber got {msg:?}: {:?}",
            subs.iter().map(|s| s.output()).collect::<Vec<_>>()
        );
    }
}

impl std::ops::Deref for Running {
    type Target = Prepared;
    fn deref(&self) -> &Prepared {
        &self.prepared
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Prepared {
        &mut self.prepared
    }
}

#[cfg(test)]
mod tests {
    use super::Gateway;

    #[test]
    fn listener_yaml_calls_add_up_after_mqtt_aware() {
        let g = Gateway::new()
            .mqtt_aware("max_packet_size: 1024")
            .listener_yaml("limits: { per_ip_connections: 2 }")
            .listener_yaml("backend_proxy_protocol: v2");
        assert_eq!(
            g.listener_yaml,
            "mqtt:\n  max_packet_size: 1024\nlimits: { per_ip_connections: 2 }\nbackend_proxy_protocol: v2"
        );
    }

    #[test]
    fn one_listener_yaml_call_is_kept_as_given() {
        let g = Gateway::new().listener_yaml("a: 1");
        assert_eq!(g.listener_yaml, "a: 1");
    }
}
