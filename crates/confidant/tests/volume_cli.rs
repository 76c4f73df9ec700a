//! `confidant volume` on a single machine (key file + local state file, no coordinator), with
//! real FUSE mounts: data survives a SIGTERM'd mount and a remount; a sealed directory reads
//! back through a mount; a flipped byte fails `verify` (naming the file) and reads give EIO; an
//! older copy of the backing directory restored after a later commit is refused; `inspect`
//! works without the key. Needs root and /dev/fuse; fails naming what is missing otherwise
//! (tests/requirements.rs).

mod common;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{code, json, run_confidant};
use requirements::{file, program, require, root};

/// Whether the machine can mount volumes; fails the test if not (see [`require`]).
fn ready() -> bool {
    require(&[root(), file("/dev/fuse")])
}

fn mounted(mp: &Path) -> bool {
    let want = mp.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// A `confidant volume mount` in the background. Drop stops it (SIGTERM, then SIGKILL and a
/// lazy unmount), so a failing test leaves no mount behind.
struct Mount {
    child: Option<Child>,
    mountpoint: PathBuf,
    log: PathBuf,
}

impl Mount {
    fn start(dir: &Path, mp: &Path, key: &Path, state: &Path, extra: &[&str]) -> Mount {
        let log = mp.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_confidant"))
            .args(["volume", "mount"])
            .arg(dir)
            .arg(mp)
            .arg("--key-file")
            .arg(key)
            .arg("--state-file")
            .arg(state)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut m = Mount {
            child: Some(child),
            mountpoint: mp.to_path_buf(),
            log,
        };
        let start = Instant::now();
        while !mounted(mp) {
            if let Ok(Some(status)) = m.child.as_mut().unwrap().try_wait() {
                m.child = None;
                panic!("volume mount exited early ({status}): {}", m.log_text());
            }
            assert!(start.elapsed() < Duration::from_secs(30), "never mounted");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; waits for exit 0 and for the mount to be gone.
    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = child.wait().unwrap();
        let log = self.log_text();
        assert!(status.success(), "volume mount exited with {status}: {log}");
        assert!(!mounted(&self.mountpoint), "still mounted after SIGTERM");
        log
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if mounted(&self.mountpoint) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mountpoint)
                .status();
        }
    }
}

struct Vol {
    dir: PathBuf,
    key: PathBuf,
    state: PathBuf,
    mp: PathBuf,
}

impl Vol {
    fn new(base: &Path, name: &str) -> Vol {
        Vol {
            dir: base.join(name),
            key: base.join(format!("{name}.key")),
            state: base.join(format!("{name}.state.json")),
            mp: base.join(format!("{name}.mnt")),
        }
    }

    fn cmd(&self, verb: &str, extra: &[&str]) -> Output {
        let mut args = vec!["volume", verb];
        args.extend(extra);
        let dir = self.dir.to_string_lossy().to_string();
        let key = self.key.to_string_lossy().to_string();
        let state = self.state.to_string_lossy().to_string();
        args.extend([dir.as_str(), "--key-file", &key, "--state-file", &state]);
        run_confidant(None, &args)
    }

    fn mount(&self, extra: &[&str]) -> Mount {
        Mount::start(&self.dir, &self.mp, &self.key, &self.state, extra)
    }
}

fn ok(o: &Output) {
    assert_eq!(
        code(o),
        0,
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn write_tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let files = vec![
        (
            PathBuf::from("hello.txt"),
            b"hello, protected world\n".to_vec(),
        ),
        (PathBuf::from("sub/dir/big.bin"), big),
        (PathBuf::from("sub/empty"), Vec::new()),
    ];
    for (p, data) in &files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, data).unwrap();
    }
    files
}

fn check_tree(root: &Path, files: &[(PathBuf, Vec<u8>)]) {
    for (p, data) in files {
        let got = std::fs::read(root.join(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(got == *data, "{} differs", p.display());
    }
}

#[test]
fn data_survives_sigterm_and_remount() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let v = Vol::new(t.path(), "data");
    ok(&v.cmd("create", &[]));
    assert_eq!(
        std::fs::metadata(&v.key).unwrap().permissions().mode() & 0o777,
        0o600,
        "a generated key file is 0600"
    );
    let m = v.mount(&[]);
    let files = write_tree(&v.mp);
    std::os::unix::fs::symlink("hello.txt", v.mp.join("link")).unwrap();
    std::fs::rename(v.mp.join("sub/empty"), v.mp.join("sub/empty2")).unwrap();
    std::fs::rename(v.mp.join("sub/empty2"), v.mp.join("sub/empty")).unwrap();
    let log = m.stop();
    assert!(log.contains("committed version 2"), "{log}");

    let m = v.mount(&[]);
    check_tree(&v.mp, &files);
    assert_eq!(
        std::fs::read_link(v.mp.join("link")).unwrap(),
        Path::new("hello.txt")
    );
    m.stop();
    let o = v.cmd("verify", &[]);
    ok(&o);
}

#[test]
fn a_sealed_directory_reads_back_through_a_mount() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let files = write_tree(&src);
    let script = src.join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho sealed\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("sub/dir/big.bin", src.join("big")).unwrap();
    let v = Vol::new(t.path(), "code");
    let o = run_confidant(
        None,
        &[
            "-o",
            "json",
            "volume",
            "seal",
            &src.to_string_lossy(),
            &v.dir.to_string_lossy(),
            "--key-file",
            &v.key.to_string_lossy(),
            "--state-file",
            &v.state.to_string_lossy(),
        ],
    );
    ok(&o);
    let doc = json(&o);
    assert_eq!(doc["files"], 4, "{doc}");
    assert_eq!(doc["symlinks"], 1, "{doc}");
    // The plaintext is nowhere in the backing directory.
    let mut stack = vec![v.dir.clone()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let b = std::fs::read(&p).unwrap();
            assert!(
                !b.windows(12).any(|w| w == b"echo sealed\n"),
                "{} holds plaintext",
                p.display()
            );
        }
    }
    let m = v.mount(&["--read-only"]);
    check_tree(&v.mp, &files);
    assert_eq!(
        std::fs::read_to_string(v.mp.join("run.sh")).unwrap(),
        "#!/bin/sh\necho sealed\n"
    );
    assert_eq!(
        std::fs::metadata(v.mp.join("run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o750
    );
    assert_eq!(
        std::fs::read_link(v.mp.join("big")).unwrap(),
        Path::new("sub/dir/big.bin")
    );
    assert!(std::fs::write(v.mp.join("new"), b"x").is_err(), "read-only");
    m.stop();
}

#[test]
fn a_flipped_byte_fails_verify_and_reads_give_eio() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let v = Vol::new(t.path(), "flip");
    ok(&v.cmd("create", &[]));
    let m = v.mount(&[]);
    std::fs::write(v.mp.join("secret.txt"), vec![b'a'; 20_000]).unwrap();
    m.stop();
    ok(&v.cmd("verify", &[]));
    let objects: Vec<PathBuf> = std::fs::read_dir(v.dir.join("d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(objects.len(), 1, "{objects:?}");
    let mut bytes = std::fs::read(&objects[0]).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&objects[0], &bytes).unwrap();

    let o = v.cmd("verify", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 1, "{err}");
    assert!(
        err.contains("secret.txt"),
        "the problem names the file: {err}"
    );
    let o = run_confidant(
        None,
        &[
            "-o",
            "json",
            "volume",
            "verify",
            &v.dir.to_string_lossy(),
            "--key-file",
            &v.key.to_string_lossy(),
            "--state-file",
            &v.state.to_string_lossy(),
        ],
    );
    assert_eq!(code(&o), 1);
    let doc = json(&o);
    assert_eq!(doc["ok"], false, "{doc}");
    assert!(
        doc["problems"][0]["object"]
            .as_str()
            .unwrap()
            .contains("secret.txt"),
        "{doc}"
    );

    let m = v.mount(&["--read-only"]);
    let e = std::fs::read(v.mp.join("secret.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(5), "EIO, got {e}");
    let log = m.stop();
    assert!(log.contains("tamper"), "a clear log line: {log}");
}

/// A Python app imports its modules (a package and a module) from a sealed volume mounted
/// read-only; the module code is nowhere in plaintext in the backing directory.
#[test]
fn python_imports_its_modules_from_a_sealed_volume() {
    if !require(&[root(), file("/dev/fuse"), program("python3")]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("app");
    std::fs::create_dir_all(src.join("shop")).unwrap();
    std::fs::write(src.join("shop/__init__.py"), "from .prices import total\n").unwrap();
    std::fs::write(
        src.join("shop/prices.py"),
        "SECRET_PRICING_RULE = 'multiply-by-forty-two'\n\ndef total(items):\n    return sum(items) * 42\n",
    )
    .unwrap();
    std::fs::write(
        src.join("main.py"),
        "import shop\nprint('total', shop.total([1, 2, 3]), shop.prices.__file__)\n",
    )
    .unwrap();
    let v = Vol::new(t.path(), "code");
    ok(&run_confidant(
        None,
        &[
            "volume",
            "seal",
            &src.to_string_lossy(),
            &v.dir.to_string_lossy(),
            "--key-file",
            &v.key.to_string_lossy(),
            "--state-file",
            &v.state.to_string_lossy(),
        ],
    ));
    // Ship only the ciphertext: the plain tree is gone, and nothing in the volume reads as code.
    std::fs::remove_dir_all(&src).unwrap();
    for needle in [&b"multiply-by-forty-two"[..], b"def total", b"import shop"] {
        let mut stack = vec![v.dir.clone()];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else {
                let b = std::fs::read(&p).unwrap();
                assert!(
                    !b.windows(needle.len()).any(|w| w == needle),
                    "{} holds module code in plaintext",
                    p.display()
                );
            }
        }
    }
    let m = v.mount(&["--read-only"]);
    let out = Command::new("python3")
        .arg("-B")
        .arg(v.mp.join("main.py"))
        .current_dir(t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("total 252 ") && stdout.contains(&*v.mp.to_string_lossy()),
        "{stdout}"
    );
    m.stop();
}

fn copy_dir(from: &Path, to: &Path) {
    let s = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(s.success());
}

#[test]
fn an_older_copy_of_the_backing_directory_is_refused() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let v = Vol::new(t.path(), "rb");
    ok(&v.cmd("create", &[]));
    let m = v.mount(&[]);
    std::fs::write(v.mp.join("balance"), b"100").unwrap();
    m.stop();
    let old = t.path().join("rb.old");
    copy_dir(&v.dir, &old);
    let m = v.mount(&[]);
    std::fs::write(v.mp.join("balance"), b"0").unwrap();
    m.stop();
    std::fs::remove_dir_all(&v.dir).unwrap();
    copy_dir(&old, &v.dir);

    let o = run_confidant(
        None,
        &[
            "volume",
            "mount",
            &v.dir.to_string_lossy(),
            &v.mp.to_string_lossy(),
            "--key-file",
            &v.key.to_string_lossy(),
            "--state-file",
            &v.state.to_string_lossy(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(code(&o), 0, "{err}");
    assert!(err.contains("refusing to mount"), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    assert!(!mounted(&v.mp));
}

#[test]
fn inspect_works_without_the_key() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let v = Vol::new(t.path(), "insp");
    let o = v.cmd("create", &[]);
    ok(&o);
    let o = run_confidant(
        None,
        &["-o", "json", "volume", "inspect", &v.dir.to_string_lossy()],
    );
    ok(&o);
    let doc = json(&o);
    assert_eq!(doc["volume"].as_str().unwrap().len(), 32, "{doc}");
    assert_eq!(doc["format_version"], 1, "{doc}");
    assert!(doc["objects"].as_u64().unwrap() >= 2, "{doc}");
    assert!(doc.get("version").is_none(), "no key, no version: {doc}");
    let o = run_confidant(
        None,
        &[
            "-o",
            "json",
            "volume",
            "inspect",
            &v.dir.to_string_lossy(),
            "--key-file",
            &v.key.to_string_lossy(),
            "--state-file",
            &v.state.to_string_lossy(),
        ],
    );
    ok(&o);
    let doc = json(&o);
    assert_eq!(doc["version"], 1, "{doc}");
    assert_eq!(doc["files"], 0, "{doc}");
}

/// `seal --coordinator` needs the volume's name and a user certificate, and takes no local state
/// file (the coordinator holds the state): usage errors (exit 2) before anything is written.
#[test]
fn seal_to_a_coordinator_needs_a_volume_and_a_user_and_no_state_file() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let key = t.path().join("k");
    let dir = t.path().join("vol");
    let base = [
        "volume",
        "seal",
        src.to_str().unwrap(),
        dir.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
        "--coordinator",
        "127.0.0.1:1",
    ];
    for extra in [
        &["--cert", "c.pem", "--key", "k.pem"][..],
        &["--volume", "code"][..],
        &["--volume", "code", "--cert", "c.pem"][..],
        &[
            "--volume",
            "code",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--state-file",
            "s.json",
        ][..],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_confidant"))
            .args(base)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "{extra:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = Command::new(env!("CARGO_BIN_EXE_confidant"))
        .args([
            "volume",
            "seal",
            "--volume",
            "code",
            src.to_str().unwrap(),
            dir.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "--volume needs --coordinator");
    assert!(!key.exists() && !dir.exists(), "nothing written");
}
