//! The CA's sealed form: its keys and certificates, for the caller to keep in the encrypted
//! store. Nothing here is encrypted; the store does that.
//!
//! Version 1 (every length a big-endian u32):
//!
//! ```text
//! "CFCA" | 0x01 | len | root cert DER | len | root key PKCS#8 (P-256)
//!               | len | intermediate cert DER | len | intermediate key PKCS#8 (P-256)
//! ```
//!
//! Loading checks that each key matches its certificate and that the root signed the
//! intermediate; nothing may follow the last field.

use rcgen::{CertificateParams, KeyPair};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use super::{CA_ALG, CaError, CoordinatorCa};

/// The first four bytes of the sealed form.
pub const SEALED_MAGIC: &[u8; 4] = b"CFCA";
/// The version this code writes and the only one it reads.
pub const SEALED_VERSION: u8 = 1;

impl CoordinatorCa {
    /// The keys and certificates, for the caller to keep in the encrypted store (format in the
    /// module docs). Zeroized on drop: it holds the CA's private keys.
    pub fn to_sealed_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.extend_from_slice(SEALED_MAGIC);
        out.push(SEALED_VERSION);
        for field in [
            self.root_der.as_slice(),
            self.root_key.serialized_der(),
            self.intermediate_der.as_slice(),
            self.intermediate_key.serialized_der(),
        ] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// Reads back what [`to_sealed_bytes`](Self::to_sealed_bytes) wrote. Checks that each key
    /// matches its certificate and that the root signed the intermediate.
    pub fn from_sealed_bytes(bytes: &[u8]) -> Result<CoordinatorCa, CaError> {
        let rest = bytes
            .strip_prefix(SEALED_MAGIC.as_slice())
            .ok_or_else(|| CaError::Sealed("expected magic \"CFCA\"".into()))?;
        let (&version, mut rest) = rest
            .split_first()
            .ok_or_else(|| CaError::Sealed("expected a version byte, got end of input".into()))?;
        if version != SEALED_VERSION {
            return Err(CaError::Sealed(format!(
                "expected version {SEALED_VERSION}, got {version}"
            )));
        }
        let mut fields = Vec::with_capacity(4);
        for what in [
            "root cert",
            "root key",
            "intermediate cert",
            "intermediate key",
        ] {
            let (field, tail) =
                take_field(rest).ok_or_else(|| CaError::Sealed(format!("{what}: truncated")))?;
            fields.push(field);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(CaError::Sealed(format!(
                "expected end of input, got {} trailing bytes",
                rest.len()
            )));
        }
        let load_key = |der: &[u8], what: &str| {
            KeyPair::from_pkcs8_der_and_sign_algo(&der.to_vec().into(), CA_ALG)
                .map_err(|e| CaError::Sealed(format!("{what}: expected a P-256 PKCS#8 key: {e}")))
        };
        let root_key = load_key(fields[1], "root key")?;
        let intermediate_key = load_key(fields[3], "intermediate key")?;
        let root = parse_cert(fields[0], "root cert")?;
        let inter = parse_cert(fields[2], "intermediate cert")?;
        if root.public_key().raw != root_key.public_key_der().as_slice() {
            return Err(CaError::Sealed(
                "root cert: key does not match root key".into(),
            ));
        }
        if inter.public_key().raw != intermediate_key.public_key_der().as_slice() {
            return Err(CaError::Sealed(
                "intermediate cert: key does not match intermediate key".into(),
            ));
        }
        inter
            .verify_signature(Some(root.public_key()))
            .map_err(|e| CaError::Sealed(format!("intermediate cert: not signed by root: {e}")))?;
        // rcgen needs the issuer as a `Certificate`: rebuild one from the stored DER's names,
        // key identifier and validity. Only its parameters are used, never its own DER.
        let params = CertificateParams::from_ca_cert_der(&fields[2].to_vec().into())?;
        let intermediate = params.self_signed(&intermediate_key)?;
        Ok(CoordinatorCa {
            root_der: fields[0].to_vec(),
            intermediate_der: fields[2].to_vec(),
            root_key,
            intermediate_key,
            intermediate,
        })
    }
}

fn take_field(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = input.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, CaError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(CaError::Sealed(format!(
            "{what}: {} trailing bytes",
            rest.len()
        ))),
        Err(e) => Err(CaError::Sealed(format!("{what}: expected X.509 DER: {e}"))),
    }
}
