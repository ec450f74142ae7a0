//! Bag replay: rosbag2 bags in, a detections bag and a report out, through the same rings,
//! inference loop, deadline tracker and diagnostics rules as the live node.
//!
//! ```text
//! Bag::for_each ─► cdr ─► FrameProducer ─► ring ─► InferenceLoop ─► Output ─► ResultTracker
//!   (storage order)                                                    │
//!                     BagWriter (MCAP + metadata.yaml) ◄── cdr encode ◄┘   + /diagnostics
//! ```
//!
//! Pacing ([`Pace`]):
//! - `MaxSpeed` (default): every frame is processed, in storage order, none dropped. The frame
//!   is pushed, inferred and written before the next one is read, all on the calling thread, so
//!   the detections do not depend on timing: `max_age_ms`, `hard_timeout_ms` and
//!   `late_results: drop` are not applied (deadline misses against `budget_ms` are still
//!   counted and reported). Each detections message gets its frame's receive time.
//! - `Rate(r)`: frames are pushed at their recorded receive times divided by `r`, and the loop
//!   runs on its own thread (`lookout-infer`) with the live policy: the queue policy drops,
//!   `max_age_ms` on the bag's clock, hard timeouts (`lookout-watchdog`) and late drops, as a
//!   vehicle would see it. Detections get the bag time at which they were written.
//! - `Step`: as `MaxSpeed`, but waits for the caller's go-ahead before each frame.
//!
//! The ROS time seen by the loop (frame ages, /diagnostics stamps) is the bag's time: the
//! receive time of the message being played, like `ros2 bag play --clock`.
//!
//! Determinism: with the same bags, configuration, model, ONNX Runtime build, execution
//! provider and thread count (`engine.intra_op_threads`), `MaxSpeed` and `Step` write
//! byte-identical detections messages; without /diagnostics the whole output bag is
//! byte-identical. /diagnostics carries measured latencies, which differ from run to run, and
//! `Rate` drops depend on timing.
//!
//! Contract: [`Replay::new`] checks the bags against the configuration (a configured topic
//! missing from every bag is an error listing the bag's image topics), loads and warms the
//! model and creates the output bag; [`Replay::run`] blocks until the bags are played or
//! `stop` is set, then finishes the output bag (readable either way) and returns the
//! [`Report`]. Bad messages are counted as bad input, logged once per camera and kind, and
//! the replay goes on; a failure to write the output is an error (data lost).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use crate::bag::cdr;
use crate::bag::schema;
use crate::bag::{Bag, BagError, BagWriter, offered_qos_yaml};
use crate::config::names::resolve_replay_topic;
use crate::config::{Config, ImageKind};
use crate::runtime::deadline::{LatencyStats, RosClock, Verdict};
use crate::runtime::health::Status;
use crate::runtime::inference::Output;
use crate::runtime::queue::{CameraCounters, FrameProducer, RawHeader, SwappedHeader};
use crate::runtime::{Runtime, RuntimeError, Timing};

mod paced;
mod report;
use report::peak_rss_mb;
pub use report::{Counts, LatencyMs, PercentilesMs, Report, StageMs};

/// How frames are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Every frame, in order, as fast as inference runs.
    MaxSpeed,
    /// At the recorded rate times this factor, with the live drop and deadline policy.
    Rate(f64),
    /// One frame per go-ahead (see [`Replay::run`]).
    Step,
}

impl Pace {
    fn name(self) -> &'static str {
        match self {
            Self::MaxSpeed => "max_speed",
            Self::Rate(_) => "rate",
            Self::Step => "step",
        }
    }
}

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Input bags, played one after the other in this order.
    pub bags: Vec<PathBuf>,
    /// The node configuration (cameras, model, engine, thresholds, deadlines).
    pub config: Config,
    /// Output bag folder (must not exist, or be empty).
    pub out: PathBuf,
    /// Pacing.
    pub pace: Pace,
    /// Also copy every input message (images and other topics) to the output bag.
    pub copy_all: bool,
    /// Write /diagnostics to the output bag.
    pub diagnostics: bool,
}

/// Messages the bag reader runs ahead of the replay in max-speed and step modes (raw frames of a
/// few MB each: bounded memory).
const READ_AHEAD_MESSAGES: usize = 4;

/// Why a replay cannot start or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A bag cannot be read, or the output cannot be written.
    #[error(transparent)]
    Bag(#[from] BagError),
    /// A configured camera topic is in none of the bags.
    #[error(
        "camera `{camera}`: topic {topic} is not in the bag; its image topics are: {available}"
    )]
    TopicMissing {
        /// Camera name.
        camera: String,
        /// The topic, resolved.
        topic: String,
        /// The bag's image topics (`name (type)`), comma-separated.
        available: String,
    },
    /// A configured camera topic has another type in the bag.
    #[error(
        "camera `{camera}`: topic {topic} holds {found}, but the camera is configured as {expected} (camera.{camera}.type)"
    )]
    TypeMismatch {
        /// Camera name.
        camera: String,
        /// The topic.
        topic: String,
        /// Type the configuration expects.
        expected: String,
        /// Type in the bag.
        found: String,
    },
    /// The runtime (model, engine, threads) cannot start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A thread or statistics buffer cannot be created.
    #[error("cannot start {what}: {reason}")]
    Start {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A worker thread died during the replay (its frames would be lost).
    #[error("thread {thread} died during the replay: {reason}")]
    WorkerDied {
        /// Thread name.
        thread: &'static str,
        /// Its panic message.
        reason: String,
    },
}

/// Per-stage statistics over all cameras, for the report.
struct Totals {
    first: Option<StageMs>,
    e2e: LatencyStats,
    preprocess: LatencyStats,
    inference: LatencyStats,
    postprocess: LatencyStats,
}

impl Totals {
    fn new() -> Result<Self, hdrhistogram::CreationError> {
        let w = Duration::from_secs(3600);
        Ok(Self {
            first: None,
            e2e: LatencyStats::new(w)?,
            preprocess: LatencyStats::new(w)?,
            inference: LatencyStats::new(w)?,
            postprocess: LatencyStats::new(w)?,
        })
    }

    fn latency(&self) -> LatencyMs {
        LatencyMs {
            e2e: self.e2e.total().into(),
            preprocess: self.preprocess.total().into(),
            inference: self.inference.total().into(),
            postprocess: self.postprocess.total().into(),
        }
    }
}

/// One configured camera as the replay sees it.
struct Camera {
    name: String,
    topic: String,
    kind: ImageKind,
    producer: FrameProducer,
    counters: Arc<CameraCounters>,
    out_topic: usize,
    frames_in: u64,
    written: u64,
    /// The last message's `frame_id` and encoding (or format), copied out of its buffer so the
    /// buffer can be handed to the ring ([`FrameProducer::push_swapped`]).
    frame_id: String,
    encoding: String,
}

/// A replay, set up and ready to run.
pub struct Replay {
    options: ReplayOptions,
    bags: Vec<Bag>,
    cameras: Vec<Camera>,
    runtime: Runtime,
    totals: Totals,
    writer: Option<BagWriter>,
    diagnostics_topic: Option<usize>,
    copied: BTreeMap<String, usize>,
    clock_ns: Arc<AtomicI64>,
    buf: Vec<u8>,
    started: Instant,
    next_diagnostics_ns: u64,
    period_ns: u64,
    last_log_ns: u64,
}

fn topic_types(bags: &[Bag]) -> Result<Vec<(String, String)>, BagError> {
    let mut all: Vec<(String, String)> = Vec::new();
    for bag in bags {
        let list: Vec<(String, String)> = match bag.metadata() {
            Some(info) if !info.topics_with_message_count.is_empty() => info
                .topics_with_message_count
                .iter()
                .map(|t| {
                    (
                        t.topic_metadata.name.clone(),
                        t.topic_metadata.type_name.clone(),
                    )
                })
                .collect(),
            _ => bag
                .topics()?
                .into_iter()
                .map(|t| (t.name, t.type_name))
                .collect(),
        };
        for t in list {
            if !all.contains(&t) {
                all.push(t);
            }
        }
    }
    Ok(all)
}

impl Replay {
    /// Opens the bags, checks their topics against the configuration, loads and warms the
    /// model, and creates the output bag. Allocates everything the replay needs.
    pub fn new(options: ReplayOptions) -> Result<Self, ReplayError> {
        let bags = options
            .bags
            .iter()
            .map(|p| Bag::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        let topics = topic_types(&bags)?;
        let config = &options.config;
        for (name, cam) in config.camera_list() {
            let topic = resolve_replay_topic(&cam.topic);
            let want = cam.kind.ros_type();
            match topics.iter().find(|(t, _)| *t == topic) {
                None => {
                    let images: Vec<String> = topics
                        .iter()
                        .filter(|(_, ty)| {
                            schema::known(ty).is_some_and(|k| k.name.starts_with("sensor_msgs/"))
                        })
                        .map(|(t, ty)| format!("{t} ({ty})"))
                        .collect();
                    return Err(ReplayError::TopicMissing {
                        camera: name.to_string(),
                        topic,
                        available: if images.is_empty() {
                            "none".into()
                        } else {
                            images.join(", ")
                        },
                    });
                }
                Some((_, ty)) if ty != want => {
                    return Err(ReplayError::TypeMismatch {
                        camera: name.to_string(),
                        topic,
                        expected: want.to_string(),
                        found: ty.clone(),
                    });
                }
                Some(_) => {}
            }
        }

        let timing = match options.pace {
            Pace::Rate(_) => Timing::Live,
            Pace::MaxSpeed | Pace::Step => Timing::Deterministic,
        };
        let clock_ns = Arc::new(AtomicI64::new(0));
        let mut runtime = Runtime::new(config, timing, RosClock::Sim(Arc::clone(&clock_ns)))?;
        let model_name = runtime.model().name.clone();
        let sha256 = runtime.model().sha256.clone();
        let engine_info = runtime.engine().clone();
        let provider = engine_info.execution_provider;

        let mut provenance = BTreeMap::new();
        provenance.insert("lookout.version".into(), env!("CARGO_PKG_VERSION").into());
        provenance.insert("lookout.model".into(), model_name.clone());
        provenance.insert("lookout.model_sha256".into(), sha256.clone());
        provenance.insert("lookout.execution_provider".into(), provider.into());
        provenance.insert(
            "lookout.fallback_reason".into(),
            engine_info.fallback_reason.clone(),
        );
        provenance.insert(
            "lookout.config".into(),
            serde_yaml_ng::to_string(config).unwrap_or_default(),
        );
        provenance.insert(
            "lookout.input_bags".into(),
            options
                .bags
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        provenance.insert("lookout.mode".into(), options.pace.name().into());
        if let Pace::Rate(r) = options.pace {
            provenance.insert("lookout.rate".into(), format!("{r}"));
        }
        let mut writer = BagWriter::create(&options.out, provenance)?;

        let mut cameras = Vec::new();
        let producers = runtime.take_inputs();
        for ((index, (name, cam)), producer) in config.camera_list().enumerate().zip(producers) {
            let out_name = resolve_replay_topic(&config.detections_topic(name));
            let qos = cam.detections_qos();
            let out_topic = writer.add_topic(
                &out_name,
                schema::DETECTION2D_ARRAY.name,
                Some(("ros2msg", schema::DETECTION2D_ARRAY.definition().as_bytes())),
                schema::DETECTION2D_ARRAY.type_hash,
                &offered_qos_yaml(
                    qos.reliability == crate::config::Reliability::Reliable,
                    qos.depth,
                ),
            )?;
            cameras.push(Camera {
                name: name.to_string(),
                topic: resolve_replay_topic(&cam.topic),
                kind: cam.kind,
                producer,
                counters: Arc::clone(&runtime.counters()[index]),
                out_topic,
                frames_in: 0,
                written: 0,
                frame_id: String::with_capacity(crate::runtime::queue::FRAME_ID_CAPACITY),
                encoding: String::with_capacity(64),
            });
        }
        let diagnostics_topic = if options.diagnostics {
            Some(writer.add_topic(
                "/diagnostics",
                schema::DIAGNOSTIC_ARRAY.name,
                Some(("ros2msg", schema::DIAGNOSTIC_ARRAY.definition().as_bytes())),
                schema::DIAGNOSTIC_ARRAY.type_hash,
                &offered_qos_yaml(true, 10),
            )?)
        } else {
            None
        };

        let totals = Totals::new().map_err(|e| ReplayError::Start {
            what: "latency statistics",
            reason: e.to_string(),
        })?;
        let period_ns = (config.diagnostics.period_ms * 1e6).max(1e6) as u64;
        Ok(Self {
            bags,
            cameras,
            runtime,
            totals,
            writer: Some(writer),
            diagnostics_topic,
            copied: BTreeMap::new(),
            clock_ns,
            buf: Vec::with_capacity(64 * 1024),
            started: Instant::now(),
            next_diagnostics_ns: 0,
            period_ns,
            last_log_ns: 0,
            options,
        })
    }

    /// Image messages on the camera topics, from the bags' metadata or MCAP summaries (for a
    /// progress bar); `None` when a bag does not tell without reading it.
    pub fn frames_expected(&self) -> Option<u64> {
        let mut total = 0;
        for bag in &self.bags {
            for c in &self.cameras {
                total += bag.message_count(&c.topic)?;
            }
        }
        Some(total)
    }

    /// The execution provider in use.
    pub fn execution_provider(&self) -> &'static str {
        self.runtime.engine().execution_provider
    }

    /// Plays the bags. `progress` is called after every camera frame with the frames read so
    /// far; `go_ahead` is called before each frame in [`Pace::Step`] mode (and may print the
    /// previous frame's detections); returning false stops the replay. `stop` (Ctrl-C) ends
    /// the replay early. Either way the output bag is finished and the report returned.
    pub fn run(
        mut self,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(u64),
        go_ahead: &mut dyn FnMut(&StepView<'_>) -> bool,
    ) -> Result<Report, ReplayError> {
        self.started = Instant::now();
        let result = match self.options.pace {
            Pace::Rate(r) => self.run_paced(r, stop, progress),
            Pace::MaxSpeed | Pace::Step => self.run_in_order(stop, progress, go_ahead),
        };
        let interrupted = match result {
            Ok(i) => i,
            Err(e) => {
                // Keep what was written readable, then report the failure.
                if let Some(w) = self.writer.take() {
                    let _ = w.finish();
                }
                return Err(e);
            }
        };
        self.finish(interrupted)
    }

    /// Max-speed and step: push, infer and write one frame at a time on this thread (the bag
    /// is read ahead on `lookout-bag-read`).
    fn run_in_order(
        &mut self,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(u64),
        go_ahead: &mut dyn FnMut(&StepView<'_>) -> bool,
    ) -> Result<bool, ReplayError> {
        let step = self.options.pace == Pace::Step;
        let mut interrupted = false;
        let mut failure: Option<ReplayError> = None;
        let mut frames = 0u64;
        let bags = std::mem::take(&mut self.bags);
        let mut last_view: Option<(String, Vec<u8>)> = None;
        for bag in &bags {
            // Reading and decompressing run ahead on their own thread, overlapping inference.
            bag.for_each_prefetched(READ_AHEAD_MESSAGES, |prefetched| {
                let m = prefetched.message();
                if stop.load(Ordering::Relaxed) {
                    interrupted = true;
                    return ControlFlow::Break(());
                }
                let camera = self.cameras.iter().position(|c| c.topic == m.topic);
                if step && camera.is_some() {
                    let view = StepView {
                        frame: frames,
                        topic: m.topic,
                        log_time_ns: m.log_time_ns,
                        previous: last_view.as_ref().map(|(t, b)| (t.as_str(), b.as_slice())),
                    };
                    if !go_ahead(&view) {
                        interrupted = true;
                        return ControlFlow::Break(());
                    }
                }
                let log_time_ns = m.log_time_ns;
                let result = self
                    .emit_diagnostics_until(log_time_ns)
                    .and_then(|()| self.copy(&m))
                    .and_then(|()| {
                        self.clock_ns.store(
                            i64::try_from(log_time_ns).unwrap_or(i64::MAX),
                            Ordering::Relaxed,
                        );
                        if let Some(c) = camera {
                            self.push_swapped(c, prefetched.buffer_mut());
                            self.infer_all();
                            frames += 1;
                            progress(frames);
                            self.drain(Some(log_time_ns), step.then_some(&mut last_view))
                        } else {
                            Ok(())
                        }
                    });
                if let Err(e) = result {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })?;
            if failure.is_some() || interrupted {
                break;
            }
        }
        if step && let Some((topic, bytes)) = &last_view {
            let view = StepView {
                frame: frames,
                topic: "",
                log_time_ns: self.last_log_ns,
                previous: Some((topic.as_str(), bytes.as_slice())),
            };
            let _ = go_ahead(&view);
        }
        self.bags = bags;
        match failure {
            Some(e) => Err(e),
            None => Ok(interrupted),
        }
    }

    fn infer_all(&mut self) {
        self.runtime.step_until_idle();
    }

    /// Copies one camera message into its ring (bad messages are counted and logged once).
    fn push(&mut self, camera: usize, data: &[u8]) {
        let c = &mut self.cameras[camera];
        c.frames_in += 1;
        let received = Instant::now();
        let pushed = match c.kind {
            ImageKind::Image => cdr::image(data).map(|m| {
                c.producer.push_raw(
                    received,
                    m.stamp,
                    m.frame_id,
                    RawHeader {
                        width: m.width,
                        height: m.height,
                        step_bytes: m.step as usize,
                        encoding: m.encoding,
                        big_endian: m.is_bigendian != 0,
                    },
                    m.data,
                )
            }),
            ImageKind::Compressed => cdr::compressed_image(data).map(|m| {
                c.producer
                    .push_compressed(received, m.stamp, m.frame_id, m.format, m.data)
            }),
        };
        Self::report_push(c, pushed);
    }

    /// Logs (once per kind) and counts what a push refused.
    fn report_push<E: std::fmt::Display>(
        c: &mut Camera,
        pushed: Result<Result<bool, crate::runtime::queue::Rejected>, E>,
    ) {
        match pushed {
            Ok(Ok(_)) => {}
            Ok(Err(rejected)) => crate::runtime::queue::warn_bad_input(
                &c.name,
                &rejected.error,
                rejected.first_of_kind,
            ),
            Err(e) => {
                if c.producer.reject_malformed() {
                    tracing::warn!(camera = %c.name, error = %e, "message does not deserialize (further ones are counted, not logged)");
                }
            }
        }
    }

    /// As [`Self::push`], without copying the pixels of a raw image: the message's buffer
    /// becomes the frame slot's, and `buffer` gets the slot's previous one (the bag reader
    /// reuses it). Compressed frames are copied: they are small (a 1280x720 JPEG, ~200 kB,
    /// copies in tens of microseconds), and the copy leaves them in this core's cache for the
    /// decoder.
    fn push_swapped(&mut self, camera: usize, buffer: &mut Vec<u8>) {
        if self.cameras[camera].kind == ImageKind::Compressed {
            return self.push(camera, buffer);
        }
        let c = &mut self.cameras[camera];
        c.frames_in += 1;
        let received = Instant::now();
        let (frame_id, encoding) = (&mut c.frame_id, &mut c.encoding);
        let parsed = cdr::image(buffer).map(|m| {
            frame_id.clear();
            frame_id.push_str(m.frame_id);
            encoding.clear();
            encoding.push_str(m.encoding);
            // Where the pixels, a slice of the buffer, start in it.
            let start = (m.data.as_ptr() as usize).wrapping_sub(buffer.as_ptr() as usize);
            let range = start..start.saturating_add(m.data.len());
            let geometry = (m.width, m.height, m.step as usize, m.is_bigendian != 0);
            (m.stamp, geometry, range)
        });
        let pushed = parsed.map(|(stamp, (width, height, step_bytes, big_endian), range)| {
            let header = SwappedHeader::Raw(RawHeader {
                width,
                height,
                step_bytes,
                encoding: &c.encoding,
                big_endian,
            });
            c.producer
                .push_swapped(received, stamp, &c.frame_id, header, buffer, range)
        });
        Self::report_push(c, pushed);
    }

    /// Writes every result ready. `log_time_ns`: the time to write them at (max-speed: the
    /// frame's receive time); `None`: the bag clock now (rate).
    fn drain(
        &mut self,
        log_time_ns: Option<u64>,
        mut keep: Option<&mut Option<(String, Vec<u8>)>>,
    ) -> Result<(), ReplayError> {
        while let Some(out) = self.runtime.results().and_then(|r| r.try_recv()) {
            let result = self.write_result(&out, log_time_ns, keep.as_deref_mut());
            if let Some(r) = self.runtime.results() {
                r.recycle(out);
            }
            result?;
        }
        Ok(())
    }

    fn write_result(
        &mut self,
        out: &Output,
        log_time_ns: Option<u64>,
        keep: Option<&mut Option<(String, Vec<u8>)>>,
    ) -> Result<(), ReplayError> {
        let now = Instant::now();
        let verdict = match self.runtime.tracker_mut() {
            Some(t) => t.judge(out, now),
            None => Verdict::OnTime,
        };
        let e2e = now.saturating_duration_since(out.received);
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        self.totals.first.get_or_insert(StageMs {
            e2e: ms(e2e),
            preprocess: ms(out.times.preprocess),
            inference: ms(out.times.inference),
            postprocess: ms(out.times.postprocess),
        });
        self.totals.e2e.record(now, e2e);
        self.totals.preprocess.record(now, out.times.preprocess);
        self.totals.inference.record(now, out.times.inference);
        self.totals.postprocess.record(now, out.times.postprocess);
        if verdict == Verdict::LateDrop {
            return Ok(());
        }
        let Some(camera) = self.cameras.get_mut(out.camera) else {
            return Ok(());
        };
        cdr::encode_detection_array(
            &mut self.buf,
            out.stamp,
            out.frame_id(),
            out.detections(),
            &self.runtime.model().class_names,
        );
        let t = log_time_ns
            .unwrap_or_else(|| u64::try_from(self.clock_ns.load(Ordering::Relaxed)).unwrap_or(0));
        if let Some(w) = self.writer.as_mut() {
            w.write(camera.out_topic, t, &self.buf)?;
            camera.written += 1;
            camera.counters.published.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(k) = keep {
            // Step mode only: the last result, for printing.
            let (name, bytes) = k.get_or_insert_with(Default::default);
            name.clone_from(&camera.name);
            bytes.clone_from(&self.buf);
        }
        self.last_log_ns = self.last_log_ns.max(t);
        Ok(())
    }

    /// `--copy-all`: every input message goes to the output bag unchanged.
    fn copy(&mut self, m: &crate::bag::BagMessage<'_>) -> Result<(), ReplayError> {
        self.last_log_ns = self.last_log_ns.max(m.log_time_ns);
        if !self.options.copy_all {
            return Ok(());
        }
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let topic = match self.copied.get(m.topic) {
            Some(t) => *t,
            None => {
                let known = schema::known(m.type_name);
                let fallback = known.map(|k| k.definition());
                let definition = m
                    .definition
                    .or(fallback.as_deref().map(|d| ("ros2msg", d.as_bytes())));
                let t = w.add_topic(
                    m.topic,
                    m.type_name,
                    definition,
                    known.map_or("", |k| k.type_hash),
                    "",
                )?;
                self.copied.insert(m.topic.to_string(), t);
                t
            }
        };
        w.write(topic, m.log_time_ns, m.data)?;
        Ok(())
    }

    /// Writes /diagnostics for every period boundary up to bag time `bag_ns`.
    fn emit_diagnostics_until(&mut self, bag_ns: u64) -> Result<(), ReplayError> {
        let Some(topic) = self.diagnostics_topic else {
            return Ok(());
        };
        if self.next_diagnostics_ns == 0 {
            self.next_diagnostics_ns = bag_ns + self.period_ns;
            return Ok(());
        }
        if bag_ns < self.next_diagnostics_ns {
            // A bag played after another may start earlier: re-anchor on time going back.
            if self.next_diagnostics_ns - bag_ns > 2 * self.period_ns {
                self.next_diagnostics_ns = bag_ns + self.period_ns;
            }
            return Ok(());
        }
        let at = self.next_diagnostics_ns;
        self.next_diagnostics_ns = bag_ns.max(at) + self.period_ns;
        let statuses = self.statuses();
        let stamp = crate::runtime::queue::Stamp::from_nanos(i64::try_from(at).unwrap_or(i64::MAX));
        cdr::encode_diagnostic_array(&mut self.buf, stamp, &statuses, "lookout");
        if let Some(w) = self.writer.as_mut() {
            w.write(topic, at, &self.buf)?;
        }
        Ok(())
    }

    fn statuses(&mut self) -> Vec<Status> {
        self.runtime.report_health(Instant::now())
    }

    fn finish(mut self, interrupted: bool) -> Result<Report, ReplayError> {
        let wall_s = self.started.elapsed().as_secs_f64();
        if let Err(e) = self.emit_diagnostics_final() {
            if let Some(w) = self.writer.take() {
                let _ = w.finish();
            }
            return Err(e);
        }
        let info = match self.writer.take() {
            Some(w) => Some(w.finish()?),
            None => None,
        };
        let now = Instant::now();
        let engine = self.runtime.engine().clone();
        let model = self.runtime.model().clone();
        let mut report = Report {
            execution_provider: engine.execution_provider.to_string(),
            fallback_reason: engine.fallback_reason.clone(),
            io_memory: engine.io_memory.to_string(),
            model_sha256: model.sha256.clone(),
            mode: self.options.pace.name().to_string(),
            rate: match self.options.pace {
                Pace::Rate(r) => r,
                _ => 1.0,
            },
            interrupted,
            wall_s: (wall_s * 1000.0).round() / 1000.0,
            model: model.name.clone(),
            input_bags: self
                .options
                .bags
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            output_bag: self.options.out.display().to_string(),
            messages_written: info.map_or(0, |i| i.message_count),
            latency_ms: self.totals.latency(),
            first_frame_ms: self.totals.first.unwrap_or_default(),
            peak_rss_mb: peak_rss_mb(),
            ..Report::default()
        };
        let mut inference_ns = 0u64;
        for (i, c) in self.cameras.iter().enumerate() {
            let s = c.counters.snapshot();
            let stats = self
                .runtime
                .tracker_mut()
                .map(|t| t.snapshot(i, now))
                .unwrap_or_default();
            inference_ns += s.inference_ns;
            let counts = Counts {
                frames_in: c.frames_in,
                frames_processed: s.processed,
                // Every frame that yields no detections message, bad input aside.
                dropped: s.dropped() + s.timeouts + s.inference_errors,
                deadline_misses: s.deadline_misses,
                bad_inputs: s.bad_input,
                timeouts: s.timeouts,
                messages_written: c.written,
                execution_provider: engine.execution_provider.to_string(),
                model_sha256: model.sha256.clone(),
                latency_ms: LatencyMs {
                    e2e: stats.e2e_total.into(),
                    preprocess: stats.preprocess_total.into(),
                    inference: stats.inference_total.into(),
                    postprocess: stats.postprocess_total.into(),
                },
            };
            report.frames_in += counts.frames_in;
            report.frames_processed += counts.frames_processed;
            report.dropped += counts.dropped;
            report.deadline_misses += counts.deadline_misses;
            report.bad_inputs += counts.bad_inputs;
            report.per_camera.insert(c.name.clone(), counts);
        }
        if wall_s > 0.0 {
            report.frames_per_s = round2(report.frames_processed as f64 / wall_s);
        }
        if report.frames_processed > 0 && inference_ns > 0 {
            report.inference_only_frames_per_s =
                round2(1e9 * report.frames_processed as f64 / inference_ns as f64);
        }
        Ok(report)
    }

    fn emit_diagnostics_final(&mut self) -> Result<(), ReplayError> {
        // One last status at the end of the bag, so short bags carry one too.
        if self.diagnostics_topic.is_some() && self.last_log_ns > 0 {
            self.next_diagnostics_ns = self.next_diagnostics_ns.min(self.last_log_ns).max(1);
            return self.emit_diagnostics_until(self.last_log_ns);
        }
        Ok(())
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// What [`Replay::run`]'s go-ahead callback sees in step mode.
#[derive(Debug)]
pub struct StepView<'a> {
    /// Frames played so far.
    pub frame: u64,
    /// Topic of the next frame (empty after the last one).
    pub topic: &'a str,
    /// Its receive time.
    pub log_time_ns: u64,
    /// The previous frame's camera name and detections message (CDR), if any.
    pub previous: Option<(&'a str, &'a [u8])>,
}

/// The default output folder for `bag`: `<bag name>_lookout` in the current directory.
pub fn default_out(bag: &Path) -> PathBuf {
    let name = bag
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".mcap").trim_end_matches(".db3"))
        .unwrap_or("bag");
    PathBuf::from(format!("{name}_lookout"))
}
