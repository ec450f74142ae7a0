//! Inference: one ONNX Runtime session with a preallocated input and output tensor.
//!
//! ONNX Runtime is loaded at run time (`ort` with `load-dynamic`) from the `ort_library` config
//! key if set, else the `ORT_DYLIB_PATH` environment variable if set, else the places the set-up
//! script installs it (`$LOOKOUT_HOME/lib`, `.lookout/lib` in the executable's ancestors, and
//! the source tree this binary was built from). When none loads, the error lists every path
//! tried and why it failed.
//!
//! Execution providers are tried in the configured order (default TensorRT, CUDA, CPU). Each one is
//! registered with `error_on_failure`, so a provider that is missing is known instead of silently
//! skipped; the first that registers is the provider **in use** and is reported
//! ([`Engine::execution_provider`]). CPU always works.
//!
//! The session reads the ONNX file by its path (lookout holds no copy of the model: on a small
//! computer two copies of a large model side by side are what sets the peak memory), then the
//! file's sha256 is checked again so the model that runs is the one the manifest names.
//!
//! Contract: [`Engine::new`] loads the library (once per process), builds the session, allocates
//! both tensors and runs `warmup_runs` inferences. [`Engine::run`] blocks for the duration of one
//! inference, allocates nothing on the Rust heap (ONNX Runtime's own arena serves its
//! intermediates) and fails only if ONNX Runtime reports an error.

mod batch;
mod config;
mod control;
mod library;
pub mod providers;

pub use config::EngineConfig;
pub use control::RunControl;
pub use library::{
    ORT_LIBRARY_NAME, loaded_ort_library, ort_library_candidates, relative_library_error,
};
pub use providers::{ConvAlgoSearch, CudaOptions, Provider, TensorRtOptions};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ort::session::Session;

use crate::core::engine::providers::tensorrt_cache;
use crate::core::model::Model;
use library::environment;

/// Why the engine could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No ONNX Runtime library could be loaded.
    #[error(
        "ONNX Runtime library not found; tried: {tried}. Set `ort_library` in the config or ORT_DYLIB_PATH, or run scripts/setup.sh"
    )]
    LibraryNotFound {
        /// Every path tried and why it failed, `; `-separated.
        tried: String,
    },
    /// Creating the environment or session failed.
    #[error("cannot create the ONNX Runtime session for {model}: {reason}")]
    Session {
        /// Model file.
        model: PathBuf,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// The configured provider list is empty or none could be registered.
    #[error("no execution provider could be registered (tried: {tried})")]
    NoProvider {
        /// Providers tried with their errors.
        tried: String,
    },
    /// `engine.require_first_provider` is set and the first listed provider cannot be used.
    #[error(
        "execution provider `{provider}` is required (engine.require_first_provider) but cannot be used: {reason}"
    )]
    FirstProviderUnavailable {
        /// The first listed provider.
        provider: Provider,
        /// Why it cannot be used.
        reason: String,
    },
    /// The graph's input or output does not match the manifest.
    #[error("model graph does not match the manifest: {reason}")]
    GraphMismatch {
        /// What differs.
        reason: String,
    },
    /// An inference run failed.
    #[error("inference failed: {reason}")]
    Run {
        /// ONNX Runtime's message.
        reason: String,
    },
    /// An inference run took longer than its hard timeout and was terminated.
    #[error("inference terminated after its hard timeout of {timeout_ms} ms")]
    Timeout {
        /// The timeout, ms.
        timeout_ms: f64,
    },
}

/// An ONNX Runtime session for one model with its input and output tensors (for every batch
/// size up to [`Engine::batch`]).
pub struct Engine {
    /// The run options in force, kept from `control` (no lock per run). Declared before `io`
    /// and `session`: dropped first.
    run_options: std::sync::Arc<control::SharedRunOptions>,
    control: RunControl,
    io: batch::BatchIo,
    session: Session,
    next_seq: u64,
    input_name: String,
    provider: Provider,
    fallback_reason: Option<String>,
    warmup: WarmUp,
}

/// Warm-up runs asked for and done.
struct WarmUp {
    /// `engine.warmup_runs`: runs of each batch size.
    runs_per_batch: u32,
    /// Runs done so far.
    done: u32,
}

/// Starts ONNX Runtime's intra-op threads through [`crate::core::threads::spawn`]: named
/// `lookout-ort`, and at the process's normal priority even when the session is built on a
/// background thread (hot swap).
struct OrtThreads;

impl ort::environment::ThreadManager for OrtThreads {
    type Thread = std::thread::JoinHandle<()>;

    fn create(&self, work: impl FnOnce() + Send + 'static) -> ort::Result<Self::Thread> {
        crate::core::threads::spawn("lookout-ort", work).map_err(|e| ort::Error::new(e.to_string()))
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        thread
            .join()
            .map_err(|_| ort::Error::new("an ONNX Runtime thread panicked"))
    }
}

/// Why a session with a given first provider could not be built.
enum Attempt {
    /// The provider did not register.
    Register(String),
    /// It registered but the session could not be created.
    Commit(String),
}

impl Engine {
    /// Loads ONNX Runtime (first call in the process), builds the session for `model` with the
    /// first execution provider that registers and commits, checks the graph against the
    /// manifest, allocates the tensors (in pinned host memory for a GPU provider) and warms up.
    /// Allocates; blocks for the session build (minutes for a TensorRT engine build, logged) and
    /// warm-up.
    ///
    /// A provider later in the list than the first is a fall-back: logged once as WARN and given
    /// by [`Self::fallback_reason`]; with `require_first_provider` it is an error instead.
    pub fn new(model: &Model, config: &EngineConfig) -> Result<Self, EngineError> {
        Self::with_batch_cap(model, config, crate::core::model::MAX_BATCH)
    }

    /// As [`Self::new`], with runs of at most `max_frames` frames whatever the model and
    /// `engine.max_batch` allow (a front end with fewer cameras needs no larger tensors).
    pub fn with_batch_cap(
        model: &Model,
        config: &EngineConfig,
        max_frames: usize,
    ) -> Result<Self, EngineError> {
        let mut engine = Self::unwarmed(model, config, max_frames)?;
        while !engine.warm_up_step()? {}
        Ok(engine)
    }

    /// As [`Self::with_batch_cap`] without the warm-up: [`Self::warm_up_step`] runs it one
    /// inference at a time, so that a model loaded beside a running one (hot swap) is warmed up
    /// by the inference thread between two frames instead of competing with them for the cores.
    pub fn unwarmed(
        model: &Model,
        config: &EngineConfig,
        max_frames: usize,
    ) -> Result<Self, EngineError> {
        let env = environment(config.ort_library.as_deref())?;
        let cap = max_frames.max(1);
        let wanted = config.batch_for(model.manifest.input.max_batch).min(cap);
        let batched_config;
        let config = if wanted > 1 && config.tensorrt.min_shapes.is_empty() {
            // TensorRT builds for one input shape unless given a profile: runs of 1 to `batch`
            // frames, optimised for full runs.
            let mut c = config.clone();
            let m = &model.manifest.input;
            let dims = |frames: usize| {
                let mut d = vec![frames.to_string()];
                d.extend(m.shape[1..].iter().map(ToString::to_string));
                format!("{}:{}", m.name, d.join("x"))
            };
            c.tensorrt.min_shapes = dims(1);
            c.tensorrt.opt_shapes = dims(wanted);
            c.tensorrt.max_shapes = dims(wanted);
            batched_config = c;
            &batched_config
        } else {
            config
        };
        let session_err = |e: ort::Error| EngineError::Session {
            model: model.onnx_path.clone(),
            reason: e.to_string(),
        };
        let providers = &config.execution_providers;
        let mut tried = Vec::new();
        let mut built = None;
        let mut last_commit_error = None;
        for (i, &provider) in providers.iter().enumerate() {
            match build_session(env, model, config, &providers[i..]) {
                Ok(session) => {
                    built = Some((provider, session));
                    break;
                }
                Err(attempt) => {
                    let reason = match attempt {
                        Attempt::Register(r) => r,
                        Attempt::Commit(r) => {
                            last_commit_error = Some(r.clone());
                            r
                        }
                    };
                    tracing::info!(provider = provider.as_str(), reason = %reason, "execution provider unavailable");
                    if i == 0 && config.require_first_provider {
                        return Err(EngineError::FirstProviderUnavailable { provider, reason });
                    }
                    tried.push(format!("{provider}: {reason}"));
                }
            }
        }
        let Some((provider, session)) = built else {
            if let Some(reason) = last_commit_error.filter(|_| tried.len() == 1) {
                return Err(EngineError::Session {
                    model: model.onnx_path.clone(),
                    reason,
                });
            }
            return Err(EngineError::NoProvider {
                tried: if tried.is_empty() {
                    "none configured".into()
                } else {
                    tried.join("; ")
                },
            });
        };
        let fallback_reason = (!tried.is_empty()).then(|| tried.join("; "));
        if let Some(reason) = &fallback_reason {
            tracing::warn!(
                execution_provider = provider.as_str(),
                wanted = providers.first().map_or("", |p| p.as_str()),
                reason = %reason,
                "running on a fall-back execution provider"
            );
        }

        // ONNX Runtime read the file by its path: check it is still the file that was hashed.
        model.verify().map_err(|e| EngineError::Session {
            model: model.onnx_path.clone(),
            reason: e.to_string(),
        })?;
        let m = &model.manifest;
        check_graph(&session, &m.input.name, &m.output.name)?;
        let batch = config
            .batch_on(model.manifest.input.max_batch, provider)
            .min(cap);
        check_batch(&session, &m.input.name, &m.output.name, batch)?;
        let device_id = provider.device_id(&config.provider_options());
        let pinned = config.pinned_memory && provider.is_gpu();
        let (io, options) =
            batch::BatchIo::new(&session, model, batch, pinned, device_id).map_err(session_err)?;
        let control = RunControl::new(options);
        let run_options = control.run_options().ok_or_else(|| EngineError::Session {
            model: model.onnx_path.clone(),
            reason: "run options unavailable".into(),
        })?;
        Ok(Self {
            run_options,
            control,
            io,
            session,
            next_seq: 0,
            input_name: m.input.name.clone(),
            provider,
            fallback_reason,
            warmup: WarmUp {
                runs_per_batch: config.warmup_runs,
                done: 0,
            },
        })
    }

    /// Runs the next warm-up inference, if one is left, and returns whether the warm-up is
    /// complete: `warmup_runs` runs of every batch size (ONNX Runtime plans its memory per
    /// input shape). Blocks for one inference; allocates only what ONNX Runtime allocates on a
    /// first run.
    pub fn warm_up_step(&mut self) -> Result<bool, EngineError> {
        let per = self.warmup.runs_per_batch;
        let total = per.saturating_mul(self.io.batch() as u32);
        if self.warmup.done >= total {
            return Ok(true);
        }
        let frames = (self.warmup.done / per) as usize + 1;
        self.run_frames(frames, None, |_| ())?;
        self.warmup.done += 1;
        Ok(self.warmup.done >= total)
    }

    /// Replaces the ONNX Runtime session with a new one built from `model` and `config` as
    /// [`Self::new`] builds it (providers tried in order, tensors allocated, warm-up), for when
    /// runs keep failing. The old session runs until the new one is ready and is then dropped;
    /// a hard-timeout watchdog registered on [`Self::run_control`] goes on working with the new
    /// session. On error the old session stays. Allocates and blocks like [`Self::new`]; never
    /// called on the per-frame path of a healthy engine.
    /// `max_frames` caps the batch as in [`Self::with_batch_cap`].
    pub fn rebuild(
        &mut self,
        model: &Model,
        config: &EngineConfig,
        max_frames: usize,
    ) -> Result<(), EngineError> {
        let fresh = Self::with_batch_cap(model, config, max_frames)?;
        self.control.adopt_options(&fresh.control);
        // The old run options (with their outputs), buffers and session go, in that order.
        self.run_options = fresh.run_options;
        self.io = fresh.io;
        self.session = fresh.session;
        self.provider = fresh.provider;
        self.fallback_reason = fresh.fallback_reason;
        self.warmup = fresh.warmup;
        Ok(())
    }

    /// Takes over `control` (the running engine's, which a hard-timeout watchdog holds) for this
    /// engine's session, so that the watchdog terminates this engine's runs after a model swap.
    pub fn adopt_run_control(&mut self, control: &RunControl) {
        control.adopt_options(&self.control);
        self.control = control.clone();
    }

    /// Why the first listed provider is not the one in use (each provider tried before it, with
    /// its error); `None` when the first one is in use.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Where the input and output tensors live: `cuda_pinned` or `cpu`.
    pub fn io_memory(&self) -> &'static str {
        self.io.io_memory
    }

    /// Most frames one run takes (1 unless the model has a dynamic batch dimension and
    /// `input.max_batch` and `engine.max_batch` allow more).
    pub fn batch(&self) -> usize {
        self.io.batch()
    }

    /// The execution provider the session runs on.
    pub fn execution_provider(&self) -> Provider {
        self.provider
    }

    /// Name of the model input.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The input tensor's data (frame slot 0), to be filled by the pre-processor before
    /// [`Self::run`].
    pub fn input_mut(&mut self) -> &mut [f32] {
        self.io.slot_mut(0).unwrap_or_default()
    }

    /// Frame slot `slot`'s input (`slot < batch`; else `None`), to be filled before
    /// [`Self::run_frames`].
    pub fn input_slot_mut(&mut self, slot: usize) -> Option<&mut [f32]> {
        self.io.slot_mut(slot)
    }

    /// The handle a watchdog uses to terminate runs that pass their deadline.
    pub fn run_control(&self) -> RunControl {
        self.control.clone()
    }

    /// Runs one inference on the current input and hands the output tensor's data to `read`.
    /// Blocks for the inference; allocates nothing on the Rust heap.
    pub fn run<R>(&mut self, read: impl FnOnce(&[f32]) -> R) -> Result<R, EngineError> {
        self.run_with_timeout(None, read)
    }

    /// As [`Self::run`], with a hard timeout enforced by the watchdog registered on
    /// [`Self::run_control`] (without a watchdog the timeout is not enforced).
    pub fn run_with_timeout<R>(
        &mut self,
        timeout: Option<Duration>,
        read: impl FnOnce(&[f32]) -> R,
    ) -> Result<R, EngineError> {
        self.run_frames(1, timeout, read)
    }

    /// Runs one inference on frame slots `0..frames` (`1..=batch`) and hands the output
    /// (`frames` outputs, one after the other) to `read`. Blocks for the inference; allocates
    /// nothing on the Rust heap.
    pub fn run_frames<R>(
        &mut self,
        frames: usize,
        timeout: Option<Duration>,
        read: impl FnOnce(&[f32]) -> R,
    ) -> Result<R, EngineError> {
        let (Some(input), Some(options)) = (self.io.input(frames), self.run_options.get(frames))
        else {
            return Err(EngineError::Run {
                reason: format!(
                    "a run of {frames} frames, the engine takes 1 to {}",
                    self.io.batch()
                ),
            });
        };
        self.next_seq += 1;
        let seq = self.next_seq;
        self.control
            .begin(seq, frames, timeout.map(|t| Instant::now() + t));
        let result = self.session.run_with_options(ort::inputs![input], options);
        let terminated = self.control.end();
        if terminated {
            return Err(EngineError::Timeout {
                timeout_ms: timeout.map_or(0.0, |t| t.as_secs_f64() * 1e3),
            });
        }
        let outputs = result.map_err(|e| EngineError::Run {
            reason: e.to_string(),
        })?;
        let (_, data) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| EngineError::Run {
                reason: e.to_string(),
            })?;
        let expected = frames * self.io.output_frame_len;
        if data.len() != expected {
            return Err(EngineError::Run {
                reason: format!(
                    "output has {} values, the manifest says {expected} ({frames} frames)",
                    data.len()
                ),
            });
        }
        Ok(read(data))
    }
}

/// Builds a session whose first provider is `providers[0]` (the rest registered after it, for
/// the nodes it cannot run). Fails if `providers[0]` does not register or the session does not
/// commit with it.
fn build_session(
    env: &ort::environment::Environment,
    model: &Model,
    config: &EngineConfig,
    providers: &[Provider],
) -> Result<Session, Attempt> {
    let Some(&first) = providers.first() else {
        return Err(Attempt::Register("no provider".into()));
    };
    let mut builder = Session::builder(env)
        .map_err(|e| Attempt::Commit(e.to_string()))?
        .with_thread_manager(OrtThreads)
        .map_err(|e| Attempt::Commit(e.to_string()))?;
    if config.intra_op_threads > 0 {
        builder = builder
            .with_intra_threads(config.intra_op_threads)
            .map_err(|e| Attempt::Commit(e.to_string()))?;
    }
    builder = builder
        .with_intra_op_spinning(config.intra_op_spinning)
        .map_err(|e| Attempt::Commit(e.to_string()))?
        .with_inter_op_spinning(config.intra_op_spinning)
        .map_err(|e| Attempt::Commit(e.to_string()))?;
    let options = config.provider_options();
    // The engine cache is keyed when TensorRT leads the attempt (a TensorRT listed after another
    // provider only takes the nodes that one cannot run, uncached).
    let trt_cache = (first == Provider::Tensorrt && config.tensorrt.engine_cache).then(|| {
        let m = &model.manifest;
        let shape =
            tensorrt_cache::input_shape_text(&m.input.name, &m.input.shape, &config.tensorrt);
        let lib_dir = loaded_ort_library().and_then(Path::parent);
        let dirs: Vec<&Path> = lib_dir.into_iter().collect();
        tensorrt_cache::prepare(&config.tensorrt, &m.name, model.sha256(), shape, &dirs)
    });
    let cache_dirs = trt_cache.as_ref().and_then(|c| c.as_ref().ok());
    for (i, &provider) in providers.iter().enumerate() {
        let dispatch = crate::core::engine::providers::dispatch(provider, &options, cache_dirs);
        match dispatch.register(&mut builder) {
            Ok(()) => tracing::debug!(
                provider = provider.as_str(),
                "execution provider registered"
            ),
            Err(e) if i == 0 => return Err(Attempt::Register(e.to_string())),
            Err(e) => {
                tracing::debug!(provider = provider.as_str(), error = %e, "execution provider not registered")
            }
        }
    }
    if let Some(Err(reason)) = &trt_cache {
        tracing::warn!(reason = %reason, "TensorRT engine cache off: cannot key it (every start builds the engine)");
    }
    let _progress = match (cache_dirs, first) {
        (Some(c), Provider::Tensorrt) if c.cached => {
            tracing::info!(cache = %c.engines.display(), "loading the cached TensorRT engine");
            None
        }
        (c, Provider::Tensorrt) => Some(tensorrt_cache::BuildProgress::start(
            c.map_or_else(
                || "no cache".to_string(),
                |c| c.engines.display().to_string(),
            ),
            Duration::from_secs(15),
        )),
        _ => None,
    };
    builder
        .commit_from_file(&model.onnx_path)
        .map_err(|e| Attempt::Commit(e.to_string()))
}

fn check_graph(session: &Session, input: &str, output: &str) -> Result<(), EngineError> {
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    if !inputs.contains(&input) {
        return Err(EngineError::GraphMismatch {
            reason: format!("no input named `{input}` (graph inputs: {inputs:?})"),
        });
    }
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    if !outputs.contains(&output) {
        return Err(EngineError::GraphMismatch {
            reason: format!("no output named `{output}` (graph outputs: {outputs:?})"),
        });
    }
    Ok(())
}

/// With `batch` above 1, the graph's input and output must have a dynamic first dimension
/// (ONNX Runtime reports it as -1).
fn check_batch(
    session: &Session,
    input: &str,
    output: &str,
    batch: usize,
) -> Result<(), EngineError> {
    if batch <= 1 {
        return Ok(());
    }
    let first_dim = |ty: &ort::value::ValueType| match ty {
        ort::value::ValueType::Tensor { shape, .. } => shape.first().copied(),
        _ => None,
    };
    let inputs = session.inputs().iter().map(|i| (i.name(), i.dtype()));
    let outputs = session.outputs().iter().map(|o| (o.name(), o.dtype()));
    for (name, ty) in inputs
        .filter(|(n, _)| *n == input)
        .chain(outputs.filter(|(n, _)| *n == output))
    {
        if let Some(d) = first_dim(ty).filter(|d| *d >= 0) {
            return Err(EngineError::GraphMismatch {
                reason: format!(
                    "input.max_batch asks for {batch} frames per run, but `{name}` has a fixed batch dimension of {d}"
                ),
            });
        }
    }
    Ok(())
}
