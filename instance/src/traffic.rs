//! Counting requests: totals per CloudWatch interval and a short rolling
//! window for the dashboard (requests per second, p99).
//!
//! Latencies go into a fixed histogram of geometric buckets, so memory stays
//! constant however many requests arrive; p99 is the upper edge of the
//! bucket that holds it (within 10 %).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BUCKETS: usize = 160;
/// Lower edge of the first bucket, microseconds.
const FIRST_US: f64 = 10.0;
const GROWTH: f64 = 1.1;
/// The dashboard's window: rates and p99 over about this long.
const WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
        }
    }
}

impl Histogram {
    fn bucket(duration: Duration) -> usize {
        let us = duration.as_secs_f64() * 1e6;
        if us <= FIRST_US {
            return 0;
        }
        let index = ((us / FIRST_US).ln() / GROWTH.ln()).ceil() as usize;
        index.min(BUCKETS - 1)
    }

    fn upper_edge_ms(index: usize) -> f64 {
        FIRST_US * GROWTH.powi(index as i32) / 1000.0
    }

    pub fn record(&mut self, duration: Duration) {
        self.counts[Self::bucket(duration)] += 1;
    }

    /// The quantile `q` (0–1) in milliseconds; `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::upper_edge_ms(index));
            }
        }
        Some(Self::upper_edge_ms(BUCKETS - 1))
    }
}

/// Requests finished over some span.
#[derive(Clone, Debug)]
pub struct Tally {
    pub started: Instant,
    pub count: u64,
    pub errors: u64,
    pub total_ms: f64,
    pub latency: Histogram,
}

impl Tally {
    fn new(now: Instant) -> Self {
        Tally {
            started: now,
            count: 0,
            errors: 0,
            total_ms: 0.0,
            latency: Histogram::default(),
        }
    }

    fn record(&mut self, duration: Duration, server_error: bool) {
        self.count += 1;
        self.errors += u64::from(server_error);
        self.total_ms += duration.as_secs_f64() * 1000.0;
        self.latency.record(duration);
    }

    pub fn average_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms / self.count as f64
        }
    }

    pub fn error_percent(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            100.0 * self.errors as f64 / self.count as f64
        }
    }
}

struct Inner {
    interval: Tally,
    current: Tally,
    previous: Option<Tally>,
}

/// A snapshot for the dashboard.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub p99_ms: Option<f64>,
}

#[derive(Clone)]
pub struct Traffic {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Traffic {
    fn default() -> Self {
        let now = Instant::now();
        Traffic {
            inner: Arc::new(Mutex::new(Inner {
                interval: Tally::new(now),
                current: Tally::new(now),
                previous: None,
            })),
        }
    }
}

impl Traffic {
    pub fn record(&self, duration: Duration, server_error: bool) {
        let now = Instant::now();
        if let Ok(mut inner) = self.inner.lock() {
            inner.rotate(now);
            inner.interval.record(duration, server_error);
            inner.current.record(duration, server_error);
        }
    }

    /// Takes the interval's tally and starts a new one (reset before
    /// sending, as the original does: a failed publish loses that interval).
    pub fn take_interval(&self) -> Option<Tally> {
        let mut inner = self.inner.lock().ok()?;
        Some(std::mem::replace(
            &mut inner.interval,
            Tally::new(Instant::now()),
        ))
    }

    /// Requests per second and p99 over the last complete window (or the
    /// current one while the first is still filling).
    pub fn rate(&self) -> Rate {
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else {
            return Rate {
                per_second: 0.0,
                p99_ms: None,
            };
        };
        inner.rotate(now);
        let (tally, seconds) = match &inner.previous {
            Some(previous) => (
                previous,
                inner.current.started.duration_since(previous.started),
            ),
            None => (&inner.current, now.duration_since(inner.current.started)),
        };
        let seconds = seconds.as_secs_f64().max(1.0);
        Rate {
            per_second: tally.count as f64 / seconds,
            p99_ms: tally.latency.quantile_ms(0.99),
        }
    }
}

impl Inner {
    fn rotate(&mut self, now: Instant) {
        let age = now.duration_since(self.current.started);
        if age >= WINDOW * 2 {
            // Idle for more than a whole window: nothing recent to show.
            self.previous = Some(Tally::new(now.checked_sub(WINDOW).unwrap_or(now)));
            self.current = Tally::new(now);
        } else if age >= WINDOW {
            let next = Tally::new(now);
            self.previous = Some(std::mem::replace(&mut self.current, next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_within_ten_percent() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.quantile_ms(0.99), None);
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        let p99 = histogram.quantile_ms(0.99).unwrap();
        assert!((99.0..=99.0 * 1.1).contains(&p99), "{p99}");
        let p50 = histogram.quantile_ms(0.5).unwrap();
        assert!((50.0..=55.0).contains(&p50), "{p50}");
        // Out of range values clamp instead of panicking.
        histogram.record(Duration::from_secs(100_000));
        histogram.record(Duration::ZERO);
    }

    #[test]
    fn interval_tally_resets() {
        let traffic = Traffic::default();
        traffic.record(Duration::from_millis(10), false);
        traffic.record(Duration::from_millis(30), true);
        let tally = traffic.take_interval().unwrap();
        assert_eq!(tally.count, 2);
        assert_eq!(tally.error_percent(), 50.0);
        assert!((tally.average_ms() - 20.0).abs() < 1e-9);
        let empty = traffic.take_interval().unwrap();
        assert_eq!(
            (empty.count, empty.average_ms(), empty.error_percent()),
            (0, 0.0, 0.0)
        );
        assert!(traffic.rate().per_second > 0.0);
    }
}
