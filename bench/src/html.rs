//! The HTML report of a result file: one self-contained page (inline CSS,
//! inline SVG drawn with `plotters`, no script, no network asset) with the
//! latency distributions of tally and the Redis rows per scenario and load,
//! the expiry lateness histogram, memory per held license, the server's CPU
//! per request and the figures table; and the plot of one figure's trend
//! across result files (`tally-bench trend --html`).
//!
//! Latency curves are percentile plots: x is the number of nines of the
//! quantile (0 = p0, 1 = p90, 2 = p99, 3 = p99.9, ...), so the tail gets as
//! much room as the body, and y is the latency on a log axis. Each curve is
//! the step-by-step median of the repetitions' ladders
//! ([`crate::results::Ladder::median_of`]); it ends at the maximum, drawn
//! at the nines of one sample in the count.

use std::collections::BTreeMap;
use std::fmt::Write;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::results::{self, Better, Distribution, Entry, Ladder, Report, TrendPoint};

const W: u32 = 860;
const H: u32 = 420;
const FONT: &str = "sans-serif";

/// Series colours: tally, then the Redis rows, then any further series.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn color_of(target: &str, i: usize) -> RGBColor {
    match target {
        "tally" => COLORS[0],
        "redis-lua" | "redis" => COLORS[1],
        "redis-set" => COLORS[2],
        _ => COLORS[(i + 3) % COLORS.len()],
    }
}

type PlotResult = Result<(), String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("plot: {e}")
}

/// Renders `draw` onto a fresh SVG of `w`x`h`; returns the SVG element
/// (without the namespace attribute, which inline SVG in HTML does not
/// need: the page holds no URL at all).
fn svg(
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> PlotResult,
) -> Result<String, String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(s.replace(" xmlns=\"http://www.w3.org/2000/svg\"", ""))
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            _ => o.push(c),
        }
    }
    o
}

/// One named curve of a percentile plot.
struct Curve {
    name: String,
    color: RGBColor,
    ladder: Ladder,
}

/// Points (nines, value) of a ladder: quantiles past one sample's worth of
/// the count are the maximum, which closes the curve at the count's nines.
fn nines_points(l: &Ladder) -> Vec<(f64, f64)> {
    let count = l.count.max(1) as f64;
    let last = count.log10().max(0.5);
    let mut pts = Vec::new();
    for (&q, &v) in l.q.iter().zip(&l.v) {
        if q >= 1.0 {
            pts.push((last, v));
        } else if 1.0 - q >= 1.0 / count {
            pts.push((-(1.0 - q).log10(), v));
        }
    }
    pts
}

fn nines_label(x: f64) -> String {
    let n = x.round() as i32;
    if (x - n as f64).abs() > 1e-6 {
        return String::new();
    }
    match n {
        0 => "p0".into(),
        1 => "p90".into(),
        2 => "p99".into(),
        n => format!("p99.{}", "9".repeat((n - 2) as usize)),
    }
}

fn log_range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.1, 10.0);
    }
    let lo = (lo.max(1e-3) / 1.5).max(1e-3);
    let hi = (hi.max(lo * 10.0)) * 1.5;
    (lo, hi)
}

fn percentile_plot(title: &str, unit: &str, curves: &[Curve]) -> Result<String, String> {
    let pts: Vec<Vec<(f64, f64)>> = curves.iter().map(|c| nines_points(&c.ladder)).collect();
    let xmax = pts
        .iter()
        .flatten()
        .map(|p| p.0)
        .fold(1.0f64, f64::max)
        .ceil();
    let (ylo, yhi) = log_range(pts.iter().flatten().map(|p| p.1));
    svg(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax, (ylo..yhi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .max_light_lines(2)
            .x_labels(xmax as usize + 1)
            .x_label_formatter(&|x| nines_label(*x))
            .x_desc("percentile")
            .y_desc(format!("latency ({unit}, log)"))
            .y_label_formatter(&|y| fmt_log_axis(*y))
            .draw()
            .map_err(err)?;
        for (c, p) in curves.iter().zip(&pts) {
            let color = c.color;
            chart
                .draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))
                .map_err(err)?
                .label(format!(
                    "{} ({} samples)",
                    c.name,
                    fmt_count(c.ladder.count)
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(p.iter().map(|&xy| Circle::new(xy, 2, color.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// A log axis' label: only at 1, 2 and 5 times a power of ten, so the
/// crowded labels near each decade's top stay blank.
fn fmt_log_axis(v: f64) -> String {
    if v <= 0.0 {
        return String::new();
    }
    let m = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|k| (m - k).abs() < 1e-6 * k)
    {
        fmt_axis(v)
    } else {
        String::new()
    }
}

fn fmt_axis(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 1e6 {
        format!("{:.0}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else if v >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut o = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(ch);
    }
    o
}

/// Grouped bars: one group per label, one bar per series (`None`: no bar),
/// each bar with its value written above it.
fn bar_plot(
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[(String, RGBColor, Vec<Option<f64>>)],
) -> Result<String, String> {
    let ymax = series
        .iter()
        .flat_map(|s| s.2.iter().flatten())
        .fold(0f64, |a, &b| a.max(b))
        .max(1e-9)
        * 1.2;
    let n = groups.len().max(1) as f64;
    let k = series.len().max(1) as f64;
    svg(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..n, 0f64..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .max_light_lines(2)
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc(y_desc)
            .y_label_formatter(&|y| fmt_axis(*y))
            .draw()
            .map_err(err)?;
        let bw = 0.8 / k;
        for (si, (name, color, vals)) in series.iter().enumerate() {
            let color = *color;
            let bars: Vec<Rectangle<(f64, f64)>> = vals
                .iter()
                .enumerate()
                .filter_map(|(gi, v)| {
                    let v = (*v)?;
                    let x0 = gi as f64 + 0.1 + si as f64 * bw;
                    Some(Rectangle::new(
                        [(x0, 0.0), (x0 + bw * 0.95, v)],
                        color.filled(),
                    ))
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
            let texts: Vec<Text<'_, (f64, f64), String>> = vals
                .iter()
                .enumerate()
                .filter_map(|(gi, v)| {
                    let v = (*v)?;
                    let x = gi as f64 + 0.1 + si as f64 * bw + bw * 0.475;
                    let style = TextStyle::from((FONT, 12).into_font())
                        .pos(Pos::new(HPos::Center, VPos::Bottom));
                    Some(Text::new(fmt_value(v), (x, v), style))
                })
                .collect();
            chart.draw_series(texts).map_err(err)?;
        }
        // Group labels under the axis, centred under each group.
        let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (gi, g) in groups.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(gi as f64 + 0.5, 0.0));
            root.draw(&Text::new(g.clone(), (px, py + 8), style.clone()))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Histogram outlines of several sample sets on one linear axis, as the
/// share of each set's samples per bin.
fn histogram_plot(
    title: &str,
    unit: &str,
    sets: &[(String, RGBColor, &[f64])],
) -> Result<String, String> {
    const BINS: usize = 40;
    let all = sets.iter().flat_map(|s| s.2.iter().copied());
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo > hi {
        (0.0, 1.0)
    } else {
        (lo.min(0.0), hi.max(lo + 1e-3))
    };
    let width = (hi - lo) / BINS as f64;
    let shares: Vec<Vec<f64>> = sets
        .iter()
        .map(|(_, _, xs)| {
            let mut c = vec![0f64; BINS];
            for &x in *xs {
                let i = (((x - lo) / width) as usize).min(BINS - 1);
                c[i] += 1.0;
            }
            let n = xs.len().max(1) as f64;
            c.iter().map(|v| v * 100.0 / n).collect()
        })
        .collect();
    let ymax = shares.iter().flatten().fold(1f64, |a, &b| a.max(b)) * 1.15;
    svg(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0f64..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .max_light_lines(2)
            .x_desc(format!("lateness ({unit})"))
            .y_desc("% of rounds")
            .draw()
            .map_err(err)?;
        for ((name, color, xs), share) in sets.iter().zip(&shares) {
            let color = *color;
            // A step outline: up and across each bin.
            let mut pts = vec![(lo, 0.0)];
            for (i, &v) in share.iter().enumerate() {
                let x0 = lo + i as f64 * width;
                pts.push((x0, v));
                pts.push((x0 + width, v));
            }
            pts.push((hi, 0.0));
            chart
                .draw_series(
                    AreaSeries::new(pts.iter().copied(), 0.0, color.mix(0.15))
                        .border_style(color.stroke_width(2)),
                )
                .map_err(err)?
                .label(format!("{name} ({} rounds)", xs.len()))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// A figure in the page: a caption and its SVG.
struct Fig {
    caption: String,
    svg: String,
}

fn figure_html(out: &mut String, f: &Fig) {
    let _ = write!(
        out,
        "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
        f.svg,
        esc(&f.caption)
    );
}

fn target_rank(t: &str) -> usize {
    match t {
        "tally" => 0,
        "redis-lua" | "redis" => 1,
        "redis-set" => 2,
        _ => 3,
    }
}

/// Coarse distributions made from a file's percentile entries (`p50_us`,
/// `p90_us`, `p99_us`, `p999_us`, `max_us`; the count from `ok` + `denied`
/// + `err`), for result files written before the ladders were kept.
fn coarse_distributions(r: &Report) -> Vec<Distribution> {
    const STEPS: [(&str, f64); 5] = [
        ("p50_us", 0.5),
        ("p90_us", 0.9),
        ("p99_us", 0.99),
        ("p999_us", 0.999),
        ("max_us", 1.0),
    ];
    let mut out: Vec<Distribution> = Vec::new();
    for e in r.entries.iter().filter(|e| e.metric == "p50_us") {
        let find = |m: &str| {
            r.entries.iter().find(|x| {
                x.scenario == e.scenario
                    && x.variant == e.variant
                    && x.target == e.target
                    && x.metric == m
            })
        };
        let (mut q, mut v) = (Vec::new(), Vec::new());
        for (m, at) in STEPS {
            if let Some(x) = find(m) {
                q.push(at);
                v.push(x.median);
            }
        }
        let reps = e.values.len().max(1) as f64;
        let count = ["ok", "denied", "err"]
            .iter()
            .filter_map(|m| find(m))
            .map(|x| x.values.iter().sum::<f64>() / reps)
            .sum::<f64>();
        out.push(Distribution {
            scenario: e.scenario.clone(),
            variant: e.variant.clone(),
            target: e.target.clone(),
            unit: e.unit.clone(),
            ladders: vec![Ladder {
                count: count.max(1000.0) as u64,
                q,
                v,
            }],
            samples: Vec::new(),
        });
    }
    out
}

/// The latency plots: per (scenario, variant) with a curve per target where
/// a scenario has several targets, else per scenario with a curve per
/// variant. In the order the distributions were measured.
fn latency_figs(r: &Report) -> Result<Vec<Fig>, String> {
    let coarse = if r.distributions.is_empty() {
        coarse_distributions(r)
    } else {
        Vec::new()
    };
    let from = if coarse.is_empty() {
        ""
    } else {
        " Drawn from the file's p50, p90, p99, p99.9 and max only (it predates the ladders)."
    };
    let mut order: Vec<String> = Vec::new();
    let mut by: BTreeMap<String, Vec<&Distribution>> = BTreeMap::new();
    for d in r.distributions.iter().chain(&coarse) {
        if !by.contains_key(&d.scenario) {
            order.push(d.scenario.clone());
        }
        by.entry(d.scenario.clone()).or_default().push(d);
    }
    let mut figs = Vec::new();
    for sc in &order {
        let ds = &by[sc];
        let multi_target = ds.iter().any(|d| d.target != ds[0].target);
        let unit = ds[0].unit.clone();
        if multi_target {
            let mut variants: Vec<&str> = Vec::new();
            for d in ds {
                if !variants.contains(&d.variant.as_str()) {
                    variants.push(&d.variant);
                }
            }
            for v in variants {
                let mut curves: Vec<Curve> = ds
                    .iter()
                    .filter(|d| d.variant == v)
                    .enumerate()
                    .map(|(i, d)| Curve {
                        name: d.target.clone(),
                        color: color_of(&d.target, i),
                        ladder: Ladder::median_of(&d.ladders),
                    })
                    .collect();
                curves.sort_by_key(|c| target_rank(&c.name));
                let title = format!("{sc}: {v}");
                figs.push(Fig {
                    svg: percentile_plot(&title, &unit, &curves)?,
                    caption: format!(
                        "{sc}, {v}: latency by percentile, tally and the Redis rows (median of {} repetition(s) at each step).{from}",
                        r.reps
                    ),
                });
            }
        } else {
            let curves: Vec<Curve> = ds
                .iter()
                .enumerate()
                .map(|(i, d)| Curve {
                    name: d.variant.clone(),
                    color: COLORS[i % COLORS.len()],
                    ladder: Ladder::median_of(&d.ladders),
                })
                .collect();
            let what = if sc == "expiry" {
                "expiry lateness"
            } else {
                "latency"
            };
            figs.push(Fig {
                svg: percentile_plot(&format!("{sc} ({})", ds[0].target), &unit, &curves)?,
                caption: format!(
                    "{sc}: {what} by percentile, one curve per variant ({}).",
                    ds[0].target
                ),
            });
        }
    }
    Ok(figs)
}

/// The expiry lateness histogram from the rounds' samples, or (files
/// without them) bars of the lateness percentiles.
fn expiry_fig(r: &Report) -> Result<Option<Fig>, String> {
    let with_samples: Vec<&Distribution> = r
        .distributions
        .iter()
        .filter(|d| d.scenario == "expiry" && !d.samples.is_empty())
        .collect();
    if !with_samples.is_empty() {
        let unit = with_samples[0].unit.clone();
        let sets: Vec<(String, RGBColor, &[f64])> = with_samples
            .iter()
            .enumerate()
            .map(|(i, d)| {
                (
                    d.variant.clone(),
                    COLORS[i % COLORS.len()],
                    d.samples.as_slice(),
                )
            })
            .collect();
        return Ok(Some(Fig {
            svg: histogram_plot("expiry lateness", &unit, &sets)?,
            caption: "Expiry lateness: grant time of a spinning client minus the announced deadline, every round of every repetition, per number of other lingering licenses held.".into(),
        }));
    }
    let metrics = ["p50_ms", "p99_ms", "p999_ms", "max_ms"];
    let es: Vec<&Entry> = r
        .entries
        .iter()
        .filter(|e| e.scenario == "expiry" && metrics.contains(&e.metric.as_str()))
        .collect();
    if es.is_empty() {
        return Ok(None);
    }
    let mut groups: Vec<String> = Vec::new();
    for e in &es {
        if !groups.contains(&e.variant) {
            groups.push(e.variant.clone());
        }
    }
    let series: Vec<(String, RGBColor, Vec<Option<f64>>)> = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let vals = groups
                .iter()
                .map(|g| {
                    es.iter()
                        .find(|e| &e.variant == g && e.metric == *m)
                        .map(|e| e.median)
                })
                .collect();
            (
                m.trim_end_matches("_ms").to_string(),
                COLORS[i % COLORS.len()],
                vals,
            )
        })
        .collect();
    Ok(Some(Fig {
        svg: bar_plot("expiry lateness percentiles", "lateness (ms)", &groups, &series)?,
        caption: "Expiry lateness percentiles per number of other lingering licenses (this result file keeps no samples: bars instead of a histogram).".into(),
    }))
}

/// Grouped bars of one metric: groups are `scenario variant` (or the
/// variant alone when `scenario` is given), series are targets.
fn metric_bars(
    r: &Report,
    scenario: Option<&str>,
    metric: &str,
    title: &str,
    y_desc: &str,
) -> Result<Option<Fig>, String> {
    let es: Vec<&Entry> = r
        .entries
        .iter()
        .filter(|e| e.metric == metric && scenario.is_none_or(|s| e.scenario == s))
        .collect();
    if es.is_empty() {
        return Ok(None);
    }
    let label = |e: &Entry| match scenario {
        Some(_) => e.variant.clone(),
        None => format!("{} {}", e.scenario, e.variant),
    };
    let mut groups: Vec<String> = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    for e in &es {
        if !groups.contains(&label(e)) {
            groups.push(label(e));
        }
        if !targets.contains(&e.target) {
            targets.push(e.target.clone());
        }
    }
    targets.sort_by_key(|t| target_rank(t));
    let series = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let vals = groups
                .iter()
                .map(|g| {
                    es.iter()
                        .find(|e| &label(e) == g && &e.target == t)
                        .map(|e| e.median)
                })
                .collect();
            (t.clone(), color_of(t, i), vals)
        })
        .collect::<Vec<_>>();
    let unit = es[0].unit.clone();
    Ok(Some(Fig {
        svg: bar_plot(title, &format!("{y_desc} ({unit})"), &groups, &series)?,
        caption: format!("{title} (median of the repetitions; lower is better)."),
    }))
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}\
td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}tr:nth-child(even){background:#f6f6f6}\
figure{margin:1.5em 0}figcaption{font-size:13px;color:#555}svg{max-width:100%;height:auto}\
.meta{font-size:14px;color:#444}";

fn page_start(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(title),
        esc(title)
    );
}

/// The HTML report of `r`.
pub fn report(r: &Report) -> Result<String, String> {
    let mut o = String::new();
    page_start(
        &mut o,
        &format!("tally benchmarks: {} ({})", r.git_sha, r.date),
    );
    let _ = writeln!(
        o,
        "<p class=\"meta\">Command: <code>{}</code>{}. {} repetition(s) per figure. Machine: {} cores, {}, {:.0} GiB, Linux {}. {}</p>",
        esc(&r.command),
        if r.quick { ", <b>QUICK: smoke sizes, not figures</b>" } else { "" },
        r.reps,
        r.machine.nproc,
        esc(&r.machine.cpu),
        r.machine.mem_gib,
        esc(&r.machine.kernel),
        esc(&r.placement)
    );
    let lat = latency_figs(r)?;
    let _ = writeln!(o, "<h2>Latency distributions</h2>");
    if lat.is_empty() {
        let _ = writeln!(o, "<p>No latency measured in this result file.</p>");
    }
    for f in &lat {
        figure_html(&mut o, f);
    }
    if let Some(f) = expiry_fig(r)? {
        let _ = writeln!(o, "<h2>Expiry lateness</h2>");
        figure_html(&mut o, &f);
    }
    // The memory scenario's and the scale scenario's (10 M held) bars.
    if let Some(f) = metric_bars(
        r,
        None,
        "bytes_per_held",
        "memory per held license",
        "RSS growth per held license",
    )? {
        let _ = writeln!(o, "<h2>Memory per held license</h2>");
        figure_html(&mut o, &f);
    }
    if let Some(f) = metric_bars(
        r,
        None,
        "cpu_us_per_req",
        "server CPU per request",
        "server CPU per request",
    )? {
        let _ = writeln!(o, "<h2>Server CPU per request</h2>");
        figure_html(&mut o, &f);
    }
    let _ = writeln!(
        o,
        "<h2>Figures</h2>\n<p>Ratios: &gt; 1 means tally is better (higher throughput, or lower latency/memory/CPU); <code>cpu_ratio</code> rows are tally / Redis (lower is better).</p>"
    );
    let _ = writeln!(
        o,
        "<table>\n<tr><th>scenario</th><th>variant</th><th>metric</th><th>tally</th><th>redis-lua</th><th>redis-set</th><th>tally vs lua</th><th>tally vs set</th></tr>"
    );
    for row in results::table_rows(r) {
        let _ = write!(o, "<tr>");
        for c in &row {
            let _ = write!(o, "<td>{}</td>", esc(c));
        }
        let _ = writeln!(o, "</tr>");
    }
    let _ = writeln!(o, "</table>");
    if !r.skipped.is_empty() || !r.notes.is_empty() {
        let _ = writeln!(o, "<h2>Notes</h2>\n<ul>");
        for k in &r.skipped {
            let _ = writeln!(
                o,
                "<li><b>skipped</b> {}: {}</li>",
                esc(&k.scenario),
                esc(&k.reason)
            );
        }
        for n in &r.notes {
            let _ = writeln!(o, "<li>{}</li>", esc(n));
        }
        let _ = writeln!(o, "</ul>");
    }
    let _ = writeln!(o, "</body>\n</html>");
    Ok(o)
}

/// The page of one figure's trend across result files: its median per
/// file, with a bar from the smallest to the largest repetition, and the
/// trend table.
pub fn trend(sel: &str, points: &[TrendPoint]) -> Result<String, String> {
    let have: Vec<(usize, &TrendPoint, &Entry)> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.entry.as_ref().map(|e| (i, p, e)))
        .collect();
    let Some((_, _, first)) = have.first() else {
        return Err(format!("figure {sel:?}: in none of the files"));
    };
    let unit = first.unit.clone();
    let better = match first.better {
        Better::Higher => "higher is better",
        Better::Lower => "lower is better",
        Better::None => "for the record",
    };
    let n = points.len() as f64;
    let lo = have
        .iter()
        .flat_map(|(_, _, e)| e.values.iter().copied().chain([e.median]))
        .fold(f64::MAX, f64::min)
        .min(0.0);
    let hi = have
        .iter()
        .flat_map(|(_, _, e)| e.values.iter().copied().chain([e.median]))
        .fold(f64::MIN, f64::max)
        .max(lo + 1e-9)
        * 1.15;
    let title = first.key();
    let svg = svg(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&title, (FONT, 16))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..n - 0.5, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .max_light_lines(2)
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc(format!("{} ({unit}), {better}", first.metric))
            .y_label_formatter(&|y| fmt_axis(*y))
            .draw()
            .map_err(err)?;
        let c = COLORS[0];
        chart
            .draw_series(LineSeries::new(
                have.iter().map(|(i, _, e)| (*i as f64, e.median)),
                c.stroke_width(2),
            ))
            .map_err(err)?;
        chart
            .draw_series(have.iter().map(|(i, _, e)| {
                let mn = e.values.iter().copied().fold(e.median, f64::min);
                let mx = e.values.iter().copied().fold(e.median, f64::max);
                PathElement::new(vec![(*i as f64, mn), (*i as f64, mx)], c.stroke_width(1))
            }))
            .map_err(err)?;
        chart
            .draw_series(have.iter().map(|(i, p, e)| {
                let style = if p.quick {
                    c.stroke_width(2)
                } else {
                    c.filled()
                };
                Circle::new((*i as f64, e.median), 4, style)
            }))
            .map_err(err)?;
        let style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (i, p) in points.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64, lo));
            root.draw(&Text::new(p.git_sha.clone(), (px, py + 6), style.clone()))
                .map_err(err)?;
            let day = p.date.split(' ').next().unwrap_or("").to_string();
            root.draw(&Text::new(day, (px, py + 22), style.clone()))
                .map_err(err)?;
        }
        Ok(())
    })?;
    let mut o = String::new();
    page_start(&mut o, &format!("trend: {title}"));
    figure_html(
        &mut o,
        &Fig {
            svg,
            caption: format!(
                "{title}: median per result file (hollow: a --quick run), the vertical bar spans its repetitions; {better}."
            ),
        },
    );
    let _ = writeln!(o, "<pre>{}</pre>", esc(&results::trend_table(sel, points)));
    let _ = writeln!(o, "</body>\n</html>");
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Machine, Skipped};

    fn ladder(scale: f64) -> Ladder {
        let mut h = crate::load::histogram();
        for i in 1..=10_000u64 {
            h.saturating_record((i as f64 * scale) as u64);
        }
        Ladder::from_histogram(&h, 1000.0)
    }

    fn entry(
        scenario: &str,
        variant: &str,
        target: &str,
        metric: &str,
        unit: &str,
        v: f64,
    ) -> Entry {
        let mut e = Entry {
            scenario: scenario.into(),
            variant: variant.into(),
            target: target.into(),
            metric: metric.into(),
            unit: unit.into(),
            better: Better::Lower,
            values: vec![v],
            median: 0.0,
            spread: 0.0,
        };
        e.settle();
        e
    }

    fn sample_report() -> Report {
        let mut dists = Vec::new();
        for v in ["closed 50x1", "closed 4x32"] {
            for (t, s) in [
                ("tally", 1000.0),
                ("redis-lua", 1500.0),
                ("redis-set", 800.0),
            ] {
                dists.push(Distribution {
                    scenario: "steady".into(),
                    variant: v.into(),
                    target: t.into(),
                    unit: "µs".into(),
                    ladders: vec![ladder(s), ladder(s * 1.1), ladder(s * 0.9)],
                    samples: vec![],
                });
            }
        }
        dists.push(Distribution {
            scenario: "expiry".into(),
            variant: "0 other lingers".into(),
            target: "tally".into(),
            unit: "ms".into(),
            ladders: vec![ladder(0.1)],
            samples: (0..100).map(|i| 0.2 + i as f64 * 0.01).collect(),
        });
        Report {
            schema: 2,
            date: "2026-12-07 15:00 UTC".into(),
            git_sha: "abc1234".into(),
            command: "bench/run --quick <&>".into(),
            quick: true,
            reps: 3,
            machine: Machine::default(),
            placement: "pinned".into(),
            entries: vec![
                entry(
                    "steady",
                    "closed 50x1",
                    "tally",
                    "cpu_us_per_req",
                    "µs",
                    3.0,
                ),
                entry(
                    "steady",
                    "closed 50x1",
                    "redis-lua",
                    "cpu_us_per_req",
                    "µs",
                    5.0,
                ),
                entry("memory", "1000 held", "tally", "bytes_per_held", "B", 120.0),
                entry(
                    "memory",
                    "1000 held",
                    "redis-lua",
                    "bytes_per_held",
                    "B",
                    82.0,
                ),
            ],
            skipped: vec![Skipped {
                scenario: "idle".into(),
                reason: "limit <1024>".into(),
            }],
            notes: vec![],
            distributions: dists,
        }
    }

    /// The page is one document with one `<svg>` per figure, every element
    /// it opens closed, and no URL at all (so no network asset).
    fn assert_well_formed(html: &str, figures: usize) {
        assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..40]);
        assert!(html.trim_end().ends_with("</html>"));
        for tag in ["svg", "figure", "table", "body", "html", "head", "style"] {
            let open = html.matches(&format!("<{tag}")).count();
            let close = html.matches(&format!("</{tag}>")).count();
            assert_eq!(open, close, "<{tag}> opened {open}, closed {close}");
        }
        assert_eq!(html.matches("<svg").count(), figures);
        assert_eq!(html.matches("<figure>").count(), figures);
        for asset in [
            "http://", "https://", "<script", "<link", "<img", "src=", "@import",
        ] {
            assert!(!html.contains(asset), "page holds {asset:?}");
        }
    }

    #[test]
    fn report_has_one_svg_per_plot_and_no_url() {
        let html = report(&sample_report()).expect("report");
        // 2 steady loads + expiry percentile curve + expiry histogram +
        // memory bars + CPU bars.
        assert_well_formed(&html, 6);
        assert!(html.contains("steady: closed 4x32"));
        assert!(html.contains("expiry lateness"));
        assert!(html.contains("memory per held license"));
        assert!(html.contains("server CPU per request"));
        // Text from the file is escaped.
        assert!(html.contains("bench/run --quick &lt;&amp;&gt;"));
        assert!(html.contains("limit &lt;1024&gt;"));
        assert!(!html.contains("<&>"));
    }

    #[test]
    fn the_real_result_files_make_a_report() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        let mut n = 0;
        for f in std::fs::read_dir(&dir).expect("bench/results") {
            let p = f.expect("entry").path();
            if p.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let r = results::load(&p).expect("old result file loads");
            let html = report(&r).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let figs = html.matches("<figure>").count();
            assert_well_formed(&html, figs);
            // Every full run measured memory: its bars are there.
            if r.entries.iter().any(|e| e.metric == "bytes_per_held") {
                assert!(html.contains("memory per held license"), "{}", p.display());
            }
            n += 1;
        }
        assert!(n >= 5, "only {n} result files in {}", dir.display());
    }

    #[test]
    fn trend_page_plots_the_figure() {
        let mut files = Vec::new();
        for (i, v) in [100.0, 120.0, 90.0].into_iter().enumerate() {
            let mut r = sample_report();
            r.git_sha = format!("sha{i}");
            r.entries = vec![entry(
                "steady",
                "closed 50x1",
                "tally",
                "ops_per_s",
                "req/s",
                v,
            )];
            files.push((format!("f{i}.json"), r));
        }
        // The middle file lacks it: a gap, not an error.
        files[1].1.entries.clear();
        let pts = results::trend(&files, "steady/50x1/tally/throughput").expect("trend");
        let html = trend("steady/50x1/tally/throughput", &pts).expect("page");
        assert_well_formed(&html, 1);
        assert!(html.contains("sha0") && html.contains("sha2"));
    }
}
