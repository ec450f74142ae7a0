//! Paths shared by the benches: the repository and the set-up's state folder.

use std::path::PathBuf;

/// Repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$LOOKOUT_HOME`, or `<repo>/.lookout`.
pub fn home() -> PathBuf {
    std::env::var_os("LOOKOUT_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".lookout"))
}
