//! Tests of the app entry parsers: manifests, tauon files and admin API bodies.

use super::*;

fn parse(json: &str) -> Result<Manifest, ConfigError> {
    Manifest::parse(Path::new("/etc/lepton/lepton.json"), json)
}

#[test]
fn valid_manifest_resolves_state_dirs_against_the_file() {
    let m = parse(r#"{"apps":[{"reference":"127.0.0.1:5000/hello:v1","address":"127.0.0.1:4001","state_dir":"app1"}]}"#)
        .expect("valid");
    assert_eq!(m.apps[0].state_dir, PathBuf::from("/etc/lepton/app1"));
    assert_eq!(m.apps[0].name, "hello");
    assert_eq!(
        m.apps[0].address,
        Some("127.0.0.1:4001".parse().expect("addr"))
    );
}

#[test]
fn every_problem_is_reported_naming_file_field_and_app() {
    let err = parse(
        r#"{"apps":[
            {"reference":"127.0.0.1:5000/a:v1","address":"127.0.0.1:4001","state_dir":"a"},
            {"reference":"127.0.0.1:5000/b:v1","address":"127.0.0.1:4001","state_dir":"b"},
            {"reference":"Not A Reference!","address":"nowhere","state_dir":"a"}
        ]}"#,
    )
    .expect_err("invalid");
    let msg = err.to_string();
    assert!(msg.contains("4 problems"), "{msg}");
    assert!(msg.contains("/etc/lepton/lepton.json: apps[1] (127.0.0.1:5000/b:v1): `address`: 127.0.0.1:4001 is already used by apps[0]"), "{msg}");
    assert!(
        msg.contains("apps[2] (Not A Reference!): `reference`"),
        "{msg}"
    );
    assert!(
        msg.contains("apps[2] (Not A Reference!): `address`"),
        "{msg}"
    );
    assert!(
        msg.contains("apps[2] (Not A Reference!): `state_dir`"),
        "{msg}"
    );
}

#[test]
fn wildcard_addresses_conflict_with_specific_ones_on_the_same_port() {
    let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
    assert!(addresses_conflict(addr("0.0.0.0:80"), addr("127.0.0.1:80")));
    assert!(addresses_conflict(addr("127.0.0.1:80"), addr("0.0.0.0:80")));
    assert!(addresses_conflict(addr("[::]:80"), addr("127.0.0.1:80")));
    assert!(!addresses_conflict(
        addr("127.0.0.1:80"),
        addr("127.0.0.2:80")
    ));
    assert!(!addresses_conflict(
        addr("127.0.0.1:80"),
        addr("127.0.0.1:81")
    ));
    assert!(!addresses_conflict(
        addr("127.0.0.1:0"),
        addr("127.0.0.1:0")
    ));
}

#[test]
fn an_app_file_is_one_entry_named_after_its_file() {
    let spec = parse_app_file(
        Path::new("/srv/tauon/shop.json"),
        r#"{"reference":"127.0.0.1:5000/hello:v1","address":"127.0.0.1:4001","state_dir":"data/shop","variables":{"k":"v"}}"#,
    )
    .expect("valid");
    assert_eq!(spec.name, "shop");
    assert_eq!(spec.state_dir, PathBuf::from("/srv/tauon/data/shop"));
    assert_eq!(spec.variables.get("k").map(String::as_str), Some("v"));
    let named = parse_app_file(
        Path::new("/srv/tauon/shop.json"),
        r#"{"name":"store","reference":"r.io/hello:v1","address":"127.0.0.1:4001","state_dir":"s"}"#,
    )
    .expect("valid");
    assert_eq!(named.name, "store");
}

#[test]
fn app_file_errors_name_the_file_line_and_field() {
    let err = parse_app_file(
        Path::new("/srv/tauon/shop.json"),
        "{\n \"reference\": \"r.io/a:1\",\n oops }",
    )
    .expect_err("invalid");
    assert!(
        err.to_string().starts_with("/srv/tauon/shop.json: line 3"),
        "{err}"
    );
    let err = parse_app_file(
        Path::new("/srv/tauon/shop.json"),
        r#"{"reference":"r.io/a:1","address":"nowhere","state_dir":""}"#,
    )
    .expect_err("invalid");
    let msg = err.to_string();
    assert!(
        msg.contains("/srv/tauon/shop.json: shop: `address`"),
        "{msg}"
    );
    assert!(
        msg.contains("/srv/tauon/shop.json: shop: `state_dir`"),
        "{msg}"
    );
    let err = parse_app_file(
        Path::new("/srv/tauon/half.json"),
        "{\"reference\": \"r.io/a",
    )
    .expect_err("a half-written file is an error");
    assert!(
        err.to_string().starts_with("/srv/tauon/half.json: line 1"),
        "{err}"
    );
}

#[test]
fn syntax_errors_and_unknown_fields_point_at_the_line() {
    let err = parse("{\"apps\": [\n {\"reference\": \"r/x:1\", \"adress\": \"x\"}]}")
        .expect_err("invalid");
    let msg = err.to_string();
    assert!(msg.starts_with("/etc/lepton/lepton.json: line 2"), "{msg}");
    assert!(msg.contains("adress"), "{msg}");
}

#[test]
fn an_api_body_may_have_hosts_or_neither_and_defaults_its_state_dir() {
    let root = Path::new("/var/lib/lepton/state");
    let spec = parse_api_app(
        "shop",
        r#"{"reference":"127.0.0.1:5000/shop:v1","hosts":["Shop.Example.com","*.shop.example.com","shop.example.com"]}"#,
        root,
    )
    .expect("valid");
    assert_eq!(spec.name, "shop");
    assert_eq!(spec.address, None);
    assert_eq!(spec.hosts, ["*.shop.example.com", "shop.example.com"]);
    assert_eq!(spec.state_dir, root.join("shop"));

    // Neither address nor hosts: valid here (an app of Redis or cron triggers needs neither);
    // an app with HTTP triggers is refused once pulled.
    let spec = parse_api_app("shop", r#"{"reference":"127.0.0.1:5000/shop:v1"}"#, root)
        .expect("no address, no hosts");
    assert_eq!((spec.address, spec.hosts.len()), (None, 0));
    let err = parse_api_app(
        "shop",
        r#"{"name":"other","reference":"127.0.0.1:5000/shop:v1","hosts":["a.b:80"],"tls":{}}"#,
        root,
    )
    .expect_err("bad")
    .to_string();
    for field in ["`name`", "`hosts`: [0]", "`tls`"] {
        assert!(err.contains(field), "{field} missing in {err}");
    }
    let err = parse_api_app("../etc", r#"{}"#, root)
        .expect_err("bad name")
        .to_string();
    assert!(err.contains("`name`"), "{err}");
}

#[test]
fn files_still_need_a_state_dir_and_no_hosts() {
    let err = parse_app_file(
        Path::new("/d/a.json"),
        r#"{"reference":"127.0.0.1:5000/a:v1","hosts":["a.example.com"]}"#,
    )
    .expect_err("missing")
    .to_string();
    assert!(!err.contains("`address`:"), "{err}");
    assert!(err.contains("`hosts`: only `lepton serve`"), "{err}");
    assert!(err.contains("`state_dir`: missing"), "{err}");
}

#[test]
fn tls_is_an_api_only_pair_of_paths_for_apps_with_hosts() {
    let root = Path::new("/var/lib/lepton/state");
    let spec = parse_api_app(
        "shop",
        r#"{"reference":"127.0.0.1:5000/shop:v1","hosts":["shop.example.com"],
            "tls":{"cert":"tls/shop.crt","key":"/etc/tls/./shop.key"}}"#,
        root,
    )
    .expect("valid");
    assert_eq!(
        spec.tls,
        Some(AppTls {
            cert: root.join("tls/shop.crt"),
            key: PathBuf::from("/etc/tls/shop.key"),
        })
    );

    let err = parse_api_app(
        "shop",
        r#"{"reference":"127.0.0.1:5000/shop:v1","address":"127.0.0.1:4001",
            "tls":{"cert":"a.crt","key":"a.key"}}"#,
        root,
    )
    .expect_err("tls without hosts")
    .to_string();
    assert!(err.contains("`tls`: needs `hosts`"), "{err}");

    let err = parse_api_app(
        "shop",
        r#"{"reference":"127.0.0.1:5000/shop:v1","hosts":["shop.example.com"],
            "tls":{"cert":"","key":""}}"#,
        root,
    )
    .expect_err("empty paths")
    .to_string();
    assert!(err.contains("`tls.cert`: must not be empty"), "{err}");
    assert!(err.contains("`tls.key`: must not be empty"), "{err}");

    let err = parse_api_app(
        "shop",
        r#"{"reference":"127.0.0.1:5000/shop:v1","hosts":["shop.example.com"],
            "tls":{"cert":"a.crt","key":"a.key","acme":true}}"#,
        root,
    )
    .expect_err("unknown field")
    .to_string();
    assert!(err.contains("`tls`: must be"), "{err}");

    let err = parse_app_file(
        Path::new("/d/a.json"),
        r#"{"reference":"127.0.0.1:5000/a:v1","address":"127.0.0.1:4001","state_dir":"a",
            "tls":{"cert":"a.crt","key":"a.key"}}"#,
    )
    .expect_err("no ingress in files")
    .to_string();
    assert!(err.contains("`tls`: only `lepton serve`"), "{err}");
}
