//! A raw frame as a transport hands it over: header fields (width, height, step, encoding,
//! byte order) and bytes. A view that is accepted must pre-process without a panic or an
//! out-of-bounds read, at any geometry and encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout::core::image::{ImageView, PixelEncoding};
use lookout::core::model::{ColorOrder, InputSpec, Layout, ResizeMode};
use lookout::core::preprocess::Preprocessor;
use lookout::core::preprocess::resample::Kernels;

const ENCODINGS: &[&str] = &[
    "rgb8",
    "bgr8",
    "rgba8",
    "bgra8",
    "mono8",
    "mono16",
    "rgb16",
    "bgr16",
    "bayer_rggb8",
    "bayer_bggr8",
    "bayer_gbrg8",
    "bayer_grbg8",
    "yuv422",
    "yuv422_yuy2",
    "nv21",
    "nv24",
    "16UC1",
    "unknown",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    // Small geometry so that each input runs fast; the bytes after the header are the pixels.
    let width = u32::from(data[0] % 64) + u32::from(data[1] & 1) * 64;
    let height = u32::from(data[2] % 64);
    let step = usize::from(u16::from_le_bytes([data[3], data[4]]) % 512);
    let encoding = ENCODINGS[usize::from(data[5]) % ENCODINGS.len()];
    let big_endian = data[6] & 1 == 1;
    let layout = if data[6] & 2 == 0 {
        Layout::Nchw
    } else {
        Layout::Nhwc
    };
    let pixels = &data[8..];
    let Ok(e) = PixelEncoding::from_ros(encoding) else {
        return;
    };
    let Ok(view) = ImageView::new(width, height, step, e, pixels) else {
        return;
    };
    let view = view.with_big_endian(big_endian);
    let spec = InputSpec {
        name: "images".into(),
        shape: match layout {
            Layout::Nchw => [1, 3, 32, 48],
            Layout::Nhwc => [1, 32, 48, 3],
        },
        layout,
        color_order: ColorOrder::Rgb,
        scale: 1.0 / 255.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        resize: ResizeMode::Letterbox,
        pad_value: 114,
        max_batch: 1,
    };
    let mut tensor = vec![0f32; 32 * 48 * 3];
    for kernels in [Kernels::detect(), Kernels::portable()] {
        let mut pre = Preprocessor::with_kernels(&spec, kernels);
        let _ = pre.run(&view, &mut tensor);
    }
});
