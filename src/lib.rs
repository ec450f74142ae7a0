//! lookout: a real-time ROS 2 perception node.
//!
//! Camera frames come in, one deterministic inference loop runs an ONNX detector on them through
//! ONNX Runtime, and `vision_msgs/Detection2DArray` goes out, with every frame's deadline watched.
//!
//! ```
//! use lookout::core::image::{ImageView, PixelEncoding};
//! use lookout::core::engine::{EngineConfig, Provider};
//! use lookout::core::model::{DEFAULT_MANIFEST, Model, resolve_manifest_path};
//! use lookout::core::detector::Detector;
//!
//! // The default model package (scripts/setup.sh converts its ONNX file once), on the CPU.
//! let model = Model::load(&resolve_manifest_path(DEFAULT_MANIFEST.as_ref()))?;
//! let engine = EngineConfig {
//!     execution_providers: vec![Provider::Cpu],
//!     ..EngineConfig::default()
//! };
//! // Allocates, loads and warms up everything: per-frame calls allocate nothing after this.
//! let mut detector = Detector::new(model, &engine, None)?;
//!
//! // A borrowed 1280x720 bgr8 frame (any row step; here mid grey, as from a camera driver).
//! let pixels = vec![128u8; 1280 * 720 * 3];
//! let frame = ImageView::packed(1280, 720, PixelEncoding::Bgr8, &pixels)?;
//! let result = detector.detect(&frame)?;
//! // Boxes come back in the frame's pixels; the letterbox says where it sat in the tensor.
//! assert_eq!(result.letterbox.resized_width, 416);
//! for d in result.detections {
//!     println!("class {} score {:.2} box {:?}", d.class_id, d.score, d.bbox);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `examples/detect_image.rs` detects in an image file and `examples/replay_bag.rs` replays a bag
//! through the library. The pipeline stages have one module each:
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | ingest | [`image`], [`decode`] | borrowed views of raw frames, JPEG/PNG decoding |
//! | preprocess | [`preprocess`] | letterbox resize, pad, scale, layout change into the input tensor |
//! | infer | [`infer`], [`providers`] | ONNX Runtime session, execution providers and their options, one run per frame |
//! | postprocess | [`postprocess`] | decode, threshold, class-aware NMS, top-k, boxes back to image pixels |
//!
//! [`model`] reads a model package (manifest + ONNX, sha256-checked) and [`pipeline::Detector`]
//! chains the stages for one frame. Around them: [`ingest`] (per-camera frame queues),
//! [`scheduler`] (which camera's frame is inferred next), [`runtime`] (the inference loop),
//! [`deadline`] and [`diagnostics`] (the operational contract), [`supervise`] (worker threads);
//! the front ends [`ros`] (live node), [`replay`] and [`diff`]; [`bag`], [`cdr`] and [`schema`]
//! for rosbag2 files. Everything a stage needs is allocated in its `new()`; the
//! per-frame methods (`run`, `detect`) allocate nothing on the Rust heap once warmed up for a
//! frame size (see ARCHITECTURE.md and `tests/zero_alloc.rs`).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod bag;
pub mod config;
pub mod core;
pub mod diff;
pub mod replay;
#[cfg(feature = "ros")]
pub mod ros;
pub mod runtime;
