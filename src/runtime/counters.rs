//! Per-camera counters, defined once: every front end, the inference loop, health and the
//! reports read these, and [`CounterSnapshot`] derives the sums they report (`dropped`,
//! `settled_in_loop`) in one place. Atomics, written by the thread that sees the event and read
//! by anyone; nothing here allocates or blocks.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::core::image::FrameError;

/// Kinds of bad input, each logged once per camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum BadInputKind {
    /// Unsupported pixel encoding.
    Encoding = 0,
    /// Width, height, step and data length disagree.
    Geometry = 1,
    /// Larger than the slot (`max_width x max_height`).
    TooLarge = 2,
    /// Compressed format not JPEG/PNG, or the stream does not decode.
    Compressed = 3,
    /// `frame_id` longer than [`FRAME_ID_CAPACITY`](crate::runtime::queue::FRAME_ID_CAPACITY).
    FrameId = 4,
    /// The serialized message does not decode (replay: malformed CDR in the bag).
    Malformed = 5,
}

impl BadInputKind {
    /// Classifies a frame error.
    pub fn of(e: &FrameError) -> Self {
        match e {
            FrameError::UnsupportedEncoding => Self::Encoding,
            FrameError::Empty { .. }
            | FrameError::OddSize { .. }
            | FrameError::StepTooSmall { .. }
            | FrameError::DataTooShort { .. } => Self::Geometry,
            FrameError::TooLarge { .. } => Self::TooLarge,
            FrameError::Decode { .. } | FrameError::UnsupportedFormat => Self::Compressed,
            FrameError::FrameIdTooLong { .. } => Self::FrameId,
        }
    }
}

/// A frame the producer refused: why, and whether it is the first of its kind on this camera
/// (log it then; later ones are only counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Kind of bad input.
    pub kind: BadInputKind,
    /// The error.
    pub error: FrameError,
    /// First time this kind is seen on this camera.
    pub first_of_kind: bool,
}

/// Logs a bad input frame of camera `camera` if `first_of_kind` (the first of its kind on that
/// camera; later ones are only counted). The one place this warning is written, whichever stage
/// found the frame bad (the transport, the ring, or decoding in the inference loop).
pub fn warn_bad_input(camera: &str, error: &FrameError, first_of_kind: bool) {
    if first_of_kind {
        tracing::warn!(
            camera,
            error = %error,
            "bad input frame dropped (further ones of this kind are counted, not logged)"
        );
    }
}

/// Counters of the inference engine as a whole, shared by the inference thread and health
/// (relaxed atomics).
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// ONNX Runtime sessions rebuilt after `engine.rebuild_after_failures` runs in a row failed.
    pub session_rebuilds: AtomicU64,
    /// Rebuilds that failed (the old session stayed).
    pub rebuild_failures: AtomicU64,
    /// Inference runs that completed; with a batching engine one run serves several frames.
    pub inference_runs: AtomicU64,
}

/// Counters of one camera, shared by the transport and inference threads (relaxed atomics).
#[derive(Debug, Default)]
pub struct CameraCounters {
    /// Frames that arrived (including dropped and bad ones).
    pub received: AtomicU64,
    /// Frames dropped because no slot was free.
    pub dropped_ring_full: AtomicU64,
    /// Queued frames skipped because a newer one arrived ([`QueuePolicy::KeepNewest`](crate::config::QueuePolicy::KeepNewest)).
    pub dropped_superseded: AtomicU64,
    /// Frames rejected as bad input.
    pub bad_input: AtomicU64,
    /// Frames that went through inference.
    pub processed: AtomicU64,
    /// Inference runs that failed.
    pub inference_errors: AtomicU64,
    /// Results dropped because the publishing side was full.
    pub dropped_output: AtomicU64,
    /// Results published.
    pub published: AtomicU64,
    /// Frames dropped unprocessed because they were older than `max_age_ms`.
    pub dropped_too_old: AtomicU64,
    /// Results that missed `budget_ms`.
    pub deadline_misses: AtomicU64,
    /// Late results not published (`late_results: drop`).
    pub dropped_late: AtomicU64,
    /// Inference runs terminated after `hard_timeout_ms`.
    pub timeouts: AtomicU64,
    /// Frames stamped in the future (ROS time): age clamped to zero.
    pub clock_anomalies: AtomicU64,
    /// Monotonic time of the last arrival, ns since [`process_epoch`] (0: none yet).
    pub last_received_ns: AtomicU64,
    /// Sum of pre-processing times, ns.
    pub preprocess_ns: AtomicU64,
    /// Sum of inference times, ns.
    pub inference_ns: AtomicU64,
    /// Sum of post-processing times, ns.
    pub postprocess_ns: AtomicU64,
    /// Publishers on the input topic whose QoS or type cannot match ours (current count).
    pub qos_incompatible: AtomicU64,
    /// Incompatible publishers seen since start.
    pub qos_incompatible_events: AtomicU64,
    /// Frames the shadow model compared with the primary.
    pub shadow_frames: AtomicU64,
    /// Frames the shadow model had no time for (it was still busy).
    pub shadow_skipped: AtomicU64,
    /// Compared frames on which the two models disagreed.
    pub shadow_disagreeing: AtomicU64,
    /// Detections the two models agree on (pairs).
    pub shadow_matched: AtomicU64,
    /// Detections of the primary the shadow did not make.
    pub shadow_primary_only: AtomicU64,
    /// Detections of the shadow the primary did not make.
    pub shadow_only: AtomicU64,
    /// Frames the shadow model failed on (decode or inference).
    pub shadow_errors: AtomicU64,
    /// Shadow results not published: the publishing side held every buffer.
    pub shadow_dropped_output: AtomicU64,
    /// Frames in the shadow's sliding window (`shadow.window_frames`).
    pub shadow_window_frames: AtomicU64,
    /// Frames of that window on which the models disagreed.
    pub shadow_window_disagreeing: AtomicU64,
    /// Finished frames incident capture could not keep (no spare record: it was behind).
    pub capture_missed: AtomicU64,
    logged: AtomicU32,
}

impl CameraCounters {
    /// Counts a bad input; returns true the first time this kind is seen (log it then).
    pub fn bad(&self, kind: BadInputKind) -> bool {
        self.bad_input.fetch_add(1, Ordering::Relaxed);
        let bit = 1u32 << (kind as u32);
        self.logged.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// Returns true the first time an inference error is noted on this camera (log it then).
    pub fn first_inference_error(&self) -> bool {
        const BIT: u32 = 1 << 31;
        self.logged.fetch_or(BIT, Ordering::Relaxed) & BIT == 0
    }

    /// Returns true the first time a hard timeout is noted on this camera (log it then).
    pub fn first_timeout(&self) -> bool {
        const BIT: u32 = 1 << 29;
        self.logged.fetch_or(BIT, Ordering::Relaxed) & BIT == 0
    }

    /// Returns true the first time a publish error is noted on this camera (log it then).
    pub fn first_publish_error(&self) -> bool {
        const BIT: u32 = 1 << 30;
        self.logged.fetch_or(BIT, Ordering::Relaxed) & BIT == 0
    }

    /// A plain copy of every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            received: g(&self.received),
            dropped_ring_full: g(&self.dropped_ring_full),
            dropped_superseded: g(&self.dropped_superseded),
            bad_input: g(&self.bad_input),
            processed: g(&self.processed),
            inference_errors: g(&self.inference_errors),
            dropped_output: g(&self.dropped_output),
            published: g(&self.published),
            qos_incompatible_events: g(&self.qos_incompatible_events),
            dropped_too_old: g(&self.dropped_too_old),
            deadline_misses: g(&self.deadline_misses),
            dropped_late: g(&self.dropped_late),
            timeouts: g(&self.timeouts),
            clock_anomalies: g(&self.clock_anomalies),
            preprocess_ns: g(&self.preprocess_ns),
            inference_ns: g(&self.inference_ns),
            postprocess_ns: g(&self.postprocess_ns),
            shadow_frames: g(&self.shadow_frames),
            shadow_skipped: g(&self.shadow_skipped),
            shadow_disagreeing: g(&self.shadow_disagreeing),
            shadow_matched: g(&self.shadow_matched),
            shadow_primary_only: g(&self.shadow_primary_only),
            shadow_only: g(&self.shadow_only),
            shadow_errors: g(&self.shadow_errors),
            shadow_dropped_output: g(&self.shadow_dropped_output),
            shadow_window_frames: g(&self.shadow_window_frames),
            shadow_window_disagreeing: g(&self.shadow_window_disagreeing),
            capture_missed: g(&self.capture_missed),
        }
    }
}

/// A copy of [`CameraCounters`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    /// Frames that arrived.
    pub received: u64,
    /// Dropped, no free slot.
    pub dropped_ring_full: u64,
    /// Dropped, superseded by a newer frame.
    pub dropped_superseded: u64,
    /// Bad input.
    pub bad_input: u64,
    /// Went through inference.
    pub processed: u64,
    /// Inference failures.
    pub inference_errors: u64,
    /// Dropped on the output side.
    pub dropped_output: u64,
    /// Published.
    pub published: u64,
    /// Incompatible publishers seen.
    pub qos_incompatible_events: u64,
    /// Dropped unprocessed, too old.
    pub dropped_too_old: u64,
    /// Missed the budget.
    pub deadline_misses: u64,
    /// Late and not published.
    pub dropped_late: u64,
    /// Terminated inference runs.
    pub timeouts: u64,
    /// Stamps in the future.
    pub clock_anomalies: u64,
    /// Sum of pre-processing times, ns.
    pub preprocess_ns: u64,
    /// Sum of inference times, ns.
    pub inference_ns: u64,
    /// Sum of post-processing times, ns.
    pub postprocess_ns: u64,
    /// Frames the shadow model compared with the primary.
    pub shadow_frames: u64,
    /// Frames the shadow model had no time for (it was still busy).
    pub shadow_skipped: u64,
    /// Compared frames on which the two models disagreed.
    pub shadow_disagreeing: u64,
    /// Detections the two models agree on (pairs).
    pub shadow_matched: u64,
    /// Detections of the primary the shadow did not make.
    pub shadow_primary_only: u64,
    /// Detections of the shadow the primary did not make.
    pub shadow_only: u64,
    /// Frames the shadow model failed on (decode or inference).
    pub shadow_errors: u64,
    /// Shadow results not published: the publishing side held every buffer.
    pub shadow_dropped_output: u64,
    /// Frames in the shadow's sliding window (`shadow.window_frames`).
    pub shadow_window_frames: u64,
    /// Frames of that window on which the models disagreed.
    pub shadow_window_disagreeing: u64,
    /// Finished frames incident capture could not keep.
    pub capture_missed: u64,
}

impl CounterSnapshot {
    /// Frames dropped by a decision (queue full, superseded, too old, late, output side full):
    /// never published. The one definition /diagnostics, summaries and reports use.
    pub fn dropped(&self) -> u64 {
        self.dropped_ring_full
            + self.dropped_superseded
            + self.dropped_too_old
            + self.dropped_late
            + self.dropped_output
    }

    /// Frames the inference loop is done with: inferred, dropped before inference, failed or
    /// bad input. Equal to `received` once every frame that arrived has been handled.
    pub fn settled_in_loop(&self) -> u64 {
        self.processed
            + self.bad_input
            + self.dropped_ring_full
            + self.dropped_superseded
            + self.dropped_too_old
            + self.timeouts
            + self.inference_errors
    }
}

/// The monotonic instant counters measure from (first use in the process).
pub fn process_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds from [`process_epoch`] to `t` (at least 1, so 0 can mean "never").
pub fn mono_ns(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(process_epoch()).as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}
