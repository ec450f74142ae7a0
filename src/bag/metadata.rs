//! rosbag2's `metadata.yaml`: read to find a bag's files and counts, written with every output bag.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::BagError;

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
pub(super) struct MetadataFileOut<'a> {
    pub(super) rosbag2_bagfile_information: &'a BagInfo,
}

pub(super) fn read_metadata(dir: &Path) -> Result<Option<BagInfo>, BagError> {
    let path = dir.join("metadata.yaml");
    let text = match crate::config::read_small_text(&path) {
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
