//! Crash safety: a writer killed with SIGKILL loses nothing it acknowledged, and leaves no
//! half-committed transaction.
//!
//! The writer is this test binary run again with `CONFIDANT_STORE_CRASH_DIR` set (see
//! [`crash_writer_child`]). After each commit returns, it appends the transaction's id to a side
//! log and fsyncs it: a line in the log is a write the store acknowledged as durable.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sealer;
use confidant_coordinator::store::{RedbStore, Store, StoreError};

const DIR_ENV: &str = "CONFIDANT_STORE_CRASH_DIR";
const ROUND_ENV: &str = "CONFIDANT_STORE_CRASH_ROUND";
const LOG: &str = "acked.log";

fn value(id: &str, part: &str) -> Vec<u8> {
    format!("{id}/{part}:").repeat(40).into_bytes()
}

/// The writer: only does something when started by [`killed_writer_loses_no_acknowledged_write`].
#[test]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let round = std::env::var(ROUND_ENV).unwrap();
    let store = RedbStore::open(dir, &sealer()).unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join(LOG))
        .unwrap();
    for i in 0u64.. {
        let id = format!("r{round}/{i:06}");
        store
            .transaction(|tx| {
                // Two values and an overwrite per transaction: after the crash either all or
                // none of them must be there.
                tx.put("t", &format!("{id}/a"), &value(&id, "a"))?;
                tx.put("t", &format!("{id}/b"), &value(&id, "b"))?;
                tx.put("last", &round, id.as_bytes())?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        // One write(2) per line; a kill can still cut it, which `acked` allows for.
        log.write_all(format!("{id}\n").as_bytes()).unwrap();
        log.sync_data().unwrap();
    }
}

/// The acknowledged ids, and whether a line was cut short (being written when the writer died:
/// committed, but not acknowledged).
fn acked(dir: &Path) -> (Vec<String>, bool) {
    let text = std::fs::read_to_string(dir.join(LOG)).unwrap_or_default();
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    let ids = text[..end].lines().map(str::to_owned).collect();
    (ids, end < text.len())
}

#[test]
fn killed_writer_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut total = 0;
    for (round, kill_after) in [(0, 15usize), (1, 60), (2, 150)] {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while acked(dir.path()).0.len() < total + kill_after {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the writer acknowledged only {} writes in round {round}",
                acked(dir.path()).0.len() - total
            );
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the writer exited by itself in round {round}: {status}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // SIGKILL, in the middle of whatever transaction comes next.
        child.kill().unwrap();
        child.wait().unwrap();

        let (acked, cut) = acked(dir.path());
        total = acked.len();
        let store = RedbStore::open(dir.path(), &sealer()).unwrap();
        for id in &acked {
            for part in ["a", "b"] {
                let got = store.get("t", &format!("{id}/{part}")).unwrap();
                assert!(
                    got == Some(value(id, part)),
                    "acknowledged {id}/{part} is lost or altered"
                );
            }
        }
        // Every transaction whole, and at most one past the last acknowledged one (two if the
        // kill cut the acknowledgement of the last but one).
        let keys = store.keys("t", "").unwrap();
        let mut ids: Vec<&str> = keys.iter().map(|k| &k[..k.len() - 2]).collect();
        ids.dedup();
        for id in &ids {
            assert!(
                store.get("t", &format!("{id}/a")).unwrap().is_some(),
                "{id}/a"
            );
            assert!(
                store.get("t", &format!("{id}/b")).unwrap().is_some(),
                "{id}/b"
            );
        }
        let this_round = format!("r{round}/");
        let count = |ids: &mut dyn Iterator<Item = &str>| {
            ids.filter(|i| i.starts_with(&this_round)).count()
        };
        let (committed, acknowledged) = (
            count(&mut ids.iter().copied()),
            count(&mut acked.iter().map(String::as_str)),
        );
        let slack = 1 + usize::from(cut);
        assert!(
            committed <= acknowledged + slack,
            "round {round}: {committed} committed, {acknowledged} acknowledged"
        );
        let last = store.get("last", &round.to_string()).unwrap().unwrap();
        let last = String::from_utf8(last).unwrap();
        assert_eq!(Some(last.as_str()), ids.last().copied());
        // The store accepts writes after the crash, then closes for the next round.
        common::put(&store, "after-crash", &round.to_string(), b"ok");
    }
}
