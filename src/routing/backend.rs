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
    pub fn pick(&self, pick: &mut EndpointPick) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        let index = match n {
            0 => return None,
            1 if pick.is_tried(0) => return None,
            1 => 0,
            _ => match self.load_balancing {
                LoadBalancing::RoundRobin => self.round_robin(*pick)?,
                LoadBalancing::P2c => self.power_of_two(*pick)?,
            },
        };
        pick.mark(index);
        self.endpoints.get(index)
    }

    fn round_robin(&self, pick: EndpointPick) -> Option<usize> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| (start + i) % n).find(|&i| !pick.is_tried(i))
    }

    fn power_of_two(&self, pick: EndpointPick) -> Option<usize> {
        let n = self.endpoints.len();
        let mut rng = rand::rng();
        let a = rng.random_range(0..n);
        let b = (a + rng.random_range(1..n)) % n;
        let candidates = [a, b].into_iter().filter(|&i| !pick.is_tried(i));
        let best = candidates.min_by_key(|&i| self.endpoints[i].in_flight());
        // Both random choices already tried (only on retries): fall back to the first untried.
        best.or_else(|| (0..n).find(|&i| !pick.is_tried(i)))
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
