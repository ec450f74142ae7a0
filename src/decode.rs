//! Decoding of compressed frames (`sensor_msgs/CompressedImage`, image files) into a reusable
//! buffer, then viewed as an [`ImageView`].
//!
//! JPEG is decoded by `zune-jpeg` to rgb8 (grey JPEGs to mono8), PNG by `zune-png` to rgb8,
//! rgba8 or mono8 (16-bit PNGs are reduced to 8 bits).
//!
//! Contract: [`Decoder::new`] allocates the output buffer for `max_width x max_height` rgba8.
//! [`Decoder::decode`] writes into that buffer and never grows it: a larger image is rejected
//! with [`FrameError::TooLarge`]. The codecs allocate their own working memory per image (Huffman
//! tables, PNG inflate state), so compressed input is not allocation-free; raw frames are.

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

use crate::image::{FrameError, ImageView, PixelEncoding};

/// Compressed image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressedFormat {
    /// JPEG (baseline or progressive).
    Jpeg,
    /// PNG (8 or 16 bit; grey, RGB, RGBA, palette).
    Png,
}

impl CompressedFormat {
    /// Parses `sensor_msgs/CompressedImage.format`: `jpeg`, `png`, or the `image_transport` form
    /// `"<encoding>; jpeg compressed <type>"`. Case-insensitive.
    pub fn from_ros(format: &str) -> Result<Self, FrameError> {
        let f = format.trim();
        let has = |needle: &str| {
            f.as_bytes()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        };
        if has("jpeg") || has("jpg") {
            Ok(Self::Jpeg)
        } else if has("png") {
            Ok(Self::Png)
        } else {
            Err(FrameError::UnsupportedFormat)
        }
    }

    /// Guesses the format from the first bytes (magic numbers).
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
        }
    }
}

/// Decodes compressed frames into one preallocated buffer.
pub struct Decoder {
    buffer: Vec<u8>,
    max_width: u32,
    max_height: u32,
}

impl Decoder {
    /// Allocates room for one `max_width x max_height` rgba8 image.
    pub fn new(max_width: u32, max_height: u32) -> Self {
        Self {
            buffer: vec![0u8; max_width as usize * max_height as usize * 4],
            max_width,
            max_height,
        }
    }

    /// Decodes `bytes` and returns a view of the decoded frame (valid until the next call).
    pub fn decode(
        &mut self,
        bytes: &[u8],
        format: CompressedFormat,
    ) -> Result<ImageView<'_>, FrameError> {
        let err = |reason: String| FrameError::Decode {
            format: format.name(),
            reason,
        };
        let options = DecoderOptions::default()
            .set_max_width(self.max_width as usize)
            .set_max_height(self.max_height as usize);
        let (width, height, encoding) = match format {
            CompressedFormat::Jpeg => {
                let mut dec =
                    zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
                dec.decode_headers().map_err(|e| err(e.to_string()))?;
                let info = dec.info().ok_or_else(|| err("no image header".into()))?;
                let (w, h) = (u32::from(info.width), u32::from(info.height));
                self.check_size(w, h)?;
                let grey = matches!(dec.input_colorspace(), Some(ColorSpace::Luma));
                let (space, encoding) = if grey {
                    (ColorSpace::Luma, PixelEncoding::Mono8)
                } else {
                    (ColorSpace::RGB, PixelEncoding::Rgb8)
                };
                dec.set_options(options.jpeg_set_out_colorspace(space));
                let len = w as usize * h as usize * encoding.bytes_per_pixel();
                dec.decode_into(&mut self.buffer[..len])
                    .map_err(|e| err(e.to_string()))?;
                (w, h, encoding)
            }
            CompressedFormat::Png => {
                let mut dec = zune_png::PngDecoder::new_with_options(
                    ZCursor::new(bytes),
                    options.png_set_strip_to_8bit(true),
                );
                dec.decode_headers().map_err(|e| err(e.to_string()))?;
                let (w, h) = dec
                    .dimensions()
                    .ok_or_else(|| err("no image header".into()))?;
                let (w, h) = (w as u32, h as u32);
                self.check_size(w, h)?;
                let encoding = match dec.colorspace() {
                    Some(ColorSpace::Luma) => PixelEncoding::Mono8,
                    Some(ColorSpace::RGBA) | Some(ColorSpace::LumaA) => PixelEncoding::Rgba8,
                    Some(ColorSpace::RGB) => PixelEncoding::Rgb8,
                    other => return Err(err(format!("unsupported PNG colour space {other:?}"))),
                };
                if matches!(dec.colorspace(), Some(ColorSpace::LumaA)) {
                    return Err(err("grey+alpha PNG is not supported".into()));
                }
                let len = dec
                    .output_buffer_size()
                    .ok_or_else(|| err("no image header".into()))?;
                if len != w as usize * h as usize * encoding.bytes_per_pixel() {
                    return Err(err(format!("unexpected decoded size {len} B")));
                }
                dec.decode_into(&mut self.buffer[..len])
                    .map_err(|e| err(e.to_string()))?;
                (w, h, encoding)
            }
        };
        let len = width as usize * height as usize * encoding.bytes_per_pixel();
        ImageView::packed(width, height, encoding, &self.buffer[..len])
    }

    fn check_size(&self, width: u32, height: u32) -> Result<(), FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::Empty { width, height });
        }
        if width > self.max_width || height > self.max_height {
            return Err(FrameError::TooLarge {
                width,
                height,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ros_format_strings() {
        assert_eq!(
            CompressedFormat::from_ros("jpeg"),
            Ok(CompressedFormat::Jpeg)
        );
        assert_eq!(
            CompressedFormat::from_ros("bgr8; jpeg compressed bgr8"),
            Ok(CompressedFormat::Jpeg)
        );
        assert_eq!(CompressedFormat::from_ros("PNG"), Ok(CompressedFormat::Png));
        assert_eq!(
            CompressedFormat::from_ros("theora"),
            Err(FrameError::UnsupportedFormat)
        );
    }

    #[test]
    fn sniffing_magic_numbers() {
        assert_eq!(
            CompressedFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(CompressedFormat::Jpeg)
        );
        assert_eq!(
            CompressedFormat::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(CompressedFormat::Png)
        );
        assert_eq!(CompressedFormat::sniff(b"GIF89a"), None);
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        let mut d = Decoder::new(64, 64);
        for format in [CompressedFormat::Jpeg, CompressedFormat::Png] {
            let e = d.decode(b"\xFF\xD8\xFF\x00 definitely not an image", format);
            assert!(matches!(e, Err(FrameError::Decode { .. })), "{e:?}");
        }
        assert!(d.decode(&[], CompressedFormat::Jpeg).is_err());
    }
}
