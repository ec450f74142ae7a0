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

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// Per topic, shared by the messages [`Bag::for_each_prefetched`] hands over.
#[derive(Debug)]
struct PrefetchedTopic {
    name: String,
    type_name: String,
    definition: Option<(String, Vec<u8>)>,
}

/// A message read ahead by [`Bag::for_each_prefetched`]: its payload in a buffer of its own.
#[derive(Debug)]
pub struct Prefetched {
    topic: std::sync::Arc<PrefetchedTopic>,
    log_time_ns: u64,
    data: Vec<u8>,
}

impl Prefetched {
    /// The message, borrowed.
    pub fn message(&self) -> BagMessage<'_> {
        BagMessage {
            topic: &self.topic.name,
            type_name: &self.topic.type_name,
            log_time_ns: self.log_time_ns,
            data: &self.data,
            definition: self
                .topic
                .definition
                .as_ref()
                .map(|(e, d)| (e.as_str(), d.as_slice())),
        }
    }

    /// The buffer holding the payload. Swapping it for another buffer is allowed (the reader
    /// reuses whichever buffer is here when the callback returns); its contents are then no
    /// longer this message.
    pub fn buffer_mut(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }
}

/// An opened bag: its storage files in order.
#[derive(Debug, Clone)]
pub struct Bag {
    files: Vec<(PathBuf, Storage)>,
    metadata: Option<BagInfo>,
}

/// rosbag2 `metadata.yaml` (the fields lookout reads or writes; version 9 as written by Jazzy,
/// older versions read). Unknown fields are ignored when reading: this is another tool's file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BagInfo {
    /// Format version.
    #[serde(default)]
    pub version: u32,
    /// `mcap` or `sqlite3`.
    #[serde(default)]
    pub storage_identifier: String,
    /// Storage files, relative to the bag folder, in order.
    #[serde(default)]
    pub relative_file_paths: Vec<String>,
    /// Duration of the whole bag.
    #[serde(default)]
    pub duration: Nanoseconds,
    /// Receive time of the first message.
    #[serde(default)]
    pub starting_time: NanosecondsSinceEpoch,
    /// Messages in the bag.
    #[serde(default)]
    pub message_count: u64,
    /// Topics with their message counts.
    #[serde(default)]
    pub topics_with_message_count: Vec<TopicWithCount>,
    /// `""` or `zstd` (file or message compression; lookout reads only uncompressed bags).
    #[serde(default)]
    pub compression_format: String,
    /// `""`, `FILE` or `MESSAGE`.
    #[serde(default)]
    pub compression_mode: String,
    /// Per-file information.
    #[serde(default)]
    pub files: Vec<FileInfo>,
    /// Free-form key/values (lookout writes its provenance here).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub custom_data: BTreeMap<String, String>,
    /// ROS distribution of the writer.
    #[serde(default)]
    pub ros_distro: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// `{nanoseconds: N}`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Nanoseconds {
    /// Nanoseconds.
    pub nanoseconds: u64,
}

/// `{nanoseconds_since_epoch: N}`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct NanosecondsSinceEpoch {
    /// Nanoseconds since the Unix epoch.
    pub nanoseconds_since_epoch: u64,
}

/// One entry of `topics_with_message_count`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopicWithCount {
    /// The topic.
    pub topic_metadata: TopicMetadata,
    /// Messages on it.
    #[serde(default)]
    pub message_count: u64,
}

/// A topic's metadata.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Message type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `cdr`.
    #[serde(default)]
    pub serialization_format: String,
    /// The publishers' QoS, as rosbag2's YAML text (a list; older bags write other forms).
    #[serde(default, deserialize_with = "any_as_text")]
    pub offered_qos_profiles: String,
    /// RIHS01 type hash (version 9).
    #[serde(default)]
    pub type_description_hash: String,
}

fn any_as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_yaml_ng::Value::deserialize(d)?;
    Ok(match v {
        serde_yaml_ng::Value::String(s) => s,
        serde_yaml_ng::Value::Null => String::new(),
        other => serde_yaml_ng::to_string(&other).unwrap_or_default(),
    })
}

/// One entry of `files`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileInfo {
    /// Relative path.
    pub path: String,
    /// First receive time.
    #[serde(default)]
    pub starting_time: NanosecondsSinceEpoch,
    /// Duration.
    #[serde(default)]
    pub duration: Nanoseconds,
    /// Messages.
    #[serde(default)]
    pub message_count: u64,
}

#[derive(Debug, Deserialize)]
struct MetadataFile {
    rosbag2_bagfile_information: BagInfo,
}

#[derive(Debug, Serialize)]
struct MetadataFileOut<'a> {
    rosbag2_bagfile_information: &'a BagInfo,
}

fn read_metadata(dir: &Path) -> Result<Option<BagInfo>, BagError> {
    let path = dir.join("metadata.yaml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(BagError::Io { path, error }),
    };
    let parsed: MetadataFile = serde_yaml_ng::from_str(&text).map_err(|e| BagError::Metadata {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let info = parsed.rosbag2_bagfile_information;
    if !info.compression_mode.is_empty() && !info.compression_mode.eq_ignore_ascii_case("none") {
        return Err(BagError::Metadata {
            path,
            reason: format!(
                "the bag is {}-compressed ({}); lookout reads uncompressed bags and MCAP's own \
                 chunk compression: convert it with `ros2 bag convert`",
                info.compression_mode.to_lowercase(),
                info.compression_format
            ),
        });
    }
    Ok(Some(info))
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
        let mut metadata = None;
        if path.is_dir() {
            metadata = read_metadata(path)?;
        }
        if let Some(info) = metadata
            .as_ref()
            .filter(|i| !i.relative_file_paths.is_empty())
        {
            for rel in &info.relative_file_paths {
                let p = path.join(rel);
                let Some(s) = storage_of(&p).filter(|_| p.is_file()) else {
                    return Err(BagError::Metadata {
                        path: path.join("metadata.yaml"),
                        reason: format!("lists {rel}, which is missing or not .mcap/.db3"),
                    });
                };
                files.push((p, s));
            }
        } else if path.is_dir() {
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
        Ok(Self { files, metadata })
    }

    /// The bag's `metadata.yaml`, when it has one.
    pub fn metadata(&self) -> Option<&BagInfo> {
        self.metadata.as_ref()
    }

    /// Messages on `topic`, from `metadata.yaml` or the MCAP summaries, without reading the
    /// messages; `None` when neither tells (sqlite3 without metadata).
    pub fn message_count(&self, topic: &str) -> Option<u64> {
        if let Some(info) = &self.metadata {
            return Some(
                info.topics_with_message_count
                    .iter()
                    .filter(|t| t.topic_metadata.name == topic)
                    .map(|t| t.message_count)
                    .sum(),
            );
        }
        let mut total = 0;
        for (path, storage) in &self.files {
            if *storage != Storage::Mcap {
                return None;
            }
            let file = std::fs::File::open(path).ok()?;
            // SAFETY: read-only map of a bag that is not modified while read (module contract).
            let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
            let summary = mcap::Summary::read(&map).ok()??;
            let stats = summary.stats?;
            for (id, channel) in &summary.channels {
                if channel.topic == topic {
                    total += stats.channel_message_counts.get(id).copied().unwrap_or(0);
                }
            }
        }
        Some(total)
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

    /// As [`Self::for_each`], with the reading (file I/O, chunk decompression) on a thread of
    /// its own (`lookout-bag-read`) running up to `depth` messages ahead, so it overlaps with
    /// whatever `f` does. Same messages, same order. Each payload is copied into a buffer that
    /// comes back to the reader once `f` has seen it (`depth + 1` buffers in all, grown to the
    /// largest message, so a steady stream allocates nothing); `f` may swap the buffer for
    /// another one of its own ([`Prefetched::buffer_mut`], e.g. a frame slot's), which then goes
    /// back to the reader in its place. Topic names and definitions are shared per topic. Blocks when `depth` messages wait. The reader runs at the lowest normal
    /// priority ([`crate::runtime::realtime::background`]): it has the whole of each inference to run ahead in,
    /// and must not take a core from the pre-processing or inference of the frame before.
    pub fn for_each_prefetched(
        &self,
        depth: usize,
        mut f: impl FnMut(&mut Prefetched) -> ControlFlow<()>,
    ) -> Result<(), BagError> {
        type Read = (std::sync::Arc<PrefetchedTopic>, u64, Vec<u8>);
        let (tx, rx) = crossbeam_channel::bounded::<Read>(depth.max(1));
        // Buffers the consumer is done with, back to the reader.
        let (recycle_tx, recycle_rx) = crossbeam_channel::bounded::<Vec<u8>>(depth.max(1) + 1);
        let path = || {
            self.files
                .first()
                .map(|(p, _)| p.clone())
                .unwrap_or_default()
        };
        std::thread::scope(|scope| {
            let reader = std::thread::Builder::new()
                .name("lookout-bag-read".into())
                .spawn_scoped(scope, move || {
                    crate::runtime::realtime::background("lookout-bag-read");
                    let mut topics: Vec<std::sync::Arc<PrefetchedTopic>> = Vec::new();
                    self.for_each(|m| {
                        let topic = match topics.iter().find(|t| t.name == m.topic) {
                            Some(t) => std::sync::Arc::clone(t),
                            None => {
                                let t = std::sync::Arc::new(PrefetchedTopic {
                                    name: m.topic.to_string(),
                                    type_name: m.type_name.to_string(),
                                    definition: m
                                        .definition
                                        .map(|(e, d)| (e.to_string(), d.to_vec())),
                                });
                                topics.push(std::sync::Arc::clone(&t));
                                t
                            }
                        };
                        let mut data = recycle_rx.try_recv().unwrap_or_default();
                        data.clear();
                        data.extend_from_slice(m.data);
                        match tx.send((topic, m.log_time_ns, data)) {
                            Ok(()) => ControlFlow::Continue(()),
                            // The consumer stopped.
                            Err(_) => ControlFlow::Break(()),
                        }
                    })
                });
            let reader = match reader {
                Ok(r) => r,
                Err(error) => {
                    return Err(BagError::Io {
                        path: path(),
                        error,
                    });
                }
            };
            for (topic, log_time_ns, data) in &rx {
                let mut p = Prefetched {
                    topic,
                    log_time_ns,
                    data,
                };
                if f(&mut p).is_break() {
                    break;
                }
                // Full only if the reader has not taken its buffers back yet: then this one goes.
                let _ = recycle_tx.try_send(p.data);
            }
            drop(rx);
            reader.join().unwrap_or_else(|_| {
                Err(BagError::Mcap {
                    path: path(),
                    reason: "the bag reading thread panicked".into(),
                })
            })
        })
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
    let bad = |e: mcap::McapError| BagError::Mcap {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    // Streamed through a bounded buffer, not mapped: a mapped bag's pages stay in the process's
    // resident set as it is read (a 290 MB bag added 290 MB of RSS), streaming keeps one chunk.
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    for message in mcap::io::MessageReader::new(reader) {
        let message = message.map_err(bad)?;
        let schema = message.channel.schema.as_deref();
        let flow = f(BagMessage {
            topic: &message.channel.topic,
            type_name: schema.map_or("", |s| s.name.as_str()),
            log_time_ns: message.log_time,
            data: &message.data,
            definition: schema.map(|s| (s.encoding.as_str(), &*s.data)),
        });
        if flow.is_break() {
            return Ok(flow);
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Every row of a three-column query.
fn all_rows<A, B, C>(q: &mut rusqlite::Statement<'_>) -> rusqlite::Result<Vec<(A, B, C)>>
where
    A: rusqlite::types::FromSql,
    B: rusqlite::types::FromSql,
    C: rusqlite::types::FromSql,
{
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
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
    let topics: Vec<(i64, String, String)> = all_rows(
        &mut db
            .prepare("SELECT id, name, type FROM topics")
            .map_err(bad)?,
    )
    .map_err(bad)?;
    // Message definitions (rosbag2 Iron and later; older bags have no such table).
    let definitions: Vec<(String, String, String)> = match db
        .prepare("SELECT topic_type, encoding, encoded_message_definition FROM message_definitions")
    {
        Ok(mut q) => all_rows(&mut q).map_err(bad)?,
        Err(_) => Vec::new(),
    };
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
        let definition = definitions
            .iter()
            .find(|d| d.0 == type_name && !d.2.is_empty())
            .map(|d| (d.1.as_str(), d.2.as_bytes()));
        let flow = f(BagMessage {
            topic,
            type_name,
            log_time_ns: u64::try_from(timestamp).unwrap_or(0),
            data,
            definition,
        });
        if flow.is_break() {
            return Ok(flow);
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// One topic of a [`BagWriter`].
struct WriterTopic {
    channel: u16,
    metadata: TopicMetadata,
    count: u64,
    first_ns: Option<u64>,
    last_ns: u64,
}

/// Writes a rosbag2 bag: one MCAP file (`<folder name>_0.mcap`, zstd chunks, message
/// definitions embedded) and `metadata.yaml`, written by [`BagWriter::finish`]. A bag whose
/// writer is dropped without `finish` has no summary and no `metadata.yaml`.
pub struct BagWriter {
    dir: PathBuf,
    file_name: String,
    mcap: mcap::Writer<BufWriter<std::fs::File>>,
    topics: Vec<WriterTopic>,
    custom_data: BTreeMap<String, String>,
    sequence: u32,
}

/// The offered QoS of one publisher as rosbag2 (Jazzy) records it: reliable or best effort,
/// volatile, keep last `depth`, no deadline or lifespan.
pub fn offered_qos_yaml(reliable: bool, depth: usize) -> String {
    let unset = "{sec: 9223372036, nsec: 854775807}";
    format!(
        "- history: keep_last\n  depth: {depth}\n  reliability: {}\n  durability: volatile\n  \
         deadline: {unset}\n  lifespan: {unset}\n  liveliness: automatic\n  \
         liveliness_lease_duration: {unset}\n  avoid_ros_namespace_conventions: false\n",
        if reliable { "reliable" } else { "best_effort" }
    )
}

impl BagWriter {
    /// Creates the bag folder `dir` (which must not exist, or be empty) and its MCAP file.
    /// `custom_data` goes to `metadata.yaml` and to an MCAP metadata record named `lookout`.
    pub fn create(dir: &Path, custom_data: BTreeMap<String, String>) -> Result<Self, BagError> {
        let werr = |reason: String| BagError::Write {
            path: dir.to_path_buf(),
            reason,
        };
        if dir.exists() {
            let empty = std::fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(werr(
                    "the folder exists; choose another --out or remove it".into(),
                ));
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| werr(e.to_string()))?;
        let stem = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("lookout")
            .to_string();
        let file_name = format!("{stem}_0.mcap");
        let file = std::fs::File::create(dir.join(&file_name)).map_err(|e| werr(e.to_string()))?;
        let mut mcap = mcap::WriteOptions::new()
            .profile("ros2")
            .library(concat!("lookout ", env!("CARGO_PKG_VERSION")))
            .compression(Some(mcap::Compression::Zstd))
            .compression_threads(0)
            .create(BufWriter::new(file))
            .map_err(|e| werr(e.to_string()))?;
        mcap.write_metadata(&mcap::records::Metadata {
            name: "lookout".into(),
            metadata: custom_data.clone(),
        })
        .map_err(|e| werr(e.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file_name,
            mcap,
            topics: Vec::new(),
            custom_data,
            sequence: 0,
        })
    }

    /// Adds a topic; returns its index for [`Self::write`]. `definition` is `(encoding, text)`
    /// of the type's schema (`ros2msg`), or `None` when unknown.
    pub fn add_topic(
        &mut self,
        name: &str,
        type_name: &str,
        definition: Option<(&str, &[u8])>,
        type_hash: &str,
        offered_qos: &str,
    ) -> Result<usize, BagError> {
        let werr = |e: mcap::McapError| BagError::Write {
            path: self.dir.clone(),
            reason: e.to_string(),
        };
        let schema = match definition {
            Some((encoding, text)) => self
                .mcap
                .add_schema(type_name, encoding, text)
                .map_err(werr)?,
            None => self
                .mcap
                .add_schema(type_name, "ros2msg", &[])
                .map_err(werr)?,
        };
        let mut meta = BTreeMap::new();
        meta.insert("offered_qos_profiles".to_string(), offered_qos.to_string());
        if !type_hash.is_empty() {
            meta.insert("topic_type_hash".to_string(), type_hash.to_string());
        }
        let channel = self
            .mcap
            .add_channel(schema, name, "cdr", &meta)
            .map_err(werr)?;
        self.topics.push(WriterTopic {
            channel,
            metadata: TopicMetadata {
                name: name.to_string(),
                type_name: type_name.to_string(),
                serialization_format: "cdr".into(),
                offered_qos_profiles: offered_qos.to_string(),
                type_description_hash: type_hash.to_string(),
            },
            count: 0,
            first_ns: None,
            last_ns: 0,
        });
        Ok(self.topics.len() - 1)
    }

    /// Index of the topic called `name`, if added.
    pub fn topic(&self, name: &str) -> Option<usize> {
        self.topics.iter().position(|t| t.metadata.name == name)
    }

    /// Writes one serialized message with receive time `log_time_ns`.
    pub fn write(&mut self, topic: usize, log_time_ns: u64, data: &[u8]) -> Result<(), BagError> {
        let Some(t) = self.topics.get_mut(topic) else {
            return Err(BagError::Write {
                path: self.dir.clone(),
                reason: format!("no topic #{topic}"),
            });
        };
        t.count += 1;
        t.first_ns = Some(t.first_ns.map_or(log_time_ns, |f| f.min(log_time_ns)));
        t.last_ns = t.last_ns.max(log_time_ns);
        self.sequence = self.sequence.wrapping_add(1);
        let header = mcap::records::MessageHeader {
            channel_id: t.channel,
            sequence: self.sequence,
            log_time: log_time_ns,
            publish_time: log_time_ns,
        };
        self.mcap
            .write_to_known_channel(&header, data)
            .map_err(|e| BagError::Write {
                path: self.dir.clone(),
                reason: e.to_string(),
            })
    }

    /// Messages written to `topic` so far.
    pub fn count(&self, topic: usize) -> u64 {
        self.topics.get(topic).map_or(0, |t| t.count)
    }

    /// Finishes the MCAP file (summary, indexes) and writes `metadata.yaml`; returns the
    /// metadata written.
    pub fn finish(mut self) -> Result<BagInfo, BagError> {
        let werr = |path: &Path, reason: String| BagError::Write {
            path: path.to_path_buf(),
            reason,
        };
        self.mcap
            .finish()
            .map_err(|e| werr(&self.dir, e.to_string()))?;
        let start = self
            .topics
            .iter()
            .filter_map(|t| t.first_ns)
            .min()
            .unwrap_or(0);
        let end = self.topics.iter().map(|t| t.last_ns).max().unwrap_or(0);
        let count: u64 = self.topics.iter().map(|t| t.count).sum();
        let duration = Nanoseconds {
            nanoseconds: end.saturating_sub(start),
        };
        let starting_time = NanosecondsSinceEpoch {
            nanoseconds_since_epoch: start,
        };
        let info = BagInfo {
            version: 9,
            storage_identifier: "mcap".into(),
            relative_file_paths: vec![self.file_name.clone()],
            duration,
            starting_time,
            message_count: count,
            topics_with_message_count: self
                .topics
                .iter()
                .map(|t| TopicWithCount {
                    topic_metadata: t.metadata.clone(),
                    message_count: t.count,
                })
                .collect(),
            compression_format: String::new(),
            compression_mode: String::new(),
            files: vec![FileInfo {
                path: self.file_name.clone(),
                starting_time,
                duration,
                message_count: count,
            }],
            custom_data: std::mem::take(&mut self.custom_data),
            ros_distro: "jazzy".into(),
        };
        let text = serde_yaml_ng::to_string(&MetadataFileOut {
            rosbag2_bagfile_information: &info,
        })
        .map_err(|e| werr(&self.dir, e.to_string()))?;
        let path = self.dir.join("metadata.yaml");
        std::fs::write(&path, text).map_err(|e| werr(&path, e.to_string()))?;
        Ok(info)
    }
}
