//! Mistakes a valid config can still hold: `canaryd check` prints them (and fails on them with
//! `--strict`), `canaryd run` logs them at start (docs/operations.md#cli).

use std::net::ToSocketAddrs;

use crate::config::Config;

/// An admin API reachable from other hosts with no token (the message alone; `check` prefixes
/// the file): anyone who reaches it can promote,
/// abort or roll back (docs/security.md#admin-api).
pub(super) fn open_admin(config: &Config) -> Option<String> {
    let admin = &config.admin;
    (!admin.listen.ip().is_loopback() && admin.token_file.is_none()).then(|| {
        format!(
            "admin.listen {} is not a loopback address and [admin] has no token_file: \
             anyone who can reach it can promote, abort or pause a rollout; set admin.token_file",
            admin.listen
        )
    })
}

/// Endpoint names that do not resolve now (the proxy would answer their requests 502).
/// Looks the names up, so it blocks: for `check` only; `run` warns from its resolver.
pub(super) fn unresolved_endpoints(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for route in &config.routes {
        let versions = std::iter::once(("primary", &route.primary))
            .chain(route.canary.as_ref().map(|c| ("canary", &c.version)));
        for (version, endpoints) in versions {
            for endpoint in &endpoints.endpoints {
                if endpoint.host.parse::<std::net::IpAddr>().is_ok() {
                    continue;
                }
                let looked_up = (endpoint.host.as_str(), endpoint.port).to_socket_addrs();
                let why = match looked_up {
                    Ok(mut addrs) => match addrs.next() {
                        Some(_) => continue,
                        None => "no addresses".to_owned(),
                    },
                    Err(e) => e.to_string(),
                };
                warnings.push(format!(
                    "{}:{}: warning: route {}, {version} endpoint {endpoint} does not resolve ({why}); \
                     its requests get 502 until it does",
                    config.source.display(),
                    endpoints.endpoints_line,
                    route.name,
                ));
            }
        }
    }
    warnings
}
