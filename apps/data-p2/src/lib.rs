//! Test guest for lepton: Spin's data interfaces from a spin-sdk 5.2 (`wasi:http@0.2`)
//! component, i.e. `fermyon:spin/{variables,key-value,sqlite}@2.0.0`. Errors are answered with
//! status 500 and the SDK error's `Debug` text, so tests see exactly what a guest sees.
//!
//! Routes: `GET /var/<key>`; `GET|PUT|DELETE /kv/<label>/<key>`; `GET /kv-exists/<label>/<key>`;
//! `GET /kv-keys/<label>`; `GET /alloc/<MiB>` (grows memory); `POST /sql/<database>` (body: one
//! statement; query `p=i:1&p=t:x&p=r:1.5&p=n:` gives typed parameters).

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::{Connection, Value};

#[http_component]
fn handle(req: Request) -> Response {
    let path = req.path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (_, ["var", key]) => reply(spin_sdk::variables::get(key)),
        (Method::Get, ["kv", label, key]) => match with_store(label, |s| s.get(key)) {
            Ok(Some(v)) => Response::new(200, v),
            Ok(None) => Response::new(404, "none"),
            Err(e) => error(e),
        },
        (Method::Put, ["kv", label, key]) => {
            reply(with_store(label, |s| s.set(key, req.body())).map(|()| "set".to_owned()))
        }
        (Method::Delete, ["kv", label, key]) => {
            reply(with_store(label, |s| s.delete(key)).map(|()| "deleted".to_owned()))
        }
        (_, ["kv-exists", label, key]) => {
            reply(with_store(label, |s| s.exists(key)).map(|b| b.to_string()))
        }
        (_, ["kv-keys", label]) => reply(with_store(label, |s| s.get_keys()).map(|mut keys| {
            keys.sort();
            keys.join("\n")
        })),
        (Method::Post, ["sql", db]) => {
            let statement = String::from_utf8_lossy(req.body()).into_owned();
            let params = params(req.query());
            reply(
                Connection::open(db)
                    .and_then(|c| c.execute(&statement, &params))
                    .map(|r| {
                        let mut out = format!("columns: {}\n", r.columns.join(","));
                        for row in &r.rows {
                            let cells: Vec<String> = row.values.iter().map(render).collect();
                            out.push_str(&format!("row: {}\n", cells.join("|")));
                        }
                        out
                    }),
            )
        }
        (_, ["alloc", mib]) => {
            // Touch every byte so the memory is really grown (max_instance_memory tests).
            let n = mib.parse::<usize>().unwrap_or(0) << 20;
            let block = std::hint::black_box(vec![1u8; n]);
            let sum: usize = block.iter().map(|b| *b as usize).sum();
            Response::new(200, format!("allocated {} MiB", sum >> 20))
        }
        _ => Response::new(404, "no such route"),
    }
}

fn with_store<T>(
    label: &str,
    f: impl FnOnce(&Store) -> Result<T, spin_sdk::key_value::Error>,
) -> Result<T, spin_sdk::key_value::Error> {
    f(&Store::open(label)?)
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

fn reply<E: std::fmt::Debug>(result: Result<String, E>) -> Response {
    match result {
        Ok(body) => Response::new(200, body),
        Err(e) => error(e),
    }
}

fn error(e: impl std::fmt::Debug) -> Response {
    Response::new(500, format!("{e:?}"))
}
