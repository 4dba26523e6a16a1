//! The shared ingress's host table as the supervisor keeps it: one [`HostTable`] in the
//! supervisor's state, changed per app as apps start, move, are replaced and stop
//! ([`route_hosts`]), and published to the ingress listeners as an O(1) clone by one task that
//! coalesces bursts of changes ([`HostPublisher`], [`publish_hosts`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lepton_trigger_http::HostTable;
use lepton_trigger_http::tls::TlsFiles;
use tokio::sync::{Notify, watch};

use super::{Inner, RunningApp};

/// Coalesces host table publications: each change takes a number and waits until a publication
/// that started after it is out (with 10,000 apps starting at once, one publication covers
/// many of them instead of one each).
#[derive(Default)]
pub(super) struct HostPublisher {
    wanted: AtomicU64,
    pub(super) wake: Arc<Notify>,
    done: watch::Sender<u64>,
}

/// Start the task that publishes the table whenever [`publish_hosts`] asks; it ends with the
/// supervisor.
pub(super) fn spawn_publisher(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let wake = inner.publisher.wake.clone();
    tokio::spawn(async move {
        loop {
            wake.notified().await;
            let Some(inner) = weak.upgrade() else { return };
            let generation = inner.publisher.wanted.load(Ordering::SeqCst);
            let table = inner.state().hosts.clone();
            inner.hosts.send_replace(Arc::new(table));
            inner.publisher.done.send_replace(generation);
        }
    });
}

/// Republish the shared ingress's host table, returning once a table that includes every change
/// made before this call is published.
pub(super) async fn publish_hosts(inner: &Inner) {
    let generation = inner.publisher.wanted.fetch_add(1, Ordering::SeqCst) + 1;
    let mut done = inner.publisher.done.subscribe();
    inner.publisher.wake.notify_one();
    let _ = done.wait_for(|published| *published >= generation).await;
}

/// Route `app`'s hosts to its version channel (with its certificate files) in the live host
/// table, and stop routing the hosts it had before (`old`) that it no longer has.
pub(super) fn route_hosts(table: &mut HostTable, old: &[String], app: &RunningApp) {
    for host in old {
        if !app.spec.hosts.contains(host) {
            table.remove(host);
        }
    }
    let tls = app.spec.tls.as_ref().map(|tls| TlsFiles {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
    });
    for host in &app.spec.hosts {
        table.insert(host, app.current.subscribe(), tls.clone());
    }
}
