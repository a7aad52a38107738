//! Two timeouts on an HTTP/1 client connection that hyper alone would merge into one.
//!
//! hyper starts its header-read timer as soon as a keep-alive connection goes idle, so on its
//! own `header_read_timeout` (10 s) would also close idle keep-alive clients long before
//! `idle_timeout` (90 s). [`HeadTimer`] is the `Timer` hyper's HTTP/1 side uses for that one
//! deadline: while no byte of the next request has arrived it waits `idle_timeout`; from the
//! first byte on, the head must be complete within `header_read_timeout`. The very first request
//! of a connection gets `header_read_timeout` from the accept, as a slowloris guard. Bytes put
//! back for a round of `http1_rounds.rs` are counted again when hyper reads them
//! (`rewind.rs` sits under [`CountingIo`]), so a head that starts in them is a started head.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use tokio::io::{AsyncRead, ReadBuf};

use super::write_through::write_through;

/// Bytes read so far on one client connection.
#[derive(Debug, Default)]
pub struct ReadActivity {
    bytes: AtomicU64,
}

impl ReadActivity {
    fn bytes(&self) -> u64 {
        // One connection is served by one task, so relaxed ordering is enough.
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A client socket that counts the bytes it reads into a [`ReadActivity`].
#[derive(Debug)]
pub struct CountingIo<T> {
    inner: T,
    activity: Arc<ReadActivity>,
}

impl<T> CountingIo<T> {
    /// Wrap a socket.
    pub fn new(inner: T, activity: Arc<ReadActivity>) -> Self {
        CountingIo { inner, activity }
    }

    /// The socket underneath.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The socket underneath.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            self.activity.bytes.fetch_add(read, Ordering::Relaxed);
        }
        polled
    }
}

write_through!(CountingIo);

/// hyper's HTTP/1 timer for one connection: idle keep-alive vs request-head deadlines.
#[derive(Debug, Clone)]
pub struct HeadTimer {
    activity: Arc<ReadActivity>,
    idle_timeout: Duration,
    header_read_timeout: Duration,
}

impl HeadTimer {
    /// A timer reading this connection's activity.
    pub fn new(
        activity: Arc<ReadActivity>,
        idle_timeout: Duration,
        header_read_timeout: Duration,
    ) -> Self {
        HeadTimer {
            activity,
            idle_timeout,
            header_read_timeout,
        }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(PlainSleep(Box::pin(tokio::time::sleep(duration))))
    }

    /// hyper's HTTP/1 server asks for exactly one deadline: the next request head's.
    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let now = tokio::time::Instant::now();
        let bytes_at_start = self.activity.bytes();
        let first_request = bytes_at_start == 0;
        let wait = if first_request {
            self.header_read_timeout
        } else {
            self.idle_timeout
        };
        Box::pin(HeadDeadline {
            activity: self.activity.clone(),
            bytes_at_start,
            head_started: first_request,
            header_read_timeout: self.header_read_timeout,
            sleep: Box::pin(tokio::time::sleep_until(now + wait)),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        *sleep = self.sleep_until(new_deadline);
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

struct PlainSleep(Pin<Box<tokio::time::Sleep>>);

impl std::future::Future for PlainSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Sleep for PlainSleep {}

struct HeadDeadline {
    activity: Arc<ReadActivity>,
    bytes_at_start: u64,
    head_started: bool,
    header_read_timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl std::future::Future for HeadDeadline {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this right after each read that left the head incomplete, so the first
        // poll that sees new bytes is (to within one read) when the head started arriving.
        if !self.head_started && self.activity.bytes() != self.bytes_at_start {
            self.head_started = true;
            let deadline = tokio::time::Instant::now() + self.header_read_timeout;
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadDeadline {}
