//! The built `canaryd` binary as a child process: started with `run`, its listen address read
//! from its "serving" log line, killed if the test ends without stopping it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

/// A `canaryd run` child that is killed if the test ends without stopping it (a failing
/// assertion must not leave a proxy running).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Start `canaryd run` and wait for its "serving" log line; returns the child and proxy address.
pub fn spawn_run(config: &std::path::Path) -> (Running, std::net::SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["run", "-c"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("canaryd did not start");
        };
        if line.contains("canaryd serving") {
            let start = line.find("listen=[").unwrap() + "listen=[".len();
            let end = line[start..].find(']').unwrap() + start;
            let addr = line[start..end]
                .split(',')
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            return (Running(child), addr);
        }
    }
}
