//! The demo's built-in backends: a healthy primary and a canary with a configurable error rate
//! and extra latency. Both answer after a few milliseconds of simulated work.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::TcpListener;

/// A running built-in backend.
pub struct Backend {
    addr: SocketAddr,
}

impl Backend {
    /// Serve on an ephemeral loopback port until the runtime stops.
    pub async fn start(
        name: &'static str,
        error_rate: f64,
        extra_latency: Duration,
    ) -> std::io::Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service =
                        service_fn(move |_request| answer(name, error_rate, extra_latency));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Backend { addr })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn answer(
    name: &'static str,
    error_rate: f64,
    extra_latency: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (work_ms, fails) = {
        let mut rng = rand::rng();
        (
            rng.random_range(2..8u64),
            rng.random_bool(error_rate.clamp(0.0, 1.0)),
        )
    };
    tokio::time::sleep(Duration::from_millis(work_ms) + extra_latency).await;
    let (status, body) = if fails {
        (StatusCode::INTERNAL_SERVER_ERROR, "injected failure\n")
    } else {
        (
            StatusCode::OK,
            if name == "primary" {
                "hello from v1\n"
            } else {
                "hello from v2\n"
            },
        )
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    Ok(response)
}
