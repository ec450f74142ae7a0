//! Batched inference: a model with a dynamic batch dimension (`models/yolov3-tiny-batch`,
//! `input.max_batch: 4`, the default model converted with `scripts/darknet2onnx.py
//! --dynamic-batch` by set-up) infers several cameras' frames in one run, and each frame gets
//! exactly the detections it gets alone from the fixed-batch default model.

mod common;

use std::process::Command;

use lookout::core::detector::{BatchFrame, Detector};
use lookout::core::engine::{Engine, EngineError};
use lookout::core::image::{ImageView, PixelEncoding};
use lookout::core::model::Model;
use lookout::core::postprocess::Detection;

/// The CPU engine with batches of up to `max_batch` frames (the CPU batches only when asked:
/// `engine.max_batch: 0`, the default, means one frame per run there).
fn cpu_batching(max_batch: usize) -> lookout::core::engine::EngineConfig {
    let mut e = common::cpu_engine();
    e.max_batch = max_batch;
    e
}

fn detector(manifest: &std::path::Path) -> Detector {
    Detector::new(Model::load(manifest).unwrap(), &cpu_batching(8), None)
        .expect("engine starts on CPU")
}

/// The detections of one frame, for comparison (scores and boxes bit for bit).
fn key(d: &[Detection]) -> Vec<(u32, u32, [u32; 4])> {
    d.iter()
        .map(|d| {
            let b = d.bbox.map(f32::to_bits);
            (d.class_id, d.score.to_bits(), b)
        })
        .collect()
}

#[test]
fn each_frame_of_a_batch_gets_the_detections_it_gets_alone() {
    let mut single = detector(&common::default_manifest());
    let mut batched = detector(&common::batch_manifest());
    assert_eq!(batched.batch(), 4);
    assert_eq!(single.batch(), 1);

    // Three photos of three sizes (three letterboxes: each slot keeps its own padding), plus a
    // bgr8 frame with a padded row step.
    let photos: Vec<_> = ["bus.jpg", "dog.jpg", "person.jpg"]
        .iter()
        .map(|n| common::load_rgb(&common::image(n)))
        .collect();
    let step = 1280 * 3 + 32;
    let hd: Vec<u8> = (0..step * 720).map(|i| (i * 7 % 251) as u8).collect();
    let mut views: Vec<ImageView> = photos
        .iter()
        .map(|(w, h, e, data)| ImageView::packed(*w, *h, *e, data).unwrap())
        .collect();
    views.push(ImageView::new(1280, 720, step, PixelEncoding::Bgr8, &hd).unwrap());
    let alone: Vec<_> = views
        .iter()
        .map(|v| key(single.detect(v).unwrap().detections))
        .collect();
    assert!(alone[0].len() >= 4, "bus.jpg: {:?}", alone[0]);

    // Full runs, partial runs and gaps, in several orders (slots change geometry each time);
    // the last two put dog.jpg (padded above and below) in slot 1 just after bus.jpg (padded
    // left and right) was there, with slot 0 already at dog.jpg's geometry: slot 1's padding
    // must be rewritten all the same.
    let orders: [&[Option<usize>]; 7] = [
        &[Some(0), Some(1), Some(2), Some(3)],
        &[Some(2), Some(0), Some(3), Some(1)],
        &[Some(1), None, Some(0)],
        &[None, Some(3)],
        &[Some(3), Some(2), Some(1), Some(0)],
        &[Some(1), Some(0)],
        &[Some(1), Some(1)],
    ];
    for order in orders {
        let frames: Vec<Option<BatchFrame>> = order
            .iter()
            .map(|i| {
                i.map(|i| BatchFrame {
                    view: views[i],
                    image_size: (views[i].width(), views[i].height()),
                })
            })
            .collect();
        let mut got = vec![None; order.len()];
        let ran = batched
            .detect_batch(&frames, None, |i, r| got[i] = Some(key(r.detections)))
            .unwrap();
        assert_eq!(ran, order.iter().flatten().count());
        for (slot, i) in order.iter().enumerate() {
            match i {
                Some(i) => assert_eq!(got[slot].as_ref(), Some(&alone[*i]), "{order:?}"),
                None => assert!(got[slot].is_none()),
            }
        }
    }
    // One frame more than the batch: refused, nothing runs.
    let five: Vec<_> = (0..5)
        .map(|i| {
            Some(BatchFrame {
                view: views[i % 4],
                image_size: (views[i % 4].width(), views[i % 4].height()),
            })
        })
        .collect();
    let mut called = false;
    assert!(
        batched
            .detect_batch(&five, None, |_, _| called = true)
            .is_err()
    );
    assert!(!called);
    // `engine.max_batch: 1` turns batching off for the same model; 0 (the default) is one
    // frame per run on the CPU; 2 caps it; a front end's camera count caps it too.
    let model = || Model::load(&common::batch_manifest()).unwrap();
    for (max_batch, cap, want) in [(1, 8, 1), (0, 8, 1), (2, 8, 2), (8, 3, 3)] {
        let d = Detector::with_batch_cap(model(), &cpu_batching(max_batch), None, cap).unwrap();
        assert_eq!(d.batch(), want, "engine.max_batch {max_batch}, cap {cap}");
    }
}

#[test]
fn a_fixed_batch_model_cannot_promise_more_than_one_frame() {
    let dir = common::fresh_dir("batch-fixed");
    let text = std::fs::read_to_string(common::default_manifest()).unwrap();
    let onnx = common::repo().join("models/yolov3-tiny/yolov3-tiny.onnx");
    let text = text
        .replace(
            "onnx: yolov3-tiny.onnx",
            &format!("onnx: {}", onnx.display()),
        )
        .replace("  pad_value: 114\n", "  pad_value: 114\n  max_batch: 2\n");
    let manifest = dir.join("manifest.yaml");
    std::fs::write(&manifest, text).unwrap();
    let model = Model::load(&manifest).unwrap();
    match Engine::new(&model, &cpu_batching(2)) {
        Err(EngineError::GraphMismatch { reason }) => {
            assert!(
                reason.contains("input.max_batch") && reason.contains("fixed batch dimension"),
                "{reason}"
            )
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a fixed-batch model started with max_batch 2"),
    }
    // `lookout model inspect` says the same, naming the key.
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["model", "inspect"])
            .arg(&manifest),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("MISMATCH input.max_batch"), "{text}");
    // Out of range: refused when the manifest is read.
    let bad = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("max_batch: 2", "max_batch: 9");
    std::fs::write(&manifest, bad).unwrap();
    let e = Model::load(&manifest).unwrap_err().to_string();
    assert!(e.contains("input.max_batch"), "{e}");
}

/// The vtest clip has two cameras (raw and JPEG, one message each per video frame): with the
/// batch model, replay infers each pair in one run, and writes what the default model writes.
#[test]
fn replay_infers_two_cameras_per_run_with_the_same_detections() {
    let dir = common::fresh_dir("batch-replay");
    common::vtest_clip(&dir, 6, &["--storage", "mcap"]);
    let bag = dir.join("vtest");
    let mut reports = Vec::new();
    for (name, manifest) in [
        ("single", common::default_manifest()),
        ("batched", common::batch_manifest()),
    ] {
        let params = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &params,
            format!(
                "lookout:\n  ros__parameters:\n    model: {}\n    engine:\n      execution_providers: [cpu]\n      max_batch: 4\n    cameras: [raw, jpeg]\n    camera:\n      raw:\n        topic: /camera/image_raw\n      jpeg:\n        topic: /camera/image_raw/compressed\n        type: compressed\n",
                manifest.display()
            ),
        )
        .unwrap();
        let out = dir.join(format!("out_{name}"));
        let report = dir.join(format!("{name}.json"));
        let o = common::output(
            Command::new(env!("CARGO_BIN_EXE_lookout"))
                .arg("replay")
                .arg(&bag)
                .arg("--params-file")
                .arg(&params)
                .arg("--out")
                .arg(&out)
                .arg("--report")
                .arg(&report)
                .arg("--no-diagnostics"),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        reports.push((out, r));
    }
    let (single, batched) = (&reports[0].1, &reports[1].1);
    assert_eq!(single["max_batch"], 1);
    assert_eq!(batched["max_batch"], 2, "two cameras: two frames per run");
    assert_eq!(batched["frames_processed"], 12);
    assert_eq!(
        single["detections_by_class"],
        batched["detections_by_class"]
    );
    // Each video frame's raw and JPEG messages are consecutive in the bag: one run per pair.
    assert_eq!(single["inference_runs"], 12);
    assert_eq!(batched["inference_runs"], 6);
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("diff")
            .arg(&reports[0].0)
            .arg(&reports[1].0)
            .args(["--score-tol", "0", "--box-tol-px", "0"]),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("frames A 6 B 6 matched 6"), "{text}");
}
