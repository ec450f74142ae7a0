//! `lookout sim --via-ros`: the same schedule, but through a real ROS 2 graph, so that DDS
//! transport and serialisation are in the figure (as ros2_benchmark measures). The node is
//! `lookout run` in a process of its own (its parameters file written from the simulation's
//! configuration); this process is the camera drivers (an r2r publisher per camera) and the
//! monitor (an r2r subscription per detections topic, timing publish to receive). They must be
//! two processes: nodes of one process share a DDS participant, and Fast DDS then hands
//! messages over in memory.
//!
//! Contract: allocates freely (it is a load generator; the node under test is the child);
//! every wait is bounded (start-up 120 s, results 5 s after the last frame, shutdown 30 s).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::Stream;

use super::report::{Drops, SimReport, ViaRos};
use super::schedule::{Schedule, Wait, wait_until};
use super::source::SourceFrame;
use super::{Sim, SimError, round3};
use crate::config::ImageKind;
use crate::replay::{Counts, LatencyMs, Report, peak_rss_mb};
use crate::runtime::counters::CounterSnapshot;
use crate::runtime::deadline::LatencyStats;

fn failed(reason: impl Into<String>) -> SimError {
    SimError::WorkerDied {
        thread: "lookout run (--via-ros)",
        reason: reason.into(),
    }
}

fn ros(what: &'static str) -> impl Fn(r2r::Error) -> SimError {
    move |e| failed(format!("{what}: {e}"))
}

enum Publisher {
    Raw(
        r2r::Publisher<r2r::sensor_msgs::msg::Image>,
        Vec<r2r::sensor_msgs::msg::Image>,
    ),
    Compressed(
        r2r::Publisher<r2r::sensor_msgs::msg::CompressedImage>,
        Vec<r2r::sensor_msgs::msg::CompressedImage>,
    ),
}

/// The node's end-of-run summary of one camera (`lookout: summary camera=... key=value ...`).
fn parse_summary(line: &str) -> Option<(String, BTreeMap<String, f64>)> {
    let rest = line.split("lookout: summary ").nth(1)?;
    let mut name = None;
    let mut values = BTreeMap::new();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        if k == "camera" {
            name = Some(v.to_string());
        } else if let Ok(v) = v.parse() {
            values.insert(k.to_string(), v);
        }
    }
    Some((name?, values))
}

/// CPU seconds and resident MB of process `pid`, from /proc (zero where unreadable).
fn process_usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the command.
    let cpu = (ticks(11) + ticks(12)) / tick;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0);
    (cpu, rss)
}

fn stamp_now() -> r2r::builtin_interfaces::msg::Time {
    let ns = super::system_time_ns();
    r2r::builtin_interfaces::msg::Time {
        sec: (ns / 1_000_000_000) as i32,
        nanosec: (ns % 1_000_000_000) as u32,
    }
}

fn poll<S: Stream + Unpin>(s: &mut S, cx: &mut std::task::Context<'_>) -> Option<S::Item> {
    match std::pin::Pin::new(s).poll_next(cx) {
        std::task::Poll::Ready(Some(item)) => Some(item),
        _ => None,
    }
}

impl Sim {
    /// One run at `fps` per camera through a ROS 2 graph (see the module docs).
    pub(super) fn run_via_ros(
        &self,
        fps: f64,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<SimReport, SimError> {
        super::check_fps("--fps", fps)?;
        // The node: `lookout run` with this simulation's configuration.
        let dir = std::env::temp_dir().join(format!("lookout-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
        let params = dir.join("params.yaml");
        std::fs::write(&params, self.config.to_parameters_yaml()?)
            .map_err(|e| failed(e.to_string()))?;
        let exe = std::env::current_exe().map_err(|e| failed(e.to_string()))?;
        let mut child = std::process::Command::new(exe)
            .arg("run")
            .arg("--params-file")
            .arg(&params)
            .env("RUST_LOG", "info,ort=warn")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| failed(e.to_string()))?;
        let pid = child.id();
        let (tx, lines) = crossbeam_channel::bounded::<String>(100_000);
        if let Some(stderr) = child.stderr.take() {
            std::thread::Builder::new()
                .name("lookout-sim-node-log".into())
                .spawn(move || {
                    for line in std::io::BufReader::new(stderr)
                        .lines()
                        .map_while(Result::ok)
                    {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| failed(e.to_string()))?;
        }
        let result = self.drive(fps, stop, progress, pid, &lines, &mut child);
        // Whatever happened, the node stops (SIGINT: it prints its summary), within 30 s.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&dir);
        let (mut report, usage) = result?;
        let mut seen = Vec::new();
        while let Ok(l) = lines.recv_timeout(Duration::from_millis(500)) {
            seen.push(l);
        }
        self.fill_from_node(&mut report, &seen, usage);
        Ok(report)
    }

    /// Publishes on the schedule and times the detections; returns the report so far and the
    /// node's CPU seconds, wall seconds and RSS over the run.
    fn drive(
        &self,
        fps: f64,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(f64),
        pid: u32,
        lines: &crossbeam_channel::Receiver<String>,
        child: &mut std::process::Child,
    ) -> Result<(SimReport, (f64, f64, f64)), SimError> {
        let o = &self.options;
        let started = Instant::now();
        loop {
            match lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.contains("lookout running") => break,
                Ok(_) => {}
                Err(_) if child.try_wait().ok().flatten().is_some() => {
                    return Err(failed("the node exited before it ran"));
                }
                Err(_) if started.elapsed() > Duration::from_secs(120) => {
                    return Err(failed("the node did not start within 120 s"));
                }
                Err(_) => {}
            }
            if stop.load(Ordering::Relaxed) {
                return Err(failed("interrupted before the node ran"));
            }
        }
        let ctx = r2r::Context::create().map_err(ros("initialise rcl"))?;
        let mut node =
            r2r::Node::create(ctx, "lookout_sim_source", "").map_err(ros("create node"))?;
        let mut qos = r2r::QosProfile::default().keep_last(5);
        qos.reliability = r2r::qos::ReliabilityPolicy::Reliable;
        let mut publishers = Vec::new();
        let mut subs = Vec::new();
        for (cam, (name, c)) in self.cameras.iter().zip(self.config.camera_list()) {
            let header = |i: usize| r2r::std_msgs::msg::Header {
                stamp: stamp_now(),
                frame_id: format!("{name}_{i}"),
            };
            let p = match c.kind {
                ImageKind::Image => {
                    let msgs = cam
                        .frames
                        .iter()
                        .enumerate()
                        .filter_map(|(i, f)| match f {
                            SourceFrame::Raw {
                                width,
                                height,
                                step_bytes,
                                encoding,
                                big_endian,
                                data,
                            } => Some(r2r::sensor_msgs::msg::Image {
                                header: header(i),
                                height: *height,
                                width: *width,
                                encoding: encoding.clone(),
                                is_bigendian: u8::from(*big_endian),
                                step: u32::try_from(*step_bytes).unwrap_or(u32::MAX),
                                data: data.clone(),
                            }),
                            SourceFrame::Compressed { .. } => None,
                        })
                        .collect();
                    Publisher::Raw(
                        node.create_publisher(&c.topic, qos.clone())
                            .map_err(ros("create publisher"))?,
                        msgs,
                    )
                }
                ImageKind::Compressed => {
                    let msgs = cam
                        .frames
                        .iter()
                        .enumerate()
                        .filter_map(|(i, f)| match f {
                            SourceFrame::Compressed { format, data, .. } => {
                                Some(r2r::sensor_msgs::msg::CompressedImage {
                                    header: header(i),
                                    format: format.clone(),
                                    data: data.clone(),
                                })
                            }
                            SourceFrame::Raw { .. } => None,
                        })
                        .collect();
                    Publisher::Compressed(
                        node.create_publisher(&c.topic, qos.clone())
                            .map_err(ros("create publisher"))?,
                        msgs,
                    )
                }
            };
            publishers.push(p);
            let topic = self.config.detections_topic(name);
            let topic = if topic.starts_with('/') {
                topic
            } else {
                format!("/{topic}")
            };
            subs.push(
                node.subscribe::<r2r::vision_msgs::msg::Detection2DArray>(
                    &topic,
                    r2r::QosProfile::default(),
                )
                .map_err(ros("subscribe to detections"))?,
            );
        }
        // The node's subscriptions are matched (or 30 s), then half a second for the data path.
        let matched = |p: &Publisher| match p {
            Publisher::Raw(p, _) => p.get_inter_process_subscription_count().unwrap_or(0) > 0,
            Publisher::Compressed(p, _) => {
                p.get_inter_process_subscription_count().unwrap_or(0) > 0
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !publishers.iter().all(matched) && Instant::now() < deadline {
            node.spin_once(Duration::from_millis(50));
        }
        let settle = Instant::now() + Duration::from_millis(500);
        while Instant::now() < settle {
            node.spin_once(Duration::from_millis(50));
        }

        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let n = self.cameras.len();
        let mut e2e =
            LatencyStats::new(Duration::from_secs(3600)).map_err(|e| failed(e.to_string()))?;
        let mut received = vec![0u64; n];
        let mut published = vec![0u64; n];
        let mut next_frame = vec![0usize; n];
        let mut take = |node: &mut r2r::Node,
                        subs: &mut Vec<_>,
                        received: &mut Vec<u64>,
                        e2e: &mut LatencyStats,
                        wait: Duration| {
            node.spin_once(wait);
            for (i, s) in subs.iter_mut().enumerate() {
                while let Some(msg) = poll(s, &mut cx) {
                    let msg: r2r::vision_msgs::msg::Detection2DArray = msg;
                    let now_ns = super::system_time_ns();
                    let stamp_ns = i64::from(msg.header.stamp.sec) * 1_000_000_000
                        + i64::from(msg.header.stamp.nanosec);
                    let ns = u64::try_from(now_ns.saturating_sub(stamp_ns)).unwrap_or(0);
                    e2e.record(Instant::now(), Duration::from_nanos(ns));
                    received[i] += 1;
                }
            }
        };
        let mut schedule = Schedule::new(n, fps, o.jitter_ms, o.burst, o.seed);
        let (cpu0, _) = process_usage(pid);
        let start = Instant::now();
        let mut interrupted = false;
        let mut last_progress = start;
        'emit: loop {
            let (camera, at) = schedule.next_frame();
            if at >= o.duration {
                break;
            }
            let waited = wait_until(start + at, stop, |left| {
                take(
                    &mut node,
                    &mut subs,
                    &mut received,
                    &mut e2e,
                    left.min(Duration::from_millis(5)),
                );
                true
            });
            if waited != Wait::Due {
                interrupted = true;
                break 'emit;
            }
            let k = next_frame[camera];
            next_frame[camera] += 1;
            let sent = match &mut publishers[camera] {
                Publisher::Raw(p, msgs) => {
                    let len = msgs.len().max(1);
                    msgs.get_mut(k % len).map(|m| {
                        m.header.stamp = stamp_now();
                        p.publish(m)
                    })
                }
                Publisher::Compressed(p, msgs) => {
                    let len = msgs.len().max(1);
                    msgs.get_mut(k % len).map(|m| {
                        m.header.stamp = stamp_now();
                        p.publish(m)
                    })
                }
            };
            if let Some(Ok(())) = sent {
                published[camera] += 1;
            }
            if last_progress.elapsed() > Duration::from_millis(200) {
                last_progress = Instant::now();
                progress(at.as_secs_f64() / o.duration.as_secs_f64());
            }
        }
        while !interrupted && start.elapsed() < o.duration {
            take(
                &mut node,
                &mut subs,
                &mut received,
                &mut e2e,
                Duration::from_millis(5),
            );
        }
        let emitted_s = start.elapsed().as_secs_f64().min(o.duration.as_secs_f64());
        // The last results: until every frame came back, or 5 s.
        let linger = Instant::now() + Duration::from_secs(5);
        while Instant::now() < linger && received.iter().sum::<u64>() < published.iter().sum() {
            take(
                &mut node,
                &mut subs,
                &mut received,
                &mut e2e,
                Duration::from_millis(20),
            );
        }
        let wall_s = start.elapsed().as_secs_f64();
        let (cpu1, rss) = process_usage(pid);
        progress(1.0);

        let mut run = Report {
            mode: "sim-via-ros".into(),
            rate: fps,
            interrupted,
            wall_s: round3(wall_s),
            latency_ms: LatencyMs {
                e2e: e2e.total().into(),
                ..LatencyMs::default()
            },
            peak_rss_mb: peak_rss_mb(),
            ..Report::default()
        };
        let mut achieved = BTreeMap::new();
        let mut via = ViaRos::default();
        for (i, cam) in self.cameras.iter().enumerate() {
            run.frames_in += published[i];
            if emitted_s > 0.0 {
                achieved.insert(cam.name.clone(), round3(received[i] as f64 / emitted_s));
            }
            via.published.insert(cam.name.clone(), published[i]);
            via.received.insert(cam.name.clone(), received[i]);
        }
        let report = SimReport {
            run,
            source: o.source.description.clone(),
            cameras: n,
            offered_fps: fps,
            achieved_fps: achieved,
            jitter_ms: o.jitter_ms,
            burst: o.burst,
            duration_s: round3(emitted_s),
            via_ros: Some(via),
            ..SimReport::default()
        };
        Ok((report, (cpu1 - cpu0, wall_s, rss)))
    }

    /// Per-camera counts and stage means from the node's summary lines; CPU and memory of the
    /// node's process.
    fn fill_from_node(&self, report: &mut SimReport, lines: &[String], usage: (f64, f64, f64)) {
        let (cpu_s, wall_s, rss) = usage;
        report.cpu_percent = if wall_s > 0.0 {
            (cpu_s / wall_s * 1000.0).round() / 10.0
        } else {
            0.0
        };
        report.rss_mb = rss;
        let summaries: BTreeMap<String, BTreeMap<String, f64>> =
            lines.iter().filter_map(|l| parse_summary(l)).collect();
        let published = report
            .via_ros
            .as_ref()
            .map(|v| v.published.clone())
            .unwrap_or_default();
        let mut means = BTreeMap::new();
        report.run.frames_in = 0;
        for cam in &self.cameras {
            let Some(v) = summaries.get(&cam.name) else {
                continue;
            };
            let g = |k: &str| v.get(k).copied().unwrap_or(0.0) as u64;
            let s = CounterSnapshot {
                received: g("received"),
                processed: g("processed"),
                published: g("published"),
                dropped_ring_full: g("dropped_ring_full"),
                dropped_superseded: g("dropped_superseded"),
                dropped_too_old: g("dropped_too_old"),
                dropped_late: g("dropped_late"),
                deadline_misses: g("deadline_misses"),
                timeouts: g("timeouts"),
                bad_input: g("bad_input"),
                inference_errors: g("inference_errors"),
                dropped_output: g("dropped_output"),
                clock_anomalies: g("clock_anomalies"),
                ..CounterSnapshot::default()
            };
            let counts = Counts::from_run(
                published.get(&cam.name).copied().unwrap_or(s.received),
                &s,
                &Default::default(),
                s.published,
                &crate::runtime::health::EngineInfo {
                    execution_provider: "",
                    fallback_reason: String::new(),
                    io_memory: "",
                    max_batch: 0,
                    model: String::new(),
                    sha256: String::new(),
                    ort_library: String::new(),
                },
                "",
            );
            report.run.add_camera(&cam.name, counts);
            report.drops.insert(cam.name.clone(), Drops::from(&s));
            means.insert(
                cam.name.clone(),
                [
                    (
                        "preprocess",
                        v.get("preprocess_ms_mean").copied().unwrap_or(0.0),
                    ),
                    (
                        "inference",
                        v.get("inference_ms_mean").copied().unwrap_or(0.0),
                    ),
                    (
                        "postprocess",
                        v.get("postprocess_ms_mean").copied().unwrap_or(0.0),
                    ),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            );
        }
        if let Some(v) = report.via_ros.as_mut() {
            v.node_stage_means_ms = means;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_summary_lines_parse() {
        let (name, v) = parse_summary(
            "lookout: summary camera=cam0 received=10 processed=9 published=9 preprocess_ms_mean=1.25",
        )
        .unwrap();
        assert_eq!(name, "cam0");
        assert_eq!(v["received"], 10.0);
        assert_eq!(v["preprocess_ms_mean"], 1.25);
        assert!(parse_summary("something else").is_none());
    }
}
