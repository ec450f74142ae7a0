//! Terminating a run from the hard-timeout watchdog: the run options and state the engine
//! shares with the watchdog thread.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Instant;

use ort::session::{HasSelectedOutputs, RunOptions};

/// Run options shared with the hard-timeout watchdog.
struct SharedRunOptions(RunOptions<HasSelectedOutputs>);

// SAFETY: another thread only ever calls `terminate`/`unterminate` on these options, which set
// an atomic flag inside ONNX Runtime (`RunOptionsSetTerminate`/`UnsetTerminate`, documented as
// callable from another thread to stop a run). The preallocated output value they also hold is
// used only by `Session::run_with_options` on the engine's own thread.
unsafe impl Sync for SharedRunOptions {}

#[derive(Debug, Default)]
struct RunState {
    /// Sequence number of the run in progress (0: none).
    active: u64,
    /// When the run in progress must be terminated.
    deadline: Option<Instant>,
    /// The watchdog terminated the run in progress.
    terminated: bool,
}

/// Lets a watchdog thread terminate the engine's current run when it passes its deadline.
///
/// The state is a mutex shared only by the inference thread and the watchdog (never by the ROS
/// side); the inference thread takes it twice per run, uncontended except at a timeout.
#[derive(Clone)]
pub struct RunControl {
    options: Arc<SharedRunOptions>,
    state: Arc<Mutex<RunState>>,
    watchdog: Arc<OnceLock<Thread>>,
}

impl RunControl {
    /// Shares `options` (those every run uses) with the watchdog.
    pub(super) fn new(options: RunOptions<HasSelectedOutputs>) -> Self {
        Self {
            options: Arc::new(SharedRunOptions(options)),
            state: Arc::new(Mutex::new(RunState::default())),
            watchdog: Arc::new(OnceLock::new()),
        }
    }

    /// The run options, for the engine's own thread.
    pub(super) fn run_options(&self) -> &RunOptions<HasSelectedOutputs> {
        &self.options.0
    }

    /// Registers the watchdog thread, woken whenever a run with a deadline starts.
    pub fn set_watchdog(&self, thread: Thread) {
        let _ = self.watchdog.set(thread);
    }

    /// The run in progress and its deadline, if it has one.
    pub fn current(&self) -> Option<(u64, Instant)> {
        let s = self.state.lock().ok()?;
        match (s.active, s.deadline) {
            (0, _) | (_, None) => None,
            (seq, Some(d)) => Some((seq, d)),
        }
    }

    /// Terminates run `seq` if it is still the one in progress. Returns whether it did.
    pub fn terminate(&self, seq: u64) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.active != seq || s.terminated {
            return false;
        }
        s.terminated = self.options.0.terminate().is_ok();
        s.terminated
    }

    pub(super) fn begin(&self, seq: u64, deadline: Option<Instant>) {
        if let Ok(mut s) = self.state.lock() {
            s.active = seq;
            s.deadline = deadline;
            s.terminated = false;
        }
        if deadline.is_some()
            && let Some(t) = self.watchdog.get()
        {
            t.unpark();
        }
    }

    /// Ends the run; returns whether the watchdog terminated it.
    pub(super) fn end(&self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        s.active = 0;
        s.deadline = None;
        let terminated = s.terminated;
        if terminated {
            // Clear the flag before the next run starts (under the lock, so the watchdog cannot
            // set it again for this run).
            let _ = self.options.0.unterminate();
            s.terminated = false;
        }
        terminated
    }
}
