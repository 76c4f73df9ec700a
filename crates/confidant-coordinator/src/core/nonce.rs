//! One-time nonces for activations.
//!
//! A nonce is `expiry (8 bytes, big-endian unix seconds) ‖ random (8) ‖ tag (16)`, where the tag
//! is HMAC-SHA-256 under a key that lives only in this process, truncated to 16 bytes. Issuing
//! one stores nothing; accepting one checks the tag and the expiry and then records it as used
//! until it expires, so each nonce is accepted at most once. A restart forgets the key, so
//! nonces of an earlier process are refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;

use super::error::{CoreError, CoreResult, ErrorCode};

/// Length of a nonce in bytes.
pub const NONCE_LEN: usize = 32;
/// How long a nonce is accepted after it was issued.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// Nonces spent and not yet expired, and when to sweep the expired ones out.
#[derive(Default)]
struct Used {
    spent: HashMap<[u8; NONCE_LEN], u64>,
    /// Sweep when `spent` grows past this: twice its size after the last sweep (at least
    /// 4096), so sweeping costs O(1) amortized per nonce.
    sweep_at: usize,
}

/// Issues and consumes activation nonces.
pub struct NonceBook {
    key: hmac::Key,
    used: Mutex<Used>,
    random: super::Random,
}

impl std::fmt::Debug for NonceBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceBook").finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn nonce_error(message: String) -> CoreError {
    CoreError::new(ErrorCode::Nonce, Some("nonce"), message)
}

impl NonceBook {
    /// A book with a fresh key from `random`.
    pub fn new(random: super::Random) -> CoreResult<NonceBook> {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        super::random::fill(random.as_ref(), key.as_mut())?;
        Ok(NonceBook {
            key: hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()),
            used: Mutex::new(Used::default()),
            random,
        })
    }

    /// A fresh nonce, valid for [`NONCE_LIFETIME`] from `now`.
    pub fn issue(&self, now: SystemTime) -> CoreResult<[u8; NONCE_LEN]> {
        let mut n = [0u8; NONCE_LEN];
        let expiry = unix(now) + NONCE_LIFETIME.as_secs();
        n[..8].copy_from_slice(&expiry.to_be_bytes());
        super::random::fill(self.random.as_ref(), &mut n[8..16])?;
        let tag = hmac::sign(&self.key, &n[..16]);
        n[16..].copy_from_slice(&tag.as_ref()[..16]);
        Ok(n)
    }

    /// Accepts `nonce` once: it must be one this book issued, unexpired at `now`, and unused.
    pub fn consume(&self, nonce: &[u8], now: SystemTime) -> CoreResult<()> {
        let n: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| {
            nonce_error(format!(
                "expected a {NONCE_LEN}-byte nonce from POST /api/v1/nonce, got {} bytes",
                nonce.len()
            ))
        })?;
        let tag = hmac::sign(&self.key, &n[..16]);
        // Constant-time comparison of the tag (ring::constant_time is deprecated in favour of
        // hmac::verify, which needs the full tag; compare the truncated tag by folding).
        let diff = tag.as_ref()[..16]
            .iter()
            .zip(&n[16..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(nonce_error(
                "expected a nonce issued by this coordinator process, got an unknown one (forged, or issued before a restart)".into(),
            ));
        }
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&n[..8]);
        let expiry = u64::from_be_bytes(exp);
        let now_s = unix(now);
        if now_s > expiry {
            return Err(nonce_error(format!(
                "expected a nonce issued within the last {} s, got one that expired {} s ago (stale evidence is not accepted)",
                NONCE_LIFETIME.as_secs(),
                now_s - expiry
            )));
        }
        let mut used = self
            .used
            .lock()
            .map_err(|_| CoreError::internal("nonce book lock poisoned"))?;
        if used.spent.len() >= used.sweep_at.max(4096) {
            used.spent.retain(|_, e| *e >= now_s);
            used.sweep_at = used.spent.len() * 2;
        }
        if used.spent.insert(n, expiry).is_some() {
            return Err(nonce_error(
                "expected an unused nonce, got one already used by an earlier activation (replayed evidence)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_accepted_once_and_not_after_expiry() {
        let book = NonceBook::new(super::super::system_random()).unwrap();
        let now = SystemTime::now();
        let n = book.issue(now).unwrap();
        book.consume(&n, now).unwrap();
        let again = book.consume(&n, now).unwrap_err();
        assert!(again.message.contains("already used"), "{again}");
        let n2 = book.issue(now).unwrap();
        let late = book
            .consume(&n2, now + NONCE_LIFETIME + Duration::from_secs(2))
            .unwrap_err();
        assert!(late.message.contains("expired"), "{late}");
    }

    #[test]
    fn forged_or_foreign_nonces_are_refused() {
        let a = NonceBook::new(super::super::system_random()).unwrap();
        let b = NonceBook::new(super::super::system_random()).unwrap();
        let now = SystemTime::now();
        let mut n = a.issue(now).unwrap();
        assert!(b.consume(&n, now).is_err());
        n[0] ^= 1;
        assert!(a.consume(&n, now).is_err());
        assert!(a.consume(&n[..16], now).is_err());
    }
}
