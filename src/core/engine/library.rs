//! Finding and loading the ONNX Runtime library (once per process), with every path tried named
//! when none loads.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::EngineError;

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

pub(super) fn environment(
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
