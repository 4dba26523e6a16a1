//! `lepton serve` through the real binary: desired state in SQLite, written through the admin
//! API with plain HTTP requests (as `curl` would send them), apps served by host on one shared
//! `--http` ingress (and on their own address), replaced and deleted live; 401s, 400s and 409s;
//! `/metrics` moving with traffic; a restart on the same database serving the same apps; and the
//! `lepton apps` client.

mod support;

use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use support::serve::{Serve, TOKEN, hello_registry};
use support::*;

#[test]
fn serve_runs_apps_from_its_database_through_the_api_and_one_ingress() {
    let (registry, p2, p3) = hello_registry();
    let outbound = format!("{}/outbound:v1", registry.addr());
    push("outbound-p2", &outbound);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (admin, ingress, own) = (free_addr(), free_addr(), free_addr());
    let mut serve = Serve::start(tmp.path(), "lepton.db", "node-a", &admin, &ingress);

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
        format!(
            r#"{{"reference":"{p2}","hosts":["API.example.com"],"address":"{own}","limits":{{"max_request_body_bytes":16}}}}"#
        ),
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

    // Self requests and service chaining of an app served only by host reach the same app
    // (through the ingress, by one of its hosts).
    let (status, json) = serve.api(
        "PUT",
        "/v1/apps/outbound",
        &format!(
            r#"{{"reference":"{outbound}","hosts":["out.example.com"],"variables":{{"upstream_port":"1"}}}}"#
        ),
    );
    assert_eq!(status, 200, "{json}\n{}", serve.log());
    let fetch = |prefix: &str, url: &str| {
        let res = lepton_testkit::http_request_to_host(
            &ingress,
            "out.example.com",
            "GET",
            &format!("{prefix}/fetch"),
            &[("x-url", url)],
            b"",
        )
        .expect("fetch");
        (res.status, res.text())
    };
    assert_eq!(
        fetch("/front", "/front/whoami"),
        (
            200,
            "200\nI am front\npath-info: /whoami\nmatched-route: /front/...\n".into()
        ),
        "{}",
        serve.log()
    );
    assert_eq!(
        fetch("/wild", "http://back.spin.internal/whoami").0,
        200,
        "{}",
        serve.log()
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
    assert_eq!(names, ["api", "outbound", "shop"], "{json}");
    let (_, shop) = serve.api("GET", "/v1/apps/shop", "");
    assert_eq!(shop["status"]["state"], "serving", "{shop}");
    assert!(
        shop["status"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{shop}"
    );
    assert_eq!(shop["nodes"][0]["status"]["state"], "serving", "{shop}");

    // Metrics move with traffic: per-app requests by status class, latency, limit hits, states.
    let scrape = || {
        let auth = format!("Bearer {TOKEN}");
        request(&admin, "GET", "/metrics", &[("authorization", &auth)], b"")
            .expect("metrics")
            .text()
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    let ok_shop = r#"lepton_http_requests_total{app="shop",status_class="2xx"}"#;
    let too_large = r#"lepton_http_limit_hits_total{app="api",limit="max_request_body_bytes"}"#;
    let latency = r#"lepton_http_request_duration_seconds_count{app="shop"}"#;
    let before = scrape();
    for _ in 0..3 {
        serve.says("shop.example.com", "p3");
    }
    let big = lepton_testkit::http_request_to_host(
        &serve.ingress,
        "api.example.com",
        "POST",
        "/echo",
        &[],
        &[b'x'; 100],
    )
    .expect("POST");
    assert_eq!(big.status, 413);
    let after = scrape();
    assert_eq!(
        value(&after, ok_shop) - value(&before, ok_shop),
        3.0,
        "{after}"
    );
    assert_eq!(
        value(&after, latency) - value(&before, latency),
        3.0,
        "{after}"
    );
    assert_eq!(
        value(&after, too_large) - value(&before, too_large),
        1.0,
        "{after}"
    );
    assert!(
        after.contains(r#"lepton_app_state{app="shop",state="serving"} 1"#),
        "{after}"
    );
    assert!(
        after.contains(r#"lepton_http_requests_in_flight{app="shop"} 0"#),
        "{after}"
    );
    assert!(after.contains("process_resident_memory_bytes"), "{after}");

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
    let serve = Serve::start(tmp.path(), "lepton.db", "node-a", &admin, &ingress);
    serve.says("shop.example.com", "p3");
    serve.says("api.example.com", "p2");
    assert_eq!(serve.via("en.blog.example.com", "/").status, 404);
}
