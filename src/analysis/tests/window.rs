//! The window arithmetic and the metric judgement on their own.

use std::time::Duration;

use super::*;
use crate::analysis::judge::format_ms;
use crate::analysis::{judge, Failure};

#[test]
fn an_empty_window_has_no_rate_and_no_quantile() {
    let empty = VersionWindow::new().unwrap();
    assert_eq!(empty.success_rate(), None);
    assert_eq!(empty.quantile(0.99), None);
}

#[test]
fn success_rate_is_exact_for_round_numbers() {
    assert_eq!(traffic(100, 1, 10).success_rate(), Some(99.0));
    assert_eq!(traffic(200, 0, 10).success_rate(), Some(100.0));
    assert_eq!(traffic(3, 3, 10).success_rate(), Some(0.0));
}

#[test]
fn quantiles_come_from_the_histogram() {
    let w = latencies(98, 50, 2, 620);
    let p50 = w.quantile(0.5).unwrap();
    let p99 = w.quantile(0.99).unwrap();
    assert!(
        p50.abs_diff(Duration::from_millis(50)) < Duration::from_micros(50),
        "{p50:?}"
    );
    assert!(
        p99.abs_diff(Duration::from_millis(620)) < Duration::from_micros(620),
        "{p99:?}"
    );
    // A latency exactly at a threshold is not failed by the histogram's rounding.
    assert!(traffic(10, 0, 500).quantile(0.99).unwrap() <= Duration::from_millis(500));
}

#[test]
fn extreme_latencies_are_clamped_not_lost() {
    let mut w = VersionWindow::new().unwrap();
    w.record(true, Duration::ZERO);
    w.record(true, Duration::from_secs(3600));
    assert_eq!(w.requests, 2);
    assert_eq!(w.latency.len(), 2);
    assert!(w.quantile(1.0).unwrap() <= Duration::from_secs(60));
}

#[test]
fn merge_adds_counts_and_latencies() {
    let mut a = traffic(10, 1, 10);
    a.merge(&traffic(30, 2, 100));
    assert_eq!((a.requests, a.failures), (40, 3));
    assert_eq!(a.latency.len(), 40);
    assert!(a.quantile(0.5).unwrap() >= Duration::from_millis(99));

    a.clear();
    assert_eq!((a.requests, a.failures, a.latency.len()), (0, 0, 0));
}

#[test]
fn every_failing_metric_is_reported() {
    let bad = window(traffic(900, 0, 40), latencies(90, 50, 10, 900));
    let mut bad = bad;
    bad.canary.failures = 10;
    let judgement = judge(&seed(), &bad);
    assert_eq!(judgement.failures.len(), 2);
    assert!(matches!(judgement.failures[0], Failure::SuccessRate { .. }));
    assert!(matches!(judgement.failures[1], Failure::Duration { .. }));
    assert!(judgement.metrics.iter().all(|m| !m.passed));
}

#[test]
fn durations_read_with_three_significant_digits() {
    assert_eq!(format_ms(Duration::from_millis(500)), "500ms");
    assert_eq!(format_ms(Duration::from_micros(619_520)), "620ms");
    assert_eq!(format_ms(Duration::from_micros(45_600)), "45.6ms");
    assert_eq!(format_ms(Duration::from_micros(1_234)), "1.23ms");
    assert_eq!(format_ms(Duration::from_micros(412)), "0.412ms");
    assert_eq!(format_ms(Duration::from_secs(2)), "2000ms");
    assert_eq!(format_ms(Duration::from_millis(10)), "10ms");
}
