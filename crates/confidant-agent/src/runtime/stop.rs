//! A run's stopper: delivers the signals recorded in the run's [`Inbox`] to the container's init
//! through the OCI runtime, and kills the container when a stop request is not over within the
//! grace period, as `docker stop` does.
//!
//! Each run with forwarded signals has one stopper thread, from before the runtime is started
//! until it has returned. It
//! 1. waits for a signal, for the grace period to end, or for the run to end;
//! 2. delivers signals only once the container runs (`runtime state` says `running`): a signal
//!    received while the runtime is still creating it (or before the container exists at all)
//!    stays pending and is delivered as soon as it runs, every [`RETRY`];
//! 3. sends SIGKILL (`runtime kill ID KILL`) when the first stop request is older than the grace
//!    period and the run has not ended. SIGKILL ends a process whatever its state, also one that
//!    the stop signal stopped (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) rather than ended; the end of
//!    the container's init ends every other process of its PID namespace, the runtime returns,
//!    and the runner deletes the container.

use std::time::{Duration, Instant};

use oci_spec::runtime::ContainerState;
use signal_hook::consts::SIGKILL;

use super::runner::{RunError, Runtime};
use super::signals::{Inbox, Requests};

/// How soon a runtime call is repeated when the container is not running yet or the call failed.
pub(crate) const RETRY: Duration = Duration::from_millis(50);

/// The container a stopper acts on: its state and `kill`, through the OCI runtime.
pub(crate) trait Container {
    /// The container's id, for messages.
    fn id(&self) -> &str;
    /// Its status; `None` while it does not exist (not created yet, or deleted).
    fn status(&self) -> Result<Option<ContainerState>, RunError>;
    /// Sends `signal` to its init process.
    fn kill(&self, signal: i32) -> Result<(), RunError>;
}

/// Container `id` of `runtime`.
pub(crate) struct RuntimeContainer<'a> {
    /// The runtime that runs it.
    pub(crate) runtime: &'a Runtime,
    /// Its id.
    pub(crate) id: &'a str,
}

impl Container for RuntimeContainer<'_> {
    fn id(&self) -> &str {
        self.id
    }

    fn status(&self) -> Result<Option<ContainerState>, RunError> {
        match self.runtime.state(self.id) {
            Ok(state) => Ok(Some(*state.status())),
            Err(RunError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn kill(&self, signal: i32) -> Result<(), RunError> {
        self.runtime.kill(self.id, signal)
    }
}

/// What the stopper does next.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The run has ended.
    Return,
    /// Send SIGKILL: the grace period is over.
    Kill,
    /// Deliver the pending signals.
    Deliver,
    /// Wait for a change, at most this long (`None`: no limit).
    Wait(Option<Duration>),
}

/// The next step at `now`, given whether SIGKILL was sent already and until when runtime calls
/// are held back (`retry_at`).
fn next_step(
    requests: &Requests,
    killed: bool,
    grace: Duration,
    retry_at: Option<Instant>,
    now: Instant,
) -> Step {
    if requests.ended {
        return Step::Return;
    }
    // A grace period too long to represent never ends.
    let kill_at = requests
        .stop_since
        .filter(|_| !killed)
        .and_then(|since| since.checked_add(grace));
    let kill_due = kill_at.is_some_and(|at| at <= now);
    let work = kill_due || !requests.pending.is_empty();
    match retry_at.filter(|&at| at > now) {
        Some(at) if work => Step::Wait(Some(at - now)),
        _ if kill_due => Step::Kill,
        _ if !requests.pending.is_empty() => Step::Deliver,
        _ => Step::Wait(kill_at.map(|at| at - now)),
    }
}

/// Serves `inbox` for `container` until the run ends (see the module documentation).
pub(crate) fn serve(inbox: &Inbox, container: &dyn Container, grace: Duration) {
    let id = container.id();
    let mut killed = false;
    let mut running = false;
    let mut retry_at = None;
    // Each kind of failure is reported once, not at every retry.
    let (mut kill_failed, mut status_failed) = (false, false);
    loop {
        let mut requests = inbox.lock();
        let step = loop {
            match next_step(&requests, killed, grace, retry_at, Instant::now()) {
                Step::Wait(timeout) => requests = inbox.wait(requests, timeout),
                step => break step,
            }
        };
        retry_at = None;
        match step {
            // (The inner loop never breaks with `Wait`.)
            Step::Return | Step::Wait(_) => return,
            Step::Kill => {
                drop(requests);
                match container.kill(SIGKILL) {
                    Ok(()) => {
                        killed = true;
                        tracing::warn!(
                            "container {id} did not stop within {} s of the stop request; killed it (SIGKILL)",
                            grace.as_secs_f64()
                        );
                    }
                    // It has exited by itself meanwhile.
                    Err(RunError::NotRunning { .. }) => killed = true,
                    // Not created yet (or deleted after exiting, and the run ends now).
                    Err(RunError::NotFound { .. }) => retry_at = Some(Instant::now() + RETRY),
                    Err(e) => {
                        if !std::mem::replace(&mut kill_failed, true) {
                            tracing::error!("killing container {id} after the grace period: {e}");
                        }
                        retry_at = Some(Instant::now() + RETRY);
                    }
                }
            }
            Step::Deliver => {
                let signals = std::mem::take(&mut requests.pending);
                drop(requests);
                if !running {
                    match container.status() {
                        Ok(Some(ContainerState::Running)) => running = true,
                        // The app has exited: nothing to deliver it to.
                        Ok(Some(ContainerState::Stopped)) => continue,
                        Ok(None | Some(ContainerState::Creating | ContainerState::Created)) => {
                            put_back(inbox, signals);
                            retry_at = Some(Instant::now() + RETRY);
                            continue;
                        }
                        Err(e) => {
                            if !std::mem::replace(&mut status_failed, true) {
                                tracing::error!("the state of container {id}: {e}");
                            }
                            put_back(inbox, signals);
                            retry_at = Some(Instant::now() + RETRY);
                            continue;
                        }
                    }
                }
                for signal in signals {
                    match container.kill(signal) {
                        Ok(()) => tracing::info!("signal {signal} sent to container {id}"),
                        // It has exited: the run ends now.
                        Err(RunError::NotRunning { .. } | RunError::NotFound { .. }) => {}
                        Err(e) => tracing::error!("signal {signal} to container {id}: {e}"),
                    }
                }
            }
        }
    }
}

/// Returns undelivered `signals` to the front of the inbox (before any received meanwhile).
fn put_back(inbox: &Inbox, signals: Vec<i32>) {
    let mut requests = inbox.lock();
    requests.pending.splice(0..0, signals);
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGSTOP, SIGTERM};

    use super::*;

    /// A container whose statuses are scripted (the last one repeats) and whose kills are
    /// recorded; SIGKILL makes it `stopped`, as the kernel does.
    struct Fake {
        statuses: Mutex<VecDeque<Option<ContainerState>>>,
        kills: Mutex<Vec<i32>>,
        /// `kill` answers "does not exist" this many times first.
        missing_kills: Mutex<usize>,
    }

    impl Fake {
        fn new(statuses: &[Option<ContainerState>]) -> Self {
            Self {
                statuses: Mutex::new(statuses.iter().copied().collect()),
                kills: Mutex::default(),
                missing_kills: Mutex::new(0),
            }
        }

        fn kills(&self) -> Vec<i32> {
            self.kills.lock().unwrap().clone()
        }
    }

    impl Container for Fake {
        fn id(&self) -> &str {
            "fake"
        }

        fn status(&self) -> Result<Option<ContainerState>, RunError> {
            let mut statuses = self.statuses.lock().unwrap();
            Ok(if statuses.len() > 1 {
                statuses.pop_front().unwrap()
            } else {
                statuses[0]
            })
        }

        fn kill(&self, signal: i32) -> Result<(), RunError> {
            let mut missing = self.missing_kills.lock().unwrap();
            if *missing > 0 {
                *missing -= 1;
                return Err(RunError::NotFound { id: "fake".into() });
            }
            self.kills.lock().unwrap().push(signal);
            if signal == SIGKILL {
                *self.statuses.lock().unwrap() = [Some(ContainerState::Stopped)].into();
            }
            Ok(())
        }
    }

    /// Runs a stopper for `fake` while `act` runs, then ends the run and waits for the stopper.
    fn serving(fake: &Fake, inbox: &Inbox, grace: Duration, act: impl FnOnce()) {
        std::thread::scope(|scope| {
            let stopper = scope.spawn(|| serve(inbox, fake, grace));
            act();
            inbox.end();
            stopper.join().unwrap();
        });
    }

    /// Waits (up to a minute: only a hung stopper takes that long) until `fake` has received
    /// `kills`.
    fn until_killed_with(fake: &Fake, kills: &[i32]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while fake.kills() != kills {
            assert!(
                Instant::now() < deadline,
                "expected kills {kills:?}, found {:?}",
                fake.kills()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    const LONG: Duration = Duration::from_secs(3600);

    fn requests(pending: &[i32], stop_since: Option<Instant>) -> Requests {
        Requests {
            pending: pending.to_vec(),
            stop_since,
            ended: false,
        }
    }

    #[test]
    fn next_step_waits_without_limit_when_nothing_is_asked() {
        let now = Instant::now();
        assert_eq!(
            next_step(&requests(&[], None), false, LONG, None, now),
            Step::Wait(None)
        );
    }

    #[test]
    fn next_step_delivers_then_waits_for_the_grace_period() {
        let now = Instant::now();
        let grace = Duration::from_secs(10);
        assert_eq!(
            next_step(&requests(&[SIGQUIT], Some(now)), false, grace, None, now),
            Step::Deliver
        );
        assert_eq!(
            next_step(&requests(&[], Some(now)), false, grace, None, now),
            Step::Wait(Some(grace))
        );
        let later = now + Duration::from_secs(4);
        assert_eq!(
            next_step(&requests(&[], Some(now)), false, grace, None, later),
            Step::Wait(Some(Duration::from_secs(6)))
        );
    }

    #[test]
    fn next_step_kills_once_the_grace_period_is_over() {
        let since = Instant::now();
        let grace = Duration::from_secs(2);
        let over = since + grace;
        assert_eq!(
            next_step(&requests(&[], Some(since)), false, grace, None, over),
            Step::Kill
        );
        // The kill goes before signals received meanwhile.
        assert_eq!(
            next_step(&requests(&[SIGHUP], Some(since)), false, grace, None, over),
            Step::Kill
        );
        // Once killed, only signals are left to deliver.
        assert_eq!(
            next_step(&requests(&[], Some(since)), true, grace, None, over),
            Step::Wait(None)
        );
        assert_eq!(
            next_step(&requests(&[SIGHUP], Some(since)), true, grace, None, over),
            Step::Deliver
        );
    }

    #[test]
    fn next_step_holds_runtime_calls_back_until_the_retry() {
        let now = Instant::now();
        let retry = Some(now + RETRY);
        assert_eq!(
            next_step(&requests(&[SIGQUIT], None), false, LONG, retry, now),
            Step::Wait(Some(RETRY))
        );
        assert_eq!(
            next_step(&requests(&[SIGQUIT], None), false, LONG, retry, now + RETRY),
            Step::Deliver
        );
        assert_eq!(
            next_step(&requests(&[], Some(now)), false, Duration::ZERO, retry, now),
            Step::Wait(Some(RETRY))
        );
    }

    #[test]
    fn next_step_without_a_stop_request_never_kills() {
        let now = Instant::now();
        assert_eq!(
            next_step(
                &requests(&[], None),
                false,
                Duration::ZERO,
                None,
                now + LONG
            ),
            Step::Wait(None)
        );
    }

    #[test]
    fn next_step_with_an_endless_grace_period_never_kills() {
        let now = Instant::now();
        assert_eq!(
            next_step(&requests(&[], Some(now)), false, Duration::MAX, None, now),
            Step::Wait(None)
        );
    }

    #[test]
    fn next_step_returns_when_the_run_ended() {
        let mut r = requests(&[SIGQUIT], Some(Instant::now()));
        r.ended = true;
        assert_eq!(
            next_step(&r, false, Duration::ZERO, None, Instant::now()),
            Step::Return
        );
    }

    #[test]
    fn a_stop_request_before_the_container_runs_is_delivered_once_it_runs() {
        let fake = Fake::new(&[
            None,
            Some(ContainerState::Creating),
            Some(ContainerState::Created),
            Some(ContainerState::Running),
        ]);
        let inbox = Inbox::new(SIGQUIT);
        inbox.receive(SIGTERM);
        serving(&fake, &inbox, LONG, || {
            until_killed_with(&fake, &[SIGQUIT]);
            // Once it runs, further signals go straight to it.
            inbox.receive(SIGHUP);
            until_killed_with(&fake, &[SIGQUIT, SIGHUP]);
        });
        // Polled until it ran.
        assert_eq!(fake.statuses.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_container_still_running_after_the_grace_period_is_killed() {
        let fake = Fake::new(&[Some(ContainerState::Running)]);
        let inbox = Inbox::new(SIGSTOP);
        serving(&fake, &inbox, Duration::from_millis(100), || {
            inbox.receive(SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !fake.kills().contains(&SIGKILL) {
                assert!(
                    Instant::now() < deadline,
                    "never killed: {:?}",
                    fake.kills()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        // The stop signal first, unless this thread was so slow that the grace period was
        // over when it first looked (then the kill comes first and the stop signal is moot).
        let kills = fake.kills();
        assert!(
            kills == [SIGSTOP, SIGKILL] || kills == [SIGKILL],
            "expected SIGSTOP then SIGKILL, found {kills:?}"
        );
    }

    #[test]
    fn the_kill_is_repeated_until_the_container_exists() {
        let fake = Fake::new(&[None]);
        *fake.missing_kills.lock().unwrap() = 3;
        let inbox = Inbox::new(SIGTERM);
        serving(&fake, &inbox, Duration::ZERO, || {
            inbox.receive(SIGINT);
            until_killed_with(&fake, &[SIGKILL]);
        });
        assert_eq!(*fake.missing_kills.lock().unwrap(), 0);
    }

    #[test]
    fn signals_for_a_container_that_exited_are_dropped() {
        let fake = Fake::new(&[Some(ContainerState::Stopped)]);
        let inbox = Inbox::new(SIGTERM);
        serving(&fake, &inbox, LONG, || {
            inbox.receive(SIGHUP);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !inbox.lock().pending.is_empty() {
                assert!(Instant::now() < deadline, "the signal was never taken");
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        assert_eq!(fake.kills(), [] as [i32; 0]);
    }
}
