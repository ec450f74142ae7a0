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
//! Contract: [`Engine::new`] loads the library (once per process), builds the session, allocates
//! both tensors and runs `warmup_runs` inferences. [`Engine::run`] blocks for the duration of one
//! inference, allocates nothing on the Rust heap (ONNX Runtime's own arena serves its
//! intermediates) and fails only if ONNX Runtime reports an error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use ort::ep::ExecutionProviderDispatch;
use ort::memory::Allocator;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::Model;

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

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// NVIDIA TensorRT.
    Tensorrt,
    /// NVIDIA CUDA.
    Cuda,
    /// The default CPU provider (always available).
    Cpu,
}

impl Provider {
    /// Config name (`tensorrt`, `cuda`, `cpu`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tensorrt => "tensorrt",
            Self::Cuda => "cuda",
            Self::Cpu => "cpu",
        }
    }

    fn dispatch(self) -> ExecutionProviderDispatch {
        match self {
            Self::Tensorrt => ort::ep::TensorRT::default().build().error_on_failure(),
            Self::Cuda => ort::ep::CUDA::default().build().error_on_failure(),
            Self::Cpu => ort::ep::CPU::default().build().error_on_failure(),
        }
    }
}

impl std::str::FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tensorrt" => Ok(Self::Tensorrt),
            "cuda" => Ok(Self::Cuda),
            "cpu" => Ok(Self::Cpu),
            _ => Err(format!(
                "unknown execution provider `{s}` (expected tensorrt, cuda or cpu)"
            )),
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_providers() -> Vec<Provider> {
    vec![Provider::Tensorrt, Provider::Cuda, Provider::Cpu]
}

fn default_warmup_runs() -> u32 {
    2
}

/// Engine settings (part of the node's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Execution providers in order of preference; the first that registers is used.
    #[serde(default = "default_providers")]
    pub execution_providers: Vec<Provider>,
    /// Path of `libonnxruntime.so`; empty: `ORT_DYLIB_PATH`, then the set-up's location.
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// Threads ONNX Runtime uses inside one operator; 0: ONNX Runtime's default (one per core).
    /// Results are bit-identical only for the same value (and provider).
    #[serde(default)]
    pub intra_op_threads: usize,
    /// Inferences run at start-up so the first real frame does not pay for lazy initialisation.
    #[serde(default = "default_warmup_runs")]
    pub warmup_runs: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            execution_providers: default_providers(),
            ort_library: None,
            intra_op_threads: 0,
            warmup_runs: default_warmup_runs(),
        }
    }
}

/// The file name the set-up script links ONNX Runtime as.
pub const ORT_LIBRARY_NAME: &str = "libonnxruntime.so";

/// Candidate paths for the ONNX Runtime library, in the order they are tried. An explicit choice
/// (the config key, else `ORT_DYLIB_PATH`) is the only candidate: a library the user named is
/// never silently replaced by another. Without one, the set-up's locations are searched.
pub fn ort_library_candidates(config: Option<&Path>) -> Vec<PathBuf> {
    // An empty config value means "not set" (ROS parameters cannot be null).
    if let Some(p) = config.filter(|p| !p.as_os_str().is_empty()) {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out = Vec::new();
    if let Some(home) = std::env::var_os("LOOKOUT_HOME").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(home).join("lib").join(ORT_LIBRARY_NAME));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            let p = dir.join(".lookout").join("lib").join(ORT_LIBRARY_NAME);
            if p.exists() {
                out.push(p);
                break;
            }
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".lookout")
        .join("lib")
        .join(ORT_LIBRARY_NAME);
    if !out.contains(&built_from) {
        out.push(built_from);
    }
    out
}

/// The process-wide ONNX Runtime environment (ONNX Runtime allows one per process).
static ENVIRONMENT: OnceLock<Result<(ort::environment::Environment, PathBuf), String>> =
    OnceLock::new();

fn environment(
    config: Option<&Path>,
) -> Result<&'static ort::environment::Environment, EngineError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let mut tried = Vec::new();
        for path in ort_library_candidates(config) {
            if !path.exists() {
                tried.push(format!("{} (no such file)", path.display()));
                continue;
            }
            match ort::init_from(&path) {
                Ok(builder) => {
                    return builder
                        .with_name("lookout")
                        .build()
                        .map(|env| (env, path.clone()))
                        .map_err(|e| format!("{} (loaded, but: {e})", path.display()));
                }
                Err(e) => tried.push(format!("{} ({e})", path.display())),
            }
        }
        Err(tried.join("; "))
    });
    match result {
        Ok((env, path)) => {
            tracing::debug!(library = %path.display(), "ONNX Runtime loaded");
            Ok(env)
        }
        Err(tried) => Err(EngineError::LibraryNotFound {
            tried: tried.clone(),
        }),
    }
}

/// Path of the ONNX Runtime library this process loaded, once an engine was created.
pub fn loaded_ort_library() -> Option<&'static Path> {
    ENVIRONMENT
        .get()
        .and_then(|r| r.as_ref().ok())
        .map(|(_, p)| p.as_path())
}

/// Run options shared with the hard-timeout watchdog.
struct SharedRunOptions(RunOptions<HasSelectedOutputs>);

// SAFETY: another thread only ever calls `terminate`/`unterminate` on these options, which set
// an atomic flag inside ONNX Runtime (`RunOptionsSetTerminate`/`UnsetTerminate`, documented as
// callable from another thread to stop a run). The preallocated output value they also hold is
// used only by `Session::run_with_options` on the engine's own thread.
unsafe impl Sync for SharedRunOptions {}

#[derive(Debug, Default)]
struct RunState {
    /// Sequence number of the run in progress (0: none).
    active: u64,
    /// When the run in progress must be terminated.
    deadline: Option<Instant>,
    /// The watchdog terminated the run in progress.
    terminated: bool,
}

/// Lets a watchdog thread terminate the engine's current run when it passes its deadline.
///
/// The state is a mutex shared only by the inference thread and the watchdog (never by the ROS
/// side); the inference thread takes it twice per run, uncontended except at a timeout.
#[derive(Clone)]
pub struct RunControl {
    options: Arc<SharedRunOptions>,
    state: Arc<Mutex<RunState>>,
    watchdog: Arc<OnceLock<Thread>>,
}

impl RunControl {
    /// Registers the watchdog thread, woken whenever a run with a deadline starts.
    pub fn set_watchdog(&self, thread: Thread) {
        let _ = self.watchdog.set(thread);
    }

    /// The run in progress and its deadline, if it has one.
    pub fn current(&self) -> Option<(u64, Instant)> {
        let s = self.state.lock().ok()?;
        match (s.active, s.deadline) {
            (0, _) | (_, None) => None,
            (seq, Some(d)) => Some((seq, d)),
        }
    }

    /// Terminates run `seq` if it is still the one in progress. Returns whether it did.
    pub fn terminate(&self, seq: u64) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.active != seq || s.terminated {
            return false;
        }
        s.terminated = self.options.0.terminate().is_ok();
        s.terminated
    }

    fn begin(&self, seq: u64, deadline: Option<Instant>) {
        if let Ok(mut s) = self.state.lock() {
            s.active = seq;
            s.deadline = deadline;
            s.terminated = false;
        }
        if deadline.is_some()
            && let Some(t) = self.watchdog.get()
        {
            t.unpark();
        }
    }

    /// Ends the run; returns whether the watchdog terminated it.
    fn end(&self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        s.active = 0;
        s.deadline = None;
        let terminated = s.terminated;
        if terminated {
            // Clear the flag before the next run starts (under the lock, so the watchdog cannot
            // set it again for this run).
            let _ = self.options.0.unterminate();
            s.terminated = false;
        }
        terminated
    }
}

/// An ONNX Runtime session for one model with its input and output tensors.
pub struct Engine {
    session: Session,
    input: Tensor<f32>,
    control: RunControl,
    next_seq: u64,
    input_name: String,
    output_len: usize,
    provider: Provider,
}

impl Engine {
    /// Loads ONNX Runtime (first call in the process), builds the session for `model` with the
    /// first execution provider that registers, checks the graph against the manifest, allocates
    /// the tensors and warms up. Allocates; blocks for the session build and warm-up.
    pub fn new(model: &Model, config: &EngineConfig) -> Result<Self, EngineError> {
        let env = environment(config.ort_library.as_deref())?;
        let session_err = |e: ort::Error| EngineError::Session {
            model: model.onnx_path.clone(),
            reason: e.to_string(),
        };
        let mut builder = Session::builder(env).map_err(session_err)?;
        if config.intra_op_threads > 0 {
            builder = builder
                .with_intra_threads(config.intra_op_threads)
                .map_err(|e| session_err(e.into()))?;
        }
        // Every configured provider is registered (later ones take the nodes earlier ones cannot
        // run); the first that registers is the one in use.
        let mut tried = Vec::new();
        let mut chosen = None;
        for &provider in &config.execution_providers {
            match provider.dispatch().register(&mut builder) {
                Ok(()) => {
                    tracing::debug!(
                        provider = provider.as_str(),
                        "execution provider registered"
                    );
                    chosen.get_or_insert(provider);
                }
                Err(e) => {
                    tracing::info!(provider = provider.as_str(), error = %e, "execution provider unavailable");
                    tried.push(format!("{provider}: {e}"));
                }
            }
        }
        let Some(provider) = chosen else {
            return Err(EngineError::NoProvider {
                tried: if tried.is_empty() {
                    "none configured".into()
                } else {
                    tried.join("; ")
                },
            });
        };
        let session = builder
            .commit_from_memory(&model.onnx_bytes)
            .map_err(session_err)?;

        let m = &model.manifest;
        check_graph(&session, &m.input.name, &m.output.name)?;
        let input = Tensor::<f32>::new(&Allocator::default(), m.input.shape.map(|d| d as i64))
            .map_err(session_err)?;
        let output_shape = m.output.shape.map(|d| d as i64);
        let output =
            Tensor::<f32>::new(&Allocator::default(), output_shape).map_err(session_err)?;
        let run_options = RunOptions::new().map_err(session_err)?.with_outputs(
            OutputSelector::no_default()
                .with(m.output.name.clone())
                .preallocate(m.output.name.clone(), output),
        );
        let mut engine = Self {
            session,
            input,
            control: RunControl {
                options: Arc::new(SharedRunOptions(run_options)),
                state: Arc::new(Mutex::new(RunState::default())),
                watchdog: Arc::new(OnceLock::new()),
            },
            next_seq: 0,
            input_name: m.input.name.clone(),
            output_len: m.output.shape.iter().product(),
            provider,
        };
        for _ in 0..config.warmup_runs {
            engine.run(|_| ())?;
        }
        Ok(engine)
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
        self.input.extract_tensor_mut().1
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
            .run_with_options(ort::inputs![&self.input], &self.control.options.0);
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
