//! The back-off every client state machine uses after a failure (registration, bootstrap,
//! EST): the base delay doubled per consecutive failure, capped.

use std::time::Duration;

/// The delay before the next attempt after `failures` consecutive failures (1 for the first).
pub(crate) fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    // Past 2^16 × base the cap has long been reached; the shift must not overflow.
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(max)
}

/// `delay` lengthened by up to a half, by an amount fixed for this `endpoint` and attempt:
/// devices that failed together (their server went away) do not all come back in the same
/// instant. Deterministic, so that simulated runs replay.
pub(crate) fn spread(delay: Duration, endpoint: &str, attempt: u32) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (endpoint, attempt).hash(&mut h);
    let permille = u32::try_from(h.finish() % 500).unwrap_or(0);
    delay + delay * permille / 1000
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

    #[test]
    fn spread_is_at_most_half_and_differs_between_devices() {
        let delay = Duration::from_secs(10);
        let spread: Vec<Duration> = (0..50)
            .map(|i| spread(delay, &format!("d{i}"), 1))
            .collect();
        assert!(spread.iter().all(|d| *d >= delay && *d < delay * 3 / 2));
        assert!(spread.iter().any(|d| *d != spread[0]), "not all the same");
        assert_eq!(spread[7], super::spread(delay, "d7", 1), "deterministic");
    }
}
