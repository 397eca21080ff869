//! The report's charts as inline SVG (plotters' SVG backend): nothing to fetch when the
//! page is opened.

use plotters::prelude::*;

/// One line of a best-so-far chart: a group of experiments that differ only in seed,
/// drawn as its median with the min-max band.
pub struct Curve {
    pub label: String,
    /// Per seed: (cost, best reward so far) steps, cost increasing.
    pub runs: Vec<Vec<(f64, f64)>>,
}

const W: u32 = 760;
const H: u32 = 380;

fn palette(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

/// The value of a step function at `x` (`None` before its first step).
fn at(run: &[(f64, f64)], x: f64) -> Option<f64> {
    run.iter().take_while(|p| p.0 <= x).last().map(|p| p.1)
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

fn draw_err(e: impl std::fmt::Display) -> String {
    format!("drawing a chart: {e}")
}

/// Best reward so far against cost, one median line and min-max band per curve.
pub fn best_so_far(curves: &[Curve], cost_label: &str, y_label: &str) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let xs = curves
            .iter()
            .flat_map(|c| c.runs.iter().flatten().map(|p| p.0));
        let x_max = xs.fold(1.0f64, f64::max);
        let (y_lo, y_hi) = range(
            curves
                .iter()
                .flat_map(|c| c.runs.iter().flatten().map(|p| p.1)),
        );
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, y_lo..y_hi)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc(cost_label)
            .y_desc(y_label)
            .draw()
            .map_err(draw_err)?;
        for (i, c) in curves.iter().enumerate() {
            let color = palette(i);
            let mut grid: Vec<f64> = c.runs.iter().flatten().map(|p| p.0).collect();
            grid.sort_by(f64::total_cmp);
            grid.dedup();
            let mut med = Vec::new();
            let mut band_lo = Vec::new();
            let mut band_hi = Vec::new();
            for &x in &grid {
                let mut ys: Vec<f64> = c.runs.iter().filter_map(|r| at(r, x)).collect();
                if ys.len() < c.runs.len() {
                    continue; // every seed has started
                }
                ys.sort_by(f64::total_cmp);
                med.push((x, ys[ys.len() / 2]));
                band_lo.push((x, ys[0]));
                band_hi.push((x, ys[ys.len() - 1]));
            }
            // best-so-far is a step function: hold each value until the next step
            let steps = |pts: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
                let mut out = Vec::with_capacity(pts.len() * 2);
                for (i, &(x, y)) in pts.iter().enumerate() {
                    if i > 0 {
                        out.push((x, pts[i - 1].1));
                    }
                    out.push((x, y));
                }
                out
            };
            let (med, band_lo, band_hi) = (steps(med), steps(band_lo), steps(band_hi));
            if c.runs.len() > 1 && !band_lo.is_empty() {
                let mut poly = band_hi.clone();
                poly.extend(band_lo.iter().rev());
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, color.mix(0.18))))
                    .map_err(draw_err)?;
            }
            let label = if c.runs.len() > 1 {
                format!(
                    "{} (median of {} seeds, min-max band)",
                    c.label,
                    c.runs.len()
                )
            } else {
                c.label.clone()
            };
            chart
                .draw_series(LineSeries::new(med, color.stroke_width(2)))
                .map_err(draw_err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Accuracy against cost measure (latency or params) for every trial, the Pareto
/// front (higher accuracy, lower cost) as a line.
pub fn pareto(
    points: &[(f64, f64)],
    front: &[(f64, f64)],
    x_label: &str,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (x_lo, x_hi) = range(points.iter().map(|p| p.0));
        let (y_lo, y_hi) = range(points.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("validation accuracy")
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 3, palette(0).mix(0.5).filled())),
            )
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new(front.to_vec(), palette(3).stroke_width(2)))
            .map_err(draw_err)?;
        chart
            .draw_series(
                front
                    .iter()
                    .map(|&p| Circle::new(p, 4, palette(3).filled())),
            )
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// The critic's predictions against the measured rewards, with +-2 std bars and the
/// diagonal.
pub fn calibration(points: &[(f64, f64, f64)]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        // the axes fit the points; a wide bar is cut at the frame rather than squeezing
        // every point into a corner
        let (lo, hi) = range(points.iter().flat_map(|p| [p.0, p.1]));
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("measured reward")
            .y_desc("predicted (mean +- 2 std)")
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new(vec![(lo, lo), (hi, hi)], BLACK.mix(0.4)))
            .map_err(draw_err)?;
        chart
            .draw_series(points.iter().map(|&(m, p, s)| {
                PathElement::new(
                    vec![(m, p - 2.0 * s), (m, p + 2.0 * s)],
                    palette(0).mix(0.5),
                )
            }))
            .map_err(draw_err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(m, p, _)| Circle::new((m, p), 3, palette(0).filled())),
            )
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Trials per batch by source, stacked: evaluated, trusted (critic), cached.
pub fn batches(counts: &[(u64, [u64; 3])]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let n = counts.len().max(1) as f64;
        let top = counts
            .iter()
            .map(|c| c.1.iter().sum::<u64>())
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..n, 0.0..top * 1.1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("batch")
            .y_desc("trials")
            .draw()
            .map_err(draw_err)?;
        let names = ["evaluated", "trusted (critic)", "cached"];
        for k in 0..3 {
            let color = palette(k);
            chart
                .draw_series(counts.iter().enumerate().map(|(i, (_, c))| {
                    let below: u64 = c[..k].iter().sum();
                    let x = i as f64;
                    Rectangle::new(
                        [(x + 0.1, below as f64), (x + 0.9, (below + c[k]) as f64)],
                        color.filled(),
                    )
                }))
                .map_err(draw_err)?
                .label(names[k])
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}
