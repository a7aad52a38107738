//! The built binary: `check` exit codes and messages, `run` serving, SIGTERM draining in-flight
//! requests, SIGHUP reloading.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::*;

fn write_config(dir: &std::path::Path, toml: &str) -> std::path::PathBuf {
    write_named(dir, "canaryd.toml", toml)
}

fn write_named(dir: &std::path::Path, name: &str, toml: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    path
}

fn signal(child: &Child, sig: i32) {
    // SAFETY-free: kill(2) through libc on our own child's pid.
    let rc = unsafe_kill(child.id() as i32, sig);
    assert_eq!(rc, 0);
}

fn unsafe_kill(pid: i32, sig: i32) -> i32 {
    // The crate forbids unsafe code; tests shell out instead.
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| if s.success() { 0 } else { 1 })
        .unwrap_or(1)
}

#[test]
fn check_accepts_a_valid_file_and_rejects_an_invalid_one_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(
        dir.path(),
        "[[route]]\nname = \"a\"\n[route.primary]\nendpoints = [\"127.0.0.1:1\"]\n",
    );
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let bad = write_named(
        dir.path(),
        "bad.toml",
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\nconect_timeout = \"1s\"\n",
    );
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3:1:", bad.display())),
        "{stderr}"
    );

    // $CANARYD_CONFIG is the default file.
    let out = Command::new(BIN)
        .arg("check")
        .env("CANARYD_CONFIG", &good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Usage errors exit 2.
    let out = Command::new(BIN)
        .args(["check", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("canaryd "));
}

#[test]
fn check_rejects_a_key_that_does_not_belong_to_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), a.cert.pem()).unwrap();
    std::fs::write(dir.path().join("a.key"), a.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("b.key"), b.signing_key.serialize_pem()).unwrap();
    let config = |key: &str| {
        format!(
            "[proxy]\nlisten = [\"127.0.0.1:0\"]\n\n[proxy.tls]\nlisten = [\"127.0.0.1:0\"]\n\
             cert = \"tls.crt\"\nkey = \"{key}\"\n\n[[route]]\nname = \"a\"\n\
             [route.primary]\nendpoints = [\"127.0.0.1:1\"]\n"
        )
    };
    let good = write_named(dir.path(), "good.toml", &config("a.key"));
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let bad = write_named(dir.path(), "bad.toml", &config("b.key"));
    for command in ["check", "run"] {
        let out = Command::new(BIN)
            .args([command, "-c"])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{}:4:1:", bad.display())),
            "{command}: {stderr}"
        );
        assert!(stderr.contains("cannot be used together"), "{stderr}");
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let up = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(base_config("", "drain_timeout = \"5s\"") + &app_route(&up)),
    );
    let (mut child, addr) = spawn_run(&config);
    let client = client();
    let url = format!("http://{addr}/slow/800");
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { get(&client, &url, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child, 15);
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "in-flight request was cut by the drain");
    assert_eq!(body, "app");
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "canaryd did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(exit.code(), Some(0));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after drain"
    );
}

#[tokio::test]
async fn sighup_reloads_the_file() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let dir = tempfile::tempdir().unwrap();
    let toml = base_config("", "") + &split_route("shop", &primary, &canary, 0);
    let config = write_config(dir.path(), &toml);
    let (mut child, addr) = spawn_run(&config);
    let client = client();
    assert_eq!(
        get(&client, &format!("http://{addr}/"), &[]).await.2,
        "primary"
    );
    // Write in place (a watcher would also see it; either path must apply it).
    std::fs::write(&config, toml.replace("weight = 0", "weight = 100")).unwrap();
    signal(&child, 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&client, &format!("http://{addr}/"), &[]).await.2 != "canary" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&child, 15);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_taken_port_fails_the_start_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("[proxy]\nlisten = [\"{addr}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
    );
    // Bind without SO_REUSEPORT on our side so canaryd's bind must fail.
    let out = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

fn state_weight(path: &std::path::Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let shop = &doc["routes"]["shop"];
    Some((shop["phase"].as_str()?.to_owned(), shop["weight"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rollout_then_restart_resumes_at_the_same_weight() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let toml = base_config(
        &format!("{}/", dir.path().display()),
        "version_header = \"x-canaryd-version\"",
    ) + &analysed_route(
        &primary,
        &canary,
        "judge = \"threshold\"\ninterval = \"1s\"\nthreshold = 3\nstep_weights = [20, 40, 60, 80]\nmin_requests = 5",
    );
    let config = write_config(dir.path(), &toml);
    let (mut child, addr) = spawn_run(&config);
    let load = Load::start(format!("http://{addr}/"), 200);
    eventually(
        "weight 40 in the state file",
        Duration::from_secs(15),
        || state_weight(&state).is_some_and(|(_, w)| w == 40),
    )
    .await;
    child.kill().unwrap(); // SIGKILL: no drain, no final save
    child.wait().unwrap();
    load.stop().await;
    let (phase, weight) = state_weight(&state).unwrap();
    assert_eq!((phase.as_str(), weight), ("Progressing", 40));

    let (mut child, addr) = spawn_run(&config);
    // Right after the restart (well within the 1 s interval) the split is the saved 40%.
    let client = client();
    let mut on_canary = 0;
    for _ in 0..300 {
        let (_, headers, _) = get(&client, &format!("http://{addr}/"), &[]).await;
        on_canary += usize::from(headers["x-canaryd-version"] == "canary");
    }
    assert!(
        (90..=150).contains(&on_canary),
        "{on_canary} of 300 on the canary after restart"
    );
    let (phase, weight) = state_weight(&state).unwrap();
    assert_eq!(phase, "Progressing");
    assert!(weight >= 40, "resumed below the saved weight: {weight}");
    signal(&child, 15);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
