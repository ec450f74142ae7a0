//! One model, three output layouts, three decoders, the same detections.
//!
//! Set-up converts the default YOLOv3-tiny weights three times (`scripts/darknet2onnx.py
//! --layout v5|v8|end2end`): `yolov5` ([1, N, 5+C], NMS in lookout), `yolov8` ([1, 4+C, N], no
//! objectness column, NMS in lookout) and `end2end` ([1, D, 6], ONNX Runtime's
//! NonMaxSuppression in the graph). Each decoder must find the same boxes on every test image.

mod common;

use lookout::core::detector::Detector;
use lookout::core::image::{ImageView, PixelEncoding};
use lookout::core::model::{DecoderKind, Model};
use lookout::core::postprocess::Detection;

fn detector(package: &str) -> Detector {
    let manifest = common::repo()
        .join("models")
        .join(package)
        .join("manifest.yaml");
    let model = Model::load(&manifest)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", manifest.display()));
    Detector::new(model, &common::cpu_engine(), None).expect("engine starts on CPU")
}

fn detect(det: &mut Detector, w: u32, h: u32, enc: PixelEncoding, data: &[u8]) -> Vec<Detection> {
    let view = ImageView::packed(w, h, enc, data).unwrap();
    det.detect(&view).unwrap().detections.to_vec()
}

fn same(reference: &[Detection], other: &[Detection], what: &str) {
    assert_eq!(
        reference.len(),
        other.len(),
        "{what}: {reference:?} vs {other:?}"
    );
    for (a, b) in reference.iter().zip(other) {
        assert_eq!(a.class_id, b.class_id, "{what}: {a:?} vs {b:?}");
        assert!((a.score - b.score).abs() <= 1e-6, "{what}: {a:?} vs {b:?}");
        for k in 0..4 {
            assert!(
                (a.bbox[k] - b.bbox[k]).abs() <= 1e-3,
                "{what}: {a:?} vs {b:?}"
            );
        }
    }
}

#[test]
fn the_three_layouts_decode_to_the_same_detections_on_every_test_image() {
    let mut dets = [
        detector("yolov3-tiny"),
        detector("yolov3-tiny-v8"),
        detector("yolov3-tiny-end2end"),
    ];
    let kinds: Vec<DecoderKind> = dets
        .iter()
        .map(|d| d.model().manifest.output.decoder)
        .collect();
    assert_eq!(
        kinds,
        [
            DecoderKind::Yolov5,
            DecoderKind::Yolov8,
            DecoderKind::End2end
        ]
    );
    let mut images: Vec<(String, u32, u32, PixelEncoding, Vec<u8>)> = Vec::new();
    let dir = common::lookout_home().join("data/images");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "test images missing in {}", dir.display());
    for n in names {
        let (w, h, e, data) = common::load_rgb(&dir.join(&n));
        images.push((n, w, h, e, data));
    }
    // A frame with nothing in it: the end2end output is all filler rows.
    images.push((
        "black".into(),
        320,
        240,
        PixelEncoding::Rgb8,
        vec![0; 320 * 240 * 3],
    ));
    let mut total = 0;
    for (name, w, h, e, data) in &images {
        let reference = detect(&mut dets[0], *w, *h, *e, data);
        total += reference.len();
        for d in &mut dets[1..] {
            let layout = d.model().manifest.name.clone();
            let got = detect(d, *w, *h, *e, data);
            same(&reference, &got, &format!("{name}, {layout}"));
        }
    }
    assert!(total >= 10, "the images should hold detections: {total}");
}
