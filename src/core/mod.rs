//! The detector, with no transport and no threads of its own: a frame's bytes in, detections in
//! the frame's pixels out.
//!
//! ```text
//! image (borrowed view) ─► preprocess ─► engine (ONNX Runtime) ─► postprocess ─► detections
//!   decode (JPEG/PNG)       geometry                providers
//! ```
//!
//! [`model`] reads a model package and [`detector::Detector`] chains the stages for one frame.

pub mod decode;
pub mod detector;
pub mod engine;
pub mod geometry;
pub mod image;
pub mod input_health;
pub mod model;
pub mod onnx_info;
pub mod postprocess;
pub mod preprocess;
pub mod threads;
