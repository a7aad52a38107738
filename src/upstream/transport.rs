//! How one endpoint is reached: the protocol and, for TLS, the connector and the name
//! verified. Built once when the control task first meets an (address, transport) pair, so
//! every request finds it ready.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::tls::{client_config, server_name};
use crate::config::{UpstreamProtocol, UpstreamTransport};

/// The protocol and TLS settings of one endpoint's connections.
#[derive(Debug, Clone)]
pub struct Transport {
    protocol: UpstreamProtocol,
    tls: Option<TlsTarget>,
}

/// TLS towards an endpoint, or why it cannot be set up (every connect then fails with it).
#[derive(Clone)]
pub(super) enum TlsTarget {
    Ready {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
    Broken(Arc<str>),
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsTarget::Ready { server_name, .. } => write!(f, "TLS to {server_name:?}"),
            TlsTarget::Broken(reason) => write!(f, "TLS broken: {reason}"),
        }
    }
}

impl Default for Transport {
    /// Cleartext HTTP/1.1.
    fn default() -> Self {
        Transport {
            protocol: UpstreamProtocol::Http1,
            tls: None,
        }
    }
}

impl Transport {
    /// The transport of `config` towards an endpoint written as `host` (the default server
    /// name).
    pub fn new(config: &UpstreamTransport, host: &str) -> Self {
        let tls = config.tls.as_ref().map(|tls| {
            let config = client_config(tls, config.protocol);
            let name = server_name(tls, host);
            match (config, name) {
                (Ok(config), Ok(server_name)) => TlsTarget::Ready {
                    connector: TlsConnector::from(config),
                    server_name,
                },
                (Err(e), _) => TlsTarget::Broken(e.to_string().into()),
                (_, Err(e)) => TlsTarget::Broken(e.to_string().into()),
            }
        });
        Transport {
            protocol: config.protocol,
            tls,
        }
    }

    /// The configured protocol.
    pub fn protocol(&self) -> UpstreamProtocol {
        self.protocol
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub(super) fn tls(&self) -> Option<&TlsTarget> {
        self.tls.as_ref()
    }
}
