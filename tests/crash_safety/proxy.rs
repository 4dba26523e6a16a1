//! The throttling TCP proxy `crash_safety` puts in front of the registry, so a pull can be
//! slowed, observed (bytes sent) and interrupted at a chosen moment.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A TCP proxy in front of a registry: it counts (and can throttle) what the registry sends, and
/// can stop listening and come back on the same port (the registry address is part of a
/// reference, hence of the cache key, so every start must use the same one).
pub struct RegistryProxy {
    /// Where the proxy listens (the registry address lepton is given).
    pub addr: String,
    upstream: String,
    shared: Arc<ProxyShared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ProxyShared {
    /// The registry's responses are limited to this many bytes per second; 0: unlimited.
    rate: AtomicU64,
    /// Response bytes forwarded to clients since the last [`RegistryProxy::throttle`].
    sent: AtomicU64,
    stopping: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

impl RegistryProxy {
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let mut proxy = RegistryProxy {
            addr: listener.local_addr().expect("proxy addr").to_string(),
            upstream: upstream.to_string(),
            shared: Arc::default(),
            accept: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        self.shared.stopping.store(false, Ordering::SeqCst);
        let (shared, upstream) = (self.shared.clone(), self.upstream.clone());
        self.accept = Some(std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                // Registry unreachable: dropping the client closes its connection.
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let clones = (client.try_clone(), server.try_clone());
                let (Ok(client2), Ok(server2)) = clones else {
                    continue;
                };
                if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                    shared.conns.lock().expect("conns").extend([c, s]);
                }
                std::thread::spawn(move || pipe(client, server, None));
                let counted = shared.clone();
                std::thread::spawn(move || pipe(server2, client2, Some(counted)));
            }
        }));
    }

    /// Limits what the registry sends to `bytes_per_sec` (0: unlimited) and resets the count.
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.shared.rate.store(bytes_per_sec, Ordering::SeqCst);
        self.shared.sent.store(0, Ordering::SeqCst);
    }

    /// Response bytes forwarded since the last [`RegistryProxy::throttle`].
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }

    /// Stops listening (connections are refused) and cuts open connections.
    pub fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            self.shared.stopping.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(&self.addr); // wakes the accept loop
            accept.join().expect("proxy accept thread");
            for conn in self.shared.conns.lock().expect("conns").drain(..) {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }

    /// Listens again on the same address.
    pub fn restart(&mut self) {
        let listener = TcpListener::bind(&self.addr).expect("rebind proxy");
        self.serve(listener);
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies `from` → `to`; when `counted`, throttled to its rate and counted.
fn pipe(mut from: TcpStream, mut to: TcpStream, counted: Option<Arc<ProxyShared>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(shared) = &counted {
            let rate = shared.rate.load(Ordering::SeqCst);
            if rate > 0 {
                // Bandwidth shaping only: no test condition depends on how long this takes.
                std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(shared) = &counted {
            shared.sent.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------
