//! Forwarding SIGINT, SIGTERM and SIGHUP received by the agent to the running OCI runtimes.
//!
//! One process-wide thread (started on the first forwarded run) receives the three signals through
//! `signal-hook` and sends each one to every runtime process currently registered, through a pidfd
//! (so a reaped and reused pid can never be hit). While no runtime is registered, a signal gets
//! its default action (the agent terminates), as if no handler were installed. SIGTERM, the
//! request to stop, is delivered as the image's stop signal when one is set (`StopSignal` in the
//! image config, like `docker stop`); see [`parse_signal`].

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The signals forwarded.
pub(crate) const FORWARDED: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

#[derive(Default)]
struct Slot {
    /// The runtime's pidfd, once spawned.
    pidfd: Option<OwnedFd>,
    /// Signals received before the runtime was spawned (already translated).
    pending: Vec<i32>,
    /// What SIGTERM is delivered as (the image's stop signal), if not SIGTERM.
    stop_signal: Option<i32>,
}

#[derive(Default)]
struct Registry {
    slots: Mutex<HashMap<u64, Slot>>,
    next: AtomicU64,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is used as is.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, signal: i32) {
        RECEIVED.store(signal, Ordering::SeqCst);
        let mut slots = self.lock();
        if slots.is_empty() {
            drop(slots);
            // Nothing to forward to: behave as if no handler were installed, unless the
            // process asked to stop by itself ([`hold`]).
            if !HOLD.load(Ordering::SeqCst) {
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
            return;
        }
        for slot in slots.values_mut() {
            let signal = match slot.stop_signal {
                Some(stop) if signal == SIGTERM => stop,
                _ => signal,
            };
            match &slot.pidfd {
                Some(fd) => send(fd, signal),
                None => slot.pending.push(signal),
            }
        }
    }
}

fn send(pidfd: &OwnedFd, signal: i32) {
    if let Some(sig) = Signal::from_named_raw(signal) {
        // ESRCH: the runtime has exited already; nothing to do.
        let _ = pidfd_send_signal(pidfd, sig);
    }
}

static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();

/// Set by [`hold`]: a signal while no runtime runs is recorded, not fatal.
static HOLD: AtomicBool = AtomicBool::new(false);
/// The last forwarded signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Takes over SIGINT, SIGTERM and SIGHUP for the whole process: while a runtime runs they are
/// forwarded to it; otherwise they are only recorded ([`received`]), so the caller can stop at
/// its next step and clean up instead of dying with mounts and keys in place.
pub(crate) fn hold() -> Result<(), String> {
    registry()?;
    HOLD.store(true, Ordering::SeqCst);
    Ok(())
}

/// The last of SIGINT, SIGTERM, SIGHUP received since [`hold`] (or the first run), if any.
pub(crate) fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

fn registry() -> Result<&'static Registry, String> {
    REGISTRY
        .get_or_init(|| {
            let mut signals = Signals::new(FORWARDED).map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("confidant-signal-forwarder".into())
                .spawn(move || {
                    for signal in signals.forever() {
                        if let Some(Ok(registry)) = REGISTRY.get() {
                            registry.deliver(signal);
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(Registry::default())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A registration: signals received while it lives go to its runtime process. Unregisters on
/// drop.
pub(crate) struct Forwarding {
    registry: &'static Registry,
    token: u64,
}

impl Forwarding {
    /// Registers a runtime that is about to be spawned (signals received until
    /// [`Forwarding::attach`] are queued for it). SIGTERM is delivered as `stop_signal` if given.
    pub(crate) fn register(stop_signal: Option<i32>) -> Result<Self, String> {
        let registry = registry()?;
        let token = registry.next.fetch_add(1, Ordering::Relaxed);
        registry.lock().insert(
            token,
            Slot {
                stop_signal,
                ..Slot::default()
            },
        );
        Ok(Self { registry, token })
    }

    /// Attaches the spawned runtime process and delivers the signals queued meanwhile.
    pub(crate) fn attach(&self, child: &std::process::Child) -> std::io::Result<()> {
        let fd = pidfd_open(Pid::from_child(child), PidfdFlags::empty())?;
        let mut slots = self.registry.lock();
        if let Some(slot) = slots.get_mut(&self.token) {
            for signal in slot.pending.drain(..) {
                send(&fd, signal);
            }
            slot.pidfd = Some(fd);
        }
        Ok(())
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.token);
    }
}

/// Signal names as image configs write them (`StopSignal`), without the `SIG` prefix.
const NAMES: &[(&str, i32)] = {
    use signal_hook::consts::signal::*;
    &[
        ("HUP", SIGHUP),
        ("INT", SIGINT),
        ("QUIT", SIGQUIT),
        ("ILL", SIGILL),
        ("TRAP", SIGTRAP),
        ("ABRT", SIGABRT),
        ("IOT", SIGABRT),
        ("BUS", SIGBUS),
        ("FPE", SIGFPE),
        ("KILL", SIGKILL),
        ("USR1", SIGUSR1),
        ("SEGV", SIGSEGV),
        ("USR2", SIGUSR2),
        ("PIPE", SIGPIPE),
        ("ALRM", SIGALRM),
        ("TERM", SIGTERM),
        ("CHLD", SIGCHLD),
        ("CONT", SIGCONT),
        ("STOP", SIGSTOP),
        ("TSTP", SIGTSTP),
        ("TTIN", SIGTTIN),
        ("TTOU", SIGTTOU),
        ("URG", SIGURG),
        ("XCPU", SIGXCPU),
        ("XFSZ", SIGXFSZ),
        ("VTALRM", SIGVTALRM),
        ("PROF", SIGPROF),
        ("WINCH", SIGWINCH),
        ("IO", SIGIO),
        ("POLL", SIGIO),
        ("SYS", SIGSYS),
    ]
};

/// Parses a signal the way an image config's `StopSignal` names it, as Docker does: a name with
/// or without `SIG` in any case (`SIGQUIT`, `quit`) or a number (`3`). Real-time signals
/// (`SIGRTMIN+3`) are refused: the agent cannot send them.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let number = match name.parse::<i32>() {
        Ok(n) => Some(n),
        Err(_) => NAMES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s),
    };
    number
        .filter(|&n| Signal::from_named_raw(n).is_some())
        .ok_or_else(|| {
            format!(
                "expected a signal name or number such as SIGQUIT or 3, found {text:?}{}",
                if name.starts_with("RT") {
                    " (real-time signals are not supported)"
                } else {
                    ""
                }
            )
        })
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn stop_signals_as_images_write_them() {
        assert_eq!(parse_signal("SIGQUIT"), Ok(3));
        assert_eq!(parse_signal("quit"), Ok(3));
        assert_eq!(parse_signal("SigTerm"), Ok(15));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal(" SIGWINCH "), Ok(28));
        for bad in [
            "",
            "SIG",
            "SIGFOO",
            "0",
            "-1",
            "65",
            "99999999999",
            "SIGRTMIN+3",
        ] {
            let e = parse_signal(bad).unwrap_err();
            assert!(e.contains("expected a signal name or number"), "{bad}: {e}");
        }
        assert!(
            parse_signal("SIGRTMIN+3")
                .unwrap_err()
                .contains("real-time")
        );
    }
}
