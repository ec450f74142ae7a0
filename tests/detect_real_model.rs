//! The real default model (YOLOv3-tiny, converted by set-up) on real images, checked against the
//! facts of a reference run (onnxruntime in Python, letterbox 114, confidence 0.25, NMS 0.45):
//! bus.jpg has a bus near [0, 234, 810, 736] and at least 3 persons; dog.jpg a bicycle, a dog and
//! a car. Also: every pixel encoding and a padded row step give the same detections.

mod common;

use lookout::core::detector::Detector;
use lookout::core::image::{ImageView, PixelEncoding};
use lookout::core::model::Model;
use lookout::core::postprocess::{Detection, iou};

fn detector() -> Detector {
    let model = Model::load(&common::default_manifest()).expect("default model loads");
    Detector::new(model, &common::cpu_engine(), None).expect("engine starts on CPU")
}

fn run(det: &mut Detector, name: &str) -> Vec<(String, Detection)> {
    let (w, h, enc, data) = common::load_rgb(&common::image(name));
    let view = ImageView::packed(w, h, enc, &data).unwrap();
    let dets = det.detect(&view).unwrap().detections.to_vec();
    dets.into_iter()
        .map(|d| (det.model().class_name(d.class_id as usize).to_string(), d))
        .collect()
}

fn count(dets: &[(String, Detection)], class: &str) -> usize {
    dets.iter().filter(|(c, _)| c == class).count()
}

#[test]
fn bus_jpg_has_a_bus_and_persons() {
    let mut det = detector();
    assert_eq!(det.execution_provider().as_str(), "cpu");
    let dets = run(&mut det, "bus.jpg");
    let bus = dets
        .iter()
        .find(|(c, _)| c == "bus")
        .unwrap_or_else(|| panic!("no bus in {dets:?}"));
    let reference = [0.0, 234.0, 810.0, 736.0];
    assert!(
        iou(&bus.1.bbox, &reference) > 0.9,
        "bus box {:?} far from {reference:?}",
        bus.1.bbox
    );
    assert!(bus.1.score > 0.4, "bus score {}", bus.1.score);
    assert!(count(&dets, "person") >= 3, "{dets:?}");
}

#[test]
fn dog_jpg_has_bicycle_dog_and_car() {
    let mut det = detector();
    let dets = run(&mut det, "dog.jpg");
    for class in ["bicycle", "dog", "car"] {
        assert!(count(&dets, class) >= 1, "no {class} in {dets:?}");
    }
}

#[test]
fn every_encoding_and_a_padded_step_give_the_same_detections() {
    let mut det = detector();
    let (w, h, enc, rgb) = common::load_rgb(&common::image("bus.jpg"));
    assert_eq!(enc, PixelEncoding::Rgb8);
    let reference: Vec<Detection> = {
        let view = ImageView::packed(w, h, enc, &rgb).unwrap();
        det.detect(&view).unwrap().detections.to_vec()
    };
    for target in [
        PixelEncoding::Bgr8,
        PixelEncoding::Rgba8,
        PixelEncoding::Bgra8,
    ] {
        let bpp = target.bytes_per_pixel();
        let [ro, go, bo] = target.rgb_offsets();
        // Row step padded by 13 bytes to exercise strided input.
        let step = w as usize * bpp + 13;
        let mut data = vec![0u8; step * h as usize];
        for y in 0..h as usize {
            for x in 0..w as usize {
                let s = (y * w as usize + x) * 3;
                let d = y * step + x * bpp;
                data[d + ro] = rgb[s];
                data[d + go] = rgb[s + 1];
                data[d + bo] = rgb[s + 2];
                if bpp == 4 {
                    data[d + 3] = 255;
                }
            }
        }
        let view = ImageView::new(w, h, step, target, &data).unwrap();
        let got = det.detect(&view).unwrap().detections.to_vec();
        assert_eq!(got, reference, "{target} differs from rgb8");
    }
}

#[test]
fn mono8_frames_are_accepted() {
    let mut det = detector();
    let (w, h, _, rgb) = common::load_rgb(&common::image("bus.jpg"));
    let grey: Vec<u8> = rgb
        .chunks_exact(3)
        .map(|p| {
            ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000) as u8
        })
        .collect();
    let view = ImageView::packed(w, h, PixelEncoding::Mono8, &grey).unwrap();
    let dets = common::class_names(&mut det, &view);
    // A grey bus photo still shows people.
    assert!(dets.iter().any(|c| c == "person"), "{dets:?}");
}
