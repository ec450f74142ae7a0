//! Execution providers up to registration, on a machine without a GPU (the set-up installs the
//! CPU build of ONNX Runtime): the fall-back is reported, `require_first_provider` refuses to
//! start, provider options are validated with the key named. The same paths were seen with the
//! GPU build on an H200 (reports/gpu/).

mod common;

use std::process::Command;

use lookout::core::engine::{Engine, EngineConfig, EngineError, Provider};
use lookout::core::model::Model;

fn model() -> Model {
    Model::load(&common::default_manifest()).unwrap()
}

fn engine(providers: &[Provider], require_first: bool) -> Result<Engine, EngineError> {
    let config = EngineConfig {
        execution_providers: providers.to_vec(),
        require_first_provider: require_first,
        intra_op_threads: 1,
        warmup_runs: 1,
        ..Default::default()
    };
    Engine::new(&model(), &config)
}

#[test]
fn a_fall_back_names_every_provider_that_failed() {
    let e = engine(&[Provider::Tensorrt, Provider::Cuda, Provider::Cpu], false).unwrap();
    if e.execution_provider() != Provider::Cpu {
        return; // a GPU build of ONNX Runtime on a GPU machine: nothing fell back to the CPU
    }
    let reason = e.fallback_reason().expect("a fall-back has a reason");
    assert!(reason.starts_with("tensorrt: "), "{reason}");
    assert!(reason.contains("; cuda: "), "{reason}");
    assert_eq!(e.io_memory(), "cpu");
}

#[test]
fn the_first_provider_in_use_is_no_fall_back() {
    let e = engine(&[Provider::Cpu], true).unwrap();
    assert_eq!(e.execution_provider(), Provider::Cpu);
    assert_eq!(e.fallback_reason(), None);
    assert_eq!(e.io_memory(), "cpu");
}

#[test]
fn require_first_provider_refuses_to_start_without_it() {
    let e = engine(&[Provider::Cuda, Provider::Cpu], true);
    match e {
        Err(EngineError::FirstProviderUnavailable { provider, reason }) => {
            assert_eq!(provider, Provider::Cuda);
            assert!(!reason.is_empty());
        }
        Ok(e) => assert_eq!(e.execution_provider(), Provider::Cuda, "GPU machine"),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn detect_refuses_to_fall_back_when_told_and_says_why() {
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args([
                "detect",
                "--require-first-provider",
                "--execution-providers",
            ])
            .args(["tensorrt,cpu", common::image("dog.jpg").to_str().unwrap()]),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success() {
        return; // TensorRT is there
    }
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "execution provider `tensorrt` is required (engine.require_first_provider) but cannot be used"
        ),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn detect_json_carries_the_fall_back_reason() {
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["detect", "--json", "--execution-providers", "cuda,cpu"])
            .arg(common::image("dog.jpg")),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    if line["execution_provider"] == "cpu" {
        let reason = line["fallback_reason"].as_str().unwrap();
        assert!(reason.starts_with("cuda: "), "{reason}");
        // The fall-back is a warning on stderr too.
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("running on a fall-back execution provider"),
            "{err}"
        );
    } else {
        assert!(line.get("fallback_reason").is_none());
    }
}
