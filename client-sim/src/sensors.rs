//! Simulated sensors: the values a real device changes by itself, so observations and Send
//! have something to report. Deterministic from a seed, driven by simulated time.
//!
//! - `/3/0/13` Current Time ticks with the simulated clock (one tick per `period`);
//! - `/3/0/9` Battery Level drains one percent every `battery_every` ticks, down to 0;
//! - `/4/0/2` Radio Signal Strength wanders by −2..=+2 dBm per tick within −110..=−50.
//!
//! The last [`SensorConfig::history`] samples are kept for Send time series.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use steward_objects::{Path, Value};

use crate::device::Device;

/// Battery Level, Current Time, Radio Signal Strength.
pub const BATTERY: Path = Path::Resource(3, 0, 9);
pub const CURRENT_TIME: Path = Path::Resource(3, 0, 13);
pub const SIGNAL: Path = Path::Resource(4, 0, 2);

/// How the sensors behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensorConfig {
    pub seed: u64,
    /// Time between two samples.
    pub period: Duration,
    /// Ticks per percent of battery drained; 0 keeps the battery full.
    pub battery_every: u32,
    /// Samples kept for Send time series.
    pub history: usize,
}

impl SensorConfig {
    pub fn new(seed: u64) -> SensorConfig {
        SensorConfig {
            seed,
            period: Duration::from_secs(1),
            battery_every: 10,
            history: 32,
        }
    }
}

/// One sample of every sensor, at the device's clock (Unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub time: i64,
    pub values: Vec<(Path, Value)>,
}

/// The sensors' state; see the module docs.
#[derive(Debug, Clone)]
pub struct Sensors {
    config: SensorConfig,
    rng: u64,
    ticks: u64,
    clock: i64,
    battery: i64,
    signal: i64,
    next: Option<Instant>,
    history: VecDeque<Sample>,
}

impl Sensors {
    pub fn new(config: SensorConfig, device: &Device) -> Sensors {
        let int = |p: &Path, default: i64| match device.node(p) {
            Some(steward_objects::Node::Resource(steward_objects::Resource::Single(
                Value::Integer(v) | Value::Time(v),
            ))) => v,
            _ => default,
        };
        Sensors {
            // xorshift must not start at 0.
            rng: config.seed | 1,
            ticks: 0,
            clock: int(&CURRENT_TIME, device.config().clock),
            battery: int(&BATTERY, 100),
            signal: int(&SIGNAL, -60),
            next: None,
            history: VecDeque::new(),
            config,
        }
    }

    /// The next tick.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// Takes every sample due by `now` and writes it into the device.
    pub fn handle_timeout(&mut self, now: Instant, device: &mut Device) {
        let period = self.config.period.max(Duration::from_millis(1));
        let Some(mut at) = self.next else {
            // The first call starts the schedule; the device starts with its initial values.
            self.next = Some(now + period);
            self.record();
            return;
        };
        while at <= now {
            self.tick(device);
            at += period;
        }
        self.next = Some(at);
    }

    /// The kept samples, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &Sample> + ExactSizeIterator {
        self.history.iter()
    }

    fn tick(&mut self, device: &mut Device) {
        self.ticks += 1;
        self.clock += i64::try_from(self.config.period.as_secs())
            .unwrap_or(1)
            .max(1);
        if self.config.battery_every > 0
            && self
                .ticks
                .is_multiple_of(u64::from(self.config.battery_every))
        {
            self.battery = (self.battery - 1).max(0);
        }
        let step = i64::try_from(self.next_random() % 5).unwrap_or(2) - 2;
        self.signal = (self.signal + step).clamp(-110, -50);
        for (path, value) in self.values() {
            device.set_path(&path, value);
        }
        self.record();
    }

    fn values(&self) -> Vec<(Path, Value)> {
        vec![
            (BATTERY, Value::Integer(self.battery)),
            (CURRENT_TIME, Value::Time(self.clock)),
            (SIGNAL, Value::Integer(self.signal)),
        ]
    }

    fn record(&mut self) {
        if self.config.history == 0 {
            return;
        }
        while self.history.len() >= self.config.history {
            self.history.pop_front();
        }
        self.history.push_back(Sample {
            time: self.clock,
            values: self.values(),
        });
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}
