//! The coordinator's state at rest.
//!
//! A [`Store`] is a transactional key-value store over namespaced keys: a `table` (such as
//! `secrets`) and a `key` inside it (such as `db/password`) name a byte value. All writes happen
//! inside [`Store::transaction`], which commits everything the closure did or nothing.
//!
//! The embedded backend, [`RedbStore`], keeps one `state.redb` file in the state directory and
//! encrypts every value with AES-256-GCM under a random 256-bit [`DataKey`]; the additional data
//! binds each ciphertext to its table and key. The data key itself is stored wrapped by a
//! [`Sealer`] — the TEE's sealing key, or in simulation a key derived from the platform key.
//! Key *names* are stored in plaintext. What this does and does not protect, and every byte of
//! the layout, is in `docs/formats/coordinator-state.md`.
//!
//! When the data key cannot be unsealed (another machine, another enclave, a lost platform key)
//! opening fails with [`StoreError::Sealed`]; the coordinator then enters recovery, obtains the
//! data key some other way, and uses [`RedbStore::open_with_data_key`] and
//! [`RedbStore::rewrap`] to resume under its own sealer.
//!
//! [`MemStore`] implements the same trait in memory, for tests of the logic above the store. A
//! later etcd backend implements it for highly available coordinators.

mod cipher;
mod error;
mod memory;
mod redb_store;
pub mod sealer;

pub use self::cipher::{DATA_KEY_LEN, DataKey, VALUE_OVERHEAD, VALUE_VERSION};
pub use self::error::{Result, StoreError};
pub use self::memory::MemStore;
pub use self::redb_store::{
    DATA_TABLE, FORMAT_VERSION, META_DATA_KEY, META_FORMAT, META_KEY_CHECK, META_TABLE, RedbStore,
    STATE_FILE, WRAPPED_KEY_VERSION,
};
pub use self::sealer::{SealError, Sealer, SimSealer};

/// The longest table name a store accepts, in bytes.
pub const MAX_TABLE_LEN: usize = 64;
/// The longest key a store accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Reads and writes inside one transaction.
///
/// Reads see the transaction's own earlier writes. Nothing is visible to others, or durable,
/// until the closure given to [`Store::transaction`] returns `Ok` and the commit succeeds.
pub trait Transaction {
    /// The value under `table`/`key`, if any.
    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>>;

    /// The keys in `table` that start with `prefix`, in ascending byte order.
    fn keys(&self, table: &str, prefix: &str) -> Result<Vec<String>>;

    /// Sets `table`/`key` to `value`, replacing any earlier value.
    fn put(&mut self, table: &str, key: &str, value: &[u8]) -> Result<()>;

    /// Removes `table`/`key`; returns whether it existed.
    fn delete(&mut self, table: &str, key: &str) -> Result<bool>;

    /// Sets `table`/`key` to `new` (`None`: removes it) only if its current value is `expected`
    /// (`None`: absent). Otherwise returns [`StoreError::Conflict`] and changes nothing.
    fn compare_and_swap(
        &mut self,
        table: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<()> {
        let current = self.get(table, key)?;
        if current.as_deref() != expected {
            return Err(StoreError::Conflict {
                table: table.to_owned(),
                key: key.to_owned(),
                expected: describe(expected),
                found: describe(current.as_deref()),
            });
        }
        match new {
            Some(v) => self.put(table, key, v),
            None => self.delete(table, key).map(|_| ()),
        }
    }
}

/// A transactional key-value store for the coordinator's state.
///
/// The trait is what the coordinator's `core` sees: it knows tables, keys and values, never
/// files, encryption or sealing.
pub trait Store: Send + Sync {
    /// The value under `table`/`key` in the latest committed state, if any.
    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>>;

    /// The keys in `table` that start with `prefix`, in ascending byte order, in the latest
    /// committed state.
    fn keys(&self, table: &str, prefix: &str) -> Result<Vec<String>>;

    /// Runs `f` in a read-write transaction and commits what it did if it returns `Ok`; if it
    /// returns `Err` (or the commit fails) nothing of it is kept.
    ///
    /// `f` may be called more than once: backends with optimistic concurrency (etcd) rerun it
    /// when another writer got there first. It must therefore have no effects outside `tx`.
    /// The embedded backend serializes writers and calls it exactly once.
    fn transaction<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        F: FnMut(&mut dyn Transaction) -> std::result::Result<T, E>,
        E: From<StoreError>;
}

/// Checks a table name: 1 to [`MAX_TABLE_LEN`] bytes of `a-z`, `0-9`, `_`, `-`, `.`.
pub fn check_table(table: &str) -> Result<()> {
    let ok = !table.is_empty()
        && table.len() <= MAX_TABLE_LEN
        && table
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            what: "table",
            name: table.to_owned(),
            expected: format!("1 to {MAX_TABLE_LEN} bytes of a-z, 0-9, '_', '-', '.'"),
        })
    }
}

/// Checks a key: 1 to [`MAX_KEY_LEN`] bytes, no control characters.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty() && key.len() <= MAX_KEY_LEN && !key.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            what: "key",
            name: key.escape_debug().to_string(),
            expected: format!("1 to {MAX_KEY_LEN} bytes without control characters"),
        })
    }
}

/// A short description of a value for conflict messages: its length and SHA-256 prefix, never
/// its content (values are secrets).
fn describe(v: Option<&[u8]>) -> String {
    match v {
        None => "absent".to_owned(),
        Some(v) => {
            let d = ring::digest::digest(&ring::digest::SHA256, v);
            format!(
                "{} bytes, sha256 {}…",
                v.len(),
                hex::encode(&d.as_ref()[..6])
            )
        }
    }
}
