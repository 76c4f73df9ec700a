//! Checking names and reading and writing PEM for the CA.

use std::net::IpAddr;

use rcgen::{KeyPair, PKCS_ED25519, SanType};
use zeroize::Zeroizing;

use super::{CaError, invalid};

/// Workload and activation names go into a URI: letters, digits, `.`, `_`, `-` only.
pub(super) fn check_label(s: &str, field: &str) -> Result<(), CaError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "1 to 128 of [A-Za-z0-9._-]",
            format!("{s:?}"),
        ))
    }
}

/// Each SAN is an IP address if it parses as one, else a DNS name (`*.` wildcard allowed).
pub(super) fn parse_sans(sans: &[String], field: &str) -> Result<Vec<SanType>, CaError> {
    sans.iter()
        .enumerate()
        .map(|(i, san)| {
            if let Ok(ip) = san.parse::<IpAddr>() {
                return Ok(SanType::IpAddress(ip));
            }
            let host = san.strip_prefix("*.").unwrap_or(san);
            let valid = !host.is_empty()
                && san.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(invalid(
                    &format!("{field}[{i}]"),
                    "a DNS name or an IP address",
                    format!("{san:?}"),
                ));
            }
            let name = rcgen::Ia5String::try_from(san.as_str())
                .map_err(|e| invalid(&format!("{field}[{i}]"), "ASCII", e))?;
            Ok(SanType::DnsName(name))
        })
        .collect()
}

pub(super) fn csr_der(csr: &[u8]) -> Result<Vec<u8>, CaError> {
    let trimmed = csr.trim_ascii_start();
    if !trimmed.starts_with(b"-----BEGIN") {
        return Ok(csr.to_vec());
    }
    let (_, pem) = x509_parser::pem::parse_x509_pem(trimmed)
        .map_err(|e| CaError::CsrParse(format!("bad PEM: {e}")))?;
    if pem.label != "CERTIFICATE REQUEST" && pem.label != "NEW CERTIFICATE REQUEST" {
        return Err(CaError::CsrParse(format!(
            "PEM label {:?} (expected \"CERTIFICATE REQUEST\")",
            pem.label
        )));
    }
    Ok(pem.contents)
}

/// The key as PKCS#8 PEM. Ed25519 keys are written as PKCS#8 v1 (RFC 8410: the seed alone):
/// aws-lc-rs writes v2 with the public key in a `[1]` field that OpenSSL 3.0 refuses to read.
pub(super) fn private_key_pem(key: &KeyPair) -> Zeroizing<String> {
    const V2_PREFIX: [u8; 16] = [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let der = key.serialized_der();
    if key.algorithm() == &PKCS_ED25519 && der.len() == 83 && der.starts_with(&V2_PREFIX) {
        let mut v1 = Zeroizing::new(V2_PREFIX.to_vec());
        v1[1] = 0x2e; // SEQUENCE length: 46
        v1[4] = 0x00; // version: v1
        v1.extend_from_slice(&der[16..48]);
        let pem = pem::Pem::new("PRIVATE KEY", v1.to_vec());
        let out = Zeroizing::new(pem::encode_config(
            &pem,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ));
        drop(pem); // `pem::Pem` does not zeroize; keep its life short.
        return out;
    }
    Zeroizing::new(key.serialize_pem())
}

pub(super) fn to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
