//! Helpers shared by the store tests; `sim` by the tests of the coordinator's logic.
#![allow(dead_code)]

pub(crate) mod sim;

use confidant_coordinator::store::sealer::testing::FixedKeySealer;
use confidant_coordinator::store::{RedbStore, Store, StoreError};

/// The sealer of "this machine".
pub(crate) fn sealer() -> FixedKeySealer {
    FixedKeySealer::new([0x11; 32])
}

/// The sealer of "another machine".
pub(crate) fn other_sealer() -> FixedKeySealer {
    FixedKeySealer::new([0x22; 32])
}

/// A fresh store in a new temporary state directory.
pub(crate) fn fresh() -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path(), &sealer()).unwrap();
    (dir, store)
}

/// Puts one value in its own transaction.
pub(crate) fn put(store: &impl Store, table: &str, key: &str, value: &[u8]) {
    store
        .transaction(|tx| tx.put(table, key, value))
        .map_err(|e: StoreError| e)
        .unwrap();
}
