//! PNG plots for reports (plotters, bitmap backend): bars with error bars, and annotated
//! heatmaps. Text uses the bundled DejaVu Sans (`assets/`, Bitstream Vera licence), so plots
//! render the same on any machine without system fonts.

use std::{path::Path, sync::Once};

use plotters::prelude::*;

use crate::EvalError;

static FONT: Once = Once::new();
const FONT_NAME: &str = "dejavu";

fn register() {
    FONT.call_once(|| {
        // The bytes are a valid TrueType font (checked by the tests); failure only loses text.
        let _ = plotters::style::register_font(
            FONT_NAME,
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Format {
        path: path.to_path_buf(),
        message: format!("plotting failed: {e}"),
    }
}

/// One bar: label, value, error half-width.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Label under the bar.
    pub label: String,
    /// Height.
    pub value: f64,
    /// Error bar (± this).
    pub error: f64,
}

/// A bar chart with error bars, written to `path` (PNG) atomically.
pub fn bars(path: &Path, title: &str, y_label: &str, bars: &[Bar]) -> Result<(), EvalError> {
    register();
    let tmp = path.with_extension("tmp.png");
    {
        let width = (160 + 110 * bars.len() as u32).max(480);
        let root = BitMapBackend::new(&tmp, (width, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let finite = bars.iter().filter(|b| b.value.is_finite());
        let lo = finite
            .clone()
            .map(|b| b.value - b.error)
            .fold(0.0f64, f64::min);
        let hi = finite.map(|b| b.value + b.error).fold(0.0f64, f64::max);
        let span = (hi - lo).max(1e-3);
        let (lo, hi) = (lo - 0.05 * span * (lo < 0.0) as u8 as f64, hi + 0.1 * span);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT_NAME, 20))
            .margin(12)
            .x_label_area_size(90)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..bars.len() as f64, lo..hi)
            .map_err(|e| plot_err(path, e))?;
        let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (*x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .x_label_style(
                (FONT_NAME, 12)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .y_desc(y_label)
            .label_style((FONT_NAME, 13))
            .axis_desc_style((FONT_NAME, 14))
            .draw()
            .map_err(|e| plot_err(path, e))?;
        let palette = [
            RGBColor(66, 133, 244),
            RGBColor(219, 68, 55),
            RGBColor(244, 180, 0),
            RGBColor(15, 157, 88),
            RGBColor(171, 71, 188),
            RGBColor(0, 172, 193),
            RGBColor(120, 120, 120),
        ];
        for (i, b) in bars.iter().enumerate() {
            if !b.value.is_finite() {
                continue;
            }
            let x = i as f64;
            let color = palette[i % palette.len()];
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x + 0.15, 0.0), (x + 0.85, b.value)],
                    color.filled(),
                )))
                .map_err(|e| plot_err(path, e))?;
            if b.error > 0.0 {
                let (c, lo, hi) = (x + 0.5, b.value - b.error, b.value + b.error);
                for seg in [
                    vec![(c, lo), (c, hi)],
                    vec![(c - 0.1, lo), (c + 0.1, lo)],
                    vec![(c - 0.1, hi), (c + 0.1, hi)],
                ] {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            seg,
                            BLACK.stroke_width(2),
                        )))
                        .map_err(|e| plot_err(path, e))?;
                }
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{:.3}", b.value),
                    (x + 0.2, b.value + b.error + 0.02 * span),
                    (FONT_NAME, 12),
                )))
                .map_err(|e| plot_err(path, e))?;
        }
        root.present().map_err(|e| plot_err(path, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| EvalError::io(path, e))
}

/// An annotated heatmap (`rows x columns` values, NaN drawn grey), written to `path` (PNG).
/// Colours scale per column when `per_column`, so scores of different units share one figure.
pub fn heatmap(
    path: &Path,
    title: &str,
    rows: &[String],
    columns: &[String],
    values: &[Vec<f64>],
    per_column: bool,
) -> Result<(), EvalError> {
    register();
    let tmp = path.with_extension("tmp.png");
    {
        let cell_w = 130u32;
        let cell_h = 36u32;
        let left = 40 + 8 * rows.iter().map(|r| r.len()).max().unwrap_or(4) as u32;
        let width = left + cell_w * columns.len() as u32 + 30;
        let height = 110 + cell_h * rows.len() as u32;
        let root = BitMapBackend::new(&tmp, (width.max(320), height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let font = |size: u32| (FONT_NAME, size).into_font();
        root.draw(&Text::new(title.to_string(), (10, 10), font(18)))
            .map_err(|e| plot_err(path, e))?;
        let top = 80i32;
        for (j, c) in columns.iter().enumerate() {
            let x = left as i32 + (j as u32 * cell_w) as i32 + 6;
            root.draw(&Text::new(c.clone(), (x, top - 24), font(13)))
                .map_err(|e| plot_err(path, e))?;
        }
        let range = |j: Option<usize>| {
            let vals = values.iter().flat_map(|r| {
                r.iter()
                    .enumerate()
                    .filter(move |(c, _)| j.is_none_or(|j| j == *c))
                    .map(|(_, v)| *v)
            });
            let finite: Vec<f64> = vals.filter(|v| v.is_finite()).collect();
            let lo = finite.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = finite.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            (lo, hi)
        };
        let global = range(None);
        for (i, r) in rows.iter().enumerate() {
            let y = top + (i as u32 * cell_h) as i32;
            root.draw(&Text::new(r.clone(), (10, y + 10), font(13)))
                .map_err(|e| plot_err(path, e))?;
            for (j, &v) in values[i].iter().enumerate() {
                let x = left as i32 + (j as u32 * cell_w) as i32;
                let (lo, hi) = if per_column { range(Some(j)) } else { global };
                let color = if v.is_finite() {
                    let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                    // White to blue.
                    let mix = |a: f64, b: f64| (a + (b - a) * t) as u8;
                    RGBColor(mix(247.0, 33.0), mix(251.0, 102.0), mix(255.0, 172.0))
                } else {
                    RGBColor(200, 200, 200)
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell_w as i32 - 2, y + cell_h as i32 - 2)],
                    color.filled(),
                ))
                .map_err(|e| plot_err(path, e))?;
                let text = if v.is_finite() {
                    format!("{v:.3}")
                } else {
                    "—".into()
                };
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                let ink = if v.is_finite() && t > 0.6 {
                    WHITE
                } else {
                    BLACK
                };
                root.draw(&Text::new(text, (x + 8, y + 10), font(13).color(&ink)))
                    .map_err(|e| plot_err(path, e))?;
            }
        }
        root.present().map_err(|e| plot_err(path, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| EvalError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_written_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bars.png");
        bars(
            &p,
            "task",
            "MCC",
            &[
                Bar {
                    label: "model".into(),
                    value: 0.5,
                    error: 0.05,
                },
                Bar {
                    label: "k-mer".into(),
                    value: -0.1,
                    error: 0.0,
                },
            ],
        )
        .unwrap();
        let h = dir.path().join("heat.png");
        heatmap(
            &h,
            "relevance",
            &["a".into(), "b".into()],
            &["logme".into(), "mcc".into()],
            &[vec![1.0, 0.2], vec![f64::NAN, 0.4]],
            true,
        )
        .unwrap();
        for f in [p, h] {
            let bytes = std::fs::read(&f).unwrap();
            assert_eq!(&bytes[1..4], b"PNG");
        }
    }
}
