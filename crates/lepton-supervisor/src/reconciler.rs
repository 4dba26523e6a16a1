//! The one reconciler between the sources of desired state and the [`AppSupervisor`].
//!
//! A source (a tauon directory, a database behind the admin API) says what it wants per key
//! ([`Reconciler::set`]): an app ([`Desired::App`]), nothing ([`Desired::Absent`]), or an entry
//! that does not parse ([`Desired::Invalid`], whose app keeps running its last good version).
//! The reconciler owns everything after that, so every source behaves alike:
//!
//! - each desire is submitted to the supervisor; a newer one for the same key supersedes it;
//! - a load that fails for a reason that may pass (registry outage, unknown reference) is
//!   retried with a backoff (2 s doubling to 60 s) while the version serving, if any, serves on;
//! - an app refused because another holds its address or state_dir is retried whenever some
//!   other app stops, moves or fails;
//! - the outcome of each desire is returned to whoever set it (an API `PUT` waits on it), and
//!   the state of every key, with what is running, is published as a stream
//!   ([`Reconciler::status`]) for status files, the API and metrics.
//!
//! The reconciler is a task fed through a channel; [`Reconciler`] is a cheap handle to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::supervisor::{AppSupervisor, LoadFailure, StartError, Transition};
use crate::{AppSpec, RunningAppStatus};

/// What a source wants for one key.
#[derive(Debug, Clone)]
// One per change of desired state, never on the request path: the size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Desired {
    /// This app, at this spec.
    App(AppSpec),
    /// The source's entry does not parse: the message (naming file or field). The app, if it
    /// runs, keeps its last good version.
    Invalid(String),
    /// No app: stop it if it runs.
    Absent,
}

/// What became of one [`Reconciler::set`]: the supervisor's transition, or why it was refused.
pub type Outcome = Result<Transition, Refusal>;

/// Why a desire was not applied. Displays as `<key>: app `<app>` (<reference>) refused:
/// <cause>`, or just the cause for an entry that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The key.
    pub key: String,
    /// The app's name (empty when the entry did not parse).
    pub app: String,
    /// Its reference (empty when the entry did not parse).
    pub reference: String,
    /// What went wrong, with its whole cause chain.
    pub cause: String,
}

impl Refusal {
    fn message(key: &str, message: String) -> Self {
        Self {
            key: key.to_string(),
            app: String::new(),
            reference: String::new(),
            cause: message,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.app.is_empty() && self.reference.is_empty() {
            f.write_str(&self.cause)
        } else {
            write!(
                f,
                "{}: app `{}` ({}) refused: {}",
                self.key, self.app, self.reference, self.cause
            )
        }
    }
}

/// Where one key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Submitted; its outcome is not known yet.
    Loading,
    /// Its desired app serves.
    Serving,
    /// Its last desire failed (`error` says why); a retry may be scheduled.
    Failed,
    /// The source's entry does not parse.
    Invalid,
    /// Refused because another app holds its address or state_dir; retried when that changes.
    Conflicted,
}

/// One key's state, as published.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyStatus {
    /// The last valid spec the source gave (what should run).
    pub spec: Option<AppSpec>,
    /// Where it stands.
    pub state: KeyState,
    /// The error to report, if any.
    pub error: Option<String>,
    /// Whether a desire for it has finished at least once (readiness).
    pub tried: bool,
}

/// The whole picture, published after every change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReconcileStatus {
    /// Every key a source has set (and not made absent), by key.
    pub keys: BTreeMap<String, KeyStatus>,
    /// What is serving now, sorted by key ([`ReconcileStatus::running_app`] finds one).
    pub running: Vec<RunningAppStatus>,
}

impl ReconcileStatus {
    /// The running app with key `key`, if any.
    pub fn running_app(&self, key: &str) -> Option<&RunningAppStatus> {
        self.running
            .binary_search_by(|r| r.key.as_str().cmp(key))
            .ok()
            .map(|i| &self.running[i])
    }

    /// Every key has been tried at least once (a readiness probe's question).
    pub fn settled(&self) -> bool {
        self.keys.values().all(|k| k.tried)
    }
}

/// The most events handled between two publications.
const BATCH: usize = 4096;

/// The first and the longest wait before reloading an app that failed to load.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);

#[allow(clippy::large_enum_variant)]
enum Command {
    Set {
        key: String,
        desired: Desired,
        reply: oneshot::Sender<Outcome>,
    },
    Rename {
        from: String,
        to: String,
        reply: oneshot::Sender<bool>,
    },
}

/// A handle to the reconciler task. Cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Arc<ReconcileStatus>>,
    supervisor: AppSupervisor,
}

impl Reconciler {
    /// Start the reconciler task over `supervisor`.
    pub fn spawn(supervisor: AppSupervisor) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(Arc::new(ReconcileStatus::default()));
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let task = Task {
            supervisor: supervisor.clone(),
            entries: BTreeMap::new(),
            waiters: HashMap::new(),
            replies: Vec::new(),
            done_tx,
            status: status_tx,
            next_submission: 0,
        };
        tokio::spawn(task.run(rx, done_rx));
        Self {
            commands,
            status,
            supervisor,
        }
    }

    /// Want `desired` for `key`. Resolves with the outcome of this desire (a later desire for
    /// the same key makes it `Ok(Transition::Superseded)`); dropping the future changes nothing.
    pub fn set(
        &self,
        key: impl Into<String>,
        desired: Desired,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let key = key.into();
        let stopped = Refusal::message(&key, "the reconciler has stopped".to_string());
        let sent = self.commands.send(Command::Set {
            key,
            desired,
            reply,
        });
        async move {
            if sent.is_err() {
                return Err(stopped);
            }
            rx.await.unwrap_or(Err(stopped))
        }
    }

    /// Move key `from` to `to` without touching what serves (a renamed file). `false` when the
    /// supervisor refuses (operations in flight, `to` in use).
    pub async fn rename(&self, from: impl Into<String>, to: impl Into<String>) -> bool {
        let (reply, rx) = oneshot::channel();
        let command = Command::Rename {
            from: from.into(),
            to: to.into(),
            reply,
        };
        if self.commands.send(command).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// The published status; changes after every submission, outcome and retry.
    pub fn status(&self) -> watch::Receiver<Arc<ReconcileStatus>> {
        self.status.clone()
    }

    /// The supervisor it drives.
    pub fn supervisor(&self) -> &AppSupervisor {
        &self.supervisor
    }
}

struct Entry {
    spec: Option<AppSpec>,
    error: Option<String>,
    state: KeyState,
    tried: bool,
    /// Number of the latest submission (older outcomes only answer their waiter).
    submitted: u64,
    retry_at: Option<Instant>,
    backoff: Duration,
}

struct Done {
    key: String,
    submission: u64,
    result: Result<Transition, LoadFailure>,
}

struct Task {
    supervisor: AppSupervisor,
    entries: BTreeMap<String, Entry>,
    /// Who waits on which submission.
    waiters: HashMap<u64, oneshot::Sender<Outcome>>,
    /// Outcomes to answer once the status that reflects them is published (so a caller that
    /// reads the status after its answer sees it).
    replies: Vec<(oneshot::Sender<Outcome>, Outcome)>,
    done_tx: mpsc::UnboundedSender<Done>,
    status: watch::Sender<Arc<ReconcileStatus>>,
    next_submission: u64,
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut done: mpsc::UnboundedReceiver<Done>,
    ) {
        loop {
            let retry = self.entries.values().filter_map(|e| e.retry_at).min();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Set { key, desired, reply }) => self.set(key, desired, reply),
                    Some(Command::Rename { from, to, reply }) => {
                        let _ = reply.send(self.rename(&from, &to));
                    }
                    // Every handle is gone: nobody can want anything any more.
                    None => break,
                },
                Some(d) = done.recv() => self.finished(d),
                () = sleep_until(retry) => self.retry_due(),
            }
            // Take whatever else is ready before publishing: publishing builds the whole
            // picture, so one per burst (10,000 apps starting at once) instead of one per event.
            for _ in 0..BATCH {
                if let Ok(d) = done.try_recv() {
                    self.finished(d);
                } else if let Ok(command) = commands.try_recv() {
                    match command {
                        Command::Set {
                            key,
                            desired,
                            reply,
                        } => self.set(key, desired, reply),
                        Command::Rename { from, to, reply } => {
                            let _ = reply.send(self.rename(&from, &to));
                        }
                    }
                } else {
                    break;
                }
            }
            self.publish();
            for (reply, outcome) in self.replies.drain(..) {
                let _ = reply.send(outcome);
            }
        }
    }

    fn set(&mut self, key: String, desired: Desired, reply: oneshot::Sender<Outcome>) {
        match desired {
            Desired::App(spec) => {
                let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
                    spec: None,
                    error: None,
                    state: KeyState::Loading,
                    tried: false,
                    submitted: 0,
                    retry_at: None,
                    backoff: Duration::ZERO,
                });
                entry.spec = Some(spec.clone());
                entry.error = None;
                entry.retry_at = None;
                entry.backoff = Duration::ZERO;
                entry.state = KeyState::Loading;
                let submission = self.submit(key, Some(spec));
                self.waiters.insert(submission, reply);
            }
            Desired::Invalid(message) => {
                let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
                    spec: None,
                    error: None,
                    state: KeyState::Invalid,
                    tried: true,
                    submitted: 0,
                    retry_at: None,
                    backoff: Duration::ZERO,
                });
                if entry.spec.is_some() {
                    tracing::error!(%key, error = %message, "invalid desired state; the app keeps running its last good version");
                } else {
                    tracing::error!(%key, error = %message, "invalid desired state; not started");
                }
                entry.error = Some(message.clone());
                entry.state = KeyState::Invalid;
                entry.tried = true;
                self.replies
                    .push((reply, Err(Refusal::message(&key, message))));
            }
            Desired::Absent => {
                self.entries.remove(&key);
                let submission = self.submit(key, None);
                self.waiters.insert(submission, reply);
            }
        }
    }

    fn rename(&mut self, from: &str, to: &str) -> bool {
        if !self.supervisor.rename(from, to) {
            return false;
        }
        if let Some(entry) = self.entries.remove(from) {
            self.entries.insert(to.to_string(), entry);
        }
        true
    }

    /// Hand `desired` for `key` to the supervisor; its result comes back as a [`Done`].
    fn submit(&mut self, key: String, desired: Option<AppSpec>) -> u64 {
        self.next_submission += 1;
        let submission = self.next_submission;
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.submitted = submission;
        }
        let op = self.supervisor.apply(key.clone(), desired);
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = op.await;
            let _ = done.send(Done {
                key,
                submission,
                result,
            });
        });
        submission
    }

    fn finished(&mut self, done: Done) {
        let conflict = matches!(
            &done.result,
            Err(LoadFailure {
                error: StartError::Conflict { .. },
                ..
            })
        );
        let outcome: Outcome = match &done.result {
            Ok(t) => Ok(t.clone()),
            Err(failure) => Err(Refusal {
                key: done.key.clone(),
                app: failure.app.clone(),
                reference: failure.reference.clone(),
                cause: failure.describe(),
            }),
        };
        if let Some(entry) = self.entries.get_mut(&done.key)
            && entry.submitted == done.submission
        {
            entry.tried = true;
            match &done.result {
                Ok(Transition::Superseded) => {}
                Ok(_) => {
                    entry.error = None;
                    entry.state = KeyState::Serving;
                    entry.retry_at = None;
                    entry.backoff = Duration::ZERO;
                }
                Err(failure) => {
                    let message = outcome
                        .as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    tracing::error!(key = %done.key, error = %message, "desired state not applied");
                    entry.error = Some(message);
                    entry.state = if conflict {
                        KeyState::Conflicted
                    } else {
                        KeyState::Failed
                    };
                    if matches!(failure.error, StartError::Load(_)) {
                        // Pulls fail for reasons that pass (registry outages): try again later.
                        entry.backoff = (entry.backoff * 2).clamp(RETRY_FIRST, RETRY_MAX);
                        entry.retry_at = Some(Instant::now() + entry.backoff);
                        tracing::info!(key = %done.key, retry_in = ?entry.backoff, "will retry loading");
                    }
                }
            }
        }
        if let Some(waiter) = self.waiters.remove(&done.submission) {
            self.replies.push((waiter, outcome));
        }
        if !conflict && !matches!(done.result, Ok(Transition::Superseded)) {
            // Something else stopped, moved or failed: keys waiting on a conflict may fit now.
            let retry: Vec<(String, AppSpec)> = self
                .entries
                .iter()
                .filter(|(k, e)| e.state == KeyState::Conflicted && **k != done.key)
                .filter_map(|(k, e)| e.spec.clone().map(|s| (k.clone(), s)))
                .collect();
            for (key, spec) in retry {
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.state = KeyState::Loading;
                }
                self.submit(key, Some(spec));
            }
        }
    }

    /// Resubmit every key whose retry is due.
    fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, AppSpec)> = self
            .entries
            .iter_mut()
            .filter(|(_, e)| e.retry_at.is_some_and(|t| t <= now))
            .filter_map(|(k, e)| {
                e.retry_at = None;
                e.spec.clone().map(|s| (k.clone(), s))
            })
            .collect();
        for (key, spec) in due {
            tracing::info!(%key, reference = %spec.reference, "retrying a failed load");
            self.submit(key, Some(spec));
        }
    }

    fn publish(&self) {
        let status = ReconcileStatus {
            keys: self
                .entries
                .iter()
                .map(|(k, e)| {
                    let status = KeyStatus {
                        spec: e.spec.clone(),
                        state: e.state.clone(),
                        error: e.error.clone(),
                        tried: e.tried,
                    };
                    (k.clone(), status)
                })
                .collect(),
            running: self.supervisor.status(),
        };
        self.status.send_if_modified(|current| {
            if **current == status {
                false
            } else {
                *current = Arc::new(status);
                true
            }
        });
    }
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::tests::supervisor;

    fn reconciler(dir: &std::path::Path) -> Reconciler {
        Reconciler::spawn(supervisor(dir))
    }

    fn spec(dir: &std::path::Path, name: &str) -> AppSpec {
        crate::supervisor::tests::spec(dir, name, "127.0.0.1:0")
    }

    #[tokio::test]
    async fn a_failed_load_is_answered_published_and_settles_readiness() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = reconciler(dir.path());
        let err = r
            .set("shop", Desired::App(spec(dir.path(), "shop")))
            .await
            .expect_err("no registry on port 1");
        let err = err.to_string();
        assert!(
            err.starts_with("shop: app `shop` (127.0.0.1:1/shop:v1) refused: "),
            "{err}"
        );
        let status = r.status().borrow().clone();
        let key = &status.keys["shop"];
        assert_eq!(key.state, KeyState::Failed);
        assert_eq!(key.error.as_deref(), Some(err.as_str()));
        assert!(key.tried && status.settled());
        assert!(status.running.is_empty());
    }

    #[tokio::test]
    async fn an_invalid_entry_is_refused_at_once_and_absent_removes_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = reconciler(dir.path());
        let mut status = r.status();
        let err = r
            .set("a.json", Desired::Invalid("a.json: line 1: oops".into()))
            .await
            .expect_err("invalid");
        assert_eq!(err.to_string(), "a.json: line 1: oops");
        status
            .wait_for(|s| {
                s.keys
                    .get("a.json")
                    .is_some_and(|k| k.state == KeyState::Invalid)
            })
            .await
            .expect("published");
        let gone = r.set("a.json", Desired::Absent).await.expect("absent");
        assert!(matches!(gone, Transition::NotRunning), "{gone:?}");
        status
            .wait_for(|s| s.keys.is_empty())
            .await
            .expect("published");
    }

    #[tokio::test]
    async fn a_newer_desire_supersedes_the_one_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = reconciler(dir.path());
        let first = r.set("shop", Desired::App(spec(dir.path(), "shop")));
        let mut newer_spec = spec(dir.path(), "shop");
        newer_spec.reference = "127.0.0.1:1/shop:v2".into();
        let second = r.set("shop", Desired::App(newer_spec));
        let (first, second) = tokio::join!(first, second);
        // The first either ran before the second arrived or was skipped; the second ran.
        assert!(
            matches!(first, Ok(Transition::Superseded)) || first.is_err(),
            "{first:?}"
        );
        let err = second.expect_err("no registry");
        assert_eq!(err.reference, "127.0.0.1:1/shop:v2");
        let status = r.status().borrow().clone();
        assert_eq!(
            status.keys["shop"]
                .spec
                .as_ref()
                .map(|s| s.reference.as_str()),
            Some("127.0.0.1:1/shop:v2")
        );
    }
}
