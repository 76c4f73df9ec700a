//! Recipient public keys and decryption private keys, read from the files `skopeo` and `openssl`
//! use: PEM or DER `SubjectPublicKeyInfo` and X.509 certificates for public keys; PKCS#8, PKCS#1
//! (RSA) and SEC1 (EC) for private keys. RSA keys of 2048 to 8192 bits and EC keys on P-256,
//! P-384 and P-521 are supported; password-protected private keys are not.

use std::fmt;

use aws_lc_rs::agreement;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::der;
use crate::{Error, Result};

/// An elliptic curve usable for ECDH-ES key wrapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (secp521r1).
    P521,
}

impl Curve {
    /// All supported curves.
    pub const ALL: [Curve; 3] = [Curve::P256, Curve::P384, Curve::P521];

    /// The curve's name in JWK `crv` (RFC 7518 §6.2.1.1): `P-256`, `P-384`, `P-521`.
    pub fn jwk_name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// Parses a JWK `crv` name.
    pub fn from_jwk_name(name: &str) -> Option<Curve> {
        Curve::ALL.into_iter().find(|c| c.jwk_name() == name)
    }

    /// Length in bytes of one coordinate (and of the ECDH shared secret).
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    pub(crate) fn agreement(self) -> &'static agreement::Algorithm {
        match self {
            Curve::P256 => &agreement::ECDH_P256,
            Curve::P384 => &agreement::ECDH_P384,
            Curve::P521 => &agreement::ECDH_P521,
        }
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => der::OID_P256,
            Curve::P384 => der::OID_P384,
            Curve::P521 => der::OID_P521,
        }
    }

    fn from_oid(oid: &[u8]) -> Option<Curve> {
        Curve::ALL.into_iter().find(|c| c.oid() == oid)
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jwk_name())
    }
}

/// The type and size of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// An RSA key with a modulus of `bits` bits.
    Rsa {
        /// Modulus size.
        bits: usize,
    },
    /// An EC key on a named curve.
    Ec(Curve),
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyKind::Ec(curve) => write!(f, "EC {curve}"),
        }
    }
}

/// A recipient's public key: RSA (wrapped to with RSA-OAEP) or EC (ECDH-ES+A256KW).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kind: KeyKind,
    /// Canonical DER `SubjectPublicKeyInfo`.
    spki: Vec<u8>,
    /// For EC keys, the uncompressed point `04 || X || Y`.
    ec_point: Option<Vec<u8>>,
}

impl PublicKey {
    /// Reads a public key from PEM (`PUBLIC KEY` or `CERTIFICATE`) or DER (SPKI or certificate),
    /// the inputs ocicrypt's `jwe:` recipients accept (JWK files are not supported).
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<PublicKey> {
        if let Some(blocks) = pem_blocks(bytes)? {
            let mut labels = Vec::new();
            for block in blocks {
                match block.label.as_str() {
                    "PUBLIC KEY" => return PublicKey::from_spki_der(&block.der),
                    "CERTIFICATE" => return PublicKey::from_certificate_der(&block.der),
                    other => labels.push(other.to_string()),
                }
            }
            return Err(Error::malformed(
                "public key",
                format!(
                    "expected a PEM block PUBLIC KEY or CERTIFICATE, found {}",
                    describe_labels(&labels)
                ),
            ));
        }
        PublicKey::from_spki_der(bytes)
            .or_else(|spki_err| PublicKey::from_certificate_der(bytes).map_err(|_| spki_err))
    }

    /// Reads the subject public key of a DER X.509 certificate (the certificate is not
    /// verified: it only carries the key, as in ocicrypt).
    pub fn from_certificate_der(der_bytes: &[u8]) -> Result<PublicKey> {
        let spki =
            der::certificate_spki(der_bytes).map_err(|e| Error::malformed("certificate", e))?;
        PublicKey::from_spki_der(spki)
    }

    /// Reads a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der_bytes: &[u8]) -> Result<PublicKey> {
        let malformed = |e: String| Error::malformed("public key (SubjectPublicKeyInfo)", e);
        let spki = der::expect_only(der_bytes, der::SEQUENCE, "SubjectPublicKeyInfo")
            .map_err(malformed)?;
        let (alg, rest) =
            der::expect(spki.contents, der::SEQUENCE, "algorithm").map_err(malformed)?;
        let (key_bits, _) =
            der::expect(rest, der::BIT_STRING, "subjectPublicKey").map_err(malformed)?;
        let (alg_name, params) = der::algorithm_identifier(&alg).map_err(malformed)?;
        match alg_name {
            "rsaEncryption" => {
                let key = PublicEncryptingKey::from_der(der_bytes).map_err(|e| {
                    Error::Key(format!(
                        "RSA public key rejected ({e}): expected a 2048 to 8192-bit key"
                    ))
                })?;
                let bits = key.key_size_bits();
                let spki = key
                    .as_der()
                    .map_err(|_| Error::Key("cannot encode the RSA public key".into()))?;
                Ok(PublicKey {
                    kind: KeyKind::Rsa { bits },
                    spki: spki.as_ref().to_vec(),
                    ec_point: None,
                })
            }
            "id-ecPublicKey" => {
                let curve = ec_curve_param(params)?;
                let point = match key_bits.contents.split_first() {
                    Some((0, point)) => point,
                    _ => {
                        return Err(malformed(
                            "expected a BIT STRING with no unused bits".into(),
                        ));
                    }
                };
                PublicKey::from_ec_point(curve, point)
            }
            _ => Err(Error::Unsupported(format!(
                "public key algorithm {}: expected rsaEncryption or id-ecPublicKey",
                hex::encode(alg.contents)
            ))),
        }
    }

    /// An EC public key from its uncompressed point `04 || X || Y`; the point is checked to be on
    /// the curve.
    pub fn from_ec_point(curve: Curve, point: &[u8]) -> Result<PublicKey> {
        let expected = 1 + 2 * curve.coordinate_len();
        if point.len() != expected || point[0] != 0x04 {
            return Err(Error::Key(format!(
                "EC {curve} public key: expected an uncompressed point of {expected} bytes starting with 04, \
                 found {} bytes starting with {:02x}",
                point.len(),
                point.first().copied().unwrap_or(0)
            )));
        }
        let unparsed = agreement::UnparsedPublicKey::new(curve.agreement(), point);
        agreement::ParsedPublicKey::try_from(&unparsed).map_err(|_| {
            Error::Key(format!(
                "EC {curve} public key: the point is not on the curve"
            ))
        })?;
        Ok(PublicKey {
            kind: KeyKind::Ec(curve),
            spki: der::ec_spki(curve.oid(), point),
            ec_point: Some(point.to_vec()),
        })
    }

    /// Type and size of the key.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The canonical DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// `sha256:<hex>` of the canonical DER `SubjectPublicKeyInfo`: how Confidant names a key.
    pub fn key_id(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.spki);
        format!("sha256:{}", hex::encode(digest.as_ref()))
    }

    /// PEM `PUBLIC KEY` encoding.
    pub fn to_pem(&self) -> String {
        to_pem("PUBLIC KEY", &self.spki)
    }

    pub(crate) fn ec_point(&self) -> Option<(Curve, &[u8])> {
        match (self.kind, &self.ec_point) {
            (KeyKind::Ec(curve), Some(point)) => Some((curve, point)),
            _ => None,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.kind, self.key_id())
    }
}

enum PrivateInner {
    Rsa(OaepPrivateDecryptingKey),
    Ec(Curve, agreement::PrivateKey),
}

/// A private key that unwraps layer keys: RSA (RSA-OAEP, RSA-OAEP-256) or EC (ECDH-ES+A256KW).
pub struct PrivateKey {
    inner: PrivateInner,
    public: PublicKey,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl PrivateKey {
    /// Reads a private key from PEM (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`; an
    /// `EC PARAMETERS` block before it is skipped) or DER (PKCS#8, PKCS#1, SEC1).
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<PrivateKey> {
        let Some(blocks) = pem_blocks(bytes)? else {
            return PrivateKey::from_der(bytes);
        };
        let mut labels = Vec::new();
        for block in blocks {
            if block.encrypted {
                return Err(Error::Unsupported(format!(
                    "password-protected PEM block {}: decrypt it first (openssl pkey -in KEY -out PLAIN)",
                    block.label
                )));
            }
            match block.label.as_str() {
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                    return PrivateKey::from_der(&block.der);
                }
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(Error::Unsupported(
                        "password-protected PKCS#8 key: decrypt it first (openssl pkey -in KEY -out PLAIN)".into(),
                    ));
                }
                other => labels.push(other.to_string()),
            }
        }
        Err(Error::malformed(
            "private key",
            format!(
                "expected a PEM block PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY, found {}",
                describe_labels(&labels)
            ),
        ))
    }

    /// Reads a DER private key: PKCS#8 `PrivateKeyInfo`, PKCS#1 `RSAPrivateKey` or SEC1
    /// `ECPrivateKey`, told apart by their structure.
    pub fn from_der(der_bytes: &[u8]) -> Result<PrivateKey> {
        let malformed = |e: String| Error::malformed("private key", e);
        let outer = der::expect_only(der_bytes, der::SEQUENCE, "private key").map_err(malformed)?;
        let (_version, rest) =
            der::expect(outer.contents, der::INTEGER, "version").map_err(malformed)?;
        let (second, _) = der::read(rest).map_err(malformed)?;
        match second.tag {
            der::SEQUENCE => PrivateKey::from_pkcs8(der_bytes, &second),
            der::INTEGER => {
                let pkcs8 = Zeroizing::new(der::pkcs1_to_pkcs8(der_bytes));
                PrivateKey::from_rsa_pkcs8(pkcs8)
            }
            der::OCTET_STRING => PrivateKey::from_sec1(der_bytes, rest),
            tag => Err(malformed(format!(
                "expected PKCS#8, PKCS#1 or SEC1: element after the version has tag {tag:#04x}"
            ))),
        }
    }

    fn from_pkcs8(der_bytes: &[u8], alg: &der::Tlv<'_>) -> Result<PrivateKey> {
        let (alg_name, params) =
            der::algorithm_identifier(alg).map_err(|e| Error::malformed("PKCS#8 key", e))?;
        match alg_name {
            "rsaEncryption" => PrivateKey::from_rsa_pkcs8(Zeroizing::new(der_bytes.to_vec())),
            "id-ecPublicKey" => {
                let curve = ec_curve_param(params)?;
                PrivateKey::from_ec_der(curve, der_bytes)
            }
            _ => Err(Error::Unsupported(format!(
                "private key algorithm {}: expected rsaEncryption or id-ecPublicKey",
                hex::encode(alg.contents)
            ))),
        }
    }

    fn from_sec1(der_bytes: &[u8], after_version: &[u8]) -> Result<PrivateKey> {
        let malformed = |e: String| Error::malformed("SEC1 EC private key", e);
        let (_d, mut rest) =
            der::expect(after_version, der::OCTET_STRING, "privateKey").map_err(malformed)?;
        while !rest.is_empty() {
            let (tlv, after) = der::read(rest).map_err(malformed)?;
            if tlv.tag == der::CONTEXT_0 {
                let curve = ec_curve_param(Some(der::read(tlv.contents).map_err(malformed)?.0))?;
                return PrivateKey::from_ec_der(curve, der_bytes);
            }
            rest = after;
        }
        // No curve parameter: the key only fits one curve.
        Curve::ALL
            .into_iter()
            .find_map(|curve| PrivateKey::from_ec_der(curve, der_bytes).ok())
            .ok_or_else(|| {
                malformed("no curve parameter, and the key fits none of P-256, P-384, P-521".into())
            })
    }

    fn from_rsa_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<PrivateKey> {
        let key = PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(|e| {
            Error::Key(format!(
                "RSA private key rejected ({e}): expected a 2048 to 8192-bit key"
            ))
        })?;
        PrivateKey::from_rsa(key)
    }

    fn from_rsa(key: PrivateDecryptingKey) -> Result<PrivateKey> {
        let public_der = key
            .public_key()
            .as_der()
            .map_err(|_| Error::Key("cannot encode the RSA public key".into()))?;
        let public = PublicKey::from_spki_der(public_der.as_ref())?;
        let pkcs8: Pkcs8V1Der<'static> = key
            .as_der()
            .map_err(|_| Error::Key("cannot encode the RSA private key".into()))?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let oaep = OaepPrivateDecryptingKey::new(key)
            .map_err(|_| Error::Key("RSA key unusable for OAEP".into()))?;
        Ok(PrivateKey {
            inner: PrivateInner::Rsa(oaep),
            public,
            pkcs8,
        })
    }

    fn from_ec_der(curve: Curve, der_bytes: &[u8]) -> Result<PrivateKey> {
        let key = agreement::PrivateKey::from_private_key_der(curve.agreement(), der_bytes)
            .map_err(|e| Error::Key(format!("EC {curve} private key rejected: {e}")))?;
        PrivateKey::from_ec(curve, key)
    }

    fn from_ec(curve: Curve, key: agreement::PrivateKey) -> Result<PrivateKey> {
        let point = key.compute_public_key().map_err(|_| {
            Error::Key(format!(
                "EC {curve} private key: cannot compute the public key"
            ))
        })?;
        let public = PublicKey::from_ec_point(curve, point.as_ref())?;
        let pkcs8: Pkcs8V1Der<'static> = key
            .as_der()
            .map_err(|_| Error::Key(format!("EC {curve} private key: cannot encode it")))?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        Ok(PrivateKey {
            inner: PrivateInner::Ec(curve, key),
            public,
            pkcs8,
        })
    }

    /// Generates a new EC key (for a coordinator's image key, or tests).
    pub fn generate_ec(curve: Curve) -> Result<PrivateKey> {
        let key = agreement::PrivateKey::generate(curve.agreement())
            .map_err(|_| Error::Key(format!("cannot generate an EC {curve} key")))?;
        PrivateKey::from_ec(curve, key)
    }

    /// Generates a new RSA key of 2048, 3072, 4096 or 8192 bits.
    pub fn generate_rsa(bits: usize) -> Result<PrivateKey> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            8192 => KeySize::Rsa8192,
            _ => {
                return Err(Error::Unsupported(format!(
                    "RSA key size {bits}: expected 2048, 3072, 4096 or 8192"
                )));
            }
        };
        let key = PrivateDecryptingKey::generate(size)
            .map_err(|_| Error::Key("cannot generate an RSA key".into()))?;
        PrivateKey::from_rsa(key)
    }

    /// Type and size of the key.
    pub fn kind(&self) -> KeyKind {
        self.public.kind
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// PKCS#8 DER encoding (secret).
    pub fn to_pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// PKCS#8 PEM encoding (`PRIVATE KEY`, secret), as `openssl genpkey` writes it.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(to_pem("PRIVATE KEY", &self.pkcs8))
    }

    pub(crate) fn rsa(&self) -> Option<&OaepPrivateDecryptingKey> {
        match &self.inner {
            PrivateInner::Rsa(key) => Some(key),
            PrivateInner::Ec(..) => None,
        }
    }

    pub(crate) fn ec(&self) -> Option<(Curve, &agreement::PrivateKey)> {
        match &self.inner {
            PrivateInner::Ec(curve, key) => Some((*curve, key)),
            PrivateInner::Rsa(_) => None,
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PrivateKey({}, public {})",
            self.kind(),
            self.public.key_id()
        )
    }
}

/// The named curve of an EC `AlgorithmIdentifier`'s parameters.
fn ec_curve_param(params: Option<der::Tlv<'_>>) -> Result<Curve> {
    match params {
        Some(tlv) if tlv.tag == der::OID => Curve::from_oid(tlv.contents).ok_or_else(|| {
            Error::Unsupported(format!(
                "elliptic curve with OID contents {}: expected P-256, P-384 or P-521",
                hex::encode(tlv.contents)
            ))
        }),
        Some(tlv) => Err(Error::Unsupported(format!(
            "EC key with explicit curve parameters (tag {:#04x}): expected a named curve",
            tlv.tag
        ))),
        None => Err(Error::malformed(
            "EC key",
            "expected a named-curve parameter, found none",
        )),
    }
}

/// One PEM block.
struct PemBlock {
    label: String,
    der: Zeroizing<Vec<u8>>,
    /// RFC 1421 `Proc-Type: 4,ENCRYPTED` header present.
    encrypted: bool,
}

/// The PEM blocks of `bytes`, or `None` if `bytes` is not PEM (then it may be DER).
fn pem_blocks(bytes: &[u8]) -> Result<Option<Vec<PemBlock>>> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(None);
    };
    if !text.contains("-----BEGIN ") {
        return Ok(None);
    }
    let malformed = |e: String| Error::malformed("PEM", e);
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = Zeroizing::new(String::new());
        let mut encrypted = false;
        let mut closed = false;
        for line in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                // RFC 1421 headers (legacy OpenSSL encrypted keys).
                if name.trim() == "Proc-Type" && value.contains("ENCRYPTED") {
                    encrypted = true;
                }
                continue;
            }
            body.push_str(line);
        }
        if !closed {
            return Err(malformed(format!(
                "expected {end:?}, found the end of the file"
            )));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| malformed(format!("block {label}: invalid base64: {e}")))?;
        blocks.push(PemBlock {
            label: label.to_string(),
            der: Zeroizing::new(der),
            encrypted,
        });
    }
    Ok(Some(blocks))
}

fn describe_labels(labels: &[String]) -> String {
    if labels.is_empty() {
        "no complete block".to_string()
    } else {
        labels.join(", ")
    }
}

fn to_pem(label: &str, der_bytes: &[u8]) -> String {
    let b64 = STANDARD.encode(der_bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_keys_round_trip_through_pkcs8_pem_and_der() {
        for curve in Curve::ALL {
            let key = PrivateKey::generate_ec(curve).unwrap();
            let pem = key.to_pkcs8_pem();
            let again = PrivateKey::from_pem_or_der(pem.as_bytes()).unwrap();
            assert_eq!(again.public_key(), key.public_key());
            let again = PrivateKey::from_pem_or_der(key.to_pkcs8_der()).unwrap();
            assert_eq!(again.kind(), KeyKind::Ec(curve));
            let public = PublicKey::from_pem_or_der(key.public_key().to_pem().as_bytes()).unwrap();
            assert_eq!(&public, key.public_key());
            assert_eq!(public.spki_der().len(), key.public_key().spki_der().len());
        }
    }

    #[test]
    fn rsa_key_round_trips_and_pkcs1_is_accepted() {
        let key = PrivateKey::generate_rsa(2048).unwrap();
        assert_eq!(key.kind(), KeyKind::Rsa { bits: 2048 });
        let again = PrivateKey::from_pem_or_der(key.to_pkcs8_pem().as_bytes()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        // Take the PKCS#1 structure out of the PKCS#8 one and feed it back as PEM and DER.
        let outer = der::expect_only(key.to_pkcs8_der(), der::SEQUENCE, "p8").unwrap();
        let (_, rest) = der::read(outer.contents).unwrap();
        let (_, rest) = der::read(rest).unwrap();
        let (octets, _) = der::expect(rest, der::OCTET_STRING, "key").unwrap();
        let pkcs1 = octets.contents;
        let from_der = PrivateKey::from_pem_or_der(pkcs1).unwrap();
        assert_eq!(from_der.public_key(), key.public_key());
        let pem = to_pem("RSA PRIVATE KEY", pkcs1);
        let from_pem = PrivateKey::from_pem_or_der(pem.as_bytes()).unwrap();
        assert_eq!(from_pem.public_key(), key.public_key());
    }

    #[test]
    fn refuses_encrypted_and_unknown_pem() {
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(
            PrivateKey::from_pem_or_der(enc.as_bytes()),
            Err(Error::Unsupported(_))
        ));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(
            PrivateKey::from_pem_or_der(legacy.as_bytes()),
            Err(Error::Unsupported(_))
        ));
        let other = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let err = PrivateKey::from_pem_or_der(other.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("found PUBLIC KEY"), "{err}");
        let open = "-----BEGIN PUBLIC KEY-----\nAAAA\n";
        assert!(PublicKey::from_pem_or_der(open.as_bytes()).is_err());
    }

    #[test]
    fn refuses_points_off_the_curve() {
        let key = PrivateKey::generate_ec(Curve::P256).unwrap();
        let (_, point) = key.public_key().ec_point().unwrap();
        let mut bad = point.to_vec();
        bad[40] ^= 1;
        assert!(matches!(
            PublicKey::from_ec_point(Curve::P256, &bad),
            Err(Error::Key(_))
        ));
        assert!(PublicKey::from_ec_point(Curve::P384, point).is_err());
    }

    #[test]
    fn key_id_is_sha256_of_spki() {
        let key = PrivateKey::generate_ec(Curve::P384).unwrap();
        let id = key.public_key().key_id();
        let expected =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key().spki_der());
        assert_eq!(id, format!("sha256:{}", hex::encode(expected.as_ref())));
    }
}
