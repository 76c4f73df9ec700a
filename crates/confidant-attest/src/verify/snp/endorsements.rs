//! The SNP endorsements that travel with evidence, parsed before anything is verified: the VCEK
//! or VLEK (DER, PEM, or a PEM bundle of it followed by its ASK or ASVK and ARK, as Azure serves
//! them) and the `cert_chain`. A chain given in the bundle is a given chain like `cert_chain`:
//! its ARK is trusted only for carrying the key of a built-in AMD root ([`super::SnpVerifier`]).

use x509_cert::Certificate;

use super::certs::{self, VekExtensions, name_label};
use super::report::SigningKey;
use crate::error::{Error, Result};
use crate::evidence::Endorsements;
use crate::tee::Tee;

/// The SNP endorsements that came with the evidence, parsed; nothing in them is verified yet.
pub(super) struct GivenEndorsements {
    /// The VCEK or VLEK.
    pub(super) vek: Certificate,
    /// VCEK or VLEK, as its names say.
    pub(super) kind: SigningKey,
    /// Its TCB and hwID extensions.
    pub(super) extensions: VekExtensions,
    /// The ASK (or ASVK) and ARK, when given: as `cert_chain`, or after the VCEK or VLEK in a
    /// PEM bundle.
    pub(super) chain: Option<(Certificate, Certificate)>,
}

impl GivenEndorsements {
    /// Parses the VCEK or VLEK (DER, PEM, or a PEM bundle of it and its CA certificates) and the
    /// `cert_chain`. A chain given twice, in the bundle and as `cert_chain`, must be the same
    /// certificates.
    pub(super) fn parse(endorsements: &Endorsements) -> Result<GivenEndorsements> {
        let bytes = endorsements
            .vcek
            .as_deref()
            .ok_or(Error::MissingEndorsement {
                tee: Tee::Snp,
                what: "a VCEK or VLEK certificate",
                hint: "pass --vcek FILE (DER, PEM, or a PEM bundle: the VCEK, then its ASK and ARK)",
            })?;
        let (vek, bundled) = certs::parse_vek(bytes)?;
        let kind = certs::key_kind(&vek);
        let extensions = certs::vek_extensions(&vek)?;
        let label = kind.label();
        let bundled = if bundled.is_empty() {
            None
        } else {
            let from = format!("the certificates after the {label} in its PEM bundle");
            Some(certs::split_chain(bundled, &vek, &from)?)
        };
        let separate = endorsements
            .cert_chain
            .as_deref()
            .map(|pem| certs::split_chain(certs::parse_pem_chain(pem)?, &vek, "cert_chain"))
            .transpose()?;
        let chain = match (bundled, separate) {
            (Some(bundled), Some(separate)) if bundled != separate => {
                let names = |(ask, ark): &(Certificate, Certificate)| {
                    format!(
                        "{} {}, ARK {}",
                        ca_role(kind),
                        name_label(&ask.tbs_certificate.subject),
                        name_label(&ark.tbs_certificate.subject)
                    )
                };
                let (b, s) = (names(&bundled), names(&separate));
                let same_names = if b == s {
                    " (the same names, different certificates)"
                } else {
                    ""
                };
                return Err(Error::malformed(
                    certs::WHAT_CHAIN,
                    format!(
                        "the {label}'s PEM bundle and cert_chain give different CA certificates: \
                         {b} in the bundle, {s} in cert_chain{same_names}; give the chain once"
                    ),
                ));
            }
            (bundled, separate) => separate.or(bundled),
        };
        Ok(GivenEndorsements {
            vek,
            kind,
            extensions,
            chain,
        })
    }
}

/// The CA that signs a VCEK (ASK) or a VLEK (ASVK).
pub(super) fn ca_role(kind: SigningKey) -> &'static str {
    if kind == SigningKey::Vlek {
        "ASVK"
    } else {
        "ASK"
    }
}
