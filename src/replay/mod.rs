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
use std::time::Instant;

use crate::bag::schema;
use crate::bag::{Bag, BagError, BagWriter, offered_qos_yaml};
use crate::config::names::{resolve_replay_topic, shadow_detections_topic};
use crate::config::{Config, ImageKind};
use crate::runtime::counters::CameraCounters;
use crate::runtime::deadline::RosClock;
use crate::runtime::queue::FrameProducer;
use crate::runtime::{Runtime, RuntimeError, Timing};

mod output;
mod paced;
mod report;
mod sink;
mod source;
pub use output::{OutputError, OutputPlan, write_file_atomically};
pub use report::{
    Counts, LatencyMs, PercentilesMs, Report, ShadowReport, StageMs, Totals, peak_rss_mb,
};

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
    /// Output bag folder. Written in a staging folder beside it and renamed into place when
    /// complete ([`OutputPlan`]); it must not exist, be empty, or (with `force`) be a previous
    /// lookout replay output.
    pub out: PathBuf,
    /// Replace an existing output folder that lookout wrote.
    pub force: bool,
    /// Pacing.
    pub pace: Pace,
    /// Also copy every input message (images and other topics) to the output bag.
    pub copy_all: bool,
    /// Write /diagnostics to the output bag.
    pub diagnostics: bool,
}

/// Slowest `--rate` (a thousandth of real time).
pub const MIN_RATE: f64 = 0.001;
/// Fastest `--rate` (beyond it, use the maximum speed: no pacing).
pub const MAX_RATE: f64 = 1000.0;

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
    /// The output folder is unsafe to write, or could not be put in place.
    #[error(transparent)]
    Output(#[from] OutputError),
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

/// One configured camera as the replay sees it.
struct Camera {
    name: String,
    topic: String,
    kind: ImageKind,
    producer: FrameProducer,
    counters: Arc<CameraCounters>,
    out_topic: usize,
    /// `--copy-all`: the camera's `foxglove_msgs/ImageAnnotations` topic (its boxes, drawn over
    /// its images by Foxglove).
    annotations_topic: Option<usize>,
    /// `shadow.publish`: the camera's `<namespace>/shadow/detections` topic.
    shadow_topic: Option<usize>,
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
    /// Results, drops and misses over wall time, for the report page.
    timeline: crate::charts::Timeline,
    writer: Option<BagWriter>,
    /// Storage damage found while reading (the damaged files were read up to it).
    damage: Vec<crate::bag::BagDamage>,
    /// Where the bag is written, and put in place by `finish` (dropped: removed).
    output: Option<OutputPlan>,
    diagnostics_topic: Option<usize>,
    copied: BTreeMap<String, usize>,
    clock_ns: Arc<AtomicI64>,
    buf: Vec<u8>,
    /// Encoding buffer of the annotations messages (`--copy-all`).
    annotations_buf: Vec<u8>,
    /// Detections written, per class id (sized to the model's classes in `new`).
    class_counts: Vec<u64>,
    /// Every result written, as drift-profile counts.
    profile_counts: crate::runtime::drift::DetectionCounts,
    started: Instant,
    next_diagnostics_ns: u64,
    period_ns: u64,
    last_log_ns: u64,
    /// Max speed: per camera, the log time of its frame pushed but not yet inferred (frames of
    /// different cameras wait to share one run of a batching engine).
    pending_log_ns: Vec<Option<u64>>,
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
        // Before anything slow: where the output goes must be safe for the inputs.
        let output = OutputPlan::new(&options.out, &options.bags, options.force)?;
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
        let mut writer = BagWriter::create_named(output.staging(), &output.bag_name(), provenance)?;

        let mut cameras = Vec::new();
        let producers = runtime.take_inputs();
        for ((index, (name, cam)), producer) in config.camera_list().enumerate().zip(producers) {
            let out_name = resolve_replay_topic(&config.detections_topic(name));
            let qos = cam.detections_qos();
            // With the images copied, their boxes too: `<detections topic's namespace>/annotations`.
            let annotations_topic = if options.copy_all {
                let base = out_name.rsplit_once('/').map_or("", |(b, _)| b);
                Some(writer.add_known_topic(
                    &format!("{base}/annotations"),
                    &schema::IMAGE_ANNOTATIONS,
                    &offered_qos_yaml(true, 10),
                )?)
            } else {
                None
            };
            // The detections (and the shadow model's, beside them) as the live node offers them.
            let offered = offered_qos_yaml(
                qos.reliability == crate::config::Reliability::Reliable,
                qos.depth,
            );
            let shadow_topic = if runtime.shadow_results().is_some() {
                Some(writer.add_known_topic(
                    &shadow_detections_topic(&out_name),
                    &schema::DETECTION2D_ARRAY,
                    &offered,
                )?)
            } else {
                None
            };
            let out_topic =
                writer.add_known_topic(&out_name, &schema::DETECTION2D_ARRAY, &offered)?;
            cameras.push(Camera {
                name: name.to_string(),
                topic: resolve_replay_topic(&cam.topic),
                kind: cam.kind,
                producer,
                counters: Arc::clone(&runtime.counters()[index]),
                out_topic,
                annotations_topic,
                shadow_topic,
                frames_in: 0,
                written: 0,
                frame_id: String::with_capacity(crate::runtime::queue::FRAME_ID_CAPACITY),
                encoding: String::with_capacity(64),
            });
        }
        let diagnostics_topic = if options.diagnostics {
            Some(writer.add_known_topic(
                "/diagnostics",
                &schema::DIAGNOSTIC_ARRAY,
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
        let classes = runtime.model().class_names.len();
        Ok(Self {
            bags,
            cameras,
            runtime,
            totals,
            timeline: crate::charts::Timeline::new(std::time::Duration::from_millis(500)),
            writer: Some(writer),
            output: Some(output),
            damage: Vec::new(),
            diagnostics_topic,
            copied: BTreeMap::new(),
            clock_ns,
            buf: Vec::with_capacity(64 * 1024),
            annotations_buf: Vec::with_capacity(64 * 1024),
            class_counts: vec![0; classes],
            profile_counts: crate::runtime::drift::DetectionCounts::new(classes),
            started: Instant::now(),
            next_diagnostics_ns: 0,
            period_ns,
            last_log_ns: 0,
            pending_log_ns: Vec::new(),
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
        // A batching engine infers consecutive frames of different cameras in one run: a frame
        // waits while the run can still take the next one. The grouping depends on the bag's
        // message order only. Step mode shows every frame alone.
        let batch = if step { 1 } else { self.runtime.batch() };
        self.pending_log_ns = vec![None; self.cameras.len()];
        let mut interrupted = false;
        let mut failure: Option<ReplayError> = None;
        let mut frames = 0u64;
        let bags = std::mem::take(&mut self.bags);
        let mut last_view: Option<(String, Vec<u8>)> = None;
        for bag in &bags {
            // Reading and decompressing run ahead on their own thread, overlapping inference.
            let damage = bag.for_each_prefetched(READ_AHEAD_MESSAGES, |prefetched| {
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
                        let Some(c) = camera else { return Ok(()) };
                        if self.pending_log_ns[c].is_some() {
                            self.infer_pending(step.then_some(&mut last_view))?;
                        }
                        self.push_swapped(c, prefetched.buffer_mut());
                        self.pending_log_ns[c] = Some(log_time_ns);
                        frames += 1;
                        progress(frames);
                        let waiting = self.pending_log_ns.iter().flatten().count();
                        if waiting >= batch {
                            self.infer_pending(step.then_some(&mut last_view))?;
                        }
                        Ok(())
                    });
                if let Err(e) = result {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })?;
            self.note_damage(damage);
            // Frames pushed are inferred and written, also before stopping.
            if let Err(e) = self.infer_pending(step.then_some(&mut last_view)) {
                failure.get_or_insert(e);
            }
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

    /// Records storage damage: logged as an error now, listed in the report, and the replay
    /// exits non-zero (frames were lost) after writing everything readable.
    fn note_damage(&mut self, damage: Vec<crate::bag::BagDamage>) {
        for d in damage {
            tracing::error!(damage = %d, "bag damaged: frames lost");
            self.damage.push(d);
        }
    }

    /// Infers every frame pushed and writes the results, each at its frame's log time.
    fn infer_pending(
        &mut self,
        keep: Option<&mut Option<(String, Vec<u8>)>>,
    ) -> Result<(), ReplayError> {
        if self.pending_log_ns.iter().all(Option::is_none) {
            return Ok(());
        }
        self.runtime.step_until_idle();
        let result = self.drain(None, keep);
        self.pending_log_ns.iter_mut().for_each(|p| *p = None);
        result
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
