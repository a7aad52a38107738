//! TLS termination: building the rustls server configuration from `[proxy.tls]` (the default
//! certificate) and its `[[proxy.tls.sni]]` entries, the shared slot the workers read it from,
//! and the protocol a TLS client negotiated.
//!
//! The current [`ServerConfig`] lives in an [`ArcSwap`] ([`TlsCerts`]) shared by every worker:
//! each TLS accept loads it once, so a reload that swaps in new certificates affects only
//! connections accepted afterwards, and never blocks or races an accept. Every certificate of
//! a configuration sits in one [`SniResolver`] inside that `ServerConfig`, so they are swapped
//! together. The reloader builds the new configuration *before* it hands the new config to the
//! control task, so any certificate or key that does not load (or a key that does not belong
//! to its certificate) rejects the whole reload and the old set keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::tls_sni::SniResolver;
use crate::config::{HostPattern, TlsConfig};

/// ALPN protocols offered, in server preference order: HTTP/2 first, then HTTP/1.1.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate chain and key could not be turned into a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or parsed as PEM.
    #[error("cannot read TLS certificate chain {}: {source}", .path.display())]
    Cert {
        /// The certificate file.
        path: PathBuf,
        /// What the PEM reader said.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file held no `CERTIFICATE` block.
    #[error("TLS certificate file {} holds no certificate", .0.display())]
    NoCert(PathBuf),
    /// The key file could not be read, or held no usable private key.
    #[error("cannot read TLS private key {}: {source}", .path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What the PEM reader said.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the pair: unsupported key type, or a key that does not belong to the
    /// certificate.
    #[error("TLS certificate {} and key {} cannot be used together: {source}", .cert.display(), .key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The certificate of a `[[proxy.tls.sni]]` entry is not valid for one of the entry's hosts
    /// (every client asking for that name would refuse it).
    #[error("TLS certificate {} is not valid for {host}", .cert.display())]
    NameNotCovered {
        /// The certificate file.
        cert: PathBuf,
        /// The host (or `*.` pattern) it does not cover.
        host: String,
    },
    /// rustls refused the protocol versions (cannot happen with the aws-lc-rs provider).
    #[error("TLS 1.2 and 1.3 are not available: {0}")]
    Versions(#[source] rustls::Error),
    /// The pair of a `[[proxy.tls.sni]]` entry did not load.
    #[error("`[[proxy.tls.sni]]` entry {} (hosts {hosts}): {source}", .index + 1)]
    Sni {
        /// 0-based index of the entry in `[proxy.tls]` `sni`.
        index: usize,
        /// The entry's hosts, for the message.
        hosts: String,
        /// Why its pair did not load.
        #[source]
        source: Box<TlsError>,
    },
}

impl TlsError {
    /// The `[[proxy.tls.sni]]` entry (0-based) whose pair failed; `None` for the default pair.
    pub fn sni_entry(&self) -> Option<usize> {
        match self {
            TlsError::Sni { index, .. } => Some(*index),
            _ => None,
        }
    }
}

/// Reads every certificate chain and key named by `tls` (the default pair and each
/// `[[proxy.tls.sni]]` entry) and builds the server configuration: certificates chosen by SNI
/// ([`SniResolver`]), TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, no client
/// authentication.
///
/// Fails on the first pair that does not parse or whose key does not match its end-entity
/// certificate (rustls compares the key's public half with the certificate's); nothing is
/// half-built, so the caller keeps serving its previous configuration.
pub fn load_server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    // The provider is named explicitly rather than taken from a process-wide default, so a
    // second rustls user in the process (or a test's client) can never change what we serve.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut resolver = SniResolver::new(load_pair(&tls.cert, &tls.key, &provider)?);
    for (index, entry) in tls.sni.iter().enumerate() {
        let key = load_pair(&entry.cert, &entry.key, &provider)
            .and_then(|key| covers(&key, &entry.cert, &entry.hosts).map(|()| key))
            .map_err(|source| TlsError::Sni {
                index,
                hosts: hosts_text(&entry.hosts),
                source: Box::new(source),
            })?;
        resolver.add(&entry.hosts, &key);
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// One certificate chain and its key, loaded by `provider` and checked to belong together
/// (the same check rustls' `with_single_cert` makes).
fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = read_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let certified =
        CertifiedKey::from_der(certs, key_der, provider).map_err(|source| TlsError::Pair {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    Ok(Arc::new(certified))
}

/// Whether the end-entity certificate of `key` is valid for every one of `hosts`, as a client's
/// name check would judge it: a `*.example.com` host needs a certificate valid for any one
/// label under `example.com` (a wildcard certificate), checked with a sample label.
fn covers(key: &CertifiedKey, cert: &Path, hosts: &[HostPattern]) -> Result<(), TlsError> {
    let not_covered = |host: &HostPattern| TlsError::NameNotCovered {
        cert: cert.to_path_buf(),
        host: host.to_string(),
    };
    let end_entity = key
        .end_entity_cert()
        .map_err(|_| TlsError::NoCert(cert.to_path_buf()))?;
    let parsed = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|_| TlsError::NoCert(cert.to_path_buf()))?;
    for host in hosts {
        let name = match host {
            HostPattern::Exact(name) => name.clone(),
            HostPattern::Wildcard(suffix) => format!("canaryd-sni-check{suffix}"),
        };
        let valid = rustls::pki_types::ServerName::try_from(name)
            .is_ok_and(|name| parsed.verify_is_valid_for_subject_name(&name).is_ok());
        if !valid {
            return Err(not_covered(host));
        }
    }
    Ok(())
}

/// `a.example.com, *.example.com`: an entry's hosts for a message.
fn hosts_text(hosts: &[HostPattern]) -> String {
    let names: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    names.join(", ")
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let cert_error = |source| TlsError::Cert {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(cert_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.to_path_buf()));
    }
    Ok(certs)
}

/// The TLS configuration the workers accept with, swapped whole on a successful reload.
#[derive(Debug)]
pub struct TlsCerts {
    current: ArcSwap<ServerConfig>,
}

impl TlsCerts {
    /// A slot holding `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsCerts {
            current: ArcSwap::new(config),
        }
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Serve new connections with `config` from now on (open ones keep theirs).
    pub fn replace(&self, config: Arc<ServerConfig>) {
        self.current.store(config);
    }
}

/// A client connection after a completed TLS handshake; boxed because the rustls state is
/// large.
pub type ClientTlsStream = Box<TlsStream<TcpStream>>;

/// The HTTP version a TLS client connection is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProtocol {
    /// TLS that negotiated `h2`: HTTP/2 only.
    Http2,
    /// TLS that negotiated `http/1.1` or no ALPN protocol: HTTP/1.1 only.
    Http1,
}

/// What ALPN decided, so a TLS connection is never served a protocol it did not negotiate
/// (`docs/security.md#protocol-conformance`).
pub fn negotiated_protocol(tls: &TlsStream<TcpStream>) -> ClientProtocol {
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        ClientProtocol::Http2
    } else {
        ClientProtocol::Http1
    }
}
