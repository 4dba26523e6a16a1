//! Outbound Redis / PostgreSQL / MySQL / MQTT routes (`/services/...`), each connecting to the
//! address in the `x-address` request header and answering a deterministic text transcript of
//! what the SDK returned (errors as `error: <Debug of the SDK error>`):
//! - `/services/redis`: set/get/incr/del/sadd/smembers/srem/execute (`fermyon:spin/redis@2.0.0`).
//! - `/services/pg`: create/insert/query with several column types (`spin:postgres@4.0.0`).
//! - `/services/pg-v2`: a query through `fermyon:spin/postgres@2.0.0`.
//! - `/services/pg-ranges`: `interval`, `int4range`, `int8range` and `numrange` as parameters
//!   (stored, then used by the server) and as columns (`spin:postgres@4.0.0`).
//! - `/services/mysql`: create/insert/query (`fermyon:spin/mysql@2.0.0`).
//! - `/services/mqtt`: publish the request body to the `x-topic` topic at QoS 1
//!   (`fermyon:spin/mqtt@2.0.0`).
//! - `/services/open/<kind>`: only open a connection (`ok` or the error), for permission tests.

use std::fmt::Write as _;

use spin_sdk::http::{Request, Response};

/// Handle a `/services/...` request.
pub async fn handle(req: Request) -> Response {
    let path = req
        .header("spin-path-info")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| req.path().to_owned());
    let header = |name: &str| {
        req.header(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let address = header("x-address");
    let result = match path.as_str() {
        "/services/redis" => redis(&address),
        "/services/pg" => pg(&address),
        "/services/pg-v2" => pg_v2(&address),
        "/services/pg-ranges" => pg_ranges(&address),
        "/services/mysql" => mysql(&address),
        "/services/mqtt" => mqtt(&address, &header("x-topic"), req.body()),
        "/services/open/redis" => spin_sdk::redis::Connection::open(&address)
            .map(|_| ())
            .map_err(|e| format!("{e:?}")),
        "/services/open/pg" => spin_sdk::pg4::Connection::open(&address)
            .map(|_| ())
            .map_err(|e| format!("{e:?}")),
        "/services/open/mysql" => spin_sdk::mysql::Connection::open(&address)
            .map(|_| ())
            .map_err(|e| format!("{e:?}")),
        "/services/open/mqtt" => {
            spin_sdk::mqtt::Connection::open(&address, "", "", 30)
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }
        _ => return reply(404, String::new()),
    };
    match result {
        Ok(()) if path.starts_with("/services/open/") => reply(200, "ok\n".into()),
        Ok(()) => reply(200, TRANSCRIPT.with(|t| t.take())),
        Err(e) => reply(500, format!("error: {e}\n")),
    }
}

thread_local! {
    static TRANSCRIPT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn say(line: String) {
    TRANSCRIPT.with(|t| {
        let mut t = t.borrow_mut();
        t.push_str(&line);
        t.push('\n');
    });
}

fn dbg_err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn redis(address: &str) -> Result<(), String> {
    use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
    let conn = Connection::open(address).map_err(dbg_err)?;
    conn.set("greeting", &b"hello redis".to_vec()).map_err(dbg_err)?;
    let got = conn.get("greeting").map_err(dbg_err)?;
    say(format!(
        "get greeting = {:?}",
        got.map(|v| String::from_utf8_lossy(&v).into_owned())
    ));
    say(format!("get missing = {:?}", conn.get("missing").map_err(dbg_err)?));
    say(format!("incr counter = {}", conn.incr("counter").map_err(dbg_err)?));
    say(format!("incr counter = {}", conn.incr("counter").map_err(dbg_err)?));
    say(format!("incr greeting = {:?}", conn.incr("greeting")));
    let added = conn
        .sadd("fruits", &["apple".into(), "pear".into(), "apple".into()])
        .map_err(dbg_err)?;
    say(format!("sadd fruits = {added}"));
    let mut members = conn.smembers("fruits").map_err(dbg_err)?;
    members.sort();
    say(format!("smembers fruits = {members:?}"));
    let removed = conn.srem("fruits", &["pear".into()]).map_err(dbg_err)?;
    say(format!("srem fruits = {removed}"));
    let results = conn
        .execute(
            "APPEND",
            &[
                RedisParameter::Binary(b"greeting".to_vec()),
                RedisParameter::Binary(b"!".to_vec()),
            ],
        )
        .map_err(dbg_err)?;
    say(format!("execute APPEND = {results:?}"));
    let results = conn
        .execute(
            "MGET",
            &[
                RedisParameter::Binary(b"greeting".to_vec()),
                RedisParameter::Binary(b"missing".to_vec()),
            ],
        )
        .map_err(dbg_err)?;
    let shown: Vec<String> = results
        .iter()
        .map(|r| match r {
            RedisResult::Binary(b) => format!("Binary({:?})", String::from_utf8_lossy(b)),
            other => format!("{other:?}"),
        })
        .collect();
    say(format!("execute MGET = {shown:?}"));
    let results = conn
        .execute("SET", &[
            RedisParameter::Binary(b"n".to_vec()),
            RedisParameter::Int64(41),
        ])
        .map_err(dbg_err)?;
    say(format!("execute SET = {results:?}"));
    say(format!(
        "execute INCR = {:?}",
        conn.execute("INCR", &[RedisParameter::Binary(b"n".to_vec())])
            .map_err(dbg_err)?
    ));
    let deleted = conn
        .del(&["greeting".into(), "counter".into(), "nothing".into()])
        .map_err(dbg_err)?;
    say(format!("del = {deleted}"));
    conn.publish("news", &b"published".to_vec()).map_err(dbg_err)?;
    say("publish news = ok".into());
    Ok(())
}

fn pg(address: &str) -> Result<(), String> {
    use spin_sdk::pg4::{Connection, ParameterValue as P};
    let conn = Connection::open(address).map_err(dbg_err)?;
    conn.execute("DROP TABLE IF EXISTS items", &[]).map_err(dbg_err)?;
    conn.execute(
        "CREATE TABLE items (id INT4 PRIMARY KEY, name TEXT, big INT8, small INT2, \
         ratio FLOAT8, flag BOOL, data BYTEA, day DATE, at TIMESTAMP, price NUMERIC(10,2), \
         tags TEXT[], doc JSONB, uid UUID)",
        &[],
    )
    .map_err(dbg_err)?;
    let inserted = conn
        .execute(
            "INSERT INTO items VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                P::Int32(1),
                P::Str("first".into()),
                P::Int64(9_000_000_000),
                P::Int16(-7),
                P::Floating64(0.25),
                P::Boolean(true),
                P::Binary(vec![0, 1, 254]),
                P::Date((2024, 2, 29)),
                P::Datetime((2024, 2, 29, 13, 14, 15, 0)),
                P::Decimal("12.50".into()),
                P::ArrayStr(vec![Some("a".into()), None]),
                P::Jsonb(br#"{"k":[1,2]}"#.to_vec()),
                P::Uuid("6a1f0c8e-0000-4000-8000-000000000001".into()),
            ],
        )
        .map_err(dbg_err)?;
    let second = conn
        .execute(
            "INSERT INTO items (id, name) VALUES ($1, $2)",
            &[P::Int32(2), P::DbNull],
        )
        .map_err(dbg_err)?;
    say(format!("inserted = {}", inserted + second));
    let rows = conn
        .query("SELECT * FROM items WHERE id >= $1 ORDER BY id", &[P::Int32(1)])
        .map_err(dbg_err)?;
    let columns: Vec<String> = rows
        .columns
        .iter()
        .map(|c| format!("{}:{:?}", c.name, c.data_type))
        .collect();
    say(format!("columns = {}", columns.join(",")));
    for row in &rows.rows {
        say(format!("row = {row:?}"));
    }
    let failed = conn.query("SELECT * FROM no_such_table", &[]);
    let mut shown = String::new();
    match failed {
        Err(spin_sdk::pg4::PgError::QueryFailed(spin_sdk::pg4::QueryError::DbError(db))) => {
            let _ = write!(shown, "db-error {} {}: {}", db.severity, db.code, db.message);
        }
        other => {
            let _ = write!(shown, "{other:?}");
        }
    }
    say(format!("bad query = {shown}"));
    Ok(())
}

fn pg_ranges(address: &str) -> Result<(), String> {
    use spin_sdk::pg4::{Connection, Interval, ParameterValue as P, RangeBoundKind as K};
    let conn = Connection::open(address).map_err(dbg_err)?;
    conn.execute("DROP TABLE IF EXISTS spans", &[]).map_err(dbg_err)?;
    conn.execute(
        "CREATE TABLE spans (id INT4 PRIMARY KEY, r4 INT4RANGE, r8 INT8RANGE, rn NUMRANGE, \
         iv INTERVAL)",
        &[],
    )
    .map_err(dbg_err)?;
    let insert = "INSERT INTO spans VALUES ($1, $2, $3, $4, $5)";
    let rows = [
        [
            P::Int32(1),
            P::RangeInt32((Some((1, K::Inclusive)), Some((10, K::Inclusive)))),
            P::RangeInt64((Some((-5_000_000_000, K::Exclusive)), None)),
            P::RangeDecimal((
                Some(("1.5".into(), K::Inclusive)),
                Some(("2.25".into(), K::Exclusive)),
            )),
            P::Interval(Interval { micros: 3_723_000_004, days: 2, months: 14 }),
        ],
        [
            P::Int32(2),
            P::RangeInt32((None, None)),
            P::RangeInt64((Some((7, K::Inclusive)), Some((7, K::Exclusive)))),
            P::RangeDecimal((None, Some(("-0.5".into(), K::Inclusive)))),
            P::Interval(Interval { micros: -1, days: -3, months: 0 }),
        ],
        [P::Int32(3), P::DbNull, P::DbNull, P::DbNull, P::DbNull],
    ];
    let mut inserted = 0;
    for row in &rows {
        inserted += conn.execute(insert, row).map_err(dbg_err)?;
    }
    say(format!("inserted = {inserted}"));
    let rows = conn
        .query("SELECT * FROM spans ORDER BY id", &[])
        .map_err(dbg_err)?;
    let columns: Vec<String> = rows
        .columns
        .iter()
        .map(|c| format!("{}:{:?}", c.name, c.data_type))
        .collect();
    say(format!("columns = {}", columns.join(",")));
    for row in &rows.rows {
        say(format!("row = {row:?}"));
    }
    // The server itself uses the parameters: containment, interval arithmetic, bounds.
    let used = conn
        .query(
            "SELECT $1::int4range @> 10 AS has10, $1::int4range @> 11 AS has11, \
             (timestamp '2024-01-31 00:00' + $2::interval)::text AS later, \
             upper($3::numrange)::text AS up, isempty($4::int8range) AS empty",
            &[
                P::RangeInt32((Some((1, K::Inclusive)), Some((10, K::Inclusive)))),
                P::Interval(Interval { micros: 3_723_000_004, days: 2, months: 14 }),
                P::RangeDecimal((None, Some(("99.125".into(), K::Exclusive)))),
                P::RangeInt64((Some((7, K::Inclusive)), Some((7, K::Exclusive)))),
            ],
        )
        .map_err(dbg_err)?;
    for row in &used.rows {
        say(format!("used = {row:?}"));
    }
    let reversed = conn.execute(
        insert,
        &[
            P::Int32(4),
            P::RangeInt32((Some((5, K::Inclusive)), Some((1, K::Exclusive)))),
            P::DbNull,
            P::DbNull,
            P::DbNull,
        ],
    );
    match reversed {
        Err(spin_sdk::pg4::PgError::QueryFailed(spin_sdk::pg4::QueryError::DbError(db))) => {
            say(format!("reversed = db-error {}: {}", db.code, db.message));
        }
        other => say(format!("reversed = {other:?}")),
    }
    let bad = conn.execute(
        insert,
        &[
            P::Int32(5),
            P::DbNull,
            P::DbNull,
            P::RangeDecimal((Some(("one".into(), K::Inclusive)), None)),
            P::DbNull,
        ],
    );
    say(format!("bad decimal = {bad:?}"));
    Ok(())
}

fn pg_v2(address: &str) -> Result<(), String> {
    use spin_sdk::pg::{Connection, ParameterValue as P};
    let conn = Connection::open(address).map_err(dbg_err)?;
    let rows = conn
        .query(
            "SELECT $1::int4 + 1 AS n, $2::text AS s, NULL::text AS z, now()::date AS d",
            &[P::Int32(41), P::Str("v2".into())],
        )
        .map_err(dbg_err)?;
    let columns: Vec<String> = rows
        .columns
        .iter()
        .map(|c| format!("{}:{:?}", c.name, c.data_type))
        .collect();
    say(format!("columns = {}", columns.join(",")));
    for row in &rows.rows {
        say(format!("row = {row:?}"));
    }
    Ok(())
}

fn mysql(address: &str) -> Result<(), String> {
    use spin_sdk::mysql::{Connection, ParameterValue as P};
    let conn = Connection::open(address).map_err(dbg_err)?;
    conn.execute("DROP TABLE IF EXISTS pets", &[]).map_err(dbg_err)?;
    conn.execute(
        "CREATE TABLE pets (id INT PRIMARY KEY, name VARCHAR(50), age TINYINT UNSIGNED, \
         weight DOUBLE, photo BLOB, big BIGINT)",
        &[],
    )
    .map_err(dbg_err)?;
    conn.execute(
        "INSERT INTO pets VALUES (?, ?, ?, ?, ?, ?)",
        &[
            P::Int32(1),
            P::Str("Rex".into()),
            P::Uint8(7),
            P::Floating64(12.5),
            P::Binary(vec![1, 2, 3]),
            P::Int64(-9_000_000_000),
        ],
    )
    .map_err(dbg_err)?;
    conn.execute(
        "INSERT INTO pets (id, name) VALUES (?, ?)",
        &[P::Int32(2), P::DbNull],
    )
    .map_err(dbg_err)?;
    let rows = conn
        .query("SELECT * FROM pets WHERE id >= ? ORDER BY id", &[P::Int32(1)])
        .map_err(dbg_err)?;
    let columns: Vec<String> = rows
        .columns
        .iter()
        .map(|c| format!("{}:{:?}", c.name, c.data_type))
        .collect();
    say(format!("columns = {}", columns.join(",")));
    for row in &rows.rows {
        say(format!("row = {row:?}"));
    }
    say(format!(
        "bad query = {:?}",
        conn.query("SELECT * FROM no_such_table", &[]).map(|_| ())
    ));
    Ok(())
}

fn mqtt(address: &str, topic: &str, payload: &[u8]) -> Result<(), String> {
    use spin_sdk::mqtt::{Connection, Qos};
    let conn = Connection::open(address, "", "", 30).map_err(dbg_err)?;
    conn.publish(topic, &payload.to_vec(), Qos::AtLeastOnce)
        .map_err(dbg_err)?;
    say(format!("published {} bytes to {topic}", payload.len()));
    Ok(())
}

fn reply(status: u16, body: String) -> Response {
    Response::builder().status(status).body(body).build()
}
