//! One guest stream's buffer in front of a [`RotatingLog`]: what WASI's `get-stdout` /
//! `get-stderr` (WASIp2) and `write-via-stream` (WASIp3) hand to an instance.
//!
//! A guest's `println!` is a write and a flush per line, so a flush cannot be an append (an open
//! per line). Instead the flush is debounced: the first flush of a quiet stream appends its whole
//! lines at once (a request that prints one line costs one append, and its line is in the file
//! before the response goes out); flushes within [`FLUSH_DELAY`] of an append leave their lines
//! to a timer task (armed only while something waits) that appends them [`FLUSH_DELAY`] after
//! the first write. Whole lines are also appended once [`BUFFER_BYTES`] are buffered, and
//! everything when the stream ends: dropped with its store, or shut down. An instance printing
//! many lines per request thus costs about two appends per request (or per [`FLUSH_DELAY`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::time::Instant;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::{BUFFER_BYTES, FLUSH_DELAY, RotatingLog};

/// A buffered stream onto a component's log file, for one guest instance. Never fails a write;
/// everything buffered is appended when it is dropped.
pub struct LogWriter {
    log: RotatingLog,
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// A timer task will append the whole lines of `buf` ([`FLUSH_DELAY`] after it was armed).
    timer_armed: bool,
    /// When this stream last appended to the file.
    last_append: Option<Instant>,
}

impl LogWriter {
    pub(super) fn new(log: RotatingLog) -> Self {
        Self {
            log,
            pending: Arc::default(),
        }
    }

    /// Buffer `bytes`; append whole lines once [`BUFFER_BYTES`] are buffered.
    pub fn write(&self, bytes: &[u8]) {
        let mut pending = lock(&self.pending);
        pending.buf.extend_from_slice(bytes);
        if pending.buf.len() >= BUFFER_BYTES {
            let mut n = whole_lines(&pending.buf);
            if pending.buf.len() - n >= BUFFER_BYTES {
                // One line longer than the buffer: written as it is.
                n = pending.buf.len();
            }
            pending.emit(&self.log, n);
        }
        if !pending.buf.is_empty() && !pending.timer_armed {
            self.arm_timer(&mut pending);
        }
    }

    /// The guest's flush: append the whole lines buffered now if this stream has not appended
    /// for [`FLUSH_DELAY`], else leave them to the timer.
    pub fn guest_flush(&self) {
        let mut pending = lock(&self.pending);
        if pending
            .last_append
            .is_some_and(|at| at.elapsed() < FLUSH_DELAY)
        {
            return;
        }
        let n = whole_lines(&pending.buf);
        pending.emit(&self.log, n);
    }

    /// Append everything buffered, an unterminated last line included.
    pub fn flush_all(&self) {
        let mut pending = lock(&self.pending);
        let n = pending.buf.len();
        pending.emit(&self.log, n);
    }

    /// Append the buffer's whole lines [`FLUSH_DELAY`] from now, unless the writer is gone by
    /// then (its drop appended everything). Outside a tokio runtime there is no timer: the
    /// buffer waits for the next write past [`BUFFER_BYTES`] or the drop.
    fn arm_timer(&self, pending: &mut Pending) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        pending.timer_armed = true;
        let weak: Weak<Mutex<Pending>> = Arc::downgrade(&self.pending);
        let log = self.log.clone();
        runtime.spawn(async move {
            tokio::time::sleep(FLUSH_DELAY).await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let mut pending = lock(&shared);
            pending.timer_armed = false;
            let n = whole_lines(&pending.buf);
            pending.emit(&log, n);
        });
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.flush_all();
    }
}

impl Pending {
    /// Append the first `n` bytes of the buffer (whole lines) and remove them. Failures are the
    /// log's to report; the guest never sees them.
    fn emit(&mut self, log: &RotatingLog, n: usize) {
        if n == 0 {
            return;
        }
        let _ = log.append(&self.buf[..n]);
        self.last_append = Some(Instant::now());
        self.buf.drain(..n);
        if self.buf.is_empty() && self.buf.capacity() > 2 * BUFFER_BYTES {
            self.buf.shrink_to(BUFFER_BYTES);
        }
    }
}

/// The length of `buf` up to and including its last newline (0 without one).
fn whole_lines(buf: &[u8]) -> usize {
    buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

fn lock(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

impl IsTerminal for RotatingLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for RotatingLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    /// Directly, rather than wasmtime's default adapter (a task and a channel per stream).
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }
}

impl Pollable for LogWriter {
    // `#[async_trait]`'s expansion of `async fn ready(&mut self) {}`: always writable.
    fn ready<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(std::future::ready(()))
    }
}

impl OutputStream for LogWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        LogWriter::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.guest_flush();
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(BUFFER_BYTES)
    }
}

impl tokio::io::AsyncWrite for LogWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(BUFFER_BYTES);
        self.write(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.guest_flush();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.flush_all();
        Poll::Ready(Ok(()))
    }
}
