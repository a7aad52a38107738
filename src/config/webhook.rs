//! The rules of `[[route.webhooks]]` (docs/rollouts.md#webhooks,
//! docs/rollouts.md#notifications): the type, an `http://` or `https://` URL and the roots its
//! certificate is verified against, the body `format`, the `severity` of `event` hooks, extra
//! `headers` (a value `file:/path` is read from that file and never echoed), and `retries`,
//! which only the notice types take.

use std::sync::{Arc, OnceLock};

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use toml::Spanned;

use super::error::Issue;
use super::raw::RawWebhook;
use super::types::{WebhookConfig, WebhookFormat, WebhookKind, WebhookRoots, WebhookSeverity};
use super::validate::{int_in, positive_duration, resolve, Checked, Files};

/// Attempts after the first when a notice hook sets no `retries`.
const DEFAULT_NOTICE_RETRIES: u32 = 3;

/// More attempts than this is a typo: with the backoff's 60 s cap it would retry for an hour.
const MAX_RETRIES: i64 = 50;

/// The prefix of a header value read from a file.
const FILE_PREFIX: &str = "file:";

/// Validates every `[[route.webhooks]]` entry.
pub(crate) fn webhooks(
    raw: &[Spanned<RawWebhook>],
    files: Files<'_>,
) -> Checked<Vec<WebhookConfig>> {
    raw.iter().map(|w| webhook(w.get_ref(), files)).collect()
}

fn webhook(w: &RawWebhook, files: Files<'_>) -> Checked<WebhookConfig> {
    let kind = named(
        &w.kind,
        &WebhookKind::ALL,
        WebhookKind::as_str,
        "webhook type",
    )?;
    let url = w
        .url
        .get_ref()
        .parse::<http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
        .ok_or_else(|| {
            Issue::new(
                w.url.span(),
                format!(
                    "webhook `url` must be an absolute http:// or https:// URL such as \"https://hooks.example.com/canaryd\", got {:?}",
                    w.url.get_ref()
                ),
            )
        })?;
    let https = url.scheme_str() == Some("https");
    let roots = match (&w.ca, https) {
        (Some(ca), false) => {
            return Err(Issue::new(
                ca.span(),
                "`ca` verifies an https:// hook; this hook's `url` is http://",
            ))
        }
        (Some(ca), true) => Some(ca_roots("webhook", ca, files)?),
        (None, true) => Some(system_roots(&w.url, files)?),
        (None, false) => None,
    };
    let timeout = positive_duration(&w.timeout, "timeout")?;
    let format = named(
        &w.format,
        &WebhookFormat::ALL,
        WebhookFormat::as_str,
        "webhook format",
    )?;
    let severity = match &w.severity {
        None => WebhookSeverity::Info,
        Some(value) if kind != WebhookKind::Event => {
            return Err(Issue::new(
                value.span(),
                "`severity` filters the events sent to a type = \"event\" hook; other types have no severity",
            ))
        }
        Some(value) => named(
            value,
            &[WebhookSeverity::Info, WebhookSeverity::Warning],
            WebhookSeverity::as_str,
            "severity",
        )?,
    };
    let retries = match &w.retries {
        None if kind.is_notice() => DEFAULT_NOTICE_RETRIES,
        None => 0,
        Some(value) if !kind.is_notice() => {
            return Err(Issue::new(
                value.span(),
                format!(
                    "`retries` applies to the notice types (post-rollout, event); a {} hook is a gate, asked once per check",
                    kind.as_str()
                ),
            ))
        }
        Some(value) => int_in(value, "retries", 0, MAX_RETRIES)?,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &w.headers {
        let (name, value) = header("webhook", name, value, files)?;
        headers.append(name, value);
    }
    Ok(WebhookConfig {
        kind,
        url,
        timeout,
        metadata: w.metadata.clone(),
        format,
        severity,
        headers,
        retries,
        roots,
        // Filled in once `[admin]` is validated (`validate.rs`).
        status_page: None,
    })
}

/// One of a fixed set of names, or an error listing them.
pub(super) fn named<T: Copy>(
    value: &Spanned<String>,
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
) -> Checked<T> {
    all.iter()
        .copied()
        .find(|item| name(*item) == value.get_ref())
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|item| name(*item)).collect();
            Issue::new(
                value.span(),
                format!(
                    "unknown {what} {:?}; use one of {}",
                    value.get_ref(),
                    names.join(", ")
                ),
            )
        })
}

/// One `headers` entry of a webhook or an external metric (`owner`, for messages). The value
/// is marked sensitive, and no message quotes it: it may be a token, read from a file
/// precisely so that it is not in the config.
pub(super) fn header(
    owner: &str,
    name: &str,
    value: &Spanned<String>,
    files: Files<'_>,
) -> Checked<(HeaderName, HeaderValue)> {
    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        Issue::new(
            value.span(),
            format!("{owner} header name {name:?} is not a valid HTTP header name"),
        )
    })?;
    if matches!(
        header.as_str(),
        "host" | "content-length" | "transfer-encoding"
    ) {
        return Err(Issue::new(
            value.span(),
            format!("{owner} header {name:?} is set by canaryd from the URL and the body"),
        ));
    }
    let text = match value.get_ref().strip_prefix(FILE_PREFIX) {
        None => value.get_ref().clone(),
        Some(path) => {
            let path = resolve(files.base, path);
            if !files.read {
                // Nothing is sent (`canaryd simulate`): a placeholder keeps the shape.
                String::from("unread")
            } else {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Issue::new(
                        value.span(),
                        format!(
                            "cannot read {owner} header {name:?} from {}: {e}",
                            path.display()
                        ),
                    )
                })?;
                // Files written by `echo` end with a newline that is not part of the token.
                let text = text.trim_end_matches(['\n', '\r']).to_owned();
                if text.is_empty() {
                    return Err(Issue::new(
                        value.span(),
                        format!("{owner} header {name:?}: {} is empty", path.display()),
                    ));
                }
                text
            }
        }
    };
    let mut header_value = HeaderValue::from_str(&text).map_err(|_| {
        Issue::new(
            value.span(),
            format!(
                "{owner} header {name:?}: the value is not a valid HTTP header value (visible ASCII, no line breaks)"
            ),
        )
    })?;
    header_value.set_sensitive(true);
    Ok((header, header_value))
}

/// The certificates of a webhook's or an external metric's (`owner`) `ca` file.
pub(super) fn ca_roots(
    owner: &str,
    value: &Spanned<String>,
    files: Files<'_>,
) -> Checked<WebhookRoots> {
    let path = resolve(files.base, value.get_ref());
    let mut roots = RootCertStore::empty();
    if !files.read {
        return Ok(WebhookRoots(Arc::new(roots)));
    }
    let issue = |message: String| Issue::new(value.span(), message);
    let pem = std::fs::read(&path)
        .map_err(|e| issue(format!("cannot read {owner} `ca` {}: {e}", path.display())))?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            issue(format!(
                "{owner} `ca` {} is not PEM certificates: {e}",
                path.display()
            ))
        })?;
        roots.add(cert).map_err(|e| {
            issue(format!(
                "{owner} `ca` {}: a certificate is not usable as a root: {e}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(issue(format!(
            "{owner} `ca` {} holds no PEM CERTIFICATE block",
            path.display()
        )));
    }
    Ok(WebhookRoots(Arc::new(roots)))
}

/// The system's roots, loaded once per process: every reload would otherwise re-read the
/// whole certificate directory.
pub(super) fn system_roots(url: &Spanned<String>, files: Files<'_>) -> Checked<WebhookRoots> {
    static SYSTEM: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    if !files.read {
        return Ok(WebhookRoots(Arc::new(RootCertStore::empty())));
    }
    let roots = SYSTEM.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        // Unparsable entries are skipped, as every TLS client does with a system store.
        let (_added, _skipped) =
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        Arc::new(roots)
    });
    if roots.is_empty() {
        return Err(Issue::new(
            url.span(),
            "no system root certificates found to verify this https:// URL (install the ca-certificates package), or set `ca = \"/path/to/ca.pem\"`",
        ));
    }
    Ok(WebhookRoots(Arc::clone(roots)))
}
