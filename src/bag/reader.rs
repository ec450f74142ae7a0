//! Reading: MCAP and sqlite3 storage, message by message in storage order, directly or read
//! ahead on a thread of its own.

use std::ops::ControlFlow;
use std::path::Path;

use super::metadata::read_metadata;

/// The largest MCAP record (a chunk or a message) read: 256 MiB, over ten 4K 16-bit frames.
/// A longer record is refused before anything is allocated for it.
pub const MAX_RECORD_BYTES: usize = 256 << 20;

/// The most topics a bag may declare.
pub const MAX_TOPICS: usize = 10_000;
use super::{Bag, BagDamage, BagError, BagInfo, BagMessage, Storage, TopicInfo};

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
            let root = path.canonicalize().map_err(io)?;
            for rel in &info.relative_file_paths {
                // Untrusted: a storage file must lie inside the bag folder (no absolute path, no
                // `..`, no symbolic link out of it), or a bag could read any file on the host.
                let inside = Path::new(rel)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
                let p = path.join(rel);
                if !inside || p.canonicalize().is_ok_and(|c| !c.starts_with(&root)) {
                    return Err(BagError::Metadata {
                        path: path.join("metadata.yaml"),
                        reason: format!("lists {rel}, which is outside the bag folder"),
                    });
                }
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
            // Read through the file, not a memory map: a bag truncated while mapped would
            // raise SIGBUS.
            let mut file = std::io::BufReader::new(std::fs::File::open(path).ok()?);
            let len = std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).ok()?;
            let summary = super::resume::read_summary(&mut file, len)?;
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

    /// As [`Self::for_each`], but storage damage does not end the reading: a file whose data
    /// turns out damaged (a truncated file, a bad chunk or CRC, a bad row) is read up to the
    /// damage, which is returned as a [`BagDamage`], and the next file is read. A file that
    /// cannot be opened at all is still an error.
    pub fn for_each_readable(
        &self,
        mut f: impl FnMut(BagMessage<'_>) -> ControlFlow<()>,
    ) -> Result<Vec<BagDamage>, BagError> {
        let mut damage = Vec::new();
        for (path, storage) in &self.files {
            let flow = match storage {
                Storage::Mcap => {
                    let file = std::fs::File::open(path).map_err(|error| BagError::Io {
                        path: path.clone(),
                        error,
                    })?;
                    let (flow, found) = for_each_mcap_readable_in(file, path, &mut f);
                    damage.extend(found);
                    flow
                }
                Storage::Sqlite3 => {
                    let mut read = 0u64;
                    let mut counted = |m: BagMessage<'_>| {
                        read += 1;
                        f(m)
                    };
                    match for_each_sqlite(path, &mut counted) {
                        Ok(flow) => flow,
                        Err(e @ BagError::Sqlite { .. }) => {
                            damage.push(BagDamage {
                                path: path.clone(),
                                messages_read: read,
                                reason: e.to_string(),
                                offset: None,
                                resumed_after: None,
                            });
                            ControlFlow::Continue(())
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            if flow.is_break() {
                break;
            }
        }
        Ok(damage)
    }

    /// As [`Self::for_each_readable`], with the reading (file I/O, chunk decompression) on a thread of
    /// its own (`lookout-bag-read`) running up to `depth` messages ahead, so it overlaps with
    /// whatever `f` does. The first message is handed over once `depth` messages are read (or
    /// the bag ended). Same messages, same order. Each payload is copied into a buffer that
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
    ) -> Result<Vec<BagDamage>, BagError> {
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
                    self.for_each_readable(|m| {
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
            // The read-ahead fills before the first message is handed over (at most 5 s, or until
            // the reader ends): the reader's start-up (opening, the first chunk) then does not
            // share the cores with the first frame's inference.
            let started = std::time::Instant::now();
            while !rx.is_full()
                && !reader.is_finished()
                && started.elapsed() < std::time::Duration::from_secs(5)
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
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
    // Streamed through a bounded buffer, not mapped: a mapped bag's pages stay in the process's
    // resident set as it is read (a 290 MB bag added 290 MB of RSS), streaming keeps one chunk.
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    for_each_mcap_in(reader, path, f)
}

/// Every message of an MCAP stream, in storage order (`path` names it in errors); records are
/// bounded by [`MAX_RECORD_BYTES`] and chunk CRCs checked. What [`Bag::for_each`] does for
/// an MCAP file, from any reader (the fuzz target feeds it bytes).
pub fn for_each_mcap_in(
    reader: impl std::io::Read,
    path: &Path,
    f: &mut impl FnMut(BagMessage<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, BagError> {
    let bad = |e: mcap::McapError| BagError::Mcap {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    // A record's length comes from the file: bounded before anything is allocated for it, and
    // every chunk's CRC checked, so a damaged or hostile bag is an error naming the file.
    let options = mcap::sans_io::LinearReaderOptions::default()
        .with_record_length_limit(MAX_RECORD_BYTES)
        .with_validate_chunk_crcs(true);
    for message in mcap::io::MessageReader::new_with_options(reader, options) {
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

/// As [`for_each_mcap_in`], but damage does not end the reading: the stream is read up to the
/// damage, then, when its summary is intact, every chunk of the chunk index after the damage is
/// read on its own (a damaged chunk costs its own messages only). Returns the damage found,
/// empty for an intact stream. What [`Bag::for_each_readable`] does for an MCAP file.
pub fn for_each_mcap_readable_in<R: std::io::Read + std::io::Seek>(
    mut stream: R,
    path: &Path,
    f: &mut impl FnMut(BagMessage<'_>) -> ControlFlow<()>,
) -> (ControlFlow<()>, Vec<BagDamage>) {
    let mut read = 0u64;
    let mut counted = |m: BagMessage<'_>| {
        read += 1;
        f(m)
    };
    // Streamed through a bounded buffer, not mapped: a mapped bag's pages stay in the process's
    // resident set as it is read (a 290 MB bag added 290 MB of RSS), streaming keeps one chunk.
    let error = match for_each_mcap_in(
        std::io::BufReader::with_capacity(1 << 20, &mut stream),
        path,
        &mut counted,
    ) {
        Ok(flow) => return (flow, Vec::new()),
        Err(e) => e,
    };
    let at_damage = BagDamage {
        path: path.to_path_buf(),
        messages_read: read,
        reason: error.to_string(),
        offset: None,
        resumed_after: None,
    };
    match super::resume::resume_mcap(&mut stream, path, read, f) {
        // Every chunk was intact: the damage lay between them (a broken record).
        Some(r) if r.damage.is_empty() => (
            r.flow,
            vec![BagDamage {
                resumed_after: Some(r.messages),
                ..at_damage
            }],
        ),
        Some(r) => (r.flow, r.damage),
        None => (ControlFlow::Continue(()), vec![at_damage]),
    }
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
    // The file is untrusted: no schema-defined code (views, triggers, functions) runs, and the
    // tables read must be tables (a `messages` view over an endless recursive query would
    // never return).
    use rusqlite::config::DbConfig;
    db.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(bad)?;
    db.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
        .map_err(bad)?;
    for table in ["topics", "messages"] {
        let kind: Option<String> = db
            .query_row(
                "SELECT type FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .ok();
        if kind.as_deref() != Some("table") {
            return Err(BagError::Sqlite {
                path: path.to_path_buf(),
                reason: format!("`{table}` is not a table (a rosbag2 bag's is)"),
            });
        }
    }
    let topics: Vec<(i64, String, String)> = all_rows(
        &mut db
            .prepare(&format!(
                "SELECT id, name, type FROM topics LIMIT {}",
                MAX_TOPICS + 1
            ))
            .map_err(bad)?,
    )
    .map_err(bad)?;
    if topics.len() > MAX_TOPICS {
        return Err(BagError::Sqlite {
            path: path.to_path_buf(),
            reason: format!("more than {MAX_TOPICS} topics"),
        });
    }
    // Message definitions (rosbag2 Iron and later; older bags have no such table).
    let is_table = |name: &str| {
        db.query_row(
            "SELECT type FROM sqlite_master WHERE name = ?1",
            [name],
            |r| r.get::<_, String>(0),
        )
        .is_ok_and(|t| t == "table")
    };
    let definitions: Vec<(String, String, String)> = match is_table("message_definitions")
        .then(|| db
        .prepare(&format!(
            "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions LIMIT {MAX_TOPICS}"
        )))
    {
        Some(Ok(mut q)) => all_rows(&mut q).map_err(bad)?,
        _ => Vec::new(),
    };
    let mut q = db
        .prepare("SELECT topic_id, timestamp, data FROM messages ORDER BY id")
        .map_err(bad)?;
    let mut rows = q.query([]).map_err(bad)?;
    while let Some(row) = rows.next().map_err(bad)? {
        let topic_id: i64 = row.get(0).map_err(bad)?;
        let timestamp: i64 = row.get(1).map_err(bad)?;
        // A row without a payload (NULL, or a number) is handed on empty: the message does not
        // deserialize, and is counted as bad input; the replay goes on.
        let data = match row.get_ref(2).map_err(bad)? {
            rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => b,
            _ => &[],
        };
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
