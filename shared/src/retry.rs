//! Backoff between attempts: exponential with full jitter, so that clients
//! that failed together do not retry together.

use std::time::Duration;

/// Delay before retry number `attempt` (0-based): uniform in
/// `[0, base_ms * 2^attempt]`, the exponent capped at 2^6.
pub fn backoff(attempt: u32, base_ms: u64) -> Duration {
    let ceiling = base_ms.saturating_mul(1 << attempt.min(6)).max(1);
    let r = u64::from_le_bytes(crate::ids::random_bytes::<8>());
    Duration::from_millis(r % (ceiling + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_the_ceiling() {
        for attempt in 0..10 {
            let cap = 10u64 << attempt.min(6);
            assert!(backoff(attempt, 10) <= Duration::from_millis(cap));
        }
    }
}
