//! Choosing primary or canary for one request (docs/routing.md#2-version).

use super::fields::RequestFields;
use super::matching::{cookie_value, rule_matches};
use super::sticky::sticky_bucket;
use super::{CanaryShare, Route};
use crate::config::{StickyKey, Version};

/// A uniformly random bucket in 0..10000, drawn only when the weight decides.
pub trait Bucket {
    /// Draw one bucket.
    fn draw(&mut self) -> u16;
}

impl<F: FnMut() -> u16> Bucket for F {
    fn draw(&mut self) -> u16 {
        self()
    }
}

/// The version a request goes to; the first rule that applies wins. `headers` are hyper's
/// `HeaderMap` or the fast path's flat fields: one decision either way.
pub fn choose_version<F: RequestFields + ?Sized>(
    route: &Route,
    headers: &F,
    random: &mut impl Bucket,
) -> Version {
    if route.canary.is_none() {
        return Version::Primary;
    }
    let rollout = route.rollout;
    let traffic = rollout.phase.traffic();
    if traffic.match_rules_apply {
        if let Some(rule) = route.matches.iter().find(|r| rule_matches(r, headers)) {
            return rule.to;
        }
    }
    match traffic.share {
        CanaryShare::Nothing => return Version::Primary,
        CanaryShare::Everything => return Version::Canary,
        CanaryShare::Weighted => {}
    }
    let threshold = u16::from(rollout.weight) * 100;
    if threshold == 0 {
        return Version::Primary;
    }
    let bucket = match sticky_key(route, headers) {
        Some(key) => sticky_bucket(key),
        None => random.draw(),
    };
    if bucket < threshold {
        Version::Canary
    } else {
        Version::Primary
    }
}

fn sticky_key<'h, F: RequestFields + ?Sized>(route: &'h Route, headers: &'h F) -> Option<&'h [u8]> {
    match route.sticky.as_ref()? {
        StickyKey::Cookie(name) => cookie_value(headers, name).map(str::as_bytes),
        StickyKey::Header(name) => headers.first_of(name),
    }
}
