//! Recovery while the state cannot be unsealed: owners' decrypted shares are collected until
//! the threshold, then combined into the data key that reopens the state. Whoever reopens it
//! (the server: open the store with the key, seal it anew) reports back whether the key fit;
//! if not, every share is discarded and collection starts over.

use crate::recovery::{Share, combine};
use crate::store::DataKey;

use super::error::{CoreError, ErrorCode};

/// Why a share was not taken, or the shares did not combine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    /// No `recovery.json` was kept for this state: nothing can recover it.
    #[error(
        "no recovery shares were kept for this state (recovery.json is missing): it cannot be recovered"
    )]
    NotRecoverable,
    /// The share's owner already sent it.
    #[error("share {0} was already received")]
    Duplicate(u8),
    /// The shares do not combine into a key.
    #[error("{0}")]
    Combine(String),
    /// The combined key does not open the state; every share was discarded.
    #[error("the recombined key does not open the state ({0}); all received shares were discarded")]
    WrongKey(String),
}

impl From<RecoverError> for CoreError {
    fn from(e: RecoverError) -> CoreError {
        let (code, field) = match &e {
            RecoverError::NotRecoverable => (ErrorCode::WrongState, None),
            RecoverError::Duplicate(_) => (ErrorCode::Conflict, Some("share")),
            RecoverError::Combine(_) | RecoverError::WrongKey(_) => {
                (ErrorCode::Share, Some("share"))
            }
        };
        CoreError::new(code, field, e.to_string())
    }
}

/// Where collection stands after a share.
#[derive(Debug)]
pub enum Collected {
    /// More shares are needed.
    Waiting {
        /// Distinct shares received so far.
        received: usize,
        /// Shares needed.
        threshold: u32,
    },
    /// The threshold is reached: the combined data key, to reopen the state with (then
    /// [`ShareCollector::key_did_not_fit`] if it did not).
    Key(DataKey),
}

/// The decrypted shares received while the state cannot be unsealed.
#[derive(Default)]
pub struct ShareCollector {
    threshold: Option<u32>,
    received: Vec<Share>,
}

impl std::fmt::Debug for ShareCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ShareCollector({} of {:?})",
            self.received.len(),
            self.threshold
        )
    }
}

impl ShareCollector {
    /// A collector for `threshold` shares (`None`: no `recovery.json`, nothing recovers).
    pub fn new(threshold: Option<u32>) -> ShareCollector {
        ShareCollector {
            threshold,
            received: Vec::new(),
        }
    }

    /// Shares needed, if the state can be recovered at all.
    pub fn threshold(&self) -> Option<u32> {
        self.threshold
    }

    /// Distinct shares received so far.
    pub fn received(&self) -> usize {
        self.received.len()
    }

    /// Takes one owner's share; at the threshold, combines them all.
    pub fn add(&mut self, share: Share) -> Result<Collected, RecoverError> {
        let threshold = self.threshold.ok_or(RecoverError::NotRecoverable)?;
        if self.received.iter().any(|s| s.index() == share.index()) {
            return Err(RecoverError::Duplicate(share.index()));
        }
        self.received.push(share);
        if self.received.len() < threshold as usize {
            return Ok(Collected::Waiting {
                received: self.received.len(),
                threshold,
            });
        }
        combine(&self.received, threshold)
            .map(Collected::Key)
            .map_err(|e| RecoverError::Combine(e.to_string()))
    }

    /// The combined key did not open the state (`why`): forgets every share, so that owners
    /// start over, and says so.
    pub fn key_did_not_fit(&mut self, why: &str) -> RecoverError {
        self.received.clear();
        RecoverError::WrongKey(why.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery::Share;

    /// A share with Shamir index `index` (valid form; its value is irrelevant here).
    fn share(index: u8) -> Share {
        let mut bytes = vec![0u8; crate::recovery::SHARE_LEN];
        bytes[0] = 1;
        bytes[1] = index;
        Share::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn shares_are_counted_once_up_to_the_threshold() {
        let mut c = ShareCollector::new(Some(3));
        assert!(matches!(
            c.add(share(1)),
            Ok(Collected::Waiting {
                received: 1,
                threshold: 3
            })
        ));
        assert_eq!(c.add(share(1)).unwrap_err(), RecoverError::Duplicate(1));
        assert!(matches!(
            c.add(share(2)),
            Ok(Collected::Waiting { received: 2, .. })
        ));
        assert!(matches!(c.add(share(3)), Ok(Collected::Key(_))));
        let e = c.key_did_not_fit("wrong data key");
        assert_eq!(c.received(), 0);
        assert_eq!(CoreError::from(e).code, ErrorCode::Share);
    }

    #[test]
    fn without_recovery_file_nothing_is_taken() {
        let mut c = ShareCollector::new(None);
        let e = c.add(share(1)).unwrap_err();
        assert_eq!(e, RecoverError::NotRecoverable);
        assert_eq!(CoreError::from(e).code, ErrorCode::WrongState);
        assert_eq!(c.received(), 0);
    }
}
