//! Failed connects of one version by kind, in a check window: what lets a rollback or a failed
//! check say *why* the canary's connections failed (docs/operations.md#why-a-canary-was-rolled-back).

use std::fmt;

use crate::upstream::{ConnectFailure, CONNECT_FAILURES};

/// Failed connects by [`ConnectFailure`], counted with the window's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectCounts([u64; CONNECT_FAILURES.len()]);

impl ConnectCounts {
    /// Count one failed connect.
    pub fn add(&mut self, failure: ConnectFailure) {
        let count = &mut self.0[failure.index()];
        *count = count.saturating_add(1);
    }

    /// Count `n` failed connects of one kind (a fleet peer's counts).
    pub fn add_n(&mut self, failure: ConnectFailure, n: u64) {
        let count = &mut self.0[failure.index()];
        *count = count.saturating_add(n);
    }

    /// Add another window's counts.
    pub fn merge(&mut self, other: &ConnectCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine = mine.saturating_add(theirs);
        }
    }

    /// Forget every count.
    pub fn clear(&mut self) {
        self.0 = [0; CONNECT_FAILURES.len()];
    }

    /// Failed connects of every kind.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }

    /// How many of this kind.
    pub fn of(&self, failure: ConnectFailure) -> u64 {
        self.0[failure.index()]
    }

    /// The kinds seen, most frequent first (ties in [`CONNECT_FAILURES`] order).
    pub fn kinds(&self) -> Vec<(ConnectFailure, u64)> {
        let mut seen: Vec<(ConnectFailure, u64)> = CONNECT_FAILURES
            .iter()
            .map(|kind| (*kind, self.of(*kind)))
            .filter(|(_, n)| *n > 0)
            .collect();
        seen.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        seen
    }
}

/// The kinds seen, most frequent first: `connection refused`, or with several kinds
/// `connection refused (120), connect timeout (10)`.
impl fmt::Display for ConnectCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = self.kinds();
        for (i, (kind, n)) in kinds.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if kinds.len() == 1 {
                write!(f, "{kind}")?;
            } else {
                write!(f, "{kind} ({n})")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::TlsFailure;

    #[test]
    fn names_the_kinds_most_frequent_first() {
        let mut counts = ConnectCounts::default();
        assert_eq!(counts.to_string(), "");
        counts.add(ConnectFailure::Refused);
        assert_eq!(counts.to_string(), "connection refused");
        let mut more = ConnectCounts::default();
        more.add(ConnectFailure::Tls(TlsFailure::UnknownIssuer));
        more.add(ConnectFailure::Tls(TlsFailure::UnknownIssuer));
        counts.merge(&more);
        assert_eq!(counts.total(), 3);
        assert_eq!(
            counts.to_string(),
            "TLS handshake failure (certificate from an unknown issuer) (2), connection refused (1)"
        );
        counts.clear();
        assert_eq!(counts.total(), 0);
    }
}
