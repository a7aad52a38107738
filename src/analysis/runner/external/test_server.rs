//! A metrics server on a loopback socket for the external metrics' tests, plain or TLS: each
//! request is answered with what the test's function says for its target, and kept.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the server saw of one request: target, `authorization` header, body.
pub(in crate::analysis) type Seen = Arc<Mutex<Vec<(String, Option<String>, String)>>>;

/// The answer (status, JSON body) to a request target (`/api/v1/query?query=…`).
pub(in crate::analysis) type Answer = Arc<dyn Fn(&str) -> (StatusCode, String) + Send + Sync>;

/// A running metrics server.
pub(in crate::analysis) struct MetricsServer {
    pub(in crate::analysis) addr: SocketAddr,
    pub(in crate::analysis) seen: Seen,
    scheme: &'static str,
}

impl MetricsServer {
    /// Plain HTTP.
    pub(in crate::analysis) async fn start(answer: Answer) -> MetricsServer {
        MetricsServer::serve(answer, None).await
    }

    /// HTTPS with `acceptor`'s certificate.
    pub(in crate::analysis) async fn start_tls(
        answer: Answer,
        acceptor: TlsAcceptor,
    ) -> MetricsServer {
        MetricsServer::serve(answer, Some(acceptor)).await
    }

    async fn serve(answer: Answer, tls: Option<TlsAcceptor>) -> MetricsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, answer) = (Arc::clone(&log), Arc::clone(&answer));
                match &tls {
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            // A client that does not trust the certificate ends here.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(stream, log, answer).await;
                            }
                        });
                    }
                    None => {
                        tokio::spawn(serve_connection(stream, log, answer));
                    }
                }
            }
        });
        MetricsServer { addr, seen, scheme }
    }

    /// The URL of `path` on this server.
    pub(in crate::analysis) fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The requests seen so far.
    pub(in crate::analysis) fn seen(&self) -> Vec<(String, Option<String>, String)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_connection<S>(stream: S, log: Seen, answer: Answer)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let (log, answer) = (Arc::clone(&log), Arc::clone(&answer));
        async move {
            let target = request.uri().to_string();
            let auth = request
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = request.into_body().collect().await.unwrap().to_bytes();
            log.lock().unwrap().push((
                target.clone(),
                auth,
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let (status, body) = answer(&target);
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The PromQL of a Prometheus instant query's target (`/api/v1/query?query=…`), decoded.
pub(in crate::analysis) fn prometheus_query(target: &str) -> Option<String> {
    let (_, query) = target.split_once("query=")?;
    let encoded = query.split('&').next()?;
    Some(
        percent_encoding::percent_decode_str(encoded)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// A Prometheus answer holding one sample of `value`.
pub(in crate::analysis) fn prometheus_sample(value: f64) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000.1,"{value}"]}}]}}}}"#
    )
}
