//! `lookout run`: the live node.

use std::process::ExitCode;

use anyhow::Result;

use super::args::RunArgs;
use super::stop_flag;

#[cfg(feature = "ros")]
pub(crate) fn run(args: &RunArgs) -> Result<ExitCode> {
    let stop = stop_flag()?;
    // rcl reads the process arguments itself; note whether they carry a params file.
    let ros_params_file = std::env::args()
        .skip_while(|a| a != "--ros-args")
        .any(|a| a == "--params-file");
    let _ = &args.ros_args;
    let options = lookout::ros::NodeOptions {
        params_file: args.params_file.clone(),
        ros_params_file,
        managed: args.managed,
    };
    let summary = lookout::ros::run(&options, stop)?;
    for cam in &summary.cameras {
        let c = cam.counters;
        let mean_ms = |total_ns: u64| total_ns as f64 / 1e6 / c.processed.max(1) as f64;
        eprintln!(
            "lookout: summary camera={} received={} processed={} published={} dropped_ring_full={} dropped_superseded={} dropped_too_old={} dropped_late={} deadline_misses={} timeouts={} bad_input={} inference_errors={} dropped_output={} clock_anomalies={} qos_incompatible={} preprocess_ms_mean={:.2} inference_ms_mean={:.2} postprocess_ms_mean={:.2}",
            cam.name,
            c.received,
            c.processed,
            c.published,
            c.dropped_ring_full,
            c.dropped_superseded,
            c.dropped_too_old,
            c.dropped_late,
            c.deadline_misses,
            c.timeouts,
            c.bad_input,
            c.inference_errors,
            c.dropped_output,
            c.clock_anomalies,
            c.qos_incompatible_events,
            mean_ms(c.preprocess_ns),
            mean_ms(c.inference_ns),
            mean_ms(c.postprocess_ns)
        );
    }
    Ok(ExitCode::SUCCESS)
}
