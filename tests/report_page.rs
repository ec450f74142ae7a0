//! The HTML report pages in a real browser: `lookout sim --html` (with a sweep) and
//! `lookout replay --html` are opened in headless Chromium (installed by scripts/setup.sh).
//! The page's own check (written into `#selfcheck` once loaded) must report every plot drawn
//! with a size and no script error; the page must be self-contained (no URL it would fetch);
//! a screenshot of each is saved next to the page.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|n| Path::new("/usr/bin").join(n))
        .find(|p| p.exists())
        .expect("no chromium: run scripts/setup.sh (it installs Debian's chromium package)")
}

/// Opens `page` headless and returns the `#selfcheck` element's attributes.
fn self_check(page: &Path) -> std::collections::HashMap<String, String> {
    let url = format!("file://{}", page.display());
    let o = common::output_within(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1240,1000",
                "--dump-dom",
            ])
            .arg(&url),
        Duration::from_secs(120),
    );
    // Chromium prints harmless D-Bus errors on stderr: only the DOM matters.
    let dom = String::from_utf8_lossy(&o.stdout);
    let start = dom
        .find("<div id=\"selfcheck\"")
        .unwrap_or_else(|| panic!("no #selfcheck in the DOM of {url}:\n{dom}"));
    let tag = &dom[start..start + dom[start..].find('>').unwrap()];
    tag.split(" data-")
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

fn screenshot(page: &Path) -> PathBuf {
    let png = page.with_extension("png");
    let o = common::output_within(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1240,2400",
            ])
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", page.display())),
        Duration::from_secs(120),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    png
}

fn check_page(page: &Path, plots: usize) {
    let html = std::fs::read_to_string(page).unwrap();
    // Self-contained: nothing to fetch (the SVG namespace is a name, not a request).
    let fetches = html.matches("src=").count() + html.matches("href=").count();
    assert_eq!(fetches, 0, "the page refers to other files");
    assert!(
        !html
            .replace("http://www.w3.org/2000/svg", "")
            .contains("http")
    );
    let c = self_check(page);
    assert_eq!(c.get("done").map(String::as_str), Some("1"), "{c:?}");
    assert_eq!(
        c.get("errors").map(String::as_str),
        Some(""),
        "script errors: {c:?}"
    );
    assert_eq!(
        c.get("small").map(String::as_str),
        Some(""),
        "plots without a size: {c:?}"
    );
    let n: usize = c["plots"].parse().unwrap();
    assert!(n >= plots, "{n} plots, expected {plots}: {c:?}");
    let png = screenshot(page);
    assert!(
        std::fs::metadata(&png).unwrap().len() > 10_000,
        "empty screenshot"
    );
}

fn params(dir: &Path) -> PathBuf {
    let path = dir.join("params.yaml");
    std::fs::write(
        &path,
        format!(
            "/**:\n  ros__parameters:\n    model: {}\n    engine: {{execution_providers: [cpu], intra_op_threads: 1}}\n    cameras: [raw, jpeg]\n    camera:\n      raw: {{topic: /camera/image_raw, budget_ms: 1000}}\n      jpeg: {{topic: /camera/image_raw/compressed, type: compressed, budget_ms: 1000}}\n",
            common::default_manifest().display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_sim_page_with_a_sweep_draws_every_plot_in_a_browser() {
    let dir = common::fresh_dir("page-sim");
    let page = dir.join("sim.html");
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args([
                "sim",
                "--source",
                "synthetic:320x240",
                "--cameras",
                "2",
                "--sweep",
                "--from",
                "2",
                "--step",
                "40",
                "--duration",
                "1",
                "--params-file",
            ])
            .arg(params(&dir))
            .arg("--html")
            .arg(&page)
            .env("RUST_LOG", "warn"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Four stage histograms, two timeline charts, two sweep charts.
    check_page(&page, 8);
}

#[test]
fn the_replay_page_draws_every_plot_in_a_browser() {
    let dir = common::fresh_dir("page-replay");
    let page = dir.join("replay.html");
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("replay")
            .arg(common::small_clip().join("vtest"))
            .arg("--params-file")
            .arg(params(&dir))
            .arg("--out")
            .arg(dir.join("out"))
            .arg("--html")
            .arg(&page)
            .env("RUST_LOG", "warn"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_page(&page, 6);
}
