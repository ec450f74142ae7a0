//! Terminating a run from the hard-timeout watchdog: the run options and state the engine
//! shares with the watchdog thread.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Instant;

use ort::session::{HasSelectedOutputs, RunOptions};

/// Run options shared with the hard-timeout watchdog: one per batch size (index `k - 1` runs
/// `k` frames; each holds its preallocated output of that size).
pub(super) struct SharedRunOptions(Vec<RunOptions<HasSelectedOutputs>>);

impl SharedRunOptions {
    /// The options of a run of `frames` frames (1..=the engine's batch), for the engine's own
    /// thread.
    pub(super) fn get(&self, frames: usize) -> Option<&RunOptions<HasSelectedOutputs>> {
        self.0.get(frames.wrapping_sub(1))
    }
}

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
    /// Frames in the run in progress (which run options it uses).
    frames: usize,
    /// The watchdog terminated the run in progress.
    terminated: bool,
}

/// Lets a watchdog thread terminate the engine's current run when it passes its deadline.
///
/// The state is a mutex shared only by the inference thread and the watchdog (never by the ROS
/// side); the inference thread takes it twice per run, uncontended except at a timeout.
///
/// The run options can be replaced (a rebuilt session brings its own) while the watchdog keeps
/// the same `RunControl`.
#[derive(Clone)]
pub struct RunControl {
    options: Arc<Mutex<Arc<SharedRunOptions>>>,
    state: Arc<Mutex<RunState>>,
    watchdog: Arc<OnceLock<Thread>>,
}

impl RunControl {
    /// Shares `options` (one per batch size, those every run uses) with the watchdog.
    pub(super) fn new(options: Vec<RunOptions<HasSelectedOutputs>>) -> Self {
        Self {
            options: Arc::new(Mutex::new(Arc::new(SharedRunOptions(options)))),
            state: Arc::new(Mutex::new(RunState::default())),
            watchdog: Arc::new(OnceLock::new()),
        }
    }

    /// The run options now in force, for the engine's own thread to keep (`None` only if a
    /// thread panicked holding the lock).
    pub(super) fn run_options(&self) -> Option<Arc<SharedRunOptions>> {
        self.options.lock().ok().map(|o| Arc::clone(&o))
    }

    /// Puts `other`'s run options in force here (a rebuilt engine's), between two runs: the
    /// watchdog holding this control then terminates runs of the new session.
    pub(super) fn adopt_options(&self, other: &RunControl) {
        if let (Some(new), Ok(mut slot)) = (other.run_options(), self.options.lock()) {
            *slot = new;
        }
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
        s.terminated = self
            .run_options()
            .is_some_and(|o| o.get(s.frames).is_some_and(|r| r.terminate().is_ok()));
        s.terminated
    }

    pub(super) fn begin(&self, seq: u64, frames: usize, deadline: Option<Instant>) {
        if let Ok(mut s) = self.state.lock() {
            s.active = seq;
            s.frames = frames;
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
            if let Some(o) = self.run_options().as_deref().and_then(|o| o.get(s.frames)) {
                let _ = o.unterminate();
            }
            s.terminated = false;
        }
        terminated
    }
}
