//! A minimal HTTP/1.1 client for the admin API, used by the CLI's control commands.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the admin API could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--admin` / `$CANARYD_ADMIN` is not an `http://host:port` URL.
    #[error("invalid admin URL '{0}': expected http://HOST:PORT")]
    BadUrl(String),
    /// Nothing answered.
    #[error("cannot reach the admin API at {url}: {source}")]
    Connect {
        /// The admin URL.
        url: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed or timed out.
    #[error("admin API at {url} failed: {reason}")]
    Exchange {
        /// The admin URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// Where the admin API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct AdminClient {
    url: String,
    authority: String,
    base_path: String,
    token: Option<String>,
}

impl AdminClient {
    /// From `--admin` and `$CANARYD_ADMIN_TOKEN`.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| ClientError::BadUrl(url.to_owned()))?;
        if uri.scheme_str() != Some("http") {
            return Err(ClientError::BadUrl(url.to_owned()));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ClientError::BadUrl(url.to_owned()))?;
        let authority = if authority.port().is_some() {
            authority.to_string()
        } else {
            format!("{}:80", authority.host())
        };
        Ok(AdminClient {
            url: url.trim_end_matches('/').to_owned(),
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// Send one request; the status and body.
    pub fn send(&self, method: Method, path: &str) -> Result<(StatusCode, Bytes), ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| self.failed(e.to_string()))?;
        runtime.block_on(async {
            tokio::time::timeout(TIMEOUT, self.exchange(method, path))
                .await
                .map_err(|_| self.failed(format!("no answer within {TIMEOUT:?}")))?
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| ClientError::Connect {
                url: self.url.clone(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.failed(e.to_string()))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(http::header::HOST, &self.authority)
            .header(
                http::header::USER_AGENT,
                concat!("canaryd/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.failed(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.failed(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.failed(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }

    fn failed(&self, reason: String) -> ClientError {
        ClientError::Exchange {
            url: self.url.clone(),
            reason,
        }
    }
}
