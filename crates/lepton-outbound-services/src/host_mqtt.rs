//! `fermyon:spin/mqtt@2.0.0` and `spin:mqtt/mqtt@3.0.0` (WASIp3 `async`) on top of
//! [`crate::mqtt`].

use wasmtime::component::{Accessor, Resource};

use crate::bindings::fermyon::spin::mqtt as v2;
use crate::bindings::spin::mqtt::mqtt as v3;
use crate::mqtt::{self as core, MqttConnection, MqttError};
use crate::{Kind, ServicesData, ServicesHost};

macro_rules! conversions {
    ($v:ident) => {
        impl From<MqttError> for $v::Error {
            fn from(e: MqttError) -> Self {
                match e {
                    MqttError::InvalidAddress => $v::Error::InvalidAddress,
                    MqttError::TooManyConnections => $v::Error::TooManyConnections,
                    MqttError::ConnectionFailed(m) => $v::Error::ConnectionFailed(m),
                    MqttError::Other(m) => $v::Error::Other(m),
                }
            }
        }
        impl From<$v::Qos> for rumqttc::QoS {
            fn from(q: $v::Qos) -> Self {
                core::qos(match q {
                    $v::Qos::AtMostOnce => 0,
                    $v::Qos::AtLeastOnce => 1,
                    $v::Qos::ExactlyOnce => 2,
                })
            }
        }
    };
}
conversions!(v2);
conversions!(v3);

fn open(
    host: &mut ServicesHost,
    address: String,
    username: String,
    password: String,
    keep_alive: u64,
) -> wasmtime::Result<Result<Resource<MqttConnection>, MqttError>> {
    if let Err(e) = core::check_open(host, &address) {
        return Ok(Err(e));
    }
    match core::open(&address, username, password, keep_alive) {
        Ok(c) => Ok(Ok(host.push(Kind::Mqtt, c)?)),
        Err(e) => Ok(Err(e)),
    }
}

impl v2::HostConnection for ServicesHost {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, v2::Error>> {
        Ok(open(
            self,
            address,
            username,
            password,
            keep_alive_interval_in_secs,
        )?
        .map_err(Into::into))
    }

    async fn publish(
        &mut self,
        c: Resource<MqttConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: v2::Qos,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let conn = self.get(&c)?;
        let (client, events) = (conn.client.clone(), conn.events.clone());
        Ok(core::publish(client, events, topic, payload, qos.into())
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, c: Resource<MqttConnection>) -> wasmtime::Result<()> {
        self.delete(Kind::Mqtt, c)?;
        Ok(())
    }
}

impl v2::Host for ServicesHost {}

impl<T: Send> v3::HostConnectionWithStore<T> for ServicesData {
    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, v3::Error>> {
        accessor.with(|mut access| {
            Ok(open(
                access.get(),
                address,
                username,
                password,
                keep_alive_interval_in_secs,
            )?
            .map_err(Into::into))
        })
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        c: Resource<MqttConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: v3::Qos,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let (client, events) = accessor.with(|mut access| {
            let conn = access.get().get(&c)?;
            Ok::<_, wasmtime::Error>((conn.client.clone(), conn.events.clone()))
        })?;
        Ok(core::publish(client, events, topic, payload, qos.into())
            .await
            .map_err(Into::into))
    }
}

impl v3::HostConnection for ServicesHost {
    async fn drop(&mut self, c: Resource<MqttConnection>) -> wasmtime::Result<()> {
        self.delete(Kind::Mqtt, c)?;
        Ok(())
    }
}

impl v3::Host for ServicesHost {}
