//! Time charts drawn as SVG by the server and redrawn in the browser when
//! new samples arrive: lines over a time axis, threshold rules, bands for
//! states (an alarm firing) and markers for moments (a scaling activity).
//! No chart library: the pages need a handful of shapes and legible axes.

use chrono::DateTime;
use leptos::prelude::*;

use crate::text::{fixed, plain};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// One series as drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub label: String,
    /// CSS class giving its colour and dash.
    pub class: &'static str,
    /// `(unix seconds, value)`.
    pub points: Vec<(i64, f64)>,
}

/// A horizontal rule at a value: an alarm's threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub value: f64,
    pub class: &'static str,
    pub label: String,
}

/// A span of time drawn across the chart's height: an alarm in ALARM.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    pub from: i64,
    pub to: i64,
    pub class: &'static str,
    pub label: String,
}

/// A moment: a scaling activity, a chaos action, a recovery.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub at: i64,
    pub text: String,
}

/// Maps time and value onto the drawing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    pub from: i64,
    pub to: i64,
    pub y_max: f64,
}

impl Frame {
    pub fn x(&self, at: i64) -> f64 {
        let span = (self.to - self.from).max(1) as f64;
        let share = ((at - self.from) as f64 / span).clamp(0.0, 1.0);
        LEFT + share * (WIDTH - LEFT - RIGHT)
    }

    pub fn y(&self, value: f64) -> f64 {
        let share = if self.y_max > 0.0 {
            (value / self.y_max).clamp(0.0, 1.0)
        } else {
            0.0
        };
        HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM)
    }

    /// The polyline's `points` attribute.
    pub fn path(&self, points: &[(i64, f64)]) -> String {
        points
            .iter()
            .map(|(at, v)| format!("{},{}", fixed(self.x(*at), 1), fixed(self.y(*v), 1)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A y-axis top that is a round number at or above `max`: 1, 2, 5 × 10^n.
pub fn nice_max(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|top| *top >= max - 1e-9)
        .unwrap_or(10.0 * magnitude)
}

/// How a tick reads: `14:05:09` over a few minutes, `14:05` over hours,
/// `11-30 14:05` over days.
fn time_label(at: i64, span: i64) -> String {
    let Some(time) = DateTime::from_timestamp(at, 0) else {
        return String::new();
    };
    let clock = crate::text::clock(time);
    if span <= 600 {
        return clock;
    }
    let short = &clock[..5];
    if span > 24 * 3600 {
        let date = crate::text::utc(time, false);
        format!("{} {short}", &date[5..10])
    } else {
        short.to_string()
    }
}

/// A time chart. `y_max` of `None` fits the data.
#[component]
pub fn TimeChart(
    title: String,
    testid: &'static str,
    from: i64,
    to: i64,
    #[prop(optional)] y_max: Option<f64>,
    #[prop(optional)] unit: &'static str,
    lines: Vec<Line>,
    #[prop(optional)] rules: Vec<Rule>,
    #[prop(optional)] bands: Vec<Band>,
    #[prop(optional)] marks: Vec<Mark>,
) -> impl IntoView {
    let highest = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(rules.iter().map(|r| r.value))
        .fold(0.0f64, f64::max);
    let frame = Frame {
        from,
        to: to.max(from + 1),
        y_max: y_max.unwrap_or_else(|| nice_max(highest)),
    };
    let points: usize = lines.iter().map(|l| l.points.len()).sum();
    let span = to - from;
    let x_ticks: Vec<i64> = (0..=4).map(|i| from + (to - from) * i / 4).collect();
    let y_ticks: Vec<f64> = (0..=4).map(|i| frame.y_max * f64::from(i) / 4.0).collect();
    let summary = format!(
        "{title}: {}",
        lines
            .iter()
            .map(|l| match l.points.last() {
                Some((_, v)) => format!("{} {}{unit}", l.label, plain((v * 10.0).round() / 10.0)),
                None => format!("{} no data", l.label),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let legend: Vec<(String, &'static str)> = lines
        .iter()
        .map(|l| (l.label.clone(), l.class))
        .chain(bands.iter().map(|b| (b.label.clone(), b.class)))
        .fold(Vec::new(), |mut seen, item| {
            if !seen.iter().any(|(label, _)| *label == item.0) {
                seen.push(item);
            }
            seen
        });
    view! {
        <figure class="chart" data-testid=testid data-points=points>
            <figcaption>{title.clone()}</figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=summary>
                {bands.into_iter().map(|b| {
                    let x = frame.x(b.from);
                    let w = (frame.x(b.to) - x).max(1.0);
                    view! {
                        <rect class=format!("band {}", b.class) x=fixed(x, 1) y=TOP
                            width=fixed(w, 1) height=HEIGHT - TOP - BOTTOM>
                            <title>{b.label}</title>
                        </rect>
                    }
                }).collect_view()}
                {y_ticks.into_iter().map(|v| {
                    let y = fixed(frame.y(v), 1);
                    view! {
                        <line class="grid" x1=LEFT x2=WIDTH - RIGHT y1=y.clone() y2=y.clone()/>
                        <text class="tick" x=LEFT - 6.0 y=y text-anchor="end" dominant-baseline="middle">
                            {format!("{}{unit}", plain((v * 100.0).round() / 100.0))}
                        </text>
                    }
                }).collect_view()}
                {x_ticks.into_iter().map(|at| view! {
                    <text class="tick" x=fixed(frame.x(at), 1) y=HEIGHT - 8.0 text-anchor="middle">
                        {time_label(at, span)}
                    </text>
                }).collect_view()}
                <line class="axis" x1=LEFT x2=LEFT y1=TOP y2=HEIGHT - BOTTOM/>
                <line class="axis" x1=LEFT x2=WIDTH - RIGHT y1=HEIGHT - BOTTOM y2=HEIGHT - BOTTOM/>
                {rules.into_iter().map(|r| {
                    let y = fixed(frame.y(r.value), 1);
                    view! {
                        <line class=format!("rule {}", r.class) x1=LEFT x2=WIDTH - RIGHT y1=y.clone() y2=y.clone()/>
                        <text class="rule-label" x=WIDTH - RIGHT - 4.0 y=y text-anchor="end" dy="-4">{r.label}</text>
                    }
                }).collect_view()}
                {marks.into_iter().map(|m| {
                    let x = fixed(frame.x(m.at), 1);
                    view! {
                        <line class="marker" x1=x.clone() x2=x y1=TOP y2=HEIGHT - BOTTOM>
                            <title>{m.text}</title>
                        </line>
                    }
                }).collect_view()}
                {lines.into_iter().map(|l| {
                    let single = (l.points.len() == 1).then(|| l.points[0]);
                    view! {
                        <polyline class=format!("series {}", l.class) points=frame.path(&l.points)
                            data-points=l.points.len()>
                            <title>{l.label.clone()}</title>
                        </polyline>
                        {single.map(|(at, v)| view! {
                            <circle class=format!("series {}", l.class) cx=fixed(frame.x(at), 1) cy=fixed(frame.y(v), 1) r="3"/>
                        })}
                    }
                }).collect_view()}
                {(points == 0).then(|| view! {
                    <text class="empty-chart" x=WIDTH / 2.0 y=HEIGHT / 2.0 text-anchor="middle">
                        "No samples in this range yet"
                    </text>
                })}
            </svg>
            <ul class="legend">
                {legend.into_iter().map(|(label, class)| view! {
                    <li><span class=format!("swatch {class}")></span>{label}</li>
                }).collect_view()}
            </ul>
        </figure>
    }
}

/// Spans where `points` (a state as a number) is at least `threshold`,
/// each lasting until the next point, the last one until `to`.
pub fn spans_at_least(points: &[(i64, f64)], threshold: f64, to: i64) -> Vec<(i64, i64)> {
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for (i, (at, value)) in points.iter().enumerate() {
        let end = points.get(i + 1).map_or(to, |next| next.0);
        if *value >= threshold {
            match spans.last_mut() {
                Some(last) if last.1 == *at => last.1 = end,
                _ => spans.push((*at, end)),
            }
        }
    }
    spans
}

/// The class of a target-health value (see the telemetry's encoding).
fn target_class(value: f64) -> &'static str {
    if value >= 0.75 {
        "healthy"
    } else if value >= 0.2 {
        "starting"
    } else {
        "unhealthy"
    }
}

/// A state series as runs of one class: `(from, to, class)`, each point
/// lasting until the next one, the last until `to`.
pub fn states(points: &[(i64, f64)], to: i64) -> Vec<(i64, i64, &'static str)> {
    let mut runs: Vec<(i64, i64, &'static str)> = Vec::new();
    for (i, (at, value)) in points.iter().enumerate() {
        let end = points.get(i + 1).map_or(to, |next| next.0);
        let class = target_class(*value);
        match runs.last_mut() {
            Some(last) if last.2 == class && last.1 == *at => last.1 = end,
            _ => runs.push((*at, end, class)),
        }
    }
    runs
}

/// One row per instance: its target health over time.
#[component]
pub fn TargetTimeline(from: i64, to: i64, rows: Vec<(String, Vec<(i64, f64)>)>) -> impl IntoView {
    let frame = Frame {
        from,
        to: to.max(from + 1),
        y_max: 1.0,
    };
    if rows.is_empty() {
        return view! { <p class="muted" data-testid="targets-timeline">"No target has been seen in this range."</p> }
            .into_any();
    }
    view! {
        <div class="targets" data-testid="targets-timeline">
            {rows.into_iter().map(|(instance, points)| {
                let segments: Vec<(f64, f64, &'static str)> = states(&points, to).into_iter().map(|(a, b, class)| {
                    let x = frame.x(a);
                    (x, (frame.x(b) - x).max(1.0), class)
                }).collect();
                view! {
                    <div class="target-row">
                        <code>{instance.clone()}</code>
                        <svg viewBox=format!("0 0 {WIDTH} 12") preserveAspectRatio="none" role="img"
                            aria-label=format!("target health of {instance}")>
                            {segments.into_iter().map(|(x, w, class)| view! {
                                <rect class=format!("health {class}") x=fixed(x, 1) y="0" width=fixed(w, 1) height="12"/>
                            }).collect_view()}
                        </svg>
                    </div>
                }
            }).collect_view()}
            <ul class="legend">
                <li><span class="swatch health healthy"></span>"healthy"</li>
                <li><span class="swatch health starting"></span>"initial or draining"</li>
                <li><span class="swatch health unhealthy"></span>"unhealthy"</li>
            </ul>
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn y_axes_end_on_round_numbers() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(70.0), 100.0);
        assert_eq!(nice_max(100.0), 100.0);
        assert_eq!(nice_max(0.42), 0.5);
        assert_eq!(nice_max(2.2), 2.5);
    }

    #[test]
    fn points_land_inside_the_plot() {
        let frame = Frame {
            from: 100,
            to: 200,
            y_max: 100.0,
        };
        assert_eq!(frame.x(100), LEFT);
        assert_eq!(frame.x(200), WIDTH - RIGHT);
        assert_eq!(frame.x(50), LEFT, "before the range is clamped");
        assert_eq!(frame.y(0.0), HEIGHT - BOTTOM);
        assert_eq!(frame.y(100.0), TOP);
        assert_eq!(
            frame.path(&[(100, 0.0), (200, 100.0)]),
            "48.0,194.0 708.0,10.0"
        );
    }

    #[test]
    fn target_states_merge_into_runs() {
        let target = [(0, 0.5), (5, 1.0), (10, 1.0), (15, 0.0)];
        assert_eq!(
            states(&target, 20),
            vec![
                (0, 5, "starting"),
                (5, 15, "healthy"),
                (15, 20, "unhealthy")
            ]
        );
    }

    #[test]
    fn ticks_read_at_the_span_s_grain() {
        let at = 1_796_036_019; // 2026-11-30 10:53:39 UTC
        assert_eq!(time_label(at, 300), "10:53:39");
        assert_eq!(time_label(at, 3600), "10:53");
        assert_eq!(time_label(at, 3 * 86_400), "11-30 10:53");
    }

    #[test]
    fn states_become_spans_until_the_next_point() {
        let alarm = [(0, 0.0), (10, 1.0), (20, 1.0), (30, 0.0), (40, 1.0)];
        assert_eq!(spans_at_least(&alarm, 0.5, 50), vec![(10, 30), (40, 50)]);
        assert!(spans_at_least(&[(0, 0.0)], 0.5, 10).is_empty());
    }
}
