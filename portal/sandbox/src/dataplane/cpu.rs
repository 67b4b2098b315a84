//! How busy a sandbox instance is, as EC2's `CPUUtilization` would say.
//!
//! An instance is its process group: the service and whatever a Run Command
//! started in it (see [`super::process::run_on_instance`]). Its utilisation
//! over an interval is the CPU time the group's processes used in it,
//! divided by the interval, read from `/proc/<pid>/stat`. A sandbox
//! instance is modelled as one vCPU: one busy thread is 100 %, and more
//! threads cannot push it past 100 % (the machine's other cores are not the
//! instance's). A process that exits between two samples takes the CPU time
//! it used since the last sample with it; at one sample a (scaled) minute,
//! that is a small undercount at the end of a stress.

use std::collections::HashMap;
use std::time::Instant;

/// `/proc`'s CPU times are in USER_HZ ticks, which Linux fixes at 100 a
/// second for user space on every architecture it exports them for.
const TICKS_PER_SECOND: f64 = 100.0;

/// Every process's group and CPU ticks, from one pass over `/proc`.
#[derive(Debug, Default)]
pub struct ProcSnapshot {
    /// Process group → (pid, user + system ticks) of each member.
    groups: HashMap<u32, Vec<(u32, u64)>>,
    taken: Option<Instant>,
}

impl ProcSnapshot {
    pub fn take() -> ProcSnapshot {
        let mut groups: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return ProcSnapshot::default();
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // A process may exit between listing and reading: skip it.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((group, ticks)) = parse_stat(&stat) {
                groups.entry(group).or_default().push((pid, ticks));
            }
        }
        ProcSnapshot {
            groups,
            taken: Some(Instant::now()),
        }
    }
}

/// The process group and user + system ticks from a `/proc/<pid>/stat`
/// line. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from its closing parenthesis.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) … utime(11) stime(12).
    let group = fields.get(2)?.parse().ok()?;
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((group, user + system))
}

/// One instance's CPU meter: the ticks each of its processes had at the
/// last sample.
#[derive(Debug, Default)]
pub struct CpuMeter {
    seen: HashMap<u32, u64>,
    at: Option<Instant>,
}

impl CpuMeter {
    /// Utilisation in percent of the group led by `group` since the last
    /// call; `None` the first time (there is no interval yet).
    pub fn sample(&mut self, group: u32, snapshot: &ProcSnapshot) -> Option<f64> {
        let now = snapshot.taken?;
        let members = snapshot
            .groups
            .get(&group)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let used: u64 = members
            .iter()
            .map(|(pid, ticks)| {
                // A process new since the last sample started within the
                // interval (its group is only ever joined by new children).
                ticks.saturating_sub(self.seen.get(pid).copied().unwrap_or(0))
            })
            .sum();
        self.seen = members.iter().copied().collect();
        let previous = self.at.replace(now)?;
        let wall = now.duration_since(previous).as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        Some((used as f64 / TICKS_PER_SECOND / wall * 100.0).clamp(0.0, 100.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line =
            "4242 (a (weird) name) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 0 0";
        assert_eq!(parse_stat(line), Some((4240, 300)));
        assert_eq!(parse_stat("garbage"), None);
    }

    fn snapshot(members: &[(u32, u64)], taken: Instant) -> ProcSnapshot {
        ProcSnapshot {
            groups: HashMap::from([(7, members.to_vec())]),
            taken: Some(taken),
        }
    }

    #[test]
    fn utilisation_counts_every_member_and_caps_at_one_vcpu() {
        let t0 = Instant::now();
        let second = std::time::Duration::from_secs(1);
        let mut meter = CpuMeter::default();
        assert_eq!(meter.sample(7, &snapshot(&[(7, 1000)], t0)), None);
        // The service used 20 ticks in 2 s: 10 %.
        let p = meter
            .sample(7, &snapshot(&[(7, 1020)], t0 + 2 * second))
            .unwrap();
        assert!((p - 10.0).abs() < 1e-9, "{p}");
        // A stress joined the group and used 150 ticks in 2 s, the service 10:
        // 80 %.
        let p = meter
            .sample(7, &snapshot(&[(7, 1030), (9, 150)], t0 + 4 * second))
            .unwrap();
        assert!((p - 80.0).abs() < 1e-9, "{p}");
        // Two busy threads are still one vCPU's 100 %.
        let p = meter
            .sample(7, &snapshot(&[(7, 1040), (9, 550)], t0 + 6 * second))
            .unwrap();
        assert_eq!(p, 100.0);
        // The stress ended; a group that is gone reads idle.
        let p = meter
            .sample(7, &snapshot(&[(7, 1040)], t0 + 8 * second))
            .unwrap();
        assert_eq!(p, 0.0);
    }

    #[test]
    fn a_busy_process_group_reads_busy() {
        let me = rustix::process::getpgrp().as_raw_pid() as u32;
        let mut meter = CpuMeter::default();
        assert_eq!(meter.sample(me, &ProcSnapshot::take()), None);
        let deadline = Instant::now() + std::time::Duration::from_millis(600);
        let mut x = 1u64;
        while Instant::now() < deadline {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let busy = meter.sample(me, &ProcSnapshot::take()).unwrap();
        assert!(busy > 50.0, "{busy}");
    }
}
