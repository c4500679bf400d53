//! Downsampled history: per monitor, buckets of 1 minute, 1 hour and 1 day, each
//! holding check and failure counts, latency min/max/sum and a small log-scale
//! latency histogram from which p50/p95/p99 are estimated.

use serde::{Deserialize, Serialize};

/// Histogram slots: slot 0 is < 1 ms; slot i (1..) covers [2^((i-1)/2), 2^(i/2)) ms,
/// half-octaves up to about 46 s; the last slot takes everything beyond.
pub const HIST_SLOTS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    Minute,
    Hour,
    Day,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Minute, Level::Hour, Level::Day];

    pub fn width_ms(self) -> u64 {
        match self {
            Level::Minute => 60_000,
            Level::Hour => 3_600_000,
            Level::Day => 86_400_000,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Level::Minute => 0,
            Level::Hour => 1,
            Level::Day => 2,
        }
    }

    /// Start of the bucket holding `at_ms` (UTC-aligned).
    pub fn bucket_start(self, at_ms: u64) -> u64 {
        at_ms - at_ms % self.width_ms()
    }
}

/// How long each level is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub minute_ms: u64,
    pub hour_ms: u64,
    pub day_ms: u64,
}

impl Default for Retention {
    /// 1 min × 6 h, 1 h × 30 d, 1 day × 400 d (DESIGN.md).
    fn default() -> Self {
        Retention { minute_ms: 6 * 3_600_000, hour_ms: 30 * 86_400_000, day_ms: 400 * 86_400_000 }
    }
}

impl Retention {
    pub fn of(&self, level: Level) -> u64 {
        match level {
            Level::Minute => self.minute_ms,
            Level::Hour => self.hour_ms,
            Level::Day => self.day_ms,
        }
    }
}

/// One bucket. Latencies in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub checks: u64,
    pub failures: u64,
    pub lat_min_us: u64,
    pub lat_max_us: u64,
    pub lat_sum_us: u64,
    /// `HIST_SLOTS` counts (empty until the first latency is recorded).
    pub hist: Vec<u32>,
}

/// Latency aggregates of a window of checks, as a node reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Checks with a latency (all of them, normally).
    pub count: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub sum_us: u64,
    pub hist: Vec<u32>,
}

pub fn slot(latency_us: u64) -> usize {
    if latency_us < 1_000 {
        return 0;
    }
    // Computed where checks run (a node), never in apply: apply only adds counts.
    let ms = latency_us as f64 / 1000.0;
    let i = (ms.log2() * 2.0).floor() as usize + 1;
    i.min(HIST_SLOTS - 1)
}

/// The upper edge of a slot, in microseconds, used as its estimate.
fn slot_upper_us(i: usize) -> u64 {
    if i == 0 {
        return 1_000;
    }
    (2f64.powf(i as f64 / 2.0) * 1000.0) as u64
}

impl LatencyStats {
    pub fn record(&mut self, latency_us: u64) {
        if self.hist.is_empty() {
            self.hist = vec![0; HIST_SLOTS];
            self.min_us = latency_us;
        }
        self.count += 1;
        self.min_us = self.min_us.min(latency_us);
        self.max_us = self.max_us.max(latency_us);
        self.sum_us += latency_us;
        self.hist[slot(latency_us)] += 1;
    }
}

impl Bucket {
    pub fn fold(&mut self, checks: u64, failures: u64, lat: &LatencyStats) {
        self.checks = self.checks.saturating_add(checks);
        self.failures = self.failures.saturating_add(failures);
        if lat.count == 0 || lat.hist.len() != HIST_SLOTS {
            return;
        }
        if self.hist.is_empty() {
            self.hist = vec![0; HIST_SLOTS];
            self.lat_min_us = lat.min_us;
        }
        self.lat_min_us = self.lat_min_us.min(lat.min_us);
        self.lat_max_us = self.lat_max_us.max(lat.max_us);
        self.lat_sum_us = self.lat_sum_us.saturating_add(lat.sum_us);
        for (a, b) in self.hist.iter_mut().zip(&lat.hist) {
            *a = a.saturating_add(*b);
        }
    }

    /// Estimated latency quantile `q` (0..=1) in microseconds, clamped to the
    /// observed min and max.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total: u64 = self.hist.iter().map(|c| u64::from(*c)).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.hist.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(slot_upper_us(i).clamp(self.lat_min_us, self.lat_max_us));
            }
        }
        Some(self.lat_max_us)
    }
}

/// Uptime over buckets: the share of checks that did not fail, as a percentage.
pub fn uptime_percent<'a>(buckets: impl IntoIterator<Item = &'a Bucket>) -> Option<f64> {
    let (checks, failures) =
        buckets.into_iter().fold((0u64, 0u64), |(c, f), b| (c.saturating_add(b.checks), f.saturating_add(b.failures)));
    (checks > 0).then(|| 100.0 * checks.saturating_sub(failures) as f64 / checks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_half_octaves() {
        assert_eq!(slot(0), 0);
        assert_eq!(slot(999), 0);
        assert_eq!(slot(1_000), 1);
        assert_eq!(slot(1_500), 2);
        assert_eq!(slot(2_000), 3);
        assert_eq!(slot(4_000), 5);
        assert_eq!(slot(u64::MAX / 2), HIST_SLOTS - 1);
    }

    #[test]
    fn quantiles_are_within_a_half_octave() {
        let mut lat = LatencyStats::default();
        for ms in 1..=100u64 {
            lat.record(ms * 1000);
        }
        let mut b = Bucket::default();
        b.fold(100, 3, &lat);
        assert_eq!((b.checks, b.failures, b.lat_min_us, b.lat_max_us), (100, 3, 1_000, 100_000));
        for (q, exact_ms) in [(0.5, 50.0), (0.95, 95.0), (0.99, 99.0)] {
            let est = b.quantile_us(q).unwrap() as f64 / 1000.0;
            assert!(est >= exact_ms && est <= exact_ms * 1.42, "p{q}: {est} vs {exact_ms}");
        }
        assert_eq!(Bucket::default().quantile_us(0.5), None);
    }

    #[test]
    fn buckets_align_and_uptime_adds_up() {
        assert_eq!(Level::Minute.bucket_start(125_000), 120_000);
        assert_eq!(Level::Hour.bucket_start(3_600_001), 3_600_000);
        let a = Bucket { checks: 90, failures: 0, ..Default::default() };
        let b = Bucket { checks: 10, failures: 10, ..Default::default() };
        assert_eq!(uptime_percent([&a, &b]), Some(90.0));
        assert_eq!(uptime_percent([]), None);
    }
}
