//! Response helpers: JSON bodies, `{"error": …}` bodies, plain text.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

/// An admin response.
pub type AdminResponse = Response<Full<Bytes>>;

/// A JSON body with a status.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> AdminResponse {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            with_type(status, body.into(), "application/json")
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode JSON: {e}"),
        ),
    }
}

/// `{"error": message}` with a status.
pub fn error(status: StatusCode, message: &str) -> AdminResponse {
    let body = serde_json::json!({ "error": message });
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    with_type(status, bytes.into(), "application/json")
}

/// A body of the given content type.
pub fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> AdminResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

/// Plain text.
pub fn text(status: StatusCode, body: &'static str) -> AdminResponse {
    with_type(
        status,
        Bytes::from_static(body.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

/// 405 with the methods the path allows.
pub fn method_not_allowed(allow: &'static str) -> AdminResponse {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    response
}
