//! Decoding of compressed frames (`sensor_msgs/CompressedImage`, image files) into a reusable
//! buffer, then viewed as an [`ImageView`].
//!
//! JPEG is decoded by libjpeg-turbo (vendored, static; SIMD) to rgb8 (grey JPEGs to mono8). With
//! [`Decoder::with_tensor_size`], a JPEG at least twice the size it will be scaled to is decoded
//! directly at 1/2, 1/4 or 1/8 of its size in the DCT domain (libjpeg-turbo's scaled inverse
//! DCT): the smallest of these that is still at least the letterboxed size, so the resampler
//! only ever shrinks. [`Decoder::original_size`] gives the full size, to which detections are
//! mapped. With [`Decoder::with_threads`]`(2)` a second libjpeg-turbo instance on a helper
//! thread decodes the top 70 % of the rows while the caller decodes the rest ([`turbo`]: a band
//! decodes to the same bytes as in a whole-image decode; the caller's band costs more per row,
//! since reaching it means entropy-decoding everything above). PNG is decoded by `zune-png` to
//! rgb8, rgba8 or mono8 (16-bit PNGs reduced to 8 bits).
//!
//! Contract: [`Decoder::new`] allocates the output buffer for `max_width x max_height` rgba8 and
//! the JPEG decompressor; [`Decoder::with_threads`] spawns the helper thread. [`Decoder::decode`] writes into that buffer and never grows it: a larger
//! image is rejected with [`FrameError::TooLarge`] before anything is decoded. Corrupt or
//! truncated data is a [`FrameError::Decode`]. The codecs allocate their own working memory per
//! image (libjpeg-turbo on the C heap, zune-png's inflate state), so compressed input is not
//! allocation-free; raw frames are.

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

pub mod turbo;

use crate::core::geometry::Letterbox;
use crate::core::image::{FrameError, ImageView, PixelEncoding};
use crate::core::preprocess::helper::Helper;
use turbo::Turbo;

/// Compressed image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressedFormat {
    /// JPEG (baseline or progressive).
    Jpeg,
    /// PNG (8 or 16 bit; grey, RGB, RGBA, palette).
    Png,
}

impl CompressedFormat {
    /// The `sensor_msgs/CompressedImage.format` lookout writes for it (`jpeg`, `png`).
    pub fn as_ros(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
        }
    }

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
    /// libjpeg-turbo's decompressor (None if it could not be created: every JPEG is then a
    /// decode error naming why).
    jpeg: Result<Turbo, String>,
    /// A second decompressor on a second thread: each decodes a band of a JPEG's rows.
    split: Option<(Helper, Turbo)>,
    /// The tensor a decoded frame is letterboxed into, for reduced-scale JPEG decoding.
    tensor_size: Option<(u32, u32)>,
    /// Full size of the last image decoded.
    original: (u32, u32),
}

/// Scaled images shorter than this are decoded on one thread.
const MIN_SPLIT_ROWS: usize = 64;

/// The DCT scaling factors tried, smallest first (eighths).
const JPEG_SCALES: [usize; 3] = [1, 2, 4];

impl Decoder {
    /// Allocates room for one `max_width x max_height` rgba8 image (reserved; pages become
    /// resident as images fill them) and the JPEG decompressor.
    pub fn new(max_width: u32, max_height: u32) -> Self {
        let mut buffer = Vec::new();
        buffer.reserve_exact(max_width as usize * max_height as usize * 4);
        Self {
            buffer,
            max_width,
            max_height,
            jpeg: Turbo::new(),
            split: None,
            tensor_size: None,
            original: (0, 0),
        }
    }

    /// Decode JPEGs at a reduced scale when they are at least twice the size they are
    /// letterboxed to in a `width x height` tensor.
    pub fn with_tensor_size(mut self, width: u32, height: u32) -> Self {
        self.tensor_size = Some((width, height));
        self
    }

    /// A new tensor size for reduced-scale decoding (after a model swap); nothing when this
    /// decoder does not decode at a reduced scale.
    pub fn retarget(&mut self, width: u32, height: u32) {
        if self.tensor_size.is_some() {
            self.tensor_size = Some((width, height));
        }
    }

    /// Decode each JPEG on `threads` threads (1 or 2): with 2, a `lookout-preprocess` thread
    /// of the decoder's own decodes the top rows while the caller decodes the rest (the
    /// result is byte-identical). Spawns that thread now; stays on one thread if it cannot.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.split = if threads >= 2 {
            Helper::start().zip(Turbo::new().ok())
        } else {
            None
        };
        self
    }

    /// Threads a JPEG is decoded on (1 or 2).
    pub fn threads(&self) -> usize {
        1 + usize::from(self.split.is_some())
    }

    /// The full size of the last image decoded (the view may be smaller, see the module docs).
    pub fn original_size(&self) -> (u32, u32) {
        self.original
    }

    /// The eighths to decode a `width x height` JPEG at.
    fn jpeg_scale(&self, width: u32, height: u32) -> usize {
        let Some((tw, th)) = self.tensor_size else {
            return 8;
        };
        let lb = Letterbox::fit(width, height, tw, th, true);
        JPEG_SCALES
            .into_iter()
            .find(|&m| {
                let scaled = |d: u32| (d as usize * m).div_ceil(8);
                scaled(width) >= lb.resized_width as usize
                    && scaled(height) >= lb.resized_height as usize
            })
            .unwrap_or(8)
    }

    /// Decodes a JPEG into the buffer; returns the decoded (possibly reduced) size.
    fn decode_jpeg(&mut self, bytes: &[u8]) -> Result<(u32, u32, PixelEncoding), FrameError> {
        let err = |reason: String| FrameError::Decode {
            format: "jpeg",
            reason,
        };
        let header = {
            let jpeg = self.jpeg.as_mut().map_err(|e| err(e.clone()))?;
            jpeg.header(bytes).map_err(err)?
        };
        let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let (w, h) = (to_u32(header.width), to_u32(header.height));
        self.check_size(w, h)?;
        self.original = (w, h);
        let eighths = self.jpeg_scale(w, h);
        let (sw, sh) = (
            turbo::scaled(header.width, eighths),
            turbo::scaled(header.height, eighths),
        );
        let encoding = if header.grey {
            PixelEncoding::Mono8
        } else {
            PixelEncoding::Rgb8
        };
        let pitch = sw * encoding.bytes_per_pixel();
        let len = pitch * sh;
        if len > self.buffer.capacity() {
            return Err(err(format!("decoded size {len} B exceeds the buffer")));
        }
        // Grows within the reserved capacity only (never reallocates).
        if self.buffer.len() < len {
            self.buffer.resize(len, 0);
        }
        let jpeg = self.jpeg.as_mut().map_err(|e| err(e.clone()))?;
        let format = (pitch, header.grey);
        let out = &mut self.buffer[..len];
        match self.split.as_mut().filter(|_| sh >= MIN_SPLIT_ROWS) {
            Some((helper, second)) => {
                // The caller's band costs more per row: reaching its first row means reading
                // (entropy-decoding) every row above it. The helper takes the top 70 %.
                let cut = sh * 7 / 10;
                let (top, bottom) = out.split_at_mut(cut * pitch);
                let mut theirs = Ok(());
                let mut top_band = || {
                    theirs = second.decode_rows(bytes, eighths, (0..cut, sh), top, format);
                };
                let mut ours = Ok(());
                helper.join(&mut top_band, || {
                    ours = jpeg.decode_rows(bytes, eighths, (cut..sh, sh), bottom, format);
                });
                theirs.and(ours).map_err(err)?;
            }
            None => jpeg
                .decode_rows(bytes, eighths, (0..sh, sh), out, format)
                .map_err(err)?,
        }
        Ok((to_u32(sw), to_u32(sh), encoding))
    }

    /// Decodes `bytes` and returns a view of the decoded frame (valid until the next call).
    pub fn decode(
        &mut self,
        bytes: &[u8],
        format: CompressedFormat,
    ) -> Result<ImageView<'_>, FrameError> {
        self.decode_sized(bytes, format).map(|(view, _)| view)
    }

    /// As [`Self::decode`], with the image's full size (larger than the view's when the JPEG was
    /// decoded at a reduced scale).
    pub fn decode_sized(
        &mut self,
        bytes: &[u8],
        format: CompressedFormat,
    ) -> Result<(ImageView<'_>, (u32, u32)), FrameError> {
        let err = |reason: String| FrameError::Decode {
            format: format.name(),
            reason,
        };
        let options = DecoderOptions::default()
            .set_max_width(self.max_width as usize)
            .set_max_height(self.max_height as usize);
        let (width, height, encoding) = match format {
            CompressedFormat::Jpeg => self.decode_jpeg(bytes)?,
            CompressedFormat::Png => {
                png_metadata_within_budget(bytes).map_err(err)?;
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
                if self.buffer.len() < len {
                    self.buffer.resize(len, 0);
                }
                dec.decode_into(&mut self.buffer[..len])
                    .map_err(|e| err(e.to_string()))?;
                self.original = (w, h);
                (w, h, encoding)
            }
        };
        let len = width as usize * height as usize * encoding.bytes_per_pixel();
        let view = ImageView::packed(width, height, encoding, &self.buffer[..len])?;
        Ok((view, self.original))
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

/// Largest total of compressed PNG metadata (`zTXt`, `iTXt`, `iCCP` chunks) a frame may carry:
/// 16 KiB. The PNG decoder inflates these while reading the header, with no limit of its own
/// (deflate expands up to ~1000x: a 9 MB chunk became gigabytes); camera frames carry none.
pub const MAX_PNG_METADATA_BYTES: usize = 16 << 10;

/// Walks a PNG's chunks up to the image data and refuses compressed metadata over
/// [`MAX_PNG_METADATA_BYTES`]. Reads only chunk headers; allocates nothing.
fn png_metadata_within_budget(bytes: &[u8]) -> Result<(), String> {
    const SIGNATURE: usize = 8;
    let mut at = SIGNATURE;
    let mut metadata = 0usize;
    // Each step advances by at least 12 bytes, so this ends within `bytes.len() / 12` steps.
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        match &head[4..8] {
            b"IDAT" | b"IEND" => return Ok(()),
            b"zTXt" | b"iTXt" | b"iCCP" => {
                metadata = metadata.saturating_add(len);
                if metadata > MAX_PNG_METADATA_BYTES {
                    return Err(format!(
                        "compressed metadata (zTXt/iTXt/iCCP) over {MAX_PNG_METADATA_BYTES} B"
                    ));
                }
            }
            _ => {}
        }
        at = at.saturating_add(12).saturating_add(len);
    }
    // Truncated before the image data: the decoder says how.
    Ok(())
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
