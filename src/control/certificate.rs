//! Loading a config file together with the TLS certificates it names, so `canaryd check`, a
//! reload and the start of `run` all judge certificate/key pairs the same way: a key that does
//! not belong to its certificate is a config error with a position, not a surprise at accept.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;

use crate::config::{parse_str, Config, ConfigError};
use crate::proxy::load_server_config;

/// Reads and validates `path`; if it has `[proxy.tls]` and `with_certificate` is set, also
/// builds the TLS configuration from every named pair (rustls checks each key against its
/// certificate). A pair that does not load is reported at its table: `[proxy.tls]` for the
/// default pair, the `[[proxy.tls.sni]]` header of an SNI entry.
pub fn load_with_certificate(
    path: &Path,
    with_certificate: bool,
) -> Result<(Config, Option<Arc<ServerConfig>>), ConfigError> {
    // Read once: the positions below must refer to the text that was validated.
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    let config = parse_str(&text, path)?;
    let tls = match (&config.proxy.tls, with_certificate) {
        (Some(tls), true) => Some(load_server_config(tls).map_err(|e| {
            let offset = e
                .sni_entry()
                .and_then(|index| tls.sni.get(index))
                .map_or(tls.offset, |entry| entry.offset);
            ConfigError::at(path, &text, offset, e.to_string())
        })?),
        _ => None,
    };
    Ok((config, tls))
}
