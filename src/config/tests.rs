//! Unit tests of parameter reading and validation.

use super::*;

fn params(yaml: &str) -> Vec<(String, ParamValue)> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lookout-config-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.yaml");
    std::fs::write(&path, yaml).unwrap();
    let params = Config::read_parameters_file(&path, "/lookout").unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    params
}

const MINIMAL: &str = "
/**:
  ros__parameters:
    cameras: [front]
    camera:
      front:
        topic: /cam/image_raw
";

#[test]
fn minimal_file_gets_defaults() {
    let c = Config::from_parameters(&params(MINIMAL)).unwrap();
    let cam = &c.camera["front"];
    assert_eq!(cam.kind, ImageKind::Image);
    assert_eq!(cam.input_qos(), QosConfig::SENSOR_DATA);
    assert_eq!(cam.detections_qos(), QosConfig::RELIABLE);
    assert_eq!(cam.queue_policy, QueuePolicy::KeepNewest);
    assert_eq!(c.detections_topic("front"), "front/detections");
    assert_eq!(c.model, PathBuf::from("models/yolov3-tiny/manifest.yaml"));
}

#[test]
fn one_qos_key_overrides_only_itself() {
    let mut p = params(MINIMAL);
    p.push(("camera.front.qos.depth".into(), Value::from(1)));
    p.push((
        "camera.front.output_qos.reliability".into(),
        Value::from("best_effort"),
    ));
    let c = Config::from_parameters(&p).unwrap();
    let cam = &c.camera["front"];
    assert_eq!(cam.input_qos().depth, 1);
    assert_eq!(cam.input_qos().reliability, Reliability::BestEffort);
    assert_eq!(cam.detections_qos().reliability, Reliability::BestEffort);
    assert_eq!(cam.detections_qos().depth, 10);
}

#[test]
fn node_sections_apply_in_order_and_overrides_win() {
    let yaml = format!(
        "{MINIMAL}\nlookout:\n  ros__parameters:\n    camera:\n      front:\n        ring_capacity: 2\nother_node:\n  ros__parameters:\n    bogus: 1\n"
    );
    let mut p = params(&yaml);
    p.push(("thresholds.confidence".into(), Value::from(0.5)));
    let c = Config::from_parameters(&p).unwrap();
    assert_eq!(c.camera["front"].ring_capacity, 2);
    assert_eq!(c.thresholds.confidence, Some(0.5));
}

#[test]
fn provider_options_are_typed_validated_and_named() {
    let mut p = params(MINIMAL);
    p.push(("engine.tensorrt.fp16".into(), Value::from(false)));
    p.push((
        "engine.cuda.cudnn_conv_algo_search".into(),
        Value::from("heuristic"),
    ));
    p.push(("engine.require_first_provider".into(), Value::from(true)));
    let c = Config::from_parameters(&p).unwrap();
    assert_eq!(c.engine.tensorrt.precision(), "fp32");
    assert_eq!(
        c.engine.cuda.cudnn_conv_algo_search,
        crate::core::engine::providers::ConvAlgoSearch::Heuristic
    );
    assert!(c.engine.require_first_provider);
    for (key, value) in [
        ("engine.tensorrt.device_id", Value::from(64)),
        ("engine.cuda.arena_limit_mb", Value::from(1u64 << 40)),
        ("engine.tensorrt.min_shapes", Value::from("images:1x3")),
        ("engine.cuda.cudnn_conv_algo_search", Value::from("fastest")),
        ("engine.tensorrt.fp17", Value::from(true)),
    ] {
        let mut p = params(MINIMAL);
        p.push((key.into(), value));
        let e = Config::from_parameters(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("parameter `{key}`")), "{key}: {e}");
    }
}

#[test]
fn every_duration_rate_and_count_has_a_range() {
    // Values that once passed and then crashed or hung a thread (1e22 ms overflowed an
    // Instant in the inference thread), and each range's edges.
    for (key, value) in [
        ("camera.front.hard_timeout_ms", Value::from(1e22)),
        ("camera.front.hard_timeout_ms", Value::from(60_000.5)),
        ("camera.front.hard_timeout_ms", Value::from(-1.0)),
        ("camera.front.budget_ms", Value::from(0.0)),
        ("camera.front.budget_ms", Value::from(1e9)),
        ("camera.front.max_age_ms", Value::from(1e300)),
        ("camera.front.input_timeout_ms", Value::from(0.0)),
        ("camera.front.min_output_rate_hz", Value::from(1e6)),
        ("camera.front.weight", Value::from(0)),
        ("camera.front.weight", Value::from(101)),
        ("diagnostics.period_ms", Value::from(1e12)),
        ("diagnostics.window_s", Value::from(1e7)),
        ("engine.intra_op_threads", Value::from(100_000)),
        ("engine.warmup_runs", Value::from(1_000_000)),
    ] {
        let mut p = params(MINIMAL);
        p.push((key.into(), value.clone()));
        let e = Config::from_parameters(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("parameter `{key}`")),
            "{key}={value}: {e}"
        );
        assert!(e.contains("within"), "{key}={value}: {e}");
    }
    for (key, value) in [
        ("camera.front.hard_timeout_ms", Value::from(60_000.0)),
        ("camera.front.hard_timeout_ms", Value::from(0.0)),
        ("camera.front.weight", Value::from(100)),
        ("diagnostics.window_s", Value::from(3600.0)),
    ] {
        let mut p = params(MINIMAL);
        p.push((key.into(), value.clone()));
        assert!(Config::from_parameters(&p).is_ok(), "{key}={value}");
    }
}

#[test]
fn unknown_keys_are_named_with_their_full_path() {
    let mut p = params(MINIMAL);
    p.push(("camera.front.ring_capcity".into(), Value::from(3)));
    let e = Config::from_parameters(&p).unwrap_err().to_string();
    assert!(
        e.starts_with("parameter `camera.front.ring_capcity`:"),
        "{e}"
    );
    let mut p = params(MINIMAL);
    p.push(("modle".into(), Value::from("x")));
    let e = Config::from_parameters(&p).unwrap_err().to_string();
    assert!(e.starts_with("parameter `modle`:"), "{e}");
}

#[test]
fn wrong_types_and_values_are_named() {
    let mut p = params(MINIMAL);
    p.push(("camera.front.type".into(), Value::from("video")));
    let e = Config::from_parameters(&p).unwrap_err().to_string();
    assert!(e.contains("camera.front.type"), "{e}");
    let mut p = params(MINIMAL);
    p.push(("camera.front.qos.depth".into(), Value::from(0)));
    let e = Config::from_parameters(&p).unwrap_err().to_string();
    assert!(e.contains("camera.front.qos.depth"), "{e}");
    let mut p = params(MINIMAL);
    p.push(("thresholds.confidence".into(), Value::from(2.0)));
    let e = Config::from_parameters(&p).unwrap_err().to_string();
    assert!(e.contains("thresholds.confidence"), "{e}");
}

#[test]
fn cameras_and_sections_must_agree() {
    let mut p = params(MINIMAL);
    p.push(("cameras".into(), serde_json::json!(["front", "rear"])));
    let e = Config::from_parameters(&p).unwrap_err().to_string();
    assert!(e.contains("camera.rear"), "{e}");
    let mut p = params(MINIMAL);
    p.push(("camera.side.topic".into(), Value::from("/side")));
    let e = Config::from_parameters(&p).unwrap_err().to_string();
    assert!(e.contains("camera.side") && e.contains("not listed"), "{e}");
    let p = vec![("model".to_string(), Value::from("m.yaml"))];
    let e = Config::from_parameters(&p).unwrap_err().to_string();
    assert!(e.contains("`cameras`") && e.contains("missing"), "{e}");
}

#[test]
fn camera_count_detections_and_memory_have_budgets() {
    // 33 cameras: refused, naming the key.
    let names: Vec<String> = (0..33).map(|i| format!("c{i}")).collect();
    let mut p = params(MINIMAL);
    p.retain(|(k, _)| k != "cameras");
    p.push(("cameras".into(), Value::from(names.clone())));
    for n in &names {
        p.push((
            format!("camera.{n}.topic"),
            Value::from(format!("/{n}/image_raw")),
        ));
    }
    let err = Config::from_parameters(&p).unwrap_err().to_string();
    assert!(
        err.contains("cameras") && err.contains("at most 32"),
        "{err}"
    );

    let mut p = params(MINIMAL);
    p.push(("thresholds.max_detections".into(), Value::from(10_001)));
    let err = Config::from_parameters(&p).unwrap_err().to_string();
    assert!(err.contains("thresholds.max_detections"), "{err}");

    // Two 16384x16384 cameras with 64-frame queues reserve about 141 GB: refused under a 12 GB
    // limit, naming the keys and each camera's share; the default camera fits.
    let c = Config::from_parameters(&params(MINIMAL)).unwrap();
    let one = c.memory_budget();
    assert_eq!(one.cameras.len(), 1);
    assert_eq!(
        one.total_bytes(),
        (c.camera["front"].ring_capacity as u64 + 2)
            * u64::from(c.camera["front"].max_width)
            * u64::from(c.camera["front"].max_height)
            * 4
    );
    c.check_memory_budget(12_000_000_000).unwrap();
    let p = params(
        "
/**:
  ros__parameters:
    cameras: [front, rear]
    camera:
      front: {topic: /f, max_width: 16384, max_height: 16384, ring_capacity: 64}
      rear: {topic: /r, type: compressed, max_width: 16384, max_height: 16384, ring_capacity: 64}
",
    );
    let big = Config::from_parameters(&p).unwrap();
    let budget = big.memory_budget();
    assert_eq!(budget.cameras[1].decoder_bytes, 16384 * 16384 * 4);
    let err = big
        .check_memory_budget(12_000_000_000)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_width") && err.contains("ring_capacity"),
        "{err}"
    );
    assert!(
        err.contains("front: slots") && err.contains("rear: slots"),
        "{err}"
    );
}

#[test]
fn a_configuration_written_as_a_parameters_file_reads_back_equal() {
    let text = "
/**:
  ros__parameters:
    model: /models/m/manifest.yaml
    engine:
      execution_providers: [cuda, cpu]
      intra_op_threads: 2
      tensorrt: {fp16: false}
    thresholds: {confidence: 0.4}
    cameras: [front, rear]
    camera:
      front: {topic: /f, budget_ms: 50.5, qos: {reliability: reliable}, weight: 3}
      rear: {topic: /r, type: compressed, max_age_ms: 200, late_results: drop}
    diagnostics: {period_ms: 500}
";
    let c = Config::from_parameters(
        &Config::parameters_from_str(text, Path::new("a.yaml"), "/lookout").unwrap(),
    )
    .unwrap();
    let yaml = c.to_parameters_yaml().unwrap();
    let back = Config::from_parameters(
        &Config::parameters_from_str(&yaml, Path::new("b.yaml"), "/lookout").unwrap(),
    )
    .unwrap();
    assert_eq!(back, c, "{yaml}");
    assert!(!yaml.contains("null"), "{yaml}");
}
