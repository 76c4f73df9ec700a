//! The OCI runtime bundle and its runner: how the agent runs the unmodified app image.
//!
//! The agent unpacks the image into a memory-backed rootfs, then
//! 1. describes the container with a [`BundleSpec`] and writes it as an OCI runtime bundle
//!    (`config.json`, [`BundleSpec::write`] or [`BundleSpec::write_temp`]), and
//! 2. runs it in the foreground with runc or another OCI runtime ([`Runtime::run`]), passing the
//!    exit code through and always deleting the container. SIGINT, SIGTERM and SIGHUP received
//!    by the agent go to the container's init with `runtime kill`, never to the runtime's own
//!    process; SIGTERM and SIGINT are stop requests (SIGTERM arrives as the image's
//!    `StopSignal`), and a container still running [`RunOptions::stop_timeout`] after the first
//!    one is killed with SIGKILL, as `docker stop` does.
//!
//! # What the container isolation does
//!
//! The defaults are Docker's, so an image behaves as under `docker run`:
//! - **Namespaces**: its own PID, IPC, UTS and mount namespaces; the network namespace is the
//!   agent's ([`Network::Host`], the bundle's default), a new empty one ([`Network::None`]) or
//!   one the agent made and joins by path ([`Network::Join`]: what `confidant run` uses, so the
//!   mesh proxy reaches the app on 127.0.0.1 inside it and nothing else on the machine does).
//!   No user namespace: uid 0 in the container is uid 0 of the (pod VM's) kernel, held back by
//!   the measures below.
//! - **Capabilities**: Docker's 14 ([`DOCKER_DEFAULT_CAPABILITIES`]), in the bounding, effective
//!   and permitted sets only; a non-root user ends up with none effective. `noNewPrivileges` is
//!   set, so setuid binaries and file capabilities cannot raise them.
//! - **Seccomp**: an allowlist modelled on Docker's ([`seccomp`]); everything else fails with
//!   `EPERM`. Without `CAP_SYS_ADMIN`, `mount`, `unshare`, `setns`, namespace flags to `clone`,
//!   `bpf`, `keyctl`, `AF_VSOCK` sockets and others are refused.
//! - **File system**: the image's rootfs (optionally read-only), a fresh `/dev` with only the
//!   runtime's default devices (and a deny-all devices cgroup rule, so a `mknod`ed disk cannot be
//!   opened), `/sys` and `/sys/fs/cgroup` read-only, Docker's masked paths (`/proc/kcore`,
//!   `/proc/keys`, `/sys/firmware`, ...) and read-only paths (`/proc/sys`,
//!   `/proc/sysrq-trigger`, ...), plus the agent's bind mounts (rendered files, volumes).
//! - **Not set**: resource limits (`linux.resources` holds only the devices rule: this sandbox's
//!   cgroup controllers are limited), AppArmor/SELinux profiles, rlimits (inherited from the
//!   agent), `/etc/hosts` and `/etc/resolv.conf` (the agent adds them as bind mounts if wanted).
//!
//! # What it does NOT protect
//!
//! This is a container on the host kernel: it separates the app from the agent (which holds the
//! workload's keys and attestation evidence) and limits what a compromised app can reach of the
//! kernel, and nothing more.
//! - **The host sees everything.** Root on the machine running the container (and the kernel
//!   itself) can read the rootfs, the app's memory (`/proc/PID/mem`, ptrace, `/proc/kcore` on the
//!   host side), its environment and its bind-mounted secrets. The memory-backed rootfs keeps the
//!   decrypted image off disk, not away from the host.
//! - **The TEE boundary is the pod VM, not the container.** On real hardware the agent and the
//!   container run inside a Kata/Confidential Containers pod VM whose memory is encrypted and
//!   attested (SEV-SNP, TDX); the host is outside that boundary. On this machine there is no such
//!   VM: the "TEE" is simulated, and the host's root is fully trusted by construction.
//! - **Kernel bugs** reachable through the allowed system calls are container escapes; seccomp and
//!   the capability set shrink that surface, they do not remove it.
//! - **Host network**: with [`Network::Host`] the app shares the agent's network namespace and can
//!   reach every port the agent listens on, including its local endpoints; the agent must not
//!   expose secrets on loopback without authentication.
//! - **Denial of service**: without resource limits the app can exhaust memory, CPU and PIDs of the
//!   machine (in a pod VM, of the VM).

mod bundle;
mod runner;
pub mod seccomp;
mod signals;
mod stop;

pub use bundle::{
    BindMount, Bundle, BundleError, BundleSpec, DEFAULT_PATH, DOCKER_DEFAULT_CAPABILITIES,
    MASKED_PATHS, Network, OCI_VERSION, READONLY_PATHS, SeccompPolicy, User,
};
pub use oci_spec::runtime::{Capability, ContainerState, State};
pub use runner::{
    ContainerExit, DEFAULT_STOP_TIMEOUT, MAX_ID_LEN, RunError, RunOptions, Runtime,
    STATE_DIR_PREFIX,
};
pub use signals::parse_signal;

/// Takes over SIGINT, SIGTERM and SIGHUP for the whole process: delivered to a running
/// container (see [`RunOptions::forward_signals`]), otherwise recorded for [`received_signal`]
/// instead of ending the process (an agent must unmount and wipe before it exits). Once one was
/// received, a container started afterwards is stopped as soon as it runs: a signal that
/// arrives between the caller's last check of [`received_signal`] and the start of the
/// container is not lost.
pub fn hold_signals() -> Result<(), RunError> {
    signals::hold().map_err(RunError::Signals)
}

/// The last of SIGINT, SIGTERM, SIGHUP received, if any.
pub fn received_signal() -> Option<i32> {
    signals::received()
}
