//! Redis (`[[trigger.redis]]`, Spin's) and cron (`[[trigger.cron]]`, the spin-trigger-cron
//! plugin's) triggers: how they are locked, and every way an entry can be wrong.

use serde_json::json;

use super::{App, assert_err, err, with_header};
use crate::{AppError, LockedApp};

const COMPONENT: &str = "[component.a]\nsource = \"hello.wasm\"\n";

#[test]
fn redis_triggers_lock_like_spin() {
    let app = App::new();
    let locked = app
        .load(&with_header(&format!(
            r#"
[application.trigger.redis]
address = "redis://{{{{ host }}}}:6379"

[variables]
host = {{ default = "localhost" }}
chan = {{ default = "news" }}

[[trigger.redis]]
channel = "{{{{ chan }}}}"
component = "a"

[[trigger.redis]]
id = "mine"
channel = "other"
address = "redis://elsewhere:6380"
component = "a"

{COMPONENT}"#
        )))
        .unwrap();
    // Templates stay raw in the lock: the trigger resolves them when it starts.
    assert_eq!(
        serde_json::to_value(&locked.triggers).unwrap(),
        json!([
            {"id": "a-redis-trigger", "trigger_type": "redis",
             "trigger_config": {"channel": "{{ chan }}", "component": "a"}},
            {"id": "mine", "trigger_type": "redis",
             "trigger_config": {"channel": "other", "address": "redis://elsewhere:6380", "component": "a"}},
        ])
    );
    assert_eq!(
        locked.metadata["triggers"],
        json!({"redis": {"address": "redis://{{ host }}:6379"}})
    );
    // The only trigger type: Spin also writes the legacy single-type copy.
    assert_eq!(
        locked.metadata["trigger"],
        json!({"type": "redis", "address": "redis://{{ host }}:6379"})
    );
    assert_eq!(
        locked.trigger_metadata("redis"),
        Some(json!({"address": "redis://{{ host }}:6379"}))
    );
    assert_eq!(locked.trigger_metadata("cron"), None);
    assert_eq!(locked.triggers_of("redis").count(), 2);
    assert_eq!(locked.triggers_of("http").count(), 0);

    // A lock as Spin 1.x wrote it (legacy `trigger` only) gives the same settings.
    let mut legacy = locked.clone();
    legacy.metadata.remove("triggers");
    assert_eq!(
        legacy.trigger_metadata("redis"),
        Some(json!({"address": "redis://{{ host }}:6379"}))
    );
    assert_eq!(legacy.trigger_metadata("http"), None);

    // What `lepton push` publishes reads back unchanged.
    let back = LockedApp::from_json(&locked.to_json_vec().unwrap()).unwrap();
    assert_eq!(back, locked);
}

#[test]
fn cron_triggers_lock_like_the_plugin() {
    let app = App::new();
    let locked = app
        .load(&with_header(&format!(
            "[[trigger.cron]]\ncomponent = \"a\"\ncron_expression = \"1/2 * * * * *\"\n\
             [[trigger.cron]]\ncomponent = \"a\"\ncron_expression = \"@hourly\"\n{COMPONENT}"
        )))
        .unwrap();
    assert_eq!(
        serde_json::to_value(&locked.triggers).unwrap(),
        json!([
            {"id": "a-cron-trigger", "trigger_type": "cron",
             "trigger_config": {"component": "a", "cron_expression": "1/2 * * * * *"}},
            {"id": "cron-trigger1", "trigger_type": "cron",
             "trigger_config": {"component": "a", "cron_expression": "@hourly"}},
        ])
    );
    assert_eq!(locked.metadata["trigger"], json!({"type": "cron"}));
    assert_eq!(locked.metadata["triggers"], json!({}));
    assert_eq!(locked.trigger_metadata("cron"), None);
}

#[test]
fn mixed_trigger_types_have_no_legacy_trigger_metadata() {
    let app = App::new();
    let locked = app
        .load(&with_header(&format!(
            "[application.trigger.redis]\naddress = \"redis://localhost:6379\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"a\"\n\
             [[trigger.redis]]\nchannel = \"c\"\ncomponent = \"a\"\n\
             [[trigger.cron]]\ncomponent = \"a\"\ncron_expression = \"0 * * * * *\"\n{COMPONENT}"
        )))
        .unwrap();
    assert!(locked.metadata.get("trigger").is_none());
    let types: Vec<&str> = locked
        .triggers
        .iter()
        .map(|t| t.trigger_type.as_str())
        .collect();
    assert_eq!(types, ["http", "redis", "cron"]);
    let ids: Vec<&str> = locked.triggers.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["a-http-trigger", "a-redis-trigger", "a-cron-trigger"]);
}

#[test]
fn apps_with_redis_or_cron_triggers_are_served_and_others_refused_by_name() {
    let app = App::new();
    let locked = app
        .load(&with_header(&format!(
            "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"a\"\n\
             [[trigger.cron]]\ncomponent = \"a\"\ncron_expression = \"0 * * * * *\"\n{COMPONENT}"
        )))
        .unwrap();
    locked.ensure_runnable().unwrap();
    let e = locked.ensure_runnable_with(&["http"]).unwrap_err();
    assert!(
        matches!(&e, AppError::TriggerNotServed { trigger, trigger_type, .. }
            if trigger == "a-cron-trigger" && trigger_type == "cron"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "trigger `a-cron-trigger` is a `cron` trigger, which lepton does not serve yet \
         (it serves: http); refusing to run the app without it"
    );
    let e = locked.ensure_runnable_with(&["cron"]).unwrap_err();
    assert!(
        e.to_string()
            .contains("`a-http-trigger` is a `http` trigger")
    );
}

#[test]
fn bad_redis_and_cron_entries_are_named() {
    let app = App::new();
    let redis = |rest: &str| {
        err(
            &app,
            &format!(
                "[application.trigger.redis]\naddress = \"redis://localhost\"\n\
                 [[trigger.redis]]\n{rest}\n{COMPONENT}"
            ),
        )
    };
    assert_err(
        &redis("component = \"a\""),
        &["trigger.redis[0].channel", "missing"],
    );
    assert_err(
        &redis("component = \"a\"\nchannel = \"\""),
        &["trigger.redis[0].channel", "must not be empty"],
    );
    assert_err(
        &redis("channel = \"c\""),
        &["trigger.redis[0].component", "missing"],
    );
    assert_err(
        &redis("channel = \"c\"\ncomponent = \"nope\""),
        &["trigger.redis[0].component", "no [component.nope]"],
    );
    assert_err(
        &redis("channel = \"c\"\ncomponent = \"a\"\nroute = \"/\""),
        &["unknown field trigger.redis[0].route"],
    );
    assert_err(
        &redis("channel = 7\ncomponent = \"a\""),
        &["trigger.redis[0].channel", "expected a string"],
    );
    assert_err(
        &redis("channel = \"c\"\ncomponent = \"a\"\ncomponents = { x = \"a\" }"),
        &[
            "unsupported field trigger.redis[0].components",
            "middleware",
        ],
    );

    // No address of its own and no app default.
    let e = err(
        &app,
        &format!("[[trigger.redis]]\nchannel = \"c\"\ncomponent = \"a\"\n{COMPONENT}"),
    );
    assert_err(
        &e,
        &[
            "trigger.redis[0].address",
            "[application.trigger.redis] sets no default",
        ],
    );
    let e = err(
        &app,
        &format!(
            "[application.trigger.redis]\nhost = \"x\"\n\
             [[trigger.redis]]\nchannel = \"c\"\ncomponent = \"a\"\naddress = \"redis://x\"\n{COMPONENT}"
        ),
    );
    assert_err(&e, &["unknown field application.trigger.redis.host"]);
    let e = err(
        &app,
        &format!(
            "[application.trigger.redis]\n\
             [[trigger.redis]]\nchannel = \"c\"\ncomponent = \"a\"\naddress = \"redis://x\"\n{COMPONENT}"
        ),
    );
    assert_err(&e, &["application.trigger.redis.address", "missing"]);
    let e = err(
        &app,
        &format!(
            "[application.trigger.sqs]\nqueue = \"q\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n{COMPONENT}"
        ),
    );
    assert_err(
        &e,
        &[
            "unsupported field application.trigger.sqs",
            "lepton knows http, redis and cron triggers",
        ],
    );
    let e = err(&app, &format!("[trigger]\nredis = 1\n{COMPONENT}"));
    assert_err(
        &e,
        &[
            "trigger.redis",
            "expected an array of tables ([[trigger.redis]])",
        ],
    );

    let cron = |rest: &str| err(&app, &format!("[[trigger.cron]]\n{rest}\n{COMPONENT}"));
    assert_err(
        &cron("component = \"a\""),
        &["trigger.cron[0].cron_expression", "missing"],
    );
    assert_err(
        &cron("component = \"a\"\ncron_expression = \" \""),
        &["trigger.cron[0].cron_expression", "must not be empty"],
    );
    assert_err(
        &cron("cron_expression = \"* * * * * *\""),
        &["trigger.cron[0].component", "missing"],
    );
    assert_err(
        &cron("component = \"a\"\ncron_expression = \"* * * * * *\"\nchannel = \"c\""),
        &["unknown field trigger.cron[0].channel"],
    );
    let e = err(
        &app,
        &format!(
            "[application.trigger.cron]\nevery = \"1s\"\n\
             [[trigger.cron]]\ncomponent = \"a\"\ncron_expression = \"* * * * * *\"\n{COMPONENT}"
        ),
    );
    assert_err(&e, &["unknown field application.trigger.cron.every"]);
}
