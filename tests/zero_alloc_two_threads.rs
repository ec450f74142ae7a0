//! Pre-processing on two threads allocates nothing per frame, on either thread: a counting
//! allocator armed for the whole process (this binary holds this one test, so no other test's
//! thread runs meanwhile) counts every allocation of the caller and of `lookout-preprocess`
//! (`tests/counting`).

mod counting;

use lookout::core::image::{ImageView, PixelEncoding};
use lookout::core::model::{ColorOrder, InputSpec, Layout as TensorLayout, ResizeMode};
use lookout::core::preprocess::Preprocessor;
use lookout::core::preprocess::resample::Kernels;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[test]
fn both_threads_allocate_nothing_per_frame() {
    let spec = InputSpec {
        name: "images".into(),
        shape: [1, 3, 416, 416],
        layout: TensorLayout::Nchw,
        color_order: ColorOrder::Rgb,
        scale: 1.0 / 255.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        resize: ResizeMode::Letterbox,
        pad_value: 114,
        max_batch: 1,
    };
    let mut pre = Preprocessor::with_threads(&spec, Kernels::detect(), 2);
    assert_eq!(pre.threads(), 2);
    let mut tensor = vec![0f32; spec.len()];
    let frames: Vec<(PixelEncoding, Vec<u8>)> = [PixelEncoding::Bgr8, PixelEncoding::Uyvy]
        .into_iter()
        .map(|e| {
            let data = (0..1280 * 720 * e.bytes_per_pixel())
                .map(|i| (i * 31 % 251) as u8)
                .collect();
            (e, data)
        })
        .collect();
    let views: Vec<ImageView> = frames
        .iter()
        .map(|(e, d)| ImageView::packed(1280, 720, *e, d).unwrap())
        .collect();
    // Warm-up: every geometry and encoding once (taps, scratch).
    for v in &views {
        pre.run(v, &mut tensor).unwrap();
    }
    // Positive control: the counter sees an allocation on another thread.
    let seen = counting::allocations_anywhere_in(|| {
        std::thread::Builder::new()
            .name("lookout-test-alloc".into())
            .spawn(|| std::hint::black_box(Vec::<u8>::with_capacity(64)))
            .unwrap()
            .join()
            .unwrap();
    });
    assert!(seen >= 1, "the counter saw {seen} allocations");
    let n = counting::allocations_anywhere_in(|| {
        for _ in 0..20 {
            for v in &views {
                pre.run(v, &mut tensor).unwrap();
            }
        }
    });
    assert_eq!(n, 0, "{n} heap allocations in 40 two-thread frames");
    assert!(tensor.iter().all(|v| v.is_finite()));
}
