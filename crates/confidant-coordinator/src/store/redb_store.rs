//! The embedded backend: one redb file, `state.redb`, in the state directory.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::cipher::{DataKey, KEY_CHECK_DOMAIN, KEY_CHECK_PLAINTEXT, VALUE_DOMAIN, ValueCipher};
use super::error::{Result, StoreError};
use super::sealer::Sealer;
use super::{Store, Transaction, check_key, check_table};

/// File name of the store inside the state directory.
pub const STATE_FILE: &str = "state.redb";

/// The redb table of values: key `(table, key)`, value an encrypted value.
pub const DATA_TABLE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("data");
/// The redb table of store metadata (format, wrapped data key, key check).
pub const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Metadata key of the format version (u32 little-endian).
pub const META_FORMAT: &str = "format";
/// Metadata key of the wrapped data key record.
pub const META_DATA_KEY: &str = "data_key";
/// Metadata key of the key check: a known constant encrypted under the data key.
pub const META_KEY_CHECK: &str = "key_check";
/// The only format version so far.
pub const FORMAT_VERSION: u32 = 1;
/// Version byte of the wrapped data key record.
pub const WRAPPED_KEY_VERSION: u8 = 1;

/// The embedded store: redb (copy-on-write B-trees, fsynced atomic commits) with every value
/// encrypted under a sealed data key.
///
/// Writers are serialized (one write transaction at a time); readers never block.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    data_key: DataKey,
    cipher: ValueCipher,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the store in `state_dir` (creating the directory, mode 0700, and the file, mode
    /// 0600, if needed).
    ///
    /// A fresh store gets a random data key, sealed with `sealer`. An existing store's data key
    /// is unsealed with `sealer`; if that fails the error is [`StoreError::Sealed`] and the
    /// coordinator should enter recovery ([`RedbStore::open_with_data_key`]).
    pub fn open(state_dir: &Path, sealer: &dyn Sealer) -> Result<RedbStore> {
        let (db, path) = open_db(state_dir, true)?;
        let txn = db
            .begin_write()
            .map_err(backend("beginning a transaction on", &path))?;
        let data_key;
        {
            let mut meta = txn
                .open_table(META_TABLE)
                .map_err(backend("opening the meta table of", &path))?;
            let data = txn
                .open_table(DATA_TABLE)
                .map_err(backend("opening the data table of", &path))?;
            let record = meta
                .get(META_DATA_KEY)
                .map_err(backend("reading", &path))?
                .map(|g| g.value().to_vec());
            match record {
                Some(record) => {
                    check_format(&meta, &path)?;
                    data_key = unwrap_data_key(&record, sealer)?;
                    check_data_key(&meta, &path, &data_key).map_err(|e| match e {
                        StoreError::WrongDataKey => StoreError::Integrity {
                            table: "meta".into(),
                            key: META_KEY_CHECK.into(),
                            reason: "the unsealed data key does not open the key check".into(),
                        },
                        e => e,
                    })?;
                }
                None => {
                    let n = data.len().map_err(backend("reading", &path))?;
                    if n != 0 || meta.len().map_err(backend("reading", &path))? != 0 {
                        return Err(StoreError::Integrity {
                            table: "meta".into(),
                            key: META_DATA_KEY.into(),
                            reason: format!(
                                "expected a wrapped data key in a store holding {n} values, \
                                 found none"
                            ),
                        });
                    }
                    data_key = DataKey::generate()?;
                    let cipher = ValueCipher::new(&data_key);
                    let check = cipher.seal(
                        KEY_CHECK_DOMAIN,
                        "meta",
                        META_KEY_CHECK,
                        KEY_CHECK_PLAINTEXT,
                    )?;
                    let wrapped = wrap_data_key(&data_key, sealer)?;
                    let w = backend("writing", &path);
                    meta.insert(META_FORMAT, &FORMAT_VERSION.to_le_bytes()[..])
                        .map_err(&w)?;
                    meta.insert(META_KEY_CHECK, &check[..]).map_err(&w)?;
                    meta.insert(META_DATA_KEY, &wrapped[..]).map_err(&w)?;
                }
            }
        }
        txn.commit().map_err(backend("committing to", &path))?;
        Ok(RedbStore::new(db, path, data_key))
    }

    /// Opens an existing store with a data key obtained by recovery (for instance reassembled
    /// from owners' shares), without unsealing. Fails with [`StoreError::WrongDataKey`] if the
    /// key is not the store's. Call [`RedbStore::rewrap`] afterwards so the next start can
    /// unseal on its own.
    pub fn open_with_data_key(state_dir: &Path, data_key: DataKey) -> Result<RedbStore> {
        let (db, path) = open_db(state_dir, false)?;
        {
            let txn = db
                .begin_read()
                .map_err(backend("beginning a transaction on", &path))?;
            let meta = txn
                .open_table(META_TABLE)
                .map_err(backend("opening the meta table of", &path))?;
            check_format(&meta, &path)?;
            check_data_key(&meta, &path, &data_key)?;
        }
        Ok(RedbStore::new(db, path, data_key))
    }

    /// Seals the data key anew with `sealer` and stores it, replacing the previous wrapping
    /// (after recovery, or when the sealing identity changes). Values are not re-encrypted.
    pub fn rewrap(&self, sealer: &dyn Sealer) -> Result<()> {
        let wrapped = wrap_data_key(&self.data_key, sealer)?;
        let path = &self.path;
        let txn = self
            .db
            .begin_write()
            .map_err(backend("beginning a transaction on", path))?;
        {
            let mut meta = txn
                .open_table(META_TABLE)
                .map_err(backend("opening the meta table of", path))?;
            meta.insert(META_DATA_KEY, &wrapped[..])
                .map_err(backend("writing", path))?;
        }
        txn.commit().map_err(backend("committing to", path))
    }

    /// The data key, for recovery setup (splitting it into owners' shares). Handle with care:
    /// it decrypts the whole state.
    pub fn data_key(&self) -> &DataKey {
        &self.data_key
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn new(db: Database, path: PathBuf, data_key: DataKey) -> RedbStore {
        let cipher = ValueCipher::new(&data_key);
        RedbStore {
            db,
            path,
            data_key,
            cipher,
        }
    }
}

impl Store for RedbStore {
    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>> {
        check_table(table)?;
        check_key(key)?;
        let path = &self.path;
        let txn = self
            .db
            .begin_read()
            .map_err(backend("beginning a transaction on", path))?;
        let data = txn
            .open_table(DATA_TABLE)
            .map_err(backend("opening the data table of", path))?;
        let stored = data.get((table, key)).map_err(backend("reading", path))?;
        stored
            .map(|g| self.cipher.open(VALUE_DOMAIN, table, key, g.value()))
            .transpose()
    }

    fn keys(&self, table: &str, prefix: &str) -> Result<Vec<String>> {
        check_table(table)?;
        let path = &self.path;
        let txn = self
            .db
            .begin_read()
            .map_err(backend("beginning a transaction on", path))?;
        let data = txn
            .open_table(DATA_TABLE)
            .map_err(backend("opening the data table of", path))?;
        keys_in(&data, path, table, prefix)
    }

    fn transaction<T, E, F>(&self, mut f: F) -> std::result::Result<T, E>
    where
        F: FnMut(&mut dyn Transaction) -> std::result::Result<T, E>,
        E: From<StoreError>,
    {
        let path = &self.path;
        let mut txn = self
            .db
            .begin_write()
            .map_err(backend("beginning a transaction on", path))?;
        // The default, stated: a commit returns only once it is fsynced (tests/store_crash.rs
        // fails with anything weaker).
        txn.set_durability(redb::Durability::Immediate);
        let result = {
            let table = txn
                .open_table(DATA_TABLE)
                .map_err(backend("opening the data table of", path))?;
            let mut tx = RedbTransaction {
                table,
                cipher: &self.cipher,
                path,
            };
            f(&mut tx)
        };
        match result {
            Ok(v) => {
                txn.commit().map_err(backend("committing to", path))?;
                Ok(v)
            }
            Err(e) => {
                // Nothing was written to the file: aborting only releases the transaction.
                let _ = txn.abort();
                Err(e)
            }
        }
    }
}

/// A write transaction on the data table.
struct RedbTransaction<'a, 'txn> {
    table: redb::Table<'txn, (&'static str, &'static str), &'static [u8]>,
    cipher: &'a ValueCipher,
    path: &'a Path,
}

impl Transaction for RedbTransaction<'_, '_> {
    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>> {
        check_table(table)?;
        check_key(key)?;
        let stored = self
            .table
            .get((table, key))
            .map_err(backend("reading", self.path))?;
        stored
            .map(|g| self.cipher.open(VALUE_DOMAIN, table, key, g.value()))
            .transpose()
    }

    fn keys(&self, table: &str, prefix: &str) -> Result<Vec<String>> {
        check_table(table)?;
        keys_in(&self.table, self.path, table, prefix)
    }

    fn put(&mut self, table: &str, key: &str, value: &[u8]) -> Result<()> {
        check_table(table)?;
        check_key(key)?;
        let sealed = self.cipher.seal(VALUE_DOMAIN, table, key, value)?;
        self.table
            .insert((table, key), &sealed[..])
            .map_err(backend("writing", self.path))?;
        Ok(())
    }

    fn delete(&mut self, table: &str, key: &str) -> Result<bool> {
        check_table(table)?;
        check_key(key)?;
        let old = self
            .table
            .remove((table, key))
            .map_err(backend("writing", self.path))?;
        Ok(old.is_some())
    }
}

/// Keys of `table` starting with `prefix`, from either kind of redb table handle.
fn keys_in(
    data: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    path: &Path,
    table: &str,
    prefix: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let range = data
        .range((table, prefix)..)
        .map_err(backend("reading", path))?;
    for item in range {
        let (k, _) = item.map_err(backend("reading", path))?;
        let (t, key) = k.value();
        if t != table || !key.starts_with(prefix) {
            break;
        }
        out.push(key.to_owned());
    }
    Ok(out)
}

/// Opens (or, if `create`, creates) the database file in `state_dir`.
fn open_db(state_dir: &Path, create: bool) -> Result<(Database, PathBuf)> {
    let path = state_dir.join(STATE_FILE);
    if create {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| StoreError::Io {
                action: "creating",
                path: state_dir.to_owned(),
                source,
            })?;
        // Create the file ourselves so it is private from the first byte; redb initializes an
        // empty file.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::Io {
                action: "creating",
                path: path.clone(),
                source,
            })?;
    }
    let mut builder = Database::builder();
    // The v3 file format is the one redb 3 and later read.
    builder.create_with_file_format_v3(true);
    let db = if create {
        builder.create(&path)
    } else {
        builder.open(&path)
    }
    .map_err(backend("opening", &path))?;
    Ok((db, path))
}

/// `version ‖ kind length (u8) ‖ kind ‖ sealed data key`.
fn wrap_data_key(data_key: &DataKey, sealer: &dyn Sealer) -> Result<Vec<u8>> {
    let kind = sealer.kind();
    let kind_len = u8::try_from(kind.len()).expect("sealer kinds are short names");
    let sealed = sealer
        .seal(data_key.as_bytes())
        .map_err(|e| StoreError::Seal {
            sealer: sealer.label(),
            reason: e.to_string(),
        })?;
    let mut record = vec![WRAPPED_KEY_VERSION, kind_len];
    record.extend_from_slice(kind.as_bytes());
    record.extend_from_slice(&sealed);
    Ok(record)
}

fn unwrap_data_key(record: &[u8], sealer: &dyn Sealer) -> Result<DataKey> {
    let malformed = |reason: String| StoreError::Integrity {
        table: "meta".into(),
        key: META_DATA_KEY.into(),
        reason,
    };
    let (&version, rest) = record
        .split_first()
        .ok_or_else(|| malformed("expected a wrapped data key record, got 0 bytes".into()))?;
    if version != WRAPPED_KEY_VERSION {
        return Err(malformed(format!(
            "expected record version {WRAPPED_KEY_VERSION}, got {version}"
        )));
    }
    let (&kind_len, rest) = rest
        .split_first()
        .ok_or_else(|| malformed("record ends before the sealer kind".into()))?;
    let kind_len = usize::from(kind_len);
    if rest.len() < kind_len {
        return Err(malformed(format!(
            "expected a {kind_len}-byte sealer kind, got {} bytes",
            rest.len()
        )));
    }
    let (kind, sealed) = rest.split_at(kind_len);
    let kind = String::from_utf8_lossy(kind);
    let sealed_err = |reason: String| StoreError::Sealed {
        sealer: sealer.label(),
        reason,
    };
    if kind != sealer.kind() {
        return Err(sealed_err(format!(
            "the data key was sealed by a `{kind}` sealer, this is a `{}` sealer",
            sealer.kind()
        )));
    }
    let key = sealer
        .unseal(sealed)
        .map_err(|e| sealed_err(e.to_string()))?;
    DataKey::from_slice(&key).map_err(|e| malformed(e.to_string()))
}

fn check_format(meta: &impl ReadableTable<&'static str, &'static [u8]>, path: &Path) -> Result<()> {
    let found = meta
        .get(META_FORMAT)
        .map_err(backend("reading", path))?
        .map(|g| g.value().to_vec());
    let ok = found.as_deref() == Some(&FORMAT_VERSION.to_le_bytes()[..]);
    if ok {
        return Ok(());
    }
    Err(StoreError::Integrity {
        table: "meta".into(),
        key: META_FORMAT.into(),
        reason: format!(
            "expected format version {FORMAT_VERSION} (u32 LE), got {}",
            found.map_or_else(|| "none".to_owned(), hex::encode)
        ),
    })
}

/// Checks that `data_key` opens the key check record: [`StoreError::WrongDataKey`] if not.
fn check_data_key(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    path: &Path,
    data_key: &DataKey,
) -> Result<()> {
    let check = meta
        .get(META_KEY_CHECK)
        .map_err(backend("reading", path))?
        .ok_or_else(|| StoreError::Integrity {
            table: "meta".into(),
            key: META_KEY_CHECK.into(),
            reason: "expected a key check record, found none".into(),
        })?;
    let opened =
        ValueCipher::new(data_key).open(KEY_CHECK_DOMAIN, "meta", META_KEY_CHECK, check.value());
    match opened {
        Ok(p) if p == KEY_CHECK_PLAINTEXT => Ok(()),
        _ => Err(StoreError::WrongDataKey),
    }
}

/// Maps a redb error to [`StoreError::Backend`] with what the store was doing.
fn backend<'p, E: std::fmt::Display>(
    action: &'static str,
    path: &'p Path,
) -> impl Fn(E) -> StoreError + 'p {
    move |e| StoreError::Backend {
        action,
        path: path.to_owned(),
        reason: e.to_string(),
    }
}
