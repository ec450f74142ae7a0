//! The node's configuration: one typed struct, read from a ROS 2 parameters file.
//!
//! The same file serves `lookout run` (live), `lookout replay` and `lookout sim`. It is a standard
//! ROS 2 params file, so `ros2 launch`, `--ros-args --params-file` and `-p key:=value` all work:
//!
//! ```yaml
//! /**:                      # or the node name, e.g. `lookout` or `/ns/lookout`
//!   ros__parameters:
//!     model: models/yolov3-tiny/manifest.yaml
//!     cameras: [front]      # camera names; each has a `camera.<name>` section
//!     camera:
//!       front:
//!         topic: /camera/front/image_raw
//!         type: image       # image (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)
//! ```
//!
//! Nested maps are flattened into dotted parameter names (`camera.front.topic`) exactly as rcl
//! does; [`Config::from_parameters`] turns such a flat list back into the typed struct. Unknown or
//! invalid parameters are errors that name the full dotted key.
//!
//! Contract: parsing and validation allocate; they run once at start-up.

pub mod names;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::engine::EngineConfig;
use crate::core::model::Thresholds;
use crate::runtime::deadline::{DeadlineSettings, LatePolicy};

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The parameters file cannot be read.
    #[error("cannot read parameters file {path}: {error}")]
    Read {
        /// File path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid YAML or not a ROS 2 parameters file.
    #[error("invalid parameters file {path}: {reason}")]
    Syntax {
        /// File path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A parameter is unknown, missing or of the wrong type.
    #[error("parameter `{key}`: {reason}")]
    Parameter {
        /// Full dotted parameter name.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

fn param_err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Parameter {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Which message type a camera publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// `sensor_msgs/msg/Image` (rgb8, bgr8, rgba8, bgra8, mono8).
    Image,
    /// `sensor_msgs/msg/CompressedImage` (jpeg, png).
    Compressed,
}

impl ImageKind {
    /// The ROS message type name.
    pub fn ros_type(self) -> &'static str {
        match self {
            Self::Image => "sensor_msgs/msg/Image",
            Self::Compressed => "sensor_msgs/msg/CompressedImage",
        }
    }
}

/// What happens when frames arrive faster than inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// Always infer the newest frame; older queued frames are dropped (counted as superseded).
    KeepNewest,
    /// Infer frames in arrival order; a frame that finds the ring full is dropped (counted).
    Fifo,
}

/// QoS reliability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reliability {
    /// Best effort (sensor data).
    BestEffort,
    /// Reliable.
    Reliable,
    /// The middleware's default.
    SystemDefault,
}

/// QoS durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Volatile.
    Volatile,
    /// Transient local (late joiners get the last messages).
    TransientLocal,
    /// The middleware's default.
    SystemDefault,
}

/// A topic's QoS (history is always keep-last with `depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QosConfig {
    /// Reliability.
    pub reliability: Reliability,
    /// Durability.
    pub durability: Durability,
    /// Keep-last depth.
    pub depth: usize,
}

/// QoS as written in the parameters: each key optional, so `-p camera.front.qos.depth:=1`
/// changes only the depth of the topic's default profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosParams {
    /// Reliability.
    pub reliability: Option<Reliability>,
    /// Durability.
    pub durability: Option<Durability>,
    /// Keep-last depth.
    pub depth: Option<usize>,
}

impl QosParams {
    /// These parameters over `base`.
    pub fn over(&self, base: QosConfig) -> QosConfig {
        QosConfig {
            reliability: self.reliability.unwrap_or(base.reliability),
            durability: self.durability.unwrap_or(base.durability),
            depth: self.depth.unwrap_or(base.depth),
        }
    }
}

impl QosConfig {
    /// Sensor data: best effort, volatile, keep last 5.
    pub const SENSOR_DATA: QosConfig = QosConfig {
        reliability: Reliability::BestEffort,
        durability: Durability::Volatile,
        depth: 5,
    };
    /// Reliable, volatile, keep last 10 (detections).
    pub const RELIABLE: QosConfig = QosConfig {
        reliability: Reliability::Reliable,
        durability: Durability::Volatile,
        depth: 10,
    };
}

fn default_ring_capacity() -> usize {
    4
}

fn default_max_width() -> u32 {
    1920
}

fn default_true() -> bool {
    true
}

fn default_max_height() -> u32 {
    1200
}

fn default_queue_policy() -> QueuePolicy {
    QueuePolicy::KeepNewest
}

fn default_kind() -> ImageKind {
    ImageKind::Image
}

/// One camera input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Input topic (relative names resolve in the node's namespace).
    pub topic: String,
    /// Message type on the topic.
    #[serde(rename = "type", default = "default_kind")]
    pub kind: ImageKind,
    /// Output topic for `vision_msgs/msg/Detection2DArray`; empty: `<camera name>/detections`.
    #[serde(default)]
    pub detections_topic: String,
    /// QoS of the input subscription (default: sensor data, best effort, depth 5).
    #[serde(default)]
    pub qos: QosParams,
    /// QoS of the detections publisher (default: reliable, depth 10).
    #[serde(default)]
    pub output_qos: QosParams,
    /// Frames that can wait between the subscription and the inference loop.
    #[serde(default = "default_ring_capacity")]
    pub ring_capacity: usize,
    /// What happens when frames arrive faster than inference runs.
    #[serde(default = "default_queue_policy")]
    pub queue_policy: QueuePolicy,
    /// Share of inference runs under overload, relative to the other cameras' weights
    /// (1..=100; see [`crate::runtime::scheduler`]). Left out of the provenance a replay records when it
    /// is the default, so that a replay's bytes do not depend on whether the key exists.
    #[serde(default = "default_weight", skip_serializing_if = "is_default_weight")]
    pub weight: u32,
    /// Largest frame width accepted (frame slots are allocated for it at start-up).
    #[serde(default = "default_max_width")]
    pub max_width: u32,
    /// Largest frame height accepted.
    #[serde(default = "default_max_height")]
    pub max_height: u32,
    /// Compressed cameras: decode a JPEG at 1/2, 1/4 or 1/8 of its size (in the DCT domain) when
    /// that is still at least the size it is letterboxed to. Faster; detections move a little
    /// against a full-size decode (see README). `false`: always decode at full size.
    #[serde(default = "default_true")]
    pub jpeg_reduced_scale: bool,
    /// Soft deadline from reception to publication, ms. Misses are counted (and the result
    /// published or dropped per `late_results`).
    #[serde(default = "default_budget_ms")]
    pub budget_ms: f64,
    /// A frame older than this (ROS time: now - header.stamp) when the inference loop takes it
    /// is dropped unprocessed and counted; 0: no limit.
    #[serde(default)]
    pub max_age_ms: f64,
    /// An inference run longer than this is terminated (ONNX Runtime run termination), counted
    /// as a timeout, and the loop goes on with the next frame; 0: no limit.
    #[serde(default)]
    pub hard_timeout_ms: f64,
    /// What happens to a result that misses `budget_ms`: `publish` it anyway, or `drop` it.
    #[serde(default = "default_late_results")]
    pub late_results: LatePolicy,
    /// A camera with no frame for this long is reported STALE, ms.
    #[serde(default = "default_input_timeout_ms")]
    pub input_timeout_ms: f64,
    /// ERROR when fewer results per second than this are published while frames arrive; 0: off.
    #[serde(default)]
    pub min_output_rate_hz: f64,
}

/// Largest `camera.<name>.budget_ms` (one minute).
pub const MAX_BUDGET_MS: f64 = 60_000.0;
/// Largest `camera.<name>.max_age_ms` and `input_timeout_ms` (one hour).
pub const MAX_AGE_MS: f64 = 3_600_000.0;
/// Largest `camera.<name>.hard_timeout_ms` (one minute).
pub const MAX_HARD_TIMEOUT_MS: f64 = 60_000.0;
/// Largest `camera.<name>.min_output_rate_hz`.
pub const MAX_RATE_HZ: f64 = 1_000.0;
/// Largest `diagnostics.period_ms` (one minute).
pub const MAX_PERIOD_MS: f64 = 60_000.0;
/// Largest `diagnostics.window_s` (one hour).
pub const MAX_WINDOW_S: f64 = 3_600.0;
/// Largest `engine.intra_op_threads`.
pub const MAX_THREADS: usize = 1024;
/// Largest `engine.warmup_runs`.
pub const MAX_WARMUP_RUNS: u32 = 100;

fn default_weight() -> u32 {
    1
}

fn is_default_weight(w: &u32) -> bool {
    *w == default_weight()
}

fn default_budget_ms() -> f64 {
    100.0
}

fn default_input_timeout_ms() -> f64 {
    1000.0
}

fn default_late_results() -> LatePolicy {
    LatePolicy::Publish
}

/// /diagnostics and debug topics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosticsConfig {
    /// Period of /diagnostics, ms.
    #[serde(default = "default_period_ms")]
    pub period_ms: f64,
    /// Length of the sliding window of the percentiles, s (they cover one to two windows).
    #[serde(default = "default_window_s")]
    pub window_s: f64,
    /// Publish `~/debug/<camera>/processing_time_ms` and `~/debug/<camera>/pipeline_latency_ms`
    /// (std_msgs/Float64) for every result.
    #[serde(default)]
    pub debug_topics: bool,
}

fn default_period_ms() -> f64 {
    1000.0
}

fn default_window_s() -> f64 {
    10.0
}

impl Default for DiagnosticsConfig {
    fn default() -> Self {
        Self {
            period_ms: default_period_ms(),
            window_s: default_window_s(),
            debug_topics: false,
        }
    }
}

/// Real-time settings of one thread (applied at its start; refused settings are logged once).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadConfig {
    /// CPUs the thread may run on; empty: any.
    #[serde(default)]
    pub cpu_affinity: Vec<i64>,
    /// SCHED_FIFO priority 1..99; 0: the normal scheduler.
    #[serde(default)]
    pub sched_fifo_priority: i64,
}

/// Real-time settings of lookout's threads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeConfig {
    /// The inference loop (`lookout-infer`).
    #[serde(default)]
    pub inference: ThreadConfig,
    /// The ROS executor (`main`).
    #[serde(default)]
    pub executor: ThreadConfig,
    /// The publisher (`lookout-publish`).
    #[serde(default)]
    pub publisher: ThreadConfig,
}

impl CameraConfig {
    /// The input subscription's QoS.
    pub fn input_qos(&self) -> QosConfig {
        self.qos.over(QosConfig::SENSOR_DATA)
    }

    /// The deadline settings of this camera.
    pub fn deadline(&self) -> DeadlineSettings {
        let ms = |v: f64| std::time::Duration::from_secs_f64(v / 1000.0);
        DeadlineSettings {
            budget: ms(self.budget_ms),
            max_age: (self.max_age_ms > 0.0).then(|| ms(self.max_age_ms)),
            late_policy: self.late_results,
        }
    }

    /// The hard inference timeout, if any.
    pub fn hard_timeout(&self) -> Option<std::time::Duration> {
        (self.hard_timeout_ms > 0.0)
            .then(|| std::time::Duration::from_secs_f64(self.hard_timeout_ms / 1000.0))
    }

    /// The detections publisher's QoS.
    pub fn detections_qos(&self) -> QosConfig {
        self.output_qos.over(QosConfig::RELIABLE)
    }

    /// Bytes of one frame slot: the largest raw frame (4 bytes per pixel); a compressed frame
    /// must also fit.
    pub fn slot_bytes(&self) -> usize {
        self.max_width as usize * self.max_height as usize * 4
    }
}

/// Threshold overrides (each optional; the model manifest gives the defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdOverrides {
    /// Minimum score.
    pub confidence: Option<f32>,
    /// NMS IoU.
    pub nms_iou: Option<f32>,
    /// Most detections per frame.
    pub max_detections: Option<usize>,
    /// Class-agnostic NMS.
    pub class_agnostic_nms: Option<bool>,
}

impl ThresholdOverrides {
    /// The model's thresholds with these overrides applied.
    pub fn apply(&self, base: Thresholds) -> Thresholds {
        Thresholds {
            confidence: self.confidence.unwrap_or(base.confidence),
            nms_iou: self.nms_iou.unwrap_or(base.nms_iou),
            max_detections: self.max_detections.unwrap_or(base.max_detections),
            class_agnostic_nms: self.class_agnostic_nms.unwrap_or(base.class_agnostic_nms),
        }
    }
}

fn default_model() -> PathBuf {
    PathBuf::from(crate::core::model::DEFAULT_MANIFEST)
}

/// The whole configuration of a lookout node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Model package manifest.
    #[serde(default = "default_model")]
    pub model: PathBuf,
    /// ONNX Runtime settings.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Threshold overrides.
    #[serde(default)]
    pub thresholds: ThresholdOverrides,
    /// Camera names, in order (the order breaks ties between frames with equal stamps).
    pub cameras: Vec<String>,
    /// Per-camera settings, keyed by name.
    #[serde(default)]
    pub camera: BTreeMap<String, CameraConfig>,
    /// Use the ROS time from /clock (standard ROS parameter).
    #[serde(default)]
    pub use_sim_time: bool,
    /// /diagnostics and debug topics.
    #[serde(default)]
    pub diagnostics: DiagnosticsConfig,
    /// CPU affinity and scheduling of lookout's threads.
    #[serde(default)]
    pub realtime: RealtimeConfig,
}

/// A parameter value, as in a ROS 2 parameters file.
pub type ParamValue = Value;

/// The documented default parameters file, relative to the repository.
pub const DEFAULT_PARAMS_FILE: &str = "config/lookout.yaml";

/// Parameters a ROS 2 node accepts that are not lookout's own (they are ignored).
const ROS_RESERVED: &[&str] = &["qos_overrides", "start_type_description_service"];

impl Config {
    /// Reads the section of `path` that applies to `node` (fully qualified name, e.g. `/lookout`)
    /// and flattens it into dotted parameter names, as rcl does. Sections apply in file order;
    /// `/**` and the node's name or fully qualified name match.
    pub fn read_parameters_file(
        path: &Path,
        node: &str,
    ) -> Result<Vec<(String, ParamValue)>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let syntax = |reason: String| ConfigError::Syntax {
            path: path.to_path_buf(),
            reason,
        };
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).map_err(|e| syntax(e.to_string()))?;
        let doc: Value = serde_json::to_value(doc).map_err(|e| syntax(e.to_string()))?;
        let Value::Object(sections) = doc else {
            return Err(syntax("top level must be a map of node names".into()));
        };
        let short = node.rsplit('/').next().unwrap_or(node);
        let mut out = Vec::new();
        for (name, section) in sections {
            let matches = name == "/**" || name == "**" || name == node || name == short;
            if !matches {
                continue;
            }
            let params = section
                .get("ros__parameters")
                .ok_or_else(|| syntax(format!("section `{name}` has no `ros__parameters`")))?;
            flatten("", params, &mut out);
        }
        Ok(out)
    }

    /// Builds the typed configuration from flat `(dotted name, value)` parameters (later entries
    /// override earlier ones) and validates it. Errors name the parameter.
    pub fn from_parameters(params: &[(String, ParamValue)]) -> Result<Self, ConfigError> {
        let mut root = Map::new();
        for (key, value) in params {
            if key.is_empty()
                || ROS_RESERVED
                    .iter()
                    .any(|r| key == r || key.starts_with(&format!("{r}.")))
            {
                continue;
            }
            insert_dotted(&mut root, key, value.clone())?;
        }
        let config: Config =
            serde_path_to_error::deserialize(Value::Object(root)).map_err(|e| {
                let key = e.path().to_string();
                let reason = e.into_inner().to_string();
                // serde names an unknown or missing field in the message; make sure the key ends
                // with it (the path stops at the enclosing map for some errors).
                let field = unknown_field(&reason).map(str::to_string).or_else(|| {
                    reason
                        .strip_prefix("missing field `")
                        .and_then(|r| r.split('`').next())
                        .map(str::to_string)
                });
                let key = match field {
                    Some(f) if key == "." => f,
                    Some(f) if key == f || key.ends_with(&format!(".{f}")) => key,
                    Some(f) => format!("{key}.{f}"),
                    None => key,
                };
                if reason.starts_with("missing field") {
                    param_err(key, "missing (required)")
                } else {
                    param_err(key, reason)
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a parameters file for `node`.
    pub fn load(path: &Path, node: &str) -> Result<Self, ConfigError> {
        Self::from_parameters(&Self::read_parameters_file(path, node)?)
    }

    /// Checks values and cross-references; errors name the parameter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cameras.is_empty() {
            return Err(param_err("cameras", "at least one camera is needed"));
        }
        for (i, name) in self.cameras.iter().enumerate() {
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !valid {
                return Err(param_err(
                    "cameras",
                    format!(
                        "camera name `{name}` must be letters, digits and _ (not starting with a digit)"
                    ),
                ));
            }
            if self.cameras[..i].contains(name) {
                return Err(param_err(
                    "cameras",
                    format!("camera `{name}` is listed twice"),
                ));
            }
            let Some(cam) = self.camera.get(name) else {
                return Err(param_err(
                    format!("camera.{name}"),
                    "missing: every camera in `cameras` needs a section",
                ));
            };
            let key = |k: &str| format!("camera.{name}.{k}");
            if cam.topic.trim().is_empty() {
                return Err(param_err(key("topic"), "must not be empty"));
            }
            if cam.ring_capacity < 1 || cam.ring_capacity > 64 {
                return Err(param_err(
                    key("ring_capacity"),
                    format!("must be within 1..64, got {}", cam.ring_capacity),
                ));
            }
            if !(1..=crate::runtime::scheduler::MAX_WEIGHT).contains(&cam.weight) {
                return Err(param_err(
                    key("weight"),
                    format!(
                        "must be within 1..{}, got {}",
                        crate::runtime::scheduler::MAX_WEIGHT,
                        cam.weight
                    ),
                ));
            }
            if cam.max_width == 0
                || cam.max_height == 0
                || cam.max_width > 16384
                || cam.max_height > 16384
            {
                return Err(param_err(
                    key("max_width"),
                    "max_width and max_height must be within 1..16384",
                ));
            }
            // (key, value, smallest, whether the smallest is allowed, largest)
            for (k, v, min, min_ok, max) in [
                ("budget_ms", cam.budget_ms, 0.0, false, MAX_BUDGET_MS),
                ("max_age_ms", cam.max_age_ms, 0.0, true, MAX_AGE_MS),
                (
                    "hard_timeout_ms",
                    cam.hard_timeout_ms,
                    0.0,
                    true,
                    MAX_HARD_TIMEOUT_MS,
                ),
                (
                    "input_timeout_ms",
                    cam.input_timeout_ms,
                    0.0,
                    false,
                    MAX_AGE_MS,
                ),
                (
                    "min_output_rate_hz",
                    cam.min_output_rate_hz,
                    0.0,
                    true,
                    MAX_RATE_HZ,
                ),
            ] {
                let above_min = if min_ok { v >= min } else { v > min };
                if !(v.is_finite() && above_min && v <= max) {
                    let low = if min_ok { "[" } else { "(" };
                    return Err(param_err(
                        key(k),
                        format!("must be within {low}{min}, {max}], got {v}"),
                    ));
                }
            }
            for (q, qos) in [
                ("qos", cam.input_qos()),
                ("output_qos", cam.detections_qos()),
            ] {
                if qos.depth == 0 || qos.depth > 1000 {
                    return Err(param_err(
                        key(&format!("{q}.depth")),
                        format!("must be within 1..1000, got {}", qos.depth),
                    ));
                }
            }
        }
        if let Some(extra) = self.camera.keys().find(|k| !self.cameras.contains(k)) {
            return Err(param_err(
                format!("camera.{extra}"),
                "not listed in `cameras`",
            ));
        }
        if self.engine.execution_providers.is_empty() {
            return Err(param_err(
                "engine.execution_providers",
                "at least one provider is needed",
            ));
        }
        if self.engine.preprocess_threads > 2 {
            return Err(param_err(
                "engine.preprocess_threads",
                format!(
                    "must be 0 (auto), 1 or 2, got {}",
                    self.engine.preprocess_threads
                ),
            ));
        }
        crate::core::engine::providers::validate(&self.engine.provider_options())
            .map_err(|e| param_err(format!("engine.{}", e.key), e.reason))?;
        let t = self.thresholds;
        for (k, v) in [("confidence", t.confidence), ("nms_iou", t.nms_iou)] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(param_err(
                    format!("thresholds.{k}"),
                    format!("must be within 0..1, got {v}"),
                ));
            }
        }
        let d = self.diagnostics;
        if !(d.period_ms.is_finite() && (10.0..=MAX_PERIOD_MS).contains(&d.period_ms)) {
            return Err(param_err(
                "diagnostics.period_ms",
                format!("must be within [10, {MAX_PERIOD_MS}], got {}", d.period_ms),
            ));
        }
        if !(d.window_s.is_finite() && d.window_s > 0.0 && d.window_s <= MAX_WINDOW_S) {
            return Err(param_err(
                "diagnostics.window_s",
                format!("must be within (0, {MAX_WINDOW_S}], got {}", d.window_s),
            ));
        }
        if self.engine.intra_op_threads > MAX_THREADS {
            return Err(param_err(
                "engine.intra_op_threads",
                format!(
                    "must be within 0 (auto)..{MAX_THREADS}, got {}",
                    self.engine.intra_op_threads
                ),
            ));
        }
        if self.engine.warmup_runs > MAX_WARMUP_RUNS {
            return Err(param_err(
                "engine.warmup_runs",
                format!(
                    "must be within 0..{MAX_WARMUP_RUNS}, got {}",
                    self.engine.warmup_runs
                ),
            ));
        }
        for (name, t) in [
            ("inference", &self.realtime.inference),
            ("executor", &self.realtime.executor),
            ("publisher", &self.realtime.publisher),
        ] {
            if !(0..=99).contains(&t.sched_fifo_priority) {
                return Err(param_err(
                    format!("realtime.{name}.sched_fifo_priority"),
                    format!("must be within 0..99, got {}", t.sched_fifo_priority),
                ));
            }
            if let Some(cpu) = t.cpu_affinity.iter().find(|c| !(0..1024).contains(*c)) {
                return Err(param_err(
                    format!("realtime.{name}.cpu_affinity"),
                    format!("CPU {cpu} is out of range"),
                ));
            }
        }
        if t.max_detections == Some(0) {
            return Err(param_err("thresholds.max_detections", "must be > 0"));
        }
        Ok(())
    }

    /// The cameras in configured order with their settings.
    pub fn camera_list(&self) -> impl Iterator<Item = (&str, &CameraConfig)> {
        self.cameras
            .iter()
            .filter_map(|n| self.camera.get(n).map(|c| (n.as_str(), c)))
    }

    /// Detections topic of camera `name` (configured, or `<name>/detections`).
    pub fn detections_topic(&self, name: &str) -> String {
        match self.camera.get(name) {
            Some(c) if !c.detections_topic.is_empty() => c.detections_topic.clone(),
            _ => format!("{name}/detections"),
        }
    }
}

fn unknown_field(reason: &str) -> Option<&str> {
    reason
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
}

/// Flattens nested maps into dotted names (arrays and scalars are leaves).
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, ParamValue)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// Inserts `value` at dotted `key` into a nested map.
fn insert_dotted(
    root: &mut Map<String, Value>,
    key: &str,
    value: Value,
) -> Result<(), ConfigError> {
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            node.insert((*part).to_string(), value);
            return Ok(());
        }
        let entry = node
            .entry((*part).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        node = match entry {
            Value::Object(m) => m,
            _ => {
                return Err(param_err(
                    parts[..=i].join("."),
                    format!("is a value, but `{key}` treats it as a group"),
                ));
            }
        };
    }
    Ok(())
}

/// Resolves a config path like a manifest path: as given, else relative to the source tree.
pub fn resolve_path(path: &Path) -> PathBuf {
    crate::core::model::resolve_manifest_path(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(yaml: &str) -> Vec<(String, ParamValue)> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lookout-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.yaml");
        std::fs::write(&path, yaml).unwrap();
        Config::read_parameters_file(&path, "/lookout").unwrap()
    }

    const MINIMAL: &str = "
/**:
  ros__parameters:
    cameras: [front]
    camera:
      front:
        topic: /cam/image_raw
";

    #[test]
    fn minimal_file_gets_defaults() {
        let c = Config::from_parameters(&params(MINIMAL)).unwrap();
        let cam = &c.camera["front"];
        assert_eq!(cam.kind, ImageKind::Image);
        assert_eq!(cam.input_qos(), QosConfig::SENSOR_DATA);
        assert_eq!(cam.detections_qos(), QosConfig::RELIABLE);
        assert_eq!(cam.queue_policy, QueuePolicy::KeepNewest);
        assert_eq!(c.detections_topic("front"), "front/detections");
        assert_eq!(c.model, PathBuf::from("models/yolov3-tiny/manifest.yaml"));
    }

    #[test]
    fn one_qos_key_overrides_only_itself() {
        let mut p = params(MINIMAL);
        p.push(("camera.front.qos.depth".into(), Value::from(1)));
        p.push((
            "camera.front.output_qos.reliability".into(),
            Value::from("best_effort"),
        ));
        let c = Config::from_parameters(&p).unwrap();
        let cam = &c.camera["front"];
        assert_eq!(cam.input_qos().depth, 1);
        assert_eq!(cam.input_qos().reliability, Reliability::BestEffort);
        assert_eq!(cam.detections_qos().reliability, Reliability::BestEffort);
        assert_eq!(cam.detections_qos().depth, 10);
    }

    #[test]
    fn node_sections_apply_in_order_and_overrides_win() {
        let yaml = format!(
            "{MINIMAL}\nlookout:\n  ros__parameters:\n    camera:\n      front:\n        ring_capacity: 2\nother_node:\n  ros__parameters:\n    bogus: 1\n"
        );
        let mut p = params(&yaml);
        p.push(("thresholds.confidence".into(), Value::from(0.5)));
        let c = Config::from_parameters(&p).unwrap();
        assert_eq!(c.camera["front"].ring_capacity, 2);
        assert_eq!(c.thresholds.confidence, Some(0.5));
    }

    #[test]
    fn provider_options_are_typed_validated_and_named() {
        let mut p = params(MINIMAL);
        p.push(("engine.tensorrt.fp16".into(), Value::from(false)));
        p.push((
            "engine.cuda.cudnn_conv_algo_search".into(),
            Value::from("heuristic"),
        ));
        p.push(("engine.require_first_provider".into(), Value::from(true)));
        let c = Config::from_parameters(&p).unwrap();
        assert_eq!(c.engine.tensorrt.precision(), "fp32");
        assert_eq!(
            c.engine.cuda.cudnn_conv_algo_search,
            crate::core::engine::providers::ConvAlgoSearch::Heuristic
        );
        assert!(c.engine.require_first_provider);
        for (key, value) in [
            ("engine.tensorrt.device_id", Value::from(64)),
            ("engine.cuda.arena_limit_mb", Value::from(1u64 << 40)),
            ("engine.tensorrt.min_shapes", Value::from("images:1x3")),
            ("engine.cuda.cudnn_conv_algo_search", Value::from("fastest")),
            ("engine.tensorrt.fp17", Value::from(true)),
        ] {
            let mut p = params(MINIMAL);
            p.push((key.into(), value));
            let e = Config::from_parameters(&p).unwrap_err().to_string();
            assert!(e.starts_with(&format!("parameter `{key}`")), "{key}: {e}");
        }
    }

    #[test]
    fn every_duration_rate_and_count_has_a_range() {
        // Values that once passed and then crashed or hung a thread (1e22 ms overflowed an
        // Instant in the inference thread), and each range's edges.
        for (key, value) in [
            ("camera.front.hard_timeout_ms", Value::from(1e22)),
            ("camera.front.hard_timeout_ms", Value::from(60_000.5)),
            ("camera.front.hard_timeout_ms", Value::from(-1.0)),
            ("camera.front.budget_ms", Value::from(0.0)),
            ("camera.front.budget_ms", Value::from(1e9)),
            ("camera.front.max_age_ms", Value::from(1e300)),
            ("camera.front.input_timeout_ms", Value::from(0.0)),
            ("camera.front.min_output_rate_hz", Value::from(1e6)),
            ("camera.front.weight", Value::from(0)),
            ("camera.front.weight", Value::from(101)),
            ("diagnostics.period_ms", Value::from(1e12)),
            ("diagnostics.window_s", Value::from(1e7)),
            ("engine.intra_op_threads", Value::from(100_000)),
            ("engine.warmup_runs", Value::from(1_000_000)),
        ] {
            let mut p = params(MINIMAL);
            p.push((key.into(), value.clone()));
            let e = Config::from_parameters(&p).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("parameter `{key}`")),
                "{key}={value}: {e}"
            );
            assert!(e.contains("within"), "{key}={value}: {e}");
        }
        for (key, value) in [
            ("camera.front.hard_timeout_ms", Value::from(60_000.0)),
            ("camera.front.hard_timeout_ms", Value::from(0.0)),
            ("camera.front.weight", Value::from(100)),
            ("diagnostics.window_s", Value::from(3600.0)),
        ] {
            let mut p = params(MINIMAL);
            p.push((key.into(), value.clone()));
            assert!(Config::from_parameters(&p).is_ok(), "{key}={value}");
        }
    }

    #[test]
    fn unknown_keys_are_named_with_their_full_path() {
        let mut p = params(MINIMAL);
        p.push(("camera.front.ring_capcity".into(), Value::from(3)));
        let e = Config::from_parameters(&p).unwrap_err().to_string();
        assert!(
            e.starts_with("parameter `camera.front.ring_capcity`:"),
            "{e}"
        );
        let mut p = params(MINIMAL);
        p.push(("modle".into(), Value::from("x")));
        let e = Config::from_parameters(&p).unwrap_err().to_string();
        assert!(e.starts_with("parameter `modle`:"), "{e}");
    }

    #[test]
    fn wrong_types_and_values_are_named() {
        let mut p = params(MINIMAL);
        p.push(("camera.front.type".into(), Value::from("video")));
        let e = Config::from_parameters(&p).unwrap_err().to_string();
        assert!(e.contains("camera.front.type"), "{e}");
        let mut p = params(MINIMAL);
        p.push(("camera.front.qos.depth".into(), Value::from(0)));
        let e = Config::from_parameters(&p).unwrap_err().to_string();
        assert!(e.contains("camera.front.qos.depth"), "{e}");
        let mut p = params(MINIMAL);
        p.push(("thresholds.confidence".into(), Value::from(2.0)));
        let e = Config::from_parameters(&p).unwrap_err().to_string();
        assert!(e.contains("thresholds.confidence"), "{e}");
    }

    #[test]
    fn cameras_and_sections_must_agree() {
        let mut p = params(MINIMAL);
        p.push(("cameras".into(), serde_json::json!(["front", "rear"])));
        let e = Config::from_parameters(&p).unwrap_err().to_string();
        assert!(e.contains("camera.rear"), "{e}");
        let mut p = params(MINIMAL);
        p.push(("camera.side.topic".into(), Value::from("/side")));
        let e = Config::from_parameters(&p).unwrap_err().to_string();
        assert!(e.contains("camera.side") && e.contains("not listed"), "{e}");
        let p = vec![("model".to_string(), Value::from("m.yaml"))];
        let e = Config::from_parameters(&p).unwrap_err().to_string();
        assert!(e.contains("`cameras`") && e.contains("missing"), "{e}");
    }
}
