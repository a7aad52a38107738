//! The rules of an external metric, a `[[route.analysis.metrics]]` entry with a `provider`
//! (`docs/rollouts.md#external-metrics`): the provider's keys and no other, placeholders that
//! exist, `min <= max`, a complete count form, a JSONPath-like `path`, and the `headers` and
//! `ca` rules of the webhooks (`webhook.rs`).

use std::ops::Range;
use std::time::Duration;

use http::HeaderMap;
use toml::Spanned;

use super::error::Issue;
use super::raw::RawMetric;
use super::types::{
    ExternalMetric, JsonPath, JsonStep, MetricSource, PromQuery, WebhookRoots, PLACEHOLDERS,
};
use super::validate::{positive_duration, Checked, Files};
use super::webhook::{ca_roots, header, system_roots};

/// How long a query may take when the metric sets no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Validates an entry that has a `provider`.
pub(crate) fn external_metric(
    raw: &Spanned<RawMetric>,
    provider: &Spanned<String>,
    files: Files<'_>,
) -> Checked<ExternalMetric> {
    let m = raw.get_ref();
    let name = m.name.get_ref().clone();
    for (key, span) in [
        ("quantile", m.quantile.as_ref().map(|v| v.span())),
        ("max_drop", m.max_drop.as_ref().map(|v| v.span())),
        ("max_ratio", m.max_ratio.as_ref().map(|v| v.span())),
    ] {
        if let Some(span) = span {
            return Err(not_for(span, key, &name));
        }
    }
    if let Some(on_error) = &m.on_error {
        if on_error.get_ref() != "inconclusive" {
            return Err(Issue::new(
                on_error.span(),
                format!(
                    "`on_error` is \"inconclusive\" (a failed query or no data is never a pass), got {:?}",
                    on_error.get_ref()
                ),
            ));
        }
    }
    let source = match provider.get_ref().as_str() {
        "prometheus" => prometheus(m, &name)?,
        "http-json" => http_json(m, &name)?,
        other => {
            return Err(Issue::new(
                provider.span(),
                format!("unknown metric provider {other:?}; use \"prometheus\" or \"http-json\""),
            ))
        }
    };
    let min = m.min.as_ref().map(|v| (v.get_ref().0, v.span()));
    let max = m.max.as_ref().map(|v| (v.get_ref().0, v.span()));
    if let (Some((min, _)), Some((max, span))) = (min.clone(), max.clone()) {
        if min > max {
            return Err(Issue::new(
                span,
                format!(
                    "metric {name:?}: `min` ({min}) is above `max` ({max}); nothing could pass"
                ),
            ));
        }
    }
    let counted = matches!(
        source,
        MetricSource::Prometheus {
            query: PromQuery::Count { .. },
            ..
        }
    );
    if !counted && min.is_none() && max.is_none() {
        return Err(Issue::new(
            m.name.span(),
            format!("metric {name:?} needs `min`, `max` or both: what value passes?"),
        ));
    }
    let url_span = match (&m.address, &m.url) {
        (Some(a), _) | (None, Some(a)) => a.clone(),
        (None, None) => m.name.clone(),
    };
    let https = url_span.get_ref().starts_with("https://");
    let roots: Option<WebhookRoots> = match (&m.ca, https) {
        (Some(ca), false) => {
            return Err(Issue::new(
                ca.span(),
                format!("metric {name:?}: `ca` verifies an https:// server; this one is http://"),
            ))
        }
        (Some(ca), true) => Some(ca_roots("metric", ca, files)?),
        (None, true) => Some(system_roots(&url_span, files)?),
        (None, false) => None,
    };
    let mut headers = HeaderMap::new();
    for (key, value) in &m.headers {
        let (key, value) = header("metric", key, value, files)?;
        headers.append(key, value);
    }
    let timeout = match &m.timeout {
        Some(t) => positive_duration(t, "timeout")?,
        None => DEFAULT_TIMEOUT,
    };
    Ok(ExternalMetric {
        name,
        source,
        min: min.map(|(v, _)| v),
        max: max.map(|(v, _)| v),
        headers,
        roots,
        timeout,
        dry_run: m.dry_run.as_ref().is_some_and(|d| *d.get_ref()),
    })
}

fn not_for(span: Range<usize>, key: &str, name: &str) -> Issue {
    Issue::new(
        span,
        format!("`{key}` does not apply to metric {name:?}; remove it"),
    )
}

fn prometheus(m: &RawMetric, name: &str) -> Checked<MetricSource> {
    for (key, value) in [
        ("url", &m.url),
        ("path", &m.path),
        ("method", &m.method),
        ("body", &m.body),
    ] {
        if let Some(v) = value {
            return Err(Issue::new(
                v.span(),
                format!("`{key}` is an http-json key; a prometheus metric has `address` and `query` (or `failures`, `total`, `threshold`)"),
            ));
        }
    }
    let address = m.address.as_ref().ok_or_else(|| {
        Issue::new(
            m.name.span(),
            format!("prometheus metric {name:?} needs `address`, e.g. \"http://prometheus:9090\""),
        )
    })?;
    let uri = absolute(address, "address")?;
    let query = match (&m.query, &m.failures, &m.total, &m.threshold) {
        (Some(q), None, None, None) => PromQuery::Value(placeholders(q)?),
        (None, Some(f), Some(t), Some(threshold)) => {
            let value = match threshold.get_ref() {
                toml::Value::Integer(i) => *i as f64,
                toml::Value::Float(f) => *f,
                _ => f64::NAN,
            };
            if !(0.0..=100.0).contains(&value) {
                return Err(Issue::new(
                    threshold.span(),
                    "`threshold` of a count form is a success rate in percent, 0..=100, e.g. 99.5",
                ));
            }
            if let Some(v) = m.min.as_ref().or(m.max.as_ref()) {
                return Err(Issue::new(
                    v.span(),
                    "the count form (`failures`, `total`) is judged by `threshold`; `min`/`max` judge a `query`",
                ));
            }
            PromQuery::Count {
                failures: placeholders(f)?,
                total: placeholders(t)?,
                threshold: value,
            }
        }
        (Some(_), Some(v), _, _) | (Some(_), _, Some(v), _) => {
            return Err(Issue::new(
                v.span(),
                "a metric has either `query` or the count form (`failures`, `total`, `threshold`), not both",
            ))
        }
        (Some(_), None, None, Some(t)) => {
            return Err(Issue::new(
                t.span(),
                "`threshold` belongs to the count form (`failures`, `total`); a `query` is judged by `min`/`max`",
            ))
        }
        (None, f, t, threshold) => {
            let missing: Vec<&str> = [
                ("failures", f.is_none()),
                ("total", t.is_none()),
                ("threshold", threshold.is_none()),
            ]
            .iter()
            .filter(|(_, missing)| *missing)
            .map(|(key, _)| *key)
            .collect();
            let span = f
                .as_ref()
                .or(t.as_ref())
                .map(|v| v.span())
                .unwrap_or_else(|| m.name.span());
            return Err(Issue::new(
                span,
                format!(
                    "prometheus metric {name:?} needs `query`, or the whole count form: missing `{}`",
                    missing.join("`, `")
                ),
            ));
        }
    };
    Ok(MetricSource::Prometheus {
        address: uri,
        query,
    })
}

fn http_json(m: &RawMetric, name: &str) -> Checked<MetricSource> {
    for (key, value) in [
        ("address", &m.address),
        ("query", &m.query),
        ("failures", &m.failures),
        ("total", &m.total),
    ] {
        if let Some(v) = value {
            return Err(Issue::new(
                v.span(),
                format!("`{key}` is a prometheus key; an http-json metric has `url`, `path` and optionally `method` and `body`"),
            ));
        }
    }
    if let Some(t) = &m.threshold {
        return Err(not_for(t.span(), "threshold", name));
    }
    let url = m.url.as_ref().ok_or_else(|| {
        Issue::new(
            m.name.span(),
            format!("http-json metric {name:?} needs `url`"),
        )
    })?;
    absolute(url, "url")?;
    let url_text = placeholders(url)?;
    let path = m.path.as_ref().ok_or_else(|| {
        Issue::new(
            m.name.span(),
            format!("http-json metric {name:?} needs `path`, e.g. \"$.data.value\""),
        )
    })?;
    let path = json_path(path)?;
    let body = m.body.as_ref().map(placeholders).transpose()?;
    match (m.method.as_ref(), &body) {
        (None, _) => {}
        (Some(method), Some(_)) if method.get_ref() == "POST" => {}
        (Some(method), None) if method.get_ref() == "GET" => {}
        (Some(method), _) => {
            return Err(Issue::new(
                method.span(),
                format!(
                    "`method` is \"GET\" (no `body`) or \"POST\" (with `body`), got {:?}",
                    method.get_ref()
                ),
            ))
        }
    }
    Ok(MetricSource::HttpJson {
        url: url_text,
        body,
        path,
    })
}

/// An absolute http(s) URL, as far as it can be checked before placeholders are filled.
fn absolute(value: &Spanned<String>, key: &str) -> Checked<http::Uri> {
    value
        .get_ref()
        .parse::<http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
        .ok_or_else(|| {
            Issue::new(
                value.span(),
                format!(
                    "`{key}` must be an absolute http:// or https:// URL, got {:?}",
                    value.get_ref()
                ),
            )
        })
}

/// The text, once every `{name}` in it is a known placeholder. A `{` not followed by a
/// lower-case name and `}` is text (PromQL's label matchers `{revision="…"}`).
fn placeholders(value: &Spanned<String>) -> Checked<String> {
    for name in placeholder_names(value.get_ref()) {
        if !PLACEHOLDERS.contains(&name) {
            return Err(Issue::new(
                value.span(),
                format!(
                    "unknown placeholder {{{name}}}; use {}",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(value.get_ref().clone())
}

/// Every `{name}` (lower-case letters and `_`) in `text`.
pub fn placeholder_names(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(rest.len());
        if end > 0 && rest[end..].starts_with('}') {
            names.push(&rest[..end]);
        }
    }
    names
}

/// `$` then `.key` or `[index]` steps.
fn json_path(value: &Spanned<String>) -> Checked<JsonPath> {
    let bad = |why: &str| {
        Issue::new(
            value.span(),
            format!(
                "`path` {:?} {why}; write `$` then `.key` and `[index]` steps, e.g. \"$.data.value\" or \"$.data.result[0].value\"",
                value.get_ref()
            ),
        )
    };
    let text = value.get_ref();
    let mut rest = text
        .strip_prefix('$')
        .ok_or_else(|| bad("does not start with `$`"))?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return Err(bad("has an empty key"));
            }
            steps.push(JsonStep::Key(after[..end].to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(|| bad("has an unclosed `[`"))?;
            let index = after[..end]
                .parse::<usize>()
                .map_err(|_| bad("has an index that is not a number"))?;
            steps.push(JsonStep::Index(index));
            rest = &after[end + 1..];
        } else {
            return Err(bad("has a step that is neither `.key` nor `[index]`"));
        }
    }
    Ok(JsonPath(steps))
}
