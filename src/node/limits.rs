//! The leader's per-principal rate limits: a token bucket per principal and
//! kind of command, checked before a command is sequenced (see
//! [`StateMachine::rate_limit`]). Shared by every connection to the leader,
//! whatever node a request came through, since every write comes to it.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::replication::StateMachine;
use crate::transport::ServiceError;

/// Principals tracked at once: past it, buckets that refilled (idle for a
/// second or more) are dropped; if that is not enough, a new principal goes
/// unlimited until room is made, rather than costing memory without bound.
/// A new principal starts with a full bucket anyway, so this gives a flood
/// of names nothing it would not get.
const MAX_TRACKED: usize = 100_000;

pub(super) struct RateLimiter<M: StateMachine> {
    settings: M::Settings,
    /// By kind, then by principal.
    buckets: Mutex<FxHashMap<&'static str, FxHashMap<String, Bucket>>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// The bucket refilled up to `now`, at `per_second` up to as many.
    fn refilled(self, per_second: f64, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        Bucket { tokens: (self.tokens + elapsed * per_second).min(per_second), at: now }
    }
}

impl<M: StateMachine> RateLimiter<M> {
    pub fn new(settings: M::Settings) -> Self {
        RateLimiter { settings, buckets: Mutex::default() }
    }

    /// Takes a token for `command` at `now`, or says how long until one is
    /// there.
    pub fn admit(&self, command: &M::Command, now: Instant) -> Result<(), ServiceError> {
        let Some(limit) = M::rate_limit(command, &self.settings) else { return Ok(()) };
        if limit.per_second == 0 {
            return Ok(());
        }
        let per_second = f64::from(limit.per_second);
        let mut kinds = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let buckets = kinds.entry(limit.kind).or_default();
        let bucket = match buckets.get_mut(limit.principal) {
            Some(bucket) => bucket,
            None => {
                if buckets.len() >= MAX_TRACKED {
                    buckets.retain(|_, bucket| bucket.refilled(per_second, now).tokens < per_second);
                    if buckets.len() >= MAX_TRACKED {
                        return Ok(());
                    }
                }
                buckets.entry(limit.principal.to_string()).or_insert(Bucket { tokens: per_second, at: now })
            }
        };
        *bucket = bucket.refilled(per_second, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let retry_after = Duration::from_secs_f64((1.0 - bucket.tokens) / per_second);
        Err(ServiceError::RateLimited {
            kind: limit.kind,
            principal: limit.principal.to_string(),
            per_second: limit.per_second,
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::machine::AuctionSettings;
    use crate::auction::{AuctionBook, Bid, Command};

    fn bid(bidder: &str) -> Command {
        Command::Bid(Bid {
            name_digest: None,
            auction_id: String::new(),
            bidder: bidder.into(),
            amount: 1,
            client_id: String::new(),
            request_id: 0,
            at_unix_ms: 0,
        })
    }

    #[test]
    fn a_principal_gets_its_rate_and_a_burst_of_as_many_and_others_are_apart() {
        let settings = AuctionSettings { max_bids_per_second: 10, ..AuctionSettings::default() };
        let limiter = RateLimiter::<AuctionBook>::new(settings);
        let start = Instant::now();
        for _ in 0..10 {
            limiter.admit(&bid("ann"), start).expect("within the burst");
        }
        let Err(ServiceError::RateLimited { retry_after, .. }) = limiter.admit(&bid("ann"), start) else {
            panic!("the 11th bid in the same instant is refused")
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(100), "{retry_after:?}");
        limiter.admit(&bid("bob"), start).expect("another principal has a bucket of its own");
        limiter.admit(&bid("ann"), start + Duration::from_millis(100)).expect("a token back after 1/10 s");
        assert!(limiter.admit(&bid("ann"), start + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn without_a_rate_nothing_is_limited_or_tracked() {
        let settings = AuctionSettings { max_bids_per_second: 0, ..AuctionSettings::default() };
        let limiter = RateLimiter::<AuctionBook>::new(settings);
        let now = Instant::now();
        for _ in 0..1000 {
            limiter.admit(&bid("ann"), now).expect("no limit");
        }
        assert!(limiter.buckets.lock().unwrap().is_empty());
    }
}
