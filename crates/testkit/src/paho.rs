//! A long MQTT session driven one command at a time: paho-mqtt in Python
//! (`tests/python/mqtt_session.py`), for tests where a setting must reach
//! a session that is already open (its next SUBSCRIBE, its next PUBLISH).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::dir::workspace_root;
use crate::require::require;
use crate::wait::wait_until;

/// A paho-mqtt session; killed when dropped.
pub struct PahoSession {
    child: Child,
    stdin: ChildStdin,
    events: Arc<Mutex<Vec<String>>>,
}

impl PahoSession {
    /// Connects to `localhost:port` trusting `ca`, presenting `device`
    /// (certificate, key), as `client_id`, in MQTT 5 (`v5`) or 3.1.1; waits
    /// up to 10 s for the CONNACK, which must be a success.
    pub fn connect(
        port: u16,
        ca: &Path,
        device: (&Path, &Path),
        client_id: &str,
        v5: bool,
    ) -> Self {
        let session = Self::open(port, ca, device, (client_id, v5), None);
        session.expect(r#"{"connack": 0}"#);
        session
    }

    /// As [`PahoSession::connect`], over WebSockets to
    /// `wss://localhost:port{path}` (paho's `websockets` transport).
    pub fn connect_ws(
        port: u16,
        ca: &Path,
        device: (&Path, &Path),
        client_id: &str,
        path: &str,
    ) -> Self {
        let session = Self::open(port, ca, device, (client_id, true), Some(path));
        session.expect(r#"{"connack": 0}"#);
        session
    }

    /// Starts the session without waiting for its outcome: the test reads
    /// `{"connack": code}` or `{"connect_error": text}` from
    /// [`PahoSession::events`]. `who` is the client id and whether it
    /// speaks MQTT 5; `ws_path` connects over WebSockets.
    pub fn open(
        port: u16,
        ca: &Path,
        device: (&Path, &Path),
        (client_id, v5): (&str, bool),
        ws_path: Option<&str>,
    ) -> Self {
        require("python3", "python3");
        let mut child = Command::new("python3")
            .arg(workspace_root().join("tests/python/mqtt_session.py"))
            .arg(port.to_string())
            .args([ca, device.0, device.1])
            .arg(if v5 { "5" } else { "311" })
            .arg(client_id)
            .args(ws_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 mqtt_session.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("events").push(line);
            }
        });
        Self {
            child,
            stdin,
            events,
        }
    }

    /// Sends one command (`subscribe F`, `unsubscribe F`, `publish T P`).
    pub fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write a command to mqtt_session.py");
        self.stdin.flush().expect("flush");
    }

    /// Every event line printed so far.
    pub fn events(&self) -> Vec<String> {
        self.events.lock().expect("events").clone()
    }

    /// Whether `event` (a whole JSON line) is printed within `timeout`.
    pub fn saw_within(&self, event: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.events().iter().any(|e| e == event))
    }

    /// Waits up to 10 s for `event`, panicking with every event otherwise.
    pub fn expect(&self, event: &str) {
        assert!(
            self.saw_within(event, Duration::from_secs(10)),
            "no {event} from the paho session; events: {:?}",
            self.events()
        );
    }

    /// Sends `command` and waits for `event`, its answer; forgets earlier
    /// identical events first, so that the answer is this command's.
    pub fn ask(&mut self, command: &str, event: &str) {
        self.events.lock().expect("events").retain(|e| e != event);
        self.send(command);
        self.expect(event);
    }
}

impl Drop for PahoSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
