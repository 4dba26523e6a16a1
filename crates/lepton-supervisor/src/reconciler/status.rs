//! The reconciler's published status, kept per key so that a change costs what changed, not
//! what exists: with 10,000 apps starting at once, rebuilding (and comparing, and walking) the
//! whole picture at each change made start-up quadratic.
//!
//! A [`StatusBoard`] holds each key's [`KeyStatus`] and the [`RunningAppStatus`] of what serves
//! under it, a sequence number that grows by one per changed key, and a log of the recent
//! changes (key and number). The reconciler updates only the keys an event touched; a consumer
//! ([`StatusStream`]) asks what changed since it last looked and reads only those keys
//! ([`StatusChanges::Keys`]). A consumer that lags behind the log (or looks for the first time)
//! is told to read everything once ([`StatusChanges::All`]). A whole copy is still available
//! ([`StatusBoard::snapshot`]) for whoever needs one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::{AppSpec, RunningAppStatus};

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

/// The whole picture at one moment ([`StatusBoard::snapshot`]).
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

/// The fewest changes the log keeps (it keeps two per key when there are more keys), so a
/// consumer that falls further behind than that reads everything once instead.
const LOG_MIN: usize = 4096;

/// One key's new status and what runs under it (`None`: nothing), as the reconciler publishes
/// it.
pub(crate) struct KeyUpdate {
    pub key: String,
    pub status: Option<KeyStatus>,
    pub running: Option<RunningAppStatus>,
}

#[derive(Default)]
struct Board {
    keys: BTreeMap<String, KeyStatus>,
    running: BTreeMap<String, RunningAppStatus>,
    /// Keys not tried yet (readiness in O(1)).
    untried: usize,
    /// The number of the latest change.
    seq: u64,
    /// The recent changes, oldest first: (number, key).
    log: VecDeque<(u64, String)>,
}

/// Each key's status and what runs under it, with the sequence of changes. Shared by the
/// reconciler (which writes it) and every reader; reads take a short lock.
#[derive(Default)]
pub struct StatusBoard {
    board: Mutex<Board>,
}

impl StatusBoard {
    fn lock(&self) -> MutexGuard<'_, Board> {
        // Plain data: a panic elsewhere while holding the lock leaves it usable.
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply `updates`; returns the number of the latest change if any key changed.
    pub(crate) fn apply(&self, updates: impl IntoIterator<Item = KeyUpdate>) -> Option<u64> {
        let mut board = self.lock();
        let before = board.seq;
        for update in updates {
            let board = &mut *board;
            let same = board.keys.get(&update.key) == update.status.as_ref()
                && board.running.get(&update.key) == update.running.as_ref();
            if same {
                continue;
            }
            let was_untried = board.keys.get(&update.key).is_some_and(|k| !k.tried);
            let is_untried = update.status.as_ref().is_some_and(|k| !k.tried);
            board.untried = board.untried + usize::from(is_untried) - usize::from(was_untried);
            match update.status {
                Some(status) => board.keys.insert(update.key.clone(), status),
                None => board.keys.remove(&update.key),
            };
            match update.running {
                Some(running) => board.running.insert(update.key.clone(), running),
                None => board.running.remove(&update.key),
            };
            board.seq += 1;
            board.log.push_back((board.seq, update.key));
        }
        let keep = LOG_MIN.max(2 * board.keys.len().max(board.running.len()));
        while board.log.len() > keep {
            board.log.pop_front();
        }
        (board.seq != before).then_some(board.seq)
    }

    /// Key `key`'s status, if a source has set it.
    pub fn key(&self, key: &str) -> Option<KeyStatus> {
        self.lock().keys.get(key).cloned()
    }

    /// What runs under key `key`, as of the key's last change.
    pub fn running_app(&self, key: &str) -> Option<RunningAppStatus> {
        self.lock().running.get(key).cloned()
    }

    /// The number of keys a source has set.
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// No key is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key has been tried at least once (a readiness probe's question).
    pub fn settled(&self) -> bool {
        self.lock().untried == 0
    }

    /// The number of the latest change.
    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// A copy of everything (costs every key: for a consumer that starts or lags, not for
    /// each change).
    pub fn snapshot(&self) -> ReconcileStatus {
        let board = self.lock();
        ReconcileStatus {
            keys: board.keys.clone(),
            running: board.running.values().cloned().collect(),
        }
    }

    /// Every key, set or running.
    fn all_keys(&self) -> BTreeSet<String> {
        let board = self.lock();
        board
            .keys
            .keys()
            .chain(board.running.keys())
            .cloned()
            .collect()
    }

    /// What changed after change number `seen` (`None`: never looked), and the latest number.
    fn changes_since(&self, seen: Option<u64>) -> (StatusChanges, u64) {
        let board = self.lock();
        let changes = match seen {
            Some(seen) if seen == board.seq => StatusChanges::Keys(BTreeSet::new()),
            // Every change after `seen` is still in the log.
            Some(seen)
                if board
                    .log
                    .front()
                    .is_some_and(|(first, _)| *first <= seen + 1) =>
            {
                let start = board.log.partition_point(|(n, _)| *n <= seen);
                StatusChanges::Keys(board.log.range(start..).map(|(_, k)| k.clone()).collect())
            }
            _ => StatusChanges::All,
        };
        (changes, board.seq)
    }
}

/// What changed since a [`StatusStream`] last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChanges {
    /// Read every key ([`StatusStream::keys`]): the first look, or the stream fell behind the
    /// log of changes.
    All,
    /// These keys changed (a key set to absent is among them, and no longer on the board).
    Keys(BTreeSet<String>),
}

/// One consumer's view of the status: which keys changed since it last looked. Cheap to
/// create ([`crate::Reconciler::status`]); each has its own position.
pub struct StatusStream {
    board: Arc<StatusBoard>,
    notify: watch::Receiver<u64>,
    seen: Option<u64>,
}

impl StatusStream {
    pub(crate) fn new(board: Arc<StatusBoard>, notify: watch::Receiver<u64>) -> Self {
        Self {
            board,
            notify,
            seen: None,
        }
    }

    /// The board, to read the keys that changed.
    pub fn board(&self) -> &StatusBoard {
        &self.board
    }

    /// What changed since the last call ([`StatusChanges::All`] the first time); does not wait.
    pub fn take(&mut self) -> StatusChanges {
        // Marked seen before reading, so a change published meanwhile wakes the next `changed`.
        self.notify.borrow_and_update();
        let (changes, seq) = self.board.changes_since(self.seen);
        self.seen = Some(seq);
        changes
    }

    /// Wait until something changed since the last look and say what (at once, with
    /// [`StatusChanges::All`], the first time). `None` once the reconciler has stopped.
    pub async fn changed(&mut self) -> Option<StatusChanges> {
        loop {
            if self.seen.is_none_or(|seen| *self.notify.borrow() != seen) {
                let changes = self.take();
                if changes != StatusChanges::Keys(BTreeSet::new()) {
                    return Some(changes);
                }
            }
            self.notify.changed().await.ok()?;
        }
    }

    /// The keys `changes` stands for: every key set or running for [`StatusChanges::All`].
    pub fn keys(&self, changes: StatusChanges) -> BTreeSet<String> {
        match changes {
            StatusChanges::All => self.board.all_keys(),
            StatusChanges::Keys(keys) => keys,
        }
    }

    /// Wait until `done` holds of the board (checked now and after each change). `None` if the
    /// reconciler stopped first.
    pub async fn wait_for(&mut self, mut done: impl FnMut(&StatusBoard) -> bool) -> Option<()> {
        loop {
            self.take();
            if done(&self.board) {
                return Some(());
            }
            self.notify.changed().await.ok()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(tried: bool) -> KeyStatus {
        KeyStatus {
            spec: None,
            state: if tried {
                KeyState::Failed
            } else {
                KeyState::Loading
            },
            error: tried.then(|| "no".to_string()),
            tried,
        }
    }

    fn update(key: &str, status: Option<KeyStatus>) -> KeyUpdate {
        KeyUpdate {
            key: key.to_string(),
            status,
            running: None,
        }
    }

    fn board() -> (Arc<StatusBoard>, watch::Sender<u64>, StatusStream) {
        let board = Arc::new(StatusBoard::default());
        let (tx, rx) = watch::channel(0);
        let stream = StatusStream::new(board.clone(), rx);
        (board, tx, stream)
    }

    fn keys(list: &[&str]) -> StatusChanges {
        StatusChanges::Keys(list.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn only_real_changes_are_numbered_and_readiness_is_counted() {
        let (board, _tx, _) = board();
        assert_eq!(board.apply([update("a", Some(status(false)))]), Some(1));
        assert!(!board.settled());
        assert_eq!(board.apply([update("a", Some(status(false)))]), None);
        assert_eq!(board.apply([update("a", Some(status(true)))]), Some(2));
        assert!(board.settled());
        assert_eq!(board.apply([update("a", None)]), Some(3));
        assert!(board.is_empty() && board.settled());
    }

    #[tokio::test]
    async fn a_stream_sees_everything_first_then_each_changed_key() {
        let (board, tx, mut stream) = board();
        assert_eq!(stream.changed().await, Some(StatusChanges::All));
        let seq = board.apply([update("a", Some(status(false)))]);
        tx.send_replace(seq.unwrap_or_default());
        assert_eq!(stream.changed().await, Some(keys(&["a"])));
        let seq = board.apply([
            update("b", Some(status(false))),
            update("a", Some(status(true))),
            update("b", None),
        ]);
        tx.send_replace(seq.unwrap_or_default());
        assert_eq!(stream.changed().await, Some(keys(&["a", "b"])));
        assert_eq!(stream.take(), keys(&[]));
        drop(tx);
        assert_eq!(stream.changed().await, None);
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_the_log_reads_everything() {
        let (board, tx, mut stream) = board();
        board.apply([update("b", Some(status(true)))]);
        stream.take();
        // More changes of one key than the log keeps.
        for i in 0..=LOG_MIN {
            let seq = board.apply([update("a", Some(status(i % 2 == 0)))]);
            tx.send_replace(seq.unwrap_or_default());
        }
        assert_eq!(stream.changed().await, Some(StatusChanges::All));
        let all = stream.keys(StatusChanges::All);
        assert_eq!(all.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }
}
