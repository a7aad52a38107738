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
    let credentials = match &config.auth {
        None => None,
        Some((user, password_file)) => {
            let password =
                std::fs::read_to_string(password_file).map_err(|source| FleetError::File {
                    path: password_file.clone(),
                    source,
                })?;
            Some((user.clone(), password.trim_end().to_owned()))
        }
    };
    // etcd's tokens expire (JWT `ttl`, simple tokens after `--auth-token-ttl` idle) and die
    // with the member that issued them: log in again on "invalid auth token" instead of
    // failing every call from then on.
    options = options.with_auto_token_refresh(true);
    // Connecting with a user would log in at once and fail while etcd is unreachable; connect
    // without one (lazily) and log in here, so a replica still starts on its state file.
    let connect = Client::connect(config.etcd.clone(), Some(options));
    let client = match tokio::time::timeout(CALL_TIMEOUT * 2, connect).await {
        Ok(result) => result.map_err(FleetError::etcd)?,
        Err(_) => return Err(FleetError::Timeout),
    };
    if let Some(credentials) = credentials {
        log_in(&client, credentials).await?;
    }
    Ok(client)
}

/// Log in as the configured user. A login etcd refuses (wrong password, unknown user, auth
/// not enabled) stops the start; while etcd cannot be reached the login is retried every
/// second in the background, and calls fail (etcd "down") until it succeeds.
async fn log_in(client: &Client, credentials: (String, String)) -> Result<(), FleetError> {
    let mut login = client.clone();
    match tokio::time::timeout(CALL_TIMEOUT, login.update_user(Some(credentials.clone()))).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) if refused(&e) => return Err(FleetError::etcd(e)),
        Ok(Err(e)) => tracing::warn!("cannot log in to etcd yet: {}", FleetError::etcd(e)),
        Err(_) => tracing::warn!("cannot log in to etcd yet: {}", FleetError::Timeout),
    }
    tokio::spawn(async move {
        let mut logged = None;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let attempt = login.update_user(Some(credentials.clone()));
            match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
                Ok(Ok(())) => {
                    tracing::info!("logged in to etcd");
                    return;
                }
                Ok(Err(e)) if refused(&e) => {
                    let reason = FleetError::etcd(e).to_string();
                    if logged.as_ref() != Some(&reason) {
                        tracing::error!("etcd refuses the login: {reason}");
                        logged = Some(reason);
                    }
                }
                _ => {}
            }
        }
    });
    Ok(())
}

/// Whether etcd answered the login with a refusal rather than not answering: gRPC status
/// codes INVALID_ARGUMENT (3), PERMISSION_DENIED (7), FAILED_PRECONDITION (9) and
/// UNAUTHENTICATED (16), numbered by the gRPC spec (tonic is not a dependency here).
fn refused(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            matches!(i32::from(status.code()), 3 | 7 | 9 | 16)
        }
        _ => false,
    }
}
