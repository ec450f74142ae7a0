//! The per-frame core: pre-process, infer, post-process, for one model.
//!
//! [`Detector`] is what every front end (the `detect` CLI, the live node, bag replay, simulation)
//! runs per frame; they differ only in where frames come from and where detections go.
//!
//! Contract: [`Detector::new`] loads and warms everything up (allocates, blocks for the session
//! build). [`Detector::detect`] blocks for one inference and allocates nothing on the Rust heap
//! once it has seen the frame's size (see `tests/zero_alloc.rs`).

use std::time::{Duration, Instant};

use crate::core::engine::{Engine, EngineConfig, EngineError, Provider};
use crate::core::geometry::Letterbox;
use crate::core::image::ImageView;
use crate::core::input_health::{InputMeter, InputStats};
use crate::core::model::{MAX_BATCH, Model, Thresholds};
use crate::core::postprocess::{Detection, Postprocessor};
use crate::core::preprocess::{PreprocessError, Preprocessor};

/// Why one frame produced no detections.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// Pre-processing failed.
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// Inference failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Time spent in each stage of one frame (monotonic clock).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Pre-processing.
    pub preprocess: Duration,
    /// Inference.
    pub inference: Duration,
    /// Post-processing.
    pub postprocess: Duration,
}

/// The detections of one frame, borrowed from the detector until its next frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameResult<'a> {
    /// Detections, best score first, in image pixels.
    pub detections: &'a [Detection],
    /// Where the frame landed in the input tensor.
    pub letterbox: Letterbox,
    /// What the picture looks like (measured on the input tensor; zeros when the input-health
    /// measurement is off).
    pub input: InputStats,
    /// Stage durations.
    pub times: StageTimes,
}

/// One frame of a batch for [`Detector::detect_batch`].
#[derive(Debug, Clone, Copy)]
pub struct BatchFrame<'a> {
    /// The frame's pixels.
    pub view: ImageView<'a>,
    /// Size of the image it shows (larger than the view for a JPEG decoded at a reduced scale).
    pub image_size: (u32, u32),
}

/// Pre-processor, engine and post-processor for one model.
pub struct Detector {
    model: Model,
    pre: Preprocessor,
    engine: Engine,
    engine_config: EngineConfig,
    /// Measures each frame's picture on the input tensor (None: off).
    meter: Option<InputMeter>,
    /// Most frames per run the front end asked for (its cameras).
    batch_cap: usize,
    post: Postprocessor,
}

impl Detector {
    /// Builds every stage for `model`; `thresholds` overrides the manifest's defaults.
    ///
    /// ONNX Runtime reads the model file itself (lookout never holds a copy); the heap memory
    /// freed while loading is then returned to the OS ([`crate::runtime::realtime::release_free_memory`]).
    pub fn new(
        model: Model,
        engine_config: &EngineConfig,
        thresholds: Option<Thresholds>,
    ) -> Result<Self, EngineError> {
        Self::with_batch_cap(model, engine_config, thresholds, MAX_BATCH)
    }

    /// As [`Self::new`], with runs of at most `max_frames` frames (the number of cameras: a run
    /// takes one frame per camera at most) whatever the model and `engine.max_batch` allow.
    pub fn with_batch_cap(
        model: Model,
        engine_config: &EngineConfig,
        thresholds: Option<Thresholds>,
        max_frames: usize,
    ) -> Result<Self, EngineError> {
        let mut detector = Self::unwarmed(model, engine_config, thresholds, max_frames)?;
        while !detector.warm_up_step()? {}
        // Loading parsed and copied the model more than once; give what was freed back.
        crate::runtime::realtime::release_free_memory();
        Ok(detector)
    }

    /// As [`Self::with_batch_cap`] without the engine's warm-up, which [`Self::warm_up_step`]
    /// then runs one inference at a time ([`Engine::unwarmed`]), and without returning the
    /// freed heap memory to the OS (the caller does, on a thread of its choice:
    /// [`crate::runtime::realtime::release_free_memory`]). Detect nothing before the warm-up is
    /// complete: the first runs are the slow ones.
    pub fn unwarmed(
        model: Model,
        engine_config: &EngineConfig,
        thresholds: Option<Thresholds>,
        max_frames: usize,
    ) -> Result<Self, EngineError> {
        let m = &model.manifest;
        let pre = Preprocessor::with_threads(
            &m.input,
            crate::core::preprocess::resample::Kernels::detect(),
            engine_config.preprocess_threads(),
        );
        let post = Postprocessor::new(
            &m.output,
            m.classes.len(),
            thresholds.unwrap_or(m.thresholds),
        );
        let meter = InputMeter::new(&m.input);
        let engine = Engine::unwarmed(&model, engine_config, max_frames)?;
        Ok(Self {
            model,
            pre,
            engine,
            engine_config: engine_config.clone(),
            meter: Some(meter),
            batch_cap: max_frames,
            post,
        })
    }

    /// Runs the engine's next warm-up inference, if one is left; returns whether the warm-up is
    /// complete ([`Engine::warm_up_step`]).
    pub fn warm_up_step(&mut self) -> Result<bool, EngineError> {
        self.engine.warm_up_step()
    }

    /// Builds a new ONNX Runtime session in place of the current one ([`Engine::rebuild`]):
    /// for when runs keep failing. Allocates and blocks for the build and warm-up; the current
    /// session stays on error.
    pub fn rebuild_engine(&mut self) -> Result<(), EngineError> {
        self.engine
            .rebuild(&self.model, &self.engine_config, self.batch_cap)?;
        // The new session brings new input memory: its padding is not there yet.
        self.pre.forget_padding();
        crate::runtime::realtime::release_free_memory();
        Ok(())
    }

    /// Turns the input-health measurement ([`InputStats`], about 0.03 ms a frame) on or off
    /// (default on).
    pub fn set_input_health(&mut self, on: bool) {
        match (on, self.meter.is_some()) {
            (true, false) => self.meter = Some(InputMeter::new(&self.model.manifest.input)),
            (false, true) => self.meter = None,
            _ => {}
        }
    }

    /// Most frames one [`Self::detect_batch`] call infers in one run.
    pub fn batch(&self) -> usize {
        self.engine.batch()
    }

    /// Threads pre-processing runs on (1 or 2).
    pub fn preprocess_threads(&self) -> usize {
        self.pre.threads()
    }

    /// The model package.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The execution provider in use.
    pub fn execution_provider(&self) -> Provider {
        self.engine.execution_provider()
    }

    /// Why the first listed execution provider is not the one in use (None: it is).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.engine.fallback_reason()
    }

    /// Where the input and output tensors live (`cuda_pinned` or `cpu`).
    pub fn io_memory(&self) -> &'static str {
        self.engine.io_memory()
    }

    /// The engine as /diagnostics and reports describe it.
    pub fn engine_info(&self) -> crate::runtime::health::EngineInfo {
        crate::runtime::health::EngineInfo {
            execution_provider: self.execution_provider().as_str(),
            fallback_reason: self.fallback_reason().unwrap_or_default().to_string(),
            io_memory: self.io_memory(),
            max_batch: self.batch(),
            model: self.model.manifest.name.clone(),
            sha256: self.model.sha256().to_string(),
            ort_library: crate::core::engine::loaded_ort_library()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }

    /// Post-processor (thresholds, counters).
    pub fn postprocessor(&self) -> &Postprocessor {
        &self.post
    }

    /// Runs the whole pipeline on one frame.
    pub fn detect(&mut self, frame: &ImageView) -> Result<FrameResult<'_>, DetectError> {
        self.detect_with_timeout(frame, None)
    }

    /// Takes over the run control of the detector this one replaces (its watchdog then
    /// terminates this detector's runs).
    pub fn adopt_run_control(&mut self, control: &crate::core::engine::RunControl) {
        self.engine.adopt_run_control(control);
    }

    /// The engine's run control (for a hard-timeout watchdog).
    pub fn run_control(&self) -> crate::core::engine::RunControl {
        self.engine.run_control()
    }

    /// Runs the whole pipeline on one frame; the inference is terminated after `timeout` when a
    /// watchdog is registered on [`Self::run_control`].
    pub fn detect_with_timeout(
        &mut self,
        frame: &ImageView,
        timeout: Option<Duration>,
    ) -> Result<FrameResult<'_>, DetectError> {
        self.detect_sized(frame, (frame.width(), frame.height()), timeout)
    }

    /// As [`Self::detect_with_timeout`] for a frame that is a reduced copy of a `image_size`
    /// image (see [`crate::core::decode::Decoder::original_size`]): detections are in the full
    /// image's pixels.
    pub fn detect_sized(
        &mut self,
        frame: &ImageView,
        image_size: (u32, u32),
        timeout: Option<Duration>,
    ) -> Result<FrameResult<'_>, DetectError> {
        let t0 = Instant::now();
        let letterbox = self
            .pre
            .run_sized(frame, image_size, self.engine.input_mut())?;
        let input = self
            .meter
            .as_mut()
            .map(|m| m.measure(self.engine.input_mut(), &letterbox))
            .unwrap_or_default();
        let t1 = Instant::now();
        let post = &mut self.post;
        let mut t2 = t1;
        self.engine.run_with_timeout(timeout, |output| {
            t2 = Instant::now();
            post.run(output, &letterbox);
        })?;
        let t3 = Instant::now();
        Ok(FrameResult {
            detections: self.post.detections(),
            letterbox,
            input,
            times: StageTimes {
                preprocess: t1 - t0,
                inference: t2 - t1,
                postprocess: t3 - t2,
            },
        })
    }

    /// Runs the whole pipeline on up to [`Self::batch`] frames in one inference run: each
    /// `Some` frame of `frames` is pre-processed into its own slot of the batched input, the
    /// run infers them together, and `each(i, result)` is called for every `Some` frame `i`
    /// (in order) with its detections. Returns how many frames ran. Each result's
    /// `times.inference` is the whole run's; pre- and post-processing are the frame's own.
    /// Detections are those [`Self::detect_sized`] gives each frame alone (ONNX Runtime on the
    /// CPU computes each batch item as a run of one; see `tests/batch.rs`). Allocates nothing
    /// once every frame size was seen; a run with more `Some` frames than the batch fails
    /// without running.
    pub fn detect_batch(
        &mut self,
        frames: &[Option<BatchFrame<'_>>],
        timeout: Option<Duration>,
        mut each: impl FnMut(usize, FrameResult<'_>),
    ) -> Result<usize, DetectError> {
        let batch = self.engine.batch();
        let taken = frames.iter().filter(|f| f.is_some()).count();
        if taken == 0 {
            return Ok(0);
        }
        if taken > batch {
            return Err(DetectError::Engine(EngineError::Run {
                reason: format!("{taken} frames for one run, the engine takes at most {batch}"),
            }));
        }
        // Per slot: the frame's index in `frames`, its letterbox, picture and pre-processing time.
        let mut slots = [(
            0usize,
            Letterbox::default(),
            InputStats::default(),
            Duration::ZERO,
        ); MAX_BATCH];
        let mut k = 0;
        for (i, frame) in frames.iter().enumerate() {
            let Some(f) = frame else { continue };
            let t0 = Instant::now();
            let tensor = self
                .engine
                .input_slot_mut(k)
                .ok_or(PreprocessError::TensorSize {
                    expected: self.pre.spec().len(),
                    got: 0,
                })?;
            let lb = self.pre.run_slot(&f.view, f.image_size, tensor, k)?;
            let input = self
                .meter
                .as_mut()
                .map(|m| m.measure(tensor, &lb))
                .unwrap_or_default();
            slots[k] = (i, lb, input, t0.elapsed());
            k += 1;
        }
        let t1 = Instant::now();
        let post = &mut self.post;
        let frame_len = post.output_len();
        self.engine.run_frames(k, timeout, |output| {
            let inference = t1.elapsed();
            for (j, &(i, letterbox, input, preprocess)) in slots[..k].iter().enumerate() {
                let t2 = Instant::now();
                let out = output
                    .get(j * frame_len..(j + 1) * frame_len)
                    .unwrap_or(&[]);
                post.run(out, &letterbox);
                let postprocess = t2.elapsed();
                each(
                    i,
                    FrameResult {
                        detections: post.detections(),
                        letterbox,
                        input,
                        times: StageTimes {
                            preprocess,
                            inference,
                            postprocess,
                        },
                    },
                );
            }
        })?;
        Ok(k)
    }
}
