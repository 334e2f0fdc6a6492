//! The plot of a load run, as SVG (plotters' SVG backend: no fonts or bitmaps
//! needed): throughput per second in the upper panel, latency p50 and p99 per
//! second in the lower one, over the whole peak phase. The series have fixed
//! colours so readers and tests can tell them apart: throughput blue
//! (`#0000FF`), p50 green (`#00FF00`), p99 red (`#FF0000`), each a
//! `<polyline>` of stroke width 2 with one point per second. A second without
//! answers has a throughput of 0 and no latency point (the latency lines break
//! there).

use std::path::Path;

use plotters::prelude::*;

use crate::peak::SecondFigures;

pub const THROUGHPUT_COLOUR: RGBColor = BLUE;
pub const P50_COLOUR: RGBColor = GREEN;
pub const P99_COLOUR: RGBColor = RED;
/// The series are drawn 2 px wide (the legend's samples 1 px), with a dot at
/// each point.
const SERIES_STROKE_WIDTH: u32 = 2;

/// Picks p50 or p99 from a second's `(p50, p99)` latencies.
type PickLatency = fn(&(f64, f64)) -> f64;

/// Writes the plot of `figures` (one entry per second of the peak) to `path`.
pub fn write_svg(path: &Path, title: &str, figures: &[SecondFigures]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1_000, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let (upper, lower) = root.split_vertically(340);
    let seconds = figures.len().max(1) as f64;
    // Each second is drawn at its middle.
    let x = |figure: &SecondFigures| figure.second as f64 + 0.5;

    let throughput_max = figures
        .iter()
        .map(|f| f.operations_per_s)
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(&upper)
        .caption("throughput", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..seconds, 0.0..(throughput_max * 1.1).max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("seconds into the peak")
        .y_desc("operations/s")
        .draw()?;
    chart
        .draw_series(
            LineSeries::new(
                figures.iter().map(|f| (x(f), f.operations_per_s)),
                THROUGHPUT_COLOUR.filled().stroke_width(SERIES_STROKE_WIDTH),
            )
            .point_size(2),
        )?
        .label("operations answered per second")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], THROUGHPUT_COLOUR));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let latency_max = figures
        .iter()
        .filter_map(|f| f.latency_ms.map(|(_, p99)| p99))
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(&lower)
        .caption("latency per operation", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..seconds, 0.0..(latency_max * 1.1).max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("seconds into the peak")
        .y_desc("ms")
        .draw()?;
    let quantiles: [(&str, RGBColor, PickLatency); 2] = [
        ("p50", P50_COLOUR, |&(p50, _)| p50),
        ("p99", P99_COLOUR, |&(_, p99)| p99),
    ];
    for (name, colour, pick) in quantiles {
        let value = |f: &SecondFigures| f.latency_ms.as_ref().map(pick);
        let mut labelled = false;
        for run in runs_with_answers(figures) {
            let series = chart.draw_series(
                LineSeries::new(
                    run.iter()
                        .map(|f| (x(f), value(f).expect("a run has answers"))),
                    colour.filled().stroke_width(SERIES_STROKE_WIDTH),
                )
                .point_size(2),
            )?;
            if !labelled {
                series
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
                labelled = true;
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The stretches of consecutive seconds that have answers (and so latencies).
fn runs_with_answers(figures: &[SecondFigures]) -> Vec<&[SecondFigures]> {
    figures
        .split(|f| f.latency_ms.is_none())
        .filter(|run| !run.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(second: u64, latency_ms: Option<(f64, f64)>) -> SecondFigures {
        SecondFigures {
            second,
            operations_per_s: 100.0 * second as f64,
            operations: 100 * second,
            latency_ms,
        }
    }

    /// Points of the polylines drawn in `colour` (e.g. "#0000FF").
    fn points(svg: &str, colour: &str) -> Vec<usize> {
        svg.split("<polyline")
            .skip(1)
            .filter(|element| element.contains(&format!("stroke=\"{colour}\" stroke-width=\"2\"")))
            .map(|element| {
                let points = element.split("points=\"").nth(1).unwrap();
                points[..points.find('"').unwrap()]
                    .split_whitespace()
                    .count()
            })
            .collect()
    }

    /// One throughput point per second; the latency lines break at a second
    /// without answers, so they have one point per second with answers.
    #[test]
    fn the_svg_has_a_point_per_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        let figures = vec![
            second(0, Some((1.0, 2.0))),
            second(1, Some((1.5, 3.0))),
            second(2, None),
            second(3, Some((2.0, 9.0))),
        ];
        write_svg(&path, "test", &figures).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(points(&svg, "#0000FF"), vec![4]);
        assert_eq!(points(&svg, "#00FF00"), vec![2, 1]);
        assert_eq!(points(&svg, "#FF0000"), vec![2, 1]);
    }
}
