//! The shadow model: a second model package (`shadow.model`) that sees the frames the primary
//! has time for, never delaying a primary result. Each shadowed frame's detections are paired
//! with the primary's ([`agreement`]); the per-camera counts and the share of disagreeing frames
//! in a sliding window go to /diagnostics, and with `shadow.publish` the shadow's detections go
//! to `<camera namespace>/shadow/detections`.
//!
//! ```text
//!  InferenceLoop ── primary result sent ──► frame slot + primary detections ──► lookout-shadow
//!       ▲            (only if the shadow is idle;                                (SCHED_IDLE, one
//!       │             otherwise counted as skipped)                              ORT thread)
//!       └──────────────── slot recycled on the loop's next step ◄────────────────────┘
//! ```
//!
//! How it yields, by [`crate::runtime::Timing`]:
//! - `Live`: the shadow runs on `lookout-shadow` under `SCHED_IDLE` with a single-threaded
//!   ONNX Runtime session and pre-processing, so on the CPU it runs only on time the primary
//!   leaves. The loop hands it a frame only after that frame's primary result is sent, and only
//!   when the shadow is idle; every other frame is counted in `shadow_skipped`. One more frame
//!   slot per camera is reserved for the frame the shadow holds, so the primary's queue keeps
//!   its full depth.
//! - `Deterministic` (replay at maximum speed): the shadow runs inline after each primary run
//!   on every frame, so its counts depend only on the bag. The primary's detections are the
//!   same with and without a shadow (`tests/shadow.rs`).
//!
//! Contract: [`ShadowWorker::new`] loads, checks (sha256) and warms the shadow model and
//! allocates its buffers; handing over, comparing and counting allocate nothing, never block
//! the inference loop, and a shadow failure (bad frame, failed run) is counted and logged once,
//! never reaching the primary.

pub mod agreement;
pub mod health;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use crate::config::ThresholdOverrides;
use crate::core::decode::Decoder;
use crate::core::detector::Detector;
use crate::core::postprocess::Detection;
use crate::runtime::capture::{CaptureTrigger, Reason};
use crate::runtime::counters::CameraCounters;
use crate::runtime::inference::{OutputSink, OutputSource, Sent, deliver, output_channel, view_of};
use crate::runtime::queue::Frame;
use agreement::{DisagreementWindow, Matcher};

/// `shadow.*`: a second model compared with the primary on the frames there is time for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// The shadow's model package manifest (unset: no shadow model).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Threshold overrides for the shadow (its manifest gives the defaults).
    #[serde(default)]
    pub thresholds: ThresholdOverrides,
    /// Publish the shadow's detections on `<camera namespace>/shadow/detections` (replay: write
    /// them to the output bag).
    #[serde(default)]
    pub publish: bool,
    /// Least IoU for a primary and a shadow detection of the same class to agree.
    #[serde(default = "default_match_iou")]
    pub match_iou: f64,
    /// Frames in each camera's sliding window of agreement.
    #[serde(default = "default_window_frames")]
    pub window_frames: u32,
    /// Frames the window must hold before disagreement is judged.
    #[serde(default = "default_min_frames")]
    pub min_frames: u32,
    /// Share of the window's frames that may disagree before /diagnostics WARNs.
    #[serde(default = "default_warn_disagreement")]
    pub warn_disagreement: f64,
}

fn default_match_iou() -> f64 {
    0.5
}
fn default_window_frames() -> u32 {
    100
}
fn default_min_frames() -> u32 {
    20
}
fn default_warn_disagreement() -> f64 {
    0.2
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            model: None,
            thresholds: ThresholdOverrides::default(),
            publish: false,
            match_iou: default_match_iou(),
            window_frames: default_window_frames(),
            min_frames: default_min_frames(),
            warn_disagreement: default_warn_disagreement(),
        }
    }
}

impl ShadowConfig {
    /// Checks the ranges; on error the key (under `shadow.`) and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.match_iou.is_finite() && self.match_iou > 0.0 && self.match_iou <= 1.0) {
            return Err(("match_iou", "must be within 0 (excluded)..1".into()));
        }
        if !(1..=100_000).contains(&self.window_frames) {
            return Err(("window_frames", "must be within 1..100000".into()));
        }
        if !(1..=self.window_frames).contains(&self.min_frames) {
            return Err(("min_frames", "must be within 1..window_frames".into()));
        }
        if !(self.warn_disagreement.is_finite() && (0.0..=1.0).contains(&self.warn_disagreement)) {
            return Err(("warn_disagreement", "must be within 0..1".into()));
        }
        Ok(())
    }
}

/// Why the shadow model has no result for a frame.
#[derive(Debug, thiserror::Error)]
enum ShadowFailure {
    /// The frame does not decode or is unusable.
    #[error(transparent)]
    Frame(crate::core::image::FrameError),
    /// Pre-processing or inference failed.
    #[error(transparent)]
    Detect(crate::core::detector::DetectError),
}

/// One camera as the shadow sees it.
pub struct ShadowCamera {
    /// Name (for logs).
    pub name: String,
    /// The camera's counters (the `shadow_*` ones are written here).
    pub counters: Arc<CameraCounters>,
    /// Decoder for compressed frames: `(max_width, max_height)`.
    pub decode_max: Option<(u32, u32)>,
}

/// The shadow model and what it needs to compare and publish.
pub struct ShadowWorker {
    detector: Detector,
    decoders: Vec<Option<Decoder>>,
    matcher: Matcher,
    windows: Vec<DisagreementWindow>,
    cameras: Vec<ShadowCamera>,
    sink: Option<OutputSink>,
    /// `(min_frames, warn_disagreement)`: when a camera's window disagrees too much.
    warn: (usize, f64),
    capture: Option<Arc<CaptureTrigger>>,
}

impl ShadowWorker {
    /// Builds the worker around an already loaded and warmed `detector` (one frame per run);
    /// with `publish`, also the channel its results go out on.
    pub fn new(
        detector: Detector,
        cameras: Vec<ShadowCamera>,
        config: &ShadowConfig,
        primary_max_detections: usize,
        publish: bool,
    ) -> (Self, Option<OutputSource>) {
        let max_detections = detector.postprocessor().thresholds().max_detections;
        let decoders = cameras
            .iter()
            .map(|c| c.decode_max.map(|(w, h)| Decoder::new(w, h)))
            .collect();
        let windows = cameras
            .iter()
            .map(|_| DisagreementWindow::new(config.window_frames as usize))
            .collect();
        let (sink, source) = if publish {
            let (sink, source) = output_channel(2 + cameras.len(), max_detections);
            (Some(sink), Some(source))
        } else {
            (None, None)
        };
        let worker = Self {
            detector,
            decoders,
            matcher: Matcher::new(
                max_detections.max(primary_max_detections),
                config.match_iou as f32,
            ),
            windows,
            cameras,
            sink,
            warn: (config.min_frames as usize, config.warn_disagreement),
            capture: None,
        };
        (worker, source)
    }

    /// Asks `trigger` for an incident capture when a camera's window disagrees more than
    /// `warn_disagreement`.
    pub fn with_capture(mut self, trigger: Arc<CaptureTrigger>) -> Self {
        self.capture = Some(trigger);
        self
    }

    /// Runs the shadow model on `frame` and compares its detections with `primary`'s.
    pub fn compare(&mut self, frame: &Frame, primary: &[Detection]) {
        let camera = frame.camera;
        let (Some(cam), Some(decoder), Some(window)) = (
            self.cameras.get(camera),
            self.decoders.get_mut(camera),
            self.windows.get_mut(camera),
        ) else {
            return;
        };
        let counters = &cam.counters;
        let dequeued = Instant::now();
        // Errors are kept as values (formatted only for the one failure that is logged).
        let result = match view_of(frame, decoder.as_mut()) {
            Ok((view, size)) => self
                .detector
                .detect_sized(&view, size, None)
                .map(|r| (r.detections, r.times, r.input, size))
                .map_err(ShadowFailure::Detect),
            Err(e) => Err(ShadowFailure::Frame(e)),
        };
        let (detections, times, input, image_size) = match result {
            Ok(r) => r,
            Err(failure) => {
                if counters.shadow_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(camera = %cam.name, error = %failure, "the shadow model failed on a frame (the primary is not affected; further failures are counted, not logged)");
                }
                return;
            }
        };
        let agreement = self.matcher.compare(primary, detections);
        window.push(agreement.disagrees());
        let (in_window, disagreeing) = window.counts();
        let add = |a: &std::sync::atomic::AtomicU64, n: u32| {
            a.fetch_add(u64::from(n), Ordering::Relaxed);
        };
        add(&counters.shadow_frames, 1);
        add(
            &counters.shadow_disagreeing,
            u32::from(agreement.disagrees()),
        );
        add(&counters.shadow_matched, agreement.matched);
        add(&counters.shadow_primary_only, agreement.primary_only);
        add(&counters.shadow_only, agreement.shadow_only);
        counters
            .shadow_window_frames
            .store(in_window as u64, Ordering::Relaxed);
        counters
            .shadow_window_disagreeing
            .store(disagreeing as u64, Ordering::Relaxed);
        if let Some(trigger) = &self.capture
            && in_window >= self.warn.0
            && disagreeing as f64 > self.warn.1 * in_window as f64
        {
            trigger.request(Reason::ShadowDisagreement, camera, frame.stamp.as_nanos());
        }
        if let Some(sink) = &self.sink {
            let sent = Sent {
                frame,
                image_size,
                times,
                input,
                age: Duration::ZERO,
                dequeued,
            };
            if !deliver(sink, &sent, detections) {
                counters
                    .shadow_dropped_output
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The shadow's detector (model, provider).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The `lookout-shadow` thread's body: compares each job's frame and sends the job back,
    /// until `stop` is set or the loop's end of the channel is gone.
    pub fn run(&mut self, jobs: &Receiver<ShadowJob>, back: &Sender<ShadowJob>, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let job = match jobs.recv_timeout(Duration::from_millis(100)) {
                Ok(job) => job,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            };
            if let Some(frame) = job.frame.as_ref() {
                self.compare(frame, &job.primary);
            }
            // The primary's detections go back with the frame (incident capture keeps both).
            if back.send(job).is_err() {
                return;
            }
        }
    }
}

/// A frame lent to the shadow thread with the primary's detections of it (one preallocated job
/// circulates between the loop and the thread).
pub struct ShadowJob {
    frame: Option<Frame>,
    primary: Vec<Detection>,
}

/// Where the shadow runs.
enum Place {
    /// On the loop's thread, after every primary run (deterministic replay).
    Inline(Box<ShadowWorker>),
    /// On `lookout-shadow`; `idle` holds the job while the thread has none.
    Thread {
        jobs: Sender<ShadowJob>,
        back: Receiver<ShadowJob>,
        idle: Option<ShadowJob>,
    },
}

/// The inference loop's side of the shadow: the hand-over of finished frames.
pub struct ShadowLink {
    place: Place,
}

/// The thread's side of a [`ShadowLink`] made with [`ShadowLink::threaded`].
pub struct ShadowThread {
    /// The worker.
    pub worker: ShadowWorker,
    /// Jobs from the loop.
    pub jobs: Receiver<ShadowJob>,
    /// Jobs back to the loop.
    pub back: Sender<ShadowJob>,
}

impl ShadowLink {
    /// The shadow runs inline on the loop's thread, on every frame.
    pub fn inline(worker: ShadowWorker) -> Self {
        Self {
            place: Place::Inline(Box::new(worker)),
        }
    }

    /// The shadow runs on a thread of its own (started by the runtime with the returned part);
    /// its job holds up to `max_detections` of the primary's detections.
    pub fn threaded(worker: ShadowWorker, max_detections: usize) -> (Self, ShadowThread) {
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(1);
        let (back_tx, back_rx) = crossbeam_channel::bounded(1);
        let link = Self {
            place: Place::Thread {
                jobs: jobs_tx,
                back: back_rx,
                idle: Some(ShadowJob {
                    frame: None,
                    primary: Vec::with_capacity(max_detections),
                }),
            },
        };
        let thread = ShadowThread {
            worker,
            jobs: jobs_rx,
            back: back_tx,
        };
        (link, thread)
    }

    /// A job the thread finished comes back: its frame and the primary's detections of it go
    /// to `done` (which keeps and recycles the frame).
    pub fn reclaim(&mut self, mut done: impl FnMut(Frame, &[Detection])) {
        if let Place::Thread { back, idle, .. } = &mut self.place
            && let Ok(mut job) = back.try_recv()
        {
            if let Some(frame) = job.frame.take() {
                done(frame, &job.primary);
            }
            *idle = Some(job);
        }
    }

    /// After a run: each frame `i` whose primary result was sent (`detections[i]` holds it
    /// when `sent[i]`) goes to the shadow: inline, every one; to the thread, the first while it
    /// is idle, with its slot (`frames[i]` becomes `None`, and `detections[i]` is swapped with
    /// the job's buffer). Frames the shadow cannot take are counted as skipped.
    pub fn offer(
        &mut self,
        frames: &mut [Option<Frame>],
        detections: &mut [Vec<Detection>],
        sent: &[bool],
        counters: &[Arc<CameraCounters>],
    ) {
        for (i, slot) in frames.iter_mut().enumerate() {
            if !sent.get(i).copied().unwrap_or(false) {
                continue;
            }
            let (Some(camera), Some(primary)) =
                (slot.as_ref().map(|f| f.camera), detections.get_mut(i))
            else {
                continue;
            };
            match &mut self.place {
                Place::Inline(worker) => {
                    if let Some(frame) = slot.as_ref() {
                        worker.compare(frame, primary);
                    }
                }
                Place::Thread { jobs, idle, .. } => {
                    let handed = match idle.take() {
                        Some(mut job) => {
                            job.frame = slot.take();
                            std::mem::swap(&mut job.primary, primary);
                            match jobs.try_send(job) {
                                Ok(()) => true,
                                Err(TrySendError::Full(mut job))
                                | Err(TrySendError::Disconnected(mut job)) => {
                                    *slot = job.frame.take();
                                    std::mem::swap(&mut job.primary, primary);
                                    *idle = Some(job);
                                    false
                                }
                            }
                        }
                        None => false,
                    };
                    if !handed && let Some(c) = counters.get(camera) {
                        c.shadow_skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}
