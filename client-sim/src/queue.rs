//! Queue mode (Transport §6.5) on the device side: awake for a window after its last message,
//! then asleep (radio off: nothing answered) until its own schedule wakes it, when it sends a
//! CON registration Update to tell the server it can be reached.
//!
//! Pure timing: the device loop reports activity and acts on the transitions.

use std::time::{Duration, Instant};

/// How long a queue-mode device stays awake and how long it sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTiming {
    /// Awake this long after the last message sent or received: MAX_TRANSMIT_WAIT (93 s) by
    /// default, as Transport §6.5 asks; tests use seconds.
    pub awake: Duration,
    /// Asleep this long before waking on its own.
    pub sleep: Duration,
}

impl Default for QueueTiming {
    fn default() -> QueueTiming {
        QueueTiming {
            awake: Duration::from_secs(93),
            sleep: Duration::from_secs(300),
        }
    }
}

/// A change of the radio state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Slept,
    Woke,
}

/// Awake or asleep, and until when.
#[derive(Debug, Clone)]
pub struct Queue {
    timing: QueueTiming,
    /// Sleep at this instant unless there is activity first; `None` while asleep or before
    /// the first activity.
    sleep_at: Option<Instant>,
    /// Asleep until this instant.
    wake_at: Option<Instant>,
}

impl Queue {
    pub fn new(timing: QueueTiming) -> Queue {
        Queue {
            timing,
            sleep_at: None,
            wake_at: None,
        }
    }

    pub fn is_awake(&self) -> bool {
        self.wake_at.is_none()
    }

    /// A message went out or came in: the awake window starts again.
    pub fn activity(&mut self, now: Instant) {
        if self.is_awake() {
            self.sleep_at = Some(now + self.timing.awake);
        }
    }

    /// Wakes now (the device has something to send). `true` if it was asleep.
    pub fn wake(&mut self, now: Instant) -> bool {
        let was_asleep = !self.is_awake();
        self.wake_at = None;
        self.sleep_at = Some(now + self.timing.awake);
        was_asleep
    }

    /// Back to awake with no window (deregistered, rebooted): queue mode starts again with
    /// the next activity.
    pub fn reset(&mut self) {
        self.wake_at = None;
        self.sleep_at = None;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wake_at.or(self.sleep_at)
    }

    /// The transition due by `now`, if any.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Transition> {
        if let Some(at) = self.wake_at {
            if at <= now {
                self.wake(now);
                return Some(Transition::Woke);
            }
            return None;
        }
        match self.sleep_at {
            Some(at) if at <= now => {
                self.sleep_at = None;
                self.wake_at = Some(now + self.timing.sleep);
                Some(Transition::Slept)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_after_the_window_and_wakes_on_schedule() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = Queue::new(QueueTiming {
            awake: s(5),
            sleep: s(20),
        });
        q.activity(t0);
        assert_eq!(q.handle_timeout(t0 + s(4)), None);
        q.activity(t0 + s(4));
        assert_eq!(q.handle_timeout(t0 + s(8)), None);
        assert_eq!(q.handle_timeout(t0 + s(9)), Some(Transition::Slept));
        assert!(!q.is_awake());
        // Activity while asleep does not count (nothing gets through).
        q.activity(t0 + s(10));
        assert_eq!(q.poll_timeout(), Some(t0 + s(29)));
        assert_eq!(q.handle_timeout(t0 + s(29)), Some(Transition::Woke));
        assert!(q.is_awake());
        assert_eq!(q.poll_timeout(), Some(t0 + s(34)));
    }
}
