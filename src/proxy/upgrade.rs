//! Protocol upgrades (WebSocket and any other `Upgrade`): the request keeps its `Upgrade`
//! header, and if the upstream answers 101 to a protocol the request offered
//! ([`switches_to_offered`]) the two connections are joined into a byte-for-byte tunnel; a 101
//! to anything else is the upstream's failure (`forward.rs`). Any other answer is relayed as a
//! normal response and no tunnel opens.
//!
//! The version chosen for the upgrade request serves the whole tunnel, and the tunnel counts
//! as one request (status 101) in the metrics, recorded when the upstream switches protocols.
//!
//! `Upgrade: h2c` is never forwarded (`docs/security.md#protocol-conformance`): a tunnelled
//! HTTP/2 connection would carry requests that skip routing, the split, header rewriting,
//! metrics and the HTTP/2 limits. A request whose `Upgrade` lists `h2c` (alone or among other
//! protocols) is answered as a plain HTTP/1.1 request; HTTP/2 stays available by prior
//! knowledge and ALPN.

use std::sync::{Arc, Mutex, PoisonError};

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::body::ResponseBody;
use super::headers::{remove_hop_by_hop, rewrite_response};
use crate::config::Version;
use crate::metrics::Outcome;
use crate::routing::Route;
use crate::upstream::{Conn, UpstreamBody, UpstreamUpgrade};

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade` + `Upgrade`).
pub fn requested(version: http::Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != http::Version::HTTP_11 {
        return None;
    }
    let upgrade = headers.get(UPGRADE)?;
    if lists_h2c(headers) {
        return None;
    }
    let asked = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asked.then(|| upgrade.clone())
}

/// Whether a `101`'s `Upgrade` switches only to protocols the client offered (RFC 9110 §7.8:
/// a server switches to one the client listed). A 101 without `Upgrade`, or one to a protocol
/// never offered (`h2c` to a WebSocket request), must not become a tunnel.
pub fn switches_to_offered(offered: &HeaderValue, response: &HeaderMap) -> bool {
    let mut chosen = response
        .get_all(UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .peekable();
    if chosen.peek().is_none() {
        return false;
    }
    chosen.all(|protocol| {
        offered
            .as_bytes()
            .split(|b| *b == b',')
            .any(|o| o.trim_ascii().eq_ignore_ascii_case(protocol))
    })
}

/// Whether any `Upgrade` field names the `h2c` protocol (RFC 9113 §3.1 deprecated that upgrade).
fn lists_h2c(headers: &HeaderMap) -> bool {
    headers
        .get_all(UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|token| {
            let token = token.trim_ascii();
            // `h2c` or a versioned `h2c/…`.
            token.len() >= 3
                && token[..3].eq_ignore_ascii_case(b"h2c")
                && (token.len() == 3 || token[3] == b'/')
        })
}

/// A client socket handed to a tunnel.
pub trait ClientIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ClientIo for T {}

/// Where a plain HTTP/1 connection served in rounds (`http1_rounds.rs`) hands its socket over
/// once the 101 is written; put on the request by that connection, taken by [`client_side`].
/// (Request extensions must be `Clone`, hence the shared slot.)
#[derive(Clone)]
pub struct ReleasedUpgrade(Arc<Mutex<Option<SocketReceiver>>>);

/// Where a released client socket arrives.
type SocketReceiver = oneshot::Receiver<Box<dyn ClientIo>>;

impl ReleasedUpgrade {
    /// The request's side of the channel the round sends the socket on.
    pub fn new(socket: SocketReceiver) -> Self {
        ReleasedUpgrade(Arc::new(Mutex::new(Some(socket))))
    }

    fn take(&self) -> Option<SocketReceiver> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The client's side of an upgrade: hyper's, or the socket a round hands over.
pub enum ClientUpgrade {
    /// hyper keeps the connection and resolves this after writing the 101.
    Hyper(OnUpgrade),
    /// The round ends after the 101 and sends the socket here.
    Released(SocketReceiver),
}

/// Take the client's side of the upgrade off the request.
pub fn client_side<B>(request: &mut http::Request<B>) -> ClientUpgrade {
    match request
        .extensions_mut()
        .remove::<ReleasedUpgrade>()
        .and_then(|released| released.take())
    {
        Some(socket) => ClientUpgrade::Released(socket),
        None => ClientUpgrade::Hyper(hyper::upgrade::on(request)),
    }
}

impl ClientUpgrade {
    /// The client's socket, once the 101 has gone out.
    async fn socket(self) -> Result<Box<dyn ClientIo>, String> {
        match self {
            ClientUpgrade::Hyper(on) => match on.await {
                Ok(upgraded) => Ok(Box::new(TokioIo::new(upgraded))),
                Err(e) => Err(e.to_string()),
            },
            ClientUpgrade::Released(socket) => socket
                .await
                .map_err(|_| "the client connection ended before the 101 was written".into()),
        }
    }
}

/// Put the upgrade back on the upstream request after hop-by-hop removal took it off.
pub fn keep_on_request(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(UPGRADE, protocol);
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
}

/// The upstream switched protocols: answer the client 101 and join the two connections.
pub fn tunnel(
    mut response: Response<UpstreamBody>,
    conn: Conn,
    client: ClientUpgrade,
    route: &Arc<Route>,
    served_by: Version,
    version_header: Option<&http::HeaderName>,
    started: Instant,
) -> Response<ResponseBody> {
    let upstream = UpstreamUpgrade::on(&mut response);
    let (mut parts, _) = response.into_parts();
    let protocol = parts.headers.get(UPGRADE).cloned();
    remove_hop_by_hop(&mut parts.headers);
    rewrite_response(&mut parts.headers, version_header, served_by);
    if let Some(protocol) = protocol {
        keep_on_request(&mut parts.headers, protocol);
    }
    route
        .metrics
        .record(served_by, Outcome::Status(101), started.elapsed());
    let route_name = route.name.clone();
    tokio::spawn(async move {
        // The connection stays counted in flight to its endpoint for the tunnel's life.
        let _conn = conn;
        match tokio::try_join!(client.socket(), upstream.io()) {
            Ok((mut client, mut upstream)) => {
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(route = %route_name, error = %e, "tunnel closed with an error");
                }
            }
            Err(e) => tracing::debug!(route = %route_name, error = %e, "upgrade failed"),
        }
    });
    let mut answer = Response::from_parts(parts, ResponseBody::local(""));
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(values: &[&'static str]) -> Option<HeaderValue> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        for v in values {
            headers.append(UPGRADE, HeaderValue::from_static(v));
        }
        requested(http::Version::HTTP_11, &headers)
    }

    #[test]
    fn a_switch_must_be_to_an_offered_protocol() {
        let offered = HeaderValue::from_static("websocket, foo/2");
        let answer = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(UPGRADE, HeaderValue::from_static(v));
            }
            switches_to_offered(&offered, &headers)
        };
        assert!(answer(&["websocket"]));
        assert!(answer(&["WebSocket"]));
        assert!(answer(&["foo/2"]));
        assert!(!answer(&[]));
        assert!(!answer(&["h2c"]));
        assert!(!answer(&["websocket, h2c"]));
        assert!(!answer(&["foo"]));
    }

    #[test]
    fn h2c_is_never_an_upgrade() {
        for values in [
            &["h2c"][..],
            &["H2C"],
            &["websocket, h2c"],
            &[" h2c/1 , foo"],
            &["websocket", "h2c"],
        ] {
            assert_eq!(upgrade(values), None, "{values:?}");
        }
        for values in [&["websocket"][..], &["h2cx"], &["foo/h2c"]] {
            assert!(upgrade(values).is_some(), "{values:?}");
        }
    }
}
