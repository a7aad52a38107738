//! The rules of `[route.analysis]`: the canary revision it needs, `interval`, `threshold`,
//! `min_requests`, `inconclusive_limit`, exactly one schedule (`step_weight` + `max_weight`,
//! `step_weights` or `iterations`), and the `[[route.analysis.metrics]]` entries (those with a
//! `provider` are external metrics, checked by `external.rs`).

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::error::Issue;
use super::external::external_metric;
use super::raw::{Number, RawAnalysis, RawCanary, RawMetric};
use super::types::{
    AnalysisConfig, EvidenceScope, ExternalMetric, JudgeKind, MetricCheck, OnInconclusive,
    SequentialConfig, Steps,
};
use super::validate::{int_in, positive_duration, span_or, Checked, Files};

/// Validates `[route.analysis]` of a route whose `[route.canary]` is `canary`.
pub(crate) fn analysis_config(
    raw: &Spanned<RawAnalysis>,
    canary: &Spanned<RawCanary>,
    files: Files<'_>,
) -> Checked<AnalysisConfig> {
    let a = raw.get_ref();
    let c = canary.get_ref();
    if c.revision.get_ref().trim().is_empty() {
        return Err(Issue::new(
            span_or(c.revision.span(), canary.span()),
            "[route.analysis] needs `canary.revision`: set it to the revision being rolled out (e.g. \"v1.5.0\")",
        ));
    }
    if *c.weight.get_ref() != 0 {
        return Err(Issue::new(
            c.weight.span(),
            "`weight` is a fixed split and cannot be combined with [route.analysis], which sets the weight itself; remove it",
        ));
    }
    let interval = positive_duration(&a.interval, "interval")?;
    let threshold = int_in(&a.threshold, "threshold", 1, i64::from(u32::MAX))?;
    let steps = steps(raw)?;
    let min_requests = int_in(&a.min_requests, "min_requests", 1, i64::MAX)?;
    let inconclusive_limit = int_in(
        &a.inconclusive_limit,
        "inconclusive_limit",
        1,
        i64::from(u32::MAX),
    )?;
    let (own, external): (Vec<_>, Vec<_>) = a
        .metrics
        .iter()
        .partition(|m| m.get_ref().provider.is_none());
    let metrics = own
        .iter()
        .copied()
        .map(metric)
        .collect::<Checked<Vec<_>>>()?;
    let mut names: Vec<&str> = own
        .iter()
        .map(|m| m.get_ref().name.get_ref().as_str())
        .collect();
    let external = external
        .into_iter()
        .map(|raw| {
            let m = raw.get_ref();
            if names.contains(&m.name.get_ref().as_str()) {
                return Err(Issue::new(
                    m.name.span(),
                    format!(
                        "metric name {:?} is used twice in this route",
                        m.name.get_ref()
                    ),
                ));
            }
            names.push(m.name.get_ref());
            let provider = m
                .provider
                .as_ref()
                .ok_or_else(|| Issue::new(m.name.span(), "no provider"))?;
            external_metric(raw, provider, files)
        })
        .collect::<Checked<Vec<_>>>()?;
    let (judge, sequential) = judge(a, interval)?;
    if judge == JudgeKind::Sequential {
        for (raw, metric) in own.iter().copied().zip(&metrics) {
            testable(raw, metric, &sequential)?;
        }
        for metric in &external {
            testable_count(a, metric, &sequential)?;
        }
    }
    Ok(AnalysisConfig {
        interval,
        threshold,
        steps,
        min_requests,
        inconclusive_limit,
        judge,
        sequential,
        metrics,
        external,
        bake: a
            .bake
            .as_ref()
            .map(|b| positive_duration(b, "bake"))
            .transpose()?,
    })
}

/// `judge` and the sequential judge's keys (`docs/configuration.md#keys-and-defaults`).
fn judge(a: &RawAnalysis, interval: Duration) -> Checked<(JudgeKind, SequentialConfig)> {
    let kind = match &a.judge {
        None => JudgeKind::Sequential,
        Some(j) => match j.get_ref().as_str() {
            "sequential" => JudgeKind::Sequential,
            "threshold" => JudgeKind::Threshold,
            other => {
                return Err(Issue::new(
                    j.span(),
                    format!("unknown judge {other:?}; use \"sequential\" or \"threshold\""),
                ))
            }
        },
    };
    let mut config = SequentialConfig::defaults(interval);
    if kind == JudgeKind::Threshold {
        let sequential_only = [
            a.max_false_rollback
                .as_ref()
                .map(|v| (v.span(), "max_false_rollback")),
            a.max_false_promotion
                .as_ref()
                .map(|v| (v.span(), "max_false_promotion")),
            a.good_multiple
                .as_ref()
                .map(|v| (v.span(), "good_multiple")),
            a.bad_multiple.as_ref().map(|v| (v.span(), "bad_multiple")),
            a.max_step_duration
                .as_ref()
                .map(|v| (v.span(), "max_step_duration")),
            a.on_inconclusive
                .as_ref()
                .map(|v| (v.span(), "on_inconclusive")),
            a.evidence.as_ref().map(|v| (v.span(), "evidence")),
        ];
        if let Some((span, key)) = sequential_only
            .into_iter()
            .flatten()
            .min_by_key(|(s, _)| s.start)
        {
            return Err(Issue::new(
                span,
                format!("`{key}` applies only to judge = \"sequential\"; remove it or the `judge = \"threshold\"` line"),
            ));
        }
        return Ok((kind, config));
    }
    let probability = |v: &Spanned<Number>, key: &str| {
        number(
            v.get_ref().0,
            v.span(),
            key,
            |p| p > 0.0 && p < 0.5,
            "a probability in (0, 0.5), e.g. 0.01",
        )
    };
    if let Some(v) = &a.max_false_rollback {
        config.max_false_rollback = probability(v, "max_false_rollback")?;
    }
    if let Some(v) = &a.max_false_promotion {
        config.max_false_promotion = probability(v, "max_false_promotion")?;
    }
    if let Some(v) = &a.good_multiple {
        config.good_multiple = number(
            v.get_ref().0,
            v.span(),
            "good_multiple",
            |m| m > 0.0 && m < 1.0,
            "in (0, 1), e.g. 0.5",
        )?;
    }
    if let Some(v) = &a.bad_multiple {
        config.bad_multiple = number(
            v.get_ref().0,
            v.span(),
            "bad_multiple",
            |m| m > 1.0,
            "above 1, e.g. 1.5",
        )?;
    }
    if let Some(v) = &a.max_step_duration {
        config.max_step_duration = positive_duration(v, "max_step_duration")?;
        if config.max_step_duration < interval {
            return Err(Issue::new(
                v.span(),
                "`max_step_duration` must be at least one `interval`: a step is judged once per interval",
            ));
        }
    }
    if let Some(v) = &a.on_inconclusive {
        config.on_inconclusive = match v.get_ref().as_str() {
            "hold" => OnInconclusive::Hold,
            "rollback" => OnInconclusive::Rollback,
            other => {
                return Err(Issue::new(
                    v.span(),
                    format!("unknown on_inconclusive {other:?}; use \"hold\" or \"rollback\" (an undecided step never promotes)"),
                ))
            }
        };
    }
    if let Some(v) = &a.evidence {
        config.evidence = match v.get_ref().as_str() {
            "rollout" => EvidenceScope::Rollout,
            "step" => EvidenceScope::Step,
            other => {
                return Err(Issue::new(
                    v.span(),
                    format!("unknown evidence {other:?}; use \"rollout\" (carried across steps) or \"step\" (restarted at each step)"),
                ))
            }
        };
    }
    Ok((kind, config))
}

/// A metric the sequential judge can test: its "bad" rate must be a probability below 1, and
/// a success-rate threshold of 100% allows no failure at all, which no test can tell from 0.5x.
fn testable(raw: &Spanned<RawMetric>, metric: &MetricCheck, s: &SequentialConfig) -> Checked<()> {
    let (allowed, what) = match metric {
        MetricCheck::SuccessRate { threshold, .. } => (
            (100.0 - threshold) / 100.0,
            "failure rate (100 - threshold)",
        ),
        MetricCheck::Duration { quantile, .. } => (1.0 - quantile, "slow share (1 - quantile)"),
    };
    if let (
        MetricCheck::SuccessRate {
            max_drop: Some(drop),
            ..
        },
        Some(span),
    ) = (metric, raw.get_ref().max_drop.as_ref().map(|d| d.span()))
    {
        if *drop <= 0.0 {
            return Err(Issue::new(
                span,
                "the sequential judge needs `max_drop` above 0 (points the canary may lose against the primary); remove it or use judge = \"threshold\"",
            ));
        }
    }
    if allowed <= 0.0 || allowed * s.bad_multiple >= 1.0 {
        return Err(Issue::new(
            span_or(
                raw.get_ref()
                    .threshold
                    .as_ref()
                    .map_or(0..0, |t| t.span()),
                raw.span(),
            ),
            format!(
                "the sequential judge needs an allowed {what} above 0 and below 1/bad_multiple ({:.3}), got {allowed}; change the threshold or use judge = \"threshold\"",
                1.0 / s.bad_multiple
            ),
        ));
    }
    Ok(())
}

/// A count-form external metric is a sequential test too (docs/rollouts.md#external-metrics):
/// its allowed failure rate `100 − threshold` must leave room for "good" and "bad".
fn testable_count(a: &RawAnalysis, metric: &ExternalMetric, s: &SequentialConfig) -> Checked<()> {
    let Some(threshold) = metric.count_threshold().filter(|_| !metric.dry_run) else {
        return Ok(());
    };
    let allowed = (100.0 - threshold) / 100.0;
    if allowed > 0.0 && allowed * s.bad_multiple < 1.0 {
        return Ok(());
    }
    let raw = a
        .metrics
        .iter()
        .find(|m| m.get_ref().name.get_ref() == &metric.name);
    let span = raw
        .and_then(|m| m.get_ref().threshold.as_ref().map(|t| t.span()))
        .or_else(|| raw.map(|m| m.span()))
        .unwrap_or(0..0);
    Err(Issue::new(
        span,
        format!(
            "metric {:?}: the sequential judge tests the count form's failures like the requests' and needs an allowed failure rate (100 - threshold) above 0 and below 1/bad_multiple ({:.3}), got {allowed}; lower the threshold, set dry_run, or use judge = \"threshold\"",
            metric.name,
            1.0 / s.bad_multiple
        ),
    ))
}

/// Exactly one schedule: `step_weight` + `max_weight`, `step_weights`, or `iterations`.
fn steps(raw: &Spanned<RawAnalysis>) -> Checked<Steps> {
    let a = raw.get_ref();
    let mut ways: Vec<(Range<usize>, &str)> = Vec::new();
    if let Some(sw) = &a.step_weights {
        ways.push((sw.span(), "`step_weights`"));
    }
    let pair_span = [&a.step_weight, &a.max_weight]
        .into_iter()
        .flatten()
        .map(|v| v.span())
        .min_by_key(|s| s.start);
    if let Some(span) = pair_span {
        ways.push((span, "`step_weight`/`max_weight`"));
    }
    if let Some(it) = &a.iterations {
        ways.push((it.span(), "`iterations`"));
    }
    ways.sort_by_key(|(span, _)| span.start);
    match ways.as_slice() {
        [] => {
            return Err(Issue::new(
                raw.span(),
                "[route.analysis] needs a schedule: `step_weight` + `max_weight`, `step_weights`, or `iterations`",
            ))
        }
        [_] => {}
        [(_, first), (span, second), ..] => {
            return Err(Issue::new(
                span.clone(),
                format!("{second} cannot be combined with {first}; choose one schedule"),
            ))
        }
    }

    if let Some(list) = &a.step_weights {
        if list.get_ref().is_empty() {
            return Err(Issue::new(
                list.span(),
                "`step_weights` must list at least one weight, e.g. [1, 5, 10, 25, 50]",
            ));
        }
        let mut weights: Vec<u8> = Vec::with_capacity(list.get_ref().len());
        for w in list.get_ref() {
            let value: u8 = int_in(w, "step_weights entry", 1, 100)?;
            if let Some(&prev) = weights.last() {
                if value <= prev {
                    return Err(Issue::new(
                        w.span(),
                        format!("`step_weights` must be strictly increasing, but {value} follows {prev}"),
                    ));
                }
            }
            weights.push(value);
        }
        return Ok(Steps::Weights(weights));
    }
    if let Some(it) = &a.iterations {
        return Ok(Steps::Iterations(int_in(
            it,
            "iterations",
            1,
            i64::from(u32::MAX),
        )?));
    }
    match (&a.step_weight, &a.max_weight) {
        (Some(step), Some(max)) => {
            let step: u8 = int_in(step, "step_weight", 1, 100)?;
            let max_value = *max.get_ref();
            if !(i64::from(step)..=100).contains(&max_value) {
                return Err(Issue::new(
                    max.span(),
                    format!("`max_weight` must be in {step}..=100 (at least `step_weight`), got {max_value}"),
                ));
            }
            let max: u8 = int_in(max, "max_weight", i64::from(step), 100)?;
            Ok(Steps::Weights(expand_steps(step, max)))
        }
        (Some(step), None) => Err(Issue::new(
            step.span(),
            "`step_weight` needs `max_weight` (the weight whose passed check promotes); set both",
        )),
        (None, Some(max)) => Err(Issue::new(
            max.span(),
            "`max_weight` needs `step_weight` (the increment per passed check); set both",
        )),
        // Unreachable: exactly one schedule exists and it is this pair.
        (None, None) => Err(Issue::new(raw.span(), "[route.analysis] needs a schedule")),
    }
}

/// `step`, `2*step`, … below `max`, then `max` itself: 10/50 → [10,20,30,40,50]; 30/50 → [30,50].
pub(crate) fn expand_steps(step: u8, max: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = step;
    while w < max {
        out.push(w);
        w = w.saturating_add(step);
    }
    out.push(max);
    out
}

/// A finite number in `min..=max`.
fn number(
    value: f64,
    span: Range<usize>,
    key: &str,
    ok: impl Fn(f64) -> bool,
    rule: &str,
) -> Checked<f64> {
    if value.is_finite() && ok(value) {
        Ok(value)
    } else {
        Err(Issue::new(
            span,
            format!("`{key}` must be {rule}, got {value:?}"),
        ))
    }
}

fn metric(raw: &Spanned<RawMetric>) -> Checked<MetricCheck> {
    let m = raw.get_ref();
    let not_for = |v: Range<usize>, key: &str, name: &str| {
        Issue::new(
            v,
            format!("`{key}` does not apply to metric {name:?}; remove it"),
        )
    };
    let name = m.name.get_ref().as_str();
    if !matches!(name, "request-success-rate" | "request-duration") {
        return Err(Issue::new(
            m.name.span(),
            format!(
                "unknown metric {name:?}; use \"request-success-rate\" or \"request-duration\", or set `provider` (\"prometheus\", \"http-json\") for an external metric"
            ),
        ));
    }
    for (key, span) in [
        ("address", m.address.as_ref().map(|v| v.span())),
        ("url", m.url.as_ref().map(|v| v.span())),
        ("query", m.query.as_ref().map(|v| v.span())),
        ("failures", m.failures.as_ref().map(|v| v.span())),
        ("total", m.total.as_ref().map(|v| v.span())),
        ("method", m.method.as_ref().map(|v| v.span())),
        ("body", m.body.as_ref().map(|v| v.span())),
        ("path", m.path.as_ref().map(|v| v.span())),
        ("min", m.min.as_ref().map(|v| v.span())),
        ("max", m.max.as_ref().map(|v| v.span())),
        ("ca", m.ca.as_ref().map(|v| v.span())),
        ("timeout", m.timeout.as_ref().map(|v| v.span())),
        ("on_error", m.on_error.as_ref().map(|v| v.span())),
        ("dry_run", m.dry_run.as_ref().map(|v| v.span())),
    ] {
        if let Some(span) = span {
            return Err(Issue::new(
                span,
                format!("`{key}` belongs to an external metric (set `provider`); {name:?} is measured by canaryd"),
            ));
        }
    }
    if let Some((_, v)) = m.headers.iter().next() {
        return Err(not_for(v.span(), "headers", name));
    }
    let Some(threshold_value) = &m.threshold else {
        return Err(Issue::new(
            m.name.span(),
            format!("metric {name:?} needs `threshold`"),
        ));
    };
    match name {
        "request-success-rate" => {
            let threshold = match threshold_value.get_ref() {
                toml::Value::Integer(i) => *i as f64,
                toml::Value::Float(f) => *f,
                _ => {
                    return Err(Issue::new(
                        threshold_value.span(),
                        "`threshold` of request-success-rate is a percentage such as 99.0",
                    ))
                }
            };
            let threshold = number(
                threshold,
                threshold_value.span(),
                "threshold",
                |v| (0.0..=100.0).contains(&v),
                "a percentage in 0..=100",
            )?;
            let max_drop = match &m.max_drop {
                Some(d) => Some(number(
                    d.get_ref().0,
                    d.span(),
                    "max_drop",
                    |v| v >= 0.0,
                    "at least 0",
                )?),
                None => None,
            };
            if let Some(q) = &m.quantile {
                return Err(not_for(q.span(), "quantile", "request-success-rate"));
            }
            if let Some(r) = &m.max_ratio {
                return Err(not_for(r.span(), "max_ratio", "request-success-rate"));
            }
            Ok(MetricCheck::SuccessRate {
                threshold,
                max_drop,
            })
        }
        "request-duration" => {
            let threshold = match threshold_value.get_ref() {
                toml::Value::String(s) => positive_duration(
                    &Spanned::new(threshold_value.span(), s.clone()),
                    "threshold",
                )?,
                _ => {
                    return Err(Issue::new(
                        threshold_value.span(),
                        "`threshold` of request-duration is a duration such as \"500ms\"",
                    ))
                }
            };
            let quantile = match &m.quantile {
                Some(q) => number(
                    q.get_ref().0,
                    q.span(),
                    "quantile",
                    |v| v > 0.0 && v < 1.0,
                    "in the open interval (0, 1), e.g. 0.99",
                )?,
                None => 0.99,
            };
            let max_ratio = match &m.max_ratio {
                Some(r) => Some(number(
                    r.get_ref().0,
                    r.span(),
                    "max_ratio",
                    |v| v > 0.0,
                    "above 0",
                )?),
                None => None,
            };
            if let Some(d) = &m.max_drop {
                return Err(not_for(d.span(), "max_drop", "request-duration"));
            }
            Ok(MetricCheck::Duration {
                threshold,
                quantile,
                max_ratio,
            })
        }
        _ => unreachable_metric(m),
    }
}

/// The name was checked above; kept as an error rather than a panic.
fn unreachable_metric(m: &RawMetric) -> Checked<MetricCheck> {
    Err(Issue::new(
        m.name.span(),
        format!("unknown metric {:?}", m.name.get_ref()),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn steps_expand_up_to_and_including_max() {
        assert_eq!(expand_steps(10, 50), [10, 20, 30, 40, 50]);
        assert_eq!(expand_steps(30, 50), [30, 50]);
        assert_eq!(expand_steps(50, 50), [50]);
        assert_eq!(expand_steps(1, 3), [1, 2, 3]);
        assert_eq!(expand_steps(100, 100), [100]);
    }
}
