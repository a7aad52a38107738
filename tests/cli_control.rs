//! The CLI's control commands against a running canaryd: output, exit codes and messages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Output};

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

fn config(primary: &Upstream, canary: &Upstream, token_file: Option<&std::path::Path>) -> String {
    let token = token_file.map_or(String::new(), |f| {
        format!("token_file = \"{}\"", f.display())
    });
    base_config("", "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{token}"),
    ) + &split_route("shop", primary, canary, 0).replace(
        "weight = 0",
        "[route.analysis]\ninterval = \"1h\"\nstep_weights = [10, 50]\n",
    )
}

/// Run the CLI off the test's runtime (it blocks on its own little runtime).
async fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.args(&args)
            .env_remove("CANARYD_ADMIN")
            .env_remove("CANARYD_ADMIN_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_every_command_with_their_errors() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let proxy = Canaryd::start(&config(&primary, &canary, None));
    let admin = format!("http://{}", proxy.admin);
    let a = ["--admin", admin.as_str()];

    let o = cli(&[&["status"][..], &a].concat(), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let table = out(&o);
    assert!(table.starts_with("ROUTE"), "{table}");
    assert!(
        table.contains("shop") && table.contains("Progressing") && table.contains("v2"),
        "{table}"
    );

    let o = cli(
        &["status", "shop", "--json"],
        &[("CANARYD_ADMIN", admin.as_str())],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let json: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(json["weight"], 10);

    let o = cli(&[&["status", "nope"][..], &a].concat(), &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("route 'nope' not found"), "{}", err(&o));

    let o = cli(&[&["pause", "shop"][..], &a].concat(), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("Paused"), "{}", out(&o));
    let o = cli(&[&["pause", "shop"][..], &a].concat(), &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("cannot pause: route is Paused"),
        "{}",
        err(&o)
    );
    for (command, phase) in [
        ("resume", "Progressing"),
        ("abort", "Failed"),
        ("retry", "Progressing"),
        ("promote", "Succeeded"),
    ] {
        let o = cli(&[&[command, "shop"][..], &a].concat(), &[]).await;
        assert_eq!(o.status.code(), Some(0), "{command}: {}", err(&o));
        assert!(out(&o).contains(phase), "{command}: {}", out(&o));
    }
    let o = cli(&[&["promote", "shop"][..], &a].concat(), &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("cannot promote: route is Succeeded"),
        "{}",
        err(&o)
    );

    let o = cli(&[&["reload"][..], &a].concat(), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("configuration reloaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_connection_and_token_errors() {
    // Usage errors exit 2.
    assert_eq!(cli(&["promote"], &[]).await.status.code(), Some(2));
    assert_eq!(
        cli(&["status", "--admin", "ftp://x"], &[])
            .await
            .status
            .code(),
        Some(2)
    );
    // Nothing listening: exit 1 with a clear message.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let o = cli(&["status", "--admin", &format!("http://{dead}")], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("cannot reach the admin API"),
        "{}",
        err(&o)
    );

    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let proxy = Canaryd::start(&config(&primary, &canary, Some(&token)));
    let admin = format!("http://{}", proxy.admin);
    let o = cli(&["pause", "shop", "--admin", &admin], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("CANARYD_ADMIN_TOKEN"), "{}", err(&o));
    let o = cli(
        &["pause", "shop", "--admin", &admin],
        &[("CANARYD_ADMIN_TOKEN", "t0ken")],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}
