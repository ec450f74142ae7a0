//! Where lookout finds the files it was not given an absolute path for: the default parameters
//! file, the default model package, and the relative paths written in a parameters file.
//!
//! The rule (see README, "Where lookout looks for files"):
//!
//! 1. An absolute path is used as it is.
//! 2. A path the user named (a command-line flag, a parameter in a parameters file the user
//!    named, a ROS parameter) is relative to the working directory when it exists there, and
//!    otherwise looked up in lookout's data directories.
//! 3. A path lookout chose itself (the default parameters file, the default model, and the
//!    relative paths inside the default parameters file) is looked up **only** in the data
//!    directories, never in the working directory: running lookout inside an unpacked dataset
//!    must not pick up that dataset's `config/lookout.yaml` or model package.
//!
//! The data directories, in order:
//! - the installed package of the running binary: `<prefix>/share/lookout`, where the binary is
//!   `<prefix>/lib/lookout/lookout` (colcon) or `<prefix>/bin/lookout` (cargo install);
//! - the source checkout the running binary was built in, when the binary lies under its
//!   `target/` folder (a developer's build);
//! - `<prefix>/share/lookout` for every prefix in `AMENT_PREFIX_PATH` (a sourced ROS workspace).
//!
//! The path the binary was compiled from is never searched: an installed binary must not depend
//! on, or be steered by, a source tree that may since have moved or changed hands.
//!
//! Contract: file-system lookups only (`stat`), at start-up; allocates.

use std::path::{Path, PathBuf};

/// Package name of lookout's installed data (`share/<PACKAGE>`).
pub const PACKAGE: &str = "lookout";

/// Who chose a path, which decides whether the working directory is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The user named it: the working directory first, then the data directories.
    User,
    /// lookout's own default: the data directories only.
    Default,
}

/// lookout's data directories that exist on this machine, in search order (no duplicates).
pub fn data_dirs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if p.is_dir() && !out.contains(&p) {
            out.push(p);
        }
    };
    if let Ok(exe) = std::env::current_exe() {
        // The binary's own prefix: <prefix>/lib/lookout/lookout or <prefix>/bin/lookout.
        for prefix in exe.ancestors().skip(2).take(2) {
            push(prefix.join("share").join(PACKAGE));
        }
        if let Some(root) = checkout_of(&exe) {
            push(root);
        }
    }
    if let Some(paths) = std::env::var_os("AMENT_PREFIX_PATH") {
        for prefix in std::env::split_paths(&paths).filter(|p| p.is_absolute()) {
            push(prefix.join("share").join(PACKAGE));
        }
    }
    out
}

/// The source checkout a binary was built in: the parent of a `target` folder above it that
/// holds lookout's `Cargo.toml` and `config/` (so a binary copied elsewhere finds none).
fn checkout_of(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .filter(|dir| dir.file_name().is_some_and(|n| n == "target"))
        .filter_map(Path::parent)
        .find(|root| {
            root.join("Cargo.toml").is_file()
                && root.join("package.xml").is_file()
                && root.join("config").is_dir()
        })
        .map(Path::to_path_buf)
}

/// Resolves `path` by the rule above. Returns an absolute path when the file was found; returns
/// `path` unchanged when it was not, so the error that follows names what was written.
pub fn locate(path: &Path, origin: Origin) -> PathBuf {
    match std::env::current_dir() {
        Ok(cwd) => locate_in(path, origin, &cwd, &data_dirs()),
        // No working directory (removed): only the data directories.
        Err(_) => locate_in(path, Origin::Default, Path::new("/"), &data_dirs()),
    }
}

/// [`locate`] with the working directory and the data directories given.
pub fn locate_in(path: &Path, origin: Origin, cwd: &Path, dirs: &[PathBuf]) -> PathBuf {
    if path.as_os_str().is_empty() || path.is_absolute() {
        return path.to_path_buf();
    }
    if origin == Origin::User && cwd.join(path).exists() {
        return cwd.join(path);
    }
    dirs.iter()
        .map(|d| d.join(path))
        .find(|p| p.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// Where a relative path that was not found was looked for, for error messages.
pub fn searched(origin: Origin) -> String {
    let dirs: Vec<String> = data_dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let dirs = if dirs.is_empty() {
        "no data directory exists (see README, \"Where lookout looks for files\")".to_string()
    } else {
        format!(
            "looked up in lookout's data directories {}",
            dirs.join(", ")
        )
    };
    match origin {
        Origin::User => format!("not in the working directory; {dirs}"),
        Origin::Default => dirs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (PathBuf, PathBuf, PathBuf) {
        let base = std::env::temp_dir().join(format!("lookout-locate-{}", std::process::id()));
        let cwd_like = base.join("dataset");
        let share = base.join("prefix/share/lookout");
        for d in [&cwd_like, &share] {
            std::fs::create_dir_all(d.join("config")).unwrap();
            std::fs::write(d.join("config/lookout.yaml"), "x").unwrap();
        }
        (base, cwd_like, share)
    }

    #[test]
    fn defaults_never_come_from_the_working_directory() {
        let (base, dataset, share) = tree();
        let rel = Path::new("config/lookout.yaml");
        let dirs = std::slice::from_ref(&share);
        let default = locate_in(rel, Origin::Default, &dataset, dirs);
        let user = locate_in(rel, Origin::User, &dataset, dirs);
        let user_elsewhere = locate_in(rel, Origin::User, &base, dirs);
        let nowhere = locate_in(rel, Origin::Default, &dataset, &[]);
        assert_eq!(default, share.join(rel));
        assert_eq!(user, dataset.join(rel));
        assert_eq!(
            user_elsewhere,
            share.join(rel),
            "not in the working directory"
        );
        assert_eq!(nowhere, rel, "not found: returned as written");
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn absolute_and_empty_paths_are_kept() {
        assert_eq!(
            locate_in(Path::new("/x/y"), Origin::Default, Path::new("/"), &[]),
            Path::new("/x/y")
        );
        assert_eq!(
            locate_in(Path::new(""), Origin::User, Path::new("/"), &[]),
            Path::new("")
        );
    }

    #[test]
    fn a_binary_under_a_checkouts_target_finds_the_checkout_and_a_copy_does_not() {
        let root = std::env::temp_dir().join(format!("lookout-checkout-{}", std::process::id()));
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::create_dir_all(root.join("target/release")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "").unwrap();
        std::fs::write(root.join("package.xml"), "").unwrap();
        let found = checkout_of(&root.join("target/release/lookout"));
        let copied = checkout_of(&root.join("config/lookout"));
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found.as_deref(), Some(root.as_path()));
        assert_eq!(copied, None);
    }
}
