//! The hyper service of one client connection.
//!
//! Every request goes to [`handle`]. On the way, an HTTP/2 request holds a [`StreamGuard`] for
//! the idle timeout and the cancel budget (`h2_idle.rs`), and an HTTP/1 request served in a
//! round (`http1_rounds.rs`) tells the round what it leaves the connection in.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use super::body::ResponseBody;
use super::h2_idle::StreamActivity;
use super::http1_rounds::Round;
use super::{handle, ClientConn, ProxyShared};

/// What one client connection's requests share; cloned per request, so it is per connection
/// (its refcount stays on this connection's core).
pub(super) struct ConnContext {
    pub shared: Arc<ProxyShared>,
    pub client: ClientConn,
}

/// The service hyper calls for each request of one client connection.
#[derive(Clone)]
pub(super) struct ClientService {
    context: Arc<ConnContext>,
    streams: Arc<StreamActivity>,
    round: Option<Arc<Round>>,
}

impl ClientService {
    /// The service of a connection whose HTTP/2 streams `streams` tracks.
    pub fn new(context: ConnContext, streams: Arc<StreamActivity>) -> Self {
        ClientService {
            context: Arc::new(context),
            streams,
            round: None,
        }
    }

    /// What the connection's requests share, for a request the fast path serves without
    /// hyper (`fast/serve.rs`), which counts as HTTP/1 as a request through hyper does.
    pub fn fast_path_context(&self) -> &ConnContext {
        self.streams.saw_http1();
        &self.context
    }

    /// The same service for one round of a plain HTTP/1 connection.
    pub fn in_round(&self, round: Arc<Round>) -> Self {
        ClientService {
            round: Some(round),
            ..self.clone()
        }
    }
}

/// Boxed: the request's future is a few KB (kept so:
/// docs/performance.md#small-request-futures), and hyper moves the service future (into its
/// dispatcher, and for HTTP/2 into a spawned task); moving a pointer is cheaper than copying
/// the future each time (measured in BENCHMARKS.md). A boxed future is also `Unpin`, which a
/// round's `poll_without_shutdown` needs.
type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ClientService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let context = self.context.clone();
        let stream = if request.version() == hyper::Version::HTTP_2 {
            Some(self.streams.stream_opened())
        } else {
            self.streams.saw_http1();
            None
        };
        let round = self.round.clone();
        if let Some(round) = &round {
            round.request_started(&mut request);
        }
        Box::pin(async move {
            // Dropped with this future if the client cancels the stream first.
            let mut stream = stream;
            let mut response = handle(&context.shared, &context.client, request).await;
            if let Some(mut stream) = stream.take() {
                stream.answered();
                response.body_mut().hold_stream(stream);
            }
            if let Some(round) = round {
                round.answered(&response);
            }
            Ok(response)
        })
    }
}
