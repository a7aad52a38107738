//! The HTTP/2 idle timeout.
//!
//! hyper closes an idle HTTP/1 connection through its timer (see `conn_timer.rs`) but has no
//! idle timeout for HTTP/2: a client that keeps a connection open without streams would hold a
//! `max_connections` slot and a file descriptor forever (nginx closes such connections after
//! `keepalive_timeout`, HAProxy after `timeout client`). Each HTTP/2 request holds a
//! [`StreamGuard`] until its response body is finished or dropped; a connection that has had no
//! open stream for `idle_timeout` is shut down gracefully (GOAWAY, then close).
//!
//! A connection that has carried an HTTP/1 request is left to hyper's HTTP/1 timer. One that has
//! carried no request at all is judged here like an idle HTTP/2 one: either way it has been
//! silent for `idle_timeout`.
//!
//! The same guard notices a stream the client cancels before its response head and spends the
//! connection's [`CancelBudget`]; a connection over budget is closed (paced rapid reset).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::cancel_budget::CancelBudget;

/// What the streams of one client connection are doing.
#[derive(Debug)]
pub struct StreamActivity {
    epoch: Instant,
    open: AtomicUsize,
    /// Milliseconds after `epoch` when the last stream opened or finished.
    last_change_ms: AtomicU64,
    http1: AtomicBool,
    cancels: CancelBudget,
    over_cancel_budget: Notify,
}

impl StreamActivity {
    /// A connection that has just been accepted.
    pub fn new() -> Arc<Self> {
        Arc::new(StreamActivity {
            epoch: Instant::now(),
            open: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
            http1: AtomicBool::new(false),
            cancels: CancelBudget::new(),
            over_cancel_budget: Notify::new(),
        })
    }

    /// An HTTP/2 stream opened; it stays open until the guard is dropped.
    pub fn stream_opened(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.stamp();
        StreamGuard {
            activity: self.clone(),
            answered: false,
        }
    }

    /// The connection speaks HTTP/1, whose idle time hyper's timer already bounds.
    pub fn saw_http1(&self) {
        if !self.http1.load(Ordering::Relaxed) {
            self.http1.store(true, Ordering::Relaxed);
        }
    }

    fn stamp(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_change_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection will have been idle for `timeout` if nothing happens meanwhile;
    /// `None` if that moment has passed (the connection is idle) — or never comes because the
    /// connection is HTTP/1.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        let now = Instant::now();
        if self.http1.load(Ordering::Relaxed) || self.open.load(Ordering::Relaxed) > 0 {
            return Some(now + timeout);
        }
        let last = self.epoch + Duration::from_millis(self.last_change_ms.load(Ordering::Relaxed));
        let deadline = last + timeout;
        (deadline > now).then_some(deadline)
    }

    /// Resolves once the connection has had no open stream for `timeout`. Never resolves for
    /// an HTTP/1 connection.
    pub async fn idle_for(&self, timeout: Duration) {
        while let Some(deadline) = self.idle_deadline(timeout) {
            tokio::time::sleep_until(deadline).await;
        }
    }

    /// Resolves once the client has cancelled more requests than its budget allows.
    pub async fn over_cancel_budget(&self) {
        self.over_cancel_budget.notified().await;
    }
}

/// One open HTTP/2 stream; dropping it marks the stream finished, and dropping it before
/// [`StreamGuard::answered`] counts a cancelled request.
#[derive(Debug)]
pub struct StreamGuard {
    activity: Arc<StreamActivity>,
    answered: bool,
}

impl StreamGuard {
    /// The response head is ready: from here on the stream is not a cancelled request.
    pub fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let activity = &self.activity;
        activity.open.fetch_sub(1, Ordering::Relaxed);
        activity.stamp();
        if !self.answered && !activity.cancels.spend() {
            // notify_one keeps the permit if the connection's select loop is not waiting yet.
            activity.over_cancel_budget.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_after_the_last_stream_finished_plus_the_timeout() {
        let timeout = Duration::from_secs(10);
        let activity = StreamActivity::new();
        let guard = activity.stream_opened();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(
            activity.idle_deadline(timeout).is_some(),
            "an open stream is never idle"
        );
        drop(guard);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(activity.idle_deadline(timeout).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(activity.idle_deadline(timeout).is_none());
        // idle_for returns at once now, without advancing the clock.
        let before = Instant::now();
        activity.idle_for(timeout).await;
        assert_eq!(before, Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_any_request_is_idle_after_the_timeout() {
        let activity = StreamActivity::new();
        let started = Instant::now();
        activity.idle_for(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn streams_dropped_before_their_answer_spend_the_cancel_budget() {
        let activity = StreamActivity::new();
        for _ in 0..CancelBudget::BURST {
            let mut answered = activity.stream_opened();
            answered.answered();
            drop(answered);
            drop(activity.stream_opened());
        }
        // BURST cancellations spent, none of the answered streams counted: the next one is over.
        let over = activity.over_cancel_budget();
        tokio::pin!(over);
        assert!(futures_poll_once(over.as_mut()).is_pending());
        drop(activity.stream_opened());
        over.await;
    }

    fn futures_poll_once<F: std::future::Future>(
        future: std::pin::Pin<&mut F>,
    ) -> std::task::Poll<F::Output> {
        let waker = std::task::Waker::noop();
        future.poll(&mut std::task::Context::from_waker(waker))
    }

    #[tokio::test(start_paused = true)]
    async fn an_http1_connection_is_left_to_hypers_timer() {
        let activity = StreamActivity::new();
        activity.saw_http1();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(activity.idle_deadline(Duration::from_secs(5)).is_some());
    }
}
