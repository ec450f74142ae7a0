//! The replay's result sink: detections, /diagnostics and copied topics into the output bag,
//! and the report at the end.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::report::peak_rss_mb;
use super::{Counts, Pace, Replay, ReplayError, Report, round2};
use crate::bag::{cdr, schema};
use crate::runtime::deadline::Verdict;
use crate::runtime::health::Status;
use crate::runtime::inference::Output;

impl Replay {
    /// Writes every result ready. `log_time_ns`: the time to write them at (max-speed: the
    /// frame's receive time); `None`: the bag clock now (rate).
    pub(super) fn drain(
        &mut self,
        log_time_ns: Option<u64>,
        mut keep: Option<&mut Option<(String, Vec<u8>)>>,
    ) -> Result<(), ReplayError> {
        while let Some(out) = self.runtime.results().and_then(|r| r.try_recv()) {
            let result = self.write_result(&out, log_time_ns, keep.as_deref_mut());
            if let Some(r) = self.runtime.results() {
                r.recycle(out);
            }
            result?;
        }
        while let Some(out) = self.runtime.shadow_results().and_then(|r| r.try_recv()) {
            let result = self.write_shadow_result(&out, log_time_ns);
            if let Some(r) = self.runtime.shadow_results() {
                r.recycle(out);
            }
            result?;
        }
        Ok(())
    }

    /// Writes a shadow model's result on the camera's `shadow/detections` topic (at its
    /// primary result's time when that is pending, else as [`Self::write_result`] would).
    fn write_shadow_result(
        &mut self,
        out: &Output,
        log_time_ns: Option<u64>,
    ) -> Result<(), ReplayError> {
        let Some(topic) = self.cameras.get(out.camera).and_then(|c| c.shadow_topic) else {
            return Ok(());
        };
        cdr::encode_detection_array(
            &mut self.buf,
            out.stamp,
            out.frame_id(),
            out.detections(),
            self.runtime
                .shadow_model()
                .map_or(&[][..], |m| m.class_names.as_slice()),
        );
        let t = self.log_time(out.camera, log_time_ns);
        if let Some(w) = self.writer.as_mut() {
            w.write(topic, t, &self.buf)?;
        }
        self.last_log_ns = self.last_log_ns.max(t);
        Ok(())
    }

    pub(super) fn write_result(
        &mut self,
        out: &Output,
        log_time_ns: Option<u64>,
        keep: Option<&mut Option<(String, Vec<u8>)>>,
    ) -> Result<(), ReplayError> {
        let now = Instant::now();
        let verdict = match self.runtime.tracker_mut() {
            Some(t) => t.judge(out, now),
            None => Verdict::OnTime,
        };
        let e2e = now.saturating_duration_since(out.received);
        self.totals.record(out, e2e, now);
        self.timeline.record(now, e2e, verdict != Verdict::OnTime);
        let dropped = self
            .cameras
            .iter()
            .map(|c| {
                let s = c.counters.snapshot();
                s.dropped() + s.timeouts + s.inference_errors
            })
            .sum();
        self.timeline.note_drops(now, dropped);
        if verdict == Verdict::LateDrop {
            return Ok(());
        }
        let t = self.log_time(out.camera, log_time_ns);
        let Some(camera) = self.cameras.get_mut(out.camera) else {
            return Ok(());
        };
        cdr::encode_detection_array(
            &mut self.buf,
            out.stamp,
            out.frame_id(),
            out.detections(),
            &self.runtime.model().class_names,
        );
        if let Some(w) = self.writer.as_mut() {
            w.write(camera.out_topic, t, &self.buf)?;
            if let Some(topic) = camera.annotations_topic {
                cdr::encode_image_annotations(
                    &mut self.annotations_buf,
                    out.stamp,
                    out.detections(),
                    &self.runtime.model().class_names,
                );
                w.write(topic, t, &self.annotations_buf)?;
            }
            camera.written += 1;
            self.profile_counts
                .add_frame(out.detections(), out.image_width, out.image_height);
            for d in out.detections() {
                if let Some(n) = self.class_counts.get_mut(d.class_id as usize) {
                    *n += 1;
                }
            }
            camera.counters.published.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(k) = keep {
            // Step mode only: the last result, for printing.
            let (name, bytes) = k.get_or_insert_with(Default::default);
            name.clone_from(&camera.name);
            bytes.clone_from(&self.buf);
        }
        self.last_log_ns = self.last_log_ns.max(t);
        Ok(())
    }

    /// The log time of `camera`'s result: its frame's when that is pending (grouped max-speed
    /// runs), else `log_time_ns`, else the bag clock now (rate).
    fn log_time(&self, camera: usize, log_time_ns: Option<u64>) -> u64 {
        let pending = self.pending_log_ns.get(camera).copied().flatten();
        pending
            .or(log_time_ns)
            .unwrap_or_else(|| u64::try_from(self.clock_ns.load(Ordering::Relaxed)).unwrap_or(0))
    }

    /// `--copy-all`: every input message goes to the output bag unchanged.
    pub(super) fn copy(&mut self, m: &crate::bag::BagMessage<'_>) -> Result<(), ReplayError> {
        self.last_log_ns = self.last_log_ns.max(m.log_time_ns);
        if !self.options.copy_all {
            return Ok(());
        }
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let topic = match self.copied.get(m.topic) {
            Some(t) => *t,
            None => {
                let known = schema::known(m.type_name);
                let fallback = known.map(|k| k.definition());
                let definition = m
                    .definition
                    .or(fallback.as_deref().map(|d| ("ros2msg", d.as_bytes())));
                let t = w.add_topic(
                    m.topic,
                    m.type_name,
                    definition,
                    known.map_or("", |k| k.type_hash),
                    "",
                )?;
                self.copied.insert(m.topic.to_string(), t);
                t
            }
        };
        w.write(topic, m.log_time_ns, m.data)?;
        Ok(())
    }

    /// Writes /diagnostics for every period boundary up to bag time `bag_ns`.
    pub(super) fn emit_diagnostics_until(&mut self, bag_ns: u64) -> Result<(), ReplayError> {
        let Some(topic) = self.diagnostics_topic else {
            return Ok(());
        };
        if self.next_diagnostics_ns == 0 {
            self.next_diagnostics_ns = bag_ns.saturating_add(self.period_ns);
            return Ok(());
        }
        if bag_ns < self.next_diagnostics_ns {
            // A bag played after another may start earlier: re-anchor on time going back.
            // (Bag times are untrusted: every sum saturates.)
            if self.next_diagnostics_ns - bag_ns > self.period_ns.saturating_mul(2) {
                self.next_diagnostics_ns = bag_ns.saturating_add(self.period_ns);
            }
            return Ok(());
        }
        let at = self.next_diagnostics_ns;
        self.next_diagnostics_ns = bag_ns.max(at).saturating_add(self.period_ns);
        let statuses = self.statuses();
        let stamp = crate::runtime::queue::Stamp::from_nanos(i64::try_from(at).unwrap_or(i64::MAX));
        cdr::encode_diagnostic_array(&mut self.buf, stamp, &statuses, "lookout");
        if let Some(w) = self.writer.as_mut() {
            w.write(topic, at, &self.buf)?;
        }
        Ok(())
    }

    pub(super) fn statuses(&mut self) -> Vec<Status> {
        self.runtime.report_health(Instant::now())
    }

    pub(super) fn finish(mut self, interrupted: bool) -> Result<Report, ReplayError> {
        let wall_s = self.started.elapsed().as_secs_f64();
        // An incident bag being written ends with the bag's last frame.
        self.runtime.finish_capture();
        if interrupted && let Some(delay) = crate::runtime::supervise::fault_finish_delay() {
            std::thread::sleep(delay);
        }
        if let Err(e) = self.emit_diagnostics_final() {
            if let Some(w) = self.writer.take() {
                let _ = w.finish();
            }
            return Err(e);
        }
        let info = match self.writer.take() {
            Some(w) => Some(w.finish()?),
            None => None,
        };
        let now = Instant::now();
        let engine = self.runtime.engine().clone();
        let model = self.runtime.model().clone();
        let mut report = Report {
            execution_provider: engine.execution_provider.to_string(),
            fallback_reason: engine.fallback_reason.clone(),
            io_memory: engine.io_memory.to_string(),
            max_batch: engine.max_batch,
            inference_runs: self
                .runtime
                .engine_counters()
                .inference_runs
                .load(Ordering::Relaxed),
            model_sha256: model.sha256.clone(),
            session_rebuilds: self
                .runtime
                .engine_counters()
                .session_rebuilds
                .load(std::sync::atomic::Ordering::Relaxed),
            mode: self.options.pace.name().to_string(),
            rate: match self.options.pace {
                Pace::Rate(r) => r,
                _ => 1.0,
            },
            interrupted,
            storage_errors: self.damage.iter().map(|d| d.to_string()).collect(),
            wall_s: (wall_s * 1000.0).round() / 1000.0,
            model: model.name.clone(),
            input_bags: self
                .options
                .bags
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            output_bag: self.options.out.display().to_string(),
            messages_written: info.map_or(0, |i| i.message_count),
            latency_ms: self.totals.latency(),
            first_frame_ms: self.totals.first(),
            histograms_ms: self.totals.bins(),
            latency_histograms_us: self.totals.sparse(),
            detections_by_class: self
                .class_counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(id, n)| {
                    let name = model.class_names.get(id).map_or("?", String::as_str);
                    (name.to_string(), *n)
                })
                .collect(),
            lookout_version: env!("CARGO_PKG_VERSION").to_string(),
            timeline: {
                let mut t = std::mem::take(&mut self.timeline);
                t.finish();
                Some(t)
            },
            peak_rss_mb: peak_rss_mb(),
            profile: Some(crate::runtime::drift::Profile::from_counts(
                &self.profile_counts,
                &model.name,
                &model.sha256,
                &model.class_names,
            )),
            ..Report::default()
        };
        let mut inference_ns = 0u64;
        for (i, c) in self.cameras.iter().enumerate() {
            let s = c.counters.snapshot();
            let stats = self
                .runtime
                .tracker_mut()
                .map(|t| t.snapshot(i, now))
                .unwrap_or_default();
            inference_ns = inference_ns.saturating_add(s.inference_ns);
            let mut counts =
                Counts::from_run(c.frames_in, &s, &stats, c.written, &engine, &model.sha256);
            if self.runtime.shadow_model().is_some() {
                counts.shadow = Some(super::report::ShadowReport::from_counters(&s));
            }
            report.add_camera(&c.name, counts);
        }
        report.incident_captures = self
            .runtime
            .capture_counters()
            .map(|c| c.written.load(Ordering::Relaxed));
        if let Some(shadow) = self.runtime.shadow_model() {
            report.shadow_model = Some(shadow.name.clone());
            report.shadow_model_sha256 = Some(shadow.sha256.clone());
        }
        if wall_s > 0.0 {
            report.frames_per_s = round2(report.frames_processed as f64 / wall_s);
        }
        if report.frames_processed > 0 && inference_ns > 0 {
            report.inference_only_frames_per_s =
                round2(1e9 * report.frames_processed as f64 / inference_ns as f64);
        }
        // The bag is complete: only now does it take the destination's place.
        if let Some(output) = self.output.take() {
            output.commit()?;
        }
        Ok(report)
    }

    pub(super) fn emit_diagnostics_final(&mut self) -> Result<(), ReplayError> {
        // One last status at the end of the bag, so short bags carry one too.
        if self.diagnostics_topic.is_some() && self.last_log_ns > 0 {
            self.next_diagnostics_ns = self.next_diagnostics_ns.min(self.last_log_ns).max(1);
            return self.emit_diagnostics_until(self.last_log_ns);
        }
        Ok(())
    }
}
