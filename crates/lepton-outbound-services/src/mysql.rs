//! MySQL connections ([`MysqlConnection`]) and the work both `fermyon:spin/mysql@2.0.0` and
//! `spin:mysql/mysql@3.0.0` share: permission check, connecting, prepared statements with typed
//! parameters, and rows typed by their column (signedness and binary charset included).

use std::sync::Arc;

use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Params, Row, Value};
use tokio::sync::Mutex;

use crate::policy::{Service, parse_destination};
use crate::{Kind, ServicesHost};

/// An open MySQL connection (one statement at a time).
pub struct MysqlConnection {
    pub(crate) conn: Arc<Mutex<mysql_async::Conn>>,
}

/// Errors shared by both versions.
#[derive(Debug)]
pub(crate) enum MysqlError {
    ConnectionFailed(String),
    BadParameter(String),
    QueryFailed(String),
    ValueConversionFailed(String),
}

/// Parameter and row values (the v2/v3 value set, identical in both).
#[derive(Debug, Clone)]
pub(crate) enum MyValue {
    Boolean(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Uint8(u8),
    Uint16(u16),
    Uint32(u32),
    Uint64(u64),
    Floating32(f32),
    Floating64(f64),
    Str(String),
    Binary(Vec<u8>),
    Null,
    Unsupported,
}

/// Column types (identical in both versions).
#[derive(Debug, Clone, Copy)]
pub(crate) enum MyType {
    Int8,
    Int16,
    Int32,
    Int64,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Floating32,
    Floating64,
    Str,
    Binary,
    Other,
}

/// A query's result.
pub(crate) struct MyRows {
    pub(crate) columns: Vec<(String, MyType)>,
    pub(crate) rows: Vec<Vec<MyValue>>,
}

/// Checks `address` against the component's policy and the connection limit (before any I/O).
pub(crate) fn check_open(host: &ServicesHost, address: &str) -> Result<(), MysqlError> {
    let destination = parse_destination(Service::Mysql, address)
        .map_err(|e| MysqlError::ConnectionFailed(e.to_string()))?;
    if !host.config().allows(&destination) {
        tracing::debug!(address, "MySQL address not permitted");
        return Err(MysqlError::ConnectionFailed(format!(
            "address {address} is not permitted"
        )));
    }
    if !host.has_room(Kind::Mysql) {
        return Err(MysqlError::ConnectionFailed("too many connections".into()));
    }
    Ok(())
}

pub(crate) async fn connect(address: &str) -> Result<MysqlConnection, MysqlError> {
    let opts = mysql_async::Opts::from_url(address)
        .map_err(|e| MysqlError::ConnectionFailed(e.to_string()))?;
    let conn = mysql_async::Conn::new(opts)
        .await
        .map_err(|e| MysqlError::ConnectionFailed(e.to_string()))?;
    Ok(MysqlConnection {
        conn: Arc::new(Mutex::new(conn)),
    })
}

fn to_value(v: MyValue) -> Result<Value, MysqlError> {
    Ok(match v {
        MyValue::Boolean(b) => Value::Int(i64::from(b)),
        MyValue::Int8(n) => Value::Int(n.into()),
        MyValue::Int16(n) => Value::Int(n.into()),
        MyValue::Int32(n) => Value::Int(n.into()),
        MyValue::Int64(n) => Value::Int(n),
        MyValue::Uint8(n) => Value::UInt(n.into()),
        MyValue::Uint16(n) => Value::UInt(n.into()),
        MyValue::Uint32(n) => Value::UInt(n.into()),
        MyValue::Uint64(n) => Value::UInt(n),
        MyValue::Floating32(f) => Value::Float(f),
        MyValue::Floating64(f) => Value::Double(f),
        MyValue::Str(s) => Value::Bytes(s.into_bytes()),
        MyValue::Binary(b) => Value::Bytes(b),
        MyValue::Null => Value::NULL,
        MyValue::Unsupported => {
            return Err(MysqlError::BadParameter("unsupported parameter".into()));
        }
    })
}

fn params(values: Vec<MyValue>) -> Result<Params, MysqlError> {
    if values.is_empty() {
        return Ok(Params::Empty);
    }
    Ok(Params::Positional(
        values.into_iter().map(to_value).collect::<Result<_, _>>()?,
    ))
}

pub(crate) async fn execute(
    conn: Arc<Mutex<mysql_async::Conn>>,
    statement: String,
    values: Vec<MyValue>,
) -> Result<(), MysqlError> {
    let params = params(values)?;
    let mut conn = conn.lock().await;
    conn.exec_drop(statement, params)
        .await
        .map_err(|e| MysqlError::QueryFailed(e.to_string()))
}

pub(crate) async fn query(
    conn: Arc<Mutex<mysql_async::Conn>>,
    statement: String,
    values: Vec<MyValue>,
) -> Result<MyRows, MysqlError> {
    let params = params(values)?;
    let mut conn = conn.lock().await;
    let failed = |e: mysql_async::Error| MysqlError::QueryFailed(e.to_string());
    let mut result = conn.exec_iter(statement, params).await.map_err(failed)?;
    let columns: Vec<Column> = result
        .columns()
        .map(|c| c.iter().cloned().collect())
        .unwrap_or_default();
    let rows: Vec<Row> = result.collect().await.map_err(failed)?;
    let types: Vec<MyType> = columns.iter().map(column_type).collect();
    let rows = rows
        .into_iter()
        .map(|row| {
            row.unwrap()
                .into_iter()
                .zip(&types)
                .map(|(v, t)| convert(v, *t))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    Ok(MyRows {
        columns: columns
            .iter()
            .zip(types)
            .map(|(c, t)| (c.name_str().into_owned(), t))
            .collect(),
        rows,
    })
}

/// MySQL's `binary` character set: BLOB/BINARY columns carry it, text columns do not.
const BINARY_CHARSET: u16 = 63;

fn column_type(c: &Column) -> MyType {
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let binary = c.character_set() == BINARY_CHARSET;
    match c.column_type() {
        ColumnType::MYSQL_TYPE_TINY if unsigned => MyType::Uint8,
        ColumnType::MYSQL_TYPE_TINY => MyType::Int8,
        ColumnType::MYSQL_TYPE_SHORT | ColumnType::MYSQL_TYPE_YEAR if unsigned => MyType::Uint16,
        ColumnType::MYSQL_TYPE_SHORT | ColumnType::MYSQL_TYPE_YEAR => MyType::Int16,
        ColumnType::MYSQL_TYPE_LONG | ColumnType::MYSQL_TYPE_INT24 if unsigned => MyType::Uint32,
        ColumnType::MYSQL_TYPE_LONG | ColumnType::MYSQL_TYPE_INT24 => MyType::Int32,
        ColumnType::MYSQL_TYPE_LONGLONG if unsigned => MyType::Uint64,
        ColumnType::MYSQL_TYPE_LONGLONG => MyType::Int64,
        ColumnType::MYSQL_TYPE_FLOAT => MyType::Floating32,
        ColumnType::MYSQL_TYPE_DOUBLE => MyType::Floating64,
        ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_STRING
        | ColumnType::MYSQL_TYPE_BLOB
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
            if binary =>
        {
            MyType::Binary
        }
        ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_STRING
        | ColumnType::MYSQL_TYPE_BLOB
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_JSON
        | ColumnType::MYSQL_TYPE_NEWDECIMAL
        | ColumnType::MYSQL_TYPE_DECIMAL
        | ColumnType::MYSQL_TYPE_ENUM
        | ColumnType::MYSQL_TYPE_SET => MyType::Str,
        _ => MyType::Other,
    }
}

fn convert(v: Value, t: MyType) -> Result<MyValue, MysqlError> {
    fn get<T: mysql_async::prelude::FromValue>(v: Value) -> Result<T, MysqlError> {
        mysql_async::from_value_opt::<T>(v)
            .map_err(|e| MysqlError::ValueConversionFailed(e.to_string()))
    }
    if v == Value::NULL {
        return Ok(MyValue::Null);
    }
    Ok(match t {
        MyType::Int8 => MyValue::Int8(get(v)?),
        MyType::Int16 => MyValue::Int16(get(v)?),
        MyType::Int32 => MyValue::Int32(get(v)?),
        MyType::Int64 => MyValue::Int64(get(v)?),
        MyType::Uint8 => MyValue::Uint8(get(v)?),
        MyType::Uint16 => MyValue::Uint16(get(v)?),
        MyType::Uint32 => MyValue::Uint32(get(v)?),
        MyType::Uint64 => MyValue::Uint64(get(v)?),
        MyType::Floating32 => MyValue::Floating32(get(v)?),
        MyType::Floating64 => MyValue::Floating64(get(v)?),
        MyType::Str => MyValue::Str(get(v)?),
        MyType::Binary => MyValue::Binary(get(v)?),
        MyType::Other => MyValue::Unsupported,
    })
}
