//! Plots of a `Report` as PNG and SVG: throughput, 429 answers and the client's queue over
//! time, one line per strategy, and the over-throttling/429 frontier of a headroom sweep.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (the `dejavu` crate) through plotters'
//! `ab_glyph` backend, so plotting needs no system fonts, fontconfig or freetype. The same report
//! gives byte-identical files.
//!
//! One job per file: `style` holds the fonts and colours, `axes` the frame and tick labels
//! every chart shares, `legend` the legend box, `time` the plots over time, `frontier` the
//! sweep's frontier and `placement` where the frontier's point labels go.

mod axes;
mod frontier;
mod legend;
mod placement;
mod style;
mod time;

use crate::report::Report;
use frontier::{draw_frontier, frontier_plot, FrontierPlot};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};
use style::{register_fonts, StrategyColors};
use time::{draw_time, queue_depth_plot, rate_limited_plot, throughput_plot, TimePlot};

/// Width of every plot in pixels.
const WIDTH: u32 = 1200;
/// Height of every plot in pixels.
const HEIGHT: u32 = 700;

/// An error drawing or writing a plot.
#[derive(Debug)]
pub struct PlotError(String);

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlotError {}

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

#[cfg(test)]
mod tests;
