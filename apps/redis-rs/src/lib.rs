//! Test guest for lepton's Redis trigger: a Spin Redis component (spin-sdk 5.2 `#[redis_component]`,
//! exporting the unversioned `fermyon:spin/inbound-redis`, the shape of spin-sdk 2.x–5.x) that
//! records every message it is given.
//!
//! Each message's payload selects the behaviour:
//! - `spin`: loop forever (the host's `request_timeout_ms` must stop it);
//! - `fail`: return an error (the host logs it and drops the message);
//! - anything else: `RPUSH <list_key> "<tag>:<payload>"` on the Redis at `redis_address`, so a
//!   test sees which version of the app handled which message, in order, exactly once.
//!
//! `redis_address`, `list_key` and `tag` are component variables.

use anyhow::{Context, bail};
use spin_sdk::redis::{Connection, RedisParameter};
use spin_sdk::redis_component;
use spin_sdk::variables;

#[redis_component]
fn on_message(message: Vec<u8>) -> anyhow::Result<()> {
    let payload = String::from_utf8_lossy(&message).into_owned();
    match payload.as_str() {
        "spin" => spin_forever(),
        "fail" => bail!("asked to fail"),
        _ => record(&payload),
    }
}

fn record(payload: &str) -> anyhow::Result<()> {
    let address = variables::get("redis_address").context("redis_address")?;
    let key = variables::get("list_key").context("list_key")?;
    let tag = variables::get("tag").context("tag")?;
    let entry = format!("{tag}:{payload}");
    let conn = Connection::open(&address).map_err(|e| anyhow::anyhow!("open {address}: {e:?}"))?;
    conn.execute(
        "RPUSH",
        &[
            RedisParameter::Binary(key.into_bytes()),
            RedisParameter::Binary(entry.clone().into_bytes()),
        ],
    )
    .map_err(|e| anyhow::anyhow!("RPUSH: {e:?}"))?;
    println!("recorded {entry}");
    Ok(())
}

fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
