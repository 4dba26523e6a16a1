//! The table of apps that have series: app name → [`AppSeries`].
//!
//! Only creating a handle, removing an app, the supervisor's (rare) events and scrapes touch it;
//! the request path holds its `Arc<AppSeries>` and never looks an app up. Removing an app drops
//! its one entry, and with it every series of that app, so apps can come and go without growth.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::app::AppSeries;

/// App name → its series.
#[derive(Debug, Default)]
pub(crate) struct AppTable {
    apps: RwLock<HashMap<Arc<str>, Arc<AppSeries>>>,
}

impl AppTable {
    /// The series of `app`, created (all zero, no state) on first use.
    pub(crate) fn get_or_create(&self, app: &str) -> Arc<AppSeries> {
        // A panic while holding the lock cannot leave the map half-updated (every update is one
        // `insert` or `remove`), so a poisoned lock is still a consistent map.
        if let Some(series) = self
            .apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(app)
        {
            return Arc::clone(series);
        }
        let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            apps.entry(Arc::from(app))
                .or_insert_with(|| Arc::new(AppSeries::new())),
        )
    }

    /// Forgets `app`'s series; returns whether it had any.
    pub(crate) fn remove(&self, app: &str) -> bool {
        self.apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(app)
            .is_some()
    }

    /// Every app and its series, sorted by name (a stable, readable exposition), taken under the
    /// read lock and encoded after it is released.
    pub(crate) fn snapshot(&self) -> Vec<(Arc<str>, Arc<AppSeries>)> {
        let mut apps: Vec<_> = self
            .apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, series)| (Arc::clone(name), Arc::clone(series)))
            .collect();
        apps.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        apps
    }

    /// How many apps have series.
    pub(crate) fn len(&self) -> usize {
        self.apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_name_and_removal_forgets_it() {
        let table = AppTable::default();
        let a = table.get_or_create("shop");
        let b = table.get_or_create("shop");
        assert!(Arc::ptr_eq(&a, &b));
        table.get_or_create("blog");
        let names: Vec<_> = table.snapshot().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [Arc::from("blog"), Arc::from("shop")]);
        assert!(table.remove("shop"));
        assert!(!table.remove("shop"));
        assert_eq!(table.len(), 1);
        assert!(!Arc::ptr_eq(&a, &table.get_or_create("shop")));
    }
}
