//! A real gRPC server and client (tonic) for tests, with messages derived by hand (no
//! `protoc`): service `test.Echo` with one method of each kind — `Unary`, `ServerStream`,
//! `ClientStream`, `Bidi` — `Slow`, which answers after 3 s, and `Fail`, which answers NOT_FOUND
//! with trailer metadata.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::{Grpc, NamedService};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The one message: some text.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
}

pub fn msg(text: &str) -> Msg {
    Msg {
        text: text.to_owned(),
    }
}

/// How the server behaves, shared with the test.
#[derive(Debug, Default)]
pub struct Behaviour {
    /// Unary calls answered so far.
    pub calls: AtomicU64,
    /// Of every 10 unary calls, this many answer UNAVAILABLE.
    pub unavailable_per_10: AtomicU64,
}

#[derive(Clone)]
pub struct EchoServer {
    name: &'static str,
    behaviour: Arc<Behaviour>,
}

impl NamedService for EchoServer {
    const NAME: &'static str = "test.Echo";
}

type Messages = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Msg, Status>> + Send>>;

impl Service<http::Request<Body>> for EchoServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let name = self.name;
        let behaviour = self.behaviour.clone();
        let mut grpc = Grpc::new(ProstCodec::<Msg, Msg>::default());
        Box::pin(async move {
            let response = match request.uri().path() {
                "/test.Echo/Unary" => {
                    let handler = tower::service_fn(move |r: Request<Msg>| {
                        let behaviour = behaviour.clone();
                        async move {
                            let n = behaviour.calls.fetch_add(1, Ordering::SeqCst);
                            if n % 10 < behaviour.unavailable_per_10.load(Ordering::SeqCst) {
                                return Err(Status::unavailable("overloaded"));
                            }
                            Ok(Response::new(msg(&format!(
                                "{name}:{}",
                                r.into_inner().text
                            ))))
                        }
                    });
                    grpc.unary(handler, request).await
                }
                "/test.Echo/Slow" => {
                    let handler = tower::service_fn(|r: Request<Msg>| async move {
                        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                        Ok::<_, Status>(Response::new(r.into_inner()))
                    });
                    grpc.unary(handler, request).await
                }
                "/test.Echo/Fail" => {
                    let handler = tower::service_fn(|_: Request<Msg>| async {
                        let mut metadata = tonic::metadata::MetadataMap::new();
                        metadata.insert("x-detail", "looked everywhere".parse().unwrap());
                        Err::<Response<Msg>, _>(Status::with_metadata(
                            Code::NotFound,
                            "no such thing",
                            metadata,
                        ))
                    });
                    grpc.unary(handler, request).await
                }
                "/test.Echo/ServerStream" => {
                    let handler = tower::service_fn(|r: Request<Msg>| async move {
                        let text = r.into_inner().text;
                        let items: Vec<Result<Msg, Status>> =
                            (0..5).map(|i| Ok(msg(&format!("{text}-{i}")))).collect();
                        let stream: Messages = Box::pin(tokio_stream::iter(items));
                        Ok::<_, Status>(Response::new(stream))
                    });
                    grpc.server_streaming(handler, request).await
                }
                "/test.Echo/ClientStream" => {
                    let handler = tower::service_fn(|r: Request<Streaming<Msg>>| async move {
                        let mut stream = r.into_inner();
                        let mut texts = Vec::new();
                        while let Some(item) = stream.next().await {
                            texts.push(item?.text);
                        }
                        Ok::<_, Status>(Response::new(msg(&texts.join("+"))))
                    });
                    grpc.client_streaming(handler, request).await
                }
                "/test.Echo/Bidi" => {
                    let handler = tower::service_fn(|r: Request<Streaming<Msg>>| async move {
                        let stream = r.into_inner();
                        let echoed: Messages = Box::pin(
                            stream.map(|item| item.map(|m| msg(&format!("echo:{}", m.text)))),
                        );
                        Ok::<_, Status>(Response::new(echoed))
                    });
                    grpc.streaming(handler, request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(response)
        })
    }
}

/// A gRPC upstream on a loopback port, h2c or (with a server identity) TLS.
pub struct GrpcUpstream {
    pub addr: SocketAddr,
    pub behaviour: Arc<Behaviour>,
}

impl GrpcUpstream {
    pub async fn start(name: &'static str) -> GrpcUpstream {
        Self::start_with(name, None).await
    }

    /// With `tls = Some((cert_pem, key_pem))`, served over TLS (ALPN h2).
    pub async fn start_with(name: &'static str, tls: Option<(String, String)>) -> GrpcUpstream {
        let (listener, upstream, service) = Self::bound(name).await;
        let mut builder = tonic::transport::Server::builder();
        if let Some((cert, key)) = tls {
            let identity = tonic::transport::Identity::from_pem(cert, key);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        let router = builder.add_service(service);
        tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
        upstream
    }

    /// A loopback listener and the service that will answer on it.
    async fn bound(name: &'static str) -> (TcpListener, GrpcUpstream, EchoServer) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let behaviour = Arc::new(Behaviour::default());
        let service = EchoServer {
            name,
            behaviour: behaviour.clone(),
        };
        (listener, GrpcUpstream { addr, behaviour }, service)
    }
}

impl GrpcUpstream {
    /// The same service over h2c, served by hyper's HTTP/2 server without tonic's transport:
    /// nothing here honours `grpc-timeout`, so a call outlives any deadline the client sent
    /// and whatever ends it early is the proxy's doing. (tonic's server answers CANCELLED when
    /// the forwarded deadline passes, racing the proxy's own DEADLINE_EXCEEDED.)
    pub async fn start_ignoring_deadlines(name: &'static str) -> GrpcUpstream {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let (listener, upstream, service) = Self::bound(name).await;
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let serve = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let mut service = service.clone();
                            async move { service.call(request.map(Body::new)).await }
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), serve)
                        .await;
                });
            }
        });
        upstream
    }
}

/// A tonic client to `addr` (h2c with prior knowledge, as gRPC clients do over `http://`).
pub async fn connect(addr: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

fn path(method: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(method)
}

pub async fn unary(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    method: &'static str,
    text: &str,
) -> Result<Response<Msg>, Status> {
    client.ready().await.unwrap();
    client
        .unary(Request::new(msg(text)), path(method), ProstCodec::default())
        .await
}

pub async fn server_stream(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    text: &str,
) -> Result<Vec<String>, Status> {
    client.ready().await.unwrap();
    let response = client
        .server_streaming(
            Request::new(msg(text)),
            path("/test.Echo/ServerStream"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await?;
    let mut stream = response.into_inner();
    let mut texts = Vec::new();
    while let Some(item) = stream.next().await {
        texts.push(item?.text);
    }
    Ok(texts)
}

pub async fn client_stream(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    texts: &[&str],
) -> Result<String, Status> {
    client.ready().await.unwrap();
    let items: Vec<Msg> = texts.iter().map(|t| msg(t)).collect();
    let response = client
        .client_streaming(
            Request::new(tokio_stream::iter(items)),
            path("/test.Echo/ClientStream"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await?;
    Ok(response.into_inner().text)
}

/// Send `texts` one by one, each only after the previous echo came back: the stream really is
/// interactive through the proxy, nothing is buffered to the end.
pub async fn bidi(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    texts: &[&str],
) -> Result<Vec<String>, Status> {
    client.ready().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let response = {
        tx.send(msg(texts[0])).await.unwrap();
        client
            .streaming(
                Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
                path("/test.Echo/Bidi"),
                ProstCodec::<Msg, Msg>::default(),
            )
            .await?
    };
    let mut stream = response.into_inner();
    let mut echoes = Vec::new();
    for next in texts.iter().skip(1).map(Some).chain([None]) {
        let item = stream.next().await.expect("an echo per message")?;
        echoes.push(item.text);
        match next {
            Some(text) => tx.send(msg(text)).await.unwrap(),
            None => break,
        }
    }
    drop(tx);
    while let Some(item) = stream.next().await {
        echoes.push(item?.text);
    }
    Ok(echoes)
}
