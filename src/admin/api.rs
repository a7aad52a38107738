//! The admin endpoints, dispatched by path in one place:
//!
//! | path | methods | answer |
//! |---|---|---|
//! | `/` | GET | the status page |
//! | `/healthz`, `/readyz` | GET | 200, or 503 while starting/draining (`/readyz` also once a vital task ended) |
//! | `/metrics` | GET | Prometheus text exposition |
//! | `/api/v1/routes` | GET | every route's JSON |
//! | `/api/v1/routes/{name}` | GET | one route (404 unknown) |
//! | `/api/v1/routes/{name}/history` | GET | its recent checks, for the status page |
//! | `/api/v1/routes/{name}/{promote,abort,pause,resume,retry}` | POST | 200 new JSON, 404, 409, 401 |
//! | `/api/v1/reload` | POST | 200, or 422 with the config error |
//! | `/api/v1/events?route=NAME` | GET | the last 1000 events, newest last |
//! | `/api/v1/fleet` | GET | fleet mode: leader, members, etcd; 404 without `[fleet]` |

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::auth::{authorize, AuthError};
use super::json::{error, json, method_not_allowed, text, with_type, AdminResponse};
use super::routes_view::{all_routes, one_route};
use super::AdminContext;
use crate::analysis::{Command, EngineError, VersionReport};
use crate::control::{ReloadError, ReloadTrigger};
use crate::metrics::{
    render, ExpositionInput, LastCheckInput, RouteInput, VersionCheck, CONTENT_TYPE,
};

const STATUS_PAGE: &str = include_str!("status_page.html");

/// Answer one admin request.
pub async fn answer(ctx: &AdminContext, request: Request<Incoming>) -> AdminResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is_get = method == Method::GET || method == Method::HEAD;
    if let ["api", "v1", "routes", name, segment] = segments.as_slice() {
        if let Some(command) = command_of(segment) {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if let Some(refused) = check_token(ctx, &request) {
                return refused;
            }
            return run_command(ctx, name, command).await;
        }
    }
    match segments.as_slice() {
        [""] if is_get => with_type(
            StatusCode::OK,
            Bytes::from_static(STATUS_PAGE.as_bytes()),
            "text/html; charset=utf-8",
        ),
        ["healthz"] if is_get => text(StatusCode::OK, "ok\n"),
        ["metrics"] if is_get => metrics(ctx),
        ["readyz"] if is_get => readiness(ctx),
        ["api", "v1", "routes"] if is_get => {
            let routes = all_routes(&ctx.control.snapshot(), &ctx.analysis);
            let routes: Vec<serde_json::Value> =
                routes.iter().map(|r| with_fleet(ctx, &r.name, r)).collect();
            json(StatusCode::OK, &routes)
        }
        ["api", "v1", "routes", name] if is_get => {
            match one_route(&ctx.control.snapshot(), &ctx.analysis, name) {
                Some(route) => json(StatusCode::OK, &with_fleet(ctx, name, &route)),
                None => not_found(name),
            }
        }
        ["api", "v1", "fleet"] if is_get => match &ctx.fleet {
            Some(board) => json(StatusCode::OK, &*board.load()),
            None => error(
                StatusCode::NOT_FOUND,
                "this canaryd is not part of a fleet (no [fleet] in its config)",
            ),
        },
        ["api", "v1", "routes", name, "history"] if is_get => history(ctx, name),
        ["api", "v1", "reload"] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if let Some(refused) = check_token(ctx, &request) {
                return refused;
            }
            reload(ctx).await
        }
        ["api", "v1", "events"] if is_get => {
            let route = request
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("route=")));
            json(StatusCode::OK, &ctx.analysis.events(route))
        }
        [""]
        | ["healthz"]
        | ["readyz"]
        | ["metrics"]
        | ["api", "v1", "routes", ..]
        | ["api", "v1", "events"]
        | ["api", "v1", "fleet"] => method_not_allowed("GET, HEAD"),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The Prometheus exposition: counters from the registry, phase and weight from the snapshot
/// the data plane serves, failed checks and last check from the analysis.
fn metrics(ctx: &AdminContext) -> AdminResponse {
    let snapshot = ctx.control.snapshot();
    let statuses = ctx.analysis.statuses();
    let routes = snapshot
        .table
        .routes()
        .iter()
        .map(|route| {
            let status = statuses.get(&*route.name);
            RouteInput {
                name: route.name.to_string(),
                metrics: route.metrics.clone(),
                has_canary: route.canary.is_some(),
                phase: route.rollout.phase,
                weight: route.rollout.weight,
                failed_checks: status.map_or(0, |s| s.failed_checks),
                last_check: status.and_then(|s| s.last_check.as_ref()).map(|check| {
                    LastCheckInput {
                        primary: version_check(&check.primary),
                        canary: version_check(&check.canary),
                        evidence: check
                            .metrics
                            .iter()
                            .filter_map(|m| {
                                let e = m.evidence.as_ref()?;
                                Some((m.name.clone(), e.llr / e.rollback_bound))
                            })
                            .collect(),
                        external: check
                            .metrics
                            .iter()
                            .filter(|m| m.query.is_some())
                            .filter_map(|m| Some((m.name.clone(), m.value?)))
                            .collect(),
                    }
                }),
            }
        })
        .collect();
    let mut body = render(&ExpositionInput {
        routes,
        process: &ctx.registry.process,
        version: env!("CARGO_PKG_VERSION"),
    });
    if let Some(board) = &ctx.fleet {
        body.push_str(&fleet_metrics(&board.load()));
    }
    with_type(StatusCode::OK, Bytes::from(body), CONTENT_TYPE)
}

/// The route JSON, with `fleet: {leader, members, drift}` in fleet mode.
fn with_fleet(
    ctx: &AdminContext,
    name: &str,
    route: &crate::analysis::RolloutStatus,
) -> serde_json::Value {
    let mut value = serde_json::to_value(route).unwrap_or(serde_json::Value::Null);
    if let (Some(board), Some(object)) = (&ctx.fleet, value.as_object_mut()) {
        let fleet = serde_json::to_value(board.route(name)).unwrap_or(serde_json::Value::Null);
        object.insert("fleet".to_owned(), fleet);
    }
    value
}

/// `canaryd_fleet_*` gauges (docs/fleet.md#observability).
fn fleet_metrics(view: &crate::fleet::FleetView) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let gauges: [(&str, &str, f64); 4] = [
        (
            "canaryd_fleet_leader",
            "1 on the fleet's leader, 0 on followers.",
            f64::from(u8::from(view.is_leader)),
        ),
        (
            "canaryd_fleet_members",
            "Live members of the fleet (including this replica once it has a lease).",
            view.members.len() as f64,
        ),
        (
            "canaryd_fleet_etcd_up",
            "1 while this replica reaches etcd.",
            f64::from(u8::from(view.etcd == "up")),
        ),
        (
            "canaryd_fleet_state_age_seconds",
            "Seconds since this replica last confirmed its copy of the fleet state.",
            view.state_age_seconds,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP canaryd_fleet_config_drift 1 while fleet members disagree about a route's settings (the leader does not judge it).\n# TYPE canaryd_fleet_config_drift gauge"
    );
    for route in &view.drift {
        let _ = writeln!(out, "canaryd_fleet_config_drift{{route=\"{route}\"}} 1");
    }
    out
}

fn version_check(report: &VersionReport) -> VersionCheck {
    VersionCheck {
        success_rate: report.success_rate,
        p50_ms: report.p50_ms,
        p99_ms: report.p99_ms,
    }
}

fn readiness(ctx: &AdminContext) -> AdminResponse {
    if let Some(why) = ctx.vitals.failure() {
        with_type(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from(format!("failed: {why}\n")),
            "text/plain; charset=utf-8",
        )
    } else if ctx.draining.load(Ordering::Relaxed) {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if ctx.ready.load(Ordering::Relaxed) {
        text(StatusCode::OK, "ready\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

fn command_of(segment: &str) -> Option<Command> {
    Command::ALL.into_iter().find(|c| c.as_str() == segment)
}

fn not_found(name: &str) -> AdminResponse {
    error(StatusCode::NOT_FOUND, &format!("route '{name}' not found"))
}

fn route_exists(ctx: &AdminContext, name: &str) -> bool {
    ctx.control
        .snapshot()
        .config
        .routes
        .iter()
        .any(|r| r.name == name)
}

/// The refusal to send when the request lacks the configured token.
fn check_token(ctx: &AdminContext, request: &Request<Incoming>) -> Option<AdminResponse> {
    let snapshot = ctx.control.snapshot();
    let token_file = snapshot.config.admin.token_file.as_deref();
    let refused = authorize(token_file, request.headers()).err()?;
    Some(match refused {
        e @ AuthError::Unauthorized => error(StatusCode::UNAUTHORIZED, &e.to_string()),
        e @ AuthError::TokenFile { .. } => {
            tracing::error!("{e}");
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    })
}

fn history(ctx: &AdminContext, name: &str) -> AdminResponse {
    if !route_exists(ctx, name) {
        return not_found(name);
    }
    // A route without analysis has no checks: an empty history.
    json(
        StatusCode::OK,
        &ctx.analysis.history(name).unwrap_or_default(),
    )
}

async fn run_command(ctx: &AdminContext, name: &str, command: Command) -> AdminResponse {
    if !route_exists(ctx, name) {
        return not_found(name);
    }
    match ctx.analysis.command(name, command).await {
        Ok(status) => {
            tracing::info!(route = name, command = command.as_str(), "operator command");
            json(StatusCode::OK, &status)
        }
        Err(EngineError::NoSuchRoute(_)) => error(
            StatusCode::CONFLICT,
            &format!(
                "cannot {}: route '{name}' has no analysis",
                command.as_str()
            ),
        ),
        Err(e @ EngineError::NotAllowed(_)) => error(StatusCode::CONFLICT, &e.to_string()),
        Err(e @ (EngineError::Stopped | EngineError::Fleet(_))) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}

async fn reload(ctx: &AdminContext) -> AdminResponse {
    match ctx.reloader.reload(ReloadTrigger::Api).await {
        Ok(generation) => {
            // The analysis follows the reload asynchronously; the routes shown are the ones the
            // data plane serves now.
            let routes = all_routes(&ctx.control.snapshot(), &ctx.analysis);
            json(
                StatusCode::OK,
                &serde_json::json!({ "reloaded": true, "generation": generation, "routes": routes }),
            )
        }
        Err(e @ ReloadError::Invalid(_)) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        Err(e @ ReloadError::Interrupted(_)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}
