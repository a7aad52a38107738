//! `[fleet]`: replicas that share their rollouts through etcd (see `docs/fleet.md`). Parsed and
//! validated in every build, so `canaryd check` answers the same with or without the `fleet`
//! feature; only running a fleet needs the feature.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::Issue;
use super::validate::{duration, resolve, Checked};

/// The shortest lease: below this a replica's keep-alives compete with ordinary GC pauses and
/// leadership would flap.
const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// The longest lease: a dead leader would hold every rollout this long.
const MAX_LEASE_TTL: Duration = Duration::from_secs(300);

/// `[fleet]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    pub name: Spanned<String>,
    pub etcd: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub replica: Option<Spanned<String>>,
    #[serde(default)]
    pub lease_ttl: Option<Spanned<String>>,
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub tls: Option<Spanned<RawFleetTls>>,
    #[serde(default)]
    pub username: Option<Spanned<String>>,
    #[serde(default)]
    pub password_file: Option<Spanned<String>>,
}

/// `tls = { ca, cert, key }` of `[fleet]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleetTls {
    #[serde(default)]
    pub ca: Option<Spanned<String>>,
    #[serde(default)]
    pub cert: Option<Spanned<String>>,
    #[serde(default)]
    pub key: Option<Spanned<String>>,
}

/// `[fleet]`: this replica's fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// Replicas with the same name share every analysed route.
    pub name: String,
    /// Endpoints of one etcd cluster, e.g. `http://10.0.0.5:2379`.
    pub etcd: Vec<String>,
    /// This replica's id: unique within the fleet.
    pub replica: String,
    /// Leadership and membership lapse this long after a replica stops.
    pub lease_ttl: Duration,
    /// Key prefix; the fleet's keys live under `{prefix}/{name}/`.
    pub prefix: String,
    /// etcd client TLS.
    pub tls: Option<FleetTls>,
    /// etcd user name and the file holding its password.
    pub auth: Option<(String, std::path::PathBuf)>,
}

/// etcd client TLS files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetTls {
    /// CA bundle that signed etcd's server certificate.
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate and key, for etcd's client-certificate auth.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Validate `[fleet]`; relative file names are resolved against `base`.
pub(crate) fn fleet_config(raw: &Spanned<RawFleet>, base: &Path) -> Checked<FleetConfig> {
    let raw = raw.get_ref();
    let name = raw.name.get_ref().trim();
    if name.is_empty() || name.contains('/') {
        return Err(Issue::new(
            raw.name.span(),
            "`fleet.name` must be a non-empty name without '/' (e.g. \"shop-edge\")",
        ));
    }
    if raw.etcd.get_ref().is_empty() {
        return Err(Issue::new(
            raw.etcd.span(),
            "`fleet.etcd` needs at least one endpoint, e.g. [\"http://127.0.0.1:2379\"]",
        ));
    }
    let mut etcd = Vec::new();
    for endpoint in raw.etcd.get_ref() {
        let text = endpoint.get_ref().trim();
        let valid = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
        if !valid {
            return Err(Issue::new(
                endpoint.span(),
                format!(
                    "`fleet.etcd` entry {text:?} is not an etcd endpoint; write \"http://HOST:PORT\" or \"https://HOST:PORT\""
                ),
            ));
        }
        etcd.push(text.to_owned());
    }
    let replica = match &raw.replica {
        Some(r) => {
            let id = r.get_ref().trim();
            if id.is_empty() || id.contains('/') {
                return Err(Issue::new(
                    r.span(),
                    "`fleet.replica` must be a non-empty id without '/'",
                ));
            }
            id.to_owned()
        }
        None => default_replica(),
    };
    let lease_ttl = match &raw.lease_ttl {
        Some(value) => {
            let ttl = duration(value, "fleet.lease_ttl")?;
            if ttl < MIN_LEASE_TTL || ttl > MAX_LEASE_TTL || ttl.subsec_nanos() != 0 {
                return Err(Issue::new(
                    value.span(),
                    format!(
                        "`fleet.lease_ttl` = {:?} must be whole seconds from 2s to 5m (etcd leases count in seconds)",
                        value.get_ref()
                    ),
                ));
            }
            ttl
        }
        None => Duration::from_secs(10),
    };
    let prefix = match &raw.prefix {
        Some(p) => {
            let text = p.get_ref().trim_end_matches('/');
            if !text.starts_with('/') {
                return Err(Issue::new(
                    p.span(),
                    "`fleet.prefix` must start with '/' (e.g. \"/canaryd\")",
                ));
            }
            text.to_owned()
        }
        None => "/canaryd".to_owned(),
    };
    let tls = match &raw.tls {
        None => None,
        Some(tls) => {
            let t = tls.get_ref();
            let path = |v: &Option<Spanned<String>>| v.as_ref().map(|v| resolve(base, v.get_ref()));
            let identity = match (path(&t.cert), path(&t.key)) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(Issue::new(
                        tls.span(),
                        "`fleet.tls` needs both `cert` and `key` (or neither)",
                    ))
                }
            };
            Some(FleetTls {
                ca: path(&t.ca),
                identity,
            })
        }
    };
    let auth = match (&raw.username, &raw.password_file) {
        (Some(user), Some(file)) => Some((user.get_ref().clone(), resolve(base, file.get_ref()))),
        (None, None) => None,
        (Some(user), None) => {
            return Err(Issue::new(
                user.span(),
                "`fleet.username` needs `fleet.password_file`",
            ))
        }
        (None, Some(file)) => {
            return Err(Issue::new(
                file.span(),
                "`fleet.password_file` needs `fleet.username`",
            ))
        }
    };
    Ok(FleetConfig {
        name: name.to_owned(),
        etcd,
        replica,
        lease_ttl,
        prefix,
        tls,
        auth,
    })
}

/// The host name, else `pid-N`: unique enough across pods and hosts without configuration.
fn default_replica() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty() && !h.contains('/'))
        })
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;
    use std::path::Path;

    fn parse(fleet: &str) -> Result<crate::config::Config, String> {
        parse_str(&format!("[fleet]\n{fleet}"), Path::new("/x/c.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_the_documented_table() {
        let config = parse(
            "name = \"shop-edge\"\netcd = [\"http://10.0.0.5:2379\"]\nreplica = \"edge-a\"\nlease_ttl = \"10s\"\n",
        )
        .unwrap();
        let fleet = config.fleet.unwrap();
        assert_eq!(fleet.name, "shop-edge");
        assert_eq!(fleet.replica, "edge-a");
        assert_eq!(fleet.lease_ttl, std::time::Duration::from_secs(10));
        assert_eq!(fleet.prefix, "/canaryd");
        assert!(parse_str("", Path::new("c.toml")).unwrap().fleet.is_none());
    }

    #[test]
    fn rejects_bad_values_with_their_position() {
        let err = parse("name = \"a\"\netcd = []\n").unwrap_err();
        assert!(
            err.starts_with("/x/c.toml:3:8: `fleet.etcd` needs"),
            "{err}"
        );
        let err = parse("name = \"a\"\netcd = [\"h:1\"]\nlease_ttl = \"500ms\"\n").unwrap_err();
        assert!(
            err.starts_with("/x/c.toml:3:9: `fleet.etcd` entry"),
            "{err}"
        );
        let err =
            parse("name = \"a\"\netcd = [\"http://h:1\"]\nlease_ttl = \"500ms\"\n").unwrap_err();
        assert!(
            err.starts_with("/x/c.toml:4:13: `fleet.lease_ttl`"),
            "{err}"
        );
        let err = parse("name = \"a\"\netcd = [\"http://h:1\"]\nleader = \"x\"\n").unwrap_err();
        assert!(err.contains("unknown field `leader`"), "{err}");
        assert!(err.starts_with("/x/c.toml:4:1"), "{err}");
        let err = parse("name = \"a\"\netcd = [\"http://h:1\"]\nusername = \"u\"\n").unwrap_err();
        assert!(err.contains("password_file"), "{err}");
    }
}
