//! Hot model swap: a new model package is loaded, checked (sha256, the same classes) and warmed
//! up on `lookout-load` while the old one keeps running; the inference loop swaps it in between
//! two runs (a pointer move) and hands the old detector back to `lookout-load` to be dropped
//! there. A package that fails any check is refused and the old model keeps running.
//!
//! ```text
//!  front end ── request(path) ──► lookout-load: Model::load (sha256), Detector::new (warm-up)
//!                                      │ ready (bounded 1)
//!                                      ▼
//!                          InferenceLoop::step: swap between runs ──► old detector ──► dropped
//!  front end ◄── outcomes (swapped / refused, with both sha256) ◄──────┘
//! ```
//!
//! Contract: requesting never blocks (a request while another is loading or waiting to be
//! swapped in is refused as busy).
//! Loading allocates and uses the CPU on `lookout-load` (on a CPU-only machine the warm-up runs
//! compete with inference for the cores); the loop's part is a `try_recv` per step and, once, a
//! move. A swap keeps the class list, because the publishers and every consumer downstream name
//! classes by it: a package with other classes is refused (restart to change them).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A new detector on its way to the loop, with the outcome to report once it runs.
pub struct Loaded {
    detector: Detector,
    outcome: SwapOutcome,
}

/// The loop's side: new detectors in, old ones out, outcomes to the front end.
pub struct SwapSlot {
    ready: Receiver<Loaded>,
    retired: Sender<Detector>,
    outcomes: Sender<SwapOutcome>,
    busy: Arc<AtomicBool>,
}

impl SwapSlot {
    /// A detector ready to replace `current`: swapped in (taking over its run control), the old
    /// one sent to `lookout-load` to be dropped. Returns true when it swapped. Allocates nothing.
    pub fn poll(&mut self, current: &mut Detector) -> bool {
        let Ok(mut loaded) = self.ready.try_recv() else {
            return false;
        };
        loaded.detector.adopt_run_control(&current.run_control());
        let old = std::mem::replace(current, loaded.detector);
        // Dropping a session takes milliseconds: not on this thread (the channel has room for
        // it: one swap at a time).
        if let Err(e) = self.retired.try_send(old) {
            drop(e.into_inner());
        }
        let _ = self.outcomes.try_send(loaded.outcome);
        self.busy.store(false, Ordering::Release);
        true
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
    retired: Receiver<Detector>,
    outcomes: Sender<SwapOutcome>,
    config: Config,
    cameras: usize,
    current: ModelInfo,
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
            busy,
        },
    )
}

impl Loader {
    /// The thread's body: loads each requested package and drops retired detectors, until
    /// `stop`.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            while let Ok(old) = self.retired.try_recv() {
                drop(old);
            }
            let path = match self.requests.recv_timeout(Duration::from_millis(100)) {
                Ok(p) => p,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            };
            let requested = Instant::now();
            match self.load(&path, requested) {
                Ok(loaded) => {
                    if let SwapOutcome::Swapped { new, .. } = &loaded.outcome {
                        self.current = new.clone();
                    }
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

    /// Loads, checks and warms up the package at `path` (its errors as text).
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
            Detector::with_batch_cap(model, &self.config.engine, Some(thresholds), self.cameras)
                .map_err(|e| e.to_string())?;
        detector.set_input_health(self.config.monitor.input_health.enabled);
        let engine = detector.engine_info();
        Ok(Loaded {
            detector,
            outcome: SwapOutcome::Swapped {
                new,
                engine,
                old_sha256: self.current.sha256.clone(),
                load_ms: requested.elapsed().as_secs_f64() * 1e3,
            },
        })
    }
}
