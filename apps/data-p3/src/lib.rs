//! Test guest for lepton: Spin's data interfaces from a spin-sdk 7.0 (`wasi:http@0.3`)
//! component, i.e. `spin:variables@3.0.0`, `spin:key-value@3.0.0` and `spin:sqlite@3.1.0`
//! (async, with `get-keys` and query rows streamed). Same routes and answers as `data-p2`,
//! plus `last-insert-rowid` and `changes` after each SQL statement.

use bytes::Bytes;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{FullBody, Method, Request, Response};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::{Connection, Value};

type Reply = Response<FullBody<Bytes>>;

#[http_service]
async fn handle(req: Request) -> spin_sdk::http::Result<Reply> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let method = req.method().clone();
    let body = req.into_body().bytes().await?;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match (method, segments.as_slice()) {
        (_, ["var", key]) => reply(spin_sdk::variables::get(*key).await),
        (Method::GET, ["kv", label, key]) => match open(label).await {
            Ok(s) => match s.get(*key).await {
                Ok(Some(v)) => respond(200, v),
                Ok(None) => respond(404, "none"),
                Err(e) => error(e),
            },
            Err(e) => error(e),
        },
        (Method::PUT, ["kv", label, key]) => match open(label).await {
            Ok(s) => reply(s.set(*key, &body).await.map(|()| "set".to_owned())),
            Err(e) => error(e),
        },
        (Method::DELETE, ["kv", label, key]) => match open(label).await {
            Ok(s) => reply(s.delete(*key).await.map(|()| "deleted".to_owned())),
            Err(e) => error(e),
        },
        (_, ["kv-exists", label, key]) => match open(label).await {
            Ok(s) => reply(s.exists(*key).await.map(|b| b.to_string())),
            Err(e) => error(e),
        },
        (_, ["kv-keys", label]) => match open(label).await {
            Ok(s) => reply(s.get_keys().await.collect().await.map(|mut keys| {
                keys.sort();
                keys.join("\n")
            })),
            Err(e) => error(e),
        },
        (Method::POST, ["sql", db]) => {
            let statement = String::from_utf8_lossy(&body).into_owned();
            reply(sql(db, &statement, params(&query)).await)
        }
        _ => respond(404, "no such route"),
    })
}

async fn open(label: &str) -> Result<Store, spin_sdk::key_value::Error> {
    Store::open(label).await
}

async fn sql(
    db: &str,
    statement: &str,
    params: Vec<Value>,
) -> Result<String, spin_sdk::sqlite::Error> {
    let conn = Connection::open(db).await?;
    let mut result = conn.execute(statement, params).await?;
    let mut out = format!("columns: {}\n", result.columns().join(","));
    while let Some(row) = result.next().await {
        let cells: Vec<String> = row.values.iter().map(render).collect();
        out.push_str(&format!("row: {}\n", cells.join("|")));
    }
    result.result().await?;
    out.push_str(&format!(
        "last-insert-rowid: {}\nchanges: {}\n",
        conn.last_insert_rowid().await,
        conn.changes().await
    ));
    Ok(out)
}

fn params(query: &str) -> Vec<Value> {
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("p="))
        .map(|p| match p.split_once(':') {
            Some(("i", v)) => Value::Integer(v.parse().unwrap_or_default()),
            Some(("r", v)) => Value::Real(v.parse().unwrap_or_default()),
            Some(("b", v)) => Value::Blob(v.as_bytes().to_vec()),
            Some(("n", _)) => Value::Null,
            Some((_, v)) => Value::Text(v.to_owned()),
            None => Value::Text(p.to_owned()),
        })
        .collect()
}

fn render(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => format!("{r:?}"),
        Value::Text(t) => format!("'{t}'"),
        Value::Blob(b) => format!("blob:{}", String::from_utf8_lossy(b)),
        Value::Null => "NULL".to_owned(),
    }
}

fn reply<E: std::fmt::Debug>(result: Result<String, E>) -> Reply {
    match result {
        Ok(body) => respond(200, body),
        Err(e) => error(e),
    }
}

fn error(e: impl std::fmt::Debug) -> Reply {
    respond(500, format!("{e:?}"))
}

fn respond(status: u16, body: impl Into<Bytes>) -> Reply {
    let mut resp = Response::new(FullBody::new(body.into()));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp
}
