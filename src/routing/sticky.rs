//! Sticky-key hashing: a user's key maps to a fixed bucket in 0..10000.
//!
//! The hash is FNV-1a, fixed and seedless on purpose: the same key must land in the same bucket
//! in every worker, after every restart, and on every replica of canaryd. A key is on the canary
//! while `bucket < weight * 100`, so as the weight only grows, a user never flips back.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The bucket (0..10000) of a sticky key.
pub fn sticky_bucket(key: &[u8]) -> u16 {
    let mut hash = FNV_OFFSET;
    for &b in key {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    // Fold the high bits in: FNV's low bits alone are weak for short keys.
    let folded = hash ^ (hash >> 32);
    (folded % 10_000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(sticky_bucket(b"user-1"), sticky_bucket(b"user-1"));
        let mut below_10pct = 0;
        for i in 0..10_000 {
            if sticky_bucket(format!("user-{i}").as_bytes()) < 1_000 {
                below_10pct += 1;
            }
        }
        // 10% of keys, within ±2 points.
        assert!((800..=1200).contains(&below_10pct), "{below_10pct}");
    }
}
