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
            include_bytes!("../../assets/DejaVuSans.ttf"),
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
        // Each bar is as wide as its label, so labels never run into each other.
        let longest = bars
            .iter()
            .map(|b| b.label.chars().count())
            .max()
            .unwrap_or(0) as u32;
        let width = (160 + (7 * longest + 12).max(110) * bars.len() as u32).max(480);
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
        let palette = PALETTE;
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

/// One line of a [`lines`] plot: a name and, per x position, a value and an error half-width.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(value, error)` per x label; NaN values are skipped.
    pub points: Vec<(f64, f64)>,
}

const PALETTE: [RGBColor; 7] = [
    RGBColor(66, 133, 244),
    RGBColor(219, 68, 55),
    RGBColor(244, 180, 0),
    RGBColor(15, 157, 88),
    RGBColor(171, 71, 188),
    RGBColor(0, 172, 193),
    RGBColor(120, 120, 120),
];

/// Lines with error bars over categorical x values (e.g. MCC against context length, one line
/// per task), with a legend, written to `path` (PNG) atomically.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    x_values: &[String],
    series: &[Series],
) -> Result<(), EvalError> {
    register();
    let tmp = path.with_extension("tmp.png");
    {
        let width = (200 + 120 * x_values.len() as u32).max(640);
        let root = BitMapBackend::new(&tmp, (width, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let finite: Vec<(f64, f64)> = series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(v, _)| v.is_finite())
            .collect();
        let lo = finite.iter().map(|(v, e)| v - e).fold(0.0f64, f64::min);
        let hi = finite.iter().map(|(v, e)| v + e).fold(0.0f64, f64::max);
        let span = (hi - lo).max(1e-3);
        let n = x_values.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT_NAME, 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n - 0.5, (lo - 0.05 * span)..(hi + 0.1 * span))
            .map_err(|e| plot_err(path, e))?;
        let labels = x_values.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(x_values.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT_NAME, 13))
            .axis_desc_style((FONT_NAME, 14))
            .draw()
            .map_err(|e| plot_err(path, e))?;
        for (k, s) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            // A small horizontal offset per series keeps error bars apart.
            let dx = (k as f64 - (series.len() as f64 - 1.0) / 2.0) * 0.04;
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .enumerate()
                .filter(|(_, (v, _))| v.is_finite())
                .map(|(i, (v, _))| (i as f64 + dx, *v))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| plot_err(path, e))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(|e| plot_err(path, e))?;
            for (i, (v, e)) in s.points.iter().enumerate() {
                if v.is_finite() && *e > 0.0 {
                    let x = i as f64 + dx;
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(x, v - e), (x, v + e)],
                            color.stroke_width(2),
                        )))
                        .map_err(|e| plot_err(path, e))?;
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT_NAME, 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| EvalError::io(path, e))
}

/// White at 0, blue towards +1, red towards -1 (values clamped to [-1, 1]).
fn diverging(t: f64) -> RGBColor {
    let t = t.clamp(-1.0, 1.0);
    let fade = |c: f64| (255.0 + (c - 255.0) * t.abs()) as u8;
    if t >= 0.0 {
        RGBColor(fade(33.0), fade(102.0), fade(172.0))
    } else {
        RGBColor(fade(178.0), fade(24.0), fade(43.0))
    }
}

/// An in-silico mutagenesis map: 4 rows (A, C, G, T) × one column per position, blue where the
/// substitution raises the log-likelihood, red where it lowers it (symmetric scale), the
/// reference base outlined; written to `path` (PNG) atomically.
pub fn mutagenesis_map(
    path: &Path,
    title: &str,
    sequence: &[u8],
    values: &[[f64; 4]],
    first_position: usize,
) -> Result<(), EvalError> {
    register();
    let tmp = path.with_extension("tmp.png");
    {
        let n = values.len().max(1) as u32;
        let cell_w = (1600 / n).clamp(2, 24);
        let cell_h = 28u32;
        let left = 40u32;
        let top = 50u32;
        let width = left + cell_w * n + 120;
        let height = top + 4 * cell_h + 60;
        let root = BitMapBackend::new(&tmp, (width.max(480), height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let font = |size: u32| (FONT_NAME, size).into_font();
        root.draw(&Text::new(title.to_string(), (10, 10), font(16)))
            .map_err(|e| plot_err(path, e))?;
        let scale = values
            .iter()
            .flat_map(|r| r.iter())
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(1e-9);
        for (j, base) in ["A", "C", "G", "T"].iter().enumerate() {
            let y = (top + j as u32 * cell_h) as i32;
            root.draw(&Text::new(base.to_string(), (16, y + 7), font(14)))
                .map_err(|e| plot_err(path, e))?;
        }
        for (i, row) in values.iter().enumerate() {
            let x = (left + i as u32 * cell_w) as i32;
            for (j, &v) in row.iter().enumerate() {
                let y = (top + j as u32 * cell_h) as i32;
                let color = if v.is_finite() {
                    diverging(v / scale)
                } else {
                    RGBColor(200, 200, 200)
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell_w as i32, y + cell_h as i32)],
                    color.filled(),
                ))
                .map_err(|e| plot_err(path, e))?;
                if sequence.get(i).is_some_and(|b| b"ACGT".get(j) == Some(b)) {
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell_w as i32, y + cell_h as i32)],
                        BLACK.stroke_width(1),
                    ))
                    .map_err(|e| plot_err(path, e))?;
                }
            }
        }
        // Position ticks.
        let step = [1usize, 5, 10, 20, 50, 100, 200, 500, 1000]
            .into_iter()
            .find(|s| values.len() / s <= 20)
            .unwrap_or(1000);
        let y = (top + 4 * cell_h + 6) as i32;
        for i in (0..values.len()).filter(|i| (i + first_position).is_multiple_of(step)) {
            let x = (left + i as u32 * cell_w) as i32;
            root.draw(&Text::new(
                format!("{}", i + first_position),
                (x, y),
                font(12),
            ))
            .map_err(|e| plot_err(path, e))?;
        }
        // Colour key.
        let kx = (left + cell_w * n + 20) as i32;
        for (k, (label, v)) in [
            (format!("+{scale:.2}"), scale),
            ("0".to_string(), 0.0),
            (format!("-{scale:.2}"), -scale),
        ]
        .iter()
        .enumerate()
        {
            let c = diverging(v / scale);
            let ky = (top + k as u32 * 30) as i32;
            root.draw(&Rectangle::new([(kx, ky), (kx + 20, ky + 20)], c.filled()))
                .map_err(|e| plot_err(path, e))?;
            root.draw(&Text::new(label.clone(), (kx + 26, ky + 4), font(12)))
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
        let l = dir.path().join("lines.png");
        lines(
            &l,
            "effect",
            "context",
            "MCC",
            &["128".into(), "1024".into()],
            &[
                Series {
                    name: "task a".into(),
                    points: vec![(0.2, 0.05), (0.4, 0.02)],
                },
                Series {
                    name: "task b".into(),
                    points: vec![(f64::NAN, 0.0), (0.1, 0.0)],
                },
            ],
        )
        .unwrap();
        let m = dir.path().join("ism.png");
        mutagenesis_map(
            &m,
            "ism",
            b"ACGN",
            &[
                [0.0, -1.0, 0.5, 0.2],
                [0.3, 0.0, -0.2, 0.1],
                [0.1, 0.1, 0.0, -2.0],
                [f64::NAN; 4],
            ],
            1,
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
        for f in [p, l, m, h] {
            let bytes = std::fs::read(&f).unwrap();
            assert_eq!(&bytes[1..4], b"PNG");
        }
    }
}
