//! A `confidant run` whose agent is killed with SIGKILL (as the OOM killer does) cannot tear its
//! run down: it leaves the tmpfs with the decrypted rootfs, the dead FUSE mounts of its volumes,
//! its runc container (still running) and an ephemeral volume's backing directory.
//! `confidant cleanup` and the next `confidant run` undo all of it, and leave a run whose agent
//! still runs alone. Redis with a `rollback_protected` and an `ephemeral` volume; needs root,
//! /dev/fuse, runc, redis-server/redis-cli and umoci; fails naming what is missing otherwise
//! (tests/requirements.rs).

mod coord;
mod redis_run;
#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::path::{Path, PathBuf};
use std::process::Command;

use coord::{confidant, run_ok};
use redis_run::{Running, Setup, prepare, ready};
use serde_json::Value;

/// examples/redis/manifest-volume.yaml with Redis on `redis_port` (the containers share the
/// host's network) and an ephemeral `scratch` volume next to the rollback_protected `data`.
fn prepare_with_scratch(port: u16, redis_port: u16) -> Setup {
    prepare(port, |m| {
        m.replace("port 6379", &format!("port {redis_port}"))
            .replace("target_port: 6379", &format!("target_port: {redis_port}"))
            .replace(
                "data: {size: 1GiB, policy: rollback_protected}",
                "data: {size: 1GiB, policy: rollback_protected}\n  scratch: {size: 64MiB, policy: ephemeral}",
            )
            .replace(
                "      - {volume: data, path: /data}\n",
                "      - {volume: data, path: /data}\n      - {volume: scratch, path: /scratch}\n",
            )
    })
}

/// Runs `confidant cleanup` on the run directory when dropped: a failed test leaves no killed
/// run behind (declare it after the `Setup` and before the `Running`s).
struct CleanupOnDrop<'a>(&'a Setup);

impl Drop for CleanupOnDrop<'_> {
    fn drop(&mut self) {
        let _ = confidant(&self.0.home)
            .args(["cleanup", "--run-dir"])
            .arg(&self.0.run_dir)
            .output();
    }
}

/// What a killed run left behind.
struct Killed {
    id: String,
    path: PathBuf,
    runtime_root: PathBuf,
    container_pid: u32,
    ephemeral: PathBuf,
    agent_pid: u32,
}

/// The mounts at or below `dir`: (mount point, file system type).
fn mounts_under(dir: &Path) -> Vec<(String, String)> {
    let dir = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (fields, tail) = l.split_once(" - ")?;
            let mp = fields.split(' ').nth(4)?.to_string();
            let fs = tail.split(' ').next()?.to_string();
            (mp == dir || mp.starts_with(&format!("{dir}/"))).then_some((mp, fs))
        })
        .collect()
}

/// Whether `pid` runs (a zombie does not).
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}

/// The only run in the run directory: its path and record.
fn the_run(s: &Setup) -> (PathBuf, Value) {
    let runs: Vec<PathBuf> = std::fs::read_dir(&s.run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let record = std::fs::read(runs[0].join("run.json")).unwrap();
    (runs[0].clone(), serde_json::from_slice(&record).unwrap())
}

/// Kills the agent of `r` with SIGKILL and checks what it left behind.
fn kill(s: &Setup, r: Running) -> Killed {
    let (path, record) = the_run(s);
    let id = path.file_name().unwrap().to_string_lossy().to_string();
    let agent_pid = r.pid();
    assert_eq!(record["owner"]["pid"], agent_pid, "{record}");
    let runtime_root = path.join(record["runtime_root"].as_str().unwrap());
    let ephemeral = PathBuf::from(record["ephemeral_dirs"][0].as_str().unwrap());
    assert!(
        ephemeral.starts_with(s.volume_root().join("redis")),
        "{record}"
    );
    let state = run_ok(
        Command::new("runc")
            .arg("--root")
            .arg(&runtime_root)
            .args(["state", &id]),
    );
    let container_pid = serde_json::from_slice::<Value>(&state.stdout).unwrap()["pid"]
        .as_u64()
        .unwrap() as u32;
    r.kill_agent();

    // Left behind: the tmpfs and both volumes' (dead) FUSE mounts, the running container, the
    // ephemeral volume's backing directory.
    let mounts = mounts_under(&path);
    let fuse = mounts
        .iter()
        .filter(|(_, fs)| fs.starts_with("fuse"))
        .count();
    assert_eq!(fuse, 2, "{mounts:?}");
    assert!(
        mounts
            .iter()
            .any(|(mp, fs)| Path::new(mp) == path && fs == "tmpfs"),
        "{mounts:?}"
    );
    assert!(runs(container_pid), "the container runs on");
    assert!(ephemeral.is_dir());
    assert!(
        Path::new("/run/netns").join(&id).exists(),
        "the app's network namespace {id} is left"
    );
    Killed {
        id,
        path,
        runtime_root,
        container_pid,
        ephemeral,
        agent_pid,
    }
}

/// Nothing of the killed run is left.
fn assert_cleaned(k: &Killed) {
    let mounts = mounts_under(&k.path);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    assert!(!k.path.exists(), "{} left", k.path.display());
    assert!(!runs(k.container_pid), "the container still runs");
    // (`runc --root … list` would make the state directory again: it is gone with the tmpfs.)
    assert!(
        !k.runtime_root.exists(),
        "{} left",
        k.runtime_root.display()
    );
    assert!(!k.ephemeral.exists(), "{} left", k.ephemeral.display());
    assert!(
        !Path::new("/run/netns").join(&k.id).exists(),
        "network namespace {} left",
        k.id
    );
}

fn cleanup_json(s: &Setup) -> Value {
    let out = confidant(&s.home)
        .args(["-o", "json", "cleanup", "--run-dir"])
        .arg(&s.run_dir)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{doc}");
    doc
}

#[test]
fn cleanup_undoes_a_killed_run_and_leaves_a_running_one_alone() {
    if !ready() {
        return;
    }
    let s = prepare_with_scratch(16490, 16491);
    let _cleanup = CleanupOnDrop(&s);
    let r = s.start("run1.err");
    assert_eq!(s.cli(&["SET", "k", "v"]), "OK");

    // While its agent runs, a cleanup leaves the run alone.
    let (path, _) = the_run(&s);
    let before = mounts_under(&path);
    let doc = cleanup_json(&s);
    assert_eq!(doc["cleaned"], Value::Array(vec![]), "{doc}");
    assert_eq!(doc["kept"][0]["owner_pid"], r.pid(), "{doc}");
    assert_eq!(mounts_under(&path), before);
    assert_eq!(s.cli(&["GET", "k"]), "v");
    assert_eq!(s.cli(&["SET", "scratch-still-there", "yes"]), "OK");

    let k = kill(&s, r);
    let doc = cleanup_json(&s);
    let c = &doc["cleaned"][0];
    assert_eq!(doc["cleaned"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(c["id"], k.id.as_str(), "{doc}");
    assert_eq!(c["reason"]["kind"], "owner_gone", "{doc}");
    assert_eq!(c["reason"]["pid"], k.agent_pid, "{doc}");
    assert_eq!(c["container_deleted"], true, "{doc}");
    assert_eq!(c["volumes_unmounted"], 2, "{doc}");
    assert_eq!(c["netns_deleted"], true, "{doc}");
    assert_eq!(c["other_unmounted"], 1, "{doc}");
    assert_eq!(
        c["ephemeral_removed"][0],
        k.ephemeral.to_string_lossy().as_ref(),
        "{doc}"
    );
    assert_eq!(c["removed"], true, "{doc}");
    assert_eq!(c["errors"], Value::Array(vec![]), "{doc}");
    assert_cleaned(&k);
    s.assert_nothing_left();

    // Nothing more to do, said for people.
    let out = run_ok(
        confidant(&s.home)
            .args(["cleanup", "--run-dir"])
            .arg(&s.run_dir),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no runs in"),
        "{out:?}"
    );
}

#[test]
fn the_next_run_cleans_up_a_killed_run_before_it_starts() {
    if !ready() {
        return;
    }
    let s = prepare_with_scratch(16492, 16493);
    let _cleanup = CleanupOnDrop(&s);
    let r = s.start("run1.err");
    assert_eq!(s.cli(&["SET", "k", "v"]), "OK");
    let k = kill(&s, r);

    let r = s.start("run2.err");
    let log = s.log("run2.err");
    assert!(
        log.contains(&format!(
            "cleaned up a run killed earlier: {} (owner pid {} gone): deleted container {}, unmounted 2 volumes and 1 other mount, deleted network namespace {}, removed ephemeral volume {}",
            k.id,
            k.agent_pid,
            k.id,
            k.id,
            k.ephemeral.display()
        )),
        "{log}"
    );
    assert!(!log.contains("FAILED"), "{log}");
    assert_cleaned(&k);
    assert_eq!(s.cli(&["PING"]), "PONG");
    assert_eq!(r.stop(), 0, "{}", s.log("run2.err"));
    s.assert_nothing_left();
}
