//! The legend: a box right of the plotting area, one entry per strategy or reference line.

use super::axes::Chart;
use super::style::{FONT, LEGEND_PX};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// The legend box's inner margin in pixels.
pub(super) const LEGEND_MARGIN: u32 = 10;
/// The width of a legend entry's sample (line, marker, shade) in pixels.
pub(super) const LEGEND_SAMPLE: u32 = 34;
/// The gap between the plotting area and the legend in pixels.
pub(super) const LEGEND_GAP: u32 = 15;
/// The space between legend rows in pixels.
pub(super) const LEGEND_ROW_GAP: i32 = 7;

/// What a legend entry shows left of its label.
#[derive(Clone, Copy, Debug)]
pub(super) enum Sample {
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
pub(super) struct Legend<'a> {
    pub(super) entries: Vec<(&'a str, Sample)>,
}

impl Legend<'_> {
    fn font<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>) -> TextStyle<'static> {
        (FONT, LEGEND_PX).into_font().into_text_style(root)
    }

    /// The box's width in pixels (0 without entries).
    pub(super) fn width<DB: DrawingBackend>(
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
    pub(super) fn draw_beside<'a, DB: DrawingBackend + 'a>(
        &self,
        root: &DrawingArea<DB, Shift>,
        chart: &Chart<'a, DB>,
        width: u32,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        self.draw(root, (xr.end + LEGEND_GAP as i32, yr.start), width)
    }
}
