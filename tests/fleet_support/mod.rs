//! Fleet test support: a 3-member etcd cluster on loopback ports of its own (fast heartbeat and
//! election, temp data dirs, killed on drop), `canaryd run` replicas of the binary built with
//! the `fleet` feature as child processes, and readers for their admin API.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use http_body_util::{BodyExt, Full};

use crate::support::Upstream;

/// A free loopback port for an etcd member (bound and released: the child binds it right after),
/// below the kernel's ephemeral range. A member killed and started again must find its ports
/// free: an ephemeral one (what `bind(":0")` gives) can meanwhile be taken by any `connect` on
/// the machine, the replicas' own retries included, and a member without peers holds no
/// connection on its peer port to keep it reserved. Ports below the range are never handed out
/// that way.
fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let floor = (low / 2).max(1024);
    for _ in 0..10_000 {
        let port = rand::random_range(floor..low);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {floor}..{low}");
}

/// Send a signal (`STOP`, `CONT`, `KILL`) to a child with kill(1): the package forbids unsafe
/// code, tests included.
fn send(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}

fn signal(child: &Child, signal: &str) {
    assert!(send(child.id(), signal), "kill -{signal} {}", child.id());
}

struct Member {
    args: Vec<String>,
    child: Option<Child>,
    client: u16,
    /// Its stderr, kept across restarts, for a failing test to show.
    log: PathBuf,
}

/// TLS on the cluster's client port (PEM files): etcd serves `cert`/`key` and requires a
/// client certificate signed by `ca`; the test's own client presents `client_cert`/`client_key`.
#[derive(Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Etcd members forming one cluster on loopback (three unless a test asks otherwise).
pub struct Etcd {
    members: Vec<Member>,
    tls: Option<EtcdTls>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Start the three-member cluster and wait until it answers.
    pub async fn start() -> Etcd {
        Etcd::start_with(3, None, &[]).await
    }

    /// Start `size` members, with TLS (mutual) on the client port if given and these extra
    /// flags, and wait until the cluster answers.
    pub async fn start_with(size: usize, tls: Option<EtcdTls>, flags: &[String]) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let token = format!("canaryd-test-{}", std::process::id());
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data = dir.path().join(format!("m{i}"));
            let mut args = vec![
                format!("--name=m{i}"),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={scheme}://127.0.0.1:{client}"),
                format!("--advertise-client-urls={scheme}://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster={cluster}"),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".to_owned(),
                "--heartbeat-interval=50".to_owned(),
                "--election-timeout=250".to_owned(),
                "--logger=zap".to_owned(),
                "--log-level=error".to_owned(),
            ];
            if let Some(tls) = &tls {
                args.extend([
                    format!("--cert-file={}", tls.cert.display()),
                    format!("--key-file={}", tls.key.display()),
                    format!("--trusted-ca-file={}", tls.ca.display()),
                    "--client-cert-auth".to_owned(),
                ]);
            }
            args.extend_from_slice(flags);
            members.push(Member {
                args,
                child: None,
                client: *client,
                log: dir.path().join(format!("m{i}.log")),
            });
        }
        let mut etcd = Etcd {
            members,
            tls,
            _dir: dir,
        };
        for i in 0..size {
            etcd.spawn(i);
        }
        etcd.wait_healthy(Duration::from_secs(20)).await;
        etcd
    }

    fn spawn(&mut self, i: usize) {
        let member = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .unwrap();
        let child = Command::new("etcd")
            .args(&member.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian package etcd-server) is installed");
        member.child = Some(child);
    }

    /// Client endpoints, `http://127.0.0.1:PORT` (`https` with TLS).
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.members
            .iter()
            .map(|m| format!("{scheme}://127.0.0.1:{}", m.client))
            .collect()
    }

    /// Options for a client of the test's own: short timeouts, and the cluster's TLS.
    pub fn connect_options(&self) -> etcd_client::ConnectOptions {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        match &self.tls {
            None => options,
            Some(tls) => options.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(
                        std::fs::read(&tls.ca).unwrap(),
                    ))
                    .identity(etcd_client::Identity::from_pem(
                        std::fs::read(&tls.client_cert).unwrap(),
                        std::fs::read(&tls.client_key).unwrap(),
                    )),
            ),
        }
    }

    /// A client of the test's own.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), Some(self.connect_options()))
            .await
            .unwrap()
    }

    /// Wait until a write goes through (the cluster has quorum).
    pub async fn wait_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(mut client) =
                tokio::time::timeout(Duration::from_secs(2), self.client()).await
            {
                let put = client.put("/test/health", "ok", None);
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), put).await {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// kill -9 one member (its data dir stays, so [`Etcd::restart`] brings it back).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What every member printed (errors only: `--log-level=error`), for a failing test.
    pub fn dump_logs(&self) -> String {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                format!("etcd m{i}:\n{text}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Start a killed member again with its data.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// SIGSTOP / SIGCONT one member.
    pub fn pause(&self, i: usize) {
        signal(self.members[i].child.as_ref().unwrap(), "STOP");
    }

    pub fn resume(&self, i: usize) {
        signal(self.members[i].child.as_ref().unwrap(), "CONT");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = send(child.id(), "CONT");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// One `canaryd run` replica.
pub struct Replica {
    pub name: String,
    child: Option<Child>,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    /// Start `canaryd run -c config` and wait for its "serving" line.
    pub fn start(name: &str, config: &Path) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_canaryd"))
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "info,canaryd=debug")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("canaryd serving") {
                        let _ = tx.send(line.clone());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let line = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "replica {name} did not start:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let field = |key: &str| -> String {
            let start = line.find(key).unwrap() + key.len();
            line[start..]
                .split([' ', ']', ','])
                .next()
                .unwrap()
                .trim_matches('[')
                .to_owned()
        };
        Replica {
            name: name.to_owned(),
            proxy: field("listen=[").parse().unwrap(),
            admin: field("admin=").parse().unwrap(),
            child: Some(child),
            config: config.to_path_buf(),
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().unwrap().id()).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pause(&self) {
        signal(self.child.as_ref().unwrap(), "STOP");
    }

    /// SIGTERM, as an orchestrator stops a pod (the replica drains and exits).
    pub fn terminate(&self) {
        signal(self.child.as_ref().unwrap(), "TERM");
    }

    pub fn resume(&self) {
        signal(self.child.as_ref().unwrap(), "CONT");
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    pub fn dump_log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = send(child.id(), "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A replica's config: its own state file and ports, the shared fleet and route.
pub fn replica_config(
    dir: &Path,
    replica: &str,
    etcd: &[String],
    lease_ttl: &str,
    route: &str,
) -> PathBuf {
    replica_config_with(dir, replica, etcd, lease_ttl, route, "")
}

/// [`replica_config`] with more `[fleet]` keys (`fleet_keys`, whole lines: TLS, credentials).
pub fn replica_config_with(
    dir: &Path,
    replica: &str,
    etcd: &[String],
    lease_ttl: &str,
    route: &str,
    fleet_keys: &str,
) -> PathBuf {
    let endpoints = etcd
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [state]\npath = \"{}/{replica}-state.json\"\n\
         [fleet]\nname = \"test-fleet\"\netcd = [{endpoints}]\nreplica = \"{replica}\"\nlease_ttl = \"{lease_ttl}\"\n{fleet_keys}{route}",
        dir.display()
    );
    let path = dir.join(format!("{replica}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<bytes::Bytes>,
>;

pub fn admin_client() -> Client {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(500)));
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

/// GET an admin path as JSON; `None` when the replica does not answer (paused, killed).
pub async fn admin_get(
    client: &Client,
    admin: SocketAddr,
    path: &str,
) -> Option<serde_json::Value> {
    let req = http::Request::get(format!("http://{admin}{path}"))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_millis(800), client.request(req))
        .await
        .ok()?
        .ok()?;
    let body = tokio::time::timeout(Duration::from_millis(800), resp.into_body().collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    serde_json::from_slice(&body).ok()
}

/// POST an admin command; status and body.
pub async fn admin_post(client: &Client, admin: SocketAddr, path: &str) -> (u16, String) {
    let req = http::Request::post(format!("http://{admin}{path}"))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The route "shop" as a replica serves it: (phase, weight).
pub async fn shop(client: &Client, replica: &Replica) -> Option<(String, u64)> {
    let route = admin_get(client, replica.admin, "/api/v1/routes/shop").await?;
    Some((
        route["phase"].as_str()?.to_owned(),
        route["weight"].as_u64()?,
    ))
}

/// Who leads, as a replica sees it.
pub async fn leader_seen_by(client: &Client, replica: &Replica) -> Option<String> {
    let fleet = admin_get(client, replica.admin, "/api/v1/fleet").await?;
    fleet["leader"].as_str().map(str::to_owned)
}

/// Poll `f` every 100 ms until it returns `Some`, or panic after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One recorded state write of the route (from the test's own watch on the state key).
#[derive(Debug, Clone)]
pub struct Write {
    pub revision: i64,
    pub term: i64,
    pub writer: String,
    pub phase: String,
    pub weight: u64,
    pub window: u64,
    /// `last_check.at` and `last_check.canary.requests` of the written rollout.
    pub check: Option<(String, u64)>,
    /// The sequential judge's evidence behind that check: canary requests counted by its first
    /// metric's test since the evidence began.
    pub evidence_requests: Option<u64>,
    /// While Baking: the bake checks still to pass.
    pub bake_left: Option<u64>,
}

/// Record every write of `state/shop` (and who held the leader key at each revision) until
/// the returned handle's history is read.
pub struct History {
    pub writes: Arc<Mutex<Vec<Write>>>,
    /// (create_revision, replica) of every leader key put.
    pub leaders: Arc<Mutex<Vec<(i64, String)>>>,
    /// Every put under the fleet's prefix: (key, revision).
    pub puts: Arc<Mutex<Vec<(String, i64, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl History {
    pub async fn record(etcd: &Etcd) -> History {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let leaders = Arc::new(Mutex::new(Vec::new()));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let endpoints = etcd.endpoints();
        // The first watch starts now; later ones (after an etcd outage broke it) resume after
        // the last revision seen, so no write is missed.
        let start = etcd
            .client()
            .await
            .get("/test/health", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        let task = tokio::spawn({
            let (writes, leaders, puts) = (writes.clone(), leaders.clone(), puts.clone());
            async move {
                let mut next = start + 1;
                loop {
                    let options = etcd_client::ConnectOptions::new()
                        .with_connect_timeout(Duration::from_secs(1))
                        .with_timeout(Duration::from_secs(2));
                    let Ok(mut client) =
                        etcd_client::Client::connect(endpoints.clone(), Some(options)).await
                    else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    let watch = client.watch(
                        "/canaryd/test-fleet/",
                        Some(
                            etcd_client::WatchOptions::new()
                                .with_prefix()
                                .with_start_revision(next),
                        ),
                    );
                    let Ok(Ok(mut stream)) =
                        tokio::time::timeout(Duration::from_secs(2), watch).await
                    else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    while let Ok(Some(response)) = stream.message().await {
                        for event in response.events() {
                            let Some(kv) = event.kv() else { continue };
                            next = next.max(kv.mod_revision() + 1);
                            if event.event_type() != etcd_client::EventType::Put {
                                continue;
                            }
                            record_put(kv, &writes, &leaders, &puts);
                        }
                    }
                }
            }
        });
        History {
            writes,
            leaders,
            puts,
            task,
        }
    }

    /// Every write was made by the leader of its term, terms never go back, and the weight
    /// never goes back within one rollout (until it finishes).
    pub fn check(&self) -> Vec<Write> {
        let writes = self.writes.lock().unwrap().clone();
        let leaders = self.leaders.lock().unwrap().clone();
        let mut last_term = 0;
        let mut last_weight = 0;
        for w in &writes {
            let term_leader = leaders.iter().find(|(rev, _)| *rev == w.term);
            if let Some((_, who)) = term_leader {
                assert_eq!(
                    who, &w.writer,
                    "write at revision {} by {} in the term of {who}: {writes:#?}",
                    w.revision, w.writer
                );
            }
            assert!(
                w.term >= last_term,
                "term went back at revision {}: {writes:#?}",
                w.revision
            );
            last_term = w.term;
            if w.phase == "Progressing" || w.phase == "WaitingPromotion" {
                assert!(
                    w.weight >= last_weight,
                    "weight went back from {last_weight} to {} at revision {}: {writes:#?}",
                    w.weight,
                    w.revision
                );
                last_weight = w.weight;
            }
        }
        writes
    }
}

fn record_put(
    kv: &etcd_client::KeyValue,
    writes: &Mutex<Vec<Write>>,
    leaders: &Mutex<Vec<(i64, String)>>,
    puts: &Mutex<Vec<(String, i64, Instant)>>,
) {
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    puts.lock()
        .unwrap()
        .push((key.clone(), kv.mod_revision(), Instant::now()));
    if key.ends_with("/leader") {
        leaders.lock().unwrap().push((
            kv.create_revision(),
            String::from_utf8_lossy(kv.value()).into_owned(),
        ));
    } else if key.ends_with("/state/shop") {
        let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
        writes.lock().unwrap().push(Write {
            revision: kv.mod_revision(),
            term: v["term"].as_i64().unwrap(),
            writer: v["writer"].as_str().unwrap().to_owned(),
            phase: v["phase"].as_str().unwrap().to_owned(),
            weight: v["weight"].as_u64().unwrap(),
            window: v["window"].as_u64().unwrap(),
            evidence_requests: v["rollout"]["last_check"]["metrics"][0]["evidence"]["requests"]
                .as_u64(),
            bake_left: v["rollout"]["bake_left"].as_u64(),
            check: v["rollout"]["last_check"]["at"].as_str().map(|at| {
                (
                    at.to_owned(),
                    v["rollout"]["last_check"]["canary"]["requests"]
                        .as_u64()
                        .unwrap_or(0),
                )
            }),
        });
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The analysis every fleet test uses: 1 s interval, steps 10 → 20 → 30 → 40 → 50, promotion
/// after the last one, two failed checks roll back.
pub fn analysed_shop(primary: SocketAddr, canary: SocketAddr, steps: &str) -> String {
    analysed_shop_with(primary, canary, steps, "")
}

/// [`analysed_shop`] with more `[route.analysis]` keys (`analysis_keys`, whole lines: `bake`).
pub fn analysed_shop_with(
    primary: SocketAddr,
    canary: SocketAddr,
    steps: &str,
    analysis_keys: &str,
) -> String {
    format!(
        "\n[[route]]\nname = \"shop\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{primary}\"]\n\
         [route.canary]\nrevision = \"v2\"\nendpoints = [\"{canary}\"]\n[route.analysis]\n\
         interval = \"1s\"\nthreshold = 2\nstep_weights = [{steps}]\nmin_requests = 20\ninconclusive_limit = 30\n{analysis_keys}\
         [[route.analysis.metrics]]\nname = \"request-success-rate\"\nthreshold = 99.0\n\
         [[route.analysis.metrics]]\nname = \"request-duration\"\nthreshold = \"500ms\"\nquantile = 0.99\n"
    )
}

/// Etcd, backends and three replicas a, b, c of route "shop" (lease_ttl 2 s).
pub struct Fleet {
    pub etcd: Etcd,
    pub replicas: Vec<Replica>,
    pub configs: Vec<std::path::PathBuf>,
    pub primary: Upstream,
    pub canary: Upstream,
    pub dir: tempfile::TempDir,
}

pub async fn fleet(steps: &str) -> Fleet {
    fleet_with(steps, "").await
}

/// [`fleet`] with more `[route.analysis]` keys (whole lines).
pub async fn fleet_with(steps: &str, analysis_keys: &str) -> Fleet {
    let etcd = Etcd::start().await;
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let route = analysed_shop_with(primary.addr, canary.addr, steps, analysis_keys);
    let configs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|r| replica_config(dir.path(), r, &etcd.endpoints(), "2s", &route))
        .collect();
    let replicas = ["a", "b", "c"]
        .iter()
        .zip(&configs)
        .map(|(name, config)| Replica::start(name, config))
        .collect();
    Fleet {
        etcd,
        replicas,
        configs,
        primary,
        canary,
        dir,
    }
}

/// Samples every replica's weight every 200 ms; the longest time they disagreed (replicas
/// that do not answer, e.g. killed or paused, are left out of a sample).
pub struct Agreement {
    longest: Arc<Mutex<Duration>>,
    samples: Arc<Mutex<Vec<Vec<Option<u64>>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Agreement {
    pub fn start(admins: Vec<std::net::SocketAddr>) -> Agreement {
        let longest = Arc::new(Mutex::new(Duration::ZERO));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn({
            let (longest, samples, stop) = (longest.clone(), samples.clone(), stop.clone());
            async move {
                let client = admin_client();
                let mut since: Option<Instant> = None;
                while !stop.load(Ordering::Relaxed) {
                    let mut weights = Vec::new();
                    for admin in &admins {
                        let route = admin_get(&client, *admin, "/api/v1/routes/shop").await;
                        weights.push(route.and_then(|r| r["weight"].as_u64()));
                    }
                    let seen: Vec<u64> = weights.iter().flatten().copied().collect();
                    let disagree = seen.windows(2).any(|w| w[0] != w[1]);
                    match (disagree, since) {
                        (true, None) => since = Some(Instant::now()),
                        (true, Some(start)) => {
                            let mut l = longest.lock().unwrap();
                            *l = (*l).max(start.elapsed());
                        }
                        (false, _) => since = None,
                    }
                    samples.lock().unwrap().push(weights);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Agreement {
            longest,
            samples,
            stop,
            task,
        }
    }

    pub async fn stop(self) -> (Duration, Vec<Vec<Option<u64>>>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let longest = *self.longest.lock().unwrap();
        let samples = self.samples.lock().unwrap().clone();
        (longest, samples)
    }
}

pub async fn phase_everywhere(replicas: &[Replica], phase: &str) -> bool {
    let client = admin_client();
    for replica in replicas {
        match shop(&client, replica).await {
            Some((p, _)) if p == phase => {}
            _ => return false,
        }
    }
    true
}

pub async fn leader_of(replicas: &[Replica]) -> Option<usize> {
    let client = admin_client();
    for replica in replicas {
        if let Some(fleet) = admin_get(&client, replica.admin, "/api/v1/fleet").await {
            if let Some(leader) = fleet["leader"].as_str() {
                return replicas.iter().position(|r| r.name == leader);
            }
        }
    }
    None
}

/// GET an admin path as text (e.g. `/metrics`, `/readyz`): status and body.
pub async fn admin_text(client: &Client, admin: SocketAddr, path: &str) -> Option<(u16, String)> {
    let req = http::Request::get(format!("http://{admin}{path}"))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_millis(800), client.request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The value of an unlabelled gauge in a Prometheus text exposition.
pub fn gauge(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// 60 requests per second through each replica.
pub fn load_through(replicas: &[Replica]) -> Vec<crate::support::Load> {
    replicas
        .iter()
        .map(|r| crate::support::Load::start(r.url("/"), 60))
        .collect()
}

/// Wait for a leader, then for the weight it reports to reach `weight`; the leader's index.
pub async fn leader_at_weight(client: &Client, replicas: &[Replica], weight: u64) -> usize {
    let leader = wait_for("a leader", Duration::from_secs(10), || leader_of(replicas)).await;
    // The sequential judge needs a few hundred canary requests per step (docs/rollouts.md): at
    // 10% of 3 × 60 req/s that is about 17 s, so 20 s was too tight on a loaded machine.
    wait_for(
        &format!("weight {weight}"),
        Duration::from_secs(60),
        || async {
            let (_, reported) = shop(client, &replicas[leader]).await?;
            (reported >= weight).then_some(())
        },
    )
    .await;
    leader
}
