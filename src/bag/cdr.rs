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

    fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
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

/// Encodes a `sensor_msgs/msg/Image`: `size` is `(width, height, step in bytes)` and `data` the
/// rows (with their padding), as received.
pub fn encode_image(
    buf: &mut Vec<u8>,
    stamp: Stamp,
    frame_id: &str,
    size: (u32, u32, usize),
    encoding: &str,
    big_endian: bool,
    data: &[u8],
) {
    let (width, height, step) = size;
    let mut w = Writer::new(buf);
    w.header(stamp, frame_id);
    w.u32(height);
    w.u32(width);
    w.string(encoding);
    w.u8(u8::from(big_endian));
    w.u32(u32::try_from(step).unwrap_or(u32::MAX));
    w.len(data.len());
    w.raw(data);
}

/// Encodes a `sensor_msgs/msg/CompressedImage` (`format`: `jpeg`, `png`).
pub fn encode_compressed_image(
    buf: &mut Vec<u8>,
    stamp: Stamp,
    frame_id: &str,
    format: &str,
    data: &[u8],
) {
    let mut w = Writer::new(buf);
    w.header(stamp, frame_id);
    w.string(format);
    w.len(data.len());
    w.raw(data);
}

/// Encodes a `foxglove_msgs/msg/ImageAnnotations` drawing `detections` over their image: per
/// detection a closed outline of its box (image pixels) in its class's colour and a label
/// (`class score`) at its top-left corner, all stamped `stamp` (the image's stamp, which is how
/// Foxglove pairs them).
pub fn encode_image_annotations(
    buf: &mut Vec<u8>,
    stamp: Stamp,
    detections: &[Detection],
    class_names: &[String],
) {
    let mut w = Writer::new(buf);
    let time = |w: &mut Writer<'_>| {
        w.u32(stamp.sec as u32);
        w.u32(stamp.nanosec);
    };
    let color = |w: &mut Writer<'_>, c: [u8; 3], a: f64| {
        for v in c {
            w.f64(f64::from(v) / 255.0);
        }
        w.f64(a);
    };
    w.len(0); // circles
    w.len(detections.len());
    for d in detections {
        let c = crate::charts::boxes::class_color(d.class_id);
        let [x1, y1, x2, y2] = d.bbox.map(f64::from);
        time(&mut w);
        w.u8(2); // LINE_LOOP
        w.len(4);
        for (x, y) in [(x1, y1), (x2, y1), (x2, y2), (x1, y2)] {
            w.f64(x);
            w.f64(y);
        }
        color(&mut w, c, 1.0);
        w.len(0); // outline_colors
        color(&mut w, c, 0.0); // no fill
        w.f64(2.0);
    }
    w.len(detections.len());
    for d in detections {
        let c = crate::charts::boxes::class_color(d.class_id);
        time(&mut w);
        w.f64(f64::from(d.bbox[0]));
        w.f64(f64::from(d.bbox[1]));
        let name = class_names
            .get(d.class_id as usize)
            .map_or("?", String::as_str);
        w.string(&format!("{name} {:.2}", d.score));
        w.f64(12.0);
        color(&mut w, [255, 255, 255], 1.0);
        color(&mut w, c, 0.8);
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
mod tests;
