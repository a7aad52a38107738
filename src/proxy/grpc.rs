//! What the proxy knows of gRPC (docs/routing.md#grpc): which requests are gRPC calls, their
//! `grpc-timeout`, the `grpc-status` that says how a call ended, and the gRPC answer for the
//! proxy's own errors.

use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::body::ResponseBody;
use super::ProxyError;

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Whether a request (or response) is gRPC: its `content-type` starts with `application/grpc`
/// (`application/grpc`, `application/grpc+proto`, `application/grpc-web` …).
#[inline]
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The `grpc-status` of trailers (or of a trailers-only response's headers); a value that is
/// not a number reads as `UNKNOWN` (2).
#[inline]
pub fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    let value = headers.get(&GRPC_STATUS)?;
    Some(
        std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok())
            .filter(|code| *code <= 16)
            .unwrap_or(2),
    )
}

/// The call's deadline from `grpc-timeout` (at most 8 digits and a unit: `H`, `M`, `S`, `m`,
/// `u`, `n`); `None` when absent or malformed.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount.saturating_mul(3600)),
        b'M' => Duration::from_secs(amount.saturating_mul(60)),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The proxy's own error as a gRPC client expects it: HTTP 200, `application/grpc`, and a
/// trailers-only answer whose `grpc-status` and `grpc-message` say what went wrong.
pub fn error_response(error: &ProxyError) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS.clone(), code_value(error.grpc_code()));
    // The text body without its newline; plain ASCII, so no percent-encoding is needed.
    let message = error.body().trim_end();
    if let Ok(message) = HeaderValue::from_str(message) {
        headers.insert(GRPC_MESSAGE.clone(), message);
    }
    response
}

fn code_value(code: u8) -> HeaderValue {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    HeaderValue::from_static(CODES.get(usize::from(code)).copied().unwrap_or("2"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn grpc_is_recognised_by_content_type() {
        assert!(is_grpc(&headers("content-type", "application/grpc")));
        assert!(is_grpc(&headers("content-type", "application/grpc+proto")));
        assert!(!is_grpc(&headers("content-type", "application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_status_and_timeout_parse() {
        assert_eq!(grpc_status(&headers("grpc-status", "14")), Some(14));
        assert_eq!(grpc_status(&headers("grpc-status", "x")), Some(2));
        assert_eq!(grpc_status(&headers("grpc-status", "99")), Some(2));
        assert_eq!(grpc_status(&HeaderMap::new()), None);
        let t = |v| grpc_timeout(&headers("grpc-timeout", v));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("123456789S"), None, "more than 8 digits");
        assert_eq!(t("5x"), None);
        assert_eq!(t("S"), None);
    }

    #[test]
    fn proxy_errors_become_grpc_answers() {
        let r = error_response(&ProxyError::Timeout);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "4");
        assert_eq!(r.headers()["grpc-message"], "upstream timeout");
        assert_eq!(
            error_response(&ProxyError::NoRoute).headers()["grpc-status"],
            "12"
        );
        assert_eq!(
            error_response(&ProxyError::NoEndpoint).headers()["grpc-status"],
            "14"
        );
    }

    #[test]
    fn protocol_refusals_become_grpc_codes() {
        let code = |e: ProxyError| error_response(&e).headers()["grpc-status"].clone();
        // The client's own body stalled: its time ran out, it did not cancel.
        assert_eq!(code(ProxyError::ClientBodyTimeout), "4");
        // HTTP's 501: a coding canaryd does not implement.
        assert_eq!(code(ProxyError::UnsupportedTransferCoding), "12");
        // A request canaryd refused as malformed, as gRPC maps 400.
        assert_eq!(code(ProxyError::BadTarget), "13");
        // The upstream broke the exchange (502): retryable.
        assert_eq!(code(ProxyError::UnsolicitedSwitch), "14");
        assert_eq!(code(ProxyError::UndeliverableTransferCoding), "14");
    }
}
