//! The few DER structures key files are made of, read and written by hand: `SubjectPublicKeyInfo`,
//! PKCS#8 `PrivateKeyInfo`, PKCS#1 `RSAPrivateKey`, SEC1 `ECPrivateKey`, and the way to the key
//! inside an X.509 certificate. Only definite lengths and one-byte tags, which is all DER uses
//! for these structures. Every read is bounds-checked; malformed input is an error, never a panic.

/// Universal tags used here.
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const NULL: u8 = 0x05;
pub(crate) const OID: u8 = 0x06;
pub(crate) const SEQUENCE: u8 = 0x30;
/// `[0]`, constructed, context-specific.
pub(crate) const CONTEXT_0: u8 = 0xa0;

/// Object identifier contents (without tag and length).
pub(crate) const OID_RSA_ENCRYPTION: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
pub(crate) const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

/// One element: its tag, its contents, and the whole encoding (header and contents).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub contents: &'a [u8],
    pub whole: &'a [u8],
}

/// Reads one element from the front of `input`; returns it and what follows it.
pub(crate) fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = input
        .split_first()
        .ok_or("expected a DER element, found the end of input")?;
    if tag & 0x1f == 0x1f {
        return Err(format!(
            "expected a one-byte DER tag, found multi-byte tag {tag:#04x}"
        ));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or("expected a DER length, found the end of input")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 {
            return Err("expected a definite DER length, found the indefinite form".into());
        }
        if count > 4 || count > rest.len() {
            return Err(format!(
                "expected a DER length of at most 4 bytes, found {count}"
            ));
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    if len > rest.len() {
        return Err(format!(
            "element with tag {tag:#04x} claims {len} bytes but only {} remain",
            rest.len()
        ));
    }
    let header_len = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        contents: &rest[..len],
        whole: &input[..header_len + len],
    };
    Ok((tlv, &rest[len..]))
}

/// Reads one element that must have tag `tag`.
pub(crate) fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &str,
) -> Result<(Tlv<'a>, &'a [u8]), String> {
    let (tlv, rest) = read(input).map_err(|e| format!("{what}: {e}"))?;
    if tlv.tag != tag {
        return Err(format!(
            "{what}: expected tag {tag:#04x}, found {:#04x}",
            tlv.tag
        ));
    }
    Ok((tlv, rest))
}

/// Reads exactly one element with tag `tag` that spans all of `input`.
pub(crate) fn expect_only<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<Tlv<'a>, String> {
    let (tlv, rest) = expect(input, tag, what)?;
    if !rest.is_empty() {
        return Err(format!(
            "{what}: {} trailing bytes after the element",
            rest.len()
        ));
    }
    Ok(tlv)
}

/// Encodes a length in DER.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Encodes one element.
pub(crate) fn encode(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    push_len(&mut out, contents.len());
    out.extend_from_slice(contents);
    out
}

/// `AlgorithmIdentifier` of an EC key on the named curve `curve_oid`.
pub(crate) fn ec_algorithm(curve_oid: &[u8]) -> Vec<u8> {
    let mut inner = encode(OID, OID_EC_PUBLIC_KEY);
    inner.extend(encode(OID, curve_oid));
    encode(SEQUENCE, &inner)
}

/// The canonical `SubjectPublicKeyInfo` of an EC public key given as an uncompressed point.
pub(crate) fn ec_spki(curve_oid: &[u8], point: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(point.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(point);
    let mut inner = ec_algorithm(curve_oid);
    inner.extend(encode(BIT_STRING, &bits));
    encode(SEQUENCE, &inner)
}

/// Wraps a PKCS#1 `RSAPrivateKey` into a PKCS#8 `PrivateKeyInfo`.
pub(crate) fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let mut alg = encode(OID, OID_RSA_ENCRYPTION);
    alg.extend(encode(NULL, &[]));
    let mut inner = encode(INTEGER, &[0]);
    inner.extend(encode(SEQUENCE, &alg));
    inner.extend(encode(OCTET_STRING, pkcs1));
    encode(SEQUENCE, &inner)
}

/// The parts of an `AlgorithmIdentifier`: the algorithm OID and the parameters element, if any.
pub(crate) fn algorithm_identifier<'a>(
    tlv: &Tlv<'a>,
) -> Result<(&'static str, Option<Tlv<'a>>), String> {
    let (oid, rest) = expect(tlv.contents, OID, "algorithm identifier")?;
    let params = if rest.is_empty() {
        None
    } else {
        Some(read(rest)?.0)
    };
    let name = if oid.contents == OID_RSA_ENCRYPTION {
        "rsaEncryption"
    } else if oid.contents == OID_EC_PUBLIC_KEY {
        "id-ecPublicKey"
    } else {
        "unsupported"
    };
    Ok((name, params))
}

/// The `SubjectPublicKeyInfo` element inside a DER X.509 certificate.
pub(crate) fn certificate_spki(cert: &[u8]) -> Result<&[u8], String> {
    let cert = expect_only(cert, SEQUENCE, "certificate")?;
    let (tbs, _) = expect(cert.contents, SEQUENCE, "tbsCertificate")?;
    let mut rest = tbs.contents;
    // version [0] EXPLICIT, optional
    let (first, after) = read(rest)?;
    if first.tag == CONTEXT_0 {
        rest = after;
    }
    for what in ["serialNumber", "signature", "issuer", "validity", "subject"] {
        let (_, after) = read(rest).map_err(|e| format!("certificate {what}: {e}"))?;
        rest = after;
    }
    let (spki, _) = expect(rest, SEQUENCE, "certificate subjectPublicKeyInfo")?;
    Ok(spki.whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        let contents = vec![7u8; 300];
        let enc = encode(OCTET_STRING, &contents);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (tlv, rest) = read(&enc).unwrap();
        assert!(rest.is_empty());
        assert_eq!(tlv.contents, &contents[..]);
        assert_eq!(tlv.whole, &enc[..]);
    }

    #[test]
    fn rejects_truncated_and_indefinite_elements() {
        assert!(read(&[]).is_err());
        assert!(read(&[0x30]).is_err());
        assert!(read(&[0x30, 0x05, 1, 2]).is_err());
        assert!(read(&[0x30, 0x80, 0, 0]).is_err());
        assert!(read(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(read(&[0x1f, 0x01, 0]).is_err());
    }
}
