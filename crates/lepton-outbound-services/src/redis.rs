//! Redis connections ([`RedisConnection`]) and the operations both `fermyon:spin/redis@2.0.0` and
//! `spin:redis/redis@3.0.0` perform on them, with one error type mapped to each version's.

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use crate::policy::{Service, parse_destination};
use crate::{Kind, ServicesHost};

/// An open Redis connection (multiplexed: cheap to clone for one call).
pub struct RedisConnection {
    pub(crate) conn: MultiplexedConnection,
}

/// Errors shared by both Redis interface versions.
#[derive(Debug)]
pub(crate) enum RedisError {
    InvalidAddress,
    TooManyConnections,
    TypeError,
    Other(String),
}

impl From<redis::RedisError> for RedisError {
    fn from(e: redis::RedisError) -> Self {
        match e.kind() {
            redis::ErrorKind::TypeError => RedisError::TypeError,
            _ => RedisError::Other(e.to_string()),
        }
    }
}

/// A parameter of `execute`.
pub(crate) enum RedisParam {
    Int64(i64),
    Binary(Vec<u8>),
}

/// A result of `execute`.
pub(crate) enum RedisResult {
    Nil,
    Status(String),
    Int64(i64),
    Binary(Vec<u8>),
}

/// Checks `address` against the component's policy and the connection limit (before any I/O).
pub(crate) fn check_open(host: &ServicesHost, address: &str) -> Result<(), RedisError> {
    let destination =
        parse_destination(Service::Redis, address).map_err(|_| RedisError::InvalidAddress)?;
    if !host.config().allows(&destination) {
        tracing::debug!(address, "Redis address not permitted");
        return Err(RedisError::InvalidAddress);
    }
    if !host.has_room(Kind::Redis) {
        return Err(RedisError::TooManyConnections);
    }
    Ok(())
}

/// Connects (no store borrowed while this runs).
pub(crate) async fn connect(address: &str) -> Result<RedisConnection, RedisError> {
    let client = redis::Client::open(address).map_err(|_| RedisError::InvalidAddress)?;
    let conn = client.get_multiplexed_async_connection().await?;
    Ok(RedisConnection { conn })
}

pub(crate) async fn publish(
    mut conn: MultiplexedConnection,
    channel: String,
    payload: Vec<u8>,
) -> Result<(), RedisError> {
    let _: i64 = conn.publish(channel, payload).await?;
    Ok(())
}

pub(crate) async fn get(
    mut conn: MultiplexedConnection,
    key: String,
) -> Result<Option<Vec<u8>>, RedisError> {
    Ok(conn.get(key).await?)
}

pub(crate) async fn set(
    mut conn: MultiplexedConnection,
    key: String,
    value: Vec<u8>,
) -> Result<(), RedisError> {
    let _: () = conn.set(key, value).await?;
    Ok(())
}

pub(crate) async fn incr(mut conn: MultiplexedConnection, key: String) -> Result<i64, RedisError> {
    Ok(conn.incr(key, 1).await?)
}

pub(crate) async fn del(
    mut conn: MultiplexedConnection,
    keys: Vec<String>,
) -> Result<u32, RedisError> {
    Ok(conn.del(keys).await?)
}

pub(crate) async fn sadd(
    mut conn: MultiplexedConnection,
    key: String,
    values: Vec<String>,
) -> Result<u32, RedisError> {
    Ok(conn.sadd(key, values).await?)
}

pub(crate) async fn smembers(
    mut conn: MultiplexedConnection,
    key: String,
) -> Result<Vec<String>, RedisError> {
    Ok(conn.smembers(key).await?)
}

pub(crate) async fn srem(
    mut conn: MultiplexedConnection,
    key: String,
    values: Vec<String>,
) -> Result<u32, RedisError> {
    Ok(conn.srem(key, values).await?)
}

pub(crate) async fn execute(
    mut conn: MultiplexedConnection,
    command: String,
    arguments: Vec<RedisParam>,
) -> Result<Vec<RedisResult>, RedisError> {
    let mut cmd = redis::cmd(&command);
    for arg in arguments {
        match arg {
            RedisParam::Int64(n) => cmd.arg(n),
            RedisParam::Binary(b) => cmd.arg(b),
        };
    }
    let value: redis::Value = cmd.query_async(&mut conn).await?;
    let mut out = Vec::new();
    flatten(value, &mut out);
    Ok(out)
}

/// Redis replies to `execute` results: aggregates are flattened into their elements.
fn flatten(value: redis::Value, out: &mut Vec<RedisResult>) {
    use redis::Value as V;
    match value {
        V::Nil => out.push(RedisResult::Nil),
        V::Int(n) => out.push(RedisResult::Int64(n)),
        V::BulkString(b) => out.push(RedisResult::Binary(b)),
        V::SimpleString(s) => out.push(RedisResult::Status(s)),
        V::Okay => out.push(RedisResult::Status("OK".into())),
        V::Array(items) | V::Set(items) => items.into_iter().for_each(|v| flatten(v, out)),
        V::Map(pairs) => pairs.into_iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        V::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
        V::Boolean(b) => out.push(RedisResult::Int64(i64::from(b))),
        V::VerbatimString { text, .. } => out.push(RedisResult::Binary(text.into_bytes())),
        V::BigNumber(n) => out.push(RedisResult::Binary(n.to_string().into_bytes())),
        V::Push { data, .. } => data.into_iter().for_each(|v| flatten(v, out)),
        V::Attribute { data, .. } => flatten(*data, out),
        V::ServerError(e) => out.push(RedisResult::Status(format!("{e:?}"))),
    }
}
