//! A feature's chart of daily peak in use against the licensed count, as
//! inline SVG: one bar per day with a peak, the licensed count as a step
//! line over them. Pure: a series and the day it ends on in, text out.

use std::fmt::Write as _;

use chrono::NaiveDate;

use super::{escape, DailyPeak};

/// Width of the plot, SVG user units (the SVG scales to its box).
const WIDTH: f64 = 300.0;
/// Height of the plot.
const HEIGHT: f64 = 100.0;
/// Room left of the plot for the scale's labels, and under it for dates.
const LEFT: f64 = 28.0;
const BELOW: f64 = 14.0;

/// The chart of `series` over the `days` days that end with `today`
/// (days of the series outside them are left out), titled `title`.
pub(crate) fn svg(title: &str, series: &[DailyPeak], days: u32, today: NaiveDate) -> String {
    let days = days.max(1);
    let first = today - chrono::Days::new(u64::from(days - 1));
    let shown: Vec<&DailyPeak> = series
        .iter()
        .filter(|d| d.day >= first && d.day <= today)
        .collect();
    let top = shown
        .iter()
        .map(|d| d.peak.max(d.licensed))
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = WIDTH / f64::from(days);
    let x = |day: NaiveDate| LEFT + (day - first).num_days() as f64 * slot;
    let y = |v: u32| HEIGHT - f64::from(v) / f64::from(top) * HEIGHT;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{t}</title>",
        w = LEFT + WIDTH + 2.0,
        h = HEIGHT + BELOW,
        t = escape(title),
    );
    let _ = write!(
        out,
        "<rect class=\"plot\" x=\"{LEFT}\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\"/>"
    );
    for d in &shown {
        let top_y = y(d.peak);
        let _ = write!(
            out,
            "<rect class=\"peak\" x=\"{:.1}\" y=\"{top_y:.1}\" width=\"{:.1}\" height=\"{:.1}\">\
             <title>{}: peak {} of {}</title></rect>",
            x(d.day),
            (slot * 0.8).max(0.5),
            HEIGHT - top_y,
            d.day,
            d.peak,
            d.licensed,
        );
    }
    if !shown.is_empty() {
        out.push_str("<polyline class=\"licensed\" points=\"");
        for d in &shown {
            let (x0, yl) = (x(d.day), y(d.licensed));
            let _ = write!(out, "{x0:.1},{yl:.1} {:.1},{yl:.1} ", x0 + slot);
        }
        out.push_str("\"/>");
    }
    let _ = write!(
        out,
        "<text x=\"{lx}\" y=\"8\" text-anchor=\"end\">{top}</text>\
         <text x=\"{lx}\" y=\"{HEIGHT}\" text-anchor=\"end\">0</text>\
         <text x=\"{LEFT}\" y=\"{by}\">{first}</text>\
         <text x=\"{rx}\" y=\"{by}\" text-anchor=\"end\">{today}</text></svg>",
        lx = LEFT - 3.0,
        by = HEIGHT + BELOW - 2.0,
        rx = LEFT + WIDTH,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn bars_and_the_licensed_line_are_placed_by_day_and_scale() {
        let series = [
            DailyPeak {
                day: day("2026-11-29"), // before the window: left out
                peak: 50,
                licensed: 50,
            },
            DailyPeak {
                day: day("2026-11-30"),
                peak: 5,
                licensed: 10,
            },
            DailyPeak {
                day: day("2026-12-02"),
                peak: 10,
                licensed: 10,
            },
        ];
        // Three days: 11-30, 12-01, 12-02; 100 units a day; top = 10.
        let s = svg("<F> 3 days", &series, 3, day("2026-12-02"));
        assert!(s.starts_with("<svg"), "{s}");
        assert!(s.contains("<title>&lt;F&gt; 3 days</title>"), "{s}");
        assert!(
            s.contains(
                "<rect class=\"peak\" x=\"28.0\" y=\"50.0\" width=\"80.0\" height=\"50.0\">"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "<rect class=\"peak\" x=\"228.0\" y=\"0.0\" width=\"80.0\" height=\"100.0\">"
            ),
            "{s}"
        );
        assert!(
            s.contains("points=\"28.0,0.0 128.0,0.0 228.0,0.0 328.0,0.0 \""),
            "{s}"
        );
        assert_eq!(s.matches("class=\"peak\"").count(), 2, "{s}");
        assert!(
            s.contains(">10</text>") && s.contains(">2026-11-30</text>"),
            "{s}"
        );
        assert!(s.ends_with("</svg>"));
    }

    #[test]
    fn an_empty_series_draws_an_empty_plot() {
        let s = svg("F", &[], 30, day("2026-12-02"));
        assert!(
            !s.contains("class=\"peak\"") && !s.contains("polyline"),
            "{s}"
        );
        assert!(s.contains(">2026-11-03</text>"), "{s}");
    }
}
