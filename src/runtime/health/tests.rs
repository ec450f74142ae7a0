//! Unit tests.
use super::*;

/// A camera input at `now` = t0 + `at_s`, with the last frame at t0 + `last_s`.
fn input(t0: Instant, at_s: f64, last_s: Option<f64>) -> CameraInput<'static> {
    let s = |v: f64| Duration::from_secs_f64(v);
    CameraInput {
        name: "front",
        now: t0 + s(at_s),
        started: t0,
        counters: CounterSnapshot::default(),
        previous: CounterSnapshot::default(),
        period: s(1.0),
        last_received: last_s.map(|l| t0 + s(l)),
        stats: StatsSnapshot::default(),
        qos_incompatible: 0,
        budget_ms: 100.0,
        input_timeout: s(1.0),
        min_output_rate_hz: 0.0,
    }
}

fn value<'a>(s: &'a Status, key: &str) -> &'a str {
    &s.values
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .1
}

#[test]
fn healthy_camera_is_ok_with_rates() {
    let t0 = Instant::now();
    let mut c = input(t0, 10.0, Some(9.95));
    c.counters.received = 110;
    c.counters.published = 108;
    c.previous.received = 100;
    c.previous.published = 98;
    c.stats.e2e = Percentiles {
        count: 100,
        p50: 40.0,
        p90: 45.0,
        p99: 60.0,
        p999: 70.0,
        max: 71.0,
    };
    let s = camera_status(&c);
    assert_eq!((s.level, s.message.as_str()), (Level::Ok, "OK"));
    assert_eq!(value(&s, "input_rate_hz"), "10.00");
    assert_eq!(value(&s, "output_rate_hz"), "10.00");
    assert_eq!(value(&s, "e2e_ms_p99"), "60.00");
}

#[test]
fn a_camera_that_stops_goes_stale_then_recovers() {
    let t0 = Instant::now();
    // Last frame 2.5 s ago with a 1 s timeout.
    let s = camera_status(&input(t0, 12.5, Some(10.0)));
    assert_eq!(s.level, Level::Stale);
    assert!(s.message.contains("no frame for 2.5 s"), "{}", s.message);
    // Never a frame, 2 s after start.
    let s = camera_status(&input(t0, 2.0, None));
    assert_eq!(s.level, Level::Stale);
    assert!(s.message.contains("no frame yet"), "{}", s.message);
    // Frames again.
    let s = camera_status(&input(t0, 13.0, Some(12.9)));
    assert_eq!(s.level, Level::Ok);
}

#[test]
fn p99_over_budget_and_misses_warn() {
    let t0 = Instant::now();
    let mut c = input(t0, 5.0, Some(4.9));
    c.stats.e2e = Percentiles {
        count: 50,
        p50: 90.0,
        p90: 120.0,
        p99: 150.0,
        p999: 150.0,
        max: 150.0,
    };
    c.counters.deadline_misses = 7;
    c.previous.deadline_misses = 2;
    let s = camera_status(&c);
    assert_eq!(s.level, Level::Warn);
    assert!(
        s.message.contains("p99 latency 150.0 ms > budget 100.0 ms"),
        "{}",
        s.message
    );
    assert!(s.message.contains("5 deadline misses"), "{}", s.message);
}

#[test]
fn timeouts_and_low_output_rate_are_errors() {
    let t0 = Instant::now();
    let mut c = input(t0, 5.0, Some(4.9));
    c.counters.timeouts = 3;
    c.previous.timeouts = 1;
    let s = camera_status(&c);
    assert_eq!(s.level, Level::Error);
    assert!(
        s.message.contains("2 inference runs over hard_timeout_ms"),
        "{}",
        s.message
    );

    let mut c = input(t0, 5.0, Some(4.9));
    c.min_output_rate_hz = 5.0;
    c.counters.received = 10;
    c.counters.published = 2;
    let s = camera_status(&c);
    assert_eq!(s.level, Level::Error);
    assert!(
        s.message.contains("output rate 2.0 Hz < minimum 5.0 Hz"),
        "{}",
        s.message
    );
}

#[test]
fn drops_bad_input_and_clock_anomalies_warn_only_while_they_increase() {
    let t0 = Instant::now();
    let mut c = input(t0, 5.0, Some(4.9));
    c.counters.dropped_too_old = 4;
    c.counters.bad_input = 1;
    c.counters.clock_anomalies = 2;
    let s = camera_status(&c);
    assert_eq!(s.level, Level::Warn);
    assert!(
        s.message.contains("4 frames dropped")
            && s.message.contains("1 bad input")
            && s.message.contains("clock anomaly"),
        "{}",
        s.message
    );
    // Next period, nothing new: back to OK, totals still reported.
    c.previous = c.counters;
    let s = camera_status(&c);
    assert_eq!(s.level, Level::Ok);
    assert_eq!(value(&s, "dropped_too_old"), "4");
    assert_eq!(value(&s, "clock_anomalies"), "2");
}

#[test]
fn worst_level_wins_and_every_reason_is_listed() {
    let t0 = Instant::now();
    let mut c = input(t0, 5.0, Some(2.0));
    c.counters.timeouts = 1;
    c.counters.deadline_misses = 1;
    let s = camera_status(&c);
    assert_eq!(s.level, Level::Stale);
    assert_eq!(s.message.split("; ").count(), 3, "{}", s.message);
}

#[test]
fn engine_is_error_only_when_runs_time_out_or_fail_in_the_period() {
    let mut e = EngineInput {
        execution_provider: "cpu",
        fallback_reason: "",
        io_memory: "cpu",
        max_batch: 1,
        model: "yolov3-tiny",
        sha256: "c3f7",
        ort_library: "/x/libonnxruntime.so",
        timeouts: (2, 2),
        errors: (0, 0),
        session_rebuilds: (0, 0),
        rebuild_failures: (0, 0),
        inference: Percentiles::default(),
        rss_mb: 0.0,
    };
    let s = engine_status(&e);
    assert_eq!(s.level, Level::Ok);
    assert_eq!(value(&s, "execution_provider"), "cpu");
    assert_eq!(value(&s, "model_sha256"), "c3f7");
    assert_eq!(value(&s, "rss_mb"), "0.0");
    e.timeouts = (3, 2);
    assert_eq!(engine_status(&e).level, Level::Error);
}

#[test]
fn a_session_rebuild_is_a_warning_and_a_failed_one_an_error() {
    let e = EngineInput {
        execution_provider: "cpu",
        fallback_reason: "",
        io_memory: "cpu",
        max_batch: 1,
        model: "yolov3-tiny",
        sha256: "c3f7",
        ort_library: "/x/libonnxruntime.so",
        timeouts: (0, 0),
        errors: (5, 5),
        session_rebuilds: (1, 0),
        rebuild_failures: (0, 0),
        inference: Percentiles::default(),
        rss_mb: 0.0,
    };
    let s = engine_status(&e);
    assert_eq!(s.level, Level::Warn);
    assert!(
        s.message.contains("session rebuilt 1 times"),
        "{}",
        s.message
    );
    assert_eq!(value(&s, "session_rebuilds"), "1");
    // The next period, without a new rebuild: OK again, the total stays.
    let s = engine_status(&EngineInput {
        session_rebuilds: (1, 1),
        ..e
    });
    assert_eq!(s.level, Level::Ok);
    assert_eq!(value(&s, "session_rebuilds"), "1");
    let s = engine_status(&EngineInput {
        rebuild_failures: (2, 1),
        ..e
    });
    assert_eq!(s.level, Level::Error);
    assert_eq!(value(&s, "session_rebuild_failures"), "2");
}

#[test]
fn resident_memory_is_read_on_linux() {
    let mb = resident_mb();
    if cfg!(target_os = "linux") {
        assert!(mb > 1.0 && mb < 1e6, "{mb}");
    }
}

#[test]
fn a_fall_back_provider_is_a_warning_with_its_reason() {
    let e = EngineInput {
        execution_provider: "cpu",
        fallback_reason: "tensorrt: libnvinfer.so.10: cannot open shared object file",
        io_memory: "cpu",
        max_batch: 1,
        model: "yolov3-tiny",
        sha256: "c3f7",
        ort_library: "/x/libonnxruntime.so",
        timeouts: (0, 0),
        errors: (0, 0),
        session_rebuilds: (0, 0),
        rebuild_failures: (0, 0),
        inference: Percentiles::default(),
        rss_mb: 0.0,
    };
    let s = engine_status(&e);
    assert_eq!(s.level, Level::Warn);
    assert!(
        s.message.contains("fall-back execution provider cpu"),
        "{}",
        s.message
    );
    assert!(value(&s, "fallback_reason").starts_with("tensorrt: libnvinfer"));
    let s = engine_status(&EngineInput {
        errors: (1, 0),
        ..e
    });
    assert_eq!(s.level, Level::Error);
    assert_eq!(s.message.split("; ").count(), 2, "{}", s.message);
}
