//! lookout: a real-time ROS 2 perception node.
//!
//! Camera frames come in, one deterministic inference loop runs an ONNX detector on them through
//! ONNX Runtime, and `vision_msgs/Detection2DArray` goes out, with every frame's deadline watched.
//!
//! ```
//! use lookout::core::image::{ImageView, PixelEncoding};
//! use lookout::core::engine::{EngineConfig, Provider};
//! use lookout::core::model::Model;
//! use lookout::core::detector::Detector;
//!
//! // The default model package (scripts/setup.sh converts its ONNX file once), on the CPU.
//! let model = Model::load("models/yolov3-tiny/manifest.yaml".as_ref())?;
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
//! through the library. The folders are the layers, each depending only on those above it:
//!
//! | layer | module | what it holds |
//! |---|---|---|
//! | detector | [`core`] | [`core::image`] and [`core::decode`] (frames), [`core::preprocess`] (letterbox into the tensor), [`core::engine`] (ONNX Runtime and its providers), [`core::postprocess`] (boxes, NMS), [`core::model`] (model packages), [`core::detector::Detector`] (the stages chained); no threads, no transport |
//! | configuration | [`config`] | the one parameters file every front end reads, and topic names |
//! | runtime | [`runtime`] | [`runtime::Runtime`]: per-camera queues and counters, the scheduler, the inference loop, deadlines, health, real-time settings and supervision of the threads |
//! | presentation | [`charts`] | report pages (one self-contained HTML file of inline SVG charts), boxes drawn on images |
//! | storage | [`bag`] | rosbag2 bags (MCAP, sqlite3) read and written without ROS, CDR messages |
//! | front ends | [`ros`], [`replay`], [`sim`], [`diff`] | the live node, bag replay, latency measurement with simulated cameras, and the comparison of two replays; each attaches a frame source and a result sink to a [`runtime::Runtime`] |
//!
//! Everything a stage needs is allocated in its `new()`; the per-frame methods (`run`,
//! `detect`) allocate nothing on the Rust heap once warmed up for a frame size (see
//! ARCHITECTURE.md and `tests/zero_alloc.rs`).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod bag;
pub mod charts;
pub mod config;
pub mod core;
pub mod diff;
pub mod replay;
#[cfg(feature = "ros")]
pub mod ros;
pub mod runtime;
pub mod sim;
