//! The two ways to break an instance on purpose, both run as commands on the
//! instance (through SSM Run Command on AWS; the sandbox's data plane runs
//! the same commands):
//!
//! - `cloudpulse-instance stress --seconds N` keeps every CPU busy for N
//!   seconds, so the CPU alarms see real load.
//! - `cloudpulse-instance fail-health --seconds N` makes the running service
//!   answer its health checks with 503 for N seconds, so the load balancer
//!   takes it out and the Auto Scaling group replaces it.
//!
//! The service and the command meet in a control directory (`CONTROL_DIR`,
//! by default `/run/cloudpulse-instance`): `fail-health` writes the moment
//! health checks may pass again, and `/health` reads it. A file rather than
//! an HTTP switch, because the service's port is open to the load balancer
//! and nothing that reaches it may break the instance.
//!
//! The command runs as root (the SSM agent's user) in a directory the
//! service's user owns, so it trusts no name in it: it writes a new file
//! under a random name (`O_CREAT | O_EXCL | O_NOFOLLOW`, so never through a
//! link or into a file someone made ready) and renames it into place. The
//! service reads at most [`MAX_FILE_BYTES`] of a plain file (never through a
//! link, never waiting on a pipe), and a deadline more than [`MAX_SECONDS`]
//! away counts as [`MAX_SECONDS`]: nothing written there keeps `/health` at
//! 503 for longer than a command may ask.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::OFlags;

use crate::config::Vars;

pub const DEFAULT_CONTROL_DIR: &str = "/run/cloudpulse-instance";
/// The file `fail-health` writes: milliseconds since the Unix epoch.
pub const FAIL_HEALTH_FILE: &str = "fail-health-until";
/// Longest stress or health failure one command may ask for.
pub const MAX_SECONDS: u64 = 3_600;
/// The most of [`FAIL_HEALTH_FILE`] the service reads (a deadline is 13
/// digits); a longer file is not one `fail-health` wrote and fails nothing.
pub const MAX_FILE_BYTES: usize = 32;

/// The control directory the service and the commands share.
pub fn control_dir(vars: &Vars) -> PathBuf {
    PathBuf::from(vars.get("CONTROL_DIR").unwrap_or(DEFAULT_CONTROL_DIR))
}

/// How long health checks must still fail, if they must: never more than
/// [`MAX_SECONDS`], whatever the file says.
pub fn health_failing_for(dir: &Path) -> Option<Duration> {
    let text = read_control_file(&dir.join(FAIL_HEALTH_FILE))?;
    let until = Duration::from_millis(text.trim().parse().ok()?);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    until
        .checked_sub(now)
        .filter(|left| !left.is_zero())
        .map(|left| left.min(Duration::from_secs(MAX_SECONDS)))
}

/// The text of a plain file of at most [`MAX_FILE_BYTES`]; `None` for a
/// link, a pipe or device, a longer file, or one that is not text.
fn read_control_file(path: &Path) -> Option<String> {
    let file = OpenOptions::new()
        .read(true)
        // A FIFO put in its place must not hold /health waiting for a writer.
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::with_capacity(MAX_FILE_BYTES + 1);
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() > MAX_FILE_BYTES {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// Makes health checks fail until `seconds` (at most [`MAX_SECONDS`]) from
/// now. The file is replaced whole (written beside it under a fresh random
/// name, then renamed), so `/health` never reads half, and nothing already
/// in the directory (a link, a file made ready) is ever opened.
pub fn fail_health(dir: &Path, seconds: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let until = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(seconds.min(MAX_SECONDS));
    let text = format!("{}\n", until.as_millis());
    for _ in 0..16 {
        let partial = dir.join(format!(
            ".{FAIL_HEALTH_FILE}.{:016x}",
            rand::random::<u64>()
        ));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .mode(0o644)
            .open(&partial);
        let mut file = match opened {
            Ok(file) => file,
            // Someone guessed a random name: draw another.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        };
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&partial, dir.join(FAIL_HEALTH_FILE)));
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        return written;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "every temporary name tried in the control directory was taken",
    ))
}

/// Busies `workers` threads until `seconds` have passed; returns when done.
pub fn stress(seconds: u64, workers: usize) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..workers.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                while Instant::now() < deadline {
                    for _ in 0..100_000 {
                        // xorshift: work the optimiser cannot remove.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                    }
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

/// A chaos command read from the command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Stress {
        seconds: u64,
        workers: Option<usize>,
    },
    FailHealth {
        seconds: u64,
    },
}

/// Parses `stress --seconds N [--workers W]` or `fail-health --seconds N`
/// (the arguments after the program name). `Ok(None)`: not a chaos command.
pub fn parse(args: &[String]) -> Result<Option<Command>, String> {
    let Some((name, rest)) = args.split_first() else {
        return Ok(None);
    };
    let usage = match name.as_str() {
        "stress" => "usage: cloudpulse-instance stress --seconds N [--workers W]",
        "fail-health" => "usage: cloudpulse-instance fail-health --seconds N",
        _ => return Ok(None),
    };
    let mut seconds = None;
    let mut workers = None;
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {usage}"))?;
        match flag.as_str() {
            "--seconds" => {
                seconds = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|s| (1..=MAX_SECONDS).contains(s))
                        .ok_or_else(|| {
                            format!("--seconds must be a whole number from 1 to {MAX_SECONDS}, got {value:?}")
                        })?,
                );
            }
            "--workers" if name == "stress" => {
                workers = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|w| (1..=256).contains(w))
                        .ok_or_else(|| {
                            format!("--workers must be a whole number from 1 to 256, got {value:?}")
                        })?,
                );
            }
            other => return Err(format!("unknown option {other:?}; {usage}")),
        }
    }
    let seconds = seconds.ok_or_else(|| format!("--seconds is required; {usage}"))?;
    Ok(Some(match name.as_str() {
        "stress" => Command::Stress { seconds, workers },
        _ => Command::FailHealth { seconds },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn commands_parse_and_bad_ones_say_what_to_fix() {
        assert_eq!(parse(&args("")).unwrap(), None);
        assert_eq!(parse(&args("serve")).unwrap(), None);
        assert_eq!(
            parse(&args("stress --seconds 30")).unwrap(),
            Some(Command::Stress {
                seconds: 30,
                workers: None
            })
        );
        assert_eq!(
            parse(&args("stress --workers 2 --seconds 5")).unwrap(),
            Some(Command::Stress {
                seconds: 5,
                workers: Some(2)
            })
        );
        assert_eq!(
            parse(&args("fail-health --seconds 60")).unwrap(),
            Some(Command::FailHealth { seconds: 60 })
        );
        for (bad, says) in [
            ("stress", "--seconds is required"),
            ("stress --seconds", "needs a value"),
            ("stress --seconds 0", "from 1 to 3600"),
            ("stress --seconds 3601", "from 1 to 3600"),
            ("stress --seconds ten", "from 1 to 3600"),
            ("fail-health --seconds 5 --workers 2", "unknown option"),
            ("stress --seconds 5 --cpu 4", "unknown option"),
        ] {
            let error = parse(&args(bad)).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn failing_health_lasts_as_long_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(health_failing_for(dir.path()), None);
        fail_health(dir.path(), 30).unwrap();
        let left = health_failing_for(dir.path()).unwrap();
        assert!(left > Duration::from_secs(28) && left <= Duration::from_secs(30));
        // A deadline in the past, or a file that is not a number, fails nothing.
        std::fs::write(dir.path().join(FAIL_HEALTH_FILE), "1000\n").unwrap();
        assert_eq!(health_failing_for(dir.path()), None);
        std::fs::write(dir.path().join(FAIL_HEALTH_FILE), "soon").unwrap();
        assert_eq!(health_failing_for(dir.path()), None);
    }

    #[test]
    fn fail_health_writes_through_no_link_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // The service's user owns the directory; root runs the command.
        // A link where the old fixed temporary name was, to a file the
        // user may not write, must not be written through.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "root's own file\n").unwrap();
        let old_partial = dir.path().join(format!("{FAIL_HEALTH_FILE}.partial"));
        std::os::unix::fs::symlink(&victim, &old_partial).unwrap();
        fail_health(dir.path(), 30).unwrap();
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "root's own file\n"
        );
        let written = dir.path().join(FAIL_HEALTH_FILE);
        assert!(std::fs::symlink_metadata(&written).unwrap().is_file());
        assert!(health_failing_for(dir.path()).is_some());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                FAIL_HEALTH_FILE.to_string(),
                format!("{FAIL_HEALTH_FILE}.partial"),
                "victim".into()
            ]
        );
        // A link in place of the file itself is replaced, not followed.
        std::fs::remove_file(&written).unwrap();
        std::os::unix::fs::symlink(&victim, &written).unwrap();
        fail_health(dir.path(), 30).unwrap();
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "root's own file\n"
        );
        assert!(std::fs::symlink_metadata(&written).unwrap().is_file());
    }

    #[test]
    fn a_deadline_is_never_more_than_an_hour_away() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(MAX_SECONDS);
        // Written by hand (the service's user owns the directory).
        std::fs::write(dir.path().join(FAIL_HEALTH_FILE), "99999999999999999\n").unwrap();
        let left = health_failing_for(dir.path()).unwrap();
        assert!(left <= hour, "{left:?}");
        // Asked of the command: cut to the hour too.
        fail_health(dir.path(), u64::MAX / 2).unwrap();
        let left = health_failing_for(dir.path()).unwrap();
        assert!(
            left <= hour && left > hour - Duration::from_secs(60),
            "{left:?}"
        );
    }

    #[test]
    fn only_a_small_plain_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FAIL_HEALTH_FILE);
        let soon = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 60_000;
        // Longer than a deadline can be: not the command's file.
        std::fs::write(&path, format!("{}{soon}\n", " ".repeat(40))).unwrap();
        assert_eq!(health_failing_for(dir.path()), None);
        // A link to a file with a deadline in it is not followed.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, format!("{soon}\n")).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert_eq!(health_failing_for(dir.path()), None);
        // The same deadline in the file itself is.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, format!("{soon}\n")).unwrap();
        assert!(health_failing_for(dir.path()).is_some());
    }

    #[test]
    fn stress_keeps_a_cpu_busy_for_the_time_asked() {
        let started = Instant::now();
        let cpu = cpu_time();
        stress(1, 1);
        let wall = started.elapsed();
        let used = cpu_time() - cpu;
        assert!(wall >= Duration::from_secs(1), "{wall:?}");
        // Busy, not asleep: most of the second was spent on the CPU.
        assert!(
            used >= Duration::from_millis(500),
            "{used:?} of CPU in {wall:?}"
        );
    }

    /// This process's user and system CPU time, from /proc (in USER_HZ
    /// ticks, 100 a second on Linux).
    fn cpu_time() -> Duration {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }
}
