//! Abuse limits: how fast one API key may append, and how often one
//! account or one address may try to log in.
//!
//! A token bucket per key (governor's GCRA): `per_second` events refill it,
//! `burst` is its size, and a batch takes one token per event. A caller
//! over its limit gets [`ServiceError::RateLimited`] with the wait before
//! the request would fit; nothing of that request is stored. Only keys that
//! authenticated are tracked, so the table is bounded by the keys that
//! exist. Appends the server makes itself (the `audit.read` of a read) are
//! not limited.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ServiceError;
use crate::crypto::ApiKeyId;
use crate::service::events::MAX_BATCH;

/// Default events per second per key.
pub const DEFAULT_PER_SECOND: u32 = 10_000;
/// Default bucket size per key, in events.
pub const DEFAULT_BURST: u32 = 20_000;

/// The configured ingest limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimit {
    /// Sustained events per second per key; 0 turns the limit off.
    pub per_second: u32,
    /// Most events a key may post at once after a pause; at least the
    /// largest batch, so that every valid batch can pass.
    pub burst: u32,
}

impl Default for IngestLimit {
    fn default() -> IngestLimit {
        IngestLimit {
            per_second: DEFAULT_PER_SECOND,
            burst: DEFAULT_BURST,
        }
    }
}

/// Why a limit cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the ingest burst ({0}) must be at least the largest batch, {MAX_BATCH} events")]
pub struct BurstTooSmall(u32);

/// Per-key ingest limiter, shared by every worker of a process.
#[derive(Clone)]
pub struct IngestLimiter {
    limiter: Option<Arc<DefaultKeyedRateLimiter<ApiKeyId>>>,
}

impl IngestLimiter {
    /// A limiter enforcing `limit` (none when `per_second` is 0).
    pub fn new(limit: IngestLimit) -> Result<IngestLimiter, BurstTooSmall> {
        let Some(per_second) = NonZeroU32::new(limit.per_second) else {
            return Ok(IngestLimiter::unlimited());
        };
        let burst = NonZeroU32::new(limit.burst)
            .filter(|b| b.get() as usize >= MAX_BATCH)
            .ok_or(BurstTooSmall(limit.burst))?;
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Ok(IngestLimiter {
            limiter: Some(Arc::new(RateLimiter::keyed(quota))),
        })
    }

    /// No limit.
    pub fn unlimited() -> IngestLimiter {
        IngestLimiter { limiter: None }
    }

    /// Takes `events` tokens from `key`'s bucket, or says how long to wait.
    pub fn check(&self, key: ApiKeyId, events: usize) -> Result<(), ServiceError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let n = u32::try_from(events.max(1))
            .ok()
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(&key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(ServiceError::RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            }),
            // More than the burst: cannot happen for a valid batch (the
            // burst is at least the largest batch); say when it could.
            Err(_) => Err(ServiceError::RateLimited {
                retry_after: Duration::from_secs(1),
            }),
        }
    }
}

/// Default login attempts per minute for one account (email).
pub const DEFAULT_LOGINS_PER_ACCOUNT: u32 = 10;
/// Default login attempts per minute from one IP address.
pub const DEFAULT_LOGINS_PER_IP: u32 = 60;

/// How many login (and re-authentication) attempts are allowed per minute,
/// per account and per client address. Each is also the burst: a whole
/// minute's attempts may come at once, then one more per interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimit {
    /// Attempts per minute for one email; 0: no limit.
    pub per_account: u32,
    /// Attempts per minute from one IP address; 0: no limit.
    pub per_ip: u32,
}

impl Default for LoginLimit {
    fn default() -> LoginLimit {
        LoginLimit {
            per_account: DEFAULT_LOGINS_PER_ACCOUNT,
            per_ip: DEFAULT_LOGINS_PER_IP,
        }
    }
}

type Keyed<K> = Option<Arc<DefaultKeyedRateLimiter<K>>>;

/// Login attempt limiter, shared by every worker of a process. Attempts
/// count whether they succeed or not, before the password is checked, so
/// a guesser is slowed whatever it guesses.
#[derive(Clone)]
pub struct LoginLimiter {
    accounts: Keyed<String>,
    addresses: Keyed<std::net::IpAddr>,
}

fn per_minute<K: std::hash::Hash + Eq + Clone>(n: u32) -> Keyed<K> {
    NonZeroU32::new(n).map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n))))
}

fn take<K: std::hash::Hash + Eq + Clone>(limiter: &Keyed<K>, key: &K) -> Result<(), ServiceError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    if limiter.len() > 100_000 {
        // Forget keys whose buckets are full again: the table stays bounded
        // whatever emails a guesser tries.
        limiter.retain_recent();
    }
    limiter
        .check_key(key)
        .map_err(|not_until| ServiceError::RateLimited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
}

impl LoginLimiter {
    /// A limiter enforcing `limit`.
    pub fn new(limit: LoginLimit) -> LoginLimiter {
        LoginLimiter {
            accounts: per_minute(limit.per_account),
            addresses: per_minute(limit.per_ip),
        }
    }

    /// Counts one attempt for `account` (a normalised email) from `ip`.
    pub fn check(&self, account: &str, ip: Option<std::net::IpAddr>) -> Result<(), ServiceError> {
        if let Some(ip) = ip {
            take(&self.addresses, &ip)?;
        }
        take(&self.accounts, &account.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn key() -> ApiKeyId {
        ApiKeyId::from_uuid(Uuid::new_v4())
    }

    #[test]
    fn a_key_may_post_its_burst_then_is_told_to_wait() {
        let limiter = IngestLimiter::new(IngestLimit {
            per_second: 1,
            burst: 1000,
        })
        .unwrap();
        let (a, b) = (key(), key());
        limiter.check(a, 1000).unwrap();
        match limiter.check(a, 1) {
            Err(ServiceError::RateLimited { retry_after }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        // Another key has its own bucket.
        limiter.check(b, 1000).unwrap();
    }

    #[test]
    fn a_burst_below_the_largest_batch_is_refused_and_zero_means_off() {
        assert!(
            IngestLimiter::new(IngestLimit {
                per_second: 10,
                burst: 999,
            })
            .is_err()
        );
        let off = IngestLimiter::new(IngestLimit {
            per_second: 0,
            burst: 0,
        })
        .unwrap();
        for _ in 0..100 {
            off.check(key(), 1000).unwrap();
        }
    }
}
