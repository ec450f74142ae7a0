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

mod budget;
mod camera;
pub mod locate;
pub mod names;
mod validate;

pub use budget::{CameraBudget, MAX_CAMERAS, MAX_DETECTIONS, MemoryBudget, physical_memory_bytes};
pub use camera::{
    CameraConfig, Durability, ImageKind, QosConfig, QosParams, QueuePolicy, Reliability,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::engine::EngineConfig;
use crate::core::model::Thresholds;

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
/// Largest `engine.rebuild_after_failures`.
pub const MAX_REBUILD_AFTER_FAILURES: u32 = 10_000;
/// Largest `engine.warmup_runs`.
pub const MAX_WARMUP_RUNS: u32 = 100;

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
    /// (std_msgs/Float64) and `~/debug/<camera>/image_markers` (visualization_msgs/ImageMarker,
    /// one per box) for every result.
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
    /// Monitors of what the model is given.
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// A second model compared with this one on the frames there is time for.
    #[serde(default)]
    pub shadow: crate::runtime::shadow::ShadowConfig,
    /// Incident capture: the seconds around a deadline miss, an input-health ERROR, drift or a
    /// shadow disagreement, written to a bag.
    #[serde(default)]
    pub capture: crate::runtime::capture::CaptureConfig,
}

/// `monitor.*`: whether the model still sees.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Each camera's picture: blocked, dark, frozen, overexposed, low contrast, blurred.
    #[serde(default)]
    pub input_health: crate::runtime::input_health::InputHealthConfig,
    /// A reference profile of the model's detections (`lookout replay --profile`); each
    /// camera's detections are compared with it (unset: no drift monitor).
    #[serde(default)]
    pub profile: Option<PathBuf>,
    /// When a camera's detections have drifted from the profile.
    #[serde(default)]
    pub drift: crate::runtime::drift::DriftConfig,
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
        let text = read_small_text(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::parameters_from_str(&text, path, node)
    }

    /// As [`Self::read_parameters_file`], from the file's text (`path` names it in errors).
    pub fn parameters_from_str(
        text: &str,
        path: &Path,
        node: &str,
    ) -> Result<Vec<(String, ParamValue)>, ConfigError> {
        let syntax = |reason: String| ConfigError::Syntax {
            path: path.to_path_buf(),
            reason,
        };
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))?;
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

    /// The configuration as a parameters file for any node (`/**`) that
    /// [`Self::read_parameters_file`] and [`Self::from_parameters`] read back into an equal
    /// configuration (unset optional values are left out: ROS parameters cannot be null).
    pub fn to_parameters_yaml(&self) -> Result<String, ConfigError> {
        fn without_nulls(v: Value) -> Value {
            match v {
                Value::Object(m) => Value::Object(
                    m.into_iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k, without_nulls(v)))
                        .collect(),
                ),
                Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
                v => v,
            }
        }
        let err = |reason: String| param_err("(all)", reason);
        let params = without_nulls(serde_json::to_value(self).map_err(|e| err(e.to_string()))?);
        let doc = serde_json::json!({ "/**": { "ros__parameters": params } });
        serde_yaml_ng::to_string(&doc).map_err(|e| err(e.to_string()))
    }

    /// Reads and validates a parameters file for `node`.
    pub fn load(path: &Path, node: &str) -> Result<Self, ConfigError> {
        Self::from_parameters(&Self::read_parameters_file(path, node)?)
    }

    /// Resolves the relative file paths of the configuration (`model`) by [`locate`]'s rule:
    /// `origin` says who chose the parameters file they were read from.
    pub fn locate_files(&mut self, origin: locate::Origin) {
        self.model = locate::locate(&self.model, origin);
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

/// Largest text file lookout reads whole (a params file, a model manifest, a bag's
/// `metadata.yaml`): 16 MiB, far above any real one.
pub const MAX_TEXT_FILE_BYTES: u64 = 16 << 20;

/// Reads a text file whole, refusing one over [`MAX_TEXT_FILE_BYTES`] before reading it all
/// (these files come from any checkout or any vehicle's bag).
pub fn read_small_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_TEXT_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_TEXT_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("over {MAX_TEXT_FILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// The parameters file to read: the one the user named (`Origin::User`: the working directory,
/// then the data directories), else the default file in lookout's data directories only (see
/// [`locate`]). Returns the path and who chose it, which also decides how the relative paths
/// inside it are looked up ([`Config::locate_files`]).
pub fn params_file(named: Option<&Path>) -> (PathBuf, locate::Origin) {
    match named {
        Some(p) => (
            locate::locate(p, locate::Origin::User),
            locate::Origin::User,
        ),
        None => (
            locate::locate(Path::new(DEFAULT_PARAMS_FILE), locate::Origin::Default),
            locate::Origin::Default,
        ),
    }
}

#[cfg(test)]
mod tests;
