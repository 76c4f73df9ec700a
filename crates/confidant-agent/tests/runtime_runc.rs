//! The runtime module against a real runc and a busybox-static rootfs.
//!
//! Every test needs root, runc and busybox (package busybox-static) and fails naming what is
//! missing otherwise (tests/requirements.rs). After every test the runc state directory lists
//! no container.

#[path = "../../../tests/requirements.rs"]
mod requirements;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use confidant_agent::runtime::{
    BindMount, BundleSpec, ContainerExit, ContainerState, Network, RunError, RunOptions, Runtime,
    User,
};

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "id", "grep", "unshare", "mknod", "wc", "head", "touch", "pwd",
    "hostname", "true", "ls", "swapoff", "readlink",
];

/// The env var that turns [`signal_forwarding_child`] from a no-op into the child half of the
/// signal tests ([`Agent`]).
const CHILD_DIR_VAR: &str = "CONFIDANT_TEST_SIGNAL_CHILD_DIR";
/// The image stop signal the child runs its container with (`RunOptions::stop_signal`), if set.
const CHILD_STOP_SIGNAL_VAR: &str = "CONFIDANT_TEST_SIGNAL_CHILD_STOP_SIGNAL";
/// The child's stop timeout in seconds (`RunOptions::stop_timeout`), if set.
const CHILD_STOP_TIMEOUT_VAR: &str = "CONFIDANT_TEST_SIGNAL_CHILD_STOP_TIMEOUT";
/// If set, the child's runtime waits while creating the container ([`hold_while_creating`]).
const CHILD_HOLD_CREATE_VAR: &str = "CONFIDANT_TEST_SIGNAL_CHILD_HOLD_CREATE";

fn runc() -> Option<PathBuf> {
    [
        "/usr/sbin/runc",
        "/usr/bin/runc",
        "/usr/local/sbin/runc",
        "/usr/local/bin/runc",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// runc and busybox; fails the test when they or root are missing, `None` only when
/// skipping is allowed (see [`requirements::require`]).
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let (runc, busybox) = (runc(), busybox());
    let needs = [
        // runc needs root to create namespaces and mounts.
        requirements::root(),
        requirements::condition(
            "runc",
            runc.is_none()
                .then(|| "runc (not in /usr/sbin, /usr/bin, /usr/local/…)".into()),
        ),
        // The containers' rootfs.
        requirements::condition(
            "busybox",
            busybox
                .is_none()
                .then(|| "busybox (no /bin/busybox: package busybox-static)".into()),
        ),
    ];
    requirements::require(&needs).then(|| (runc.unwrap(), busybox.unwrap()))
}

/// Builds a busybox rootfs at `rootfs` (created, mode 0755).
fn make_rootfs(busybox: &Path, rootfs: &Path) {
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    for dir in ["tmp", "work", "etc"] {
        fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    fs::set_permissions(
        rootfs.join("bin/busybox"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    fs::set_permissions(rootfs, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(rootfs.join("work"), fs::Permissions::from_mode(0o777)).unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    runtime: Runtime,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Fixture {
    fn new() -> Option<Self> {
        let (runc, busybox) = prerequisites()?;
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        make_rootfs(&busybox, &rootfs);
        let runtime = Runtime::with_state_in(runc, dir.path()).unwrap();
        Some(Self {
            dir,
            rootfs,
            runtime,
        })
    }

    fn spec(&self, script: &str) -> BundleSpec {
        BundleSpec::new(&self.rootfs, vec!["sh".into(), "-c".into(), script.into()])
    }

    fn id(&self, name: &str) -> String {
        format!(
            "{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Runs `spec` from a bundle the runner owns; returns the exit and captured output, and
    /// checks that the bundle directory is gone and no container is left.
    fn run(
        &self,
        name: &str,
        spec: &BundleSpec,
    ) -> Result<(ContainerExit, String, String), RunError> {
        let out_path = self.dir.path().join(format!("{name}.out"));
        let err_path = self.dir.path().join(format!("{name}.err"));
        let bundle = spec.write_temp(self.dir.path()).unwrap();
        let bundle_dir = bundle.path().to_owned();
        let result = self.runtime.run_bundle(
            bundle,
            &self.id(name),
            RunOptions::new()
                .stdout(fs::File::create(&out_path).unwrap())
                .stderr(fs::File::create(&err_path).unwrap()),
        );
        assert!(!bundle_dir.exists(), "bundle {bundle_dir:?} left behind");
        self.assert_no_containers();
        let out = fs::read_to_string(&out_path).unwrap();
        let err = fs::read_to_string(&err_path).unwrap();
        result.map(|exit| (exit, out, err))
    }

    fn run_ok(&self, name: &str, spec: &BundleSpec) -> (ContainerExit, String, String) {
        match self.run(name, spec) {
            Ok(r) => r,
            Err(e) => panic!("{name}: {e}"),
        }
    }

    fn assert_no_containers(&self) {
        let left = self.runtime.list().unwrap();
        assert!(left.is_empty(), "containers left: {left:?}");
        // The same check through runc's own table output.
        let output = Command::new(self.runtime.binary())
            .arg("--root")
            .arg(self.runtime.state_root())
            .arg("list")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(text.lines().count(), 1, "runc list: {text}");
    }
}

#[test]
fn echo_hello_is_captured() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let spec = BundleSpec::new(&f.rootfs, vec!["echo".into(), "hello".into()]);
    let (exit, out, err) = f.run_ok("echo", &spec);
    assert!(exit.success(), "{exit:?} {err}");
    assert_eq!(out, "hello\n");
}

#[test]
fn exit_code_passes_through() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let (exit, _, err) = f.run_ok("exit7", &f.spec("exit 7"));
    assert_eq!(exit.code(), 7, "{err}");
    assert_eq!(exit.signal(), None);
}

#[test]
fn capabilities_are_dockers_default_set() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let (exit, out, err) = f.run_ok("caps", &f.spec("cat /proc/self/status"));
    assert!(exit.success(), "{err}");
    for line in [
        "CapEff:\t00000000a80425fb",
        "CapPrm:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "CapInh:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn seccomp_filter_is_installed_and_refuses_calls() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let (exit, out, err) = f.run_ok("seccomp", &f.spec("grep Seccomp: /proc/self/status"));
    assert!(exit.success(), "{err}");
    assert!(out.lines().any(|l| l == "Seccomp:\t2"), "{out}");

    // unshare(CLONE_NEWUSER) needs no capability (the host allows unprivileged user
    // namespaces), so its refusal is the seccomp filter's doing.
    let (exit, _, err) = f.run_ok("unshare", &f.spec("unshare -U true"));
    assert_ne!(exit.code(), 0, "unshare -U succeeded");
    assert!(err.contains("Operation not permitted"), "{err}");

    // swapoff: refused by seccomp (and by the missing CAP_SYS_ADMIN).
    let (exit, _, _) = f.run_ok("swapoff", &f.spec("swapoff /dev/null"));
    assert_ne!(exit.code(), 0, "swapoff succeeded");
}

#[test]
fn masked_readonly_paths_and_devices() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let (exit, out, err) = f.run_ok("kcore", &f.spec("cat /proc/kcore | wc -c"));
    assert!(exit.success(), "{err}");
    assert_eq!(out.trim(), "0", "/proc/kcore is not empty");

    let (exit, _, err) = f.run_ok(
        "procsys",
        &f.spec("echo 1 > /proc/sys/vm/drop_caches && echo wrote"),
    );
    assert_ne!(exit.code(), 0, "wrote to /proc/sys: {err}");
    assert!(err.contains("Read-only file system"), "{err}");

    // CAP_MKNOD allows creating a node for the host's root disk; the devices cgroup refuses
    // opening it (no capability is needed to open a block device, so this is the cgroup).
    let dev = std::os::unix::fs::MetadataExt::dev(&fs::metadata("/").unwrap());
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let disk = requirements::condition(
        "a block device under /",
        (major == 0).then(|| format!("a block device under / (it is {major}:{minor})")),
    );
    if !requirements::require(&[disk]) {
        return;
    }
    let (exit, out, err) = f.run_ok(
        "blockdev",
        &f.spec(&format!(
            "mknod /tmp/disk b {major} {minor} && echo made; head -c 1 /tmp/disk | wc -c"
        )),
    );
    assert!(exit.success(), "{err}");
    assert_eq!(
        out, "made\n0\n",
        "read the host disk ({major}:{minor}): {err}"
    );
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn env_cwd_user_and_hostname() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let mut spec = f.spec(
        "echo \"$GREETING\"; pwd; id -u; id -g; id -G; hostname; grep CapEff /proc/self/status",
    );
    spec.env = vec!["GREETING=hi there".into()];
    spec.cwd = "/work".into();
    spec.user = User {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![2000],
    };
    spec.hostname = Some("confidant-app".into());
    let (exit, out, err) = f.run_ok("user", &spec);
    assert!(exit.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "hi there",
            "/work",
            "1000",
            "1000",
            "1000 2000",
            "confidant-app",
            // A non-root user keeps no effective capability (nothing inheritable or ambient).
            "CapEff:\t0000000000000000",
        ],
        "{err}"
    );
}

#[test]
fn read_only_bind_mount_and_read_only_rootfs() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let data = f.dir.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("config"), "rendered\n").unwrap();
    let scratch = f.dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();

    let mut spec = f.spec(
        "cat /data/config; \
         if touch /data/new 2>/dev/null; then echo data-writable; else echo data-ro; fi; \
         if touch /x 2>/dev/null; then echo root-writable; else echo root-ro; fi; \
         touch /scratch/ok && echo scratch-rw",
    );
    spec.readonly_rootfs = true;
    spec.mounts = vec![
        BindMount::new(&data, "/data", true),
        BindMount::new(&scratch, "/scratch", false),
    ];
    let (exit, out, err) = f.run_ok("binds", &spec);
    assert!(exit.success(), "{err}");
    assert_eq!(out, "rendered\ndata-ro\nroot-ro\nscratch-rw\n", "{err}");
    assert!(scratch.join("ok").exists());
    assert!(!data.join("new").exists());
}

#[test]
fn network_host_and_none() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let script = "readlink /proc/self/ns/net; grep -c : /proc/net/dev; grep -q ' lo:' /proc/net/dev && echo has-lo";
    let host_netns = fs::read_link("/proc/self/ns/net").unwrap();
    let host_netns = host_netns.to_string_lossy();

    let (exit, out, err) = f.run_ok("net-host", &f.spec(script));
    assert!(exit.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(&*host_netns),
        "not the host's netns: {out}"
    );

    let mut spec = f.spec(script);
    spec.network = Network::None;
    let (exit, out, err) = f.run_ok("net-none", &spec);
    assert!(exit.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_ne!(lines[0], &*host_netns, "shares the host's netns");
    assert_eq!(&lines[1..], ["1", "has-lo"], "only loopback expected");

    // Joining a namespace the agent made: the container is in it, with its loopback up.
    let ns = confidant_agent::netns::NetNs::create(&format!(
        "confidant-test-join-{}",
        std::process::id()
    ))
    .unwrap();
    let ns_link = {
        use std::os::unix::fs::MetadataExt as _;
        format!("net:[{}]", fs::metadata(ns.path()).unwrap().ino())
    };
    let mut spec = f.spec(&format!("{script}; cat /sys/class/net/lo/flags"));
    spec.network = Network::Join(ns.path().to_path_buf());
    let (exit, out, err) = f.run_ok("net-join", &spec);
    assert!(exit.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some(ns_link.as_str()), "{out}");
    // IFF_UP | IFF_LOOPBACK: the loopback interface is up.
    assert_eq!(
        &lines[1..],
        ["1", "has-lo", "0x9"],
        "only loopback, up: {out}"
    );
    let path = ns.path().to_path_buf();
    ns.remove().unwrap();
    assert!(!path.exists(), "{} left", path.display());
}

#[test]
fn cgroups_path_is_applied() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let name = f.id("confidant-cg");
    let mut spec = f.spec("cat /proc/self/cgroup");
    spec.cgroups_path = Some(PathBuf::from(&name));
    let (exit, out, err) = f.run_ok("cgroup", &spec);
    assert!(exit.success(), "{err}");
    assert!(out.contains(&format!("/{name}")), "{out}");
}

#[test]
fn runtime_failure_is_an_error_and_cleaned_up() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let spec = BundleSpec::new(&f.rootfs, vec!["/no/such/program".into()]);
    match f.run("missing-program", &spec) {
        Err(RunError::Runtime { message, .. }) => {
            assert!(message.contains("/no/such/program"), "{message}")
        }
        other => panic!("expected RunError::Runtime, found {other:?}"),
    }
}

#[test]
fn kill_stops_a_running_container() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let id = f.id("kill");
    let bundle = f.spec("sleep 60").write_temp(f.dir.path()).unwrap();
    let exit = std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            f.runtime
                .run(bundle.path(), &id, RunOptions::new().forward_signals(false))
        });
        // Kill only once it runs: a container killed between create and start makes runc
        // report "container process is already dead" (a runtime error, not an exit code).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match f.runtime.state(&id) {
                Ok(state) if *state.status() == ContainerState::Running => break,
                Ok(_) | Err(RunError::NotFound { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => panic!("container never ran: {other:?}"),
            }
        }
        // The id is taken while it runs: a second run is refused and deletes nothing.
        let second = f.spec("true").write_temp(f.dir.path()).unwrap();
        assert!(matches!(
            f.runtime.run(second.path(), &id, RunOptions::new()),
            Err(RunError::IdInUse { .. })
        ));
        let other = Runtime::new(f.runtime.binary(), f.runtime.state_root());
        assert!(matches!(
            other.run(second.path(), &id, RunOptions::new()),
            Err(RunError::IdInUse { .. })
        ));
        assert!(matches!(
            f.runtime.state(&id).map(|s| *s.status()),
            Ok(ContainerState::Running)
        ));
        f.runtime.kill(&id, 9).unwrap();
        runner.join().unwrap()
    });
    let exit = exit.unwrap();
    assert_eq!(exit.code(), 137);
    assert_eq!(exit.signal(), Some(9));
    assert!(matches!(
        f.runtime.kill(&id, 15),
        Err(RunError::NotFound { .. })
    ));
    f.assert_no_containers();
    // `run` leaves a bundle it does not own alone.
    assert!(bundle.path().join("config.json").exists());
}

struct TmpfsMount(PathBuf);

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn rootfs_on_a_tmpfs() {
    let Some(f) = Fixture::new() else {
        return;
    };
    let Some((_, busybox)) = prerequisites() else {
        return;
    };
    let mnt = f.dir.path().join("mem");
    fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mount -t tmpfs failed ({status})");
    let _mounted = TmpfsMount(mnt.clone());
    let rootfs = mnt.join("rootfs");
    make_rootfs(&busybox, &rootfs);
    let spec = BundleSpec::new(
        &rootfs,
        vec![
            "sh".into(),
            "-c".into(),
            "echo from-tmpfs; grep -c . /proc/self/mountinfo >/dev/null".into(),
        ],
    );
    // pivot_root works on a tmpfs: no --no-pivot.
    let (exit, out, err) = f.run_ok("tmpfs", &spec);
    assert!(exit.success(), "{err}");
    assert_eq!(out, "from-tmpfs\n");
}

/// The child half of the signal tests: a no-op unless [`CHILD_DIR_VAR`] is set. Runs a container
/// that traps SIGTERM (exit 42), SIGQUIT (exit 43) and SIGTSTP (prints, goes on running), and
/// records the runner's result.
#[test]
fn signal_forwarding_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR).map(PathBuf::from) else {
        return;
    };
    let (runc, busybox) = prerequisites().unwrap();
    let rootfs = dir.join("rootfs");
    make_rootfs(&busybox, &rootfs);
    let shared = dir.join("shared");
    fs::create_dir_all(&shared).unwrap();
    let mut spec = BundleSpec::new(
        &rootfs,
        vec![
            "sh".into(),
            "-c".into(),
            // `wait` returns early when a trapped signal arrives: wait again.
            "trap 'echo got-term; exit 42' TERM; trap 'echo got-quit; exit 43' QUIT; \
             trap 'echo got-tstp' TSTP; \
             sleep 60 & touch /shared/ready; until wait; do :; done"
                .into(),
        ],
    );
    spec.mounts.push(BindMount::new(&shared, "/shared", false));
    let runtime = Runtime::new(runc, dir.join("state"));
    let bundle = spec.write_temp(&dir).unwrap();
    if std::env::var_os(CHILD_HOLD_CREATE_VAR).is_some() {
        hold_while_creating(&bundle.path().join("config.json"), &dir);
    }
    let mut options = RunOptions::new();
    if let Ok(stop) = std::env::var(CHILD_STOP_SIGNAL_VAR) {
        options = options.stop_signal(confidant_agent::runtime::parse_signal(&stop).unwrap());
    }
    if let Ok(seconds) = std::env::var(CHILD_STOP_TIMEOUT_VAR) {
        options = options.stop_timeout(Duration::from_secs(seconds.parse().unwrap()));
    }
    let result = runtime.run_bundle(bundle, &child_container(&dir), options);
    let text = match &result {
        Ok(exit) => format!("{}", exit.code()),
        Err(e) => format!("error: {e}"),
    };
    fs::write(dir.join("result"), text).unwrap();
}

/// Adds a `createRuntime` hook to the bundle's config: while the runtime creates the container,
/// it touches `DIR/creating` and waits until `DIR/go` exists.
fn hold_while_creating(config: &Path, dir: &Path) {
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(config).unwrap()).unwrap();
    let script = format!(
        "touch {dir}/creating; while [ ! -e {dir}/go ]; do sleep 0.05; done",
        dir = dir.display()
    );
    spec["hooks"] = serde_json::json!({
        "createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", script],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        }]
    });
    fs::write(config, serde_json::to_vec(&spec).unwrap()).unwrap();
}

/// The container id [`signal_forwarding_child`] runs: one per agent, so that agents running at
/// the same time have their own cgroups.
fn child_container(dir: &Path) -> String {
    let name = dir.file_name().unwrap().to_string_lossy();
    format!("signal-child-{}", name.trim_start_matches('.'))
}

#[test]
fn sigterm_to_the_agent_is_forwarded_to_the_container() {
    let Some(child) = Agent::start(&[]) else {
        return;
    };
    child.sigterm();
    let end = child.finish(Duration::from_secs(10));
    assert_eq!(end.result, "42", "{}", end.log);
    assert!(end.log.contains("got-term"), "{}", end.log);
}

#[test]
fn sigterm_to_the_agent_arrives_as_the_image_stop_signal() {
    let Some(child) = Agent::start(&[(CHILD_STOP_SIGNAL_VAR, "SIGQUIT")]) else {
        return;
    };
    child.sigterm();
    let end = child.finish(Duration::from_secs(10));
    assert_eq!(end.result, "43", "{}", end.log);
    assert!(end.log.contains("got-quit"), "{}", end.log);
}

/// SIGSTOP as the stop signal stops the app instead of ending it (and cannot be trapped): the
/// grace period's SIGKILL ends it, and the run ends with everything cleaned up.
#[test]
fn a_stopping_stop_signal_ends_the_app_after_the_grace_period() {
    let grace = Duration::from_secs(2);
    let Some(child) = Agent::start(&[
        (CHILD_STOP_SIGNAL_VAR, "SIGSTOP"),
        (CHILD_STOP_TIMEOUT_VAR, "2"),
    ]) else {
        return;
    };
    let sent = Instant::now();
    child.sigterm();
    let end = child.finish(grace);
    // Killed by the grace period's SIGKILL, not before it.
    assert_eq!(end.result, "137", "{}", end.log);
    assert!(
        end.at.duration_since(sent) >= grace,
        "ended {:?} after SIGTERM, before the grace period of {grace:?}",
        end.at.duration_since(sent)
    );
}

/// SIGTSTP reaches the app's init (which traps it and goes on running); the grace period's
/// SIGKILL then ends it.
#[test]
fn a_sigtstp_stop_signal_reaches_the_app_and_the_grace_period_ends_it() {
    let grace = Duration::from_secs(2);
    let Some(child) = Agent::start(&[
        (CHILD_STOP_SIGNAL_VAR, "SIGTSTP"),
        (CHILD_STOP_TIMEOUT_VAR, "2"),
    ]) else {
        return;
    };
    let sent = Instant::now();
    child.sigterm();
    let end = child.finish(grace);
    assert_eq!(end.result, "137", "{}", end.log);
    assert!(end.log.contains("got-tstp"), "{}", end.log);
    assert!(
        end.at.duration_since(sent) >= grace,
        "ended {:?} after SIGTERM, before the grace period of {grace:?}",
        end.at.duration_since(sent)
    );
}

/// A stop requested while the runtime is still creating the container (before the app runs) is
/// not lost: it is delivered once the container runs, and the run ends within the grace period.
/// The app's init receives SIGTERM either after its trap is set (exit 42) or before (ignored, as
/// an init process without a handler does; the grace period's SIGKILL ends it: 137).
#[test]
fn a_stop_requested_while_the_container_is_created_ends_the_run() {
    let grace = Duration::from_secs(2);
    let Some(child) = Agent::start(&[(CHILD_HOLD_CREATE_VAR, "1"), (CHILD_STOP_TIMEOUT_VAR, "2")])
    else {
        return;
    };
    child.sigterm();
    // Give the agent time to receive it before the container may go on (no assertion depends
    // on this: a late signal is a stop request too).
    std::thread::sleep(Duration::from_millis(300));
    child.release();
    let end = child.finish(grace);
    match end.result.as_str() {
        "42" => assert!(end.log.contains("got-term"), "{}", end.log),
        "137" => {}
        other => panic!("expected exit 42 or 137, found {other}:\n{}", end.log),
    }
}

/// An agent process: this test binary re-executed as [`signal_forwarding_child`], which runs a
/// container. On drop (also when a test fails), it lets a held container creation go on, kills
/// the agent and deletes the container.
struct Agent {
    dir: tempfile::TempDir,
    child: std::process::Child,
    runc: PathBuf,
    /// The container's processes (pid, start time) once it ran.
    app: Vec<(u32, String)>,
}

/// How an [`Agent`] ended.
struct End {
    /// The runner's result: the container's exit code or an error.
    result: String,
    /// The agent's output, with the container's.
    log: String,
    /// When the agent was seen to have exited.
    at: Instant,
}

impl Agent {
    /// Starts the agent with `env` and waits until its container runs (or, with
    /// [`CHILD_HOLD_CREATE_VAR`], until the runtime is creating it). `None` only when skipping
    /// is allowed and the machine lacks root, runc or busybox (see [`prerequisites`]).
    fn start(env: &[(&str, &str)]) -> Option<Self> {
        let (runc, _) = prerequisites()?;
        let dir = tempfile::tempdir().unwrap();
        let out = fs::File::create(dir.path().join("child.out")).unwrap();
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "signal_forwarding_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR_VAR, dir.path())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (name, value) in env {
            command.env(name, value);
        }
        let holding = env.iter().any(|(name, _)| *name == CHILD_HOLD_CREATE_VAR);
        let mut agent = Self {
            child: command.spawn().unwrap(),
            dir,
            runc,
            app: Vec::new(),
        };
        let ready = agent
            .dir
            .path()
            .join(if holding { "creating" } else { "shared/ready" });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            if Instant::now() > deadline || agent.child.try_wait().unwrap().is_some() {
                panic!("the container never became ready:\n{}", agent.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !holding {
            agent.app = agent.container_processes();
            assert!(!agent.app.is_empty(), "no container processes");
            // The check `finish` makes finds the running app.
            let inside = processes_rooted_in(&agent.dir.path().join("rootfs"));
            assert!(
                !inside.is_empty(),
                "no process rooted in the container's rootfs"
            );
        }
        Some(agent)
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("child.out")).unwrap_or_default()
    }

    /// The pids of the container's processes (`runc ps`), with their start times.
    fn container_processes(&self) -> Vec<(u32, String)> {
        let output = Command::new(&self.runc)
            .arg("--root")
            .arg(self.state())
            .args(["ps", "--format", "json"])
            .arg(child_container(self.dir.path()))
            .output()
            .unwrap();
        assert!(output.status.success(), "runc ps: {output:?}");
        let pids: Vec<u32> = serde_json::from_slice(&output.stdout).unwrap();
        pids.into_iter()
            .filter_map(|pid| start_time(pid).map(|t| (pid, t)))
            .collect()
    }

    /// SIGTERM to the agent (the child test process), not to runc or the container.
    fn sigterm(&self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    }

    /// Lets the held container creation go on.
    fn release(&self) {
        fs::write(self.dir.path().join("go"), "").unwrap();
    }

    /// Waits for the agent to exit, at most `grace` + 15 s (generous: the agent has `grace` to
    /// stop the app, and then only runc's exit and deletion are left), and checks that it
    /// succeeded and left nothing: no container process, no container in runc's list, no
    /// state or bundle directory.
    fn finish(mut self, grace: Duration) -> End {
        let deadline = Instant::now() + grace + Duration::from_secs(15);
        let (status, at) = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break (status, Instant::now());
            }
            if Instant::now() > deadline {
                panic!(
                    "the agent did not finish within {:?} of SIGTERM:\n{}",
                    grace + Duration::from_secs(15),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self.log();
        assert!(status.success(), "child test failed ({status}):\n{log}");
        let result = fs::read_to_string(self.dir.path().join("result")).unwrap_or_default();
        for (pid, started) in &self.app {
            assert_ne!(
                start_time(*pid).as_ref(),
                Some(started),
                "container process {pid} still runs:\n{log}"
            );
        }
        let rootfs = self.dir.path().join("rootfs");
        let inside = processes_rooted_in(&rootfs);
        assert!(
            inside.is_empty(),
            "processes rooted in the container's rootfs: {inside:?}"
        );
        let left = Runtime::new(&self.runc, self.state()).list().unwrap();
        assert!(left.is_empty(), "containers left: {left:?}");
        assert!(
            !self.state().join(child_container(self.dir.path())).exists(),
            "the container's runc state directory is left"
        );
        assert!(
            !fs::read_dir(self.dir.path())
                .unwrap()
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("bundle-")),
            "bundle directory left behind"
        );
        End { result, log, at }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.release();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = Command::new(&self.runc)
            .arg("--root")
            .arg(self.state())
            .args(["delete", "--force"])
            .arg(child_container(self.dir.path()))
            .output();
    }
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), if it exists and is not a
/// zombie.
fn start_time(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // fields[0] is field 3 (the state), so field 22 is fields[19].
    (fields.first() != Some(&"Z")).then(|| fields.get(19).map(|s| s.to_string()))?
}

/// The processes whose root directory is `rootfs` (a container's processes see it as `/`):
/// the same file (device and inode) through `/proc/PID/root`, whose link text is only `/`.
fn processes_rooted_in(rootfs: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let target = fs::metadata(rootfs).unwrap();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/root"))
                .is_ok_and(|root| (root.dev(), root.ino()) == (target.dev(), target.ino()))
        })
        .collect()
}
