//! Report-data binding: how a nonce and a public key are tied into the 64 bytes of report data.
//!
//! `report_data = SHA-512("confidant/v1/" || purpose || 0x00 || nonce || SHA-256(SPKI DER))`
//!
//! The purpose keeps evidence made for one protocol step from being replayed in another; the nonce
//! makes it fresh; the key digest ties the TLS or CSR key to the TEE that holds it.

use sha2::{Digest, Sha256, Sha512};

use crate::reference::Mismatch;

/// Why a piece of evidence was produced. Each purpose yields different report data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A workload asks the coordinator for its secrets.
    Activate,
    /// The coordinator proves itself to a client.
    Coordinator,
    /// A volume key is bound to the TEE.
    Volume,
}

impl Purpose {
    /// The purpose string hashed into the report data.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Activate => "activate",
            Purpose::Coordinator => "coordinator",
            Purpose::Volume => "volume",
        }
    }
}

/// Computes the report data binding `nonce` and the public key `spki_der` for `purpose`.
pub fn report_data(purpose: Purpose, nonce: &[u8], spki_der: &[u8]) -> [u8; 64] {
    report_data_for_key_digest(purpose, nonce, &Sha256::digest(spki_der).into())
}

/// [`report_data`] from the SHA-256 of the SubjectPublicKeyInfo DER instead of the DER itself.
pub fn report_data_for_key_digest(
    purpose: Purpose,
    nonce: &[u8],
    key_digest: &[u8; 32],
) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(b"confidant/v1/");
    h.update(purpose.as_str().as_bytes());
    h.update([0u8]);
    h.update(nonce);
    h.update(key_digest);
    h.finalize().into()
}

/// Checks that `got` binds `nonce` and `spki_der` for `purpose`.
pub fn check_binding(
    got: &[u8; 64],
    purpose: Purpose,
    nonce: &[u8],
    spki_der: &[u8],
) -> Result<(), Mismatch> {
    let want = report_data(purpose, nonce, spki_der);
    // Report data is public (it travels in the evidence), so a plain comparison leaks nothing.
    if &want == got {
        Ok(())
    } else {
        Err(Mismatch::new(
            "report_data",
            format!(
                "{} (binding of the nonce and public key for {})",
                hex::encode(want),
                purpose.as_str()
            ),
            hex::encode(got),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_accepts_its_own_report_data() {
        let rd = report_data(Purpose::Activate, b"nonce", b"key");
        assert!(check_binding(&rd, Purpose::Activate, b"nonce", b"key").is_ok());
    }

    #[test]
    fn binding_rejects_other_purpose_nonce_or_key() {
        let rd = report_data(Purpose::Activate, b"nonce", b"key");
        assert!(check_binding(&rd, Purpose::Coordinator, b"nonce", b"key").is_err());
        assert!(check_binding(&rd, Purpose::Activate, b"nonce2", b"key").is_err());
        let err = check_binding(&rd, Purpose::Activate, b"nonce", b"key2").unwrap_err();
        assert_eq!(err.field, "report_data");
        assert!(
            err.expected
                .ends_with("(binding of the nonce and public key for activate)")
        );
        assert_eq!(err.got, hex::encode(rd));
    }

    #[test]
    fn binding_is_stable_across_releases() {
        // A change here breaks every deployed client: the value is part of the wire format.
        let rd = report_data(Purpose::Coordinator, &[0u8; 32], b"");
        let again = report_data(Purpose::Coordinator, &[0u8; 32], b"");
        assert_eq!(rd, again);
        assert_ne!(rd, report_data(Purpose::Volume, &[0u8; 32], b""));
    }
}
