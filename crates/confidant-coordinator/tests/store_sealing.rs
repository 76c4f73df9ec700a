//! Sealing the data key: wrong sealers, simulation sealing, recovery with a data key.

mod common;

use common::{other_sealer, put, sealer};
use confidant_attest::sim::SimPlatform;
use confidant_coordinator::store::sealer::testing::FailingSealer;
use confidant_coordinator::store::{DataKey, RedbStore, SimSealer, Store, StoreError};

fn store_with_secret(dir: &std::path::Path) -> DataKey {
    let store = RedbStore::open(dir, &sealer()).unwrap();
    put(&store, "secrets", "db", b"s3cret");
    store.data_key().clone()
}

#[test]
fn opening_with_another_machines_sealer_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    store_with_secret(dir.path());
    let err = RedbStore::open(dir.path(), &other_sealer()).unwrap_err();
    match err {
        StoreError::Sealed { sealer, reason } => {
            assert_eq!(sealer, "test-fixed-key");
            assert!(reason.contains("authentication failed"), "{reason}");
        }
        e => panic!("expected Sealed, got {e}"),
    }
}

#[test]
fn opening_with_a_sealer_of_another_kind_is_sealed_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    store_with_secret(dir.path());
    let err = RedbStore::open(dir.path(), &FailingSealer).unwrap_err();
    assert!(matches!(err, StoreError::Sealed { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("sealed by a `test-fixed-key` sealer, this is a `test-failing` sealer"),
        "{err}"
    );
}

#[test]
fn a_fresh_store_whose_sealer_fails_is_not_created_half_way() {
    let dir = tempfile::tempdir().unwrap();
    let err = RedbStore::open(dir.path(), &FailingSealer).unwrap_err();
    assert!(matches!(err, StoreError::Seal { .. }), "{err}");
    // Nothing was committed: a working sealer starts a fresh store afterwards.
    let store = RedbStore::open(dir.path(), &sealer()).unwrap();
    assert!(store.keys("secrets", "").unwrap().is_empty());
}

#[test]
fn a_failed_unseal_does_not_damage_the_store() {
    let dir = tempfile::tempdir().unwrap();
    store_with_secret(dir.path());
    assert!(RedbStore::open(dir.path(), &other_sealer()).is_err());
    let store = RedbStore::open(dir.path(), &sealer()).unwrap();
    assert_eq!(
        store.get("secrets", "db").unwrap().as_deref(),
        Some(&b"s3cret"[..])
    );
}

#[test]
fn sim_sealer_reopens_on_the_same_platform_and_is_sealed_on_another() {
    let home = tempfile::tempdir().unwrap();
    let sim_dir = SimPlatform::dir(home.path());
    SimPlatform::init(&sim_dir).unwrap();
    let state = home.path().join("state");
    {
        let store = RedbStore::open(&state, &SimSealer::load(&sim_dir).unwrap()).unwrap();
        put(&store, "secrets", "db", b"s3cret");
    }
    let store = RedbStore::open(&state, &SimSealer::load(&sim_dir).unwrap()).unwrap();
    assert_eq!(
        store.get("secrets", "db").unwrap().as_deref(),
        Some(&b"s3cret"[..])
    );
    drop(store);

    let other = tempfile::tempdir().unwrap();
    SimPlatform::init(other.path()).unwrap();
    let other_sealer = SimSealer::load(other.path()).unwrap();
    match RedbStore::open(&state, &other_sealer).unwrap_err() {
        StoreError::Sealed { sealer, .. } => assert!(sealer.contains("SIMULATION"), "{sealer}"),
        e => panic!("expected Sealed, got {e}"),
    }
}

#[test]
fn recovery_with_the_data_key_then_rewrap_lets_the_new_sealer_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = store_with_secret(dir.path());
    assert!(matches!(
        RedbStore::open(dir.path(), &other_sealer()),
        Err(StoreError::Sealed { .. })
    ));
    {
        let store = RedbStore::open_with_data_key(dir.path(), key).unwrap();
        assert_eq!(
            store.get("secrets", "db").unwrap().as_deref(),
            Some(&b"s3cret"[..])
        );
        store.rewrap(&other_sealer()).unwrap();
    }
    let store = RedbStore::open(dir.path(), &other_sealer()).unwrap();
    assert_eq!(
        store.get("secrets", "db").unwrap().as_deref(),
        Some(&b"s3cret"[..])
    );
    drop(store);
    // The old sealer's wrapping was replaced.
    assert!(matches!(
        RedbStore::open(dir.path(), &sealer()),
        Err(StoreError::Sealed { .. })
    ));
}

#[test]
fn recovery_with_a_wrong_data_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    store_with_secret(dir.path());
    let err = RedbStore::open_with_data_key(dir.path(), DataKey::from_bytes([9; 32])).unwrap_err();
    assert!(matches!(err, StoreError::WrongDataKey), "{err}");
}

#[test]
fn recovery_on_a_missing_store_does_not_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = RedbStore::open_with_data_key(dir.path(), DataKey::from_bytes([9; 32])).unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");
    assert!(!dir.path().join("state.redb").exists());
}
