//! A small, bounds-checked CDR decoder for the two camera messages lookout reads from bags:
//! `sensor_msgs/msg/Image` and `sensor_msgs/msg/CompressedImage`.
//!
//! rosbag2 stores messages as CDR with a 4-byte encapsulation header (`00 01` little endian,
//! `00 00` big endian, then two option bytes). Primitive values are aligned to their size,
//! counted from the first byte after the header; strings are a `u32` length (including the
//! terminating NUL) followed by the bytes; `uint8[]` is a `u32` count followed by the bytes.
//!
//! Contract: decoding borrows from the input (no copy, no allocation), never panics, and
//! rejects truncated or inconsistent input with a [`CdrError`] that says where.

use crate::ingest::Stamp;

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
}
