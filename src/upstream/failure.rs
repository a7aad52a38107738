//! Why a connection to an upstream could not be opened, as one small typed kind
//! (docs/operations.md#why-a-canary-was-rolled-back): the data plane counts each kind, and a
//! rollback or failed check caused by connect failures names it.
//!
//! The kinds are `Copy` so that they travel in the per-request outcome without allocating; the
//! full error text (rustls's reason with names and dates) stays in the log line of the failure.

use std::io;

/// The kind of one failed connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectFailure {
    /// The version's endpoint names resolved to no address.
    #[error("DNS resolution failure")]
    Dns,
    /// The endpoint refused the TCP connection.
    #[error("connection refused")]
    Refused,
    /// TCP connect and TLS handshake did not finish within `connect_timeout`.
    #[error("connect timeout")]
    Timeout,
    /// The TLS handshake failed.
    #[error("TLS handshake failure ({0})")]
    Tls(TlsFailure),
    /// Anything else: unreachable, reset during the connect, a failed HTTP handshake, a new
    /// connection that closed before the request was sent.
    #[error("connect error")]
    Other,
}

/// Why a TLS handshake with an upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// The chain does not end at a root of `ca` (or the system's roots).
    #[error("certificate from an unknown issuer")]
    UnknownIssuer,
    /// The certificate does not name `server_name` (or the endpoint's host).
    #[error("certificate not valid for the server name")]
    WrongName,
    /// The certificate has expired.
    #[error("certificate expired")]
    Expired,
    /// The certificate is not valid yet.
    #[error("certificate not yet valid")]
    NotYetValid,
    /// Any other reason the certificate was refused (revoked, bad signature, …).
    #[error("certificate refused")]
    BadCertificate,
    /// The upstream ended the handshake with an alert (it refused canaryd's certificate, or
    /// shares no protocol version or cipher suite).
    #[error("refused by the upstream")]
    PeerRefused,
    /// The version's TLS settings could not be loaded.
    #[error("TLS settings not loaded")]
    Settings,
    /// Another handshake error (a peer that does not speak TLS, a broken message).
    #[error("handshake error")]
    Other,
}

/// Every kind, in the order of [`ConnectFailure::index`].
pub const CONNECT_FAILURES: [ConnectFailure; 12] = [
    ConnectFailure::Dns,
    ConnectFailure::Refused,
    ConnectFailure::Timeout,
    ConnectFailure::Tls(TlsFailure::UnknownIssuer),
    ConnectFailure::Tls(TlsFailure::WrongName),
    ConnectFailure::Tls(TlsFailure::Expired),
    ConnectFailure::Tls(TlsFailure::NotYetValid),
    ConnectFailure::Tls(TlsFailure::BadCertificate),
    ConnectFailure::Tls(TlsFailure::PeerRefused),
    ConnectFailure::Tls(TlsFailure::Settings),
    ConnectFailure::Tls(TlsFailure::Other),
    ConnectFailure::Other,
];

impl ConnectFailure {
    /// A failed TCP connect, by the OS's error.
    pub fn of_io(error: &io::Error) -> ConnectFailure {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            io::ErrorKind::TimedOut => ConnectFailure::Timeout,
            _ => ConnectFailure::Other,
        }
    }

    /// Where this kind is counted (see [`CONNECT_FAILURES`]).
    pub fn index(self) -> usize {
        match self {
            ConnectFailure::Dns => 0,
            ConnectFailure::Refused => 1,
            ConnectFailure::Timeout => 2,
            ConnectFailure::Tls(tls) => 3 + tls as usize,
            ConnectFailure::Other => 11,
        }
    }
}

impl ConnectFailure {
    /// The `cause` label of `canaryd_upstream_connect_failures_total`
    /// (docs/operations.md#series): stable, lower-case, one per kind.
    pub fn label(self) -> &'static str {
        match self {
            ConnectFailure::Dns => "dns",
            ConnectFailure::Refused => "refused",
            ConnectFailure::Timeout => "timeout",
            ConnectFailure::Tls(TlsFailure::UnknownIssuer) => "tls_unknown_issuer",
            ConnectFailure::Tls(TlsFailure::WrongName) => "tls_wrong_name",
            ConnectFailure::Tls(TlsFailure::Expired) => "tls_expired",
            ConnectFailure::Tls(TlsFailure::NotYetValid) => "tls_not_yet_valid",
            ConnectFailure::Tls(TlsFailure::BadCertificate) => "tls_bad_certificate",
            ConnectFailure::Tls(TlsFailure::PeerRefused) => "tls_peer_refused",
            ConnectFailure::Tls(TlsFailure::Settings) => "tls_settings",
            ConnectFailure::Tls(TlsFailure::Other) => "tls_other",
            ConnectFailure::Other => "other",
        }
    }
}

impl TlsFailure {
    /// A failed handshake, by the error tokio-rustls returned (rustls's own error inside an
    /// `io::Error`; any other I/O error is the peer breaking off).
    pub fn of_handshake(error: &io::Error) -> TlsFailure {
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return TlsFailure::Other;
        };
        TlsFailure::of_rustls(tls)
    }

    fn of_rustls(error: &rustls::Error) -> TlsFailure {
        use rustls::CertificateError as Cert;
        match error {
            rustls::Error::InvalidCertificate(cert) => match cert {
                Cert::UnknownIssuer => TlsFailure::UnknownIssuer,
                Cert::NotValidForName | Cert::NotValidForNameContext { .. } => {
                    TlsFailure::WrongName
                }
                Cert::Expired | Cert::ExpiredContext { .. } => TlsFailure::Expired,
                Cert::NotValidYet | Cert::NotValidYetContext { .. } => TlsFailure::NotYetValid,
                _ => TlsFailure::BadCertificate,
            },
            rustls::Error::AlertReceived(_) | rustls::Error::PeerIncompatible(_) => {
                TlsFailure::PeerRefused
            }
            _ => TlsFailure::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_index_and_label() {
        let mut labels = std::collections::HashSet::new();
        for (i, kind) in CONNECT_FAILURES.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind}");
            assert!(labels.insert(kind.label()), "{kind} shares its label");
        }
    }

    #[test]
    fn a_rustls_error_inside_an_io_error_is_read() {
        let unknown = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(
            TlsFailure::of_handshake(&unknown),
            TlsFailure::UnknownIssuer
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(TlsFailure::of_handshake(&reset), TlsFailure::Other);
        assert_eq!(
            ConnectFailure::of_io(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            ConnectFailure::Refused
        );
    }
}
