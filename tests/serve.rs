//! `lepton serve` through the real binary: desired state in SQLite, written through the admin
//! API with plain HTTP requests (as `curl` would send them), apps served by host on one shared
//! `--http` ingress (and on their own address), replaced and deleted live; 401s, 400s and 409s;
//! `/metrics` moving with traffic; a restart on the same database serving the same apps; and the
//! `lepton apps` client.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lepton_testkit::http_request_to_host;
use serde_json::Value;
use support::*;

const TOKEN: &str = "test-admin-token-0123456789";

/// A `lepton serve` child; killed on drop.
struct Serve {
    child: Child,
    stderr: PathBuf,
    admin: String,
    ingress: String,
}

impl Serve {
    fn start(dir: &Path, admin: &str, ingress: &str) -> Self {
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let stderr = dir.join(format!("serve-{n}.stderr"));
        let child = Command::new(lepton_bin())
            .current_dir(dir)
            .args(["serve", "--db", "lepton.db", "--state-root", "state"])
            .args(["--admin", admin, "--http", ingress])
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(["--drain-timeout", "2"])
            .env("LEPTON_ADMIN_TOKEN", TOKEN)
            .env("LEPTON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr"))
            .spawn()
            .expect("spawn lepton serve");
        let mut serve = Self {
            child,
            stderr,
            admin: admin.to_string(),
            ingress: ingress.to_string(),
        };
        serve.wait_ready();
        serve
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Wait until `/readyz` answers 200 (every stored app tried).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(res) = get(&self.admin, "/readyz")
                && res.status == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("lepton serve exited ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "never ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An admin API request with the token; the status and the JSON answer.
    fn api(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        let res = request(
            &self.admin,
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()));
        let json = serde_json::from_slice(&res.body).unwrap_or(Value::Null);
        (res.status, json)
    }

    /// `GET path` on the ingress for `host`.
    fn via(&self, host: &str, path: &str) -> HttpResponse {
        http_request_to_host(&self.ingress, host, "GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e}\n{}", self.log()))
    }

    /// The hello app behind `host` answers as the `generation` (`p2`/`p3`) build.
    fn says(&self, host: &str, generation: &str) {
        let res = self.via(host, "/");
        assert_eq!(
            (res.status, res.text()),
            (200, format!("Hello from hello ({generation})\n")),
            "via {host}:\n{}",
            self.log()
        );
    }

    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_runs_apps_from_its_database_through_the_api_and_one_ingress() {
    require_guest_builds();
    let registry = TestRegistry::start().expect("registry");
    let reg = registry.addr();
    let (p2, p3) = (format!("{reg}/hello:p2"), format!("{reg}/hello:p3"));
    push("hello-p2", &p2);
    push("hello-p3", &p3);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (admin, ingress, own) = (free_addr(), free_addr(), free_addr());
    let mut serve = Serve::start(tmp.path(), &admin, &ingress);

    // Health needs no token; everything else does, and a wrong one looks like a missing one.
    assert_eq!(get(&admin, "/healthz").expect("healthz").status, 200);
    let missing = get(&admin, "/v1/apps").expect("no token");
    let wrong = request(
        &admin,
        "GET",
        "/v1/apps",
        &[("authorization", "Bearer not-the-token-0123456789")],
        b"",
    )
    .expect("wrong token");
    assert_eq!((missing.status, wrong.status), (401, 401));
    assert_eq!(missing.body, wrong.body);
    assert_eq!(
        get(&admin, "/metrics").expect("metrics").status,
        401,
        "/metrics needs the token"
    );

    // Three apps on one ingress, one of them also on its own address.
    let put = |name: &str, body: String| {
        let (status, json) = serve.api("PUT", &format!("/v1/apps/{name}"), &body);
        assert_eq!(status, 200, "PUT {name}: {json}\n{}", serve.log());
        assert_eq!(json["status"]["state"], "serving", "{json}");
        json
    };
    let started = Instant::now();
    put(
        "shop",
        format!(r#"{{"reference":"{p2}","hosts":["shop.example.com"]}}"#),
    );
    eprintln!(
        "PUT shop (pull + compile) answered after {:?}",
        started.elapsed()
    );
    put(
        "blog",
        format!(r#"{{"reference":"{p3}","hosts":["*.blog.example.com"]}}"#),
    );
    let api = put(
        "api",
        format!(r#"{{"reference":"{p2}","hosts":["API.example.com"],"address":"{own}"}}"#),
    );
    assert_eq!(api["status"]["hosts"][0], "api.example.com", "{api}");
    assert_eq!(api["status"]["address"], own.as_str(), "{api}");
    serve.says("shop.example.com", "p2");
    serve.says("en.blog.example.com:80", "p3");
    serve.says("api.example.com", "p2");
    assert_eq!(
        get(&own, "/").expect("own address").text(),
        "Hello from hello (p2)\n"
    );
    assert_eq!(serve.via("nobody.example.com", "/").status, 404);
    assert_eq!(serve.via("a.b.blog.example.com", "/").status, 404);
    // Spin semantics behind the ingress: the full URL carries the request's host.
    let headers = serve.via("shop.example.com", "/x/headers").text();
    assert!(
        headers.contains("spin-full-url: http://shop.example.com/x/headers"),
        "{headers}"
    );

    // Bad bodies name the field; a host held by another app names that app.
    let (status, json) = serve.api(
        "PUT",
        "/v1/apps/bad",
        &format!(r#"{{"reference":"{p2}","hosts":["shop.example.com:8080"],"limits":{{"memory_mib":0}}}}"#),
    );
    assert_eq!(status, 400, "{json}");
    let fields: Vec<&str> = json["problems"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["field"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        fields.contains(&"hosts") && fields.contains(&"limits.memory_mib"),
        "{json}"
    );
    let (status, json) = serve.api("PUT", "/v1/apps/bad", "{ not json");
    assert_eq!(status, 400, "{json}");
    let (status, json) = serve.api(
        "PUT",
        "/v1/apps/copy",
        &format!(r#"{{"reference":"{p3}","hosts":["shop.example.com"]}}"#),
    );
    assert_eq!(status, 409, "{json}");
    assert_eq!(json["app"], "shop", "{json}");
    serve.says("shop.example.com", "p2");

    // Replace and delete, live.
    put(
        "shop",
        format!(r#"{{"reference":"{p3}","hosts":["shop.example.com"]}}"#),
    );
    serve.says("shop.example.com", "p3");
    let (status, json) = serve.api("DELETE", "/v1/apps/blog", "");
    assert_eq!(status, 200, "{json}");
    assert_eq!(serve.via("en.blog.example.com", "/").status, 404);
    assert_eq!(serve.api("DELETE", "/v1/apps/blog", "").0, 404);
    assert_eq!(serve.api("GET", "/v1/apps/blog", "").0, 404);

    let (status, json) = serve.api("GET", "/v1/apps", "");
    assert_eq!(status, 200);
    let names: Vec<&str> = json["apps"]
        .as_array()
        .map(|a| a.iter().filter_map(|a| a["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["api", "shop"], "{json}");
    let (_, shop) = serve.api("GET", "/v1/apps/shop", "");
    assert_eq!(shop["status"]["state"], "serving", "{shop}");
    assert!(
        shop["status"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{shop}"
    );
    assert_eq!(shop["nodes"][0]["status"]["state"], "serving", "{shop}");

    // Metrics: the app states (and the process) are there.
    let metrics = request(
        &admin,
        "GET",
        "/metrics",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )
    .expect("metrics")
    .text();
    assert!(
        metrics.contains(r#"lepton_app_state{app="shop",state="serving"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "{metrics}"
    );

    // The client subcommand: the API's JSON on stdout, failure on a non-2xx answer.
    let client = |name: &str| {
        Command::new(lepton_bin())
            .args(["apps", "--admin", &format!("http://{admin}"), "get", name])
            .env("LEPTON_ADMIN_TOKEN", TOKEN)
            .output()
            .expect("lepton apps")
    };
    let out = client("shop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["name"], "shop");
    assert!(
        !client("blog").status.success(),
        "a 404 is a failure for scripts"
    );

    // A restart on the same database serves the same apps, with no API call.
    serve.terminate();
    drop(serve);
    let serve = Serve::start(tmp.path(), &admin, &ingress);
    serve.says("shop.example.com", "p3");
    serve.says("api.example.com", "p2");
    assert_eq!(serve.via("en.blog.example.com", "/").status, 404);
}
