//! `fermyon:spin/postgres@2.0.0` (with `rdbms-types`), `spin:postgres/postgres@3.0.0` and
//! `spin:postgres/postgres@4.2.0` (sync functions plus 4.2's `*-async` ones and 4.1's
//! `connection-builder`) on top of [`crate::postgres`]. Values a version cannot represent are
//! returned as its `unsupported` value and typed `other`; 4.x's `unsupported` carries the
//! value's bytes as PostgreSQL sent them, as Spin's does. 4.x's `interval` and `range-*` values
//! go both ways (parameters and columns); a range bound is `(value, inclusive|exclusive)` and an
//! absent bound is unbounded.

use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

use crate::bindings::fermyon::spin::postgres as v2;
use crate::bindings::fermyon::spin::rdbms_types as v2t;
use crate::bindings::spin::postgres3_0_0::postgres as v3;
use crate::bindings::spin::postgres4_2_0::postgres as v4;
use crate::postgres::{
    self as core, BoundKind, PgConnection, PgConnectionBuilder, PgError, PgRange, PgType, PgValue,
};
use crate::{Kind, ServicesData, ServicesHost};

// ---- fermyon:spin/postgres@2.0.0 -----------------------------------------------------------

impl From<PgError> for v2t::Error {
    fn from(e: PgError) -> Self {
        match e {
            PgError::ConnectionFailed(m) => v2t::Error::ConnectionFailed(m),
            PgError::BadParameter(m) => v2t::Error::BadParameter(m),
            PgError::QueryFailed(q) => v2t::Error::QueryFailed(q.text()),
            PgError::ValueConversionFailed(m) => v2t::Error::ValueConversionFailed(m),
        }
    }
}

fn v2_param(p: v2t::ParameterValue) -> Result<PgValue, PgError> {
    use v2t::ParameterValue as P;
    Ok(match p {
        P::Boolean(v) => PgValue::Boolean(v),
        P::Int8(v) => PgValue::Int8(v),
        P::Int16(v) => PgValue::Int16(v),
        P::Int32(v) => PgValue::Int32(v),
        P::Int64(v) => PgValue::Int64(v),
        P::Floating32(v) => PgValue::Floating32(v),
        P::Floating64(v) => PgValue::Floating64(v),
        P::Str(v) => PgValue::Str(v),
        P::Binary(v) => PgValue::Binary(v),
        P::DbNull => PgValue::Null,
        P::Uint8(_) | P::Uint16(_) | P::Uint32(_) | P::Uint64(_) => {
            return Err(PgError::BadParameter(
                "Postgres does not support unsigned integers".into(),
            ));
        }
    })
}

fn v2_type(t: &PgType) -> v2t::DbDataType {
    use v2t::DbDataType as D;
    match t {
        PgType::Boolean => D::Boolean,
        PgType::Int8 => D::Int8,
        PgType::Int16 => D::Int16,
        PgType::Int32 => D::Int32,
        PgType::Int64 => D::Int64,
        PgType::Floating32 => D::Floating32,
        PgType::Floating64 => D::Floating64,
        PgType::Str => D::Str,
        PgType::Binary => D::Binary,
        _ => D::Other,
    }
}

fn v2_value(v: PgValue) -> v2t::DbValue {
    use v2t::DbValue as D;
    match v {
        PgValue::Boolean(v) => D::Boolean(v),
        PgValue::Int8(v) => D::Int8(v),
        PgValue::Int16(v) => D::Int16(v),
        PgValue::Int32(v) => D::Int32(v),
        PgValue::Int64(v) => D::Int64(v),
        PgValue::Floating32(v) => D::Floating32(v),
        PgValue::Floating64(v) => D::Floating64(v),
        PgValue::Str(v) => D::Str(v),
        PgValue::Binary(v) => D::Binary(v),
        PgValue::Null => D::DbNull,
        _ => D::Unsupported,
    }
}

fn client(
    host: &ServicesHost,
    c: &Resource<PgConnection>,
) -> wasmtime::Result<std::sync::Arc<tokio_postgres::Client>> {
    Ok(host.get(c)?.client.clone())
}

impl v2::HostConnection for ServicesHost {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v2t::Error>> {
        if let Err(e) = core::check_open(self, &address) {
            return Ok(Err(e.into()));
        }
        match core::connect(&address, &[]).await {
            Ok(c) => Ok(Ok(self.push(Kind::Postgres, c)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn query(
        &mut self,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<v2t::RowSet, v2t::Error>> {
        let client = client(self, &c)?;
        let params = match params.into_iter().map(v2_param).collect() {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(core::query(client, statement, params)
            .await
            .map(|r| v2t::RowSet {
                columns: r
                    .columns
                    .iter()
                    .map(|(name, t)| v2t::Column {
                        name: name.clone(),
                        data_type: v2_type(t),
                    })
                    .collect(),
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(v2_value).collect())
                    .collect(),
            })
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v2t::Error>> {
        let client = client(self, &c)?;
        let params = match params.into_iter().map(v2_param).collect() {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(core::execute(client, statement, params)
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, c: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.delete(Kind::Postgres, c)?;
        Ok(())
    }
}

impl v2::Host for ServicesHost {}
impl v2t::Host for ServicesHost {}

// ---- spin:postgres/postgres@3.0.0 ----------------------------------------------------------

impl From<PgError> for v3::Error {
    fn from(e: PgError) -> Self {
        match e {
            PgError::ConnectionFailed(m) => v3::Error::ConnectionFailed(m),
            PgError::BadParameter(m) => v3::Error::BadParameter(m),
            PgError::QueryFailed(q) => v3::Error::QueryFailed(q.text()),
            PgError::ValueConversionFailed(m) => v3::Error::ValueConversionFailed(m),
        }
    }
}

fn v3_param(p: v3::ParameterValue) -> PgValue {
    use v3::ParameterValue as P;
    match p {
        P::Boolean(v) => PgValue::Boolean(v),
        P::Int8(v) => PgValue::Int8(v),
        P::Int16(v) => PgValue::Int16(v),
        P::Int32(v) => PgValue::Int32(v),
        P::Int64(v) => PgValue::Int64(v),
        P::Floating32(v) => PgValue::Floating32(v),
        P::Floating64(v) => PgValue::Floating64(v),
        P::Str(v) => PgValue::Str(v),
        P::Binary(v) => PgValue::Binary(v),
        P::Date(v) => PgValue::Date(v),
        P::Time(v) => PgValue::Time(v),
        P::Datetime(v) => PgValue::Datetime(v),
        P::Timestamp(v) => PgValue::Timestamp(v),
        P::DbNull => PgValue::Null,
    }
}

fn v3_type(t: &PgType) -> v3::DbDataType {
    use v3::DbDataType as D;
    match t {
        PgType::Boolean => D::Boolean,
        PgType::Int8 => D::Int8,
        PgType::Int16 => D::Int16,
        PgType::Int32 => D::Int32,
        PgType::Int64 => D::Int64,
        PgType::Floating32 => D::Floating32,
        PgType::Floating64 => D::Floating64,
        PgType::Str => D::Str,
        PgType::Binary => D::Binary,
        PgType::Date => D::Date,
        PgType::Time => D::Time,
        PgType::Datetime => D::Datetime,
        PgType::Timestamp => D::Timestamp,
        _ => D::Other,
    }
}

fn v3_value(v: PgValue) -> v3::DbValue {
    use v3::DbValue as D;
    match v {
        PgValue::Boolean(v) => D::Boolean(v),
        PgValue::Int8(v) => D::Int8(v),
        PgValue::Int16(v) => D::Int16(v),
        PgValue::Int32(v) => D::Int32(v),
        PgValue::Int64(v) => D::Int64(v),
        PgValue::Floating32(v) => D::Floating32(v),
        PgValue::Floating64(v) => D::Floating64(v),
        PgValue::Str(v) => D::Str(v),
        PgValue::Binary(v) => D::Binary(v),
        PgValue::Date(v) => D::Date(v),
        PgValue::Time(v) => D::Time(v),
        PgValue::Datetime(v) => D::Datetime(v),
        PgValue::Timestamp(v) => D::Timestamp(v),
        PgValue::Null => D::DbNull,
        _ => D::Unsupported,
    }
}

impl v3::HostConnection for ServicesHost {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v3::Error>> {
        if let Err(e) = core::check_open(self, &address) {
            return Ok(Err(e.into()));
        }
        match core::connect(&address, &[]).await {
            Ok(c) => Ok(Ok(self.push(Kind::Postgres, c)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn query(
        &mut self,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<v3::RowSet, v3::Error>> {
        let client = client(self, &c)?;
        let params = params.into_iter().map(v3_param).collect();
        Ok(core::query(client, statement, params)
            .await
            .map(|r| v3::RowSet {
                columns: r
                    .columns
                    .iter()
                    .map(|(name, t)| v3::Column {
                        name: name.clone(),
                        data_type: v3_type(t),
                    })
                    .collect(),
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(v3_value).collect())
                    .collect(),
            })
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v3::Error>> {
        let client = client(self, &c)?;
        let params = params.into_iter().map(v3_param).collect();
        Ok(core::execute(client, statement, params)
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, c: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.delete(Kind::Postgres, c)?;
        Ok(())
    }
}

impl v3::Host for ServicesHost {}

// ---- spin:postgres/postgres@4.2.0 ----------------------------------------------------------

impl From<PgError> for v4::Error {
    fn from(e: PgError) -> Self {
        match e {
            PgError::ConnectionFailed(m) => v4::Error::ConnectionFailed(m),
            PgError::BadParameter(m) => v4::Error::BadParameter(m),
            PgError::QueryFailed(q) => match *q {
                core::PgQueryError::Text(t) => v4::Error::QueryFailed(v4::QueryError::Text(t)),
                core::PgQueryError::Db {
                    as_text,
                    severity,
                    code,
                    message,
                    detail,
                    extras,
                } => v4::Error::QueryFailed(v4::QueryError::DbError(v4::DbError {
                    as_text,
                    severity,
                    code,
                    message,
                    detail,
                    extras,
                })),
            },
            PgError::ValueConversionFailed(m) => v4::Error::ValueConversionFailed(m),
        }
    }
}

fn v4_param(p: v4::ParameterValue) -> PgValue {
    use v4::ParameterValue as P;
    match p {
        P::Boolean(v) => PgValue::Boolean(v),
        P::Int8(v) => PgValue::Int8(v),
        P::Int16(v) => PgValue::Int16(v),
        P::Int32(v) => PgValue::Int32(v),
        P::Int64(v) => PgValue::Int64(v),
        P::Floating32(v) => PgValue::Floating32(v),
        P::Floating64(v) => PgValue::Floating64(v),
        P::Str(v) => PgValue::Str(v),
        P::Binary(v) => PgValue::Binary(v),
        P::Date(v) => PgValue::Date(v),
        P::Time(v) => PgValue::Time(v),
        P::Datetime(v) => PgValue::Datetime(v),
        P::Timestamp(v) => PgValue::Timestamp(v),
        P::Uuid(v) => PgValue::Uuid(v),
        P::Jsonb(v) => PgValue::Jsonb(v),
        P::Decimal(v) => PgValue::Decimal(v),
        P::RangeInt32(r) => PgValue::RangeInt32(range_from_wit(r)),
        P::RangeInt64(r) => PgValue::RangeInt64(range_from_wit(r)),
        P::RangeDecimal(r) => PgValue::RangeDecimal(range_from_wit(r)),
        P::ArrayInt32(v) => PgValue::ArrayInt32(v),
        P::ArrayInt64(v) => PgValue::ArrayInt64(v),
        P::ArrayDecimal(v) => PgValue::ArrayDecimal(v),
        P::ArrayStr(v) => PgValue::ArrayStr(v),
        P::Interval(i) => PgValue::Interval {
            micros: i.micros,
            days: i.days,
            months: i.months,
        },
        P::DbNull => PgValue::Null,
    }
}

fn v4_type(t: &PgType) -> v4::DbDataType {
    use v4::DbDataType as D;
    match t {
        PgType::Boolean => D::Boolean,
        PgType::Int8 => D::Int8,
        PgType::Int16 => D::Int16,
        PgType::Int32 => D::Int32,
        PgType::Int64 => D::Int64,
        PgType::Floating32 => D::Floating32,
        PgType::Floating64 => D::Floating64,
        PgType::Str => D::Str,
        PgType::Binary => D::Binary,
        PgType::Date => D::Date,
        PgType::Time => D::Time,
        PgType::Datetime => D::Datetime,
        PgType::Timestamp => D::Timestamp,
        PgType::Uuid => D::Uuid,
        PgType::Jsonb => D::Jsonb,
        PgType::Decimal => D::Decimal,
        PgType::RangeInt32 => D::RangeInt32,
        PgType::RangeInt64 => D::RangeInt64,
        PgType::RangeDecimal => D::RangeDecimal,
        PgType::ArrayInt32 => D::ArrayInt32,
        PgType::ArrayInt64 => D::ArrayInt64,
        PgType::ArrayDecimal => D::ArrayDecimal,
        PgType::ArrayStr => D::ArrayStr,
        PgType::Interval => D::Interval,
        PgType::Other(name) => D::Other(name.clone()),
    }
}

fn v4_value(v: PgValue) -> v4::DbValue {
    use v4::DbValue as D;
    match v {
        PgValue::Boolean(v) => D::Boolean(v),
        PgValue::Int8(v) => D::Int8(v),
        PgValue::Int16(v) => D::Int16(v),
        PgValue::Int32(v) => D::Int32(v),
        PgValue::Int64(v) => D::Int64(v),
        PgValue::Floating32(v) => D::Floating32(v),
        PgValue::Floating64(v) => D::Floating64(v),
        PgValue::Str(v) => D::Str(v),
        PgValue::Binary(v) => D::Binary(v),
        PgValue::Date(v) => D::Date(v),
        PgValue::Time(v) => D::Time(v),
        PgValue::Datetime(v) => D::Datetime(v),
        PgValue::Timestamp(v) => D::Timestamp(v),
        PgValue::Uuid(v) => D::Uuid(v),
        PgValue::Jsonb(v) => D::Jsonb(v),
        PgValue::Decimal(v) => D::Decimal(v),
        PgValue::RangeInt32(r) => D::RangeInt32(range_to_wit(r)),
        PgValue::RangeInt64(r) => D::RangeInt64(range_to_wit(r)),
        PgValue::RangeDecimal(r) => D::RangeDecimal(range_to_wit(r)),
        PgValue::ArrayInt32(v) => D::ArrayInt32(v),
        PgValue::ArrayInt64(v) => D::ArrayInt64(v),
        PgValue::ArrayDecimal(v) => D::ArrayDecimal(v),
        PgValue::ArrayStr(v) => D::ArrayStr(v),
        PgValue::Interval {
            micros,
            days,
            months,
        } => D::Interval(v4::Interval {
            micros,
            days,
            months,
        }),
        PgValue::Null => D::DbNull,
        PgValue::Unsupported(raw) => D::Unsupported(raw),
    }
}

/// 4.x's range: `(lower, upper)`, each `(value, kind)` or `none` for unbounded.
type WitRange<T> = (
    Option<(T, v4::RangeBoundKind)>,
    Option<(T, v4::RangeBoundKind)>,
);

fn range_from_wit<T>((lower, upper): WitRange<T>) -> PgRange<T> {
    let bound = |b: Option<(T, v4::RangeBoundKind)>| {
        b.map(|(v, k)| {
            let kind = match k {
                v4::RangeBoundKind::Inclusive => BoundKind::Inclusive,
                v4::RangeBoundKind::Exclusive => BoundKind::Exclusive,
            };
            (v, kind)
        })
    };
    PgRange {
        lower: bound(lower),
        upper: bound(upper),
    }
}

fn range_to_wit<T>(range: PgRange<T>) -> WitRange<T> {
    let bound = |b: Option<(T, BoundKind)>| {
        b.map(|(v, k)| {
            let kind = match k {
                BoundKind::Inclusive => v4::RangeBoundKind::Inclusive,
                BoundKind::Exclusive => v4::RangeBoundKind::Exclusive,
            };
            (v, kind)
        })
    };
    (bound(range.lower), bound(range.upper))
}

fn v4_rowset(r: core::PgRows) -> v4::RowSet {
    v4::RowSet {
        columns: v4_columns(&r.columns),
        rows: r
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(v4_value).collect())
            .collect(),
    }
}

fn v4_columns(columns: &[(String, PgType)]) -> Vec<v4::Column> {
    columns
        .iter()
        .map(|(name, t)| v4::Column {
            name: name.clone(),
            data_type: v4_type(t),
        })
        .collect()
}

type V4<T> = wasmtime::Result<Result<T, v4::Error>>;

impl v4::HostConnection for ServicesHost {
    async fn open(&mut self, address: String) -> V4<Resource<PgConnection>> {
        if let Err(e) = core::check_open(self, &address) {
            return Ok(Err(e.into()));
        }
        match core::connect(&address, &[]).await {
            Ok(c) => Ok(Ok(self.push(Kind::Postgres, c)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn query(
        &mut self,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> V4<v4::RowSet> {
        let client = client(self, &c)?;
        let params = params.into_iter().map(v4_param).collect();
        Ok(core::query(client, statement, params)
            .await
            .map(v4_rowset)
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> V4<u64> {
        let client = client(self, &c)?;
        let params = params.into_iter().map(v4_param).collect();
        Ok(core::execute(client, statement, params)
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, c: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.delete(Kind::Postgres, c)?;
        Ok(())
    }
}

impl<T: Send> v4::HostConnectionWithStore<T> for ServicesData {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> V4<Resource<PgConnection>> {
        open_with(accessor, address, Vec::new()).await
    }

    async fn query_async(
        accessor: &Accessor<T, Self>,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> V4<(
        Vec<v4::Column>,
        StreamReader<v4::Row>,
        FutureReader<Result<(), v4::Error>>,
    )> {
        let client = accessor.with(|mut access| client(access.get(), &c))?;
        let params = params.into_iter().map(v4_param).collect();
        let rows = match core::query(client, statement, params).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.into())),
        };
        let columns = v4_columns(&rows.columns);
        let rows: Vec<v4::Row> = v4_rowset(rows).rows;
        accessor.with(|mut access| {
            let stream = StreamReader::new(&mut access, rows)?;
            let done = FutureReader::new(
                &mut access,
                std::future::ready(Ok::<_, wasmtime::Error>(Ok::<(), v4::Error>(()))),
            )?;
            Ok(Ok((columns, stream, done)))
        })
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> V4<u64> {
        let client = accessor.with(|mut access| client(access.get(), &c))?;
        let params = params.into_iter().map(v4_param).collect();
        Ok(core::execute(client, statement, params)
            .await
            .map_err(Into::into))
    }
}

async fn open_with<T: Send>(
    accessor: &Accessor<T, ServicesData>,
    address: String,
    ca_roots: Vec<String>,
) -> V4<Resource<PgConnection>> {
    if let Err(e) = accessor.with(|mut access| core::check_open(access.get(), &address)) {
        return Ok(Err(e.into()));
    }
    match core::connect(&address, &ca_roots).await {
        Ok(c) => accessor.with(|mut access| Ok(Ok(access.get().push(Kind::Postgres, c)?))),
        Err(e) => Ok(Err(e.into())),
    }
}

impl v4::HostConnectionBuilder for ServicesHost {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<PgConnectionBuilder>> {
        self.table_push(PgConnectionBuilder {
            address,
            ca_roots: Vec::new(),
        })
    }

    async fn set_ca_root(
        &mut self,
        b: Resource<PgConnectionBuilder>,
        certificate: String,
    ) -> V4<()> {
        self.get_mut(&b)?.ca_roots.push(certificate);
        Ok(Ok(()))
    }

    async fn build(&mut self, b: Resource<PgConnectionBuilder>) -> V4<Resource<PgConnection>> {
        let builder = self.get(&b)?;
        let (address, ca_roots) = (builder.address.clone(), builder.ca_roots.clone());
        if let Err(e) = core::check_open(self, &address) {
            return Ok(Err(e.into()));
        }
        match core::connect(&address, &ca_roots).await {
            Ok(c) => Ok(Ok(self.push(Kind::Postgres, c)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn drop(&mut self, b: Resource<PgConnectionBuilder>) -> wasmtime::Result<()> {
        self.table_delete(b)?;
        Ok(())
    }
}

impl<T: Send> v4::HostConnectionBuilderWithStore<T> for ServicesData {
    async fn build_async(
        accessor: &Accessor<T, Self>,
        b: Resource<PgConnectionBuilder>,
    ) -> V4<Resource<PgConnection>> {
        let (address, ca_roots) = accessor.with(|mut access| {
            let builder = access.get().get(&b)?;
            Ok::<_, wasmtime::Error>((builder.address.clone(), builder.ca_roots.clone()))
        })?;
        open_with(accessor, address, ca_roots).await
    }
}

impl v4::Host for ServicesHost {}
