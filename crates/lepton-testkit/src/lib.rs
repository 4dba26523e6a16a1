//! Test helpers shared by lepton's integration tests (dev-only).
//!
//! - [`TestRegistry`]: a real `docker-registry` (distribution v2) on a free `127.0.0.1` port with
//!   filesystem storage in a temp dir; it can be stopped and restarted on the same port/storage.
//!   [`TestRegistry::start_with_htpasswd`] starts one that requires HTTP Basic credentials.
//! - [`DockerConfig`]: a temporary `$DOCKER_CONFIG` directory with inline credentials or a
//!   credential helper, for a child process.
//! - [`http_get`] / [`http_get_with_headers`]: a tiny blocking HTTP/1.0 GET over
//!   `std::net::TcpStream`, enough to inspect a registry without pulling in an HTTP client.
//! - [`TestRedis`], [`TestPostgres`], [`TestMysql`], [`TestMosquitto`]: real Redis, PostgreSQL,
//!   MariaDB and Mosquitto servers on free loopback ports (module `services`).
//! - [`free_port`], [`repo_root`].

mod docker_config;
mod http;
mod registry;
mod services;

pub use docker_config::DockerConfig;
pub use http::{HttpResponse, http_get, http_get_with_headers, http_request, http_request_to_host};
pub use registry::TestRegistry;
pub use services::{
    MqttMessage, MqttSubscription, TestMosquitto, TestMysql, TestPostgres, TestRedis,
};

use std::net::TcpListener;
use std::path::PathBuf;

/// Returns a currently free TCP port on 127.0.0.1 (bind to :0, read the port, release it),
/// never one this process was already given: the kernel may hand a just-released port out again,
/// and two apps of one manifest must not get the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port != 0 && !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    0
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).map(PathBuf::from).unwrap_or(here)
}

/// Raise this process's soft limit on open files to its hard limit (children started afterwards
/// inherit it), for tests that hold thousands of connections. Returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            limit = raised;
        }
    }
    limit.rlim_cur
}
