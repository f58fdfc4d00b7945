//! The plots over time: throughput, 429 answers and the client's queue, one line per strategy,
//! with the provider's limit, its real capacity and the demand spikes behind them.

use super::axes::{fmt_num, frame, mesh, y_top};
use super::legend::{Legend, Sample};
use super::style::StrategyColors;
use super::{Plot, Series};
use crate::report::{Report, Slot, Timeline};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The legend entry of the spike shading.
pub(super) const SPIKE_LABEL: &str = "demand spike";
/// The window of the per-minute rolling sums, in seconds.
pub(super) const WINDOW_S: u64 = 60;
pub(super) const LIMIT_COLOR: RGBColor = RGBColor(0, 0, 0);
/// The real-capacity line (stated limit minus other clients' share).
pub(super) const CAPACITY_COLOR: RGBColor = RGBColor(110, 110, 110);
/// The shading of demand spikes.
pub(super) const SPIKE_COLOR: RGBColor = RGBColor(255, 200, 60);

/// A horizontal reference line.
pub(super) struct HLine {
    label: String,
    y: f64,
    color: RGBColor,
    /// Dash length in pixels (the gap is half of it).
    dash: u32,
}

/// A plot of per-strategy values over time.
pub(super) struct TimePlot {
    pub(super) name: &'static str,
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

pub(super) fn time_plot(
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

pub(super) fn throughput_plot(report: &Report, colors: &StrategyColors) -> Plot {
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

pub(super) fn rate_limited_plot(report: &Report, colors: &StrategyColors) -> Plot {
    Plot::Time(time_plot(
        report,
        colors,
        "rate_limited",
        "429 answers",
        "429 answers / min",
        |s| rolling_sum(s, |x| x.rate_limited),
    ))
}

pub(super) fn queue_depth_plot(report: &Report, colors: &StrategyColors) -> Plot {
    Plot::Time(time_plot(
        report,
        colors,
        "queue_depth",
        "Requests held by the client",
        "requests held by the client",
        |s| s.iter().map(|x| x.queue_depth).collect(),
    ))
}

/// For each slot, the sum of `f` over the slots of the last [`WINDOW_S`] seconds, itself
/// included (fewer seconds at the start of the run).
pub(super) fn rolling_sum(slots: &[Slot], f: impl Fn(&Slot) -> u64) -> Vec<u64> {
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

pub(super) fn draw_time<DB: DrawingBackend>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
