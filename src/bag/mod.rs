//! rosbag2 reading without a ROS runtime: MCAP (`.mcap`, the default since Iron) and sqlite3
//! (`.db3`, the Humble default) storage.
//!
//! A bag is a folder with `metadata.yaml` and one or more storage files, or a single storage
//! file. With `metadata.yaml`, its file list (`relative_file_paths`) gives the files and their
//! order, and its counts give the message totals; without it (MCAP only needs none), every
//! `.mcap`/`.db3` file of the folder is read in name order, which is rosbag2's split order.
//! Messages are delivered in storage order (file by file, as rosbag2 wrote them), which is
//! deterministic for a given bag. Payloads are the raw serialized bytes (CDR); see
//! [`crate::bag::cdr`] for the camera messages.
//!
//! Writing: [`BagWriter`] writes one MCAP file plus `metadata.yaml` (rosbag2 version 9), with
//! each topic's message definition embedded (`ros2msg`), so Foxglove, `rosbags` and
//! `ros2 bag` read it without lookout's message packages.
//!
//! Contract: opening reads `metadata.yaml` and lists files, and reads no message.
//! [`Bag::for_each`] streams MCAP files through a 1 MiB read buffer (one chunk decompressed at
//! a time, each payload copied out of it: memory stays bounded whatever the bag's size) or
//! queries sqlite, and hands each payload to the callback; both allocate per message inside
//! those libraries. Bags must not be modified while they are read. Writing allocates
//! (chunks are buffered and zstd-compressed, single-threaded, so equal input gives equal bytes)
//! and blocks on file I/O.

pub mod cdr;
pub mod schema;

use std::path::PathBuf;

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
    /// `metadata.yaml` cannot be parsed, or describes a bag lookout cannot read.
    #[error("{path}: {reason}")]
    Metadata {
        /// File.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing the output bag failed.
    #[error("cannot write bag {path}: {reason}")]
    Write {
        /// File or folder.
        path: PathBuf,
        /// The writer's message.
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
    /// The message definition stored in the bag for this topic's type, if any:
    /// `(encoding, text)`, e.g. `("ros2msg", ...)`.
    pub definition: Option<(&'a str, &'a [u8])>,
}

/// Damage found in a storage file while reading it: the file was read up to it, and past it
/// when the file's index allows (an MCAP file with an intact summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BagDamage {
    /// The storage file.
    pub path: PathBuf,
    /// Messages read from this file before the damage (in storage order).
    pub messages_read: u64,
    /// What the reader found.
    pub reason: String,
    /// Byte offset of the damaged chunk, when the damage was found in one.
    pub offset: Option<u64>,
    /// Messages read after the damage, up to the next damage or the end (the reading resumed at
    /// the next intact chunk); `None`: the rest of the file could not be read.
    pub resumed_after: Option<u64>,
}

impl std::fmt::Display for BagDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is damaged after its first {} messages",
            self.path.display(),
            self.messages_read
        )?;
        if let Some(offset) = self.offset {
            write!(f, " (chunk at byte {offset})")?;
        }
        match self.resumed_after {
            Some(n) => write!(
                f,
                "; the damaged part was skipped and reading resumed at the next intact chunk ({n} messages after it): {}",
                self.reason
            ),
            None => write!(f, "; the rest of the file was not read: {}", self.reason),
        }
    }
}

/// An opened bag: its storage files in order.
#[derive(Debug, Clone)]
pub struct Bag {
    files: Vec<(PathBuf, Storage)>,
    metadata: Option<BagInfo>,
}

mod metadata;
mod reader;
mod resume;
mod writer;

pub use metadata::{
    BagInfo, FileInfo, Nanoseconds, NanosecondsSinceEpoch, TopicMetadata, TopicWithCount,
};
pub use reader::{
    MAX_RECORD_BYTES, MAX_TOPICS, Prefetched, for_each_mcap_in, for_each_mcap_readable_in,
};
pub use writer::{BagWriter, offered_qos_yaml};
