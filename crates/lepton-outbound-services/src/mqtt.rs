//! MQTT connections ([`MqttConnection`]) and what both `fermyon:spin/mqtt@2.0.0` and
//! `spin:mqtt/mqtt@3.0.0` do with them. As in Spin, `open` only validates and configures (the
//! broker is contacted on the first publish), and `publish` returns once the message has been
//! written to the broker.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, QoS};
use tokio::sync::Mutex;

use crate::policy::{Service, parse_destination};
use crate::{Kind, ServicesHost};

/// Requests buffered between the client and its event loop.
const CHANNEL_CAPACITY: usize = 1000;

/// An open MQTT connection: the client and the event loop that drives it.
pub struct MqttConnection {
    pub(crate) client: AsyncClient,
    pub(crate) events: Arc<Mutex<EventLoop>>,
}

/// Errors shared by both versions.
#[derive(Debug)]
pub(crate) enum MqttError {
    InvalidAddress,
    TooManyConnections,
    ConnectionFailed(String),
    Other(String),
}

/// Checks `address` against the component's policy and the connection limit (before any I/O).
pub(crate) fn check_open(host: &ServicesHost, address: &str) -> Result<(), MqttError> {
    let destination =
        parse_destination(Service::Mqtt, address).map_err(|_| MqttError::InvalidAddress)?;
    if !host.config().allows(&destination) {
        tracing::debug!(address, "MQTT address not permitted");
        return Err(MqttError::ConnectionFailed(format!(
            "address {address} is not permitted"
        )));
    }
    if !host.has_room(Kind::Mqtt) {
        return Err(MqttError::TooManyConnections);
    }
    Ok(())
}

/// Builds the client for `address` (which carries `?client_id=`, as rumqttc and Spin require).
pub(crate) fn open(
    address: &str,
    username: String,
    password: String,
    keep_alive_secs: u64,
) -> Result<MqttConnection, MqttError> {
    let mut options = MqttOptions::parse_url(address).map_err(|_| MqttError::InvalidAddress)?;
    if !username.is_empty() || !password.is_empty() {
        options.set_credentials(username, password);
    }
    options.set_keep_alive(Duration::from_secs(keep_alive_secs));
    let (client, events) = AsyncClient::new(options, CHANNEL_CAPACITY);
    Ok(MqttConnection {
        client,
        events: Arc::new(Mutex::new(events)),
    })
}

/// QoS levels (identical in both versions).
pub(crate) fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Publishes and drives the event loop until the publish packet has gone out.
pub(crate) async fn publish(
    client: AsyncClient,
    events: Arc<Mutex<EventLoop>>,
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
) -> Result<(), MqttError> {
    client
        .publish_bytes(topic, qos, false, payload.into())
        .await
        .map_err(|e| MqttError::Other(e.to_string()))?;
    let mut events = events.lock().await;
    loop {
        match events.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(_))) => return Ok(()),
            Ok(_) => continue,
            Err(e) => return Err(MqttError::ConnectionFailed(e.to_string())),
        }
    }
}
