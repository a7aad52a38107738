//! Routing through a running canaryd: weighted split, match rules, sticky keys, hosts, 404.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use canaryd::routing::{Phase, RolloutView};
use support::*;

#[tokio::test]
async fn weighted_split_is_within_three_points_over_2000_requests() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let proxy =
        Canaryd::start(&(base_config("", "") + &split_route("shop", &primary, &canary, 10)));
    let client = client();
    let counts = tally(&client, &proxy.url("/"), 2000, &[]).await;
    let on_canary = counts.get("canary").copied().unwrap_or(0);
    // 10% ± 3 points of 2,000.
    assert!(
        (140..=260).contains(&on_canary),
        "canary got {on_canary} of 2000: {counts:?}"
    );
    assert_eq!(primary.hits() + canary.hits(), 2000);
}

#[tokio::test]
async fn match_rules_override_the_weight_first_match_wins() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let toml = base_config("", "")
        + &split_route("shop", &primary, &canary, 0).replace("weight = 0", "weight = 1")
        + r#"
[[route.match]]
headers = { "x-canary" = "always" }
[[route.match]]
headers = { "x-canary" = { prefix = "never" } }
to = "primary"
[[route.match]]
cookies = { "canary" = { regex = "^(yes|always)$" } }
"#;
    let proxy = Canaryd::start(&toml);
    let client = client();
    let url = proxy.url("/");
    let canary_only = tally(&client, &url, 50, &[("x-canary", "always")]).await;
    assert_eq!(canary_only.get("canary"), Some(&50), "{canary_only:?}");
    let by_cookie = tally(&client, &url, 50, &[("cookie", "a=b; canary=yes")]).await;
    assert_eq!(by_cookie.get("canary"), Some(&50), "{by_cookie:?}");
    let wrong_cookie = tally(&client, &url, 50, &[("cookie", "canary=yess")]).await;
    assert!(
        wrong_cookie.get("canary").copied().unwrap_or(0) < 10,
        "{wrong_cookie:?}"
    );
    // The primary rule comes before the cookie rule.
    let forced_primary = tally(
        &client,
        &url,
        50,
        &[("x-canary", "never-ever"), ("cookie", "canary=yes")],
    )
    .await;
    assert_eq!(
        forced_primary.get("primary"),
        Some(&50),
        "{forced_primary:?}"
    );
}

#[tokio::test]
async fn sticky_keys_keep_their_side_as_the_weight_grows() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let toml = base_config("", "")
        + &split_route("shop", &primary, &canary, 10)
        + "[route.sticky]\ncookie = \"session_id\"\n";
    let proxy = Canaryd::start(&toml);
    let client = client();
    let url = proxy.url("/");
    let users: Vec<String> = (0..300).map(|i| format!("session_id=user-{i}")).collect();

    let mut side_at_10 = Vec::new();
    for cookie in &users {
        let (_, _, first) = get(&client, &url, &[("cookie", cookie)]).await;
        // The same key always lands on the same side.
        let (_, _, again) = get(&client, &url, &[("cookie", cookie)]).await;
        assert_eq!(first, again, "{cookie} flipped at a constant weight");
        side_at_10.push(first);
    }
    let canary_at_10 = side_at_10.iter().filter(|s| *s == "canary").count();
    assert!(
        (10..=55).contains(&canary_at_10),
        "{canary_at_10} of 300 at weight 10"
    );

    let control = proxy.server().control().clone();
    control
        .set_rollout(
            "shop",
            RolloutView {
                phase: Phase::Static,
                weight: 40,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .await
        .unwrap_or_else(|e| panic!("the control task dropped the rollout: {e}"));

    let mut canary_at_40 = 0;
    for (cookie, before) in users.iter().zip(&side_at_10) {
        let (_, _, now) = get(&client, &url, &[("cookie", cookie)]).await;
        if before == "canary" {
            assert_eq!(
                now, "canary",
                "{cookie} left the canary when the weight grew"
            );
        }
        canary_at_40 += usize::from(now == "canary");
    }
    assert!(
        canary_at_40 > canary_at_10,
        "weight 40 moved nobody: {canary_at_40}"
    );
    assert!(
        (85..=155).contains(&canary_at_40),
        "{canary_at_40} of 300 at weight 40"
    );
}

#[tokio::test]
async fn hosts_and_prefixes_pick_the_route_and_unknown_gets_404() {
    let shop = Upstream::start("shop").await;
    let api = Upstream::start("api").await;
    let wild = Upstream::start("wild").await;
    let toml = base_config("", "")
        + &format!(
            r#"
[[route]]
name = "shop"
hosts = ["shop.example.com"]
[route.primary]
revision = "v1"
endpoints = ["{}"]

[[route]]
name = "shop-api"
hosts = ["shop.example.com"]
path_prefix = "/api"
[route.primary]
revision = "v1"
endpoints = ["{}"]

[[route]]
name = "wild"
hosts = ["*.example.com"]
[route.primary]
revision = "v1"
endpoints = ["{}"]
"#,
            shop.addr, api.addr, wild.addr
        );
    let proxy = Canaryd::start(&toml);
    let client = client();
    let url = |p: &str| proxy.url(p);
    assert_eq!(
        get(&client, &url("/"), &[("host", "shop.example.com")])
            .await
            .2,
        "shop"
    );
    assert_eq!(
        get(
            &client,
            &url("/api/v1"),
            &[("host", "Shop.Example.com:8080")]
        )
        .await
        .2,
        "api"
    );
    assert_eq!(
        get(&client, &url("/api"), &[("host", "eu.example.com")])
            .await
            .2,
        "wild"
    );
    let (status, _, body) = get(&client, &url("/"), &[("host", "other.test")]).await;
    assert_eq!(status, 404);
    assert_eq!(body, "no route\n");
}

#[tokio::test]
async fn a_failed_canary_gets_no_traffic_through_any_path() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let toml = base_config("", "")
        + &split_route("shop", &primary, &canary, 50)
        + "[[route.match]]\nheaders = { \"x-canary\" = \"always\" }\n"
        + "[route.sticky]\ncookie = \"session_id\"\n"
        + "[route.mirror]\npercent = 100\n";
    let proxy = Canaryd::start(&toml);
    let client = client();
    // Before: every path reaches the canary.
    let by_header = tally(&client, &proxy.url("/"), 20, &[("x-canary", "always")]).await;
    assert_eq!(by_header.get("canary"), Some(&20));

    let control = proxy.server().control().clone();
    control
        .set_rollout(
            "shop",
            RolloutView {
                phase: Phase::Failed,
                weight: 0,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .await
        .unwrap_or_else(|e| panic!("the control task dropped the rollout: {e}"));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let before = canary.hits();
    for i in 0..50 {
        let cookie = format!("session_id=user-{i}");
        let (_, _, body) = get(
            &client,
            &proxy.url("/"),
            &[("x-canary", "always"), ("cookie", &cookie)],
        )
        .await;
        assert_eq!(body, "primary", "a Failed canary served request {i}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(canary.hits(), before, "a Failed canary got mirrored copies");
}
