//! Accepted connections spread over the workers (`docs/performance.md#accept-balancing`): two
//! connections from one client never share a worker while another worker has none, whatever
//! the kernel's `SO_REUSEPORT` hash chose.
//!
//! What shows the worker from outside: each worker keeps its own pool of upstream connections.
//! Requests sent one after the other from two client connections on the same worker go over
//! that worker's one pooled upstream connection; on two workers they need two.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;
use tokio::net::TcpStream;

/// Send one bodiless request on `stream` and read its whole answer.
async fn exchange(stream: &mut TcpStream) {
    raw_exchange(stream, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
}

#[tokio::test]
async fn two_connections_from_one_client_are_served_by_two_workers() {
    // base_config runs two workers. The kernel's hash alone puts both connections on one
    // worker half the time: eight tries leave a missing balance unnoticed 1 time in 256.
    for attempt in 0..8 {
        let up = Upstream::start("app").await;
        let proxy = Canaryd::start(&(base_config("", "") + &app_route(&up)));
        let mut first = TcpStream::connect(proxy.addr).await.unwrap();
        let mut second = TcpStream::connect(proxy.addr).await.unwrap();
        exchange(&mut first).await;
        // Let the first answer's upstream connection go back to its worker's pool.
        tokio::time::sleep(Duration::from_millis(50)).await;
        exchange(&mut second).await;
        assert_eq!(
            up.connections(),
            2,
            "attempt {attempt}: both client connections were served by one worker"
        );
        drop((first, second));
    }
}
