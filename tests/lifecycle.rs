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

/// The output of a child that must exit by itself within `limit` (killed and failed otherwise).
fn exits_within(mut command: Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_second_canaryd_on_the_same_proxy_address_fails_with_address_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_named(
        dir.path(),
        "first.toml",
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let (_running, addr) = spawn_run(&first);
    // Another canaryd (its own admin port) with the same proxy.listen: its sockets set
    // SO_REUSEPORT too, which alone would let it join the port and take half the connections.
    let second = write_named(
        dir.path(),
        "second.toml",
        &format!("[proxy]\nlisten = [\"{addr}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
    );
    let mut command = Command::new(BIN);
    command.args(["run", "-c"]).arg(&second);
    let out = exits_within(command, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}: address in use")),
        "{stderr}"
    );
    // Said once, not once per layer of the error chain.
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
}

#[test]
fn a_tls_address_another_process_shares_with_so_reuseport_fails_the_start() {
    use socket2::{Domain, Socket, Type};
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    // A listener like a canaryd worker's: SO_REUSEPORT set.
    let taken = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    taken.set_reuse_port(true).unwrap();
    taken
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    taken.listen(16).unwrap();
    let addr = taken.local_addr().unwrap().as_socket().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[proxy]\nlisten = [\"127.0.0.1:0\"]\n[proxy.tls]\nlisten = [\"{addr}\"]\n\
             cert = \"cert.pem\"\nkey = \"key.pem\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
        ),
    );
    let mut command = Command::new(BIN);
    command.args(["run", "-c"]).arg(&config);
    let out = exits_within(command, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}: address in use")),
        "{stderr}"
    );
}

#[test]
fn check_warns_of_an_open_admin_api_and_an_unresolvable_endpoint_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    // `.invalid` never resolves (RFC 6761).
    let config = write_config(
        dir.path(),
        "[admin]\nlisten = \"0.0.0.0:9901\"\n\
         [[route]]\nname = \"shop\"\n[route.primary]\nendpoints = [\"127.0.0.1:1\"]\n\
         [route.canary]\nrevision = \"v2\"\n\
         endpoints = [\"canaryd-test-endpoint.invalid:80\"]\n",
    );
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("admin.listen 0.0.0.0:9901 is not a loopback address")
            && stderr.contains("no token_file"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:9: warning: route shop, canary endpoint canaryd-test-endpoint.invalid:80 does not resolve",
            config.display()
        )),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .args(["check", "--strict", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // With a token file and resolvable endpoints there is nothing to warn of.
    let quiet = write_named(
        dir.path(),
        "quiet.toml",
        "[admin]\nlisten = \"0.0.0.0:9901\"\ntoken_file = \"token\"\n\
         [[route]]\nname = \"shop\"\n[route.primary]\nendpoints = [\"localhost:1\"]\n",
    );
    let out = Command::new(BIN)
        .args(["check", "--strict", "-c"])
        .arg(&quiet)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

#[test]
fn run_warns_of_an_open_admin_api_and_names_the_route_of_an_unresolvable_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"0.0.0.0:0\"\n\
         [[route]]\nname = \"shop\"\n[route.primary]\nendpoints = [\"127.0.0.1:1\"]\n\
         [route.canary]\nrevision = \"v2\"\n\
         endpoints = [\"canaryd-test-endpoint.invalid:80\"]\nweight = 10\n",
    );
    let mut command = Command::new(BIN);
    command.args(["run", "-c"]).arg(&config);
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = Running(child);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let (mut admin, mut dns) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(admin && dns) && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        admin |= line.contains("WARN") && line.contains("is not a loopback address");
        dns |= line.contains("WARN")
            && line.contains("route=shop")
            && line.contains("version=\"canary\"")
            && line.contains(&format!("config={}:11", config.display()));
    }
    drop(child);
    assert!(admin, "no warning about the open admin API");
    assert!(dns, "no warning naming route, version and config line");
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
