//! Calling a component's Redis handler with one message, in either shape Spin's SDKs export
//! (facts §8.3): the unversioned, synchronous `fermyon:spin/inbound-redis` (spin-sdk 2.x–5.x)
//! and `spin:redis/inbound-redis@3.0.0`, whose `handle-message` is a WASIp3 `async func` run in
//! the store's concurrent event loop (spin-sdk 6+). The WIT bound is in `wit/v1` and `wit/v3`:
//! the types and the export only.
//!
//! Each message gets a fresh store and instance ([`lepton_trigger::run_guest`]: deadline,
//! cut-off, memory budget). The guest receives the payload only, never the channel or address.

use std::sync::Arc;

use lepton_runtime::{HostState, PreparedComponent, RedisHandlerKind};
use lepton_trigger::{RunError, run_guest};

mod v1 {
    wasmtime::component::bindgen!({
        path: "wit/v1",
        world: "fermyon:spin/redis-trigger",
        exports: { default: async },
    });
}

mod v3 {
    wasmtime::component::bindgen!({
        path: "wit/v3",
        world: "spin:redis/redis-trigger",
        exports: { default: async | store },
    });
}

/// A component's Redis handler, bound to its typed export.
#[derive(Clone)]
pub(crate) struct RedisHandler {
    component: Arc<PreparedComponent>,
    export: Export,
}

#[derive(Clone)]
enum Export {
    V1(v1::RedisTriggerPre<HostState>),
    V3(v3::RedisTriggerPre<HostState>),
}

/// How a message's handling ended, when the guest ran to completion.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The guest returned `ok`.
    Handled,
    /// The guest returned its `error` (the SDK has printed the details to its stderr).
    GuestError(String),
}

impl RedisHandler {
    /// Bind `component`'s Redis export (detected at load); fails if it has none or if its
    /// signature is not Spin's.
    pub(crate) fn new(component: Arc<PreparedComponent>) -> Result<Self, String> {
        let pre = component.instance_pre().clone();
        let export = match component.exports().redis {
            Some(RedisHandlerKind::V1) => {
                Export::V1(v1::RedisTriggerPre::new(pre).map_err(|e| {
                    format!("its fermyon:spin/inbound-redis export does not match Spin's: {e:#}")
                })?)
            }
            Some(RedisHandlerKind::V3) => {
                Export::V3(v3::RedisTriggerPre::new(pre).map_err(|e| {
                    format!(
                        "its spin:redis/inbound-redis@3.0.0 export does not match Spin's: {e:#}"
                    )
                })?)
            }
            None => {
                return Err("exports no Redis handler (fermyon:spin/inbound-redis or \
                            spin:redis/inbound-redis@3.0.0)"
                    .into());
            }
        };
        Ok(Self { component, export })
    }

    /// The component.
    pub(crate) fn component(&self) -> &Arc<PreparedComponent> {
        &self.component
    }

    /// Handle one message with a fresh instance.
    pub(crate) async fn handle(&self, payload: Vec<u8>) -> Result<Outcome, RunError> {
        match &self.export {
            Export::V1(pre) => {
                let pre = pre.clone();
                run_guest(&self.component, move |mut store| async move {
                    let guest = pre.instantiate_async(&mut store).await?;
                    let result = guest
                        .fermyon_spin_inbound_redis()
                        .call_handle_message(&mut store, &payload)
                        .await?;
                    Ok(match result {
                        Ok(()) => Outcome::Handled,
                        Err(e) => Outcome::GuestError(format!("{e:?}")),
                    })
                })
                .await
            }
            Export::V3(pre) => {
                let pre = pre.clone();
                run_guest(&self.component, move |mut store| async move {
                    let guest = pre.instantiate_async(&mut store).await?;
                    let result = store
                        .run_concurrent(async move |accessor| {
                            guest
                                .spin_redis_inbound_redis()
                                .call_handle_message(accessor, payload)
                                .await
                        })
                        .await??;
                    Ok(match result {
                        Ok(()) => Outcome::Handled,
                        Err(e) => Outcome::GuestError(format!("{e:?}")),
                    })
                })
                .await
            }
        }
    }
}
