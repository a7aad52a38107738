//! The demo's load generator: `rps` requests per second through the proxy, over a few
//! keep-alive connections, like any client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Concurrent client connections.
const CONNECTIONS: u32 = 8;

/// Send requests until aborted.
pub async fn generate(proxy: SocketAddr, rps: u32) {
    let per_connection = (f64::from(rps.max(1)) / f64::from(CONNECTIONS)).max(0.1);
    let pause = Duration::from_secs_f64(1.0 / per_connection);
    let mut clients = Vec::new();
    for i in 0..CONNECTIONS {
        // Stagger the connections so requests spread evenly over each second.
        let offset = pause.mul_f64(f64::from(i) / f64::from(CONNECTIONS));
        clients.push(tokio::spawn(client(proxy, pause, offset)));
    }
    for client in clients {
        let _ = client.await;
    }
}

async fn client(proxy: SocketAddr, pause: Duration, offset: Duration) {
    tokio::time::sleep(offset).await;
    let mut ticker = tokio::time::interval(pause);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Ok(stream) = TcpStream::connect(proxy).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, connection)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            continue;
        };
        tokio::spawn(connection);
        let mut user = 0u32;
        loop {
            ticker.tick().await;
            user = user.wrapping_add(1);
            let request = Request::get(format!("/products/{}", user % 50))
                .header(http::header::HOST, "shop.demo")
                .body(Empty::<Bytes>::new());
            let Ok(request) = request else { break };
            match sender.send_request(request).await {
                Ok(response) => {
                    let _ = response.into_body().collect().await;
                }
                Err(_) => break,
            }
        }
    }
}
