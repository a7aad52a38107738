//! The endpoints of one version and how one of them is picked (`p2c` or `round-robin`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

use crate::config::LoadBalancing;
use crate::upstream::Endpoint;

/// The endpoints behind one version of one route.
#[derive(Debug)]
pub struct Backend {
    /// The revision these endpoints run.
    pub revision: Arc<str>,
    endpoints: Vec<Arc<Endpoint>>,
    load_balancing: LoadBalancing,
    next: AtomicUsize,
}

/// The endpoints one request has already tried, so a retry goes elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct EndpointPick {
    tried: u64,
}

impl EndpointPick {
    fn is_tried(self, index: usize) -> bool {
        index < 64 && self.tried & (1 << index) != 0
    }

    fn mark(&mut self, index: usize) {
        if index < 64 {
            self.tried |= 1 << index;
        }
    }
}

impl Backend {
    /// A backend over these endpoints.
    pub fn new(revision: Arc<str>, endpoints: Vec<Arc<Endpoint>>, lb: LoadBalancing) -> Self {
        Backend {
            revision,
            endpoints,
            load_balancing: lb,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoints, in config order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Pick an endpoint not yet tried by this request; `None` when every one has been tried.
    /// Ejected endpoints are skipped, unless every untried endpoint is ejected: a backend never
    /// ejects itself empty (like Envoy's panic threshold).
    pub fn pick(&self, pick: &mut EndpointPick) -> Option<&Arc<Endpoint>> {
        let index = self
            .choose(*pick, true)
            .or_else(|| self.choose(*pick, false))?;
        pick.mark(index);
        self.endpoints.get(index)
    }

    fn choose(&self, pick: EndpointPick, healthy_only: bool) -> Option<usize> {
        let usable = |i: usize| {
            if pick.is_tried(i) {
                return false;
            }
            !healthy_only || !self.endpoints[i].health().is_ejected()
        };
        match self.endpoints.len() {
            0 => None,
            1 => usable(0).then_some(0),
            _ => match self.load_balancing {
                LoadBalancing::RoundRobin => self.round_robin(usable),
                LoadBalancing::P2c => self.power_of_two(usable),
            },
        }
    }

    fn round_robin(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| (start + i) % n).find(|&i| usable(i))
    }

    fn power_of_two(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.endpoints.len();
        let mut rng = rand::rng();
        let a = rng.random_range(0..n);
        let b = (a + rng.random_range(1..n)) % n;
        let best = [a, b]
            .into_iter()
            .filter(|&i| usable(i))
            .min_by_key(|&i| self.endpoints[i].in_flight());
        // Both random choices unusable (tried or ejected): fall back to the first usable one.
        best.or_else(|| (0..n).find(|&i| usable(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Endpoint;

    fn backend(n: usize, lb: LoadBalancing) -> Backend {
        let eps = (0..n)
            .map(|i| Arc::new(Endpoint::new(([127, 0, 0, 1], 1000 + i as u16).into())))
            .collect();
        Backend::new("v1".into(), eps, lb)
    }

    #[test]
    fn round_robin_rotates_and_retries_skip_tried() {
        let b = backend(3, LoadBalancing::RoundRobin);
        let ports: Vec<u16> = (0..6)
            .map(|_| b.pick(&mut EndpointPick::default()).unwrap().addr().port())
            .collect();
        assert_eq!(ports, [1000, 1001, 1002, 1000, 1001, 1002]);
        let mut pick = EndpointPick::default();
        let mut seen: Vec<u16> = (0..3)
            .map(|_| b.pick(&mut pick).unwrap().addr().port())
            .collect();
        seen.sort();
        assert_eq!(seen, [1000, 1001, 1002]);
        assert!(b.pick(&mut pick).is_none());
    }

    #[test]
    fn ejected_endpoints_are_skipped_but_never_all_of_them() {
        let policy = crate::config::EjectionConfig::default();
        for lb in [LoadBalancing::RoundRobin, LoadBalancing::P2c] {
            let b = backend(2, lb);
            for _ in 0..policy.failures {
                b.endpoints()[0].health().record_failure(&policy);
            }
            for _ in 0..50 {
                let picked = b.pick(&mut EndpointPick::default()).unwrap();
                assert_eq!(
                    picked.addr().port(),
                    1001,
                    "{lb:?} picked an ejected endpoint"
                );
            }
            // The other one ejected too: rather than no endpoint, both are used again.
            for _ in 0..policy.failures {
                b.endpoints()[1].health().record_failure(&policy);
            }
            assert!(b.pick(&mut EndpointPick::default()).is_some());
            // A retry after the healthy one failed may still go to the ejected one.
            let b = backend(2, lb);
            for _ in 0..policy.failures {
                b.endpoints()[0].health().record_failure(&policy);
            }
            let mut pick = EndpointPick::default();
            assert_eq!(b.pick(&mut pick).unwrap().addr().port(), 1001);
            assert_eq!(b.pick(&mut pick).unwrap().addr().port(), 1000);
            assert!(b.pick(&mut pick).is_none());
        }
    }

    #[test]
    fn p2c_prefers_the_less_loaded_endpoint() {
        let b = backend(2, LoadBalancing::P2c);
        let busy = b.endpoints()[0].clone();
        let _guards: Vec<_> = (0..5).map(|_| busy.begin_request()).collect();
        for _ in 0..100 {
            let picked = b.pick(&mut EndpointPick::default()).unwrap();
            assert_eq!(picked.addr().port(), 1001);
        }
    }
}
