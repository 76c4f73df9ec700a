//! Receiving SIGINT, SIGTERM and SIGHUP for the whole agent and routing them to the runs in
//! progress.
//!
//! One process-wide thread (started on the first forwarded run, or by [`hold`]) receives the
//! three signals through `signal-hook` and records each one in the [`Inbox`] of every registered
//! run ([`Forwarding`]). The run's stopper ([`super::stop`]) then delivers it to the container's
//! init with `runtime kill ID SIGNAL`; nothing is ever sent to the runtime's own process (which
//! would only stop or end `runc run`, not the app). What a received signal becomes
//! ([`delivery`]):
//!
//! - **SIGTERM** is a stop request, as `docker stop`: the container's init receives the image's
//!   stop signal (`StopSignal` in the image config, SIGTERM when unset; see [`parse_signal`]), and
//!   the grace period starts, after which a container still running is killed with SIGKILL.
//! - **SIGINT** (Ctrl-C on the agent's terminal) is a stop request too: the container's init
//!   receives SIGINT itself, as `docker run` passes Ctrl-C on, and the same grace period starts,
//!   so that Ctrl-C always ends the run, also for an app that ignores SIGINT (an init process
//!   without a handler does).
//! - **SIGHUP** is passed on as is (many daemons reload on it) and starts no grace period.
//!
//! While no run is registered, a signal gets its default action (the agent terminates), as if no
//! handler were installed, unless the process called [`hold`]: then it is only recorded
//! ([`received`]), and a run registered afterwards is stopped as soon as its container runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The signals received and routed to the runs.
pub(crate) const FORWARDED: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// What a received signal asks of a run's container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// The signal the container's init receives.
    pub(crate) signal: i32,
    /// Whether it is a stop request: the grace period starts, and the container is killed when
    /// it ends.
    pub(crate) stop: bool,
}

/// What `received` becomes for a run whose image's stop signal is `stop_signal` (see the module
/// documentation).
pub(crate) fn delivery(received: i32, stop_signal: i32) -> Delivery {
    match received {
        SIGTERM => Delivery {
            signal: stop_signal,
            stop: true,
        },
        SIGINT => Delivery {
            signal: SIGINT,
            stop: true,
        },
        signal => Delivery {
            signal,
            stop: false,
        },
    }
}

/// A run's requests: recorded by the forwarder thread, taken by the run's stopper.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// Signals for the container's init, in the order received, not delivered yet.
    pub(crate) pending: Vec<i32>,
    /// When the first stop request arrived: the grace period runs from here.
    pub(crate) stop_since: Option<Instant>,
    /// The run has ended (its runtime returned): nothing more is delivered.
    pub(crate) ended: bool,
}

impl Requests {
    fn record(&mut self, delivery: Delivery, now: Instant) {
        if self.ended {
            return;
        }
        self.pending.push(delivery.signal);
        if delivery.stop && self.stop_since.is_none() {
            self.stop_since = Some(now);
        }
    }
}

/// One run's [`Requests`] and the condition its stopper waits on.
#[derive(Debug)]
pub(crate) struct Inbox {
    requests: Mutex<Requests>,
    changed: Condvar,
    stop_signal: i32,
}

impl Inbox {
    /// An empty inbox for a run whose stop requests reach the app as `stop_signal`.
    pub(crate) fn new(stop_signal: i32) -> Self {
        Self {
            requests: Mutex::default(),
            changed: Condvar::new(),
            stop_signal,
        }
    }

    /// Records `signal`, received by the agent, as [`delivery`] translates it.
    pub(crate) fn receive(&self, signal: i32) {
        self.record(delivery(signal, self.stop_signal));
    }

    fn record(&self, delivery: Delivery) {
        self.lock().record(delivery, Instant::now());
        self.changed.notify_all();
    }

    /// Marks the run as ended: its stopper returns.
    pub(crate) fn end(&self) {
        self.lock().ended = true;
        self.changed.notify_all();
    }

    /// The requests, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Requests> {
        // Every change is a single push or assignment: a poisoned lock is still consistent.
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Releases `requests` until something is recorded or `timeout` (`None`: no limit) passes.
    pub(crate) fn wait<'a>(
        &self,
        requests: MutexGuard<'a, Requests>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Requests> {
        match timeout {
            Some(timeout) => {
                self.changed
                    .wait_timeout(requests, timeout)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => self
                .changed
                .wait(requests)
                .unwrap_or_else(|p| p.into_inner()),
        }
    }
}

#[derive(Default)]
struct Registry {
    inboxes: Mutex<HashMap<u64, Arc<Inbox>>>,
    next: AtomicU64,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Inbox>>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is used as is.
        self.inboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, signal: i32) {
        RECEIVED.store(signal, Ordering::SeqCst);
        let inboxes = self.lock();
        if inboxes.is_empty() {
            drop(inboxes);
            // Nothing to forward to: behave as if no handler were installed, unless the
            // process asked to stop by itself ([`hold`]).
            if !HOLD.load(Ordering::SeqCst) {
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
            return;
        }
        for inbox in inboxes.values() {
            inbox.receive(signal);
        }
    }
}

static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();

/// Set by [`hold`]: a signal while no run is registered is recorded, not fatal.
static HOLD: AtomicBool = AtomicBool::new(false);
/// The last forwarded signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Takes over SIGINT, SIGTERM and SIGHUP for the whole process: while a run is registered they
/// are routed to it; otherwise they are only recorded ([`received`]), so the caller can stop at
/// its next step and clean up instead of dying with mounts and keys in place. Once one arrived,
/// a run registered later is stopped as soon as its container runs (the signal is delivered as
/// a stop request), whatever the caller checked before starting it.
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

/// A registered run: signals received while it lives are recorded in its [`Inbox`]. Unregisters
/// and ends the inbox on drop.
pub(crate) struct Forwarding {
    registry: &'static Registry,
    token: u64,
    inbox: Arc<Inbox>,
}

impl Forwarding {
    /// Registers a run about to start, whose stop requests reach the app as `stop_signal`.
    /// Signals are recorded from now on, also before the container exists; its stopper delivers
    /// them once it runs. After [`hold`], a signal that arrived before this registration is
    /// recorded now, as a stop request.
    pub(crate) fn register(stop_signal: i32) -> Result<Self, String> {
        let registry = registry()?;
        let inbox = Arc::new(Inbox::new(stop_signal));
        let token = registry.next.fetch_add(1, Ordering::Relaxed);
        let mut inboxes = registry.lock();
        // Checked under the registry's lock: a signal whose delivery found no run registered
        // has been stored in RECEIVED before, so it is seen here (or, arriving after this
        // point, delivered to this inbox too).
        if HOLD.load(Ordering::SeqCst)
            && let Some(signal) = received()
        {
            inbox.record(Delivery {
                stop: true,
                ..delivery(signal, stop_signal)
            });
        }
        inboxes.insert(token, Arc::clone(&inbox));
        Ok(Self {
            registry,
            token,
            inbox,
        })
    }

    /// The run's inbox, for its stopper.
    pub(crate) fn inbox(&self) -> Arc<Inbox> {
        Arc::clone(&self.inbox)
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.token);
        self.inbox.end();
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
///
/// Any signal is accepted as a stop signal, also one that stops rather than ends a process
/// (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU): it is delivered as asked, and the grace period's
/// SIGKILL ends the app all the same.
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
    use super::*;
    use signal_hook::consts::{SIGQUIT, SIGSTOP, SIGUSR1};

    #[test]
    fn stop_signals_as_images_write_them() {
        assert_eq!(parse_signal("SIGQUIT"), Ok(3));
        assert_eq!(parse_signal("quit"), Ok(3));
        assert_eq!(parse_signal("SigTerm"), Ok(15));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal(" SIGWINCH "), Ok(28));
        assert_eq!(parse_signal("SIGSTOP"), Ok(19));
        assert_eq!(parse_signal("tstp"), Ok(20));
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

    #[test]
    fn sigterm_is_a_stop_request_delivered_as_the_stop_signal() {
        assert_eq!(
            delivery(SIGTERM, SIGQUIT),
            Delivery {
                signal: SIGQUIT,
                stop: true
            }
        );
        assert_eq!(
            delivery(SIGTERM, SIGSTOP),
            Delivery {
                signal: SIGSTOP,
                stop: true
            }
        );
        assert_eq!(
            delivery(SIGTERM, SIGTERM),
            Delivery {
                signal: SIGTERM,
                stop: true
            }
        );
    }

    #[test]
    fn sigint_is_a_stop_request_delivered_as_itself() {
        assert_eq!(
            delivery(SIGINT, SIGQUIT),
            Delivery {
                signal: SIGINT,
                stop: true
            }
        );
    }

    #[test]
    fn other_signals_are_passed_on_without_a_grace_period() {
        for signal in [SIGHUP, SIGUSR1] {
            assert_eq!(
                delivery(signal, SIGQUIT),
                Delivery {
                    signal,
                    stop: false
                }
            );
        }
    }

    #[test]
    fn the_grace_period_runs_from_the_first_stop_request() {
        let inbox = Inbox::new(SIGQUIT);
        inbox.receive(SIGHUP);
        assert_eq!(inbox.lock().stop_since, None);
        inbox.receive(SIGTERM);
        let first = inbox.lock().stop_since.expect("a stop request");
        inbox.receive(SIGINT);
        let requests = inbox.lock();
        assert_eq!(requests.stop_since, Some(first));
        assert_eq!(requests.pending, [SIGHUP, SIGQUIT, SIGINT]);
    }

    #[test]
    fn an_ended_run_records_nothing() {
        let inbox = Inbox::new(SIGTERM);
        inbox.end();
        inbox.receive(SIGTERM);
        let requests = inbox.lock();
        assert!(requests.ended);
        assert!(requests.pending.is_empty());
        assert_eq!(requests.stop_since, None);
    }
}
