//! The chart frame, mesh and tick labels every plot shares.

use super::legend::LEGEND_GAP;
use super::style::{AXIS_DESC_PX, CAPTION_PX, FONT, GRID_BOLD, GRID_LIGHT, TICK_PX};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// A tick label: integers without decimals, others with up to two.
pub(super) fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{:.0}", v.round())
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A fraction as a percentage tick label.
pub(super) fn fmt_pct(v: f64) -> String {
    format!("{}%", fmt_num(v * 100.0))
}

/// The top of a y axis: a little above the data, or 1 with no data.
pub(super) fn y_top(data_max: f64) -> f64 {
    if data_max.is_finite() && data_max > 0.0 {
        data_max * 1.05
    } else {
        1.0
    }
}

/// A chart with `f64` axes.
pub(super) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The chart frame shared by every plot, with room on the right for a legend `legend_w` wide.
pub(super) fn frame<'a, DB: DrawingBackend>(
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
pub(super) fn mesh<'a, DB: DrawingBackend + 'a>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels() {
        assert_eq!(fmt_num(50.0), "50");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_pct(0.125), "12.5%");
    }
}
