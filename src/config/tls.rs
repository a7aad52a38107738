//! The rules for `[proxy.tls]` and its `[[proxy.tls.sni]]` entries: listen addresses, the
//! certificate and key files (readable, holding PEM blocks of the right kind), and the SNI host
//! names (valid, no IP literal, none listed twice).
//!
//! `[[proxy.tls.sni]]` is an extension (docs/tls.md#several-certificates-sni) of the single `cert`/`key`
//! pair: that pair stays the default certificate, served when no entry matches the client's
//! server name. That a key belongs to its certificate is checked later, when rustls loads the
//! pairs (`proxy::load_server_config`); the tables' offsets are kept so that error is
//! positioned too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use toml::Spanned;

use super::error::Issue;
use super::raw::{RawSni, RawTls};
use super::routes::host_pattern;
use super::types::{HostPattern, SniCertConfig, TlsConfig};
use super::validate::{listen_list, resolve, span_or, Checked, Files};

/// `[proxy.tls]` with its SNI entries.
pub(crate) fn tls_config(raw: &Spanned<RawTls>, files: Files<'_>) -> Checked<TlsConfig> {
    let tls = raw.get_ref();
    let base = files.base;
    let listen = listen_list(&tls.listen, "proxy.tls.listen")?;
    let cert = resolve(base, tls.cert.get_ref());
    let key = resolve(base, tls.key.get_ref());
    if files.read {
        pem_pair(&tls.cert, &cert, &tls.key, &key)?;
    }

    // Which entry claimed each host first, to reject the same name in two entries.
    let mut claimed: HashMap<HostPattern, usize> = HashMap::new();
    let mut sni = Vec::with_capacity(tls.sni.len());
    for (index, entry) in tls.sni.iter().enumerate() {
        sni.push(sni_entry(entry, index, files, &mut claimed)?);
    }
    Ok(TlsConfig {
        listen,
        cert,
        key,
        sni,
        offset: raw.span().start,
    })
}

/// One `[[proxy.tls.sni]]` entry; `index` is 0-based, messages count from 1.
fn sni_entry(
    raw: &Spanned<RawSni>,
    index: usize,
    files: Files<'_>,
    claimed: &mut HashMap<HostPattern, usize>,
) -> Checked<SniCertConfig> {
    let entry = raw.get_ref();
    if entry.hosts.get_ref().is_empty() {
        return Err(Issue::new(
            span_or(entry.hosts.span(), raw.span()),
            "`[[proxy.tls.sni]]` `hosts` must list at least one name such as \"api.example.com\" or \"*.example.com\" (the default certificate is `[proxy.tls]` `cert`/`key`)",
        ));
    }
    let mut hosts = Vec::with_capacity(entry.hosts.get_ref().len());
    for value in entry.hosts.get_ref() {
        let host = sni_host(value)?;
        if let Some(&first) = claimed.get(&host) {
            let message = if first == index {
                format!(
                    "`hosts` entry {:?} is listed twice in this `[[proxy.tls.sni]]` entry",
                    value.get_ref()
                )
            } else {
                format!(
                    "`hosts` entry {:?} is already listed in `[[proxy.tls.sni]]` entry {}; a name can pick only one certificate",
                    value.get_ref(),
                    first + 1
                )
            };
            return Err(Issue::new(value.span(), message));
        }
        claimed.insert(host.clone(), index);
        hosts.push(host);
    }
    let cert = resolve(files.base, entry.cert.get_ref());
    let key = resolve(files.base, entry.key.get_ref());
    if files.read {
        pem_pair(&entry.cert, &cert, &entry.key, &key)?;
    }
    Ok(SniCertConfig {
        hosts,
        cert,
        key,
        offset: raw.span().start,
    })
}

/// A server name as a route `hosts` entry is checked (exact or a leading `*.`), except that an
/// IP address is refused: SNI never carries one (RFC 6066), so it could never match.
fn sni_host(value: &Spanned<String>) -> Checked<HostPattern> {
    if value.get_ref().is_empty() {
        return Err(Issue::new(
            value.span(),
            "`hosts` entry \"\" is empty; write a name such as \"api.example.com\" or \"*.example.com\"",
        ));
    }
    if value.get_ref().parse::<IpAddr>().is_ok() {
        return Err(Issue::new(
            value.span(),
            format!(
                "`hosts` entry {:?} is an IP address; clients send no SNI when connecting by IP, so they always get the default certificate (`[proxy.tls]` `cert`/`key`)",
                value.get_ref()
            ),
        ));
    }
    host_pattern(value)
}

/// Both files of a pair are readable and hold a PEM block of the right kind. Only the framing
/// is checked here; that the key belongs to the certificate is checked when rustls loads them.
fn pem_pair(
    cert_value: &Spanned<String>,
    cert: &Path,
    key_value: &Spanned<String>,
    key: &Path,
) -> Checked<()> {
    pem_file(cert_value, cert, "certificate", |line| {
        line == "-----BEGIN CERTIFICATE-----"
    })?;
    pem_file(key_value, key, "private key", |line| {
        line.starts_with("-----BEGIN ") && line.ends_with("PRIVATE KEY-----")
    })
}

/// Reads a PEM file and checks it has a block whose BEGIN line satisfies `is_begin`.
fn pem_file(
    value: &Spanned<String>,
    path: &Path,
    what: &str,
    is_begin: impl Fn(&str) -> bool,
) -> Checked<()> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Issue::new(
            value.span(),
            format!("cannot read TLS {what} {}: {e}", path.display()),
        )
    })?;
    if text.lines().any(|l| is_begin(l.trim())) {
        Ok(())
    } else {
        Err(Issue::new(
            value.span(),
            format!(
                "TLS {what} {} holds no PEM {} block",
                path.display(),
                if what == "certificate" {
                    "CERTIFICATE"
                } else {
                    "PRIVATE KEY"
                }
            ),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sp(v: &str) -> Spanned<String> {
        Spanned::new(3..5, v.to_owned())
    }

    #[test]
    fn sni_hosts_are_names_or_wildcards_never_ips() {
        assert_eq!(
            sni_host(&sp("API.example.com")).unwrap(),
            HostPattern::Exact("api.example.com".into())
        );
        assert_eq!(
            sni_host(&sp("*.example.com")).unwrap(),
            HostPattern::Wildcard(".example.com".into())
        );
        let issue = sni_host(&sp("10.0.0.1")).unwrap_err();
        assert!(issue.message.contains("IP address"), "{}", issue.message);
        assert_eq!(issue.span, 3..5);
        assert!(sni_host(&sp("::1")).is_err());
        assert!(sni_host(&sp("")).unwrap_err().message.contains("empty"));
        assert!(sni_host(&sp("a.*.test")).is_err());
    }
}
