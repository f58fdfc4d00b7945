//! The frontier of a headroom sweep: over-throttling against 429 rate, one line per strategy,
//! each point a marker labelled with its headroom.

use super::axes::{fmt_num, fmt_pct, frame, mesh};
use super::legend::{Legend, Sample};
use super::placement::{label_spots, Rect, SPOTS_PER_TIER};
use super::style::{StrategyColors, FONT, POINT_LABEL_PX};
use super::{Plot, Series};
use crate::report::{Report, SweepPoint};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The legend line explaining the frontier's point labels.
pub(super) const HEADROOM_NOTE: &str = "h = headroom of the run";
/// The radius of a frontier marker, and the width of each extra ring when strategies coincide.
pub(super) const MARKER_R: i32 = 5;
pub(super) const MARKER_RING: i32 = 3;
/// Frontier points closer than this many pixels (in x and y) share a marker and a label.
pub(super) const SAME_PIXEL: i32 = 4;

/// The over-throttling/429 frontier of a sweep.
pub(super) struct FrontierPlot {
    title: String,
    /// Points per strategy, sorted by headroom.
    series: Vec<Series<SweepPoint>>,
}

pub(super) fn frontier_plot(report: &Report, colors: &StrategyColors) -> Plot {
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

/// Sweep points drawn at the same pixel (within [`SAME_PIXEL`]), from one or several strategies.
pub(super) struct Group {
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

pub(super) fn draw_frontier<DB: DrawingBackend>(
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
