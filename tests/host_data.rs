//! Spin's data interfaces end to end: the `data-p2` (spin-sdk 5.2, `fermyon:spin/*@2.0.0`) and
//! `data-p3` (spin-sdk 7.0, `spin:*@3.x`) guests pushed to a real registry and served by the
//! `lepton` binary. Variables from every provider kind, key-value on SQLite files and on a real
//! redis-server, SQLite databases, permission errors exactly as the SDKs surface them, a
//! required variable missing at load, data surviving a restart and invisible to a second app
//! with the same reference in another state_dir.

mod support;

use lepton_testkit::TestRedis;
use support::*;

/// One request; the status and body text.
fn call(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let res = request(addr, method, path, &[], body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"));
    (res.status, res.text())
}

fn ok(addr: &str, method: &str, path: &str, body: &str) -> String {
    let (status, text) = call(addr, method, path, body);
    assert_eq!(status, 200, "{method} {path} on {addr}: {text}");
    text
}

#[test]
fn data_interfaces_variables_kv_sqlite() {
    require_guest_builds();
    let built = repo_root().join("apps/target/wasm32-wasip2/release");
    for name in ["data_p2.wasm", "data_p3.wasm"] {
        assert!(
            built.join(name).is_file(),
            "{name} is missing: run scripts/build-apps.sh"
        );
    }
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let redis = TestRedis::start().expect("start redis-server");
    let reg = registry.addr();
    for app in ["data-p2", "data-p3"] {
        push(app, &format!("{reg}/{app}:v1"));
    }

    // p2: `other` is a SQLite file next to its runtime config. p3: `other` is Redis, and `who`
    // comes from a static variables provider. b: same reference as p2, its own state and files.
    let write = |name: &str, text: String| {
        let path = work.path().join(name);
        std::fs::write(&path, text).expect("write runtime config");
        path
    };
    write(
        "rc-p2.toml",
        "[key_value_store.other]\ntype = \"spin\"\npath = \"p2-other.db\"\n".into(),
    );
    write(
        "rc-p3.toml",
        format!(
            "[key_value_store.other]\ntype = \"redis\"\nurl = \"{}\"\n\n\
             [[variables_provider]]\ntype = \"static\"\nvalues = {{ who = \"static\" }}\n",
            redis.url()
        ),
    );
    write(
        "rc-b.toml",
        "[key_value_store.other]\ntype = \"spin\"\npath = \"b-other.db\"\n".into(),
    );

    let (p2, p3, b, nowho) = (free_addr(), free_addr(), free_addr(), free_addr());
    let manifest = work.path().join("lepton.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec_pretty(&serde_json::json!({ "apps": [
            { "name": "data-p2", "reference": format!("{reg}/data-p2:v1"), "address": p2,
              "state_dir": "state/p2", "runtime_config": "rc-p2.toml",
              "variables": { "who": "lepton", "api_token": "s3cret-p2" } },
            { "name": "data-p3", "reference": format!("{reg}/data-p3:v1"), "address": p3,
              "state_dir": "state/p3", "runtime_config": "rc-p3.toml" },
            { "name": "data-b", "reference": format!("{reg}/data-p2:v1"), "address": b,
              "state_dir": "state/b", "runtime_config": "rc-b.toml",
              "variables": { "who": "b" } },
            { "name": "no-who", "reference": format!("{reg}/data-p2:v1"), "address": nowho,
              "state_dir": "state/nowho", "runtime_config": "rc-b.toml" },
        ]}))
        .expect("json"),
    )
    .expect("write manifest");
    // api_token for every app without an override comes from the always-present env provider.
    let env_token = std::ffi::OsString::from("env-token");
    let envs = [("SPIN_VARIABLE_API_TOKEN", env_token.as_os_str())];
    let cache = work.path().join("cache");
    let logs = work.path().join("logs");

    let mut lepton = Lepton::start_with_env(&manifest, &cache, &logs, &envs);
    lepton.wait_healthy(&[&p2, &p3, &b]);
    lepton.wait_stdout_contains("3 of 4 apps serving");

    // A required variable with no value fails its app at load, naming the app and variable.
    let stderr = lepton.stderr();
    let failure = stderr
        .lines()
        .find(|l| l.starts_with("error: app `no-who`"))
        .unwrap_or_else(|| panic!("no `error: app `no-who`` line:\n{stderr}"));
    println!("{failure}");
    assert!(
        failure.contains("required variable `who`") && failure.contains("SPIN_VARIABLE_WHO"),
        "the failure names the variable: {failure}"
    );
    assert!(
        std::net::TcpStream::connect(&nowho).is_err(),
        "no-who must not listen"
    );

    // Variables: component config templates over app variables, per provider.
    assert_eq!(ok(&p2, "GET", "/var/message", ""), "Hello, lepton!");
    assert_eq!(ok(&p2, "GET", "/var/token", ""), "s3cret-p2");
    assert_eq!(ok(&p3, "GET", "/var/message", ""), "Hello, static!");
    assert_eq!(ok(&p3, "GET", "/var/token", ""), "env-token");
    assert_eq!(ok(&b, "GET", "/var/message", ""), "Hello, b!");
    for addr in [&p2, &p3] {
        assert_eq!(ok(addr, "GET", "/var/plain", ""), "no templates here");
        assert_eq!(
            call(addr, "GET", "/var/greeting", ""),
            (
                500,
                r#"Error::Undefined("no variable for \"data\".\"greeting\"")"#.to_string()
            ),
            "app variables are not component config keys"
        );
        let (status, text) = call(addr, "GET", "/var/Bad-Name", "");
        assert_eq!(status, 500);
        assert!(
            text.starts_with("Error::InvalidName(") && text.contains("invalid character 'B'"),
            "{text}"
        );
    }
    assert!(
        !lepton.stderr().contains("s3cret-p2") && !lepton.stdout().contains("s3cret-p2"),
        "a secret's value is never logged"
    );

    // Without max_instance_memory a guest may grow well past 32 MiB (see the next test).
    assert_eq!(ok(&p2, "GET", "/alloc/64", ""), "allocated 64 MiB");

    // Key-value, both SDK generations, default store and `other`.
    for (addr, label) in [
        (&p2, "default"),
        (&p2, "other"),
        (&p3, "default"),
        (&p3, "other"),
    ] {
        let kv = |key: &str| format!("/kv/{label}/{key}");
        assert_eq!(ok(addr, "PUT", &kv("k1"), "v1"), "set");
        assert_eq!(ok(addr, "PUT", &kv("k2"), "v2"), "set");
        assert_eq!(ok(addr, "GET", &kv("k1"), ""), "v1");
        assert_eq!(
            ok(addr, "GET", &format!("/kv-exists/{label}/k1"), ""),
            "true"
        );
        assert_eq!(ok(addr, "GET", &format!("/kv-keys/{label}"), ""), "k1\nk2");
        assert_eq!(ok(addr, "DELETE", &kv("k1"), ""), "deleted");
        assert_eq!(
            ok(addr, "GET", &format!("/kv-exists/{label}/k1"), ""),
            "false"
        );
        assert_eq!(call(addr, "GET", &kv("k1"), ""), (404, "none".to_string()));
        assert_eq!(ok(addr, "GET", &format!("/kv-keys/{label}"), ""), "k2");
        // A store the component does not list: access-denied, whether or not it exists.
        for forbidden in ["forbidden", "default-not"] {
            assert_eq!(
                call(addr, "GET", &format!("/kv/{forbidden}/k"), ""),
                (500, "Error::AccessDenied".to_string())
            );
        }
    }
    // p3's `other` store is the real Redis server.
    assert_eq!(redis.cli(&["GET", "k2"]).expect("redis-cli"), "v2");
    assert_eq!(redis.cli(&["EXISTS", "k1"]).expect("redis-cli"), "0");

    // SQLite.
    let create = "CREATE TABLE IF NOT EXISTS pets (id INTEGER PRIMARY KEY, name TEXT, weight REAL, tag BLOB, note TEXT)";
    let insert = "INSERT INTO pets (name, weight, tag, note) VALUES (?, ?, ?, ?)";
    let select = "SELECT id, name, weight, tag, note FROM pets ORDER BY id";
    let rows = "columns: id,name,weight,tag,note\nrow: 1|'rex'|12.5|blob:xy|NULL\n";
    assert_eq!(ok(&p2, "POST", "/sql/default", create), "columns: \n");
    assert_eq!(
        ok(
            &p2,
            "POST",
            "/sql/default?p=t:rex&p=r:12.5&p=b:xy&p=n:",
            insert
        ),
        "columns: \n"
    );
    assert_eq!(ok(&p2, "POST", "/sql/default", select), rows);
    assert_eq!(
        ok(&p3, "POST", "/sql/default", create),
        "columns: \nlast-insert-rowid: 0\nchanges: 0\n"
    );
    assert_eq!(
        ok(
            &p3,
            "POST",
            "/sql/default?p=t:rex&p=r:12.5&p=b:xy&p=n:",
            insert
        ),
        "columns: \nlast-insert-rowid: 1\nchanges: 1\n"
    );
    assert_eq!(
        ok(&p3, "POST", "/sql/default", select),
        format!("{rows}last-insert-rowid: 0\nchanges: 0\n")
    );
    for addr in [&p2, &p3] {
        assert_eq!(
            call(addr, "POST", "/sql/forbidden", select),
            (500, "Error::AccessDenied".to_string())
        );
    }
    let (status, text) = call(&p2, "POST", "/sql/default", "SELECT * FROM nope");
    assert_eq!(
        (status, text.as_str()),
        (500, r#"Error::Io("no such table: nope")"#)
    );

    // Another app with the same reference sees none of it.
    assert_eq!(
        call(&b, "GET", "/kv/default/k2", ""),
        (404, "none".to_string())
    );
    assert_eq!(
        call(&b, "GET", "/kv/other/k2", ""),
        (404, "none".to_string())
    );
    assert_eq!(
        call(&b, "POST", "/sql/default", select),
        (500, r#"Error::Io("no such table: pets")"#.to_string())
    );
    for file in [
        "state/p2/sqlite_key_value.db",
        "state/p2/sqlite_db.db",
        "p2-other.db",
        "state/p3/sqlite_key_value.db",
        "state/b/sqlite_key_value.db",
    ] {
        assert!(work.path().join(file).is_file(), "{file} exists");
    }

    // Throughput of sequential requests, reported (never asserted): one HTTP/1.1 connection
    // per request, a fresh instance each, one key-value read or SQLite query each.
    for (name, addr, method, path, body) in [
        ("p2 kv get", &p2, "GET", "/kv/default/k2", ""),
        ("p3 kv get", &p3, "GET", "/kv/default/k2", ""),
        ("p2 sqlite select", &p2, "POST", "/sql/default", select),
        ("p3 sqlite select", &p3, "POST", "/sql/default", select),
    ] {
        let n = 200;
        let started = std::time::Instant::now();
        for _ in 0..n {
            ok(addr, method, path, body);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name}: {n} sequential requests, {:.0} req/s",
            n as f64 / secs
        );
    }

    let status = lepton.terminate();
    assert!(status.success(), "SIGTERM → exit 0, got {status}");

    // After a restart the data is still there.
    let mut lepton = Lepton::start_with_env(&manifest, &cache, &logs, &envs);
    lepton.wait_healthy(&[&p2, &p3, &b]);
    lepton.wait_stdout_contains("3 of 4 apps serving");
    assert_eq!(ok(&p2, "GET", "/kv/default/k2", ""), "v2");
    assert_eq!(ok(&p2, "GET", "/kv/other/k2", ""), "v2");
    assert_eq!(ok(&p3, "GET", "/kv/default/k2", ""), "v2");
    assert_eq!(ok(&p3, "GET", "/kv/other/k2", ""), "v2");
    assert_eq!(ok(&p2, "POST", "/sql/default", select), rows);
    assert_eq!(
        call(&b, "GET", "/kv/default/k2", ""),
        (404, "none".to_string())
    );
    let status = lepton.terminate();
    assert!(status.success(), "SIGTERM → exit 0, got {status}");
}

/// Runtime-config problems fail the app at load with the file and key named; a good one's
/// in-memory store and `max_instance_memory` apply.
#[test]
fn bad_runtime_config_fails_the_app_at_load() {
    require_guest_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let reg = registry.addr();
    push("data-p2", &format!("{reg}/data-p2:v1"));
    let cases = [
        (
            "unknown.toml",
            "[key_value_store.other]\ntype = \"spin\"\npaht = \"x.db\"\n",
            "paht",
        ),
        ("unconfigured.toml", "", "`other`"),
        (
            "libsql.toml",
            "[key_value_store.other]\ntype = \"spin\"\n[sqlite_database.remote]\ntype = \"libsql\"\nurl = \"u\"\ntoken = \"t\"\n",
            "type `libsql` is not supported",
        ),
    ];
    let mut apps = Vec::new();
    for (i, (file, text, _)) in cases.iter().enumerate() {
        std::fs::write(work.path().join(file), text).expect("write");
        apps.push(serde_json::json!({
            "name": format!("bad-{i}"), "reference": format!("{reg}/data-p2:v1"),
            "address": free_addr(), "state_dir": format!("state/{i}"), "runtime_config": file,
            "variables": { "who": "x", "api_token": "y" } }));
    }
    let good = free_addr();
    std::fs::write(
        work.path().join("good.toml"),
        "max_instance_memory = 33554432\n[key_value_store.other]\ntype = \"spin\"\n",
    )
    .expect("write");
    apps.push(serde_json::json!({
        "name": "good", "reference": format!("{reg}/data-p2:v1"), "address": good,
        "state_dir": "state/good", "runtime_config": "good.toml",
        "variables": { "who": "x", "api_token": "y" } }));
    let manifest = work.path().join("lepton.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec_pretty(&serde_json::json!({ "apps": apps })).expect("json"),
    )
    .expect("write manifest");
    let mut lepton = Lepton::start(
        &manifest,
        &work.path().join("cache"),
        &work.path().join("logs"),
    );
    lepton.wait_healthy(&[&good]);
    lepton.wait_stdout_contains("1 of 4 apps serving");
    // max_instance_memory (32 MiB): a guest growing past it traps (500); the next request runs.
    assert_eq!(ok(&good, "GET", "/alloc/1", ""), "allocated 1 MiB");
    assert_eq!(call(&good, "GET", "/alloc/64", "").0, 500);
    assert_eq!(ok(&good, "GET", "/alloc/2", ""), "allocated 2 MiB");
    // An in-memory `other` store works.
    assert_eq!(ok(&good, "PUT", "/kv/other/a", "1"), "set");
    assert_eq!(ok(&good, "GET", "/kv/other/a", ""), "1");
    let stderr = lepton.stderr();
    for (i, (file, _, needle)) in cases.iter().enumerate() {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("error: app `bad-{i}`")))
            .unwrap_or_else(|| panic!("no failure line for bad-{i}:\n{stderr}"));
        println!("{line}");
        assert!(
            line.contains(file) || *file == "unconfigured.toml",
            "names the file: {line}"
        );
        assert!(line.contains(needle), "{needle}: {line}");
    }
    let status = lepton.terminate();
    assert!(status.success(), "SIGTERM → exit 0, got {status}");
}
