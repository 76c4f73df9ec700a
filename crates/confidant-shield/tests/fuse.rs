//! Real FUSE mounts (needs /dev/fuse and root or fusermount3): POSIX operations through
//! `std::fs`, remounts, and SQLite's own integrity check. A test whose requirements are missing
//! fails naming them (tests/requirements.rs).

mod common;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::key;
use confidant_shield::{LocalRootStore, MountHandle, MountOptions, RootStore, Volume, mount};
use requirements::{Need, condition, file, program, require, root};

struct Env {
    tmp: tempfile::TempDir,
    store: Arc<dyn RootStore>,
}

impl Env {
    /// A volume to mount when the machine has FUSE and `also`; fails the test otherwise, `None`
    /// only when skipping is allowed (see [`require`]).
    fn new(also: Vec<Need>) -> Option<Self> {
        let (root, mounter) = (root(), program("fusermount3"));
        let mut needs = vec![
            file("/dev/fuse"),
            condition(
                "root or fusermount3",
                (!root.is_met() && !mounter.is_met())
                    .then(|| "root or fusermount3 (package fuse3)".into()),
            ),
        ];
        needs.extend(also);
        if !require(&needs) {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn RootStore> = Arc::new(LocalRootStore::new(tmp.path().join("root.json")));
        drop(Volume::create(tmp.path().join("backing"), key(), store.clone()).unwrap());
        fs::create_dir(tmp.path().join("mnt")).unwrap();
        Some(Self { tmp, store })
    }

    fn mnt(&self) -> PathBuf {
        self.tmp.path().join("mnt")
    }

    /// Mounts; the handle unmounts (and commits) when dropped, also when a test panics.
    fn mount(&self, options: &MountOptions) -> MountHandle {
        let v = Volume::open(
            self.tmp.path().join("backing"),
            key(),
            self.store.clone(),
            false,
        )
        .unwrap();
        mount(Arc::new(v), self.mnt(), options).unwrap()
    }

    fn open(&self) -> Volume {
        Volume::open(
            self.tmp.path().join("backing"),
            key(),
            self.store.clone(),
            true,
        )
        .unwrap()
    }
}

fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&d).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if m.file_type().is_symlink() {
                out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else if m.is_dir() {
                out.push(format!("{rel}/ {:o}", m.mode() & 0o7777));
                stack.push(p);
            } else {
                let data = fs::read(&p).unwrap();
                out.push(format!(
                    "{rel} {:o} {} {}",
                    m.mode() & 0o7777,
                    m.len(),
                    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data))
                ));
            }
        }
    }
    out
}

#[test]
fn posix_operations_through_the_mount_survive_a_remount() {
    let Some(env) = Env::new(vec![]) else { return };
    let m = env.mnt();
    let before = {
        let h = env.mount(&MountOptions::default());
        fs::create_dir_all(m.join("a/b/c")).unwrap();
        fs::write(m.join("a/hello.txt"), b"hello world").unwrap();
        let big: Vec<u8> = (0..3_000_003u32)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        fs::write(m.join("a/b/big.bin"), &big).unwrap();
        assert_eq!(fs::read(m.join("a/b/big.bin")).unwrap(), big);
        // Overwrite in the middle, extend past the end with a hole, read back.
        {
            let mut f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(m.join("a/b/big.bin"))
                .unwrap();
            f.seek(SeekFrom::Start(5000)).unwrap();
            f.write_all(b"MIDDLE").unwrap();
            f.seek(SeekFrom::Start(4_000_000)).unwrap();
            f.write_all(b"END").unwrap();
            f.sync_all().unwrap();
            let mut buf = vec![0u8; 10];
            f.seek(SeekFrom::Start(3_500_000)).unwrap();
            f.read_exact(&mut buf).unwrap();
            assert_eq!(buf, vec![0; 10], "hole reads as zeros");
        }
        fs::rename(m.join("a/hello.txt"), m.join("a/b/c/moved.txt")).unwrap();
        fs::write(m.join("victim"), b"x").unwrap();
        fs::write(m.join("replacer"), b"replaced").unwrap();
        fs::rename(m.join("replacer"), m.join("victim")).unwrap();
        fs::write(m.join("gone"), b"gone").unwrap();
        fs::remove_file(m.join("gone")).unwrap();
        fs::create_dir(m.join("emptydir")).unwrap();
        fs::remove_dir(m.join("emptydir")).unwrap();
        assert_eq!(
            fs::remove_dir(m.join("a")).unwrap_err().raw_os_error(),
            Some(39),
            "ENOTEMPTY"
        );
        std::os::unix::fs::symlink("b/c/moved.txt", m.join("a/link")).unwrap();
        assert_eq!(fs::read(m.join("a/link")).unwrap(), b"hello world");
        fs::set_permissions(m.join("victim"), fs::Permissions::from_mode(0o600)).unwrap();
        let f = fs::OpenOptions::new()
            .write(true)
            .open(m.join("a/b/c/moved.txt"))
            .unwrap();
        f.set_len(5).unwrap();
        f.sync_all().unwrap();
        drop(f);
        assert_eq!(fs::read(m.join("a/b/c/moved.txt")).unwrap(), b"hello");
        assert_eq!(
            fs::hard_link(m.join("victim"), m.join("hard"))
                .unwrap_err()
                .raw_os_error(),
            Some(1),
            "EPERM"
        );
        let names: Vec<String> = fs::read_dir(&m)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let before = listing(&m);
        h.unmount().unwrap();
        before
    };
    // Nothing readable on the host side: no names, no plaintext.
    let backing = env.tmp.path().join("backing");
    for e in walk(&backing) {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!["hello.txt", "big.bin", "victim", "moved.txt"].contains(&name.as_str()));
        let bytes = fs::read(&e).unwrap();
        assert!(
            !bytes.windows(11).any(|w| w == b"hello world"),
            "{}",
            e.display()
        );
    }
    let h = env.mount(&MountOptions::default());
    assert_eq!(listing(&m), before);
    drop(h);
    let v = env.open();
    let report = v.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 CLI");
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sqlite_database_passes_integrity_check_after_remount() {
    let Some(env) = Env::new(vec![program("sqlite3")]) else {
        return;
    };
    let db = env.mnt().join("app.db");
    for journal in ["DELETE", "WAL"] {
        let h = env.mount(&MountOptions::default());
        sqlite(
            &db,
            &format!(
                "PRAGMA journal_mode={journal};
                 CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, name TEXT, payload BLOB);
                 CREATE INDEX IF NOT EXISTS t_name ON t(name);"
            ),
        );
        for batch in 0..5 {
            sqlite(
                &db,
                &format!(
                    "BEGIN;
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
                     INSERT INTO t(name, payload) SELECT 'row-{journal}-{batch}-' || i, randomblob(100 + i % 700) FROM n;
                     COMMIT;
                     DELETE FROM t WHERE id % 7 = 0 AND name LIKE 'row-{journal}-{batch}-%';
                     UPDATE t SET name = name || '-u' WHERE id % 11 = 0;"
                ),
            );
        }
        h.unmount().unwrap();
    }
    let h = env.mount(&MountOptions::default());
    assert_eq!(sqlite(&db, "PRAGMA integrity_check;").trim(), "ok");
    let count: u64 = sqlite(&db, "SELECT count(*) FROM t;")
        .trim()
        .parse()
        .unwrap();
    // 2 journal modes × 5 batches × 1000 rows, minus each batch's ids divisible by 7.
    assert!(count > 8000 && count < 10_000, "{count}");
    drop(h);
    assert!(env.open().verify().unwrap().is_clean());
}

#[test]
fn writeback_cache_mount_round_trips() {
    let Some(env) = Env::new(vec![]) else { return };
    let opts = MountOptions {
        writeback_cache: true,
        ..MountOptions::default()
    };
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    {
        let h = env.mount(&opts);
        let mut f = fs::File::create(env.mnt().join("f")).unwrap();
        for chunk in data.chunks(1000) {
            f.write_all(chunk).unwrap();
        }
        f.sync_all().unwrap();
        drop(f);
        h.unmount().unwrap();
    }
    let h = env.mount(&opts);
    assert_eq!(fs::read(env.mnt().join("f")).unwrap(), data);
    drop(h);
}

#[test]
fn python_imports_modules_from_a_sealed_read_only_volume() {
    let Some(env) = Env::new(vec![program("python3")]) else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("app/util")).unwrap();
    fs::write(src.path().join("app/__init__.py"), b"").unwrap();
    fs::write(src.path().join("app/util/__init__.py"), b"").unwrap();
    fs::write(
        src.path().join("app/util/secret.py"),
        b"def answer():\n    return 6 * 7\n",
    )
    .unwrap();
    {
        let v = Volume::open(
            env.tmp.path().join("backing"),
            key(),
            env.store.clone(),
            false,
        )
        .unwrap();
        v.import_tree(src.path(), confidant_shield::ROOT_INO)
            .unwrap();
        v.commit().unwrap();
    }
    let v = Arc::new(env.open()); // read-only
    let h = mount(v, env.mnt(), &MountOptions::default()).unwrap();
    let out = Command::new("python3")
        .args([
            "-B",
            "-c",
            "from app.util.secret import answer; print(answer())",
        ])
        .env("PYTHONPATH", env.mnt())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    assert_eq!(
        fs::write(env.mnt().join("new"), b"x")
            .unwrap_err()
            .raw_os_error(),
        Some(30),
        "EROFS"
    );
    h.unmount().unwrap();
}

#[test]
fn redis_with_aof_keeps_its_data_across_restarts_and_remounts() {
    let Some(env) = Env::new(vec![program("redis-server"), program("redis-cli")]) else {
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let start = |mnt: &Path| {
        let mut child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(mnt)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while cli(&["ping"]) != "PONG" {
            let exited = child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server on port {port} never answered PING (exit: {exited:?})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    };
    {
        let h = env.mount(&MountOptions::default());
        let mut redis = start(&env.mnt());
        for i in 0..200 {
            cli(&["set", &format!("key{i}"), &format!("value{i}")]);
        }
        cli(&["rpush", "list", "a", "b", "c"]);
        cli(&["shutdown", "nosave"]);
        redis.wait().unwrap();
        h.unmount().unwrap();
    }
    let h = env.mount(&MountOptions::default());
    let mut redis = start(&env.mnt());
    assert_eq!(cli(&["get", "key199"]), "value199");
    assert_eq!(cli(&["dbsize"]), "201");
    assert_eq!(cli(&["lrange", "list", "0", "-1"]), "a\nb\nc");
    cli(&["shutdown", "nosave"]);
    redis.wait().unwrap();
    drop(h);
    assert!(env.open().verify().unwrap().is_clean());
}
