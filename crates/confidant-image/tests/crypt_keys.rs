//! Key files as `openssl` writes them, in every encoding skopeo users have: PKCS#8, PKCS#1 and
//! SEC1 private keys in PEM and DER, SPKI public keys and X.509 certificates; and the CLI
//! strings `jwe:PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use confidant_image::Error;
use confidant_image::crypt::jwe::{self, parse_decryption_key, parse_recipient};
use confidant_image::crypt::{Curve, KeyKind, PrivateKey, PublicKey};

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Writes the private key `key` (PEM) in every other encoding; returns all private files and
/// all public files.
fn all_encodings(dir: &Path, key: &Path, sec1: bool) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let name = key.file_stem().unwrap().to_str().unwrap();
    let f = |suffix: &str| dir.join(format!("{name}.{suffix}"));
    openssl(&[
        "pkey",
        "-in",
        p(key),
        "-outform",
        "DER",
        "-out",
        p(&f("p8.der")),
    ]);
    openssl(&[
        "pkey",
        "-in",
        p(key),
        "-traditional",
        "-out",
        p(&f("trad.pem")),
    ]);
    openssl(&[
        "pkey",
        "-in",
        p(key),
        "-traditional",
        "-outform",
        "DER",
        "-out",
        p(&f("trad.der")),
    ]);
    openssl(&["pkey", "-in", p(key), "-pubout", "-out", p(&f("pub.pem"))]);
    openssl(&[
        "pkey",
        "-in",
        p(key),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        p(&f("pub.der")),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        p(key),
        "-subj",
        "/CN=confidant-test",
        "-days",
        "2",
        "-out",
        p(&f("crt.pem")),
    ]);
    openssl(&[
        "x509",
        "-in",
        p(&f("crt.pem")),
        "-outform",
        "DER",
        "-out",
        p(&f("crt.der")),
    ]);
    let mut private = vec![key.to_path_buf(), f("p8.der"), f("trad.pem"), f("trad.der")];
    if sec1 {
        // `openssl ecparam -genkey` output: an EC PARAMETERS block, then EC PRIVATE KEY.
        let with_params = f("ecparam.pem");
        let curve = match name {
            "p256" => "prime256v1",
            "p384" => "secp384r1",
            _ => "secp521r1",
        };
        openssl(&[
            "ecparam",
            "-name",
            curve,
            "-genkey",
            "-out",
            p(&with_params),
        ]);
        private.push(with_params);
    }
    (
        private,
        vec![f("pub.pem"), f("pub.der"), f("crt.pem"), f("crt.der")],
    )
}

fn check_family(dir: &Path, key: &Path, sec1: bool, expected: KeyKind) {
    let (private_files, public_files) = all_encodings(dir, key, sec1);
    let reference = PrivateKey::from_pem_or_der(&std::fs::read(key).unwrap()).unwrap();
    assert_eq!(reference.kind(), expected);
    for file in &private_files {
        let parsed = parse_decryption_key(&format!("jwe:{}", file.display()))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(parsed.kind(), expected, "{}", file.display());
        if !file.ends_with(format!(
            "{}.ecparam.pem",
            key.file_stem().unwrap().to_str().unwrap()
        )) {
            assert_eq!(
                parsed.public_key(),
                reference.public_key(),
                "{}",
                file.display()
            );
        }
        // Bare paths work as with skopeo's --decryption-key.
        assert!(parse_decryption_key(p(file)).is_ok());
    }
    for file in &public_files {
        let parsed = parse_recipient(&format!("jwe:{}", file.display()))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(&parsed, reference.public_key(), "{}", file.display());
        // And a wrapping for the file's key opens with the reference private key.
        let wrapped = jwe::wrap_annotation(b"{}", &[parsed]).unwrap();
        assert_eq!(
            jwe::unwrap_annotation(&wrapped, std::slice::from_ref(&reference))
                .unwrap()
                .as_slice(),
            b"{}"
        );
    }
}

#[test]
fn rsa_keys_in_every_openssl_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("rsa.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        p(&key),
    ]);
    check_family(dir.path(), &key, false, KeyKind::Rsa { bits: 2048 });
}

#[test]
fn ec_keys_in_every_openssl_encoding() {
    let dir = tempfile::tempdir().unwrap();
    for (name, curve, kind) in [
        ("p256", "P-256", Curve::P256),
        ("p384", "P-384", Curve::P384),
        ("p521", "P-521", Curve::P521),
    ] {
        let key = dir.path().join(format!("{name}.pem"));
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-out",
            p(&key),
        ]);
        check_family(dir.path(), &key, true, KeyKind::Ec(kind));
    }
}

#[test]
fn unsupported_keys_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n);

    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        p(&path("rsa1024.pem")),
    ]);
    let err = parse_decryption_key(p(&path("rsa1024.pem"))).unwrap_err();
    assert!(matches!(&err, Error::Key(m) if m.contains("2048")), "{err}");

    openssl(&[
        "genpkey",
        "-algorithm",
        "ED25519",
        "-out",
        p(&path("ed.pem")),
    ]);
    assert!(matches!(
        parse_decryption_key(p(&path("ed.pem"))),
        Err(Error::Unsupported(_))
    ));
    openssl(&[
        "pkey",
        "-in",
        p(&path("ed.pem")),
        "-pubout",
        "-out",
        p(&path("ed.pub")),
    ]);
    assert!(matches!(
        parse_recipient(&format!("jwe:{}", path("ed.pub").display())),
        Err(Error::Unsupported(_))
    ));

    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:secp256k1",
        "-out",
        p(&path("k1.pem")),
    ]);
    assert!(matches!(
        parse_decryption_key(p(&path("k1.pem"))),
        Err(Error::Unsupported(_))
    ));

    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-aes256",
        "-pass",
        "pass:secret",
        "-out",
        p(&path("enc.pem")),
    ]);
    let err = parse_decryption_key(p(&path("enc.pem"))).unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported(m) if m.contains("password")),
        "{err}"
    );
}

#[test]
fn cli_strings_are_checked() {
    assert!(matches!(
        parse_recipient("pgp:alice@example.com"),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        parse_recipient("provider:attestation-agent"),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        parse_recipient("just-a-path.pem"),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        parse_recipient("ftp:x"),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        parse_recipient("jwe:/nonexistent/key.pem"),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        parse_decryption_key("/nonexistent/key.pem"),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        parse_decryption_key("pkcs11:token"),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn garbage_key_files_are_errors_not_panics() {
    let key = PrivateKey::generate_ec(Curve::P256).unwrap();
    let der = key.to_pkcs8_der().to_vec();
    let spki = key.public_key().spki_der().to_vec();
    for input in [&der, &spki] {
        for cut in 0..input.len() {
            let _ = PrivateKey::from_pem_or_der(&input[..cut]);
            let _ = PublicKey::from_pem_or_der(&input[..cut]);
        }
        for i in 0..input.len() {
            let mut bad = input.clone();
            bad[i] ^= 0xff;
            let _ = PrivateKey::from_pem_or_der(&bad);
            let _ = PublicKey::from_pem_or_der(&bad);
        }
    }
    assert!(PrivateKey::from_pem_or_der(b"").is_err());
    assert!(
        PublicKey::from_pem_or_der(b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n")
            .is_err()
    );
}
