//! `fermyon:spin/mysql@2.0.0` (with `rdbms-types`) and `spin:mysql/mysql@3.0.0` (WASIp3 `async`,
//! rows returned as a stream) on top of [`crate::mysql`].

use std::sync::Arc;

use tokio::sync::Mutex;
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

use crate::bindings::fermyon::spin::mysql as v2;
use crate::bindings::fermyon::spin::rdbms_types as v2t;
use crate::bindings::spin::mysql::mysql as v3;
use crate::mysql::{self as core, MyType, MyValue, MysqlConnection, MysqlError};
use crate::{Kind, ServicesData, ServicesHost};

macro_rules! conversions {
    ($t:ident) => {
        impl From<MysqlError> for $t::Error {
            fn from(e: MysqlError) -> Self {
                match e {
                    MysqlError::ConnectionFailed(m) => $t::Error::ConnectionFailed(m),
                    MysqlError::BadParameter(m) => $t::Error::BadParameter(m),
                    MysqlError::QueryFailed(m) => $t::Error::QueryFailed(m),
                    MysqlError::ValueConversionFailed(m) => $t::Error::ValueConversionFailed(m),
                }
            }
        }
        impl From<$t::ParameterValue> for MyValue {
            fn from(p: $t::ParameterValue) -> Self {
                use $t::ParameterValue as P;
                match p {
                    P::Boolean(v) => MyValue::Boolean(v),
                    P::Int8(v) => MyValue::Int8(v),
                    P::Int16(v) => MyValue::Int16(v),
                    P::Int32(v) => MyValue::Int32(v),
                    P::Int64(v) => MyValue::Int64(v),
                    P::Uint8(v) => MyValue::Uint8(v),
                    P::Uint16(v) => MyValue::Uint16(v),
                    P::Uint32(v) => MyValue::Uint32(v),
                    P::Uint64(v) => MyValue::Uint64(v),
                    P::Floating32(v) => MyValue::Floating32(v),
                    P::Floating64(v) => MyValue::Floating64(v),
                    P::Str(v) => MyValue::Str(v),
                    P::Binary(v) => MyValue::Binary(v),
                    P::DbNull => MyValue::Null,
                }
            }
        }
        impl From<MyValue> for $t::DbValue {
            fn from(v: MyValue) -> Self {
                use $t::DbValue as D;
                match v {
                    MyValue::Boolean(v) => D::Boolean(v),
                    MyValue::Int8(v) => D::Int8(v),
                    MyValue::Int16(v) => D::Int16(v),
                    MyValue::Int32(v) => D::Int32(v),
                    MyValue::Int64(v) => D::Int64(v),
                    MyValue::Uint8(v) => D::Uint8(v),
                    MyValue::Uint16(v) => D::Uint16(v),
                    MyValue::Uint32(v) => D::Uint32(v),
                    MyValue::Uint64(v) => D::Uint64(v),
                    MyValue::Floating32(v) => D::Floating32(v),
                    MyValue::Floating64(v) => D::Floating64(v),
                    MyValue::Str(v) => D::Str(v),
                    MyValue::Binary(v) => D::Binary(v),
                    MyValue::Null => D::DbNull,
                    MyValue::Unsupported => D::Unsupported,
                }
            }
        }
        impl From<MyType> for $t::DbDataType {
            fn from(t: MyType) -> Self {
                use $t::DbDataType as D;
                match t {
                    MyType::Int8 => D::Int8,
                    MyType::Int16 => D::Int16,
                    MyType::Int32 => D::Int32,
                    MyType::Int64 => D::Int64,
                    MyType::Uint8 => D::Uint8,
                    MyType::Uint16 => D::Uint16,
                    MyType::Uint32 => D::Uint32,
                    MyType::Uint64 => D::Uint64,
                    MyType::Floating32 => D::Floating32,
                    MyType::Floating64 => D::Floating64,
                    MyType::Str => D::Str,
                    MyType::Binary => D::Binary,
                    MyType::Other => D::Other,
                }
            }
        }
    };
}
conversions!(v2t);
conversions!(v3);

fn conn(
    host: &ServicesHost,
    c: &Resource<MysqlConnection>,
) -> wasmtime::Result<Arc<Mutex<mysql_async::Conn>>> {
    Ok(host.get(c)?.conn.clone())
}

type V2<T> = wasmtime::Result<Result<T, v2t::Error>>;

impl v2::HostConnection for ServicesHost {
    async fn open(&mut self, address: String) -> V2<Resource<MysqlConnection>> {
        if let Err(e) = core::check_open(self, &address) {
            return Ok(Err(e.into()));
        }
        match core::connect(&address).await {
            Ok(c) => Ok(Ok(self.push(Kind::Mysql, c)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn query(
        &mut self,
        c: Resource<MysqlConnection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> V2<v2t::RowSet> {
        let conn = conn(self, &c)?;
        let params = params.into_iter().map(Into::into).collect();
        Ok(core::query(conn, statement, params)
            .await
            .map(|r| v2t::RowSet {
                columns: r
                    .columns
                    .into_iter()
                    .map(|(name, t)| v2t::Column {
                        name,
                        data_type: t.into(),
                    })
                    .collect(),
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(Into::into).collect())
                    .collect(),
            })
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        c: Resource<MysqlConnection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> V2<()> {
        let conn = conn(self, &c)?;
        let params = params.into_iter().map(Into::into).collect();
        Ok(core::execute(conn, statement, params)
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, c: Resource<MysqlConnection>) -> wasmtime::Result<()> {
        self.delete(Kind::Mysql, c)?;
        Ok(())
    }
}

impl v2::Host for ServicesHost {}

type V3<T> = wasmtime::Result<Result<T, v3::Error>>;

impl<T: Send> v3::HostConnectionWithStore<T> for ServicesData {
    async fn open(accessor: &Accessor<T, Self>, address: String) -> V3<Resource<MysqlConnection>> {
        if let Err(e) = accessor.with(|mut access| core::check_open(access.get(), &address)) {
            return Ok(Err(e.into()));
        }
        match core::connect(&address).await {
            Ok(c) => accessor.with(|mut access| Ok(Ok(access.get().push(Kind::Mysql, c)?))),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn query(
        accessor: &Accessor<T, Self>,
        c: Resource<MysqlConnection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> V3<(
        Vec<v3::Column>,
        StreamReader<v3::Row>,
        FutureReader<Result<(), v3::Error>>,
    )> {
        let conn = accessor.with(|mut access| conn(access.get(), &c))?;
        let params = params.into_iter().map(Into::into).collect();
        let r = match core::query(conn, statement, params).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.into())),
        };
        let columns: Vec<v3::Column> = r
            .columns
            .into_iter()
            .map(|(name, t)| v3::Column {
                name,
                data_type: t.into(),
            })
            .collect();
        let rows: Vec<v3::Row> = r
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(Into::into).collect())
            .collect();
        accessor.with(|mut access| {
            let stream = StreamReader::new(&mut access, rows)?;
            let done = FutureReader::new(
                &mut access,
                std::future::ready(Ok::<_, wasmtime::Error>(Ok::<(), v3::Error>(()))),
            )?;
            Ok(Ok((columns, stream, done)))
        })
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        c: Resource<MysqlConnection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> V3<()> {
        let conn = accessor.with(|mut access| conn(access.get(), &c))?;
        let params = params.into_iter().map(Into::into).collect();
        Ok(core::execute(conn, statement, params)
            .await
            .map_err(Into::into))
    }
}

impl v3::HostConnection for ServicesHost {
    async fn drop(&mut self, c: Resource<MysqlConnection>) -> wasmtime::Result<()> {
        self.delete(Kind::Mysql, c)?;
        Ok(())
    }
}

impl v3::Host for ServicesHost {}
