//! The back-off every client state machine uses after a failure (registration, bootstrap,
//! EST): the base delay doubled per consecutive failure, capped.

use std::time::Duration;

/// The delay before the next attempt after `failures` consecutive failures (1 for the first).
pub(crate) fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    // Past 2^16 × base the cap has long been reached; the shift must not overflow.
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(600));
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n, base, max).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(backoff(u32::MAX, base, max), max);
    }
}
