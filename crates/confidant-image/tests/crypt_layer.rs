//! `encrypt_layer` / `decrypt_layer`: round trips for every key type, and every way a layer or
//! its annotations can be wrong giving an error (never a panic, never unverified success).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use confidant_image::Error;
use confidant_image::crypt::cipher::{LayerKey, encrypt_to};
use confidant_image::crypt::opts::{PrivateLayerBlockCipherOptions, PublicLayerBlockCipherOptions};
use confidant_image::crypt::{
    ANNOTATION_PUBOPTS, Curve, DecryptionKeys, EncryptedLayer, PrivateKey, Recipients,
    decrypt_layer, encrypt_layer, jwe, provider, unwrap_layer_options,
};
use sha2::{Digest, Sha256};

fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn encrypt(plaintext: &[u8], recipients: &Recipients) -> (Vec<u8>, EncryptedLayer) {
    let mut ciphertext = Vec::new();
    let layer = encrypt_layer(plaintext, &mut ciphertext, recipients).unwrap();
    (ciphertext, layer)
}

fn jwe_keys(keys: Vec<PrivateKey>) -> DecryptionKeys {
    DecryptionKeys {
        jwe: keys,
        coordinator: None,
        ..Default::default()
    }
}

fn decrypt(
    ciphertext: &[u8],
    annotations: &BTreeMap<String, String>,
    keys: &DecryptionKeys,
) -> confidant_image::Result<Vec<u8>> {
    let mut out = Vec::new();
    decrypt_layer(ciphertext, &mut out, annotations, keys).map(|_| out)
}

#[test]
fn round_trips_for_every_jwe_key_type() {
    let plaintext = blob(100_000);
    for key in [
        PrivateKey::generate_rsa(2048).unwrap(),
        PrivateKey::generate_rsa(3072).unwrap(),
        PrivateKey::generate_ec(Curve::P256).unwrap(),
        PrivateKey::generate_ec(Curve::P384).unwrap(),
        PrivateKey::generate_ec(Curve::P521).unwrap(),
    ] {
        let kind = key.kind();
        let recipients = Recipients {
            jwe: vec![key.public_key().clone()],
            coordinator: None,
        };
        let (ciphertext, layer) = encrypt(&plaintext, &recipients);
        assert_eq!(layer.size, plaintext.len() as u64);
        assert_eq!(
            layer.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&ciphertext)))
        );
        assert_eq!(
            layer.annotations.keys().collect::<Vec<_>>(),
            vec![jwe::ANNOTATION, ANNOTATION_PUBOPTS],
            "{kind}"
        );
        let mut out = Vec::new();
        let decrypted = decrypt_layer(
            ciphertext.as_slice(),
            &mut out,
            &layer.annotations,
            &jwe_keys(vec![key]),
        )
        .unwrap();
        assert_eq!(out, plaintext, "{kind}");
        assert_eq!(
            decrypted.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&plaintext)))
        );
    }
}

#[test]
fn round_trips_for_the_coordinator_alone_and_alongside_jwe_recipients() {
    let plaintext = blob(5000);
    for curve in [Curve::P256, Curve::P384] {
        let coordinator = PrivateKey::generate_ec(curve).unwrap();
        let user = PrivateKey::generate_ec(Curve::P256).unwrap();
        let alone = Recipients {
            jwe: vec![],
            coordinator: Some(coordinator.public_key().clone()),
        };
        let (ciphertext, layer) = encrypt(&plaintext, &alone);
        assert!(!layer.annotations.contains_key(jwe::ANNOTATION));
        let keys = DecryptionKeys {
            jwe: vec![],
            coordinator: Some(PrivateKey::from_pem_or_der(coordinator.to_pkcs8_der()).unwrap()),
            ..Default::default()
        };
        assert_eq!(
            decrypt(&ciphertext, &layer.annotations, &keys).unwrap(),
            plaintext
        );

        let both = Recipients {
            jwe: vec![user.public_key().clone()],
            coordinator: Some(coordinator.public_key().clone()),
        };
        let (ciphertext, layer) = encrypt(&plaintext, &both);
        assert_eq!(
            decrypt(&ciphertext, &layer.annotations, &keys).unwrap(),
            plaintext
        );
        assert_eq!(
            decrypt(&ciphertext, &layer.annotations, &jwe_keys(vec![user])).unwrap(),
            plaintext
        );
    }
}

#[test]
fn annotations_in_a_hash_map_work_too() {
    let key = PrivateKey::generate_ec(Curve::P256).unwrap();
    let (ciphertext, layer) = encrypt(
        &blob(10),
        &Recipients {
            jwe: vec![key.public_key().clone()],
            coordinator: None,
        },
    );
    let map: HashMap<String, String> = layer.annotations.into_iter().collect();
    let mut out = Vec::new();
    decrypt_layer(ciphertext.as_slice(), &mut out, &map, &jwe_keys(vec![key])).unwrap();
    assert_eq!(out, blob(10));
}

#[test]
fn a_wrong_key_is_a_key_error_naming_the_recipients_tried() {
    let a = PrivateKey::generate_ec(Curve::P256).unwrap();
    let b = PrivateKey::generate_rsa(2048).unwrap();
    let recipients = Recipients {
        jwe: vec![a.public_key().clone(), b.public_key().clone()],
        coordinator: None,
    };
    let (ciphertext, layer) = encrypt(&blob(1000), &recipients);
    let wrong = jwe_keys(vec![
        PrivateKey::generate_ec(Curve::P256).unwrap(),
        PrivateKey::generate_ec(Curve::P384).unwrap(),
    ]);
    match decrypt(&ciphertext, &layer.annotations, &wrong) {
        Err(Error::Key(message)) => {
            assert!(
                message.contains("none of the 2 private key(s)"),
                "{message}"
            );
            assert!(
                message.contains("2 JWE recipient(s) [ECDH-ES+A256KW P-256, RSA-OAEP]"),
                "{message}"
            );
        }
        other => panic!("expected Error::Key, got {other:?}"),
    }
}

#[test]
fn keys_of_the_wrong_wrapper_are_a_key_error_listing_what_the_layer_has() {
    let coordinator = PrivateKey::generate_ec(Curve::P256).unwrap();
    let recipients = Recipients {
        jwe: vec![],
        coordinator: Some(coordinator.public_key().clone()),
    };
    let (ciphertext, layer) = encrypt(&blob(10), &recipients);
    let err = decrypt(
        &ciphertext,
        &layer.annotations,
        &jwe_keys(vec![PrivateKey::generate_ec(Curve::P256).unwrap()]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Key(m) if m.contains(provider::ANNOTATION)),
        "{err}"
    );
    let other = DecryptionKeys {
        jwe: vec![],
        coordinator: Some(PrivateKey::generate_ec(Curve::P256).unwrap()),
        ..Default::default()
    };
    let err = decrypt(&ciphertext, &layer.annotations, &other).unwrap_err();
    assert!(
        matches!(&err, Error::Key(m) if m.contains(&coordinator.public_key().key_id())),
        "{err}"
    );
}

#[test]
fn no_recipients_or_an_rsa_coordinator_is_refused_before_reading() {
    struct MustNotRead;
    impl Read for MustNotRead {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            panic!("the layer was read although the recipients are unusable");
        }
    }
    let err = encrypt_layer(MustNotRead, io::sink(), &Recipients::default()).unwrap_err();
    assert!(matches!(err, Error::Key(_)), "{err}");
    let rsa = PrivateKey::generate_rsa(2048).unwrap();
    let recipients = Recipients {
        jwe: vec![],
        coordinator: Some(rsa.public_key().clone()),
    };
    let err = encrypt_layer(MustNotRead, io::sink(), &recipients).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
}

#[test]
fn flipped_ciphertext_bytes_and_truncation_are_integrity_errors() {
    let key = PrivateKey::generate_ec(Curve::P256).unwrap();
    let (ciphertext, layer) = encrypt(
        &blob(20_000),
        &Recipients {
            jwe: vec![key.public_key().clone()],
            coordinator: None,
        },
    );
    let keys = jwe_keys(vec![key]);
    for i in (0..ciphertext.len())
        .step_by(97)
        .chain([ciphertext.len() - 1])
    {
        let mut bad = ciphertext.clone();
        bad[i] ^= 0x01;
        assert!(
            matches!(
                decrypt(&bad, &layer.annotations, &keys),
                Err(Error::Integrity { .. })
            ),
            "byte {i}"
        );
    }
    for cut in [0, 1, 10_000, ciphertext.len() - 1] {
        assert!(
            matches!(
                decrypt(&ciphertext[..cut], &layer.annotations, &keys),
                Err(Error::Integrity { .. })
            ),
            "cut {cut}"
        );
    }
}

#[test]
fn changed_public_options_are_rejected() {
    let key = PrivateKey::generate_ec(Curve::P384).unwrap();
    let (ciphertext, layer) = encrypt(
        &blob(3000),
        &Recipients {
            jwe: vec![key.public_key().clone()],
            coordinator: None,
        },
    );
    let keys = jwe_keys(vec![key]);
    let public =
        PublicLayerBlockCipherOptions::from_annotation(&layer.annotations[ANNOTATION_PUBOPTS])
            .unwrap();
    let with = |value: Option<String>| {
        let mut a = layer.annotations.clone();
        match value {
            Some(v) => a.insert(ANNOTATION_PUBOPTS.to_string(), v),
            None => a.remove(ANNOTATION_PUBOPTS),
        };
        decrypt(&ciphertext, &a, &keys)
    };
    for i in 0..32 {
        let mut hmac = public.hmac;
        hmac[i] ^= 0x10;
        let changed = PublicLayerBlockCipherOptions { hmac }.to_annotation();
        assert!(
            matches!(with(Some(changed)), Err(Error::Integrity { .. })),
            "hmac byte {i}"
        );
    }
    let other_cipher = STANDARD.encode(
        String::from_utf8(public.to_json())
            .unwrap()
            .replace("AES_256_CTR_HMAC_SHA256", "AES_128_CTR_HMAC_SHA256"),
    );
    assert!(matches!(
        with(Some(other_cipher)),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(with(None), Err(Error::Malformed { .. })));
    assert!(matches!(
        with(Some("not base64!".into())),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        with(Some(STANDARD.encode("[1,2]"))),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn a_plaintext_digest_differing_from_the_private_options_is_an_integrity_error() {
    let key = PrivateKey::generate_ec(Curve::P256).unwrap();
    let plaintext = blob(4096);
    let layer_key = LayerKey::generate().unwrap();
    let mut ciphertext = Vec::new();
    let stats = encrypt_to(plaintext.as_slice(), &mut ciphertext, &layer_key).unwrap();
    let private = PrivateLayerBlockCipherOptions {
        key: layer_key,
        digest: format!("sha256:{}", "00".repeat(32)),
    };
    let mut annotations = BTreeMap::new();
    annotations.insert(
        jwe::ANNOTATION.to_string(),
        jwe::wrap_annotation(&private.to_json(), &[key.public_key().clone()]).unwrap(),
    );
    annotations.insert(
        ANNOTATION_PUBOPTS.to_string(),
        PublicLayerBlockCipherOptions { hmac: stats.hmac }.to_annotation(),
    );
    match decrypt(&ciphertext, &annotations, &jwe_keys(vec![key])) {
        Err(Error::Integrity { what, expected, .. }) => {
            assert_eq!(what, "decrypted layer digest");
            assert_eq!(expected, private.digest);
        }
        other => panic!("expected Error::Integrity, got {other:?}"),
    }
}

#[test]
fn recipients_added_later_as_a_second_comma_separated_jwe_are_found() {
    let first = PrivateKey::generate_rsa(2048).unwrap();
    let second = PrivateKey::generate_ec(Curve::P521).unwrap();
    let (ciphertext, mut layer) = encrypt(
        &blob(777),
        &Recipients {
            jwe: vec![first.public_key().clone()],
            coordinator: None,
        },
    );
    let (private, _) = unwrap_layer_options(&layer.annotations, &jwe_keys(vec![first])).unwrap();
    let added = jwe::wrap_annotation(&private.to_json(), &[second.public_key().clone()]).unwrap();
    let value = layer.annotations.get_mut(jwe::ANNOTATION).unwrap();
    value.push(',');
    value.push_str(&added);
    assert_eq!(
        decrypt(&ciphertext, &layer.annotations, &jwe_keys(vec![second])).unwrap(),
        blob(777)
    );
}

#[test]
fn mutated_key_annotations_give_errors_not_panics() {
    let user = PrivateKey::generate_ec(Curve::P256).unwrap();
    let coordinator = PrivateKey::generate_ec(Curve::P256).unwrap();
    let recipients = Recipients {
        jwe: vec![user.public_key().clone()],
        coordinator: Some(coordinator.public_key().clone()),
    };
    let (ciphertext, layer) = encrypt(&blob(64), &recipients);
    let user_keys = jwe_keys(vec![user]);
    let coordinator_keys = DecryptionKeys {
        jwe: vec![],
        coordinator: Some(coordinator),
        ..Default::default()
    };
    for (annotation, keys) in [
        (jwe::ANNOTATION, &user_keys),
        (provider::ANNOTATION, &coordinator_keys),
    ] {
        // Mutate the decoded JSON (so the base64 stays valid and the parsers are reached):
        // every byte matters, since all of it is parsed strictly or authenticated.
        let json = STANDARD.decode(&layer.annotations[annotation]).unwrap();
        for i in 0..json.len() {
            for replacement in [b'A', b'"', b'{', b'0'] {
                if json[i] == replacement {
                    continue;
                }
                let mut bad = json.clone();
                bad[i] = replacement;
                let mut annotations = layer.annotations.clone();
                annotations.insert(annotation.to_string(), STANDARD.encode(&bad));
                let result = decrypt(&ciphertext, &annotations, keys);
                assert!(
                    result.is_err(),
                    "{annotation}: byte {i} set to {:?} still decrypts",
                    replacement as char
                );
            }
        }
    }
}
