//! `canaryd demo` as a user runs it (the built binary), in both expected outcomes and when it
//! cannot run. A shorter analysis interval (hidden `--interval`) keeps the test quick.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

/// Runs the demo with its own TMPDIR and checks it leaves nothing behind there.
fn demo(args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .env("TMPDIR", tmp.path())
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--interval",
            "300ms",
        ])
        .args(args)
        .output()
        .unwrap();
    assert_left_nothing(tmp.path());
    output
}

fn assert_left_nothing(tmp: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_healthy_canary_is_promoted() {
    let o = demo(&["--rps", "300"]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("status page  http://127.0.0.1:"), "{out}");
    assert!(out.contains("/metrics"), "{out}");
    for weight in [20, 30, 40, 50] {
        assert!(
            out.contains(&format!("weight  {weight}%")),
            "no check line at weight {weight}:\n{out}"
        );
    }
    assert!(
        out.contains("Promotion completed! shop is now serving v2"),
        "{out}"
    );
    // Not a terminal here: plain lines, no bar.
    assert!(!out.contains('█'), "{out}");
}

#[test]
fn a_failing_canary_is_rolled_back() {
    let o = demo(&[
        "--rps",
        "300",
        "--canary-error-rate",
        "0.3",
        "--canary-latency",
        "20ms",
    ]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("Halt shop advancement success rate"), "{out}");
    assert!(
        out.contains("Rolling back shop failed checks threshold reached 2"),
        "{out}"
    );
    assert!(!out.contains("Promotion completed"), "{out}");
}

#[test]
fn a_demo_that_cannot_run_exits_1_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .env("TMPDIR", tmp.path())
        .args(["demo", "--listen", &addr, "--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_left_nothing(tmp.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    // Usage errors are 2.
    let o = Command::new(BIN)
        .args(["demo", "--canary-error-rate", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_demo_on_a_port_another_canaryd_listens_on_exits_1_at_once() {
    use socket2::{Domain, Socket, Type};
    // Another canaryd's socket (SO_REUSEPORT set): the demo must not join it and run.
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
    let addr = taken.local_addr().unwrap().as_socket().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env("TMPDIR", tmp.path())
        .args(["demo", "--listen", &addr, "--admin", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo on a taken port is still running after 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}: address in use")),
        "{err}"
    );
    assert_left_nothing(tmp.path());
}

#[test]
fn keep_running_serves_the_status_page_after_the_outcome_until_interrupted() {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--interval",
            "300ms",
        ])
        .args(["--rps", "300", "--keep-running"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut admin = None;
    let mut still_serving = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.trim().strip_prefix("status page  http://") {
            admin = Some(url.trim_end_matches('/').to_owned());
        }
        if line.starts_with("Still serving") {
            still_serving = true;
            break;
        }
    }
    assert!(still_serving, "the demo did not keep running");
    let admin = admin.expect("the demo printed its status page address");
    // The page answers after the outcome.
    let mut s = std::net::TcpStream::connect(&admin).unwrap();
    s.write_all(b"GET /api/v1/routes/shop HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"Succeeded\""), "{answer}");
    // Ctrl-C ends it, exit 0.
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
