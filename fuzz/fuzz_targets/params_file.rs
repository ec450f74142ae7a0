//! A ROS 2 parameters file (`--params-file`, any checkout's `config/`): parsed, flattened and
//! validated. Any text: a configuration or an error naming the key, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lookout::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(params) = Config::parameters_from_str(text, Path::new("fuzz.yaml"), "/lookout")
        && let Ok(config) = Config::from_parameters(&params)
    {
        let _ = config.memory_budget().total_bytes();
        for (name, _) in config.camera_list() {
            let _ = config.detections_topic(name);
        }
    }
});
