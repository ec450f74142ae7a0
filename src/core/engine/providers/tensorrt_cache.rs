//! TensorRT's engine cache, keyed so that a stale engine is never loaded.
//!
//! ONNX Runtime's TensorRT provider names cached engines after the graph and the GPU's compute
//! capability, not after the TensorRT version, the precision or the exact GPU. lookout therefore
//! gives every key its own folder, `<root>/<model>-<key id>/`, where the key covers the model's
//! sha256, TensorRT's version, the GPU's name and compute capability, the precision and the input
//! shapes (the manifest's and any optimisation profile). A changed key is a new, empty folder:
//! the engine is rebuilt. `key.yaml` in the folder says what the key was made of.
//!
//! A build takes minutes: [`BuildProgress`] logs it while it runs, so a start-up that builds is
//! never silent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::TensorRtOptions;
use super::gpu;

/// What a cached engine depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// Model name (manifest), for the folder name only.
    pub model: String,
    /// sha256 of the ONNX file.
    pub model_sha256: String,
    /// TensorRT version, `major.minor.patch`.
    pub tensorrt_version: String,
    /// GPU name.
    pub gpu: String,
    /// Compute capability, `sm_90`.
    pub compute_capability: String,
    /// `fp32`, `fp16` or `int8`.
    pub precision: String,
    /// Input shapes: the manifest's, plus the optimisation profile if any.
    pub input_shape: String,
}

impl CacheKey {
    /// The key as `key.yaml` text (also what the id hashes).
    pub fn to_yaml(&self) -> String {
        format!(
            "model: {:?}\nmodel_sha256: {}\ntensorrt_version: {}\ngpu: {:?}\ncompute_capability: {}\nprecision: {}\ninput_shape: {:?}\n",
            self.model,
            self.model_sha256,
            self.tensorrt_version,
            self.gpu,
            self.compute_capability,
            self.precision,
            self.input_shape
        )
    }

    /// 16 hex digits of the sha256 of [`Self::to_yaml`].
    pub fn id(&self) -> String {
        crate::core::model::sha256_hex(self.to_yaml().as_bytes())[..16].to_string()
    }

    /// The key's folder name: the model name (file-name safe) and the id.
    pub fn folder_name(&self) -> String {
        let model: String = self
            .model
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        format!("{model}-{}", self.id())
    }
}

/// The folders handed to ONNX Runtime for one key.
#[derive(Debug, Clone)]
pub struct CacheDirs {
    /// Engines for this key.
    pub engines: PathBuf,
    /// TensorRT's timing cache (shared by the models on one GPU and TensorRT version), if on.
    pub timing: Option<PathBuf>,
    /// The key.
    pub key: CacheKey,
    /// Whether an engine is already cached for this key (else this start builds one).
    pub cached: bool,
}

/// The input shape text of the key: `name:1x3x416x416`, plus the profile if any.
pub fn input_shape_text(input_name: &str, shape: &[usize], options: &TensorRtOptions) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut text = format!("{input_name}:{}", dims.join("x"));
    if !options.min_shapes.is_empty() {
        text.push_str(&format!(
            " profile min {} opt {} max {}",
            options.min_shapes, options.opt_shapes, options.max_shapes
        ));
    }
    text
}

/// Asks the GPU and TensorRT what they are, derives the key and creates its folder. Fails when
/// the GPU or TensorRT cannot be asked, or the folder cannot be created.
pub fn prepare(
    options: &TensorRtOptions,
    model: &str,
    model_sha256: &str,
    input_shape: String,
    library_dirs: &[&Path],
) -> Result<CacheDirs, String> {
    let device = gpu::cuda_device(options.device_id)?;
    let tensorrt_version = gpu::tensorrt_version(library_dirs)?;
    let key = CacheKey {
        model: model.to_string(),
        model_sha256: model_sha256.to_string(),
        tensorrt_version,
        gpu: device.name.clone(),
        compute_capability: format!(
            "sm_{}{}",
            device.compute_capability.0, device.compute_capability.1
        ),
        precision: options.precision().to_string(),
        input_shape,
    };
    let root = options.cache_root();
    let engines = root.join(key.folder_name());
    std::fs::create_dir_all(&engines)
        .map_err(|e| format!("cannot create {}: {e}", engines.display()))?;
    write_whole(&engines.join("key.yaml"), key.to_yaml().as_bytes())
        .map_err(|e| format!("cannot write {}/key.yaml: {e}", engines.display()))?;
    let timing = if options.timing_cache {
        let gpu_slug: String = key
            .gpu
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir = root.join("timing").join(format!(
            "trt{}-{}-{}",
            key.tensorrt_version, gpu_slug, key.compute_capability
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Some(dir)
    } else {
        None
    };
    let cached = has_engine(&engines);
    Ok(CacheDirs {
        engines,
        timing,
        key,
        cached,
    })
}

/// Whether `dir` holds a TensorRT engine file.
pub fn has_engine(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .take(10_000)
                .any(|e| e.path().extension().is_some_and(|x| x == "engine"))
        })
        .unwrap_or(false)
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed over it).
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Logs every `every` that a TensorRT engine build is still running, until dropped.
pub struct BuildProgress {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BuildProgress {
    /// Logs the start of the build now and its progress every `every` on a thread of its own.
    pub fn start(what: String, every: Duration) -> Self {
        tracing::warn!(
            key = %what,
            "building the TensorRT engine (no cached engine for this model, TensorRT, GPU, precision and shape); this takes minutes, later starts load it from the cache"
        );
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("lookout-trt-build".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    tracing::info!(
                        elapsed_s = started.elapsed().as_secs(),
                        "TensorRT engine build still running"
                    );
                }
            })
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for BuildProgress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            model: "yolov3-tiny".into(),
            model_sha256: "ab".repeat(32),
            tensorrt_version: "10.13.2".into(),
            gpu: "NVIDIA H200".into(),
            compute_capability: "sm_90".into(),
            precision: "fp16".into(),
            input_shape: "images:1x3x416x416".into(),
        }
    }

    #[test]
    fn every_part_of_the_key_changes_the_folder() {
        let base = key();
        let variants = [
            CacheKey {
                model_sha256: "cd".repeat(32),
                ..key()
            },
            CacheKey {
                tensorrt_version: "10.14.0".into(),
                ..key()
            },
            CacheKey {
                gpu: "NVIDIA H100 80GB HBM3".into(),
                ..key()
            },
            CacheKey {
                compute_capability: "sm_89".into(),
                ..key()
            },
            CacheKey {
                precision: "fp32".into(),
                ..key()
            },
            CacheKey {
                input_shape: "images:1x3x640x640".into(),
                ..key()
            },
        ];
        for v in &variants {
            assert_ne!(v.folder_name(), base.folder_name(), "{v:?}");
        }
        assert_eq!(base.folder_name(), key().folder_name());
        assert!(base.folder_name().starts_with("yolov3-tiny-"));
    }

    #[test]
    fn shape_text_includes_the_profile() {
        let mut t = TensorRtOptions::default();
        assert_eq!(
            input_shape_text("images", &[1, 3, 416, 416], &t),
            "images:1x3x416x416"
        );
        t.min_shapes = "images:1x3x416x416".into();
        t.opt_shapes = "images:2x3x416x416".into();
        t.max_shapes = "images:4x3x416x416".into();
        assert!(input_shape_text("images", &[1, 3, 416, 416], &t).contains("max images:4x"));
    }

    #[test]
    fn engine_files_are_found() {
        let dir = std::env::temp_dir().join(format!("lookout-trt-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!has_engine(&dir));
        write_whole(&dir.join("a.engine"), b"x").unwrap();
        assert!(has_engine(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
