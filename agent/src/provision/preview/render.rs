//! Draws a dashboard as SVG: the 24-column grid with every widget at its place, and each
//! widget as its type and `view` say. Pure: the widgets and what was fetched go in, markup
//! comes out, the same bytes for the same input.

use std::fmt::Write;

use super::data::{AlarmState, DashboardData, Fetched, LogLines, Series, Window};
use super::markdown;
use super::model::{Axis, GRID_COLUMNS, Kind, MetricWidget, View, Widget, alarm_name};
use super::svg::{Anchor, Font, Svg, escape, fit, num, text_width, wrap};

/// Space around the grid.
pub const MARGIN: f64 = 8.0;
/// The band above the grid with the dashboard's name.
pub const HEADER: f64 = 40.0;
/// Pixels per grid column.
pub const COLUMN: f64 = 50.0;
/// Pixels per grid row.
pub const ROW: f64 = 36.0;
/// Space between a widget's box and its grid cell's edge.
pub const GAP: f64 = 4.0;
/// Width of one drawn dashboard.
pub const WIDTH: f64 = 2.0 * MARGIN + GRID_COLUMNS as f64 * COLUMN;

const TEXT: &str = "#16191f";
const MUTED: &str = "#5f6b7a";
const GRID_LINE: &str = "#e9ebed";
const AXIS: &str = "#8d99a8";
const WARN: &str = "#d13212";
/// A stacked series: (time, base, top) per point.
type Band = Vec<(i64, f64, f64)>;

/// Series with at most this many points get a dot on each.
const MAX_MARKED_POINTS: usize = 12;
/// CloudWatch's series colours, in order.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// A widget's box on the page, in pixels: (left, top, width, height).
pub fn widget_box(x: i64, y: i64, width: i64, height: i64) -> (f64, f64, f64, f64) {
    (
        MARGIN + x as f64 * COLUMN + GAP,
        HEADER + y as f64 * ROW + GAP,
        width as f64 * COLUMN - 2.0 * GAP,
        height as f64 * ROW - 2.0 * GAP,
    )
}

/// The border colour of the `index`th widget: a light grey, distinct per widget, so that a
/// screenshot shows where each box landed.
pub fn border_color(index: usize) -> [u8; 3] {
    [
        0xc0 + (index % 48) as u8,
        0xc6,
        0xcc + ((index / 48) % 32) as u8,
    ]
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The height of a drawn dashboard.
pub(crate) fn height(widgets: &[Widget]) -> f64 {
    let rows = widgets.iter().map(|w| w.y + w.height).max().unwrap_or(1);
    HEADER + rows as f64 * ROW + MARGIN
}

/// Draws one dashboard with its top-left corner at (`ox`, `oy`); `id` keeps the clip
/// paths of two dashboards on one page apart.
pub(crate) fn dashboard(
    svg: &mut Svg,
    (ox, oy): (f64, f64),
    id: &str,
    (title, subtitle): (&str, &str),
    widgets: &[Widget],
    data: &DashboardData,
) {
    svg.text(
        ox + MARGIN + GAP,
        oy + 26.0,
        title,
        Font::sans(17.0, TEXT).bold(),
        Anchor::Start,
    );
    let title_width = text_width(title, 17.0, false) * 1.1;
    svg.text(
        ox + MARGIN + GAP + title_width + 16.0,
        oy + 26.0,
        &fit(subtitle, 12.0, WIDTH - title_width - 40.0, false),
        Font::sans(12.0, MUTED),
        Anchor::Start,
    );
    for (index, widget) in widgets.iter().enumerate() {
        let (x, y, w, h) = widget_box(widget.x, widget.y, widget.width, widget.height);
        let (x, y) = (ox + x, oy + y);
        svg.rect(x, y, w, h, &hex(border_color(index)));
        svg.rect(x + 1.0, y + 1.0, w - 2.0, h - 2.0, "#ffffff");
        let fetched = data.widgets.get(index).unwrap_or(&Fetched::Offline);
        let clip = format!("{id}w{index}");
        svg.clipped(&clip, x + 1.0, y + 1.0, w - 2.0, h - 2.0);
        let mut top = y + 8.0;
        if !widget.title.is_empty() {
            svg.text(
                x + 10.0,
                y + 20.0,
                &fit(&widget.title, 13.0, w - 20.0, false),
                Font::sans(13.0, TEXT).bold(),
                Anchor::Start,
            );
            top = y + 30.0;
        }
        let area = Area {
            x: x + 10.0,
            y: top,
            w: w - 20.0,
            h: y + h - 8.0 - top,
        };
        match &widget.kind {
            Kind::Metric(metric) => {
                draw_metric(svg, &clip, area, metric, fetched, data.window);
            }
            Kind::Text { markdown } => {
                markdown::draw(svg, markdown, area.x, area.y, area.w, area.h)
            }
            Kind::Alarms { arns } => draw_alarms(svg, area, arns, fetched),
            Kind::Log { query, .. } => draw_log(svg, area, query, fetched),
            Kind::Other { kind } => svg.text(
                area.x,
                area.y + 14.0,
                &format!("{kind} widget: drawn by CloudWatch only"),
                Font::sans(12.0, MUTED),
                Anchor::Start,
            ),
        }
        svg.end_group();
    }
}

/// A rectangle to draw in.
#[derive(Debug, Clone, Copy)]
struct Area {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

/// A value as a dashboard shows it: 1.2k, 3.4M, 0.25.
pub(crate) fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    let (scaled, suffix) = if magnitude >= 1e9 {
        (value / 1e9, "B")
    } else if magnitude >= 1e6 {
        (value / 1e6, "M")
    } else if magnitude >= 1e4 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    if suffix.is_empty() {
        num(scaled)
    } else {
        format!("{}{suffix}", num((scaled * 10.0).round() / 10.0))
    }
}

/// A tick step of 1, 2 or 5 × 10^k near `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw.is_nan() || raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    let fraction = raw / power;
    let nice = if fraction < 1.5 {
        1.0
    } else if fraction < 3.0 {
        2.0
    } else if fraction < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// The range and ticks of one y axis.
#[derive(Debug, Clone)]
struct Scale {
    low: f64,
    high: f64,
    ticks: Vec<f64>,
}

impl Scale {
    fn new(values: impl Iterator<Item = f64>, axis: &Axis) -> Self {
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for value in values.filter(|v| v.is_finite()) {
            low = low.min(value);
            high = high.max(value);
        }
        if !low.is_finite() {
            (low, high) = (0.0, 1.0);
        }
        low = axis.min.unwrap_or(low.min(0.0));
        high = axis.max.unwrap_or(high);
        if high <= low {
            high = low + 1.0;
        }
        let step = nice_step((high - low) / 4.0);
        if axis.min.is_none() {
            low = (low / step).floor() * step;
        }
        if axis.max.is_none() {
            high = (high / step).ceil() * step;
        }
        let mut ticks = Vec::new();
        let mut tick = (low / step).ceil() * step;
        while tick <= high + step * 1e-9 && ticks.len() < 12 {
            ticks.push(tick);
            tick += step;
        }
        Self { low, high, ticks }
    }

    fn y(&self, value: f64, top: f64, height: f64) -> f64 {
        top + height - (value - self.low) / (self.high - self.low) * height
    }
}

fn color_of(index: usize, own: Option<&String>) -> String {
    own.cloned()
        .unwrap_or_else(|| PALETTE[index % PALETTE.len()].to_owned())
}

/// What a metric widget draws: the fetched series, or (offline) one empty entry per
/// visible row so that the legend still says what it would show.
fn legend_entries(metric: &MetricWidget, fetched: &Fetched) -> Vec<(String, String)> {
    match fetched {
        Fetched::Metric { series, .. } => series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.label.clone(), color_of(i, s.color.as_ref())))
            .collect(),
        _ => metric
            .rows
            .iter()
            .filter(|r| r.visible)
            .enumerate()
            .map(|(i, r)| (r.default_label(), color_of(i, r.color.as_ref())))
            .collect(),
    }
}

/// Lays the legend out in lines; returns its height.
fn legend(svg: Option<&mut Svg>, entries: &[(String, String)], area: Area) -> f64 {
    if entries.is_empty() {
        return 0.0;
    }
    let mut lines: Vec<Vec<(f64, &str, &str)>> = vec![Vec::new()];
    let mut used = 0.0;
    for (label, color) in entries {
        let label = label.as_str();
        let w = (16.0 + text_width(label, 11.0, false) + 14.0).min(area.w);
        if used + w > area.w && used > 0.0 {
            lines.push(Vec::new());
            used = 0.0;
        }
        lines.last_mut().expect("a line").push((used, label, color));
        used += w;
    }
    // At most three lines; the rest is summarised.
    let shown = lines.len().min(3);
    let height = shown as f64 * 16.0;
    if let Some(svg) = svg {
        let top = area.y + area.h - height;
        for (l, line) in lines.iter().take(shown).enumerate() {
            let y = top + l as f64 * 16.0;
            for (offset, label, color) in line {
                svg.rect(area.x + offset, y + 3.0, 10.0, 10.0, color);
                svg.text(
                    area.x + offset + 14.0,
                    y + 12.0,
                    &fit(label, 11.0, area.w - offset - 16.0, false),
                    Font::sans(11.0, TEXT),
                    Anchor::Start,
                );
            }
        }
        if lines.len() > shown {
            let hidden: usize = lines[shown..].iter().map(Vec::len).sum();
            svg.text(
                area.x + area.w,
                top - 2.0,
                &format!("+{hidden} more"),
                Font::sans(10.0, MUTED),
                Anchor::End,
            );
        }
    }
    height
}

fn draw_metric(
    svg: &mut Svg,
    id: &str,
    area: Area,
    metric: &MetricWidget,
    fetched: &Fetched,
    window: Option<Window>,
) {
    let entries = if metric.legend {
        legend_entries(metric, fetched)
    } else {
        Vec::new()
    };
    let legend_height = legend(None, &entries, area);
    legend(Some(svg), &entries, area);
    let body = Area {
        h: area.h - legend_height - if legend_height > 0.0 { 4.0 } else { 0.0 },
        ..area
    };
    let (series, mut notes): (&[Series], Vec<String>) = match fetched {
        Fetched::Metric { series, notes } => (series, notes.clone()),
        Fetched::Failed(message) => (&[], vec![message.clone()]),
        _ => (&[], vec!["offline: no data fetched".to_owned()]),
    };
    if matches!(fetched, Fetched::Metric { .. }) && series.iter().all(|s| s.points.is_empty()) {
        notes.insert(0, "no data points in this time range".to_owned());
    }
    match metric.view {
        View::TimeSeries => time_series(svg, id, body, metric, series, window, &notes),
        View::SingleValue => single_values(svg, body, metric, series, &entries, fetched),
        View::Gauge => gauge(svg, body, metric, series),
        View::Bar => bars(svg, body, series),
        View::Pie => pie(svg, body, series),
        View::Table => table(svg, body, series),
    }
    if metric.view != View::TimeSeries {
        draw_notes(svg, body, &notes);
    }
}

fn draw_notes(svg: &mut Svg, area: Area, notes: &[String]) {
    let mut y = area.y + area.h - 4.0 - (notes.len().saturating_sub(1)) as f64 * 13.0;
    for note in notes {
        svg.text(
            area.x + area.w / 2.0,
            y,
            &fit(note, 10.5, area.w, false),
            Font::sans(10.5, MUTED),
            Anchor::Middle,
        );
        y += 13.0;
    }
}

/// Tick interval for a time axis `span` seconds long with room for `slots` labels.
fn time_step(span: i64, slots: f64) -> i64 {
    const STEPS: [i64; 12] = [
        60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604_800,
    ];
    STEPS
        .into_iter()
        .find(|step| (span as f64 / *step as f64) <= slots.max(1.0))
        .unwrap_or(604_800)
}

/// `HH:MM` of a Unix time (UTC).
fn clock(t: i64) -> String {
    let seconds = t.rem_euclid(86_400);
    format!("{:02}:{:02}", seconds / 3600, seconds % 3600 / 60)
}

fn last_value(series: &Series) -> Option<f64> {
    series.points.last().map(|(_, v)| *v)
}

fn time_series(
    svg: &mut Svg,
    id: &str,
    area: Area,
    metric: &MetricWidget,
    series: &[Series],
    window: Option<Window>,
    notes: &[String],
) {
    let has_right = series.iter().any(|s| s.right)
        || metric.rows.iter().any(|r| r.right && r.visible)
        || metric.right.min.is_some()
        || metric.right.max.is_some();
    let left_width = 44.0;
    let right_width = if has_right { 44.0 } else { 6.0 };
    let plot = Area {
        x: area.x + left_width,
        y: area.y + 6.0,
        w: area.w - left_width - right_width,
        h: area.h - 6.0 - 16.0,
    };
    if plot.h < 16.0 || plot.w < 16.0 {
        return;
    }
    // Stacking sums the series of one side at each timestamp.
    let stacked = |right: bool| -> Vec<(usize, Band)> {
        let mut totals: std::collections::BTreeMap<i64, f64> = Default::default();
        series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.right == right)
            .map(|(i, s)| {
                let points = s
                    .points
                    .iter()
                    .map(|(t, v)| {
                        let base = totals.get(t).copied().unwrap_or(0.0);
                        totals.insert(*t, base + v);
                        (*t, base, base + v)
                    })
                    .collect();
                (i, points)
            })
            .collect()
    };
    let side_values = |right: bool| -> Vec<f64> {
        let mut values: Vec<f64> = if metric.stacked {
            stacked(right)
                .into_iter()
                .flat_map(|(_, points)| points.into_iter().map(|(_, _, top)| top))
                .collect()
        } else {
            series
                .iter()
                .filter(|s| s.right == right)
                .flat_map(|s| s.points.iter().map(|(_, v)| *v))
                .collect()
        };
        values.extend(
            metric
                .annotations
                .iter()
                .filter(|a| a.right == right)
                .map(|a| a.value),
        );
        values
    };
    let left = Scale::new(side_values(false).into_iter(), &metric.left);
    let right = Scale::new(side_values(true).into_iter(), &metric.right);

    for tick in &left.ticks {
        let y = left.y(*tick, plot.y, plot.h).round() + 0.5;
        svg.line((plot.x, y), (plot.x + plot.w, y), GRID_LINE, false);
        svg.text(
            plot.x - 4.0,
            y + 3.5,
            &format_value(*tick),
            Font::sans(10.0, MUTED),
            Anchor::End,
        );
    }
    if has_right {
        for tick in &right.ticks {
            let y = right.y(*tick, plot.y, plot.h).round() + 0.5;
            svg.text(
                plot.x + plot.w + 4.0,
                y + 3.5,
                &format_value(*tick),
                Font::sans(10.0, MUTED),
                Anchor::Start,
            );
        }
    }
    for (axis, x, rotation) in [
        (&metric.left, area.x + 9.0, -90),
        (&metric.right, area.x + area.w - 3.0, 90),
    ] {
        if let Some(label) = &axis.label {
            let y = plot.y + plot.h / 2.0;
            let _ = writeln!(
                svg_raw(svg),
                "<text x=\"{x}\" y=\"{y}\" transform=\"rotate({rotation} {x} {y})\" \
                 text-anchor=\"middle\" font-family=\"{}\" font-size=\"10\" fill=\"{MUTED}\">{}</text>",
                super::svg::SANS,
                escape(label),
                x = num(x),
                y = num(y),
            );
        }
    }
    let bottom = plot.y + plot.h;
    svg.line(
        (plot.x, bottom.round() + 0.5),
        (plot.x + plot.w, bottom.round() + 0.5),
        AXIS,
        false,
    );
    let Some(window) = window else {
        draw_notes(
            svg,
            Area {
                h: plot.h / 2.0 + 12.0,
                ..plot
            },
            notes,
        );
        return;
    };
    let span = (window.end - window.start).max(1);
    let x_of = |t: i64| plot.x + (t - window.start) as f64 / span as f64 * plot.w;
    let step = time_step(span, plot.w / 70.0);
    let mut tick = (window.start + step - 1).div_euclid(step) * step;
    while tick <= window.end {
        let x = x_of(tick);
        svg.line((x, bottom), (x, bottom + 3.0), AXIS, false);
        svg.text(
            x,
            bottom + 14.0,
            &clock(tick),
            Font::sans(10.0, MUTED),
            Anchor::Middle,
        );
        tick += step;
    }
    svg.clipped(
        &format!("{id}p"),
        plot.x,
        plot.y - 1.0,
        plot.w,
        plot.h + 2.0,
    );
    if metric.stacked {
        for right_side in [false, true] {
            let scale = if right_side { &right } else { &left };
            for (i, points) in stacked(right_side) {
                if points.is_empty() {
                    continue;
                }
                let color = color_of(i, series[i].color.as_ref());
                let top: Vec<(f64, f64)> = points
                    .iter()
                    .map(|(t, _, v)| (x_of(*t), scale.y(*v, plot.y, plot.h)))
                    .collect();
                let mut shape = top.clone();
                shape.extend(
                    points
                        .iter()
                        .rev()
                        .map(|(t, base, _)| (x_of(*t), scale.y(*base, plot.y, plot.h))),
                );
                svg.polygon(&shape, &color, 0.45);
                svg.polyline(&top, &color, 1.5);
                markers(svg, &top, &color);
            }
        }
    } else {
        for (i, s) in series.iter().enumerate() {
            let scale = if s.right { &right } else { &left };
            let color = color_of(i, s.color.as_ref());
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|(t, v)| (x_of(*t), scale.y(*v, plot.y, plot.h)))
                .collect();
            if points.len() > 1 {
                svg.polyline(&points, &color, 1.5);
            }
            markers(svg, &points, &color);
        }
    }
    for annotation in &metric.annotations {
        let scale = if annotation.right { &right } else { &left };
        let y = scale.y(annotation.value, plot.y, plot.h);
        let color = annotation.color.as_deref().unwrap_or(WARN);
        svg.line((plot.x, y), (plot.x + plot.w, y), color, true);
        if !annotation.label.is_empty() {
            let label = format!("{} ({})", annotation.label, format_value(annotation.value));
            svg.text(
                plot.x + plot.w - 4.0,
                y - 3.0,
                &label,
                Font::sans(10.0, WARN),
                Anchor::End,
            );
        }
    }
    svg.end_group();
    if !notes.is_empty() {
        draw_notes(
            svg,
            Area {
                h: plot.h / 2.0 + 12.0,
                ..plot
            },
            notes,
        );
    }
}

/// Dots on the points of a sparse series (a few minutes of data in a wide window would
/// otherwise be a dot-sized line, or nothing when stacked).
fn markers(svg: &mut Svg, points: &[(f64, f64)], color: &str) {
    if points.len() <= MAX_MARKED_POINTS {
        for point in points {
            svg.circle(*point, 3.0, color);
        }
    }
}

/// Raw access for the one element the helpers do not cover (rotated text).
fn svg_raw(svg: &mut Svg) -> RawWriter<'_> {
    RawWriter(svg)
}

struct RawWriter<'a>(&'a mut Svg);

impl std::fmt::Write for RawWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.raw(s);
        Ok(())
    }
}

fn single_values(
    svg: &mut Svg,
    area: Area,
    metric: &MetricWidget,
    series: &[Series],
    entries: &[(String, String)],
    fetched: &Fetched,
) {
    let values: Vec<(String, Option<f64>)> = if matches!(fetched, Fetched::Metric { .. }) {
        series
            .iter()
            .map(|s| (s.label.clone(), last_value(s)))
            .collect()
    } else {
        let labels: Vec<String> = if entries.is_empty() {
            metric
                .rows
                .iter()
                .filter(|r| r.visible)
                .map(|r| r.default_label())
                .collect()
        } else {
            entries.iter().map(|(l, _)| l.clone()).collect()
        };
        labels.into_iter().map(|l| (l, None)).collect()
    };
    let per_line = values.len().clamp(1, 4);
    let cell = area.w / per_line as f64;
    for (i, (label, value)) in values.iter().enumerate() {
        let (column, line) = (i % per_line, i / per_line);
        let x = area.x + column as f64 * cell;
        let y = area.y + line as f64 * 58.0;
        if y + 50.0 > area.y + area.h {
            break;
        }
        svg.text(
            x,
            y + 12.0,
            &fit(label, 11.0, cell - 8.0, false),
            Font::sans(11.0, MUTED),
            Anchor::Start,
        );
        let text = value.map_or_else(|| "—".to_owned(), format_value);
        svg.text(x, y + 44.0, &text, Font::sans(30.0, TEXT), Anchor::Start);
    }
}

fn gauge(svg: &mut Svg, area: Area, metric: &MetricWidget, series: &[Series]) {
    let low = metric.left.min.unwrap_or(0.0);
    let high = metric.left.max.unwrap_or(100.0).max(low + 1e-9);
    let radius = (area.w / 2.0).min(area.h - 24.0) - 10.0;
    if radius < 10.0 {
        return;
    }
    let center = (area.x + area.w / 2.0, area.y + 10.0 + radius);
    let point = |fraction: f64| {
        let angle = std::f64::consts::PI * (1.0 - fraction.clamp(0.0, 1.0));
        (
            center.0 + radius * angle.cos(),
            center.1 - radius * angle.sin(),
        )
    };
    let arc = |to: f64| {
        let (x0, y0) = point(0.0);
        let (x1, y1) = point(to);
        format!(
            "M {} {} A {r} {r} 0 0 1 {} {}",
            num(x0),
            num(y0),
            num(x1),
            num(y1),
            r = num(radius)
        )
    };
    svg.path(&arc(1.0), "none", Some((GRID_LINE, 14.0)));
    let value = series.first().and_then(last_value);
    if let Some(value) = value {
        let fraction = (value - low) / (high - low);
        if fraction > 0.0 {
            svg.path(&arc(fraction.min(1.0)), "none", Some((PALETTE[0], 14.0)));
        }
    }
    svg.text(
        center.0,
        center.1 - 4.0,
        &value.map_or_else(|| "—".to_owned(), format_value),
        Font::sans(22.0, TEXT),
        Anchor::Middle,
    );
    for (fraction, value) in [(0.0, low), (1.0, high)] {
        let (x, y) = point(fraction);
        svg.text(
            x,
            y + 14.0,
            &format_value(value),
            Font::sans(10.0, MUTED),
            Anchor::Middle,
        );
    }
}

fn bars(svg: &mut Svg, area: Area, series: &[Series]) {
    let values: Vec<f64> = series
        .iter()
        .map(|s| last_value(s).unwrap_or(0.0))
        .collect();
    let scale = Scale::new(values.iter().copied(), &Axis::default());
    let plot = Area {
        x: area.x + 44.0,
        y: area.y + 12.0,
        w: area.w - 50.0,
        h: area.h - 16.0,
    };
    if plot.h < 16.0 {
        return;
    }
    for tick in &scale.ticks {
        let y = scale.y(*tick, plot.y, plot.h).round() + 0.5;
        svg.line((plot.x, y), (plot.x + plot.w, y), GRID_LINE, false);
        svg.text(
            plot.x - 4.0,
            y + 3.5,
            &format_value(*tick),
            Font::sans(10.0, MUTED),
            Anchor::End,
        );
    }
    if values.is_empty() {
        return;
    }
    let slot = plot.w / values.len() as f64;
    for (i, value) in values.iter().enumerate() {
        let top = scale.y(*value, plot.y, plot.h);
        let base = scale.y(0f64.max(scale.low), plot.y, plot.h);
        let x = plot.x + i as f64 * slot + slot * 0.2;
        svg.rect(
            x,
            top.min(base),
            slot * 0.6,
            (base - top).abs(),
            &color_of(i, series[i].color.as_ref()),
        );
        svg.text(
            x + slot * 0.3,
            top.min(base) - 3.0,
            &format_value(*value),
            Font::sans(10.0, TEXT),
            Anchor::Middle,
        );
    }
}

fn pie(svg: &mut Svg, area: Area, series: &[Series]) {
    let values: Vec<f64> = series
        .iter()
        .map(|s| last_value(s).unwrap_or(0.0).max(0.0))
        .collect();
    let total: f64 = values.iter().sum();
    let radius = (area.w.min(area.h) / 2.0 - 6.0).max(0.0);
    let center = (area.x + area.w / 2.0, area.y + area.h / 2.0);
    if total <= 0.0 || radius < 8.0 {
        return;
    }
    let mut start = 0.0;
    for (i, value) in values.iter().enumerate() {
        let sweep = value / total * std::f64::consts::TAU;
        let color = color_of(i, series[i].color.as_ref());
        if sweep >= std::f64::consts::TAU - 1e-9 {
            svg.circle(center, radius, &color);
        } else if sweep > 0.0 {
            let at = |a: f64| (center.0 + radius * a.sin(), center.1 - radius * a.cos());
            let (x0, y0) = at(start);
            let (x1, y1) = at(start + sweep);
            let d = format!(
                "M {} {} L {} {} A {r} {r} 0 {} 1 {} {} Z",
                num(center.0),
                num(center.1),
                num(x0),
                num(y0),
                u8::from(sweep > std::f64::consts::PI),
                num(x1),
                num(y1),
                r = num(radius)
            );
            svg.path(&d, &color, Some(("#ffffff", 1.0)));
        }
        start += sweep;
    }
}

fn table(svg: &mut Svg, area: Area, series: &[Series]) {
    let columns = ["", "last", "min", "max", "average"];
    let first = area.w * 0.4;
    let cell = (area.w - first) / 4.0;
    let x_of = |c: usize| {
        if c == 0 {
            area.x
        } else {
            area.x + first + c as f64 * cell
        }
    };
    let mut y = area.y + 12.0;
    for (c, name) in columns.iter().enumerate() {
        let anchor = if c == 0 { Anchor::Start } else { Anchor::End };
        svg.text(x_of(c), y, name, Font::sans(11.0, MUTED).bold(), anchor);
    }
    for s in series {
        y += 16.0;
        if y > area.y + area.h {
            break;
        }
        let values: Vec<f64> = s.points.iter().map(|(_, v)| *v).collect();
        let stats = if values.is_empty() {
            [
                "—".to_owned(),
                "—".to_owned(),
                "—".to_owned(),
                "—".to_owned(),
            ]
        } else {
            [
                format_value(*values.last().expect("non-empty")),
                format_value(values.iter().copied().fold(f64::INFINITY, f64::min)),
                format_value(values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                format_value(values.iter().sum::<f64>() / values.len() as f64),
            ]
        };
        svg.text(
            area.x,
            y,
            &fit(&s.label, 11.0, first - 8.0, false),
            Font::sans(11.0, TEXT),
            Anchor::Start,
        );
        for (c, text) in stats.iter().enumerate() {
            svg.text(x_of(c + 1), y, text, Font::sans(11.0, TEXT), Anchor::End);
        }
    }
}

fn draw_alarms(svg: &mut Svg, area: Area, arns: &[String], fetched: &Fetched) {
    let states: &[AlarmState] = match fetched {
        Fetched::Alarms(states) => states,
        _ => &[],
    };
    let mut y = area.y + 2.0;
    for arn in arns {
        if y + 20.0 > area.y + area.h {
            break;
        }
        let name = alarm_name(arn);
        let (label, fill, color) = match fetched {
            Fetched::Alarms(_) => match states.iter().find(|s| s.name == name) {
                Some(AlarmState {
                    state: Some(state), ..
                }) => match state.as_str() {
                    "ALARM" => ("ALARM", WARN, "#ffffff"),
                    "OK" => ("OK", "#037f0c", "#ffffff"),
                    _ => ("NO DATA", "#8d99a8", "#ffffff"),
                },
                _ => ("NOT FOUND", "#e9ebed", MUTED),
            },
            Fetched::Failed(_) => ("ERROR", "#e9ebed", WARN),
            _ => ("NOT FETCHED", "#e9ebed", MUTED),
        };
        svg.rounded(area.x, y, 84.0, 18.0, 9.0, fill);
        svg.text(
            area.x + 42.0,
            y + 13.0,
            label,
            Font::sans(10.0, color).bold(),
            Anchor::Middle,
        );
        svg.text(
            area.x + 94.0,
            y + 13.0,
            &fit(name, 12.0, area.w - 94.0, false),
            Font::sans(12.0, TEXT),
            Anchor::Start,
        );
        y += 26.0;
    }
    let note = match fetched {
        Fetched::Offline => Some("offline: alarm states not fetched".to_owned()),
        Fetched::Failed(message) => Some(message.clone()),
        _ => None,
    };
    if let Some(note) = note {
        draw_notes(svg, area, &[note]);
    }
}

fn draw_log(svg: &mut Svg, area: Area, query: &str, fetched: &Fetched) {
    let mut y = area.y;
    let query_lines: Vec<String> = query
        .lines()
        .flat_map(|line| wrap(line.trim(), 10.5, area.w - 12.0, true))
        .collect();
    let shown = query_lines.len().min(4);
    svg.rect(area.x, y, area.w, shown as f64 * 14.0 + 8.0, "#f2f3f3");
    for line in query_lines.iter().take(shown) {
        svg.text(
            area.x + 6.0,
            y + 15.0,
            line,
            Font::sans(10.5, MUTED).mono(),
            Anchor::Start,
        );
        y += 14.0;
    }
    y += 14.0;
    let rest = Area {
        y,
        h: area.y + area.h - y,
        ..area
    };
    match fetched {
        Fetched::Logs(lines) => log_table(svg, rest, lines),
        Fetched::Failed(message) => draw_notes(svg, rest, std::slice::from_ref(message)),
        _ => draw_notes(
            svg,
            rest,
            &["offline: CloudWatch Logs Insights runs this query; no lines fetched".to_owned()],
        ),
    }
}

fn log_table(svg: &mut Svg, area: Area, lines: &LogLines) {
    let bottom = area.y + area.h - 16.0;
    let count = lines.columns.len().max(1);
    // Columns share the width by their longest value (capped), so short fields stay narrow.
    let weights: Vec<f64> = (0..count)
        .map(|c| {
            let longest = lines
                .rows
                .iter()
                .filter_map(|r| r.get(c))
                .chain(lines.columns.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(4);
            (longest.clamp(4, 48)) as f64
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let mut x = area.x;
    let lefts: Vec<(f64, f64)> = weights
        .iter()
        .map(|w| {
            let width = w / total * area.w;
            let left = x;
            x += width;
            (left, width)
        })
        .collect();
    let mut y = area.y + 10.0;
    for (c, name) in lines.columns.iter().enumerate() {
        let (left, width) = lefts[c];
        svg.text(
            left,
            y,
            &fit(name, 10.5, width - 6.0, true),
            Font::sans(10.5, TEXT).mono().bold(),
            Anchor::Start,
        );
    }
    if lines.rows.is_empty() {
        svg.text(
            area.x,
            y + 16.0,
            "no matching lines",
            Font::sans(11.0, MUTED),
            Anchor::Start,
        );
    }
    for row in &lines.rows {
        y += 14.0;
        if y > bottom {
            break;
        }
        for (c, value) in row.iter().enumerate().take(count) {
            let (left, width) = lefts[c];
            svg.text(
                left,
                y,
                &fit(value, 10.5, width - 6.0, true),
                Font::sans(10.5, TEXT).mono(),
                Anchor::Start,
            );
        }
    }
    svg.text(
        area.x,
        area.y + area.h - 2.0,
        &fit(&lines.note, 10.0, area.w, false),
        Font::sans(10.0, MUTED),
        Anchor::Start,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_compact() {
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(1234.0), "1234");
        assert_eq!(format_value(12_345.0), "12.3k");
        assert_eq!(format_value(2_500_000.0), "2.5M");
    }

    #[test]
    fn scales_start_at_zero_and_end_on_a_tick() {
        let scale = Scale::new([3.0, 97.0].into_iter(), &Axis::default());
        assert_eq!((scale.low, scale.high), (0.0, 100.0));
        assert_eq!(scale.ticks, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let fixed = Axis {
            min: Some(0.0),
            max: Some(1.0),
            label: None,
        };
        let scale = Scale::new(std::iter::empty(), &fixed);
        assert_eq!((scale.low, scale.high), (0.0, 1.0));
    }

    #[test]
    fn widget_boxes_follow_the_grid() {
        assert_eq!(widget_box(0, 0, 24, 2), (12.0, 44.0, 1192.0, 64.0));
        assert_eq!(widget_box(12, 2, 12, 6).0, 12.0 + 600.0);
        assert_ne!(border_color(0), border_color(1));
        assert_ne!(border_color(0), border_color(48));
    }

    #[test]
    fn clock_and_time_steps() {
        assert_eq!(clock(3600 * 25 + 60 * 7), "01:07");
        assert_eq!(time_step(3 * 3600, 10.0), 1800);
    }
}
