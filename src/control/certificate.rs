//! Loading a config file together with the TLS certificate it names, so `canaryd check`, a
//! reload and the start of `run` all judge a certificate/key pair the same way: a key that does
//! not belong to its certificate is a config error with a position, not a surprise at accept.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;

use crate::config::{load_file, Config, ConfigError};
use crate::proxy::load_server_config;

/// Reads and validates `path`; if it has `[proxy.tls]` and `with_certificate` is set, also
/// builds the TLS configuration from the named pair (rustls checks the key against the
/// certificate). A pair that does not load is reported at the `[proxy.tls]` table.
pub fn load_with_certificate(
    path: &Path,
    with_certificate: bool,
) -> Result<(Config, Option<Arc<ServerConfig>>), ConfigError> {
    let config = load_file(path)?;
    let tls = match (&config.proxy.tls, with_certificate) {
        (Some(tls), true) => Some(load_server_config(tls).map_err(|e| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let offset = text.find("[proxy.tls]").unwrap_or(0);
            ConfigError::at(path, &text, offset, e.to_string())
        })?),
        _ => None,
    };
    Ok((config, tls))
}
