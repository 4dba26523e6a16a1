//! [`Current`]: the version a trigger dispatches to, swapped atomically.
//!
//! Every event takes one snapshot ([`Current::load`]) and is handled wholly by that version, so
//! a swap ([`Current::replace`]) splits the event stream cleanly: events loaded before it go to
//! the old version, events loaded after it to the new one, none to both.

use std::sync::{Arc, PoisonError, RwLock};

/// A shared, atomically replaceable `Arc<V>`.
#[derive(Debug)]
pub struct Current<V>(Arc<RwLock<Arc<V>>>);

impl<V> Clone for Current<V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<V> Current<V> {
    /// Starts with `version`.
    pub fn new(version: Arc<V>) -> Self {
        Self(Arc::new(RwLock::new(version)))
    }

    /// The version now.
    pub fn load(&self) -> Arc<V> {
        // A poisoned lock still holds a valid `Arc`: nothing panics while holding it.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Make `next` current; returns the version it replaced.
    pub fn replace(&self, next: Arc<V>) -> Arc<V> {
        let mut slot = self.0.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *slot, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_sees_one_version_before_and_after_a_replace() {
        let current = Current::new(Arc::new("a"));
        let before = current.load();
        let old = current.replace(Arc::new("b"));
        assert_eq!((*before, *old, *current.load()), ("a", "a", "b"));
    }
}
