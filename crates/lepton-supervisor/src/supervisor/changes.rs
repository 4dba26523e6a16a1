//! Which apps' load states changed ([`LoadChanges`]): a version's resident reports each load,
//! failed load and eviction here as it happens, and the reconciler takes the keys to publish
//! them, so a status (the API's, tauon's file, the database's per-node rows) shows where an
//! app's load is without waiting for its periodic refresh.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use super::{AppSupervisor, Inner};

/// The keys whose versions' load states changed since they were last taken.
#[derive(Default)]
pub struct LoadChanges {
    keys: Mutex<HashSet<String>>,
    wake: Notify,
}

impl LoadChanges {
    /// Key `key`'s load state changed.
    fn mark(&self, key: &str) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if !keys.contains(key) {
            keys.insert(key.to_string());
        }
        drop(keys);
        self.wake.notify_one();
    }

    /// The keys changed since the last call, once there is at least one (a burst of loads
    /// comes as one set).
    pub async fn next(&self) -> HashSet<String> {
        loop {
            let wake = self.wake.notified();
            let keys = std::mem::take(&mut *self.keys.lock().unwrap_or_else(|e| e.into_inner()));
            if !keys.is_empty() {
                return keys;
            }
            wake.await;
        }
    }
}

/// What a version's resident calls on each change of its load state: marks `key` (without
/// keeping the supervisor alive).
pub(super) fn reporter(inner: &Arc<Inner>, key: &str) -> impl Fn() + Send + Sync + 'static {
    let changes: Weak<LoadChanges> = Arc::downgrade(&inner.load_changes);
    let key = key.to_string();
    move || {
        if let Some(changes) = changes.upgrade() {
            changes.mark(&key);
        }
    }
}

impl AppSupervisor {
    /// The keys whose load states changed, for whoever publishes statuses (the reconciler).
    pub(crate) fn load_changes(&self) -> Arc<LoadChanges> {
        self.inner.load_changes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn marks_come_as_one_set_and_wake_a_waiting_taker() {
        let changes = Arc::new(LoadChanges::default());
        changes.mark("a");
        changes.mark("b");
        changes.mark("a");
        let taken = changes.next().await;
        assert_eq!(taken, HashSet::from(["a".to_string(), "b".to_string()]));
        // Nothing marked: the taker waits until something is.
        let waiting = tokio::spawn({
            let changes = changes.clone();
            async move { changes.next().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        changes.mark("c");
        let taken = waiting.await.unwrap();
        assert_eq!(taken, HashSet::from(["c".to_string()]));
    }
}
