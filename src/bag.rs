//! rosbag2 reading without a ROS runtime: MCAP (`.mcap`, the default since Iron) and sqlite3
//! (`.db3`, the Humble default) storage.
//!
//! A bag is a folder with `metadata.yaml` and one or more storage files, or a single storage
//! file. Messages are delivered in storage order (file by file, as rosbag2 wrote them), which
//! is deterministic for a given bag. Payloads are the raw serialized bytes (CDR); see
//! [`crate::cdr`] for the camera messages.
//!
//! Contract: opening lists files and reads no message. [`Bag::for_each`] maps MCAP files
//! (read-only memory map) or queries sqlite, and hands each payload to the callback without
//! copying (MCAP chunk decompression and sqlite rows allocate inside those libraries). Bags must
//! not be modified while they are read.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// Why a bag cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BagError {
    /// The path does not exist or holds no storage file.
    #[error("{path}: no rosbag2 storage file (.mcap or .db3) found")]
    NotABag {
        /// The path given.
        path: PathBuf,
    },
    /// A file cannot be opened or mapped.
    #[error("cannot read {path}: {error}")]
    Io {
        /// File.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// An MCAP file is malformed.
    #[error("invalid MCAP file {path}: {reason}")]
    Mcap {
        /// File.
        path: PathBuf,
        /// The reader's message.
        reason: String,
    },
    /// A sqlite3 bag cannot be queried.
    #[error("invalid sqlite3 bag {path}: {reason}")]
    Sqlite {
        /// File.
        path: PathBuf,
        /// SQLite's message.
        reason: String,
    },
}

/// Storage format of one bag file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// MCAP.
    Mcap,
    /// sqlite3.
    Sqlite3,
}

/// A topic found in a bag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Message type, e.g. `sensor_msgs/msg/Image`.
    pub type_name: String,
    /// Messages on it.
    pub count: u64,
}

/// One message as handed to [`Bag::for_each`].
#[derive(Debug, Clone, Copy)]
pub struct BagMessage<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Message type.
    pub type_name: &'a str,
    /// Receive time recorded by the bag writer, ns.
    pub log_time_ns: u64,
    /// Serialized payload (CDR).
    pub data: &'a [u8],
}

/// An opened bag: its storage files in order.
#[derive(Debug, Clone)]
pub struct Bag {
    files: Vec<(PathBuf, Storage)>,
}

fn storage_of(path: &Path) -> Option<Storage> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("mcap") => Some(Storage::Mcap),
        Some("db3") => Some(Storage::Sqlite3),
        _ => None,
    }
}

impl Bag {
    /// Opens a bag folder (all `.mcap`/`.db3` files in name order, which is rosbag2's split
    /// order) or a single storage file.
    pub fn open(path: &Path) -> Result<Self, BagError> {
        let io = |error| BagError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut files = Vec::new();
        if path.is_dir() {
            for entry in std::fs::read_dir(path).map_err(io)? {
                let p = entry.map_err(io)?.path();
                if let Some(s) = storage_of(&p) {
                    files.push((p, s));
                }
            }
            files.sort_by(|a, b| a.0.cmp(&b.0));
        } else if let Some(s) = storage_of(path) {
            if !path.exists() {
                return Err(BagError::NotABag {
                    path: path.to_path_buf(),
                });
            }
            files.push((path.to_path_buf(), s));
        }
        if files.is_empty() {
            return Err(BagError::NotABag {
                path: path.to_path_buf(),
            });
        }
        Ok(Self { files })
    }

    /// The storage files, in reading order.
    pub fn files(&self) -> impl Iterator<Item = (&Path, Storage)> {
        self.files.iter().map(|(p, s)| (p.as_path(), *s))
    }

    /// Calls `f` for every message in storage order until it returns `Break`.
    pub fn for_each(
        &self,
        mut f: impl FnMut(BagMessage<'_>) -> ControlFlow<()>,
    ) -> Result<(), BagError> {
        for (path, storage) in &self.files {
            let flow = match storage {
                Storage::Mcap => for_each_mcap(path, &mut f)?,
                Storage::Sqlite3 => for_each_sqlite(path, &mut f)?,
            };
            if flow.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Every topic with its type and message count (reads the whole bag).
    pub fn topics(&self) -> Result<Vec<TopicInfo>, BagError> {
        let mut topics: Vec<TopicInfo> = Vec::new();
        self.for_each(|m| {
            match topics.iter_mut().find(|t| t.name == m.topic) {
                Some(t) => t.count += 1,
                None => topics.push(TopicInfo {
                    name: m.topic.to_string(),
                    type_name: m.type_name.to_string(),
                    count: 1,
                }),
            }
            ControlFlow::Continue(())
        })?;
        Ok(topics)
    }
}

fn for_each_mcap(
    path: &Path,
    f: &mut impl FnMut(BagMessage<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, BagError> {
    let file = std::fs::File::open(path).map_err(|error| BagError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    // SAFETY: the map is read-only and lookout never writes the bag; the contract of this module
    // is that bags are not modified while they are read (a truncated file would fault).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|error| BagError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let bad = |e: mcap::McapError| BagError::Mcap {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    for message in mcap::MessageStream::new(&map).map_err(bad)? {
        let message = message.map_err(bad)?;
        let type_name = message
            .channel
            .schema
            .as_ref()
            .map_or("", |s| s.name.as_str());
        let flow = f(BagMessage {
            topic: &message.channel.topic,
            type_name,
            log_time_ns: message.log_time,
            data: &message.data,
        });
        if flow.is_break() {
            return Ok(flow);
        }
    }
    Ok(ControlFlow::Continue(()))
}

fn for_each_sqlite(
    path: &Path,
    f: &mut impl FnMut(BagMessage<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, BagError> {
    let bad = |e: rusqlite::Error| BagError::Sqlite {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(bad)?;
    let mut topics: Vec<(i64, String, String)> = Vec::new();
    {
        let mut q = db
            .prepare("SELECT id, name, type FROM topics")
            .map_err(bad)?;
        let rows = q
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(bad)?;
        for row in rows {
            topics.push(row.map_err(bad)?);
        }
    }
    let mut q = db
        .prepare("SELECT topic_id, timestamp, data FROM messages ORDER BY id")
        .map_err(bad)?;
    let mut rows = q.query([]).map_err(bad)?;
    while let Some(row) = rows.next().map_err(bad)? {
        let topic_id: i64 = row.get(0).map_err(bad)?;
        let timestamp: i64 = row.get(1).map_err(bad)?;
        let data = row
            .get_ref(2)
            .map_err(bad)?
            .as_blob()
            .map_err(|e| bad(e.into()))?;
        let (topic, type_name) = topics
            .iter()
            .find(|t| t.0 == topic_id)
            .map_or(("", ""), |t| (t.1.as_str(), t.2.as_str()));
        let flow = f(BagMessage {
            topic,
            type_name,
            log_time_ns: u64::try_from(timestamp).unwrap_or(0),
            data,
        });
        if flow.is_break() {
            return Ok(flow);
        }
    }
    Ok(ControlFlow::Continue(()))
}
