//! lookout: a real-time ROS 2 perception node.
//!
//! Camera frames come in, one deterministic inference loop runs an ONNX detector on them through
//! ONNX Runtime, and `vision_msgs/Detection2DArray` goes out, with every frame's deadline watched.
//!
//! The library is the pipeline without any transport; each stage is one module:
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | ingest | [`image`], [`decode`] | borrowed views of raw frames, JPEG/PNG decoding |
//! | preprocess | [`preprocess`] | letterbox resize, pad, scale, layout change into the input tensor |
//! | infer | [`infer`], [`providers`] | ONNX Runtime session, execution providers and their options, one run per frame |
//! | postprocess | [`postprocess`] | decode, threshold, class-aware NMS, top-k, boxes back to image pixels |
//!
//! [`model`] reads a model package (manifest + ONNX, sha256-checked) and [`pipeline::Detector`]
//! chains the stages for one frame. Everything a stage needs is allocated in its `new()`; the
//! per-frame methods (`run`, `detect`) allocate nothing on the Rust heap once warmed up for a
//! frame size (see ARCHITECTURE.md and `tests/zero_alloc.rs`).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod bag;
pub mod cdr;
pub mod config;
pub mod deadline;
pub mod decode;
pub mod diagnostics;
pub mod diff;
pub mod geometry;
pub mod image;
pub mod infer;
pub mod ingest;
pub mod model;
pub mod names;
pub mod pipeline;
pub mod postprocess;
pub mod preprocess;
pub mod providers;
pub mod replay;
#[cfg(feature = "ros")]
pub mod ros;
pub mod rt;
pub mod runtime;
pub mod scheduler;
pub mod schema;
pub mod supervise;
