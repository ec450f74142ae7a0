//! After warm-up, processing a frame allocates nothing on the Rust heap.
//!
//! A counting global allocator counts the allocations (and reallocations) made by this thread
//! while armed. The whole per-frame path runs armed: pre-processing (resize + tensor write),
//! the ONNX Runtime call through `ort`, and post-processing (decode, NMS, mapping back).
//! ONNX Runtime's own C++ allocations do not go through the Rust allocator; its CPU arena keeps
//! them out of the steady state (enabled by default).

mod common;

mod counting;

use counting::allocations_in;
use lookout::core::detector::Detector;
use lookout::core::image::{ImageView, PixelEncoding};
use lookout::core::model::Model;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[test]
fn the_counter_sees_allocations() {
    // Positive control: if this fails, a zero below would mean nothing.
    let n = allocations_in(|| {
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(64));
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}

#[test]
fn steady_state_frames_allocate_nothing() {
    let model = Model::load(&common::default_manifest()).unwrap();
    let mut det = Detector::new(model, &common::cpu_engine(), None).unwrap();

    // A real photo (rgb8, 810x1080) and a synthetic full-HD bgr8 frame with a padded row step.
    let (w, h, enc, bus) = common::load_rgb(&common::image("bus.jpg"));
    let step = 1920 * 3 + 64;
    let hd: Vec<u8> = (0..step * 1080).map(|i| (i * 7 % 251) as u8).collect();

    let frames = [
        ImageView::packed(w, h, enc, &bus).unwrap(),
        ImageView::new(1920, 1080, step, PixelEncoding::Bgr8, &hd).unwrap(),
    ];
    // Warm-up: the first frame of each size sizes the resizer's scratch buffers.
    for f in &frames {
        det.detect(f).unwrap();
    }
    let mut found = 0usize;
    let n = allocations_in(|| {
        for _ in 0..5 {
            for f in &frames {
                match det.detect(f) {
                    Ok(r) => found += r.detections.len(),
                    Err(_) => found = usize::MAX,
                }
            }
        }
    });
    assert!(
        found > 0 && found != usize::MAX,
        "frames were not processed"
    );
    assert_eq!(n, 0, "{n} heap allocations in 10 steady-state frames");
}

#[test]
fn the_whole_loop_allocates_nothing_per_frame() {
    use lookout::config::QueuePolicy;
    use lookout::runtime::deadline::{DeadlineSettings, LatePolicy, RosClock};
    use lookout::runtime::inference::{
        InferenceLoop, LoopCamera, ResultTracker, Step, output_channel,
    };
    use lookout::runtime::queue::{RawHeader, Stamp, camera_ring};
    use std::time::{Duration, Instant};

    let model = Model::load(&common::default_manifest()).unwrap();
    let det = Detector::new(model, &common::cpu_engine(), None).unwrap();
    let (mut producer, consumer, counters) = camera_ring(0, 2, 1920, 1080, QueuePolicy::KeepNewest);
    let deadline = DeadlineSettings {
        budget: Duration::from_millis(1),
        max_age: Some(Duration::from_secs(3600 * 24 * 365 * 100)),
        late_policy: LatePolicy::Publish,
    };
    let (sink, source) = output_channel(4, 100);
    let mut inference = InferenceLoop::new(
        det,
        vec![LoopCamera {
            name: "front".into(),
            consumer,
            counters: counters.clone(),
            decode_max: None,
            jpeg_reduced_scale: true,
            deadline,
            hard_timeout: Some(Duration::from_secs(30)),
            weight: 1,
        }],
        sink,
        RosClock::System,
    );
    // The publishing side's monitoring: deadline verdicts and latency histograms.
    let mut tracker =
        ResultTracker::new(vec![(deadline, counters.clone())], Duration::from_secs(10)).unwrap();
    let step = 1920 * 3 + 64;
    let frame: Vec<u8> = (0..step * 1080).map(|i| (i * 7 % 251) as u8).collect();
    let mut one_frame = |n: i32| {
        let pushed = producer.push_raw(
            Instant::now(),
            Stamp { sec: n, nanosec: 0 },
            "camera_front",
            RawHeader::new(1920, 1080, step, "bgr8"),
            &frame,
        );
        let stepped = inference.step();
        let out = source.recv_timeout(Duration::from_secs(5));
        if let Ok(o) = &out {
            tracker.judge(o, Instant::now());
            tracker.snapshot(0, Instant::now());
        }
        let ok = matches!(pushed, Ok(true))
            && stepped == Step::Processed
            && out
                .as_ref()
                .is_ok_and(|o| o.stamp.sec == n && o.frame_id() == "camera_front");
        if let Ok(o) = out {
            source.recycle(o);
        }
        ok
    };
    // Warm-up: the frame size's resampler, the channel's first use.
    assert!(one_frame(0) && one_frame(1));
    let mut all_ok = true;
    let n = allocations_in(|| {
        for i in 2..8 {
            all_ok &= one_frame(i);
        }
    });
    assert!(all_ok, "frames went through the loop");
    assert_eq!(
        n, 0,
        "{n} heap allocations in 6 frames through ingest, inference loop and output"
    );
    assert_eq!(counters.snapshot().processed, 8);
}

/// With a batching engine (`models/yolov3-tiny-batch`), one step takes a frame from each of two
/// cameras, infers them in one run and sends both results: still nothing allocated.
#[test]
fn batched_runs_allocate_nothing() {
    use lookout::config::QueuePolicy;
    use lookout::runtime::deadline::{DeadlineSettings, LatePolicy, RosClock};
    use lookout::runtime::inference::{InferenceLoop, LoopCamera, Step, output_channel};
    use lookout::runtime::queue::{RawHeader, Stamp, camera_ring};
    use std::time::{Duration, Instant};

    let model = Model::load(&common::batch_manifest()).unwrap();
    let mut engine = common::cpu_engine();
    engine.max_batch = 2;
    let det = Detector::new(model, &engine, None).unwrap();
    let deadline = DeadlineSettings {
        budget: Duration::from_secs(10),
        max_age: None,
        late_policy: LatePolicy::Publish,
    };
    let (sink, source) = output_channel(4, 100);
    let mut producers = Vec::new();
    let mut cameras = Vec::new();
    for (i, name) in ["left", "right"].into_iter().enumerate() {
        let (producer, consumer, counters) = camera_ring(i, 2, 1280, 720, QueuePolicy::KeepNewest);
        producers.push(producer);
        cameras.push(LoopCamera {
            name: name.into(),
            consumer,
            counters,
            decode_max: None,
            jpeg_reduced_scale: true,
            deadline,
            hard_timeout: None,
            weight: 1,
        });
    }
    let mut inference = InferenceLoop::new(det, cameras, sink, RosClock::System);
    assert_eq!(inference.batch(), 2);
    // Two frame sizes, one per camera.
    let left: Vec<u8> = (0..1280 * 720 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let right: Vec<u8> = (0..640 * 480 * 3).map(|i| (i * 13 % 241) as u8).collect();
    let mut one_run = |n: i32| {
        let a = producers[0].push_raw(
            Instant::now(),
            Stamp { sec: n, nanosec: 0 },
            "left",
            RawHeader::new(1280, 720, 1280 * 3, "rgb8"),
            &left,
        );
        let b = producers[1].push_raw(
            Instant::now(),
            Stamp { sec: n, nanosec: 1 },
            "right",
            RawHeader::new(640, 480, 640 * 3, "bgr8"),
            &right,
        );
        let stepped = inference.step();
        // Both results came from that one step; nothing is left for a second one.
        let mut cams = 0u8;
        for _ in 0..2 {
            if let Ok(o) = source.recv_timeout(Duration::from_secs(5)) {
                if o.stamp.sec == n {
                    cams |= 1 << o.camera;
                }
                source.recycle(o);
            }
        }
        matches!((a, b), (Ok(true), Ok(true)))
            && stepped == Step::Processed
            && cams == 0b11
            && inference.step() == Step::Idle
    };
    assert!(one_run(0) && one_run(1), "warm-up runs");
    let mut all_ok = true;
    let n = allocations_in(|| {
        for i in 2..6 {
            all_ok &= one_run(i);
        }
    });
    assert!(all_ok, "each step ran both cameras' frames");
    assert_eq!(n, 0, "{n} heap allocations in 4 batched runs of 2 frames");
}
