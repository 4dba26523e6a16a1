//! Test guest for lepton's Redis trigger in the current SDK shape: a Spin Redis component
//! (spin-sdk 7 `#[redis_subscriber]`, exporting `spin:redis/inbound-redis@3.0.0`, whose
//! `handle-message` is a WASIp3 `async func`) that records every message it is given.
//!
//! Behaviour by payload, and the `redis_address`, `list_key` and `tag` component variables, are
//! those of `apps/redis-rs`: `spin` loops forever, `fail` returns an error, anything else is
//! `RPUSH`ed to `list_key` as `"<tag>:<payload>"`.

use anyhow::{Context, bail};
use spin_sdk::redis::{Connection, RedisParameter};
use spin_sdk::redis_subscriber;
use spin_sdk::variables;

#[redis_subscriber]
async fn on_message(message: Vec<u8>) -> anyhow::Result<()> {
    let payload = String::from_utf8_lossy(&message).into_owned();
    match payload.as_str() {
        "spin" => spin_forever(),
        "fail" => bail!("asked to fail"),
        _ => record(&payload).await,
    }
}

async fn record(payload: &str) -> anyhow::Result<()> {
    let address = variables::get("redis_address")
        .await
        .context("redis_address")?;
    let key = variables::get("list_key").await.context("list_key")?;
    let tag = variables::get("tag").await.context("tag")?;
    let entry = format!("{tag}:{payload}");
    let conn = Connection::open(&address)
        .await
        .map_err(|e| anyhow::anyhow!("open {address}: {e:?}"))?;
    conn.execute(
        "RPUSH",
        [
            RedisParameter::Binary(key.into_bytes()),
            RedisParameter::Binary(entry.clone().into_bytes()),
        ],
    )
    .await
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
