//! The store's contract: round trips, listing, compare-and-swap, atomicity — run against both
//! the embedded store and the in-memory fake, so `core` tests on the fake mean something — and
//! reopening the embedded store.

mod common;

use common::{fresh, put, sealer};
use confidant_coordinator::store::{RedbStore, Store, StoreError};

fn values_round_trip(store: &impl Store) {
    put(store, "secrets", "db/password", b"hunter2");
    put(store, "secrets", "empty", b"");
    assert_eq!(
        store.get("secrets", "db/password").unwrap().as_deref(),
        Some(&b"hunter2"[..])
    );
    assert_eq!(
        store.get("secrets", "empty").unwrap().as_deref(),
        Some(&b""[..])
    );
    assert_eq!(store.get("secrets", "absent").unwrap(), None);
    assert_eq!(store.get("other", "db/password").unwrap(), None);
}

fn large_values_round_trip(store: &impl Store) {
    let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    put(store, "blobs", "big", &big);
    assert_eq!(store.get("blobs", "big").unwrap().unwrap(), big);
}

#[test]
fn reopening_after_drop_resumes_with_the_same_values() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RedbStore::open(dir.path(), &sealer()).unwrap();
        put(&store, "secrets", "a", b"1");
        put(&store, "manifest", "current", b"{}");
    }
    let store = RedbStore::open(dir.path(), &sealer()).unwrap();
    assert_eq!(
        store.get("secrets", "a").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        store.get("manifest", "current").unwrap().as_deref(),
        Some(&b"{}"[..])
    );
    put(&store, "secrets", "b", b"2");
    assert_eq!(store.keys("secrets", "").unwrap(), ["a", "b"]);
}

#[test]
fn a_second_open_of_a_live_store_is_refused() {
    let (dir, _store) = fresh();
    let err = RedbStore::open(dir.path(), &sealer()).unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");
}

fn keys_lists_one_table_by_prefix_in_order(store: &impl Store) {
    store
        .transaction(|tx| {
            for k in ["db/user", "db/password", "dba", "tls/key", "d"] {
                tx.put("secrets", k, b"v")?;
            }
            tx.put("secrets-old", "db/x", b"v")?;
            tx.put("secret", "db/y", b"v")?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(
        store.keys("secrets", "db/").unwrap(),
        ["db/password", "db/user"]
    );
    assert_eq!(
        store.keys("secrets", "d").unwrap(),
        ["d", "db/password", "db/user", "dba"]
    );
    assert_eq!(store.keys("secrets", "").unwrap().len(), 5);
    assert!(store.keys("nothing", "").unwrap().is_empty());
}

fn reads_inside_a_transaction_see_its_own_writes(store: &impl Store) {
    put(store, "t", "gone", b"x");
    store
        .transaction(|tx| {
            tx.put("t", "k", b"v")?;
            assert_eq!(tx.get("t", "k")?.as_deref(), Some(&b"v"[..]));
            assert!(tx.delete("t", "gone")?);
            assert!(!tx.delete("t", "gone")?);
            assert_eq!(tx.keys("t", "")?, ["k"]);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(store.get("t", "gone").unwrap(), None);
}

fn compare_and_swap_changes_only_the_expected_value(store: &impl Store) {
    let cas = |expected: Option<&[u8]>, new: Option<&[u8]>| {
        store.transaction(|tx| tx.compare_and_swap("m", "latest", expected, new))
    };
    cas(None, Some(b"v1")).unwrap();
    let err = cas(None, Some(b"v2")).unwrap_err();
    match &err {
        StoreError::Conflict {
            table,
            key,
            expected,
            found,
        } => {
            assert_eq!((table.as_str(), key.as_str()), ("m", "latest"));
            assert_eq!(expected, "absent");
            assert!(found.starts_with("2 bytes, sha256 "), "{found}");
            assert!(
                !err.to_string().contains("v1"),
                "a conflict leaks the value: {err}"
            );
        }
        e => panic!("expected a conflict, got {e}"),
    }
    cas(Some(b"v1"), Some(b"v2")).unwrap();
    assert!(cas(Some(b"v1"), None).is_err());
    assert_eq!(
        store.get("m", "latest").unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    cas(Some(b"v2"), None).unwrap();
    assert_eq!(store.get("m", "latest").unwrap(), None);
}

fn a_transaction_that_fails_midway_leaves_nothing(store: &impl Store) {
    put(store, "t", "existing", b"old");
    let err = store
        .transaction(|tx| {
            tx.put("t", "a", b"1")?;
            tx.put("t", "existing", b"new")?;
            tx.delete("t", "existing")?;
            // A conflict in the middle aborts the whole transaction.
            tx.compare_and_swap("t", "b", Some(b"not there"), Some(b"2"))?;
            tx.put("t", "c", b"3")
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(store.keys("t", "").unwrap(), ["existing"]);
    assert_eq!(
        store.get("t", "existing").unwrap().as_deref(),
        Some(&b"old"[..])
    );
}

#[derive(Debug)]
enum AppError {
    Store(#[allow(dead_code)] StoreError),
    Refused,
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Store(e)
    }
}

fn a_caller_error_aborts_the_transaction_and_is_returned_as_is(store: &impl Store) {
    let r: Result<(), AppError> = store.transaction(|tx| {
        tx.put("t", "a", b"1")?;
        Err(AppError::Refused)
    });
    assert!(matches!(r, Err(AppError::Refused)));
    assert_eq!(store.get("t", "a").unwrap(), None);
    let v: Result<u32, AppError> = store.transaction(|tx| {
        tx.put("t", "a", b"1")?;
        Ok(7)
    });
    assert_eq!(v.unwrap(), 7);
    assert!(store.get("t", "a").unwrap().is_some());
}

fn invalid_table_names_and_keys_are_refused(store: &impl Store) {
    for (table, key) in [
        ("", "k"),
        ("Upper", "k"),
        ("a/b", "k"),
        ("t", ""),
        ("t", "a\nb"),
    ] {
        let err = store
            .transaction(|tx| tx.put(table, key, b"v"))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{table:?}/{key:?}: {err}"
        );
    }
    let long = "k".repeat(1025);
    assert!(store.get("t", &long).is_err());
    assert!(store.get(&"t".repeat(65), "k").is_err());
}

fn many_threads_commit_without_losing_writes(store: &impl Store) {
    fn hammer<S: Store>(store: &S) {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for i in 0..25 {
                        let k = format!("{t}/{i}");
                        store
                            .transaction(|tx| tx.put("t", &k, k.as_bytes()))
                            .unwrap();
                    }
                });
            }
        });
    }
    hammer(store);
    assert_eq!(store.keys("t", "").unwrap().len(), 100);
}

/// Runs each contract function against a fresh `RedbStore` and a fresh `MemStore`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod redb_store {
            $(#[test] fn $name() { let (_dir, store) = super::fresh(); super::$name(&store) })*
        }
        mod mem_store {
            $(#[test] fn $name() { super::$name(&confidant_coordinator::store::MemStore::new()) })*
        }
    };
}

contract!(
    values_round_trip,
    large_values_round_trip,
    keys_lists_one_table_by_prefix_in_order,
    reads_inside_a_transaction_see_its_own_writes,
    compare_and_swap_changes_only_the_expected_value,
    a_transaction_that_fails_midway_leaves_nothing,
    a_caller_error_aborts_the_transaction_and_is_returned_as_is,
    invalid_table_names_and_keys_are_refused,
    many_threads_commit_without_losing_writes,
);
