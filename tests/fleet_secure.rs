//! Fleet mode against a secured etcd (docs/fleet.md, "Running etcd for it"): etcd serving TLS
//! and requiring client certificates, and etcd with authentication enabled. Two `canaryd run`
//! replicas configured with `tls = { ca, cert, key }` or `username`/`password_file` elect a
//! leader and carry a command through etcd; a replica with the wrong CA or the wrong password
//! gets a clear answer. Needs `etcd` (Debian's etcd-server) and `--features fleet`.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;
mod pki;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_support::*;
use support::Upstream;

/// The user canaryd logs in as, and the password in its `password_file`.
const USER: &str = "canaryd";
const PASSWORD: &str = "canary-s3cret";

/// Two replicas a and b of route "shop" on `etcd`, each with these extra `[fleet]` keys.
async fn two_replicas(
    etcd: &Etcd,
    dir: &Path,
    fleet_keys: &str,
) -> (Vec<Replica>, Upstream, Upstream) {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let route = analysed_shop(primary.addr, canary.addr, "10, 20, 30, 40, 50");
    let replicas = ["a", "b"]
        .iter()
        .map(|name| {
            let config =
                replica_config_with(dir, name, &etcd.endpoints(), "2s", &route, fleet_keys);
            Replica::start(name, &config)
        })
        .collect();
    (replicas, primary, canary)
}

/// Both replicas see one leader and both members with etcd up; a promote asked on the follower
/// goes through etcd (the command key, the leader's fenced write, the follower's watch) and
/// every replica ends Succeeded at 100. Returns the leader's name.
async fn fleet_works(replicas: &[Replica]) -> String {
    let client = admin_client();
    let leader = wait_for("a leader seen by both", Duration::from_secs(15), || async {
        let a = leader_seen_by(&client, &replicas[0]).await?;
        let b = leader_seen_by(&client, &replicas[1]).await?;
        (a == b).then_some(a)
    })
    .await;
    wait_for("both members, etcd up", Duration::from_secs(10), || async {
        for replica in replicas {
            let view = admin_get(&client, replica.admin, "/api/v1/fleet").await?;
            if view["etcd"] != "up" || view["members"].as_array()?.len() != 2 {
                return None;
            }
        }
        Some(())
    })
    .await;
    let follower = replicas.iter().find(|r| r.name != leader).unwrap();
    let (status, body) = admin_post(&client, follower.admin, "/api/v1/routes/shop/promote").await;
    assert_eq!(status, 200, "{body}");
    wait_for(
        "Succeeded at 100 everywhere",
        Duration::from_secs(5),
        || async {
            for replica in replicas {
                if shop(&client, replica).await? != ("Succeeded".to_owned(), 100) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    leader
}

/// Run `canaryd run -c config`, which must exit within 15 s: its exit code and stderr.
fn run_to_exit(config: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["run", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "canaryd kept running:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn replicas_reach_an_etcd_that_requires_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::TestCa::new("canaryd test etcd CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let (cert, key) = ca
        .server_and_client(&["127.0.0.1", "localhost"])
        .write(dir.path(), "etcd");
    let (client_cert, client_key) = ca.client("canaryd").write(dir.path(), "canaryd");
    let etcd = Etcd::start_with(
        1,
        Some(EtcdTls {
            ca: ca_pem.clone(),
            cert,
            key,
            client_cert: client_cert.clone(),
            client_key: client_key.clone(),
        }),
        &[],
    )
    .await;
    let tls = format!(
        "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
        ca_pem.display(),
        client_cert.display(),
        client_key.display()
    );
    let (replicas, _primary, _canary) = two_replicas(&etcd, dir.path(), &tls).await;
    let leader = fleet_works(&replicas).await;

    // The state really is in the TLS etcd, written by the leader.
    let state = etcd
        .client()
        .await
        .get("/canaryd/test-fleet/state/shop", None)
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(state.kvs()[0].value()).unwrap();
    assert_eq!(state["writer"], leader.as_str(), "{state}");
    assert_eq!(state["phase"], "Succeeded", "{state}");

    // A replica that trusts another CA cannot verify etcd: it starts (etcd unreachable is not
    // a reason to refuse, docs/fleet.md "Failures") but never joins, says etcd is down, and
    // logs why.
    let other = pki::TestCa::new("some other CA").write(dir.path(), "other-ca.pem");
    let wrong = format!(
        "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
        other.display(),
        client_cert.display(),
        client_key.display()
    );
    let route = analysed_shop(_primary.addr, _canary.addr, "10, 20, 30, 40, 50");
    let config = replica_config_with(dir.path(), "c", &etcd.endpoints(), "2s", &route, &wrong);
    let stranger = Replica::start("c", &config);
    let client = admin_client();
    let why = wait_for(
        "the stranger's etcd error in its log",
        Duration::from_secs(10),
        || async {
            let log = stranger.log.lock().unwrap();
            log.iter()
                .find(|l| l.contains("cannot reach etcd"))
                .cloned()
        },
    )
    .await;
    assert!(why.contains("UnknownIssuer"), "{why}");
    eprintln!("wrong CA: {why}");
    let view = admin_get(&client, stranger.admin, "/api/v1/fleet")
        .await
        .unwrap();
    assert_eq!(view["etcd"], "down", "{view}");
    assert!(view["leader"].is_null(), "{view}");
    let (_, metrics) = admin_text(&client, stranger.admin, "/metrics")
        .await
        .unwrap();
    assert_eq!(gauge(&metrics, "canaryd_fleet_etcd_up"), Some(0.0));
    // The fleet itself never saw it.
    let members = etcd
        .client()
        .await
        .get(
            "/canaryd/test-fleet/members/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(members.kvs().len(), 2, "{:?}", members.kvs());
}

/// Enable authentication the way an operator would: a root user, and a `canaryd` user whose
/// role allows read and write on `/canaryd/` only.
async fn enable_auth(etcd: &Etcd) {
    let mut client = etcd.client().await;
    client.user_add("root", "root-pw", None).await.unwrap();
    // etcd has the root role built in on some versions; either way root must hold it.
    let _ = client.role_add("root").await;
    client.user_grant_role("root", "root").await.unwrap();
    client.role_add(USER).await.unwrap();
    client
        .role_grant_permission(
            USER,
            etcd_client::Permission::read_write("/canaryd/").with_prefix(),
        )
        .await
        .unwrap();
    client.user_add(USER, PASSWORD, None).await.unwrap();
    client.user_grant_role(USER, USER).await.unwrap();
    client.auth_enable().await.unwrap();
    // Without credentials the cluster now refuses, so the replicas below must really log in.
    let refused = etcd.client().await.put("/canaryd/x", "y", None).await;
    assert!(refused.is_err(), "auth is not enabled: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn replicas_log_in_to_an_etcd_with_authentication() {
    let dir = tempfile::tempdir().unwrap();
    // JWT tokens that expire after 2 s, so the replicas must log in again and again, as they
    // must against any etcd whose tokens expire or that restarts (its tokens die with it).
    let jwt = rcgen::KeyPair::generate().unwrap();
    let (private, public) = (dir.path().join("jwt.key"), dir.path().join("jwt.pub"));
    std::fs::write(&private, jwt.serialize_pem()).unwrap();
    std::fs::write(&public, jwt.public_key_pem()).unwrap();
    let mut etcd = Etcd::start_with(
        1,
        None,
        &[
            format!(
                "--auth-token=jwt,pub-key={},priv-key={},sign-method=ES256,ttl=2s",
                public.display(),
                private.display()
            ),
            "--bcrypt-cost=4".to_owned(),
        ],
    )
    .await;
    enable_auth(&etcd).await;
    let password_file = dir.path().join("etcd-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let auth = format!(
        "username = \"{USER}\"\npassword_file = \"{}\"\n",
        password_file.display()
    );
    let (replicas, primary, canary) = two_replicas(&etcd, dir.path(), &auth).await;
    let leader = fleet_works(&replicas).await;

    let mut root = etcd_client::Client::connect(
        etcd.endpoints(),
        Some(etcd.connect_options().with_user("root", "root-pw")),
    )
    .await
    .unwrap();
    let state = root
        .get("/canaryd/test-fleet/state/shop", None)
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(state.kvs()[0].value()).unwrap();
    assert_eq!(state["writer"], leader.as_str(), "{state}");

    // Long after the first tokens expired the fleet still talks to etcd: an abort asked on the
    // follower is applied by the leader through etcd and reaches both (a 503 "cannot queue"
    // or "no leader applied it" would mean a replica lost its login).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let client = admin_client();
    let follower = replicas.iter().find(|r| r.name != leader).unwrap();
    let (status, body) = admin_post(&client, follower.admin, "/api/v1/routes/shop/abort").await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let aborted = (
        answer["phase"].as_str().unwrap().to_owned(),
        answer["weight"].as_u64().unwrap(),
    );
    wait_for("the abort everywhere", Duration::from_secs(5), || async {
        for replica in &replicas {
            if shop(&client, replica).await? != aborted {
                return None;
            }
        }
        Some(())
    })
    .await;
    for replica in &replicas {
        let view = admin_get(&client, replica.admin, "/api/v1/fleet")
            .await
            .unwrap();
        assert_eq!(view["etcd"], "up", "{view}");
    }

    // The wrong password is refused at start: exit 1 with etcd's own reason.
    let wrong_file = dir.path().join("wrong-password");
    std::fs::write(&wrong_file, "not-the-password\n").unwrap();
    let wrong = format!(
        "username = \"{USER}\"\npassword_file = \"{}\"\n",
        wrong_file.display()
    );
    let route = analysed_shop(primary.addr, canary.addr, "10, 20, 30, 40, 50");
    let config = replica_config_with(dir.path(), "c", &etcd.endpoints(), "2s", &route, &wrong);
    let (code, stderr) = run_to_exit(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot join the fleet: etcd: "), "{stderr}");
    assert_eq!(
        stderr
            .matches("authentication failed, invalid user ID or password")
            .count(),
        1,
        "{stderr}"
    );
    eprintln!("wrong password: {}", stderr.trim());

    // With etcd down, a replica with credentials still starts (on its state file), and logs
    // in and joins once etcd is back.
    etcd.kill(0);
    let config = replica_config_with(dir.path(), "c", &etcd.endpoints(), "2s", &route, &auth);
    let late = Replica::start("c", &config);
    etcd.restart(0);
    let joined = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(view) = admin_get(&client, late.admin, "/api/v1/fleet").await {
                if view["etcd"] == "up" && view["members"].as_array().map(Vec::len) == Some(3) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if joined.is_err() {
        let mut report = String::new();
        for replica in replicas.iter().chain([&late]) {
            let view = admin_get(&client, replica.admin, "/api/v1/fleet").await;
            report += &format!(
                "replica {}: {view:?}\n{}\n",
                replica.name,
                replica.dump_log()
            );
        }
        panic!(
            "c did not join the fleet within 20 s\n{report}{}",
            etcd.dump_logs()
        );
    }
    assert!(
        late.log_contains("logged in to etcd"),
        "{}",
        late.dump_log()
    );
}
