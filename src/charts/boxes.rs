//! Detections drawn on the image they came from (`lookout detect --draw`): each box as a
//! rectangle outline in its class's colour, the image written as PNG.
//!
//! Contract: allocates the RGB copy and the PNG; runs off the per-frame path (a command-line
//! tool's output).

use crate::core::image::{ImageView, PixelEncoding};

/// A distinct, saturated colour for class `id` (golden-angle hues).
pub fn class_color(id: u32) -> [u8; 3] {
    let h = (id as f64 * 137.508) % 360.0;
    let (s, v) = (0.85, 0.95);
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r, g, b].map(|v| ((v + m) * 255.0).round() as u8)
}

/// A packed RGB copy of a decoded 8-bit RGB or grey view; `None` for other encodings.
pub fn rgb_of(view: &ImageView<'_>) -> Option<Vec<u8>> {
    let (w, h) = (view.width() as usize, view.height() as usize);
    let mut out = Vec::with_capacity(w * h * 3);
    for row in view.rows(0) {
        match view.encoding() {
            PixelEncoding::Rgb8 => out.extend_from_slice(&row[..w * 3]),
            PixelEncoding::Mono8 => row[..w].iter().for_each(|&v| out.extend([v, v, v])),
            _ => return None,
        }
    }
    Some(out)
}

/// Draws the outline of `bbox` (`[x1, y1, x2, y2]`, image pixels, clipped) `thickness` pixels
/// wide into the packed RGB image `rgb` (`width` x `height`).
pub fn draw_box(
    rgb: &mut [u8],
    width: u32,
    height: u32,
    bbox: [f32; 4],
    color: [u8; 3],
    thickness: u32,
) {
    let (w, h) = (width as i64, height as i64);
    if w == 0 || h == 0 || rgb.len() < (w * h * 3) as usize {
        return;
    }
    let clamp_x = |v: f32| (v.floor() as i64).clamp(0, w - 1);
    let clamp_y = |v: f32| (v.floor() as i64).clamp(0, h - 1);
    let (x1, y1, x2, y2) = (
        clamp_x(bbox[0]),
        clamp_y(bbox[1]),
        clamp_x(bbox[2]),
        clamp_y(bbox[3]),
    );
    let t = i64::from(thickness.max(1));
    let mut put = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let i = ((y * w + x) * 3) as usize;
            rgb[i..i + 3].copy_from_slice(&color);
        }
    };
    for k in 0..t {
        for x in x1..=x2 {
            put(x, y1 + k);
            put(x, y2 - k);
        }
        for y in y1..=y2 {
            put(x1 + k, y);
            put(x2 - k, y);
        }
    }
}

/// The packed RGB image as a PNG file's bytes.
pub fn png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    use zune_core::bit_depth::BitDepth;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::EncoderOptions;
    if width == 0 || height == 0 || rgb.len() != width as usize * height as usize * 3 {
        return Err(format!(
            "{width}x{height} RGB needs {} bytes, got {}",
            width as usize * height as usize * 3,
            rgb.len()
        ));
    }
    let options = EncoderOptions::new(
        width as usize,
        height as usize,
        ColorSpace::RGB,
        BitDepth::Eight,
    );
    let mut out = Vec::new();
    zune_png::PngEncoder::new(rgb, options)
        .encode(&mut out)
        .map_err(|e| format!("{e:?}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_is_an_outline_clipped_to_the_image_and_the_png_decodes() {
        let (w, h) = (20u32, 10u32);
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        draw_box(&mut rgb, w, h, [2.0, 1.0, 30.0, 8.0], [255, 0, 0], 1);
        let at = |x: u32, y: u32| &rgb[((y * w + x) * 3) as usize..][..3];
        assert_eq!(at(2, 1), [255, 0, 0]);
        assert_eq!(at(19, 8), [255, 0, 0], "clipped to the right edge");
        assert_eq!(at(5, 4), [0, 0, 0], "inside is untouched");
        let bytes = png(&rgb, w, h).unwrap();
        let mut d = crate::core::decode::Decoder::new(64, 64);
        let v = d
            .decode(&bytes, crate::core::decode::CompressedFormat::Png)
            .unwrap();
        assert_eq!((v.width(), v.height()), (w, h));
        assert_eq!(rgb_of(&v).unwrap(), rgb);
        assert_ne!(class_color(0), class_color(1));
    }
}
