//! Pre-processing on two threads allocates nothing per frame, on either thread: a counting
//! allocator armed for the whole process (this binary holds this one test, so no other test's
//! thread runs meanwhile) counts every allocation of the caller and of `lookout-preprocess`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lookout::image::{ImageView, PixelEncoding};
use lookout::model::{ColorOrder, InputSpec, Layout as TensorLayout, ResizeMode};
use lookout::preprocess::Preprocessor;
use lookout::preprocess::resample::Kernels;

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn note() {
    if ARMED.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call unchanged to the system allocator; the counting has no effect on
// the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    ARMED.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        for v in &views {
            pre.run(v, &mut tensor).unwrap();
        }
    }
    ARMED.store(false, Ordering::SeqCst);
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        0,
        "heap allocations in 40 two-thread frames"
    );
    assert!(tensor.iter().all(|v| v.is_finite()));
}
