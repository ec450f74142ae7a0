//! Letterbox geometry: where an image lands inside the model's input tensor, and back.
//!
//! Two pixel spaces meet here: **image** space (the camera frame, origin at its top-left pixel
//! corner, x right, y down) and **tensor** space (the model input, same conventions). A letterbox
//! scales the image uniformly to fit the tensor and centres it, padding the rest. The transforms
//! are named after the spaces they map between: [`Letterbox::tensor_from_image`] maps image
//! coordinates into the tensor, [`Letterbox::image_from_tensor`] maps detections back.
//!
//! Nothing here allocates.

use nalgebra::{Matrix3, Point2};

/// The placement of one image inside the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Letterbox {
    /// Source image width in pixels.
    pub image_width: u32,
    /// Source image height in pixels.
    pub image_height: u32,
    /// Width of the scaled image inside the tensor, in pixels.
    pub resized_width: u32,
    /// Height of the scaled image inside the tensor, in pixels.
    pub resized_height: u32,
    /// Columns of padding left of the scaled image.
    pub pad_left: u32,
    /// Rows of padding above the scaled image.
    pub pad_top: u32,
    /// Tensor width in pixels.
    pub tensor_width: u32,
    /// Tensor height in pixels.
    pub tensor_height: u32,
}

impl Letterbox {
    /// Computes the letterbox of a `image_width` x `image_height` image in a `tensor_width` x
    /// `tensor_height` tensor: uniform scale `min(tw/iw, th/ih)`, scaled size rounded to whole
    /// pixels, padding split evenly (the odd pixel goes right/bottom, as in the YOLOv5/v8
    /// reference letterbox). With `center == false` the image sits at the top-left corner.
    pub fn fit(
        image_width: u32,
        image_height: u32,
        tensor_width: u32,
        tensor_height: u32,
        center: bool,
    ) -> Self {
        let iw = f64::from(image_width.max(1));
        let ih = f64::from(image_height.max(1));
        let tw = f64::from(tensor_width);
        let th = f64::from(tensor_height);
        let scale = (tw / iw).min(th / ih);
        let resized_width = ((iw * scale).round() as u32).clamp(1, tensor_width);
        let resized_height = ((ih * scale).round() as u32).clamp(1, tensor_height);
        let (pad_left, pad_top) = if center {
            let dw = f64::from(tensor_width - resized_width) / 2.0;
            let dh = f64::from(tensor_height - resized_height) / 2.0;
            // The -0.1 makes an odd padding put its extra pixel on the right/bottom.
            ((dw - 0.1).round() as u32, (dh - 0.1).round() as u32)
        } else {
            (0, 0)
        };
        Self {
            image_width,
            image_height,
            resized_width,
            resized_height,
            pad_left,
            pad_top,
            tensor_width,
            tensor_height,
        }
    }

    /// Horizontal scale from image to tensor pixels.
    pub fn scale_x(&self) -> f64 {
        f64::from(self.resized_width) / f64::from(self.image_width)
    }

    /// Vertical scale from image to tensor pixels.
    pub fn scale_y(&self) -> f64 {
        f64::from(self.resized_height) / f64::from(self.image_height)
    }

    /// Homogeneous 2D transform taking image pixel coordinates to tensor pixel coordinates.
    pub fn tensor_from_image(&self) -> Matrix3<f64> {
        Matrix3::new(
            self.scale_x(),
            0.0,
            f64::from(self.pad_left),
            0.0,
            self.scale_y(),
            f64::from(self.pad_top),
            0.0,
            0.0,
            1.0,
        )
    }

    /// Homogeneous 2D transform taking tensor pixel coordinates back to image pixel coordinates
    /// (the exact inverse of [`Self::tensor_from_image`]).
    pub fn image_from_tensor(&self) -> Matrix3<f64> {
        let sx = self.scale_x();
        let sy = self.scale_y();
        Matrix3::new(
            1.0 / sx,
            0.0,
            -f64::from(self.pad_left) / sx,
            0.0,
            1.0 / sy,
            -f64::from(self.pad_top) / sy,
            0.0,
            0.0,
            1.0,
        )
    }

    /// Maps a box `[x1, y1, x2, y2]` from tensor to image pixels and clips it to the image.
    pub fn box_image_from_tensor(&self, image_from_tensor: &Matrix3<f64>, b: [f32; 4]) -> [f32; 4] {
        let p1 = image_from_tensor.transform_point(&Point2::new(f64::from(b[0]), f64::from(b[1])));
        let p2 = image_from_tensor.transform_point(&Point2::new(f64::from(b[2]), f64::from(b[3])));
        let w = f64::from(self.image_width);
        let h = f64::from(self.image_height);
        [
            p1.x.clamp(0.0, w) as f32,
            p1.y.clamp(0.0, h) as f32,
            p2.x.clamp(0.0, w) as f32,
            p2.y.clamp(0.0, h) as f32,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landscape_full_hd_in_square_416() {
        let lb = Letterbox::fit(1920, 1080, 416, 416, true);
        assert_eq!((lb.resized_width, lb.resized_height), (416, 234));
        assert_eq!((lb.pad_left, lb.pad_top), (0, 91));
    }

    #[test]
    fn portrait_bus_in_square_416() {
        // bus.jpg is 810x1080: scale 416/1080, width 312, 52 columns each side.
        let lb = Letterbox::fit(810, 1080, 416, 416, true);
        assert_eq!((lb.resized_width, lb.resized_height), (312, 416));
        assert_eq!((lb.pad_left, lb.pad_top), (52, 0));
    }

    #[test]
    fn odd_padding_goes_right_and_bottom() {
        // 3 columns of padding: 1 left, 2 right.
        let lb = Letterbox::fit(413, 416, 416, 416, true);
        assert_eq!(lb.resized_width, 413);
        assert_eq!(lb.pad_left, 1);
    }

    #[test]
    fn top_left_placement_has_no_padding_offset() {
        let lb = Letterbox::fit(1920, 1080, 416, 416, false);
        assert_eq!((lb.pad_left, lb.pad_top), (0, 0));
    }

    #[test]
    fn image_from_tensor_inverts_tensor_from_image() {
        let lb = Letterbox::fit(1280, 720, 640, 640, true);
        let round_trip = lb.image_from_tensor() * lb.tensor_from_image();
        assert!((round_trip - Matrix3::identity()).abs().max() < 1e-12);
        // Image corners land on the scaled image's corners inside the tensor.
        let p = lb
            .tensor_from_image()
            .transform_point(&Point2::new(1280.0, 720.0));
        assert!((p.x - 640.0).abs() < 1e-9);
        assert!((p.y - f64::from(lb.pad_top + lb.resized_height)).abs() < 1e-9);
    }

    #[test]
    fn boxes_are_clipped_to_the_image() {
        let lb = Letterbox::fit(810, 1080, 416, 416, true);
        let m = lb.image_from_tensor();
        let b = lb.box_image_from_tensor(&m, [0.0, -10.0, 416.0, 500.0]);
        assert_eq!(b, [0.0, 0.0, 810.0, 1080.0]);
        let inside = lb.box_image_from_tensor(&m, [52.0, 0.0, 208.0, 208.0]);
        assert!((inside[0] - 0.0).abs() < 1e-3);
        assert!((inside[2] - 405.0).abs() < 1e-3);
        assert!((inside[3] - 540.0).abs() < 1e-3);
    }
}
