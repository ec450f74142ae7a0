//! A shadow model and incident capture allocate nothing per frame either: the frame handed to
//! `lookout-shadow` after its primary result, the shadow's pre-processing, inference and
//! post-processing there, the comparison with the primary's detections, the shadow's result
//! through its channel, the frame slot coming back, and every finished frame kept in
//! `lookout-capture`'s ring (its buffer swapped for a spare one). The counting allocator is
//! armed for the whole process (this binary holds this one test).

mod common;
mod counting;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lookout::runtime::deadline::RosClock;
use lookout::runtime::queue::{RawHeader, Stamp};
use lookout::runtime::{Runtime, Timing};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[test]
fn the_shadow_and_capture_paths_allocate_nothing() {
    let model = common::default_manifest();
    let incidents = common::scratch("zero_alloc_incidents");
    let yaml = format!(
        "lookout:\n  ros__parameters:\n    model: {m}\n    engine:\n      execution_providers: [cpu]\n    shadow:\n      model: {m}\n      publish: true\n      thresholds: {{confidence: 0.5}}\n    capture:\n      dir: {d}\n      before_s: 0.5\n      max_rate_hz: 10.0\n      triggers: []\n    cameras: [front]\n    camera:\n      front: {{topic: /front/image_raw, max_width: 1280, max_height: 720}}\n",
        m = model.display(),
        d = incidents.display()
    );
    let config = common::config_from_yaml(&yaml);
    let mut runtime = Runtime::new(&config, Timing::Live, RosClock::System).unwrap();
    let thread = runtime
        .start(&config.realtime.inference, Duration::from_millis(5))
        .unwrap();
    let mut inputs = runtime.take_inputs();
    inputs[0].set_wake(thread);
    let counters = std::sync::Arc::clone(&runtime.counters()[0]);
    let frame: Vec<u8> = (0..1280 * 720 * 3).map(|i| (i * 31 % 251) as u8).collect();
    let mut seq = 0i32;
    let mut shadow_results = 0u64;
    // One frame; its primary result back; then the shadow's, and its job home again.
    let mut round = |runtime: &mut Runtime| {
        seq += 1;
        let stamp = Stamp {
            sec: seq,
            nanosec: 0,
        };
        let header = RawHeader::new(1280, 720, 1280 * 3, "bgr8");
        assert!(
            inputs[0]
                .push_raw(Instant::now(), stamp, "front", header, &frame)
                .unwrap()
        );
        let out = runtime
            .results()
            .unwrap()
            .recv_timeout(Duration::from_secs(60))
            .expect("a result within a minute");
        runtime.tracker_mut().unwrap().judge(&out, Instant::now());
        runtime.results().unwrap().recycle(out);
        let until = Instant::now() + Duration::from_secs(60);
        let settled = |c: &lookout::runtime::counters::CameraCounters| {
            c.shadow_frames.load(Ordering::Relaxed) + c.shadow_skipped.load(Ordering::Relaxed)
        };
        while settled(&counters) < seq as u64 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        let shadow = runtime.shadow_results().unwrap();
        while shadow_results < counters.shadow_frames.load(Ordering::Relaxed)
            && Instant::now() < until
        {
            if let Ok(out) = shadow.recv_timeout(Duration::from_millis(10)) {
                assert_eq!(out.stamp, stamp);
                shadow.recycle(out);
                shadow_results += 1;
            }
        }
        // The job goes home right after the result is sent.
        std::thread::sleep(Duration::from_millis(5));
    };
    for _ in 0..3 {
        round(&mut runtime);
    }
    let n = counting::allocations_anywhere_in(|| {
        for _ in 0..10 {
            round(&mut runtime);
        }
    });
    assert_eq!(
        n, 0,
        "{n} heap allocations in 10 frames with a shadow model and incident capture"
    );
    runtime.stop(None).unwrap();
    let c = counters.snapshot();
    assert_eq!(c.processed, 13, "{c:?}");
    assert!(c.shadow_frames >= 10, "{c:?}");
    assert_eq!(c.shadow_frames + c.shadow_skipped, 13, "{c:?}");
    assert_eq!(c.shadow_errors, 0, "{c:?}");
    // Every finished frame went to the capture ring (none missed for want of a spare), and
    // nothing triggered a capture.
    assert_eq!(c.capture_missed, 0, "{c:?}");
    assert!(!incidents.exists());
}
