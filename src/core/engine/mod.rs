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

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{OutputSelector, RunOptions, Session};
use ort::value::Tensor;

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

/// An ONNX Runtime session for one model with its input and output tensors.
pub struct Engine {
    session: Session,
    input: Tensor<f32>,
    input_len: usize,
    control: RunControl,
    /// The run options in force, kept from `control` (no lock per run).
    run_options: std::sync::Arc<control::SharedRunOptions>,
    next_seq: u64,
    input_name: String,
    output_len: usize,
    provider: Provider,
    fallback_reason: Option<String>,
    io_memory: &'static str,
}

/// Where the input and output tensors live: `cuda_pinned` (page-locked host memory the GPU
/// copies by DMA) or `cpu` (ordinary memory).
const IO_MEMORY_PINNED: &str = "cuda_pinned";
const IO_MEMORY_CPU: &str = "cpu";

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
        let env = environment(config.ort_library.as_deref())?;
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
        let device_id = provider.device_id(&config.provider_options());
        let pinned = config.pinned_memory && provider.is_gpu();
        let (input, output, io_memory) =
            io_tensors(&session, model, pinned, device_id).map_err(session_err)?;
        let run_options = RunOptions::new().map_err(session_err)?.with_outputs(
            OutputSelector::no_default()
                .with(m.output.name.clone())
                .preallocate(m.output.name.clone(), output),
        );
        let control = RunControl::new(run_options);
        let run_options = control.run_options().ok_or_else(|| EngineError::Session {
            model: model.onnx_path.clone(),
            reason: "run options unavailable".into(),
        })?;
        let mut engine = Self {
            session,
            input,
            input_len: m.input.shape.iter().product(),
            control,
            run_options,
            next_seq: 0,
            input_name: m.input.name.clone(),
            output_len: m.output.shape.iter().product(),
            provider,
            fallback_reason,
            io_memory,
        };
        for _ in 0..config.warmup_runs {
            engine.run(|_| ())?;
        }
        Ok(engine)
    }

    /// Replaces the ONNX Runtime session with a new one built from `model` and `config` as
    /// [`Self::new`] builds it (providers tried in order, tensors allocated, warm-up), for when
    /// runs keep failing. The old session runs until the new one is ready and is then dropped;
    /// a hard-timeout watchdog registered on [`Self::run_control`] goes on working with the new
    /// session. On error the old session stays. Allocates and blocks like [`Self::new`]; never
    /// called on the per-frame path of a healthy engine.
    pub fn rebuild(&mut self, model: &Model, config: &EngineConfig) -> Result<(), EngineError> {
        let fresh = Self::new(model, config)?;
        self.control.adopt_options(&fresh.control);
        self.run_options = fresh.run_options;
        self.session = fresh.session;
        self.input = fresh.input;
        self.input_len = fresh.input_len;
        self.output_len = fresh.output_len;
        self.provider = fresh.provider;
        self.fallback_reason = fresh.fallback_reason;
        self.io_memory = fresh.io_memory;
        Ok(())
    }

    /// Why the first listed provider is not the one in use (each provider tried before it, with
    /// its error); `None` when the first one is in use.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Where the input and output tensors live: `cuda_pinned` or `cpu`.
    pub fn io_memory(&self) -> &'static str {
        self.io_memory
    }

    /// The execution provider the session runs on.
    pub fn execution_provider(&self) -> Provider {
        self.provider
    }

    /// Name of the model input.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The input tensor's data, to be filled by the pre-processor before [`Self::run`].
    pub fn input_mut(&mut self) -> &mut [f32] {
        // ort's own accessors refuse pinned memory (not "CPU" to them), so the slice is made
        // from the tensor's data pointer.
        let data = self.input.data_ptr_mut().cast::<f32>();
        // SAFETY: the tensor was allocated in `new` with the manifest's input shape, i.e.
        // `input_len` f32 values, by the CPU allocator or CUDA's pinned host allocator: both
        // return host-addressable memory aligned for f32, valid while `self.input` lives. The
        // `&mut self` borrow makes this the only reference to it; ONNX Runtime reads it only
        // inside `run`, which also takes `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(data, self.input_len) }
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
        self.next_seq += 1;
        let seq = self.next_seq;
        self.control.begin(seq, timeout.map(|t| Instant::now() + t));
        let result = self
            .session
            .run_with_options(ort::inputs![&self.input], self.run_options.get());
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
        if data.len() != self.output_len {
            return Err(EngineError::Run {
                reason: format!(
                    "output has {} values, the manifest says {}",
                    data.len(),
                    self.output_len
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
    let mut builder = Session::builder(env).map_err(|e| Attempt::Commit(e.to_string()))?;
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

/// The input and output tensors. With `pinned`, the input is in pinned host memory from the
/// session's CUDA allocator (its copy to the device is then one direct DMA transfer, with no
/// staging copy in the driver), falling back to ordinary memory with a warning if pinned memory
/// cannot be had. The output is always in ordinary memory: ONNX Runtime 1.31 writes a CUDA
/// node's output straight into a pinned fetch and then fails its own copy step
/// (`GPUDataTransfer::CopyTensorAsync: dst_data != src_data`), seen on an H200.
fn io_tensors(
    session: &Session,
    model: &Model,
    pinned: bool,
    device_id: i32,
) -> Result<(Tensor<f32>, Tensor<f32>, &'static str), ort::Error> {
    let m = &model.manifest;
    let output = Tensor::<f32>::new(&Allocator::default(), m.output.shape.map(|d| d as i64))?;
    let make =
        |allocator: &Allocator| Tensor::<f32>::new(allocator, m.input.shape.map(|d| d as i64));
    if pinned {
        let mut errors = Vec::new();
        for memory_type in [MemoryType::CPUOutput, MemoryType::CPUInput] {
            let pinned = MemoryInfo::new(
                AllocationDevice::CUDA_PINNED,
                device_id,
                AllocatorType::Device,
                memory_type,
            )
            .and_then(|info| Allocator::new(session, info))
            .and_then(|a| make(&a));
            match pinned {
                Ok(input) => return Ok((input, output, IO_MEMORY_PINNED)),
                Err(e) => errors.push(format!("{memory_type:?}: {e}")),
            }
        }
        tracing::warn!(
            errors = %errors.join("; "),
            "no pinned host memory from ONNX Runtime: frames are copied to the GPU from ordinary memory"
        );
    }
    Ok((make(&Allocator::default())?, output, IO_MEMORY_CPU))
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
