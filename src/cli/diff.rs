//! `lookout diff`: two detection bags compared.

use std::process::ExitCode;

use anyhow::Result;

use super::args::DiffArgs;

pub(crate) fn diff(args: &DiffArgs) -> Result<ExitCode> {
    let tol = lookout::diff::Tolerances {
        iou: args.iou,
        score: args.score_tol,
        box_px: args.box_tol_px,
        max_unmatched: args.max_unmatched,
    };
    let report = lookout::diff::diff(&args.a, &args.b, &tol)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (topic, t) in &report.topics {
            println!(
                "{topic}: frames A {} B {} matched {} (only A {}, only B {}); unmatched detections A {} B {}",
                t.frames_a,
                t.frames_b,
                t.frames_matched,
                t.frames_only_a,
                t.frames_only_b,
                t.unmatched_a,
                t.unmatched_b
            );
            for (class, c) in &t.classes {
                println!(
                    "  {class:<14} A {:>5}  B {:>5}  pairs {:>5}  score diff max {:.4} mean {:.4}  box diff max {:.2} px",
                    c.count_a,
                    c.count_b,
                    c.matched,
                    c.max_score_diff,
                    c.mean_score_diff,
                    c.max_box_diff_px
                );
            }
        }
        if report.within_tolerance {
            println!("within tolerance");
        } else {
            for f in &report.failures {
                println!("beyond tolerance: {f}");
            }
        }
    }
    Ok(if report.within_tolerance {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
