//! Several certificates chosen by SNI (`[[proxy.tls.sni]]`, an extension: docs/tls.md#several-certificates-sni)
//! over real sockets: exact names, a one-label `*.` wildcard and the `[proxy.tls]` default
//! (unknown name, or no SNI when connecting by IP); a reload swapping one entry's files; a
//! reload with one bad pair rejected as a whole with every old certificate still served;
//! positioned config errors; `canaryd check` failing on a bad entry.
//!
//! Every test certificate names every test host (and 127.0.0.1), so the client's verification
//! passes whichever certificate the server picks and the assertions on the DER it received are
//! what tell the choice apart. Each certificate has its own subject CN, so the client's root
//! store (all test certificates) never confuses two of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

/// Every name a test connects with; each test certificate covers all of them.
const NAMES: [&str; 7] = [
    "localhost",
    "a.test",
    "b.test",
    "x.wild.test",
    "x.y.wild.test",
    "unknown.test",
    "127.0.0.1",
];

/// A self-signed certificate with subject CN `label`: its PEMs and DER.
struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCert {
    fn new(label: &str) -> TestCert {
        let key = rcgen::KeyPair::generate().unwrap();
        // The names tests connect with, plus the wildcard entry's pattern itself: canaryd checks
        // that each entry's certificate is valid for its hosts.
        let mut names = NAMES.map(str::to_owned).to_vec();
        names.push("*.wild.test".to_owned());
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("canaryd test {label}"));
        let cert = params.self_signed(&key).unwrap();
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// Writes `NAME.crt` and `NAME.key` into `dir`.
    fn write(&self, dir: &Path, name: &str) {
        std::fs::write(dir.join(format!("{name}.crt")), &self.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), &self.key_pem).unwrap();
    }
}

/// The four certificates of the test configuration.
struct Set {
    default: TestCert,
    a: TestCert,
    b: TestCert,
    wild: TestCert,
}

impl Set {
    fn new(dir: &Path) -> Set {
        let set = Set {
            default: TestCert::new("default"),
            a: TestCert::new("a"),
            b: TestCert::new("b"),
            wild: TestCert::new("wild"),
        };
        set.default.write(dir, "default");
        set.a.write(dir, "a");
        set.b.write(dir, "b");
        set.wild.write(dir, "wild");
        set
    }
}

/// `[proxy.tls]` with the default pair and three SNI entries (a, b, wildcard); `prefix` goes
/// before each file name: "" for paths relative to the config file, or a directory and `/`.
fn tls_tables(prefix: &str) -> String {
    let pair =
        |name: &str| format!("cert = \"{prefix}{name}.crt\"\nkey = \"{prefix}{name}.key\"\n");
    format!(
        "[proxy.tls]\nlisten = [\"127.0.0.1:0\"]\n{}\n\
         [[proxy.tls.sni]]\nhosts = [\"a.test\"]\n{}\n\
         [[proxy.tls.sni]]\nhosts = [\"B.test\"]\n{}\n\
         [[proxy.tls.sni]]\nhosts = [\"*.wild.test\"]\n{}\n",
        pair("default"),
        pair("a"),
        pair("b"),
        pair("wild"),
    )
}

fn proxy_config(certs: &Path, upstream: &Upstream) -> String {
    let prefix = format!("{}/", certs.display());
    base_config("", &tls_tables(&prefix)) + &app_route(upstream)
}

/// 1-based line of the `n`th (1-based) `[[proxy.tls.sni]]` header in `text`.
fn sni_line(text: &str, n: usize) -> usize {
    let offset = text
        .match_indices("[[proxy.tls.sni]]")
        .nth(n - 1)
        .unwrap()
        .0;
    text[..offset].matches('\n').count() + 1
}

/// A client trusting exactly `trusted`, offering HTTP/1.1 and the given TLS versions.
fn connector(
    trusted: &[&CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// Connects sending `name` as SNI (a DNS name) or none (an IP address).
async fn connect_with(
    addr: SocketAddr,
    name: &str,
    trusted: &[&CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsStream<TcpStream> {
    let server_name = match name.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(name.to_owned()).unwrap(),
    };
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector(trusted, versions)
        .connect(server_name, tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake for {name:?}: {e}"))
}

/// The end-entity certificate the server presented.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// The certificate the server presents to a client sending `name`, asserted to be `expected`
/// (named `which` in the failure message).
async fn assert_served(
    addr: SocketAddr,
    name: &str,
    trusted: &[&CertificateDer<'static>],
    expected: &TestCert,
    which: &str,
) {
    let stream = connect_with(addr, name, trusted, rustls::ALL_VERSIONS).await;
    assert!(
        presented(&stream) == expected.der,
        "a client sending {name:?} did not get certificate {which}"
    );
}

/// One HTTP/1.1 GET over `stream`; the status.
async fn get_h1(stream: TlsStream<TcpStream>, path: &str) -> http::StatusCode {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "a.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    resp.into_body().collect().await.unwrap();
    status
}

const LOCAL: &str = "127.0.0.1";

#[tokio::test]
async fn each_name_gets_its_certificate_and_the_rest_the_default() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let set = Set::new(certs.path());
    let proxy = Canaryd::start(&proxy_config(certs.path(), &up));
    let addr = proxy.server().tls_addrs()[0];
    let all = [&set.default.der, &set.a.der, &set.b.der, &set.wild.der];

    assert_served(addr, "a.test", &all, &set.a, "A").await;
    assert_served(addr, "b.test", &all, &set.b, "B (listed as \"B.test\")").await;
    assert_served(addr, "x.wild.test", &all, &set.wild, "W (*.wild.test)").await;
    // A wildcard covers one label only, like a wildcard certificate.
    assert_served(addr, "x.y.wild.test", &all, &set.default, "default").await;
    assert_served(addr, "unknown.test", &all, &set.default, "default").await;
    // A client connecting by IP address sends no SNI.
    assert_served(addr, LOCAL, &all, &set.default, "default").await;

    // TLS 1.2 resolves the same way.
    let stream = connect_with(addr, "b.test", &all, &[&rustls::version::TLS12]).await;
    assert!(matches!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    ));
    assert!(presented(&stream) == set.b.der, "TLS 1.2 b.test: not B");

    // Served like any TLS connection afterwards; a client trusting only A is satisfied.
    let stream = connect_with(addr, "a.test", &[&set.a.der], rustls::ALL_VERSIONS).await;
    assert_eq!(get_h1(stream, "/sni").await, 200);
    assert_eq!(up.last_seen().headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn reload_swaps_in_the_new_files_of_one_entry() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let set = Set::new(certs.path());
    let toml = proxy_config(certs.path(), &up);
    let proxy = Canaryd::start(&toml);
    let addr = proxy.server().tls_addrs()[0];
    let open = connect_with(addr, "b.test", &[&set.b.der], rustls::ALL_VERSIONS).await;

    let b2 = TestCert::new("b2");
    b2.write(certs.path(), "b");
    proxy.reload_with(&toml).await.unwrap();

    let all = [
        &set.default.der,
        &set.a.der,
        &set.b.der,
        &set.wild.der,
        &b2.der,
    ];
    assert_served(addr, "b.test", &all, &b2, "B2 (the new files)").await;
    assert_served(addr, "a.test", &all, &set.a, "A").await;
    assert_served(addr, "x.wild.test", &all, &set.wild, "W").await;
    assert_served(addr, "unknown.test", &all, &set.default, "default").await;
    assert_served(addr, LOCAL, &all, &set.default, "default").await;
    // The connection opened before the reload keeps its session.
    assert_eq!(get_h1(open, "/still-open").await, 200);
}

#[tokio::test]
async fn reload_with_one_bad_pair_is_rejected_and_every_old_certificate_serves() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let set = Set::new(certs.path());
    let toml = proxy_config(certs.path(), &up);
    let proxy = Canaryd::start(&toml);
    let addr = proxy.server().tls_addrs()[0];

    // In one reload: A rotated correctly, B's certificate written with A's old key.
    let (a2, b2) = (TestCert::new("a2"), TestCert::new("b2"));
    a2.write(certs.path(), "a");
    std::fs::write(certs.path().join("b.crt"), &b2.cert_pem).unwrap();
    std::fs::write(certs.path().join("b.key"), &set.a.key_pem).unwrap();
    let err = proxy.reload_with(&toml).await.unwrap_err();
    let message = err.to_string();
    let position = format!("{}:{}:1: ", proxy.config_path.display(), sni_line(&toml, 2));
    assert!(message.starts_with(&position), "want {position}: {message}");
    assert!(
        message.contains("`[[proxy.tls.sni]]` entry 2 (hosts b.test)"),
        "{message}"
    );
    assert!(message.contains("cannot be used together"), "{message}");
    assert!(message.contains("b.crt"), "{message}");

    // All or nothing: not even the good A2 was taken.
    let all = [
        &set.default.der,
        &set.a.der,
        &set.b.der,
        &set.wild.der,
        &a2.der,
        &b2.der,
    ];
    assert_served(addr, "a.test", &all, &set.a, "A (the old one)").await;
    assert_served(addr, "b.test", &all, &set.b, "B (the old one)").await;
    assert_served(addr, "x.wild.test", &all, &set.wild, "W").await;
    assert_served(addr, "unknown.test", &all, &set.default, "default").await;
    assert_served(addr, LOCAL, &all, &set.default, "default").await;

    // Once B's pair is whole again, the next reload takes both rotations.
    std::fs::write(certs.path().join("b.key"), &b2.key_pem).unwrap();
    proxy.reload_with(&toml).await.unwrap();
    assert_served(addr, "a.test", &all, &a2, "A2").await;
    assert_served(addr, "b.test", &all, &b2, "B2").await;
}

/// The validation tests' file: `tls_tables("")` (relative paths) in a directory holding the
/// four pairs. Line 12 is `hosts = ["B.test"]`, line 17 `hosts = ["*.wild.test"]`.
fn valid_tables() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    Set::new(dir.path());
    let text = tls_tables("");
    assert_eq!(text.lines().nth(11), Some("hosts = [\"B.test\"]"));
    assert_eq!(text.lines().nth(16), Some("hosts = [\"*.wild.test\"]"));
    (dir, text)
}

/// `valid_tables()` with `from` replaced by `to` is rejected at LINE:COLUMN with `fragment`.
#[track_caller]
fn assert_rejected(from: &str, to: &str, line: usize, column: usize, fragment: &str) {
    let (dir, valid) = valid_tables();
    assert!(valid.contains(from), "{from:?} not in the test file");
    let text = valid.replace(from, to);
    let file = dir.path().join("canaryd.toml");
    let err = match canaryd::config::parse_str(&text, &file) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    };
    assert_eq!(
        (err.line(), err.column()),
        (Some(line), Some(column)),
        "wrong position: {err}"
    );
    assert!(
        err.message().contains(fragment),
        "lacks {fragment:?}: {err}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}:{line}:{column}: ", file.display())),
        "{err}"
    );
}

#[test]
fn sni_entries_are_parsed_lower_cased_with_relative_paths() {
    let (dir, text) = valid_tables();
    let dir = dir.path();
    let config = canaryd::config::parse_str(&text, &dir.join("canaryd.toml")).unwrap();
    let tls = config.proxy.tls.unwrap();
    assert_eq!(tls.cert, dir.join("default.crt"));
    assert_eq!(tls.sni.len(), 3);
    assert_eq!(
        tls.sni[1].hosts,
        [canaryd::config::HostPattern::Exact("b.test".into())]
    );
    assert_eq!(tls.sni[1].cert, dir.join("b.crt"));
    assert_eq!(tls.sni[1].key, dir.join("b.key"));
    assert_eq!(
        tls.sni[2].hosts,
        [canaryd::config::HostPattern::Wildcard(".wild.test".into())]
    );
}

#[test]
fn a_host_in_two_entries_is_rejected_at_the_second() {
    // Compared case-insensitively.
    assert_rejected(
        "[\"B.test\"]",
        "[\"b.test\", \"A.test\"]",
        12,
        20,
        "\"A.test\" is already listed in `[[proxy.tls.sni]]` entry 1",
    );
    assert_rejected(
        "[\"*.wild.test\"]",
        "[\"*.WILD.test\", \"*.wild.test\"]",
        17,
        25,
        "listed twice in this `[[proxy.tls.sni]]` entry",
    );
}

#[test]
fn empty_hosts_are_rejected_at_the_list() {
    assert_rejected("[\"B.test\"]", "[]", 12, 9, "must list at least one name");
}

#[test]
fn unknown_key_in_an_sni_entry_is_rejected_at_the_key() {
    assert_rejected(
        "hosts = [\"B.test\"]\n",
        "hosts = [\"B.test\"]\nhots = []\n",
        13,
        1,
        "unknown field `hots`",
    );
}

#[test]
fn sni_files_are_checked_like_the_default_pair() {
    assert_rejected(
        "\"wild.key\"",
        "\"missing.key\"",
        19,
        7,
        "cannot read TLS private key",
    );
    assert_rejected(
        "\"a.key\"",
        "\"a.crt\"",
        9,
        7,
        "holds no PEM PRIVATE KEY block",
    );
}

#[test]
fn ip_addresses_and_bad_patterns_are_rejected() {
    assert_rejected("[\"B.test\"]", "[\"10.0.0.1\"]", 12, 10, "is an IP address");
    assert_rejected(
        "[\"*.wild.test\"]",
        "[\"a.*.test\"]",
        17,
        10,
        "not a valid pattern",
    );
}

/// `canaryd check -c FILE` (and `run`), as a process.
fn canaryd(command: &str, file: &Path) -> std::process::Output {
    Command::new(BIN)
        .args([command, "-c"])
        .arg(file)
        .output()
        .unwrap()
}

fn write_config(dir: &Path, name: &str) -> PathBuf {
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\n\n{}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        tls_tables("")
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_fails_on_a_mismatched_sni_pair_at_its_entry() {
    let (dir, _) = valid_tables();
    let file = write_config(dir.path(), "canaryd.toml");
    let out = canaryd("check", &file);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // The wildcard entry's certificate with A's key.
    std::fs::copy(dir.path().join("a.key"), dir.path().join("wild.key")).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let position = format!("{}:{}:1: ", file.display(), sni_line(&text, 3));
    for command in ["check", "run"] {
        let out = canaryd(command, &file);
        assert_eq!(out.status.code(), Some(1), "{command}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&position),
            "{command}: want {position}: {stderr}"
        );
        assert!(
            stderr.contains("`[[proxy.tls.sni]]` entry 3 (hosts *.wild.test)"),
            "{stderr}"
        );
        assert!(stderr.contains("cannot be used together"), "{stderr}");
    }
}

#[test]
fn an_sni_certificate_must_be_valid_for_every_host_of_its_entry() {
    let (dir, _) = valid_tables();
    let file = write_config(dir.path(), "canaryd.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    for (from, to, entry, host) in [
        // An exact name the certificate does not list.
        (
            "hosts = [\"B.test\"]",
            "hosts = [\"B.test\", \"c.example\"]",
            2,
            "c.example",
        ),
        // A wildcard entry needs a wildcard certificate for it.
        (
            "hosts = [\"*.wild.test\"]",
            "hosts = [\"*.other.test\"]",
            3,
            "*.other.test",
        ),
    ] {
        assert!(text.contains(from));
        std::fs::write(&file, text.replace(from, to)).unwrap();
        let out = canaryd("check", &file);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let position = format!("{}:{}:1: ", file.display(), sni_line(&text, entry));
        assert!(stderr.starts_with(&position), "want {position}: {stderr}");
        assert!(
            stderr.contains(&format!("is not valid for {host}")),
            "{stderr}"
        );
    }
}

#[test]
fn the_default_pair_is_still_reported_at_proxy_tls() {
    let (dir, _) = valid_tables();
    let file = write_config(dir.path(), "canaryd.toml");
    std::fs::copy(dir.path().join("b.key"), dir.path().join("default.key")).unwrap();
    let out = canaryd("check", &file);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `[proxy.tls]` is line 4.
    assert!(
        stderr.starts_with(&format!("{}:4:1: TLS certificate", file.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("proxy.tls.sni"), "{stderr}");
}
