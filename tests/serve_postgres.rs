//! Two `lepton serve` nodes on one real PostgreSQL database converge: an app put, replaced or
//! deleted through either node's admin API is served, replaced or removed on the other's
//! ingress too (PostgreSQL notifications, no polling), and both nodes' statuses are recorded.

mod support;

use lepton_testkit::TestPostgres;
use support::serve::{Serve, converge};
use support::*;

#[test]
fn two_nodes_on_one_postgres_database_converge() {
    require_guest_builds();
    let pg = TestPostgres::start().expect("PostgreSQL");
    let registry = TestRegistry::start().expect("registry");
    let reg = registry.addr();
    let (p2, p3) = (format!("{reg}/hello:p2"), format!("{reg}/hello:p3"));
    push("hello-p2", &p2);
    push("hello-p3", &p3);
    let url = format!("{}?sslmode=disable", pg.url());
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let a = Serve::start(dir_a.path(), &url, "node-a", &free_addr(), &free_addr());
    let b = Serve::start(dir_b.path(), &url, "node-b", &free_addr(), &free_addr());
    let body =
        |reference: &str| format!(r#"{{"reference":"{reference}","hosts":["shop.example.com"]}}"#);
    let answers = |node: &Serve, generation: &str| {
        let res = node.via("shop.example.com", "/");
        res.status == 200 && res.text() == format!("Hello from hello ({generation})\n")
    };

    // Put through a: b serves it too.
    let (status, json) = a.api("PUT", "/v1/apps/shop", &body(&p2));
    assert_eq!(status, 200, "{json}");
    a.says("shop.example.com", "p2");
    converge("put through a, served by b", &[&a, &b], || {
        answers(&b, "p2")
    });

    // Replace through b: a follows.
    let (status, json) = b.api("PUT", "/v1/apps/shop", &body(&p3));
    assert_eq!(status, 200, "{json}");
    converge("replaced through b, served by a", &[&a, &b], || {
        answers(&a, "p3")
    });

    // Both nodes' observations are recorded in the shared database.
    converge("both nodes recorded serving", &[&a, &b], || {
        let (_, json) = a.api("GET", "/v1/apps/shop", "");
        let nodes = json["nodes"].as_array().cloned().unwrap_or_default();
        nodes.len() == 2
            && nodes.iter().all(|n| {
                n["status"]["state"] == "serving"
                    && n["status"]["digest"] == json["status"]["digest"]
            })
    });

    // A host held on one node conflicts on the other (one database, one set of claims).
    let (status, json) = b.api(
        "PUT",
        "/v1/apps/copy",
        &format!(r#"{{"reference":"{p2}","hosts":["shop.example.com"]}}"#),
    );
    assert_eq!(
        (status, json["app"].as_str()),
        (409, Some("shop")),
        "{json}"
    );

    // Delete through a: b stops serving it.
    let (status, json) = a.api("DELETE", "/v1/apps/shop", "");
    assert_eq!(status, 200, "{json}");
    converge("deleted through a, gone from b", &[&a, &b], || {
        b.via("shop.example.com", "/").status == 404
    });
}
