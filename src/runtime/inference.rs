//! The inference loop: one thread that takes frames from every camera's ring in a deterministic
//! order, runs the [`Detector`] on them and hands results to the publishing side.
//!
//! ```text
//! FrameConsumer (per camera) ──► Scheduler ──► decode? ──► Detector ──► Output ──► OutputSink
//!            ▲                                                               │      (bounded)
//!            └──────────────── frame slot recycled ◄────────────────────────┘
//! ```
//!
//! Results travel in preallocated [`Output`] buffers through a bounded `crossbeam-channel` to
//! the publishing thread, which returns them through a second bounded channel. If the publishing
//! side holds every buffer, the result is dropped and counted (`dropped_output`); the loop never
//! waits for it.
//!
//! Contract: [`InferenceLoop::new`] takes an already built [`Detector`] and allocates the decoders
//! and output buffers. [`InferenceLoop::step`] processes at most one inference run (one frame, or
//! one frame per camera with a batching engine) and allocates nothing
//! for raw frames (compressed frames allocate inside the codec); it blocks only for the
//! inference. Bad input and inference errors are counted, logged once per camera and kind, and
//! the loop goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::core::decode::Decoder;
use crate::core::detector::{BatchFrame, DetectError, Detector, StageTimes};
use crate::core::engine::{EngineError, RunControl};
use crate::core::image::{FrameError, ImageView};
use crate::core::input_health::InputStats;
use crate::core::model::MAX_BATCH;
use crate::core::postprocess::Detection;
use crate::runtime::capture::{CaptureTap, CaptureTrigger, Reason};
use crate::runtime::counters::{BadInputKind, CameraCounters, EngineCounters};
use crate::runtime::deadline::{
    Admission, DeadlineMonitor, DeadlineSettings, LatencyStats, RosClock, StatsSnapshot, Verdict,
    frame_age,
};
use crate::runtime::drift::{DetectionCounts, DriftConfig, DriftMonitor};
use crate::runtime::input_health::{InputHealthConfig, InputMonitor};
use crate::runtime::queue::{Frame, FrameConsumer, FrameFormat, Stamp};
use crate::runtime::scheduler::Scheduler;
use crate::runtime::shadow::ShadowLink;
use crate::runtime::swap::SwapSlot;

/// One frame's detections on their way to the publisher (a recycled, preallocated buffer).
#[derive(Debug)]
pub struct Output {
    /// Camera index.
    pub camera: usize,
    /// Arrival number of the frame on its camera.
    pub seq: u64,
    /// Header stamp of the frame, unchanged.
    pub stamp: Stamp,
    /// Frame size in pixels.
    pub image_width: u32,
    /// Frame size in pixels.
    pub image_height: u32,
    /// Stage durations.
    pub times: StageTimes,
    /// Transport received the frame.
    pub received: Instant,
    /// Frame entered its ring.
    pub enqueued: Instant,
    /// Inference loop took the frame.
    pub dequeued: Instant,
    /// Post-processing finished.
    pub finished: Instant,
    /// Age of the frame (ROS time, now - stamp) when the loop took it.
    pub age: Duration,
    /// What the picture looked like (measured on the input tensor).
    pub input: InputStats,
    frame_id: String,
    detections: Vec<Detection>,
}

impl Output {
    fn new(max_detections: usize) -> Self {
        let now = Instant::now();
        Self {
            camera: 0,
            seq: 0,
            stamp: Stamp::default(),
            image_width: 0,
            image_height: 0,
            times: StageTimes::default(),
            received: now,
            enqueued: now,
            dequeued: now,
            finished: now,
            age: Duration::ZERO,
            input: InputStats::default(),
            frame_id: String::with_capacity(crate::runtime::queue::FRAME_ID_CAPACITY),
            detections: Vec::with_capacity(max_detections),
        }
    }

    /// Header `frame_id` of the frame, unchanged.
    pub fn frame_id(&self) -> &str {
        &self.frame_id
    }

    /// Detections, best score first, in image pixels.
    pub fn detections(&self) -> &[Detection] {
        &self.detections
    }
}

/// The inference loop's end of the output channel.
pub struct OutputSink {
    tx: Sender<Output>,
    free: Receiver<Output>,
}

/// The publisher's end of the output channel.
pub struct OutputSource {
    rx: Receiver<Output>,
    free: Sender<Output>,
}

/// Creates the output channel with `buffers` preallocated outputs of `max_detections` each.
pub fn output_channel(buffers: usize, max_detections: usize) -> (OutputSink, OutputSource) {
    let (tx, rx) = crossbeam_channel::bounded(buffers);
    let (free_tx, free_rx) = crossbeam_channel::bounded(buffers);
    for _ in 0..buffers {
        // Cannot fail: the channel holds exactly `buffers`.
        let _ = free_tx.try_send(Output::new(max_detections));
    }
    (
        OutputSink { tx, free: free_rx },
        OutputSource { rx, free: free_tx },
    )
}

impl OutputSource {
    /// Waits up to `timeout` for the next result. `Err(true)` when the loop has stopped and every
    /// result was taken, `Err(false)` on timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Output, bool> {
        self.rx
            .recv_timeout(timeout)
            .map_err(|e| e.is_disconnected())
    }

    /// Whether no result is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Takes the next result if one is ready.
    pub fn try_recv(&self) -> Option<Output> {
        self.rx.try_recv().ok()
    }

    /// Returns a buffer to the loop.
    pub fn recycle(&self, output: Output) {
        let _ = self.free.try_send(output);
    }
}

/// What one [`InferenceLoop::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No frame was queued.
    Idle,
    /// A frame was processed (its result sent, or dropped and counted if the sink was full).
    Processed,
    /// No frame was queued: the step ran one warm-up inference of a model waiting to be swapped
    /// in (a loop that is never idle runs them after frames instead, see
    /// [`crate::runtime::swap::STARVED_AFTER`]).
    WarmedUp,
    /// A frame was rejected as bad input, was too old, or its inference failed or timed out
    /// (counted).
    Failed,
}

/// The single inference thread's state.
pub struct InferenceLoop {
    detector: Detector,
    cameras: Vec<FrameConsumer>,
    counters: Vec<Arc<CameraCounters>>,
    names: Vec<String>,
    decoders: Vec<Option<Decoder>>,
    monitors: Vec<DeadlineMonitor>,
    hard_timeouts: Vec<Option<Duration>>,
    clock: RosClock,
    sink: OutputSink,
    scheduler: Scheduler,
    /// Test hook: panic after this many frames ([`crate::runtime::supervise::fault_infer_panic_after`]).
    fault_after_frames: Option<u64>,
    /// Test hook: runs still to fail ([`crate::runtime::supervise::fault_run_failures`]).
    fault_run_failures: u64,
    /// Test hook: a frame held up ([`crate::runtime::supervise::fault_slow_frame`]).
    fault_slow_frame: Option<(u64, Duration)>,
    frames_taken: u64,
    rebuild: SessionRebuild,
    /// The shadow model's hand-over (None: no shadow model).
    shadow: Option<ShadowLink>,
    /// Incident capture's tap (None: no capture).
    capture: Option<CaptureTap>,
    /// Per frame of the current run: its primary detections, kept for the shadow and the
    /// capture (empty when neither is on).
    kept: Vec<Vec<Detection>>,
    /// Per frame of the current run: whether `kept` holds its result.
    sent: [bool; MAX_BATCH],
    /// A new model swapped in between two runs (None: no hot swap).
    swap: Option<SwapSlot>,
}

/// When to rebuild the ONNX Runtime session: after `after` runs in a row failed (an error from
/// ONNX Runtime; hard timeouts neither count nor break the row), then, while
/// rebuilding does not cure it, after twice as many each time (up to 64 times), so a
/// persistent fault does not spend the inference thread on session builds.
struct SessionRebuild {
    after: u32,
    threshold: u32,
    failures_in_a_row: u32,
    counters: Arc<EngineCounters>,
}

impl SessionRebuild {
    fn new(after: u32, counters: Arc<EngineCounters>) -> Self {
        Self {
            after,
            threshold: after,
            failures_in_a_row: 0,
            counters,
        }
    }

    fn succeeded(&mut self) {
        self.failures_in_a_row = 0;
        self.threshold = self.after;
    }

    /// Notes a failed run; true when the session should be rebuilt now.
    fn failed(&mut self) -> bool {
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        self.after > 0 && self.failures_in_a_row >= self.threshold
    }

    /// Rebuilds `detector`'s session (allocates and blocks: a fault path), counts and logs it.
    fn rebuild(&mut self, detector: &mut Detector) {
        let failed_runs = self.failures_in_a_row;
        self.failures_in_a_row = 0;
        self.threshold = self
            .threshold
            .saturating_mul(2)
            .min(self.after.saturating_mul(64));
        let started = Instant::now();
        match detector.rebuild_engine() {
            Ok(()) => {
                let n = self
                    .counters
                    .session_rebuilds
                    .fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    tracing::warn!(
                        failed_runs,
                        execution_provider = detector.execution_provider().as_str(),
                        took_ms = started.elapsed().as_millis() as u64,
                        "ONNX Runtime session rebuilt after inference runs failed in a row (further rebuilds are counted on /diagnostics, not logged)"
                    );
                }
            }
            Err(e) => {
                let n = self
                    .counters
                    .rebuild_failures
                    .fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    tracing::error!(failed_runs, error = %e, "rebuilding the ONNX Runtime session failed; the old session stays (further failures are counted, not logged)");
                }
            }
        }
    }
}

/// One camera as the loop sees it.
pub struct LoopCamera {
    /// Name (for logs).
    pub name: String,
    /// Its ring's consumer end.
    pub consumer: FrameConsumer,
    /// Its counters.
    pub counters: Arc<CameraCounters>,
    /// Decoder for compressed frames (`Some` for compressed cameras): `(max_width, max_height)`.
    pub decode_max: Option<(u32, u32)>,
    /// Decode JPEGs at a reduced scale where possible (see [`Decoder::with_tensor_size`]).
    pub jpeg_reduced_scale: bool,
    /// Budget, maximum age and late policy.
    pub deadline: DeadlineSettings,
    /// Hard inference timeout.
    pub hard_timeout: Option<Duration>,
    /// Share of inference runs under overload, relative to the other cameras' weights.
    pub weight: u32,
}

impl LoopCamera {
    /// Camera `name` as configured: a decoder for compressed input, the configured deadlines
    /// and hard timeout.
    pub fn from_config(
        name: &str,
        consumer: FrameConsumer,
        counters: Arc<CameraCounters>,
        cam: &crate::config::CameraConfig,
    ) -> Self {
        Self {
            name: name.to_string(),
            consumer,
            counters,
            decode_max: (cam.kind == crate::config::ImageKind::Compressed)
                .then_some((cam.max_width, cam.max_height)),
            jpeg_reduced_scale: cam.jpeg_reduced_scale,
            deadline: cam.deadline(),
            hard_timeout: cam.hard_timeout(),
            weight: cam.weight,
        }
    }
}

impl InferenceLoop {
    /// Builds the loop; allocates decoders for compressed cameras. Frame ages are measured on
    /// `clock`.
    pub fn new(
        detector: Detector,
        cameras: Vec<LoopCamera>,
        sink: OutputSink,
        clock: RosClock,
    ) -> Self {
        let mut consumers = Vec::with_capacity(cameras.len());
        let mut counters = Vec::with_capacity(cameras.len());
        let mut names = Vec::with_capacity(cameras.len());
        let mut decoders = Vec::with_capacity(cameras.len());
        let mut monitors = Vec::with_capacity(cameras.len());
        let mut hard_timeouts = Vec::with_capacity(cameras.len());
        let scheduler = Scheduler::new(cameras.iter().map(|c| c.weight));
        let input = &detector.model().manifest.input;
        let tensor = (input.width() as u32, input.height() as u32);
        // JPEGs are decoded on as many threads as pre-processing runs on.
        let threads = detector.preprocess_threads();
        for c in cameras {
            consumers.push(c.consumer);
            counters.push(c.counters);
            names.push(c.name);
            decoders.push(c.decode_max.map(|(w, h)| {
                let decoder = Decoder::new(w, h).with_threads(threads);
                if c.jpeg_reduced_scale {
                    decoder.with_tensor_size(tensor.0, tensor.1)
                } else {
                    decoder
                }
            }));
            monitors.push(DeadlineMonitor::new(c.deadline));
            hard_timeouts.push(c.hard_timeout);
        }
        Self {
            detector,
            cameras: consumers,
            counters,
            names,
            decoders,
            monitors,
            hard_timeouts,
            clock,
            sink,
            scheduler,
            fault_after_frames: crate::runtime::supervise::fault_infer_panic_after(),
            fault_run_failures: crate::runtime::supervise::fault_run_failures(),
            fault_slow_frame: crate::runtime::supervise::fault_slow_frame(),
            frames_taken: 0,
            rebuild: SessionRebuild::new(0, Arc::default()),
            shadow: None,
            capture: None,
            kept: Vec::new(),
            sent: [false; MAX_BATCH],
            swap: None,
        }
    }

    /// Rebuilds the ONNX Runtime session after `after` inference runs in a row failed (0:
    /// never), counting rebuilds in `counters`.
    pub fn with_session_rebuild(mut self, after: u32, counters: Arc<EngineCounters>) -> Self {
        self.rebuild = SessionRebuild::new(after, counters);
        self
    }

    /// Hands the frames there is time for to a shadow model after their primary results are
    /// sent ([`crate::runtime::shadow`]).
    pub fn with_shadow(mut self, link: ShadowLink) -> Self {
        self.shadow = Some(link);
        self.keep_detections();
        self
    }

    /// Keeps every finished frame and its detections for incident capture
    /// ([`crate::runtime::capture`]).
    pub fn with_capture(mut self, tap: CaptureTap) -> Self {
        self.capture = Some(tap);
        self.keep_detections();
        self
    }

    /// Takes a new model between two runs when the runtime's loader has one ready
    /// ([`crate::runtime::swap`]).
    pub fn with_swap(mut self, slot: SwapSlot) -> Self {
        self.swap = Some(slot);
        self
    }

    /// Allocates the per-run copies of the primary's detections.
    fn keep_detections(&mut self) {
        if self.kept.is_empty() {
            let max = self.detector.postprocessor().thresholds().max_detections;
            self.kept = (0..MAX_BATCH).map(|_| Vec::with_capacity(max)).collect();
        }
    }

    /// The engine's run control, for [`watchdog`].
    pub fn run_control(&self) -> RunControl {
        self.detector.run_control()
    }

    /// The detector (model, provider).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Runs until `stop` is set, parking up to `idle_wait` when no frame is queued (producers
    /// unpark this thread on every frame).
    pub fn run(&mut self, stop: &AtomicBool, idle_wait: Duration) {
        while !stop.load(Ordering::Relaxed) {
            if self.step() == Step::Idle {
                std::thread::park_timeout(idle_wait);
            }
        }
    }

    /// Most frames one step infers together (the engine's batch, at most one per camera).
    pub fn batch(&self) -> usize {
        self.detector
            .batch()
            .min(self.cameras.len())
            .clamp(1, MAX_BATCH)
    }

    /// Processes the next frames the [`Scheduler`] picks, if any: one frame, or with a batching
    /// engine up to [`Self::batch`] frames of different cameras in one inference run.
    pub fn step(&mut self) -> Step {
        let mut frames: [Option<Frame>; MAX_BATCH] = Default::default();
        if let Some(slot) = self.swap.as_mut()
            && slot.poll(&mut self.detector)
        {
            let input = &self.detector.model().manifest.input;
            let (w, h) = (input.width() as u32, input.height() as u32);
            for decoder in self.decoders.iter_mut().flatten() {
                decoder.retarget(w, h);
            }
        }
        if let Some(shadow) = self.shadow.as_mut() {
            let (cameras, capture) = (&mut self.cameras, &self.capture);
            shadow.reclaim(|mut frame, detections| {
                if let Some(tap) = capture {
                    tap.keep(&mut frame, Some(detections));
                }
                if let Some(c) = cameras.get_mut(frame.camera) {
                    c.recycle(frame);
                }
            });
        }
        self.sent = [false; MAX_BATCH];
        let batch = self.batch();
        let taken = self
            .scheduler
            .next_batch(&mut self.cameras, &mut frames[..batch]);
        if taken == 0 {
            if let Some(slot) = self.swap.as_mut()
                && slot.warm_up(true)
            {
                return Step::WarmedUp;
            }
            return Step::Idle;
        }
        let before = self.frames_taken;
        self.frames_taken += taken as u64;
        if let Some(n) = self.fault_after_frames
            && before < n
            && self.frames_taken >= n
        {
            // Injected fault (LOOKOUT_FAULT_INFER_PANIC_AFTER): tests that a dead inference
            // thread stops the node instead of leaving it running headless.
            panic!("injected fault: inference thread panics after {n} frames");
        }
        let dequeued = Instant::now();
        if let Some((n, delay)) = self.fault_slow_frame
            && before < n
            && self.frames_taken >= n
        {
            // Injected fault (LOOKOUT_FAULT_SLOW_FRAME): a deadline miss where a test wants it.
            std::thread::sleep(delay);
        }
        let result = self.process(&frames[..taken], dequeued);
        if let Some(shadow) = self.shadow.as_mut() {
            shadow.offer(
                &mut frames[..taken],
                &mut self.kept,
                &self.sent,
                &self.counters,
            );
        }
        for (i, slot) in frames.iter_mut().enumerate() {
            let Some(mut frame) = slot.take() else {
                continue;
            };
            if let Some(tap) = &self.capture {
                let detections = self.kept.get(i).filter(|_| self.sent[i]);
                tap.keep(&mut frame, detections.map(Vec::as_slice));
            }
            self.cameras[frame.camera].recycle(frame);
        }
        // A loop that is never idle warms a new model up anyway: one run after each frame step
        // once it has waited `STARVED_AFTER`, never two in a row.
        if let Some(slot) = self.swap.as_mut() {
            slot.warm_up(false);
        }
        result
    }

    /// Admits, decodes and infers `frames` (one per camera) in one run, and sends each result.
    fn process(&mut self, frames: &[Option<Frame>], dequeued: Instant) -> Step {
        let mut inputs: [Option<BatchFrame<'_>>; MAX_BATCH] = [None; MAX_BATCH];
        let mut ages = [Duration::ZERO; MAX_BATCH];
        let mut decode_times = [Duration::ZERO; MAX_BATCH];
        let mut timeout: Option<Duration> = None;
        // One decoder per camera and at most one frame per camera: each frame borrows its own.
        for (camera, decoder) in self.decoders.iter_mut().enumerate() {
            let Some((i, frame)) = frames
                .iter()
                .enumerate()
                .find_map(|(i, f)| f.as_ref().filter(|f| f.camera == camera).map(|f| (i, f)))
            else {
                continue;
            };
            let counters = &self.counters[camera];
            // Age in ROS time; unknown (sim time before the first /clock) admits the frame.
            if let Some(now) = self.clock.now_ns() {
                let (age, anomaly) = frame_age(now, frame.stamp.as_nanos());
                ages[i] = age;
                if anomaly {
                    counters.clock_anomalies.fetch_add(1, Ordering::Relaxed);
                }
                if self.monitors[camera].admit(age) == Admission::TooOld {
                    counters.dropped_too_old.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            // Decoding a compressed frame is part of its pre-processing stage.
            let decode_started = Instant::now();
            match view_of(frame, decoder.as_mut()) {
                Ok((view, image_size)) => {
                    inputs[i] = Some(BatchFrame { view, image_size });
                    decode_times[i] = decode_started.elapsed();
                    if let Some(t) = self.hard_timeouts[camera] {
                        timeout = Some(timeout.map_or(t, |u| u.min(t)));
                    }
                }
                Err(e) => {
                    let first = counters.bad(BadInputKind::of(&e));
                    crate::runtime::counters::warn_bad_input(&self.names[camera], &e, first);
                }
            }
        }
        let runnable = &inputs[..frames.len()];
        if runnable.iter().all(Option::is_none) {
            return Step::Failed;
        }
        let mut processed = false;
        let detected = if self.fault_run_failures > 0 {
            self.fault_run_failures -= 1;
            Err(DetectError::Engine(EngineError::Run {
                reason: "injected fault (LOOKOUT_FAULT_RUN_FAILURES)".into(),
            }))
        } else {
            let (counters, sink) = (&self.counters, &self.sink);
            let (kept, sent_flags) = (&mut self.kept, &mut self.sent);
            self.detector.detect_batch(runnable, timeout, |i, result| {
                let (Some(frame), Some(input)) = (frames[i].as_ref(), runnable[i].as_ref()) else {
                    return;
                };
                let mut times = result.times;
                times.preprocess += decode_times[i];
                let sent = Sent {
                    frame,
                    image_size: input.image_size,
                    times,
                    input: result.input,
                    age: ages[i],
                    dequeued,
                };
                send(&counters[frame.camera], sink, &sent, result.detections);
                if let (Some(buf), Some(flag)) = (kept.get_mut(i), sent_flags.get_mut(i)) {
                    buf.clear();
                    let room = buf.capacity();
                    buf.extend_from_slice(&result.detections[..result.detections.len().min(room)]);
                    *flag = true;
                }
                processed = true;
            })
        };
        let mut run_failed = false;
        match detected {
            Ok(_) => {
                self.rebuild.succeeded();
                self.rebuild
                    .counters
                    .inference_runs
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(DetectError::Engine(e @ EngineError::Timeout { .. })) => {
                for (camera, stamp) in runnable_frames(frames, runnable) {
                    if let Some(tap) = &self.capture {
                        tap.timed_out(camera, stamp.as_nanos());
                    }
                    let counters = &self.counters[camera];
                    counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    if counters.first_timeout() {
                        tracing::error!(camera = %self.names[camera], error = %e, "inference terminated (further timeouts are counted, not logged)");
                    }
                }
            }
            Err(e) => {
                run_failed = true;
                for camera in runnable_cameras(frames, runnable) {
                    let counters = &self.counters[camera];
                    counters.inference_errors.fetch_add(1, Ordering::Relaxed);
                    if counters.first_inference_error() {
                        tracing::error!(camera = %self.names[camera], error = %e, "inference failed (further failures are counted, not logged)");
                    }
                }
            }
        }
        // A run that failed. Not a hard timeout: that is the camera's budget, which a new
        // session would not change (the count stays as it is); nor bad input or age drops.
        if run_failed && self.rebuild.failed() {
            self.rebuild.rebuild(&mut self.detector);
        }
        if processed {
            Step::Processed
        } else {
            Step::Failed
        }
    }

    /// Whether every ring is empty (used by replay to know when it is done).
    pub fn is_drained(&mut self) -> bool {
        self.cameras.iter().all(|c| c.queued() == 0)
    }
}

/// A frame's pixels: its raw view, or the view its camera's decoder decoded, with the size of
/// the image it shows.
pub(crate) fn view_of<'a>(
    frame: &'a Frame,
    decoder: Option<&'a mut Decoder>,
) -> Result<(ImageView<'a>, (u32, u32)), FrameError> {
    match (frame.format, decoder) {
        (FrameFormat::Compressed(format), Some(decoder)) => {
            decoder.decode_sized(frame.data(), format)
        }
        // The transports never put a compressed frame on a raw camera's ring.
        (FrameFormat::Compressed(_), None) => Err(FrameError::UnsupportedFormat),
        (FrameFormat::Raw { .. }, _) => match frame.raw_view() {
            Some(v) => v.map(|v| (v, (v.width(), v.height()))),
            None => Err(FrameError::UnsupportedEncoding),
        },
    }
}

/// The cameras and stamps of the frames that went into a run.
fn runnable_frames<'a>(
    frames: &'a [Option<Frame>],
    runnable: &'a [Option<BatchFrame<'_>>],
) -> impl Iterator<Item = (usize, Stamp)> + 'a {
    frames
        .iter()
        .zip(runnable)
        .filter_map(|(f, r)| r.and(f.as_ref()).map(|f| (f.camera, f.stamp)))
}

/// The cameras of the frames that went into a run.
fn runnable_cameras<'a>(
    frames: &'a [Option<Frame>],
    runnable: &'a [Option<BatchFrame<'_>>],
) -> impl Iterator<Item = usize> + 'a {
    frames
        .iter()
        .zip(runnable)
        .filter_map(|(f, r)| r.and(f.as_ref()).map(|f| f.camera))
}

/// What is sent with one frame's detections.
pub(crate) struct Sent<'a> {
    pub(crate) frame: &'a Frame,
    pub(crate) image_size: (u32, u32),
    pub(crate) times: StageTimes,
    pub(crate) input: InputStats,
    pub(crate) age: Duration,
    pub(crate) dequeued: Instant,
}

/// Counts a processed frame and sends its result in a free output buffer (dropped and counted
/// when the publisher holds every buffer or has gone).
fn send(counters: &CameraCounters, sink: &OutputSink, sent: &Sent<'_>, detections: &[Detection]) {
    let times = sent.times;
    counters.processed.fetch_add(1, Ordering::Relaxed);
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    counters
        .preprocess_ns
        .fetch_add(nanos(times.preprocess), Ordering::Relaxed);
    counters
        .inference_ns
        .fetch_add(nanos(times.inference), Ordering::Relaxed);
    counters
        .postprocess_ns
        .fetch_add(nanos(times.postprocess), Ordering::Relaxed);
    if !deliver(sink, sent, detections) {
        counters.dropped_output.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends one frame's result in a free output buffer of `sink`; false when none was free or the
/// receiving side has gone (the caller counts the drop).
pub(crate) fn deliver(sink: &OutputSink, sent: &Sent<'_>, detections: &[Detection]) -> bool {
    let Ok(mut out) = sink.free.try_recv() else {
        return false;
    };
    let frame = sent.frame;
    out.camera = frame.camera;
    out.seq = frame.seq;
    out.stamp = frame.stamp;
    (out.image_width, out.image_height) = sent.image_size;
    out.times = sent.times;
    out.received = frame.received;
    out.enqueued = frame.enqueued;
    out.dequeued = sent.dequeued;
    out.age = sent.age;
    out.input = sent.input;
    out.frame_id.clear();
    out.frame_id.push_str(frame.frame_id());
    out.detections.clear();
    let room = out.detections.capacity();
    out.detections
        .extend_from_slice(&detections[..detections.len().min(room)]);
    out.finished = Instant::now();
    // Cannot be full (as many places as buffers); a disconnected receiver is a drop.
    sink.tx.try_send(out).is_ok()
}

/// The hard-timeout watchdog: sleeps until the current run's deadline and terminates the run if
/// it is still going then. Runs until `stop`; woken by the engine whenever a run with a deadline
/// starts. Allocates nothing.
pub fn watchdog(control: &RunControl, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match control.current() {
            None => std::thread::park_timeout(Duration::from_millis(100)),
            Some((seq, deadline)) => {
                let now = Instant::now();
                if now >= deadline {
                    control.terminate(seq);
                    // Wait for the run to end before looking again.
                    std::thread::park_timeout(Duration::from_millis(1));
                } else {
                    std::thread::park_timeout(deadline - now);
                }
            }
        }
    }
}

/// Starts the `lookout-watchdog` thread on `control` until `stop`, and registers it with the
/// engine so that each run with a deadline wakes it (without the registration a deadline is
/// noticed only at the watchdog's next 100 ms poll). The one way the live node and replay start it.
pub fn spawn_watchdog(
    control: &RunControl,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let watched = control.clone();
    let handle = std::thread::Builder::new()
        .name("lookout-watchdog".into())
        .spawn(move || watchdog(&watched, &stop))?;
    control.set_watchdog(handle.thread().clone());
    Ok(handle)
}

/// Per-camera statistics and deadline decisions on the publishing side: one instance, owned by
/// the thread that publishes results (live) or writes them (replay).
///
/// Contract: allocates its histograms in `new()`; [`ResultTracker::judge`] and
/// [`ResultTracker::snapshot`] allocate nothing and never block.
pub struct ResultTracker {
    monitors: Vec<DeadlineMonitor>,
    counters: Vec<Arc<CameraCounters>>,
    /// Per camera: queue, preprocess, inference, postprocess, age, e2e.
    stats: Vec<[LatencyStats; 6]>,
    /// Per camera: the picture's conditions.
    inputs: Vec<InputMonitor>,
    /// Per camera: the detections against the drift profile (empty: no profile).
    drifts: Vec<DriftMonitor>,
    /// Incident capture, asked for on a deadline miss, an input ERROR or drift (None: off).
    capture: Option<Arc<CaptureTrigger>>,
    /// Per camera: the stamp of the last result judged, ns.
    last_stamp_ns: Vec<i64>,
}

impl ResultTracker {
    /// Allocates statistics for `cameras` (deadline settings and counters per camera) with a
    /// sliding window of `window`.
    pub fn new(
        cameras: Vec<(DeadlineSettings, Arc<CameraCounters>)>,
        window: Duration,
    ) -> Result<Self, hdrhistogram::CreationError> {
        let mut monitors = Vec::with_capacity(cameras.len());
        let mut counters = Vec::with_capacity(cameras.len());
        let mut stats = Vec::with_capacity(cameras.len());
        for (settings, c) in cameras {
            monitors.push(DeadlineMonitor::new(settings));
            counters.push(c);
            let s = [
                LatencyStats::new(window)?,
                LatencyStats::new(window)?,
                LatencyStats::new(window)?,
                LatencyStats::new(window)?,
                LatencyStats::new(window)?,
                LatencyStats::new(window)?,
            ];
            stats.push(s);
        }
        let inputs = vec![InputMonitor::new(InputHealthConfig::default()); stats.len()];
        Ok(Self {
            monitors,
            counters,
            stats,
            last_stamp_ns: vec![0; inputs.len()],
            inputs,
            drifts: Vec::new(),
            capture: None,
        })
    }

    /// Asks `trigger` for an incident capture on a deadline miss, an input-health ERROR and
    /// drift (each as `capture.triggers` allows).
    pub fn with_capture(mut self, trigger: Arc<CaptureTrigger>) -> Self {
        self.capture = Some(trigger);
        self
    }

    /// Compares every camera's detections with `profile` (counts by class id) under `config`.
    pub fn with_drift(mut self, config: DriftConfig, profile: &DetectionCounts) -> Self {
        self.drifts = vec![DriftMonitor::new(config, profile.clone()); self.stats.len()];
        self
    }

    /// Judges every camera's picture with `config` (default: [`InputHealthConfig::default`]).
    pub fn with_input_health(mut self, config: InputHealthConfig) -> Self {
        self.inputs
            .iter_mut()
            .for_each(|m| *m = InputMonitor::new(config));
        self
    }

    /// Records `out`'s timings and decides, at `now` (just before publishing), whether it is on
    /// time. Misses and late drops are counted.
    pub fn judge(&mut self, out: &Output, now: Instant) -> Verdict {
        let Some(stats) = self.stats.get_mut(out.camera) else {
            return Verdict::OnTime;
        };
        let e2e = now.saturating_duration_since(out.received);
        let queue = out.dequeued.saturating_duration_since(out.enqueued);
        for (s, v) in stats.iter_mut().zip([
            queue,
            out.times.preprocess,
            out.times.inference,
            out.times.postprocess,
            out.age,
            e2e,
        ]) {
            s.record(now, v);
        }
        let stamp_ns = out.stamp.as_nanos();
        if let Some(m) = self.inputs.get_mut(out.camera) {
            m.update(&out.input);
            if let Some(trigger) = &self.capture
                && m.snapshot().active().any(|c| c.is_error())
            {
                trigger.request(Reason::InputError, out.camera, stamp_ns);
            }
        }
        if let Some(last) = self.last_stamp_ns.get_mut(out.camera) {
            *last = stamp_ns;
        }
        if let Some(d) = self.drifts.get_mut(out.camera) {
            d.update(&out.detections, out.image_width, out.image_height);
        }
        let verdict = self.monitors[out.camera].verdict(e2e);
        if verdict != Verdict::OnTime
            && let Some(trigger) = &self.capture
        {
            trigger.request(Reason::DeadlineMiss, out.camera, stamp_ns);
        }
        let c = &self.counters[out.camera];
        match verdict {
            Verdict::OnTime => {}
            Verdict::LatePublish => {
                c.deadline_misses.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::LateDrop => {
                c.deadline_misses.fetch_add(1, Ordering::Relaxed);
                c.dropped_late.fetch_add(1, Ordering::Relaxed);
            }
        }
        verdict
    }

    /// The statistics of `camera` now (window percentiles rotate with time even without frames).
    pub fn snapshot(&mut self, camera: usize, now: Instant) -> StatsSnapshot {
        let Some(stats) = self.stats.get_mut(camera) else {
            return StatsSnapshot::default();
        };
        for s in stats.iter_mut() {
            s.rotate(now);
        }
        let [queue, pre, inf, post, age, e2e] = stats;
        let drift = self
            .drifts
            .get_mut(camera)
            .map(DriftMonitor::snapshot)
            .unwrap_or_default();
        if let Some(trigger) = &self.capture
            && (drift.collapsed || drift.surged || drift.class_drift || drift.score_drift)
        {
            let stamp = self.last_stamp_ns.get(camera).copied().unwrap_or(0);
            trigger.request(Reason::Drift, camera, stamp);
        }
        StatsSnapshot {
            queue: queue.window(),
            preprocess: pre.window(),
            inference: inf.window(),
            postprocess: post.window(),
            age: age.window(),
            e2e: e2e.window(),
            e2e_total: e2e.total(),
            inference_total: inf.total(),
            preprocess_total: pre.total(),
            postprocess_total: post.total(),
            input: self
                .inputs
                .get(camera)
                .map(InputMonitor::snapshot)
                .unwrap_or_default(),
            drift,
        }
    }

    /// Cameras tracked.
    pub fn cameras(&self) -> usize {
        self.stats.len()
    }
}
