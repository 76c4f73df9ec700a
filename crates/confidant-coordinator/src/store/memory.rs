//! An in-memory store: the fake the coordinator's `core` tests run against.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::error::{Result, StoreError};
use super::{Store, Transaction, check_key, check_table};

type Map = BTreeMap<(String, String), Vec<u8>>;

/// A [`Store`] in memory, with the same transaction semantics as [`super::RedbStore`]
/// (serialized writers, all-or-nothing commits) and no encryption or persistence. Each
/// transaction works on a copy of the whole map: meant for tests, not for large states.
#[derive(Debug, Default)]
pub struct MemStore {
    map: Mutex<Map>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        // A panic inside a transaction never leaves a half-applied map (the working copy is
        // only swapped in on success), so a poisoned lock still guards consistent data.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemStore {
    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>> {
        check_table(table)?;
        check_key(key)?;
        Ok(self
            .lock()
            .get(&(table.to_owned(), key.to_owned()))
            .cloned())
    }

    fn keys(&self, table: &str, prefix: &str) -> Result<Vec<String>> {
        check_table(table)?;
        Ok(keys_in(&self.lock(), table, prefix))
    }

    fn transaction<T, E, F>(&self, mut f: F) -> std::result::Result<T, E>
    where
        F: FnMut(&mut dyn Transaction) -> std::result::Result<T, E>,
        E: From<StoreError>,
    {
        let mut guard = self.lock();
        let mut tx = MemTransaction(guard.clone());
        let v = f(&mut tx)?;
        *guard = tx.0;
        Ok(v)
    }
}

/// A working copy of the map, swapped in on commit.
struct MemTransaction(Map);

impl Transaction for MemTransaction {
    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>> {
        check_table(table)?;
        check_key(key)?;
        Ok(self.0.get(&(table.to_owned(), key.to_owned())).cloned())
    }

    fn keys(&self, table: &str, prefix: &str) -> Result<Vec<String>> {
        check_table(table)?;
        Ok(keys_in(&self.0, table, prefix))
    }

    fn put(&mut self, table: &str, key: &str, value: &[u8]) -> Result<()> {
        check_table(table)?;
        check_key(key)?;
        self.0
            .insert((table.to_owned(), key.to_owned()), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, table: &str, key: &str) -> Result<bool> {
        check_table(table)?;
        check_key(key)?;
        Ok(self.0.remove(&(table.to_owned(), key.to_owned())).is_some())
    }
}

fn keys_in(map: &Map, table: &str, prefix: &str) -> Vec<String> {
    map.range((table.to_owned(), prefix.to_owned())..)
        .take_while(|((t, k), _)| t == table && k.starts_with(prefix))
        .map(|((_, k), _)| k.clone())
        .collect()
}
