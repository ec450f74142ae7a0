//! Execution providers: which ones, their options from the params file, and how each registers.
//!
//! The params file names the providers in order of preference (`engine.execution_providers`,
//! default TensorRT, CUDA, CPU) and gives each its options (`engine.tensorrt`, `engine.cuda`; the
//! CPU provider's only option is `engine.intra_op_threads`). [`crate::core::engine::Engine::new`] builds
//! a session with the first provider that both registers and commits; a later one in use is a
//! **fall-back**, logged once as WARN with the reason and shown on /diagnostics, unless
//! `engine.require_first_provider` turns it into a start-up error.
//!
//! - [`gpu`] asks the CUDA driver and TensorRT (loaded at run time, never linked) what they are;
//! - [`tensorrt_cache`] keys TensorRT's engine cache, so that an engine is rebuilt exactly when
//!   the model, TensorRT, the GPU, the precision or the input shape changed.
//!
//! Nothing here is on the per-frame path: everything runs once, at engine start-up.

pub mod gpu;
pub mod tensorrt_cache;

use std::path::{Path, PathBuf};

use ort::ep::ExecutionProviderDispatch;
use serde::{Deserialize, Serialize};

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

    /// Whether the provider runs on an NVIDIA GPU (inputs are best fed from pinned host memory).
    pub fn is_gpu(self) -> bool {
        matches!(self, Self::Tensorrt | Self::Cuda)
    }

    /// The CUDA device the provider runs on (0 for the CPU).
    pub fn device_id(self, options: &ProviderOptions) -> i32 {
        match self {
            Self::Tensorrt => options.tensorrt.device_id,
            Self::Cuda => options.cuda.device_id,
            Self::Cpu => 0,
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

/// Largest CUDA device index accepted.
pub const MAX_DEVICE_ID: i32 = 63;
/// Largest TensorRT workspace / CUDA arena limit accepted, MiB (16 TiB).
pub const MAX_MEMORY_MB: u64 = 16 << 20;

/// TensorRT options (`engine.tensorrt.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TensorRtOptions {
    /// CUDA device.
    pub device_id: i32,
    /// Build fp16 kernels where faster (results differ slightly from fp32).
    pub fp16: bool,
    /// Build int8 kernels (needs a quantised model or a calibration table); off by default.
    pub int8: bool,
    /// int8 calibration table (file name in the engine cache folder); empty: none.
    pub int8_calibration_table: String,
    /// Builder workspace limit, MiB; 0: TensorRT's default (the device's memory).
    pub max_workspace_mb: u64,
    /// Cache built engines (a build takes minutes; a cached engine loads in seconds).
    pub engine_cache: bool,
    /// Engine cache folder; empty: `$LOOKOUT_HOME/tensorrt`, else `$XDG_CACHE_HOME/lookout/tensorrt`
    /// or `~/.cache/lookout/tensorrt`. Each key (model, TensorRT, GPU, precision, shape) gets a
    /// subfolder of its own.
    pub engine_cache_dir: PathBuf,
    /// Keep TensorRT's timing cache beside the engines (faster rebuilds on the same GPU).
    pub timing_cache: bool,
    /// Builder optimisation level, 0..=5 (TensorRT's default 3).
    pub builder_optimization_level: u8,
    /// Optimisation profile for dynamic inputs, `name:1x3x416x416[,name2:...]`; empty: the
    /// manifest's static shape.
    pub min_shapes: String,
    /// As `min_shapes`, the shape TensorRT optimises for.
    pub opt_shapes: String,
    /// As `min_shapes`, the largest shape accepted.
    pub max_shapes: String,
}

impl Default for TensorRtOptions {
    fn default() -> Self {
        Self {
            device_id: 0,
            fp16: true,
            int8: false,
            int8_calibration_table: String::new(),
            max_workspace_mb: 0,
            engine_cache: true,
            engine_cache_dir: PathBuf::new(),
            timing_cache: true,
            builder_optimization_level: 3,
            min_shapes: String::new(),
            opt_shapes: String::new(),
            max_shapes: String::new(),
        }
    }
}

impl TensorRtOptions {
    /// The precision TensorRT builds for: `int8`, `fp16` or `fp32`.
    pub fn precision(&self) -> &'static str {
        if self.int8 {
            "int8"
        } else if self.fp16 {
            "fp16"
        } else {
            "fp32"
        }
    }

    /// The engine cache root (before the per-key subfolder).
    pub fn cache_root(&self) -> PathBuf {
        if !self.engine_cache_dir.as_os_str().is_empty() {
            return self.engine_cache_dir.clone();
        }
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(home) = env("LOOKOUT_HOME") {
            return PathBuf::from(home).join("tensorrt");
        }
        if let Some(cache) = env("XDG_CACHE_HOME") {
            return PathBuf::from(cache).join("lookout").join("tensorrt");
        }
        match env("HOME") {
            Some(home) => PathBuf::from(home)
                .join(".cache")
                .join("lookout")
                .join("tensorrt"),
            None => std::env::temp_dir().join("lookout-tensorrt"),
        }
    }
}

/// cuDNN's convolution algorithm search (`engine.cuda.cudnn_conv_algo_search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvAlgoSearch {
    /// Benchmark every algorithm on the first run of each shape (done during warm-up).
    #[default]
    Exhaustive,
    /// cuDNN's heuristics: a faster first run, sometimes slower kernels.
    Heuristic,
    /// The implicit-precomputed GEMM algorithm, no search (least memory).
    Default,
}

/// CUDA options (`engine.cuda.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CudaOptions {
    /// CUDA device.
    pub device_id: i32,
    /// cuDNN convolution algorithm search.
    pub cudnn_conv_algo_search: ConvAlgoSearch,
    /// Limit of ONNX Runtime's device memory arena, MiB; 0: no limit.
    pub arena_limit_mb: u64,
}

impl Default for CudaOptions {
    fn default() -> Self {
        Self {
            device_id: 0,
            cudnn_conv_algo_search: ConvAlgoSearch::Exhaustive,
            arena_limit_mb: 0,
        }
    }
}

/// The options of every provider, as the engine configuration holds them.
#[derive(Debug, Clone, Copy)]
pub struct ProviderOptions<'a> {
    /// TensorRT's.
    pub tensorrt: &'a TensorRtOptions,
    /// CUDA's.
    pub cuda: &'a CudaOptions,
}

/// An invalid provider option: the key below `engine.` and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// Key, e.g. `tensorrt.max_workspace_mb`.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Checks the options' ranges and formats.
pub fn validate(options: &ProviderOptions<'_>) -> Result<(), OptionError> {
    let err = |key: &str, reason: String| OptionError {
        key: key.to_string(),
        reason,
    };
    let t = options.tensorrt;
    let c = options.cuda;
    for (key, id) in [
        ("tensorrt.device_id", t.device_id),
        ("cuda.device_id", c.device_id),
    ] {
        if !(0..=MAX_DEVICE_ID).contains(&id) {
            return Err(err(
                key,
                format!("must be within 0..{MAX_DEVICE_ID}, got {id}"),
            ));
        }
    }
    for (key, mb) in [
        ("tensorrt.max_workspace_mb", t.max_workspace_mb),
        ("cuda.arena_limit_mb", c.arena_limit_mb),
    ] {
        if mb > MAX_MEMORY_MB {
            return Err(err(
                key,
                format!("must be at most {MAX_MEMORY_MB}, got {mb}"),
            ));
        }
    }
    if t.builder_optimization_level > 5 {
        return Err(err(
            "tensorrt.builder_optimization_level",
            format!("must be within 0..5, got {}", t.builder_optimization_level),
        ));
    }
    let file_name = Path::new(&t.int8_calibration_table).file_name();
    if !t.int8_calibration_table.is_empty()
        && file_name.map(|n| n.len()) != Some(t.int8_calibration_table.len())
    {
        return Err(err(
            "tensorrt.int8_calibration_table",
            "must be a file name in the engine cache folder, not a path".to_string(),
        ));
    }
    let profile = [
        ("tensorrt.min_shapes", &t.min_shapes),
        ("tensorrt.opt_shapes", &t.opt_shapes),
        ("tensorrt.max_shapes", &t.max_shapes),
    ];
    for (key, shapes) in profile {
        parse_shapes(shapes).map_err(|reason| err(key, reason))?;
    }
    let set = profile.iter().filter(|(_, s)| !s.is_empty()).count();
    if set != 0 && set != 3 {
        return Err(err(
            "tensorrt.min_shapes",
            "min_shapes, opt_shapes and max_shapes are set together or not at all".to_string(),
        ));
    }
    Ok(())
}

/// Largest number of inputs in an optimisation profile, and of dimensions per input.
const MAX_PROFILE_INPUTS: usize = 16;
const MAX_PROFILE_DIMS: usize = 8;

/// Parses `name:1x3x416x416[,name2:...]` (ONNX Runtime's profile format) into names and dims.
pub fn parse_shapes(text: &str) -> Result<Vec<(String, Vec<u32>)>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in text.split(',') {
        if out.len() == MAX_PROFILE_INPUTS {
            return Err(format!("more than {MAX_PROFILE_INPUTS} inputs"));
        }
        let (name, dims) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("`{entry}`: expected name:DxDxD"))?;
        if name.is_empty() {
            return Err(format!("`{entry}`: the input name is empty"));
        }
        let dims: Vec<u32> = dims
            .split('x')
            .take(MAX_PROFILE_DIMS + 1)
            .map(|d| d.parse::<u32>().ok().filter(|d| (1..=1 << 20).contains(d)))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("`{entry}`: dimensions must be integers within 1..1048576"))?;
        if dims.len() > MAX_PROFILE_DIMS {
            return Err(format!(
                "`{entry}`: more than {MAX_PROFILE_DIMS} dimensions"
            ));
        }
        out.push((name.to_string(), dims));
    }
    Ok(out)
}

/// MiB to bytes, saturating (the options are range-checked, see [`MAX_MEMORY_MB`]).
fn bytes_from_mb(mb: u64) -> usize {
    usize::try_from(mb)
        .unwrap_or(usize::MAX)
        .saturating_mul(1 << 20)
}

/// The registration of `provider` with its options. `cache_dir` is the TensorRT engine cache
/// folder for this model (None: no engine cache); `timing_cache` TensorRT's timing cache file.
pub fn dispatch(
    provider: Provider,
    options: &ProviderOptions<'_>,
    tensorrt_cache: Option<&tensorrt_cache::CacheDirs>,
) -> ExecutionProviderDispatch {
    match provider {
        Provider::Tensorrt => {
            let t = options.tensorrt;
            let mut ep = ort::ep::TensorRT::default()
                .with_device_id(t.device_id)
                .with_fp16(t.fp16)
                .with_int8(t.int8)
                .with_builder_optimization_level(t.builder_optimization_level)
                // Progress while an engine builds comes from ONNX Runtime's log (verbose).
                .with_detailed_build_log(true);
            if t.max_workspace_mb > 0 {
                ep = ep.with_max_workspace_size(bytes_from_mb(t.max_workspace_mb));
            }
            if t.int8 && !t.int8_calibration_table.is_empty() {
                ep = ep.with_int8_calibration_table_name(&t.int8_calibration_table);
            }
            if !t.min_shapes.is_empty() {
                ep = ep
                    .with_profile_min_shapes(&t.min_shapes)
                    .with_profile_opt_shapes(&t.opt_shapes)
                    .with_profile_max_shapes(&t.max_shapes);
            }
            if let Some(dirs) = tensorrt_cache {
                ep = ep
                    .with_engine_cache(true)
                    .with_engine_cache_path(dirs.engines.display());
                if let Some(timing) = &dirs.timing {
                    ep = ep
                        .with_timing_cache(true)
                        .with_timing_cache_path(timing.display());
                }
            }
            ep.build().error_on_failure()
        }
        Provider::Cuda => {
            let c = options.cuda;
            let search = match c.cudnn_conv_algo_search {
                ConvAlgoSearch::Exhaustive => ort::ep::cuda::ConvAlgorithmSearch::Exhaustive,
                ConvAlgoSearch::Heuristic => ort::ep::cuda::ConvAlgorithmSearch::Heuristic,
                ConvAlgoSearch::Default => ort::ep::cuda::ConvAlgorithmSearch::Default,
            };
            let mut ep = ort::ep::CUDA::default()
                .with_device_id(c.device_id)
                .with_conv_algorithm_search(search);
            if c.arena_limit_mb > 0 {
                ep = ep.with_memory_limit(bytes_from_mb(c.arena_limit_mb));
            }
            ep.build().error_on_failure()
        }
        Provider::Cpu => ort::ep::CPU::default().build().error_on_failure(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(t: TensorRtOptions, c: CudaOptions) -> Result<(), OptionError> {
        validate(&ProviderOptions {
            tensorrt: &t,
            cuda: &c,
        })
    }

    #[test]
    fn defaults_are_valid_and_fp16() {
        assert_eq!(opts(Default::default(), Default::default()), Ok(()));
        assert_eq!(TensorRtOptions::default().precision(), "fp16");
    }

    #[test]
    fn ranges_name_the_key() {
        let t = TensorRtOptions {
            device_id: 64,
            ..Default::default()
        };
        assert_eq!(
            opts(t, Default::default()).unwrap_err().key,
            "tensorrt.device_id"
        );
        let c = CudaOptions {
            arena_limit_mb: MAX_MEMORY_MB + 1,
            ..Default::default()
        };
        assert_eq!(
            opts(Default::default(), c).unwrap_err().key,
            "cuda.arena_limit_mb"
        );
        let t = TensorRtOptions {
            builder_optimization_level: 6,
            ..Default::default()
        };
        assert!(opts(t, Default::default()).is_err());
        let t = TensorRtOptions {
            int8_calibration_table: "../x.cache".into(),
            ..Default::default()
        };
        assert!(opts(t, Default::default()).is_err());
    }

    #[test]
    fn profile_shapes_parse_and_go_together() {
        assert_eq!(
            parse_shapes("images:1x3x416x416,b:2x4").unwrap(),
            vec![
                ("images".to_string(), vec![1, 3, 416, 416]),
                ("b".to_string(), vec![2, 4])
            ]
        );
        for bad in [
            "images",
            ":1x3",
            "a:1x0",
            "a:1xx3",
            "a:-1",
            "a:1x2x3x4x5x6x7x8x9",
        ] {
            assert!(parse_shapes(bad).is_err(), "{bad}");
        }
        let t = TensorRtOptions {
            min_shapes: "images:1x3x416x416".into(),
            ..Default::default()
        };
        assert_eq!(
            opts(t, Default::default()).unwrap_err().key,
            "tensorrt.min_shapes"
        );
    }
}
