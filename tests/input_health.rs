//! Input health: synthetic and real frames through the detector (the picture is measured on the
//! input tensor) drive each condition of the monitor, and a replay of a bag whose middle third is
//! black reports the covered camera on /diagnostics at those bag times only.

mod common;

use std::process::Command;

use lookout::core::detector::Detector;
use lookout::core::image::{ImageView, PixelEncoding};
use lookout::core::input_health::InputStats;
use lookout::core::model::Model;
use lookout::runtime::input_health::{Condition, InputHealthConfig, InputMonitor};

/// An owned rgb8 frame.
struct Frame {
    w: u32,
    h: u32,
    data: Vec<u8>,
}

impl Frame {
    fn filled(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Self {
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&f(x, y));
            }
        }
        Self { w, h, data }
    }

    fn photo(name: &str) -> Self {
        let (w, h, enc, data) = common::load_rgb(&common::image(name));
        assert_eq!(enc, PixelEncoding::Rgb8);
        Self { w, h, data }
    }

    /// A box blur of `radius` pixels (horizontal then vertical), as an out-of-focus lens.
    fn blurred(&self, radius: i64) -> Self {
        let (w, h) = (self.w as i64, self.h as i64);
        let at = |d: &[u8], x: i64, y: i64, c: usize| {
            let (x, y) = (x.clamp(0, w - 1), y.clamp(0, h - 1));
            u32::from(d[((y * w + x) * 3) as usize + c])
        };
        let n = (2 * radius + 1) as u32;
        let pass = |src: &[u8], dx: i64, dy: i64| {
            let mut out = vec![0u8; src.len()];
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let sum: u32 = (-radius..=radius)
                            .map(|k| at(src, x + k * dx, y + k * dy, c))
                            .sum();
                        out[((y * w + x) * 3) as usize + c] = (sum / n) as u8;
                    }
                }
            }
            out
        };
        let data = pass(&pass(&self.data, 1, 0), 0, 1);
        Self {
            w: self.w,
            h: self.h,
            data,
        }
    }

    fn view(&self) -> ImageView<'_> {
        ImageView::packed(self.w, self.h, PixelEncoding::Rgb8, &self.data).unwrap()
    }
}

fn detector() -> Detector {
    let model = Model::load(&common::default_manifest()).unwrap();
    Detector::new(model, &common::cpu_engine(), None).unwrap()
}

fn stats(det: &mut Detector, f: &Frame) -> InputStats {
    det.detect(&f.view()).unwrap().input
}

/// The conditions reported after `frames` go through the detector and a default monitor.
fn conditions(det: &mut Detector, frames: &[&Frame]) -> Vec<Condition> {
    let mut m = InputMonitor::new(InputHealthConfig::default());
    for f in frames {
        m.update(&stats(det, f));
    }
    m.snapshot().active().collect()
}

#[test]
fn each_condition_fires_on_its_frames_and_real_scenes_stay_ok() {
    let mut det = detector();
    let photos: Vec<Frame> = ["bus.jpg", "dog.jpg", "person.jpg"]
        .iter()
        .map(|n| Frame::photo(n))
        .collect();
    // Real scenes, changing: nothing to report.
    let scenes: Vec<&Frame> = photos.iter().cycle().take(12).collect();
    assert_eq!(conditions(&mut det, &scenes), vec![]);
    for p in &photos {
        let s = stats(&mut det, p);
        assert!(
            s.brightness > 40.0 && s.contrast > 30.0 && s.sharpness > 0.5,
            "{s:?}"
        );
    }

    let black = Frame::filled(1280, 720, |_, _| [0, 0, 0]);
    let white = Frame::filled(1280, 720, |_, _| [255, 255, 255]);
    let grey = Frame::filled(1280, 720, |_, _| [128, 126, 130]);
    // Noise that changes every frame: a picture with contrast and detail, never the same.
    let noise: Vec<Frame> = (0..6u32)
        .map(|k| {
            Frame::filled(1280, 720, move |x, y| {
                let v = (x.wrapping_mul(7919) ^ y.wrapping_mul(104_729) ^ k.wrapping_mul(31)) % 251;
                [v as u8, (v * 3 % 251) as u8, (v * 7 % 251) as u8]
            })
        })
        .collect();
    let dark = conditions(&mut det, &[&black; 5]);
    assert_eq!(dark, vec![Condition::Dark], "5 black frames");
    assert_eq!(
        conditions(&mut det, &[&black; 4]),
        vec![],
        "4 are not enough"
    );
    assert_eq!(
        conditions(&mut det, &[&white; 5]),
        vec![Condition::Overexposed]
    );
    assert_eq!(
        conditions(&mut det, &[&grey; 5]),
        vec![Condition::LowContrast]
    );
    let noisy: Vec<&Frame> = noise.iter().collect();
    assert_eq!(conditions(&mut det, &noisy), vec![]);
    // The same photo again and again: frozen after 10 frames (and not before).
    assert_eq!(conditions(&mut det, &[&photos[0]; 9]), vec![]);
    assert_eq!(
        conditions(&mut det, &[&photos[0]; 10]),
        vec![Condition::Frozen]
    );
    // Out of focus: the photos box-blurred over 25 pixels, each a different frame.
    let blurred: Vec<Frame> = photos.iter().map(|p| p.blurred(12)).collect();
    let soft: Vec<&Frame> = blurred.iter().cycle().take(6).collect();
    for b in &blurred {
        let s = stats(&mut det, b);
        assert!(s.contrast > 6.0, "still a picture with contrast: {s:?}");
    }
    assert_eq!(conditions(&mut det, &soft), vec![Condition::Blurred]);
}

/// `--black 10:20` writes frames 10 to 19 of a 30-frame vtest clip (10 frames/s) black: the raw
/// camera's status is ERROR `camera blocked or dark` from the fifth black frame (1.4 s) until the
/// first normal one (2.0 s), and OK with no input-health reason before and after.
#[test]
fn a_replay_reports_the_taped_over_section_at_its_bag_times() {
    let dir = common::fresh_dir("input-health-replay");
    common::vtest_clip(&dir, 30, &["--storage", "mcap", "--black", "10:20"]);
    let params = dir.join("params.yaml");
    std::fs::write(
        &params,
        format!(
            "lookout:\n  ros__parameters:\n    model: {}\n    engine:\n      execution_providers: [cpu]\n    diagnostics:\n      period_ms: 200.0\n    cameras: [raw]\n    camera:\n      raw:\n        topic: /camera/image_raw\n",
            common::default_manifest().display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let report = dir.join("report.json");
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("replay")
            .arg(dir.join("vtest"))
            .arg("--params-file")
            .arg(&params)
            .arg("--out")
            .arg(&out)
            .arg("--report")
            .arg(&report),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["per_camera"]["raw"]["input_health_frames"]["dark"], 10);

    // The camera's status in every /diagnostics message: seconds into the bag, level, message.
    let rows: Vec<(f64, u8, String)> = common::camera_diagnostics(&out, "raw")
        .into_iter()
        .map(|d| (d.t_s, d.level, d.message))
        .collect();
    let text = format!("{rows:?}");
    assert!(rows.len() >= 10, "{text}");
    let blocked = |m: &str| m.contains("camera blocked or dark");
    let mut during = 0;
    for (t, level, message) in &rows {
        if (1.45..=1.95).contains(t) {
            assert!(
                blocked(message) && *level == 2,
                "at {t} s: {level} {message}\n{text}"
            );
            during += 1;
        } else if *t < 1.35 || *t > 2.05 {
            assert!(!blocked(message), "at {t} s: {message}\n{text}");
        }
    }
    assert!(during >= 2, "{text}");
}
