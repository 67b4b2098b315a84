//! Browser sessions and the sign-in throttle.
//!
//! Signing in at `/login` makes a session: 32 random bytes in an HttpOnly,
//! SameSite=Strict cookie, of which the database keeps only the SHA-256
//! (table `sessions`). A session lasts `--session-hours` (12 by default)
//! from its last use, so it survives a restart of the portal but not a new
//! access token; logout deletes it on the server, so a copied cookie dies
//! too. Failed attempts (a wrong token at `/login` or in a bearer header)
//! are counted per client address: after [`MAX_FAILURES`] within
//! [`WINDOW`], that address is answered 429 with `Retry-After` until the
//! oldest of them is a window old.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::db::ServerDb;

/// Failed attempts one address may make within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The throttle's window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; beyond, those with no recent failure go first.
const MAX_TRACKED: usize = 10_000;
/// A session's expiry moves forward at most this often, not at every request.
const SLIDE_EVERY: i64 = 60;

/// The sessions of one access token.
#[derive(Clone, Debug)]
pub struct Sessions {
    db: ServerDb,
    /// Which token these sessions belong to (an HMAC of it, hex).
    token_tag: String,
    lifetime: Duration,
}

/// A valid session, and whether its cookie should be set again because
/// its expiry moved.
#[derive(Debug, PartialEq, Eq)]
pub enum Session {
    Valid,
    Slid,
}

fn digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Sessions {
    pub fn new(db: ServerDb, token_tag: String, lifetime: Duration) -> Self {
        Sessions {
            db,
            token_tag,
            lifetime,
        }
    }

    /// The lifetime, as the cookie's `Max-Age`.
    pub fn max_age(&self) -> u64 {
        self.lifetime.as_secs()
    }

    fn lifetime_secs(&self) -> i64 {
        i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX / 2)
    }

    /// Makes a session and returns the cookie's value. Expired sessions
    /// are deleted on the way.
    pub async fn create(&self) -> Result<String, sqlx::Error> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = unix_now();
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?1")
            .bind(now)
            .execute(self.db.pool())
            .await?;
        sqlx::query(
            "INSERT INTO sessions (id_sha256, token_tag, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(digest(&value))
        .bind(&self.token_tag)
        .bind(now)
        .bind(now + self.lifetime_secs())
        .execute(self.db.pool())
        .await?;
        Ok(value)
    }

    /// Whether `value` is a live session of this token; its expiry slides
    /// forward when it was last moved over a minute ago.
    pub async fn check(&self, value: &str) -> Result<Option<Session>, sqlx::Error> {
        let id = digest(value);
        let expires: Option<(i64,)> = sqlx::query_as(
            "SELECT expires_at FROM sessions WHERE id_sha256 = ?1 AND token_tag = ?2",
        )
        .bind(&id)
        .bind(&self.token_tag)
        .fetch_optional(self.db.pool())
        .await?;
        let now = unix_now();
        let Some((expires_at,)) = expires else {
            return Ok(None);
        };
        if expires_at <= now {
            return Ok(None);
        }
        let fresh = now + self.lifetime_secs();
        if fresh - expires_at < SLIDE_EVERY {
            return Ok(Some(Session::Valid));
        }
        sqlx::query("UPDATE sessions SET expires_at = ?2 WHERE id_sha256 = ?1")
            .bind(&id)
            .bind(fresh)
            .execute(self.db.pool())
            .await?;
        Ok(Some(Session::Slid))
    }

    /// Ends the session `value`, if there is one.
    pub async fn end(&self, value: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM sessions WHERE id_sha256 = ?1")
            .bind(digest(value))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}

/// Failed sign-in attempts per client address, in memory.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// One client for the throttle: an IPv4 address, or an IPv6 /64 (one
/// machine can hold a whole /64).
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Throttle {
    /// How long `ip` must wait before it may try again, if it must.
    pub fn wait(&self, ip: IpAddr) -> Option<Duration> {
        self.wait_at(ip, Instant::now())
    }

    fn wait_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let times = failures.get_mut(&bucket(ip))?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        if times.len() < MAX_FAILURES {
            return None;
        }
        let oldest = *times.front()?;
        Some(
            (oldest + WINDOW)
                .saturating_duration_since(now)
                .max(Duration::from_secs(1)),
        )
    }

    /// Counts a failed attempt of `ip`.
    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, Instant::now());
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
            if failures.len() >= MAX_TRACKED {
                // A flood from more addresses than that: forget the oldest half.
                let mut lasts: Vec<Instant> = failures
                    .values()
                    .filter_map(|t| t.back().copied())
                    .collect();
                lasts.sort();
                let cut = lasts[lasts.len() / 2];
                failures.retain(|_, times| times.back().is_some_and(|t| *t > cut));
            }
        }
        let times = failures.entry(bucket(ip)).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_a_minute_then_a_wait_until_the_oldest_is_a_minute_old() {
        let throttle = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        for n in 0..MAX_FAILURES as u64 {
            assert_eq!(throttle.wait_at(ip, start + Duration::from_secs(n)), None);
            throttle.failed_at(ip, start + Duration::from_secs(n));
        }
        let wait = throttle
            .wait_at(ip, start + Duration::from_secs(10))
            .unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(throttle.wait_at(other, start), None, "per address");
        assert!(throttle
            .wait_at(ip, start + WINDOW - Duration::from_millis(1))
            .is_some());
        assert_eq!(
            throttle.wait_at(ip, start + WINDOW),
            None,
            "the oldest has left the window"
        );
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(bucket(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_table_of_addresses_stays_bounded() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for n in 0..(MAX_TRACKED as u32 + 100) {
            throttle.failed_at(
                IpAddr::V4(n.into()),
                now + Duration::from_millis(u64::from(n)),
            );
        }
        assert!(throttle.failures.lock().unwrap().len() <= MAX_TRACKED);
    }
}
