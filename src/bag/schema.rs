//! Message definitions that lookout embeds in the bags it writes, so that readers without the
//! message packages (Foxglove, `rosbags`, `ros2 bag info`) can decode every topic.
//!
//! The format is rosbag2's `ros2msg` schema encoding: the definition of the top-level type,
//! then, for each type it depends on, a line of 80 `=`, a line `MSG: package/Name` and that
//! type's definition. Definitions carry fields and constants only (comments add nothing a
//! decoder needs); field names, types and order are those of ROS 2 Jazzy and vision_msgs 4.1.1.
//! Type hashes are the RIHS01 hashes of the same types (checked against the set-up's message
//! packages by `tests/replay.rs`).
//!
//! Contract: constants and a pure function; `KnownType::definition` allocates the returned text.

/// One message type lookout can describe.
#[derive(Debug, Clone, Copy)]
pub struct MessageType {
    /// Full name, e.g. `vision_msgs/msg/Detection2DArray`.
    pub name: &'static str,
    /// RIHS01 type hash.
    pub type_hash: &'static str,
    /// Own definition, and the types it depends on (transitively, each once).
    text: &'static str,
    deps: &'static [(&'static str, &'static str)],
}

const TIME: (&str, &str) = ("builtin_interfaces/Time", "int32 sec\nuint32 nanosec\n");
const HEADER: (&str, &str) = (
    "std_msgs/Header",
    "builtin_interfaces/Time stamp\nstring frame_id\n",
);

/// `vision_msgs/msg/Detection2DArray`.
pub const DETECTION2D_ARRAY: MessageType = MessageType {
    name: "vision_msgs/msg/Detection2DArray",
    type_hash: "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    text: "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
    deps: &[
        HEADER,
        TIME,
        (
            "vision_msgs/Detection2D",
            "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n\
             vision_msgs/BoundingBox2D bbox\nstring id\n",
        ),
        (
            "vision_msgs/ObjectHypothesisWithPose",
            "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
        ),
        (
            "vision_msgs/ObjectHypothesis",
            "string class_id\nfloat64 score\n",
        ),
        (
            "geometry_msgs/PoseWithCovariance",
            "geometry_msgs/Pose pose\nfloat64[36] covariance\n",
        ),
        (
            "geometry_msgs/Pose",
            "geometry_msgs/Point position\ngeometry_msgs/Quaternion orientation\n",
        ),
        ("geometry_msgs/Point", "float64 x\nfloat64 y\nfloat64 z\n"),
        (
            "geometry_msgs/Quaternion",
            "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n",
        ),
        (
            "vision_msgs/BoundingBox2D",
            "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
        ),
        (
            "vision_msgs/Pose2D",
            "vision_msgs/Point2D position\nfloat64 theta\n",
        ),
        ("vision_msgs/Point2D", "float64 x\nfloat64 y\n"),
    ],
};

/// `diagnostic_msgs/msg/DiagnosticArray`.
pub const DIAGNOSTIC_ARRAY: MessageType = MessageType {
    name: "diagnostic_msgs/msg/DiagnosticArray",
    type_hash: "RIHS01_5a8a36efb05fb25070fa0fb3810290c0e6cd4862b54a8fb975a1ee8dc55a333e",
    text: "std_msgs/Header header\ndiagnostic_msgs/DiagnosticStatus[] status\n",
    deps: &[
        HEADER,
        TIME,
        (
            "diagnostic_msgs/DiagnosticStatus",
            "byte OK=0\nbyte WARN=1\nbyte ERROR=2\nbyte STALE=3\nbyte level\nstring name\n\
             string message\nstring hardware_id\ndiagnostic_msgs/KeyValue[] values\n",
        ),
        ("diagnostic_msgs/KeyValue", "string key\nstring value\n"),
    ],
};

/// `sensor_msgs/msg/Image` (used when an input bag carries no definition of its own).
pub const IMAGE: MessageType = MessageType {
    name: "sensor_msgs/msg/Image",
    type_hash: "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47",
    text: "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n\
           uint8 is_bigendian\nuint32 step\nuint8[] data\n",
    deps: &[HEADER, TIME],
};

/// `sensor_msgs/msg/CompressedImage` (used when an input bag carries no definition of its own).
pub const COMPRESSED_IMAGE: MessageType = MessageType {
    name: "sensor_msgs/msg/CompressedImage",
    type_hash: "RIHS01_15640771531571185e2efc8a100baf923961a4d15d5569652e6cb6691e8e371a",
    text: "std_msgs/Header header\nstring format\nuint8[] data\n",
    deps: &[HEADER, TIME],
};

const POINT2: (&str, &str) = ("foxglove_msgs/Point2", "float64 x\nfloat64 y\n");
const COLOR: (&str, &str) = (
    "foxglove_msgs/Color",
    "float64 r\nfloat64 g\nfloat64 b\nfloat64 a\n",
);

/// `foxglove_msgs/msg/ImageAnnotations` (foxglove_msgs 3.x): shapes Foxglove's image panel
/// draws over an image. Its RIHS01 hash is left empty: the set-up has no foxglove_msgs package
/// to check one against, and readers decode it from the definition embedded here.
pub const IMAGE_ANNOTATIONS: MessageType = MessageType {
    name: "foxglove_msgs/msg/ImageAnnotations",
    type_hash: "",
    text: "foxglove_msgs/CircleAnnotation[] circles\nfoxglove_msgs/PointsAnnotation[] points\nfoxglove_msgs/TextAnnotation[] texts\n",
    deps: &[
        (
            "foxglove_msgs/CircleAnnotation",
            "builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\nfloat64 diameter\nfloat64 thickness\nfoxglove_msgs/Color fill_color\nfoxglove_msgs/Color outline_color\n",
        ),
        TIME,
        POINT2,
        COLOR,
        (
            "foxglove_msgs/PointsAnnotation",
            "uint8 UNKNOWN=0\nuint8 POINTS=1\nuint8 LINE_LOOP=2\nuint8 LINE_STRIP=3\nuint8 LINE_LIST=4\nbuiltin_interfaces/Time timestamp\nuint8 type\nfoxglove_msgs/Point2[] points\nfoxglove_msgs/Color outline_color\nfoxglove_msgs/Color[] outline_colors\nfoxglove_msgs/Color fill_color\nfloat64 thickness\n",
        ),
        (
            "foxglove_msgs/TextAnnotation",
            "builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\nstring text\nfloat64 font_size\nfoxglove_msgs/Color text_color\nfoxglove_msgs/Color background_color\n",
        ),
    ],
};

/// Every type lookout can describe with a checked type hash.
pub const KNOWN: [MessageType; 4] = [DETECTION2D_ARRAY, DIAGNOSTIC_ARRAY, IMAGE, COMPRESSED_IMAGE];

/// The known type called `name`, if any.
pub fn known(name: &str) -> Option<MessageType> {
    KNOWN.iter().copied().find(|t| t.name == name)
}

impl MessageType {
    /// The `ros2msg` schema text: own definition, then every dependency.
    pub fn definition(&self) -> String {
        let mut s = String::from(self.text);
        for (name, text) in self.deps {
            s.push_str(&"=".repeat(80));
            s.push_str("\nMSG: ");
            s.push_str(name);
            s.push('\n');
            s.push_str(text);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_list_every_dependency_once_with_rosbag2_separators() {
        let d = DETECTION2D_ARRAY.definition();
        assert!(d.starts_with("std_msgs/Header header\n"));
        for dep in [
            "std_msgs/Header",
            "vision_msgs/Detection2D",
            "geometry_msgs/Quaternion",
            "vision_msgs/Point2D",
        ] {
            let marker = format!("{}\nMSG: {dep}\n", "=".repeat(80));
            assert_eq!(d.matches(&marker).count(), 1, "{dep}");
        }
        // Every referenced type is defined.
        for line in d.lines() {
            let ty = line.split_whitespace().next().unwrap_or("");
            let base = ty.trim_end_matches("[]");
            let base = base.split('[').next().unwrap_or(base);
            if base.contains('/') && !line.starts_with("MSG:") {
                assert!(d.contains(&format!("MSG: {base}\n")), "{base} undefined");
            }
        }
        assert!(known("diagnostic_msgs/msg/DiagnosticArray").is_some());
        assert!(known("std_msgs/msg/String").is_none());
    }
}
