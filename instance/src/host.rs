//! What the host is doing now: CPU load over the last few seconds and memory.
//!
//! The original reported CPU as the average since boot, which barely moves on
//! a long-running instance. Here a background task samples `/proc/stat` once
//! a second and the load is computed from the difference between the newest
//! sample and one a few seconds older.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The sampler ticks every second; this much silence means it is stuck.
const HEARTBEAT_LIMIT: Duration = Duration::from_secs(5);

/// How many one-second samples the load is computed over.
const WINDOW: usize = 5;

/// Jiffies from the aggregate `cpu` line of `/proc/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub idle: u64,
}

/// Parses the first (`cpu `) line of `/proc/stat`. Idle time includes iowait.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    let busy =
        fields[0] + fields[1] + fields[2] + fields.get(5..8).map_or(0, |rest| rest.iter().sum());
    Some(CpuTimes { busy, idle })
}

/// Percent busy between two samples, one decimal; `None` if no time passed.
pub fn load_between(old: CpuTimes, new: CpuTimes) -> Option<f64> {
    let busy = new.busy.saturating_sub(old.busy) as f64;
    let idle = new.idle.saturating_sub(old.idle) as f64;
    let total = busy + idle;
    (total > 0.0).then(|| round1(100.0 * busy / total))
}

pub fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Memory {
    /// This process's resident set, bytes.
    pub process_rss: Option<u64>,
    pub system_total: Option<u64>,
    pub system_available: Option<u64>,
}

impl Memory {
    /// Percent of the host's memory in use (total − available).
    pub fn used_percent(&self) -> Option<f64> {
        let (total, available) = (self.system_total?, self.system_available?);
        (total > 0).then(|| round1(100.0 * (total.saturating_sub(available)) as f64 / total as f64))
    }
}

/// Reads a `Name:   123 kB` field from `/proc/*/status` or `/proc/meminfo`.
pub fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

pub fn read_memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Memory {
        process_rss: kb_field(&status, "VmRSS"),
        system_total: kb_field(&meminfo, "MemTotal"),
        system_available: kb_field(&meminfo, "MemAvailable"),
    }
}

/// The CPU sampler's shared state.
#[derive(Clone)]
pub struct Host {
    samples: Arc<Mutex<VecDeque<CpuTimes>>>,
    /// When the sampler last ran: proof the runtime is not starved.
    heartbeat: Arc<Mutex<Instant>>,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            samples: Arc::default(),
            heartbeat: Arc::new(Mutex::new(Instant::now())),
        }
    }
}

impl Host {
    /// Takes a first sample now and one every second from then on.
    pub fn start() -> Self {
        let host = Host::default();
        host.sample();
        let sampler = host.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                sampler.sample();
            }
        });
        host
    }

    /// The local self-check behind `/health`: the background sampler has
    /// run recently, so the runtime is not starved or wedged.
    pub fn sampler_alive(&self) -> bool {
        self.heartbeat
            .lock()
            .map(|at| at.elapsed() < HEARTBEAT_LIMIT)
            .unwrap_or(false)
    }

    fn sample(&self) {
        if let Ok(mut at) = self.heartbeat.lock() {
            *at = Instant::now();
        }
        let Some(times) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_proc_stat(&text))
        else {
            return;
        };
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() > WINDOW {
                samples.pop_front();
            }
            samples.push_back(times);
        }
    }

    /// Percent CPU busy over the last few seconds (all cores), one decimal.
    /// Right after start, before two samples exist, it is measured over a
    /// short fresh interval instead.
    pub fn cpu_percent(&self) -> Option<f64> {
        let (first, last) = {
            let samples = self.samples.lock().ok()?;
            (samples.front().copied(), samples.back().copied())
        };
        if let (Some(first), Some(last)) = (first, last) {
            if let Some(load) = load_between(first, last) {
                return Some(load);
            }
        }
        let now = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t))?;
        first.and_then(|first| load_between(first, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_and_computes_load() {
        let a = parse_proc_stat("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(
            a,
            CpuTimes {
                busy: 200,
                idle: 800
            }
        );
        let b = parse_proc_stat("cpu  250 0 150 850 50 0 0 0 0 0\n").unwrap();
        // 200 busy, 100 idle → 66.7 %.
        assert_eq!(load_between(a, b), Some(66.7));
        assert_eq!(load_between(a, a), None);
        assert_eq!(parse_proc_stat("cpu  x y\n"), None);
        assert_eq!(parse_proc_stat(""), None);
    }

    #[test]
    fn reads_kb_fields() {
        let text = "Name:\tx\nVmRSS:\t    2048 kB\nMemTotal:  10 kB\n";
        assert_eq!(kb_field(text, "VmRSS"), Some(2 * 1024 * 1024));
        assert_eq!(kb_field(text, "MemTotal"), Some(10 * 1024));
        assert_eq!(kb_field(text, "Missing"), None);
        let memory = Memory {
            process_rss: None,
            system_total: Some(1000),
            system_available: Some(250),
        };
        assert_eq!(memory.used_percent(), Some(75.0));
    }

    #[test]
    fn reads_this_machine() {
        let memory = read_memory();
        assert!(memory.process_rss.unwrap() > 0);
        assert!(memory.system_available.unwrap() <= memory.system_total.unwrap());
    }
}
