//! A TurboJPEG decompressor (libjpeg-turbo, vendored and static) that can decode one band of
//! rows of a JPEG: the band's rows are decoded exactly as in a whole-image decode (checked
//! byte for byte in `tests`), so two handles on two threads can share one image.
//!
//! Contract: [`Turbo::new`] allocates the TurboJPEG instance. [`Turbo::decode_rows`] blocks
//! for the decode; libjpeg-turbo allocates its working memory per image on the C heap. Every
//! failure (corrupt, truncated or unsupported data) is an error carrying libjpeg-turbo's
//! message; nothing panics.

use std::ops::Range;
use std::ptr::NonNull;

use turbojpeg::raw;

/// The most scans a progressive JPEG may have. Each scan is a pass over the whole image, so a
/// file with thousands of tiny scans costs seconds of decoding from a few kilobytes; encoders
/// write about ten. A JPEG with more is refused as bad input.
pub const MAX_JPEG_SCANS: libc::c_int = 100;

/// What the header of a JPEG says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Full width, pixels.
    pub width: usize,
    /// Full height, pixels.
    pub height: usize,
    /// Single-channel (greyscale) image.
    pub grey: bool,
}

/// One TurboJPEG decompression instance.
pub struct Turbo {
    handle: NonNull<std::ffi::c_void>,
}

// SAFETY: a TurboJPEG instance holds no thread-local state; it may be used from any thread as
// long as one thread at a time does, which `&mut self` on every call guarantees.
unsafe impl Send for Turbo {}

impl Drop for Turbo {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once, here.
        unsafe { raw::tj3Destroy(self.handle.as_ptr()) }
    }
}

/// `eighths / 8` as the reduced fraction TurboJPEG's list of scaling factors holds.
fn scaling_factor(eighths: usize) -> raw::tjscalingfactor {
    let (mut num, mut denom) = (eighths.clamp(1, 16), 8);
    while num % 2 == 0 && denom % 2 == 0 {
        num /= 2;
        denom /= 2;
    }
    raw::tjscalingfactor {
        num: num as libc::c_int,
        denom: denom as libc::c_int,
    }
}

/// A size scaled by `eighths / 8`, rounded up (TurboJPEG's `TJSCALED`).
pub fn scaled(size: usize, eighths: usize) -> usize {
    (size * eighths).div_ceil(8)
}

impl Turbo {
    /// A new decompression instance.
    pub fn new() -> Result<Self, String> {
        // SAFETY: tj3Init takes a plain integer and returns a handle or null.
        let handle = unsafe { raw::tj3Init(raw::TJINIT_TJINIT_DECOMPRESS as libc::c_int) };
        let turbo = NonNull::new(handle)
            .map(|handle| Self { handle })
            .ok_or_else(|| "cannot create a TurboJPEG decompressor".to_string())?;
        // SAFETY: tj3Set sets an integer parameter of a valid instance.
        let set = unsafe {
            raw::tj3Set(
                turbo.handle.as_ptr(),
                raw::TJPARAM_TJPARAM_SCANLIMIT as libc::c_int,
                MAX_JPEG_SCANS,
            )
        };
        if set != 0 {
            return Err(turbo.error());
        }
        Ok(turbo)
    }

    /// libjpeg-turbo's message for the last failure of this instance.
    fn error(&self) -> String {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the instance (or a
        // static one), valid until the next call on it; it is copied out at once.
        unsafe { std::ffi::CStr::from_ptr(raw::tj3GetErrorStr(self.handle.as_ptr())) }
            .to_string_lossy()
            .into_owned()
    }

    /// Reads the header of `jpeg`.
    pub fn header(&mut self, jpeg: &[u8]) -> Result<Header, String> {
        let h = self.handle.as_ptr();
        // SAFETY: `jpeg` is a valid slice for its length; the instance only reads it.
        if unsafe { raw::tj3DecompressHeader(h, jpeg.as_ptr(), jpeg.len() as raw::size_t) } != 0 {
            return Err(self.error());
        }
        // SAFETY: tj3Get reads a parameter of the instance; no memory is passed.
        let get = |p: raw::TJPARAM| unsafe { raw::tj3Get(h, p as libc::c_int) };
        let dim = |v: libc::c_int| usize::try_from(v).map_err(|_| "no image size in the header");
        Ok(Header {
            width: dim(get(raw::TJPARAM_TJPARAM_JPEGWIDTH))?,
            height: dim(get(raw::TJPARAM_TJPARAM_JPEGHEIGHT))?,
            grey: get(raw::TJPARAM_TJPARAM_COLORSPACE) == raw::TJCS_TJCS_GRAY as libc::c_int,
        })
    }

    /// Decodes rows `rows` of `jpeg` scaled by `eighths / 8` (rows of the scaled image, whose
    /// height is `height`) into `out`, `pitch` bytes per row, RGB8 (mono8 if `grey`).
    pub fn decode_rows(
        &mut self,
        jpeg: &[u8],
        eighths: usize,
        (rows, height): (Range<usize>, usize),
        out: &mut [u8],
        (pitch, grey): (usize, bool),
    ) -> Result<(), String> {
        let h = self.handle.as_ptr();
        if rows.start >= rows.end || rows.end > height || out.len() < pitch * rows.len() {
            return Err(format!(
                "band {rows:?} of {height} rows does not fit its buffer"
            ));
        }
        let int = |v: usize| libc::c_int::try_from(v).map_err(|_| format!("{v} is too large"));
        let region = if rows.len() == height {
            raw::tjregion {
                x: 0,
                y: 0,
                w: 0,
                h: 0,
            } // TJUNCROPPED
        } else {
            raw::tjregion {
                x: 0,
                y: int(rows.start)?,
                w: 0,
                h: int(rows.len())?,
            }
        };
        let format = if grey {
            raw::TJPF_TJPF_GRAY
        } else {
            raw::TJPF_TJPF_RGB
        } as libc::c_int;
        let pitch = int(pitch)?;
        // SAFETY: `jpeg` is read within its length. The header is read first (the cropping
        // region needs it); `out` holds `pitch` bytes for each of the band's rows (checked
        // above), which is exactly what tj3Decompress8 writes for a region `rows.len()` high.
        let rc = unsafe {
            let len = jpeg.len() as raw::size_t;
            if raw::tj3DecompressHeader(h, jpeg.as_ptr(), len) != 0
                || raw::tj3SetScalingFactor(h, scaling_factor(eighths)) != 0
                || raw::tj3SetCroppingRegion(h, region) != 0
            {
                -1
            } else {
                raw::tj3Decompress8(h, jpeg.as_ptr(), len, out.as_mut_ptr(), pitch, format)
            }
        };
        if rc != 0 {
            return Err(self.error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_are_reduced_to_the_ones_turbojpeg_lists() {
        let f = |e| {
            let s = scaling_factor(e);
            (s.num, s.denom)
        };
        assert_eq!(f(8), (1, 1));
        assert_eq!(f(4), (1, 2));
        assert_eq!(f(2), (1, 4));
        assert_eq!(f(1), (1, 8));
        assert_eq!(f(3), (3, 8));
        assert_eq!(scaled(1281, 4), 641);
    }

    #[test]
    fn progressive_jpegs_with_too_many_scans_are_refused() {
        let image = turbojpeg::Image::mandelbrot(64, 48, turbojpeg::PixelFormat::RGB);
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_progressive(true).unwrap();
        let jpeg = c.compress_to_vec(image.as_deref()).unwrap();
        let mut out = vec![0u8; 64 * 48 * 3];
        // Within the limit (an encoder's ten or so scans): decoded.
        let mut t = Turbo::new().unwrap();
        // SAFETY: tj3Get reads an integer parameter of a valid instance.
        let limit = unsafe {
            raw::tj3Get(
                t.handle.as_ptr(),
                raw::TJPARAM_TJPARAM_SCANLIMIT as libc::c_int,
            )
        };
        assert_eq!(limit, MAX_JPEG_SCANS);
        t.header(&jpeg).unwrap();
        t.decode_rows(&jpeg, 8, (0..48, 48), &mut out, (64 * 3, false))
            .unwrap();
        // The same file against a limit below its scan count: refused, as a file with more
        // than MAX_JPEG_SCANS is.
        // SAFETY: as above, setting it.
        assert_eq!(
            unsafe {
                raw::tj3Set(
                    t.handle.as_ptr(),
                    raw::TJPARAM_TJPARAM_SCANLIMIT as libc::c_int,
                    2,
                )
            },
            0
        );
        t.header(&jpeg).unwrap();
        let e = t
            .decode_rows(&jpeg, 8, (0..48, 48), &mut out, (64 * 3, false))
            .unwrap_err();
        assert!(e.contains("scan"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut t = Turbo::new().unwrap();
        assert!(t.header(b"not a jpeg").is_err());
        let mut out = vec![0u8; 64];
        assert!(
            t.decode_rows(b"\xff\xd8\xff", 8, (0..1, 1), &mut out, (3, false))
                .is_err()
        );
        // A band that does not fit is refused before libjpeg-turbo sees it.
        assert!(
            t.decode_rows(b"", 8, (0..4, 2), &mut out, (3, false))
                .is_err()
        );
    }
}
