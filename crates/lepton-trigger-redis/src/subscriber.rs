//! One pub/sub connection to one Redis server, kept across app versions.
//!
//! Two tasks per server:
//! - the **connection** task connects, `SUBSCRIBE`s to the channels it is told to, and binds
//!   every message to the version current when it arrives ([`RedisVersion`] snapshot plus an
//!   in-flight guard) before queueing it. When the connection drops or cannot be made, it
//!   reconnects with exponential backoff (100 ms doubling to 30 s, reset once subscribed) and
//!   subscribes again. Redis pub/sub is at-most-once: a message published while no connection
//!   is subscribed is lost, as it is with Spin (which does not reconnect at all).
//! - the **dispatch** task handles the queued messages one at a time, in arrival order (Spin's
//!   order), each with every component its version routes the channel to.
//!
//! The queue holds at most the version's `max_queued_requests` messages (at least one); a
//! message arriving to a full queue is dropped and logged with `limit = max_queued_requests`, so
//! a flood cannot grow lepton's memory.
//!
//! The channel set changes through [`Subscriber::set_channels`], which answers once the
//! connection has subscribed to every channel in the set (or, if the server is unreachable, once
//! an attempt has failed: the set is subscribed on reconnect) — what a swap needs to subscribe
//! the new version's channels before the old version's go.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lepton_trigger::{Backoff, Current, InFlightGuard};
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::RedisVersion;
use crate::config::Address;

/// The first reconnect delay.
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// The longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a connection attempt may take (a black-holed server must not stall reconnects).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's subscription: its channels and its two tasks.
pub(crate) struct Subscriber {
    channels: BTreeSet<String>,
    commands: mpsc::UnboundedSender<Command>,
    connection: JoinHandle<()>,
    dispatch: JoinHandle<()>,
}

enum Command {
    /// Subscribe to exactly these channels; answer when done (or when the server is down).
    Channels(BTreeSet<String>, oneshot::Sender<()>),
}

/// One message bound to the version that handles it.
struct Queued {
    version: Arc<RedisVersion>,
    channel: String,
    payload: Vec<u8>,
    _in_flight: InFlightGuard,
}

impl Subscriber {
    /// Start subscribing to `channels` on `address`, handing messages to the version
    /// `current` holds when each arrives. The receiver answers like [`Self::set_channels`].
    pub(crate) fn spawn(
        app: Arc<str>,
        address: Address,
        channels: BTreeSet<String>,
        current: Current<RedisVersion>,
        queue: usize,
    ) -> (Self, oneshot::Receiver<()>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready) = oneshot::channel();
        let (queue_tx, queue_rx) = mpsc::channel(queue.max(1));
        let conn = Connection {
            app: app.clone(),
            address: address.clone(),
            current,
            queue: queue_tx,
        };
        let connection = tokio::spawn(conn.run(channels.clone(), rx, ready_tx));
        let dispatch = tokio::spawn(dispatch(address, queue_rx));
        (
            Self {
                channels,
                commands,
                connection,
                dispatch,
            },
            ready,
        )
    }

    /// The channels it is (or will be, once connected) subscribed to.
    pub(crate) fn channels(&self) -> &BTreeSet<String> {
        &self.channels
    }

    /// Subscribe to exactly `channels` (new ones first, then unsubscribe the others); the
    /// receiver answers once done, or once the server was found down.
    pub(crate) fn set_channels(&mut self, channels: BTreeSet<String>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.channels = channels.clone();
        // If the task is gone the receiver reports it (its sender is dropped).
        let _ = self.commands.send(Command::Channels(channels, tx));
        rx
    }

    /// Close the connection (which unsubscribes); messages already queued are still handled on
    /// their versions. Returns the dispatch task, which ends once the queue is empty.
    pub(crate) fn close(self) -> JoinHandle<()> {
        drop(self.commands);
        self.connection.abort();
        self.dispatch
    }
}

/// What the connection task needs.
struct Connection {
    app: Arc<str>,
    address: Address,
    current: Current<RedisVersion>,
    queue: mpsc::Sender<Queued>,
}

/// What an attempt to connect and subscribe ended with.
enum Session {
    /// The command channel closed: the subscription is over.
    Closed,
    /// The connection failed or dropped; reconnect.
    Lost(String),
}

impl Connection {
    async fn run(
        self,
        mut desired: BTreeSet<String>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        ready: oneshot::Sender<()>,
    ) {
        let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
        let mut waiting = vec![ready];
        loop {
            let reason = match self
                .session(&mut desired, &mut commands, &mut waiting, &mut backoff)
                .await
            {
                Session::Closed => return,
                Session::Lost(reason) => reason,
            };
            // Nobody waits on a server that is down: what they asked for is subscribed on
            // reconnect.
            for w in waiting.drain(..) {
                let _ = w.send(());
            }
            let delay = backoff.next_delay();
            tracing::warn!(
                app = %self.app,
                redis = %self.address.display,
                failures = backoff.failures(),
                retry_in_ms = delay.as_millis() as u64,
                "redis trigger: {reason}; messages published until it is back are lost"
            );
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some(Command::Channels(channels, done)) => {
                            desired = channels;
                            let _ = done.send(());
                        }
                    },
                }
            }
        }
    }

    /// Connect, subscribe to `desired`, then forward messages until the connection drops or the
    /// command channel closes.
    async fn session(
        &self,
        desired: &mut BTreeSet<String>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        waiting: &mut Vec<oneshot::Sender<()>>,
        backoff: &mut Backoff,
    ) -> Session {
        let connect = connect(&self.address.url);
        tokio::pin!(connect);
        let (mut sink, mut stream) = loop {
            tokio::select! {
                result = &mut connect => match result {
                    Ok(split) => break split,
                    Err(e) => return Session::Lost(format!("cannot connect: {e}")),
                },
                cmd = commands.recv() => match cmd {
                    None => return Session::Closed,
                    Some(Command::Channels(channels, done)) => {
                        *desired = channels;
                        waiting.push(done);
                    }
                },
            }
        };
        let mut subscribed = BTreeSet::new();
        if let Err(e) = sync(&mut sink, desired, &mut subscribed).await {
            return Session::Lost(format!("cannot subscribe: {e}"));
        }
        backoff.reset();
        tracing::info!(
            app = %self.app,
            redis = %self.address.display,
            channels = ?subscribed,
            "redis trigger subscribed"
        );
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.enqueue(&msg),
                    None => return Session::Lost("the connection was lost".into()),
                },
                cmd = commands.recv() => match cmd {
                    None => return Session::Closed,
                    Some(Command::Channels(channels, done)) => {
                        *desired = channels;
                        waiting.push(done);
                        if let Err(e) = sync(&mut sink, desired, &mut subscribed).await {
                            return Session::Lost(format!("cannot subscribe: {e}"));
                        }
                        tracing::debug!(app = %self.app, redis = %self.address.display, channels = ?subscribed, "redis trigger channels changed");
                        for w in waiting.drain(..) {
                            let _ = w.send(());
                        }
                    }
                },
            }
        }
    }

    /// Bind a message to the current version and queue it, or drop it (no route in that
    /// version, or a full queue).
    fn enqueue(&self, msg: &redis::Msg) {
        let channel = msg.get_channel_name();
        let version = self.current.load();
        if version.route(&self.address, channel).is_empty() {
            tracing::debug!(app = %self.app, redis = %self.address.display, channel, "redis trigger: no component for this channel in the current version; message dropped");
            return;
        }
        let queued = Queued {
            _in_flight: version.in_flight().enter(),
            version,
            channel: channel.to_string(),
            payload: msg.get_payload_bytes().to_vec(),
        };
        match self.queue.try_send(queued) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(q)) => {
                tracing::warn!(
                    app = %self.app,
                    redis = %self.address.display,
                    channel = %q.channel,
                    limit = "max_queued_requests",
                    "redis trigger: the message queue is full; message dropped"
                );
            }
            // The dispatch task is gone: the subscription is closing.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Open a pub/sub connection, within [`CONNECT_TIMEOUT`].
async fn connect(url: &str) -> Result<(PubSubSink, PubSubStream), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => Ok(pubsub.split()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// Make the connection's subscriptions `desired`: subscribe to the new channels first, then
/// unsubscribe from the ones no longer wanted. One channel per command: the server answers each
/// channel separately, and redis-rs matches one answer to each command.
async fn sync(
    sink: &mut PubSubSink,
    desired: &BTreeSet<String>,
    subscribed: &mut BTreeSet<String>,
) -> redis::RedisResult<()> {
    let added: Vec<String> = desired.difference(subscribed).cloned().collect();
    for channel in added {
        sink.subscribe(&channel).await?;
        subscribed.insert(channel);
    }
    let removed: Vec<String> = subscribed.difference(desired).cloned().collect();
    for channel in removed {
        sink.unsubscribe(&channel).await?;
        subscribed.remove(&channel);
    }
    Ok(())
}

/// Handle queued messages one at a time, in order; ends when the connection task is gone and
/// the queue is empty.
async fn dispatch(address: Address, mut queue: mpsc::Receiver<Queued>) {
    while let Some(q) = queue.recv().await {
        q.version.dispatch(&address, &q.channel, q.payload).await;
    }
}
