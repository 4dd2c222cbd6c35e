//! Charts drawn on the server as inline SVG: no script, no library, every label escaped.
//! Presentation attributes only (`fill`, `stroke`): the Content-Security-Policy forbids inline
//! `style`.

use super::html::esc;
use std::fmt::Write as _;

const WIDTH: u32 = 760;
const HEIGHT: u32 = 220;
const LEFT: u32 = 44;
const RIGHT: u32 = 12;
const TOP: u32 = 12;
const BOTTOM: u32 = 36;

/// Colours of the series, in order; the last is for "other".
pub const PALETTE: [&str; 7] = [
    "#c0392b", "#2e86c1", "#d68910", "#239b56", "#7d3c98", "#5d6d7e", "#aab7b8",
];

/// One stacked series: its name and one count per bucket.
pub struct Series {
    pub name: String,
    pub counts: Vec<u32>,
}

/// Stacked bars over time: one bar per bucket (`labels`, e.g. their start times), each the sum
/// of the series. Each segment carries a `<title>` (a tooltip) naming series, bucket and count.
pub fn stacked_bars(aria: &str, labels: &[String], series: &[Series]) -> String {
    let n = labels.len().max(1) as u32;
    let totals: Vec<u32> = (0..labels.len())
        .map(|i| series.iter().map(|s| s.counts.get(i).copied().unwrap_or(0)).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w as f64 / f64::from(n);
    let bar = (slot * 0.8).max(1.0);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        esc(aria)
    );
    // Axes and the top of the scale.
    let base = TOP + plot_h;
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\" stroke=\"#888\"/>\
         <line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#888\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#444\">{max}</text>\
         <text x=\"{}\" y=\"{base}\" font-size=\"11\" text-anchor=\"end\" fill=\"#444\">0</text>",
        WIDTH - RIGHT,
        LEFT - 4,
        TOP + 10,
        LEFT - 4
    );
    for (i, label) in labels.iter().enumerate() {
        let x = f64::from(LEFT) + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = f64::from(base);
        for (si, s) in series.iter().enumerate() {
            let c = s.counts.get(i).copied().unwrap_or(0);
            if c == 0 {
                continue;
            }
            let h = f64::from(plot_h) * f64::from(c) / f64::from(max);
            y -= h;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{}\">\
                 <title>{}: {c} at {}</title></rect>",
                PALETTE[si.min(PALETTE.len() - 1)],
                esc(&s.name),
                esc(label)
            );
        }
        // A label under every few bars, so they do not overlap.
        let every = (labels.len() / 6).max(1);
        if i % every == 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#444\">{}</text>",
                x + bar / 2.0,
                base + 14,
                esc(label)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// The legend of a chart: a coloured square and the series' name, for each series.
pub fn legend(series: &[Series]) -> String {
    let mut out = String::from("<ul class=\"legend\">");
    for (i, s) in series.iter().enumerate() {
        let total: u32 = s.counts.iter().sum();
        let _ = write!(
            out,
            "<li><svg width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" fill=\"{}\"/></svg> \
             {} <span class=\"count\">{total}</span></li>",
            PALETTE[i.min(PALETTE.len() - 1)],
            esc(&s.name)
        );
    }
    out.push_str("</ul>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_bars_scale() {
        let series = vec![
            Series {
                name: "<script>x</script>".into(),
                counts: vec![1, 0, 4],
            },
            Series {
                name: "b\"".into(),
                counts: vec![1, 2, 0],
            },
        ];
        let svg = stacked_bars("denials <by> ns", &["t<1".into(), "t2".into(), "t3".into()], &series);
        assert!(
            !svg.contains("<script>") && svg.contains("&lt;script&gt;x&lt;/script&gt;: 4 at t3"),
            "{svg}"
        );
        assert!(svg.contains("aria-label=\"denials &lt;by&gt; ns\""), "{svg}");
        assert!(
            svg.contains(">4</text>"),
            "the top of the scale is the largest bar: {svg}"
        );
        assert!(!svg.contains("style="), "no inline style: {svg}");
        let l = legend(&series);
        assert!(l.contains("b&quot; <span class=\"count\">3</span>"), "{l}");
        // Nothing to draw is still a chart.
        assert!(stacked_bars("x", &[], &[]).starts_with("<svg"));
    }
}
