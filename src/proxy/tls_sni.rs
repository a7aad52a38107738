//! Choosing the certificate of a TLS handshake from the server name the client sent (SNI):
//! the rustls [`ResolvesServerCert`] behind `[proxy.tls]` and `[[proxy.tls.sni]]`.
//!
//! Order: an exact name (case-insensitive), then a `*.` wildcard covering exactly one more
//! label (`*.example.com` matches `a.example.com`, not `a.b.example.com` nor `example.com`,
//! as a wildcard certificate does), else the default certificate — also for a client that
//! sends no server name, such as one connecting by IP address. The resolver is immutable; a
//! reload builds a new one inside a new `ServerConfig`, so the whole set is swapped at once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::HostPattern;

/// The certificates of one configuration, indexed by the names they are served for.
#[derive(Debug)]
pub struct SniResolver {
    /// Exact names, lower-cased.
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.example.com` entries, keyed by their suffix `.example.com`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `[proxy.tls]` `cert`/`key`: no server name, or no entry matches it.
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// A resolver serving `default` to every client until names are added.
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        SniResolver {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        }
    }

    /// Serve `key` for `hosts` (lower-cased patterns, as validation produces them). A name
    /// already added keeps its first certificate; validation rejects such duplicates anyway.
    pub fn add(&mut self, hosts: &[HostPattern], key: &Arc<CertifiedKey>) {
        for host in hosts {
            let (map, name) = match host {
                HostPattern::Exact(name) => (&mut self.exact, name),
                HostPattern::Wildcard(suffix) => (&mut self.wildcard, suffix),
            };
            map.entry(name.as_str().into())
                .or_insert_with(|| Arc::clone(key));
        }
    }

    /// The certificate for a client that sent `server_name` (`None`: no SNI).
    pub fn choose(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name.map(normalize) else {
            return &self.default;
        };
        if let Some(key) = self.exact.get(&*name) {
            return key;
        }
        // "*.example.com" covers one label before ".example.com", never an empty one.
        if let Some(dot) = name.find('.').filter(|&dot| dot > 0) {
            if let Some(key) = self.wildcard.get(&name[dot..]) {
                return key;
            }
        }
        &self.default
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.choose(client_hello.server_name())))
    }
}

/// Lower-case (rustls already does, but never rely on it) and drop one trailing dot; borrows
/// in the common case of a name that needs neither.
fn normalize(name: &str) -> Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A throwaway certified key; the tests compare them by pointer.
    fn key() -> Arc<CertifiedKey> {
        let generated = rcgen::generate_simple_self_signed(vec!["x.test".to_owned()]).unwrap();
        let der =
            rustls::pki_types::PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let signing = provider.key_provider.load_private_key(der.into()).unwrap();
        Arc::new(CertifiedKey::new(
            vec![generated.cert.der().clone()],
            signing,
        ))
    }

    fn exact(name: &str) -> HostPattern {
        HostPattern::Exact(name.into())
    }

    fn wildcard(suffix: &str) -> HostPattern {
        HostPattern::Wildcard(suffix.into())
    }

    #[test]
    fn exact_then_one_label_wildcard_then_default() {
        let (default, a, w, deep) = (key(), key(), key(), key());
        let mut resolver = SniResolver::new(default.clone());
        resolver.add(&[exact("a.test"), exact("api.wild.test")], &a);
        resolver.add(&[wildcard(".wild.test")], &w);
        resolver.add(&[wildcard(".deep.wild.test")], &deep);
        let chosen = |name: Option<&str>| Arc::clone(resolver.choose(name));

        assert!(Arc::ptr_eq(&chosen(Some("a.test")), &a));
        assert!(Arc::ptr_eq(&chosen(Some("A.Test")), &a));
        assert!(Arc::ptr_eq(&chosen(Some("a.test.")), &a));
        // An exact name beats a wildcard that also covers it.
        assert!(Arc::ptr_eq(&chosen(Some("api.wild.test")), &a));
        assert!(Arc::ptr_eq(&chosen(Some("x.wild.test")), &w));
        assert!(Arc::ptr_eq(&chosen(Some("X.WILD.test")), &w));
        assert!(Arc::ptr_eq(&chosen(Some("x.deep.wild.test")), &deep));
        // One label only: neither the bare suffix nor two labels match.
        assert!(Arc::ptr_eq(&chosen(Some("wild.test")), &default));
        assert!(Arc::ptr_eq(&chosen(Some("x.y.wild.test")), &default));
        assert!(Arc::ptr_eq(&chosen(Some(".wild.test")), &default));
        assert!(Arc::ptr_eq(&chosen(Some("b.test")), &default));
        assert!(Arc::ptr_eq(&chosen(None), &default));
    }

    #[test]
    fn a_name_added_twice_keeps_its_first_certificate() {
        let (default, first, second) = (key(), key(), key());
        let mut resolver = SniResolver::new(default);
        resolver.add(&[exact("a.test")], &first);
        resolver.add(&[exact("a.test")], &second);
        assert!(Arc::ptr_eq(resolver.choose(Some("a.test")), &first));
    }
}
