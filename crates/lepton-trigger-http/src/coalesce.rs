//! Sending a response's head with its first body bytes, in one write.
//!
//! A guest produces its response body on its own task, after the head. hyper writes the head
//! as soon as a poll of the body finds nothing ready, and sends the body in a later write.
//! Each extra write on a connection is one more TCP segment, one more wake-up of the client,
//! and one more read.
//!
//! Measured with `strace -c` on hello-p3 under `wrk -c32` (reused instances): 47,452 `writev`s
//! for 31,410 requests. In a `perf --call-graph dwarf` profile of the same run, `writev`
//! (including the loopback delivery to the client) was 22% of lepton's CPU.
//!
//! [`first_frames`] looks at what the body has ready: first at once, then after each of at
//! most [`YIELDS`] turns of the scheduler, which is time for the guest to write a small
//! response. It stops at the end of the body, at trailers, or after [`MAX_PEEK`] bytes or
//! [`MAX_PEEK_FRAMES`] frames, and hands hyper the response with what it found, replayed
//! first. The head is delayed by a few task switches at most, never by a timer: a body that
//! streams slowly still gets its head out at once. The framing hyper chooses is unchanged (the size hint is the body's own).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiBody;

/// Scheduler turns given to the guest to produce its first bytes.
pub const YIELDS: usize = 2;
/// At most this much of a body is read ahead.
pub const MAX_PEEK: usize = 64 * 1024;
/// At most this many frames are read ahead, whatever their size: a guest writing empty chunks
/// as fast as it can must not keep the read-ahead going, nor its buffer growing.
pub const MAX_PEEK_FRAMES: usize = 64;

type FrameResult = Result<Frame<Bytes>, wasmtime_wasi_http::Error>;

/// `res` with whatever its body has ready within [`YIELDS`] scheduler turns read ahead, so that
/// hyper writes it with the head.
pub async fn first_frames(res: Response<WasiBody>) -> Response<WasiBody> {
    if res.body().is_end_stream() {
        return res;
    }
    let (parts, mut body) = res.into_parts();
    let initial = body.size_hint();
    let mut frames = VecDeque::new();
    let mut ended = false;
    let mut bytes = 0;
    'peek: for round in 0..=YIELDS {
        loop {
            // Polled without a waker: nothing waits on it, the next round polls again.
            let polled = Pin::new(&mut body).poll_frame(&mut Context::from_waker(Waker::noop()));
            match polled {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    ended = true;
                    break 'peek;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    bytes += frame.data_ref().map_or(0, Bytes::len);
                    let last = frame.is_trailers()
                        || bytes >= MAX_PEEK
                        || frames.len() + 1 >= MAX_PEEK_FRAMES;
                    frames.push_back(Ok(frame));
                    if last {
                        break 'peek;
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    frames.push_back(Err(err));
                    break 'peek;
                }
            }
        }
        if round < YIELDS {
            tokio::task::yield_now().await;
        }
    }
    if frames.is_empty() && !ended {
        return Response::from_parts(parts, body);
    }
    let peeked = Peeked {
        frames,
        ended,
        initial: Some(initial),
        rest: body,
    };
    Response::from_parts(parts, peeked.boxed_unsync())
}

/// A body whose first frames were read ahead: those, then the rest of it.
struct Peeked {
    frames: VecDeque<FrameResult>,
    /// The body ended while being read ahead.
    ended: bool,
    /// The body's size hint before it was read from, until the first frame is taken.
    initial: Option<SizeHint>,
    rest: WasiBody,
}

impl Body for Peeked {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        self.initial = None;
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(frame));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && (self.ended || self.rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.initial {
            Some(hint) => *hint,
            None if self.frames.is_empty() && self.ended => SizeHint::with_exact(0),
            None if self.frames.is_empty() => self.rest.size_hint(),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{Full, StreamBody};
    use tokio::sync::mpsc;

    fn response(
        body: impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
    ) -> Response<WasiBody> {
        Response::new(body.boxed_unsync())
    }

    /// A body fed through a channel, as a guest's is, counting how often it is polled.
    fn channel() -> (
        mpsc::UnboundedSender<FrameResult>,
        Response<WasiBody>,
        Arc<AtomicUsize>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<FrameResult>();
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = polls.clone();
        let stream = futures::stream::poll_fn(move |cx| {
            counted.fetch_add(1, Ordering::SeqCst);
            rx.poll_recv(cx)
        });
        (tx, response(StreamBody::new(stream)), polls)
    }

    #[tokio::test]
    async fn a_body_written_within_a_scheduler_turn_is_read_ahead_whole() {
        let (tx, res, polls) = channel();
        // The guest writes on its own task, after the head.
        tokio::spawn(async move {
            tx.send(Ok(Frame::data(Bytes::from_static(b"hello "))))
                .unwrap();
            tx.send(Ok(Frame::data(Bytes::from_static(b"world"))))
                .unwrap();
        });
        let res = first_frames(res).await;
        let read_ahead = polls.load(Ordering::SeqCst);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello world");
        // Everything, its end included, was read before the head was handed on.
        assert_eq!(polls.load(Ordering::SeqCst), read_ahead);
    }

    #[tokio::test]
    async fn a_body_with_nothing_ready_is_handed_on_and_streams_later() {
        let (tx, res, _) = channel();
        let res = first_frames(res).await;
        // Nothing came within the scheduler turns: the head goes out without waiting more.
        let reader = tokio::spawn(async move { res.into_body().collect().await });
        tokio::task::yield_now().await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"late"))))
            .unwrap();
        drop(tx);
        let body = reader.await.unwrap().unwrap().to_bytes();
        assert_eq!(&body[..], b"late");
    }

    #[tokio::test]
    async fn a_partly_ready_body_replays_what_was_read_then_the_rest() {
        let (tx, res, _) = channel();
        tx.send(Ok(Frame::data(Bytes::from_static(b"first "))))
            .unwrap();
        let res = first_frames(res).await;
        assert!(!res.body().is_end_stream());
        tx.send(Ok(Frame::data(Bytes::from_static(b"second"))))
            .unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-t", http::HeaderValue::from_static("1"));
        tx.send(Ok(Frame::trailers(trailers))).unwrap();
        drop(tx);
        let collected = res.into_body().collect().await.unwrap();
        assert_eq!(
            collected.trailers().and_then(|t| t.get("x-t")).unwrap(),
            "1"
        );
        assert_eq!(&collected.to_bytes()[..], b"first second");
    }

    #[tokio::test]
    async fn an_error_read_ahead_is_still_the_clients_error() {
        let (tx, res, _) = channel();
        tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
            .unwrap();
        tx.send(Err(wasmtime_wasi_http::Error::ConnectionTerminated))
            .unwrap();
        let res = first_frames(res).await;
        assert!(res.into_body().collect().await.is_err());
    }

    #[tokio::test]
    async fn the_size_hint_hyper_frames_by_is_the_bodys_own() {
        let full = response(Full::new(Bytes::from_static(b"12345")).map_err(|e| match e {}));
        let hint = first_frames(full).await.body().size_hint();
        assert_eq!(hint.exact(), Some(5));
        let (tx, res, _) = channel();
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .unwrap();
        drop(tx);
        let hint = first_frames(res).await.body().size_hint();
        assert_eq!(hint.exact(), None, "a chunked body stays chunked");
    }

    #[tokio::test]
    async fn a_flood_of_empty_chunks_is_read_ahead_only_so_far() {
        let (tx, res, polls) = channel();
        for _ in 0..10_000 {
            tx.send(Ok(Frame::data(Bytes::new()))).unwrap();
        }
        tx.send(Ok(Frame::data(Bytes::from_static(b"end"))))
            .unwrap();
        drop(tx);
        let res = first_frames(res).await;
        assert_eq!(polls.load(Ordering::SeqCst), MAX_PEEK_FRAMES);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"end");
    }
}
