//! The etcd connection: endpoints, timeouts, TLS and auth from `[fleet]`. The channel connects
//! lazily, so a replica starts (and serves its cached weights) while etcd is unreachable.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use super::handle::FleetError;
use crate::config::FleetConfig;

/// Every etcd call is bounded by this: a stuck call must not freeze a route task or hide an
/// outage from `canaryd_fleet_etcd_up`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Connect to the fleet's etcd cluster.
pub async fn connect(config: &FleetConfig) -> Result<Client, FleetError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(CALL_TIMEOUT)
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
        .with_keep_alive_while_idle(true);
    if let Some(tls) = &config.tls {
        let mut tls_options = TlsOptions::new();
        if let Some(ca) = &tls.ca {
            let pem = std::fs::read(ca).map_err(|source| FleetError::File {
                path: ca.clone(),
                source,
            })?;
            tls_options = tls_options.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some((cert, key)) = &tls.identity {
            let cert_pem = std::fs::read(cert).map_err(|source| FleetError::File {
                path: cert.clone(),
                source,
            })?;
            let key_pem = std::fs::read(key).map_err(|source| FleetError::File {
                path: key.clone(),
                source,
            })?;
            tls_options = tls_options.identity(Identity::from_pem(cert_pem, key_pem));
        }
        options = options.with_tls(tls_options);
    }
    if let Some((user, password_file)) = &config.auth {
        let password =
            std::fs::read_to_string(password_file).map_err(|source| FleetError::File {
                path: password_file.clone(),
                source,
            })?;
        // etcd's tokens expire (JWT `ttl`, simple tokens after `--auth-token-ttl` idle) and die
        // with the member that issued them: log in again on "invalid auth token" instead of
        // failing every call from then on.
        options = options
            .with_user(user.clone(), password.trim_end().to_owned())
            .with_auto_token_refresh(true);
    }
    let connect = Client::connect(config.etcd.clone(), Some(options));
    match tokio::time::timeout(CALL_TIMEOUT * 2, connect).await {
        Ok(result) => result.map_err(FleetError::etcd),
        Err(_) => Err(FleetError::Timeout),
    }
}
