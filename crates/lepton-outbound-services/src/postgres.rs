//! PostgreSQL connections ([`PgConnection`], [`PgConnectionBuilder`]) and the work every
//! PostgreSQL interface version shares: permission check, connecting (TLS unless the address says
//! `sslmode=disable`, as Spin does), typed parameters and rows in one superset value type
//! ([`PgValue`]) that each version converts from and to.
//!
//! Column types map as Spin maps them for `spin:postgres@4.x`; `interval`, `int4range`,
//! `int8range` and `numrange` travel in PostgreSQL's binary formats ([`types`]), in both
//! directions. Any other column type is read as its raw bytes ([`PgValue::Unsupported`]).

use std::str::FromStr;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};

use crate::policy::{Service, parse_destination};
use crate::{Kind, ServicesHost};

pub(crate) mod types;

pub(crate) use types::{BoundKind, PgRange};
use types::{RawValue, SqlInterval, SqlRange};

/// An open PostgreSQL connection.
pub struct PgConnection {
    pub(crate) client: Arc<Client>,
}

/// `connection-builder` (4.1+): an address plus extra CA roots, built into a connection.
pub struct PgConnectionBuilder {
    pub(crate) address: String,
    pub(crate) ca_roots: Vec<String>,
}

/// Errors shared by every version; each maps them to its own `error` variant.
#[derive(Debug)]
pub(crate) enum PgError {
    ConnectionFailed(String),
    BadParameter(String),
    QueryFailed(Box<PgQueryError>),
    ValueConversionFailed(String),
}

/// A failed query: PostgreSQL's structured error when there is one.
#[derive(Debug)]
pub(crate) enum PgQueryError {
    Text(String),
    Db {
        as_text: String,
        severity: String,
        code: String,
        message: String,
        detail: Option<String>,
        extras: Vec<(String, String)>,
    },
}

impl PgQueryError {
    pub(crate) fn text(&self) -> String {
        match self {
            PgQueryError::Text(t) => t.clone(),
            PgQueryError::Db { as_text, .. } => as_text.clone(),
        }
    }
}

impl From<tokio_postgres::Error> for PgQueryError {
    fn from(e: tokio_postgres::Error) -> Self {
        let as_text = e.to_string();
        match e.as_db_error() {
            Some(db) => {
                let mut extras = Vec::new();
                let mut extra = |k: &str, v: Option<&str>| {
                    if let Some(v) = v {
                        extras.push((k.to_string(), v.to_string()));
                    }
                };
                extra("hint", db.hint());
                extra("schema", db.schema());
                extra("table", db.table());
                extra("column", db.column());
                extra("constraint", db.constraint());
                PgQueryError::Db {
                    as_text,
                    severity: db.severity().to_string(),
                    code: db.code().code().to_string(),
                    message: db.message().to_string(),
                    detail: db.detail().map(str::to_string),
                    extras,
                }
            }
            None => PgQueryError::Text(as_text),
        }
    }
}

/// Every value any version can send or receive.
#[derive(Debug, Clone)]
pub(crate) enum PgValue {
    Boolean(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Floating32(f32),
    Floating64(f64),
    Str(String),
    Binary(Vec<u8>),
    Date((i32, u8, u8)),
    Time((u8, u8, u8, u32)),
    Datetime((i32, u8, u8, u8, u8, u8, u32)),
    Timestamp(i64),
    Uuid(String),
    Jsonb(Vec<u8>),
    Decimal(String),
    RangeInt32(PgRange<i32>),
    RangeInt64(PgRange<i64>),
    /// Bounds are decimal strings, as for [`PgValue::Decimal`].
    RangeDecimal(PgRange<String>),
    ArrayInt32(Vec<Option<i32>>),
    ArrayInt64(Vec<Option<i64>>),
    ArrayDecimal(Vec<Option<String>>),
    ArrayStr(Vec<Option<String>>),
    Interval {
        micros: i64,
        days: i32,
        months: i32,
    },
    Null,
    /// A column of a type no version can represent, as the bytes PostgreSQL sent.
    Unsupported(Vec<u8>),
}

/// A column's type as the richest version sees it.
#[derive(Debug, Clone)]
pub(crate) enum PgType {
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    Floating32,
    Floating64,
    Str,
    Binary,
    Date,
    Time,
    Datetime,
    Timestamp,
    Uuid,
    Jsonb,
    Decimal,
    RangeInt32,
    RangeInt64,
    RangeDecimal,
    ArrayInt32,
    ArrayInt64,
    ArrayDecimal,
    ArrayStr,
    Interval,
    Other(String),
}

/// The result of a query.
pub(crate) struct PgRows {
    pub(crate) columns: Vec<(String, PgType)>,
    pub(crate) rows: Vec<Vec<PgValue>>,
}

/// Checks `address` against the component's policy and the connection limit (before any I/O).
pub(crate) fn check_open(host: &ServicesHost, address: &str) -> Result<(), PgError> {
    let destination = parse_destination(Service::Postgres, address)
        .map_err(|e| PgError::ConnectionFailed(e.to_string()))?;
    if !host.config().allows(&destination) {
        tracing::debug!(address, "PostgreSQL address not permitted");
        return Err(PgError::ConnectionFailed(format!(
            "address {address} is not permitted"
        )));
    }
    if !host.has_room(Kind::Postgres) {
        return Err(PgError::ConnectionFailed("too many connections".into()));
    }
    Ok(())
}

/// Connects; the connection's I/O task runs on the tokio runtime until the client is dropped.
pub(crate) async fn connect(address: &str, ca_roots: &[String]) -> Result<PgConnection, PgError> {
    let failed = |e: &dyn std::fmt::Display| PgError::ConnectionFailed(e.to_string());
    let config = tokio_postgres::Config::from_str(address).map_err(|e| failed(&e))?;
    let client = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        let (client, conn) = config.connect(NoTls).await.map_err(|e| failed(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed with an error");
            }
        });
        client
    } else {
        let tls = tls_connector(ca_roots).map_err(PgError::ConnectionFailed)?;
        let (client, conn) = config.connect(tls).await.map_err(|e| failed(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed with an error");
            }
        });
        client
    };
    Ok(PgConnection {
        client: Arc::new(client),
    })
}

fn tls_connector(ca_roots: &[String]) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for pem in ca_roots {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("invalid CA root certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("invalid CA root certificate: {e}"))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// SQL NULL for a parameter of any type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

fn bad(what: &str) -> PgError {
    PgError::BadParameter(format!("invalid {what} parameter"))
}

fn to_sql(value: PgValue) -> Result<Box<dyn ToSql + Send + Sync>, PgError> {
    Ok(match value {
        PgValue::Boolean(v) => Box::new(v),
        PgValue::Int8(v) => Box::new(v),
        PgValue::Int16(v) => Box::new(v),
        PgValue::Int32(v) => Box::new(v),
        PgValue::Int64(v) => Box::new(v),
        PgValue::Floating32(v) => Box::new(v),
        PgValue::Floating64(v) => Box::new(v),
        PgValue::Str(v) => Box::new(v),
        PgValue::Binary(v) => Box::new(v),
        PgValue::Date((y, m, d)) => {
            Box::new(NaiveDate::from_ymd_opt(y, m.into(), d.into()).ok_or_else(|| bad("date"))?)
        }
        PgValue::Time((h, m, s, ns)) => Box::new(
            NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
                .ok_or_else(|| bad("time"))?,
        ),
        PgValue::Datetime((y, mo, d, h, mi, s, ns)) => Box::new(NaiveDateTime::new(
            NaiveDate::from_ymd_opt(y, mo.into(), d.into()).ok_or_else(|| bad("datetime"))?,
            NaiveTime::from_hms_nano_opt(h.into(), mi.into(), s.into(), ns)
                .ok_or_else(|| bad("datetime"))?,
        )),
        PgValue::Timestamp(t) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
                .ok_or_else(|| bad("timestamp"))?,
        ),
        PgValue::Uuid(s) => Box::new(uuid::Uuid::parse_str(&s).map_err(|_| bad("uuid"))?),
        PgValue::Jsonb(b) => {
            Box::new(serde_json::from_slice::<serde_json::Value>(&b).map_err(|_| bad("jsonb"))?)
        }
        PgValue::Decimal(s) => {
            Box::new(rust_decimal::Decimal::from_str(&s).map_err(|_| bad("decimal"))?)
        }
        PgValue::ArrayInt32(v) => Box::new(v),
        PgValue::ArrayInt64(v) => Box::new(v),
        PgValue::ArrayStr(v) => Box::new(v),
        PgValue::ArrayDecimal(v) => Box::new(
            v.into_iter()
                .map(|d| {
                    d.map(|s| rust_decimal::Decimal::from_str(&s).map_err(|_| bad("decimal")))
                        .transpose()
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        PgValue::RangeInt32(r) => Box::new(SqlRange(r)),
        PgValue::RangeInt64(r) => Box::new(SqlRange(r)),
        PgValue::RangeDecimal(r) => Box::new(SqlRange(r.try_map(|s| {
            rust_decimal::Decimal::from_str(&s)
                .map_err(|_| PgError::BadParameter(format!("invalid decimal range bound {s:?}")))
        })?)),
        PgValue::Interval {
            micros,
            days,
            months,
        } => Box::new(SqlInterval {
            micros,
            days,
            months,
        }),
        PgValue::Null => Box::new(Null),
        PgValue::Unsupported(_) => {
            return Err(PgError::BadParameter("unsupported value".into()));
        }
    })
}

fn params(values: Vec<PgValue>) -> Result<Vec<Box<dyn ToSql + Send + Sync>>, PgError> {
    values.into_iter().map(to_sql).collect()
}

fn refs(params: &[Box<dyn ToSql + Send + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Runs a statement, returning the number of rows it affected.
pub(crate) async fn execute(
    client: Arc<Client>,
    statement: String,
    values: Vec<PgValue>,
) -> Result<u64, PgError> {
    let params = params(values)?;
    client
        .execute(statement.as_str(), &refs(&params))
        .await
        .map_err(|e| PgError::QueryFailed(Box::new(e.into())))
}

/// Runs a query, returning its columns and every row.
pub(crate) async fn query(
    client: Arc<Client>,
    statement: String,
    values: Vec<PgValue>,
) -> Result<PgRows, PgError> {
    let params = params(values)?;
    let stmt = client
        .prepare(statement.as_str())
        .await
        .map_err(|e| PgError::QueryFailed(Box::new(e.into())))?;
    let columns = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), column_type(c.type_())))
        .collect();
    let rows = client
        .query(&stmt, &refs(&params))
        .await
        .map_err(|e| PgError::QueryFailed(Box::new(e.into())))?;
    let rows = rows.iter().map(row_values).collect::<Result<_, _>>()?;
    Ok(PgRows { columns, rows })
}

fn column_type(t: &Type) -> PgType {
    match *t {
        Type::BOOL => PgType::Boolean,
        Type::CHAR => PgType::Int8,
        Type::INT2 => PgType::Int16,
        Type::INT4 => PgType::Int32,
        Type::INT8 => PgType::Int64,
        Type::FLOAT4 => PgType::Floating32,
        Type::FLOAT8 => PgType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => PgType::Str,
        Type::BYTEA => PgType::Binary,
        Type::DATE => PgType::Date,
        Type::TIME => PgType::Time,
        Type::TIMESTAMP => PgType::Datetime,
        Type::TIMESTAMPTZ => PgType::Timestamp,
        Type::UUID => PgType::Uuid,
        Type::JSONB => PgType::Jsonb,
        Type::NUMERIC => PgType::Decimal,
        Type::INT4_RANGE => PgType::RangeInt32,
        Type::INT8_RANGE => PgType::RangeInt64,
        Type::NUM_RANGE => PgType::RangeDecimal,
        Type::INT4_ARRAY => PgType::ArrayInt32,
        Type::INT8_ARRAY => PgType::ArrayInt64,
        Type::NUMERIC_ARRAY => PgType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => PgType::ArrayStr,
        Type::INTERVAL => PgType::Interval,
        _ => PgType::Other(t.name().to_string()),
    }
}

fn row_values(row: &Row) -> Result<Vec<PgValue>, PgError> {
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_().clone();
            value(row, i, &ty)
        })
        .collect()
}

fn value(row: &Row, i: usize, ty: &Type) -> Result<PgValue, PgError> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a Row,
        i: usize,
    ) -> Result<Option<T>, PgError> {
        row.try_get::<_, Option<T>>(i)
            .map_err(|e| PgError::ValueConversionFailed(e.to_string()))
    }
    let v = match column_type(ty) {
        PgType::Boolean => get::<bool>(row, i)?.map(PgValue::Boolean),
        PgType::Int8 => get::<i8>(row, i)?.map(PgValue::Int8),
        PgType::Int16 => get::<i16>(row, i)?.map(PgValue::Int16),
        PgType::Int32 => get::<i32>(row, i)?.map(PgValue::Int32),
        PgType::Int64 => get::<i64>(row, i)?.map(PgValue::Int64),
        PgType::Floating32 => get::<f32>(row, i)?.map(PgValue::Floating32),
        PgType::Floating64 => get::<f64>(row, i)?.map(PgValue::Floating64),
        PgType::Str => get::<String>(row, i)?.map(PgValue::Str),
        PgType::Binary => get::<Vec<u8>>(row, i)?.map(PgValue::Binary),
        PgType::Date => get::<NaiveDate>(row, i)?.map(|d| PgValue::Date(ymd(&d))),
        PgType::Time => get::<NaiveTime>(row, i)?.map(|t| PgValue::Time(hmsn(&t))),
        PgType::Datetime => get::<NaiveDateTime>(row, i)?.map(|dt| {
            let (y, mo, d) = ymd(&dt.date());
            let (h, mi, s, ns) = hmsn(&dt.time());
            PgValue::Datetime((y, mo, d, h, mi, s, ns))
        }),
        PgType::Timestamp => {
            get::<chrono::DateTime<chrono::Utc>>(row, i)?.map(|t| PgValue::Timestamp(t.timestamp()))
        }
        PgType::Uuid => get::<uuid::Uuid>(row, i)?.map(|u| PgValue::Uuid(u.to_string())),
        PgType::Jsonb => get::<serde_json::Value>(row, i)?
            .map(|j| PgValue::Jsonb(serde_json::to_vec(&j).unwrap_or_default())),
        PgType::Decimal => {
            get::<rust_decimal::Decimal>(row, i)?.map(|d| PgValue::Decimal(d.to_string()))
        }
        PgType::RangeInt32 => get::<SqlRange<i32>>(row, i)?.map(|r| PgValue::RangeInt32(r.0)),
        PgType::RangeInt64 => get::<SqlRange<i64>>(row, i)?.map(|r| PgValue::RangeInt64(r.0)),
        PgType::RangeDecimal => get::<SqlRange<rust_decimal::Decimal>>(row, i)?
            .map(|r| PgValue::RangeDecimal(r.0.map(|d| d.to_string()))),
        PgType::ArrayInt32 => get::<Vec<Option<i32>>>(row, i)?.map(PgValue::ArrayInt32),
        PgType::ArrayInt64 => get::<Vec<Option<i64>>>(row, i)?.map(PgValue::ArrayInt64),
        PgType::ArrayDecimal => get::<Vec<Option<rust_decimal::Decimal>>>(row, i)?.map(|v| {
            PgValue::ArrayDecimal(v.into_iter().map(|d| d.map(|d| d.to_string())).collect())
        }),
        PgType::ArrayStr => get::<Vec<Option<String>>>(row, i)?.map(PgValue::ArrayStr),
        PgType::Interval => get::<SqlInterval>(row, i)?.map(|iv| PgValue::Interval {
            micros: iv.micros,
            days: iv.days,
            months: iv.months,
        }),
        PgType::Other(_) => get::<RawValue>(row, i)?.map(|raw| PgValue::Unsupported(raw.0)),
    };
    Ok(v.unwrap_or(PgValue::Null))
}

fn ymd(d: &NaiveDate) -> (i32, u8, u8) {
    // month() is 1..=12 and day() 1..=31: both fit in u8.
    (d.year(), d.month() as u8, d.day() as u8)
}

fn hmsn(t: &NaiveTime) -> (u8, u8, u8, u32) {
    // hour/minute/second are < 60.
    (
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond(),
    )
}
