//! The capture worker: each camera's ring kept to the last `before_s` seconds (by frame stamp,
//! so that live, replay and sim keep the same frames), and on a trigger the incident bag:
//! the rings, then every frame up to `after_s` seconds after the trigger's frame, written to
//! `<dir>/.<name>.partial` and renamed to `<dir>/<name>` when complete.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    ALL_CAMERAS, CaptureConfig, CaptureRecord, CaptureRings, CaptureTrigger, NEWEST_FRAME, Reason,
};
use crate::bag::{BagError, BagWriter, cdr, offered_qos_yaml, schema};
use crate::config::ImageKind;
use crate::runtime::queue::FrameFormat;

/// Counters of the captures, for /diagnostics and reports.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// Incident bags written.
    pub written: AtomicU64,
    /// Triggers not captured: a capture was running, or `max_per_hour` was reached.
    pub suppressed: AtomicU64,
    /// Captures that failed to write (logged; the partial folder is removed).
    pub failed: AtomicU64,
}

/// One camera as written into an incident bag.
#[derive(Debug, Clone)]
pub struct CaptureCamera {
    /// Name.
    pub name: String,
    /// Its input topic (absolute).
    pub input_topic: String,
    /// Raw or compressed.
    pub kind: ImageKind,
    /// Its detections topic (absolute).
    pub detections_topic: String,
}

/// A capture being written.
struct Active {
    writer: BagWriter,
    staging: PathBuf,
    destination: PathBuf,
    /// Per camera: (image topic, detections topic).
    topics: Vec<(usize, usize)>,
    camera: usize,
    until_ns: i64,
    wall_deadline: Instant,
    frames: u64,
}

/// `lookout-capture`'s state (or the replay's, inline).
pub struct CaptureWorker {
    rings: CaptureRings,
    trigger: Arc<CaptureTrigger>,
    config: CaptureConfig,
    dir: PathBuf,
    cameras: Vec<CaptureCamera>,
    class_names: Vec<String>,
    /// Model name and sha256 and lookout's version (the model changes with a hot swap).
    provenance: Arc<Mutex<BTreeMap<String, String>>>,
    counters: Arc<CaptureCounters>,
    /// Start times of the captures of the last hour.
    started: VecDeque<Instant>,
    active: Option<Active>,
    buf: Vec<u8>,
}

impl CaptureWorker {
    /// The worker over `rings`, writing into `config.dir` with `provenance` (model, sha256,
    /// lookout version) in each bag's metadata.
    pub fn new(
        rings: CaptureRings,
        trigger: Arc<CaptureTrigger>,
        config: &CaptureConfig,
        cameras: Vec<CaptureCamera>,
        class_names: Vec<String>,
        provenance: Arc<Mutex<BTreeMap<String, String>>>,
        counters: Arc<CaptureCounters>,
    ) -> Self {
        Self {
            rings,
            trigger,
            dir: config.dir.clone().unwrap_or_default(),
            config: config.clone(),
            cameras,
            class_names,
            provenance,
            counters,
            started: VecDeque::with_capacity(config.max_per_hour as usize + 1),
            active: None,
            buf: Vec::new(),
        }
    }

    /// The thread's body: takes records and triggers until `stop`, then finishes a capture
    /// being written (it is complete up to there).
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match self.rings.records.recv_timeout(Duration::from_millis(50)) {
                Ok(record) => self.take(record),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            self.poll_trigger();
            if self
                .active
                .as_ref()
                .is_some_and(|a| Instant::now() >= a.wall_deadline)
            {
                self.finish();
            }
        }
        self.finish();
    }

    /// Everything waiting, without blocking (replay at maximum speed calls this after each
    /// step, so which frames a capture holds depends only on the bag).
    pub fn poll(&mut self) {
        loop {
            self.poll_trigger();
            match self.rings.records.try_recv() {
                Ok(record) => self.take(record),
                Err(_) => break,
            }
        }
        self.poll_trigger();
    }

    /// Ends a capture being written (at the end of a run).
    pub fn finish(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
        let (staging, destination, frames) = (
            active.staging.clone(),
            active.destination.clone(),
            active.frames,
        );
        let result = active
            .writer
            .finish()
            .map_err(|e| e.to_string())
            .and_then(|_| std::fs::rename(&staging, &destination).map_err(|e| e.to_string()));
        match result {
            Ok(()) => {
                self.counters.written.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(bag = %destination.display(), frames, "incident captured");
            }
            Err(reason) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                let _ = std::fs::remove_dir_all(&staging);
                tracing::error!(bag = %destination.display(), %reason, "writing an incident bag failed; nothing was kept");
            }
        }
    }

    fn poll_trigger(&mut self) {
        if let Some((reason, camera, stamp_ns)) = self.trigger.take() {
            self.start(reason, camera, stamp_ns);
        }
    }

    /// A finished frame: written if a capture runs and it is within its window, else kept in
    /// its camera's ring (the oldest records beyond `before_s` go back to the loop).
    fn take(&mut self, record: CaptureRecord) {
        let camera = record.camera;
        let stamp = record.stamp.as_nanos();
        if let Some(active) = self.active.as_mut() {
            if stamp <= active.until_ns {
                let result = write_record(
                    active,
                    &record,
                    &mut self.buf,
                    &self.class_names,
                    &self.cameras,
                );
                self.give_back(record);
                if let Err(e) = result {
                    self.abandon(&e);
                }
                return;
            }
            if camera == active.camera || active.camera == ALL_CAMERAS {
                self.finish();
            }
        }
        let before_ns = (self.config.before_s * 1e9) as i64;
        let limit = self.rings.ring_frames;
        let (rings, spares) = (&mut self.rings.rings, &self.rings.spares);
        let (Some(ring), Some(spares)) = (rings.get_mut(camera), spares.get(camera)) else {
            return;
        };
        ring.push_back(record);
        // The oldest records beyond the ring's size or before_s go back to the loop.
        while ring.len() > limit
            || ring
                .front()
                .is_some_and(|r| r.stamp.as_nanos() < stamp.saturating_sub(before_ns))
        {
            match ring.pop_front() {
                // Cannot be full: the channel has a place for every record of the camera.
                Some(old) => {
                    let _ = spares.try_send(old);
                }
                None => break,
            }
        }
    }

    fn give_back(&self, record: CaptureRecord) {
        if let Some(spares) = self.rings.spares.get(record.camera) {
            // Cannot be full: the channel has a place for every record of the camera.
            let _ = spares.try_send(record);
        }
    }

    /// Starts a capture around `stamp_ns` unless one runs or the hour's captures are spent.
    fn start(&mut self, reason: Reason, camera: usize, stamp_ns: i64) {
        let now = Instant::now();
        while self
            .started
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
        {
            self.started.pop_front();
        }
        if self.active.is_some() || self.started.len() >= self.config.max_per_hour as usize {
            let n = self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
            if n == 0 {
                tracing::warn!(
                    reason = reason.name(),
                    "incident not captured: a capture is running or capture.max_per_hour is reached (further ones are counted, not logged)"
                );
            }
            return;
        }
        self.started.push_back(now);
        let stamp_ns = if stamp_ns == NEWEST_FRAME {
            // Asked for from outside (SIGUSR1): around the newest frame kept.
            self.rings
                .rings
                .iter()
                .filter_map(|r| r.back().map(|f| f.stamp.as_nanos()))
                .max()
                .unwrap_or(0)
        } else {
            stamp_ns
        };
        let camera_name = match self.cameras.get(camera) {
            Some(c) => c.name.clone(),
            None => "all".to_string(),
        };
        self.enforce_disk_budget();
        let name = format!(
            "incident_{}_{:03}_{}_{}",
            stamp_ns.div_euclid(1_000_000_000),
            stamp_ns.rem_euclid(1_000_000_000) / 1_000_000,
            camera_name,
            reason.name()
        );
        match self.open(&name, reason, &camera_name, stamp_ns, now) {
            Ok(mut active) => {
                active.camera = camera;
                // The rings, oldest first across cameras.
                let mut kept: Vec<CaptureRecord> = self
                    .rings
                    .rings
                    .iter_mut()
                    .flat_map(|r| r.drain(..))
                    .collect();
                kept.sort_by_key(|r| (r.stamp, r.camera));
                let mut failure = None;
                for record in kept {
                    if failure.is_none() {
                        failure = write_record(
                            &mut active,
                            &record,
                            &mut self.buf,
                            &self.class_names,
                            &self.cameras,
                        )
                        .err();
                    }
                    self.give_back(record);
                }
                self.active = Some(active);
                if let Some(e) = failure {
                    self.abandon(&e);
                }
            }
            Err(e) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot start an incident bag");
            }
        }
    }

    fn open(
        &self,
        name: &str,
        reason: Reason,
        camera: &str,
        stamp_ns: i64,
        now: Instant,
    ) -> Result<Active, BagError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| BagError::Write {
            path: self.dir.clone(),
            reason: e.to_string(),
        })?;
        let staging = self.dir.join(format!(".{name}.partial"));
        let _ = std::fs::remove_dir_all(&staging);
        let mut metadata = self
            .provenance
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        metadata.insert("lookout.capture.trigger".into(), reason.name().into());
        metadata.insert("lookout.capture.camera".into(), camera.into());
        metadata.insert("lookout.capture.stamp_ns".into(), stamp_ns.to_string());
        metadata.insert(
            "lookout.capture.before_s".into(),
            self.config.before_s.to_string(),
        );
        metadata.insert(
            "lookout.capture.after_s".into(),
            self.config.after_s.to_string(),
        );
        let mut writer = BagWriter::create_named(&staging, name, metadata)?;
        let mut topics = Vec::with_capacity(self.cameras.len());
        for c in &self.cameras {
            let image = match c.kind {
                ImageKind::Image => schema::IMAGE,
                ImageKind::Compressed => schema::COMPRESSED_IMAGE,
            };
            let offered = offered_qos_yaml(true, 10);
            let image_topic = writer.add_known_topic(&c.input_topic, &image, &offered)?;
            let detections_topic = writer.add_known_topic(
                &c.detections_topic,
                &schema::DETECTION2D_ARRAY,
                &offered,
            )?;
            topics.push((image_topic, detections_topic));
        }
        let after = Duration::from_secs_f64(self.config.after_s);
        Ok(Active {
            writer,
            destination: self.dir.join(name),
            staging,
            topics,
            camera: 0,
            until_ns: stamp_ns.saturating_add((self.config.after_s * 1e9) as i64),
            // Frames stop coming: the capture ends anyway (after_s plus a margin).
            wall_deadline: now + after + Duration::from_secs(5),
            frames: 0,
        })
    }

    /// Removes the oldest incident bags of `dir` (those lookout named `incident_*`) until they
    /// take at most `max_total_mb`, before a new one is written.
    fn enforce_disk_budget(&self) {
        let limit = (self.config.max_total_mb * 1e6) as u64;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut bags: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("incident_"))
            .filter_map(|e| {
                let path = e.path();
                let bytes = std::fs::read_dir(&path)
                    .ok()?
                    .filter_map(Result::ok)
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum();
                Some((e.metadata().ok()?.modified().ok()?, bytes, path))
            })
            .collect();
        bags.sort();
        let mut total: u64 = bags.iter().map(|b| b.1).sum();
        for (_, bytes, path) in bags {
            if total <= limit {
                break;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    total = total.saturating_sub(bytes);
                    tracing::warn!(bag = %path.display(), "incident bag removed: capture.max_total_mb reached");
                }
                Err(e) => {
                    tracing::error!(bag = %path.display(), error = %e, "cannot remove an old incident bag");
                    break;
                }
            }
        }
    }

    /// A write failed: the capture is dropped, its folder removed.
    fn abandon(&mut self, e: &BagError) {
        if let Some(active) = self.active.take() {
            let _ = std::fs::remove_dir_all(&active.staging);
        }
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, "writing an incident bag failed; nothing was kept");
    }
}

impl Drop for CaptureWorker {
    fn drop(&mut self) {
        // A capture being written is complete up to here: keep it.
        self.finish();
    }
}

/// Writes one record's image and detections at its stamp.
fn write_record(
    active: &mut Active,
    record: &CaptureRecord,
    buf: &mut Vec<u8>,
    class_names: &[String],
    cameras: &[CaptureCamera],
) -> Result<(), BagError> {
    let Some(&(image_topic, detections_topic)) = active.topics.get(record.camera) else {
        return Ok(());
    };
    let kind = cameras.get(record.camera).map(|c| c.kind);
    let t = u64::try_from(record.stamp.as_nanos()).unwrap_or(0);
    match (record.format, kind) {
        (
            FrameFormat::Raw {
                width,
                height,
                step_bytes,
                encoding,
                big_endian,
            },
            Some(ImageKind::Image),
        ) => cdr::encode_image(
            buf,
            record.stamp,
            record.frame_id(),
            (width, height, step_bytes),
            encoding.as_ros(),
            big_endian,
            record.data(),
        ),
        (FrameFormat::Compressed(format), Some(ImageKind::Compressed)) => {
            cdr::encode_compressed_image(
                buf,
                record.stamp,
                record.frame_id(),
                format.as_ros(),
                record.data(),
            )
        }
        _ => return Ok(()),
    }
    active.writer.write(image_topic, t, buf)?;
    active.frames += 1;
    if !record.has_result {
        // No result (a failed or terminated run, bad input, dropped): the image only.
        return Ok(());
    }
    cdr::encode_detection_array(
        buf,
        record.stamp,
        record.frame_id(),
        record.detections(),
        class_names,
    );
    active.writer.write(detections_topic, t, buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueuePolicy;
    use crate::runtime::capture::capture_parts;
    use crate::runtime::queue::{RawHeader, Stamp, camera_ring};

    fn message_count(bag: &std::path::Path) -> u64 {
        let text = std::fs::read_to_string(bag.join("metadata.yaml")).unwrap();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("message_count:"))
            .unwrap();
        line.split(':').nth(1).unwrap().trim().parse().unwrap()
    }

    #[test]
    fn keeps_before_s_writes_after_s_and_counts_what_it_cannot_capture() {
        let dir = std::env::temp_dir().join(format!("lookout-capture-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = CaptureConfig {
            dir: Some(dir.clone()),
            before_s: 0.5,
            after_s: 0.2,
            max_rate_hz: 10.0,
            max_per_hour: 1,
            max_total_mb: 100.0,
            triggers: vec!["deadline_miss".into()],
        };
        let (mut producer, mut consumer, counters) = camera_ring(0, 2, 4, 4, QueuePolicy::Fifo);
        let trigger = Arc::new(CaptureTrigger::new(&config, 1));
        let (tap, rings) = capture_parts(&config, &[(64, Arc::clone(&counters))], 4, &trigger);
        let cameras = vec![CaptureCamera {
            name: "front".into(),
            input_topic: "/front/image_raw".into(),
            kind: ImageKind::Image,
            detections_topic: "/front/detections".into(),
        }];
        let written = Arc::new(CaptureCounters::default());
        let mut worker = CaptureWorker::new(
            rings,
            Arc::clone(&trigger),
            &config,
            cameras,
            vec!["person".into()],
            Arc::default(),
            Arc::clone(&written),
        );
        let pixels = [7u8; 4 * 4 * 3];
        // Frame k is stamped k x 100 ms.
        let mut frame = |k: i64, worker: &mut CaptureWorker| {
            let stamp = Stamp::from_nanos(k * 100_000_000);
            let header = RawHeader::new(4, 4, 12, "rgb8");
            assert!(
                producer
                    .push_raw(Instant::now(), stamp, "f", header, &pixels)
                    .unwrap()
            );
            let mut f = consumer.take().unwrap();
            tap.keep(&mut f, Some(&[]));
            consumer.recycle(f);
            worker.poll();
        };
        for k in 1..=20 {
            frame(k, &mut worker);
        }
        // A disabled reason is ignored; a deadline miss at frame 20 starts a capture.
        trigger.request(Reason::Drift, 0, 2_000_000_000);
        trigger.request(Reason::DeadlineMiss, 0, 2_000_000_000);
        for k in 21..=25 {
            frame(k, &mut worker);
        }
        let bags: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(bags.len(), 1, "{bags:?}");
        assert!(
            bags[0].ends_with("incident_2_000_front_deadline_miss"),
            "{bags:?}"
        );
        // The ring's 5 frames (before_s x max_rate_hz), 16..=20, and 21, 22 (up to 0.2 s
        // after): 7 images and 7 detection arrays.
        assert_eq!(message_count(&bags[0]), 14);
        assert_eq!(written.written.load(Ordering::Relaxed), 1);
        // Misses 0.5 s later are the same incident (within before_s + after_s of the last).
        trigger.request(Reason::DeadlineMiss, 0, 2_500_000_000);
        frame(26, &mut worker);
        assert_eq!(trigger.incidents.load(Ordering::Relaxed), 1);
        assert_eq!(written.suppressed.load(Ordering::Relaxed), 0);
        // A new one 0.7 s after the last miss: the hour's one capture is spent, so it is
        // counted, not captured.
        trigger.request(Reason::DeadlineMiss, 0, 3_200_000_000);
        frame(27, &mut worker);
        assert_eq!(trigger.incidents.load(Ordering::Relaxed), 2);
        assert_eq!(written.suppressed.load(Ordering::Relaxed), 1);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(counters.capture_missed.load(Ordering::Relaxed), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
