//! AMD's certificate chain for SEV-SNP: ARK → ASK → VCEK, or ARK → ASVK → VLEK.
//!
//! The ARK (AMD Root Key) of each generation is self-signed and is the trust anchor: a chain is
//! accepted only if its ARK carries the public key of one of the ARKs built into the `sev` crate
//! (Milan, Genoa, Turin). The ASK (AMD SEV Key) signs VCEKs; the ASVK signs VLEKs. All three
//! CA signatures are RSA-PSS with SHA-384, checked by `sev`'s pure-Rust code.
//!
//! A VCEK or VLEK certifies the P-384 key that signs reports, and in its extensions the TCB it
//! was derived for and (VCEK only) the chip it belongs to. Extension OIDs are from AMD's
//! "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface Specification".

use sev::certs::snp::{Certificate as SevCertificate, Verifiable, builtin};
use x509_cert::Certificate;
use x509_cert::der::asn1::{ObjectIdentifier, OctetStringRef};
use x509_cert::der::pem::PemLabel;
use x509_cert::der::{Decode, DecodePem};
use x509_cert::name::Name;

use super::report::{Generation, SigningKey};
use crate::error::{Error, Result};

/// What [`Error::Malformed`] says was being parsed for the VCEK or VLEK.
pub(crate) const WHAT_VEK: &str = "VCEK/VLEK certificate";
/// What [`Error::Malformed`] says was being parsed for a given chain.
pub(crate) const WHAT_CHAIN: &str = "AMD certificate chain";

const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// VCEK/VLEK extensions: the SPL (security patch level) of each TCB component, and the chip.
const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");

/// The ARK and ASK of one generation, as built into the `sev` crate.
#[derive(Debug, Clone)]
pub(crate) struct BuiltinChain {
    pub generation: Generation,
    pub ark: Certificate,
    pub ask: Certificate,
}

/// Parses the built-in chains of every generation `sev` carries.
pub(crate) fn builtin_chains() -> std::result::Result<Vec<BuiltinChain>, String> {
    let pems = [
        (Generation::Milan, builtin::milan::ARK, builtin::milan::ASK),
        (Generation::Genoa, builtin::genoa::ARK, builtin::genoa::ASK),
        (Generation::Turin, builtin::turin::ARK, builtin::turin::ASK),
    ];
    pems.into_iter()
        .map(|(generation, ark, ask)| {
            let parse = |pem: &[u8], what: &str| {
                Certificate::from_pem(pem)
                    .map_err(|e| format!("built-in {generation} {what} does not parse: {e}"))
            };
            Ok(BuiltinChain {
                generation,
                ark: parse(ark, "ARK")?,
                ask: parse(ask, "ASK")?,
            })
        })
        .collect()
}

/// Parses a VCEK or VLEK given as DER, as PEM, or as a PEM bundle whose first certificate is the
/// VCEK or VLEK and whose others are the CA certificates that come with it (the ASK or ASVK and
/// the ARK, as Azure's instance metadata serves them). The CA certificates are returned in their
/// order and are not checked here: they are a given chain like any other.
pub(crate) fn parse_vek(bytes: &[u8]) -> Result<(Certificate, Vec<Certificate>)> {
    let (vek, rest) = match pem_text(bytes) {
        Some(text) => {
            let mut certs = pem_certificates(
                text,
                WHAT_VEK,
                "the VCEK or VLEK, optionally followed by its ASK (or ASVK) and ARK",
            )?;
            let vek = certs.remove(0);
            (vek, certs)
        }
        None => {
            let vek = Certificate::from_der(bytes).map_err(|e| {
                Error::malformed(
                    WHAT_VEK,
                    format!(
                        "expected a DER (or PEM) X.509 certificate, found {} bytes that are not \
                         one: {e}",
                        bytes.len()
                    ),
                )
            })?;
            (vek, Vec::new())
        }
    };
    check_not_a_ca(&vek, &rest)?;
    Ok((vek, rest))
}

/// The bytes as PEM text, when they are UTF-8 with a PEM boundary in them.
fn pem_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|text| text.contains("-----BEGIN"))
}

/// Refuses a CA certificate where the VCEK or VLEK belongs: a self-issued one (an ARK), or one
/// that a later certificate of the same bundle names as its issuer (an ASK or ASVK placed first).
fn check_not_a_ca(vek: &Certificate, rest: &[Certificate]) -> Result<()> {
    let subject = &vek.tbs_certificate.subject;
    let role = if vek.tbs_certificate.issuer == *subject {
        Some("a self-issued CA certificate".to_string())
    } else {
        rest.iter()
            .position(|c| c.tbs_certificate.issuer == *subject)
            .map(|i| {
                format!(
                    "the CA certificate that issued certificate {} ({})",
                    i + 2,
                    name_label(&rest[i].tbs_certificate.subject)
                )
            })
    };
    match role {
        None => Ok(()),
        Some(role) => Err(Error::malformed(
            WHAT_VEK,
            format!(
                "expected the VCEK or VLEK (first, when a PEM bundle also carries the ASK or ASVK \
                 and the ARK), found {}, {role}",
                name_label(subject)
            ),
        )),
    }
}

/// Parses one PEM certificate from untrusted bytes: the PEM is decoded to DER in memory first.
/// Not `DecodePem::from_pem`: der 0.7's streaming PEM reader loops forever when the base64
/// body ends inside a DER length field (e.g. a body of just `MIIG`). Found by fuzzing
/// (`fuzz/`, target snp_endorsements).
fn cert_from_pem(pem: &[u8]) -> x509_cert::der::Result<Certificate> {
    let (label, der) = x509_cert::der::pem::decode_vec(pem)?;
    Certificate::validate_pem_label(label)?;
    Certificate::from_der(&der)
}

/// Parses the PEM certificates of a chain, in order.
pub(crate) fn parse_pem_chain(pem: &str) -> Result<Vec<Certificate>> {
    pem_certificates(pem, WHAT_CHAIN, "the ASK or ASVK, then the ARK")
}

/// Every `CERTIFICATE` block of PEM text, in order; text around the blocks is ignored. At least
/// one is required; `expected` says which ones, for the message when there are none.
fn pem_certificates(pem: &str, what: &'static str, expected: &str) -> Result<Vec<Certificate>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let n = certs.len() + 1;
        let end = block.find(END).ok_or_else(|| {
            Error::malformed(what, format!("certificate {n} has no `{END}` line"))
        })? + END.len();
        let cert = cert_from_pem(&block.as_bytes()[..end])
            .map_err(|e| Error::malformed(what, format!("certificate {n}: {e}")))?;
        certs.push(cert);
        rest = &block[end..];
    }
    if certs.is_empty() {
        return Err(Error::malformed(
            what,
            format!("expected PEM certificates ({expected}), found none"),
        ));
    }
    Ok(certs)
}

/// Splits a given chain into (ASK or ASVK, ARK): the ARK is the self-issued certificate.
/// A copy of the VCEK/VLEK in the chain is ignored. `from` names where the chain came from, for
/// messages (`"cert_chain"`, …).
pub(crate) fn split_chain(
    certs: Vec<Certificate>,
    vek: &Certificate,
    from: &str,
) -> Result<(Certificate, Certificate)> {
    let certs: Vec<Certificate> = certs.into_iter().filter(|c| c != vek).collect();
    if certs.len() != 2 {
        return Err(Error::malformed(
            WHAT_CHAIN,
            format!(
                "{from}: expected 2 certificates (the ASK or ASVK, and the ARK), found {}",
                certs.len()
            ),
        ));
    }
    let self_issued = |c: &Certificate| c.tbs_certificate.subject == c.tbs_certificate.issuer;
    let mut ark = None;
    let mut ask = None;
    for cert in certs {
        if self_issued(&cert) {
            if ark.is_some() {
                return Err(Error::malformed(
                    WHAT_CHAIN,
                    format!(
                        "{from}: expected one self-issued ARK and one ASK or ASVK, found 2 \
                         self-issued certificates"
                    ),
                ));
            }
            ark = Some(cert);
        } else {
            ask = Some(cert);
        }
    }
    match (ask, ark) {
        (Some(ask), Some(ark)) => Ok((ask, ark)),
        _ => Err(Error::malformed(
            WHAT_CHAIN,
            format!(
                "{from}: expected one self-issued ARK and one ASK or ASVK, found no self-issued \
                 certificate"
            ),
        )),
    }
}

/// The common name of a distinguished name, if it has one.
pub(crate) fn common_name(name: &Name) -> Option<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == OID_CN)
        .map(|atv| String::from_utf8_lossy(atv.value.value()).into_owned())
}

/// `CN=…` of a name for messages, or the whole name when it has no CN.
pub(crate) fn name_label(name: &Name) -> String {
    match common_name(name) {
        Some(cn) => format!("CN={cn}"),
        None => format!("\"{name}\""),
    }
}

/// Whether a certificate is a VLEK (issued by an ASVK) rather than a VCEK.
pub(crate) fn key_kind(vek: &Certificate) -> SigningKey {
    let issuer = common_name(&vek.tbs_certificate.issuer).unwrap_or_default();
    let subject = common_name(&vek.tbs_certificate.subject).unwrap_or_default();
    if issuer.starts_with("SEV-VLEK-") || subject == "SEV-VLEK" {
        SigningKey::Vlek
    } else {
        SigningKey::Vcek
    }
}

/// The generation named by a VCEK or VLEK issuer (`SEV-Milan`, `SEV-VLEK-Genoa`, …).
pub(crate) fn issuer_generation(vek: &Certificate) -> Option<Generation> {
    let cn = common_name(&vek.tbs_certificate.issuer)?;
    let product = cn
        .strip_prefix("SEV-VLEK-")
        .or_else(|| cn.strip_prefix("SEV-"))?;
    match product {
        "Milan" => Some(Generation::Milan),
        "Genoa" => Some(Generation::Genoa),
        "Turin" => Some(Generation::Turin),
        "Venice" => Some(Generation::Venice),
        _ => None,
    }
}

/// Checks that `signer`'s key signed `signee` (RSA-PSS, SHA-384).
///
/// Neither the signature algorithm outside the signed part nor the signature BIT STRING is
/// signed, and `sev` reads only the algorithm's OID and the signature's raw bytes: the outer
/// algorithm must equal the signed one (RFC 5280 4.1.1.2) and the signature must have no unused
/// bits, or a certificate would have many encodings that all verify.
pub(crate) fn signed_by(
    signer: &Certificate,
    signee: &Certificate,
) -> std::result::Result<(), String> {
    if signee.signature_algorithm != signee.tbs_certificate.signature {
        return Err(
            "its signatureAlgorithm differs from the signature algorithm it was signed with".into(),
        );
    }
    if signee.signature.as_bytes().is_none() {
        return Err("its signature is not a whole number of bytes".into());
    }
    let signer = SevCertificate::from(signer.clone());
    let signee = SevCertificate::from(signee.clone());
    (&signer, &signee).verify().map_err(|e| e.to_string())
}

/// Checks `notBefore <= now <= notAfter`.
pub(crate) fn check_validity(
    role: &str,
    cert: &Certificate,
    now_secs: u64,
) -> std::result::Result<(), String> {
    let validity = &cert.tbs_certificate.validity;
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    if now_secs < not_before {
        return Err(format!(
            "the {role} is not valid yet: notBefore {}, verifying as of {}",
            validity.not_before,
            format_unix(now_secs)
        ));
    }
    if now_secs > not_after {
        return Err(format!(
            "the {role} has expired: notAfter {}, verifying as of {}",
            validity.not_after,
            format_unix(now_secs)
        ));
    }
    Ok(())
}

fn format_unix(secs: u64) -> String {
    x509_cert::der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{secs} s after the Unix epoch"))
}

/// The uncompressed SEC1 P-384 point a VCEK or VLEK certifies.
pub(crate) fn p384_point(vek: &Certificate) -> std::result::Result<&[u8], String> {
    let spki = &vek.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_SECP384R1) {
        return Err(format!(
            "its public key is not ECDSA P-384 (algorithm {}, curve {})",
            spki.algorithm.oid,
            curve.map_or_else(|| "none".to_string(), |c| c.to_string())
        ));
    }
    match spki.subject_public_key.as_bytes() {
        Some(point) if point.len() == 97 && point[0] == 0x04 => Ok(point),
        _ => Err("its public key is not an uncompressed P-384 point".into()),
    }
}

/// The TCB a VCEK or VLEK certifies: one SPL per component, absent when the extension is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CertifiedTcb {
    pub bootloader: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub microcode: Option<u8>,
    pub fmc: Option<u8>,
}

/// The AMD extensions of a VCEK or VLEK that verification compares with the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VekExtensions {
    pub tcb: CertifiedTcb,
    /// hwID: the chip id (64 bytes; 8 on Turin and later). VCEKs only.
    pub hw_id: Option<Vec<u8>>,
}

/// Reads the TCB and hwID extensions.
pub(crate) fn vek_extensions(vek: &Certificate) -> Result<VekExtensions> {
    let mut out = VekExtensions::default();
    for ext in vek.tbs_certificate.extensions.iter().flatten() {
        let value = ext.extn_value.as_bytes();
        let slot = match ext.extn_id {
            OID_BL_SPL => &mut out.tcb.bootloader,
            OID_TEE_SPL => &mut out.tcb.tee,
            OID_SNP_SPL => &mut out.tcb.snp,
            OID_UCODE_SPL => &mut out.tcb.microcode,
            OID_FMC_SPL => &mut out.tcb.fmc,
            OID_HW_ID => {
                if out.hw_id.is_some() {
                    return Err(duplicate(&ext.extn_id));
                }
                out.hw_id = Some(hw_id(value)?);
                continue;
            }
            _ => continue,
        };
        if slot.is_some() {
            return Err(duplicate(&ext.extn_id));
        }
        let spl = u8::from_der(value).map_err(|e| {
            Error::malformed(
                WHAT_VEK,
                format!(
                    "extension {}: expected a DER INTEGER 0..=255, found {} ({e})",
                    ext.extn_id,
                    hex::encode(value)
                ),
            )
        })?;
        *slot = Some(spl);
    }
    Ok(out)
}

fn duplicate(oid: &ObjectIdentifier) -> Error {
    Error::malformed(WHAT_VEK, format!("extension {oid} appears twice"))
}

/// AMD writes hwID as the raw chip id; accept a DER OCTET STRING around it too.
fn hw_id(value: &[u8]) -> Result<Vec<u8>> {
    if value.len() == 64 || value.len() == 8 {
        return Ok(value.to_vec());
    }
    match OctetStringRef::from_der(value) {
        Ok(inner) if matches!(inner.as_bytes().len(), 8 | 64) => Ok(inner.as_bytes().to_vec()),
        _ => Err(Error::malformed(
            WHAT_VEK,
            format!(
                "extension {OID_HW_ID} (hwID): expected a 64-byte (or 8-byte) chip id, found {} bytes",
                value.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_cert::der::Encode;

    /// Found by fuzzing: der 0.7's streaming PEM reader loops forever on a body that ends inside
    /// a DER length field. Our PEM path decodes in memory first and must refuse it at once.
    #[test]
    fn truncated_pem_is_an_error_not_a_hang() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIG\n-----END CERTIFICATE-----\n";
        assert!(parse_vek(pem.as_bytes()).is_err());
        assert!(parse_pem_chain(pem).is_err());
    }

    #[test]
    fn builtin_chains_parse_and_are_signed_by_their_ark() {
        let chains = builtin_chains().unwrap();
        assert_eq!(chains.len(), 3);
        for c in &chains {
            signed_by(&c.ark, &c.ark).unwrap();
            signed_by(&c.ark, &c.ask).unwrap();
            assert_eq!(
                common_name(&c.ask.tbs_certificate.subject).unwrap(),
                format!("SEV-{}", c.generation)
            );
        }
    }

    #[test]
    fn spl_integers_above_127_decode() {
        // 200 needs a leading zero byte in DER.
        assert_eq!(u8::from_der(&[0x02, 0x02, 0x00, 0xC8]).unwrap(), 200);
        assert!(u8::from_der(&[0x02, 0x01, 0xFF]).is_err(), "negative");
    }

    #[test]
    fn hw_id_accepts_raw_and_wrapped_chip_ids() {
        assert_eq!(hw_id(&[7; 64]).unwrap(), vec![7; 64]);
        assert_eq!(hw_id(&[7; 8]).unwrap(), vec![7; 8]);
        let mut wrapped = vec![0x04, 0x40];
        wrapped.extend([9; 64]);
        assert_eq!(hw_id(&wrapped).unwrap(), vec![9; 64]);
        assert!(hw_id(&[1; 10]).is_err());
    }

    fn builtin_pem(pem: &[u8]) -> String {
        String::from_utf8(pem.to_vec()).unwrap()
    }

    #[test]
    fn pem_bundle_yields_its_first_certificate_and_the_rest_in_order() {
        let (ask, ark) = (builtin::milan::ASK, builtin::milan::ARK);
        let bundle = format!(
            "text before\n{}\nbetween\n{}",
            builtin_pem(ask),
            builtin_pem(ark)
        );
        let (first, rest) = parse_vek(bundle.as_bytes()).unwrap();
        assert_eq!(first, Certificate::from_pem(ask).unwrap());
        assert_eq!(rest, vec![Certificate::from_pem(ark).unwrap()]);
        let (_, rest) = parse_vek(ask).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn ca_certificate_where_the_vek_belongs_is_malformed() {
        let (ask, ark) = (builtin::milan::ASK, builtin::milan::ARK);
        let err = parse_vek(ark).unwrap_err().to_string();
        assert!(
            err.ends_with("found CN=ARK-Milan, a self-issued CA certificate"),
            "{err}"
        );
        let der = Certificate::from_pem(ark).unwrap().to_der().unwrap();
        assert!(parse_vek(&der).is_err(), "DER too");
        let bundle = builtin_pem(ark) + &builtin_pem(ask);
        assert!(parse_vek(bundle.as_bytes()).is_err());
    }

    #[test]
    fn chain_errors_name_where_the_chain_came_from() {
        let ask = Certificate::from_pem(builtin::milan::ASK).unwrap();
        let ark = Certificate::from_pem(builtin::milan::ARK).unwrap();
        let vek = ask.clone();
        let err = split_chain(vec![ark], &vek, "the bundle").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed AMD certificate chain: the bundle: expected 2 certificates (the ASK or \
             ASVK, and the ARK), found 1"
        );
    }

    #[test]
    fn empty_or_unterminated_pem_chain_is_malformed() {
        for bad in ["", "   \n", "-----BEGIN CERTIFICATE-----\nAAAA"] {
            let err = parse_pem_chain(bad).unwrap_err();
            assert!(matches!(err, Error::Malformed { .. }), "{bad:?}: {err}");
        }
    }
}
