//! [`TestMosquitto`]: an anonymous Mosquitto broker, and [`MqttSubscription`]s through a real
//! `mosquitto_sub`.

use super::*;

/// A running Mosquitto broker on `127.0.0.1:<port>` accepting anonymous clients.
pub struct TestMosquitto {
    server: Server,
}

impl TestMosquitto {
    /// Starts mosquitto on a free port and waits until it accepts connections.
    pub fn start() -> std::io::Result<TestMosquitto> {
        start_with_retries(|| {
            let mut server = Server::new("mosquitto")?;
            server.port = free_port();
            let conf = server.path().join("mosquitto.conf");
            let mut text = format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n",
                server.port
            );
            if is_root() {
                // Otherwise it drops to the `mosquitto` user, which cannot read our temp dir.
                text.push_str("user root\n");
            }
            std::fs::write(&conf, text)?;
            let mut cmd = Command::new("mosquitto");
            cmd.arg("-c").arg(&conf);
            server.spawn(cmd, |s| tcp_accepts(s.port))?;
            Ok(TestMosquitto { server })
        })
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr())
    }

    /// Starts `mosquitto_sub` on `topic` and returns once the broker has acknowledged the
    /// subscription, so a message published afterwards is received.
    pub fn subscribe(&self, topic: &str) -> std::io::Result<MqttSubscription> {
        // stdbuf: line-buffered stdout, or the pipe holds back the acknowledgement and messages.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p"])
            .arg(self.server.port.to_string())
            .args(["-t", topic, "-d", "-F", "%t %x"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("mosquitto_sub: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| other("mosquitto_sub: no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || forward_lines(stdout, tx));
        let sub = MqttSubscription { child, lines: rx };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match sub.lines.recv_timeout(left) {
                Ok(line) if line.starts_with("Subscribed (mid") => return Ok(sub),
                Ok(_) => continue,
                Err(_) => {
                    return Err(other(
                        "mosquitto_sub: the subscription was not acknowledged",
                    ));
                }
            }
        }
    }

    /// The broker's own log.
    pub fn log(&self) -> String {
        self.server.log_text()
    }
}

impl Drop for TestMosquitto {
    fn drop(&mut self) {
        self.server.stop(libc::SIGTERM);
    }
}

fn forward_lines(stdout: ChildStdout, tx: mpsc::Sender<String>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        if tx.send(line).is_err() {
            return;
        }
    }
}

/// A live `mosquitto_sub` subscription (killed on drop).
pub struct MqttSubscription {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// One message a subscription received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttMessage {
    /// The topic it was published to.
    pub topic: String,
    /// Its payload bytes.
    pub payload: Vec<u8>,
}

impl MqttSubscription {
    /// Waits up to `timeout` for the next message.
    pub fn next_message(&mut self, timeout: Duration) -> std::io::Result<MqttMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| other(format!("no MQTT message within {timeout:?}")))?;
            // `-d` debug lines start with "Client "; messages are "<topic> <hex payload>".
            if line.starts_with("Client ") || line.starts_with("Subscribed (mid") {
                continue;
            }
            let (topic, hex) = line.rsplit_once(' ').unwrap_or((line.as_str(), ""));
            let payload =
                decode_hex(hex).ok_or_else(|| other(format!("mosquitto_sub printed {line:?}")))?;
            return Ok(MqttMessage {
                topic: topic.to_string(),
                payload,
            });
        }
    }
}

pub(super) fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Drop for MqttSubscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
