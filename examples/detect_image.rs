//! Detect objects in an image file with the library, no ROS: the default model package on the
//! CPU, the image decoded (JPEG or PNG) into a borrowed view, one `detect` call.
//!
//! Run: `cargo run --release --example detect_image -- [IMAGE]` (default: `bus.jpg`, which
//! scripts/setup.sh fetches into `.lookout/data/images/`).

use std::path::{Path, PathBuf};

use lookout::config::locate::{Origin, locate};
use lookout::core::decode::{CompressedFormat, Decoder};
use lookout::core::detector::Detector;
use lookout::core::engine::{EngineConfig, Provider};
use lookout::core::model::{DEFAULT_MANIFEST, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let image = std::env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".lookout/data/images/bus.jpg"),
        PathBuf::from,
    );
    // The default model package, from lookout's data directories (never the working directory).
    let model = Model::load(&locate(Path::new(DEFAULT_MANIFEST), Origin::Default))?;
    let classes = model.manifest.classes.clone();
    let engine = EngineConfig {
        execution_providers: vec![Provider::Cpu],
        ..EngineConfig::default()
    };
    // Loads, allocates and warms up everything; per-frame calls allocate nothing after this.
    let mut detector = Detector::new(model, &engine, None)?;
    let bytes = std::fs::read(&image)?;
    let format = CompressedFormat::sniff(&bytes).ok_or("not a JPEG or PNG file")?;
    let input = &detector.model().manifest.input;
    // Large JPEGs are decoded at a reduced scale straight to about the size the model needs.
    let mut decoder =
        Decoder::new(8192, 8192).with_tensor_size(input.width() as u32, input.height() as u32);
    let (view, size) = decoder.decode_sized(&bytes, format)?;
    let result = detector.detect_sized(&view, size, None)?;
    println!(
        "{}: {} detections",
        image.display(),
        result.detections.len()
    );
    for d in result.detections {
        let name = classes.get(d.class_id as usize).map_or("?", String::as_str);
        let [x1, y1, x2, y2] = d.bbox;
        println!(
            "  {name:<14} {:.2}  [{x1:.0}, {y1:.0}, {x2:.0}, {y2:.0}]",
            d.score
        );
    }
    Ok(())
}
