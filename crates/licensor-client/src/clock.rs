//! Detecting a clock set back. Offline licenses are only as good as the local clock, so the
//! product remembers the newest time it has seen (in a small state file) and refuses to run
//! when "now" falls well below it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::file::CLOCK_SKEW;
use crate::{Error, Result};

pub struct ClockGuard {
    path: PathBuf,
}

impl ClockGuard {
    /// A guard whose state lives in `path` (created on first use).
    pub fn new(path: impl AsRef<Path>) -> Self {
        ClockGuard { path: path.as_ref().to_path_buf() }
    }

    /// The newest instant seen so far, if any. A state file that cannot be read as one is
    /// treated as a clock set back: garbling it must not lift the guard. (Deleting it does:
    /// the guard is best-effort, its state lives where the customer can reach it.)
    pub fn newest_seen(&self) -> Result<Option<DateTime<Utc>>> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => s
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .map(Some)
                .ok_or(Error::ClockRollback),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io(e.to_string())),
        }
    }

    /// Records `instant` (a local "now", or the issue time of a verified file) and fails if
    /// `now` is more than [`CLOCK_SKEW`] older than anything seen before.
    pub fn observe(&self, now: DateTime<Utc>, instant: DateTime<Utc>) -> Result<()> {
        let newest = self.newest_seen()?;
        if newest.is_some_and(|n| now + CLOCK_SKEW < n) || instant > now + CLOCK_SKEW {
            return Err(Error::ClockRollback);
        }
        let keep = newest.map_or(instant.max(now), |n| n.max(instant).max(now));
        if newest != Some(keep) {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::Io(e.to_string()))?;
            }
            std::fs::write(&self.path, keep.timestamp().to_string()).map_err(|e| Error::Io(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_clock_set_back_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let guard = ClockGuard::new(dir.path().join("clock"));
        let now = Utc::now();
        guard.observe(now, now).unwrap();
        guard.observe(now + Duration::days(1), now + Duration::days(1)).unwrap();
        // A day back from the newest time seen: rolled back.
        assert_eq!(guard.observe(now, now), Err(Error::ClockRollback));
        // A file issued in the future of the local clock: rolled back too.
        let fresh = ClockGuard::new(dir.path().join("other"));
        assert_eq!(fresh.observe(now, now + Duration::hours(2)), Err(Error::ClockRollback));
        // Small drift is tolerated.
        guard.observe(now + Duration::days(1) - Duration::minutes(1), now).unwrap();
    }

    #[test]
    fn garbled_state_is_a_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        let guard = ClockGuard::new(&path);
        let now = Utc::now();
        guard.observe(now, now).unwrap();
        std::fs::write(&path, "not a time").unwrap();
        assert_eq!(guard.observe(now, now), Err(Error::ClockRollback));
    }
}
