//! The gateway's records on disk, so that a restarted sandbox still knows
//! what AWS would still know.
//!
//! AWS keeps a group's scaling activities for six weeks, an alarm's history
//! for two, a cooldown runs on however the caller restarts, a load balancer
//! that was `active` before a restart is `active` after it, and a NAT
//! gateway that was `pending` finishes its pending time. moto keeps its own
//! state across restarts (see `crate::moto`); the faithful layer's record
//! keeps the rest of it (every scaling activity, each group's last known
//! instances and running cooldown, the alarm history, when the gateway
//! first saw each slow resource) and the strict layer's keeps its clocks
//! (`super::strict`). Each is one JSON file, written whole to a temporary
//! file beside it, flushed, and renamed over it (atomic on one file system)
//! after every change, so a process killed at any moment leaves the old
//! record or the new one; a file that cannot be parsed is renamed
//! `*.unreadable` and the record starts empty, as moto's state does. The
//! files live in moto's state folder and pass the same checks: the folder
//! this user's, mode 0700, each file a plain file of this user's, 0600.
//!
//! Instants do not survive a restart, so clocks are kept as wall-clock
//! times: a cooldown as the moment it ends, a first sighting as the moment
//! it happened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
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
    /// Every instance refresh, oldest first (a record written before
    /// refreshes were kept has none).
    #[serde(default)]
    pub refreshes: Vec<super::refresh::InstanceRefresh>,
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

/// A record that is there but may not be trusted: it is not read, and the
/// sandbox does not start, as with moto's own state (see `crate::moto`).
#[derive(Debug, thiserror::Error)]
#[error("the sandbox's gateway record {path} is not safe to read: {reason}")]
pub struct UnsafeRecord {
    pub path: PathBuf,
    pub reason: String,
}

/// Where a record lives: one JSON file in a folder of this user's that
/// nobody else may open (moto's state folder), written 0600.
#[derive(Debug)]
pub(crate) struct RecordFile {
    path: PathBuf,
}

impl RecordFile {
    pub fn new(path: &Path) -> RecordFile {
        RecordFile {
            path: path.to_path_buf(),
        }
    }

    /// What the file holds, if it holds a record of `version`: `None` when
    /// there is none, and when it cannot be parsed (then it is kept aside as
    /// `*.unreadable`). A folder or file another user could have written
    /// (a link, another owner, open to others) is refused, not read.
    pub fn load<T: DeserializeOwned>(&self, version: u32) -> Result<Option<T>, UnsafeRecord> {
        let unsafe_record = |reason: String| UnsafeRecord {
            path: self.path.clone(),
            reason,
        };
        if let Some(dir) = self.path.parent() {
            crate::moto::own_private_folder(dir).map_err(|e| unsafe_record(e.to_string()))?;
        }
        let Some(text) = self.read_own().map_err(unsafe_record)? else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let parsed = serde_json::from_slice::<Version>(&text)
            .map_err(|e| e.to_string())
            .and_then(|v| {
                if v.version == version {
                    serde_json::from_slice::<T>(&text).map_err(|e| e.to_string())
                } else {
                    Err(format!(
                        "version {}, this sandbox reads {version}",
                        v.version
                    ))
                }
            });
        match parsed {
            Ok(saved) => Ok(Some(saved)),
            Err(error) => {
                let aside = self.sibling("unreadable");
                tracing::warn!(path = %self.path.display(), aside = %aside.display(), %error, "the gateway's record is not readable; kept aside, starting empty");
                let _ = std::fs::rename(&self.path, aside);
                Ok(None)
            }
        }
    }

    /// The file's bytes, read only if it is a plain file of this user's
    /// that nobody else may open, and not through a link.
    fn read_own(&self) -> Result<Option<Vec<u8>>, String> {
        use std::io::Read;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(&self.path);
        let mut file = match opened {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(format!(
                    "cannot open it ({error}); a link is refused: remove it, or point the \
                     sandbox at another database"
                ))
            }
        };
        let metadata = file.metadata().map_err(|e| e.to_string())?;
        if !metadata.file_type().is_file() {
            return Err("it is not a plain file; remove it".into());
        }
        let me = rustix::process::geteuid().as_raw();
        if metadata.uid() != me {
            return Err(format!(
                "it belongs to user {}, not to this user ({me}); remove it, or point the \
                 sandbox at another database",
                metadata.uid()
            ));
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "it is open to other users (mode {mode:04o}); run `chmod 600 {}`",
                self.path.display()
            ));
        }
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(|e| e.to_string())?;
        Ok(Some(text))
    }

    /// Writes `saved` whole and atomically: to a temporary file beside the
    /// record (0600, flushed to disk), then renamed over it, so a process
    /// killed at any moment leaves the old record or the new one.
    pub fn store<T: Serialize>(&self, saved: &T) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let text = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
        let temporary = self.sibling("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&temporary)?;
        // One left by a crash keeps its old mode: make it ours again.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)
    }

    /// `<record>.<suffix>`, beside the record.
    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".");
        name.push(suffix);
        self.path.with_file_name(name)
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
        assert!(file.load::<Saved>(VERSION).unwrap().is_none(), "no file");
        let mut saved = Saved {
            version: VERSION,
            ..Saved::default()
        };
        saved.first_seen.insert(
            "arn:lb".into(),
            DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        );
        file.store(&saved).unwrap();
        let back: Saved = file.load(VERSION).unwrap().unwrap();
        assert_eq!(back.first_seen, saved.first_seen);
        assert!(
            file.load::<Saved>(VERSION + 1).unwrap().is_none(),
            "another version is not read"
        );
        assert!(dir.join("gateway.json.unreadable").is_file());
        file.store(&saved).unwrap();
        std::fs::write(dir.join("gateway.json"), b"{not json").unwrap();
        assert!(file.load::<Saved>(VERSION).unwrap().is_none());
        assert!(!dir.join("gateway.json").exists(), "kept aside");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_record_others_could_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("cloudpulse-record-unsafe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("gateway.json");
        let file = RecordFile::new(&path);
        file.load::<Saved>(VERSION).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "the folder is made private");
        file.store(&Saved {
            version: VERSION,
            ..Saved::default()
        })
        .unwrap();
        assert_eq!(mode(&path), 0o600, "the record is written private");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let refused = file.load::<Saved>(VERSION).unwrap_err();
        assert!(refused.reason.contains("chmod 600"), "{refused}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere.json"), &path).unwrap();
        let refused = file.load::<Saved>(VERSION).unwrap_err();
        assert!(refused.reason.contains("link"), "{refused}");
        std::fs::remove_file(&path).unwrap();

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let refused = file.load::<Saved>(VERSION).unwrap_err();
        assert!(refused.reason.contains("chmod 700"), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
