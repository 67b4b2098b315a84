//! The faithful layer's record on disk, so that a restarted sandbox still
//! knows what AWS would still know.
//!
//! AWS keeps a group's scaling activities for six weeks, an alarm's history
//! for two, a cooldown runs on however the caller restarts, and a load
//! balancer that was `active` before a restart is `active` after it. moto
//! keeps its own state across restarts (see `crate::moto`); this keeps the
//! rest: every scaling activity, each group's last known instances and
//! running cooldown, the alarm history, and when the gateway first saw each
//! slow resource (so its `provisioning` is not replayed). It is one JSON
//! file, written whole to a temporary file beside it and renamed over it
//! (atomic on one file system) after every change; a file that cannot be
//! read is renamed `*.unreadable` and the record starts empty, as moto's
//! state does.
//!
//! Instants do not survive a restart, so clocks are kept as wall-clock
//! times: a cooldown as the moment it ends, a first sighting as the moment
//! it happened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::alarms::AlarmHistoryItem;
use super::scaling::ScalingActivity;

/// The record as written: versioned, so a later layout can tell.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Saved {
    pub version: u32,
    pub activities: Vec<ScalingActivity>,
    /// Group name → (ARN, instance id → zone).
    pub known: BTreeMap<String, (Option<String>, BTreeMap<String, String>)>,
    /// Group name → (when its cooldown ends, the activity it names).
    pub cooldowns: BTreeMap<String, (DateTime<Utc>, String)>,
    pub history: Vec<AlarmHistoryItem>,
    /// Resource id → when the gateway first saw it.
    pub first_seen: BTreeMap<String, DateTime<Utc>>,
}

pub(super) const VERSION: u32 = 1;

/// `instant` as a wall-clock time, `now`/`wall_now` being the same moment.
pub(super) fn to_wall(instant: Instant, now: Instant, wall_now: DateTime<Utc>) -> DateTime<Utc> {
    let offset = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    if instant >= now {
        wall_now + offset(instant - now)
    } else {
        wall_now - offset(now - instant)
    }
}

/// A wall-clock time as an instant of this process, clamped to what an
/// instant can hold.
pub(super) fn from_wall(wall: DateTime<Utc>, now: Instant, wall_now: DateTime<Utc>) -> Instant {
    match (wall - wall_now).to_std() {
        Ok(ahead) => now + ahead,
        Err(_) => {
            let behind = (wall_now - wall).to_std().unwrap_or_default();
            now.checked_sub(behind).unwrap_or(now)
        }
    }
}

/// Where the record lives.
#[derive(Debug)]
pub(super) struct RecordFile {
    path: PathBuf,
}

impl RecordFile {
    pub fn new(path: &Path) -> RecordFile {
        RecordFile {
            path: path.to_path_buf(),
        }
    }

    /// What the file holds; empty when there is none, and when it cannot be
    /// read (then kept aside as `*.unreadable`).
    pub fn load(&self) -> Saved {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Saved::default(),
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the gateway's record; starting empty");
                return Saved::default();
            }
        };
        match serde_json::from_slice::<Saved>(&text) {
            Ok(saved) if saved.version == VERSION => saved,
            outcome => {
                let aside = self.path.with_extension("json.unreadable");
                tracing::warn!(path = %self.path.display(), aside = %aside.display(), error = ?outcome.err(), "the gateway's record is not readable; kept aside, starting empty");
                let _ = std::fs::rename(&self.path, aside);
                Saved::default()
            }
        }
    }

    /// Writes `saved` whole, atomically.
    pub fn store(&self, saved: &Saved) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
        let temporary = self.path.with_extension("json.tmp");
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_cross_to_wall_time_and_back() {
        let now = Instant::now();
        let wall_now = Utc::now();
        for offset in [Duration::ZERO, Duration::from_secs(90)] {
            let later = now + offset;
            let back = from_wall(to_wall(later, now, wall_now), now, wall_now);
            assert!(back.max(later) - back.min(later) < Duration::from_millis(1));
        }
        let earlier = now.checked_sub(Duration::from_secs(30)).unwrap_or(now);
        let wall = to_wall(earlier, now, wall_now);
        assert!((wall_now - wall).num_seconds() <= 30);
    }

    #[test]
    fn a_record_round_trips_and_a_bad_one_is_kept_aside() {
        let dir = std::env::temp_dir().join(format!("cloudpulse-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = RecordFile::new(&dir.join("gateway.json"));
        assert!(file.load().activities.is_empty(), "no file: empty");
        let mut saved = Saved {
            version: VERSION,
            ..Saved::default()
        };
        saved.first_seen.insert(
            "arn:lb".into(),
            DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        );
        file.store(&saved).unwrap();
        assert_eq!(file.load().first_seen, saved.first_seen);
        std::fs::write(dir.join("gateway.json"), b"{not json").unwrap();
        assert!(file.load().first_seen.is_empty());
        assert!(dir.join("gateway.json.unreadable").is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
