//! Incident capture: the last seconds of every camera's frames and detections, kept in memory,
//! and written with the seconds after it to an MCAP bag when something goes wrong (a deadline
//! miss, an input-health ERROR, output drift, the shadow model disagreeing, or SIGUSR1).
//!
//! ```text
//!  InferenceLoop ── frame done: its buffer swapped for a spare (O(1)) ──► lookout-capture
//!       ▲                                                                  per camera: ring of
//!       └──────────── spare buffers (bounded, preallocated) ◄───────────── the last before_s s
//!  ResultTracker, shadow, signal ── CaptureTrigger (atomics) ──► write ring + after_s s ─► MCAP
//! ```
//!
//! Contract: [`capture_parts`] allocates every record (frame buffer, detections, frame id) up
//! front: `ceil(before_s x max_rate_hz) + 2` records per camera of the camera's frame size,
//! reserved and made resident as frames fill them (the budget is logged at start). Keeping a
//! frame on the inference thread ([`CaptureTap::keep`]) swaps buffers and copies the detections:
//! it never allocates, blocks or copies the frame; with no spare record free it counts the
//! frame in `capture_missed`. A trigger is a few atomic operations. The bag is written on
//! `lookout-capture` (allocates, does file I/O) into a hidden folder and renamed into place
//! when complete; at most `max_per_hour` captures start per hour, and a trigger while a capture
//! runs or over the limit is counted, not queued.

pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::core::postprocess::Detection;
use crate::runtime::counters::CameraCounters;
use crate::runtime::queue::{Frame, FrameFormat, Stamp};

/// `capture.*`: incident capture (unset `dir`: off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Folder the incident bags are written to (created if missing; unset: no capture).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Seconds of frames kept before a trigger.
    #[serde(default = "default_before_s")]
    pub before_s: f64,
    /// Seconds of frames written after it.
    #[serde(default = "default_after_s")]
    pub after_s: f64,
    /// Frames per second and camera the ring is sized for (faster cameras keep less time).
    #[serde(default = "default_max_rate_hz")]
    pub max_rate_hz: f64,
    /// Captures started per hour, at most.
    #[serde(default = "default_max_per_hour")]
    pub max_per_hour: u32,
    /// The incident bags in `dir` take at most this many MB: the oldest go first.
    #[serde(default = "default_max_total_mb")]
    pub max_total_mb: f64,
    /// Which events trigger a capture: `deadline_miss`, `input_error`, `drift`,
    /// `shadow_disagreement` (SIGUSR1 always does).
    #[serde(default = "default_triggers")]
    pub triggers: Vec<String>,
}

fn default_before_s() -> f64 {
    3.0
}
fn default_after_s() -> f64 {
    2.0
}
fn default_max_rate_hz() -> f64 {
    10.0
}
fn default_max_per_hour() -> u32 {
    6
}
fn default_max_total_mb() -> f64 {
    2000.0
}
fn default_triggers() -> Vec<String> {
    Reason::EVENTS
        .iter()
        .map(|r| r.name().to_string())
        .collect()
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            dir: None,
            before_s: default_before_s(),
            after_s: default_after_s(),
            max_rate_hz: default_max_rate_hz(),
            max_per_hour: default_max_per_hour(),
            max_total_mb: default_max_total_mb(),
            triggers: default_triggers(),
        }
    }
}

/// The most frames a camera's ring may hold (`before_s x max_rate_hz`).
pub const MAX_RING_FRAMES: f64 = 3600.0;

impl CaptureConfig {
    /// Checks the ranges; on error the key (under `capture.`) and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let within = |v: f64, lo: f64, hi: f64| v.is_finite() && v >= lo && v <= hi;
        if !within(self.before_s, 0.1, 600.0) {
            return Err(("before_s", "must be within 0.1..600".into()));
        }
        if !within(self.after_s, 0.0, 600.0) {
            return Err(("after_s", "must be within 0..600".into()));
        }
        if !within(self.max_rate_hz, 0.1, 1000.0) {
            return Err(("max_rate_hz", "must be within 0.1..1000".into()));
        }
        if self.before_s * self.max_rate_hz > MAX_RING_FRAMES {
            return Err((
                "before_s",
                format!("before_s x max_rate_hz must be at most {MAX_RING_FRAMES} frames"),
            ));
        }
        if !(1..=3600).contains(&self.max_per_hour) {
            return Err(("max_per_hour", "must be within 1..3600".into()));
        }
        if !within(self.max_total_mb, 1.0, 10_000_000.0) {
            return Err(("max_total_mb", "must be within 1..10000000".into()));
        }
        if let Some(t) = self
            .triggers
            .iter()
            .find(|t| Reason::from_name(t).is_none())
        {
            return Err((
                "triggers",
                format!(
                    "unknown trigger `{t}` (deadline_miss, input_error, drift, shadow_disagreement)"
                ),
            ));
        }
        Ok(())
    }

    /// Frames each camera's ring holds.
    pub fn ring_frames(&self) -> usize {
        (self.before_s * self.max_rate_hz).ceil().max(1.0) as usize
    }

    /// Records each camera reserves: the ring, plus two in flight.
    pub fn records_per_camera(&self) -> usize {
        self.ring_frames() + 2
    }
}

/// Why a capture started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// A result missed its camera's `budget_ms`.
    DeadlineMiss = 1,
    /// An input-health condition at ERROR (blocked or dark, frozen).
    InputError = 2,
    /// Output drift WARN.
    Drift = 3,
    /// The shadow model disagreed on more frames than `shadow.warn_disagreement`.
    ShadowDisagreement = 4,
    /// Asked for (SIGUSR1).
    Requested = 5,
}

impl Reason {
    /// The events a configuration can choose.
    pub const EVENTS: [Reason; 4] = [
        Reason::DeadlineMiss,
        Reason::InputError,
        Reason::Drift,
        Reason::ShadowDisagreement,
    ];

    /// Its name (`capture.triggers`, bag metadata).
    pub fn name(self) -> &'static str {
        match self {
            Reason::DeadlineMiss => "deadline_miss",
            Reason::InputError => "input_error",
            Reason::Drift => "drift",
            Reason::ShadowDisagreement => "shadow_disagreement",
            Reason::Requested => "requested",
        }
    }

    /// The reason named `name`, among the configurable events.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::EVENTS.iter().copied().find(|r| r.name() == name)
    }

    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Reason::DeadlineMiss),
            2 => Some(Reason::InputError),
            3 => Some(Reason::Drift),
            4 => Some(Reason::ShadowDisagreement),
            5 => Some(Reason::Requested),
            _ => None,
        }
    }
}

const CLAIMING: u64 = u64::MAX;
/// Reasons per camera in [`CaptureTrigger`]'s table.
const REASONS: usize = 6;
/// Camera of a request that names none (SIGUSR1): every camera.
pub const ALL_CAMERAS: usize = 0xff_ffff;
/// Anchor of a request that names no frame (SIGUSR1): the newest frame kept.
pub const NEWEST_FRAME: i64 = i64::MIN;

/// A capture asked for by any thread: the first new incident wins until `lookout-capture` takes
/// it.
///
/// An incident is one (camera, reason) going wrong: the monitors ask on every frame (or
/// period) while a condition lasts, and only a request after `before_s + after_s` seconds (frame
/// stamps) without one of the same camera and reason starts a new incident. So a camera that
/// stays dark, or a run of deadline misses, is one incident and one bag, not one bag per frame.
#[derive(Debug)]
pub struct CaptureTrigger {
    /// 0: none; else reason | camera << 8; [`CLAIMING`] while being written.
    pending: AtomicU64,
    stamp_ns: AtomicI64,
    /// Reasons enabled (bit per reason value).
    enabled: u32,
    /// Per camera and reason: the stamp of the last request (`i64::MIN`: none).
    last_ns: Vec<AtomicI64>,
    rearm_ns: i64,
    /// New incidents asked for (enabled reasons), taken or not.
    pub incidents: AtomicU64,
}

impl CaptureTrigger {
    /// A trigger for `cameras` cameras that takes the reasons of `config.triggers` and
    /// [`Reason::Requested`].
    pub fn new(config: &CaptureConfig, cameras: usize) -> Self {
        let mut enabled = 1u32 << Reason::Requested as u8;
        for r in config.triggers.iter().filter_map(|t| Reason::from_name(t)) {
            enabled |= 1 << r as u8;
        }
        Self {
            pending: AtomicU64::new(0),
            stamp_ns: AtomicI64::new(0),
            enabled,
            last_ns: (0..cameras * REASONS)
                .map(|_| AtomicI64::new(i64::MIN))
                .collect(),
            rearm_ns: ((config.before_s + config.after_s) * 1e9) as i64,
            incidents: AtomicU64::new(0),
        }
    }

    /// Says that `reason` holds on `camera` at `stamp_ns` (the frame's stamp, ROS time; or
    /// [`NEWEST_FRAME`]). A new incident is asked for if `reason` is enabled and no request is
    /// waiting. Returns whether this request is the one waiting now (false: the reason is not
    /// a trigger, the incident is still open, or another request waits). Never blocks or
    /// allocates.
    pub fn request(&self, reason: Reason, camera: usize, stamp_ns: i64) -> bool {
        if self.enabled & (1 << reason as u8) == 0 {
            return false;
        }
        if reason != Reason::Requested
            && let Some(last) = self.last_ns.get(camera * REASONS + reason as usize)
        {
            let before = last.swap(stamp_ns, Ordering::Relaxed);
            if before != i64::MIN && stamp_ns.saturating_sub(before) < self.rearm_ns {
                return false;
            }
        }
        self.incidents.fetch_add(1, Ordering::Relaxed);
        if self
            .pending
            .compare_exchange(0, CLAIMING, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.stamp_ns.store(stamp_ns, Ordering::Release);
            let code = reason as u64 | ((camera.min(0xff_ffff) as u64) << 8);
            self.pending.store(code, Ordering::Release);
            return true;
        }
        false
    }

    /// Takes the waiting request: its reason, camera and stamp.
    fn take(&self) -> Option<(Reason, usize, i64)> {
        let code = self.pending.load(Ordering::Acquire);
        if code == 0 || code == CLAIMING {
            return None;
        }
        let stamp = self.stamp_ns.load(Ordering::Acquire);
        self.pending.store(0, Ordering::Release);
        Reason::from_u8((code & 0xff) as u8).map(|r| (r, (code >> 8) as usize, stamp))
    }
}

/// One frame and its detections, kept for a capture (a preallocated, recycled record).
#[derive(Debug)]
pub struct CaptureRecord {
    /// Camera index.
    pub camera: usize,
    /// Header stamp.
    pub stamp: Stamp,
    /// How the bytes are laid out.
    pub format: FrameFormat,
    frame_id: String,
    data: Vec<u8>,
    start: usize,
    len: usize,
    /// Whether the primary model gave a result for the frame (`detections` are it).
    pub has_result: bool,
    detections: Vec<Detection>,
}

impl CaptureRecord {
    fn new(camera: usize, slot_bytes: usize, max_detections: usize) -> Self {
        let mut data = Vec::new();
        data.reserve_exact(slot_bytes);
        Self {
            camera,
            stamp: Stamp::default(),
            format: FrameFormat::Compressed(crate::core::decode::CompressedFormat::Jpeg),
            frame_id: String::with_capacity(crate::runtime::queue::FRAME_ID_CAPACITY),
            data,
            start: 0,
            len: 0,
            has_result: false,
            detections: Vec::with_capacity(max_detections),
        }
    }

    /// The frame's bytes.
    pub fn data(&self) -> &[u8] {
        crate::runtime::queue::bytes_in(&self.data, self.start, self.len)
    }

    /// The frame's `frame_id`.
    pub fn frame_id(&self) -> &str {
        &self.frame_id
    }

    /// The primary model's detections of the frame.
    pub fn detections(&self) -> &[Detection] {
        &self.detections
    }
}

/// The inference loop's side: keeps finished frames.
pub struct CaptureTap {
    records: Sender<CaptureRecord>,
    spares: Vec<Receiver<CaptureRecord>>,
    counters: Vec<Arc<CameraCounters>>,
    trigger: Arc<CaptureTrigger>,
}

impl CaptureTap {
    /// Keeps `frame` (which the loop is done with) and its `detections` (`None`: the frame got
    /// no result): the frame's buffer is swapped with a spare record's, so the slot goes back to
    /// its ring at once. Without a spare record (the capture thread is behind) the frame is
    /// counted in `capture_missed`.
    pub fn keep(&self, frame: &mut Frame, detections: Option<&[Detection]>) {
        let camera = frame.camera;
        let Some(mut record) = self.spares.get(camera).and_then(|s| s.try_recv().ok()) else {
            if let Some(c) = self.counters.get(camera) {
                c.capture_missed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        (record.start, record.len) = frame.swap_buffer(&mut record.data);
        record.camera = camera;
        record.stamp = frame.stamp;
        record.format = frame.format;
        record.frame_id.clear();
        let id = frame.frame_id();
        if id.len() <= record.frame_id.capacity() {
            record.frame_id.push_str(id);
        }
        record.detections.clear();
        record.has_result = detections.is_some();
        if let Some(d) = detections {
            let room = record.detections.capacity();
            record.detections.extend_from_slice(&d[..d.len().min(room)]);
        }
        // Cannot be full: the channel has a place for every record.
        let _ = self.records.try_send(record);
    }

    /// A run of `camera`'s frame stamped `stamp_ns` was terminated after its hard timeout: a
    /// deadline miss without a result, which no result tracker sees.
    pub fn timed_out(&self, camera: usize, stamp_ns: i64) {
        self.trigger.request(Reason::DeadlineMiss, camera, stamp_ns);
    }
}

/// The capture thread's side: every camera's ring and spare channel.
pub struct CaptureRings {
    /// Finished frames from the loop.
    pub records: Receiver<CaptureRecord>,
    /// Per camera: where records go back to the loop.
    pub spares: Vec<Sender<CaptureRecord>>,
    /// Per camera: the frames kept (oldest first), at most `ring_frames`.
    pub rings: Vec<std::collections::VecDeque<CaptureRecord>>,
    /// Frames each ring holds at most.
    pub ring_frames: usize,
}

/// Allocates the records of every camera (`(slot_bytes, counters)` per camera) and returns the
/// loop's tap and the capture thread's rings.
pub fn capture_parts(
    config: &CaptureConfig,
    cameras: &[(usize, Arc<CameraCounters>)],
    max_detections: usize,
    trigger: &Arc<CaptureTrigger>,
) -> (CaptureTap, CaptureRings) {
    let per_camera = config.records_per_camera();
    let total = per_camera * cameras.len().max(1);
    let (records_tx, records_rx) = crossbeam_channel::bounded(total);
    let mut spares_rx = Vec::with_capacity(cameras.len());
    let mut spares_tx = Vec::with_capacity(cameras.len());
    let mut rings = Vec::with_capacity(cameras.len());
    for (camera, (slot_bytes, _)) in cameras.iter().enumerate() {
        let (tx, rx) = crossbeam_channel::bounded(per_camera);
        for _ in 0..per_camera {
            let _ = tx.try_send(CaptureRecord::new(camera, *slot_bytes, max_detections));
        }
        spares_tx.push(tx);
        spares_rx.push(rx);
        rings.push(std::collections::VecDeque::with_capacity(per_camera));
    }
    let tap = CaptureTap {
        records: records_tx,
        spares: spares_rx,
        counters: cameras.iter().map(|(_, c)| Arc::clone(c)).collect(),
        trigger: Arc::clone(trigger),
    };
    let rings = CaptureRings {
        records: records_rx,
        spares: spares_tx,
        rings,
        ring_frames: config.ring_frames(),
    };
    (tap, rings)
}

/// Incident capture as the runtime holds it: the trigger every monitor asks, the counters,
/// and the worker until it runs on `lookout-capture` (or for ever, inline, in deterministic
/// replay).
pub struct Capture {
    /// Asked by the monitors (and SIGUSR1).
    pub trigger: Arc<CaptureTrigger>,
    /// Captures written, suppressed, failed.
    pub counters: Arc<writer::CaptureCounters>,
    /// The worker (taken when its thread starts).
    pub worker: Option<writer::CaptureWorker>,
    /// The provenance each bag's metadata starts from (the model changes with a hot swap).
    pub provenance: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
}

impl Capture {
    /// The model now running, for the next bags' metadata.
    pub fn set_model(&self, name: &str, sha256: &str) {
        if let Ok(mut p) = self.provenance.lock() {
            p.insert("lookout.model".into(), name.to_string());
            p.insert("lookout.model_sha256".into(), sha256.to_string());
        }
    }
}

/// Builds incident capture for `config` (its `capture.dir` set): every camera's records, the
/// loop's tap and the worker writing bags named after the model `model` / `model_sha256`.
pub fn build(
    config: &crate::config::Config,
    counters: &[Arc<CameraCounters>],
    model: (&str, &str),
    class_names: &[String],
    max_detections: usize,
) -> (CaptureTap, Capture) {
    use crate::config::names::resolve_replay_topic;
    let c = &config.capture;
    let trigger = Arc::new(CaptureTrigger::new(c, counters.len()));
    let slots: Vec<(usize, Arc<CameraCounters>)> = config
        .camera_list()
        .zip(counters)
        .map(|((_, cam), k)| {
            (
                crate::runtime::queue::slot_bytes(cam.max_width, cam.max_height),
                Arc::clone(k),
            )
        })
        .collect();
    let (tap, rings) = capture_parts(c, &slots, max_detections, &trigger);
    let cameras = config
        .camera_list()
        .map(|(name, cam)| writer::CaptureCamera {
            name: name.to_string(),
            input_topic: resolve_replay_topic(&cam.topic),
            kind: cam.kind,
            detections_topic: resolve_replay_topic(&config.detections_topic(name)),
        })
        .collect();
    let mut provenance = std::collections::BTreeMap::new();
    provenance.insert("lookout.version".into(), env!("CARGO_PKG_VERSION").into());
    provenance.insert("lookout.model".into(), model.0.to_string());
    provenance.insert("lookout.model_sha256".into(), model.1.to_string());
    let provenance = Arc::new(std::sync::Mutex::new(provenance));
    let capture_counters = Arc::new(writer::CaptureCounters::default());
    let worker = writer::CaptureWorker::new(
        rings,
        Arc::clone(&trigger),
        c,
        cameras,
        class_names.to_vec(),
        Arc::clone(&provenance),
        Arc::clone(&capture_counters),
    );
    tracing::info!(
        dir = %c.dir.as_deref().unwrap_or(std::path::Path::new("")).display(),
        before_s = c.before_s,
        after_s = c.after_s,
        frames_per_camera = c.ring_frames(),
        reserved_mb = slots.iter().map(|(b, _)| b * c.records_per_camera()).sum::<usize>() as f64 / 1e6,
        "incident capture ready"
    );
    (
        tap,
        Capture {
            trigger,
            counters: capture_counters,
            worker: Some(worker),
            provenance,
        },
    )
}

/// `lookout-capture` runs at nice 10: under load, inference keeps the CPU and the capture
/// writes a little behind (frames it could not keep are counted).
pub fn lower_priority() {
    if !crate::runtime::realtime::nice("lookout-capture", 10) {
        tracing::warn!("lookout-capture: could not lower its priority; it runs at normal priority");
    }
}
