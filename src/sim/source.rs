//! Where a simulation's frames come from: `bag:PATH` (the image topics of a rosbag2 bag),
//! `images:DIR` (JPEG and PNG files) or `synthetic:WxH[:ENCODING]` (generated). The frames are
//! loaded once, before the clock starts, and looped; their stamps come from the schedule.
//!
//! Contract: [`Source::load`] reads files and allocates, bounded: at most [`MAX_FRAMES`] frames
//! and [`MAX_SOURCE_BYTES`] bytes in all, each image within [`MAX_SIDE`] pixels a side. Nothing
//! here runs once the clock has started.

use std::path::{Path, PathBuf};

use crate::bag::{Bag, cdr};
use crate::config::ImageKind;
use crate::core::image::PixelEncoding;

/// The most frames a source holds (looped).
pub const MAX_FRAMES: usize = 1000;
/// The most bytes a source's frames take in all (1 GiB).
pub const MAX_SOURCE_BYTES: usize = 1 << 30;
/// The largest side of a source image, pixels.
pub const MAX_SIDE: u32 = 16384;

/// Why a source cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The `--source` text is not one of the forms.
    #[error(
        "--source {text}: {reason} (expected bag:PATH, images:DIR or synthetic:WxH[:ENCODING])"
    )]
    Spec {
        /// What was given.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or folder cannot be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The bag cannot be read.
    #[error(transparent)]
    Bag(#[from] crate::bag::BagError),
    /// Nothing to play.
    #[error("{what}: no frames")]
    Empty {
        /// The source.
        what: String,
    },
    /// Over a limit.
    #[error("{what}: {reason}")]
    TooLarge {
        /// The source.
        what: String,
        /// Which limit.
        reason: String,
    },
}

/// A parsed `--source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The image topics of a bag.
    Bag(PathBuf),
    /// JPEG and PNG files of a folder, in name order.
    Images(PathBuf),
    /// Generated frames.
    Synthetic {
        /// Width, pixels.
        width: u32,
        /// Height, pixels.
        height: u32,
        /// Encoding.
        encoding: PixelEncoding,
    },
}

impl std::str::FromStr for SourceSpec {
    type Err = SourceError;

    fn from_str(text: &str) -> Result<Self, SourceError> {
        let err = |reason: &str| SourceError::Spec {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let (kind, rest) = text.split_once(':').ok_or_else(|| err("no kind"))?;
        match kind {
            "bag" if !rest.is_empty() => Ok(Self::Bag(PathBuf::from(rest))),
            "images" if !rest.is_empty() => Ok(Self::Images(PathBuf::from(rest))),
            "synthetic" => {
                let (size, encoding) = rest.split_once(':').unwrap_or((rest, "bgr8"));
                let (w, h) = size.split_once('x').ok_or_else(|| err("size is not WxH"))?;
                let side = |v: &str| {
                    v.parse::<u32>()
                        .ok()
                        .filter(|s| (2..=MAX_SIDE).contains(s))
                        .ok_or_else(|| err(&format!("each side within 2..{MAX_SIDE}")))
                };
                let (width, height) = (side(w)?, side(h)?);
                let encoding = PixelEncoding::from_ros(encoding)
                    .map_err(|_| err(&format!("unknown encoding `{encoding}`")))?;
                if encoding == PixelEncoding::Nv21 && (width % 2 == 1 || height % 2 == 1) {
                    return Err(err("nv21 needs an even width and height"));
                }
                Ok(Self::Synthetic {
                    width,
                    height,
                    encoding,
                })
            }
            _ => Err(err("unknown kind or empty path")),
        }
    }
}

/// One frame of a source, as a camera driver would hand it over.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceFrame {
    /// A raw image (`sensor_msgs/Image`).
    Raw {
        /// Width, pixels.
        width: u32,
        /// Height, pixels.
        height: u32,
        /// Row step, bytes.
        step_bytes: usize,
        /// ROS encoding.
        encoding: String,
        /// 16-bit data big-endian.
        big_endian: bool,
        /// The pixels.
        data: Vec<u8>,
    },
    /// A compressed image (`sensor_msgs/CompressedImage`).
    Compressed {
        /// `jpeg` or `png`.
        format: String,
        /// The file's bytes.
        data: Vec<u8>,
        /// Width and height from the file's header.
        size: (u32, u32),
    },
}

impl SourceFrame {
    /// Width and height, pixels.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Self::Raw { width, height, .. } => (*width, *height),
            Self::Compressed { size, .. } => *size,
        }
    }

    /// The camera type that takes this frame.
    pub fn kind(&self) -> ImageKind {
        match self {
            Self::Raw { .. } => ImageKind::Image,
            Self::Compressed { .. } => ImageKind::Compressed,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::Raw { data, .. } | Self::Compressed { data, .. } => data.len(),
        }
    }
}

/// A source's frames, by the bag topic they came from (one entry for files and synthetic
/// frames, named after the source).
#[derive(Debug, Clone)]
pub struct Source {
    /// `(topic or source name, frames)`, in order.
    pub streams: Vec<(String, Vec<SourceFrame>)>,
    /// How the source was given, for the report.
    pub description: String,
}

impl Source {
    /// Loads the frames of `spec` (see the module contract for the limits).
    pub fn load(spec: &SourceSpec) -> Result<Self, SourceError> {
        let (description, streams) = match spec {
            SourceSpec::Synthetic {
                width,
                height,
                encoding,
            } => {
                let name = format!("synthetic:{width}x{height}:{}", encoding.as_ros());
                // Sized before anything is allocated: up to 8 distinct frames within the limit.
                let (_, bytes) = frame_bytes(*encoding, *width, *height);
                let count = (MAX_SOURCE_BYTES / bytes.max(1)).min(8);
                if count == 0 {
                    return Err(SourceError::TooLarge {
                        what: name,
                        reason: format!("one frame is {bytes} bytes, over {MAX_SOURCE_BYTES}"),
                    });
                }
                let frames = (0..count as u32)
                    .map(|i| synthetic(*width, *height, *encoding, i))
                    .collect();
                (name.clone(), vec![(name, frames)])
            }
            SourceSpec::Images(dir) => {
                let name = format!("images:{}", dir.display());
                (name.clone(), vec![(name, images(dir)?)])
            }
            SourceSpec::Bag(path) => (format!("bag:{}", path.display()), bag(path)?),
        };
        let what = &description;
        let streams: Vec<_> = streams.into_iter().filter(|(_, f)| !f.is_empty()).collect();
        if streams.is_empty() {
            return Err(SourceError::Empty { what: what.clone() });
        }
        let bytes: usize = streams
            .iter()
            .flat_map(|(_, f)| f)
            .map(SourceFrame::bytes)
            .sum();
        if bytes > MAX_SOURCE_BYTES {
            return Err(SourceError::TooLarge {
                what: what.clone(),
                reason: format!("{bytes} bytes of frames, over {MAX_SOURCE_BYTES}"),
            });
        }
        Ok(Self {
            streams,
            description,
        })
    }

    /// The frames of `topic`, or of the first stream when the source has no topics (files,
    /// synthetic) or `topic` is `None`.
    pub fn frames(&self, topic: Option<&str>) -> Option<&[SourceFrame]> {
        match topic {
            Some(t) if self.streams.len() > 1 || self.streams[0].0.starts_with('/') => self
                .streams
                .iter()
                .find(|(name, _)| name == t)
                .map(|(_, f)| f.as_slice()),
            _ => self.streams.first().map(|(_, f)| f.as_slice()),
        }
    }
}

/// Bytes a packed frame of `encoding` takes (NV21: a half-height chroma plane; NV24: a
/// full-height one of two bytes a pixel).
fn frame_bytes(encoding: PixelEncoding, width: u32, height: u32) -> (usize, usize) {
    let step = width as usize * encoding.bytes_per_pixel();
    let h = height as usize;
    let total = match encoding {
        PixelEncoding::Nv21 => step * (h + h / 2),
        PixelEncoding::Nv24 => step * h * 3,
        _ => step * h,
    };
    (step, total)
}

/// Generated frame `index`: smooth gradients that move with the index plus a little
/// deterministic noise, so that no two frames are the same.
fn synthetic(width: u32, height: u32, encoding: PixelEncoding, index: u32) -> SourceFrame {
    let (step, total) = frame_bytes(encoding, width, height);
    let mut data = vec![0u8; total];
    let mut noise = 0x9e37_79b9_u32.wrapping_mul(index + 1);
    for (i, b) in data.iter_mut().enumerate() {
        let (x, y) = ((i % step.max(1)) as u32, (i / step.max(1)) as u32);
        noise ^= noise << 13;
        noise ^= noise >> 17;
        noise ^= noise << 5;
        *b = ((x / 3 + y + index * 16) as u8).wrapping_add((noise & 15) as u8);
    }
    SourceFrame::Raw {
        width,
        height,
        step_bytes: step,
        encoding: encoding.as_ros().to_string(),
        big_endian: false,
        data,
    }
}

/// The JPEG and PNG files of `dir`, in name order.
fn images(dir: &Path) -> Result<Vec<SourceFrame>, SourceError> {
    let io = |error| SourceError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    paths.sort();
    if paths.len() > MAX_FRAMES {
        return Err(SourceError::TooLarge {
            what: format!("images:{}", dir.display()),
            reason: format!("{} files, over {MAX_FRAMES}", paths.len()),
        });
    }
    let mut frames = Vec::with_capacity(paths.len());
    let mut bytes = 0usize;
    for path in paths {
        let len = std::fs::metadata(&path)
            .map_err(|error| SourceError::Io {
                path: path.clone(),
                error,
            })?
            .len();
        bytes = bytes.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        if bytes > MAX_SOURCE_BYTES {
            return Err(SourceError::TooLarge {
                what: format!("images:{}", dir.display()),
                reason: format!("over {MAX_SOURCE_BYTES} bytes of files"),
            });
        }
        let data = std::fs::read(&path).map_err(|error| SourceError::Io {
            path: path.clone(),
            error,
        })?;
        if let Some(frame) = compressed(data) {
            frames.push(frame);
        } else {
            tracing::warn!(file = %path.display(), "not a JPEG or PNG whose size can be read; left out");
        }
    }
    Ok(frames)
}

/// A JPEG or PNG as a compressed frame, with its size from the header; `None` if unreadable or
/// over [`MAX_SIDE`].
fn compressed(data: Vec<u8>) -> Option<SourceFrame> {
    use crate::core::decode::CompressedFormat;
    let format = CompressedFormat::sniff(&data)?;
    let (w, h) = header_size(&data, format)?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return None;
    }
    let name = match format {
        CompressedFormat::Jpeg => "jpeg",
        CompressedFormat::Png => "png",
    };
    Some(SourceFrame::Compressed {
        format: name.to_string(),
        data,
        size: (w, h),
    })
}

/// Width and height from a PNG's IHDR or a JPEG's start-of-frame marker (the cameras' slots
/// are sized from them before anything is decoded).
fn header_size(data: &[u8], format: crate::core::decode::CompressedFormat) -> Option<(u32, u32)> {
    use crate::core::decode::CompressedFormat;
    let be16 = |i: usize| {
        Some(u32::from(u16::from_be_bytes([
            *data.get(i)?,
            *data.get(i + 1)?,
        ])))
    };
    let be32 = |i: usize| Some(u32::from_be_bytes(data.get(i..i + 4)?.try_into().ok()?));
    match format {
        CompressedFormat::Png => Some((be32(16)?, be32(20)?)),
        CompressedFormat::Jpeg => {
            let mut i = 2;
            while i + 4 <= data.len() {
                if data[i] != 0xff {
                    return None;
                }
                let marker = data[i + 1];
                let len = be16(i + 2)? as usize;
                // Start of frame: SOF0..SOF15 but DHT (c4), JPG (c8) and DAC (cc).
                if (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
                    return Some((be16(i + 7)?, be16(i + 5)?));
                }
                i += 2 + len;
            }
            None
        }
    }
}

/// The image messages of a bag, by topic, up to the limits.
fn bag(path: &Path) -> Result<Vec<(String, Vec<SourceFrame>)>, SourceError> {
    let bag = Bag::open(path)?;
    let mut streams: Vec<(String, Vec<SourceFrame>)> = Vec::new();
    let (mut count, mut bytes, mut over) = (0usize, 0usize, false);
    bag.for_each(|m| {
        let frame = match m.type_name {
            "sensor_msgs/msg/Image" => cdr::image(m.data).ok().map(|i| SourceFrame::Raw {
                width: i.width,
                height: i.height,
                step_bytes: i.step as usize,
                encoding: i.encoding.to_string(),
                big_endian: i.is_bigendian != 0,
                data: i.data.to_vec(),
            }),
            "sensor_msgs/msg/CompressedImage" => cdr::compressed_image(m.data)
                .ok()
                .and_then(|c| compressed(c.data.to_vec())),
            _ => None,
        };
        let Some(frame) = frame else {
            return std::ops::ControlFlow::Continue(());
        };
        count += 1;
        bytes = bytes.saturating_add(frame.bytes());
        if count > MAX_FRAMES || bytes > MAX_SOURCE_BYTES {
            over = true;
            return std::ops::ControlFlow::Break(());
        }
        match streams.iter_mut().find(|(t, _)| t == m.topic) {
            Some((_, f)) => f.push(frame),
            None => streams.push((m.topic.to_string(), vec![frame])),
        }
        std::ops::ControlFlow::Continue(())
    })?;
    if over {
        tracing::warn!(bag = %path.display(), max_frames = MAX_FRAMES, max_bytes = MAX_SOURCE_BYTES, "the bag holds more frames than a source keeps; the first ones are looped");
    }
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_name_the_problem() {
        assert_eq!(
            "synthetic:640x480".parse::<SourceSpec>().unwrap(),
            SourceSpec::Synthetic {
                width: 640,
                height: 480,
                encoding: PixelEncoding::Bgr8
            }
        );
        assert!(matches!(
            "synthetic:64x48:mono16".parse::<SourceSpec>().unwrap(),
            SourceSpec::Synthetic {
                encoding: PixelEncoding::Mono16,
                ..
            }
        ));
        assert_eq!(
            "bag:/x/y".parse::<SourceSpec>().unwrap(),
            SourceSpec::Bag("/x/y".into())
        );
        for bad in [
            "synthetic:0x480",
            "synthetic:99999x10",
            "synthetic:640",
            "synthetic:64x48:jpeg",
            "synthetic:63x48:nv21",
            "camera:/dev/video0",
            "bag:",
            "nothing",
        ] {
            let e = bad.parse::<SourceSpec>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("--source {bad}:")), "{e}");
        }
    }

    #[test]
    fn compressed_sizes_come_from_the_headers() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let home = std::env::var_os("LOOKOUT_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".lookout"));
        let bytes = std::fs::read(home.join("data/images/bus.jpg"))
            .expect("bus.jpg is missing: run scripts/setup.sh first");
        let f = compressed(bytes).unwrap();
        assert_eq!(f.size(), (810, 1080));
        assert_eq!(f.kind(), ImageKind::Compressed);
        // A PNG header: signature, IHDR length and type, then width 3 and height 2.
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 2, 8, 2, 0, 0, 0]);
        assert_eq!(
            header_size(&png, crate::core::decode::CompressedFormat::Png),
            Some((3, 2))
        );
        assert_eq!(
            header_size(b"\xff\xd8\xff", crate::core::decode::CompressedFormat::Jpeg),
            None
        );
    }

    #[test]
    fn a_synthetic_source_over_the_byte_limit_is_refused_before_it_allocates() {
        // 16384 x 16384 rgb16: 1.6 GB a frame, over the 1 GiB of a whole source.
        let spec: SourceSpec = "synthetic:16384x16384:rgb16".parse().unwrap();
        let e = Source::load(&spec).unwrap_err().to_string();
        assert!(e.contains("over 1073741824"), "{e}");
        // 8192 x 8192 bgr8 (201 MB a frame) fits five frames, not eight.
        let spec: SourceSpec = "synthetic:8192x8192".parse().unwrap();
        let s = Source::load(&spec).unwrap();
        assert_eq!(s.streams[0].1.len(), 5);
    }

    #[test]
    fn synthetic_frames_have_the_size_of_their_encoding_and_differ() {
        for (enc, per_px) in [
            (PixelEncoding::Bgr8, 3.0),
            (PixelEncoding::Mono16, 2.0),
            (PixelEncoding::Nv21, 1.5),
            (PixelEncoding::Yuyv, 2.0),
        ] {
            let a = synthetic(64, 48, enc, 0);
            let b = synthetic(64, 48, enc, 1);
            let SourceFrame::Raw { data, .. } = &a else {
                panic!()
            };
            assert_eq!(data.len() as f64, 64.0 * 48.0 * per_px, "{enc:?}");
            assert_ne!(a, b);
            assert_eq!(a, synthetic(64, 48, enc, 0), "deterministic");
        }
    }
}
