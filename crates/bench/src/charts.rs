//! PNG charts for the report, drawn with plotters' bitmap backend. Text is
//! rendered with ab_glyph from a TrueType font read from the system (DejaVu
//! Sans, Debian's `fonts-dejavu-core`), so no fontconfig is needed.
//!
//! The benchmark charts are grouped bar charts: one group per metric, one
//! bar per proxy at the median of the runs, with a whisker from the lowest
//! to the highest run. The soak test draws time series instead
//! ([`timeseries`]): lines over time, with events marked.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use crate::report::analysis::{fmt, Report};

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

fn load_font() -> Result<()> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = FONTS
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .ok_or_else(|| {
                    "no TrueType font found (install Debian's fonts-dejavu-core)".to_string()
                })?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| "the font could not be parsed".to_string())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

fn color(series: &str) -> RGBColor {
    match series {
        "moat" => RGBColor(230, 120, 20),
        "nginx" => RGBColor(40, 150, 60),
        "haproxy" => RGBColor(40, 100, 200),
        "stunnel" => RGBColor(140, 70, 170),
        "naive" => RGBColor(130, 130, 130),
        _ => RGBColor(30, 30, 30),
    }
}

/// One grouped bar chart. `groups` are (metric key, label).
fn bars(
    report: &Report,
    path: &Path,
    title: &str,
    unit: &str,
    groups: &[(String, String)],
    series: &[String],
) -> Result<bool> {
    let data: Vec<Vec<Option<(f64, f64, f64)>>> = groups
        .iter()
        .map(|(key, _)| series.iter().map(|s| report.spread(s, key)).collect())
        .collect();
    let top = data
        .iter()
        .flatten()
        .flatten()
        .map(|(_, _, hi)| *hi)
        .fold(0.0_f64, f64::max);
    if top <= 0.0 {
        return Ok(false);
    }
    let n = groups.len();
    let root = BitMapBackend::new(path, (960, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..n as f64, 0f64..top * 1.18)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|y| fmt(*y))
        .y_desc(unit)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let width = 0.8 / series.len() as f64;
    for (si, s) in series.iter().enumerate() {
        let c = color(s);
        let mut rects = Vec::new();
        let mut whiskers = Vec::new();
        let mut texts = Vec::new();
        for (g, row) in data.iter().enumerate() {
            let Some((m, lo, hi)) = row[si] else { continue };
            let left = g as f64 + 0.1 + si as f64 * width;
            let right = left + width * 0.9;
            let mid = (left + right) / 2.0;
            rects.push(Rectangle::new([(left, 0.0), (right, m)], c.filled()));
            if hi > lo {
                whiskers.push(PathElement::new(
                    vec![(mid, lo), (mid, hi)],
                    BLACK.stroke_width(1),
                ));
            }
            texts.push(Text::new(
                fmt(m),
                (mid, hi.max(m) + top * 0.01),
                ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            ));
        }
        chart
            .draw_series(rects)
            .map_err(|e| anyhow!("{e}"))?
            .label(s.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
        chart.draw_series(whiskers).map_err(|e| anyhow!("{e}"))?;
        chart.draw_series(texts).map_err(|e| anyhow!("{e}"))?;
    }
    // Group names under the axis, centred on each group.
    let label_font = ("sans-serif", 16).into_font().color(&BLACK);
    for (g, (_, label)) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        let (w, _) = root
            .estimate_text_size(label, &label_font)
            .map_err(|e| anyhow!("{e}"))?;
        root.draw(&Text::new(
            label.clone(),
            (x - w as i32 / 2, y + 10),
            label_font.clone(),
        ))
        .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(true)
}

/// One chart: file, title, unit, groups (metric key, label), series.
type Spec<'a> = (
    &'static str,
    String,
    &'static str,
    Vec<(String, String)>,
    &'a [String],
);

/// Draws every chart that has data into `dir`; returns (title, file name).
pub fn render(report: &Report, dir: &Path) -> Result<Vec<(String, String)>> {
    load_font()?;
    let all = report.series();
    let proxies: Vec<String> = all.iter().filter(|s| *s != "direct").cloned().collect();
    if proxies.is_empty() {
        bail!("nothing to draw");
    }
    let g = |k: &str, l: &str| (k.to_string(), l.to_string());
    let idle: Vec<(String, String)> = report
        .idle_levels()
        .into_iter()
        .map(|l| (format!("idle_kib_{l}"), format!("{l} idle connections")))
        .collect();
    let rate = format!("{:.0}k msg/s", report.plan().small_rate / 1000.0);
    let specs: Vec<Spec> = vec![
        (
            "handshakes.png",
            "Proxy CPU per TLS 1.3 handshake (lower is better)".into(),
            "µs per handshake",
            vec![
                g("full_hs_us", "full handshake"),
                g("resumed_hs_us", "resumed (ticket)"),
            ],
            &proxies[..],
        ),
        (
            "idle_memory.png",
            "Proxy RSS per idle TLS connection (lower is better)".into(),
            "KiB per connection",
            idle,
            &proxies[..],
        ),
        (
            "bulk.png",
            "Proxy CPU per GiB echoed (lower is better)".into(),
            "CPU seconds per GiB",
            vec![g("bulk_s_per_gib", "bulk echo")],
            &proxies[..],
        ),
        (
            "latency.png",
            format!(
                "Round trip of {}-byte messages at {rate} (lower is better)",
                report.plan().small_size
            ),
            "µs",
            vec![
                g("rtt_p50_us", "p50"),
                g("rtt_p99_us", "p99"),
                g("rtt_p999_us", "p99.9"),
            ],
            &all[..],
        ),
        (
            "small_cpu.png",
            format!("Proxy CPU per 1000 small messages at {rate} (lower is better)"),
            "CPU ms per 1000 messages",
            vec![g("small_cpu_ms_per_1000", "64-byte messages")],
            &proxies[..],
        ),
        (
            "storm.png",
            format!(
                "Reconnect storm of {} devices through the proxy to Mosquitto",
                report.plan().storm_devices
            ),
            "seconds",
            vec![
                g("storm_s", "time until every CONNACK"),
                g("storm_cpu_s", "proxy CPU"),
            ],
            &proxies[..],
        ),
    ];
    let mut out = Vec::new();
    for (file, title, unit, groups, series) in specs {
        if bars(report, &dir.join(file), &title, unit, &groups, series)? {
            out.push((title, file.to_string()));
        }
    }
    Ok(out)
}

/// One line of a time series chart.
pub struct Line {
    /// Its legend.
    pub label: String,
    /// Its colour.
    pub color: RGBColor,
    /// (seconds, value) points, in time order.
    pub points: Vec<(f64, f64)>,
}

/// An event on a time series chart: a span (`to > from`) is shaded, an
/// instant is a thin vertical line.
pub struct Mark {
    /// The legend of its kind (marks with the same label share one entry).
    pub label: String,
    /// Its colour.
    pub color: RGBColor,
    /// Start, seconds.
    pub from: f64,
    /// End, seconds (equal to `from` for an instant).
    pub to: f64,
}

/// Draws lines over time into a PNG at `path`, with `marks` behind them; the
/// time axis spans the data, the legend sits in the upper left (where the
/// soak's series start low) with headroom above the lines.
pub fn timeseries(
    path: &Path,
    title: &str,
    y_desc: &str,
    lines: &[Line],
    marks: &[Mark],
) -> Result<()> {
    load_font()?;
    let xs = || {
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .chain(marks.iter().flat_map(|m| [m.from, m.to]))
    };
    let xmin = xs().fold(f64::INFINITY, f64::min);
    let xmin = if xmin.is_finite() { xmin.floor() } else { 0.0 };
    let xmax = xs().fold(xmin + 1.0, f64::max);
    let ymax = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.35 } else { 1.0 };
    let root = BitMapBackend::new(path, (960, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(xmin..xmax, 0f64..ymax)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start of the soak")
        .y_desc(y_desc)
        .y_label_formatter(&|y| fmt(*y))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let mut legend_done: Vec<&str> = Vec::new();
    for m in marks {
        let c = m.color;
        let series = if m.to > m.from {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(m.from, 0.0), (m.to, ymax)],
                c.mix(0.18).filled(),
            )))
        } else {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(m.from, 0.0), (m.from, ymax)],
                c.mix(0.5).stroke_width(1),
            )))
        }
        .map_err(|e| anyhow!("{e}"))?;
        if !legend_done.contains(&m.label.as_str()) {
            legend_done.push(&m.label);
            series.label(m.label.as_str()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.mix(0.4).filled())
            });
        }
    }
    for l in lines {
        let c = l.color;
        chart
            .draw_series(std::iter::once(PathElement::new(
                l.points.clone(),
                c.stroke_width(2),
            )))
            .map_err(|e| anyhow!("{e}"))?
            .label(l.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_time_series() {
        if load_font().is_err() {
            return; // no system font on this machine; the report says so
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        let lines = [Line {
            label: "a".into(),
            color: RGBColor(200, 0, 0),
            points: (0..100).map(|i| (f64::from(i), f64::from(i % 7))).collect(),
        }];
        let marks = [
            Mark {
                label: "reload".into(),
                color: RGBColor(0, 0, 200),
                from: 10.0,
                to: 10.0,
            },
            Mark {
                label: "flood".into(),
                color: RGBColor(200, 0, 0),
                from: 40.0,
                to: 60.0,
            },
        ];
        timeseries(&path, "t", "u", &lines, &marks).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    }
}
