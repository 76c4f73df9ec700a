//! A CA hierarchy like the coordinator's (root → intermediate → leaf, ECDSA P-256), for the
//! tests and the `mesh_proxy` example's `gen-certs`.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};

/// Root and intermediate CA.
pub(crate) struct Ca {
    root: Certificate,
    intermediate: Certificate,
    intermediate_key: KeyPair,
}

/// A leaf issued by [`Ca::try_issue`].
pub(crate) struct Issued {
    /// Leaf then intermediate (PEM).
    pub chain_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
}

fn ca_params(org: &str, cn: &str, pathlen: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, org);
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(pathlen));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = pathlen == 0;
    params
}

impl Ca {
    /// A fresh root and intermediate for organization `org`.
    pub(crate) fn try_new(org: &str) -> Result<Ca, rcgen::Error> {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let root = ca_params(org, &format!("{org} Root CA"), 1).self_signed(&root_key)?;
        let intermediate_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let intermediate = ca_params(org, &format!("{org} Intermediate CA"), 0).signed_by(
            &intermediate_key,
            &root,
            &root_key,
        )?;
        Ok(Ca {
            root,
            intermediate,
            intermediate_key,
        })
    }

    /// The root certificate (PEM).
    pub(crate) fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// A workload leaf as the coordinator issues it: CN = workload, URI SAN
    /// `confidant://workload/<workload>/1`, plus DNS `localhost` and IP 127.0.0.1; client and
    /// server authentication.
    pub(crate) fn try_issue(&self, workload: &str) -> Result<Issued, rcgen::Error> {
        self.try_issue_with(workload, &[&format!("confidant://workload/{workload}/1")])
    }

    /// A leaf with CN `cn` and exactly the URI SANs `uris` (plus `localhost`, 127.0.0.1).
    pub(crate) fn try_issue_with(&self, cn: &str, uris: &[&str]) -> Result<Issued, rcgen::Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.subject_alt_names = uris
            .iter()
            .map(|u| Ok(SanType::URI((*u).try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        params
            .subject_alt_names
            .push(SanType::DnsName("localhost".try_into()?));
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let cert = params.signed_by(&key, &self.intermediate, &self.intermediate_key)?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.intermediate.pem()),
            key_pem: key.serialize_pem(),
        })
    }
}
