//! The dashboard page: server-rendered HTML with no external assets.
//!
//! The strict CSP allows scripts and styles only from this origin, so the
//! style and the small refresh script are served from `/dashboard.css` and
//! `/dashboard.js`. The script fetches the page again every refresh interval
//! and swaps in its `<main>`; through the load balancer each fetch may land
//! on another instance, and the "served by" line shows which one did.
//! Without JavaScript a `<noscript>` meta refresh does the same.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;

use crate::group::{GroupView, ScalingActivity};
use crate::host::Memory;
use crate::identity::Identity;
use crate::traffic::Rate;

pub const SCRIPT: &str = include_str!("dashboard.js");
pub const STYLE: &str = include_str!("dashboard.css");

pub struct Page<'a> {
    pub asg_name: &'a str,
    pub identity: Result<Identity, String>,
    pub uptime: Duration,
    pub cpu_percent: Option<f64>,
    pub memory: Memory,
    pub rate: Rate,
    pub group: Result<GroupView, String>,
    pub activities: Result<Vec<ScalingActivity>, String>,
    pub refresh: Duration,
    pub draining: bool,
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `H:MM:SS`, hours unpadded, as the original shows uptime.
pub fn clock(duration: Duration) -> String {
    let total = duration.as_secs();
    format!(
        "{}:{:02}:{:02}",
        total / 3600,
        (total / 60) % 60,
        total % 60
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn load_class(percent: f64) -> &'static str {
    if percent < 50.0 {
        "low"
    } else if percent < 80.0 {
        "medium"
    } else {
        "high"
    }
}

fn error_box(out: &mut String, testid: &str, message: &str) {
    let _ = write!(
        out,
        r#"<p class="error-box" data-testid="{testid}-error">Unavailable: {}</p>"#,
        escape(message)
    );
}

fn now_iso() -> String {
    DateTime::from(SystemTime::now())
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

pub fn render(page: &Page) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let refresh_ms = page.refresh.as_millis();
    let refresh_s = page.refresh.as_secs().max(1);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CloudPulse - Infrastructure Health Dashboard</title>
<link rel="stylesheet" href="/dashboard.css">
<noscript><meta http-equiv="refresh" content="{refresh_s}"></noscript>
<script src="/dashboard.js" defer></script>
</head>
<body data-refresh-ms="{refresh_ms}">
<header><h1>CloudPulse</h1><p class="subtitle">Auto Scaling group <strong>{asg}</strong></p></header>
<main>
"#,
        asg = escape(page.asg_name),
    );

    // Which instance answered: the point of refreshing through the ALB.
    let served_by = match &page.identity {
        Ok(identity) => format!(
            "{} ({})",
            escape(&identity.instance_id),
            escape(&identity.availability_zone)
        ),
        Err(_) => "an instance that does not know its identity".into(),
    };
    let _ = writeln!(
        out,
        r#"<p class="served-by" data-testid="served-by">Served by <strong>{served_by}</strong> at {}{}</p>"#,
        now_iso(),
        if page.draining {
            r#" <span class="draining">draining</span>"#
        } else {
            ""
        }
    );

    out.push_str("<div class=\"grid\">\n");
    render_instance(&mut out, page);
    render_capacity(&mut out, page);
    out.push_str("</div>\n");
    render_instances(&mut out, page);
    render_activities(&mut out, page);

    let _ = write!(
        out,
        r#"</main>
<footer>CloudPulse | Updates every {refresh_s}s</footer>
</body>
</html>
"#
    );
    out
}

fn render_instance(out: &mut String, page: &Page) {
    out.push_str(r#"<section class="card" data-testid="this-instance"><h2>Current Instance</h2>"#);
    match &page.identity {
        Ok(identity) => {
            let _ = write!(
                out,
                "<dl><dt>Instance ID</dt><dd>{}</dd><dt>Availability Zone</dt><dd>{}</dd>",
                escape(&identity.instance_id),
                escape(&identity.availability_zone)
            );
        }
        Err(message) => {
            error_box(out, "identity", message);
            out.push_str("<dl>");
        }
    }
    let _ = write!(out, "<dt>Uptime</dt><dd>{}</dd>", clock(page.uptime));
    match page.cpu_percent {
        Some(cpu) => {
            let _ = write!(
                out,
                r#"<dt>CPU Usage</dt><dd>{cpu:.1}% <progress class="{}" max="100" value="{}"></progress></dd>"#,
                load_class(cpu),
                cpu.min(100.0)
            );
        }
        None => out.push_str("<dt>CPU Usage</dt><dd>unknown</dd>"),
    }
    let memory = match (page.memory.process_rss, page.memory.used_percent()) {
        (Some(rss), Some(host)) => format!("{} (process), host {host:.1}% used", mib(rss)),
        (Some(rss), None) => format!("{} (process)", mib(rss)),
        _ => "unknown".into(),
    };
    let _ = write!(out, "<dt>Memory</dt><dd>{memory}</dd>");
    let p99 = page
        .rate
        .p99_ms
        .map_or_else(|| "no requests".into(), |ms| format!("{ms:.1} ms"));
    let _ = writeln!(
        out,
        "<dt>Requests/s</dt><dd>{:.1}</dd><dt>p99 latency</dt><dd>{p99}</dd></dl></section>",
        page.rate.per_second
    );
}

fn render_capacity(out: &mut String, page: &Page) {
    out.push_str(r#"<section class="card" data-testid="capacity"><h2>ASG Capacity</h2>"#);
    match &page.group {
        Ok(GroupView {
            capacity: Some(c), ..
        }) => {
            let _ = write!(
                out,
                "<dl class=\"capacity\"><dt>Min</dt><dd>{}</dd><dt>Max</dt><dd>{}</dd><dt>Desired</dt><dd>{}</dd><dt>Actual</dt><dd>{}</dd></dl>",
                c.min, c.max, c.desired, c.actual
            );
        }
        Ok(GroupView { capacity: None, .. }) => {
            let _ = write!(
                out,
                "<p class=\"empty\">Auto Scaling group {} not found.</p>",
                escape(page.asg_name)
            );
        }
        Err(message) => error_box(out, "capacity", message),
    }
    out.push_str("</section>\n");
}

fn render_instances(out: &mut String, page: &Page) {
    out.push_str(r#"<section class="card wide" data-testid="instances"><h2>Instance Health</h2>"#);
    let me = page.identity.as_ref().ok().map(|i| i.instance_id.as_str());
    match &page.group {
        Ok(view) if view.instances.is_empty() => {
            out.push_str("<p class=\"empty\">No instances found.</p>");
        }
        Ok(view) => {
            out.push_str("<table><thead><tr><th>Instance ID</th><th>State</th><th>Health Status</th><th>Availability Zone</th></tr></thead><tbody>");
            for instance in &view.instances {
                let health_class = if instance.health_status.eq_ignore_ascii_case("healthy") {
                    "status-healthy"
                } else {
                    "status-unhealthy"
                };
                let mine = if me == Some(instance.instance_id.as_str()) {
                    r#" class="me""#
                } else {
                    ""
                };
                let _ = write!(
                    out,
                    r#"<tr{mine}><td>{}</td><td>{}</td><td class="{health_class}">{}</td><td>{}</td></tr>"#,
                    escape(&instance.instance_id),
                    escape(&instance.state),
                    escape(&instance.health_status),
                    escape(&instance.availability_zone)
                );
            }
            out.push_str("</tbody></table>");
        }
        Err(message) => error_box(out, "instances", message),
    }
    out.push_str("</section>\n");
}

fn render_activities(out: &mut String, page: &Page) {
    out.push_str(
        r#"<section class="card wide" data-testid="activities"><h2>Recent Scaling Events</h2>"#,
    );
    match &page.activities {
        Ok(activities) if activities.is_empty() => {
            out.push_str("<p class=\"empty\">No recent scaling events.</p>");
        }
        Ok(activities) => {
            out.push_str("<table><thead><tr><th>Timestamp</th><th>Description</th><th>Status</th></tr></thead><tbody>");
            for activity in activities {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&activity.start_time),
                    escape(&activity.description),
                    escape(&activity.status)
                );
            }
            out.push_str("</tbody></table>");
        }
        Err(message) => error_box(out, "activities", message),
    }
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{Capacity, GroupInstance};

    fn page<'a>() -> Page<'a> {
        Page {
            asg_name: "asg<1>",
            identity: Ok(Identity {
                instance_id: "i-1".into(),
                availability_zone: "us-east-1a".into(),
            }),
            uptime: Duration::from_secs(3723),
            cpu_percent: Some(12.34),
            memory: Memory::default(),
            rate: Rate {
                per_second: 2.0,
                p99_ms: Some(1.5),
            },
            group: Ok(GroupView {
                instances: vec![GroupInstance {
                    instance_id: "i-1".into(),
                    state: "running".into(),
                    health_status: "Healthy".into(),
                    availability_zone: "us-east-1a".into(),
                }],
                capacity: Some(Capacity {
                    min: 1,
                    max: 3,
                    desired: 2,
                    actual: 1,
                }),
            }),
            activities: Err("<script>boom</script>".into()),
            refresh: Duration::from_millis(30_000),
            draining: false,
        }
    }

    #[test]
    fn renders_every_section_and_escapes() {
        let html = render(&page());
        assert!(html.contains("Served by <strong>i-1 (us-east-1a)</strong>"));
        assert!(html.contains("1:02:03"));
        assert!(html.contains("12.3%"));
        assert!(html.contains("asg&lt;1&gt;"));
        assert!(html.contains("<dt>Desired</dt><dd>2</dd>"));
        assert!(html.contains(r#"<td class="status-healthy">Healthy</td>"#));
        assert!(html.contains("Unavailable: &lt;script&gt;boom&lt;/script&gt;"));
        assert!(!html.contains("<script>boom"));
        assert!(html.contains(r#"data-refresh-ms="30000""#));
        // No inline script or style: the CSP would block them.
        assert!(!html.contains("<script>"));
        assert!(!html.contains("style="));
    }

    #[test]
    fn clock_format() {
        assert_eq!(clock(Duration::from_secs(5)), "0:00:05");
        assert_eq!(clock(Duration::from_secs(90061)), "25:01:01");
    }
}
