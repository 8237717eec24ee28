//! Long-running processes under test: Mosquitto and moat.
//!
//! Each is started on free loopback ports, waited for until it serves, and
//! killed when the test ends (also when it panics).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::binary::moat_bin;
use crate::http::http_request;
use crate::ports::{free_port, port_open};
use crate::prometheus::metric_value;
use crate::require::require;
use crate::wait::wait_until;

/// How long a process may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A real Mosquitto broker on 127.0.0.1.
pub struct Mosquitto {
    child: Child,
    /// Its plaintext port.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
    conf: PathBuf,
    host: String,
}

/// Whether `host` (an IP address) accepts TCP connections on `port`.
fn open_at(host: &str, port: u16) -> bool {
    if host == "127.0.0.1" {
        return port_open(port);
    }
    let ip: std::net::IpAddr = host.parse().expect("an IP address");
    std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_millis(200)).is_ok()
}

impl Mosquitto {
    /// Starts a broker that allows anonymous clients.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, "")
    }

    /// Starts a broker with extra configuration lines.
    pub fn start_with(dir: &Path, extra: &str) -> Self {
        Self::start_on(dir, free_port(), extra)
    }

    /// Starts a broker on a given port.
    pub fn start_on(dir: &Path, port: u16, extra: &str) -> Self {
        Self::start_at(dir, "127.0.0.1", port, extra)
    }

    /// Starts a broker on `host` (`127.0.0.1` or `::1`) and `port`: two
    /// brokers may share a port on the two loopback addresses.
    pub fn start_at(dir: &Path, host: &str, port: u16, extra: &str) -> Self {
        require("mosquitto", "mosquitto");
        let tag = if host == "127.0.0.1" {
            port.to_string()
        } else {
            format!("{}-{port}", host.replace(':', "_"))
        };
        let conf = dir.join(format!("mosquitto-{tag}.conf"));
        let log = dir.join(format!("mosquitto-{tag}.log"));
        let mut text = format!(
            "listener {port} {host}\nallow_anonymous true\npersistence false\nlog_dest file {}\nlog_type all\nuser root\n",
            log.display()
        );
        text.push_str(extra);
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let m = Self {
            child,
            port,
            log,
            conf,
            host: host.to_string(),
        };
        assert!(
            wait_until(START_TIMEOUT, || open_at(host, port)),
            "mosquitto did not start on {host} port {port}; log: {}",
            m.logs()
        );
        m
    }

    /// Its log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the broker (for backend-failure tests).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same configuration.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart mosquitto");
        let (host, port) = (self.host.clone(), self.port);
        assert!(
            wait_until(START_TIMEOUT, || open_at(&host, port)),
            "mosquitto did not restart"
        );
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `moat` process.
pub struct Moat {
    child: Child,
    /// The configuration file.
    pub config: PathBuf,
    /// Where its standard error (the log) goes.
    pub log: PathBuf,
    /// The admin port, when the configuration has one.
    pub admin: Option<u16>,
}

impl Moat {
    /// Writes `yaml` to `dir/moat.yaml`, starts `moat run`, and waits until
    /// it logs that it is ready. `admin` names the admin port the YAML uses,
    /// if any, for [`Moat::get`].
    pub fn start(dir: &Path, yaml: &str, admin: Option<u16>) -> Self {
        let m = Self::spawn(dir, "moat.yaml", yaml, admin);
        let ready = wait_until(START_TIMEOUT, || m.logs().contains(" ready") || m.exited());
        assert!(
            ready && !m.logs_exited(),
            "moat did not become ready; log:\n{}",
            m.logs()
        );
        m
    }

    /// Starts `moat run` without waiting.
    pub fn spawn(dir: &Path, name: &str, yaml: &str, admin: Option<u16>) -> Self {
        let config = dir.join(name);
        std::fs::write(&config, yaml).expect("write config");
        Self::spawn_config(&config, admin, &[])
    }

    /// Starts `moat run --config <config>` with extra environment.
    pub fn spawn_config(config: &Path, admin: Option<u16>, env: &[(&str, &str)]) -> Self {
        Self::spawn_wrapped(config, admin, env, &[])
    }

    /// Like [`Moat::start`], but runs `<wrapper...> moat run ...`: a
    /// wrapper such as `unshare -m sh -c '...; exec "$@"' sh` must exec moat
    /// in the same process, so that [`Moat::pid`] stays moat's.
    pub fn start_wrapped(dir: &Path, yaml: &str, admin: Option<u16>, wrapper: &[&str]) -> Self {
        let config = dir.join("moat.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let m = Self::spawn_wrapped(&config, admin, &[], wrapper);
        let ready = wait_until(START_TIMEOUT, || m.logs().contains(" ready") || m.exited());
        assert!(
            ready && !m.logs_exited(),
            "moat did not become ready; log:\n{}",
            m.logs()
        );
        m
    }

    /// Starts moat, optionally through a wrapper command, without waiting.
    pub fn spawn_wrapped(
        config: &Path,
        admin: Option<u16>,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Self {
        let log = config.with_extension("log");
        let log_file = std::fs::File::create(&log).expect("create log");
        let bin = moat_bin();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log_file)
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start moat");
        Self {
            child,
            config: config.to_path_buf(),
            log,
            admin,
        }
    }

    fn exited(&self) -> bool {
        // try_wait needs &mut; peek through /proc instead.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()));
        match stat {
            Ok(s) => s.split(' ').nth(2) == Some("Z"),
            Err(_) => true,
        }
    }

    fn logs_exited(&self) -> bool {
        self.exited()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.logs().contains(needle))
    }

    /// The first log line holding `needle`, once there is one (up to
    /// `timeout`); panics with the whole log otherwise.
    pub fn log_line(&self, needle: &str, timeout: Duration) -> String {
        let mut found = None;
        wait_until(timeout, || {
            found = self
                .logs()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no log line with {needle:?}:\n{}", self.logs()))
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GETs a path on the admin endpoint: (status code, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let port = self.admin.expect("this moat has no admin port");
        http_request(port, "GET", path).expect("admin request")
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "GET /metrics failed: {body}");
        body
    }

    /// The value of one metric series, matched by name and a label
    /// substring (e.g. `reason="timeout"`); 0 when absent.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }

    /// The value of a series once it reaches `at_least`, or after 5 s,
    /// whichever comes first. A connection's worker counts a refusal just
    /// after the alert has left, so a client can see its refusal before
    /// the counter does.
    pub fn metric_reaching(&self, name: &str, labels: &str, at_least: f64) -> f64 {
        self.metric_reaching_within(name, labels, at_least, Duration::from_secs(5))
    }

    /// [`Moat::metric_reaching`] with a wait of up to `timeout`.
    pub fn metric_reaching_within(
        &self,
        name: &str,
        labels: &str,
        at_least: f64,
        timeout: Duration,
    ) -> f64 {
        let mut value = 0.0;
        wait_until(timeout, || {
            value = self.metric(name, labels);
            value >= at_least
        });
        value
    }
}

impl Drop for Moat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Any other long-running peer (pebble, an OCSP responder...), with its
/// output in a log file, killed when dropped.
pub struct Daemon {
    child: Child,
    /// Its combined output.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `program args...` with extra environment, logging to
    /// `dir/<name>.log`.
    pub fn start(
        dir: &Path,
        name: &str,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone");
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(out).stderr(err).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Self { child, log }
    }

    /// Its output so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it accepts connections on `port`.
    pub fn wait_port(&self, port: u16) {
        assert!(
            wait_until(START_TIMEOUT, || port_open(port)),
            "peer did not open port {port}; output:\n{}",
            self.logs()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
