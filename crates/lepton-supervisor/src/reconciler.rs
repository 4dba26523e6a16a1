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
//!   the state of every key, with what is running, is published per changed key
//!   ([`Reconciler::status`], see [`status`]) for status files, the API and metrics.
//!
//! The reconciler is a task fed through a channel; [`Reconciler`] is a cheap handle to it. Each
//! event costs O(log keys) plus the keys it touches: retries wait in a queue ordered by time,
//! keys waiting on a conflict in a set of their own, and only touched keys are published.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::AppSpec;
use crate::supervisor::{AppSupervisor, LoadFailure, StartError, Transition};

pub mod status;

use status::KeyUpdate;
pub use status::{KeyState, KeyStatus, ReconcileStatus, StatusBoard, StatusChanges, StatusStream};

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

/// The most events handled between two publications.
const BATCH: usize = 4096;

/// The first and the longest wait before reloading an app that failed to load.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// How often what runs under every key is read again. A lazy app's digest, routes and load
/// state change when it loads or is evicted: those are reported as they happen
/// (`AppSupervisor::load_changes`); this catches anything else that changes beneath.
const REFRESH: Duration = Duration::from_secs(5);

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
    board: Arc<StatusBoard>,
    notify: watch::Receiver<u64>,
    supervisor: AppSupervisor,
}

impl Reconciler {
    /// Start the reconciler task over `supervisor`.
    pub fn spawn(supervisor: AppSupervisor) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let (notify_tx, notify) = watch::channel(0);
        let board = Arc::new(StatusBoard::default());
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let task = Task {
            supervisor: supervisor.clone(),
            entries: BTreeMap::new(),
            retries: BTreeSet::new(),
            conflicted: BTreeSet::new(),
            dirty: BTreeSet::new(),
            waiters: HashMap::new(),
            replies: Vec::new(),
            done_tx,
            board: board.clone(),
            notify: notify_tx,
            next_submission: 0,
        };
        tokio::spawn(task.run(rx, done_rx));
        Self {
            commands,
            board,
            notify,
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

    /// A stream of the published status: which keys changed (after every submission, outcome
    /// and retry) since the stream last looked, read from [`StatusStream::board`].
    pub fn status(&self) -> StatusStream {
        StatusStream::new(self.board.clone(), self.notify.clone())
    }

    /// The published status (each key's, and what runs under it).
    pub fn board(&self) -> &StatusBoard {
        &self.board
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

impl Entry {
    fn status(&self) -> KeyStatus {
        KeyStatus {
            spec: self.spec.clone(),
            state: self.state.clone(),
            error: self.error.clone(),
            tried: self.tried,
        }
    }
}

struct Done {
    key: String,
    submission: u64,
    result: Result<Transition, LoadFailure>,
}

struct Task {
    supervisor: AppSupervisor,
    entries: BTreeMap<String, Entry>,
    /// Scheduled retries by time; an item whose entry no longer has that `retry_at` is stale.
    retries: BTreeSet<(Instant, String)>,
    /// Keys in [`KeyState::Conflicted`] with a spec (retried when something else changes).
    conflicted: BTreeSet<String>,
    /// Keys touched since the last publication.
    dirty: BTreeSet<String>,
    /// Who waits on which submission.
    waiters: HashMap<u64, oneshot::Sender<Outcome>>,
    /// Outcomes to answer once the status that reflects them is published (so a caller that
    /// reads the status after its answer sees it).
    replies: Vec<(oneshot::Sender<Outcome>, Outcome)>,
    done_tx: mpsc::UnboundedSender<Done>,
    board: Arc<StatusBoard>,
    /// The number of the latest change published on `board`.
    notify: watch::Sender<u64>,
    next_submission: u64,
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut done: mpsc::UnboundedReceiver<Done>,
    ) {
        let load_changes = self.supervisor.load_changes();
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.reset();
        loop {
            let retry = self.retries.first().map(|(at, _)| *at);
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
                keys = load_changes.next() => {
                    let known = keys.into_iter().filter(|k| self.entries.contains_key(k));
                    self.dirty.extend(known);
                }
                _ = refresh.tick() => self.dirty.extend(self.entries.keys().cloned()),
            }
            // Take whatever else is ready before publishing: one publication (and one wake-up
            // of each consumer) per burst (10,000 apps starting at once), not one per event.
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

    /// Note that `key`'s entry changed: keep the conflict set in step and publish it.
    fn touch(&mut self, key: &str) {
        let conflicted = self
            .entries
            .get(key)
            .is_some_and(|e| e.state == KeyState::Conflicted && e.spec.is_some());
        if conflicted {
            if !self.conflicted.contains(key) {
                self.conflicted.insert(key.to_string());
            }
        } else {
            self.conflicted.remove(key);
        }
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_string());
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
                self.touch(&key);
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
                self.touch(&key);
                self.replies
                    .push((reply, Err(Refusal::message(&key, message))));
            }
            Desired::Absent => {
                self.entries.remove(&key);
                self.touch(&key);
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
            if let Some(at) = entry.retry_at {
                self.retries.insert((at, to.to_string()));
            }
            self.entries.insert(to.to_string(), entry);
        }
        self.touch(from);
        self.touch(to);
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
                        let at = Instant::now() + entry.backoff;
                        entry.retry_at = Some(at);
                        self.retries.insert((at, done.key.clone()));
                        tracing::info!(key = %done.key, retry_in = ?entry.backoff, "will retry loading");
                    }
                }
            }
        }
        // What runs under the key may have changed, whichever submission this was.
        self.touch(&done.key);
        if let Some(waiter) = self.waiters.remove(&done.submission) {
            self.replies.push((waiter, outcome));
        }
        if !conflict && !matches!(done.result, Ok(Transition::Superseded)) {
            // Something else stopped, moved or failed: keys waiting on a conflict may fit now.
            let retry: Vec<(String, AppSpec)> = self
                .conflicted
                .iter()
                .filter(|k| **k != done.key)
                .filter_map(|k| {
                    let spec = self.entries.get(k)?.spec.clone()?;
                    Some((k.clone(), spec))
                })
                .collect();
            for (key, spec) in retry {
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.state = KeyState::Loading;
                }
                self.touch(&key);
                self.submit(key, Some(spec));
            }
        }
    }

    /// Resubmit every key whose retry is due.
    fn retry_due(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some((at, key)) = self.retries.pop_first() {
            if at > now {
                self.retries.insert((at, key));
                break;
            }
            // Stale unless the entry still waits for this very retry.
            if let Some(entry) = self.entries.get_mut(&key)
                && entry.retry_at == Some(at)
            {
                entry.retry_at = None;
                if let Some(spec) = entry.spec.clone() {
                    due.push((key, spec));
                }
            }
        }
        for (key, spec) in due {
            tracing::info!(%key, reference = %spec.reference, "retrying a failed load");
            self.submit(key, Some(spec));
        }
    }

    /// Publish the keys touched since the last publication: each one's status and what runs
    /// under it (one lookup each, not a walk of every key).
    fn publish(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let updates: Vec<KeyUpdate> = std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|key| KeyUpdate {
                status: self.entries.get(&key).map(Entry::status),
                running: self.supervisor.app_status(&key),
                key,
            })
            .collect();
        if let Some(seq) = self.board.apply(updates) {
            self.notify.send_replace(seq);
        }
    }
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
