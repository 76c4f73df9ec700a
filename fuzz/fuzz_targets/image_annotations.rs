//! Encrypted-layer annotations and key files from untrusted bytes: the `pubopts` annotation and
//! JSON, the private options JSON, JWE parsing and unwrapping (with fixed RSA and P-256 test
//! keys), the `keys.jwe` annotation, the `provider.confidant` annotation (the P-256 key as the
//! coordinator's), and the PEM/DER key parsers. Any panic is a bug.
#![no_main]

use std::sync::LazyLock;

use confidant_image::crypt::jwe::{self, Jwe};
use confidant_image::crypt::opts::{PrivateLayerBlockCipherOptions, PublicLayerBlockCipherOptions};
use confidant_image::crypt::{PrivateKey, PublicKey, provider};
use libfuzzer_sys::fuzz_target;

/// Test-only keys, fixed so that findings reproduce (made with `openssl genpkey`).
const EC_P256_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmn8I1iAbjiuXNaVE
3GZBUjl/EjuyJPwm913Tn/x5J1mhRANCAATAWcvV0hS6uWp8IZz2Qfcgi3qAi02q
qK6X+vb212d13zxuoDXb5GHkhn7xgS5z3Zr6NdKxgZCHw8pROikki1WX
-----END PRIVATE KEY-----
";
const RSA_2048_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCWmj0vIlqOcRtR
XeGmZG4yBIHAnkzv9EWT7dYmI+is/WdhStnRm0dQEpWz4ITkEhP+hiaQ6VPN1ts8
6UPVS1sIeNara8Jp9V0e4t1r4Zm/DH3MfgsDBwLkeLd8RrMyK8IEXi1WOK0pfz5f
cmN7ZeKAbu1D4uRB3sM9VgHvkMbvnLb/CVeWmou+OQVmXs3k79HZiFVMnOnca6cH
lXPgjaTBcUt8AeRlVn719umlgVY0vGX89C7/M9jbX4UufGoWN90sXq+24ypSwNym
JYkcx9U/ie4XGUgiOwxjcBBg0XipQNQhCYdth5o7Wq+uCxPBV7uWuORqThkMbs8v
ohBnpKNLAgMBAAECggEADsGOEnrgjz8F2N3EqPOuLbht/jGEgv5W0ue609cw38JJ
yX6hWP2d6c/oWyI54x7iVqNOTrnjPDKRHfwSaWkOF7EUrOHMwBUKdWbvywzlGOhg
axOZK0gZ6x4+MYRmim6Ufq5mQsx1gFtiASLJceMfDkvQHkFc8WyiNKBOEEBfPZrh
avVOaU2KGRpYPfLNcgAqgKX6A9Dme4rB6y11DUWLFGCcGoVbojw41o4zZb2+JXIS
SSnW0Lj7TBUcwsLQm9MKmLQfVgGN1dViVbUXjGTTkUf4aclxbXLSppSpsViqMi1K
0L3XlSwPzYe/BDPL1C5LQl6zTveI4QtnbtqNuSx6AQKBgQDSvaUR1Dt/0HatXe92
Av682sBB0qbDYj7RhabmB/HznRdCWokWxkyE6GPO6NrBFZ8YtKsJ20NgNOpoAioV
uMUrA+wNsgrEoDHX7Ehk8SywY3DcVcPgOUwr8vI4ctqSzR2IgMwKovrEGy35KBqL
ppDTThxmCcETaFJLauRm8EhnNQKBgQC28j1p9fzkHaKb9G7jmRtSMtr/8yXK+lac
Ey3oNYco4R8ellttozDe8GCHOx3sK6aPz6tg5F9oSfMPdsHSt+FuEzyEsryaWLPm
8RARZm9YSLbgJMSWMy6o/qiR8vkzrGyO5MkQBRbYFQekL7bovk6Vi9QwAv0wCVzQ
itPpUVGwfwKBgFPUqNNcz4ZakLsKQPV634aUpiII/9l9PWvvdKLQykiUVupIRXxP
yaSdJQbrzgk85prXU6qKFFUy94QESGV3qMchukcAahQpfWpdTbcJ0TMhe4XKgC6z
3D8nV39pANWgzny8b25Twtk7zp/sehLPYZEM43MbsjhcKVBi5xSjxMl5AoGBAJZj
l9ytHFChk/TEAQwT5oOxzpms1ZqAJAZ1Nb23kv4l4aERVONRzXDXBWLlU/m7AFck
Deu+kDd44tgJdde01RnZslwbWjM/S9RCwkSrgkh+reagEwKt3GOLxCMGK5kw2qS0
qhwDMv46e2ea2a+GEa+ZnLpDGsMMT0IXfZBFCvQdAoGAC9QPeJrfDLyIjiKpj8ox
ezDkJp9cvdMAzEZuzhlkzvTAB9W2WOOQUVNe4BpHCmfjUNANoAP4ghPwlsmRutWb
jncJlpgNWtWj2UkVeyzXGV0UyH8j8+TKHogpp4T/d9yhr4LxEiQZu1CEalcLk0qZ
F6fpBysCZWmDfgFLmZUXvGU=
-----END PRIVATE KEY-----
";

static KEYS: LazyLock<Vec<PrivateKey>> = LazyLock::new(|| {
    [EC_P256_PEM, RSA_2048_PEM]
        .iter()
        .map(|pem| PrivateKey::from_pem_or_der(pem.as_bytes()).expect("the fixed test keys parse"))
        .collect()
});

/// Standard base64 with padding, so JSON inputs also reach the annotation parsers.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    let coordinator = &keys[0];

    // The bytes as the decoded JSON documents.
    if let Ok(public) = PublicLayerBlockCipherOptions::from_json(data) {
        let again =
            PublicLayerBlockCipherOptions::from_json(&public.to_json()).expect("own output parses");
        assert_eq!(again, public, "public options do not round-trip");
    }
    if let Ok(private) = PrivateLayerBlockCipherOptions::from_json(data) {
        let again = PrivateLayerBlockCipherOptions::from_json(&private.to_json())
            .expect("own output parses");
        assert_eq!(
            again.to_json(),
            private.to_json(),
            "private options do not round-trip"
        );
    }
    if let Ok(jwe) = Jwe::parse(data) {
        let _ = jwe.recipient_algorithms();
        for key in keys {
            let _ = jwe.decrypt(key);
        }
    }

    // The same bytes as annotation values: base64 of them, and as given.
    let encoded = base64(data);
    let _ = PublicLayerBlockCipherOptions::from_annotation(&encoded);
    let _ = jwe::unwrap_annotation(&encoded, keys);
    let _ = provider::key_ids(&encoded);
    let _ = provider::unwrap_as_coordinator(coordinator, &encoded);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PublicLayerBlockCipherOptions::from_annotation(text);
        let _ = jwe::unwrap_annotation(text, keys);
        let _ = provider::unwrap_as_coordinator(coordinator, text);
    }

    // Key files.
    if let Ok(public) = PublicKey::from_pem_or_der(data) {
        let again = PublicKey::from_spki_der(public.spki_der()).expect("canonical SPKI parses");
        assert_eq!(again, public, "SPKI does not round-trip");
    }
    if let Ok(private) = PrivateKey::from_pem_or_der(data) {
        let again = PrivateKey::from_pem_or_der(private.to_pkcs8_der()).expect("own PKCS#8 parses");
        assert_eq!(
            again.public_key(),
            private.public_key(),
            "PKCS#8 does not round-trip"
        );
    }
});
