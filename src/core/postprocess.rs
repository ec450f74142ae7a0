//! Post-processing: the model's raw output tensor into a list of detections in image pixels.
//!
//! Steps: decode every candidate row of the output (layout per [`DecoderKind`]), drop those under
//! the confidence threshold, sort by score, greedy non-maximum suppression (per class unless
//! class-agnostic), keep the top `max_detections`, and map each box from tensor to image pixels
//! through the letterbox's `image_from_tensor` transform (clipped to the image).
//!
//! Contract: [`Postprocessor::new`] allocates the candidate buffer (one slot per output row) and
//! the detection list (`max_detections` slots). [`Postprocessor::run`] allocates nothing, does not
//! block and cannot fail: non-finite values in the output are skipped and counted.
//! The result is a pure function of the output tensor: ties in score are broken by row index, so
//! the same tensor always gives the same list in the same order.

use std::cmp::Ordering;

use crate::core::geometry::Letterbox;
use crate::core::model::{DecoderKind, OutputSpec, Thresholds};

/// One detection in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Class index into the model's class names.
    pub class_id: u32,
    /// Confidence in 0..1.
    pub score: f32,
    /// Box `[x1, y1, x2, y2]` in image pixels (top-left corner, bottom-right corner).
    pub bbox: [f32; 4],
}

impl Detection {
    /// Box centre `(x, y)` in image pixels.
    pub fn center(&self) -> (f32, f32) {
        (
            (self.bbox[0] + self.bbox[2]) / 2.0,
            (self.bbox[1] + self.bbox[3]) / 2.0,
        )
    }

    /// Box size `(width, height)` in image pixels.
    pub fn size(&self) -> (f32, f32) {
        (self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1])
    }
}

/// A decoded row before suppression, in tensor pixels.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    class_id: u32,
    row: u32,
    bbox: [f32; 4],
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (0 when either is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area_a = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
    let area_b = (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let union = area_a + area_b - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Output tensor to detections, for one model output. Owns all its buffers.
pub struct Postprocessor {
    decoder: DecoderKind,
    rows: usize,
    num_classes: usize,
    thresholds: Thresholds,
    candidates: Vec<Candidate>,
    detections: Vec<Detection>,
    non_finite_values: u64,
}

impl Postprocessor {
    /// Allocates buffers for `output` with `num_classes` classes.
    pub fn new(output: &OutputSpec, num_classes: usize, thresholds: Thresholds) -> Self {
        let rows = match output.decoder {
            DecoderKind::Yolov5 | DecoderKind::End2end => output.shape[1],
            DecoderKind::Yolov8 => output.shape[2],
        };
        Self {
            decoder: output.decoder,
            rows,
            num_classes,
            thresholds,
            candidates: Vec::with_capacity(rows),
            detections: Vec::with_capacity(thresholds.max_detections),
            non_finite_values: 0,
        }
    }

    /// Thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Rows (candidate boxes) per output tensor.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Candidate rows skipped since start because they held NaN or infinity.
    pub fn non_finite_values(&self) -> u64 {
        self.non_finite_values
    }

    /// The detections of the last [`Self::run`], best score first.
    pub fn detections(&self) -> &[Detection] {
        &self.detections
    }

    /// Values of one frame's output ([`Self::run`] takes exactly this many).
    pub fn output_len(&self) -> usize {
        match self.decoder {
            DecoderKind::Yolov5 => self.rows * (5 + self.num_classes),
            DecoderKind::Yolov8 => self.rows * (4 + self.num_classes),
            DecoderKind::End2end => self.rows * 6,
        }
    }

    /// Decodes `output` (the whole output tensor, row-major) for a frame placed by `letterbox`.
    /// Returns the detections, best score first. An output of the wrong length gives no
    /// detections (the engine checks the length; this is a second guard).
    pub fn run(&mut self, output: &[f32], letterbox: &Letterbox) -> &[Detection] {
        self.candidates.clear();
        self.detections.clear();
        if output.len() != self.output_len() {
            return &self.detections;
        }
        match self.decoder {
            DecoderKind::Yolov5 => self.decode_yolov5(output),
            DecoderKind::Yolov8 => self.decode_yolov8(output),
            DecoderKind::End2end => self.decode_end2end(output),
        }
        // Best score first; equal scores keep row order (deterministic).
        self.candidates
            .sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.row.cmp(&b.row)));
        let image_from_tensor = letterbox.image_from_tensor();
        let suppress = self.decoder != DecoderKind::End2end;
        let mut kept = 0usize;
        for i in 0..self.candidates.len() {
            if kept == self.thresholds.max_detections {
                break;
            }
            let c = self.candidates[i];
            // Suppressed candidates get a negative score, so they are skipped and never suppress.
            if c.score < 0.0 {
                continue;
            }
            if suppress {
                for other in &mut self.candidates[i + 1..] {
                    if other.score >= 0.0
                        && (self.thresholds.class_agnostic_nms || other.class_id == c.class_id)
                        && iou(&c.bbox, &other.bbox) > self.thresholds.nms_iou
                    {
                        other.score = -1.0;
                    }
                }
            }
            self.detections.push(Detection {
                class_id: c.class_id,
                score: c.score,
                bbox: letterbox.box_image_from_tensor(&image_from_tensor, c.bbox),
            });
            kept += 1;
        }
        &self.detections
    }

    fn push(&mut self, row: usize, score: f32, class_id: usize, bbox: [f32; 4]) {
        if !(score.is_finite() && bbox.iter().all(|v| v.is_finite())) {
            self.non_finite_values += 1;
            return;
        }
        if score >= self.thresholds.confidence && bbox[2] > bbox[0] && bbox[3] > bbox[1] {
            self.candidates.push(Candidate {
                score,
                class_id: class_id as u32,
                row: row as u32,
                bbox,
            });
        }
    }

    fn decode_yolov5(&mut self, output: &[f32]) {
        let stride = 5 + self.num_classes;
        for (row, r) in output.chunks_exact(stride).enumerate() {
            let objectness = r[4];
            // score = objectness x class probability <= objectness: most rows stop here.
            if objectness < self.thresholds.confidence {
                if objectness.is_nan() {
                    self.non_finite_values += 1;
                }
                continue;
            }
            let (class_id, best) = argmax(&r[5..]);
            self.push(
                row,
                objectness * best,
                class_id,
                cxcywh_to_xyxy(r[0], r[1], r[2], r[3]),
            );
        }
    }

    fn decode_yolov8(&mut self, output: &[f32]) {
        let n = self.rows;
        for row in 0..n {
            let mut class_id = 0usize;
            let mut best = f32::NEG_INFINITY;
            for c in 0..self.num_classes {
                let v = output[(4 + c) * n + row];
                if v > best {
                    best = v;
                    class_id = c;
                }
            }
            if best < self.thresholds.confidence {
                continue;
            }
            let bbox = cxcywh_to_xyxy(
                output[row],
                output[n + row],
                output[2 * n + row],
                output[3 * n + row],
            );
            self.push(row, best, class_id, bbox);
        }
    }

    fn decode_end2end(&mut self, output: &[f32]) {
        for (row, r) in output.chunks_exact(6).enumerate() {
            let class = r[5];
            if !(class >= 0.0 && (class as usize) < self.num_classes) {
                continue;
            }
            self.push(row, r[4], class as usize, [r[0], r[1], r[2], r[3]]);
        }
    }
}

/// Index and value of the largest element (first on ties; NaN never wins).
fn argmax(values: &[f32]) -> (usize, f32) {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, v) in values.iter().enumerate() {
        if v.partial_cmp(&best.1) == Some(Ordering::Greater) {
            best = (i, *v);
        }
    }
    best
}

fn cxcywh_to_xyxy(cx: f32, cy: f32, w: f32, h: f32) -> [f32; 4] {
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSES: usize = 3;

    fn thresholds() -> Thresholds {
        Thresholds {
            confidence: 0.25,
            nms_iou: 0.45,
            max_detections: 10,
            class_agnostic_nms: false,
        }
    }

    fn yolov5(rows: usize) -> Postprocessor {
        let spec = OutputSpec {
            name: "output0".into(),
            shape: [1, rows, 5 + CLASSES],
            decoder: DecoderKind::Yolov5,
        };
        Postprocessor::new(&spec, CLASSES, thresholds())
    }

    /// Identity letterbox: a 100x100 image in a 100x100 tensor.
    fn identity() -> Letterbox {
        Letterbox::fit(100, 100, 100, 100, true)
    }

    fn row5(cx: f32, cy: f32, w: f32, h: f32, obj: f32, cls: [f32; CLASSES]) -> Vec<f32> {
        let mut r = vec![cx, cy, w, h, obj];
        r.extend_from_slice(&cls);
        r
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        // Half overlap: intersection 50, union 150.
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[5.0, 5.0, 5.0, 5.0]), 0.0);
    }

    #[test]
    fn yolov5_score_is_objectness_times_class_and_threshold_applies() {
        let mut out = Vec::new();
        out.extend(row5(50.0, 50.0, 20.0, 10.0, 0.9, [0.1, 0.8, 0.2])); // 0.72 class 1
        out.extend(row5(10.0, 10.0, 4.0, 4.0, 0.9, [0.2, 0.1, 0.0])); // 0.18 < 0.25: dropped
        out.extend(row5(80.0, 80.0, 4.0, 4.0, 0.2, [1.0, 1.0, 1.0])); // objectness < 0.25
        let mut post = yolov5(3);
        let dets = post.run(&out, &identity()).to_vec();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 1);
        assert!((dets[0].score - 0.72).abs() < 1e-6);
        assert_eq!(dets[0].bbox, [40.0, 45.0, 60.0, 55.0]);
    }

    #[test]
    fn nms_is_per_class_unless_agnostic() {
        let mut out = Vec::new();
        out.extend(row5(50.0, 50.0, 20.0, 20.0, 0.9, [0.9, 0.0, 0.0])); // 0.81 class 0
        out.extend(row5(51.0, 50.0, 20.0, 20.0, 0.8, [0.9, 0.0, 0.0])); // 0.72 class 0, overlaps
        out.extend(row5(50.0, 51.0, 20.0, 20.0, 0.7, [0.0, 0.9, 0.0])); // 0.63 class 1, overlaps
        out.extend(row5(10.0, 10.0, 10.0, 10.0, 0.6, [0.9, 0.0, 0.0])); // 0.54 class 0, apart
        let mut post = yolov5(4);
        let classes: Vec<u32> = post
            .run(&out, &identity())
            .iter()
            .map(|d| d.class_id)
            .collect();
        assert_eq!(classes, vec![0, 1, 0]);

        let mut agnostic = yolov5(4);
        agnostic.thresholds.class_agnostic_nms = true;
        let classes: Vec<u32> = agnostic
            .run(&out, &identity())
            .iter()
            .map(|d| d.class_id)
            .collect();
        assert_eq!(classes, vec![0, 0]);
    }

    #[test]
    fn top_k_keeps_the_best() {
        let mut out = Vec::new();
        for i in 0..20 {
            // Disjoint boxes with rising scores.
            out.extend(row5(
                5.0 * i as f32 + 2.0,
                50.0,
                2.0,
                2.0,
                0.3 + 0.03 * i as f32,
                [1.0, 0.0, 0.0],
            ));
        }
        let mut post = yolov5(20);
        let dets = post.run(&out, &identity()).to_vec();
        assert_eq!(dets.len(), 10);
        assert!(dets.windows(2).all(|w| w[0].score >= w[1].score));
        assert!((dets[0].score - (0.3 + 0.03 * 19.0)).abs() < 1e-6);
    }

    #[test]
    fn equal_scores_keep_row_order() {
        let mut out = Vec::new();
        out.extend(row5(10.0, 10.0, 4.0, 4.0, 0.5, [1.0, 0.0, 0.0]));
        out.extend(row5(30.0, 10.0, 4.0, 4.0, 0.5, [0.0, 1.0, 0.0]));
        out.extend(row5(50.0, 10.0, 4.0, 4.0, 0.5, [0.0, 0.0, 1.0]));
        let mut post = yolov5(3);
        let classes: Vec<u32> = post
            .run(&out, &identity())
            .iter()
            .map(|d| d.class_id)
            .collect();
        assert_eq!(classes, vec![0, 1, 2]);
    }

    #[test]
    fn boxes_map_back_through_the_letterbox() {
        // 200x100 image in a 100x100 tensor: scale 0.5, 25 rows of padding on top.
        let lb = Letterbox::fit(200, 100, 100, 100, true);
        let out = row5(50.0, 50.0, 20.0, 10.0, 1.0, [1.0, 0.0, 0.0]);
        let mut post = yolov5(1);
        let d = post.run(&out, &lb)[0];
        assert_eq!(d.bbox, [80.0, 40.0, 120.0, 60.0]);
        assert_eq!(d.center(), (100.0, 50.0));
        assert_eq!(d.size(), (40.0, 20.0));
    }

    #[test]
    fn non_finite_rows_are_skipped_and_counted() {
        let mut out = Vec::new();
        out.extend(row5(f32::NAN, 10.0, 4.0, 4.0, 0.9, [1.0, 0.0, 0.0]));
        out.extend(row5(10.0, 10.0, 4.0, 4.0, f32::NAN, [1.0, 0.0, 0.0]));
        out.extend(row5(30.0, 30.0, 4.0, 4.0, 0.9, [1.0, 0.0, 0.0]));
        let mut post = yolov5(3);
        assert_eq!(post.run(&out, &identity()).len(), 1);
        assert_eq!(post.non_finite_values(), 2);
    }

    #[test]
    fn wrong_length_output_gives_nothing() {
        let mut post = yolov5(3);
        assert!(post.run(&[0.0; 5], &identity()).is_empty());
    }

    #[test]
    fn yolov8_layout_is_transposed_without_objectness() {
        // 2 rows, 3 classes: planes cx, cy, w, h, c0, c1, c2 each of length 2.
        let out = [
            50.0, 10.0, // cx
            50.0, 10.0, // cy
            20.0, 4.0, // w
            10.0, 4.0, // h
            0.1, 0.1, // class 0
            0.2, 0.1, // class 1
            0.9, 0.2, // class 2
        ];
        let spec = OutputSpec {
            name: "output0".into(),
            shape: [1, 4 + CLASSES, 2],
            decoder: DecoderKind::Yolov8,
        };
        let mut post = Postprocessor::new(&spec, CLASSES, thresholds());
        let dets = post.run(&out, &identity()).to_vec();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 2);
        assert_eq!(dets[0].bbox, [40.0, 45.0, 60.0, 55.0]);
    }

    #[test]
    fn end2end_rows_pass_through_without_nms() {
        let out = [
            10.0, 10.0, 30.0, 30.0, 0.9, 1.0, // kept
            11.0, 10.0, 31.0, 30.0, 0.8, 1.0, // overlaps, kept: the graph already did NMS
            0.0, 0.0, 5.0, 5.0, 0.1, 0.0, // under threshold
            0.0, 0.0, 5.0, 5.0, 0.9, 7.0, // class out of range
        ];
        let spec = OutputSpec {
            name: "dets".into(),
            shape: [1, 4, 6],
            decoder: DecoderKind::End2end,
        };
        let mut post = Postprocessor::new(&spec, CLASSES, thresholds());
        assert_eq!(post.run(&out, &identity()).len(), 2);
    }
}
