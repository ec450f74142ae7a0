//! Charts as inline SVG: axes with round ticks, line and bar series, a legend. Small on
//! purpose: the report pages need a histogram, a few lines and bars, nothing interactive.

use std::fmt::Write;

/// Width and height of a chart, px.
pub const WIDTH: f64 = 560.0;
/// Height of a chart, px.
pub const HEIGHT: f64 = 260.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 42.0;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Points joined by a line (with dots).
    Line,
    /// Bars from zero, centred on each x, `bar_width` data units wide.
    Bars,
    /// Bars from zero over `[low, high)` spans (a histogram's bins): `spans`.
    Spans,
}

/// One series of a chart.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// CSS colour.
    pub color: &'a str,
    /// How it is drawn.
    pub kind: Kind,
    /// `(x, y)` points (lines and bars).
    pub points: Vec<(f64, f64)>,
    /// Bars: width of each bar in data units.
    pub bar_width: f64,
    /// Spans: `(low x, high x, y)`.
    pub spans: Vec<(f64, f64, f64)>,
}

impl<'a> Series<'a> {
    /// A line through `points`.
    pub fn line(name: &'a str, color: &'a str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name,
            color,
            kind: Kind::Line,
            points,
            bar_width: 0.0,
            spans: Vec::new(),
        }
    }

    /// Bars `width` wide centred on the points' x.
    pub fn bars(name: &'a str, color: &'a str, points: Vec<(f64, f64)>, width: f64) -> Self {
        Self {
            name,
            color,
            kind: Kind::Bars,
            points,
            bar_width: width,
            spans: Vec::new(),
        }
    }

    /// A histogram: one bar per `(low, high, count)` bin.
    pub fn spans(name: &'a str, color: &'a str, spans: Vec<(f64, f64, f64)>) -> Self {
        Self {
            name,
            color,
            kind: Kind::Spans,
            points: Vec::new(),
            bar_width: 0.0,
            spans,
        }
    }
}

/// Escapes text for XML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Round tick values covering `lo..hi` (about five).
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 20 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// Log-scale ticks (1, 2, 5 times powers of ten) within `lo..hi` (both > 0).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut p = 10f64.powf(lo.log10().floor());
    while p <= hi && out.len() < 30 {
        for m in [1.0, 2.0, 5.0] {
            let v = p * m;
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        p *= 10.0;
    }
    out
}

fn label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A chart of `series` over x (log scale with `log_x`; all x must then be > 0) and y from 0.
/// An empty chart (no points) says so in its middle. The `<svg>` has class `plot`.
pub fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    log_x: bool,
) -> String {
    let xs = series.iter().flat_map(|s| {
        let w = if s.kind == Kind::Bars {
            s.bar_width / 2.0
        } else {
            0.0
        };
        s.points
            .iter()
            .flat_map(move |p| [p.0 - w, p.0 + w])
            .chain(s.spans.iter().flat_map(|sp| [sp.0, sp.1]))
    });
    let (mut x0, mut x1) = xs
        .filter(|x| x.is_finite() && (!log_x || *x > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, x| {
            (a.0.min(x), a.1.max(x))
        });
    let y1 = series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.1)
                .chain(s.spans.iter().map(|sp| sp.2))
        })
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max);
    let empty = !x0.is_finite();
    if empty {
        (x0, x1) = if log_x { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if x1 <= x0 {
        x1 = if log_x { x0 * 2.0 } else { x0 + 1.0 };
    }
    let y1 = if y1 > 0.0 { y1 * 1.08 } else { 1.0 };
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let fx = |x: f64| {
        let f = if log_x {
            (x.max(x0).ln() - x0.ln()) / (x1.ln() - x0.ln())
        } else {
            (x - x0) / (x1 - x0)
        };
        LEFT + f * pw
    };
    let fy = |y: f64| TOP + ph - (y / y1).clamp(0.0, 1.0) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>{t}</title>"#,
        t = escape(title)
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="18" class="title">{}</text>"##,
        LEFT,
        escape(title)
    );
    // Grid and ticks.
    for v in ticks(0.0, y1) {
        let y = fy(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            label(v)
        );
    }
    let xt = if log_x {
        log_ticks(x0, x1)
    } else {
        ticks(x0, x1)
    };
    for v in xt {
        let x = fx(v);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" class="axis"/><text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 4.0,
            TOP + ph + 16.0,
            label(v)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" class="axis"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" class="axis"/>"##,
        TOP + ph,
        LEFT + pw,
        TOP + ph,
        TOP + ph
    );
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">{}</text><text x="14" y="{:.1}" class="label" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"##,
        LEFT + pw / 2.0,
        HEIGHT - 6.0,
        escape(x_label),
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
    if empty {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">no data</text>"##,
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    for (i, se) in series.iter().enumerate() {
        let color = escape(se.color);
        match se.kind {
            Kind::Bars => {
                for &(x, y) in &se.points {
                    let (a, b) = (fx(x - se.bar_width / 2.0), fx(x + se.bar_width / 2.0));
                    let top = fy(y);
                    let _ = write!(
                        s,
                        r##"<rect x="{a:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="0.75"/>"##,
                        (b - a - 1.0).max(1.0),
                        (TOP + ph - top).max(0.0)
                    );
                }
            }
            Kind::Spans => {
                for &(lo, hi, y) in &se.spans {
                    let (a, b) = (fx(lo), fx(hi));
                    let top = fy(y);
                    let _ = write!(
                        s,
                        r##"<rect x="{a:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="0.75"/>"##,
                        (b - a - 0.5).max(0.5),
                        (TOP + ph - top).max(0.0)
                    );
                }
            }
            Kind::Line => {
                let pts: Vec<String> = se
                    .points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log_x || p.0 > 0.0))
                    .map(|p| format!("{:.1},{:.1}", fx(p.0), fy(p.1)))
                    .collect();
                let _ = write!(
                    s,
                    r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"##,
                    pts.join(" ")
                );
                for p in &pts {
                    if let Some((x, y)) = p.split_once(',') {
                        let _ =
                            write!(s, r##"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>"##);
                    }
                }
            }
        }
        // Legend, top right.
        if se.name.is_empty() {
            continue;
        }
        let ly = TOP + 4.0 + i as f64 * 15.0;
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}" class="tick">{}</text>"##,
            LEFT + pw - 150.0,
            ly,
            LEFT + pw - 135.0,
            ly + 9.0,
            escape(se.name)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 0.7), vec![0.0, 0.2, 0.4, 0.6000000000000001]);
        assert_eq!(log_ticks(3.0, 120.0), vec![5.0, 10.0, 20.0, 50.0, 100.0]);
    }

    #[test]
    fn a_chart_is_one_svg_with_its_series_and_text_escaped() {
        let s = chart(
            "a <b> & c",
            "x",
            "y",
            &[Series::line("e2e", "#1f77b4", vec![(1.0, 2.0), (2.0, 3.0)])],
            false,
        );
        assert!(s.starts_with("<svg class=\"plot\"") && s.ends_with("</svg>"));
        assert!(s.contains("a &lt;b&gt; &amp; c"));
        assert_eq!(s.matches("<circle").count(), 2);
        assert!(!s.contains("no data"));
        assert!(chart("t", "x", "y", &[], true).contains("no data"));
    }
}
