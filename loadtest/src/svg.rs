//! Charts as standalone SVG files, for docs/benchmarks.md: no dependency, one function per chart kind.
//!
//! `loadtest chart --input spec.json --out chart.svg` draws a [`Chart`] described in JSON: `lines` (one polyline
//! per series, e.g. latency against quantile, or the share of a burst served against time) or `timeline`
//! (one row per series, each a sequence of labelled spans, e.g. the steps of an activation).

use std::fmt::Write;

use serde::Deserialize;

const W: f64 = 760.0;
const H: f64 = 420.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 56.0;
const COLORS: [&str; 6] = ["#1b6ac9", "#d9480f", "#2b8a3e", "#7048e8", "#868e96", "#e8590c"];

#[derive(Debug, Deserialize)]
pub struct Chart {
    pub title: String,
    #[serde(default)]
    pub x_label: String,
    #[serde(default)]
    pub y_label: String,
    /// `linear` (default), `log`, or `nines` (a quantile axis: 0.9, 0.99, 0.999 … equally spaced).
    #[serde(default)]
    pub x_scale: Scale,
    #[serde(default)]
    pub y_scale: Scale,
    #[serde(flatten)]
    pub kind: Kind,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    #[default]
    Linear,
    Log,
    Nines,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Kind {
    Lines { series: Vec<Series> },
    Timeline { rows: Vec<Row> },
}

#[derive(Debug, Deserialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Deserialize)]
pub struct Row {
    pub name: String,
    pub spans: Vec<Span>,
}

#[derive(Debug, Deserialize)]
pub struct Span {
    pub label: String,
    pub from: f64,
    pub to: f64,
}

impl Scale {
    fn map(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log => v.max(1e-9).log10(),
            Scale::Nines => -(1.0 - v.min(0.99999)).log10(),
        }
    }

    fn label(self, v: f64) -> String {
        match self {
            Scale::Nines => format!("p{}", trim(100.0 * (1.0 - 10f64.powf(-v)))),
            Scale::Log => trim(10f64.powf(v)),
            Scale::Linear => trim(v),
        }
    }
}

fn trim(v: f64) -> String {
    let s = if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.3}") };
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Tick positions over [lo, hi] (already scaled): about `n`, on round numbers.
fn ticks(lo: f64, hi: f64, n: usize, scale: Scale) -> Vec<f64> {
    if scale != Scale::Linear {
        return (lo.floor() as i64..=hi.ceil() as i64).map(|t| t as f64).filter(|t| *t >= lo && *t <= hi).collect();
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(raw);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

/// The axis frame and tick labels; returns the functions mapping data to pixels.
struct Frame {
    x: (f64, f64, Scale),
    y: (f64, f64, Scale),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        let (lo, hi, s) = self.x;
        LEFT + (s.map(x) - lo) / (hi - lo).max(1e-12) * (W - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        let (lo, hi, s) = self.y;
        H - BOTTOM - (s.map(y) - lo) / (hi - lo).max(1e-12) * (H - TOP - BOTTOM)
    }

    fn draw(&self, out: &mut String, c: &Chart, y_ticks: bool) {
        let (xl, xh, xs) = self.x;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##,
            H - BOTTOM,
            W - RIGHT,
            H - BOTTOM
        );
        let _ = write!(out, r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="#333"/>"##, H - BOTTOM);
        for t in ticks(xl, xh, 6, xs) {
            let x = LEFT + (t - xl) / (xh - xl).max(1e-12) * (W - LEFT - RIGHT);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                H - BOTTOM,
                H - BOTTOM + 18.0,
                esc(&xs.label(t))
            );
        }
        if y_ticks {
            let (yl, yh, ys) = self.y;
            for t in ticks(yl, yh, 5, ys) {
                let y = H - BOTTOM - (t - yl) / (yh - yl).max(1e-12) * (H - TOP - BOTTOM);
                let _ = write!(
                    out,
                    r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                    W - RIGHT,
                    LEFT - 6.0,
                    y + 4.0,
                    esc(&ys.label(t))
                );
            }
        }
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
            LEFT + (W - LEFT - RIGHT) / 2.0,
            H - 14.0,
            esc(&c.x_label),
            TOP + (H - TOP - BOTTOM) / 2.0,
            esc(&c.y_label)
        );
    }
}

fn bounds(values: impl Iterator<Item = f64>, scale: Scale, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values.map(|v| scale.map(v)).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    if from_zero && scale == Scale::Linear {
        lo = lo.min(0.0);
    }
    if (hi - lo).abs() < 1e-12 {
        hi = lo + 1.0;
    }
    (lo, hi + (hi - lo) * 0.04)
}

fn legend(out: &mut String, names: &[&str]) {
    for (i, n) in names.iter().enumerate() {
        let y = TOP + 8.0 + i as f64 * 20.0;
        let _ = write!(
            out,
            r##"<rect x="{}" y="{:.1}" width="14" height="10" fill="{}"/><text x="{}" y="{:.1}">{}</text>"##,
            W - RIGHT + 14.0,
            y - 9.0,
            COLORS[i % COLORS.len()],
            W - RIGHT + 34.0,
            y,
            esc(n)
        );
    }
}

/// The chart as a complete SVG document.
pub fn render(c: &Chart) -> String {
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"##,
        W / 2.0,
        esc(&c.title)
    );
    match &c.kind {
        Kind::Lines { series } => {
            let all = || series.iter().flat_map(|s| s.points.iter());
            let f = Frame {
                x: {
                    let (l, h) = bounds(all().map(|p| p.0), c.x_scale, false);
                    (l, h, c.x_scale)
                },
                y: {
                    let (l, h) = bounds(all().map(|p| p.1), c.y_scale, true);
                    (l, h, c.y_scale)
                },
            };
            f.draw(&mut out, c, true);
            for (i, s) in series.iter().enumerate() {
                let pts: Vec<String> =
                    s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", f.px(x), f.py(y))).collect();
                let _ = write!(
                    out,
                    r##"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"##,
                    COLORS[i % COLORS.len()],
                    pts.join(" ")
                );
            }
            legend(&mut out, &series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
        }
        Kind::Timeline { rows } => {
            let ends = rows.iter().flat_map(|r| r.spans.iter().flat_map(|s| [s.from, s.to]));
            let f = Frame {
                x: {
                    let (l, h) = bounds(ends, c.x_scale, true);
                    (l, h, c.x_scale)
                },
                y: (0.0, 1.0, Scale::Linear),
            };
            f.draw(&mut out, c, false);
            let band = (H - TOP - BOTTOM) / rows.len().max(1) as f64;
            let mut labels: Vec<&str> = Vec::new();
            for (r, row) in rows.iter().enumerate() {
                let y = TOP + band * r as f64 + band * 0.2;
                let _ = write!(
                    out,
                    r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                    LEFT - 6.0,
                    y + band * 0.35,
                    esc(&row.name)
                );
                for s in &row.spans {
                    let i = labels.iter().position(|l| *l == s.label).unwrap_or_else(|| {
                        labels.push(&s.label);
                        labels.len() - 1
                    });
                    let (x0, x1) = (f.px(s.from), f.px(s.to));
                    let _ = write!(
                        out,
                        r##"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"##,
                        (x1 - x0).max(1.5),
                        band * 0.6,
                        COLORS[i % COLORS.len()]
                    );
                }
            }
            legend(&mut out, &labels);
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_lines_and_timelines_with_their_labels() {
        let lines: Chart = serde_json::from_str(
            r#"{"title": "latency", "x_label": "quantile", "y_label": "µs", "x_scale": "nines", "kind": "lines",
                "series": [{"name": "httpscale", "points": [[0.5, 100], [0.99, 300], [0.999, 900]]},
                           {"name": "a <b>", "points": [[0.5, 120], [0.99, 500]]}]}"#,
        )
        .unwrap();
        let svg = render(&lines);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("httpscale") && svg.contains("a &lt;b&gt;"), "legend names escaped");
        assert!(svg.contains(">p99<") && svg.contains(">p99.9<"), "a quantile axis labels its nines");

        let timeline: Chart = serde_json::from_str(
            r#"{"title": "activation", "kind": "timeline", "rows": [
                {"name": "httpscale", "spans": [{"label": "scaler", "from": 0, "to": 2}, {"label": "KEDA", "from": 2, "to": 40}]},
                {"name": "upstream", "spans": [{"label": "scaler", "from": 0, "to": 400}]}]}"#,
        )
        .unwrap();
        let svg = render(&timeline);
        assert_eq!(svg.matches("<rect x=").count(), 3 + 2, "three spans and a legend entry per step");
    }

    #[test]
    fn ticks_fall_on_round_numbers() {
        assert_eq!(ticks(0.0, 10.0, 5, Scale::Linear), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.3, 3.2, 5, Scale::Nines), vec![1.0, 2.0, 3.0]);
    }
}
