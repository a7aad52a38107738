//! Events: their JSON shape and the ring buffer the API serves.

use super::*;
use crate::analysis::{EventLog, Severity, EVENT_LOG_CAPACITY};

#[test]
fn event_json_has_exactly_at_route_severity_message() {
    let event = Event::warning(
        "shop",
        at(0),
        "Halt shop advancement success rate 97.00% < 99%",
    );
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "at": "2023-11-14T22:13:20.000Z",
            "route": "shop",
            "severity": "warning",
            "message": "Halt shop advancement success rate 97.00% < 99%",
        })
    );
    assert_eq!(serde_json::to_value(Severity::Info).unwrap(), "info");
}

#[test]
fn a_clock_before_1970_does_not_panic() {
    let event = Event::info(
        "shop",
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(5),
        "x",
    );
    assert_eq!(event.at, "1970-01-01T00:00:00.000Z");
}

#[test]
fn the_log_keeps_the_last_1000_newest_last() {
    let mut log = EventLog::new();
    for i in 0..1500 {
        let route = if i % 2 == 0 { "shop" } else { "cart" };
        log.push(Event::info(route, at(i), format!("event {i}")));
    }
    assert_eq!(log.len(), EVENT_LOG_CAPACITY);
    let all = log.list(None);
    assert_eq!(all.first().unwrap().message, "event 500");
    assert_eq!(all.last().unwrap().message, "event 1499");

    let shop = log.list(Some("shop"));
    assert_eq!(shop.len(), 500);
    assert!(shop.iter().all(|e| e.route == "shop"));
    assert_eq!(shop.last().unwrap().message, "event 1498");
    assert!(log.list(Some("nope")).is_empty());
}

#[test]
fn a_whole_rollout_reads_like_flagger() {
    let mut run = Runner::start(seed());
    run.tick(&window(traffic(900, 0, 40), traffic(100, 3, 50)));
    run.weights(4, &healthy());
    run.tick(&healthy());
    let mut log = EventLog::new();
    log.extend(run.events.clone());
    let messages: Vec<_> = log
        .list(Some("shop"))
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(
        messages,
        [
            "New revision detected! Rolling out shop v1.5.0 (primary v1.4.2)",
            "Starting canary analysis for shop",
            "Advance shop canary weight 10",
            "Halt shop advancement success rate 97.00% < 99%",
            "Advance shop canary weight 20",
            "Advance shop canary weight 30",
            "Advance shop canary weight 40",
            "Advance shop canary weight 50",
            "Promotion completed! shop is now serving v1.5.0",
        ]
    );
}
