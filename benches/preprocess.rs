//! Pre-processing per encoding and frame size, SIMD kernels against the portable ones.
//!
//! - `preprocess/<W>x<H>_<encoding>`: the fused pass (letterbox resample, channel order,
//!   normalisation, layout) of one frame into the default model's 416x416 NCHW tensor, with the
//!   kernels this CPU runs (bgr8, rgba8, mono8 read directly; bayer_rggb8, yuv422, nv21, mono16
//!   converted to RGB rows on the way);
//! - `preprocess_2_threads/<W>x<H>_bgr8`: the same on two threads;
//! - `preprocess_cold[_2_threads]/<W>x<H>_bgr8`: the same with every cache emptied first (64 MB
//!   written, outside the timed part), as in a running node where an inference runs between two
//!   frames;
//! - `input_health/<W>x<H>`: the input-health measurement on the tensor of such a frame (the
//!   letterboxed image, every second point);
//! - `preprocess_portable/<W>x<H>_bgr8`: the same with the portable kernels (what a CPU without
//!   SSSE3/AVX2, or another architecture, gets);
//! - `jpeg/<W>x<H>`: JPEG decode (at a reduced scale where the frame is at least twice the
//!   letterboxed size) plus pre-processing; `jpeg_full_scale/<W>x<H>`: the same, always decoding
//!   at full size; `jpeg_2_threads/<W>x<H>`: decode and pre-processing each on two threads.
//!
//! Frames are bus.jpg scaled (nearest) to each size, a real scene at camera resolution; JPEGs are
//! the `street_<W>x<H>.jpg` frames set-up writes. Needs `scripts/setup.sh`. Set-up outside the
//! timed closures. Run: `cargo bench --bench preprocess`.

mod common;

use common::{home, repo};
use criterion::{Criterion, criterion_group, criterion_main};
use lookout::core::decode::{CompressedFormat, Decoder};
use lookout::core::image::{ImageView, PixelEncoding};
use lookout::core::model::Model;
use lookout::core::preprocess::Preprocessor;
use lookout::core::preprocess::resample::Kernels;

/// bus.jpg scaled (nearest) to `w`x`h` in `encoding`.
fn frame(w: usize, h: usize, encoding: PixelEncoding) -> Vec<u8> {
    let bytes = std::fs::read(home().join("data/images/bus.jpg")).expect("run scripts/setup.sh");
    let mut dec = Decoder::new(4096, 4096);
    let v = dec.decode(&bytes, CompressedFormat::Jpeg).unwrap();
    let (sw, sh) = (v.width() as usize, v.height() as usize);
    let bpp = encoding.bytes_per_pixel();
    let [r, g, b] = encoding.rgb_offsets();
    let mut out = vec![255u8; w * h * bpp];
    for y in 0..h {
        let row = v.row((y * sh / h) as u32);
        for x in 0..w {
            let s = (x * sw / w) * 3;
            let d = (y * w + x) * bpp;
            if encoding == PixelEncoding::Mono8 {
                out[d] = row[s + 1];
            } else {
                out[d + r] = row[s];
                out[d + g] = row[s + 1];
                out[d + b] = row[s + 2];
            }
        }
    }
    out
}

const SIZES: [(usize, usize); 3] = [(640, 480), (1280, 720), (1920, 1080)];

fn benches(c: &mut Criterion) {
    let model = Model::load(&repo().join("models/yolov3-tiny/manifest.yaml"))
        .expect("run scripts/setup.sh");
    let spec = model.manifest.input.clone();
    let mut tensor = vec![0f32; spec.len()];
    let mut pre = Preprocessor::new(&spec);
    let mut portable = Preprocessor::with_kernels(&spec, Kernels::portable());
    let mut two = Preprocessor::with_threads(&spec, Kernels::detect(), 2);
    eprintln!("kernels: {}", pre.kernels());

    for (w, h) in SIZES {
        for encoding in [
            PixelEncoding::Bgr8,
            PixelEncoding::Rgba8,
            PixelEncoding::Mono8,
        ] {
            let data = frame(w, h, encoding);
            let view = ImageView::packed(w as u32, h as u32, encoding, &data).unwrap();
            pre.run(&view, &mut tensor).unwrap();
            c.bench_function(&format!("preprocess/{w}x{h}_{encoding}"), |b| {
                b.iter(|| pre.run(std::hint::black_box(&view), &mut tensor).unwrap())
            });
        }
        // Encodings converted to RGB rows first: the frame's content does not change the cost.
        for encoding in [
            PixelEncoding::BayerRggb8,
            PixelEncoding::Uyvy,
            PixelEncoding::Nv21,
            PixelEncoding::Mono16,
        ] {
            let len = w * h * encoding.bytes_per_pixel() * 3 / 2;
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let step = w * encoding.bytes_per_pixel();
            let view = ImageView::new(w as u32, h as u32, step, encoding, &data).unwrap();
            pre.run(&view, &mut tensor).unwrap();
            c.bench_function(&format!("preprocess/{w}x{h}_{encoding}"), |b| {
                b.iter(|| pre.run(std::hint::black_box(&view), &mut tensor).unwrap())
            });
        }
        let data = frame(w, h, PixelEncoding::Bgr8);
        let view = ImageView::packed(w as u32, h as u32, PixelEncoding::Bgr8, &data).unwrap();
        // Input health, measured on the tensor the frame was pre-processed into.
        let lb = pre.run(&view, &mut tensor).unwrap();
        let mut meter = lookout::core::input_health::InputMeter::new(&spec);
        c.bench_function(&format!("input_health/{w}x{h}"), |b| {
            b.iter(|| meter.measure(std::hint::black_box(&tensor), &lb))
        });
        two.run(&view, &mut tensor).unwrap();
        c.bench_function(&format!("preprocess_2_threads/{w}x{h}_bgr8"), |b| {
            b.iter(|| two.run(std::hint::black_box(&view), &mut tensor).unwrap())
        });
        // As in a running node: the inference between two frames has evicted the caches
        // (the eviction is set-up, outside the timed part).
        let mut evict = vec![0u8; 64 << 20];
        for (name, p) in [
            ("preprocess_cold", &mut pre),
            ("preprocess_cold_2_threads", &mut two),
        ] {
            c.bench_function(&format!("{name}/{w}x{h}_bgr8"), |b| {
                b.iter_batched(
                    || {
                        let v = evict[0].wrapping_add(1);
                        evict.fill(v);
                    },
                    |()| p.run(std::hint::black_box(&view), &mut tensor).unwrap(),
                    criterion::BatchSize::PerIteration,
                )
            });
        }
        portable.run(&view, &mut tensor).unwrap();
        c.bench_function(&format!("preprocess_portable/{w}x{h}_bgr8"), |b| {
            b.iter(|| {
                portable
                    .run(std::hint::black_box(&view), &mut tensor)
                    .unwrap()
            })
        });

        let path = home().join(format!("data/images/street_{w}x{h}.jpg"));
        if let Ok(jpeg) = std::fs::read(&path) {
            let (tw, th) = (spec.width() as u32, spec.height() as u32);
            for (name, mut dec) in [
                ("jpeg", Decoder::new(4096, 4096).with_tensor_size(tw, th)),
                ("jpeg_full_scale", Decoder::new(4096, 4096)),
                (
                    "jpeg_2_threads",
                    Decoder::new(4096, 4096)
                        .with_threads(2)
                        .with_tensor_size(tw, th),
                ),
            ] {
                let p = if dec.threads() == 2 {
                    &mut two
                } else {
                    &mut pre
                };
                c.bench_function(&format!("{name}/{w}x{h}"), |b| {
                    b.iter(|| {
                        let (view, size) = dec
                            .decode_sized(std::hint::black_box(&jpeg), CompressedFormat::Jpeg)
                            .unwrap();
                        p.run_sized(&view, size, &mut tensor).unwrap()
                    })
                });
            }
        } else {
            eprintln!(
                "{} missing (run scripts/setup.sh): jpeg bench skipped",
                path.display()
            );
        }
    }
}

criterion_group! {
    name = preprocess;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = benches
}
criterion_main!(preprocess);
