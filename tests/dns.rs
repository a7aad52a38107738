//! Endpoints named by DNS: every address a name resolves to is an endpoint, and fresh answers
//! (looked up every 5 s) move traffic without a reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use canaryd::config::EndpointAddr;
use canaryd::control::Resolved;
use support::*;

#[tokio::test]
async fn a_dns_name_is_resolved_and_fresh_answers_move_traffic() {
    let first = Upstream::start("first").await;
    let second = Upstream::start("second").await;
    let port = first.addr.port();
    let toml = base_config("", "retries = 2")
        + &format!("[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"localhost:{port}\"]\n");
    let proxy = Canaryd::start(&toml);
    let client = client();
    // `localhost` may also answer ::1, where nothing listens: connect failures are retried on
    // the other addresses, so every request succeeds.
    let counts = tally(&client, &proxy.url("/"), 20, &[]).await;
    assert_eq!(counts.get("first"), Some(&20), "{counts:?}");

    // The name now answers the second upstream's address.
    let control = proxy.server().control().clone();
    let generation = control.snapshot().generation;
    let mut answers = Resolved::new();
    answers.insert(
        EndpointAddr {
            host: "localhost".into(),
            port,
        },
        vec![second.addr],
    );
    control.resolved(answers.clone());
    eventually("a new snapshot", std::time::Duration::from_secs(5), || {
        control.snapshot().generation > generation
    })
    .await;
    let counts = tally(&client, &proxy.url("/"), 20, &[]).await;
    assert_eq!(counts.get("second"), Some(&20), "{counts:?}");

    // The same answer again publishes nothing; an empty answer (a DNS hiccup) keeps the last one.
    let generation = control.snapshot().generation;
    control.resolved(answers);
    let mut empty = Resolved::new();
    empty.insert(
        EndpointAddr {
            host: "localhost".into(),
            port,
        },
        vec![],
    );
    control.resolved(empty);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(control.snapshot().generation, generation);
    assert_eq!(get(&client, &proxy.url("/"), &[]).await.2, "second");
}
