//! The default seccomp profile: an allowlist of system calls, modelled on Docker's.
//!
//! The design follows moby's `profiles/seccomp/default.json`: every system call not named here
//! fails with `EPERM` (`SCMP_ACT_ERRNO`, `errnoRet` 1); a large unconditional allowlist covers what
//! ordinary programs use; a few calls are allowed only with particular arguments; and some groups
//! are allowed only when the container holds the capability that the kernel would require anyway
//! (so a container without `CAP_SYS_ADMIN` cannot even reach the `mount`, `unshare` or `bpf` code
//! paths of the host kernel, which is where most container escapes have been found).
//!
//! What is expressed here, for a container without `CAP_SYS_ADMIN` (the default):
//! - `clone` only without namespace flags (`CLONE_NEWNS`, `CLONE_NEWUTS`, `CLONE_NEWIPC`,
//!   `CLONE_NEWUSER`, `CLONE_NEWPID`, `CLONE_NEWNET`, `CLONE_NEWCGROUP`), checked on argument 0
//!   (the `clone` argument order of x86 and arm);
//! - `clone3` fails with `ENOSYS` (its flags live in a struct seccomp cannot inspect), so that libc
//!   falls back to `clone`;
//! - `unshare`, `setns`, `mount`, `umount2`, the new mount API, `bpf`, `perf_event_open`, ... are
//!   refused;
//! - `socket` for every address family except `AF_ALG` (38, the kernel crypto API) and `AF_VSOCK`
//!   (40, the VM sockets of the pod VM's agent channel);
//! - `personality` only for `PER_LINUX`, `PER_LINUX32`, `UNAME26`, `PER_LINUX32|UNAME26` and the
//!   query `0xffffffff`.
//!
//! Capability-gated groups (`CAP_SYS_ADMIN`, `CAP_SYS_PTRACE`, `CAP_SYS_TIME`, `CAP_SYS_MODULE`,
//! ...) are included exactly when [`default_profile`] is given that capability, like moby does.
//!
//! Left out compared to moby:
//! - architectures other than x86-64 (with its x86 and x32 sub-architectures) and aarch64 (with
//!   32-bit arm): on other hosts the profile is written for the native architecture only, with
//!   the unconditional allowlist and no architecture-specific calls;
//! - moby's kernel-version conditions: `ptrace`, `process_vm_readv` and `process_vm_writev` are
//!   allowed unconditionally (moby allows them from kernel 4.8 on, where `ptrace` can no longer
//!   bypass seccomp), so this profile assumes a kernel of 4.8 or later;
//! - the s390 `clone` argument order.
//!
//! As in moby, `socketcall` (32-bit x86's multiplexer for `socket`) is allowed unconditionally,
//! so the `AF_ALG`/`AF_VSOCK` rule does not hold for 32-bit x86 binaries. System call names that
//! the runtime's libseccomp does not know (newer calls) are skipped by runc; the kernel then
//! refuses them (runc answers unknown newer calls with `ENOSYS`, so libc falls back).

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// `EPERM`: what a refused system call returns (the default action's `errnoRet`).
pub const EPERM: u32 = 1;

/// `ENOSYS`: what `clone3` returns without `CAP_SYS_ADMIN`, so that libc falls back to `clone`.
pub const ENOSYS: u32 = 38;

/// The namespace flags `clone` may not carry without `CAP_SYS_ADMIN`: `CLONE_NEWNS` (0x20000),
/// `CLONE_NEWCGROUP` (0x2000000), `CLONE_NEWUTS` (0x4000000), `CLONE_NEWIPC` (0x8000000),
/// `CLONE_NEWUSER` (0x10000000), `CLONE_NEWPID` (0x20000000) and `CLONE_NEWNET` (0x40000000).
pub const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// `AF_ALG`, the kernel crypto API socket family (refused).
const AF_ALG: u64 = 38;
/// `AF_VSOCK`, the VM socket family (refused; it is the agent's channel to the host).
const AF_VSOCK: u64 = 40;

/// The `personality(2)` values allowed: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32 | UNAME26`, and `0xffffffff` (query the current persona).
const PERSONALITY_VALUES: [u64; 5] = [0x0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// System calls allowed to every container, whatever its capabilities and arguments.
///
/// Names unknown on an architecture (the `*32` and `*64` variants, the `_time64` calls of 32-bit
/// architectures) are ignored there. Absent on purpose: `acct`, `add_key`, `bpf`, `clock_settime`,
/// `clone3`, `create_module`, `delete_module`, `finit_module`, `get_kernel_syms`,
/// `get_mempolicy`, `init_module`, `ioperm`, `iopl`, `kcmp`, `kexec_file_load`, `kexec_load`,
/// `keyctl`, `lookup_dcookie`, `mbind`, `mount`, `move_pages`, `name_to_handle_at` (allowed;
/// its counterpart `open_by_handle_at` is not), `nfsservctl`, `open_by_handle_at`,
/// `perf_event_open`, `pivot_root`, `query_module`, `quotactl`, `reboot`, `request_key`,
/// `set_mempolicy`, `setdomainname`, `sethostname`, `setns`, `settimeofday`, `stime`, `swapon`,
/// `swapoff`, `sysfs`, `_sysctl`, `umount`, `umount2`, `unshare`, `uselib`, `userfaultfd`,
/// `ustat`, `vm86`, `vm86old`.
#[rustfmt::skip]
pub const ALLOWED_SYSCALLS: &[&str] = &[
    // Files, directories, descriptors.
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range",
    "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
    "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
    "fcntl", "fcntl64", "fdatasync", "flock", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents",
    "getdents64", "lchown", "lchown32", "link", "linkat", "_llseek", "lseek", "lstat", "lstat64",
    "mkdir", "mkdirat", "mknod", "mknodat", "name_to_handle_at", "newfstatat", "open", "openat",
    "openat2", "pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "rename", "renameat", "renameat2", "rmdir",
    "sendfile", "sendfile64", "splice", "stat", "stat64", "statfs", "statfs64", "statx",
    "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64",
    "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vmsplice",
    "write", "writev", "cachestat", "listmount", "statmount",
    // Extended attributes.
    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "getxattrat",
    "lgetxattr", "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lsetxattr",
    "removexattr", "removexattrat", "setxattr", "setxattrat",
    // Polling, events, notifications.
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "_newselect", "pipe", "pipe2", "poll",
    "ppoll", "ppoll_time64", "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64",
    // Asynchronous I/O (not io_uring, which moby's profile also leaves out).
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_setup", "io_submit", "ioprio_get", "ioprio_set",
    // Memory.
    "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore",
    "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap", "mseal", "msync",
    "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "remap_file_pages",
    // Processes, threads, credentials, scheduling.
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "getcpu", "getegid",
    "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getresgid", "getresgid32",
    "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid",
    "get_thread_area", "gettid", "getuid", "getuid32", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "pidfd_open", "pidfd_send_signal",
    "prctl", "prlimit64", "process_mrelease", "ptrace", "process_vm_readv", "process_vm_writev",
    "rseq", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "setfsgid", "setfsgid32", "setfsuid",
    "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setpgid", "setpriority",
    "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
    "setreuid32", "setrlimit", "set_robust_list", "setsid", "set_thread_area", "set_tid_address",
    "setuid", "setuid32", "ugetrlimit", "uretprobe", "vfork", "wait4", "waitid", "waitpid",
    // Signals.
    "alarm", "kill", "pause", "restart_syscall", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sigaltstack", "sigprocmask", "sigreturn",
    "tgkill", "tkill",
    // Futexes.
    "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
    // Time and timers (reading; setting the clock needs CAP_SYS_TIME).
    "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
    "getitimer", "gettimeofday", "nanosleep", "setitimer", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "times",
    // Networking (socket itself is argument-filtered below).
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
    "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg",
    "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
    // System V and POSIX IPC (inside the container's IPC namespace).
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt",
    "shmget",
    // Miscellaneous.
    "getrandom", "ioctl", "riscv_hwprobe", "sysinfo", "uname",
];

/// x86-64 and x32 only: `arch_prctl` (thread-local storage setup).
const X86_64_ONLY: &[&str] = &["arch_prctl"];

/// x86 family only: `modify_ldt`.
const X86_ONLY: &[&str] = &["modify_ldt"];

/// arm and aarch64 only.
const ARM_ONLY: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];

/// What `CAP_SYS_ADMIN` unlocks (namespaces, mounts, BPF, tracing).
const SYS_ADMIN: &[&str] = &[
    "bpf",
    "clone",
    "clone3",
    "fanotify_init",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "lookup_dcookie",
    "lsm_get_self_attr",
    "lsm_list_modules",
    "lsm_set_self_attr",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "perf_event_open",
    "quotactl",
    "quotactl_fd",
    "setdomainname",
    "sethostname",
    "setns",
    "syslog",
    "umount",
    "umount2",
    "unshare",
];

/// Groups allowed only with a capability (besides `CAP_SYS_ADMIN`, handled apart because it also
/// changes the `clone` rules).
const CAPABILITY_GATED: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "init_module", "finit_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (
        Capability::SysTime,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// The architectures the filter is compiled for on this host: x86-64 with x86 and x32, or
/// aarch64 with arm; `None` (native only) elsewhere.
pub fn host_architectures() -> Option<Vec<Arch>> {
    match std::env::consts::ARCH {
        "x86_64" => Some(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ]),
        "aarch64" => Some(vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]),
        _ => None,
    }
}

/// The default profile for a container holding `capabilities` (its bounding set), for this host's
/// architecture: default action `SCMP_ACT_ERRNO` with `EPERM`, and the allowlist described in the
/// module documentation.
///
/// Fails only if oci-spec refuses one of the values (it does not for these).
pub fn default_profile(capabilities: &[Capability]) -> Result<LinuxSeccomp, OciSpecError> {
    let has = |cap: Capability| capabilities.contains(&cap);
    let mut rules = vec![allow(ALLOWED_SYSCALLS)];

    match std::env::consts::ARCH {
        "x86_64" => {
            rules.push(allow(X86_64_ONLY));
            rules.push(allow(X86_ONLY));
        }
        "x86" => rules.push(allow(X86_ONLY)),
        "aarch64" | "arm" => rules.push(allow(ARM_ONLY)),
        _ => {}
    }

    // socket(2): every family below AF_ALG, the one between AF_ALG and AF_VSOCK, and every one
    // above AF_VSOCK. Each rule is one comparison: seccomp ORs rules and ANDs a rule's arguments.
    rules.push(allow_if(
        "socket",
        0,
        AF_ALG,
        LinuxSeccompOperator::ScmpCmpLt,
    )?);
    rules.push(allow_if(
        "socket",
        0,
        AF_ALG + 1,
        LinuxSeccompOperator::ScmpCmpEq,
    )?);
    rules.push(allow_if(
        "socket",
        0,
        AF_VSOCK,
        LinuxSeccompOperator::ScmpCmpGt,
    )?);

    for value in PERSONALITY_VALUES {
        rules.push(allow_if(
            "personality",
            0,
            value,
            LinuxSeccompOperator::ScmpCmpEq,
        )?);
    }

    if has(Capability::SysAdmin) {
        rules.push(allow(SYS_ADMIN));
    } else {
        // (args[0] & CLONE_NAMESPACE_FLAGS) == 0
        let mask = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(CLONE_NAMESPACE_FLAGS)
            .value_two(0u64)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()?;
        let mut clone = allow(&["clone"]);
        clone.set_args(Some(vec![mask]));
        rules.push(clone);

        let mut clone3 = syscall_rule(&["clone3"], LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(ENOSYS));
        rules.push(clone3);
    }

    for (cap, names) in CAPABILITY_GATED {
        if has(*cap) {
            rules.push(allow(names));
        }
    }

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(EPERM))
        .set_architectures(host_architectures())
        .set_syscalls(Some(rules));
    Ok(profile)
}

fn syscall_rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.iter().map(|n| (*n).to_owned()).collect())
        .set_action(action);
    rule
}

fn allow(names: &[&str]) -> LinuxSyscall {
    syscall_rule(names, LinuxSeccompAction::ScmpActAllow)
}

fn allow_if(
    name: &str,
    index: usize,
    value: u64,
    op: LinuxSeccompOperator,
) -> Result<LinuxSyscall, OciSpecError> {
    let arg: LinuxSeccompArg = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()?;
    let mut rule = allow(&[name]);
    rule.set_args(Some(vec![arg]));
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn profile(caps: &[Capability]) -> LinuxSeccomp {
        default_profile(caps).unwrap()
    }

    fn names(profile: &LinuxSeccomp) -> Vec<(String, LinuxSeccompAction, bool)> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|rule| {
                rule.names()
                    .iter()
                    .map(|n| (n.clone(), rule.action(), rule.args().is_some()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn allowlist_has_no_duplicates_and_no_dangerous_calls() {
        let mut seen = HashSet::new();
        for name in ALLOWED_SYSCALLS {
            assert!(seen.insert(*name), "{name} listed twice");
        }
        for refused in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "bpf",
            "keyctl",
            "add_key",
            "kexec_load",
            "init_module",
            "reboot",
            "swapon",
            "swapoff",
            "pivot_root",
            "chroot",
            "personality",
            "socket",
            "open_by_handle_at",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
        ] {
            assert!(
                !seen.contains(refused),
                "{refused} must not be unconditional"
            );
        }
    }

    #[test]
    fn default_action_is_eperm() {
        let p = profile(&[]);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(EPERM));
    }

    #[test]
    fn without_sys_admin_clone_is_filtered_and_clone3_is_enosys() {
        let p = profile(&[Capability::Chown, Capability::SysChroot]);
        let all = names(&p);
        assert!(all.contains(&("clone".into(), LinuxSeccompAction::ScmpActAllow, true)));
        assert!(!all.contains(&("clone".into(), LinuxSeccompAction::ScmpActAllow, false)));
        assert!(!all.iter().any(|(n, _, _)| n == "unshare" || n == "mount"));
        assert!(all.contains(&("chroot".into(), LinuxSeccompAction::ScmpActAllow, false)));
        let clone3 = p
            .syscalls()
            .iter()
            .flatten()
            .find(|r| r.names().iter().any(|n| n == "clone3"));
        assert_eq!(clone3.and_then(|r| r.errno_ret()), Some(ENOSYS));
        let clone = p
            .syscalls()
            .iter()
            .flatten()
            .find(|r| r.names().iter().any(|n| n == "clone"));
        let arg = clone
            .and_then(|r| r.args().as_ref())
            .and_then(|a| a.first().copied());
        assert_eq!(arg.map(|a| a.value()), Some(CLONE_NAMESPACE_FLAGS));
        assert_eq!(arg.and_then(|a| a.value_two()), Some(0));
        assert_eq!(
            arg.map(|a| a.op()),
            Some(LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
    }

    #[test]
    fn sys_admin_unlocks_namespaces() {
        let p = profile(&[Capability::SysAdmin]);
        let all = names(&p);
        assert!(all.contains(&("unshare".into(), LinuxSeccompAction::ScmpActAllow, false)));
        assert!(all.contains(&("clone".into(), LinuxSeccompAction::ScmpActAllow, false)));
        assert!(
            !all.iter()
                .any(|(n, a, _)| n == "clone3" && *a != LinuxSeccompAction::ScmpActAllow)
        );
        assert!(!all.iter().any(|(n, _, _)| n == "chroot"));
    }

    #[test]
    fn serializes_like_the_runtime_spec() {
        let json = serde_json::to_value(profile(&[])).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                json["architectures"],
                serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
            );
        }
        let socket_rule = json["syscalls"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["names"][0] == "socket"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(socket_rule["args"][0]["op"], "SCMP_CMP_LT");
        assert_eq!(socket_rule["args"][0]["value"], 38);
    }
}
