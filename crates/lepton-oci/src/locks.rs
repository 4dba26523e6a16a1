//! [`KeyedLocks`]: per-key async mutexes, so concurrent loads within one process serialise the
//! work on one cache entry (the assets dir of a locked app, the manifest dir of a tag).
//!
//! Across processes the cache stays safe without these (every write is a verified rename), but
//! in-process serialisation avoids redundant work and keeps a directory handed to one app's
//! runtime from being rebuilt under it by a concurrent load of the same app.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

/// A set of named async locks, shared by clones.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyedLocks {
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl KeyedLocks {
    /// Waits for and holds the lock named `key` until the guard is dropped.
    pub(crate) async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            // Entries only the map refers to are idle: nobody holds or waits for them.
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(key.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_serialises_other_keys_do_not() {
        let locks = KeyedLocks::default();
        let a = locks.lock("a").await;
        let _b = locks.lock("b").await;
        let again = locks.clone();
        let waiter = tokio::spawn(async move { drop(again.lock("a").await) });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "second lock of `a` waits");
        drop(a);
        waiter.await.unwrap();
    }
}
