//! One self-contained HTML page for a replay or a simulation: a summary table, per-camera
//! tables, the latency histogram of every stage, the timeline (latency, drops and misses over
//! time) and any extra charts (the sweep curve). Inline CSS and SVG; the one inline script only
//! checks the page itself (every plot drawn with a size, no script error) and writes the result
//! into `#selfcheck`, which the browser test reads from the DOM.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::svg::{Series, chart, escape};
use super::{Bins, Timeline};

/// A table: caption, header, rows.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Caption.
    pub caption: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

/// What a page shows.
#[derive(Debug, Clone, Default)]
pub struct Page<'a> {
    /// Page title and heading.
    pub title: String,
    /// Tables, in order (the first is the summary).
    pub tables: Vec<Table>,
    /// Latency bins per stage.
    pub histograms: Option<&'a BTreeMap<String, Bins>>,
    /// Results over time.
    pub timeline: Option<&'a Timeline>,
    /// More charts (rendered SVG), after the others.
    pub extra_charts: Vec<String>,
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;\
font-size:13px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}\
caption{text-align:left;font-weight:bold;padding:4px 0}\
.charts{display:flex;flex-wrap:wrap;gap:12px}svg.plot{border:1px solid #ddd;background:#fff}\
svg .title{font-size:13px;font-weight:bold}svg .tick{font-size:10px;fill:#444}\
svg .label{font-size:11px;fill:#222}svg .grid{stroke:#eee}svg .axis{stroke:#888}";

const SELF_CHECK: &str = "(function(){var errors=[];\
window.addEventListener('error',function(e){errors.push(String(e.message));});\
window.addEventListener('load',function(){var plots=document.querySelectorAll('svg.plot');\
var small=[];for(var i=0;i<plots.length;i++){var r=plots[i].getBoundingClientRect();\
if(!(r.width>=50&&r.height>=50)){small.push(i);}}\
var c=document.getElementById('selfcheck');c.setAttribute('data-plots',String(plots.length));\
c.setAttribute('data-small',small.join(','));c.setAttribute('data-errors',errors.join('|'));\
c.setAttribute('data-done','1');});})();";

const COLORS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];

/// The page, as one HTML document.
pub fn page(p: &Page<'_>) -> String {
    let mut s = String::new();
    let title = escape(&p.title);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1>"
    );
    for t in &p.tables {
        s.push_str(&table(t));
    }
    if let Some(h) = p.histograms {
        s.push_str("<h2>Latency per stage</h2><div class=\"charts\">");
        // Stages in pipeline order (the report's keys), then any others.
        const ORDER: [&str; 4] = ["preprocess", "inference", "postprocess", "e2e"];
        let mut stages: Vec<(&String, &Bins)> = h.iter().collect();
        stages.sort_by_key(|(k, _)| ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()));
        for (i, (stage, bins)) in stages.into_iter().enumerate() {
            let spans = bins.iter().map(|&(lo, hi, n)| (lo, hi, n as f64)).collect();
            s.push_str(&chart(
                &format!("{stage} latency"),
                "ms (log scale)",
                "results",
                &[Series::spans("", COLORS[i % COLORS.len()], spans)],
                true,
            ));
        }
        s.push_str("</div>");
    }
    if let Some(t) = p.timeline {
        s.push_str("<h2>Over time</h2><div class=\"charts\">");
        let x = |i: usize| (i as f64 + 0.5) * t.slot_s;
        let with_results = |f: &dyn Fn(&super::Slot) -> f64| -> Vec<(f64, f64)> {
            t.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.results > 0)
                .map(|(i, s)| (x(i), f(s)))
                .collect()
        };
        s.push_str(&chart(
            "End-to-end latency",
            "time (s)",
            "ms",
            &[
                Series::line("max", COLORS[3], with_results(&|s| s.e2e_max_ms)),
                Series::line("mean", COLORS[0], with_results(&|s| s.e2e_mean_ms)),
            ],
            false,
        ));
        let per_second = |f: &dyn Fn(&super::Slot) -> u64| -> Vec<(f64, f64)> {
            t.slots
                .iter()
                .enumerate()
                .map(|(i, s)| (x(i), f(s) as f64 / t.slot_s))
                .collect()
        };
        s.push_str(&chart(
            &format!(
                "Results, drops and deadline misses ({:.2} s bins)",
                t.slot_s
            ),
            "time (s)",
            "per second",
            &[
                Series::line("results", COLORS[2], per_second(&|s| s.results)),
                Series::bars(
                    "dropped",
                    COLORS[3],
                    per_second(&|s| s.drops),
                    t.slot_s * 0.8,
                ),
                Series::bars("late", COLORS[1], per_second(&|s| s.misses), t.slot_s * 0.5),
            ],
            false,
        ));
        s.push_str("</div>");
    }
    if !p.extra_charts.is_empty() {
        s.push_str("<div class=\"charts\">");
        for c in &p.extra_charts {
            s.push_str(c);
        }
        s.push_str("</div>");
    }
    let _ = writeln!(
        s,
        "<div id=\"selfcheck\" hidden></div><script>{SELF_CHECK}</script></body></html>"
    );
    s
}

fn table(t: &Table) -> String {
    let mut s = String::from("<table>");
    if !t.caption.is_empty() {
        let _ = write!(s, "<caption>{}</caption>", escape(&t.caption));
    }
    if !t.header.is_empty() {
        s.push_str("<tr>");
        for h in &t.header {
            let _ = write!(s, "<th>{}</th>", escape(h));
        }
        s.push_str("</tr>");
    }
    for r in &t.rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", escape(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}
