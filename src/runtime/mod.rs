//! The runtime every front end shares: built once from the [`Config`], it holds the model and
//! engine, each camera's queue, the scheduler and inference loop, the deadline tracker, health,
//! and the threads that run them (with their real-time settings, the hard-timeout watchdog and
//! supervision). A front end only attaches a frame source and a result sink:
//!
//! ```text
//!  source (front end)            Runtime                                  sink (front end)
//!  ros subscriptions  ─► FrameProducer ─► queue ─► scheduler ─► InferenceLoop ─► OutputSource ─► ros publishers
//!  bag reader                  (per camera)         (lookout-infer or inline)   + ResultTracker   bag writer
//!  sim schedule                                         watchdog, supervision    + Health          report
//! ```
//!
//! | front end | timing | loop runs | sink runs on |
//! |---|---|---|---|
//! | `lookout run` | [`Timing::Live`] | `lookout-infer` | `lookout-publish` ([`Runtime::spawn_sink`]) |
//! | `lookout replay --rate` | [`Timing::Live`] | `lookout-infer` | the player thread |
//! | `lookout replay` (max speed, step) | [`Timing::Deterministic`] | inline ([`Runtime::step_until_idle`]) | the caller |
//!
//! Contract: [`Runtime::new`] loads and warms the model and allocates every queue, buffer and
//! histogram; after it, the per-frame path allocates nothing for raw frames. [`Runtime::start`]
//! and [`Runtime::spawn_sink`] start named threads; [`Runtime::stop`] stops and joins them and
//! reports a thread that panicked as [`RuntimeError::WorkerDied`] (data would be lost: an error,
//! never a warning). Nothing here blocks except the joins in `stop`.

pub mod capture;
pub mod counters;
pub mod deadline;
pub mod drift;
pub mod health;
pub mod inference;
pub mod input_health;
pub mod queue;
pub mod realtime;
pub mod scheduler;
pub mod shadow;
pub mod supervise;
pub mod swap;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::config::locate::{Origin, locate, searched};
use crate::config::{Config, QueuePolicy, ThreadConfig};
use crate::core::detector::Detector;
use crate::core::model::{Model, ModelError};
use counters::{CameraCounters, EngineCounters};
use deadline::{LatePolicy, RosClock};
use health::{EngineInfo, Health, Status};
use inference::{InferenceLoop, LoopCamera, OutputSource, ResultTracker, output_channel};
use queue::{FrameProducer, camera_ring_with_spares};

/// Why the runtime cannot start, or a thread of it died.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration does not fit this computer (its memory budget).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The model package is unusable.
    #[error(transparent)]
    Model(#[from] crate::core::model::ModelError),
    /// The drift profile (`monitor.profile`) is unusable.
    #[error(transparent)]
    Profile(#[from] crate::runtime::drift::ProfileError),
    /// ONNX Runtime could not start.
    #[error(transparent)]
    Engine(#[from] crate::core::engine::EngineError),
    /// A thread or statistics buffer cannot be created.
    #[error("cannot start {what}: {reason}")]
    Start {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A worker thread died (panicked, or ended while the runtime ran).
    #[error("thread {thread} died: {reason}")]
    WorkerDied {
        /// Thread name.
        thread: &'static str,
        /// Its panic message, or how it ended.
        reason: String,
    },
}

/// How the timing-dependent parts of the contract apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// As on a vehicle: each camera's queue policy, `max_age_ms`, `late_results` and
    /// `hard_timeout_ms` as configured (live node, replay at a rate, sim).
    Live,
    /// Every frame processed in arrival order whatever the time: FIFO queues, no age limit,
    /// late results kept, no hard timeout (replay at maximum speed and step by step), so the
    /// detections depend only on the frames. Deadline misses against `budget_ms` still count.
    Deterministic,
}

/// The loaded model, as reports and provenance name it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Manifest name.
    pub name: String,
    /// sha256 of the ONNX file, hex.
    pub sha256: String,
    /// Class names, by class id.
    pub class_names: Vec<String>,
    /// Most detections per frame.
    pub max_detections: usize,
}

/// Threads started by [`Runtime::start`] and [`Runtime::spawn_sink`].
struct Running {
    stop: Arc<AtomicBool>,
    infer: Option<JoinHandle<InferenceLoop>>,
    watchdog: Option<JoinHandle<()>>,
    sinks: supervise::Workers,
}

/// One runtime, built from the configuration; see the module documentation.
pub struct Runtime {
    model: ModelInfo,
    engine: EngineInfo,
    inputs: Vec<FrameProducer>,
    counters: Vec<Arc<CameraCounters>>,
    engine_counters: Arc<EngineCounters>,
    inference: Option<InferenceLoop>,
    results: Option<OutputSource>,
    tracker: Option<ResultTracker>,
    health: Health,
    clock: RosClock,
    hard_timeouts: bool,
    shadow: Option<Shadow>,
    capture: Option<capture::Capture>,
    /// Hot swap: the handle, and the loader until its thread starts.
    swap: Option<(swap::ModelSwap, Option<swap::Loader>)>,
    timing: Timing,
    running: Option<Running>,
}

/// The shadow model's parts the runtime keeps: its thread's side until [`Runtime::start`], its
/// results until a sink takes them, and its name.
struct Shadow {
    thread: Option<shadow::ShadowThread>,
    results: Option<OutputSource>,
    model: ModelInfo,
}

impl Runtime {
    /// Loads and warms the model (`config.model`), and allocates each configured camera's
    /// queue, the inference loop, the output buffers, the deadline tracker and health, in
    /// configuration order. Frame ages and diagnostics stamps are on `clock`.
    pub fn new(config: &Config, timing: Timing, clock: RosClock) -> Result<Self, RuntimeError> {
        // Before anything is allocated: what the cameras reserve, against this computer.
        let budget = config.memory_budget();
        if let Some(physical) = crate::config::physical_memory_bytes() {
            config.check_memory_budget(physical / 2)?;
        }
        tracing::info!(%budget, "memory budget");
        // A relative path still here was not found where the user's rule looks (or is lookout's
        // default): the data directories only, never the working directory.
        let model = load_model(&config.model)?;
        let thresholds = config.thresholds.apply(model.manifest.thresholds);
        let info = ModelInfo {
            name: model.manifest.name.clone(),
            sha256: model.sha256().to_string(),
            class_names: model.manifest.classes.clone(),
            max_detections: thresholds.max_detections,
        };
        // A run takes at most one frame per camera: no tensors for larger batches.
        let cameras = config.camera_list().count();
        let mut detector =
            Detector::with_batch_cap(model, &config.engine, Some(thresholds), cameras)?;
        detector.set_input_health(config.monitor.input_health.enabled);
        let engine = detector.engine_info();

        let mut inputs = Vec::new();
        let mut counters = Vec::new();
        let mut loop_cameras = Vec::new();
        let mut tracked = Vec::new();
        let mut health_cameras = Vec::new();
        for (index, (name, cam)) in config.camera_list().enumerate() {
            let policy = match timing {
                Timing::Live => cam.queue_policy,
                Timing::Deterministic => QueuePolicy::Fifo,
            };
            let (producer, consumer, c) = camera_ring_with_spares(
                index,
                cam.ring_capacity,
                usize::from(config.shadow.model.is_some()),
                cam.max_width,
                cam.max_height,
                policy,
            );
            let mut lc = LoopCamera::from_config(name, consumer, Arc::clone(&c), cam);
            if timing == Timing::Deterministic {
                lc.deadline.max_age = None;
                lc.deadline.late_policy = LatePolicy::Publish;
                lc.hard_timeout = None;
            }
            tracked.push((lc.deadline, Arc::clone(&c)));
            health_cameras.push((name.to_string(), cam.clone(), c.snapshot()));
            loop_cameras.push(lc);
            inputs.push(producer);
            counters.push(c);
        }
        let hard_timeouts = loop_cameras.iter().any(|c| c.hard_timeout.is_some());
        let (sink, results) = output_channel(4 + 2 * inputs.len(), info.max_detections);
        let engine_counters = Arc::new(EngineCounters::default());
        let inference = InferenceLoop::new(detector, loop_cameras, sink, clock.clone())
            .with_session_rebuild(
                config.engine.rebuild_after_failures,
                Arc::clone(&engine_counters),
            );
        let window = Duration::from_secs_f64(config.diagnostics.window_s);
        let tracker = ResultTracker::new(tracked, window)
            .map_err(|e| RuntimeError::Start {
                what: "latency statistics",
                reason: e.to_string(),
            })?
            .with_input_health(config.monitor.input_health);
        let tracker = match &config.monitor.profile {
            Some(path) => {
                let profile = drift::Profile::load(path, &info.name, &info.sha256)?;
                tracing::info!(profile = %path.display(), frames = profile.frames, "drift monitor: comparing every camera's detections with the profile");
                tracker.with_drift(config.monitor.drift, &profile.counts(&info.class_names))
            }
            None => tracker,
        };
        let mut health = Health::new(Instant::now(), health_cameras, engine.clone());
        let (inference, tracker, capture) = match &config.capture.dir {
            Some(_) => {
                let (tap, capture) = capture::build(
                    config,
                    &counters,
                    (&info.name, &info.sha256),
                    &info.class_names,
                    info.max_detections,
                );
                health = health.with_capture(Arc::clone(&capture.counters));
                let tracker = tracker.with_capture(Arc::clone(&capture.trigger));
                (inference.with_capture(tap), tracker, Some(capture))
            }
            None => (inference, tracker, None),
        };
        let trigger = capture.as_ref().map(|c| Arc::clone(&c.trigger));
        let (inference, shadow) = match &config.shadow.model {
            Some(path) => {
                let (link, shadow, rule) = build_shadow(
                    config,
                    path,
                    timing,
                    &counters,
                    info.max_detections,
                    &info.class_names,
                    trigger,
                )?;
                health = health.with_shadow(rule);
                (inference.with_shadow(link), Some(shadow))
            }
            None => (inference, None),
        };
        Ok(Self {
            model: info,
            engine,
            inputs,
            counters,
            inference: Some(inference),
            results: Some(results),
            tracker: Some(tracker),
            health,
            clock,
            hard_timeouts,
            engine_counters,
            shadow,
            capture,
            swap: None,
            timing,
            running: None,
        })
    }

    /// Lets a new model be swapped in while running ([`Self::request_model`]): the live node
    /// calls this before [`Self::start`], which then starts `lookout-load`. Allocates the
    /// channels. With `monitor.profile` set nothing changes: the profile belongs to the model
    /// it was made with, and every request is refused saying so.
    pub fn enable_model_swap(&mut self, config: &Config) {
        let Some(inference) = self.inference.take() else {
            return;
        };
        let (handle, slot, loader) = swap::swap_parts(config, self.counters.len(), &self.model);
        self.inference = Some(inference.with_swap(slot));
        self.swap = Some((handle, Some(loader)));
    }

    /// Asks for the model package at `manifest` to be loaded in the background and swapped in
    /// between two inference runs ([`swap`]); [`Self::poll_swap`] says what became of it.
    /// Live timing, once started, only.
    pub fn request_model(&self, manifest: std::path::PathBuf) -> Result<(), swap::SwapError> {
        match &self.swap {
            Some((handle, None)) => handle.request(manifest),
            _ => Err(swap::SwapError::Stopped),
        }
    }

    /// What became of a model request, if anything new: a swap updates the model this runtime
    /// reports (`model()`, the engine's /diagnostics status).
    pub fn poll_swap(&mut self) -> Option<swap::SwapOutcome> {
        let outcome = self.swap.as_ref()?.0.outcome()?;
        if let swap::SwapOutcome::Swapped { new, engine, .. } = &outcome {
            self.model = new.clone();
            self.engine = engine.clone();
            self.health.set_engine(engine.clone());
            if let Some(c) = &self.capture {
                c.set_model(&new.name, &new.sha256);
            }
        }
        Some(outcome)
    }

    /// Incident capture's trigger (SIGUSR1 asks it), if `capture.dir` is set.
    pub fn capture_trigger(&self) -> Option<&Arc<capture::CaptureTrigger>> {
        self.capture.as_ref().map(|c| &c.trigger)
    }

    /// Incident capture's counters, if `capture.dir` is set.
    pub fn capture_counters(&self) -> Option<&capture::writer::CaptureCounters> {
        self.capture.as_ref().map(|c| c.counters.as_ref())
    }

    /// Ends incident capture: a capture being written is completed (it holds the frames up to
    /// now). Inline capture only; a `lookout-capture` thread does this when stopped.
    pub fn finish_capture(&mut self) {
        if let Some(worker) = self.capture.as_mut().and_then(|c| c.worker.as_mut()) {
            worker.poll();
            worker.finish();
        }
    }

    /// The shadow model (name and sha256), if one is configured.
    pub fn shadow_model(&self) -> Option<&ModelInfo> {
        self.shadow.as_ref().map(|s| &s.model)
    }

    /// The shadow model's results, with `shadow.publish` (`None` without, or once taken).
    pub fn shadow_results(&self) -> Option<&OutputSource> {
        self.shadow.as_ref().and_then(|s| s.results.as_ref())
    }

    /// Takes the shadow model's results, for a sink thread.
    pub fn take_shadow_results(&mut self) -> Option<OutputSource> {
        self.shadow.as_mut().and_then(|s| s.results.take())
    }

    /// The loaded model.
    pub fn model(&self) -> &ModelInfo {
        &self.model
    }

    /// The engine: execution provider in use, why it is not the first listed, tensor memory.
    pub fn engine(&self) -> &EngineInfo {
        &self.engine
    }

    /// The clock frame ages are measured on.
    pub fn clock(&self) -> &RosClock {
        &self.clock
    }

    /// Each camera's counters, in configuration order.
    pub fn counters(&self) -> &[Arc<CameraCounters>] {
        &self.counters
    }

    /// The queues' producer ends, one per camera in configuration order, for the frame source
    /// (empty once taken). Call [`Self::start`] first when the loop runs on its own thread, and
    /// give each producer the thread it returns ([`FrameProducer::set_wake`]).
    pub fn take_inputs(&mut self) -> Vec<FrameProducer> {
        std::mem::take(&mut self.inputs)
    }

    /// Results as the loop finishes them (`None` once a sink thread took them).
    pub fn results(&self) -> Option<&OutputSource> {
        self.results.as_ref()
    }

    /// Most frames one inference run takes (one per camera at most); 1 once the loop runs on
    /// its own thread.
    pub fn batch(&self) -> usize {
        self.inference.as_ref().map_or(1, InferenceLoop::batch)
    }

    /// The deadline tracker, for a sink on the caller's thread (`None` once a sink thread took
    /// it).
    pub fn tracker_mut(&mut self) -> Option<&mut ResultTracker> {
        self.tracker.as_mut()
    }

    /// Health (the /diagnostics rules).
    pub fn health_mut(&mut self) -> &mut Health {
        &mut self.health
    }

    /// The /diagnostics statuses at `now`, from every camera's counters and, when the tracker
    /// is still here (a sink on the caller's thread), its latency statistics.
    pub fn report_health(&mut self, now: Instant) -> Vec<Status> {
        if let Some(tracker) = self.tracker.as_mut() {
            for camera in 0..tracker.cameras() {
                self.health.set_stats(camera, tracker.snapshot(camera, now));
            }
        }
        let counters: Vec<&CameraCounters> = self.counters.iter().map(|c| c.as_ref()).collect();
        self.health.report(now, &counters, &self.engine_counters)
    }

    /// The engine's counters (session rebuilds).
    pub fn engine_counters(&self) -> &EngineCounters {
        &self.engine_counters
    }

    /// Runs the loop on the caller's thread until no frame is queued ([`Timing::Deterministic`]
    /// front ends: one frame pushed, then this). Does nothing while the loop runs on its thread.
    pub fn step_until_idle(&mut self) {
        if let Some(inference) = self.inference.as_mut() {
            while inference.step() != inference::Step::Idle {}
        }
        // Deterministic timing: capture follows on this thread, so which frames an incident
        // bag holds depends only on the frames.
        if let Some(worker) = self.capture.as_mut().and_then(|c| c.worker.as_mut()) {
            worker.poll();
        }
    }

    /// Starts the inference loop on `lookout-infer` with `realtime` settings (parking up to
    /// `idle_wait` when idle), and the `lookout-watchdog` when a camera has a hard timeout.
    /// Returns the inference thread, for the producers to wake.
    pub fn start(
        &mut self,
        realtime: &ThreadConfig,
        idle_wait: Duration,
    ) -> Result<Thread, RuntimeError> {
        let start = |what, e: std::io::Error| RuntimeError::Start {
            what,
            reason: e.to_string(),
        };
        let Some(mut inference) = self.inference.take() else {
            return Err(RuntimeError::Start {
                what: "lookout-infer",
                reason: "already started".into(),
            });
        };
        let stop = Arc::new(AtomicBool::new(false));
        let watchdog = if self.hard_timeouts {
            let control = inference.run_control();
            match inference::spawn_watchdog(&control, Arc::clone(&stop)) {
                Ok(h) => Some(h),
                Err(e) => {
                    self.inference = Some(inference);
                    return Err(start("lookout-watchdog", e));
                }
            }
        } else {
            None
        };
        let s = Arc::clone(&stop);
        let rt = realtime.clone();
        let infer = std::thread::Builder::new()
            .name("lookout-infer".into())
            .spawn(move || {
                realtime::apply("lookout-infer", &rt);
                inference.run(&s, idle_wait);
                inference
            })
            .map_err(|e| start("lookout-infer", e))?;
        let thread = infer.thread().clone();
        for input in &mut self.inputs {
            input.set_wake(thread.clone());
        }
        let mut sinks = supervise::Workers::default();
        if let Some(mut part) = self.shadow.as_mut().and_then(|s| s.thread.take()) {
            let s = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name("lookout-shadow".into())
                .spawn(move || {
                    realtime::idle_priority("lookout-shadow");
                    part.worker.run(&part.jobs, &part.back, &s);
                })
                .map_err(|e| start("lookout-shadow", e))?;
            sinks.push("lookout-shadow", handle);
        }
        if let Some(mut loader) = self.swap.as_mut().and_then(|(_, l)| l.take()) {
            // Started from this thread, so at the priority the detector's threads had at start.
            let (spawner, factory) = crate::core::threads::Spawner::start(Arc::clone(&stop))
                .map_err(|e| start("lookout-spawn", e))?;
            let s = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name("lookout-load".into())
                .spawn(move || {
                    // Nice 19: the load takes the time no frame wants, and a sliver of the rest
                    // (so it ends even on cores that stay busy).
                    realtime::background("lookout-load");
                    let _threads = spawner.enter();
                    loader.run(&s);
                })
                .map_err(|e| start("lookout-load", e))?;
            // Joined in this order: the loader first, while threads can still be started for it.
            sinks.push("lookout-load", handle);
            sinks.push("lookout-spawn", factory);
        }
        if self.timing == Timing::Live
            && let Some(mut worker) = self.capture.as_mut().and_then(|c| c.worker.take())
        {
            let s = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name("lookout-capture".into())
                .spawn(move || {
                    capture::lower_priority();
                    worker.run(&s);
                })
                .map_err(|e| start("lookout-capture", e))?;
            sinks.push("lookout-capture", handle);
        }
        self.running = Some(Running {
            stop,
            infer: Some(infer),
            watchdog,
            sinks,
        });
        Ok(thread)
    }

    /// Hands the results and the deadline tracker to `sink` on a thread of its own (`name`,
    /// with `realtime` settings), supervised with the others. `sink` should return once the
    /// results channel is closed (the loop stopped).
    pub fn spawn_sink(
        &mut self,
        name: &'static str,
        realtime: &ThreadConfig,
        sink: impl FnOnce(OutputSource, ResultTracker) + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let (Some(results), Some(tracker)) = (self.results.take(), self.tracker.take()) else {
            return Err(RuntimeError::Start {
                what: name,
                reason: "the results are already taken".into(),
            });
        };
        let rt = realtime.clone();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                realtime::apply(name, &rt);
                sink(results, tracker);
            })
            .map_err(|e| RuntimeError::Start {
                what: name,
                reason: e.to_string(),
            })?;
        match self.running.as_mut() {
            Some(r) => r.sinks.push(name, handle),
            None => {
                let mut sinks = supervise::Workers::default();
                sinks.push(name, handle);
                self.running = Some(Running {
                    stop: Arc::new(AtomicBool::new(false)),
                    infer: None,
                    watchdog: None,
                    sinks,
                });
            }
        }
        Ok(())
    }

    /// Supervision: the first thread that ended while the runtime runs (none should), if any.
    pub fn first_gone(&self) -> Option<&'static str> {
        let r = self.running.as_ref()?;
        if r.infer.as_ref().is_some_and(|h| h.is_finished()) {
            return Some("lookout-infer");
        }
        if r.watchdog.as_ref().is_some_and(|h| h.is_finished()) {
            return Some("lookout-watchdog");
        }
        r.sinks.first_gone()
    }

    /// Stops the threads and joins them: the inference loop first (it comes back to this
    /// runtime, and [`Self::step_until_idle`] works again), then the watchdog, then the sinks
    /// (the results channel closes when the loop is dropped, so they drain and end). The first
    /// thread that panicked, or `gone` ([`Self::first_gone`]), is the error.
    pub fn stop(&mut self, gone: Option<&'static str>) -> Result<(), RuntimeError> {
        let Some(mut r) = self.running.take() else {
            return Ok(());
        };
        r.stop.store(true, Ordering::Relaxed);
        let mut died: Option<(&'static str, String)> = None;
        if let Some(infer) = r.infer.take() {
            infer.thread().unpark();
            match infer.join() {
                Ok(inference) => {
                    // With a sink thread, dropping the loop closes its results channel.
                    if self.results.is_some() {
                        self.inference = Some(inference);
                    }
                }
                Err(payload) => {
                    died = Some(("lookout-infer", supervise::panic_message(payload.as_ref())));
                }
            }
        }
        if let Some(w) = r.watchdog.take() {
            w.thread().unpark();
            if let Err(payload) = w.join() {
                died.get_or_insert((
                    "lookout-watchdog",
                    supervise::panic_message(payload.as_ref()),
                ));
            }
        }
        r.sinks.unpark_all();
        for (name, message) in r.sinks.join_all() {
            died.get_or_insert((name, message));
        }
        let failure = match (died, gone) {
            (Some((thread, message)), _) => Some((thread, format!("panicked: {message}"))),
            (None, Some(thread)) => Some((thread, "ended while the runtime ran".to_string())),
            (None, None) => None,
        };
        match failure {
            Some((thread, reason)) => Err(RuntimeError::WorkerDied { thread, reason }),
            None => Ok(()),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Threads must not outlive the runtime (they hold its queues and the engine).
        let _ = self.stop(None);
    }
}

/// Finds and loads a model package (its manifest's path as configured): a relative path still
/// relative after the search was not found where lookout looks (never the working directory).
fn load_model(path: &std::path::Path) -> Result<Model, RuntimeError> {
    let manifest = locate(path, Origin::Default);
    if manifest.is_relative() {
        return Err(ModelError::NotFound {
            path: manifest.clone(),
            searched: searched(Origin::Default),
        }
        .into());
    }
    Ok(Model::load(&manifest)?)
}

/// Loads and warms the shadow model at `path` (one frame per run) and connects it to the loop:
/// inline for [`Timing::Deterministic`], otherwise on its own thread with one ONNX Runtime
/// thread and one pre-processing thread, so it takes only what the primary leaves.
fn build_shadow(
    config: &Config,
    path: &std::path::Path,
    timing: Timing,
    counters: &[Arc<CameraCounters>],
    primary_max_detections: usize,
    primary_classes: &[String],
    capture: Option<Arc<capture::CaptureTrigger>>,
) -> Result<(shadow::ShadowLink, Shadow, shadow::health::ShadowRule), RuntimeError> {
    let model = load_model(path)?;
    if model.manifest.classes != primary_classes {
        return Err(RuntimeError::Start {
            what: "shadow.model",
            reason: format!(
                "{}: its classes differ from the primary model's ({} against {}); the two are compared class by class",
                path.display(),
                model.manifest.classes.len(),
                primary_classes.len()
            ),
        });
    }
    let thresholds = config.shadow.thresholds.apply(model.manifest.thresholds);
    let mut engine = config.engine.clone();
    engine.max_batch = 1;
    if timing == Timing::Live {
        // On its own thread beside the primary: one thread for everything, so that it takes
        // only the time the primary leaves. Inline it blocks the loop anyway: all threads.
        engine.intra_op_threads = 1;
        engine.intra_op_spinning = false;
        engine.preprocess_threads = 1;
    }
    let rule = shadow::health::ShadowRule {
        min_frames: u64::from(config.shadow.min_frames),
        warn_disagreement: config.shadow.warn_disagreement,
        model: model.manifest.name.clone(),
        sha256: model.sha256().to_string(),
    };
    let model_info = ModelInfo {
        name: rule.model.clone(),
        sha256: rule.sha256.clone(),
        class_names: model.manifest.classes.clone(),
        max_detections: thresholds.max_detections,
    };
    let mut detector = Detector::with_batch_cap(model, &engine, Some(thresholds), 1)?;
    detector.set_input_health(false);
    tracing::info!(model = %rule.model, sha256 = %rule.sha256, execution_provider = detector.execution_provider().as_str(), "shadow model loaded");
    let cameras = config
        .camera_list()
        .zip(counters)
        .map(|((name, cam), c)| shadow::ShadowCamera {
            name: name.to_string(),
            counters: Arc::clone(c),
            decode_max: (cam.kind == crate::config::ImageKind::Compressed)
                .then_some((cam.max_width, cam.max_height)),
        })
        .collect();
    let (worker, results) = shadow::ShadowWorker::new(
        detector,
        cameras,
        &config.shadow,
        primary_max_detections,
        config.shadow.publish,
    );
    let worker = match capture {
        Some(trigger) => worker.with_capture(trigger),
        None => worker,
    };
    let (link, thread) = match timing {
        Timing::Deterministic => (shadow::ShadowLink::inline(worker), None),
        Timing::Live => {
            let (link, thread) = shadow::ShadowLink::threaded(worker, primary_max_detections);
            (link, Some(thread))
        }
    };
    let parts = Shadow {
        thread,
        results,
        model: model_info,
    };
    Ok((link, parts, rule))
}
