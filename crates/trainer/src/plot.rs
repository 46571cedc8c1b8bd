//! Charts as standalone SVG text, written by hand: line charts (training curves), a
//! precision–recall curve and overlaid score histograms, each 640×400 with axes, ticks, labels
//! and a legend.
//!
//! Non-finite values (NaN, ±inf) are skipped; a chart with nothing to draw is still a valid SVG
//! that says "no data". Every text is escaped for XML.
//!
//! ```
//! use trainer::plot::{line_chart, Series};
//!
//! let loss = Series::new("training loss", vec![(1.0, 0.9), (2.0, 0.5), (3.0, 0.4)]);
//! let svg = line_chart("Training", "epoch", &[loss], "loss");
//! assert!(svg.starts_with("<svg"));
//! ```

use std::fmt::Write as _;

/// Width of one chart, in pixels.
pub const WIDTH: f64 = 640.0;
/// Height of one chart, in pixels.
pub const HEIGHT: f64 = 400.0;

/// Left edge of the plotting area.
const LEFT: f64 = 76.0;
/// Right edge of the plotting area.
const RIGHT: f64 = WIDTH - 20.0;
/// Top edge of the plotting area.
const TOP: f64 = 40.0;
/// Bottom edge of the plotting area.
const BOTTOM: f64 = HEIGHT - 50.0;

/// Line colours, in the order series take them.
const PALETTE: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
/// Rough width of one character at `FONT` pixels, for sizing boxes around text.
const CHAR_W: f64 = 7.0;
/// Font size of ticks, legends and notes.
const FONT: f64 = 12.0;

/// One named line of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend's name for it.
    pub name: String,
    /// `(x, y)` points, drawn in this order; non-finite ones leave a gap.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points }
    }
}

/// A dashed vertical line across a chart, with a note at its top (the best epoch, a threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Where, in data units.
    pub x: f64,
    /// The note beside it.
    pub label: String,
}

/// A line chart; [`line_chart`] draws the common case.
#[derive(Debug, Clone, Default)]
pub struct LineChart<'a> {
    /// Above the chart.
    pub title: &'a str,
    /// Under the x axis.
    pub x_label: &'a str,
    /// Beside the y axis.
    pub y_label: &'a str,
    /// The lines.
    pub series: &'a [Series],
    /// A dashed vertical line, e.g. at the best epoch; points of every series at that x are
    /// ringed.
    pub marker: Option<Marker>,
    /// Bounds the y axis never passes (e.g. `(0.0, 1.0)` for accuracy), unless data do.
    pub y_bounds: Option<(f64, f64)>,
}

/// A line chart of `series` (each with its own colour and a legend entry).
pub fn line_chart(title: &str, x_label: &str, series: &[Series], y_label: &str) -> String {
    LineChart { title, x_label, y_label, series, marker: None, y_bounds: None }.render()
}

/// Stacks whole charts (as [`LineChart::render`] and the others return them) top to bottom in
/// one SVG, each keeping its 640×400.
pub fn stack(charts: &[String]) -> String {
    let height = HEIGHT * charts.len().max(1) as f64;
    let mut s = open_svg(WIDTH, height);
    for (i, c) in charts.iter().enumerate() {
        let _ = write!(s, r#"<g transform="translate(0,{})">"#, HEIGHT * i as f64);
        s.push_str(c.trim_end());
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

/// Precision–recall points of a ranking by `scores` (higher = more likely positive): one
/// `(recall, precision)` per distinct score, from the highest down, ties taken together.
/// Non-finite scores are left out. Empty when no (finite) positive is left.
///
/// Drawn as a step curve from recall 0 (see [`PrCurve`]), the area under these points is
/// average precision as `data::metrics::average_precision` computes it.
pub fn pr_points(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let mut ranked: Vec<(f64, bool)> = scores.iter().zip(labels).filter(|(s, _)| s.is_finite()).map(|(&s, &y)| (s, y)).collect();
    let positives = ranked.iter().filter(|(_, y)| *y).count();
    if positives == 0 {
        return Vec::new();
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut seen) = (0usize, 0usize);
    let mut out = Vec::new();
    let mut k = 0;
    while k < ranked.len() {
        let s = ranked[k].0;
        while k < ranked.len() && ranked[k].0 == s {
            tp += usize::from(ranked[k].1);
            seen += 1;
            k += 1;
        }
        out.push((tp as f64 / positives as f64, tp as f64 / seen as f64));
    }
    out
}

/// A precision–recall curve; [`pr_curve`] draws the common case.
#[derive(Debug, Clone, Default)]
pub struct PrCurve<'a> {
    /// Above the chart; empty gives "Precision–recall curve (AP …)".
    pub title: &'a str,
    /// `(recall, precision)` points as [`pr_points`] returns them.
    pub points: &'a [(f64, f64)],
    /// Average precision, for the title and legend.
    pub ap: f64,
    /// `(recall, precision)` of the decision threshold, drawn as a dot.
    pub operating: Option<(f64, f64)>,
}

/// A precision–recall curve of `(recall, precision)` points ([`pr_points`]), with the average
/// precision `ap` in the title.
pub fn pr_curve(points: &[(f64, f64)], ap: f64) -> String {
    PrCurve { title: "", points, ap, operating: None }.render()
}

/// Two overlaid histograms, duplicates against not duplicates; [`histogram`] draws the common case.
#[derive(Debug, Clone, Default)]
pub struct Histogram<'a> {
    /// Above the chart; empty gives "Scores of duplicates and not duplicates".
    pub title: &'a str,
    /// Under the x axis; empty gives "score".
    pub x_label: &'a str,
    /// Scores of duplicate pairs.
    pub positives: &'a [f64],
    /// Scores of the pairs that are not duplicates.
    pub negatives: &'a [f64],
    /// Number of equal-width bins (at least 1).
    pub bins: usize,
    /// A dashed vertical line at the decision threshold.
    pub threshold: Option<f64>,
}

/// Histograms of the scores of duplicate (`positives`) and not duplicate (`negatives`) pairs over the
/// same `bins`, overlaid, with a line at `threshold`.
pub fn histogram(positives: &[f64], negatives: &[f64], bins: usize, threshold: Option<f64>) -> String {
    Histogram { title: "", x_label: "", positives, negatives, bins, threshold }.render()
}

/// `s` with `&`, `<`, `>` and both quotes escaped, and the control characters XML 1.0 forbids
/// replaced by U+FFFD, so any text can go into an element or an attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// One axis: its data range (from the first tick to the last) and its ticks.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    /// Decimals of the tick labels.
    decimals: usize,
    /// Tick labels in exponent notation (very large or very small values).
    exponent: bool,
}

impl Axis {
    /// Ticks at 1, 2 or 5 × 10ⁿ covering `[lo, hi]` with about `target` intervals; integer steps
    /// only when `integer` (epochs).
    fn nice(lo: f64, hi: f64, target: usize, integer: bool) -> Axis {
        let (mut lo, mut hi) = (lo, hi);
        if lo == hi {
            let d = if integer || lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            lo -= d;
            hi += d;
        }
        let mut step = nice_step((hi - lo) / target.max(1) as f64);
        if integer {
            step = step.max(1.0);
        }
        let (first, last) = ((lo / step + 1e-9).floor() * step, (hi / step - 1e-9).ceil() * step);
        let n = ((last - first) / step).round();
        if !(n.is_finite() && step.is_finite() && step > 0.0) || n > 100.0 {
            // Spans no float step can cut: the two ends alone.
            return Axis { lo, hi, ticks: vec![lo, hi], decimals: 0, exponent: true };
        }
        let ticks: Vec<f64> = (0..=n as usize).map(|i| clean(first + i as f64 * step, step)).collect();
        let biggest = first.abs().max(last.abs());
        let exponent = biggest >= 1e6 || step < 1e-4;
        let decimals = if step >= 1.0 { 0 } else { (-step.log10() - 1e-9).ceil() as usize };
        Axis { lo: first, hi: last, ticks, decimals, exponent }
    }

    /// This axis cut to `[lo, hi]` (a metric that cannot leave `[0, 1]`), when the data lie
    /// within it.
    fn within(mut self, (lo, hi): (f64, f64), data: (f64, f64)) -> Axis {
        if !(lo <= data.0 && data.1 <= hi) {
            return self;
        }
        let eps = (self.hi - self.lo) * 1e-9;
        self.ticks.retain(|&t| t >= lo - eps && t <= hi + eps);
        self.lo = self.lo.max(lo);
        self.hi = self.hi.min(hi);
        self
    }

    /// A fixed range with ticks every `step`.
    fn fixed(lo: f64, hi: f64, step: f64) -> Axis {
        let n = ((hi - lo) / step).round() as usize;
        let decimals = if step >= 1.0 { 0 } else { (-step.log10() - 1e-9).ceil() as usize };
        Axis { lo, hi, ticks: (0..=n).map(|i| clean(lo + i as f64 * step, step)).collect(), decimals, exponent: false }
    }

    fn label(&self, v: f64) -> String {
        if self.exponent {
            format!("{v:.2e}")
        } else {
            format!("{v:.*}", self.decimals)
        }
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 + 1e-9 {
        1.0
    } else if f <= 2.0 + 1e-9 {
        2.0
    } else if f <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// `v` rounded to a multiple of `step`, without the float noise of repeated addition (a last
/// stray digit, or a negative zero):
/// the multiple is rounded in decimal units of the step (tenths for 0.2) and then divided.
fn clean(v: f64, step: f64) -> f64 {
    let k = (v / step).round();
    let r = if step < 1.0 {
        let scale = 10f64.powi((-step.log10()).ceil() as i32);
        (k * step * scale).round() / scale
    } else {
        k * step
    };
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// Data units to pixels.
#[derive(Debug, Clone)]
struct Frame {
    x: Axis,
    y: Axis,
    /// Pixels between the frame and the ends of the x axis's range, so that points at the ends
    /// are not drawn on the frame.
    pad_x: f64,
    /// The same at the top and bottom of the y axis's range.
    pad_y: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + self.pad_x + (x - self.x.lo) / (self.x.hi - self.x.lo) * (RIGHT - LEFT - 2.0 * self.pad_x)
    }

    fn py(&self, y: f64) -> f64 {
        let (top, bottom) = self.pad_y;
        BOTTOM - bottom - (y - self.y.lo) / (self.y.hi - self.y.lo) * (BOTTOM - TOP - top - bottom)
    }

    /// Grid, axes, tick labels and the axis labels.
    fn draw_axes(&self, s: &mut String, x_label: &str, y_label: &str) {
        s.push_str(r##"<g stroke="#e4e4e4" stroke-width="1">"##);
        for &t in &self.x.ticks {
            let _ = write!(s, r#"<line x1="{0:.1}" y1="{TOP:.1}" x2="{0:.1}" y2="{BOTTOM:.1}"/>"#, self.px(t));
        }
        for &t in &self.y.ticks {
            let _ = write!(s, r#"<line x1="{LEFT:.1}" y1="{0:.1}" x2="{RIGHT:.1}" y2="{0:.1}"/>"#, self.py(t));
        }
        s.push_str("</g>\n");
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT:.1}" y="{TOP:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#333" stroke-width="1"/>"##,
            RIGHT - LEFT,
            BOTTOM - TOP
        );
        s.push_str(r##"<g stroke="#333" stroke-width="1">"##);
        for &t in &self.x.ticks {
            let _ = write!(s, r#"<line x1="{0:.1}" y1="{BOTTOM:.1}" x2="{0:.1}" y2="{1:.1}"/>"#, self.px(t), BOTTOM + 5.0);
        }
        for &t in &self.y.ticks {
            let _ = write!(s, r#"<line x1="{1:.1}" y1="{0:.1}" x2="{LEFT:.1}" y2="{0:.1}"/>"#, self.py(t), LEFT - 5.0);
        }
        s.push_str("</g>\n");
        let _ = write!(s, r##"<g fill="#333" font-size="{FONT}" text-anchor="middle">"##);
        for &t in &self.x.ticks {
            let _ = write!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, self.px(t), BOTTOM + 19.0, escape(&self.x.label(t)));
        }
        s.push_str("</g>\n");
        let _ = write!(s, r##"<g fill="#333" font-size="{FONT}" text-anchor="end">"##);
        let mut widest = 0usize;
        for &t in &self.y.ticks {
            let label = self.y.label(t);
            widest = widest.max(label.chars().count());
            let _ = write!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, LEFT - 8.0, self.py(t) + 4.0, escape(&label));
        }
        s.push_str("</g>\n");
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">{}</text>"#,
            (LEFT + RIGHT) / 2.0,
            HEIGHT - 12.0,
            escape(&fit(x_label, 80))
        );
        // The y label sits left of the widest tick label.
        let yx = (LEFT - 8.0 - widest as f64 * CHAR_W - 10.0).max(14.0);
        let _ = writeln!(
            s,
            r#"<text x="{0:.1}" y="{1:.1}" font-size="13" text-anchor="middle" transform="rotate(-90 {0:.1} {1:.1})">{2}</text>"#,
            yx,
            (TOP + BOTTOM) / 2.0,
            escape(&fit(y_label, 40))
        );
    }
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
enum Swatch<'a> {
    /// A line of this colour, dashed or not.
    Line(&'a str, bool),
    /// A filled square of this colour.
    Fill(&'a str),
    /// A dot of this colour.
    Dot(&'a str),
}

/// Draws a legend in the corner of the plotting area that covers the fewest of `occupied`
/// (pixel points the data passes through).
fn draw_legend(s: &mut String, entries: &[(Swatch<'_>, String)], occupied: &[(f64, f64)]) {
    if entries.is_empty() {
        return;
    }
    let widest = entries.iter().map(|(_, t)| t.chars().count()).max().unwrap_or(0);
    let w = (34.0 + widest as f64 * CHAR_W).min(RIGHT - LEFT - 16.0);
    let h = 8.0 + 18.0 * entries.len() as f64;
    let inset = 8.0;
    let corners = [
        (RIGHT - inset - w, TOP + inset),
        (LEFT + inset, TOP + inset),
        (RIGHT - inset - w, BOTTOM - inset - h),
        (LEFT + inset, BOTTOM - inset - h),
    ];
    let covered = |&(x, y): &(f64, f64)| occupied.iter().filter(|&&(px, py)| px >= x && px <= x + w && py >= y && py <= y + h).count();
    let (x, y) = corners.iter().copied().min_by_key(|c| covered(c)).unwrap_or(corners[0]);
    let _ = writeln!(
        s,
        r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="white" fill-opacity="0.85" stroke="#999" stroke-width="1" rx="3"/>"##
    );
    let max_chars = ((w - 34.0) / CHAR_W) as usize;
    for (i, (swatch, text)) in entries.iter().enumerate() {
        let cy = y + 13.0 + 18.0 * i as f64;
        match *swatch {
            Swatch::Line(c, dashed) => {
                let dash = if dashed { r#" stroke-dasharray="5 3""# } else { "" };
                let _ = write!(
                    s,
                    r#"<line x1="{:.1}" y1="{cy:.1}" x2="{:.1}" y2="{cy:.1}" stroke="{c}" stroke-width="2"{dash}/>"#,
                    x + 6.0,
                    x + 26.0
                );
            }
            Swatch::Fill(c) => {
                let _ = write!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="20" height="10" fill="{c}" fill-opacity="0.5" stroke="{c}"/>"#,
                    x + 6.0,
                    cy - 5.0
                );
            }
            Swatch::Dot(c) => {
                let _ = write!(s, r#"<circle cx="{:.1}" cy="{cy:.1}" r="4" fill="{c}"/>"#, x + 16.0);
            }
        }
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" font-size="{FONT}">{}</text>"#, x + 32.0, cy + 4.0, escape(&fit(text, max_chars)));
    }
}

/// `s` cut to `max` characters, with an ellipsis when cut.
fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The opening tag of a standalone SVG of this size, white background included.
fn open_svg(width: f64, height: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n"
    )
}

/// A chart's opening tag and title.
fn open_chart(title: &str) -> String {
    let mut s = open_svg(WIDTH, HEIGHT);
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="24" font-size="15" font-weight="bold" text-anchor="middle" fill="#222">{}</text>"##,
        WIDTH / 2.0,
        escape(&fit(title, 72))
    );
    s
}

/// A valid chart that says "no data".
fn no_data(title: &str) -> String {
    let mut s = open_chart(title);
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT:.1}" y="{TOP:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#999" stroke-width="1"/>"##,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="16" text-anchor="middle" fill="#666">no data</text>"##,
        (LEFT + RIGHT) / 2.0,
        (TOP + BOTTOM) / 2.0
    );
    s.push_str("</svg>\n");
    s
}

/// Pixel points along a polyline, about every 8 pixels, for legend placement.
fn sample_path(path: &[(f64, f64)], out: &mut Vec<(f64, f64)>) {
    for w in path.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        let n = ((x1 - x0).hypot(y1 - y0) / 8.0).ceil().clamp(1.0, 200.0) as usize;
        for i in 0..n {
            let t = i as f64 / n as f64;
            out.push((x0 + t * (x1 - x0), y0 + t * (y1 - y0)));
        }
    }
    out.extend(path.last().copied());
}

/// Pixel points filling a rectangle, about every 8 pixels, for legend placement.
fn sample_box(x0: f64, y0: f64, x1: f64, y1: f64, out: &mut Vec<(f64, f64)>) {
    let nx = ((x1 - x0).abs() / 8.0).ceil().clamp(1.0, 100.0) as usize;
    let ny = ((y1 - y0).abs() / 8.0).ceil().clamp(1.0, 100.0) as usize;
    for i in 0..=nx {
        for j in 0..=ny {
            out.push((x0 + (x1 - x0) * i as f64 / nx as f64, y0 + (y1 - y0) * j as f64 / ny as f64));
        }
    }
}

/// `points` as an SVG `points` attribute.
fn points_attr(points: &[(f64, f64)]) -> String {
    let mut s = String::new();
    for (i, (x, y)) in points.iter().enumerate() {
        let _ = write!(s, "{}{x:.1},{y:.1}", if i == 0 { "" } else { " " });
    }
    s
}

/// A dashed vertical line at pixel `x` across the plotting area.
fn draw_vline(s: &mut String, x: f64, colour: &str, occupied: &mut Vec<(f64, f64)>) {
    let _ = writeln!(
        s,
        r#"<line x1="{x:.1}" y1="{TOP:.1}" x2="{x:.1}" y2="{BOTTOM:.1}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="6 4"/>"#
    );
    sample_path(&[(x, TOP), (x, BOTTOM)], occupied);
}

/// `label` beside the vertical line at pixel `x`: at the top or the bottom of the plotting
/// area, right or left of the line, wherever it covers the fewest of `occupied` (the data
/// drawn so far); the label's box is added to `occupied`.
fn draw_note(s: &mut String, x: f64, colour: &str, label: &str, occupied: &mut Vec<(f64, f64)>) {
    if label.is_empty() {
        return;
    }
    let label = fit(label, 40);
    let w = label.chars().count() as f64 * CHAR_W;
    let fits_right = x + 4.0 + w <= RIGHT - 2.0;
    let fits_left = x - 4.0 - w >= LEFT + 2.0;
    let mut candidates = Vec::new();
    for baseline in [TOP + 15.0, BOTTOM - 6.0] {
        if fits_right || !fits_left {
            candidates.push((x + 4.0, baseline, "start", x + 4.0));
        }
        if fits_left {
            candidates.push((x - 4.0, baseline, "end", x - 4.0 - w));
        }
    }
    let covered = |&(_, y, _, x0): &(f64, f64, &str, f64)| {
        occupied.iter().filter(|&&(px, py)| px >= x0 - 3.0 && px <= x0 + w + 3.0 && py >= y - 15.0 && py <= y + 6.0).count()
    };
    let Some(&(tx, y, anchor, x0)) = candidates.iter().min_by_key(|c| covered(c)) else { return };
    let _ = writeln!(
        s,
        r#"<text x="{tx:.1}" y="{y:.1}" font-size="{FONT}" text-anchor="{anchor}" fill="{colour}" stroke="white" stroke-width="3" paint-order="stroke">{}</text>"#,
        escape(&label)
    );
    sample_box(x0, y - 12.0, x0 + w, y + 3.0, occupied);
}

impl LineChart<'_> {
    /// The chart as SVG text.
    pub fn render(&self) -> String {
        let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
        let all: Vec<(f64, f64)> = self.series.iter().flat_map(|s| s.points.iter().filter(finite).copied()).collect();
        if all.is_empty() {
            return no_data(self.title);
        }
        let marker = self.marker.as_ref().filter(|m| m.x.is_finite());
        let xs = all.iter().map(|p| p.0).chain(marker.map(|m| m.x));
        let (x_lo, x_hi) = min_max(xs);
        let (y_lo, y_hi) = min_max(all.iter().map(|p| p.1));
        let integer = all.iter().all(|p| p.0.fract() == 0.0 && p.0.abs() < 1e9);
        let mut y = Axis::nice(y_lo, y_hi, 5, false);
        if let Some(bounds) = self.y_bounds {
            y = y.within(bounds, (y_lo, y_hi));
        }
        let frame = Frame { x: Axis::nice(x_lo, x_hi, 8, integer), y, pad_x: 12.0, pad_y: (12.0, 12.0) };

        let mut s = open_chart(self.title);
        frame.draw_axes(&mut s, self.x_label, self.y_label);
        let mut occupied = Vec::new();
        if let Some(m) = marker {
            draw_vline(&mut s, frame.px(m.x), "#555", &mut occupied);
        }
        let mut legend = Vec::new();
        for (i, series) in self.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let pixels: Vec<Option<(f64, f64)>> =
                series.points.iter().map(|p| finite(&p).then(|| (frame.px(p.0), frame.py(p.1)))).collect();
            // Non-finite points break the line.
            for run in pixels.split(Option::is_none) {
                let run: Vec<(f64, f64)> = run.iter().flatten().copied().collect();
                if run.len() > 1 {
                    let _ = writeln!(
                        s,
                        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round" points="{}"/>"#,
                        points_attr(&run)
                    );
                }
                sample_path(&run, &mut occupied);
            }
            let drawn: Vec<(f64, f64)> = series.points.iter().filter(finite).copied().collect();
            if drawn.len() <= 60 {
                for &(x, y) in &drawn {
                    let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#, frame.px(x), frame.py(y));
                }
                s.push('\n');
            }
            if let Some(m) = marker {
                for &(x, y) in drawn.iter().filter(|p| p.0 == m.x) {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="6.5" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                        frame.px(x),
                        frame.py(y)
                    );
                }
            }
            if !drawn.is_empty() {
                legend.push((Swatch::Line(colour, false), series.name.clone()));
            }
        }
        if let Some(m) = marker {
            draw_note(&mut s, frame.px(m.x), "#555", &m.label, &mut occupied);
        }
        draw_legend(&mut s, &legend, &occupied);
        s.push_str("</svg>\n");
        s
    }
}

impl PrCurve<'_> {
    /// The chart as SVG text.
    pub fn render(&self) -> String {
        let default_title;
        let title = if self.title.is_empty() {
            default_title = if self.ap.is_finite() {
                format!("Precision–recall curve (AP {:.4})", self.ap)
            } else {
                "Precision–recall curve".to_string()
            };
            default_title.as_str()
        } else {
            self.title
        };
        let in_unit = |&&(r, p): &&(f64, f64)| r.is_finite() && p.is_finite() && (0.0..=1.0).contains(&r) && (0.0..=1.0).contains(&p);
        let points: Vec<(f64, f64)> = self.points.iter().filter(in_unit).copied().collect();
        if points.is_empty() {
            return no_data(title);
        }
        let frame = Frame { x: Axis::fixed(0.0, 1.0, 0.1), y: Axis::fixed(0.0, 1.0, 0.1), pad_x: 8.0, pad_y: (8.0, 8.0) };
        let mut s = open_chart(title);
        frame.draw_axes(&mut s, "recall", "precision");
        let mut occupied = Vec::new();
        let mut legend = Vec::new();

        // The share of positives: precision when everything is called a duplicate.
        let last = points[points.len() - 1];
        if last.0 == 1.0 {
            let y = frame.py(last.1);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT:.1}" y1="{y:.1}" x2="{RIGHT:.1}" y2="{y:.1}" stroke="#888" stroke-width="1.5" stroke-dasharray="6 4"/>"##
            );
            sample_path(&[(LEFT, y), (RIGHT, y)], &mut occupied);
            legend.push((Swatch::Line("#888", true), format!("all called duplicates ({:.3})", last.1)));
        }

        // A step curve: precision P_k over recall (R_{k-1}, R_k]; its area is the AP.
        let mut steps = vec![(0.0, points[0].1)];
        for (k, &(r, p)) in points.iter().enumerate() {
            steps.push((r, p));
            if let Some(&(_, next)) = points.get(k + 1) {
                steps.push((r, next));
            }
        }
        let pixels: Vec<(f64, f64)> = steps.iter().map(|&(r, p)| (frame.px(r), frame.py(p))).collect();
        let colour = PALETTE[0];
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round" points="{}"/>"#,
            points_attr(&pixels)
        );
        sample_path(&pixels, &mut occupied);
        let name = if self.ap.is_finite() { format!("precision–recall (AP {:.4})", self.ap) } else { "precision–recall".into() };
        legend.insert(0, (Swatch::Line(colour, false), name));

        if let Some((r, p)) = self.operating.filter(|op| in_unit(&op)) {
            let (x, y) = (frame.px(r), frame.py(p));
            let red = PALETTE[1];
            let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="5.5" fill="{red}" stroke="white" stroke-width="1.5"/>"#);
            occupied.push((x, y));
            legend.push((Swatch::Dot(red), format!("stored threshold (P {p:.3}, R {r:.3})")));
        }
        draw_legend(&mut s, &legend, &occupied);
        s.push_str("</svg>\n");
        s
    }
}

impl Histogram<'_> {
    /// The chart as SVG text.
    pub fn render(&self) -> String {
        let title = if self.title.is_empty() { "Scores of duplicates and not duplicates" } else { self.title };
        let x_label = if self.x_label.is_empty() { "score" } else { self.x_label };
        let pos: Vec<f64> = self.positives.iter().copied().filter(|v| v.is_finite()).collect();
        let neg: Vec<f64> = self.negatives.iter().copied().filter(|v| v.is_finite()).collect();
        if pos.is_empty() && neg.is_empty() {
            return no_data(title);
        }
        let threshold = self.threshold.filter(|t| t.is_finite());
        let (mut lo, mut hi) = min_max(pos.iter().chain(&neg).copied());
        if lo == hi {
            let d = if lo == 0.0 { 0.5 } else { lo.abs() * 0.05 };
            lo -= d;
            hi += d;
        }
        let bins = self.bins.clamp(1, 1000);
        let width = (hi - lo) / bins as f64;
        let count = |values: &[f64]| {
            let mut c = vec![0usize; bins];
            for &v in values {
                let i = (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1);
                c[i] += 1;
            }
            c
        };
        let (pc, nc) = (count(&pos), count(&neg));
        let top = pc.iter().chain(&nc).copied().max().unwrap_or(0).max(1) as f64;
        let (x_lo, x_hi) = min_max([lo, hi].into_iter().chain(threshold));
        // Headroom above the tallest bar for the legend.
        let frame = Frame { x: Axis::nice(x_lo, x_hi, 8, false), y: Axis::nice(0.0, top * 1.3, 5, true), pad_x: 0.0, pad_y: (0.0, 0.0) };

        let mut s = open_chart(title);
        frame.draw_axes(&mut s, x_label, "pairs");
        let mut occupied = Vec::new();
        let mut legend = Vec::new();
        let (neg_colour, pos_colour) = (PALETTE[1], PALETTE[0]);
        for (counts, colour, name, n) in [(&nc, neg_colour, "not duplicates", neg.len()), (&pc, pos_colour, "duplicates", pos.len())] {
            if n == 0 {
                continue;
            }
            let _ = write!(s, r#"<g fill="{colour}" fill-opacity="0.45" stroke="{colour}" stroke-width="1">"#);
            for (i, &c) in counts.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let (x0, x1) = (frame.px(lo + width * i as f64), frame.px(lo + width * (i + 1) as f64));
                let y0 = frame.py(c as f64);
                let _ = write!(s, r#"<rect x="{x0:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}"/>"#, x1 - x0, BOTTOM - y0);
                sample_box(x0, y0, x1, BOTTOM, &mut occupied);
            }
            s.push_str("</g>\n");
            legend.push((Swatch::Fill(colour), format!("{name} ({n})")));
        }
        legend.reverse();
        if let Some(t) = threshold {
            draw_vline(&mut s, frame.px(t), "#222", &mut occupied);
            draw_note(&mut s, frame.px(t), "#222", &format!("threshold {}", short(t)), &mut occupied);
            legend.push((Swatch::Line("#222", true), "decision threshold".to_string()));
        }
        draw_legend(&mut s, &legend, &occupied);
        s.push_str("</svg>\n");
        s
    }
}

/// A number with four significant decimals at most, for notes.
fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// The smallest and largest of some finite values.
fn min_max(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values.into_iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `svg` is one `<svg>` element with balanced tags, and that every `&` starts an
    /// entity; returns the element names in order.
    fn check_xml(svg: &str) -> Vec<String> {
        assert!(svg.starts_with("<svg"), "{svg}");
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            let text = &rest[..i];
            assert!(!text.contains('>'), "stray > in {text:?}");
            for (j, _) in text.match_indices('&') {
                let entity = &text[j..];
                assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| entity.starts_with(e)), "bare & in {text:?}");
            }
            let end = rest[i..].find('>').expect("unclosed tag") + i;
            let tag = &rest[i + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else {
                let name: String = tag.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
                assert!(!name.is_empty(), "empty tag");
                // Attribute values must be quoted and hold no raw < or unescaped quote.
                assert_eq!(tag.matches('"').count() % 2, 0, "odd quotes in <{tag}>");
                names.push(name.clone());
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[end + 1..];
            if stack.is_empty() {
                assert!(rest.trim().is_empty(), "content after the root element: {rest:?}");
                break;
            }
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        names
    }

    #[test]
    fn line_chart_is_balanced_svg_with_legend_and_axes() {
        let a = Series::new("training loss", vec![(1.0, 0.9), (2.0, 0.5), (3.0, 0.42)]);
        let b = Series::new("validation loss", vec![(1.0, 1.0), (2.0, 0.7), (3.0, 0.65)]);
        let svg = line_chart("Loss", "epoch", &[a, b], "loss");
        let names = check_xml(&svg);
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 2);
        assert!(svg.contains(">training loss</text>") && svg.contains(">validation loss</text>"));
        assert!(svg.contains(">epoch</text>") && svg.contains(">loss</text>") && svg.contains(">Loss</text>"));
        assert!(svg.contains(r#"width="640" height="400""#));
        // Integer epochs get integer ticks.
        assert!(svg.contains(">1</text>") && svg.contains(">3</text>") && !svg.contains(">1.5</text>"), "{svg}");
    }

    #[test]
    fn a_known_point_maps_to_its_pixel() {
        // x ticks 0..10 by 2 (nice range 0..10), y ticks 0..1 by 0.2. The frame is x 76..620 and
        // y 350..40; the range lies 12 pixels inside it, x 88..608 and y 338..52, so (5, 0.5)
        // lands in the middle.
        let s = Series::new("s", vec![(0.0, 0.0), (5.0, 0.5), (10.0, 1.0)]);
        let svg = line_chart("t", "x", &[s], "y");
        check_xml(&svg);
        assert!(svg.contains(r#"points="88.0,338.0 348.0,195.0 608.0,52.0""#), "{svg}");
        let f = Frame { x: Axis::nice(0.0, 10.0, 8, false), y: Axis::nice(0.0, 1.0, 5, false), pad_x: 0.0, pad_y: (0.0, 0.0) };
        assert_eq!((f.x.lo, f.x.hi, f.y.lo, f.y.hi), (0.0, 10.0, 0.0, 1.0));
        assert_eq!((f.px(2.5), f.py(0.25)), (LEFT + 136.0, BOTTOM - 77.5));
        // The PR chart has the unit square 8 pixels inside the same frame: x 84..612, y 342..48.
        let pr = pr_curve(&[(0.5, 1.0), (1.0, 0.5)], 0.75);
        assert!(pr.contains(r#"points="84.0,48.0 348.0,48.0 348.0,195.0 612.0,195.0""#), "{pr}");
    }

    #[test]
    fn ticks_are_round_numbers() {
        let a = Axis::nice(0.013, 0.871, 5, false);
        assert_eq!(a.ticks, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(a.label(0.6), "0.6");
        let a = Axis::nice(1.0, 17.0, 8, true);
        assert_eq!(a.ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]);
        let a = Axis::nice(3.0, 3.0, 8, true);
        assert_eq!(a.ticks, vec![2.0, 3.0, 4.0]);
        let a = Axis::nice(0.30, 0.34, 5, false);
        assert_eq!(a.label(a.ticks[1]), "0.31");
        let a = Axis::nice(-f64::MAX, f64::MAX, 5, false);
        assert!(a.ticks.len() >= 2 && a.exponent);
        // A metric flat at 1: the axis stops at 1, unless data pass it.
        let a = Axis::nice(1.0, 1.0, 5, false).within((0.0, 1.0), (1.0, 1.0));
        assert_eq!((a.hi, *a.ticks.last().unwrap()), (1.0, 1.0));
        assert!(a.lo < 1.0 && a.ticks.len() >= 2, "{a:?}");
        let a = Axis::nice(0.5, 1.2, 5, false).within((0.0, 1.0), (0.5, 1.2));
        assert!(a.hi >= 1.2, "{a:?}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape(r#"a & b < c > d "e" 'f'"#), "a &amp; b &lt; c &gt; d &quot;e&quot; &apos;f&apos;");
        assert_eq!(escape("bell\u{7}"), "bell\u{FFFD}");
        let s = Series::new("<script>&\"'", vec![(0.0, 1.0), (1.0, 2.0)]);
        let svg = line_chart("Q&A <1>", "x \"quoted\"", &[s], "y's");
        check_xml(&svg);
        assert!(svg.contains("Q&amp;A &lt;1&gt;") && svg.contains("&lt;script&gt;&amp;&quot;&apos;"), "{svg}");
        assert!(!svg.contains("<script>"));
        let svg = Histogram { title: "a<b", x_label: "&", positives: &[1.0], negatives: &[2.0], bins: 4, threshold: Some(1.5) }.render();
        check_xml(&svg);
        assert!(svg.contains("a&lt;b"));
    }

    #[test]
    fn empty_and_non_finite_input_gives_a_valid_no_data_chart() {
        for svg in [
            line_chart("empty", "x", &[], "y"),
            line_chart("nan", "x", &[Series::new("s", vec![(f64::NAN, 1.0), (1.0, f64::INFINITY)])], "y"),
            pr_curve(&[], 0.5),
            pr_curve(&[(f64::NAN, 0.5)], f64::NAN),
            histogram(&[], &[], 10, Some(0.5)),
            histogram(&[f64::NAN], &[f64::NEG_INFINITY], 0, Some(f64::NAN)),
            stack(&[]),
        ] {
            check_xml(&svg);
        }
        assert!(histogram(&[], &[], 10, None).contains(">no data</text>"));
        assert!(line_chart("e", "x", &[], "y").contains(">no data</text>"));
        // NaN in the middle of a series breaks its line; the rest is drawn.
        let s = Series::new("s", vec![(1.0, 1.0), (2.0, 2.0), (3.0, f64::NAN), (4.0, 1.0), (5.0, 3.0)]);
        let svg = line_chart("gap", "x", &[s], "y");
        assert_eq!(check_xml(&svg).iter().filter(|n| *n == "polyline").count(), 2);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // One point, equal values, a single bin: no division by zero.
        for svg in [
            line_chart("one", "x", &[Series::new("s", vec![(1.0, 0.5)])], "y"),
            histogram(&[0.3, 0.3], &[0.3], 1, Some(0.3)),
            histogram(&[0.0], &[], 5, None),
        ] {
            check_xml(&svg);
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }

    #[test]
    fn pr_points_match_average_precision() {
        let scores = [0.9, 0.8, 0.8, 0.7, 0.4, 0.3, 0.2, f64::NAN];
        let labels = [true, false, true, true, false, true, false, true];
        let points = pr_points(&scores, &labels);
        // Ties (0.8) are one step; the NaN score is left out, so 4 positives remain.
        assert_eq!(points.len(), 6);
        assert_eq!(points[0], (0.25, 1.0));
        assert_eq!(points[1], (0.5, 2.0 / 3.0));
        assert_eq!(*points.last().unwrap(), (1.0, 4.0 / 7.0));
        let mut area = 0.0;
        let mut last_recall = 0.0;
        for &(r, p) in &points {
            area += (r - last_recall) * p;
            last_recall = r;
        }
        let finite: Vec<f32> = scores[..7].iter().map(|&s| s as f32).collect();
        let ap = data::metrics::average_precision(&finite, &labels[..7]);
        assert!((area - ap).abs() < 1e-12, "{area} vs {ap}");
        assert!(pr_points(&[0.1, 0.2], &[false, false]).is_empty());
        check_xml(&PrCurve { title: "", points: &points, ap, operating: Some((0.75, 0.6)) }.render());
    }

    #[test]
    fn histogram_counts_every_finite_value_and_draws_the_threshold() {
        let pos = [0.0, 0.5, 1.5, 1.6, f64::NAN];
        let neg = [4.5, 5.5, 8.5, 9.0, 9.0];
        let svg = histogram(&pos, &neg, 9, Some(3.5));
        let names = check_xml(&svg);
        assert!(svg.contains(">duplicates (4)</text>") && svg.contains(">not duplicates (5)</text>"), "{svg}");
        assert!(svg.contains("threshold 3.5000"));
        // Bins of width 1 over [0, 9]: positives in bins 0, 0, 1, 1 and negatives in 4, 5, 8, 8,
        // 8 (the top edge belongs to the last bin). One rect per non-empty bin, besides the
        // background, the frame, the legend's box and its two swatches.
        assert_eq!(names.iter().filter(|n| *n == "rect").count(), 2 + 5 + 3);
    }

    #[test]
    fn stacked_charts_are_one_svg() {
        let a = line_chart("a", "x", &[Series::new("s", vec![(0.0, 1.0), (1.0, 0.0)])], "y");
        let m = Marker { x: 1.0, label: "best epoch 1".into() };
        let series = [Series::new("AP", vec![(0.0, 0.5), (1.0, 0.7)])];
        let b = LineChart { title: "b", x_label: "epoch", y_label: "AP", series: &series, marker: Some(m), y_bounds: Some((0.0, 1.0)) }
            .render();
        let svg = stack(&[a, b]);
        let names = check_xml(&svg);
        assert_eq!(names.iter().filter(|n| *n == "svg").count(), 3);
        assert!(svg.contains(r#"height="800""#) && svg.contains("translate(0,400)") && svg.contains("best epoch 1"));
    }
}
