//! PING keep-alive of an HTTP/2 upstream connection: every `interval` a PING goes to the peer,
//! and a peer that does not answer within `timeout` is taken for gone, so the connection is
//! closed and its streams fail instead of waiting on a dead socket (a NAT or firewall that
//! dropped the flow, a peer that froze).
//!
//! Polled by the connection's task with the connection itself: one deadline check per wake-up,
//! no timer reset per frame.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use h2::{Ping, PingPong};
use tokio::time::{sleep, Instant, Sleep};

/// The keep-alive state of one connection.
pub(super) struct KeepAlive {
    /// `None` when h2 gave the PING handle to someone else (it never does here).
    ping_pong: Option<PingPong>,
    interval: Duration,
    timeout: Duration,
    /// When the next PING goes out, or when the outstanding one times out.
    deadline: Pin<Box<Sleep>>,
    /// A PING is out and its answer awaited.
    awaiting: bool,
}

impl KeepAlive {
    pub(super) fn new(ping_pong: Option<PingPong>, interval: Duration, timeout: Duration) -> Self {
        KeepAlive {
            ping_pong,
            interval,
            timeout,
            deadline: Box::pin(sleep(interval)),
            awaiting: false,
        }
    }

    /// Ready once the peer failed to answer a PING within the timeout (or the PING could not be
    /// sent: the connection is closing).
    pub(super) fn poll_timed_out(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(ping_pong) = &mut self.ping_pong else {
            return Poll::Pending;
        };
        loop {
            if self.awaiting {
                match ping_pong.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.awaiting = false;
                        let next = Instant::now() + self.interval;
                        self.deadline.as_mut().reset(next);
                        continue;
                    }
                    // The connection is ending; its own poll reports why.
                    Poll::Ready(Err(_)) => return Poll::Pending,
                    Poll::Pending => {}
                }
            }
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.awaiting {
                return Poll::Ready(());
            }
            if ping_pong.send_ping(Ping::opaque()).is_err() {
                return Poll::Pending;
            }
            self.awaiting = true;
            let timeout = Instant::now() + self.timeout;
            self.deadline.as_mut().reset(timeout);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A peer that completes the HTTP/2 handshake and then freezes (its socket stays open,
    /// nothing more is read or written): the PING goes unanswered, so the keep-alive reports
    /// the connection dead after interval + timeout, not before.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_ping_times_out_after_interval_plus_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let _frozen = socket;
            std::future::pending::<()>().await;
        });
        let socket = TcpStream::connect(addr).await.unwrap();
        let (_sender, mut connection) = h2::client::handshake(socket).await.unwrap();
        let interval = Duration::from_secs(30);
        let timeout = Duration::from_secs(10);
        let mut keep_alive = KeepAlive::new(connection.ping_pong(), interval, timeout);
        let started = Instant::now();
        let judged = std::future::poll_fn(|cx| {
            if keep_alive.poll_timed_out(cx).is_ready() {
                return Poll::Ready(true);
            }
            Pin::new(&mut connection).poll(cx).map(|_| false)
        });
        // Bounded, so a keep-alive that never judges fails the test instead of hanging it.
        let timed_out = tokio::time::timeout(Duration::from_secs(3600), judged)
            .await
            .unwrap_or(false);
        assert!(
            timed_out,
            "the connection ended before the keep-alive judged it"
        );
        assert_eq!(started.elapsed(), interval + timeout);
        server.abort();
    }
}
