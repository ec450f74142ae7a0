//! A small, bounds-checked CDR codec for the messages lookout reads from and writes to bags:
//! it decodes `sensor_msgs/msg/Image`, `sensor_msgs/msg/CompressedImage` and
//! `vision_msgs/msg/Detection2DArray`, and encodes `Detection2DArray` and
//! `diagnostic_msgs/msg/DiagnosticArray`.
//!
//! rosbag2 stores messages as CDR with a 4-byte encapsulation header (`00 01` little endian,
//! `00 00` big endian, then two option bytes). Primitive values are aligned to their size,
//! counted from the first byte after the header; strings are a `u32` length (including the
//! terminating NUL) followed by the bytes; `uint8[]` is a `u32` count followed by the bytes.
//!
//! Contract: image decoding borrows from the input (no copy, no allocation); detection decoding
//! allocates the decoded message. Decoding never panics and rejects truncated or inconsistent
//! input with a [`CdrError`] that says where. Encoding writes little-endian CDR into a reused
//! buffer (it allocates only when the buffer must grow) with every padding byte zero, so equal
//! messages always encode to equal bytes. (rmw_fastrtps leaves padding bytes uninitialised:
//! compare live captures by value, not by bytes.)

use crate::core::postprocess::Detection;
use crate::runtime::health::Status;
use crate::runtime::queue::Stamp;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdrError {
    /// The encapsulation header is missing or not plain CDR.
    #[error("not a CDR message (encapsulation header {header:02x?})")]
    Encapsulation {
        /// The first bytes.
        header: [u8; 2],
    },
    /// The message ends before field `field`.
    #[error("message truncated at field `{field}` (offset {offset}, {len} bytes)")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Offset in the payload.
        offset: usize,
        /// Payload length.
        len: usize,
    },
    /// A string is not NUL-terminated UTF-8.
    #[error("field `{field}` is not a valid string")]
    BadString {
        /// Field being read.
        field: &'static str,
    },
    /// A sequence claims more elements than the rest of the message can hold.
    #[error("field `{field}` claims {count} elements, more than the message holds")]
    BadLength {
        /// Field being read.
        field: &'static str,
        /// The claimed count.
        count: u32,
    },
}

/// A borrowed `sensor_msgs/msg/Image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageMsg<'a> {
    /// `header.stamp`.
    pub stamp: Stamp,
    /// `header.frame_id`.
    pub frame_id: &'a str,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// Pixel encoding string.
    pub encoding: &'a str,
    /// Big-endian pixel data (only meaningful for multi-byte encodings).
    pub is_bigendian: u8,
    /// Row step in bytes.
    pub step: u32,
    /// Pixel bytes.
    pub data: &'a [u8],
}

/// A borrowed `sensor_msgs/msg/CompressedImage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressedImageMsg<'a> {
    /// `header.stamp`.
    pub stamp: Stamp,
    /// `header.frame_id`.
    pub frame_id: &'a str,
    /// `format` (`jpeg`, `png`, `bgr8; jpeg compressed bgr8`, ...).
    pub format: &'a str,
    /// The compressed stream.
    pub data: &'a [u8],
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    little: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, CdrError> {
        let header = [
            bytes.first().copied().unwrap_or(0xff),
            bytes.get(1).copied().unwrap_or(0xff),
        ];
        let little = match header {
            [0x00, 0x01] => true,
            [0x00, 0x00] => false,
            _ => return Err(CdrError::Encapsulation { header }),
        };
        if bytes.len() < 4 {
            return Err(CdrError::Encapsulation { header });
        }
        Ok(Self {
            buf: &bytes[4..],
            pos: 0,
            little,
        })
    }

    fn take(&mut self, n: usize, align: usize, field: &'static str) -> Result<&'a [u8], CdrError> {
        let start = self.pos.div_ceil(align) * align;
        let end = start
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(CdrError::Truncated {
                field,
                offset: start,
                len: self.buf.len(),
            })?;
        self.pos = end;
        Ok(&self.buf[start..end])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, CdrError> {
        let b = self.take(4, 4, field)?;
        let b = [b[0], b[1], b[2], b[3]];
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn f64(&mut self, field: &'static str) -> Result<f64, CdrError> {
        let b = self.take(8, 8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(if self.little {
            f64::from_le_bytes(a)
        } else {
            f64::from_be_bytes(a)
        })
    }

    /// A sequence count, refused when even `min_bytes` per element cannot fit in the rest.
    fn count(&mut self, field: &'static str, min_bytes: usize) -> Result<usize, CdrError> {
        let count = self.u32(field)?;
        let left = self.buf.len().saturating_sub(self.pos);
        if (count as usize).saturating_mul(min_bytes.max(1)) > left {
            return Err(CdrError::BadLength { field, count });
        }
        Ok(count as usize)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, CdrError> {
        Ok(self.take(1, 1, field)?[0])
    }

    fn string(&mut self, field: &'static str) -> Result<&'a str, CdrError> {
        let len = self.u32(field)? as usize;
        if len == 0 {
            return Ok("");
        }
        let bytes = self.take(len, 1, field)?;
        let (text, nul) = bytes.split_at(len - 1);
        if nul != [0] {
            return Err(CdrError::BadString { field });
        }
        std::str::from_utf8(text).map_err(|_| CdrError::BadString { field })
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], CdrError> {
        let len = self.u32(field)? as usize;
        self.take(len, 1, field)
    }

    fn header(&mut self) -> Result<(Stamp, &'a str), CdrError> {
        let sec = self.u32("header.stamp.sec")? as i32;
        let nanosec = self.u32("header.stamp.nanosec")?;
        let frame_id = self.string("header.frame_id")?;
        Ok((Stamp { sec, nanosec }, frame_id))
    }
}

/// Decodes a CDR `sensor_msgs/msg/Image`.
pub fn image(bytes: &[u8]) -> Result<ImageMsg<'_>, CdrError> {
    let mut r = Reader::new(bytes)?;
    let (stamp, frame_id) = r.header()?;
    Ok(ImageMsg {
        stamp,
        frame_id,
        height: r.u32("height")?,
        width: r.u32("width")?,
        encoding: r.string("encoding")?,
        is_bigendian: r.u8("is_bigendian")?,
        step: r.u32("step")?,
        data: r.bytes("data")?,
    })
}

/// Decodes a CDR `sensor_msgs/msg/CompressedImage`.
pub fn compressed_image(bytes: &[u8]) -> Result<CompressedImageMsg<'_>, CdrError> {
    let mut r = Reader::new(bytes)?;
    let (stamp, frame_id) = r.header()?;
    Ok(CompressedImageMsg {
        stamp,
        frame_id,
        format: r.string("format")?,
        data: r.bytes("data")?,
    })
}

/// One decoded `vision_msgs/msg/Detection2D` (the fields lookout fills).
#[derive(Debug, Clone, PartialEq)]
pub struct Detection2DMsg {
    /// Hypotheses `(class_id, score)`, in message order.
    pub results: Vec<(String, f64)>,
    /// `bbox.center.position` x, y (pixels).
    pub center: (f64, f64),
    /// `bbox.center.theta`.
    pub theta: f64,
    /// `bbox.size_x`, `bbox.size_y` (pixels).
    pub size: (f64, f64),
    /// `id`.
    pub id: String,
}

impl Detection2DMsg {
    /// The best hypothesis `(class_id, score)`, if any.
    pub fn best(&self) -> Option<(&str, f64)> {
        self.results
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, s)| (c.as_str(), *s))
    }

    /// Box corners `[x1, y1, x2, y2]`.
    pub fn corners(&self) -> [f64; 4] {
        let (cx, cy) = self.center;
        let (w, h) = self.size;
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    }
}

/// A decoded `vision_msgs/msg/Detection2DArray`.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection2DArrayMsg {
    /// `header.stamp`.
    pub stamp: Stamp,
    /// `header.frame_id`.
    pub frame_id: String,
    /// Detections.
    pub detections: Vec<Detection2DMsg>,
}

/// Smallest encoding of one `Detection2D` (empty strings and sequences), bytes.
const MIN_DETECTION_BYTES: usize = 4 + 4 + 4 + 4 + 40 + 4;
/// Smallest encoding of one `ObjectHypothesisWithPose`, bytes.
const MIN_HYPOTHESIS_BYTES: usize = 4 + 8 + 7 * 8 + 36 * 8;

/// Decodes a CDR `vision_msgs/msg/Detection2DArray` (allocates the result).
pub fn detection_array(bytes: &[u8]) -> Result<Detection2DArrayMsg, CdrError> {
    let mut r = Reader::new(bytes)?;
    let (stamp, frame_id) = r.header()?;
    let n = r.count("detections", MIN_DETECTION_BYTES)?;
    let mut detections = Vec::with_capacity(n);
    for _ in 0..n {
        r.header()?;
        let k = r.count("results", MIN_HYPOTHESIS_BYTES)?;
        let mut results = Vec::with_capacity(k);
        for _ in 0..k {
            let class = r.string("results.hypothesis.class_id")?.to_string();
            let score = r.f64("results.hypothesis.score")?;
            // pose.pose (7 values) and pose.covariance (36): not used by lookout.
            for _ in 0..(7 + 36) {
                r.f64("results.pose")?;
            }
            results.push((class, score));
        }
        let center = (
            r.f64("bbox.center.position.x")?,
            r.f64("bbox.center.position.y")?,
        );
        let theta = r.f64("bbox.center.theta")?;
        let size = (r.f64("bbox.size_x")?, r.f64("bbox.size_y")?);
        let id = r.string("id")?.to_string();
        detections.push(Detection2DMsg {
            results,
            center,
            theta,
            size,
            id,
        });
    }
    Ok(Detection2DArrayMsg {
        stamp,
        frame_id: frame_id.to_string(),
        detections,
    })
}

/// Little-endian CDR encoder into a reused buffer; padding bytes are zero.
struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]);
        Self { buf }
    }

    fn align(&mut self, n: usize) {
        while !(self.buf.len() - 4).is_multiple_of(n) {
            self.buf.push(0);
        }
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn f64(&mut self, v: f64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn string(&mut self, s: &str) {
        self.len(s.len() + 1);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn header(&mut self, stamp: Stamp, frame_id: &str) {
        self.u32(stamp.sec as u32);
        self.u32(stamp.nanosec);
        self.string(frame_id);
    }
}

/// Encodes the `vision_msgs/msg/Detection2DArray` that lookout publishes for one frame: the
/// frame's header on the array and on every detection, one hypothesis (class name, score) per
/// detection with the default pose (identity orientation), the box centre and size in image
/// pixels, and an empty `id`. The same content as the live node's messages.
pub fn encode_detection_array(
    buf: &mut Vec<u8>,
    stamp: Stamp,
    frame_id: &str,
    detections: &[Detection],
    class_names: &[String],
) {
    let mut w = Writer::new(buf);
    w.header(stamp, frame_id);
    w.len(detections.len());
    for d in detections {
        w.header(stamp, frame_id);
        w.len(1);
        w.string(
            class_names
                .get(d.class_id as usize)
                .map_or("?", String::as_str),
        );
        w.f64(f64::from(d.score));
        // pose.pose.position (0, 0, 0), pose.pose.orientation (0, 0, 0, 1), covariance zeros.
        for v in [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0] {
            w.f64(v);
        }
        for _ in 0..36 {
            w.f64(0.0);
        }
        let (cx, cy) = d.center();
        let (sw, sh) = d.size();
        w.f64(f64::from(cx));
        w.f64(f64::from(cy));
        w.f64(0.0);
        w.f64(f64::from(sw));
        w.f64(f64::from(sh));
        w.string("");
    }
}

/// Encodes a `diagnostic_msgs/msg/DiagnosticArray` of `statuses` stamped `stamp`.
pub fn encode_diagnostic_array(
    buf: &mut Vec<u8>,
    stamp: Stamp,
    statuses: &[Status],
    hardware_id: &str,
) {
    let mut w = Writer::new(buf);
    w.header(stamp, "");
    w.len(statuses.len());
    for s in statuses {
        w.u8(s.level.as_byte());
        w.string(&s.name);
        w.string(&s.message);
        w.string(hardware_id);
        w.len(s.values.len());
        for (k, v) in &s.values {
            w.string(k);
            w.string(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-encodes an Image the way rmw does (little endian).
    fn encode_image(frame_id: &str, encoding: &str, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0x00, 0x01, 0x00, 0x00];
        let mut body: Vec<u8> = Vec::new();
        let align = |body: &mut Vec<u8>, n: usize| {
            while !body.len().is_multiple_of(n) {
                body.push(0);
            }
        };
        let string = |body: &mut Vec<u8>, s: &str| {
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
            body.extend_from_slice(&((s.len() + 1) as u32).to_le_bytes());
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        };
        body.extend_from_slice(&7i32.to_le_bytes());
        body.extend_from_slice(&500u32.to_le_bytes());
        string(&mut body, frame_id);
        align(&mut body, 4);
        body.extend_from_slice(&2u32.to_le_bytes()); // height
        body.extend_from_slice(&3u32.to_le_bytes()); // width
        string(&mut body, encoding);
        body.push(0); // is_bigendian
        align(&mut body, 4);
        body.extend_from_slice(&9u32.to_le_bytes()); // step
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        b.extend(body);
        b
    }

    #[test]
    fn decodes_an_image_with_unaligned_strings() {
        let data: Vec<u8> = (0..18).collect();
        let bytes = encode_image("cam", "bgr8", &data);
        let m = image(&bytes).unwrap();
        assert_eq!(
            m.stamp,
            Stamp {
                sec: 7,
                nanosec: 500
            }
        );
        assert_eq!((m.frame_id, m.encoding), ("cam", "bgr8"));
        assert_eq!((m.height, m.width, m.step), (2, 3, 9));
        assert_eq!(m.data, &data[..]);
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let bytes = encode_image("camera_frame", "rgb8", &[1u8; 18]);
        for cut in 0..bytes.len() {
            assert!(image(&bytes[..cut]).is_err(), "cut at {cut} decoded");
            let _ = compressed_image(&bytes[..cut]);
        }
    }

    #[test]
    fn a_huge_length_is_rejected() {
        let mut bytes = encode_image("c", "rgb8", &[]);
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            image(&bytes),
            Err(CdrError::Truncated { field: "data", .. })
        ));
    }

    #[test]
    fn wrong_encapsulation_is_named() {
        assert!(matches!(
            image(&[0x00, 0x07, 0, 0]),
            Err(CdrError::Encapsulation { .. })
        ));
        assert!(matches!(image(&[]), Err(CdrError::Encapsulation { .. })));
    }

    fn sample_detections() -> (Vec<Detection>, Vec<String>) {
        (
            vec![
                Detection {
                    class_id: 0,
                    score: 0.75,
                    bbox: [10.0, 20.0, 50.5, 80.25],
                },
                Detection {
                    class_id: 1,
                    score: 0.5,
                    bbox: [0.0, 0.0, 3.0, 4.0],
                },
            ],
            vec!["person".to_string(), "bus".to_string()],
        )
    }

    #[test]
    fn detection_arrays_round_trip_and_encode_deterministically() {
        let (dets, names) = sample_detections();
        let stamp = Stamp {
            sec: 1_700_000_000,
            nanosec: 100_000_000,
        };
        let mut a = Vec::new();
        encode_detection_array(&mut a, stamp, "cam", &dets, &names);
        let mut b = vec![0xAA; 4096];
        encode_detection_array(&mut b, stamp, "cam", &dets, &names);
        assert_eq!(a, b, "reused buffer must not change the bytes");
        let m = detection_array(&a).unwrap();
        assert_eq!(m.stamp, stamp);
        assert_eq!(m.frame_id, "cam");
        assert_eq!(m.detections.len(), 2);
        let d = &m.detections[0];
        assert_eq!(d.best(), Some(("person", 0.75)));
        assert_eq!(d.center, (30.25, 50.125));
        assert_eq!(d.size, (40.5, 60.25));
        assert_eq!(d.corners(), [10.0, 20.0, 50.5, 80.25]);
        assert_eq!(d.id, "");
        assert_eq!(m.detections[1].best(), Some(("bus", 0.5)));
    }

    #[test]
    fn every_truncated_detection_array_is_an_error() {
        let (dets, names) = sample_detections();
        let mut a = Vec::new();
        encode_detection_array(&mut a, Stamp::default(), "cam", &dets, &names);
        for cut in 0..a.len() {
            assert!(detection_array(&a[..cut]).is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn an_impossible_detection_count_is_refused_before_allocating() {
        let mut a = Vec::new();
        encode_detection_array(&mut a, Stamp::default(), "", &[], &[]);
        let n = a.len();
        a[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            detection_array(&a),
            Err(CdrError::BadLength {
                field: "detections",
                ..
            })
        ));
    }

    #[test]
    fn diagnostic_arrays_have_zero_padding() {
        let statuses = [Status {
            name: "x".into(),
            level: crate::runtime::health::Level::Warn,
            message: "m".into(),
            values: vec![("k".into(), "v".into())],
        }];
        let mut a = Vec::new();
        encode_diagnostic_array(&mut a, Stamp::default(), &statuses, "h");
        // Layout as rmw_fastrtps writes it, with its uninitialised padding bytes as zeros.
        let want = concat!(
            "000100000000000000000000010000000000000001000000010000000200000078000000",
            "020000006d000000020000006800000001000000020000006b000000020000007600"
        );
        let got: String = a.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }

    /// A small fuzzer: random mutations (bit flips, byte changes, truncation, extension) of
    /// valid messages never make a decoder panic or read out of bounds.
    #[test]
    fn mutated_messages_never_panic() {
        let (dets, names) = sample_detections();
        let mut det = Vec::new();
        encode_detection_array(&mut det, Stamp::default(), "cam", &dets, &names);
        let seeds = [encode_image("camera_frame", "rgb8", &[7u8; 18]), det, {
            let mut b = vec![0x00, 0x01, 0x00, 0x00, 1, 0, 0, 0, 2, 0, 0, 0];
            b.extend_from_slice(&[2, 0, 0, 0, b'c', 0, 0, 0, 5, 0, 0, 0]);
            b.extend_from_slice(b"jpeg\0\0\0\0\x03\0\0\0\xff\xd8\xff");
            b
        }];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut decoded = 0usize;
        for round in 0..30_000u64 {
            let seed = &seeds[(round % seeds.len() as u64) as usize];
            let mut m = seed.clone();
            for _ in 0..(1 + next() % 4) {
                let len = m.len().max(1);
                match next() % 4 {
                    0 => {
                        let i = (next() as usize) % len;
                        if let Some(b) = m.get_mut(i) {
                            *b ^= 1 << (next() % 8);
                        }
                    }
                    1 => {
                        let i = (next() as usize) % len;
                        if let Some(b) = m.get_mut(i) {
                            *b = next() as u8;
                        }
                    }
                    2 => m.truncate((next() as usize) % len),
                    _ => m.extend((0..next() % 16).map(|_| next() as u8)),
                }
            }
            decoded += usize::from(image(&m).is_ok());
            decoded += usize::from(compressed_image(&m).is_ok());
            decoded += usize::from(detection_array(&m).is_ok());
        }
        // Some mutations keep a message valid; the decoders must accept those.
        assert!(decoded > 0);
    }
}
