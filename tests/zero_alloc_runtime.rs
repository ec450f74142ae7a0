//! The whole runtime allocates nothing per frame, on any of its threads: frames pushed into a
//! camera's queue, picked by the scheduler, pre-processed on two threads, inferred on
//! `lookout-infer` (with the hard-timeout watchdog armed), handed back through the results
//! channel and judged by the deadline tracker, as the live node and `replay --rate` run them.
//! The counting allocator is armed for the whole process (this binary holds this one test).
//! ONNX Runtime's own arena is C++ memory and not counted; the r2r message conversion of the live
//! node's executor and publisher threads is outside the runtime (ARCHITECTURE.md says so).

mod common;
mod counting;

use std::time::{Duration, Instant};

use lookout::runtime::deadline::RosClock;
use lookout::runtime::queue::{RawHeader, Stamp};
use lookout::runtime::{Runtime, Timing};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[test]
fn frames_through_queue_loop_and_results_allocate_nothing_on_any_thread() {
    let yaml = format!(
        "lookout:\n  ros__parameters:\n    model: {}\n    engine:\n      execution_providers: [cpu]\n      preprocess_threads: 2\n    cameras: [front, left]\n    camera:\n      front: {{topic: /front/image_raw, hard_timeout_ms: 5000, max_width: 1280, max_height: 720}}\n      left: {{topic: /left/image_raw, weight: 2, max_width: 1280, max_height: 720}}\n",
        common::default_manifest().display()
    );
    let config = common::config_from_yaml(&yaml);
    let mut runtime = Runtime::new(&config, Timing::Live, RosClock::System).unwrap();
    let thread = runtime
        .start(&config.realtime.inference, Duration::from_millis(5))
        .unwrap();
    let mut inputs = runtime.take_inputs();
    for p in &mut inputs {
        p.set_wake(thread.clone());
    }
    let frame: Vec<u8> = (0..1280 * 720 * 3).map(|i| (i * 31 % 251) as u8).collect();
    let small: Vec<u8> = (0..640 * 272 * 3).map(|i| (i * 17 % 253) as u8).collect();
    let mut seq = 0i32;
    // One frame per camera, then every result back: judged, recycled.
    let mut round = |runtime: &mut Runtime| {
        seq += 1;
        let stamp = Stamp {
            sec: seq,
            nanosec: 0,
        };
        let now = Instant::now();
        let front = RawHeader::new(1280, 720, 1280 * 3, "bgr8");
        let left = RawHeader::new(640, 272, 640 * 3, "rgb8");
        assert!(
            inputs[0]
                .push_raw(now, stamp, "front", front, &frame)
                .unwrap()
        );
        assert!(
            inputs[1]
                .push_raw(now, stamp, "left", left, &small)
                .unwrap()
        );
        for _ in 0..2 {
            let out = runtime
                .results()
                .unwrap()
                .recv_timeout(Duration::from_secs(60))
                .expect("a result within a minute");
            runtime.tracker_mut().unwrap().judge(&out, Instant::now());
            assert_eq!(out.stamp, stamp);
            runtime.results().unwrap().recycle(out);
        }
    };
    // Warm-up: both geometries, the histograms' first records, the threads' first park.
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
        "{n} heap allocations in 20 frames through the runtime"
    );
    // Positive control: a frame of a new size makes `lookout-infer` compute new filter taps
    // (an allocation on the runtime's thread, not this one), and the counter sees it.
    let seen = counting::allocations_anywhere_in(|| {
        let header = RawHeader::new(1000, 600, 1000 * 3, "bgr8");
        let stamp = Stamp {
            sec: 99,
            nanosec: 0,
        };
        let data = &frame[..1000 * 600 * 3];
        assert!(
            inputs[0]
                .push_raw(Instant::now(), stamp, "front", header, data)
                .unwrap()
        );
        let out = runtime
            .results()
            .unwrap()
            .recv_timeout(Duration::from_secs(60))
            .expect("a result within a minute");
        runtime.results().unwrap().recycle(out);
    });
    assert!(seen >= 1, "the counter saw {seen} allocations");
    runtime.stop(None).unwrap();
    let counters = runtime.counters()[0].snapshot();
    assert_eq!(counters.processed, 14, "{counters:?}");
}
