//! `lookout sim`: the third front end. It answers "with these cameras at these rates on this
//! computer, which deadlines hold?" by running the live runtime (the same queues, scheduler,
//! inference loop, deadline tracker and diagnostics rules as `lookout run`, with
//! [`crate::runtime::Timing::Live`]) against a source that emits real frames on a schedule,
//! and measuring.
//!
//! - The source ([`source`]) is loaded before the clock starts; each camera loops over its
//!   frames. `--cameras N` makes N copies of the source's first stream; without it the params
//!   file's cameras are fed (from a bag: each camera by its topic).
//! - The schedule ([`schedule`]) gives every camera `fps` frames a second, spread over the
//!   period, with Gaussian jitter and bursts; frames are stamped with the system time when they
//!   are handed over, as a driver stamps them.
//! - In process (`in_process.rs`), this thread emits (a camera driver's copy into the frame
//!   slot included); a sink thread (`lookout-sim-sink`) takes every result the moment it is
//!   ready, judges it against its budget and records its latencies, as the live node's
//!   publisher does (without DDS). `--via-ros` (`via_ros.rs`) goes through a ROS graph instead.
//! - `--sweep` ([`sweep`]) repeats the run at rising rates to find the peak rate kept up with.
//!
//! Contract: [`Sim::new`] checks every option against its limit and builds the cameras'
//! configuration; each run builds a fresh [`crate::runtime::Runtime`] (the model is loaded
//! and warmed up before the clock starts, so every point starts alike) and allocates nothing
//! per frame on the emitting thread. Blocks for the run's duration; Ctrl-C (the `stop` flag) ends the run early
//! and what was measured is reported.

mod in_process;
pub mod report;
pub mod schedule;
pub mod source;
pub mod sweep;
#[cfg(feature = "ros")]
mod via_ros;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::{CameraConfig, Config, ConfigError, MAX_CAMERAS};
use crate::runtime::RuntimeError;
use report::SimReport;
use source::{Source, SourceError, SourceFrame};
use sweep::Point;

/// Highest `--fps` (per camera).
pub const MAX_FPS: f64 = 1000.0;
/// Longest `--duration`, s (a day).
pub const MAX_DURATION_S: f64 = 86_400.0;
/// Largest `--jitter-ms`.
pub const MAX_JITTER_MS: f64 = 10_000.0;
/// Largest `--burst`.
pub const MAX_BURST: u32 = 1000;

/// Why a simulation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An option is out of range.
    #[error("{option}: {reason}")]
    Option {
        /// The option, e.g. `--fps`.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The source cannot be loaded.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The cameras' configuration is invalid for this source.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The runtime cannot start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A worker thread died during the run (its frames are lost).
    #[error("thread {thread} died during the simulation: {reason}")]
    WorkerDied {
        /// Thread name.
        thread: &'static str,
        /// Why.
        reason: String,
    },
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The node's configuration (its cameras, unless `cameras` is set).
    pub config: Config,
    /// The frames.
    pub source: Source,
    /// `--cameras N`: N copies of the source's first stream, named `cam0`..; the params file's
    /// first camera (if any) gives their settings.
    pub cameras: Option<usize>,
    /// Frames per second per camera.
    pub fps: f64,
    /// Standard deviation of the emission times, ms.
    pub jitter_ms: f64,
    /// Frames per burst.
    pub burst: u32,
    /// Length of each run.
    pub duration: Duration,
    /// Seed of the jitter.
    pub seed: u64,
    /// Run through a ROS 2 graph: `lookout run` in its own process, frames published and
    /// detections received over DDS (needs the `ros` feature).
    pub via_ros: bool,
}

/// One simulated camera.
struct SimCamera {
    name: String,
    frames: Arc<[SourceFrame]>,
}

/// A simulation, ready to run.
pub struct Sim {
    config: Config,
    cameras: Vec<SimCamera>,
    options: SimOptions,
}

fn option(option: &'static str, reason: impl Into<String>) -> SimError {
    SimError::Option {
        option,
        reason: reason.into(),
    }
}

/// Checks that `fps` is a rate the simulation accepts.
pub fn check_fps(option_name: &'static str, fps: f64) -> Result<(), SimError> {
    if fps.is_finite() && fps > 0.0 && fps <= MAX_FPS {
        Ok(())
    } else {
        Err(option(
            option_name,
            format!("must be within (0, {MAX_FPS}], got {fps}"),
        ))
    }
}

impl Sim {
    /// Checks the options and builds the cameras' configuration (see [`SimOptions`]).
    pub fn new(options: SimOptions) -> Result<Self, SimError> {
        check_fps("--fps", options.fps)?;
        let d = options.duration.as_secs_f64();
        if !(d > 0.0 && d <= MAX_DURATION_S) {
            return Err(option(
                "--duration",
                format!("must be within (0, {MAX_DURATION_S}] s, got {d}"),
            ));
        }
        if !(0.0..=MAX_JITTER_MS).contains(&options.jitter_ms) {
            return Err(option(
                "--jitter-ms",
                format!(
                    "must be within 0..{MAX_JITTER_MS}, got {}",
                    options.jitter_ms
                ),
            ));
        }
        if !(1..=MAX_BURST).contains(&options.burst) {
            return Err(option(
                "--burst",
                format!("must be within 1..{MAX_BURST}, got {}", options.burst),
            ));
        }
        let mut config = options.config.clone();
        let mut cameras = Vec::new();
        match options.cameras {
            Some(n) => {
                if !(1..=MAX_CAMERAS).contains(&n) {
                    return Err(option(
                        "--cameras",
                        format!("must be within 1..{MAX_CAMERAS}, got {n}"),
                    ));
                }
                let frames: Arc<[SourceFrame]> =
                    options.source.frames(None).unwrap_or_default().into();
                let template = config
                    .camera_list()
                    .next()
                    .map(|(_, c)| c.clone())
                    .map_or_else(default_camera, Ok)?;
                let (w, h) = frames
                    .iter()
                    .map(SourceFrame::size)
                    .fold((0, 0), |a, s| (a.0.max(s.0), a.1.max(s.1)));
                config.cameras.clear();
                config.camera.clear();
                for i in 0..n {
                    let name = format!("cam{i}");
                    let mut c = template.clone();
                    c.topic = format!("/sim/{name}/image");
                    c.detections_topic = String::new();
                    if let Some(f) = frames.first() {
                        c.kind = f.kind();
                    }
                    c.max_width = c.max_width.max(w);
                    c.max_height = c.max_height.max(h);
                    config.cameras.push(name.clone());
                    config.camera.insert(name.clone(), c);
                    cameras.push(SimCamera {
                        name,
                        frames: Arc::clone(&frames),
                    });
                }
            }
            None => {
                for (name, c) in config.camera_list() {
                    let frames = options.source.frames(Some(&c.topic)).ok_or_else(|| {
                        option(
                            "--source",
                            format!(
                                "{} has no frames for camera {name} (topic {})",
                                options.source.description, c.topic
                            ),
                        )
                    })?;
                    for f in frames {
                        if f.kind() != c.kind {
                            return Err(ConfigError::Parameter {
                                key: format!("camera.{name}.type"),
                                reason: format!(
                                    "the source's frames are {:?}, the camera takes {:?}",
                                    f.kind(),
                                    c.kind
                                ),
                            }
                            .into());
                        }
                        let (w, h) = f.size();
                        if w > c.max_width || h > c.max_height {
                            return Err(ConfigError::Parameter {
                                key: format!("camera.{name}.max_width"),
                                reason: format!(
                                    "the source has {w}x{h} frames, over max_width x max_height {}x{}",
                                    c.max_width, c.max_height
                                ),
                            }
                            .into());
                        }
                    }
                    cameras.push(SimCamera {
                        name: name.to_string(),
                        frames: frames.into(),
                    });
                }
            }
        }
        config.validate()?;
        // A still source shows one picture again and again by design: the frozen-camera check
        // would only say so (the other input-health checks stay).
        if cameras.iter().any(|c| c.frames.len() < 2) {
            config.monitor.input_health.frozen_frames = 100_000;
        }
        Ok(Self {
            config,
            cameras,
            options,
        })
    }

    /// The configuration the runs use (the simulated cameras).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// One run at the options' rate.
    pub fn run(
        &self,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<SimReport, SimError> {
        self.run_at(self.options.fps, stop, progress)
    }

    /// The peak-rate search from `from` frames per second by `step`; the report is the run at
    /// the peak rate (or the last run, when none kept up), with the sweep attached.
    pub fn sweep(
        &self,
        from: f64,
        step: f64,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<SimReport, SimError> {
        check_fps("--from", from)?;
        check_fps("--step", step)?;
        let mut failure = None;
        let mut runs: Vec<SimReport> = Vec::new();
        let criteria =
            "under 1 % of frames dropped and every camera's end-to-end p99 within its budget_ms";
        let result = sweep::search(from, step, MAX_FPS, criteria, |fps| {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            match self.run_at(fps, stop, progress) {
                Ok(r) if !r.run.interrupted => {
                    let p = self.point(&r);
                    runs.push(r);
                    Some(p)
                }
                Ok(_) => None,
                Err(e) => {
                    failure = Some(e);
                    None
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let at_peak = runs
            .iter()
            .position(|r| r.offered_fps == result.peak_fps)
            .or_else(|| runs.len().checked_sub(1));
        let mut report = match at_peak {
            Some(i) => runs.swap_remove(i),
            None => SimReport::default(),
        };
        report.run.interrupted |= result.interrupted;
        report.sweep = Some(result);
        Ok(report)
    }

    /// A run's figures as a sweep point.
    fn point(&self, r: &SimReport) -> Point {
        let run = &r.run;
        let dropped_percent = if run.frames_in > 0 {
            run.dropped as f64 * 100.0 / run.frames_in as f64
        } else {
            100.0
        };
        let within_budget = self.config.camera_list().all(|(name, c)| {
            run.per_camera
                .get(name)
                .is_some_and(|k| k.frames_processed > 0 && k.latency_ms.e2e.p99 <= c.budget_ms)
        });
        let achieved = if r.achieved_fps.is_empty() {
            0.0
        } else {
            r.achieved_fps.values().sum::<f64>() / r.achieved_fps.len() as f64
        };
        Point {
            offered_fps: r.offered_fps,
            achieved_fps: achieved,
            e2e_p50_ms: run.latency_ms.e2e.p50,
            e2e_p99_ms: run.latency_ms.e2e.p99,
            dropped_percent,
            deadline_misses: run.deadline_misses,
            sustained: dropped_percent < 1.0 && within_budget,
        }
    }

    /// One run at `fps` per camera, in process or through ROS; `progress` gets the fraction
    /// done.
    fn run_at(
        &self,
        fps: f64,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<SimReport, SimError> {
        if self.options.via_ros {
            #[cfg(feature = "ros")]
            return self.run_via_ros(fps, stop, progress);
            #[cfg(not(feature = "ros"))]
            return Err(option(
                "--via-ros",
                "this binary was built without ROS (the `ros` feature)",
            ));
        }
        self.run_in_process(fps, stop, progress)
    }
}

/// Nanoseconds since the Unix epoch (the ROS system clock).
fn system_time_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// CPU time this process has used (user + system), s.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one `rusage` into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A camera with every setting at its default.
fn default_camera() -> Result<CameraConfig, SimError> {
    serde_json::from_value(serde_json::json!({ "topic": "/sim/image" })).map_err(|e| {
        SimError::Config(ConfigError::Parameter {
            key: "camera".into(),
            reason: e.to_string(),
        })
    })
}
