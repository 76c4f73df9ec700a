//! The evidence envelope and the decoding of evidence as operators paste it.
//!
//! Wire and file form (see `docs/formats/evidence.md`):
//!
//! ```json
//! {"tee": "tdx", "evidence": "<base64 raw hardware bytes>",
//!  "endorsements": {"collateral": {…}, "vcek": "<base64 DER>", "cert_chain": "<PEM>"}}
//! ```
//!
//! The evidence is always the raw bytes the hardware produced, never a serde form of a parsed
//! structure, so that any verifier can re-check it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sim;
use crate::tee::Tee;

/// Evidence as it travels: the TEE kind, the raw hardware bytes and optional endorsements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Which TEE produced the bytes.
    pub tee: Tee,
    /// The raw bytes: a DCAP quote, an SNP report, or a simulation report.
    #[serde(with = "b64")]
    pub evidence: Vec<u8>,
    /// Material that vouches for the evidence's signer.
    #[serde(default, skip_serializing_if = "Endorsements::is_empty")]
    pub endorsements: Endorsements,
}

/// Material that vouches for the key that signed the evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endorsements {
    /// DCAP collateral in dcap-qvl's JSON form (PCK CRL, root CRL, TCB info, QE identity, chains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<serde_json::Value>,
    /// The SNP VCEK or VLEK certificate: DER, PEM, or a PEM bundle of the VCEK (or VLEK) followed
    /// by its ASK (or ASVK) and ARK, which are then taken as the chain (see
    /// [`crate::verify::snp`]).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64::option")]
    pub vcek: Option<Vec<u8>>,
    /// The AMD ASK (or ASVK) and ARK certificates, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_chain: Option<String>,
}

impl Endorsements {
    /// True when no endorsement is present.
    pub fn is_empty(&self) -> bool {
        self.collateral.is_none() && self.vcek.is_none() && self.cert_chain.is_none()
    }
}

impl Evidence {
    /// Evidence without endorsements.
    pub fn new(tee: Tee, evidence: Vec<u8>) -> Self {
        Evidence {
            tee,
            evidence,
            endorsements: Endorsements::default(),
        }
    }

    /// Serializes the envelope as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("evidence envelope always serializes")
    }

    /// Decodes evidence the way an operator may hand it over: our JSON envelope, hex text,
    /// base64 text or raw binary. `tee` overrides detection; without it the TEE is detected from
    /// the bytes and an undetectable input is an error.
    pub fn decode(input: &[u8], tee: Option<Tee>) -> Result<Evidence> {
        let text = std::str::from_utf8(input).ok().map(str::trim);
        if let Some(t) = text
            && t.starts_with('{')
        {
            let env: Evidence = serde_json::from_str(t)
                .map_err(|e| Error::malformed("evidence envelope", e.to_string()))?;
            if let Some(want) = tee
                && want != env.tee
            {
                return Err(Error::malformed(
                    "evidence envelope",
                    format!("--tee says {want} but the envelope says {}", env.tee),
                ));
            }
            return Ok(env);
        }
        let raw = match text.and_then(decode_text) {
            Some(bytes) => bytes,
            None => input.to_vec(),
        };
        let tee = match tee {
            Some(t) => t,
            None => detect_tee(&raw).ok_or_else(|| {
                Error::malformed(
                    "evidence",
                    format!(
                        "cannot tell which TEE produced these {} bytes (expected a DCAP quote v3-v5, \
                         an SNP report of 1184 bytes, a simulation report or a JSON envelope); \
                         pass --tee",
                        raw.len()
                    ),
                )
            })?,
        };
        Ok(Evidence::new(tee, raw))
    }
}

/// Decodes hex or base64 text; `None` when the text is neither.
fn decode_text(t: &str) -> Option<Vec<u8>> {
    if t.is_empty() {
        return None;
    }
    let compact: String = t.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.len().is_multiple_of(2) && compact.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(&compact).ok();
    }
    let b64ok = compact
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
    if b64ok {
        return B64.decode(&compact).ok();
    }
    None
}

/// DCAP quote header: TEE type field values.
const DCAP_TEE_SGX: u32 = 0x0000_0000;
const DCAP_TEE_TDX: u32 = 0x0000_0081;
/// Size of an SEV-SNP attestation report, all versions so far.
pub(crate) const SNP_REPORT_LEN: usize = 1184;

/// Detects the TEE from raw evidence bytes, if the bytes say.
pub fn detect_tee(raw: &[u8]) -> Option<Tee> {
    if raw.starts_with(&sim::MAGIC) {
        return Some(Tee::Sim);
    }
    if raw.len() >= 48 {
        let version = u16::from_le_bytes([raw[0], raw[1]]);
        let tee_type = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        match (version, tee_type) {
            (3, DCAP_TEE_SGX) | (4, DCAP_TEE_SGX) | (5, DCAP_TEE_SGX)
                if raw.len() != SNP_REPORT_LEN =>
            {
                return Some(Tee::Sgx);
            }
            (4, DCAP_TEE_TDX) | (5, DCAP_TEE_TDX) => return Some(Tee::Tdx),
            _ => {}
        }
    }
    if raw.len() == SNP_REPORT_LEN {
        let version = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if (2..=5).contains(&version) {
            return Some(Tee::Snp);
        }
    }
    None
}

mod b64 {
    use super::B64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let t = String::deserialize(d)?;
        B64.decode(t.trim()).map_err(serde::de::Error::custom)
    }

    pub(super) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<Vec<u8>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => s.serialize_some(&B64.encode(b)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|t| B64.decode(t.trim()).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_through_json() {
        let ev = Evidence::new(Tee::Tdx, vec![1, 2, 3]);
        let back = Evidence::decode(ev.to_json().as_bytes(), None).unwrap();
        assert_eq!(ev, back);
    }

    #[test]
    fn envelope_tee_conflicting_with_flag_is_malformed() {
        let ev = Evidence::new(Tee::Tdx, vec![1, 2, 3]);
        let err = Evidence::decode(ev.to_json().as_bytes(), Some(Tee::Snp)).unwrap_err();
        assert!(err.to_string().contains("--tee says snp"), "{err}");
    }

    #[test]
    fn undetectable_bytes_ask_for_tee() {
        let err = Evidence::decode(&[0xff; 10], None).unwrap_err();
        assert!(err.to_string().contains("pass --tee"), "{err}");
    }

    #[test]
    fn hex_and_base64_text_decode_to_the_same_bytes() {
        let raw = [0x41u8; 40];
        let h = Evidence::decode(hex::encode(raw).as_bytes(), Some(Tee::Sgx)).unwrap();
        let b = Evidence::decode(B64.encode(raw).as_bytes(), Some(Tee::Sgx)).unwrap();
        assert_eq!(h.evidence, raw);
        assert_eq!(b.evidence, raw);
    }

    #[test]
    fn unknown_envelope_field_is_refused() {
        let err = Evidence::decode(br#"{"tee":"sim","evidence":"","extra":1}"#, None).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
