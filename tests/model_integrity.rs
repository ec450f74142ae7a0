//! The model that runs is the model the manifest names: ONNX Runtime reads the file by its path,
//! and a file replaced between the manifest check and the session build is refused.

mod common;

use std::path::PathBuf;

use lookout::core::engine::{Engine, EngineConfig, EngineError};
use lookout::core::model::{Model, ModelError, sha256_file, sha256_hex};

/// A copy of the default model package in a fresh folder.
fn package_copy(name: &str) -> PathBuf {
    let src = common::default_manifest();
    let dir = common::scratch(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(src.parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    dir.join(src.file_name().unwrap())
}

fn config() -> EngineConfig {
    EngineConfig {
        intra_op_threads: 1,
        warmup_runs: 0,
        ..Default::default()
    }
}

#[test]
fn streamed_hash_matches_the_whole_file_hash() {
    let model = Model::load(&common::default_manifest()).unwrap();
    let bytes = std::fs::read(&model.onnx_path).unwrap();
    assert_eq!(sha256_file(&model.onnx_path).unwrap(), sha256_hex(&bytes));
    assert_eq!(sha256_hex(&bytes), model.sha256());
}

#[test]
fn a_model_file_replaced_after_the_manifest_check_is_refused() {
    let manifest = package_copy("replaced");
    let model = Model::load(&manifest).unwrap();
    assert!(Engine::new(&model, &config()).is_ok());
    // Same size, one byte different: only the hash can tell.
    let mut bytes = std::fs::read(&model.onnx_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&model.onnx_path, &bytes).unwrap();
    match Engine::new(&model, &config()) {
        Err(EngineError::Session { reason, .. }) => {
            assert!(reason.contains("sha256"), "{reason}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a changed model file must be refused"),
    }
    assert!(matches!(
        model.verify(),
        Err(ModelError::Sha256Mismatch { .. })
    ));
    let _ = std::fs::remove_dir_all(manifest.parent().unwrap());
}
