//! launch/lookout.launch.xml and package.xml: what they name exists and is valid. The launch
//! file is parsed as XML; every `$(var X)` must be a declared argument; the node's executable
//! and arguments must be this package's binary and a real subcommand; the default parameters
//! file must load as lookout's configuration; the install rules must ship what it references.

mod common;

use std::collections::HashSet;
use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(common::repo().join(path)).unwrap()
}

/// `$(var NAME)` substitutions in `text`.
fn vars(text: &str) -> Vec<String> {
    text.match_indices("$(var ")
        .filter_map(|(i, _)| {
            text[i + 6..]
                .split(')')
                .next()
                .map(|v| v.trim().to_string())
        })
        .collect()
}

#[test]
fn launch_file_names_a_valid_executable_params_file_and_arguments() {
    let text = read("launch/lookout.launch.xml");
    let doc = roxmltree::Document::parse(&text).expect("launch file is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "launch");

    let args: HashSet<&str> = root
        .children()
        .filter(|n| n.has_tag_name("arg"))
        .map(|n| {
            assert!(
                n.attribute("default").is_some(),
                "arg {:?} needs a default",
                n.attribute("name")
            );
            n.attribute("name").unwrap()
        })
        .collect();
    for required in ["config", "model", "namespace", "use_sim_time"] {
        assert!(
            args.contains(required),
            "launch argument `{required}` missing"
        );
    }
    for v in vars(&text) {
        assert!(
            args.contains(v.as_str()),
            "$(var {v}) is not a declared argument"
        );
    }

    let node = root
        .children()
        .find(|n| n.has_tag_name("node"))
        .expect("a <node>");
    assert_eq!(node.attribute("pkg"), Some("lookout"));
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_lookout"));
    assert_eq!(
        node.attribute("exec"),
        exe.file_name().and_then(|f| f.to_str())
    );
    assert_eq!(node.attribute("namespace"), Some("$(var namespace)"));
    // The arguments are a real subcommand of the binary.
    let sub: Vec<&str> = node.attribute("args").unwrap().split_whitespace().collect();
    let help = common::output(Command::new(exe).args(&sub).arg("--help"));
    assert!(
        help.status.success(),
        "`lookout {} --help` failed",
        sub.join(" ")
    );

    // Parameters: the file given by `config`, and use_sim_time from its argument.
    let params: Vec<_> = node
        .children()
        .filter(|n| n.has_tag_name("param"))
        .collect();
    assert!(
        params
            .iter()
            .any(|p| p.attribute("from") == Some("$(var config)"))
    );
    let sim = params
        .iter()
        .find(|p| p.attribute("name") == Some("use_sim_time"))
        .expect("use_sim_time param");
    assert_eq!(sim.attribute("value"), Some("$(var use_sim_time)"));
    let model = params
        .iter()
        .find(|p| p.attribute("name") == Some("model"))
        .expect("model param");
    assert_eq!(model.attribute("value"), Some("$(var model)"));
    // The model argument defaults to the installed model package, which loads.
    let model_default = root
        .children()
        .find(|n| n.has_tag_name("arg") && n.attribute("name") == Some("model"))
        .and_then(|n| n.attribute("default"))
        .unwrap();
    let rel = model_default
        .strip_prefix("$(find-pkg-share lookout)/")
        .expect("default model comes from the package's share folder");
    lookout::core::model::Model::load(&common::repo().join(rel)).expect("default model loads");

    // The default config resolves (installed layout: share/lookout/config/) and is valid.
    let default = root
        .children()
        .find(|n| n.has_tag_name("arg") && n.attribute("name") == Some("config"))
        .and_then(|n| n.attribute("default"))
        .unwrap();
    let rel = default
        .strip_prefix("$(find-pkg-share lookout)/")
        .expect("default config comes from the package's share folder");
    let path = common::repo().join(rel);
    let config =
        lookout::config::Config::load(&path, "/lookout").expect("default parameters are valid");
    assert!(!config.cameras.is_empty());
    // use_sim_time's default value is a valid value for the parameter.
    let sim_default = root
        .children()
        .find(|n| n.has_tag_name("arg") && n.attribute("name") == Some("use_sim_time"))
        .and_then(|n| n.attribute("default"))
        .unwrap();
    assert!(sim_default.parse::<bool>().is_ok());

    // colcon-ros-cargo installs launch/ and config/ into share/lookout/.
    let cargo = read("Cargo.toml");
    let share_line = cargo
        .lines()
        .find(|l| l.starts_with("install_to_share"))
        .expect("install_to_share");
    for dir in ["launch", "config", "models"] {
        assert!(
            share_line.contains(&format!("\"{dir}\"")),
            "{dir} not installed to share"
        );
    }
    // ONNX Runtime is installed beside the binary (lib/lookout/), where it is looked for. The
    // entry names a file set-up makes, so the install stands without the checkout.
    let lib_line = cargo
        .lines()
        .find(|l| l.starts_with("install_to_lib"))
        .expect("install_to_lib");
    assert!(
        lib_line.contains(".lookout/lib/libonnxruntime.so"),
        "{lib_line}"
    );
    // cargo-ament-build reads install_to_lib only after an install_to_include entry.
    assert!(cargo.lines().any(|l| l.starts_with("install_to_include")));
}

#[test]
fn package_xml_describes_a_cargo_package_with_its_message_dependencies() {
    let text = read("package.xml");
    let doc = roxmltree::Document::parse(&text).unwrap();
    let root = doc.root_element();
    assert_eq!(root.attribute("format"), Some("3"));
    let child = |name: &str| {
        root.children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
    };
    assert_eq!(child("name"), Some("lookout"));
    let version = child("version").unwrap();
    let cargo = read("Cargo.toml");
    assert!(
        cargo.contains(&format!("version = \"{version}\"")),
        "package.xml and Cargo.toml versions differ"
    );
    let deps: HashSet<&str> = root
        .children()
        .filter(|n| n.has_tag_name("depend"))
        .filter_map(|n| n.text())
        .collect();
    for dep in ["sensor_msgs", "std_msgs", "vision_msgs", "diagnostic_msgs"] {
        assert!(deps.contains(dep), "missing <depend>{dep}</depend>");
    }
    let build_type = root
        .descendants()
        .find(|n| n.has_tag_name("build_type"))
        .and_then(|n| n.text());
    assert_eq!(build_type, Some("ament_cargo"));
}
