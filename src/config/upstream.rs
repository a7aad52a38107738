//! The rules for how canaryd reaches a version's endpoints: `protocol` and
//! `[route.<version>.tls]` (docs/configuration.md#upstream-protocol-and-tls). Every file named is
//! read and parsed here, so `canaryd check` refuses what a connection would later fail on, and
//! the files' contents travel in the config: a reload re-reads them. A config that will serve
//! nothing (`canaryd simulate`) checks every rule but reads no file.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use toml::Spanned;

use super::error::Issue;
use super::raw::RawUpstreamTls;
use super::validate::{resolve, Checked, Files};

/// Which HTTP version canaryd speaks to a version's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    Http1,
    /// HTTP/2: over TLS with ALPN `h2`, or cleartext with prior knowledge (RFC 9113 §3.3).
    Http2,
    /// TLS only: ALPN picks `h2` or `http/1.1`, as the endpoint prefers.
    Auto,
}

/// `[route.<version>.tls]`, with its files already read. Compared by content: two versions
/// with the same settings share endpoints and connections, any difference separates them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTlsConfig {
    /// PEM roots (`ca`); `None`: the system's roots.
    pub ca_pem: Option<Arc<[u8]>>,
    /// The name sent as SNI and verified; `None`: the endpoint's host (an IP literal is
    /// verified against the certificate's IP SANs).
    pub server_name: Option<String>,
    /// The client certificate chain and key (mTLS).
    pub client_pem: Option<ClientPem>,
    /// `false`: no verification at all (logged as a warning).
    pub verify: bool,
}

/// A client certificate chain and its key, as PEM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientPem {
    /// `cert`: the chain, leaf first.
    pub cert: Arc<[u8]>,
    /// `key`: its private key.
    pub key: Arc<[u8]>,
}

/// How one version's endpoints are reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTransport {
    /// `protocol`.
    pub protocol: UpstreamProtocol,
    /// `[route.<version>.tls]`; `None`: cleartext.
    pub tls: Option<Arc<UpstreamTlsConfig>>,
}

impl Default for UpstreamTransport {
    /// Cleartext HTTP/1.1.
    fn default() -> Self {
        UpstreamTransport {
            protocol: UpstreamProtocol::Http1,
            tls: None,
        }
    }
}

/// `protocol` and `[route.<version>.tls]` of one version.
pub(crate) fn upstream_transport(
    protocol: &Spanned<String>,
    tls: Option<&Spanned<RawUpstreamTls>>,
    files: Files<'_>,
) -> Checked<UpstreamTransport> {
    let protocol_value = match protocol.get_ref().as_str() {
        "http1" => UpstreamProtocol::Http1,
        "http2" => UpstreamProtocol::Http2,
        "auto" => UpstreamProtocol::Auto,
        other => {
            return Err(Issue::new(
                protocol.span(),
                format!("`protocol` must be \"http1\", \"http2\" or \"auto\", got {other:?}"),
            ))
        }
    };
    if protocol_value == UpstreamProtocol::Auto && tls.is_none() {
        return Err(Issue::new(
            protocol.span(),
            "`protocol = \"auto\"` needs TLS (ALPN chooses the protocol); add a [route.<version>.tls] table or write \"http1\" or \"http2\" (h2c)",
        ));
    }
    let tls = match tls {
        Some(raw) => Some(Arc::new(upstream_tls(raw.get_ref(), files)?)),
        None => None,
    };
    Ok(UpstreamTransport {
        protocol: protocol_value,
        tls,
    })
}

fn upstream_tls(raw: &RawUpstreamTls, files: Files<'_>) -> Checked<UpstreamTlsConfig> {
    let ca_pem = match &raw.ca {
        Some(_) if !files.read => Some(Arc::from(Vec::new())),
        Some(ca) => {
            let pem = read(ca, files, "CA file")?;
            let roots = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Issue::new(ca.span(), format!("CA file {:?}: {e}", ca.get_ref())))?;
            if roots.is_empty() {
                return Err(Issue::new(
                    ca.span(),
                    format!("CA file {:?} holds no PEM CERTIFICATE block", ca.get_ref()),
                ));
            }
            Some(pem)
        }
        None => None,
    };
    let server_name = match &raw.server_name {
        Some(name) => {
            ServerName::try_from(name.get_ref().as_str()).map_err(|_| {
                Issue::new(
                    name.span(),
                    format!(
                        "`server_name` {:?} is neither a DNS name nor an IP address",
                        name.get_ref()
                    ),
                )
            })?;
            Some(name.get_ref().clone())
        }
        None => None,
    };
    let client_pem = match (&raw.cert, &raw.key) {
        (None, None) => None,
        (Some(cert), None) => {
            return Err(Issue::new(
                cert.span(),
                "`cert` needs `key`: a client certificate is presented with its private key",
            ))
        }
        (None, Some(key)) => {
            return Err(Issue::new(
                key.span(),
                "`key` needs `cert`: a private key is only used with its client certificate",
            ))
        }
        (Some(_), Some(_)) if !files.read => Some(ClientPem {
            cert: Arc::from(Vec::new()),
            key: Arc::from(Vec::new()),
        }),
        (Some(cert), Some(key)) => {
            let cert_pem = read(cert, files, "certificate")?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    Issue::new(
                        cert.span(),
                        format!("certificate {:?}: {e}", cert.get_ref()),
                    )
                })?;
            if chain.is_empty() {
                return Err(Issue::new(
                    cert.span(),
                    format!(
                        "certificate {:?} holds no PEM CERTIFICATE block",
                        cert.get_ref()
                    ),
                ));
            }
            let key_pem = read(key, files, "private key")?;
            let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                Issue::new(key.span(), format!("private key {:?}: {e}", key.get_ref()))
            })?;
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).map_err(|e| {
                Issue::new(key.span(), format!("private key {:?}: {e}", key.get_ref()))
            })?;
            Some(ClientPem {
                cert: cert_pem,
                key: key_pem,
            })
        }
    };
    Ok(UpstreamTlsConfig {
        ca_pem,
        server_name,
        client_pem,
        verify: raw.verify.as_ref().is_none_or(|v| *v.get_ref()),
    })
}

fn read(value: &Spanned<String>, files: Files<'_>, what: &str) -> Checked<Arc<[u8]>> {
    let path = resolve(files.base, value.get_ref());
    std::fs::read(&path).map(Arc::from).map_err(|e| {
        Issue::new(
            value.span(),
            format!("cannot read TLS {what} {}: {e}", path.display()),
        )
    })
}
