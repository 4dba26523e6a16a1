//! Outbound Redis, PostgreSQL, MySQL and MQTT end to end: the `outbound-p2` guest (spin-sdk 5.2,
//! routes in `apps/outbound-p2/src/services.rs`) pushed to a real registry and served by the
//! `lepton` binary talks to real `redis-server`, PostgreSQL, MariaDB and Mosquitto servers this
//! test starts on free loopback ports (lepton-testkit). Each case asserts the exact transcript
//! the guest returns, what the servers hold afterwards, and the exact error for an address the
//! component may not reach.

mod support;

use std::time::Duration;

use lepton_testkit::{TestMosquitto, TestMysql, TestPostgres, TestRedis, http_request};
use support::*;

/// A spin.toml (in `dir`) with the built guest twice: `svc` (route `/...`) allowed exactly the
/// four servers through variables, and `none` (route `/none/...`) allowed nothing.
fn services_toml(dir: &std::path::Path) -> std::path::PathBuf {
    let wasm = repo_root().join("apps/target/wasm32-wasip2/release/outbound_p2.wasm");
    let toml = format!(
        r#"spin_manifest_version = 2
[application]
name = "services"
[variables]
redis_port = {{ required = true }}
pg_port = {{ required = true }}
mysql_port = {{ required = true }}
mqtt_port = {{ required = true }}
[[trigger.http]]
route = "/..."
component = "svc"
[component.svc]
source = "{wasm}"
allowed_outbound_hosts = [
    "redis://127.0.0.1:{{{{ redis_port }}}}",
    "postgres://127.0.0.1:{{{{ pg_port }}}}",
    "mysql://127.0.0.1:{{{{ mysql_port }}}}",
    "mqtt://127.0.0.1:{{{{ mqtt_port }}}}",
]
[[trigger.http]]
route = "/none/..."
component = "none"
[component.none]
source = "{wasm}"
"#,
        wasm = wasm.display()
    );
    std::fs::create_dir_all(dir).expect("app dir");
    let path = dir.join("spin.toml");
    std::fs::write(&path, toml).expect("write spin.toml");
    path
}

fn call(
    addr: &str,
    path: &str,
    address: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut headers = vec![("x-address", address)];
    headers.extend_from_slice(extra);
    let res = http_request(addr, "POST", path, &headers, body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (res.status, res.text())
}

#[test]
fn redis_postgres_mysql_and_mqtt_from_a_guest() {
    require_guest_builds();
    let redis = TestRedis::start().expect("start redis-server");
    let pg = TestPostgres::start().expect("start PostgreSQL");
    let mysql = TestMysql::start().expect("start MariaDB");
    let mqtt = TestMosquitto::start().expect("start mosquitto");

    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let reference = format!("{}/services:v1", registry.addr());
    let toml = services_toml(&work.path().join("app"));
    let out = push_output(&toml, &reference, &[]);
    assert!(out.status.success(), "push: {out:?}");

    let app = free_addr();
    let manifest = serde_json::json!({ "apps": [{
        "reference": reference,
        "address": app,
        "state_dir": "state/services",
        "variables": {
            "redis_port": redis.port().to_string(),
            "pg_port": pg.port().to_string(),
            "mysql_port": mysql.port().to_string(),
            "mqtt_port": mqtt.port().to_string(),
        },
    }]});
    let manifest_path = work.path().join("lepton.json");
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("write manifest");
    let mut lepton = Lepton::start(
        &manifest_path,
        &work.path().join("cache"),
        &work.path().join("logs"),
    );
    lepton.wait_healthy(&[&app]);

    // ---- Redis -------------------------------------------------------------------------------
    let (status, body) = call(&app, "/services/redis", &redis.url(), &[], b"");
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "get greeting = Some(\"hello redis\")\n\
             get missing = None\n\
             incr counter = 1\n\
             incr counter = 2\n\
             incr greeting = Err(Error::Other(\"An error was signalled by the server - \
             ResponseError: value is not an integer or out of range\"))\n\
             sadd fruits = 2\n\
             smembers fruits = [\"apple\", \"pear\"]\n\
             srem fruits = 1\n\
             execute APPEND = [RedisResult::Int64(12)]\n\
             execute MGET = [\"Binary(\\\"hello redis!\\\")\", \"RedisResult::Nil\"]\n\
             execute SET = [RedisResult::Status(\"OK\")]\n\
             execute INCR = [RedisResult::Int64(42)]\n\
             del = 2\n\
             publish news = ok\n"
        ),
        "lepton stderr:\n{}",
        lepton.stderr()
    );
    // What the guest did is really in the server.
    assert_eq!(redis.cli(&["GET", "n"]).expect("redis-cli"), "42");
    assert_eq!(
        redis.cli(&["SMEMBERS", "fruits"]).expect("redis-cli"),
        "apple"
    );
    assert_eq!(redis.cli(&["EXISTS", "greeting"]).expect("redis-cli"), "0");

    // ---- PostgreSQL (spin:postgres@4.0.0 and fermyon:spin/postgres@2.0.0) -------------------
    let (status, body) = call(&app, "/services/pg", &pg.url(), &[], b"");
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "inserted = 2\n\
             columns = id:DbDataType::Int32,name:DbDataType::Str,big:DbDataType::Int64,small:DbDataType::Int16,ratio:DbDataType::Floating64,flag:DbDataType::Boolean,\
             data:DbDataType::Binary,day:DbDataType::Date,at:DbDataType::Datetime,price:DbDataType::Decimal,tags:DbDataType::ArrayStr,doc:DbDataType::Jsonb,uid:DbDataType::Uuid\n\
             row = [DbValue::Int32(1), DbValue::Str(\"first\"), DbValue::Int64(9000000000), DbValue::Int16(-7), DbValue::Floating64(0.25), \
             DbValue::Boolean(true), DbValue::Binary([0, 1, 254]), DbValue::Date((2024, 2, 29)), \
             DbValue::Datetime((2024, 2, 29, 13, 14, 15, 0)), DbValue::Decimal(\"12.50\"), \
             DbValue::ArrayStr([Some(\"a\"), None]), DbValue::Jsonb([123, 34, 107, 34, 58, 91, 49, 44, 50, 93, 125]), \
             DbValue::Uuid(\"6a1f0c8e-0000-4000-8000-000000000001\")]\n\
             row = [DbValue::Int32(2), DbValue::DbNull, DbValue::DbNull, DbValue::DbNull, DbValue::DbNull, DbValue::DbNull, DbValue::DbNull, DbValue::DbNull, DbValue::DbNull, \
             DbValue::DbNull, DbValue::DbNull, DbValue::DbNull, DbValue::DbNull]\n\
             bad query = db-error ERROR 42P01: relation \"no_such_table\" does not exist\n"
        ),
        "lepton stderr:\n{}",
        lepton.stderr()
    );
    assert_eq!(
        pg.psql("SELECT id, name, price, doc FROM items ORDER BY id")
            .expect("psql"),
        "1|first|12.50|{\"k\": [1, 2]}\n2|||"
    );
    let (status, body) = call(&app, "/services/pg-v2", &pg.url(), &[], b"");
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "columns = n:DbDataType::Int32,s:DbDataType::Str,z:DbDataType::Str,d:DbDataType::Other\n\
             row = [DbValue::Int32(42), DbValue::Str(\"v2\"), DbValue::DbNull, DbValue::Unsupported]\n"
        )
    );
    // interval and int4range / int8range / numrange (spin:postgres@4.0.0), both directions:
    // stored from parameters, read back as columns (PostgreSQL canonicalizes `[1,10]` to
    // `[1,11)`; an empty range reads as no bounds, as in Spin), and used by the server itself.
    let (status, body) = call(&app, "/services/pg-ranges", &pg.url(), &[], b"");
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "inserted = 3\n\
             columns = id:DbDataType::Int32,r4:DbDataType::RangeInt32,r8:DbDataType::RangeInt64,\
             rn:DbDataType::RangeDecimal,iv:DbDataType::Interval\n\
             row = [DbValue::Int32(1), \
             DbValue::RangeInt32((Some((1, RangeBoundKind::Inclusive)), Some((11, RangeBoundKind::Exclusive)))), \
             DbValue::RangeInt64((Some((-4999999999, RangeBoundKind::Inclusive)), None)), \
             DbValue::RangeDecimal((Some((\"1.5\", RangeBoundKind::Inclusive)), Some((\"2.25\", RangeBoundKind::Exclusive)))), \
             DbValue::Interval(Interval { micros: 3723000004, days: 2, months: 14 })]\n\
             row = [DbValue::Int32(2), DbValue::RangeInt32((None, None)), DbValue::RangeInt64((None, None)), \
             DbValue::RangeDecimal((None, Some((\"-0.5\", RangeBoundKind::Inclusive)))), \
             DbValue::Interval(Interval { micros: -1, days: -3, months: 0 })]\n\
             row = [DbValue::Int32(3), DbValue::DbNull, DbValue::DbNull, DbValue::DbNull, DbValue::DbNull]\n\
             used = [DbValue::Boolean(true), DbValue::Boolean(false), DbValue::Str(\"2025-04-02 01:02:03.000004\"), \
             DbValue::Str(\"99.125\"), DbValue::Boolean(true)]\n\
             reversed = db-error 22000: range lower bound must be less than or equal to range upper bound\n\
             bad decimal = Err(Error::BadParameter(\"invalid decimal range bound \\\"one\\\"\"))\n"
        ),
        "lepton stderr:\n{}",
        lepton.stderr()
    );
    assert_eq!(
        pg.psql("SELECT id, r4, r8, rn, iv FROM spans ORDER BY id")
            .expect("psql"),
        "1|[1,11)|[-4999999999,)|[1.5,2.25)|1 year 2 mons 2 days 01:02:03.000004\n\
         2|(,)|empty|(,-0.5]|-3 days -00:00:00.000001\n\
         3||||"
    );

    // ---- MySQL (MariaDB) ---------------------------------------------------------------------
    let (status, body) = call(&app, "/services/mysql", &mysql.url(), &[], b"");
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "columns = id:DbDataType::Int32,name:DbDataType::Str,age:DbDataType::Uint8,weight:DbDataType::Floating64,photo:DbDataType::Binary,big:DbDataType::Int64\n\
             row = [DbValue::Int32(1), DbValue::Str(\"Rex\"), DbValue::Uint8(7), DbValue::Floating64(12.5), DbValue::Binary([1, 2, 3]), \
             DbValue::Int64(-9000000000)]\n\
             row = [DbValue::Int32(2), DbValue::DbNull, DbValue::DbNull, DbValue::DbNull, DbValue::DbNull, DbValue::DbNull]\n\
             bad query = Err(Error::QueryFailed(\"Server error: `ERROR 1146 (42S02): Table 'lepton.no_such_table' doesn't exist'\"))\n"
        ),
        "lepton stderr:\n{}",
        lepton.stderr()
    );
    assert_eq!(
        mysql
            .sql("SELECT id, name, age FROM lepton.pets ORDER BY id")
            .expect("mariadb"),
        "1\tRex\t7\n2\tNULL\tNULL"
    );

    // ---- MQTT: a real subscriber receives exactly what the guest published -----------------
    let mut sub = mqtt.subscribe("lepton/services").expect("mosquitto_sub");
    let mqtt_url = format!("{}?client_id=lepton-services-test", mqtt.url());
    let payload = b"hello from a guest \x00\xff";
    let (status, body) = call(
        &app,
        "/services/mqtt",
        &mqtt_url,
        &[("x-topic", "lepton/services")],
        payload,
    );
    assert_eq!(
        (status, body.as_str()),
        (200, "published 21 bytes to lepton/services\n"),
        "lepton stderr:\n{}",
        lepton.stderr()
    );
    let msg = sub
        .next_message(Duration::from_secs(60))
        .expect("the subscriber receives the message");
    assert_eq!(msg.topic, "lepton/services");
    assert_eq!(msg.payload, payload);

    // ---- Not permitted: another port, and a component with no allowed hosts -----------------
    let other_port = |url: String, port: u16| url.replace(&format!(":{port}"), ":1");
    let cases = [
        (
            "redis",
            other_port(redis.url(), redis.port()),
            "error: Error::InvalidAddress\n".to_string(),
        ),
        (
            "pg",
            other_port(pg.url(), pg.port()),
            format!(
                "error: Error::ConnectionFailed(\"address {} is not permitted\")\n",
                other_port(pg.url(), pg.port())
            ),
        ),
        (
            "mysql",
            other_port(mysql.url(), mysql.port()),
            format!(
                "error: Error::ConnectionFailed(\"address {} is not permitted\")\n",
                other_port(mysql.url(), mysql.port())
            ),
        ),
        (
            "mqtt",
            other_port(mqtt_url.clone(), mqtt.port()),
            format!(
                "error: Error::ConnectionFailed(\"address {} is not permitted\")\n",
                other_port(mqtt_url.clone(), mqtt.port())
            ),
        ),
    ];
    for (kind, address, expected) in &cases {
        assert_eq!(
            call(&app, &format!("/services/open/{kind}"), address, &[], b""),
            (500, expected.clone()),
            "{kind} on a port not allowed"
        );
    }
    // The allowed addresses open, from `svc`; none of them from `none`.
    let allowed = [
        ("redis", redis.url()),
        ("pg", pg.url()),
        ("mysql", mysql.url()),
        ("mqtt", mqtt_url.clone()),
    ];
    for (kind, address) in &allowed {
        assert_eq!(
            call(&app, &format!("/services/open/{kind}"), address, &[], b""),
            (200, "ok\n".to_string()),
            "{kind} allowed"
        );
    }
    let (status, body) = call(&app, "/none/services/open/redis", &redis.url(), &[], b"");
    assert_eq!(
        (status, body.as_str()),
        (500, "error: Error::InvalidAddress\n")
    );
    let (status, body) = call(&app, "/none/services/open/pg", &pg.url(), &[], b"");
    assert_eq!(
        (status, body),
        (
            500,
            format!(
                "error: Error::ConnectionFailed(\"address {} is not permitted\")\n",
                pg.url()
            )
        )
    );
    let (status, body) = call(&app, "/none/services/open/mqtt", &mqtt_url, &[], b"");
    assert_eq!(
        (status, body),
        (
            500,
            format!("error: Error::ConnectionFailed(\"address {mqtt_url} is not permitted\")\n")
        )
    );
    drop(lepton);
}
