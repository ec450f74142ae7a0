//! Borrowed views of raw camera frames (the ingest side of the pipeline).
//!
//! An [`ImageView`] describes a frame exactly the way `sensor_msgs/Image` does: width, height,
//! row step in bytes and a pixel encoding, over a byte slice that the caller owns. Nothing is
//! copied; building a view only checks that the slice is large enough.
//!
//! Contract: nothing in this module allocates, blocks or panics. Invalid frames are reported as
//! [`FrameError`], which carries the numbers a user needs to see what was wrong.

use std::fmt;

/// Pixel encodings accepted from `sensor_msgs/Image` (the strings of
/// `sensor_msgs/image_encodings.hpp`).
///
/// The first five are read directly by the resampler; the others are converted to RGB row by row
/// as the resampler needs them (Bayer mosaics at half resolution, one RGB pixel per 2x2 cell;
/// YUV with the BT.601 limited-range matrix; 16-bit channels by their 8 most significant bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelEncoding {
    /// 8-bit red, green, blue (`rgb8`).
    Rgb8,
    /// 8-bit blue, green, red (`bgr8`), OpenCV's default.
    Bgr8,
    /// 8-bit red, green, blue, alpha (`rgba8`); alpha is ignored.
    Rgba8,
    /// 8-bit blue, green, red, alpha (`bgra8`); alpha is ignored.
    Bgra8,
    /// 8-bit grey (`mono8`), replicated to every colour channel.
    Mono8,
    /// 16-bit grey (`mono16`, `16UC1`).
    Mono16,
    /// 16-bit red, green, blue (`rgb16`).
    Rgb16,
    /// 16-bit blue, green, red (`bgr16`).
    Bgr16,
    /// Bayer mosaic, red at the top-left of each 2x2 cell (`bayer_rggb8`).
    BayerRggb8,
    /// Bayer mosaic, blue at the top-left (`bayer_bggr8`).
    BayerBggr8,
    /// Bayer mosaic, green then blue on even rows (`bayer_gbrg8`).
    BayerGbrg8,
    /// Bayer mosaic, green then red on even rows (`bayer_grbg8`).
    BayerGrbg8,
    /// YUV 4:2:2, bytes U Y0 V Y1 (`yuv422`, `uyvy`).
    Uyvy,
    /// YUV 4:2:2, bytes Y0 U Y1 V (`yuv422_yuy2`, `yuyv`).
    Yuyv,
    /// YUV 4:2:0: the Y plane, then V/U pairs at half width and height (`nv21`).
    Nv21,
    /// YUV 4:4:4: the Y plane, then U/V pairs at full resolution (`nv24`).
    Nv24,
}

impl PixelEncoding {
    /// Every supported encoding, in a fixed order (for messages and tests).
    pub const ALL: [PixelEncoding; 16] = [
        PixelEncoding::Rgb8,
        PixelEncoding::Bgr8,
        PixelEncoding::Rgba8,
        PixelEncoding::Bgra8,
        PixelEncoding::Mono8,
        PixelEncoding::Mono16,
        PixelEncoding::Rgb16,
        PixelEncoding::Bgr16,
        PixelEncoding::BayerRggb8,
        PixelEncoding::BayerBggr8,
        PixelEncoding::BayerGbrg8,
        PixelEncoding::BayerGrbg8,
        PixelEncoding::Uyvy,
        PixelEncoding::Yuyv,
        PixelEncoding::Nv21,
        PixelEncoding::Nv24,
    ];

    /// Parses a ROS encoding string. Does not allocate.
    pub fn from_ros(encoding: &str) -> Result<Self, FrameError> {
        match encoding {
            "rgb8" => Ok(Self::Rgb8),
            "bgr8" => Ok(Self::Bgr8),
            "rgba8" => Ok(Self::Rgba8),
            "bgra8" => Ok(Self::Bgra8),
            "mono8" | "8UC1" => Ok(Self::Mono8),
            "mono16" | "16UC1" => Ok(Self::Mono16),
            "rgb16" => Ok(Self::Rgb16),
            "bgr16" => Ok(Self::Bgr16),
            "bayer_rggb8" => Ok(Self::BayerRggb8),
            "bayer_bggr8" => Ok(Self::BayerBggr8),
            "bayer_gbrg8" => Ok(Self::BayerGbrg8),
            "bayer_grbg8" => Ok(Self::BayerGrbg8),
            "yuv422" | "uyvy" => Ok(Self::Uyvy),
            "yuv422_yuy2" | "yuyv" => Ok(Self::Yuyv),
            "nv21" => Ok(Self::Nv21),
            "nv24" => Ok(Self::Nv24),
            _ => Err(FrameError::UnsupportedEncoding),
        }
    }

    /// The ROS encoding string.
    pub fn as_ros(self) -> &'static str {
        match self {
            Self::Rgb8 => "rgb8",
            Self::Bgr8 => "bgr8",
            Self::Rgba8 => "rgba8",
            Self::Bgra8 => "bgra8",
            Self::Mono8 => "mono8",
            Self::Mono16 => "mono16",
            Self::Rgb16 => "rgb16",
            Self::Bgr16 => "bgr16",
            Self::BayerRggb8 => "bayer_rggb8",
            Self::BayerBggr8 => "bayer_bggr8",
            Self::BayerGbrg8 => "bayer_gbrg8",
            Self::BayerGrbg8 => "bayer_grbg8",
            Self::Uyvy => "yuv422",
            Self::Yuyv => "yuv422_yuy2",
            Self::Nv21 => "nv21",
            Self::Nv24 => "nv24",
        }
    }

    /// Bytes per pixel of a row (for NV21/NV24: of the Y plane's rows).
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Rgb8 | Self::Bgr8 => 3,
            Self::Rgba8 | Self::Bgra8 => 4,
            Self::Mono8 | Self::Nv21 | Self::Nv24 => 1,
            Self::BayerRggb8 | Self::BayerBggr8 | Self::BayerGbrg8 | Self::BayerGrbg8 => 1,
            Self::Mono16 | Self::Uyvy | Self::Yuyv => 2,
            Self::Rgb16 | Self::Bgr16 => 6,
        }
    }

    /// Whether the resampler reads the pixels as they are (8-bit RGB, BGR, RGBA, BGRA, grey);
    /// the others are converted to RGB first.
    pub fn is_direct(self) -> bool {
        matches!(
            self,
            Self::Rgb8 | Self::Bgr8 | Self::Rgba8 | Self::Bgra8 | Self::Mono8
        )
    }

    /// Byte offsets of red, green and blue inside one pixel (direct encodings; RGB order for
    /// the converted ones, whose rows are RGB).
    pub fn rgb_offsets(self) -> [usize; 3] {
        match self {
            Self::Bgr8 | Self::Bgra8 => [2, 1, 0],
            Self::Mono8 => [0, 0, 0],
            _ => [0, 1, 2],
        }
    }
}

impl fmt::Display for PixelEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_ros())
    }
}

/// Why a frame cannot be processed. Each variant is a bad input, never a bug: the caller counts
/// it and goes on with the next frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The encoding string is not a supported one.
    #[error(
        "unsupported pixel encoding (supported: rgb8, bgr8, rgba8, bgra8, mono8, mono16, rgb16, bgr16, bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8, yuv422, yuv422_yuy2, nv21, nv24)"
    )]
    UnsupportedEncoding,
    /// The encoding needs even dimensions (4:2:2 width, 4:2:0 width and height) or at least
    /// 2x2 pixels (Bayer).
    #[error("{encoding} needs {need}, got {width}x{height}")]
    OddSize {
        /// The encoding.
        encoding: &'static str,
        /// What it needs.
        need: &'static str,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// Width or height is zero.
    #[error("empty frame: {width}x{height}")]
    Empty {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The row step is smaller than width x bytes per pixel.
    #[error("row step {step_bytes} B is smaller than width x bytes per pixel = {min_step_bytes} B")]
    StepTooSmall {
        /// The frame's row step.
        step_bytes: usize,
        /// The smallest valid row step.
        min_step_bytes: usize,
    },
    /// The data is shorter than the header promises.
    #[error("frame data is {len_bytes} B, but {height} rows of {step_bytes} B need {need_bytes} B")]
    DataTooShort {
        /// Length of the data.
        len_bytes: usize,
        /// Rows in the frame.
        height: u32,
        /// Row step.
        step_bytes: usize,
        /// Bytes needed.
        need_bytes: usize,
    },
    /// A compressed frame could not be decoded.
    #[error("cannot decode {format} image: {reason}")]
    Decode {
        /// `jpeg` or `png`.
        format: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// A compressed frame's format string is neither JPEG nor PNG.
    #[error("unsupported compressed format (supported: jpeg, png)")]
    UnsupportedFormat,
    /// The header's `frame_id` does not fit the frame slot.
    #[error("frame_id is {len_bytes} B, more than the {max_bytes} B reserved")]
    FrameIdTooLong {
        /// Length of the id.
        len_bytes: usize,
        /// Bytes reserved.
        max_bytes: usize,
    },
    /// A frame is larger than the configured maximum.
    #[error("frame {width}x{height} exceeds the maximum {max_width}x{max_height}")]
    TooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Largest accepted width.
        max_width: u32,
        /// Largest accepted height.
        max_height: u32,
    },
}

/// A borrowed raw frame: `height` rows of `step_bytes` bytes, each starting with `width` pixels
/// (NV21/NV24: the Y plane so, then the chroma plane; see [`ImageView::chroma_row`]).
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    width: u32,
    height: u32,
    step_bytes: usize,
    encoding: PixelEncoding,
    big_endian: bool,
    data: &'a [u8],
}

impl<'a> ImageView<'a> {
    /// Checks the header against the data and builds a view. Does not allocate or copy.
    ///
    /// The last row may be shorter than `step_bytes` (only its pixels must be present), as some
    /// drivers trim the final padding.
    pub fn new(
        width: u32,
        height: u32,
        step_bytes: usize,
        encoding: PixelEncoding,
        data: &'a [u8],
    ) -> Result<Self, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::Empty { width, height });
        }
        let row_bytes = width as usize * encoding.bytes_per_pixel();
        if step_bytes < row_bytes {
            return Err(FrameError::StepTooSmall {
                step_bytes,
                min_step_bytes: row_bytes,
            });
        }
        let odd = |need: &'static str| FrameError::OddSize {
            encoding: encoding.as_ros(),
            need,
            width,
            height,
        };
        let (w, h) = (width as usize, height as usize);
        let need_bytes = match encoding {
            PixelEncoding::Uyvy | PixelEncoding::Yuyv if w % 2 == 1 => {
                return Err(odd("an even width"));
            }
            PixelEncoding::Nv21 if w % 2 == 1 || h % 2 == 1 => {
                return Err(odd("an even width and height"));
            }
            PixelEncoding::BayerRggb8
            | PixelEncoding::BayerBggr8
            | PixelEncoding::BayerGbrg8
            | PixelEncoding::BayerGrbg8
                if w < 2 || h < 2 =>
            {
                return Err(odd("at least 2x2 pixels"));
            }
            // The Y plane, then h/2 chroma rows of `step` bytes (w used). Saturating: a header
            // whose size overflows needs more data than any frame has.
            PixelEncoding::Nv21 => step_bytes.saturating_mul(h + h / 2 - 1).saturating_add(w),
            // The Y plane, then h chroma rows of `2 step` bytes (2w used).
            PixelEncoding::Nv24 => step_bytes
                .saturating_mul(h + 2 * (h - 1))
                .saturating_add(2 * w),
            _ => step_bytes.saturating_mul(h - 1).saturating_add(row_bytes),
        };
        if data.len() < need_bytes {
            return Err(FrameError::DataTooShort {
                len_bytes: data.len(),
                height,
                step_bytes,
                need_bytes,
            });
        }
        Ok(Self {
            width,
            height,
            step_bytes,
            encoding,
            big_endian: false,
            data,
        })
    }

    /// The same view with 16-bit samples in big-endian byte order (`is_bigendian` of the
    /// message; 8-bit encodings ignore it).
    pub fn with_big_endian(mut self, big_endian: bool) -> Self {
        self.big_endian = big_endian;
        self
    }

    /// Whether 16-bit samples are big-endian.
    pub fn big_endian(&self) -> bool {
        self.big_endian
    }

    /// NV21/NV24: chroma row `y` (NV21: `y < height / 2`, `width` bytes of V/U pairs; NV24:
    /// `y < height`, `2 * width` bytes of U/V pairs). Empty for the other encodings.
    pub fn chroma_row(&self, y: u32) -> &'a [u8] {
        let (w, h, step) = (self.width as usize, self.height as usize, self.step_bytes);
        let (start, len) = match self.encoding {
            PixelEncoding::Nv21 => (step * h + y as usize * step, w),
            PixelEncoding::Nv24 => (step * h + y as usize * 2 * step, 2 * w),
            _ => return &[],
        };
        self.data.get(start..start + len).unwrap_or(&[])
    }

    /// A tightly packed frame (row step = width x bytes per pixel).
    pub fn packed(
        width: u32,
        height: u32,
        encoding: PixelEncoding,
        data: &'a [u8],
    ) -> Result<Self, FrameError> {
        Self::new(
            width,
            height,
            width as usize * encoding.bytes_per_pixel(),
            encoding,
            data,
        )
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row step in bytes.
    pub fn step_bytes(&self) -> usize {
        self.step_bytes
    }

    /// Pixel encoding.
    pub fn encoding(&self) -> PixelEncoding {
        self.encoding
    }

    /// The underlying bytes, including row padding.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The pixels of row `y` (without row padding). `y` must be below `height`.
    #[inline]
    pub fn row(&self, y: u32) -> &'a [u8] {
        let start = y as usize * self.step_bytes;
        &self.data[start..start + self.width as usize * self.encoding.bytes_per_pixel()]
    }

    /// Iterates over rows from `start_row` (without padding).
    pub fn rows(&self, start_row: u32) -> impl Iterator<Item = &'a [u8]> + 'a {
        let view = *self;
        (start_row..self.height).map(move |y| view.row(y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip_through_ros_strings() {
        for e in PixelEncoding::ALL {
            assert_eq!(PixelEncoding::from_ros(e.as_ros()), Ok(e));
        }
        assert_eq!(PixelEncoding::from_ros("uyvy"), Ok(PixelEncoding::Uyvy));
        assert_eq!(PixelEncoding::from_ros("16UC1"), Ok(PixelEncoding::Mono16));
        for unsupported in ["32FC1", "bayer_rggb16", "yuv420", ""] {
            assert_eq!(
                PixelEncoding::from_ros(unsupported),
                Err(FrameError::UnsupportedEncoding)
            );
        }
    }

    #[test]
    fn view_checks_step_and_length() {
        let data = vec![0u8; 10 * 4 * 3];
        assert!(ImageView::new(4, 10, 12, PixelEncoding::Rgb8, &data).is_ok());
        assert_eq!(
            ImageView::new(4, 10, 11, PixelEncoding::Rgb8, &data).unwrap_err(),
            FrameError::StepTooSmall {
                step_bytes: 11,
                min_step_bytes: 12
            }
        );
        assert!(matches!(
            ImageView::new(4, 10, 16, PixelEncoding::Rgb8, &data),
            Err(FrameError::DataTooShort {
                need_bytes: 156,
                ..
            })
        ));
        assert!(matches!(
            ImageView::new(0, 10, 16, PixelEncoding::Rgb8, &data),
            Err(FrameError::Empty { .. })
        ));
    }

    #[test]
    fn padded_rows_skip_the_padding() {
        // 2x2 mono8 with a step of 3: the padding byte (9) must never appear in a row.
        let data = [1u8, 2, 9, 3, 4];
        let view = ImageView::new(2, 2, 3, PixelEncoding::Mono8, &data).unwrap();
        let rows: Vec<&[u8]> = view.rows(0).collect();
        assert_eq!(rows, vec![&[1u8, 2][..], &[3u8, 4][..]]);
    }
}
