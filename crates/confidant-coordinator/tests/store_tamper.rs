//! What the host can do to the file: flip bits, move values, read it.

mod common;

use common::{put, sealer};
use confidant_coordinator::store::{
    DATA_TABLE, META_DATA_KEY, META_TABLE, RedbStore, STATE_FILE, Store, StoreError,
};
use redb::{Database, ReadableTable};

/// Rewrites the file with a raw redb handle (the store must be closed).
fn raw_edit(dir: &std::path::Path, edit: impl FnOnce(&mut redb::Table<(&str, &str), &[u8]>)) {
    let db = Database::open(dir.join(STATE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(DATA_TABLE).unwrap();
        edit(&mut t);
    }
    txn.commit().unwrap();
}

fn raw_value(t: &redb::Table<(&str, &str), &[u8]>, table: &str, key: &str) -> Vec<u8> {
    t.get((table, key)).unwrap().unwrap().value().to_vec()
}

fn assert_integrity_error(err: StoreError, table: &str, key: &str) {
    match &err {
        StoreError::Integrity {
            table: t, key: k, ..
        } => {
            assert_eq!((t.as_str(), k.as_str()), (table, key), "{err}");
            assert!(err.to_string().contains(&format!("{table}/{key}")), "{err}");
        }
        e => panic!("expected an integrity error on {table}/{key}, got {e}"),
    }
}

#[test]
fn a_flipped_bit_in_a_stored_value_is_an_integrity_error_naming_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    drop({
        let s = RedbStore::open(dir.path(), &sealer()).unwrap();
        put(&s, "secrets", "db/password", b"hunter2");
        put(&s, "secrets", "untouched", b"fine");
        s
    });
    // One bit in the version byte, the nonce, the ciphertext and the tag.
    for byte in [0usize, 5, 14, 30] {
        raw_edit(dir.path(), |t| {
            let mut v = raw_value(t, "secrets", "db/password");
            v[byte] ^= 0x04;
            t.insert(("secrets", "db/password"), &v[..]).unwrap();
        });
        let s = RedbStore::open(dir.path(), &sealer()).unwrap();
        assert_integrity_error(
            s.get("secrets", "db/password").unwrap_err(),
            "secrets",
            "db/password",
        );
        // Inside a transaction too.
        let err = s
            .transaction(|tx| tx.get("secrets", "db/password"))
            .unwrap_err();
        assert_integrity_error(err, "secrets", "db/password");
        assert_eq!(
            s.get("secrets", "untouched").unwrap().as_deref(),
            Some(&b"fine"[..])
        );
        drop(s);
        // Undo, so the next round flips only its own bit.
        raw_edit(dir.path(), |t| {
            let mut v = raw_value(t, "secrets", "db/password");
            v[byte] ^= 0x04;
            t.insert(("secrets", "db/password"), &v[..]).unwrap();
        });
    }
    let s = RedbStore::open(dir.path(), &sealer()).unwrap();
    assert_eq!(
        s.get("secrets", "db/password").unwrap().as_deref(),
        Some(&b"hunter2"[..])
    );
}

#[test]
fn a_truncated_value_is_an_integrity_error() {
    let dir = tempfile::tempdir().unwrap();
    drop({
        let s = RedbStore::open(dir.path(), &sealer()).unwrap();
        put(&s, "secrets", "k", b"value");
        s
    });
    raw_edit(dir.path(), |t| {
        t.insert(("secrets", "k"), &b"\x01short"[..]).unwrap();
    });
    let s = RedbStore::open(dir.path(), &sealer()).unwrap();
    assert_integrity_error(s.get("secrets", "k").unwrap_err(), "secrets", "k");
}

#[test]
fn a_value_moved_to_another_key_or_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop({
        let s = RedbStore::open(dir.path(), &sealer()).unwrap();
        put(&s, "secrets", "admin/password", b"the admin's");
        put(&s, "secrets", "guest/password", b"the guest's");
        s
    });
    raw_edit(dir.path(), |t| {
        let admin = raw_value(t, "secrets", "admin/password");
        // The host swaps the admin's value in for the guest's, and copies it to another table.
        t.insert(("secrets", "guest/password"), &admin[..]).unwrap();
        t.insert(("shared", "admin/password"), &admin[..]).unwrap();
    });
    let s = RedbStore::open(dir.path(), &sealer()).unwrap();
    assert_integrity_error(
        s.get("secrets", "guest/password").unwrap_err(),
        "secrets",
        "guest/password",
    );
    assert_integrity_error(
        s.get("shared", "admin/password").unwrap_err(),
        "shared",
        "admin/password",
    );
    assert_eq!(
        s.get("secrets", "admin/password").unwrap().as_deref(),
        Some(&b"the admin's"[..])
    );
}

#[test]
fn a_damaged_wrapped_data_key_is_sealed_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbStore::open(dir.path(), &sealer()).unwrap());
    let db = Database::open(dir.path().join(STATE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META_TABLE).unwrap();
        let mut v = meta.get(META_DATA_KEY).unwrap().unwrap().value().to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        meta.insert(META_DATA_KEY, &v[..]).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let err = RedbStore::open(dir.path(), &sealer()).unwrap_err();
    assert!(matches!(err, StoreError::Sealed { .. }), "{err}");
}

#[test]
fn the_file_never_holds_a_value_in_plaintext_but_does_hold_key_names() {
    const MARKER: &[u8] = b"MARKER-7f3a9c-SECRET";
    let dir = tempfile::tempdir().unwrap();
    {
        let s = RedbStore::open(dir.path(), &sealer()).unwrap();
        for i in 0..50 {
            let mut v = MARKER.to_vec();
            v.extend_from_slice(format!("-{i}").as_bytes());
            s.transaction(|tx| {
                tx.put("secrets", &format!("visible-key-name-{i}"), &v)?;
                // Overwritten values must not linger in plaintext either.
                tx.put("secrets", "overwritten", &v)
            })
            .unwrap();
        }
        put(&s, "secrets", "overwritten", b"x");
    }
    let raw = std::fs::read(dir.path().join(STATE_FILE)).unwrap();
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(MARKER),
        "a value appears in plaintext in state.redb"
    );
    // Key names are not encrypted (docs/formats/coordinator-state.md says so): the test would
    // notice if the scan above looked at the wrong bytes.
    assert!(contains(b"visible-key-name-7"));
    // Nor does the data key itself.
    let s = RedbStore::open(dir.path(), &sealer()).unwrap();
    assert!(!contains(s.data_key().as_bytes()));
}

#[test]
fn file_and_directory_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let _s = RedbStore::open(&state, &sealer()).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join(STATE_FILE)), 0o600);
}
