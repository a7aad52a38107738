//! The fast path's head classifier checked against hyper's server
//! (docs/security.md#the-fast-path-differential-suite): whenever the classifier calls a head
//! simple, hyper parses the same bytes into the same method, target, version and fields (same
//! names, same values, same order per name), with the body framing the classifier found, and
//! `validate.rs` refuses nothing of it; and a bodiless one goes upstream with the same head
//! bytes as on today's path. A head the classifier does not call simple goes to
//! hyper untouched, so nothing is asserted of it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::Empty;
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::proxy::fast::head::{classify, FlatHead, MAX_FIELDS};
use crate::proxy::fast::rewrite::write_upstream_head;
use crate::proxy::headers::{self, ClientFacts};
use crate::proxy::malformed_head;
use crate::upstream::http1::request_head;
use crate::upstream::RequestBody;

/// The longest head the checks give the classifier (and hyper's buffer).
const MAX_HEAD: usize = 8192;

/// What hyper's server made of a request head.
#[derive(Debug)]
struct HyperHead {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    /// The body's exact length, as hyper frames it.
    body_len: Option<u64>,
    bodiless: bool,
}

/// The classifier's verdict on `data`: `"simple"` or why not (for tests).
pub fn fast_head_verdict(data: &[u8]) -> String {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    match classify(data, MAX_HEAD, &mut fields) {
        Ok(_) => "simple".to_owned(),
        Err(why) => format!("{why:?}"),
    }
}

/// The differential property: a simple head reads the same through the classifier and hyper.
pub fn fast_head(data: &[u8]) {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let head = match classify(data, MAX_HEAD, &mut fields) {
        Ok(head) => head,
        // Not simple: hyper reads it, as before the fast path.
        Err(_) => return,
    };
    let Some(hyper) = hyper_reads(&data[..head.len]) else {
        panic!("classified simple, but hyper refused it: {head:?}");
    };
    agree(&head, &hyper);
    if head.is_bodiless() {
        for (trusted, tls) in [(false, false), (false, true), (true, false), (true, true)] {
            same_upstream_head(&head, &hyper, trusted, tls);
        }
    }
}

/// The fast path's upstream head (`proxy/fast/rewrite.rs`) is, byte for byte, the one today's
/// path writes: `rewrite_request` on hyper's `HeaderMap`, then the engine's head writer. The
/// request id, random on today's path, is handed to the fast path's writer.
fn same_upstream_head(head: &FlatHead<'_, '_>, hyper: &HyperHead, trusted: bool, tls: bool) {
    let peer: IpAddr = [192, 0, 2, 7].into();
    let peer_value = headers::peer_header_value(peer);
    let nets: Vec<ipnet::IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
    let mut map = hyper.headers.clone();
    let authority = map.get(HOST).cloned();
    let facts = ClientFacts {
        peer,
        peer_value: &peer_value,
        tls,
        authority: authority.as_ref(),
        trusted_proxies: if trusted { &nets } else { &[] },
    };
    headers::rewrite_request(&mut map, &facts);
    // A client's own id is kept; the one today's path made is 36 bytes.
    let id: [u8; 36] = map
        .get(&headers::X_REQUEST_ID)
        .and_then(|v| v.as_bytes().try_into().ok())
        .unwrap_or([b'-'; 36]);
    let mut request = Request::new(RequestBody::Buffered(None));
    *request.method_mut() = hyper.method.clone();
    *request.uri_mut() = hyper
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
    *request.headers_mut() = map;
    let mut today = Vec::new();
    request_head::write(&request, &RequestBody::Buffered(None), &mut today);
    let mut fast = Vec::new();
    let mut asked = false;
    write_upstream_head(
        head,
        &facts,
        || {
            asked = true;
            id
        },
        &mut fast,
    );
    assert_eq!(
        String::from_utf8_lossy(&fast),
        String::from_utf8_lossy(&today),
        "upstream heads differ (trusted {trusted}, tls {tls})"
    );
    assert_eq!(asked, !hyper.headers.contains_key(&headers::X_REQUEST_ID));
}

/// Each property the fast path relies on, compared with hyper's reading.
fn agree(head: &FlatHead<'_, '_>, hyper: &HyperHead) {
    assert_eq!(head.method, hyper.method, "method");
    assert_eq!(hyper.version, Version::HTTP_11, "version");
    assert!(
        hyper.uri.scheme().is_none() && hyper.uri.authority().is_none(),
        "{:?} is not origin-form to hyper",
        hyper.uri
    );
    assert_eq!(
        hyper.uri.path_and_query().map(|p| p.as_str()),
        Some(head.target),
        "target"
    );
    assert_eq!(hyper.uri.path(), head.path(), "path");
    assert_eq!(grouped(head), listed(&hyper.headers), "fields");
    assert!(
        malformed_head(&hyper.method, hyper.version, &hyper.uri, &hyper.headers).is_none(),
        "validate.rs refuses a simple head"
    );
    let facts = &head.facts;
    assert_eq!(
        hyper.headers.get(HOST).map(|h| h.as_bytes()),
        Some(head.host())
    );
    assert_eq!(hyper.body_len, Some(facts.content_length.unwrap_or(0)));
    assert_eq!(hyper.bodiless, head.is_bodiless(), "bodiless");
    assert_eq!(
        facts.grpc,
        hyper
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc")),
        "gRPC"
    );
    // `Connection` as the rewrite and the rounds loop read it from a `HeaderMap`.
    let tokens: Vec<String> = hyper
        .headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    assert_eq!(
        facts.connection.present,
        hyper.headers.contains_key(CONNECTION)
    );
    assert_eq!(facts.connection.close, tokens.iter().any(|t| t == "close"));
    assert_eq!(
        facts.connection.names_fields,
        tokens
            .iter()
            .any(|t| !t.is_empty() && t != "close" && t != "keep-alive"),
        "Connection names fields: {tokens:?}"
    );
    let has = |name: &str| hyper.headers.contains_key(name);
    assert_eq!(
        facts.hop_by_hop,
        has("keep-alive") || has("proxy-connection") || has("trailer") || has("close")
    );
    assert_eq!(facts.forwarded_for, has("x-forwarded-for"));
    assert_eq!(facts.forwarded_proto, has("x-forwarded-proto"));
    assert_eq!(facts.forwarded_host, has("x-forwarded-host"));
    assert_eq!(facts.request_id, has("x-request-id"));
    for never in [
        "transfer-encoding",
        "te",
        "upgrade",
        "expect",
        "http2-settings",
    ] {
        assert!(!has(never), "a simple head with {never}");
    }
}

/// The flat fields as a `HeaderMap` iterates them: names lowercased, grouped by name in the
/// order each name first appears, values in the order sent.
fn grouped(head: &FlatHead<'_, '_>) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = Vec::new();
    let fields: Vec<(String, Vec<u8>)> = head
        .fields
        .iter()
        .map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec()))
        .collect();
    for (name, _) in &fields {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
        .iter()
        .flat_map(|name| fields.iter().filter(move |(n, _)| n == name).cloned())
        .collect()
}

fn listed(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// Serve `head` with hyper's HTTP/1 server (configured as canaryd's) and return the request
/// its service was called with, or `None` when hyper refused the head.
fn hyper_reads(head: &[u8]) -> Option<HyperHead> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let seen: Arc<Mutex<Option<HyperHead>>> = Arc::default();
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(head).await.ok()?;
        let called = Arc::new(tokio::sync::Notify::new());
        let service = {
            let (seen, called) = (seen.clone(), called.clone());
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let (seen, called) = (seen.clone(), called.clone());
                async move {
                    let read = HyperHead {
                        method: request.method().clone(),
                        uri: request.uri().clone(),
                        version: request.version(),
                        headers: request.headers().clone(),
                        body_len: request.body().size_hint().exact(),
                        bodiless: request.body().is_end_stream(),
                    };
                    *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(read);
                    called.notify_one();
                    Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
                }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.max_buf_size(MAX_HEAD).keep_alive(true);
        let connection = builder.serve_connection(TokioIo::new(server), service);
        // Done once hyper called the service with the head, or refused it; the timeout is a
        // guard only.
        tokio::select! {
            _ = connection => {}
            () = called.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        drop(client);
        Some(())
    })?;
    let read = seen.lock().unwrap_or_else(|e| e.into_inner()).take();
    read
}
