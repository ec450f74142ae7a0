//! Hot model swap: a new model package is loaded and checked (sha256, the same classes) on
//! `lookout-load` while the old one keeps running; the inference loop warms it up between frames
//! and swaps it in between two runs (a pointer move), and hands the old detector back to
//! `lookout-load`, which has it dropped on a short-lived `lookout-drop` thread at normal
//! priority. A package that fails any check, or its warm-up, is
//! refused and the old model keeps running.
//!
//! ```text
//!  front end ── request(path) ──► lookout-load (nice 19): Model::load (sha256),
//!                                   Detector::unwarmed (session build)
//!                                      │ ready (bounded 1)
//!                                      ▼
//!                          InferenceLoop::step: warm-up runs while no frame is queued,
//!                          then the swap between two runs ──► old detector ──► lookout-drop
//!  front end ◄── outcomes (swapped / refused, with both sha256) ◄──────┘
//! ```
//!
//! Why this split: on a machine whose cores all run inference, a load beside it takes cores
//! from the frames. `lookout-load` therefore runs at nice 19 (the time no frame wants, and about
//! 1.5 % of a core inference wants; not `SCHED_IDLE`, under which a machine busy with anything
//! could hold the load off for ever); the threads the new session and pre-processor start go
//! through [`crate::core::threads::Spawner`], so they do not inherit that priority. The warm-up
//! runs need the new session's threads at full priority, so they run on the inference thread
//! itself when no frame is queued: each delays a frame that arrives during it by at most one
//! inference. A loop that is never idle runs one warm-up after each frame step once the model
//! has waited [`STARVED_AFTER`].
//!
//! Contract: requesting never blocks (a request while another is loading or waiting to be
//! swapped in is refused as busy). Loading allocates on `lookout-load`; the loop's part is a
//! `try_recv` per step, the warm-up runs, and once a move. A swap keeps the class list, because
//! the publishers and every consumer downstream name classes by it: a package with other
//! classes is refused (restart to change them).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::Config;
use crate::core::detector::Detector;
use crate::runtime::ModelInfo;
use crate::runtime::health::EngineInfo;

/// What became of a request.
#[derive(Debug, Clone)]
pub enum SwapOutcome {
    /// The new model runs from the next inference run on.
    Swapped {
        /// The model now running.
        new: ModelInfo,
        /// The engine it runs on (provider, fallback reason, tensors).
        engine: EngineInfo,
        /// sha256 of the model it replaced.
        old_sha256: String,
        /// Loading, checking and warming up took this long, ms.
        load_ms: f64,
    },
    /// The package was refused; the old model keeps running.
    Refused {
        /// The manifest asked for.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A loop that has not been idle for this long since a model became ready to be warmed up
/// warms it up between frames anyway (an overloaded node still gets its new model).
pub const STARVED_AFTER: Duration = Duration::from_secs(5);

/// A new detector on its way to the loop, with what to report once it runs.
pub struct Loaded {
    detector: Detector,
    path: PathBuf,
    new: ModelInfo,
    engine: EngineInfo,
    old_sha256: String,
    requested: Instant,
}

/// A detector the loop is done with, for `lookout-load` to drop.
pub enum Retired {
    /// The model that ran until a swap.
    Replaced(Detector),
    /// A new model whose warm-up failed.
    Refused(Detector),
}

/// A loaded detector in the loop, being warmed up.
struct Pending {
    loaded: Loaded,
    since: Instant,
    warm: bool,
}

/// The loop's side: new detectors in, old ones out, outcomes to the front end.
pub struct SwapSlot {
    ready: Receiver<Loaded>,
    pending: Option<Pending>,
    retired: Sender<Retired>,
    outcomes: Sender<SwapOutcome>,
    busy: Arc<AtomicBool>,
}

impl SwapSlot {
    /// Takes a newly loaded detector in, and swaps a warmed-up one in for `current` (taking over
    /// its run control), sending the old one to `lookout-load` to be dropped. Returns true when
    /// it swapped. Allocates nothing.
    pub fn poll(&mut self, current: &mut Detector) -> bool {
        if self.pending.is_none()
            && let Ok(loaded) = self.ready.try_recv()
        {
            self.pending = Some(Pending {
                loaded,
                since: Instant::now(),
                warm: false,
            });
        }
        if !self.pending.as_ref().is_some_and(|p| p.warm) {
            return false;
        }
        let Some(Pending { loaded, .. }) = self.pending.take() else {
            return false;
        };
        let Loaded {
            mut detector,
            new,
            engine,
            old_sha256,
            requested,
            ..
        } = loaded;
        detector.adopt_run_control(&current.run_control());
        let old = std::mem::replace(current, detector);
        self.retire(Retired::Replaced(old));
        let _ = self.outcomes.try_send(SwapOutcome::Swapped {
            new,
            engine,
            old_sha256,
            load_ms: requested.elapsed().as_secs_f64() * 1e3,
        });
        self.busy.store(false, Ordering::Release);
        true
    }

    /// Runs one warm-up inference of the detector waiting to be swapped in: when the loop is
    /// `idle` (no frame queued), or, called after a frame step with `idle` false, once the
    /// detector has waited [`STARVED_AFTER`]. Returns whether it ran one. A failed warm-up
    /// refuses the model (the old one keeps running).
    pub fn warm_up(&mut self, idle: bool) -> bool {
        let Some(p) = self.pending.as_mut().filter(|p| !p.warm) else {
            return false;
        };
        if !idle && p.since.elapsed() < STARVED_AFTER {
            return false;
        }
        match p.loaded.detector.warm_up_step() {
            Ok(done) => p.warm = done,
            Err(e) => {
                if let Some(p) = self.pending.take() {
                    let _ = self.outcomes.try_send(SwapOutcome::Refused {
                        path: p.loaded.path,
                        reason: format!("its warm-up failed: {e}"),
                    });
                    self.retire(Retired::Refused(p.loaded.detector));
                }
                self.busy.store(false, Ordering::Release);
            }
        }
        true
    }

    /// Dropping a session takes milliseconds: not on the inference thread (the channel has room
    /// for it: one swap at a time).
    fn retire(&self, old: Retired) {
        if let Err(e) = self.retired.try_send(old) {
            drop(e.into_inner());
        }
    }
}

/// The front end's side: ask for a model, read what became of it.
pub struct ModelSwap {
    requests: Sender<PathBuf>,
    outcomes: Receiver<SwapOutcome>,
    /// A request is being loaded or waits to be swapped in.
    busy: Arc<AtomicBool>,
}

/// Why a request was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// A model is being loaded already.
    #[error("a model is being loaded already; ask again when it is done")]
    Busy,
    /// The loader has stopped.
    #[error("the model loader has stopped")]
    Stopped,
}

impl ModelSwap {
    /// Asks for the model package at `manifest` (never blocks).
    pub fn request(&self, manifest: PathBuf) -> Result<(), SwapError> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(SwapError::Busy);
        }
        self.requests.try_send(manifest).map_err(|e| {
            self.busy.store(false, Ordering::Release);
            match e {
                TrySendError::Full(_) => SwapError::Busy,
                TrySendError::Disconnected(_) => SwapError::Stopped,
            }
        })
    }

    /// The next outcome, if any.
    pub fn outcome(&self) -> Option<SwapOutcome> {
        self.outcomes.try_recv().ok()
    }
}

/// `lookout-load`'s state: how to build a detector like the running one.
pub struct Loader {
    requests: Receiver<PathBuf>,
    ready: Sender<Loaded>,
    retired: Receiver<Retired>,
    outcomes: Sender<SwapOutcome>,
    config: Config,
    cameras: usize,
    /// The model the loop runs.
    current: ModelInfo,
    /// The model handed to the loop and not yet swapped in or refused.
    loading: Option<ModelInfo>,
    /// `lookout-drop` threads dropping retired detectors.
    dropping: Vec<std::thread::JoinHandle<()>>,
    busy: Arc<AtomicBool>,
}

/// The three parts of a hot swap for a runtime built from `config` with `cameras` cameras,
/// running `current`.
pub fn swap_parts(
    config: &Config,
    cameras: usize,
    current: &ModelInfo,
) -> (ModelSwap, SwapSlot, Loader) {
    let (requests_tx, requests_rx) = crossbeam_channel::bounded(1);
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let (retired_tx, retired_rx) = crossbeam_channel::bounded(2);
    let (outcomes_tx, outcomes_rx) = crossbeam_channel::bounded(8);
    let busy = Arc::new(AtomicBool::new(false));
    (
        ModelSwap {
            requests: requests_tx,
            outcomes: outcomes_rx,
            busy: Arc::clone(&busy),
        },
        SwapSlot {
            ready: ready_rx,
            pending: None,
            retired: retired_tx,
            outcomes: outcomes_tx.clone(),
            busy: Arc::clone(&busy),
        },
        Loader {
            requests: requests_rx,
            ready: ready_tx,
            retired: retired_rx,
            outcomes: outcomes_tx,
            config: config.clone(),
            cameras,
            current: current.clone(),
            loading: None,
            dropping: Vec::new(),
            busy,
        },
    )
}

impl Loader {
    /// The thread's body: loads each requested package and drops retired detectors, until
    /// `stop`.
    pub fn run(&mut self, stop: &AtomicBool) {
        self.serve(stop);
        for handle in self.dropping.drain(..) {
            let _ = handle.join();
        }
    }

    fn serve(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.drop_retired();
            let path = match self.requests.recv_timeout(Duration::from_millis(100)) {
                Ok(p) => p,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            };
            // The loop retires a detector before it clears `busy`: what the last request
            // became is known before this one is checked against the running model.
            self.drop_retired();
            let requested = Instant::now();
            match self.load(&path, requested) {
                Ok(loaded) => {
                    self.loading = Some(loaded.new.clone());
                    // Waits for the loop to take it (between two runs), or for the stop.
                    let mut pending = loaded;
                    loop {
                        match self.ready.send_timeout(pending, Duration::from_millis(100)) {
                            Ok(()) => break,
                            Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => {
                                if stop.load(Ordering::Relaxed) {
                                    return;
                                }
                                pending = back;
                            }
                            Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return,
                        }
                    }
                }
                Err(reason) => {
                    let _ = self
                        .outcomes
                        .try_send(SwapOutcome::Refused { path, reason });
                    self.busy.store(false, Ordering::Release);
                }
            }
        }
    }

    /// Drops the detectors the loop handed back, and follows which model runs.
    fn drop_retired(&mut self) {
        self.dropping.retain(|h| !h.is_finished());
        while let Ok(retired) = self.retired.try_recv() {
            let detector = match retired {
                Retired::Replaced(old) => {
                    if let Some(new) = self.loading.take() {
                        self.current = new;
                    }
                    old
                }
                Retired::Refused(new) => {
                    self.loading = None;
                    new
                }
            };
            // Dropping frees the memory the detector took at start, in the heap arenas the
            // frame threads allocate from: not at idle priority, where a preempted `free`
            // could hold an arena's lock while they wait. A short-lived thread started at
            // normal priority (through the spawner) drops it and gives the memory back to the
            // OS; inline only if no thread can be started.
            let ours = Arc::new(Mutex::new(Some(detector)));
            let theirs = Arc::clone(&ours);
            let take = |cell: &Mutex<Option<Detector>>| {
                cell.lock().unwrap_or_else(|p| p.into_inner()).take()
            };
            match crate::core::threads::spawn("lookout-drop", move || {
                drop(take(&theirs));
                crate::runtime::realtime::release_free_memory();
            }) {
                Ok(handle) => self.dropping.push(handle),
                Err(_) => drop(take(&ours)),
            }
        }
    }

    /// Loads and checks the package at `path` and builds its session, without the warm-up
    /// (its errors as text).
    fn load(&self, path: &Path, requested: Instant) -> Result<Loaded, String> {
        if let Some(profile) = &self.config.monitor.profile {
            return Err(format!(
                "monitor.profile ({}) was made with the running model; a swap would compare the new model with it: restart with the new model and its profile",
                profile.display()
            ));
        }
        let model = super::load_model(path).map_err(|e| e.to_string())?;
        let m = &model.manifest;
        if m.classes != self.current.class_names {
            return Err(format!(
                "its classes differ from the running model's ({} against {}); a swap keeps the class list: restart to change it",
                m.classes.len(),
                self.current.class_names.len()
            ));
        }
        if model.sha256() == self.current.sha256 {
            return Err(format!(
                "it is the model already running (sha256 {})",
                self.current.sha256
            ));
        }
        let thresholds = self.config.thresholds.apply(m.thresholds);
        if thresholds.max_detections > self.current.max_detections {
            return Err(format!(
                "it keeps up to {} detections per frame, more than the {} the running model's buffers hold; set thresholds.max_detections or restart",
                thresholds.max_detections, self.current.max_detections
            ));
        }
        let new = ModelInfo {
            name: m.name.clone(),
            sha256: model.sha256().to_string(),
            class_names: m.classes.clone(),
            max_detections: self.current.max_detections,
        };
        let mut detector =
            Detector::unwarmed(model, &self.config.engine, Some(thresholds), self.cameras)
                .map_err(|e| e.to_string())?;
        detector.set_input_health(self.config.monitor.input_health.enabled);
        let engine = detector.engine_info();
        Ok(Loaded {
            detector,
            path: path.to_path_buf(),
            new,
            engine,
            old_sha256: self.current.sha256.clone(),
            requested,
        })
    }
}
