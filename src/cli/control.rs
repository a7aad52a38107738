//! The control commands: `status`, `promote`, `abort`, `pause`, `resume`, `retry`, `reload`,
//! each one request to the admin API. Exit codes: 0 done, 1 the operation failed (message on
//! stderr), 2 usage errors (from clap).

use std::process::ExitCode;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use super::admin_client::AdminClient;

/// `canaryd status [ROUTE] [--json]`.
pub fn status(client: &AdminClient, route: Option<&str>, as_json: bool) -> ExitCode {
    let path = match route {
        Some(route) => format!("/api/v1/routes/{route}"),
        None => "/api/v1/routes".to_owned(),
    };
    let Some(body) = call(client, Method::GET, &path) else {
        return ExitCode::from(1);
    };
    if as_json {
        print!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    let routes = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(routes)) => routes,
        Ok(route @ Value::Object(_)) => vec![route],
        _ => {
            eprintln!("canaryd: the admin API answered something that is not route JSON");
            return ExitCode::from(1);
        }
    };
    print!("{}", table(&routes));
    print!("{}", reasons(&routes));
    print!("{}", fleet_lines(&routes));
    ExitCode::SUCCESS
}

/// One line per route whose rollout says why it is where it is (`reason`): what the
/// sequential judge is collecting, or why it was promoted or rolled back.
fn reasons(routes: &[Value]) -> String {
    routes
        .iter()
        .filter_map(|r| Some(format!("{}: {}\n", text(&r["name"]), r["reason"].as_str()?)))
        .collect()
}

/// In fleet mode (docs/fleet.md): who leads, who is a member, and routes in config drift.
fn fleet_lines(routes: &[Value]) -> String {
    let Some(fleet) = routes.iter().map(|r| &r["fleet"]).find(|f| f.is_object()) else {
        return String::new();
    };
    let members: Vec<&str> = fleet["members"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = format!(
        "fleet: leader {}; members {}\n",
        fleet["leader"].as_str().unwrap_or("(none)"),
        if members.is_empty() {
            "(none)".to_owned()
        } else {
            members.join(", ")
        }
    );
    for route in routes.iter().filter(|r| r["fleet"]["drift"] == true) {
        out.push_str(&format!(
            "fleet: {} is not judged: members disagree about its settings\n",
            text(&route["name"])
        ));
    }
    out
}

/// `canaryd promote|abort|pause|resume|retry ROUTE`.
pub fn command(client: &AdminClient, route: &str, command: &str) -> ExitCode {
    let Some(body) = call(
        client,
        Method::POST,
        &format!("/api/v1/routes/{route}/{command}"),
    ) else {
        return ExitCode::from(1);
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(status) => println!(
            "{route}: {} weight {} ({} → {})",
            text(&status["phase"]),
            status["weight"],
            text(&status["primary_revision"]),
            text(&status["revision"]),
        ),
        Err(_) => println!("{route}: {command} done"),
    }
    ExitCode::SUCCESS
}

/// `canaryd reload`.
pub fn reload(client: &AdminClient) -> ExitCode {
    let Some(body) = call(client, Method::POST, "/api/v1/reload") else {
        return ExitCode::from(1);
    };
    let generation = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["generation"].as_u64());
    match generation {
        Some(g) => println!("configuration reloaded (generation {g})"),
        None => println!("configuration reloaded"),
    }
    ExitCode::SUCCESS
}

/// Send a request; the body of a 2xx answer, or `None` after printing why it failed.
fn call(client: &AdminClient, method: Method, path: &str) -> Option<Bytes> {
    match client.send(method, path) {
        Ok((status, body)) if status.is_success() => Some(body),
        Ok((status, body)) => {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
            let hint = if status == StatusCode::UNAUTHORIZED {
                " (set CANARYD_ADMIN_TOKEN)"
            } else {
                ""
            };
            eprintln!("canaryd: {message}{hint}");
            None
        }
        Err(e) => {
            eprintln!("canaryd: {e}");
            None
        }
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn percent(v: &Value) -> String {
    v.as_f64().map_or("-".to_owned(), |p| format!("{p:.2}%"))
}

fn millis(v: &Value) -> String {
    v.as_f64().map_or("-".to_owned(), |ms| format!("{ms:.1}ms"))
}

/// A readable table: route, phase, weight, revisions, last check per version, failed checks.
fn table(routes: &[Value]) -> String {
    let header = [
        "ROUTE",
        "PHASE",
        "WEIGHT",
        "REVISION",
        "PRIMARY",
        "CANARY SR",
        "CANARY P99",
        "PRIMARY SR",
        "PRIMARY P99",
        "FAILED",
    ];
    let rows: Vec<[String; 10]> = routes
        .iter()
        .map(|r| {
            let check = &r["last_check"];
            [
                text(&r["name"]).to_owned(),
                text(&r["phase"]).to_owned(),
                r["weight"].to_string(),
                text(&r["revision"]).to_owned(),
                text(&r["primary_revision"]).to_owned(),
                percent(&check["canary"]["success_rate"]),
                millis(&check["canary"]["p99_ms"]),
                percent(&check["primary"]["success_rate"]),
                millis(&check["primary"]["p99_ms"]),
                r["failed_checks"].to_string(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
