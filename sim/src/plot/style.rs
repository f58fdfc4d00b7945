//! The look every plot shares: the embedded font and its sizes, and a colour per strategy.

use super::PlotError;
use crate::report::Report;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// The font family every text uses (registered from the embedded DejaVu Sans).
pub(super) const FONT: &str = "sans-serif";
/// Font sizes (plotters' units: the glyphs are about 1/1.24 of it in pixels).
pub(super) const CAPTION_PX: u32 = 28;
pub(super) const AXIS_DESC_PX: u32 = 20;
pub(super) const TICK_PX: u32 = 17;
pub(super) const LEGEND_PX: u32 = 18;
pub(super) const POINT_LABEL_PX: u32 = 15;

/// Strategy colours, in order of first appearance (Tableau 10: distinct, colour-blind aware).
pub(super) const PALETTE: [RGBColor; 10] = [
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
pub(super) const GRID_BOLD: RGBColor = RGBColor(205, 205, 205);
pub(super) const GRID_LIGHT: RGBColor = RGBColor(236, 236, 236);

static FONT_ONCE: Once = Once::new();
static FONT_OK: AtomicBool = AtomicBool::new(false);

/// Registers the embedded DejaVu Sans (regular and bold) as `sans-serif`, once per process.
pub(super) fn register_fonts() -> Result<(), PlotError> {
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

/// A colour per strategy name, fixed by order of first appearance in the report (timelines,
/// then results, then sweep), so a strategy has the same colour in every plot.
pub(super) struct StrategyColors(Vec<String>);

impl StrategyColors {
    pub(super) fn new(report: &Report) -> Self {
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

    pub(super) fn get(&self, strategy: &str) -> RGBColor {
        let i = self.0.iter().position(|n| n == strategy).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }
}
