//! Writing: one MCAP file (zstd chunks, message definitions embedded) and `metadata.yaml`.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::metadata::MetadataFileOut;
use super::{
    BagError, BagInfo, FileInfo, Nanoseconds, NanosecondsSinceEpoch, TopicMetadata, TopicWithCount,
};

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
        let stem = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("lookout")
            .to_string();
        Self::create_named(dir, &stem, custom_data)
    }

    /// As [`Self::create`], with the storage file named `<name>_0.mcap` whatever the folder is
    /// called (a bag written in a staging folder, renamed into place when complete).
    pub fn create_named(
        dir: &Path,
        name: &str,
        custom_data: BTreeMap<String, String>,
    ) -> Result<Self, BagError> {
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
        let file_name = format!("{name}_0.mcap");
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

    /// Adds a topic of a type lookout knows ([`super::schema`]), with its definition and hash.
    pub fn add_known_topic(
        &mut self,
        name: &str,
        ty: &super::schema::MessageType,
        offered_qos: &str,
    ) -> Result<usize, BagError> {
        let definition = ty.definition();
        self.add_topic(
            name,
            ty.name,
            Some(("ros2msg", definition.as_bytes())),
            ty.type_hash,
            offered_qos,
        )
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
