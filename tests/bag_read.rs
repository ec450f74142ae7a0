//! lookout's rosbag2 reader and CDR decoder against bags written by the `rosbags` Python package
//! (tests/bags/write_test_bag.py, run here into a temporary folder): MCAP and sqlite3 storage,
//! raw and compressed images, a non-image topic, and the real model on a frame read from a bag.

mod common;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use lookout::bag::cdr;
use lookout::bag::{Bag, Storage};
use lookout::runtime::queue::Stamp;

/// Writes the test bags once per test process; returns their folder.
fn bags() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::scratch("bags");
        std::fs::create_dir_all(&dir).unwrap();
        let o = common::output(
            Command::new(common::python())
                .arg(common::repo().join("tests/bags/write_test_bag.py"))
                .arg(&dir)
                .arg(common::image("bus.jpg")),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dir
    })
}

#[test]
fn both_storages_list_the_same_topics_and_counts() {
    for (name, storage) in [("mcap", Storage::Mcap), ("sqlite3", Storage::Sqlite3)] {
        let bag = Bag::open(&bags().join(name)).unwrap();
        assert_eq!(
            bag.files().map(|(_, s)| s).collect::<Vec<_>>(),
            vec![storage]
        );
        let mut topics: Vec<(String, String, u64)> = bag
            .topics()
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.type_name, t.count))
            .collect();
        topics.sort();
        assert_eq!(
            topics,
            vec![
                (
                    "/cam/compressed".into(),
                    "sensor_msgs/msg/CompressedImage".into(),
                    2
                ),
                ("/cam/image_raw".into(), "sensor_msgs/msg/Image".into(), 3),
                ("/chatter".into(), "std_msgs/msg/String".into(), 1),
            ],
            "{name}"
        );
    }
}

#[test]
fn raw_images_decode_field_for_field() {
    for name in ["mcap", "sqlite3"] {
        let bag = Bag::open(&bags().join(name)).unwrap();
        let mut k = 0u32;
        let mut times = Vec::new();
        bag.for_each(|m| {
            times.push(m.log_time_ns);
            if m.topic == "/cam/image_raw" {
                let img = cdr::image(m.data).unwrap();
                assert_eq!(
                    img.stamp,
                    Stamp {
                        sec: 100 + k as i32,
                        nanosec: 1000 * k
                    }
                );
                assert_eq!((img.frame_id, img.encoding), ("cam_optical", "bgr8"));
                assert_eq!(
                    (img.width, img.height, img.step, img.is_bigendian),
                    (4, 2, 16, 0)
                );
                let expected: Vec<u8> = (0..32u32).map(|i| ((i * 7 + k) % 256) as u8).collect();
                assert_eq!(img.data, &expected[..]);
                k += 1;
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(k, 3, "{name}");
        // Storage order is writing order.
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{name}: {times:?}");
    }
}

#[test]
fn a_compressed_frame_from_a_bag_runs_through_the_model() {
    let bag = Bag::open(&bags().join("mcap").join("mcap.mcap")).unwrap();
    let mut jpeg = Vec::new();
    bag.for_each(|m| {
        if m.topic == "/cam/compressed" {
            let c = cdr::compressed_image(m.data).unwrap();
            assert_eq!(
                (c.frame_id, c.format, c.stamp.sec),
                ("cam_compressed", "jpeg", 200)
            );
            jpeg = c.data.to_vec();
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(jpeg, std::fs::read(common::image("bus.jpg")).unwrap());
    let model = lookout::core::model::Model::load(&common::default_manifest()).unwrap();
    let mut det =
        lookout::core::detector::Detector::new(model, &common::cpu_engine(), None).unwrap();
    let mut dec = lookout::core::decode::Decoder::new(2048, 2048);
    let view = dec
        .decode(&jpeg, lookout::core::decode::CompressedFormat::Jpeg)
        .unwrap();
    let classes = common::class_names(&mut det, &view);
    assert!(classes.iter().any(|c| c == "bus"), "{classes:?}");
}

#[test]
fn not_a_bag_is_a_clear_error() {
    let e = Bag::open(&common::repo().join("src"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no rosbag2 storage file"), "{e}");
    let garbage = common::scratch("garbage.mcap");
    std::fs::write(&garbage, b"definitely not mcap").unwrap();
    let e = Bag::open(&garbage)
        .unwrap()
        .for_each(|_| ControlFlow::Continue(()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid MCAP file"), "{e}");
}

#[test]
fn read_ahead_gives_the_same_messages_in_the_same_order_and_stops_when_told() {
    for name in ["mcap", "sqlite3"] {
        let bag = Bag::open(&bags().join(name)).unwrap();
        type Seen = (String, String, u64, Vec<u8>, Option<(String, Vec<u8>)>);
        let record = |out: &mut Vec<Seen>, m: lookout::bag::BagMessage<'_>| {
            out.push((
                m.topic.to_string(),
                m.type_name.to_string(),
                m.log_time_ns,
                m.data.to_vec(),
                m.definition.map(|(e, d)| (e.to_string(), d.to_vec())),
            ));
        };
        let mut direct = Vec::new();
        bag.for_each(|m| {
            record(&mut direct, m);
            ControlFlow::Continue(())
        })
        .unwrap();
        let mut ahead = Vec::new();
        bag.for_each_prefetched(2, |m| {
            record(&mut ahead, m.message());
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(direct.len(), 6, "{name}");
        assert_eq!(ahead, direct, "{name}");
        // A consumer that stops after two messages ends the reading thread too.
        let mut n = 0;
        bag.for_each_prefetched(1, |_| {
            n += 1;
            if n == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(n, 2, "{name}");
    }
}
