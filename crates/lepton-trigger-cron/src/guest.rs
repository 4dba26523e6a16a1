//! Calling a component's cron handler once: the `spin-trigger-cron` plugin's `spin-cron` world
//! (`wit/cron.wit`, package `fermyon:spin-cron@2.0.0`) exports the bare top-level function
//! `handle-cron-event: func(metadata) -> result<_, error>`, where `metadata` is the tick's Unix
//! time in seconds. A fresh store and instance per run ([`lepton_trigger::run_guest`]).

use std::sync::Arc;

use lepton_runtime::{HostState, PreparedComponent};
use lepton_trigger::{RunError, run_guest};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "fermyon:spin-cron/spin-cron",
        exports: { default: async },
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};

/// A component's cron handler, bound to its typed export.
#[derive(Clone)]
pub(crate) struct CronHandler {
    component: Arc<PreparedComponent>,
    pre: bindings::SpinCronPre<HostState>,
}

impl CronHandler {
    /// Bind `component`'s `handle-cron-event`; fails if it has none or its signature is not the
    /// plugin's.
    pub(crate) fn new(component: Arc<PreparedComponent>) -> Result<Self, String> {
        if !component.exports().cron {
            return Err(
                "does not export `handle-cron-event` (the spin-trigger-cron plugin's \
                        fermyon:spin-cron@2.0.0 world)"
                    .into(),
            );
        }
        let pre = bindings::SpinCronPre::new(component.instance_pre().clone()).map_err(|e| {
            format!("its `handle-cron-event` export does not match the cron plugin's: {e:#}")
        })?;
        Ok(Self { component, pre })
    }

    /// The component.
    pub(crate) fn component(&self) -> &Arc<PreparedComponent> {
        &self.component
    }

    /// Run once for the tick at Unix time `timestamp`; `Ok(Err(message))` is the guest's own
    /// error.
    pub(crate) async fn run(&self, timestamp: u64) -> Result<Result<(), String>, RunError> {
        let pre = self.pre.clone();
        run_guest(&self.component, move |mut store| async move {
            let guest = pre.instantiate_async(&mut store).await?;
            let result = guest
                .call_handle_cron_event(&mut store, Metadata { timestamp })
                .await?;
            Ok(result.map_err(|Error::Other(message)| message))
        })
        .await
    }
}
