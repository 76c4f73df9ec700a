//! The SEV-SNP certificate table: the `auxblob` of a configfs-tsm SNP entry and the certificate
//! buffer of `SNP_GET_EXT_REPORT` (GHCB specification). It carries the VCEK or VLEK and the AMD
//! chain that endorse the report.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::{Error, Result};
use crate::evidence::Endorsements;

/// GUID (RFC 4122 byte order, as in the table) of the VCEK certificate in an SNP certificate table.
pub const GUID_VCEK: [u8; 16] = guid(0x63da758d, 0xe664, 0x4564, 0xadc5, 0xf4b93be8accd);
/// GUID of the VLEK certificate in an SNP certificate table.
pub const GUID_VLEK: [u8; 16] = guid(0xa8074bc2, 0xa25a, 0x483e, 0xaae6, 0x39c045a0b8a1);
/// GUID of the ASK (or ASVK) certificate in an SNP certificate table.
pub const GUID_ASK: [u8; 16] = guid(0x4ab7b379, 0xbbac, 0x4fe4, 0xa02f, 0x05aef327c782);
/// GUID of the ARK certificate in an SNP certificate table.
pub const GUID_ARK: [u8; 16] = guid(0xc0b406a4, 0xa803, 0x4952, 0x9743, 0x3fb6014cd0ae);

/// Builds a GUID's 16 bytes from its five textual groups, in RFC 4122 (big-endian) order.
const fn guid(a: u32, b: u16, c: u16, d: u16, e: u64) -> [u8; 16] {
    let a = a.to_be_bytes();
    let b = b.to_be_bytes();
    let c = c.to_be_bytes();
    let d = d.to_be_bytes();
    let e = e.to_be_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], e[2], e[3], e[4], e[5], e[6],
        e[7],
    ]
}

/// One entry of an SEV-SNP certificate table (the `auxblob` of an SNP guest, the certificate
/// buffer of `SNP_GET_EXT_REPORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTableEntry {
    /// The certificate's GUID, in the table's (RFC 4122) byte order; see [`GUID_VCEK`] and
    /// siblings.
    pub guid: [u8; 16],
    /// The certificate, DER.
    pub data: Vec<u8>,
}

/// Parses an SEV-SNP certificate table.
///
/// Layout (GHCB specification, `SNP_GUEST_REQUEST` extended): entries of 24 bytes — a 16-byte
/// GUID, a little-endian u32 offset and a little-endian u32 length, both counted from the start
/// of the table — ending with an all-zero entry; the certificates follow. An empty or all-zero
/// blob is an empty table. Never panics, whatever the bytes.
pub fn parse_cert_table(blob: &[u8]) -> Result<Vec<CertTableEntry>> {
    const WHAT: &str = "SNP certificate table";
    const ENTRY: usize = 24;
    let mut entries = Vec::new();
    if blob.iter().all(|&b| b == 0) {
        return Ok(entries);
    }
    let mut at = 0usize;
    loop {
        let Some(raw) = blob.get(at..at + ENTRY) else {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "entry {} at offset {at} runs past the end of the {} bytes without the \
                     all-zero terminator",
                    entries.len(),
                    blob.len()
                ),
            ));
        };
        if raw.iter().all(|&b| b == 0) {
            return Ok(entries);
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&raw[..16]);
        let offset = u32::from_le_bytes([raw[16], raw[17], raw[18], raw[19]]) as usize;
        let length = u32::from_le_bytes([raw[20], raw[21], raw[22], raw[23]]) as usize;
        let data = offset
            .checked_add(length)
            .and_then(|end| blob.get(offset..end))
            .ok_or_else(|| {
                Error::malformed(
                    WHAT,
                    format!(
                        "entry {} ({}) says offset {offset} length {length}, past the end of \
                         the {} bytes",
                        entries.len(),
                        guid_string(&guid),
                        blob.len()
                    ),
                )
            })?;
        entries.push(CertTableEntry {
            guid,
            data: data.to_vec(),
        });
        at += ENTRY;
    }
}

/// The endorsements an SNP certificate table holds: the VCEK (or, failing that, the VLEK) as
/// [`Endorsements::vcek`], the ASK and ARK as [`Endorsements::cert_chain`] PEM (ASK first).
/// Entries of other kinds (a CRL, vendor certificates) are skipped.
pub fn snp_endorsements(auxblob: &[u8]) -> Result<Endorsements> {
    let entries = parse_cert_table(auxblob)?;
    let find = |guid: &[u8; 16]| {
        entries
            .iter()
            .find(|e| &e.guid == guid && !e.data.is_empty())
    };
    let vcek = find(&GUID_VCEK)
        .or_else(|| find(&GUID_VLEK))
        .map(|e| e.data.clone());
    let chain: Vec<&CertTableEntry> = [find(&GUID_ASK), find(&GUID_ARK)]
        .into_iter()
        .flatten()
        .collect();
    let cert_chain = (!chain.is_empty()).then(|| chain.iter().map(|e| pem(&e.data)).collect());
    Ok(Endorsements {
        collateral: None,
        vcek,
        cert_chain,
    })
}

/// A DER certificate as PEM.
fn pem(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A GUID in its textual form.
fn guid_string(g: &[u8; 16]) -> String {
    let h = hex::encode(g);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
        let header = (entries.len() + 1) * 24;
        let mut out = Vec::new();
        let mut data = Vec::new();
        for (guid, cert) in entries {
            out.extend_from_slice(guid);
            out.extend_from_slice(&((header + data.len()) as u32).to_le_bytes());
            out.extend_from_slice(&(cert.len() as u32).to_le_bytes());
            data.extend_from_slice(cert);
        }
        out.extend_from_slice(&[0u8; 24]);
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn guid_constants_match_their_text() {
        assert_eq!(
            guid_string(&GUID_VCEK),
            "63da758d-e664-4564-adc5-f4b93be8accd"
        );
        assert_eq!(
            guid_string(&GUID_VLEK),
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        );
        assert_eq!(
            guid_string(&GUID_ASK),
            "4ab7b379-bbac-4fe4-a02f-05aef327c782"
        );
        assert_eq!(
            guid_string(&GUID_ARK),
            "c0b406a4-a803-4952-9743-3fb6014cd0ae"
        );
    }

    #[test]
    fn cert_table_yields_vcek_and_chain() {
        let blob = table(&[
            (GUID_ARK, b"ark-der"),
            (GUID_VCEK, b"vcek-der"),
            (GUID_ASK, b"ask-der"),
        ]);
        let e = snp_endorsements(&blob).unwrap();
        assert_eq!(e.vcek.as_deref(), Some(&b"vcek-der"[..]));
        let chain = e.cert_chain.unwrap();
        let ask = chain.find(&B64.encode(b"ask-der")).unwrap();
        let ark = chain.find(&B64.encode(b"ark-der")).unwrap();
        assert!(ask < ark, "ASK comes first: {chain}");
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    }

    #[test]
    fn cert_table_falls_back_to_vlek() {
        let blob = table(&[(GUID_VLEK, b"vlek-der")]);
        let e = snp_endorsements(&blob).unwrap();
        assert_eq!(e.vcek.as_deref(), Some(&b"vlek-der"[..]));
        assert!(e.cert_chain.is_none());
    }

    #[test]
    fn empty_and_all_zero_tables_are_empty() {
        assert!(snp_endorsements(&[]).unwrap().is_empty());
        assert!(snp_endorsements(&[0u8; 4096]).unwrap().is_empty());
    }

    #[test]
    fn cert_table_entry_past_the_end_is_malformed() {
        let mut blob = table(&[(GUID_VCEK, b"vcek-der")]);
        blob.truncate(blob.len() - 1);
        let err = parse_cert_table(&blob).unwrap_err();
        assert!(err.to_string().contains("63da758d"), "{err}");
    }

    #[test]
    fn cert_table_without_terminator_is_malformed() {
        let mut blob = Vec::new();
        blob.extend_from_slice(&GUID_VCEK);
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(&0u32.to_le_bytes());
        let err = parse_cert_table(&blob).unwrap_err();
        assert!(err.to_string().contains("terminator"), "{err}");
    }

    #[test]
    fn cert_table_with_huge_offset_does_not_panic() {
        let mut blob = Vec::new();
        blob.extend_from_slice(&GUID_VCEK);
        blob.extend_from_slice(&u32::MAX.to_le_bytes());
        blob.extend_from_slice(&u32::MAX.to_le_bytes());
        blob.extend_from_slice(&[0u8; 24]);
        assert!(parse_cert_table(&blob).is_err());
    }
}
