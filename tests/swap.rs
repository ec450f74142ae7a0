//! Hot model swap in the live runtime, without ROS: a package is loaded on `lookout-load`
//! (nice 19), warmed up by the inference loop while no frame is queued, and swapped in; the
//! threads the new model starts run at normal priority; the loader follows which model runs
//! (the same package again is refused, the first one is taken back).

mod common;

use std::time::{Duration, Instant};

use lookout::runtime::deadline::RosClock;
use lookout::runtime::queue::{RawHeader, Stamp};
use lookout::runtime::swap::SwapOutcome;
use lookout::runtime::{Runtime, Timing};

/// (name, nice value) of every thread of this process.
fn threads() -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // ended meanwhile
        };
        // Field 19 of stat is the nice value; fields 3.. follow the ")" that ends the name.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let nice = after.split(' ').nth(19 - 3).unwrap().parse().unwrap();
        out.push((comm.trim().to_string(), nice));
    }
    out
}

fn wait_outcome(runtime: &mut Runtime) -> SwapOutcome {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(o) = runtime.poll_swap() {
            return o;
        }
        assert!(Instant::now() < until, "no swap outcome within 2 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_swapped_in_model_runs_at_normal_priority_and_the_loader_follows_the_running_model() {
    let yaml = format!(
        "lookout:\n  ros__parameters:\n    model: {}\n    engine:\n      execution_providers: [cpu]\n      preprocess_threads: 2\n    cameras: [front]\n    camera:\n      front: {{topic: /front/image_raw}}\n",
        common::default_manifest().display()
    );
    let config = common::config_from_yaml(&yaml);
    let mut runtime = Runtime::new(&config, Timing::Live, RosClock::System).unwrap();
    runtime.enable_model_swap(&config);
    let thread = runtime
        .start(&config.realtime.inference, Duration::from_millis(5))
        .unwrap();
    let mut inputs = runtime.take_inputs();
    inputs[0].set_wake(thread);
    let (w, h, _, rgb) = common::load_rgb(&common::image("bus.jpg"));
    let mut seq = 0;
    let mut detect = |runtime: &mut Runtime| {
        seq += 1;
        let stamp = Stamp {
            sec: seq,
            nanosec: 0,
        };
        let header = RawHeader::new(w, h, w as usize * 3, "rgb8");
        assert!(
            inputs[0]
                .push_raw(Instant::now(), stamp, "front", header, &rgb)
                .unwrap()
        );
        let out = runtime
            .results()
            .unwrap()
            .recv_timeout(Duration::from_secs(60))
            .expect("a result within a minute");
        let classes: Vec<u32> = out.detections().iter().map(|d| d.class_id).collect();
        runtime.results().unwrap().recycle(out);
        classes
    };
    let before = detect(&mut runtime);
    assert!(!before.is_empty());
    let first_sha = runtime.model().sha256.clone();

    runtime
        .request_model(common::batch_manifest())
        .expect("request taken");
    let SwapOutcome::Swapped {
        new,
        old_sha256,
        load_ms,
        ..
    } = wait_outcome(&mut runtime)
    else {
        panic!("the batch package was refused");
    };
    assert_eq!(old_sha256, first_sha);
    assert_ne!(new.sha256, first_sha);
    assert_eq!(runtime.model().sha256, new.sha256);
    assert!(load_ms > 0.0);
    // Same network: the same detections from the new model.
    assert_eq!(detect(&mut runtime), before);

    // The loader runs at nice 19; nothing it started does.
    let all = threads();
    // The kernel keeps 15 bytes of a thread's name.
    let nice_of = |name: &str| -> Vec<i32> {
        all.iter()
            .filter(|(n, _)| name.starts_with(n.as_str()) && n.len() == name.len().min(15))
            .map(|(_, p)| *p)
            .collect()
    };
    let normal = nice_of("lookout-infer");
    assert_eq!(normal.len(), 1, "{all:?}");
    assert_eq!(nice_of("lookout-load"), [19], "{all:?}");
    let ort = nice_of("lookout-ort");
    assert!(!ort.is_empty(), "{all:?}");
    assert!(ort.iter().all(|n| *n == normal[0]), "{all:?}");
    let pre = nice_of("lookout-preprocess");
    assert!(!pre.is_empty(), "{all:?}");
    assert!(pre.iter().all(|n| *n == normal[0]), "{all:?}");

    // The loader knows the batch package runs now: asked again, it is refused ...
    runtime.request_model(common::batch_manifest()).unwrap();
    match wait_outcome(&mut runtime) {
        SwapOutcome::Refused { reason, .. } => {
            assert!(reason.contains("already running"), "{reason}")
        }
        SwapOutcome::Swapped { .. } => panic!("the running package was swapped in again"),
    }
    // ... and the first package is taken back.
    runtime.request_model(common::default_manifest()).unwrap();
    match wait_outcome(&mut runtime) {
        SwapOutcome::Swapped { new, .. } => assert_eq!(new.sha256, first_sha),
        SwapOutcome::Refused { reason, .. } => panic!("refused: {reason}"),
    }
    assert_eq!(detect(&mut runtime), before);
    runtime.stop(None).unwrap();
}
