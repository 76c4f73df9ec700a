//! The OCI runtime bundle: `config.json` for an unpacked rootfs, with Docker's defaults.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, LinuxSeccomp, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use tempfile::TempDir;
use thiserror::Error;

use super::seccomp;

/// The OCI runtime spec version written into `config.json` (runc 1.1 implements 1.0.2).
pub const OCI_VERSION: &str = "1.0.2";

/// Docker's default capability set (moby `oci/caps/defaults.go`), `CapEff` 0x00000000a80425fb for
/// a root process.
pub const DOCKER_DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Docker's masked paths: bind-mounted over with `/dev/null` (files) or an empty read-only tmpfs
/// (directories), because they expose host kernel state (`/proc/kcore` is the host's memory).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths: kernel tunables that are global to the host, not per namespace.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The `PATH` a container gets when its image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a bundle could not be described or written.
#[derive(Debug, Error)]
pub enum BundleError {
    /// The rootfs path is relative; the bundle may live elsewhere, so it must be absolute.
    #[error("rootfs path: expected an absolute path, found {found:?}")]
    RootfsNotAbsolute {
        /// The path given.
        found: PathBuf,
    },
    /// The rootfs is not a directory.
    #[error("rootfs {path:?}: expected a directory, found {found}")]
    RootfsNotDirectory {
        /// The path given.
        path: PathBuf,
        /// What is there instead (`nothing`, `a file`, ...).
        found: String,
    },
    /// No command to run.
    #[error("process args: expected at least the program to run, found an empty list")]
    EmptyArgs,
    /// An argument contains a NUL byte, which `execve` cannot pass.
    #[error("process arg {index}: expected no NUL byte, found {found:?}")]
    NulInArg {
        /// Its position in `args`.
        index: usize,
        /// The argument.
        found: String,
    },
    /// An environment entry is not `KEY=VALUE` with a non-empty key.
    #[error(
        "environment entry {index}: expected KEY=VALUE with a non-empty KEY and no NUL byte, found {found:?}"
    )]
    InvalidEnv {
        /// Its position in `env`.
        index: usize,
        /// The entry.
        found: String,
    },
    /// A path inside the container (cwd or a mount destination) is not absolute.
    #[error("{what}: expected an absolute path inside the container, found {found:?}")]
    NotAbsolute {
        /// Which path (`cwd`, `mount destination`, `mount source`).
        what: &'static str,
        /// The path given.
        found: PathBuf,
    },
    /// A bind mount's source does not exist on the host.
    #[error(
        "bind mount source {source_path:?}: expected an existing file or directory, found nothing"
    )]
    MountSourceMissing {
        /// The source path.
        source_path: PathBuf,
    },
    /// The hostname is not a valid host name.
    #[error(
        "hostname: expected 1 to 64 characters of letters, digits, '-' and '.', found {found:?}"
    )]
    InvalidHostname {
        /// The hostname given.
        found: String,
    },
    /// oci-spec refused a value.
    #[error("OCI runtime spec: {0}")]
    Spec(#[from] OciSpecError),
    /// `config.json` could not be serialized.
    #[error("serializing config.json: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A file-system operation failed.
    #[error("{action} {path:?}: {source}")]
    Io {
        /// What was being done (`creating bundle directory`, `writing`, ...).
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The container's network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// Share the agent's network namespace (the default): the mesh proxy in the agent forwards to
    /// the app's plain port on 127.0.0.1, and the app reaches the network like the agent does.
    #[default]
    Host,
    /// A new, empty network namespace with only a loopback interface.
    None,
    /// Join an existing network namespace by path (e.g. a [`crate::netns::NetNs`] the agent
    /// made, in which the mesh proxy opens its sockets towards the app).
    Join(PathBuf),
}

/// The seccomp filter to install.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SeccompPolicy {
    /// [`seccomp::default_profile`] for the bundle's capabilities (the default).
    #[default]
    Default,
    /// A profile of the caller's.
    Custom(LinuxSeccomp),
    /// No filter (for debugging only: the container then reaches every system call).
    Unconfined,
}

/// The container process's identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// User id (no user namespace: this is the host uid too).
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
}

/// A bind mount from the agent's file system into the container (rendered files on a tmpfs,
/// volumes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute host path (file or directory).
    pub source: PathBuf,
    /// Absolute path inside the container; created by the runtime if missing.
    pub destination: PathBuf,
    /// Mount read-only.
    pub read_only: bool,
}

impl BindMount {
    /// A bind mount of `source` at `destination`.
    pub fn new(
        source: impl Into<PathBuf>,
        destination: impl Into<PathBuf>,
        read_only: bool,
    ) -> Self {
        Self {
            source: source.into(),
            destination: destination.into(),
            read_only,
        }
    }
}

/// What to run and how to confine it; [`BundleSpec::write`] turns it into `config.json`.
///
/// Fields default to Docker's behaviour: see [`BundleSpec::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSpec {
    /// The unpacked image's root file system: an absolute path, possibly outside the bundle.
    pub rootfs: PathBuf,
    /// Mount the rootfs read-only (writable paths then come from [`BundleSpec::mounts`]).
    pub readonly_rootfs: bool,
    /// The command and its arguments (`args[0]` is resolved through `PATH` by the runtime).
    pub args: Vec<String>,
    /// `KEY=VALUE` entries. If none sets `PATH`, [`DEFAULT_PATH`] is added.
    pub env: Vec<String>,
    /// Working directory inside the container (absolute).
    pub cwd: PathBuf,
    /// The process's uid, gid and supplementary gids.
    pub user: User,
    /// Host name inside the container's UTS namespace.
    pub hostname: Option<String>,
    /// Bind mounts added after the default ones.
    pub mounts: Vec<BindMount>,
    /// Host network (default) or an isolated one.
    pub network: Network,
    /// Bounding, effective and permitted capabilities (never inheritable or ambient, as Docker).
    pub capabilities: Vec<Capability>,
    /// The seccomp filter.
    pub seccomp: SeccompPolicy,
    /// `linux.cgroupsPath`. `None` lets the runtime choose (runc: the container id, under runc's
    /// own cgroup); a relative path is placed under the runtime's own cgroup.
    pub cgroups_path: Option<PathBuf>,
}

impl BundleSpec {
    /// A spec running `args` in `rootfs` with Docker's defaults: root user, cwd `/`, writable
    /// rootfs, host network, Docker's capabilities, the default seccomp profile, no extra mounts.
    pub fn new(rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            rootfs: rootfs.into(),
            readonly_rootfs: false,
            args,
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            user: User::default(),
            hostname: None,
            mounts: Vec::new(),
            network: Network::Host,
            capabilities: DOCKER_DEFAULT_CAPABILITIES.to_vec(),
            seccomp: SeccompPolicy::Default,
            cgroups_path: None,
        }
    }

    /// Checks the inputs and builds the OCI runtime spec.
    pub fn to_spec(&self) -> Result<Spec, BundleError> {
        self.validate()?;

        let caps: Capabilities = self.capabilities.iter().copied().collect();
        let capabilities = LinuxCapabilitiesBuilder::default()
            .bounding(caps.clone())
            .effective(caps.clone())
            .permitted(caps)
            .inheritable(Capabilities::new())
            .ambient(Capabilities::new())
            .build()?;

        let mut env = self.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_owned());
        }

        let user = UserBuilder::default()
            .uid(self.user.uid)
            .gid(self.user.gid)
            .additional_gids(self.user.additional_gids.clone())
            .build()?;

        let process = ProcessBuilder::default()
            .terminal(false)
            .user(user)
            .args(self.args.clone())
            .env(env)
            .cwd(self.cwd.clone())
            .capabilities(capabilities)
            .no_new_privileges(true)
            .build()?;

        let mut namespaces = Vec::new();
        for typ in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
        ] {
            namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
        }
        match &self.network {
            Network::Host => {}
            Network::None => namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .build()?,
            ),
            Network::Join(path) => namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .path(path.clone())
                    .build()?,
            ),
        }

        // runc's `runc spec` default: deny every device in the devices cgroup; runc then allows
        // its default devices (null, zero, full, random, urandom, tty, ptmx, pts). Without it a
        // container with CAP_MKNOD could mknod and open the host's disks. Nothing else goes into
        // `resources` (no limits: the cgroup controllers of this sandbox are limited).
        let resources = LinuxResourcesBuilder::default()
            .devices(vec![
                LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm")
                    .build()?,
            ])
            .build()?;

        let mut linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .resources(resources)
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|p| (*p).to_owned())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|p| (*p).to_owned())
                    .collect::<Vec<_>>(),
            );
        match &self.seccomp {
            SeccompPolicy::Default => {
                linux = linux.seccomp(seccomp::default_profile(&self.capabilities)?);
            }
            SeccompPolicy::Custom(profile) => linux = linux.seccomp(profile.clone()),
            SeccompPolicy::Unconfined => {}
        }
        if let Some(path) = &self.cgroups_path {
            linux = linux.cgroups_path(path.clone());
        }
        let linux = linux.build()?;

        let root = RootBuilder::default()
            .path(self.rootfs.clone())
            .readonly(self.readonly_rootfs)
            .build()?;

        let mut mounts = default_mounts()?;
        for bind in &self.mounts {
            let mut options = vec!["rbind".to_owned(), "rprivate".to_owned()];
            options.push(if bind.read_only { "ro" } else { "rw" }.to_owned());
            mounts.push(
                MountBuilder::default()
                    .destination(bind.destination.clone())
                    .typ("bind")
                    .source(bind.source.clone())
                    .options(options)
                    .build()?,
            );
        }

        let mut spec = SpecBuilder::default()
            .version(OCI_VERSION)
            .root(root)
            .mounts(mounts)
            .process(process)
            .linux(linux);
        if let Some(hostname) = &self.hostname {
            spec = spec.hostname(hostname.clone());
        }
        Ok(spec.build()?)
    }

    /// Writes `config.json` into `bundle_dir` (created if missing) and returns its path.
    pub fn write(&self, bundle_dir: &Path) -> Result<PathBuf, BundleError> {
        let spec = self.to_spec()?;
        let json = serde_json::to_vec_pretty(&spec)?;
        fs::create_dir_all(bundle_dir).map_err(|source| BundleError::Io {
            action: "creating bundle directory",
            path: bundle_dir.to_owned(),
            source,
        })?;
        let path = bundle_dir.join("config.json");
        let io = |action, source| BundleError::Io {
            action,
            path: path.clone(),
            source,
        };
        let mut file = fs::File::create(&path).map_err(|e| io("creating", e))?;
        file.write_all(&json).map_err(|e| io("writing", e))?;
        file.sync_all().map_err(|e| io("syncing", e))?;
        Ok(path)
    }

    /// Writes the bundle into a new directory under `parent`, removed when the returned
    /// [`Bundle`] is dropped (or consumed by [`Runtime::run_bundle`](super::Runtime::run_bundle)).
    pub fn write_temp(&self, parent: &Path) -> Result<Bundle, BundleError> {
        let dir = tempfile::Builder::new()
            .prefix("bundle-")
            .tempdir_in(parent)
            .map_err(|source| BundleError::Io {
                action: "creating bundle directory in",
                path: parent.to_owned(),
                source,
            })?;
        self.write(dir.path())?;
        Ok(Bundle { dir })
    }

    fn validate(&self) -> Result<(), BundleError> {
        if !self.rootfs.is_absolute() {
            return Err(BundleError::RootfsNotAbsolute {
                found: self.rootfs.clone(),
            });
        }
        match fs::metadata(&self.rootfs) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(BundleError::RootfsNotDirectory {
                    path: self.rootfs.clone(),
                    found: "something that is not a directory".into(),
                });
            }
            Err(e) => {
                return Err(BundleError::RootfsNotDirectory {
                    path: self.rootfs.clone(),
                    found: format!("nothing ({e})"),
                });
            }
        }
        if self.args.is_empty() {
            return Err(BundleError::EmptyArgs);
        }
        if let Some((index, arg)) = self.args.iter().enumerate().find(|(_, a)| a.contains('\0')) {
            return Err(BundleError::NulInArg {
                index,
                found: arg.clone(),
            });
        }
        for (index, entry) in self.env.iter().enumerate() {
            let valid = match entry.split_once('=') {
                Some((key, _)) => !key.is_empty() && !entry.contains('\0'),
                None => false,
            };
            if !valid {
                return Err(BundleError::InvalidEnv {
                    index,
                    found: entry.clone(),
                });
            }
        }
        if !self.cwd.is_absolute() {
            return Err(BundleError::NotAbsolute {
                what: "cwd",
                found: self.cwd.clone(),
            });
        }
        for bind in &self.mounts {
            if !bind.destination.is_absolute() {
                return Err(BundleError::NotAbsolute {
                    what: "mount destination",
                    found: bind.destination.clone(),
                });
            }
            if !bind.source.is_absolute() {
                return Err(BundleError::NotAbsolute {
                    what: "mount source",
                    found: bind.source.clone(),
                });
            }
            if fs::symlink_metadata(&bind.source).is_err() {
                return Err(BundleError::MountSourceMissing {
                    source_path: bind.source.clone(),
                });
            }
        }
        if let Some(hostname) = &self.hostname {
            let valid = !hostname.is_empty()
                && hostname.len() <= 64
                && hostname
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                return Err(BundleError::InvalidHostname {
                    found: hostname.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A bundle directory owned by this value: removed on drop.
#[derive(Debug)]
pub struct Bundle {
    dir: TempDir,
}

impl Bundle {
    /// The bundle directory (holds `config.json`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Removes the bundle directory now, reporting failure (drop removes it silently).
    pub fn remove(self) -> std::io::Result<()> {
        self.dir.close()
    }
}

/// The mounts every container gets (those of `runc spec` and Docker), before the bind mounts.
fn default_mounts() -> Result<Vec<Mount>, OciSpecError> {
    let mount = |dest: &str, typ: &str, source: &str, options: &[&str]| {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(source)
            .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
            .build()
    };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn spec_json(spec: &BundleSpec) -> Value {
        match spec.to_spec() {
            Ok(s) => serde_json::to_value(s).unwrap_or_default(),
            Err(e) => panic!("to_spec: {e}"),
        }
    }

    fn base() -> BundleSpec {
        BundleSpec::new(std::env::temp_dir(), vec!["/bin/true".into()])
    }

    #[test]
    fn defaults_are_dockers() {
        let json = spec_json(&base());
        assert_eq!(json["ociVersion"], OCI_VERSION);
        assert_eq!(json["process"]["terminal"], false);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["process"]["env"][0], DEFAULT_PATH);
        assert_eq!(json["root"]["readonly"], false);
        let caps = &json["process"]["capabilities"];
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(caps[set].as_array().map(Vec::len), Some(14), "{set}");
        }
        for set in ["inheritable", "ambient"] {
            assert_eq!(caps[set].as_array().map(Vec::len), Some(0), "{set}");
        }
        let ns: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount"]);
        assert_eq!(
            json["linux"]["maskedPaths"].as_array().map(Vec::len),
            Some(11)
        );
        assert_eq!(
            json["linux"]["readonlyPaths"].as_array().map(Vec::len),
            Some(5)
        );
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            json["linux"]["resources"],
            serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]})
        );
        assert!(json["linux"].get("cgroupsPath").is_none());
        let dests: Vec<&str> = json["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["destination"].as_str())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
    }

    #[test]
    fn network_none_adds_a_namespace_and_binds_are_appended() {
        let mut spec = base();
        spec.network = Network::None;
        spec.readonly_rootfs = true;
        spec.hostname = Some("app-1".into());
        spec.mounts
            .push(BindMount::new(std::env::temp_dir(), "/data", true));
        spec.seccomp = SeccompPolicy::Unconfined;
        let json = spec_json(&spec);
        assert_eq!(json["linux"]["namespaces"][4]["type"], "network");
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["hostname"], "app-1");
        assert!(json["linux"].get("seccomp").is_none());
        let last = &json["mounts"][7];
        assert_eq!(last["destination"], "/data");
        assert_eq!(last["type"], "bind");
        assert_eq!(
            last["options"],
            serde_json::json!(["rbind", "rprivate", "ro"])
        );
    }

    #[test]
    fn invalid_inputs_say_what_was_expected() {
        let mut spec = base();
        spec.rootfs = "rootfs".into();
        assert!(matches!(
            spec.to_spec(),
            Err(BundleError::RootfsNotAbsolute { .. })
        ));

        let mut spec = base();
        spec.rootfs = "/nonexistent/confidant/rootfs".into();
        let err = spec
            .to_spec()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("expected a directory"), "{err}");

        let mut spec = base();
        spec.args.clear();
        assert!(matches!(spec.to_spec(), Err(BundleError::EmptyArgs)));

        let mut spec = base();
        spec.env = vec!["A=1".into(), "=oops".into()];
        let err = spec
            .to_spec()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("entry 1") && err.contains("\"=oops\""),
            "{err}"
        );

        let mut spec = base();
        spec.env = vec!["NOEQUALS".into()];
        assert!(matches!(
            spec.to_spec(),
            Err(BundleError::InvalidEnv { index: 0, .. })
        ));

        let mut spec = base();
        spec.cwd = "work".into();
        assert!(matches!(
            spec.to_spec(),
            Err(BundleError::NotAbsolute { what: "cwd", .. })
        ));

        let mut spec = base();
        spec.mounts
            .push(BindMount::new("/nonexistent/src", "/dst", false));
        assert!(matches!(
            spec.to_spec(),
            Err(BundleError::MountSourceMissing { .. })
        ));

        let mut spec = base();
        spec.hostname = Some("bad host".into());
        assert!(matches!(
            spec.to_spec(),
            Err(BundleError::InvalidHostname { .. })
        ));
    }

    #[test]
    fn write_temp_is_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let bundle = base()
            .write_temp(parent.path())
            .unwrap_or_else(|e| panic!("write_temp: {e}"));
        let dir = bundle.path().to_owned();
        let text = fs::read_to_string(dir.join("config.json")).unwrap_or_default();
        assert!(text.contains("\"ociVersion\""));
        drop(bundle);
        assert!(!dir.exists());
    }
}
