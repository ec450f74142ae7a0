//! Per-frame cost of each stage on this machine's CPU, with the default model.
//!
//! - `preprocess/1920x1080_bgr8`: letterbox resize + normalise + HWC->CHW of a full-HD frame.
//! - `postprocess/yolov5_2535x85`: decode, threshold, NMS, mapping back, on bus.jpg's real output.
//! - `frame/1920x1080_bgr8`: pre-process + inference (CPU) + post-process.
//!
//! Needs `scripts/setup.sh` (model and images). Run: `cargo bench --bench pipeline`.
//! Set-up (model load, session, warm-up, test frames) happens outside the timed closures.

mod common;

use common::{home, repo};
use criterion::{Criterion, criterion_group, criterion_main};
use lookout::core::decode::{CompressedFormat, Decoder};
use lookout::core::detector::Detector;
use lookout::core::engine::{EngineConfig, Provider};
use lookout::core::image::{ImageView, PixelEncoding};
use lookout::core::model::Model;
use lookout::core::postprocess::Postprocessor;
use lookout::core::preprocess::Preprocessor;

/// bus.jpg scaled (nearest) to 1920x1080 bgr8: a real scene at camera resolution.
fn full_hd_bgr() -> Vec<u8> {
    let bytes = std::fs::read(home().join("data/images/bus.jpg")).expect("run scripts/setup.sh");
    let mut dec = Decoder::new(4096, 4096);
    let v = dec.decode(&bytes, CompressedFormat::Jpeg).unwrap();
    let (w, h) = (v.width() as usize, v.height() as usize);
    let mut out = vec![0u8; 1920 * 1080 * 3];
    for y in 0..1080 {
        let row = v.row((y * h / 1080) as u32);
        for x in 0..1920 {
            let s = (x * w / 1920) * 3;
            let d = (y * 1920 + x) * 3;
            out[d] = row[s + 2];
            out[d + 1] = row[s + 1];
            out[d + 2] = row[s];
        }
    }
    out
}

fn benches(c: &mut Criterion) {
    let model = Model::load(&repo().join("models/yolov3-tiny/manifest.yaml"))
        .expect("run scripts/setup.sh");
    let m = model.manifest.clone();
    let frame = full_hd_bgr();
    let view = ImageView::packed(1920, 1080, PixelEncoding::Bgr8, &frame).unwrap();

    let mut pre = Preprocessor::new(&m.input);
    let mut tensor = vec![0f32; m.input.len()];
    pre.run(&view, &mut tensor).unwrap();
    c.bench_function("preprocess/1920x1080_bgr8", |b| {
        b.iter(|| pre.run(std::hint::black_box(&view), &mut tensor).unwrap())
    });

    let engine = EngineConfig {
        execution_providers: vec![Provider::Cpu],
        ..EngineConfig::default()
    };
    let mut detector = Detector::new(model, &engine, None).unwrap();

    // A real output tensor for the post-processing bench.
    let model = Model::load(&repo().join("models/yolov3-tiny/manifest.yaml")).unwrap();
    let mut engine_only = lookout::core::engine::Engine::new(&model, &engine).unwrap();
    let lb = pre.run(&view, engine_only.input_mut()).unwrap();
    let output = engine_only.run(|o| o.to_vec()).unwrap();
    let mut post = Postprocessor::new(&m.output, m.classes.len(), m.thresholds);
    assert!(!post.run(&output, &lb).is_empty());
    c.bench_function("postprocess/yolov5_2535x85", |b| {
        b.iter(|| post.run(std::hint::black_box(&output), &lb).len())
    });

    detector.detect(&view).unwrap();
    c.bench_function("frame/1920x1080_bgr8", |b| {
        b.iter(|| {
            detector
                .detect(std::hint::black_box(&view))
                .unwrap()
                .detections
                .len()
        })
    });
}

criterion_group! {
    name = pipeline;
    config = Criterion::default().sample_size(30);
    targets = benches
}
criterion_main!(pipeline);
