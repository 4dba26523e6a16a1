//! `fermyon:spin/redis@2.0.0` (synchronous WIT functions, async host) and
//! `spin:redis/redis@3.0.0` (WASIp3 `async` functions taking an [`Accessor`]) on top of
//! [`crate::redis`].

use wasmtime::component::{Accessor, Resource};

use crate::bindings::fermyon::spin::redis as v2;
use crate::bindings::spin::redis::redis as v3;
use crate::redis::{self as core, RedisConnection, RedisError, RedisParam, RedisResult};
use crate::{Kind, ServicesData, ServicesHost};

macro_rules! error_conversions {
    ($v:ident) => {
        impl From<RedisError> for $v::Error {
            fn from(e: RedisError) -> Self {
                match e {
                    RedisError::InvalidAddress => $v::Error::InvalidAddress,
                    RedisError::TooManyConnections => $v::Error::TooManyConnections,
                    RedisError::TypeError => $v::Error::TypeError,
                    RedisError::Other(m) => $v::Error::Other(m),
                }
            }
        }
        impl From<$v::RedisParameter> for RedisParam {
            fn from(p: $v::RedisParameter) -> Self {
                match p {
                    $v::RedisParameter::Int64(n) => RedisParam::Int64(n),
                    $v::RedisParameter::Binary(b) => RedisParam::Binary(b),
                }
            }
        }
        impl From<RedisResult> for $v::RedisResult {
            fn from(r: RedisResult) -> Self {
                match r {
                    RedisResult::Nil => $v::RedisResult::Nil,
                    RedisResult::Status(s) => $v::RedisResult::Status(s),
                    RedisResult::Int64(n) => $v::RedisResult::Int64(n),
                    RedisResult::Binary(b) => $v::RedisResult::Binary(b),
                }
            }
        }
    };
}
error_conversions!(v2);
error_conversions!(v3);

fn conn(
    host: &ServicesHost,
    handle: &Resource<RedisConnection>,
) -> wasmtime::Result<redis::aio::MultiplexedConnection> {
    Ok(host.get(handle)?.conn.clone())
}

type V2<T> = wasmtime::Result<Result<T, v2::Error>>;

impl v2::HostConnection for ServicesHost {
    async fn open(&mut self, address: String) -> V2<Resource<RedisConnection>> {
        if let Err(e) = core::check_open(self, &address) {
            return Ok(Err(e.into()));
        }
        match core::connect(&address).await {
            Ok(c) => Ok(Ok(self.push(Kind::Redis, c)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn publish(
        &mut self,
        c: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> V2<()> {
        Ok(core::publish(conn(self, &c)?, channel, payload)
            .await
            .map_err(Into::into))
    }

    async fn get(&mut self, c: Resource<RedisConnection>, key: String) -> V2<Option<Vec<u8>>> {
        Ok(core::get(conn(self, &c)?, key).await.map_err(Into::into))
    }

    async fn set(&mut self, c: Resource<RedisConnection>, key: String, value: Vec<u8>) -> V2<()> {
        Ok(core::set(conn(self, &c)?, key, value)
            .await
            .map_err(Into::into))
    }

    async fn incr(&mut self, c: Resource<RedisConnection>, key: String) -> V2<i64> {
        Ok(core::incr(conn(self, &c)?, key).await.map_err(Into::into))
    }

    async fn del(&mut self, c: Resource<RedisConnection>, keys: Vec<String>) -> V2<u32> {
        Ok(core::del(conn(self, &c)?, keys).await.map_err(Into::into))
    }

    async fn sadd(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> V2<u32> {
        Ok(core::sadd(conn(self, &c)?, key, values)
            .await
            .map_err(Into::into))
    }

    async fn smembers(&mut self, c: Resource<RedisConnection>, key: String) -> V2<Vec<String>> {
        Ok(core::smembers(conn(self, &c)?, key)
            .await
            .map_err(Into::into))
    }

    async fn srem(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> V2<u32> {
        Ok(core::srem(conn(self, &c)?, key, values)
            .await
            .map_err(Into::into))
    }

    async fn execute(
        &mut self,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v2::RedisParameter>,
    ) -> V2<Vec<v2::RedisResult>> {
        let args = arguments.into_iter().map(Into::into).collect();
        Ok(core::execute(conn(self, &c)?, command, args)
            .await
            .map(|rs| rs.into_iter().map(Into::into).collect())
            .map_err(Into::into))
    }

    async fn drop(&mut self, c: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.delete(Kind::Redis, c)?;
        Ok(())
    }
}

impl v2::Host for ServicesHost {}

type V3<T> = wasmtime::Result<Result<T, v3::Error>>;

fn conn3<T>(
    accessor: &Accessor<T, ServicesData>,
    c: &Resource<RedisConnection>,
) -> wasmtime::Result<redis::aio::MultiplexedConnection> {
    accessor.with(|mut access| conn(access.get(), c))
}

impl<T: Send> v3::HostConnectionWithStore<T> for ServicesData {
    async fn open(accessor: &Accessor<T, Self>, address: String) -> V3<Resource<RedisConnection>> {
        if let Err(e) = accessor.with(|mut access| core::check_open(access.get(), &address)) {
            return Ok(Err(e.into()));
        }
        match core::connect(&address).await {
            Ok(c) => accessor.with(|mut access| Ok(Ok(access.get().push(Kind::Redis, c)?))),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> V3<()> {
        Ok(core::publish(conn3(accessor, &c)?, channel, payload)
            .await
            .map_err(Into::into))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
    ) -> V3<Option<Vec<u8>>> {
        Ok(core::get(conn3(accessor, &c)?, key)
            .await
            .map_err(Into::into))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> V3<()> {
        Ok(core::set(conn3(accessor, &c)?, key, value)
            .await
            .map_err(Into::into))
    }

    async fn incr(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
    ) -> V3<i64> {
        Ok(core::incr(conn3(accessor, &c)?, key)
            .await
            .map_err(Into::into))
    }

    async fn del(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> V3<u32> {
        Ok(core::del(conn3(accessor, &c)?, keys)
            .await
            .map_err(Into::into))
    }

    async fn sadd(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> V3<u32> {
        Ok(core::sadd(conn3(accessor, &c)?, key, values)
            .await
            .map_err(Into::into))
    }

    async fn smembers(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
    ) -> V3<Vec<String>> {
        Ok(core::smembers(conn3(accessor, &c)?, key)
            .await
            .map_err(Into::into))
    }

    async fn srem(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> V3<u32> {
        Ok(core::srem(conn3(accessor, &c)?, key, values)
            .await
            .map_err(Into::into))
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v3::RedisParameter>,
    ) -> V3<Vec<v3::RedisResult>> {
        let args = arguments.into_iter().map(Into::into).collect();
        Ok(core::execute(conn3(accessor, &c)?, command, args)
            .await
            .map(|rs| rs.into_iter().map(Into::into).collect())
            .map_err(Into::into))
    }
}

impl v3::HostConnection for ServicesHost {
    async fn drop(&mut self, c: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.delete(Kind::Redis, c)?;
        Ok(())
    }
}

impl v3::Host for ServicesHost {}
