//! The coordinator's randomness, injected like its clock: nonces, generated symmetric secrets
//! and volume keys come from a [`RandomSource`] in [`super::Options`]. Production uses the
//! operating system's ([`SystemRandom`]); tests inject failing or counting sources to check
//! that a failure is an error, never a panic or a predictable value. (Key pairs — the CA's,
//! `cert-*` secrets' — are made by rcgen and aws-lc with the system's generator.)

use std::sync::Arc;

use super::error::{CoreError, CoreResult};

/// A source of cryptographically secure random bytes.
pub trait RandomSource: Send + Sync {
    /// Fills `dest`, or fails (the coordinator then refuses the request: 500).
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError>;
}

/// The random source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the random number generator failed")]
pub struct RandomError;

/// The operating system's generator (`getrandom`), through ring.
#[derive(Debug)]
pub struct SystemRandom(ring::rand::SystemRandom);

impl Default for SystemRandom {
    fn default() -> SystemRandom {
        SystemRandom(ring::rand::SystemRandom::new())
    }
}

impl RandomSource for SystemRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        ring::rand::SecureRandom::fill(&self.0, dest).map_err(|_| RandomError)
    }
}

/// A shared random source.
pub type Random = Arc<dyn RandomSource>;

/// The operating system's generator, shared.
pub fn system_random() -> Random {
    Arc::new(SystemRandom::default())
}

/// `dest` filled from `random`, a failure as the coordinator's internal error.
pub(crate) fn fill(random: &dyn RandomSource, dest: &mut [u8]) -> CoreResult<()> {
    random
        .fill(dest)
        .map_err(|e| CoreError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::SystemTime;

    use super::*;
    use crate::core::{ErrorCode, NonceBook};

    /// Fills with a fixed byte, or fails once told to.
    struct Fixed {
        byte: u8,
        broken: AtomicBool,
    }

    impl RandomSource for Fixed {
        fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(RandomError);
            }
            dest.fill(self.byte);
            Ok(())
        }
    }

    #[test]
    fn nonces_take_their_randomness_from_the_injected_source() {
        let source = Arc::new(Fixed {
            byte: 0xab,
            broken: AtomicBool::new(false),
        });
        let book = NonceBook::new(source.clone()).unwrap();
        let n = book.issue(SystemTime::now()).unwrap();
        assert_eq!(n[8..16], [0xab; 8]);
        // A failing source is the coordinator's internal error, not a panic.
        source.broken.store(true, Ordering::SeqCst);
        let e = book.issue(SystemTime::now()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(e.message.contains("random"), "{e}");
        let e = NonceBook::new(source).unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
    }

    #[test]
    fn the_system_source_fills() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        system_random().fill(&mut a).unwrap();
        system_random().fill(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
