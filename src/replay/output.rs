//! Where a replay writes, so that no data is ever lost: the output bag is written into a staging
//! folder beside its destination and renamed into place only when it is complete and on disk.
//!
//! - The destination must not be an input bag, hold one, or lie inside one.
//! - An existing, non-empty destination is replaced only with `force`, and only if lookout wrote
//!   it (its `metadata.yaml` carries `lookout.version`): `--out . --force` or `--out` over a
//!   recording is refused, whatever the folder holds.
//! - Until [`OutputPlan::commit`], the previous output stays as it was; a replay that fails or
//!   panics removes its staging folder ([`Drop`]), so it leaves the previous output untouched and
//!   nothing else.
//! - `commit` fsyncs every file and the folder, moves the previous output aside, renames the
//!   staging folder into place, removes the previous output and fsyncs the parent folder.
//!
//! Blocks on file I/O; allocates (paths). A process killed between the two renames leaves the
//! previous output under a hidden `.<name>.lookout-old-<pid>` name beside it, never deleted. A
//! process killed while writing (a second Ctrl-C, SIGKILL, power loss) leaves its staging folder
//! `.<name>.lookout-staging-<pid>`: the next replay to the same destination removes it once that
//! process is gone (nothing in it was ever the output).

use std::path::{Path, PathBuf};

/// Why the output cannot be written where asked, or could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output would overwrite or nest with an input bag.
    #[error(
        "--out {out}: it is, holds or lies inside the input bag {input}; choose another folder"
    )]
    OverlapsInput {
        /// The output folder.
        out: PathBuf,
        /// The input it collides with.
        input: PathBuf,
    },
    /// The output is the working directory or holds it.
    #[error("--out {out}: it is or holds the working directory; choose another folder")]
    HoldsWorkingDirectory {
        /// The output folder.
        out: PathBuf,
    },
    /// The output exists and `force` was not given.
    #[error("--out {out} exists and is not empty; pass --force to replace a previous replay")]
    Exists {
        /// The output folder.
        out: PathBuf,
    },
    /// `force` was given for a folder lookout did not write.
    #[error(
        "--force: {out} is not a replay output written by lookout (no lookout.version in its metadata.yaml); not replacing it"
    )]
    NotOurs {
        /// The output folder.
        out: PathBuf,
    },
    /// A file operation failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> OutputError + 'a {
    move |source| OutputError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A replay's output: its destination and the staging folder it is written in.
#[derive(Debug)]
pub struct OutputPlan {
    destination: PathBuf,
    staging: PathBuf,
    committed: bool,
}

/// `path` made absolute with symbolic links resolved, as far as it exists (a path that does not
/// exist yet keeps its last components as given).
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            resolved(parent).join(name)
        }
        _ => std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// Whether `dir` is a replay output lookout wrote.
fn written_by_lookout(dir: &Path) -> bool {
    crate::bag::Bag::open(dir)
        .ok()
        .and_then(|b| {
            b.metadata()
                .map(|m| m.custom_data.contains_key("lookout.version"))
        })
        .unwrap_or(false)
}

impl OutputPlan {
    /// Checks `destination` against `inputs` and `force` (see the module documentation) and
    /// names a staging folder beside it (created by the bag writer).
    pub fn new(destination: &Path, inputs: &[PathBuf], force: bool) -> Result<Self, OutputError> {
        let out = resolved(destination);
        for input in inputs {
            let input = resolved(input);
            if input.starts_with(&out) || out.starts_with(&input) {
                return Err(OutputError::OverlapsInput {
                    out: destination.to_path_buf(),
                    input,
                });
            }
        }
        if let Ok(cwd) = std::env::current_dir().map(|d| resolved(&d))
            && cwd.starts_with(&out)
        {
            // Replacing the working directory (or a folder holding it) is never what was meant.
            return Err(OutputError::HoldsWorkingDirectory {
                out: destination.to_path_buf(),
            });
        }
        if out.exists() {
            let empty = std::fs::read_dir(&out)
                .map_err(io("read", &out))?
                .next()
                .is_none();
            if !empty && !force {
                return Err(OutputError::Exists {
                    out: destination.to_path_buf(),
                });
            }
            if !empty && !written_by_lookout(&out) {
                return Err(OutputError::NotOurs {
                    out: destination.to_path_buf(),
                });
            }
        }
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "lookout".into());
        let parent = out.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&parent).map_err(io("create", &parent))?;
        let prefix = format!(".{name}.lookout-staging-");
        remove_abandoned_staging(&parent, &prefix)?;
        let staging = parent.join(format!("{prefix}{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io("remove", &staging))?;
        }
        Ok(Self {
            destination: out,
            staging,
            committed: false,
        })
    }

    /// The folder to write the bag in.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// The destination's folder name (the bag's storage file is named after it).
    pub fn bag_name(&self) -> String {
        self.destination
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "lookout".into())
    }

    /// Puts the complete staging folder in place of the destination (see the module docs).
    pub fn commit(mut self) -> Result<(), OutputError> {
        let staging = self.staging.clone();
        for entry in std::fs::read_dir(&staging).map_err(io("read", &staging))? {
            let path = entry.map_err(io("read", &staging))?.path();
            let file = std::fs::File::open(&path).map_err(io("open", &path))?;
            file.sync_all().map_err(io("fsync", &path))?;
        }
        sync_dir(&staging)?;
        let out = &self.destination;
        let aside = out.with_file_name(format!(
            ".{}.lookout-old-{}",
            self.bag_name(),
            std::process::id()
        ));
        let replaced = out.exists()
            && std::fs::read_dir(out)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true);
        if replaced {
            std::fs::rename(out, &aside).map_err(io("move aside", out))?;
        }
        // An empty destination folder is replaced by the rename itself.
        if let Err(e) = std::fs::rename(&staging, out) {
            if replaced {
                // Put the previous output back rather than leave nothing in its place.
                let _ = std::fs::rename(&aside, out);
            }
            return Err(io("rename into place", out)(e));
        }
        self.committed = true;
        if replaced {
            std::fs::remove_dir_all(&aside).map_err(io("remove", &aside))?;
        }
        if let Some(parent) = out.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

/// Removes the staging folders (`<prefix><pid>`) in `parent` of replays that are no longer
/// running: killed before they could finish or clean up. A live process's folder is kept.
fn remove_abandoned_staging(parent: &Path, prefix: &str) -> Result<(), OutputError> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        tracing::info!(folder = %path.display(), pid, "removing the staging folder of a replay that was killed");
        std::fs::remove_dir_all(&path).map_err(io("remove", &path))?;
    }
    Ok(())
}

/// Whether process `pid` exists (or exists but belongs to someone else).
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return true;
    }
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn sync_dir(dir: &Path) -> Result<(), OutputError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

impl Drop for OutputPlan {
    fn drop(&mut self) {
        if !self.committed && self.staging.exists() {
            // Nothing to report to: the error that got here is being returned already.
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file beside it, fsynced, then
/// renamed over it.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(io("write", &tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io("rename into place", path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
