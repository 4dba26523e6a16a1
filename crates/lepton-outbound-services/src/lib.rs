//! Spin's outbound service interfaces for lepton: Redis, PostgreSQL, MySQL and MQTT connections a
//! guest opens by address, each checked against the component's `allowed_outbound_hosts`.
//!
//! Interfaces (WIT vendored in `wit/`, bindings in [`bindings`](crate::bindings)):
//! `fermyon:spin/{redis,postgres,mysql,mqtt}@2.0.0`, `spin:redis/redis@3.0.0`,
//! `spin:postgres/postgres@3.0.0`, `spin:postgres/postgres@4.2.0` (which also serves 4.0 and 4.1
//! imports through wasmtime's semver matching), `spin:mysql/mysql@3.0.0` and
//! `spin:mqtt/mqtt@3.0.0`.
//!
//! Shape: a per-component [`ServicesConfig`] (its [`AddressPolicy`] and [`ConnectionLimits`]) is
//! built once at load; each request's store holds a [`ServicesHost`] with the guest's open
//! connections; the runtime's store data implements [`ServicesView`] and calls [`add_to_linker`].
//!
//! Error contracts (Spin's): an address the component may not reach is `invalid-address` for
//! Redis, `connection-failed("address <addr> is not permitted")` for MQTT, PostgreSQL and MySQL;
//! more open connections than `max_connections` is `too-many-connections` (Redis, MQTT) or
//! `connection-failed` (PostgreSQL, MySQL).

mod bindings;
mod host_mqtt;
mod host_mysql;
mod host_postgres;
mod host_redis;
pub mod mqtt;
pub mod mysql;
pub mod policy;
pub mod postgres;
pub mod redis;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

pub use policy::{AddressPolicy, Destination, DestinationError, Service, parse_destination};

/// The default cap on connections of one kind a single instance may hold open (Spin's table size).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Per-instance caps on open connections, from the runtime config's
/// `[outbound_redis|outbound_pg|outbound_mysql|outbound_mqtt] max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Redis connections.
    pub redis: usize,
    /// PostgreSQL connections.
    pub postgres: usize,
    /// MySQL connections.
    pub mysql: usize,
    /// MQTT connections.
    pub mqtt: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            redis: DEFAULT_MAX_CONNECTIONS,
            postgres: DEFAULT_MAX_CONNECTIONS,
            mysql: DEFAULT_MAX_CONNECTIONS,
            mqtt: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What one component may do: where it may connect and how many connections it may hold.
pub struct ServicesConfig {
    policy: Arc<dyn AddressPolicy>,
    limits: ConnectionLimits,
}

impl ServicesConfig {
    /// A component's services config.
    pub fn new(policy: Arc<dyn AddressPolicy>, limits: ConnectionLimits) -> Self {
        Self { policy, limits }
    }

    /// A config that allows no destination at all (a component without `allowed_outbound_hosts`).
    pub fn deny_all() -> Self {
        Self::new(
            Arc::new(|_: &str, _: &str, _: u16| false),
            ConnectionLimits::default(),
        )
    }

    /// Whether every host of `destination` is allowed.
    pub(crate) fn allows(&self, destination: &Destination) -> bool {
        !destination.hosts.is_empty()
            && destination
                .hosts
                .iter()
                .all(|(host, port)| self.policy.allows(&destination.scheme, host, *port))
    }
}

/// Which kind of connection a table entry is, for the per-kind limits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Redis,
    Postgres,
    Mysql,
    Mqtt,
}

/// The outbound services' state in one store: the component's config and the guest's open
/// connections.
pub struct ServicesHost {
    config: Arc<ServicesConfig>,
    table: ResourceTable,
    open: [usize; 4],
}

impl ServicesHost {
    /// Fresh per-instance state for a component with `config`.
    pub fn new(config: Arc<ServicesConfig>) -> Self {
        Self {
            config,
            table: ResourceTable::new(),
            open: [0; 4],
        }
    }

    pub(crate) fn config(&self) -> &ServicesConfig {
        &self.config
    }

    /// Whether one more connection of `kind` fits under its limit.
    pub(crate) fn has_room(&self, kind: Kind) -> bool {
        let limit = match kind {
            Kind::Redis => self.config.limits.redis,
            Kind::Postgres => self.config.limits.postgres,
            Kind::Mysql => self.config.limits.mysql,
            Kind::Mqtt => self.config.limits.mqtt,
        };
        self.open[kind as usize] < limit
    }

    /// Stores a new connection of `kind`.
    pub(crate) fn push<C: Send + 'static>(
        &mut self,
        kind: Kind,
        conn: C,
    ) -> wasmtime::Result<Resource<C>> {
        let handle = self.table.push(conn)?;
        self.open[kind as usize] += 1;
        Ok(handle)
    }

    /// Removes a connection of `kind` (the guest dropped it).
    pub(crate) fn delete<C: 'static>(
        &mut self,
        kind: Kind,
        handle: Resource<C>,
    ) -> wasmtime::Result<C> {
        let conn = self.table.delete(handle)?;
        self.open[kind as usize] = self.open[kind as usize].saturating_sub(1);
        Ok(conn)
    }

    /// Stores a helper resource that is not a connection (e.g. a connection builder).
    pub(crate) fn table_push<C: Send + 'static>(&mut self, v: C) -> wasmtime::Result<Resource<C>> {
        Ok(self.table.push(v)?)
    }

    pub(crate) fn table_delete<C: 'static>(&mut self, handle: Resource<C>) -> wasmtime::Result<C> {
        Ok(self.table.delete(handle)?)
    }

    pub(crate) fn get<C: 'static>(&self, handle: &Resource<C>) -> wasmtime::Result<&C> {
        Ok(self.table.get(handle)?)
    }

    pub(crate) fn get_mut<C: 'static>(&mut self, handle: &Resource<C>) -> wasmtime::Result<&mut C> {
        Ok(self.table.get_mut(handle)?)
    }
}

/// Implemented by a store's data type to give the bindings its [`ServicesHost`].
pub trait ServicesView: Send {
    /// This store's outbound services state.
    fn services(&mut self) -> &mut ServicesHost;
}

/// The [`HasData`] marker the generated bindings are linked with.
pub struct ServicesData;

impl HasData for ServicesData {
    type Data<'a> = &'a mut ServicesHost;
}

/// Link every outbound service interface this crate provides into `linker`.
pub fn add_to_linker<T: ServicesView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::Services::add_to_linker::<T, ServicesData>(linker, |t| t.services())
}
