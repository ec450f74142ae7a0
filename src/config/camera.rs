//! One camera's parameters (`camera.<name>.*`): its topic and message type, queue, limits, QoS
//! and deadlines.

use serde::{Deserialize, Serialize};

use crate::runtime::deadline::{DeadlineSettings, LatePolicy};

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
