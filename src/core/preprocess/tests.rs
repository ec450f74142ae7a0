//! Unit tests of the fused pass.
use super::*;
use crate::core::model::{ColorOrder, Layout, ResizeMode};

fn spec(w: usize, h: usize, layout: Layout, color_order: ColorOrder) -> InputSpec {
    InputSpec {
        name: "images".into(),
        shape: match layout {
            Layout::Nchw => [1, 3, h, w],
            Layout::Nhwc => [1, h, w, 3],
        },
        layout,
        color_order,
        scale: 1.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        resize: ResizeMode::Letterbox,
        pad_value: 114,
        max_batch: 1,
    }
}

#[test]
fn bgr_frame_lands_as_rgb_planes_with_grey_padding() {
    // 4x2 bgr8 frame into an 4x4 tensor: rows 1..3 hold the image, rows 0 and 3 are padding.
    let s = spec(4, 4, Layout::Nchw, ColorOrder::Rgb);
    let mut pre = Preprocessor::new(&s);
    let mut frame = Vec::new();
    for i in 0..8u8 {
        frame.extend_from_slice(&[i, 100 + i, 200 + i]); // b, g, r
    }
    let view = ImageView::packed(4, 2, PixelEncoding::Bgr8, &frame).unwrap();
    let mut t = vec![0f32; s.len()];
    let lb = pre.run(&view, &mut t).unwrap();
    assert_eq!((lb.pad_top, lb.resized_height), (1, 2));
    let plane = |c: usize| &t[c * 16..(c + 1) * 16];
    assert_eq!(plane(0)[0], 114.0); // padding
    assert_eq!(plane(0)[4], 200.0); // first pixel's red
    assert_eq!(plane(1)[4], 100.0); // green
    assert_eq!(plane(2)[4], 0.0); // blue
    assert_eq!(plane(2)[11], 7.0); // last pixel's blue
    assert_eq!(plane(2)[12], 114.0);
}

#[test]
fn padded_rows_and_nhwc_bgr_output() {
    // rgba8 with 2 bytes of row padding into a BGR NHWC tensor, scaled and normalised.
    let mut s = spec(2, 2, Layout::Nhwc, ColorOrder::Bgr);
    s.scale = 0.5;
    s.mean = [1.0, 2.0, 3.0];
    s.std = [2.0, 2.0, 2.0];
    let mut pre = Preprocessor::new(&s);
    let frame = [
        10u8, 20, 30, 255, 11, 21, 31, 255, 0, 0, //
        12, 22, 32, 255, 13, 23, 33, 255, 0, 0,
    ];
    let view = ImageView::new(2, 2, 10, PixelEncoding::Rgba8, &frame).unwrap();
    let mut t = vec![0f32; s.len()];
    pre.run(&view, &mut t).unwrap();
    // First pixel: b=30 -> (15-1)/2, g=20 -> (10-2)/2, r=10 -> (5-3)/2.
    assert_eq!(&t[0..3], &[7.0, 4.0, 1.0]);
    // Last pixel: b=33, g=23, r=13.
    assert_eq!(
        &t[9..12],
        &[(16.5 - 1.0) / 2.0, (11.5 - 2.0) / 2.0, (6.5 - 3.0) / 2.0]
    );
}

#[test]
fn mono_is_replicated_and_resized() {
    // A flat 8x8 mono frame resized into a 4x4 tensor stays flat.
    let s = spec(4, 4, Layout::Nchw, ColorOrder::Rgb);
    let mut pre = Preprocessor::new(&s);
    let frame = [77u8; 64];
    let view = ImageView::packed(8, 8, PixelEncoding::Mono8, &frame).unwrap();
    let mut t = vec![0f32; s.len()];
    let lb = pre.run(&view, &mut t).unwrap();
    assert_eq!((lb.resized_width, lb.resized_height), (4, 4));
    assert!(t.iter().all(|v| *v == 77.0), "{t:?}");
}

#[test]
fn two_threads_and_the_portable_kernels_give_the_same_bits() {
    // Every encoding, both layouts, odd sizes: one thread with the best kernels, one with
    // the portable kernels and two threads must write the very same tensor.
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let mut s = spec(96, 64, layout, ColorOrder::Rgb);
        s.scale = 1.0 / 255.0;
        s.mean = [0.485, 0.456, 0.406];
        s.std = [0.229, 0.224, 0.225];
        let mut one = Preprocessor::with_threads(&s, Kernels::detect(), 1);
        let mut portable = Preprocessor::with_threads(&s, Kernels::portable(), 1);
        let mut two = Preprocessor::with_threads(&s, Kernels::detect(), 2);
        assert_eq!(two.threads(), 2);
        for encoding in PixelEncoding::ALL {
            let (w, h) = (322u32, 186u32);
            let step = w as usize * encoding.bytes_per_pixel() + 6;
            let data: Vec<u8> = (0..step * h as usize * 3)
                .map(|i| ((i * 2_654_435_761usize) >> 13) as u8)
                .collect();
            let view = ImageView::new(w, h, step, encoding, &data).unwrap();
            let mut outs = Vec::new();
            for pre in [&mut one, &mut portable, &mut two] {
                let mut t = vec![0f32; s.len()];
                pre.run(&view, &mut t).unwrap();
                outs.push(t.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            }
            assert!(
                outs[0] == outs[1],
                "{encoding} {layout:?}: portable differs"
            );
            assert!(
                outs[0] == outs[2],
                "{encoding} {layout:?}: two threads differ"
            );
        }
    }
}

#[test]
fn padding_is_rewritten_when_the_frame_size_changes() {
    let s = spec(4, 4, Layout::Nchw, ColorOrder::Rgb);
    let mut pre = Preprocessor::new(&s);
    let mut t = vec![0f32; s.len()];
    let wide = [1u8; 4 * 2 * 3];
    pre.run(
        &ImageView::packed(4, 2, PixelEncoding::Rgb8, &wide).unwrap(),
        &mut t,
    )
    .unwrap();
    assert_eq!(t[0], 114.0);
    let tall = [2u8; 2 * 4 * 3];
    pre.run(
        &ImageView::packed(2, 4, PixelEncoding::Rgb8, &tall).unwrap(),
        &mut t,
    )
    .unwrap();
    // Top-left is now padding column, row 0 column 1 is image.
    assert_eq!(t[0], 114.0);
    assert_eq!(t[1], 2.0);
    assert_eq!(t[3], 114.0);
}

#[test]
fn wrong_tensor_size_is_an_error() {
    let s = spec(4, 4, Layout::Nchw, ColorOrder::Rgb);
    let mut pre = Preprocessor::new(&s);
    let frame = [0u8; 12];
    let view = ImageView::packed(2, 2, PixelEncoding::Rgb8, &frame).unwrap();
    let mut t = vec![0f32; 3];
    assert_eq!(
        pre.run(&view, &mut t),
        Err(PreprocessError::TensorSize {
            expected: 48,
            got: 3
        })
    );
}
