//! Training curves as a PNG: a panel per column of the task (loss, accuracy, perplexity), train
//! and valid per period, and the smoothed training loss of every step.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::metrics::Metrics;
use crate::task::Column;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // DejaVu Sans is embedded, so drawing needs no system fonts.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// One line of a panel.
struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// Draw a marker at each point (per-period values), or a plain line (per-step values).
    markers: bool,
}

/// Trailing mean over `window` points, thinned to at most about 1,000 points.
fn smooth(points: &[(usize, f64)], window: usize) -> Vec<(usize, f64)> {
    let window = window.max(1);
    let stride = points.len().div_ceil(1000).max(1);
    let mut sum = 0.0;
    let mut out = Vec::with_capacity(points.len() / stride + 1);
    for (i, &(step, v)) in points.iter().enumerate() {
        sum += v;
        if i >= window {
            sum -= points[i - window].1;
        }
        if i % stride == 0 || i + 1 == points.len() {
            out.push((step, sum / (i + 1).min(window) as f64));
        }
    }
    out
}

/// Draws the training curves of `metrics` into `path` (written as given: callers wanting
/// atomicity pass a temporary name): one panel per column of the task (loss, then accuracy or
/// perplexity ...), train and valid per period, and in the loss panel the training loss of every
/// step, smoothed. The x axis counts epochs (`x_unit = "epoch"`, fractional between two) or steps.
pub fn draw_curves(
    metrics: &Metrics,
    columns: &[Column],
    x_unit: &str,
    title: &str,
    path: &Path,
) -> Result<(), String> {
    register_font();
    let width = 600 * columns.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| e.to_string())?;
    let per_period = metrics.steps_per_period.max(1) as f64;
    let x_of_step = |step: usize| {
        if x_unit == "epoch" {
            step as f64 / per_period
        } else {
            step as f64
        }
    };
    let areas = root.split_evenly((1, columns.len().max(1)));
    for (area, column) in areas.iter().zip(columns) {
        let mut series = Vec::new();
        if column.key == "loss" && metrics.step_loss.len() > 1 {
            let window = (metrics.step_loss.len() / 50).clamp(1, metrics.steps_per_period.max(1));
            series.push(Series {
                label: format!("train (per step, mean of {window})"),
                color: RGBColor(150, 190, 235),
                points: smooth(&metrics.step_loss, window)
                    .into_iter()
                    .map(|(s, v)| (x_of_step(s), v))
                    .collect(),
                markers: false,
            });
        }
        for (split, color) in [("train", BLUE), ("valid", RED)] {
            let key = format!("{split}_{}", column.key);
            series.push(Series {
                label: split.to_string(),
                color,
                points: metrics
                    .history
                    .iter()
                    .filter_map(|r| r.get(&key).map(|v| (x_of_step(r.step), v)))
                    .collect(),
                markers: true,
            });
        }
        panel(area, column.key, x_unit, &series)?;
    }
    root.present().map_err(|e| e.to_string())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    name: &str,
    x_unit: &str,
    series: &[Series],
) -> Result<(), String> {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    let (mut y0, mut y1) = (f64::MAX, f64::MIN);
    for &(x, y) in &all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 - x0 < 1.0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(name, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_unit)
        .y_desc(name)
        .x_labels(10)
        .x_label_formatter(&|x| {
            if x.fract().abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        if s.markers {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}
