//! The `engine.*` parameters: execution providers in order and their options, threads, warm-up.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::providers::{CudaOptions, Provider, ProviderOptions, TensorRtOptions};

fn default_providers() -> Vec<Provider> {
    vec![Provider::Tensorrt, Provider::Cuda, Provider::Cpu]
}

fn default_true() -> bool {
    true
}

fn default_warmup_runs() -> u32 {
    2
}

fn default_rebuild_after_failures() -> u32 {
    5
}

/// Engine settings (part of the node's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Execution providers in order of preference; the first that registers is used.
    #[serde(default = "default_providers")]
    pub execution_providers: Vec<Provider>,
    /// Fail at start-up when the first listed provider cannot be used (a vehicle that must
    /// never run on a slower provider than intended); otherwise a fall-back is logged and shown.
    #[serde(default)]
    pub require_first_provider: bool,
    /// Path of `libonnxruntime.so`; empty: `ORT_DYLIB_PATH`, then the set-up's location.
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// Threads ONNX Runtime uses inside one operator; 0: ONNX Runtime's default (one per core).
    /// Results are bit-identical only for the same value (and provider).
    #[serde(default)]
    pub intra_op_threads: usize,
    /// Let ONNX Runtime's intra-op threads spin (busy-wait) between runs: a little lower latency
    /// per operator, but the spinning threads take the cores from everything else lookout does
    /// between runs (pre-processing, publishing). Off by default.
    #[serde(default)]
    pub intra_op_spinning: bool,
    /// Inferences run at start-up so the first real frame does not pay for lazy initialisation.
    #[serde(default = "default_warmup_runs")]
    pub warmup_runs: u32,
    /// Rebuild the ONNX Runtime session after this many inference runs in a row failed with an
    /// error (a wedged provider, a lost GPU context); 0: never. Hard timeouts do not count: they
    /// are the camera's budget, which a new session would not change. Reported on /diagnostics.
    #[serde(default = "default_rebuild_after_failures")]
    pub rebuild_after_failures: u32,
    /// Threads for pre-processing (1 or 2; 0: 2 where the machine has at least 2 cores). A
    /// second thread shares each frame's rows; results are bit-identical either way.
    #[serde(default)]
    pub preprocess_threads: usize,
    /// Most frames one inference run takes: 0 (default) as many as the model's
    /// `input.max_batch` allows on a GPU provider and 1 on the CPU (where a run of `k` frames
    /// takes about `k` times one, so batching only adds latency); 1 one frame per run; else at
    /// most this many on any provider. The node and replay also cap it at their number of
    /// cameras: a run takes at most one frame per camera.
    #[serde(default)]
    pub max_batch: usize,
    /// With a GPU provider, put the input tensor in pinned (page-locked) host memory, so that
    /// its copy to the GPU is one direct DMA transfer instead of a staged copy.
    #[serde(default = "default_true")]
    pub pinned_memory: bool,
    /// TensorRT options.
    #[serde(default)]
    pub tensorrt: TensorRtOptions,
    /// CUDA options.
    #[serde(default)]
    pub cuda: CudaOptions,
}

impl EngineConfig {
    /// The pre-processing threads `preprocess_threads` asks for on this machine.
    pub fn preprocess_threads(&self) -> usize {
        match self.preprocess_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            n => n.min(2),
        }
    }

    /// Frames per run on `provider` for a model whose manifest allows `model_max_batch`.
    pub fn batch_on(&self, model_max_batch: usize, provider: Provider) -> usize {
        if self.max_batch == 0 && !provider.is_gpu() {
            return 1;
        }
        self.batch_for(model_max_batch)
    }

    /// Frames per run for a model whose manifest allows `model_max_batch`, on a GPU provider.
    pub fn batch_for(&self, model_max_batch: usize) -> usize {
        match self.max_batch {
            0 => model_max_batch,
            n => n.min(model_max_batch),
        }
        .max(1)
    }

    /// The providers' options, for validation and registration.
    pub fn provider_options(&self) -> ProviderOptions<'_> {
        ProviderOptions {
            tensorrt: &self.tensorrt,
            cuda: &self.cuda,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            execution_providers: default_providers(),
            require_first_provider: false,
            ort_library: None,
            intra_op_threads: 0,
            intra_op_spinning: false,
            warmup_runs: default_warmup_runs(),
            rebuild_after_failures: default_rebuild_after_failures(),
            preprocess_threads: 0,
            max_batch: 0,
            pinned_memory: true,
            tensorrt: TensorRtOptions::default(),
            cuda: CudaOptions::default(),
        }
    }
}
