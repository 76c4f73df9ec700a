//! The coordinator's certificate authority: a root and an intermediate, both ECDSA P-256.
//!
//! ```text
//! root CA  (pathlen 1, 30 years)          <- clients pin this (`root_pem`)
//!   └─ intermediate CA  (pathlen 0, 20 years)
//!        ├─ coordinator TLS endpoint      (`issue_tls_server`)
//!        ├─ workload mesh identities       (`sign_csr`, at activation)
//!        └─ manifest `cert-*` secrets      (`issue_secret_cert`)
//! ```
//!
//! Every leaf's names come from the coordinator's own decision. For a workload CSR the names
//! the CSR requests (subject, SANs, extensions) are ignored: only its public key is taken, after
//! its self-signature is verified. The digest of that key (SHA-256 of the SubjectPublicKeyInfo
//! DER) is returned so activation can check it against the report-data binding
//! (`confidant_attest::binding::check_binding`).
//!
//! No function reads the clock: the time is always passed in. Persisting the CA is the caller's
//! job: [`CoordinatorCa::to_sealed_bytes`] gives the keys and certificates to put in the
//! encrypted store, [`CoordinatorCa::from_sealed_bytes`] reads them back (format in
//! [`sealed`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, RsaKeySize, SanType, SerialNumber,
    SignatureAlgorithm, SubjectPublicKeyInfo,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509CertificationRequest};
use x509_parser::public_key::PublicKey;
use zeroize::Zeroizing;

use encoding::{check_label, csr_der, parse_sans, private_key_pem, to_pem};

mod encoding;
pub mod sealed;

/// Validity of the root CA certificate.
pub const ROOT_VALIDITY: Duration = Duration::from_secs(30 * 365 * 86_400);
/// Validity of the intermediate CA certificate.
pub const INTERMEDIATE_VALIDITY: Duration = Duration::from_secs(20 * 365 * 86_400);
/// How far before the issuing time a leaf's `notBefore` is set, so that peers whose clocks run
/// slightly behind the coordinator's accept a fresh certificate.
pub const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(5 * 60);
/// The most days a manifest `cert-*` secret may be valid (the manifest's own bound).
pub const MAX_SECRET_VALIDITY_DAYS: u32 = 3650;

/// The smallest RSA key a workload's CSR may carry.
pub const MIN_RSA_BITS: usize = 2048;
const CA_ALG: &SignatureAlgorithm = &PKCS_ECDSA_P256_SHA256;

/// Why the CA could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The input was not acceptable: which field, what was expected, what was found.
    #[error("{field}: expected {expected}, got {got}")]
    Invalid {
        /// The offending input.
        field: String,
        /// What it must be.
        expected: String,
        /// What it was.
        got: String,
    },
    /// The CSR could not be parsed as a PKCS#10 certification request.
    #[error("csr: expected a PKCS#10 certification request (PEM or DER), got {0}")]
    CsrParse(String),
    /// The CSR's self-signature does not verify with the public key it carries.
    #[error("csr.signature: expected a valid self-signature ({algorithm}), got {reason}")]
    CsrSignature {
        /// The CSR's signature algorithm OID.
        algorithm: String,
        /// What the verifier said.
        reason: String,
    },
    /// The sealed bytes are not a CA this version can load.
    #[error("sealed CA: {0}")]
    Sealed(String),
    /// rcgen refused to build or sign a certificate.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn invalid(field: &str, expected: &str, got: impl std::fmt::Display) -> CaError {
    CaError::Invalid {
        field: field.to_string(),
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

/// The identity the coordinator gives a workload activation; the issued certificate carries
/// exactly these names, whatever the CSR asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// The workload's name in the manifest (`[A-Za-z0-9._-]+`).
    pub workload: String,
    /// The activation's id (`[A-Za-z0-9._-]+`).
    pub activation: String,
    /// Extra SANs (DNS names or IP addresses) the manifest gives the workload.
    pub sans: Vec<String>,
}

impl WorkloadIdentity {
    /// The URI SAN naming this activation: `confidant://workload/<workload>/<activation>`.
    pub fn uri(&self) -> String {
        format!("confidant://workload/{}/{}", self.workload, self.activation)
    }
}

/// A CSR whose form, self-signature and key [`CoordinatorCa::check_csr`] accepted.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    spki_der: Vec<u8>,
    is_rsa: bool,
}

impl CheckedCsr {
    /// SHA-256 of the CSR's SubjectPublicKeyInfo DER: what an activation's report data binds.
    pub fn spki_sha256(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &self.spki_der).as_ref());
        out
    }
}

/// A certificate signed from a workload's CSR.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The leaf certificate (PEM).
    pub cert_pem: String,
    /// The leaf followed by the intermediate (PEM): what the workload presents in TLS. The root
    /// is left out, as the peer's trust anchor.
    pub chain_pem: String,
    /// SHA-256 of the CSR's SubjectPublicKeyInfo DER, to compare with the key digest bound
    /// into the activation evidence's report data.
    pub spki_sha256: [u8; 32],
}

/// A key pair the coordinator generated, with its certificate.
#[derive(Debug, Clone)]
pub struct IssuedKeyPair {
    /// The leaf certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM); zeroized on drop.
    pub key_pem: Zeroizing<String>,
    /// The leaf followed by the intermediate (PEM).
    pub chain_pem: String,
}

/// The key type of a manifest `cert-*` secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKeyKind {
    /// `cert-ecdsa`: curve size in bits, 256 (P-256) or 384 (P-384).
    Ecdsa {
        /// 256 or 384.
        size: u32,
    },
    /// `cert-ed25519`.
    Ed25519,
    /// `cert-rsa`: modulus size in bits, 2048, 3072 or 4096.
    Rsa {
        /// 2048, 3072 or 4096.
        size: u32,
    },
}

impl SecretKeyKind {
    fn generate(self) -> Result<KeyPair, CaError> {
        Ok(match self {
            SecretKeyKind::Ecdsa { size: 256 } => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            SecretKeyKind::Ecdsa { size: 384 } => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?,
            SecretKeyKind::Ecdsa { size } => {
                return Err(invalid("cert-ecdsa.size", "256 or 384", size));
            }
            SecretKeyKind::Ed25519 => KeyPair::generate_for(&PKCS_ED25519)?,
            SecretKeyKind::Rsa { size } => {
                let bits = match size {
                    2048 => RsaKeySize::_2048,
                    3072 => RsaKeySize::_3072,
                    4096 => RsaKeySize::_4096,
                    _ => return Err(invalid("cert-rsa.size", "2048, 3072 or 4096", size)),
                };
                KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, bits)?
            }
        })
    }
}

/// The coordinator's CA: root and intermediate keys and certificates.
pub struct CoordinatorCa {
    root_key: KeyPair,
    root_der: Vec<u8>,
    intermediate_key: KeyPair,
    intermediate_der: Vec<u8>,
    /// The intermediate as rcgen's issuer handle (names and key identifier from its DER).
    intermediate: Certificate,
}

impl std::fmt::Debug for CoordinatorCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("CoordinatorCa")
            .field("root", &self.root_pem())
            .field("intermediate", &self.intermediate_pem())
            .finish_non_exhaustive()
    }
}

impl CoordinatorCa {
    /// Generates a fresh root (`CN=<name> Root CA`, pathlen 1, [`ROOT_VALIDITY`]) and
    /// intermediate (`CN=<name> Intermediate CA`, pathlen 0, [`INTERMEDIATE_VALIDITY`]), both
    /// valid from `now`.
    pub fn generate(name: &str, now: SystemTime) -> Result<CoordinatorCa, CaError> {
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(invalid(
                "ca.name",
                "1 to 64 characters, no control characters",
                format!("{name:?}"),
            ));
        }
        let now = to_datetime(now)?;
        let root_key = KeyPair::generate_for(CA_ALG)?;
        let root = ca_params(
            &format!("{name} Root CA"),
            1,
            now,
            now + ROOT_VALIDITY,
            &random_serial()?,
        )
        .self_signed(&root_key)?;
        let intermediate_key = KeyPair::generate_for(CA_ALG)?;
        let intermediate = ca_params(
            &format!("{name} Intermediate CA"),
            0,
            now,
            now + INTERMEDIATE_VALIDITY,
            &random_serial()?,
        )
        .signed_by(&intermediate_key, &root, &root_key)?;
        Ok(CoordinatorCa {
            root_der: root.der().to_vec(),
            intermediate_der: intermediate.der().to_vec(),
            root_key,
            intermediate_key,
            intermediate,
        })
    }

    /// The root certificate (PEM): the trust anchor clients and workloads pin.
    pub fn root_pem(&self) -> String {
        to_pem(&self.root_der)
    }

    /// The intermediate certificate (PEM).
    pub fn intermediate_pem(&self) -> String {
        to_pem(&self.intermediate_der)
    }

    /// The root CA's SubjectPublicKeyInfo (DER): what the coordinator's evidence binds.
    pub fn root_spki_der(&self) -> Vec<u8> {
        x509_parser::parse_x509_certificate(&self.root_der)
            .map(|(_, c)| c.tbs_certificate.subject_pki.raw.to_vec())
            .unwrap_or_default()
    }

    /// Signs `message` with the root CA key: ECDSA P-256 SHA-256, ASN.1 DER. Clients that
    /// pinned the root (after attesting the coordinator) verify coordinator records with it.
    pub fn sign_with_root(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
        let rng = SystemRandom::new();
        let pkcs8 = Zeroizing::new(self.root_key.serialize_der());
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
            .map_err(|e| CaError::Sealed(format!("root key: {e}")))?;
        key.sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| CaError::Sealed("signing with the root key failed".into()))
    }

    /// The intermediate followed by the root (PEM).
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.intermediate_pem(), self.root_pem())
    }

    /// A fresh P-256 key and certificate for the coordinator's own HTTPS endpoint: server
    /// authentication, `sans` (DNS names or IP addresses, at least one), valid from `now` (less
    /// [`NOT_BEFORE_BACKDATE`]) for `validity`.
    pub fn issue_tls_server(
        &self,
        sans: &[String],
        now: SystemTime,
        validity: Duration,
    ) -> Result<IssuedKeyPair, CaError> {
        if sans.is_empty() {
            return Err(invalid("tls.sans", "at least one DNS name or IP", "none"));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = self.leaf_params(&sans[0], now, validity, false)?;
        params.subject_alt_names = parse_sans(sans, "tls.sans")?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.intermediate, &self.intermediate_key)?;
        Ok(self.key_pair_out(&cert, &key))
    }

    /// Signs a workload's CSR (PEM or DER) with the identity the coordinator decided.
    ///
    /// The CSR's self-signature must verify; its subject, SANs and extensions are ignored. The
    /// certificate has `CN=<workload>`, the URI SAN [`WorkloadIdentity::uri`] and the identity's
    /// SANs, client and server authentication, and is valid from `now` (less
    /// [`NOT_BEFORE_BACKDATE`]) for `validity`.
    pub fn sign_csr(
        &self,
        csr: &[u8],
        identity: &WorkloadIdentity,
        now: SystemTime,
        validity: Duration,
    ) -> Result<IssuedCert, CaError> {
        let checked = self.check_csr(csr)?;
        self.sign_checked(&checked, identity, now, validity)
    }

    /// Parses `csr` (PEM or DER) and checks what [`CoordinatorCa::sign_csr`] checks of it alone
    /// (its self-signature, its key's kind and size), so that an activation refuses a CSR
    /// before it is counted.
    pub fn check_csr(&self, csr: &[u8]) -> Result<CheckedCsr, CaError> {
        check_csr(csr)
    }

    /// Issues the certificate for a CSR [`CoordinatorCa::check_csr`] accepted.
    pub fn sign_checked(
        &self,
        checked: &CheckedCsr,
        identity: &WorkloadIdentity,
        now: SystemTime,
        validity: Duration,
    ) -> Result<IssuedCert, CaError> {
        check_label(&identity.workload, "identity.workload")?;
        check_label(&identity.activation, "identity.activation")?;
        let spki_der = checked.spki_der.as_slice();
        let is_rsa = checked.is_rsa;
        let public_key = SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| {
            invalid(
                "csr.public_key",
                "an ECDSA P-256/P-384, Ed25519 or RSA key",
                e,
            )
        })?;
        let mut params = self.leaf_params(&identity.workload, now, validity, is_rsa)?;
        let uri = rcgen::Ia5String::try_from(identity.uri())
            .map_err(|e| invalid("identity", "an ASCII URI", e))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params
            .subject_alt_names
            .extend(parse_sans(&identity.sans, "identity.sans")?);
        let cert = params.signed_by(&public_key, &self.intermediate, &self.intermediate_key)?;
        let mut spki_sha256 = [0u8; 32];
        spki_sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, spki_der).as_ref());
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            chain_pem: format!("{}{}", cert.pem(), self.intermediate_pem()),
            spki_sha256,
        })
    }

    /// A fresh key pair of `kind` with a certificate for a manifest `cert-*` secret: `sans`
    /// (DNS names or IP addresses; the first is also the CN), client and server authentication,
    /// valid from `now` (less [`NOT_BEFORE_BACKDATE`]) for `validity_days` days (1 to
    /// [`MAX_SECRET_VALIDITY_DAYS`]).
    pub fn issue_secret_cert(
        &self,
        kind: SecretKeyKind,
        sans: &[String],
        validity_days: u32,
        now: SystemTime,
    ) -> Result<IssuedKeyPair, CaError> {
        if !(1..=MAX_SECRET_VALIDITY_DAYS).contains(&validity_days) {
            return Err(invalid(
                "secret.validity_days",
                &format!("1 to {MAX_SECRET_VALIDITY_DAYS}"),
                validity_days,
            ));
        }
        let subject_alt_names = parse_sans(sans, "secret.sans")?;
        let key = kind.generate()?;
        let cn = sans.first().map_or("confidant secret", String::as_str);
        let validity = Duration::from_secs(u64::from(validity_days) * 86_400);
        let mut params =
            self.leaf_params(cn, now, validity, matches!(kind, SecretKeyKind::Rsa { .. }))?;
        params.subject_alt_names = subject_alt_names;
        let cert = params.signed_by(&key, &self.intermediate, &self.intermediate_key)?;
        Ok(self.key_pair_out(&cert, &key))
    }

    fn key_pair_out(&self, cert: &Certificate, key: &KeyPair) -> IssuedKeyPair {
        IssuedKeyPair {
            cert_pem: cert.pem(),
            key_pem: private_key_pem(key),
            chain_pem: format!("{}{}", cert.pem(), self.intermediate_pem()),
        }
    }

    /// Parameters shared by every leaf: CN, validity within the intermediate's, random serial,
    /// not a CA, digital signature (and key encipherment for RSA), client and server auth.
    fn leaf_params(
        &self,
        common_name: &str,
        now: SystemTime,
        validity: Duration,
        key_encipherment: bool,
    ) -> Result<CertificateParams, CaError> {
        if validity.is_zero() {
            return Err(invalid("validity", "more than 0 seconds", "0"));
        }
        let now = to_datetime(now)?;
        let issuer = self.intermediate.params();
        let not_before = now - NOT_BEFORE_BACKDATE;
        let not_after = now + validity;
        if now < issuer.not_before || not_after > issuer.not_after {
            return Err(invalid(
                "validity",
                &format!(
                    "within the intermediate CA's {} to {}",
                    issuer.not_before, issuer.not_after
                ),
                format!("{now} to {not_after}"),
            ));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // "Not a CA" as DER encodes it: a critical BasicConstraints that is an empty SEQUENCE
        // (`cA` is DEFAULT FALSE, so DER leaves it out). rcgen's `ExplicitNoCa` writes `cA
        // FALSE` explicitly, which strict parsers (Python's `cryptography` >= 43) refuse.
        params.is_ca = IsCa::NoCa;
        let mut not_ca = CustomExtension::from_oid_content(BASIC_CONSTRAINTS_OID, vec![0x30, 0x00]);
        not_ca.set_criticality(true);
        params.custom_extensions.push(not_ca);
        params.not_before = not_before.max(issuer.not_before);
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if key_encipherment {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        Ok(params)
    }
}

/// The URI SAN prefix of workload certificates.
pub const WORKLOAD_URI_PREFIX: &str = "confidant://workload/";

impl CoordinatorCa {
    /// The workload activation a client certificate names, if this CA issued it for one:
    /// `leaf` (DER) must chain through this CA's intermediate (the client may send it among
    /// `intermediates`, or not) to this CA's root, be valid at `now`, allow client
    /// authentication (webpki, as rustls checks chains), and carry exactly one URI SAN
    /// `confidant://workload/<workload>/<activation>`. Returns `(workload, activation)`.
    ///
    /// The handshake's proof of the key is the TLS layer's job; this checks the certificate.
    pub fn workload_of(
        &self,
        leaf: &[u8],
        intermediates: &[&[u8]],
        now: SystemTime,
    ) -> Result<WorkloadIdentity, CaError> {
        use confidant_tls::{PinError, PinnedClientVerifier};
        use rustls::pki_types::{CertificateDer, UnixTime};
        use rustls::server::danger::ClientCertVerifier;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        // The client may send the intermediate or not: the verifier adds it.
        let verifier = PinnedClientVerifier::new(
            CertificateDer::from(self.root_der.as_slice()),
            Some(CertificateDer::from(self.intermediate_der.clone())),
            provider,
        )
        .map_err(|e| match e {
            PinError::TrustAnchor(e) => CaError::Sealed(format!("root certificate: {e}")),
            PinError::Verifier(e) => CaError::Sealed(format!("client certificate verifier: {e}")),
        })?;
        let chain: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(*c))
            .collect();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| invalid("now", "a time after 1970-01-01", "an earlier time"))?;
        verifier
            .verify_client_cert(
                &CertificateDer::from(leaf),
                &chain,
                UnixTime::since_unix_epoch(secs),
            )
            .map_err(|e| {
                invalid(
                    "certificate",
                    "a workload certificate of this coordinator",
                    e,
                )
            })?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| invalid("certificate", "an X.509 certificate", e))?;
        let mut uris = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::URI(u) = name {
                    uris.push(*u);
                }
            }
        }
        let workload_uris: Vec<&str> = uris
            .iter()
            .copied()
            .filter(|u| u.starts_with(WORKLOAD_URI_PREFIX))
            .collect();
        let [uri] = workload_uris.as_slice() else {
            return Err(invalid(
                "certificate",
                "exactly one URI SAN confidant://workload/<workload>/<activation>",
                format!("{} of them", workload_uris.len()),
            ));
        };
        let rest = &uri[WORKLOAD_URI_PREFIX.len()..];
        let Some((workload, activation)) = rest.split_once('/') else {
            return Err(invalid(
                "certificate",
                "a URI SAN confidant://workload/<workload>/<activation>",
                uri,
            ));
        };
        check_label(workload, "certificate.workload")?;
        check_label(activation, "certificate.activation")?;
        Ok(WorkloadIdentity {
            workload: workload.to_string(),
            activation: activation.to_string(),
            sans: Vec::new(),
        })
    }
}

/// Parses `csr` (PEM or DER) and checks what the CA checks of it alone: its self-signature,
/// its key's kind and size ([`CoordinatorCa::check_csr`]; the CSR is untrusted input).
pub fn check_csr(csr: &[u8]) -> Result<CheckedCsr, CaError> {
    let der = csr_der(csr)?;
    let (rest, req) =
        X509CertificationRequest::from_der(&der).map_err(|e| CaError::CsrParse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CaError::CsrParse(format!("{} trailing bytes", rest.len())));
    }
    // Key size first: ring refuses to verify with small RSA keys, which would be reported
    // as a bad signature.
    let is_rsa = match req.certification_request_info.subject_pki.parsed() {
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() < MIN_RSA_BITS => {
            return Err(invalid(
                "csr.public_key",
                &format!("an RSA key of at least {MIN_RSA_BITS} bits"),
                format!("{} bits", rsa.key_size()),
            ));
        }
        Ok(PublicKey::RSA(_)) => true,
        _ => false,
    };
    req.verify_signature().map_err(|e| CaError::CsrSignature {
        algorithm: req.signature_algorithm.algorithm.to_id_string(),
        reason: e.to_string(),
    })?;
    let spki_der = req.certification_request_info.subject_pki.raw.to_vec();
    SubjectPublicKeyInfo::from_der(&spki_der).map_err(|e| {
        invalid(
            "csr.public_key",
            "an ECDSA P-256/P-384, Ed25519 or RSA key",
            e,
        )
    })?;
    Ok(CheckedCsr { spki_der, is_rsa })
}

/// The public key (SubjectPublicKeyInfo, PEM `PUBLIC KEY`) of a PEM certificate.
pub fn public_key_pem_of(cert_pem: &str) -> Result<String, CaError> {
    let p = pem::parse(cert_pem.as_bytes())
        .map_err(|e| invalid("certificate", "a PEM certificate", e))?;
    let (_, cert) = x509_parser::parse_x509_certificate(p.contents())
        .map_err(|e| invalid("certificate", "an X.509 certificate", e))?;
    Ok(pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        cert.tbs_certificate.subject_pki.raw.to_vec(),
    )))
}

fn ca_params(
    common_name: &str,
    pathlen: u8,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: &SerialNumber,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Confidant");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(pathlen));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(serial.clone());
    params.use_authority_key_identifier_extension = pathlen == 0;
    params
}

fn to_datetime(t: SystemTime) -> Result<OffsetDateTime, CaError> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| invalid("now", "a time after 1970-01-01", "an earlier time"))?
        .as_secs();
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| invalid("now", "a representable date", format!("{secs} s")))
}

/// 16 random bytes, top bit clear: a positive serial, unguessable (RFC 5280 allows 20 octets).
/// id-ce-basicConstraints (RFC 5280, 4.2.1.9).
const BASIC_CONSTRAINTS_OID: &[u64] = &[2, 5, 29, 19];

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| invalid("serial", "random bytes from the system", "an RNG failure"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
