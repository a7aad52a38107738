//! Reading the external metrics (`docs/rollouts.md#external-metrics`) on the route's analysis
//! task, before each check, never on the request path: placeholders filled, every metric
//! asked at once, each within its `timeout`. A Prometheus metric is an instant query
//! (`GET {address}/api/v1/query?query=…`) whose vector must hold exactly one sample; an
//! http-json metric is a GET (or a POST of `body`) whose JSON answer holds a number at `path`.
//! Whatever goes wrong becomes the reading's error, which the judge takes as inconclusive.

use std::time::Duration;

use http::{Method, StatusCode, Uri};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::analysis::judge::external::{ExternalReading, Reading};
use crate::analysis::runner::webhook::{fetch, Outgoing};
use crate::analysis::Rollout;
use crate::config::{ExternalMetric, JsonPath, JsonStep, MetricSource, PromQuery};

/// The largest answer read from a metrics source.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The values the placeholders stand for at one check.
#[derive(Debug, Clone)]
pub struct Placeholders {
    /// `{route}`.
    pub route: String,
    /// `{revision}`: the canary's.
    pub revision: String,
    /// `{primary_revision}`.
    pub primary_revision: String,
    /// `{interval}`: the analysis interval as a PromQL duration (`60s`, `1500ms`).
    pub interval: String,
}

impl Placeholders {
    /// The rollout's values; `interval` is the route's analysis interval.
    pub fn of(rollout: &Rollout, interval: Duration) -> Placeholders {
        Placeholders {
            route: rollout.route().to_owned(),
            revision: rollout.revision().to_owned(),
            primary_revision: rollout.primary_revision().to_owned(),
            interval: promql_duration(interval),
        }
    }

    /// `text` with every placeholder replaced. `{version}` is the version under judgement,
    /// always `canary` (the primary is judged by canaryd's own metrics).
    pub fn fill(&self, text: &str) -> String {
        text.replace("{route}", &self.route)
            .replace("{primary_revision}", &self.primary_revision)
            .replace("{revision}", &self.revision)
            .replace("{version}", "canary")
            .replace("{interval}", &self.interval)
    }
}

/// A duration as PromQL writes it: whole seconds as `60s`, anything finer in `ms`.
pub fn promql_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Read every metric, concurrently.
pub async fn read_all(metrics: &[ExternalMetric], values: &Placeholders) -> Vec<ExternalReading> {
    let mut set = tokio::task::JoinSet::new();
    for (index, metric) in metrics.iter().enumerate() {
        let metric = metric.clone();
        let values = values.clone();
        set.spawn(async move { (index, read(&metric, &values).await) });
    }
    let mut readings: Vec<(usize, ExternalReading)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(reading) = joined {
            readings.push(reading);
        }
    }
    readings.sort_by_key(|(index, _)| *index);
    readings.into_iter().map(|(_, reading)| reading).collect()
}

/// Read one metric.
pub async fn read(metric: &ExternalMetric, values: &Placeholders) -> ExternalReading {
    let (query, result) = match &metric.source {
        MetricSource::Prometheus { address, query } => match query {
            PromQuery::Value(text) => {
                let text = values.fill(text);
                let result = prometheus(metric, address, &text).await.map(Reading::Value);
                (text, result)
            }
            PromQuery::Count {
                failures, total, ..
            } => {
                let failures = values.fill(failures);
                let total = values.fill(total);
                let (f, t) = tokio::join!(
                    prometheus(metric, address, &failures),
                    prometheus(metric, address, &total)
                );
                let result = match (f, t) {
                    (Ok(failures), Ok(total)) => Ok(Reading::Count { failures, total }),
                    (Err(e), _) => Err(format!("failures: {e}")),
                    (_, Err(e)) => Err(format!("total: {e}")),
                };
                (format!("failures: {failures}; total: {total}"), result)
            }
        },
        MetricSource::HttpJson { url, body, path } => {
            let url = values.fill(url);
            let body = body.as_deref().map(|b| values.fill(b));
            let result = http_json(metric, &url, body, path)
                .await
                .map(Reading::Value);
            (url, result)
        }
    };
    ExternalReading {
        name: metric.name.clone(),
        query,
        result,
    }
}

/// One instant query: the vector's single sample, or a scalar.
async fn prometheus(metric: &ExternalMetric, address: &Uri, query: &str) -> Result<f64, String> {
    let base = address.to_string();
    let url = format!(
        "{}/api/v1/query?query={}",
        base.trim_end_matches('/'),
        utf8_percent_encode(query, NON_ALPHANUMERIC)
    );
    prometheus_value(&get_json(metric, &url, None).await?)
}

/// The number in a Prometheus instant-query answer: the vector's single sample, or a scalar;
/// an empty vector, several series, NaN or an error answer is no value.
pub fn prometheus_value(json: &Value) -> Result<f64, String> {
    if json.get("status").and_then(Value::as_str) != Some("success") {
        let error = json
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no status");
        return Err(format!("prometheus answered an error: {error}"));
    }
    let data = json.get("data").ok_or("prometheus answer has no `data`")?;
    let sample = match data.get("resultType").and_then(Value::as_str) {
        Some("vector") => {
            let result = data
                .get("result")
                .and_then(Value::as_array)
                .ok_or("prometheus answer has no `result` array")?;
            match result.as_slice() {
                [] => return Err("no data: the query returned an empty vector".to_owned()),
                [one] => one.get("value").ok_or("a sample without `value`")?,
                many => {
                    return Err(format!(
                        "the query returned {} series; aggregate it to one (e.g. sum(...))",
                        many.len()
                    ))
                }
            }
        }
        Some("scalar") => data.get("result").ok_or("a scalar without `result`")?,
        other => {
            return Err(format!(
                "unsupported result type {other:?}; want a vector or a scalar"
            ))
        }
    };
    // `[ <unix time>, "<value>" ]`
    let text = sample
        .get(1)
        .and_then(Value::as_str)
        .ok_or("a sample whose value is not `[time, \"number\"]`")?;
    let value = text
        .parse::<f64>()
        .map_err(|_| format!("the sample value {text:?} is not a number"))?;
    if value.is_nan() {
        return Err("no data: the value is NaN".to_owned());
    }
    Ok(value)
}

/// GET (or POST `body`) `url` and read the number at `path`.
async fn http_json(
    metric: &ExternalMetric,
    url: &str,
    body: Option<String>,
    path: &JsonPath,
) -> Result<f64, String> {
    json_value(&get_json(metric, url, body).await?, path)
}

/// The number at `path` in a JSON answer (a number, or a string holding one).
pub fn json_value(json: &Value, path: &JsonPath) -> Result<f64, String> {
    let mut at = json;
    for step in &path.0 {
        at = match step {
            JsonStep::Key(key) => at.get(key.as_str()),
            JsonStep::Index(index) => at.get(*index),
        }
        .ok_or_else(|| format!("the answer has nothing at {}", describe(path)))?;
    }
    match at {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| "the number does not fit f64".to_owned()),
        // Prometheus-style answers carry numbers as strings.
        Value::String(s) => s
            .parse::<f64>()
            .map_err(|_| format!("the value at {} is {s:?}, not a number", describe(path))),
        other => Err(format!(
            "the value at {} is {other}, not a number",
            describe(path)
        )),
    }
}

fn describe(path: &JsonPath) -> String {
    let mut text = String::from("$");
    for step in &path.0 {
        match step {
            JsonStep::Key(key) => {
                text.push('.');
                text.push_str(key);
            }
            JsonStep::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

/// The request, a 2xx answer, and its body as JSON.
async fn get_json(
    metric: &ExternalMetric,
    url: &str,
    body: Option<String>,
) -> Result<Value, String> {
    let uri = url
        .parse::<Uri>()
        .map_err(|e| format!("{url:?} is not a URL once filled: {e}"))?;
    let outgoing = Outgoing {
        method: if body.is_some() {
            Method::POST
        } else {
            Method::GET
        },
        headers: &metric.headers,
        roots: metric.roots.as_ref(),
        body: body.map(|b| (b.into_bytes(), "application/json")),
    };
    let (status, answer) = fetch(&uri, &outgoing, metric.timeout, MAX_ANSWER_BYTES).await?;
    if status != StatusCode::OK && !status.is_success() {
        return Err(format!(
            "{} answered {status}",
            uri.authority().map_or("the server", |a| a.as_str())
        ));
    }
    serde_json::from_slice(&answer).map_err(|e| format!("the answer is not JSON: {e}"))
}

#[cfg(test)]
pub(in crate::analysis) mod test_server;
#[cfg(test)]
mod tests;
