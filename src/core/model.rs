//! Model packages: a `manifest.yaml` that says everything the node needs to run an ONNX detector,
//! and the ONNX file it names, checked against the manifest's sha256.
//!
//! One package serves every deployment (live, replay, simulation): the manifest fixes the input
//! tensor (name, shape, layout, colour order, scaling, letterbox), the output decoder, class names
//! and default thresholds, so no deployment re-states them.
//!
//! Contract: [`Model::load`] reads and hashes the ONNX file once (it allocates and does file I/O);
//! it is a start-up call, never on the per-frame path.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a model package cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The manifest file cannot be read.
    #[error("cannot read model manifest {path}: {error}")]
    ManifestRead {
        /// Manifest path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A relative manifest path was found in none of the places it is looked up in.
    #[error("model manifest {path} not found ({searched})")]
    NotFound {
        /// The path as written.
        path: PathBuf,
        /// Where it was looked for.
        searched: String,
    },
    /// The manifest is not valid YAML for the schema (unknown key, wrong type, missing key).
    #[error("invalid model manifest {path}: {error}")]
    ManifestParse {
        /// Manifest path.
        path: PathBuf,
        /// The parser's message, with the key and line.
        error: serde_yaml_ng::Error,
    },
    /// A manifest value is out of range or inconsistent with another.
    #[error("invalid model manifest {path}: key `{key}`: {reason}")]
    Invalid {
        /// Manifest path.
        path: PathBuf,
        /// Dotted key path of the bad value.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The ONNX file named by the manifest does not exist or cannot be read.
    #[error(
        "cannot read model file {path}: {error} (run scripts/setup.sh to convert the default model)"
    )]
    OnnxRead {
        /// ONNX path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The ONNX file is not the one the manifest describes.
    #[error("model file {path} has sha256 {actual}, but the manifest expects {expected}")]
    Sha256Mismatch {
        /// ONNX path.
        path: PathBuf,
        /// sha256 from the manifest.
        expected: String,
        /// sha256 of the file.
        actual: String,
    },
}

/// Memory layout of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[N, C, H, W]` (planar).
    Nchw,
    /// `[N, H, W, C]` (interleaved).
    Nhwc,
}

/// Colour channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red.
    Bgr,
}

/// How a frame is fitted into the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Uniform scale, centred, padded with `pad_value` (YOLO letterbox).
    Letterbox,
    /// Uniform scale, placed at the top-left corner, padded right and bottom.
    LetterboxTopLeft,
}

/// The input tensor, as the model expects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input name in the ONNX graph.
    pub name: String,
    /// Tensor shape, batch first: `[1, 3, H, W]` for NCHW, `[1, H, W, 3]` for NHWC.
    pub shape: [usize; 4],
    /// Memory layout.
    pub layout: Layout,
    /// Channel order.
    pub color_order: ColorOrder,
    /// Multiplier applied to each 8-bit value before mean/std (1/255 for 0..1 input).
    pub scale: f32,
    /// Per-channel mean subtracted after scaling, in the model's channel order.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after the mean, in the model's channel order.
    pub std: [f32; 3],
    /// How frames are fitted into the tensor.
    pub resize: ResizeMode,
    /// 8-bit value of padding pixels (before scaling); 114 is the YOLO grey.
    pub pad_value: u8,
    /// Most frames one inference run may take (1..=[`MAX_BATCH`]; default 1). Above 1 the ONNX
    /// graph's first input and output dimension must be dynamic; `shape` stays the shape of one
    /// frame (batch 1).
    #[serde(default = "one_frame")]
    pub max_batch: usize,
}

/// Largest `input.max_batch` (and `engine.max_batch`).
pub const MAX_BATCH: usize = 8;

fn one_frame() -> usize {
    1
}

impl InputSpec {
    /// Tensor width in pixels.
    pub fn width(&self) -> usize {
        match self.layout {
            Layout::Nchw => self.shape[3],
            Layout::Nhwc => self.shape[2],
        }
    }

    /// Tensor height in pixels.
    pub fn height(&self) -> usize {
        match self.layout {
            Layout::Nchw => self.shape[2],
            Layout::Nhwc => self.shape[1],
        }
    }

    /// Number of f32 elements in the tensor.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor has no elements (never for a validated manifest).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Output layouts the post-processor can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// `[1, N, 5 + C]`: cx, cy, w, h (input pixels), objectness, C class scores (all after sigmoid);
    /// score = objectness x class score. YOLOv3/v5/v7 exports.
    Yolov5,
    /// `[1, 4 + C, N]`: cx, cy, w, h, C class scores; no objectness. YOLOv8/v11 exports.
    Yolov8,
    /// `[1, N, 6]`: x1, y1, x2, y2, score, class id, NMS already applied in the graph.
    End2end,
}

impl fmt::Display for DecoderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Yolov5 => "yolov5",
            Self::Yolov8 => "yolov8",
            Self::End2end => "end2end",
        })
    }
}

/// The output tensor and how to decode it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output name in the ONNX graph.
    pub name: String,
    /// Tensor shape.
    pub shape: [usize; 3],
    /// Decoder for this layout.
    pub decoder: DecoderKind,
}

/// Default post-processing thresholds; deployments may override them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Minimum score (objectness x class probability) to keep a detection.
    pub confidence: f32,
    /// IoU above which the lower-scoring of two same-class boxes is suppressed.
    pub nms_iou: f32,
    /// Most detections kept per frame (highest scores first).
    pub max_detections: usize,
    /// Suppress overlapping boxes across classes too.
    #[serde(default)]
    pub class_agnostic_nms: bool,
}

/// Where the weights came from (provenance, copied into reports and output bags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// What the weights are.
    pub description: String,
    /// Where they were obtained.
    pub origin: String,
    /// Licence of the weights.
    pub license: String,
}

/// The manifest file, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short model name (reported in diagnostics).
    pub name: String,
    /// ONNX file, relative to the manifest's folder.
    pub onnx: PathBuf,
    /// Expected sha256 of the ONNX file (lower-case hex).
    pub sha256: String,
    /// Provenance of the weights.
    pub source: Source,
    /// Input tensor.
    pub input: InputSpec,
    /// Output tensor.
    pub output: OutputSpec,
    /// Default thresholds.
    pub thresholds: Thresholds,
    /// Class names, index = class id.
    pub classes: Vec<String>,
}

/// A loaded, validated model package.
#[derive(Debug, Clone)]
pub struct Model {
    /// The manifest.
    pub manifest: Manifest,
    /// Path of the manifest file.
    pub manifest_path: PathBuf,
    /// Resolved path of the ONNX file.
    pub onnx_path: PathBuf,
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex sha256 of the file at `path`, read in 1 MiB pieces (never held whole: a model
/// can be hundreds of MB, and ONNX Runtime reads the file itself).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// The default model package, relative to the repository root.
pub const DEFAULT_MANIFEST: &str = "models/yolov3-tiny/manifest.yaml";

impl Model {
    /// Reads the manifest at `manifest_path`, validates it and checks the sha256 of the ONNX file
    /// it names (streamed; the bytes are not kept). Allocates; does file I/O.
    pub fn load(manifest_path: &Path) -> Result<Self, ModelError> {
        let text = crate::config::read_small_text(manifest_path).map_err(|error| {
            ModelError::ManifestRead {
                path: manifest_path.to_path_buf(),
                error,
            }
        })?;
        let manifest = Manifest::parse(&text, manifest_path)?;
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let onnx_path = dir.join(&manifest.onnx);
        let model = Self {
            manifest,
            manifest_path: manifest_path.to_path_buf(),
            onnx_path,
        };
        model.verify()?;
        Ok(model)
    }

    /// Checks that the ONNX file still has the manifest's sha256 (streamed; holds no copy).
    /// [`Self::load`] calls it, and the engine again once ONNX Runtime has read the file, so a
    /// file replaced in between is caught rather than run under the old hash.
    pub fn verify(&self) -> Result<(), ModelError> {
        let actual = sha256_file(&self.onnx_path).map_err(|error| ModelError::OnnxRead {
            path: self.onnx_path.clone(),
            error,
        })?;
        if actual != self.manifest.sha256 {
            return Err(ModelError::Sha256Mismatch {
                path: self.onnx_path.clone(),
                expected: self.manifest.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// The sha256 of the ONNX file (verified at load).
    pub fn sha256(&self) -> &str {
        &self.manifest.sha256
    }

    /// Class name of `class_id`, or `"?"` when out of range.
    pub fn class_name(&self, class_id: usize) -> &str {
        self.manifest
            .classes
            .get(class_id)
            .map_or("?", String::as_str)
    }
}

impl Manifest {
    /// Checks values and their consistency; the error names the key.
    /// Parses and validates a manifest's text (`path` names it in errors). Reads no file.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ModelError> {
        let manifest: Manifest =
            serde_yaml_ng::from_str(text).map_err(|error| ModelError::ManifestParse {
                path: path.to_path_buf(),
                error,
            })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// Checks every field's range and the consistency of the shapes and classes.
    pub fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let bad = |key: &'static str, reason: String| ModelError::Invalid {
            path: path.to_path_buf(),
            key,
            reason,
        };
        let sha_ok = self.sha256.len() == 64
            && self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !sha_ok {
            return Err(bad("sha256", "must be 64 lower-case hex digits".into()));
        }
        let input = &self.input;
        let channels = match input.layout {
            Layout::Nchw => input.shape[1],
            Layout::Nhwc => input.shape[3],
        };
        if input.shape[0] != 1 {
            return Err(bad(
                "input.shape",
                format!("batch must be 1, got {}", input.shape[0]),
            ));
        }
        if !(1..=MAX_BATCH).contains(&input.max_batch) {
            return Err(bad(
                "input.max_batch",
                format!("must be within 1..={MAX_BATCH}, got {}", input.max_batch),
            ));
        }
        if channels != 3 {
            return Err(bad(
                "input.shape",
                format!(
                    "expected 3 colour channels for layout {:?}, got {channels}",
                    input.layout
                ),
            ));
        }
        if input.width() == 0 || input.height() == 0 {
            return Err(bad("input.shape", "width and height must be > 0".into()));
        }
        if !(input.scale.is_finite() && input.scale > 0.0) {
            return Err(bad("input.scale", "must be a finite number > 0".into()));
        }
        if input.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad(
                "input.std",
                "every value must be a finite number > 0".into(),
            ));
        }
        if input.mean.iter().any(|m| !m.is_finite()) {
            return Err(bad("input.mean", "every value must be finite".into()));
        }
        if self.classes.is_empty() {
            return Err(bad("classes", "at least one class name is needed".into()));
        }
        let c = self.classes.len();
        let shape = self.output.shape;
        let expected_ok = match self.output.decoder {
            DecoderKind::Yolov5 => shape[0] == 1 && shape[2] == 5 + c && shape[1] > 0,
            DecoderKind::Yolov8 => shape[0] == 1 && shape[1] == 4 + c && shape[2] > 0,
            DecoderKind::End2end => shape[0] == 1 && shape[2] == 6 && shape[1] > 0,
        };
        if !expected_ok {
            let want = match self.output.decoder {
                DecoderKind::Yolov5 => format!("[1, N, {}] (5 + {c} classes)", 5 + c),
                DecoderKind::Yolov8 => format!("[1, {}, N] (4 + {c} classes)", 4 + c),
                DecoderKind::End2end => "[1, N, 6]".to_string(),
            };
            return Err(bad(
                "output.shape",
                format!(
                    "decoder {} needs {want}, got {:?}",
                    self.output.decoder, shape
                ),
            ));
        }
        validate_thresholds(&self.thresholds).map_err(|(key, reason)| bad(key, reason))?;
        Ok(())
    }
}

/// Checks threshold ranges; on error returns the key (under `thresholds.`) and the reason.
pub fn validate_thresholds(t: &Thresholds) -> Result<(), (&'static str, String)> {
    if !(0.0..=1.0).contains(&t.confidence) {
        return Err((
            "thresholds.confidence",
            format!("must be within 0..1, got {}", t.confidence),
        ));
    }
    if !(0.0..=1.0).contains(&t.nms_iou) {
        return Err((
            "thresholds.nms_iou",
            format!("must be within 0..1, got {}", t.nms_iou),
        ));
    }
    if t.max_detections == 0 {
        return Err(("thresholds.max_detections", "must be > 0".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name: tiny
onnx: tiny.onnx
sha256: "0000000000000000000000000000000000000000000000000000000000000000"
source: {description: test, origin: test, license: MIT}
input:
  name: images
  shape: [1, 3, 32, 32]
  layout: nchw
  color_order: rgb
  scale: 0.00392156862745098
  mean: [0, 0, 0]
  std: [1, 1, 1]
  resize: letterbox
  pad_value: 114
output: {name: output0, shape: [1, 10, 7], decoder: yolov5}
thresholds: {confidence: 0.25, nms_iou: 0.45, max_detections: 100}
classes: [a, b]
"#;

    fn parse(text: &str) -> Result<Manifest, ModelError> {
        let m: Manifest =
            serde_yaml_ng::from_str(text).map_err(|error| ModelError::ManifestParse {
                path: "m.yaml".into(),
                error,
            })?;
        m.validate(Path::new("m.yaml"))?;
        Ok(m)
    }

    #[test]
    fn minimal_manifest_is_valid() {
        let m = parse(MINIMAL).unwrap();
        assert_eq!((m.input.width(), m.input.height()), (32, 32));
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("pad_value: 114", "pad_value: 114\n  padd: 3");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `padd`"), "{err}");
    }

    #[test]
    fn output_shape_must_match_classes() {
        let text = MINIMAL.replace("[a, b]", "[a, b, c]");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("output.shape"), "{err}");
        assert!(err.contains("[1, N, 8]"), "{err}");
    }

    #[test]
    fn thresholds_are_range_checked() {
        let text = MINIMAL.replace("confidence: 0.25", "confidence: 1.5");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("thresholds.confidence"), "{err}");
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
