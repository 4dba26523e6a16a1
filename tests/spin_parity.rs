//! Spin behaviours lepton matches, end to end through the `lepton` binary and guests built
//! from source in `apps/`, pushed to a real registry:
//!
//! - one component used by both WAGI and HTTP-executor triggers (`apps/wagi-http`, exporting
//!   `wasi:cli/run` and `wasi:http/incoming-handler`): each route gets its trigger's executor,
//!   and chained requests (`<component>.spin.internal`) its private trigger's;
//! - the always-present `SPIN_VARIABLE_*` provider reading `.env` in lepton's working
//!   directory (`apps/data-p2`), after the process environment; a malformed `.env` fails the
//!   app that needs it, naming the file and line.
//!
//! (PostgreSQL `interval` and ranges are in `tests/outbound_services.rs`, WASIp3 relative
//! outbound URLs in `tests/outbound.rs`.)

mod support;

use std::path::Path;

use support::*;

fn wasm(name: &str) -> std::path::PathBuf {
    let path = repo_root()
        .join("apps/target/wasm32-wasip2/release")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-apps.sh",
        path.display()
    );
    path
}

/// The app: `both` as WAGI on `/cgi/...` (with an `argv` template) and on a private trigger,
/// and through its HTTP export on `/api/...` and `/exact`; `caller` (the outbound-p2 guest)
/// may chain to it.
fn wagi_http_toml(dir: &Path) -> std::path::PathBuf {
    let toml = format!(
        r#"spin_manifest_version = 2
[application]
name = "wagi-http"
[[trigger.http]]
route = "/cgi/..."
component = "both"
executor = {{ type = "wagi", argv = "${{SCRIPT_NAME}} cgi ${{ARGS}}" }}
[[trigger.http]]
route = "/api/..."
component = "both"
[[trigger.http]]
route = "/exact"
component = "both"
executor = {{ type = "http" }}
[[trigger.http]]
route = {{ private = true }}
component = "both"
executor = {{ type = "wagi" }}
[[trigger.http]]
route = "/caller/..."
component = "caller"
[component.both]
source = "{both}"
[component.caller]
source = "{caller}"
allowed_outbound_hosts = ["http://both.spin.internal"]
"#,
        both = wasm("wagi_http.wasm").display(),
        caller = wasm("outbound_p2.wasm").display(),
    );
    std::fs::create_dir_all(dir).expect("app dir");
    let path = dir.join("spin.toml");
    std::fs::write(&path, toml).expect("write spin.toml");
    path
}

fn text(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let res =
        request(addr, "GET", path, headers, b"").unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (res.status, res.text())
}

#[test]
fn one_component_serves_wagi_and_http_routes() {
    require_guest_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let reference = format!("{}/wagi-http:v1", registry.addr());
    let toml = wagi_http_toml(&work.path().join("app"));
    let out = push_output(&toml, &reference, &[]);
    assert!(out.status.success(), "push: {out:?}");
    let app = free_addr();
    let manifest = work.path().join("lepton.json");
    let apps = serde_json::json!({ "apps": [
        { "reference": reference, "address": app, "state_dir": "state/wagi-http" },
    ]});
    std::fs::write(&manifest, serde_json::to_vec_pretty(&apps).expect("json")).expect("write");
    let mut lepton = Lepton::start(
        &manifest,
        &work.path().join("cache"),
        &work.path().join("logs"),
    );
    lepton.wait_healthy(&[&app]);

    // WAGI: `wasi:cli/run` with the trigger's argv and the CGI environment.
    assert_eq!(
        text(&app, "/cgi/x/y?a=1&b", &[]),
        (
            200,
            "wagi run: argv=[\"/cgi/x/y\", \"cgi\", \"a=1\", \"b\"] PATH_INFO=/x/y \
             X_MATCHED_ROUTE=/cgi/...\n"
                .into()
        ),
        "lepton stderr:\n{}",
        lepton.stderr()
    );
    // The same component's HTTP export, with the default executor and with `type = "http"`.
    assert_eq!(
        text(&app, "/api/z", &[]),
        (200, "http export: GET path-info=/z\n".into())
    );
    assert_eq!(
        text(&app, "/exact", &[]),
        (200, "http export: GET path-info=\n".into())
    );
    assert_eq!(text(&app, "/other", &[]).0, 404);
    // A chained request takes the component's private trigger: WAGI, on the `/...` route.
    assert_eq!(
        text(
            &app,
            "/caller/fetch",
            &[("x-url", "http://both.spin.internal/chained?q=1")]
        ),
        (
            200,
            "200\nwagi run: argv=[\"/chained\", \"q=1\"] PATH_INFO=/chained X_MATCHED_ROUTE=/...\n"
                .into()
        ),
        "lepton stderr:\n{}",
        lepton.stderr()
    );
    drop(lepton);
}

/// A lepton.json in `dir` running `reference` (data-p2) as `needs-env` (no variable values) and
/// as `given` (every variable's value in lepton.json, so no lookup reaches the environment).
fn data_manifest(dir: &Path, reference: &str, needs_env: &str, given: &str) -> std::path::PathBuf {
    // data-p2 lists a key-value store `other`.
    std::fs::write(
        dir.join("rc.toml"),
        "[key_value_store.other]\ntype = \"spin\"\npath = \"other.db\"\n",
    )
    .expect("write runtime config");
    let apps = serde_json::json!({ "apps": [
        { "name": "needs-env", "reference": reference, "address": needs_env,
          "state_dir": "state/needs-env", "runtime_config": "rc.toml" },
        { "name": "given", "reference": reference, "address": given, "state_dir": "state/given",
          "runtime_config": "rc.toml",
          "variables": { "who": "json", "api_token": "json-token", "greeting": "Hey" } },
    ]});
    let path = dir.join("lepton.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&apps).expect("json")).expect("write");
    path
}

#[test]
fn working_dir_dotenv_provides_spin_variables() {
    require_guest_builds();
    wasm("data_p2.wasm");
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let reference = format!("{}/data-p2:v1", registry.addr());
    push("data-p2", &reference);
    let cache = work.path().join("cache");
    let logs = work.path().join("logs");
    // lepton runs in the manifest's directory (support::Lepton): its `.env` is this one.
    let dotenv = work.path().join(".env");
    std::fs::write(
        &dotenv,
        "# the working directory's .env\n\
         SPIN_VARIABLE_WHO=dotenv\n\
         SPIN_VARIABLE_API_TOKEN=from-dotenv\n\
         export SPIN_VARIABLE_GREETING=\"Hi there\"\n",
    )
    .expect("write .env");
    let env_token = std::ffi::OsString::from("from-env");
    let envs = [("SPIN_VARIABLE_API_TOKEN", env_token.as_os_str())];

    let (needs_env, given) = (free_addr(), free_addr());
    let manifest = data_manifest(work.path(), &reference, &needs_env, &given);
    let mut lepton = Lepton::start_with_env(&manifest, &cache, &logs, &envs);
    lepton.wait_healthy(&[&needs_env, &given]);
    let var = |addr: &str, key: &str| text(addr, &format!("/var/{key}"), &[]);
    // `.env` fills what the environment lacks; the environment wins; lepton.json wins over both.
    assert_eq!(
        var(&needs_env, "message"),
        (200, "Hi there, dotenv!".into())
    );
    assert_eq!(var(&needs_env, "token"), (200, "from-env".into()));
    assert_eq!(var(&given, "message"), (200, "Hey, json!".into()));
    assert_eq!(var(&given, "token"), (200, "json-token".into()));
    drop(lepton);

    // A malformed `.env` fails the app that needs it, naming the file and the line; the app
    // whose values all come from lepton.json serves. (As in Spin, any lookup reaching the file
    // fails, even of a variable with a default.)
    std::fs::write(
        &dotenv,
        "SPIN_VARIABLE_WHO=dotenv\nSPIN_VARIABLE_API_TOKEN=\"unterminated\n",
    )
    .expect("write .env");
    let (needs_env, given) = (free_addr(), free_addr());
    let manifest = data_manifest(work.path(), &reference, &needs_env, &given);
    let mut lepton = Lepton::start(&manifest, &cache, &logs);
    lepton.wait_healthy(&[&given]);
    lepton.wait_stdout_contains("1 of 2 apps serving");
    let stderr = lepton.stderr();
    let failure = stderr
        .lines()
        .find(|l| l.starts_with("error: app `needs-env`"))
        .unwrap_or_else(|| panic!("no load error for needs-env:\n{stderr}"));
    assert!(
        failure.contains(&format!(
            "{}:2: unterminated quote: the file ends inside this quoted value",
            dotenv.display()
        )),
        "the failure names the file and line: {failure}"
    );
    assert!(
        !failure.contains("unterminated\""),
        "no value is echoed: {failure}"
    );
    assert_eq!(var(&given, "message"), (200, "Hey, json!".into()));
    assert_eq!(var(&given, "token"), (200, "json-token".into()));
    drop(lepton);
}
