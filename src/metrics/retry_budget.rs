//! The retry budget of one version of one route: how many connect-failure retries it may make
//! across requests, so that a pool whose endpoints all refuse connections gets at most a bounded
//! share of extra attempts instead of `1 + retries` attempts per request.
//!
//! **The rule** (Finagle's `RetryBudget`, the one Linkerd uses): over a sliding window of
//! [`WINDOW_SECS`] seconds, the retries granted may not exceed
//! `percent / 100 × requests the version finished in the window + min_per_second × WINDOW_SECS`.
//! The second term is a reserve so that a quiet route can still retry; `percent = 0` leaves only
//! the reserve, and both at 0 grant nothing.
//!
//! **Why not Envoy's `retry_budget`**: it limits retries *in flight* to a share of requests *in
//! flight*. A refused connect lasts microseconds, so a pool that refuses everything has almost no
//! retry in flight at any moment and the budget would hardly bind — yet that is the pool whose
//! load this exists to bound. It would also need a per-route in-flight gauge written twice per
//! request. A rate over a window bounds exactly what a dead pool receives.
//!
//! **Cost on the request path: none.** Finagle deposits a token on every request; here the
//! deposits are the version's request counters ([`super::VersionMetrics`]), which every finished
//! request already increments, read back only when a retry asks. The window — one slot per
//! second with the deposits and withdrawals of that second — sits behind a mutex taken only on the
//! retry path, after a connect failure that already cost a system call. Requests finished since
//! the previous look are spread evenly over the seconds that passed (the ones still inside the
//! window get their share, older shares have expired): exact when retries are frequent, which is
//! when the budget matters, and a uniform-rate estimate after a quiet spell.
//!
//! Time is whole seconds since the first budget was created; the arithmetic takes the second and
//! the request count as arguments so unit tests need no clock.

use std::sync::{Mutex, PoisonError};

use crate::config::RetryBudgetConfig;
use crate::process_clock::since_start;

/// Length of the sliding window deposits and withdrawals are remembered for (Finagle's and
/// Linkerd's default `ttl`).
pub const WINDOW_SECS: u64 = 10;

const SLOTS: usize = WINDOW_SECS as usize;

/// Whether a retry the request was allowed by `retries` was made: the `outcome` label of
/// `canaryd_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The budget granted it: the request was tried on another endpoint.
    Retried,
    /// The budget was spent: the request failed over to the primary or got its 502.
    BudgetExhausted,
}

impl RetryOutcome {
    /// Both outcomes, in exposition order.
    pub const ALL: [RetryOutcome; 2] = [RetryOutcome::Retried, RetryOutcome::BudgetExhausted];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOutcome::Retried => "retried",
            RetryOutcome::BudgetExhausted => "budget_exhausted",
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            RetryOutcome::Retried => 0,
            RetryOutcome::BudgetExhausted => 1,
        }
    }
}

/// Whole seconds on the process clock.
fn now_secs() -> u64 {
    since_start().as_secs()
}

/// Deposits (finished requests) and withdrawals (granted retries) of one second.
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    second: u64,
    deposits: u64,
    withdrawals: u64,
}

#[derive(Debug)]
struct Window {
    /// Slot `s % SLOTS` holds second `s`; a slot holding an older second is stale.
    slots: [Slot; SLOTS],
    /// When the request counter was last read, and what it said.
    seen_second: u64,
    seen_requests: u64,
}

impl Window {
    fn slot(&mut self, second: u64) -> &mut Slot {
        // SLOTS is a small constant, so the remainder always fits an index.
        let slot = &mut self.slots[(second % WINDOW_SECS) as usize];
        if slot.second != second {
            *slot = Slot {
                second,
                ..Slot::default()
            };
        }
        slot
    }

    /// Credit the requests finished since the last look, spread evenly over the seconds from
    /// that look to `now`; shares of seconds already out of the window are dropped.
    fn deposit(&mut self, now: u64, requests: u64) {
        let now = now.max(self.seen_second);
        let new = requests.saturating_sub(self.seen_requests);
        let from = self.seen_second;
        self.seen_second = now;
        self.seen_requests = self.seen_requests.max(requests);
        if new == 0 {
            return;
        }
        let seconds = now - from + 1;
        let (share, rest) = (new / seconds, new % seconds);
        let first_in_window = from.max(now.saturating_sub(WINDOW_SECS - 1));
        for second in first_in_window..now {
            self.slot(second).deposits += share;
        }
        // The remainder goes to the newest second, so nothing finished just now is lost.
        self.slot(now).deposits += share + rest;
    }

    /// Deposits and withdrawals of the seconds `now - WINDOW_SECS + 1 ..= now`.
    fn totals(&self, now: u64) -> (u64, u64) {
        self.slots
            .iter()
            .filter(|s| s.second <= now && s.second + WINDOW_SECS > now)
            .fold((0, 0), |(d, w), s| (d + s.deposits, w + s.withdrawals))
    }
}

/// The budget of one version of one route. Kept with the route's counters, so it survives
/// reloads and rollout steps (which rebuild the routing snapshot and its backends).
#[derive(Debug)]
pub struct RetryBudget {
    window: Mutex<Window>,
}

impl Default for RetryBudget {
    /// An empty budget starting now, for a version whose counters are at zero.
    fn default() -> Self {
        RetryBudget::starting_at(now_secs(), 0)
    }
}

impl RetryBudget {
    /// A budget whose request counter read `requests` at `second`.
    pub fn starting_at(second: u64, requests: u64) -> Self {
        RetryBudget {
            window: Mutex::new(Window {
                slots: [Slot::default(); SLOTS],
                seen_second: second,
                seen_requests: requests,
            }),
        }
    }

    /// Ask for one retry now; `requests` is the version's count of finished requests.
    pub fn try_withdraw(&self, requests: u64, config: &RetryBudgetConfig) -> bool {
        self.try_withdraw_at(now_secs(), requests, config)
    }

    /// Ask for one retry at `now` (seconds, never going back). Granted when the window's
    /// balance, `percent`% of its deposits plus the reserve minus its withdrawals, covers one
    /// more retry; a granted retry is withdrawn at once.
    pub fn try_withdraw_at(&self, now: u64, requests: u64, config: &RetryBudgetConfig) -> bool {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.deposit(now, requests);
        let now = window.seen_second;
        let (deposits, withdrawals) = window.totals(now);
        // In hundredths of a retry, so the percentage stays exact in integers.
        let reserve = u128::from(config.min_per_second) * u128::from(WINDOW_SECS) * 100;
        let earned = u128::from(config.percent) * u128::from(deposits);
        let needed = (u128::from(withdrawals) + 1) * 100;
        if reserve + earned < needed {
            return false;
        }
        window.slot(now).withdrawals += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(percent: u8, min_per_second: u32) -> RetryBudgetConfig {
        RetryBudgetConfig {
            percent,
            min_per_second,
        }
    }

    /// Ask `n` times at the same second and count the grants.
    fn grants(budget: &RetryBudget, now: u64, requests: u64, c: &RetryBudgetConfig, n: u32) -> u32 {
        (0..n)
            .map(|_| u32::from(budget.try_withdraw_at(now, requests, c)))
            .sum()
    }

    #[test]
    fn the_reserve_alone_grants_min_per_second_times_the_window_then_refills_as_it_slides() {
        let c = config(20, 2);
        let b = RetryBudget::starting_at(100, 0);
        assert_eq!(grants(&b, 100, 0, &c, 50), 20, "2/s × 10 s, no traffic");
        // Still inside the window: nothing new.
        assert_eq!(grants(&b, 109, 0, &c, 5), 0);
        // Second 100 left the window: its 20 withdrawals are forgotten.
        assert_eq!(grants(&b, 110, 0, &c, 50), 20);
    }

    #[test]
    fn finished_requests_add_percent_of_themselves() {
        let c = config(20, 0);
        let b = RetryBudget::starting_at(0, 0);
        assert_eq!(
            grants(&b, 0, 0, &c, 5),
            0,
            "no reserve, no traffic: nothing"
        );
        assert_eq!(grants(&b, 1, 100, &c, 50), 20, "20% of 100");
        assert_eq!(
            grants(&b, 2, 104, &c, 5),
            0,
            "20% of 104 is 20.8: not one more"
        );
        assert_eq!(grants(&b, 2, 105, &c, 5), 1, "20% of 105 is 21");
        // Percent and reserve add up.
        let b = RetryBudget::starting_at(0, 0);
        assert_eq!(grants(&b, 0, 50, &config(10, 1), 100), 15);
    }

    #[test]
    fn a_dead_pool_under_steady_traffic_gets_percent_plus_the_floor() {
        // 100 requests a second, every one failing its first connect and asking for a retry.
        let c = config(20, 1);
        let b = RetryBudget::starting_at(0, 0);
        let mut finished = 0;
        let mut granted = 0;
        for second in 0..60 {
            for _ in 0..100 {
                granted += u64::from(b.try_withdraw_at(second, finished, &c));
                finished += 1;
            }
        }
        // Over 60 s: at most 20% of 6000 plus the reserve of every window the run touched.
        assert!(granted <= 1200 + 60, "{granted}");
        assert!(granted >= 1200 - 20, "{granted}");
    }

    #[test]
    fn deposits_expire_with_the_window() {
        let c = config(20, 0);
        let b = RetryBudget::starting_at(0, 0);
        // 1000 requests seen at second 0 (20% of them: 200 retries), then none for 20 s: all of
        // it expired.
        assert_eq!(grants(&b, 0, 1000, &c, 5), 5);
        assert_eq!(grants(&b, 20, 1000, &c, 5), 0);
    }

    #[test]
    fn requests_seen_after_a_quiet_spell_count_only_for_the_seconds_still_in_the_window() {
        let c = config(20, 0);
        // 1000 requests over 100 s (10 s/1000 requests in the window): about 100 are recent.
        let b = RetryBudget::starting_at(0, 0);
        assert_eq!(grants(&b, 99, 1000, &c, 50), 20);
        // A look within the window keeps all of it.
        let b = RetryBudget::starting_at(0, 0);
        assert_eq!(grants(&b, 5, 1000, &c, 500), 200);
    }

    #[test]
    fn zero_percent_and_zero_floor_grant_nothing_and_a_clock_going_back_is_ignored() {
        let b = RetryBudget::starting_at(10, 0);
        assert_eq!(grants(&b, 10, 1_000_000, &config(0, 0), 10), 0);
        let b = RetryBudget::starting_at(10, 0);
        assert_eq!(grants(&b, 10, 0, &config(0, 1), 20), 10);
        assert_eq!(grants(&b, 3, 0, &config(0, 1), 20), 0, "still second 10");
    }
}
