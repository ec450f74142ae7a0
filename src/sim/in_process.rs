//! One simulation run in this process: the runtime on its threads, this thread emitting on the
//! schedule (a driver's copy into the frame slot included), `lookout-sim-sink` taking every
//! result the moment it is ready, judging it and recording it, as the live node's publisher
//! does (without DDS). Nothing is allocated per frame on the emitting thread.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::report::{Drops, SimReport};
use super::schedule::{Schedule, Wait, wait_until};
use super::source::SourceFrame;
use super::{Sim, SimError, check_fps, cpu_seconds, round3, system_time_ns};
use crate::charts::Timeline;
use crate::replay::{Counts, Report, Totals, peak_rss_mb};
use crate::runtime::counters::CameraCounters;
use crate::runtime::deadline::{RosClock, Verdict};
use crate::runtime::queue::{RawHeader, Stamp};
use crate::runtime::{Runtime, RuntimeError, Timing};

impl Sim {
    /// One run at `fps` per camera in this process.
    pub(super) fn run_in_process(
        &self,
        fps: f64,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<SimReport, SimError> {
        check_fps("--fps", fps)?;
        let o = &self.options;
        let mut runtime = Runtime::new(&self.config, Timing::Live, RosClock::System)?;
        let mut producers = runtime.take_inputs();
        let counters: Vec<Arc<CameraCounters>> = runtime.counters().to_vec();
        let infer = runtime.start(&self.config.realtime.inference, Duration::from_millis(5))?;
        for p in &mut producers {
            p.set_wake(infer.clone());
        }
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let sink_counters = counters.clone();
        // About 40 slots over the run (each holding several results), at least 0.5 s each.
        let mut timeline = Timeline::new((o.duration / 40).max(Duration::from_millis(500)));
        timeline.start_at(Instant::now());
        // A shadow model's results (`shadow.publish`) are taken and given back: sim measures.
        let shadow_results = runtime.take_shadow_results();
        runtime.spawn_sink(
            "lookout-sim-sink",
            &self.config.realtime.publisher,
            move |results, mut tracker| {
                let mut totals = Totals::new().ok();
                let dropped = || -> u64 {
                    sink_counters
                        .iter()
                        .map(|c| {
                            let s = c.snapshot();
                            s.dropped() + s.timeouts + s.inference_errors
                        })
                        .sum()
                };
                loop {
                    if let Some(shadow) = &shadow_results {
                        while let Some(out) = shadow.try_recv() {
                            shadow.recycle(out);
                        }
                    }
                    match results.recv_timeout(Duration::from_millis(50)) {
                        Ok(out) => {
                            let now = Instant::now();
                            let verdict = tracker.judge(&out, now);
                            let e2e = now.saturating_duration_since(out.received);
                            if let Some(t) = totals.as_mut() {
                                t.record(&out, e2e, now);
                            }
                            timeline.record(now, e2e, verdict != Verdict::OnTime);
                            timeline.note_drops(now, dropped());
                            if verdict != Verdict::LateDrop
                                && let Some(c) = sink_counters.get(out.camera)
                            {
                                c.published.fetch_add(1, Ordering::Relaxed);
                            }
                            results.recycle(out);
                        }
                        Err(true) => break,
                        Err(false) => timeline.note_drops(Instant::now(), dropped()),
                    }
                }
                timeline.finish();
                let _ = done_tx.send((tracker, totals, timeline));
            },
        )?;

        // Emit on the schedule until the duration is over (or Ctrl-C).
        let mut schedule = Schedule::new(self.cameras.len(), fps, o.jitter_ms, o.burst, o.seed);
        let mut next_frame = vec![0usize; self.cameras.len()];
        let mut frames_in = vec![0u64; self.cameras.len()];
        let cpu_start = cpu_seconds();
        let start = Instant::now();
        let mut interrupted = false;
        let mut last_progress = start;
        'emit: loop {
            let (camera, at) = schedule.next_frame();
            if at >= o.duration {
                break;
            }
            let waited = wait_until(start + at, stop, |left| {
                if runtime.first_gone().is_some() {
                    return false;
                }
                std::thread::sleep(left.min(Duration::from_millis(20)));
                true
            });
            match waited {
                Wait::Due => {}
                Wait::Stopped => {
                    interrupted = true;
                    break 'emit;
                }
                Wait::Aborted => break 'emit,
            }
            let cam = &self.cameras[camera];
            let Some(frame) = cam.frames.get(next_frame[camera] % cam.frames.len().max(1)) else {
                continue;
            };
            next_frame[camera] += 1;
            frames_in[camera] += 1;
            push(&mut producers[camera], frame, &cam.name);
            if last_progress.elapsed() > Duration::from_millis(200) {
                last_progress = Instant::now();
                progress(at.as_secs_f64() / o.duration.as_secs_f64());
            }
        }
        // The run lasts its duration: the time after the last frame counts (the rates are per
        // second of it).
        while !interrupted && start.elapsed() < o.duration {
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            std::thread::sleep(
                (o.duration.saturating_sub(start.elapsed())).min(Duration::from_millis(20)),
            );
        }
        let emitted_s = start.elapsed().as_secs_f64().min(o.duration.as_secs_f64());
        // Every frame handed over is accounted for (or 30 s), then the loop stops.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && runtime.first_gone().is_none()
            && !counters.iter().all(|c| {
                let s = c.snapshot();
                s.settled_in_loop() >= s.received
            })
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let wall_s = start.elapsed().as_secs_f64();
        let cpu_s = cpu_seconds() - cpu_start;
        let gone = runtime.first_gone();
        runtime.stop(gone).map_err(|e| match e {
            RuntimeError::WorkerDied { thread, reason } => SimError::WorkerDied { thread, reason },
            other => SimError::Runtime(other),
        })?;
        let (mut tracker, totals, timeline) = done_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| SimError::WorkerDied {
                thread: "lookout-sim-sink",
                reason: "ended without its statistics".into(),
            })?;
        progress(1.0);

        let engine = runtime.engine().clone();
        let model = runtime.model().clone();
        let mut run = Report {
            execution_provider: engine.execution_provider.to_string(),
            fallback_reason: engine.fallback_reason.clone(),
            io_memory: engine.io_memory.to_string(),
            max_batch: engine.max_batch,
            inference_runs: runtime
                .engine_counters()
                .inference_runs
                .load(Ordering::Relaxed),
            model_sha256: model.sha256.clone(),
            session_rebuilds: runtime
                .engine_counters()
                .session_rebuilds
                .load(Ordering::Relaxed),
            mode: "sim".into(),
            rate: fps,
            interrupted,
            wall_s: round3(wall_s),
            model: model.name.clone(),
            latency_ms: totals.as_ref().map(Totals::latency).unwrap_or_default(),
            first_frame_ms: totals.as_ref().map(Totals::first).unwrap_or_default(),
            peak_rss_mb: peak_rss_mb(),
            histograms_ms: totals.as_ref().map(Totals::bins).unwrap_or_default(),
            timeline: Some(timeline),
            ..Report::default()
        };
        let mut report = SimReport {
            source: o.source.description.clone(),
            cameras: self.cameras.len(),
            offered_fps: fps,
            jitter_ms: o.jitter_ms,
            burst: o.burst,
            duration_s: round3(emitted_s),
            cpu_percent: if wall_s > 0.0 {
                (cpu_s / wall_s * 1000.0).round() / 10.0
            } else {
                0.0
            },
            rss_mb: crate::runtime::health::resident_mb(),
            ..SimReport::default()
        };
        let now = Instant::now();
        let mut inference_ns = 0u64;
        let mut achieved = BTreeMap::new();
        let mut drops = BTreeMap::new();
        for (i, cam) in self.cameras.iter().enumerate() {
            let s = counters[i].snapshot();
            let stats = tracker.snapshot(i, now);
            inference_ns = inference_ns.saturating_add(s.inference_ns);
            let mut counts = Counts::from_run(
                frames_in[i],
                &s,
                &stats,
                s.published,
                &engine,
                &model.sha256,
            );
            if runtime.shadow_model().is_some() {
                counts.shadow = Some(crate::replay::ShadowReport::from_counters(&s));
            }
            run.add_camera(&cam.name, counts);
            if emitted_s > 0.0 {
                achieved.insert(cam.name.clone(), round3(s.processed as f64 / emitted_s));
            }
            drops.insert(cam.name.clone(), Drops::from(&s));
        }
        if wall_s > 0.0 {
            run.frames_per_s = round3(run.frames_processed as f64 / wall_s);
        }
        if run.frames_processed > 0 && inference_ns > 0 {
            run.inference_only_frames_per_s =
                round3(1e9 * run.frames_processed as f64 / inference_ns as f64);
        }
        if let Some(shadow) = runtime.shadow_model() {
            run.shadow_model = Some(shadow.name.clone());
            run.shadow_model_sha256 = Some(shadow.sha256.clone());
        }
        report.run = run;
        report.achieved_fps = achieved;
        report.drops = drops;
        Ok(report)
    }
}

/// Hands one frame to a camera's queue as its driver would, stamped now (system time).
fn push(producer: &mut crate::runtime::queue::FrameProducer, frame: &SourceFrame, name: &str) {
    let received = Instant::now();
    let stamp = Stamp::from_nanos(system_time_ns());
    let pushed = match frame {
        SourceFrame::Raw {
            width,
            height,
            step_bytes,
            encoding,
            big_endian,
            data,
        } => producer.push_raw(
            received,
            stamp,
            name,
            RawHeader {
                width: *width,
                height: *height,
                step_bytes: *step_bytes,
                encoding,
                big_endian: *big_endian,
            },
            data,
        ),
        SourceFrame::Compressed { format, data, .. } => {
            producer.push_compressed(received, stamp, name, format, data)
        }
    };
    if let Err(rejected) = pushed {
        crate::runtime::counters::warn_bad_input(name, &rejected.error, rejected.first_of_kind);
    }
}
