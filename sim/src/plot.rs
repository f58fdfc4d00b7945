//! Plots of a [`Report`] as PNG and SVG: throughput, 429 answers and the client's queue over
//! time, one line per strategy, and the over-throttling/429 frontier of a headroom sweep.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (the `dejavu` crate) through plotters'
//! `ab_glyph` backend, so plotting needs no system fonts, fontconfig or freetype. The same report
//! gives byte-identical files.

use crate::report::{Report, Slot, SweepPoint, Timeline};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// Width of every plot in pixels.
const WIDTH: u32 = 1200;
/// Height of every plot in pixels.
const HEIGHT: u32 = 700;
/// The font family every text uses (registered from the embedded DejaVu Sans).
const FONT: &str = "sans-serif";
/// Font sizes (plotters' units: the glyphs are about 1/1.24 of it in pixels).
const CAPTION_PX: u32 = 28;
const AXIS_DESC_PX: u32 = 20;
const TICK_PX: u32 = 17;
const LEGEND_PX: u32 = 18;
const POINT_LABEL_PX: u32 = 15;
/// The legend box's inner margin in pixels.
const LEGEND_MARGIN: u32 = 10;
/// The width of a legend entry's sample (line, marker, shade) in pixels.
const LEGEND_SAMPLE: u32 = 34;
/// The gap between the plotting area and the legend in pixels.
const LEGEND_GAP: u32 = 15;
/// The legend entry of the spike shading.
const SPIKE_LABEL: &str = "demand spike";
/// The legend line explaining the frontier's point labels.
const HEADROOM_NOTE: &str = "h = headroom of the run";
/// The radius of a frontier marker, and the width of each extra ring when strategies coincide.
const MARKER_R: i32 = 5;
const MARKER_RING: i32 = 3;
/// Frontier points closer than this many pixels (in x and y) share a marker and a label.
const SAME_PIXEL: i32 = 4;
/// Candidate label spots around a frontier point per distance from it.
const SPOTS_PER_TIER: usize = 8;
/// The space between legend rows in pixels.
const LEGEND_ROW_GAP: i32 = 7;
/// The window of the per-minute rolling sums, in seconds.
const WINDOW_S: u64 = 60;

/// Strategy colours, in order of first appearance (Tableau 10: distinct, colour-blind aware).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// The stated provider limit line.
const LIMIT_COLOR: RGBColor = RGBColor(0, 0, 0);
/// The real-capacity line (stated limit minus other clients' share).
const CAPACITY_COLOR: RGBColor = RGBColor(110, 110, 110);
/// The shading of demand spikes.
const SPIKE_COLOR: RGBColor = RGBColor(255, 200, 60);
const GRID_BOLD: RGBColor = RGBColor(205, 205, 205);
const GRID_LIGHT: RGBColor = RGBColor(236, 236, 236);

/// An error drawing or writing a plot.
#[derive(Debug)]
pub struct PlotError(String);

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlotError {}

static FONT_ONCE: Once = Once::new();
static FONT_OK: AtomicBool = AtomicBool::new(false);

/// Registers the embedded DejaVu Sans (regular and bold) as `sans-serif`, once per process.
fn register_fonts() -> Result<(), PlotError> {
    FONT_ONCE.call_once(|| {
        let ok = register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok();
        FONT_OK.store(ok, Ordering::SeqCst);
    });
    if FONT_OK.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(PlotError(
            "plot: the embedded DejaVu Sans font did not load".into(),
        ))
    }
}

/// Writes every plot of `report` into `dir` as PNG and SVG; returns the files written, sorted.
///
/// The plots are `throughput`, `rate_limited` and `queue_depth` (over time, one line per
/// strategy) and, when the report has a sweep, `frontier` (over-throttling against 429 rate).
/// `dir` is created if it does not exist.
///
/// # Errors
/// `dir` cannot be created, a file cannot be written, or plotters fails to draw.
pub fn write_plots(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    register_fonts()?;
    std::fs::create_dir_all(dir)
        .map_err(|e| PlotError(format!("plot: cannot create {}: {e}", dir.display())))?;
    let colors = StrategyColors::new(report);
    let mut plots = vec![
        throughput_plot(report, &colors),
        rate_limited_plot(report, &colors),
        queue_depth_plot(report, &colors),
    ];
    if !report.sweep.is_empty() {
        plots.push(frontier_plot(report, &colors));
    }
    let mut written = Vec::with_capacity(plots.len() * 2);
    for plot in &plots {
        written.extend(write_one(plot, dir)?);
    }
    written.sort();
    Ok(written)
}

/// Draws `plot` into `<dir>/<name>.png` and `<dir>/<name>.svg`.
fn write_one(plot: &Plot, dir: &Path) -> Result<[PathBuf; 2], PlotError> {
    let png = dir.join(format!("{}.png", plot.name()));
    let svg = dir.join(format!("{}.svg", plot.name()));
    let fail = |path: &Path, e: String| PlotError(format!("plot: {}: {e}", path.display()));
    {
        let root = BitMapBackend::new(&png, (WIDTH, HEIGHT)).into_drawing_area();
        plot.draw(&root).map_err(|e| fail(&png, e))?;
        root.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, (WIDTH, HEIGHT)).into_drawing_area();
        plot.draw(&root).map_err(|e| fail(&svg, e))?;
        root.present().map_err(|e| fail(&svg, e.to_string()))?;
    }
    Ok([png, svg])
}

/// A colour per strategy name, fixed by order of first appearance in the report (timelines,
/// then results, then sweep), so a strategy has the same colour in every plot.
struct StrategyColors(Vec<String>);

impl StrategyColors {
    fn new(report: &Report) -> Self {
        let mut names: Vec<String> = Vec::new();
        let all = report
            .timelines
            .iter()
            .map(|t| &t.strategy)
            .chain(report.results.iter().map(|r| &r.strategy))
            .chain(report.sweep.iter().map(|p| &p.strategy));
        for name in all {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        StrategyColors(names)
    }

    fn get(&self, strategy: &str) -> RGBColor {
        let i = self.0.iter().position(|n| n == strategy).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }
}

/// One figure, ready to draw on any backend.
enum Plot {
    Time(TimePlot),
    Frontier(FrontierPlot),
}

impl Plot {
    fn name(&self) -> &'static str {
        match self {
            Plot::Time(p) => p.name,
            Plot::Frontier(_) => "frontier",
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let r = match self {
            Plot::Time(p) => draw_time(p, root),
            Plot::Frontier(p) => draw_frontier(p, root),
        };
        r.map_err(|e| e.to_string())
    }
}

/// One strategy's points and colour.
struct Series<P> {
    name: String,
    color: RGBColor,
    points: Vec<P>,
}

/// A horizontal reference line.
struct HLine {
    label: String,
    y: f64,
    color: RGBColor,
    /// Dash length in pixels (the gap is half of it).
    dash: u32,
}

/// A plot of per-strategy values over time.
struct TimePlot {
    name: &'static str,
    title: String,
    y_desc: &'static str,
    /// `(t, value)` points per strategy.
    series: Vec<Series<(f64, f64)>>,
    hlines: Vec<HLine>,
    /// Demand spikes as `(start, end)` seconds.
    spikes: Vec<(f64, f64)>,
    /// The end of the x axis in seconds.
    t_max: f64,
}

/// The over-throttling/429 frontier of a sweep.
struct FrontierPlot {
    title: String,
    /// Points per strategy, sorted by headroom.
    series: Vec<Series<SweepPoint>>,
}

fn time_plot(
    report: &Report,
    colors: &StrategyColors,
    name: &'static str,
    what: &str,
    y_desc: &'static str,
    values: impl Fn(&[Slot]) -> Vec<u64>,
) -> TimePlot {
    let series: Vec<_> = report
        .timelines
        .iter()
        .map(|tl: &Timeline| {
            let v = values(&tl.slots);
            let points = tl
                .slots
                .iter()
                .zip(v)
                .map(|(s, v)| (s.t as f64, v as f64))
                .collect();
            Series {
                name: tl.strategy.clone(),
                color: colors.get(&tl.strategy),
                points,
            }
        })
        .collect();
    let t_max = report
        .timelines
        .iter()
        .filter_map(|tl| tl.slots.last().map(|s| s.t))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let spikes = report
        .scenario
        .spikes
        .iter()
        .map(|s| {
            let a = s.at.as_secs_f64();
            (a, a + s.length.as_secs_f64())
        })
        .filter(|&(a, _)| a < t_max)
        .map(|(a, b)| (a, b.min(t_max)))
        .collect();
    TimePlot {
        name,
        title: format!("{what} — {}", report.scenario.name),
        y_desc,
        series,
        hlines: Vec::new(),
        spikes,
        t_max,
    }
}

fn throughput_plot(report: &Report, colors: &StrategyColors) -> Plot {
    let mut p = time_plot(
        report,
        colors,
        "throughput",
        "Throughput",
        "successful requests / min",
        |s| rolling_sum(s, |x| x.ok),
    );
    if report.limit_rpm.is_finite() && report.limit_rpm > 0.0 {
        p.hlines.push(HLine {
            label: format!("provider limit ({} RPM)", fmt_num(report.limit_rpm)),
            y: report.limit_rpm,
            color: LIMIT_COLOR,
            dash: 12,
        });
        if report.effective_rpm.is_finite()
            && report.effective_rpm > 0.0
            && report.effective_rpm < report.limit_rpm
        {
            p.hlines.push(HLine {
                label: format!("real capacity ({} RPM)", fmt_num(report.effective_rpm)),
                y: report.effective_rpm,
                color: CAPACITY_COLOR,
                dash: 5,
            });
        }
    }
    Plot::Time(p)
}

fn rate_limited_plot(report: &Report, colors: &StrategyColors) -> Plot {
    Plot::Time(time_plot(
        report,
        colors,
        "rate_limited",
        "429 answers",
        "429 answers / min",
        |s| rolling_sum(s, |x| x.rate_limited),
    ))
}

fn queue_depth_plot(report: &Report, colors: &StrategyColors) -> Plot {
    Plot::Time(time_plot(
        report,
        colors,
        "queue_depth",
        "Requests held by the client",
        "requests held by the client",
        |s| s.iter().map(|x| x.queue_depth).collect(),
    ))
}

fn frontier_plot(report: &Report, colors: &StrategyColors) -> Plot {
    let mut series: Vec<Series<SweepPoint>> = Vec::new();
    for p in &report.sweep {
        match series.iter_mut().find(|s| s.name == p.strategy) {
            Some(s) => s.points.push(p.clone()),
            None => series.push(Series {
                name: p.strategy.clone(),
                color: colors.get(&p.strategy),
                points: vec![p.clone()],
            }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.headroom.total_cmp(&b.headroom));
    }
    Plot::Frontier(FrontierPlot {
        title: format!("Over-throttling vs 429 rate — {}", report.scenario.name),
        series,
    })
}

/// For each slot, the sum of `f` over the slots of the last [`WINDOW_S`] seconds, itself
/// included (fewer seconds at the start of the run).
fn rolling_sum(slots: &[Slot], f: impl Fn(&Slot) -> u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(slots.len());
    let mut start = 0;
    let mut sum = 0u64;
    for (i, s) in slots.iter().enumerate() {
        sum += f(s);
        while start < i && slots[start].t + WINDOW_S <= s.t {
            sum -= f(&slots[start]);
            start += 1;
        }
        out.push(sum);
    }
    out
}

/// A tick label: integers without decimals, others with up to two.
fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{:.0}", v.round())
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A fraction as a percentage tick label.
fn fmt_pct(v: f64) -> String {
    format!("{}%", fmt_num(v * 100.0))
}

/// The top of a y axis: a little above the data, or 1 with no data.
fn y_top(data_max: f64) -> f64 {
    if data_max.is_finite() && data_max > 0.0 {
        data_max * 1.05
    } else {
        1.0
    }
}

/// A chart with `f64` axes.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// What a legend entry shows left of its label.
#[derive(Clone, Copy, Debug)]
enum Sample {
    /// A strategy's line.
    Line(RGBColor),
    /// A line with a marker on it (the frontier's strategies).
    LineDot(RGBColor),
    /// A dashed reference line, with its dash length.
    Dashed(RGBColor, u32),
    /// A shaded span.
    Shade(RGBAColor),
    /// Nothing: a note.
    Note,
}

/// The legend: a white box with a black border right of the plotting area, top-aligned with
/// it, so it never covers data. Drawn by hand because plotters clips its own legend box to the
/// plotting area.
struct Legend<'a> {
    entries: Vec<(&'a str, Sample)>,
}

impl Legend<'_> {
    fn font<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>) -> TextStyle<'static> {
        (FONT, LEGEND_PX).into_font().into_text_style(root)
    }

    /// The box's width in pixels (0 without entries).
    fn width<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<u32, DrawingAreaErrorKind<DB::ErrorType>> {
        let font = Self::font(root);
        let mut widest = 0;
        for (label, _) in &self.entries {
            widest = widest.max(root.estimate_text_size(label, &font)?.0);
        }
        Ok(if self.entries.is_empty() {
            0
        } else {
            widest + LEGEND_SAMPLE + 2 * LEGEND_MARGIN
        })
    }

    /// Draws the box `width` wide with its top left corner at `(x, y)`.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        (x, y): (i32, i32),
        width: u32,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let font = Self::font(root);
        let text_h = root.estimate_text_size("Ag", &font)?.1 as i32;
        let row_h = text_h + LEGEND_ROW_GAP;
        let margin = LEGEND_MARGIN as i32;
        let w = width as i32;
        let h = 2 * margin + self.entries.len() as i32 * row_h - LEGEND_ROW_GAP;
        root.draw(&Rectangle::new([(x, y), (x + w, y + h)], WHITE.filled()))?;
        root.draw(&Rectangle::new(
            [(x, y), (x + w, y + h)],
            BLACK.stroke_width(1),
        ))?;
        for (k, (label, sample)) in self.entries.iter().enumerate() {
            let top = y + margin + k as i32 * row_h;
            let (sx, sy) = (x + margin, top + text_h / 2);
            let line = [(sx, sy), (sx + 24, sy)];
            match *sample {
                Sample::Line(c) => root.draw(&PathElement::new(line, c.stroke_width(2)))?,
                Sample::LineDot(c) => {
                    root.draw(&PathElement::new(line, c.stroke_width(2)))?;
                    root.draw(&Circle::new((sx + 12, sy), 4, c.filled()))?;
                }
                Sample::Dashed(c, dash) => root.draw(&DashedPathElement::new(
                    line,
                    dash.min(8),
                    3,
                    c.stroke_width(2),
                ))?,
                Sample::Shade(c) => root.draw(&Rectangle::new(
                    [(sx, sy - 7), (sx + 24, sy + 7)],
                    c.filled(),
                ))?,
                Sample::Note => {}
            }
            let tx = x + margin + LEGEND_SAMPLE as i32;
            root.draw(&Text::new(*label, (tx, top), font.clone()))?;
        }
        Ok(())
    }

    /// Draws the legend right of `chart`'s plotting area.
    fn draw_beside<'a, DB: DrawingBackend + 'a>(
        &self,
        root: &DrawingArea<DB, Shift>,
        chart: &Chart<'a, DB>,
        width: u32,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        self.draw(root, (xr.end + LEGEND_GAP as i32, yr.start), width)
    }
}

/// The chart frame shared by every plot, with room on the right for a legend `legend_w` wide.
fn frame<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    legend_w: u32,
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let right = if legend_w > 0 {
        legend_w + LEGEND_GAP + 15
    } else {
        30
    };
    ChartBuilder::on(root)
        .caption(title, (FONT, CAPTION_PX).into_font().style(FontStyle::Bold))
        .margin(20)
        .margin_right(right)
        .x_label_area_size(60)
        .y_label_area_size(90)
        .build_cartesian_2d(x, y)
}

/// The mesh shared by every plot.
fn mesh<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    x_desc: &str,
    y_desc: &str,
    fmt: &dyn Fn(&f64) -> String,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_mesh()
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .max_light_lines(4)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style((FONT, AXIS_DESC_PX))
        .label_style((FONT, TICK_PX))
        .x_label_formatter(fmt)
        .y_label_formatter(fmt)
        .draw()
}

fn draw_time<DB: DrawingBackend>(
    p: &TimePlot,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let data_max = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(_, y)| y))
        .chain(p.hlines.iter().map(|h| h.y))
        .fold(0.0, f64::max);
    let y_top = y_top(data_max);
    let shade = SPIKE_COLOR.mix(0.25);
    let mut legend = Legend {
        entries: Vec::new(),
    };
    if !p.spikes.is_empty() {
        legend.entries.push((SPIKE_LABEL, Sample::Shade(shade)));
    }
    for s in &p.series {
        legend
            .entries
            .push((s.name.as_str(), Sample::Line(s.color)));
    }
    for h in &p.hlines {
        legend
            .entries
            .push((h.label.as_str(), Sample::Dashed(h.color, h.dash)));
    }
    let legend_w = legend.width(root)?;
    let mut chart = frame(root, &p.title, 0.0..p.t_max, 0.0..y_top, legend_w)?;
    mesh(&mut chart, "time (s)", p.y_desc, &|v| fmt_num(*v))?;

    chart.draw_series(
        p.spikes
            .iter()
            .map(|&(a, b)| Rectangle::new([(a, 0.0), (b, y_top)], shade.filled())),
    )?;
    for s in &p.series {
        let style = s.color.stroke_width(2);
        chart.draw_series(LineSeries::new(s.points.iter().copied(), style))?;
    }
    // Reference lines last, so they stay visible where a strategy runs along them.
    for h in &p.hlines {
        chart.draw_series(DashedLineSeries::new(
            [(0.0, h.y), (p.t_max, h.y)],
            h.dash,
            h.dash / 2 + 1,
            h.color.stroke_width(2),
        ))?;
    }
    legend.draw_beside(root, &chart, legend_w)
}

/// A rectangle in backend pixels.
#[derive(Clone, Copy, Debug)]
struct Rect {
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
}

impl Rect {
    fn around((x, y): (i32, i32), r: i32) -> Self {
        Rect {
            x0: x - r,
            y0: y - r,
            x1: x + r,
            y1: y + r,
        }
    }

    fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    fn inside(&self, o: &Rect) -> bool {
        self.x0 >= o.x0 && self.x1 <= o.x1 && self.y0 >= o.y0 && self.y1 <= o.y1
    }

    /// Whether the segment from `a` to `b` crosses this rectangle (Liang–Barsky clipping).
    fn cut_by(&self, a: (i32, i32), b: (i32, i32)) -> bool {
        let (ax, ay) = (f64::from(a.0), f64::from(a.1));
        let (dx, dy) = (f64::from(b.0) - ax, f64::from(b.1) - ay);
        let (mut t0, mut t1) = (0.0_f64, 1.0_f64);
        for (p, q) in [
            (-dx, ax - f64::from(self.x0)),
            (dx, f64::from(self.x1) - ax),
            (-dy, ay - f64::from(self.y0)),
            (dy, f64::from(self.y1) - ay),
        ] {
            if p == 0.0 {
                if q < 0.0 {
                    return false;
                }
            } else {
                let t = q / p;
                if p < 0.0 {
                    t0 = t0.max(t);
                } else {
                    t1 = t1.min(t);
                }
                if t0 > t1 {
                    return false;
                }
            }
        }
        true
    }
}

/// Sweep points drawn at the same pixel (within [`SAME_PIXEL`]), from one or several strategies.
struct Group {
    at: (i32, i32),
    /// Indexes into the frontier's series, each once, in series order.
    series: Vec<usize>,
    /// The headrooms of the points, ascending, each once.
    headrooms: Vec<f64>,
}

impl Group {
    /// The radius of the outermost marker: one ring per strategy.
    fn radius(&self) -> i32 {
        MARKER_R + MARKER_RING * (self.series.len() as i32 - 1)
    }
}

fn draw_frontier<DB: DrawingBackend>(
    p: &FrontierPlot,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let finite = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
    let xy = |q: &SweepPoint| (finite(q.over_throttling), finite(q.rate_limited_rate));
    let all = || p.series.iter().flat_map(|s| s.points.iter());
    let x_max = all().map(|q| xy(q).0).fold(0.0, f64::max);
    let y_max = all().map(|q| xy(q).1).fold(0.0, f64::max);
    // Room on the right and at the top for the outermost points' labels.
    let x_top = if x_max > 0.0 { x_max * 1.15 } else { 0.01 };
    let y_top = if y_max > 0.0 { y_max * 1.1 } else { 0.01 };
    let mut legend = Legend {
        entries: p
            .series
            .iter()
            .map(|s| (s.name.as_str(), Sample::LineDot(s.color)))
            .collect(),
    };
    legend.entries.push((HEADROOM_NOTE, Sample::Note));
    let legend_w = legend.width(root)?;
    let mut chart = frame(root, &p.title, 0.0..x_top, 0.0..y_top, legend_w)?;
    mesh(
        &mut chart,
        "over-throttling (% of free provider capacity left unused)",
        "429 rate (% of attempts)",
        &|v| fmt_pct(*v),
    )?;

    // Lines first, markers over them, labels last.
    let mut segments: Vec<((i32, i32), (i32, i32))> = Vec::new();
    for s in &p.series {
        let pts: Vec<(f64, f64)> = s.points.iter().map(xy).collect();
        let px: Vec<(i32, i32)> = pts.iter().map(|c| chart.backend_coord(c)).collect();
        segments.extend(px.windows(2).map(|w| (w[0], w[1])));
        chart.draw_series(LineSeries::new(pts, s.color.stroke_width(2)))?;
    }

    // Points at the same pixel share one marker (a ring per strategy) and one label.
    let mut groups: Vec<Group> = Vec::new();
    for (i, s) in p.series.iter().enumerate() {
        for q in &s.points {
            let at = chart.backend_coord(&xy(q));
            let near = |g: &&mut Group| {
                (g.at.0 - at.0).abs() <= SAME_PIXEL && (g.at.1 - at.1).abs() <= SAME_PIXEL
            };
            let g = match groups.iter_mut().find(near) {
                Some(g) => g,
                None => {
                    groups.push(Group {
                        at,
                        series: Vec::new(),
                        headrooms: Vec::new(),
                    });
                    let last = groups.len() - 1;
                    &mut groups[last]
                }
            };
            if !g.series.contains(&i) {
                g.series.push(i);
            }
            if !g.headrooms.iter().any(|h| h.total_cmp(&q.headroom).is_eq()) {
                g.headrooms.push(q.headroom);
                g.headrooms.sort_by(f64::total_cmp);
            }
        }
    }
    for g in &groups {
        for (rank, &i) in g.series.iter().enumerate() {
            let r = g.radius() - MARKER_RING * rank as i32;
            let color = p.series[i].color;
            root.draw(&Circle::new(g.at, r, color.filled()))?;
            root.draw(&Circle::new(g.at, r, WHITE.stroke_width(1)))?;
        }
    }

    // Labels where they meet no other label, marker or line, inside the plotting area.
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    let area = Rect {
        x0: xr.start,
        y0: yr.start,
        x1: xr.end,
        y1: yr.end,
    };
    let markers: Vec<Rect> = groups
        .iter()
        .map(|g| Rect::around(g.at, g.radius()))
        .collect();
    let font = (FONT, POINT_LABEL_PX).into_font().into_text_style(root);
    let mut placed: Vec<Rect> = Vec::new();
    for g in &groups {
        let text = format!(
            "h={}",
            g.headrooms
                .iter()
                .map(|h| fmt_num(*h))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let (w, h) = root.estimate_text_size(&text, &font)?;
        let (w, h) = (w as i32, h as i32);
        let best = label_spots(g.at, g.radius(), w, h)
            .into_iter()
            .enumerate()
            .min_by_key(|(k, r)| {
                let outside = i32::from(!r.inside(&area));
                let labels = placed.iter().filter(|o| o.overlaps(r)).count() as i32;
                let dots = markers.iter().filter(|m| m.overlaps(r)).count() as i32;
                let lines = segments.iter().filter(|(a, b)| r.cut_by(*a, *b)).count() as i32;
                // Leaving the area or covering text is worst, then markers; a line behind the
                // (white-backed) label costs less than moving it away from its point.
                let tier = (*k / SPOTS_PER_TIER) as i32;
                (
                    outside * 1000 + labels * 100 + dots * 10 + lines * 2 + tier * 3,
                    *k,
                )
            })
            .map(|(_, r)| r);
        if let Some(r) = best {
            root.draw(&Rectangle::new(
                [(r.x0 - 1, r.y0), (r.x1 + 1, r.y1)],
                WHITE.filled(),
            ))?;
            root.draw(&Text::new(text, (r.x0, r.y0), font.clone()))?;
            placed.push(Rect {
                x0: r.x0 - 2,
                y0: r.y0 - 2,
                x1: r.x1 + 2,
                y1: r.y1 + 2,
            });
        }
    }
    legend.draw_beside(root, &chart, legend_w)
}

/// Candidate boxes for a `w`×`h` label of a marker of radius `r` at `(x, y)`, best first:
/// diagonal spots (clear of a falling frontier's line), then sides, then farther out.
fn label_spots((x, y): (i32, i32), r: i32, w: i32, h: i32) -> Vec<Rect> {
    let mut out = Vec::new();
    for far in [3, 16, 32] {
        let d = r + far;
        for (x0, y0) in [
            (x + d - 3, y - d - h + 3),
            (x - d - w + 3, y + d - 3),
            (x + d, y - h / 2),
            (x - d - w, y - h / 2),
            (x - d - w + 3, y - d - h + 3),
            (x + d - 3, y + d - 3),
            (x - w / 2, y - d - h),
            (x - w / 2, y + d),
        ] {
            out.push(Rect {
                x0,
                y0,
                x1: x0 + w,
                y1: y0 + h,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    /// Three strategies over 900 s, plausible curves, and a five-point sweep.
    fn synthetic_report() -> Report {
        let mut scenario = Scenario::built_in("reference").expect("reference scenario");
        scenario.name = "synthetic".into();
        let limit = 50.0;
        let strategies = ["no-throttle", "token-bucket", "tollgate"];
        let timelines = strategies
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let slots = (0..900u64)
                    .map(|t| {
                        let spike = (240..300).contains(&t);
                        // Demand of ~75/min, doubled in the spike; deterministic "noise".
                        let wave = (t * 7 + k as u64 * 13) % 11;
                        let sent = if t < 600 {
                            1 + u64::from(wave < 3) + u64::from(spike)
                        } else {
                            u64::from(wave < 2)
                        };
                        let (ok, rl) = match k {
                            0 => (sent.min(1), sent.saturating_sub(1)),
                            1 => (u64::from(wave < 8), u64::from(wave == 9 && spike)),
                            _ => (u64::from(wave < 9), 0),
                        };
                        let queue = if t < 600 {
                            (t % 300) / (5 + 5 * k as u64)
                        } else {
                            0
                        };
                        Slot {
                            t,
                            sent,
                            ok,
                            rate_limited: rl,
                            overloaded: 0,
                            tokens_ok: ok * 1500,
                            queue_depth: queue,
                        }
                    })
                    .collect();
                Timeline {
                    strategy: (*name).into(),
                    slots,
                }
            })
            .collect();
        let sweep = ["token-bucket", "tollgate"]
            .iter()
            .enumerate()
            .flat_map(|(k, name)| {
                [0.6, 0.7, 0.8, 0.9, 1.0]
                    .into_iter()
                    .map(move |h: f64| SweepPoint {
                        strategy: (*name).into(),
                        headroom: h,
                        over_throttling: (1.0 - h) * (0.9 - 0.3 * k as f64) + 0.02,
                        rate_limited_rate: (h - 0.55).max(0.0) * (0.3 - 0.15 * k as f64),
                        utilization: h,
                    })
            })
            .collect();
        Report {
            scenario,
            results: Vec::new(),
            timelines,
            sweep,
            limit_rpm: limit,
            effective_rpm: 40.0,
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tollgate-plot-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn writes_every_plot_as_png_and_svg() {
        let dir = temp_dir("all");
        let files = write_plots(&synthetic_report(), &dir).expect("plots");
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "frontier.png",
                "frontier.svg",
                "queue_depth.png",
                "queue_depth.svg",
                "rate_limited.png",
                "rate_limited.svg",
                "throughput.png",
                "throughput.svg",
            ]
        );
        for f in &files {
            let bytes = std::fs::read(f).expect("read");
            assert!(bytes.len() > 1000, "{} is too small", f.display());
            if f.extension().is_some_and(|e| e == "png") {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", f.display());
            }
        }
        let svg = std::fs::read_to_string(dir.join("throughput.svg")).expect("svg");
        assert!(svg.contains("Throughput — synthetic"));
        assert!(svg.contains("provider limit"));
        assert!(svg.contains("real capacity"));
        assert!(svg.contains("tollgate"));
        let svg = std::fs::read_to_string(dir.join("frontier.svg")).expect("svg");
        assert!(svg.contains("Over-throttling vs 429 rate"));
        assert!(svg.contains("h=0.9"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn same_report_gives_identical_bytes() {
        let report = synthetic_report();
        let (a, b) = (temp_dir("det-a"), temp_dir("det-b"));
        let fa = write_plots(&report, &a).expect("plots a");
        let fb = write_plots(&report, &b).expect("plots b");
        assert_eq!(fa.len(), fb.len());
        for (x, y) in fa.iter().zip(&fb) {
            assert_eq!(x.file_name(), y.file_name());
            let (bx, by) = (std::fs::read(x).expect("a"), std::fs::read(y).expect("b"));
            assert!(bx == by, "{} differs between runs", x.display());
        }
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }

    #[test]
    fn no_sweep_no_frontier_and_empty_report_draws() {
        let mut report = synthetic_report();
        report.sweep.clear();
        let dir = temp_dir("nosweep");
        let files = write_plots(&report, &dir).expect("plots");
        assert_eq!(files.len(), 6);
        assert!(!dir.join("frontier.png").exists());
        report.timelines.clear();
        report.limit_rpm = 0.0;
        let files = write_plots(&report, &dir).expect("empty plots");
        assert_eq!(files.len(), 6);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_an_error() {
        let file = temp_dir("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let err = write_plots(&synthetic_report(), &file.join("sub")).expect_err("must fail");
        assert!(err.to_string().contains("cannot create"), "{err}");
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn coincident_sweep_points_share_one_label() {
        let mut report = synthetic_report();
        let point = |strategy: &str, headroom: f64| SweepPoint {
            strategy: strategy.into(),
            headroom,
            over_throttling: 0.0,
            rate_limited_rate: 0.0,
            utilization: 1.0,
        };
        report.sweep = vec![
            point("a", 0.8),
            point("a", 0.9),
            point("b", 0.9),
            point("b", 1.0),
        ];
        let dir = temp_dir("coincident");
        write_plots(&report, &dir).expect("plots");
        let svg = std::fs::read_to_string(dir.join("frontier.svg")).expect("svg");
        assert_eq!(svg.matches("h=0.8, 0.9, 1").count(), 1, "{svg}");
        assert!(!svg.contains(">\nh=0.9\n<"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn segments_cut_rectangles() {
        let r = Rect {
            x0: 10,
            y0: 10,
            x1: 20,
            y1: 20,
        };
        assert!(r.cut_by((0, 0), (30, 30)));
        assert!(r.cut_by((15, 0), (15, 12)));
        assert!(!r.cut_by((0, 0), (30, 5)));
        assert!(!r.cut_by((0, 30), (5, 0)));
        assert!(r.overlaps(&Rect::around((20, 20), 2)));
        assert!(!r.overlaps(&Rect::around((30, 30), 2)));
    }

    #[test]
    fn rolling_sum_covers_the_last_minute() {
        let slots: Vec<Slot> = (0..130)
            .map(|t| Slot {
                t,
                ok: 1,
                ..Slot::default()
            })
            .collect();
        let r = rolling_sum(&slots, |s| s.ok);
        assert_eq!(r[0], 1);
        assert_eq!(r[59], 60);
        assert_eq!(r[60], 60);
        assert_eq!(r[129], 60);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(fmt_num(50.0), "50");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_pct(0.125), "12.5%");
    }
}
