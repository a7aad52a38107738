//! The admin API on a running canaryd: every endpoint and status code, token on and off, and
//! the proxy port never reaching it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use support::*;

/// An analysed route "shop" (checks every hour: it stays at its first step) and a static
/// route "static" on another host.
pub fn admin_config(primary: &Upstream, canary: &Upstream, extra_admin: &str) -> String {
    format!(
        r#"[proxy]
listen = ["127.0.0.1:0"]
workers = 1
[admin]
listen = "127.0.0.1:0"
{extra_admin}
[state]
path = "state.json"

[[route]]
name = "shop"
hosts = ["shop.test"]
[route.primary]
revision = "v1"
endpoints = ["{p}"]
[route.canary]
revision = "v2"
endpoints = ["{c}"]
[route.analysis]
interval = "1h"
step_weights = [10, 50]

[[route]]
name = "static"
hosts = ["static.test"]
[route.primary]
revision = "s1"
endpoints = ["{p}"]
[route.canary]
revision = "s2"
endpoints = ["{c}"]
weight = 20
"#,
        p = primary.addr,
        c = canary.addr
    )
}

async fn call(
    proxy: &Canaryd,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", proxy.admin));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = client()
        .request(req.body(Full::new(Bytes::new()).boxed()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (parts.status, parts.headers, json)
}

#[tokio::test]
async fn routes_health_history_and_events() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let proxy = Canaryd::start(&admin_config(&primary, &canary, ""));
    let (status, _, body) = call(&proxy, Method::GET, "/healthz", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, Value::String("ok\n".into()))
    );
    assert_eq!(
        call(&proxy, Method::GET, "/readyz", None).await.0,
        StatusCode::OK
    );

    let (status, _, routes) = call(&proxy, Method::GET, "/api/v1/routes", None).await;
    assert_eq!(status, StatusCode::OK);
    let routes = routes.as_array().unwrap();
    assert_eq!(routes.len(), 2);
    let shop = &routes[0];
    for field in [
        "name",
        "phase",
        "weight",
        "revision",
        "primary_revision",
        "failed_checks",
        "inconclusive_checks",
        "iterations",
        "last_check",
    ] {
        assert!(
            shop.get(field).is_some(),
            "route JSON lacks {field}: {shop}"
        );
    }
    assert_eq!(shop["name"], "shop");
    assert_eq!(shop["phase"], "Progressing");
    assert_eq!(shop["weight"], 10);
    assert_eq!(shop["revision"], "v2");
    assert_eq!(shop["primary_revision"], "v1");
    assert_eq!(routes[1]["phase"], "Static");
    assert_eq!(routes[1]["weight"], 20);

    let (status, _, one) = call(&proxy, Method::GET, "/api/v1/routes/static", None).await;
    assert_eq!(
        (status, one["revision"].clone()),
        (StatusCode::OK, Value::from("s2"))
    );
    let (status, _, err) = call(&proxy, Method::GET, "/api/v1/routes/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"], "route 'nope' not found");

    let (status, _, history) = call(&proxy, Method::GET, "/api/v1/routes/shop/history", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history[0]["weight"], 10);

    let (status, _, events) = call(&proxy, Method::GET, "/api/v1/events?route=shop", None).await;
    assert_eq!(status, StatusCode::OK);
    let messages: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("New revision detected")),
        "{messages:?}"
    );
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["route"] == "shop" && e["severity"].is_string() && e["at"].is_string()));

    let (status, _, page) = call(&proxy, Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("canaryd"));
    assert_eq!(
        call(&proxy, Method::GET, "/nothing-here", None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn commands_follow_the_phase_rules() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let proxy = Canaryd::start(&admin_config(&primary, &canary, ""));
    let post = |path: &'static str| call(&proxy, Method::POST, path, None);

    let (status, _, route) = post("/api/v1/routes/shop/pause").await;
    assert_eq!(
        (status, route["phase"].clone()),
        (StatusCode::OK, "Paused".into())
    );
    let (status, _, err) = post("/api/v1/routes/shop/pause").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"], "cannot pause: route is Paused");
    let (status, _, route) = post("/api/v1/routes/shop/resume").await;
    assert_eq!(
        (status, route["phase"].clone()),
        (StatusCode::OK, "Progressing".into())
    );
    let (status, _, route) = post("/api/v1/routes/shop/abort").await;
    assert_eq!(
        (status, route["phase"].clone(), route["weight"].clone()),
        (StatusCode::OK, "Failed".into(), 0.into())
    );
    let (status, _, err) = post("/api/v1/routes/shop/promote").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"], "cannot promote: route is Failed");
    let (status, _, route) = post("/api/v1/routes/shop/retry").await;
    assert_eq!(
        (status, route["phase"].clone()),
        (StatusCode::OK, "Progressing".into())
    );
    let (status, _, route) = post("/api/v1/routes/shop/promote").await;
    assert_eq!(
        (status, route["phase"].clone(), route["weight"].clone()),
        (StatusCode::OK, "Succeeded".into(), 100.into())
    );
    // The data plane follows: everything to the canary.
    let counts = tally(&client(), &proxy.url("/"), 10, &[("host", "shop.test")]).await;
    assert_eq!(counts.get("canary"), Some(&10));

    let (status, _, err) = post("/api/v1/routes/nope/pause").await;
    assert_eq!(
        (status, err["error"].clone()),
        (StatusCode::NOT_FOUND, "route 'nope' not found".into())
    );
    let (status, _, err) = post("/api/v1/routes/static/promote").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        err["error"].as_str().unwrap().contains("has no analysis"),
        "{err}"
    );

    let (status, headers, _) = call(&proxy, Method::GET, "/api/v1/routes/shop/promote", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(
        call(&proxy, Method::POST, "/api/v1/routes", None).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&proxy, Method::GET, "/api/v1/reload", None).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn post_endpoints_need_the_token_when_one_is_configured() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "let-me-in\n").unwrap();
    let proxy = Canaryd::start(&admin_config(
        &primary,
        &canary,
        &format!("token_file = \"{}\"", token_file.display()),
    ));
    for token in [None, Some("wrong"), Some("let-me-i")] {
        let (status, _, err) = call(&proxy, Method::POST, "/api/v1/routes/shop/pause", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}");
        assert!(err["error"].is_string());
        assert_eq!(
            call(&proxy, Method::POST, "/api/v1/reload", token).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Reads stay open; the right token works.
    assert_eq!(
        call(&proxy, Method::GET, "/api/v1/routes", None).await.0,
        StatusCode::OK
    );
    let (status, _, route) = call(
        &proxy,
        Method::POST,
        "/api/v1/routes/shop/pause",
        Some("let-me-in"),
    )
    .await;
    assert_eq!(
        (status, route["phase"].clone()),
        (StatusCode::OK, "Paused".into())
    );
    assert_eq!(
        call(&proxy, Method::POST, "/api/v1/reload", Some("let-me-in"))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn reload_endpoint_applies_a_valid_file_and_reports_an_invalid_one() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let toml = admin_config(&primary, &canary, "");
    let proxy = Canaryd::start(&toml);
    // Write in place without the watcher racing us: the API reload is what we test.
    std::fs::write(
        &proxy.config_path,
        toml.replace("weight = 20", "weight = 30"),
    )
    .unwrap();
    let (status, _, body) = call(&proxy, Method::POST, "/api/v1/reload", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reloaded"], true);
    assert_eq!(body["routes"][1]["weight"], 30);

    std::fs::write(
        &proxy.config_path,
        toml.replace("weight = 20", "weight = 300"),
    )
    .unwrap();
    let (status, _, body) = call(&proxy, Method::POST, "/api/v1/reload", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("canaryd.toml:") && error.contains("weight"),
        "{error}"
    );
    let (_, _, route) = call(&proxy, Method::GET, "/api/v1/routes/static", None).await;
    assert_eq!(route["weight"], 30, "the old config keeps serving");
}

#[tokio::test]
async fn nothing_on_a_proxy_port_reaches_the_admin_api() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let proxy = Canaryd::start(&admin_config(&primary, &canary, ""));
    let client = client();
    for path in ["/api/v1/routes", "/healthz", "/api/v1/routes/shop/abort"] {
        let (status, _, body) = get(&client, &proxy.url(path), &[("host", "unknown.test")]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, "no route\n"),
            "{path}"
        );
        let (status, _, body) = get(&client, &proxy.url(path), &[("host", "static.test")]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body == "primary" || body == "canary",
            "{path} answered {body}"
        );
    }
    assert_eq!(
        proxy.server().analysis().status("shop").unwrap().phase,
        "Progressing"
    );
}
