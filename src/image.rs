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
}

impl PixelEncoding {
    /// Every supported encoding, in a fixed order (for messages and tests).
    pub const ALL: [PixelEncoding; 5] = [
        PixelEncoding::Rgb8,
        PixelEncoding::Bgr8,
        PixelEncoding::Rgba8,
        PixelEncoding::Bgra8,
        PixelEncoding::Mono8,
    ];

    /// Parses a ROS encoding string. Does not allocate.
    pub fn from_ros(encoding: &str) -> Result<Self, FrameError> {
        match encoding {
            "rgb8" => Ok(Self::Rgb8),
            "bgr8" => Ok(Self::Bgr8),
            "rgba8" => Ok(Self::Rgba8),
            "bgra8" => Ok(Self::Bgra8),
            "mono8" | "8UC1" => Ok(Self::Mono8),
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
        }
    }

    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Rgb8 | Self::Bgr8 => 3,
            Self::Rgba8 | Self::Bgra8 => 4,
            Self::Mono8 => 1,
        }
    }

    /// Byte offsets of red, green and blue inside one pixel.
    pub fn rgb_offsets(self) -> [usize; 3] {
        match self {
            Self::Rgb8 | Self::Rgba8 => [0, 1, 2],
            Self::Bgr8 | Self::Bgra8 => [2, 1, 0],
            Self::Mono8 => [0, 0, 0],
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
    /// The encoding string is not one of rgb8, bgr8, rgba8, bgra8, mono8.
    #[error("unsupported pixel encoding (supported: rgb8, bgr8, rgba8, bgra8, mono8)")]
    UnsupportedEncoding,
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

/// A borrowed raw frame: `height` rows of `step_bytes` bytes, each starting with `width` pixels.
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    width: u32,
    height: u32,
    step_bytes: usize,
    encoding: PixelEncoding,
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
        let need_bytes = step_bytes * (height as usize - 1) + row_bytes;
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
            data,
        })
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
        assert_eq!(
            PixelEncoding::from_ros("yuv422"),
            Err(FrameError::UnsupportedEncoding)
        );
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
