//! Finding and loading the ONNX Runtime library (once per process), with every path tried named
//! when none loads.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::EngineError;

/// The file name the set-up script links ONNX Runtime as.
pub const ORT_LIBRARY_NAME: &str = "libonnxruntime.so";

/// Candidate paths for the ONNX Runtime library, in the order they are tried. An explicit choice
/// (the config key, else `ORT_DYLIB_PATH`) is the only candidate: a library the user named is
/// never silently replaced by another. Without one, in order:
/// 1. `$LOOKOUT_HOME/lib/` (the set-up's copy, when `.lookout/env.sh` is sourced);
/// 2. beside the running binary (an installed package: `<prefix>/lib/lookout/`), and
///    `<prefix>/lib/lookout/` of a binary in `<prefix>/bin/`;
/// 3. `.lookout/lib/` in a folder above the running binary (a build in a checkout);
/// 4. `<prefix>/lib/lookout/` of every prefix in `AMENT_PREFIX_PATH`;
/// 5. the bare file name, which the dynamic loader looks up in `LD_LIBRARY_PATH` and the system's
///    library folders (a system-wide ONNX Runtime).
///
/// The working directory is never searched, nor the source tree the binary was compiled in, and
/// relative paths are refused (see [`relative_library_error`]): a params file or a variable must
/// not load a library that depends on where lookout was started.
pub fn ort_library_candidates(config: Option<&Path>) -> Vec<PathBuf> {
    // An empty config value means "not set" (ROS parameters cannot be null).
    if let Some(p) = config.filter(|p| !p.as_os_str().is_empty()) {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out = Vec::new();
    let mut push = |p: PathBuf| {
        if p.is_absolute() && !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(home) = std::env::var_os("LOOKOUT_HOME").filter(|p| !p.is_empty()) {
        push(PathBuf::from(home).join("lib").join(ORT_LIBRARY_NAME));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            push(dir.join(ORT_LIBRARY_NAME));
            if let Some(prefix) = dir.parent() {
                push(prefix.join("lib").join("lookout").join(ORT_LIBRARY_NAME));
            }
        }
        if let Some(p) = exe
            .ancestors()
            .skip(1)
            .map(|dir| dir.join(".lookout").join("lib").join(ORT_LIBRARY_NAME))
            .find(|p| p.exists())
        {
            push(p);
        }
    }
    if let Some(paths) = std::env::var_os("AMENT_PREFIX_PATH") {
        for prefix in std::env::split_paths(&paths) {
            push(prefix.join("lib").join("lookout").join(ORT_LIBRARY_NAME));
        }
    }
    out.push(PathBuf::from(ORT_LIBRARY_NAME));
    out
}

/// Why an explicitly named library path is refused: it is relative, so which file it names
/// would depend on the working directory. `None` for an absolute path or the empty "not set".
pub fn relative_library_error(path: &Path) -> Option<String> {
    (!path.as_os_str().is_empty() && !path.is_absolute()).then(|| {
        format!(
            "{} is a relative path; name the ONNX Runtime library by an absolute path",
            path.display()
        )
    })
}

/// The process-wide ONNX Runtime environment (ONNX Runtime allows one per process).
static ENVIRONMENT: OnceLock<Result<(ort::environment::Environment, PathBuf), String>> =
    OnceLock::new();

pub(super) fn environment(
    config: Option<&Path>,
) -> Result<&'static ort::environment::Environment, EngineError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let mut tried = Vec::new();
        let candidates = ort_library_candidates(config);
        let explicit = candidates.len() == 1 && candidates[0] != Path::new(ORT_LIBRARY_NAME);
        for path in candidates {
            if explicit && let Some(reason) = relative_library_error(&path) {
                tried.push(reason);
                continue;
            }
            // The bare name is the dynamic loader's search: it has no file to check first.
            if path.is_absolute() && !path.exists() {
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
