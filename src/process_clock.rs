//! Time since the process first asked, from a monotonic clock: small enough to keep in an
//! atomic, so lock-free state (endpoint ejections, retry budgets) can store instants.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long since the first call in this process.
pub fn since_start() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}
