//! Calling the rollout webhooks of docs/rollouts.md#webhooks.
//!
//! # Payload
//!
//! Every hook gets one `POST` with `content-type: application/json` and this body:
//!
//! ```json
//! {"route":"shop","type":"confirm-promotion","phase":"WaitingPromotion","revision":"v1.5.0",
//!  "primary_revision":"v1.4.2","weight":50,"failed_checks":0,"metadata":{"suite":"smoke"}}
//! ```
//!
//! `route`, `phase` (the exact phase name), `revision` (the canary's), `primary_revision`,
//! `weight` (canary percent) and `failed_checks` describe the rollout ([`WebhookPayload`]); `type`
//! and `metadata` come from the hook the body is sent to, so one payload can be sent to several
//! hooks and each still gets its own metadata.
//!
//! Two optional fields are added beyond the core payload, present only when set (omitted, not
//! `null`, otherwise): `message` and `reason`. `event` hooks carry the event's message in
//! `message` ("Promotion completed! shop is now serving v1.5.0"), and `post-rollout` hooks a
//! one-line outcome ("shop v1.5.0 Failed"). That answers the GitOps caveat — an automatic
//! rollback leaves the production repository out of date — because a pipeline learns from one
//! request which revision finished (`revision`), how (`phase` = `Succeeded` or `Failed`) and why
//! (`reason`), and can revert or promote the repository accordingly. `reason` (`post-rollout`) is
//! why the rollout ended as it did, in one line ("failed checks threshold reached 5",
//! "request-success-rate is worse than allowed (sequential test): error rate 2.10% over 1,000
//! requests, …"): the sequential judge rolls back on one check's evidence, so `failed_checks`
//! alone says little.
//!
//! A hook with `format = "slack"`, `"msteams"` or `"discord"` gets the same facts shaped for
//! that service instead (`format.rs`, docs/rollouts.md#notifications).
//!
//! # Answers
//!
//! A 2xx answer is [`WebhookAnswer::Yes`]; anything else — another status (redirects are never
//! followed, a 3xx is "no"), a connect or protocol error, or no response head within the hook's
//! `timeout` (which covers DNS, connect, request and response head) — is [`WebhookAnswer::No`]
//! with a reason. Nothing here panics or returns an error: the rollout engine only needs the
//! answer, and a broken hook must never stop the proxy.
//!
//! Hooks are called from the analysis task, never on the request path. Each call opens its own
//! HTTP/1.1 connection (hooks are rare: at most a few per check interval); an `https://` hook's
//! certificate is verified against its `ca` or the system's roots. The configured `headers` are
//! sent with every call and never logged (their values are marked sensitive, and no reason
//! quotes a request).
//!
//! # Delivery of notices
//!
//! A gate is asked once per check and its answer decides. A notice (`post-rollout`, `event`)
//! decides nothing, so it is delivered: a failed attempt is retried up to the hook's `retries`
//! times with exponential backoff and jitter ([`Backoff`]), and a delivery that finally fails is
//! handed to the route's [`OnUndelivered`] (a warning event and
//! `canaryd_webhook_failures_total`).

mod format;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::uri::Scheme;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::analysis::Severity;
use crate::config::{WebhookConfig, WebhookFormat, WebhookKind, WebhookRoots, WebhookSeverity};
use crate::routing::Phase;

/// At most this much of a hook's response body is read (and discarded); the status is all that
/// matters, and a hook must not be able to make canaryd read an endless body.
pub const MAX_RESPONSE_BODY_BYTES: usize = 64 * 1024;

/// What a rollout tells its hooks: everything in the JSON body except `type` and `metadata`,
/// which come from the hook it is sent to (see the module docs for the wire format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookPayload {
    /// Route name.
    pub route: String,
    /// The route's current phase; sent as its exact name (`"Progressing"`).
    pub phase: Phase,
    /// The canary's revision.
    pub revision: String,
    /// The primary's revision.
    pub primary_revision: String,
    /// The canary's current weight in percent.
    pub weight: u8,
    /// Failed checks so far in this rollout.
    pub failed_checks: u32,
    /// Extension of the core payload: the event message for `event` hooks, the outcome for `post-rollout`
    /// hooks. Omitted from the JSON when `None`.
    pub message: Option<String>,
    /// Extension: why the rollout ended as it did, one line (`post-rollout`). Omitted when `None`.
    pub reason: Option<String>,
    /// The event's severity (`event` hooks; `Info` otherwise): filtered by the hook's
    /// `severity`, and the colour of a chat notice. Not part of the generic body.
    pub severity: Severity,
}

/// The JSON body as sent: the core fields in the order docs/rollouts.md#webhooks lists them, plus `message` when set.
#[derive(Serialize)]
struct WireBody<'a> {
    route: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    phase: &'static str,
    revision: &'a str,
    primary_revision: &'a str,
    weight: u8,
    failed_checks: u32,
    metadata: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl WebhookPayload {
    /// The exact JSON body sent to `hook`: this payload plus the hook's `type` and `metadata`,
    /// or, for a chat `format`, the message built from them.
    pub fn to_json(&self, hook: &WebhookConfig) -> Vec<u8> {
        if hook.format != WebhookFormat::Generic {
            return serde_json::to_vec(&format::chat_body(self, hook)).unwrap_or_default();
        }
        let body = WireBody {
            route: &self.route,
            kind: hook.kind.as_str(),
            phase: self.phase.as_str(),
            revision: &self.revision,
            primary_revision: &self.primary_revision,
            weight: self.weight,
            failed_checks: self.failed_checks,
            metadata: &hook.metadata,
            message: self.message.as_deref(),
            reason: self.reason.as_deref(),
        };
        // Strings, integers and a string map: serde_json cannot fail on these, but an empty
        // body (which every hook rejects or ignores) beats a panic if that ever changes.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// A hook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAnswer {
    /// The hook answered 2xx (or, for [`Webhooks::ask`], no hook of that kind is configured).
    Yes,
    /// Anything else, with a reason for logs and events.
    No {
        /// What happened: the status, the connect error, or the timeout.
        reason: String,
    },
}

impl WebhookAnswer {
    /// `true` for [`WebhookAnswer::Yes`].
    pub fn is_yes(&self) -> bool {
        matches!(self, WebhookAnswer::Yes)
    }

    fn no(reason: impl Into<String>) -> Self {
        WebhookAnswer::No {
            reason: reason.into(),
        }
    }
}

/// POST `payload` (with `hook`'s `type` and `metadata`) to `hook.url` and wait for the answer.
///
/// Takes at most `hook.timeout` (plus scheduling): the timeout covers name resolution, connect,
/// the TLS handshake, sending the request and receiving the response head, and the response
/// body is drained only until the same deadline. The `host` header and the request target come
/// from the URL. Never panics, never follows redirects.
pub async fn call(hook: &WebhookConfig, payload: &WebhookPayload) -> WebhookAnswer {
    let target = match Target::from_uri(&hook.url) {
        Ok(target) => target,
        Err(reason) => return WebhookAnswer::No { reason },
    };
    let body = payload.to_json(hook);
    let deadline = Instant::now() + hook.timeout;
    let (status, response_body, _connection) = match tokio::time::timeout_at(
        deadline,
        connect_and_exchange(&target, &outgoing(hook, body)),
    )
    .await
    {
        Err(_) => {
            return WebhookAnswer::no(format!(
                "no answer from {} within {:?}",
                target.authority, hook.timeout
            ))
        }
        Ok(Err(reason)) => return WebhookAnswer::No { reason },
        Ok(Ok(answer)) => answer,
    };
    // The status decides; draining (bounded in size and by the same deadline) just lets the
    // server finish writing instead of seeing a reset mid-response.
    let _ = tokio::time::timeout_at(deadline, drain(response_body)).await;
    if status.is_success() {
        WebhookAnswer::Yes
    } else {
        WebhookAnswer::no(format!("{} answered {status}", target.authority))
    }
}

/// The waits between attempts at a notice: the `n`th retry waits `first × 2ⁿ⁻¹`, at most
/// `max`, of which a random half is jitter, so receivers that came back are not hit by every
/// canaryd at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The longest wait before the first retry.
    pub first: Duration,
    /// The longest wait before any retry.
    pub max: Duration,
}

impl Backoff {
    /// Notices: 1 s, 2 s, 4 s … up to a minute.
    pub const NOTICES: Backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    /// The wait before retry `retry` (1-based): between half and all of `first × 2^(retry−1)`.
    pub fn wait(self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(30);
        let full = self.first.saturating_mul(1 << exponent).min(self.max);
        full.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }
}

/// What a route does with a notice that could not be delivered after every retry: a warning
/// event and a count in `canaryd_webhook_failures_total`. Called with the hook and the last
/// reason (which never carries a header value).
pub type OnUndelivered = Arc<dyn Fn(&WebhookConfig, &str) + Send + Sync>;

/// Deliver a notice: call `hook`, and after a "no" retry up to `hook.retries` times, waiting
/// `backoff` between attempts. Returns the last answer and the number of attempts.
pub async fn deliver(
    hook: &WebhookConfig,
    payload: &WebhookPayload,
    backoff: Backoff,
) -> (WebhookAnswer, u32) {
    let mut attempts = 1;
    let mut answer = call(hook, payload).await;
    while !answer.is_yes() && attempts <= hook.retries {
        tracing::debug!(
            kind = hook.kind.as_str(),
            url = %redacted(&hook.url),
            route = %payload.route,
            attempt = attempts,
            "webhook not delivered, retrying"
        );
        tokio::time::sleep(backoff.wait(attempts)).await;
        attempts += 1;
        answer = call(hook, payload).await;
    }
    (answer, attempts)
}

/// Whether an `event` hook wants an event of `severity`; other kinds take every notice.
fn wants(hook: &WebhookConfig, severity: Severity) -> bool {
    let severity = match severity {
        Severity::Info => WebhookSeverity::Info,
        Severity::Warning => WebhookSeverity::Warning,
    };
    hook.kind != WebhookKind::Event || severity >= hook.severity
}

/// Runs the configured hooks of a route.
#[derive(Debug, Clone, Copy, Default)]
pub struct Webhooks;

impl Webhooks {
    /// Deliver a notice to `hook` in a background task (retries and backoff as [`deliver`]),
    /// log the outcome, and hand a final failure to `undelivered`; returns at once.
    ///
    /// For `post-rollout` and `event` hooks, whose answer changes nothing. The handle may be
    /// ignored (dropping it does not cancel the delivery). Returns `None`, after logging, when
    /// called outside a Tokio runtime instead of panicking like `tokio::spawn` would.
    pub fn spawn_fire_and_forget(
        hook: &WebhookConfig,
        payload: &WebhookPayload,
        undelivered: Option<OnUndelivered>,
    ) -> Option<JoinHandle<WebhookAnswer>> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                kind = hook.kind.as_str(),
                url = %redacted(&hook.url),
                route = %payload.route,
                "webhook not called: no async runtime"
            );
            return None;
        };
        let hook = hook.clone();
        let payload = payload.clone();
        Some(runtime.spawn(async move {
            let (answer, attempts) = deliver(&hook, &payload, Backoff::NOTICES).await;
            log_answer(&hook, &payload, &answer, attempts);
            if let (WebhookAnswer::No { reason }, Some(undelivered)) = (&answer, undelivered) {
                undelivered(&hook, reason);
            }
            answer
        }))
    }

    /// [`spawn_fire_and_forget`](Self::spawn_fire_and_forget) for every hook of `kind` that
    /// wants the payload (an `event` hook's `severity`).
    pub fn notify(
        hooks: &[WebhookConfig],
        kind: WebhookKind,
        payload: &WebhookPayload,
        undelivered: &OnUndelivered,
    ) {
        for hook in hooks
            .iter()
            .filter(|hook| hook.kind == kind && wants(hook, payload.severity))
        {
            let _ = Self::spawn_fire_and_forget(hook, payload, Some(Arc::clone(undelivered)));
        }
    }

    /// Ask every hook of `kind` at once and answer `Yes` only if all say yes (`Yes` when none is
    /// configured). Waits for all of them — at most the longest hook timeout — so every hook's
    /// answer is known and a "no" names every hook that refused.
    ///
    /// Dropping the returned future cancels the calls still in flight.
    pub async fn ask(
        hooks: &[WebhookConfig],
        kind: WebhookKind,
        payload: &WebhookPayload,
    ) -> WebhookAnswer {
        let payload = Arc::new(payload.clone());
        // Spawned rather than joined in place: the crate has no futures-util, and JoinSet aborts
        // its tasks when dropped, which is the cancellation we want.
        let mut calls = JoinSet::new();
        for (index, hook) in hooks.iter().filter(|hook| hook.kind == kind).enumerate() {
            let hook = hook.clone();
            let payload = Arc::clone(&payload);
            calls.spawn(async move {
                let answer = call(&hook, &payload).await;
                tracing::debug!(
                    kind = hook.kind.as_str(),
                    url = %redacted(&hook.url),
                    route = %payload.route,
                    yes = answer.is_yes(),
                    "webhook answered"
                );
                (index, redacted(&hook.url), answer)
            });
        }
        let mut refusals = Vec::new();
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok((_, _, WebhookAnswer::Yes)) => {}
                Ok((index, url, WebhookAnswer::No { reason })) => {
                    refusals.push((index, format!("{} hook {url}: {reason}", kind.as_str())));
                }
                // A panicking call (a bug) must still count as "no", never as consent.
                Err(e) => {
                    refusals.push((usize::MAX, format!("{} hook failed: {e}", kind.as_str())))
                }
            }
        }
        if refusals.is_empty() {
            return WebhookAnswer::Yes;
        }
        // Configuration order, so the reason reads the same every time.
        refusals.sort_by_key(|(index, _)| *index);
        let reasons: Vec<String> = refusals.into_iter().map(|(_, reason)| reason).collect();
        WebhookAnswer::no(reasons.join("; "))
    }
}

/// Where a hook's request goes, derived from its URL.
struct Target {
    /// `https://`: TLS first.
    tls: bool,
    /// Name or IP for connecting (IPv6 without brackets).
    connect_host: String,
    port: u16,
    /// `host` header value: the URL's host (IPv6 in brackets) and explicit port, no userinfo.
    authority: String,
    /// Request target: path and query, `/` when the URL has none.
    path_and_query: String,
}

impl Target {
    fn from_uri(uri: &Uri) -> Result<Self, String> {
        let tls = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTP => false,
            Some(scheme) if *scheme == Scheme::HTTPS => true,
            _ => {
                return Err(format!(
                    "webhook URL {} is neither http:// nor https://",
                    redacted(uri)
                ))
            }
        };
        let host = match uri.host() {
            Some(host) if !host.is_empty() => host,
            _ => return Err(format!("webhook URL {} has no host", redacted(uri))),
        };
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let connect_host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_string();
        let path_and_query = uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .filter(|pq| !pq.is_empty())
            .unwrap_or("/")
            .to_string();
        Ok(Target {
            tls,
            connect_host,
            port,
            authority,
            path_and_query,
        })
    }
}

/// Aborts the connection task when the call is over (or cancelled by its timeout), so a hook
/// that never answers cannot keep a socket and a task alive forever.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request of a webhook or an external metric's query.
pub(in crate::analysis) struct Outgoing<'a> {
    pub method: Method,
    pub headers: &'a http::HeaderMap,
    pub roots: Option<&'a WebhookRoots>,
    /// With a body, its content type.
    pub body: Option<(Vec<u8>, &'static str)>,
}

fn outgoing(hook: &WebhookConfig, body: Vec<u8>) -> Outgoing<'_> {
    Outgoing {
        method: Method::POST,
        headers: &hook.headers,
        roots: hook.roots.as_ref(),
        body: Some((body, "application/json")),
    }
}

/// GET or POST `uri` and read at most `limit` bytes of the answer, all within `timeout`:
/// the external metrics' client (`docs/rollouts.md#external-metrics`). The error never
/// carries a header value.
pub(in crate::analysis) async fn fetch(
    uri: &Uri,
    outgoing: &Outgoing<'_>,
    timeout: Duration,
    limit: usize,
) -> Result<(StatusCode, Bytes), String> {
    let target = Target::from_uri(uri)?;
    let deadline = Instant::now() + timeout;
    let read = async {
        let (status, mut body, _connection) = connect_and_exchange(&target, outgoing).await?;
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| format!("reading the answer of {} failed: {e}", target.authority))?;
            if let Some(data) = frame.data_ref() {
                bytes.extend_from_slice(data);
                if bytes.len() > limit {
                    return Err(format!(
                        "the answer of {} is larger than {limit} bytes",
                        target.authority
                    ));
                }
            }
        }
        Ok((status, Bytes::from(bytes)))
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| format!("no answer from {} within {timeout:?}", target.authority))?
}

/// Connect (and, for `https://`, verify the server's certificate), then [`exchange`].
async fn connect_and_exchange(
    target: &Target,
    outgoing: &Outgoing<'_>,
) -> Result<(StatusCode, Incoming, AbortOnDrop), String> {
    // `(host, port)` resolves names (trying every address in turn) and takes IP literals as is.
    let stream = TcpStream::connect((target.connect_host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect to {} failed: {e}", target.authority))?;
    // One small request: send it without waiting for Nagle.
    let _ = stream.set_nodelay(true);
    if !target.tls {
        return exchange(stream, target, outgoing).await;
    }
    let connector = tls_connector(outgoing.roots)
        .map_err(|e| format!("TLS setup for {} failed: {e}", target.authority))?;
    let name = ServerName::try_from(target.connect_host.clone())
        .map_err(|e| format!("{} is not a TLS server name: {e}", target.connect_host))?;
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with {} failed: {e}", target.authority))?;
    exchange(stream, target, outgoing).await
}

/// A TLS client that verifies the server against `roots` (the config always sets them for an
/// `https://` hook; none at all would verify nothing, so it is refused) and speaks HTTP/1.1.
fn tls_connector(roots: Option<&WebhookRoots>) -> Result<TlsConnector, String> {
    let roots = roots.ok_or("no root certificates configured")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(Arc::clone(&roots.0))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Send the request on a connected stream and return the response head and body; the caller
/// bounds it in time.
async fn exchange<S>(
    stream: S,
    target: &Target,
    outgoing: &Outgoing<'_>,
) -> Result<(StatusCode, Incoming, AbortOnDrop), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {} failed: {e}", target.authority))?;
    let guard = AbortOnDrop(tokio::spawn(async move {
        // Errors here (the hook closing early, the abort above) are reported through
        // send_request or not at all; the answer is what matters.
        let _ = connection.await;
    }));
    let mut builder = Request::builder()
        .method(outgoing.method.clone())
        .uri(target.path_and_query.as_str())
        .header(HOST, target.authority.as_str())
        .header(USER_AGENT, concat!("canaryd/", env!("CARGO_PKG_VERSION")));
    let body = match &outgoing.body {
        Some((body, content_type)) => {
            builder = builder
                .header(CONTENT_TYPE, *content_type)
                .header(CONTENT_LENGTH, body.len());
            Bytes::from(body.clone())
        }
        None => Bytes::new(),
    };
    let mut request = builder
        .body(Full::new(body))
        .map_err(|e| format!("cannot build request for {}: {e}", target.authority))?;
    for (name, value) in outgoing.headers {
        request.headers_mut().append(name, value.clone());
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request to {} failed: {e}", target.authority))?;
    let (parts, body) = response.into_parts();
    Ok((parts.status, body, guard))
}

/// Read and discard up to [`MAX_RESPONSE_BODY_BYTES`] of the response body.
async fn drain(mut body: Incoming) {
    let mut read = 0usize;
    while read < MAX_RESPONSE_BODY_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read += data.len();
                }
            }
            Some(Err(_)) | None => break,
        }
    }
}

/// The URL for logs: scheme, host, port and path only. Userinfo and query strings are where
/// people put tokens, and logs must not carry secrets.
pub(crate) fn redacted(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("");
    let host = uri.host().unwrap_or("");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{host}{port}{}", uri.path())
}

/// Log a delivery's outcome: nobody else sees it, so a final "no" is a warning.
fn log_answer(
    hook: &WebhookConfig,
    payload: &WebhookPayload,
    answer: &WebhookAnswer,
    attempts: u32,
) {
    match answer {
        WebhookAnswer::Yes => tracing::debug!(
            kind = hook.kind.as_str(),
            url = %redacted(&hook.url),
            route = %payload.route,
            attempts,
            "webhook delivered"
        ),
        WebhookAnswer::No { reason } => tracing::warn!(
            kind = hook.kind.as_str(),
            url = %redacted(&hook.url),
            route = %payload.route,
            attempts,
            %reason,
            "webhook failed"
        ),
    }
}

#[cfg(test)]
mod notice_tests;
#[cfg(test)]
mod tests;
