//! The desired-state database as a source for the reconciler ([`DbSource`]).
//!
//! Every stored app is parsed ([`lepton_spec::parse_api_app`]) and handed to the reconciler
//! under its name; an app gone from the database is made absent. A stored app is applied once
//! per generation: the API's `PUT` applies its own write at once and waits for the outcome, and
//! the sync loop — woken by the store's change counter (this process's writes, other nodes'
//! through PostgreSQL's notifications) — applies whatever it has not seen, sharing the same
//! outcome when both race for one generation. After its first full read, a sync reads only the
//! apps written since the revision it last saw ([`Store::written_after`]), and the whole list
//! only when the number stored says some app was deleted: a burst of `PUT`s costs each one its
//! own app, not every app.
//!
//! What this node observes (state, digest, addresses, error) is recorded back into the database
//! per node, and each app's state into the metrics.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use lepton_metrics::{AppState, Metrics};
use lepton_store::{ObservedStatus, Store, StoredApp};
use lepton_supervisor::{
    Desired, KeyState, KeyStatus, Outcome, Reconciler, RunningAppStatus, Transition,
};
use tokio::sync::watch;

type SharedOutcome = Shared<BoxFuture<'static, Outcome>>;

/// One generation of an app handed to the reconciler, and its outcome.
struct Applied {
    generation: i64,
    outcome: SharedOutcome,
    /// The sync epoch in which this name was first applied (kept across its generations).
    since: u64,
}

/// The database, followed into the reconciler.
pub struct DbSource {
    store: Store,
    reconciler: Reconciler,
    metrics: Metrics,
    state_root: PathBuf,
    node: String,
    applied: Mutex<HashMap<String, Applied>>,
    /// Bumped (under `applied`'s lock) as each incremental sync starts: names applied from then
    /// on are told apart from those it can count on being stored already.
    epoch: AtomicU64,
    /// The revision the last sync read up to (`None` before the first).
    seen_revision: Mutex<Option<i64>>,
    /// Set once the first full sync has handed every stored app to the reconciler.
    synced: watch::Sender<bool>,
}

impl DbSource {
    /// A source over `store` feeding `reconciler`; apps' default state directories live under
    /// `state_root`; statuses are recorded as `node`'s.
    pub fn new(
        store: Store,
        reconciler: Reconciler,
        metrics: Metrics,
        state_root: PathBuf,
        node: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            reconciler,
            metrics,
            state_root,
            node,
            applied: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            seen_revision: Mutex::new(None),
            synced: watch::Sender::new(false),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The reconciler.
    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }

    /// Where apps' default state directories live.
    pub fn state_root(&self) -> &std::path::Path {
        &self.state_root
    }

    /// This node's name in recorded statuses.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Ready: every stored app has been handed over once and the reconciler has tried each.
    pub fn ready(&self) -> bool {
        *self.synced.borrow() && self.reconciler.board().settled()
    }

    /// Hand `stored` to the reconciler unless this generation (or a newer one) already was;
    /// resolves with its outcome (shared with whoever applied it first). An older generation
    /// than the one applied resolves as superseded.
    pub fn apply(&self, stored: &StoredApp) -> SharedOutcome {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let mut since = self.epoch.load(Ordering::Relaxed);
        if let Some(a) = applied.get(&stored.name) {
            since = a.since;
            if a.generation == stored.generation {
                return a.outcome.clone();
            }
            if a.generation > stored.generation {
                return futures::future::ready(Ok(Transition::Superseded))
                    .boxed()
                    .shared();
            }
        }
        let desired = match lepton_spec::parse_api_app(
            &stored.name,
            &stored.spec.to_string(),
            &self.state_root,
        ) {
            Ok(spec) => Desired::App(spec),
            Err(err) => Desired::Invalid(err.to_string()),
        };
        let outcome = self
            .reconciler
            .set(stored.name.clone(), desired)
            .boxed()
            .shared();
        // Drive it even if the caller stops waiting (the sync loop never waits).
        tokio::spawn(outcome.clone());
        applied.insert(
            stored.name.clone(),
            Applied {
                generation: stored.generation,
                outcome: outcome.clone(),
                since,
            },
        );
        outcome
    }

    /// Stop `name` (deleted from the database); resolves when it stopped.
    pub fn remove(&self, name: &str) -> BoxFuture<'static, Outcome> {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.reconciler
            .set(name.to_string(), Desired::Absent)
            .boxed()
    }

    /// Bring the reconciler in line with the database once.
    pub async fn sync(&self) -> Result<(), lepton_store::StoreError> {
        let revision = self.store.revision().await?;
        let seen = *self.seen_revision.lock().unwrap_or_else(|e| e.into_inner());
        if seen != Some(revision) {
            let whole = match seen {
                Some(seen) => {
                    // How many names were applied before this read: every app stored at `seen`
                    // is among them unless it was deleted since. Counted against the snapshot,
                    // not the live map, which the API's own `PUT`s grow while this read runs;
                    // names applied from now on carry the new epoch.
                    let (before, epoch) = {
                        let applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
                        (
                            applied.len(),
                            self.epoch.fetch_add(1, Ordering::Relaxed) + 1,
                        )
                    };
                    let written = self.store.written_after(seen).await?;
                    for app in &written.apps {
                        drop(self.apply(app));
                    }
                    let new = {
                        let applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
                        written
                            .apps
                            .iter()
                            .filter(|a| applied.get(&a.name).is_none_or(|x| x.since >= epoch))
                            .count()
                    };
                    if no_deletion(before, new, written.stored) {
                        None
                    } else {
                        Some(self.store.list().await?)
                    }
                }
                None => Some(self.store.list().await?),
            };
            if let Some(stored) = whole {
                self.sync_all(&stored);
            }
            *self.seen_revision.lock().unwrap_or_else(|e| e.into_inner()) = Some(revision);
        }
        self.synced.send_replace(true);
        Ok(())
    }

    /// Apply every app of `stored` (the whole list) and stop those no longer in it.
    fn sync_all(&self, stored: &[StoredApp]) {
        let names: HashSet<&str> = stored.iter().map(|a| a.name.as_str()).collect();
        let gone: Vec<String> = self
            .applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|n| !names.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            tracing::info!(app = %name, "app deleted from the desired state: stopping it");
            tokio::spawn(self.remove(&name));
        }
        for app in stored {
            drop(self.apply(app));
        }
    }

    /// Follow the database until `shutdown` resolves: sync at start and whenever it changes,
    /// and record what this node observes. A failed sync (database unreachable) is logged and
    /// retried on the next change or after 5 s; apps keep running meanwhile.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut changes = self.store.changes();
        let recorder = tokio::spawn(self.clone().record_statuses());
        tokio::pin!(shutdown);
        loop {
            changes.borrow_and_update();
            let retry = match self.sync().await {
                Ok(()) => None,
                Err(err) => {
                    tracing::error!(error = %err, "cannot read the desired state; apps keep running as they are");
                    Some(std::time::Duration::from_secs(5))
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                changed = changes.changed() => if changed.is_err() { break },
                () = sleep_opt(retry) => {}
            }
        }
        recorder.abort();
    }

    /// Record each key's observed state in the database (per node) and the metrics whenever
    /// the reconciler publishes a change, for the keys that changed only.
    async fn record_statuses(self: Arc<Self>) {
        let mut status = self.reconciler.status();
        let mut recorded: HashMap<String, ObservedStatus> = HashMap::new();
        // Keys with an app state in the metrics.
        let mut measured: HashSet<String> = HashSet::new();
        while let Some(changes) = status.changed().await {
            for name in status.keys(changes) {
                let board = status.board();
                let Some(key) = board.key(&name) else {
                    recorded.remove(&name);
                    if measured.remove(&name) {
                        self.metrics.remove_app(&name);
                    }
                    continue;
                };
                let observed = observe(&key, board.running_app(&name).as_ref());
                self.metrics.set_app_state(&name, metric_state(&key.state));
                measured.insert(name.clone());
                let same = recorded.get(&name).is_some_and(|r| {
                    r.state == observed.state
                        && r.digest == observed.digest
                        && r.error == observed.error
                        && r.addresses == observed.addresses
                });
                if same {
                    continue;
                }
                match self.store.record_status(&self.node, &name, &observed).await {
                    Ok(()) => {
                        recorded.insert(name, observed);
                    }
                    Err(err) => {
                        tracing::warn!(app = %name, error = %err, "cannot record the app's status");
                    }
                }
            }
        }
    }
}

/// What this node observes of a key: its status and what runs under it.
pub fn observe(key: &KeyStatus, running: Option<&RunningAppStatus>) -> ObservedStatus {
    let mut addresses: Vec<String> = running
        .and_then(|r| r.address)
        .map(|a| format!("http://{a}"))
        .into_iter()
        .collect();
    if let Some(r) = running {
        addresses.extend(r.hosts.iter().map(|h| format!("host {h}")));
    }
    ObservedStatus {
        state: match key.state {
            KeyState::Loading => "loading",
            KeyState::Serving => "serving",
            KeyState::Failed | KeyState::Invalid | KeyState::Conflicted => "failed",
        }
        .to_string(),
        // Unknown until the app has loaded once (lazy apps).
        digest: running.map(|r| r.digest.clone()).filter(|d| !d.is_empty()),
        error: key.error.clone(),
        addresses,
        updated_at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0),
    }
}

fn metric_state(state: &KeyState) -> AppState {
    match state {
        KeyState::Loading => AppState::Loading,
        KeyState::Serving => AppState::Serving,
        KeyState::Failed | KeyState::Invalid | KeyState::Conflicted => AppState::Failed,
    }
}

/// Whether a snapshot of `stored` apps can hold every one of the `before` names applied before
/// it was read, `new` being how many of the apps written since were not among those: each
/// stored app either was applied before or is new, so the two cover exactly `stored` names
/// unless one applied before was deleted (then they cover more). A name deleted and created
/// again since counts twice, so a deletion is never missed; at worst a full read is done for
/// nothing.
fn no_deletion(before: usize, new: usize, stored: i64) -> bool {
    i64::try_from(before + new).is_ok_and(|covered| covered == stored)
}

async fn sleep_opt(d: Option<std::time::Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_alone_need_no_full_read() {
        // a and b were applied; b was rewritten and c created since: 2 + 1 cover 3.
        assert!(no_deletion(2, 1, 3));
        // Nothing written: the same three are stored.
        assert!(no_deletion(3, 0, 3));
    }

    #[test]
    fn a_deletion_is_never_missed() {
        // b was deleted since the last sync and c created: three names cover two stored.
        assert!(!no_deletion(2, 1, 2));
        // b deleted, nothing written.
        assert!(!no_deletion(2, 0, 1));
    }
}
