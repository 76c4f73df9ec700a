//! Recovery with owners' shares: 2 of 3 owners restore a state whose sealing key is lost; too
//! few, duplicate, foreign and tampered shares are refused. Owner keys are real RSA-2048 keys
//! made by `openssl genpkey`, as owners would make them.

mod common;

use std::path::Path;
use std::process::Command;

use common::{other_sealer, put, sealer};
use confidant_coordinator::recovery::{
    EncryptedShare, RecoveryError, Share, combine, decrypt_share, owner_key_id, split_for_owners,
};
use confidant_coordinator::store::sealer::testing::FixedKeySealer;
use confidant_coordinator::store::{RedbStore, Store, StoreError};

/// An owner's key pair as PEM: (private PKCS#8, public SPKI).
struct Owner {
    private_pem: String,
    public_pem: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the recovery tests need the openssl command line tool");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn owner_with_bits(dir: &Path, name: &str, bits: u32) -> Owner {
    let key = format!("{name}.key.pem");
    let public = format!("{name}.pub.pem");
    let bits = format!("rsa_keygen_bits:{bits}");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &bits,
            "-out",
            &key,
        ],
    );
    openssl(dir, &["pkey", "-in", &key, "-pubout", "-out", &public]);
    Owner {
        private_pem: std::fs::read_to_string(dir.join(key)).unwrap(),
        public_pem: std::fs::read_to_string(dir.join(public)).unwrap(),
    }
}

fn make_owners(dir: &Path, prefix: &str) -> Vec<Owner> {
    (0..3)
        .map(|i| owner_with_bits(dir, &format!("{prefix}{i}"), 2048))
        .collect()
}

fn public_keys(owners: &[Owner]) -> Vec<&str> {
    owners.iter().map(|o| o.public_pem.as_str()).collect()
}

/// A state with two secrets, sealed by "this machine"; returns its 2-of-3 encrypted shares.
fn sealed_state_with_shares(state: &Path, owners: &[Owner]) -> Vec<EncryptedShare> {
    let store = RedbStore::open(state, &sealer()).unwrap();
    put(&store, "secrets", "db/password", b"s3cret");
    put(&store, "manifest", "current", b"{\"workloads\":{}}");
    split_for_owners(store.data_key(), &public_keys(owners), 2).unwrap()
}

fn assert_lost_sealing_key(state: &Path) {
    match RedbStore::open(state, &other_sealer()) {
        Err(StoreError::Sealed { .. }) => {}
        Err(e) => panic!("expected Sealed, got {e}"),
        Ok(_) => panic!("expected Sealed, the state opened"),
    }
}

#[test]
fn two_of_three_owners_recover_the_state_after_the_sealing_key_is_lost() {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let owners = make_owners(keys.path(), "owner");
    let encrypted = sealed_state_with_shares(state.path(), &owners);
    assert_eq!(encrypted.len(), 3);

    // The coordinator keeps the shares outside the sealed state, as JSON.
    let stored = serde_json::to_string(&encrypted).unwrap();
    let encrypted: Vec<EncryptedShare> = serde_json::from_str(&stored).unwrap();

    // The sealing key is lost: the state moved to another machine.
    assert_lost_sealing_key(state.path());

    // Owners 2 and 0 (any two, in any order) decrypt their shares on their machines.
    let shares = vec![
        decrypt_share(&encrypted[2], &owners[2].private_pem).unwrap(),
        decrypt_share(&encrypted[0], &owners[0].private_pem).unwrap(),
    ];
    let key = combine(&shares, 2).unwrap();

    let new_sealer = FixedKeySealer::new([0x33; 32]);
    {
        let store = RedbStore::open_with_data_key(state.path(), key).unwrap();
        assert_eq!(
            store.get("secrets", "db/password").unwrap().as_deref(),
            Some(&b"s3cret"[..])
        );
        assert_eq!(
            store.get("manifest", "current").unwrap().as_deref(),
            Some(&b"{\"workloads\":{}}"[..])
        );
        store.rewrap(&new_sealer).unwrap();
    }

    // The next start unseals on its own under the new sealer, with the values intact.
    let store = RedbStore::open(state.path(), &new_sealer).unwrap();
    assert_eq!(
        store.get("secrets", "db/password").unwrap().as_deref(),
        Some(&b"s3cret"[..])
    );
    drop(store);
    // The old sealing key stays useless: recovery does not bring it back.
    match RedbStore::open(state.path(), &sealer()) {
        Err(StoreError::Sealed { .. }) => {}
        other => panic!("expected Sealed under the old sealer, got {other:?}"),
    }
}

#[test]
fn every_pair_of_owners_recovers_the_same_key() {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let owners = make_owners(keys.path(), "owner");
    let encrypted = sealed_state_with_shares(state.path(), &owners);
    let shares: Vec<Share> = encrypted
        .iter()
        .zip(&owners)
        .map(|(e, o)| decrypt_share(e, &o.private_pem).unwrap())
        .collect();
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        let key = combine(&[shares[a].clone(), shares[b].clone()], 2).unwrap();
        RedbStore::open_with_data_key(state.path(), key)
            .unwrap_or_else(|e| panic!("owners {a} and {b}: {e}"));
    }
    // All three together work as well.
    let key = combine(&shares, 2).unwrap();
    RedbStore::open_with_data_key(state.path(), key).unwrap();
}

#[test]
fn one_share_of_a_two_share_threshold_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let owners = make_owners(keys.path(), "owner");
    let encrypted = sealed_state_with_shares(state.path(), &owners);
    let share = decrypt_share(&encrypted[1], &owners[1].private_pem).unwrap();
    let err = combine(&[share], 2).unwrap_err();
    assert!(
        matches!(
            err,
            RecoveryError::NotEnoughShares {
                expected: 2,
                got: 1
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "not enough recovery shares: expected 2 (the threshold), got 1"
    );
}

#[test]
fn the_same_owners_share_twice_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let owners = make_owners(keys.path(), "owner");
    let encrypted = sealed_state_with_shares(state.path(), &owners);
    let share = decrypt_share(&encrypted[1], &owners[1].private_pem).unwrap();
    let err = combine(&[share.clone(), share], 2).unwrap_err();
    assert!(
        matches!(
            err,
            RecoveryError::DuplicateShare {
                first: 0,
                second: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_share_made_for_another_owner_set_yields_a_wrong_data_key() {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let owners = make_owners(keys.path(), "owner");
    let others = make_owners(keys.path(), "other");
    let encrypted = sealed_state_with_shares(state.path(), &owners);
    // Another split of the same key, for another owner set: its shares are on another
    // polynomial and do not mix with the first split's.
    let store = RedbStore::open(state.path(), &sealer()).unwrap();
    let foreign = split_for_owners(store.data_key(), &public_keys(&others), 2).unwrap();
    drop(store);
    assert_lost_sealing_key(state.path());

    let shares = vec![
        decrypt_share(&encrypted[0], &owners[0].private_pem).unwrap(),
        decrypt_share(&foreign[1], &others[1].private_pem).unwrap(),
    ];
    assert_ne!(shares[0].index(), shares[1].index());
    let key = combine(&shares, 2).unwrap();
    match RedbStore::open_with_data_key(state.path(), key) {
        Err(StoreError::WrongDataKey) => {}
        Err(e) => panic!("expected WrongDataKey, got {e}"),
        Ok(_) => panic!("expected WrongDataKey, the state opened"),
    }
}

#[test]
fn every_flipped_byte_of_an_encrypted_share_is_a_decryption_error() {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let owners = make_owners(keys.path(), "owner");
    let encrypted = sealed_state_with_shares(state.path(), &owners);
    let original = &encrypted[0];
    assert_eq!(original.ciphertext.len(), 256, "RSA-2048 ciphertext");
    for i in 0..original.ciphertext.len() {
        let mut tampered = original.clone();
        tampered.ciphertext[i] ^= 0x01;
        match decrypt_share(&tampered, &owners[0].private_pem) {
            Err(RecoveryError::Decrypt { owner_key_id }) => {
                assert_eq!(owner_key_id, original.owner_key_id)
            }
            Err(e) => panic!("byte {i}: expected Decrypt, got {e}"),
            Ok(_) => panic!("byte {i}: a tampered share decrypted"),
        }
    }
    for ciphertext in [
        vec![],
        original.ciphertext[..255].to_vec(),
        [&original.ciphertext[..], &[0]].concat(),
        vec![0xff; 256],
    ] {
        let tampered = EncryptedShare {
            owner_key_id: original.owner_key_id.clone(),
            ciphertext,
        };
        let err = decrypt_share(&tampered, &owners[0].private_pem).unwrap_err();
        assert!(matches!(err, RecoveryError::Decrypt { .. }), "{err}");
    }
    // The untouched share still decrypts.
    decrypt_share(original, &owners[0].private_pem).unwrap();
}

#[test]
fn a_share_decrypted_with_another_owners_key_is_refused_by_key_id() {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let owners = make_owners(keys.path(), "owner");
    let encrypted = sealed_state_with_shares(state.path(), &owners);
    let err = decrypt_share(&encrypted[0], &owners[1].private_pem).unwrap_err();
    match err {
        RecoveryError::WrongOwner { expected, got } => {
            assert_eq!(expected, encrypted[0].owner_key_id);
            assert_eq!(got, encrypted[1].owner_key_id);
        }
        e => panic!("expected WrongOwner, got {e}"),
    }
}

#[test]
fn owner_key_id_is_the_sha256_of_the_spki_der_as_openssl_computes_it() {
    let keys = tempfile::tempdir().unwrap();
    let owner = owner_with_bits(keys.path(), "alice", 2048);
    openssl(
        keys.path(),
        &[
            "pkey",
            "-pubin",
            "-in",
            "alice.pub.pem",
            "-outform",
            "DER",
            "-out",
            "alice.spki",
        ],
    );
    let der = std::fs::read(keys.path().join("alice.spki")).unwrap();
    let expected = hex::encode(ring::digest::digest(&ring::digest::SHA256, &der));
    assert_eq!(owner_key_id(&owner.public_pem).unwrap(), expected);
}

#[test]
fn pkcs1_keys_work_like_their_pkcs8_and_spki_forms() {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let owners = make_owners(keys.path(), "owner");
    // Owner 0's keys in the traditional PKCS#1 PEM forms.
    openssl(
        keys.path(),
        &[
            "rsa",
            "-pubin",
            "-in",
            "owner0.pub.pem",
            "-RSAPublicKey_out",
            "-out",
            "pub1.pem",
        ],
    );
    openssl(
        keys.path(),
        &[
            "rsa",
            "-in",
            "owner0.key.pem",
            "-traditional",
            "-out",
            "key1.pem",
        ],
    );
    let public1 = std::fs::read_to_string(keys.path().join("pub1.pem")).unwrap();
    let private1 = std::fs::read_to_string(keys.path().join("key1.pem")).unwrap();
    assert!(public1.contains("BEGIN RSA PUBLIC KEY"));
    assert!(private1.contains("BEGIN RSA PRIVATE KEY"));
    assert_eq!(
        owner_key_id(&public1).unwrap(),
        owner_key_id(&owners[0].public_pem).unwrap()
    );

    let store = RedbStore::open(state.path(), &sealer()).unwrap();
    let encrypted = split_for_owners(
        store.data_key(),
        &[&public1, &owners[1].public_pem, &owners[2].public_pem],
        2,
    )
    .unwrap();
    let shares = vec![
        decrypt_share(&encrypted[0], &private1).unwrap(),
        decrypt_share(&encrypted[1], &owners[1].private_pem).unwrap(),
    ];
    assert_eq!(
        combine(&shares, 2).unwrap().as_bytes(),
        store.data_key().as_bytes()
    );
}

#[test]
fn split_refuses_bad_thresholds_small_keys_and_repeated_owners() {
    let keys = tempfile::tempdir().unwrap();
    let owners = make_owners(keys.path(), "owner");
    let small = owner_with_bits(keys.path(), "small", 1024);
    let key = confidant_coordinator::store::DataKey::generate().unwrap();
    let publics = public_keys(&owners);

    for threshold in [0, 4] {
        let err = split_for_owners(&key, &publics, threshold).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("recovery.threshold: expected 1 to 3 (the number of owners), got {threshold}")
        );
    }
    let err = split_for_owners(&key, &[], 1).unwrap_err();
    assert!(matches!(err, RecoveryError::Owners(0)), "{err}");

    let err = split_for_owners(&key, &[publics[0], &small.public_pem], 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "recovery owner key #1: expected at least 2048 bits, got 1024"
    );

    let err = split_for_owners(&key, &[publics[0], "not a key"], 2).unwrap_err();
    assert!(
        matches!(err, RecoveryError::OwnerKey { index: 1, .. }),
        "{err}"
    );

    let err = split_for_owners(&key, &[publics[0], publics[1], publics[0]], 2).unwrap_err();
    assert!(
        matches!(
            err,
            RecoveryError::DuplicateOwner {
                first: 0,
                second: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn threshold_one_gives_each_owner_the_whole_key() {
    let keys = tempfile::tempdir().unwrap();
    let owners = make_owners(keys.path(), "owner");
    let key = confidant_coordinator::store::DataKey::generate().unwrap();
    let encrypted = split_for_owners(&key, &public_keys(&owners), 1).unwrap();
    for (e, o) in encrypted.iter().zip(&owners) {
        let share = decrypt_share(e, &o.private_pem).unwrap();
        assert_eq!(combine(&[share], 1).unwrap().as_bytes(), key.as_bytes());
    }
}
