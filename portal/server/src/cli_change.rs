//! `cloudpulse plan ID --set FIELD=VALUE ...`, `cloudpulse apply PLAN_ID` and
//! `cloudpulse drift ID`: changing a live deployment, and finding where it
//! changed past the portal, through the portal's REST API.

use anyhow::{bail, Context};
use clap::Args;
use cloudpulse_app::change::{plan_text, ChangePlan};
use cloudpulse_app::drift::DriftReport;
use serde_json::{Map, Value};

use crate::cli::{follow, Client, PortalArg};

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub portal: PortalArg,
    /// The live deployment's id.
    pub id: String,
    /// A parameter and its new value, e.g. `--set desired=3` or
    /// `--set health_check.interval=10`; repeat for more. With none, the
    /// plan offers only what moved under the stack: a newer Amazon Linux
    /// 2023 than its instances launch.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub portal: PortalArg,
    /// The id `cloudpulse plan` printed.
    pub plan_id: String,
    /// Follow the job until it ends, showing each step.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub portal: PortalArg,
    /// The live deployment's id.
    pub id: String,
    /// Read the stack back from AWS now instead of showing the last check.
    #[arg(long)]
    pub check: bool,
    /// Put every drifted resource back as the parameters say (a job).
    #[arg(long, conflicts_with = "accept")]
    pub repair: bool,
    /// Take a finding's actual value into the parameters; repeat for more.
    #[arg(long, value_name = "FINDING_ID")]
    pub accept: Vec<String>,
    /// With --repair: follow the job until it ends.
    #[arg(long, requires = "repair")]
    pub wait: bool,
}

/// `FIELD=VALUE` pairs as a JSON merge patch: a dotted field nests, a
/// value that reads as a JSON number, boolean or `null` is one, and
/// anything else is text (`nat=single`, `health_check.path=/ok`).
pub fn changes(sets: &[String]) -> anyhow::Result<Value> {
    let mut patch = Map::new();
    for set in sets {
        let Some((field, value)) = set.split_once('=') else {
            bail!("--set {set:?}: write FIELD=VALUE, e.g. --set desired=3");
        };
        let field = field.trim();
        if field.is_empty() || field.split('.').any(str::is_empty) {
            bail!("--set {set:?}: name a parameter before `=`, e.g. --set desired=3");
        }
        let value = match serde_json::from_str::<Value>(value) {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => v,
            _ => Value::String(value.to_string()),
        };
        let mut parts: Vec<&str> = field.split('.').collect();
        let last = parts.pop().unwrap_or(field);
        let mut node = &mut patch;
        for part in parts {
            let child = node
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(child) = child else {
                bail!("--set {set:?}: {part} is set to a value and used as a group");
            };
            node = child;
        }
        node.insert(last.to_string(), value);
    }
    Ok(Value::Object(patch))
}

pub async fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.portal)?.naming_sets();
    let body = changes(&args.set)?;
    let answer = client
        .post(
            &format!("/api/v1/deployments/{}/plan", args.id),
            Some(&body),
        )
        .await?;
    let plan: ChangePlan = serde_json::from_value(answer["plan"].clone())
        .context("unexpected answer from the portal")?;
    print!("{}", render(&plan));
    Ok(())
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.portal)?;
    let answer: Value = client
        .get(&format!("/api/v1/plans/{}", args.plan_id))
        .await?;
    let deployment = answer["plan"]["deployment_id"]
        .as_str()
        .context("unexpected answer from the portal")?;
    let body = serde_json::json!({ "plan_id": args.plan_id });
    let accepted = client
        .post(
            &format!("/api/v1/deployments/{deployment}/apply"),
            Some(&body),
        )
        .await?;
    let job = accepted["job"]["id"].as_str().unwrap_or_default();
    let name = accepted["deployment"]["name"]
        .as_str()
        .unwrap_or(deployment);
    let again = if accepted["fresh"] == false {
        " (applied before)"
    } else {
        ""
    };
    println!(
        "apply of plan {} to {name} accepted{again}; job {job}",
        args.plan_id
    );
    if args.wait {
        follow(&client, job).await?;
    }
    Ok(())
}

pub async fn drift(args: DriftArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.portal)?;
    let path = format!("/api/v1/deployments/{}/drift", args.id);
    if args.repair {
        let accepted = client.post(&format!("{path}/repair"), None).await?;
        let job = accepted["job"]["id"].as_str().unwrap_or_default();
        println!("repair of {} accepted; job {job}", args.id);
        if args.wait {
            follow(&client, job).await?;
        }
        return Ok(());
    }
    let answer: Value = if !args.accept.is_empty() {
        let body = serde_json::json!({ "findings": args.accept });
        client.post(&format!("{path}/accept"), Some(&body)).await?
    } else if args.check {
        client.post(&path, None).await?
    } else {
        client.get(&path).await?
    };
    let report: DriftReport =
        serde_json::from_value(answer).context("unexpected answer from the portal")?;
    print!("{}", render_drift(&report));
    Ok(())
}

/// Rows as columns as wide as their widest cell, two spaces apart.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let rows: Vec<&[String; N]> = std::iter::once(&header).chain(rows).collect();
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The findings as a table, then what to do about them.
pub fn render_drift(report: &DriftReport) -> String {
    let checked = report.checked_at.map_or_else(
        || "not checked yet (cloudpulse drift ID --check)".to_string(),
        |at| format!("checked {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
    );
    if report.findings.is_empty() {
        return format!("no drift: the stack matches its parameters ({checked})\n");
    }
    let rows: Vec<[String; 6]> = report
        .findings
        .iter()
        .map(|f| {
            [
                f.id.clone(),
                format!("{} {}", f.resource_kind, f.resource_id),
                f.field.clone(),
                f.expected.clone(),
                f.actual.clone(),
                f.first_seen.format("%H:%M:%S").to_string(),
            ]
        })
        .collect();
    let mut out = table(
        ["ID", "RESOURCE", "FIELD", "EXPECTED", "ACTUAL", "SINCE"],
        &rows,
    );
    for f in &report.findings {
        out.push_str(&format!("{}: {}\n", f.id, f.breaks));
    }
    let acceptable: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.acceptable)
        .map(|f| f.id.as_str())
        .collect();
    out.push_str(&format!(
        "{} finding(s), {checked}; put them back with: cloudpulse drift {} --repair --wait\n",
        report.findings.len(),
        report.deployment_id
    ));
    if !acceptable.is_empty() {
        out.push_str(&format!(
            "or keep the actual values with: cloudpulse drift {} --accept {}\n",
            report.deployment_id,
            acceptable.join(" --accept ")
        ));
    }
    out
}

/// The plan as a table: one row per changed field, then the notes, the
/// cost and the disruption, and the command that applies it.
pub fn render(plan: &ChangePlan) -> String {
    let text = plan_text(plan);
    let mut out = table(
        ["RESOURCE", "ACTION", "FIELD", "BEFORE", "AFTER"],
        &text.rows,
    );
    for line in &text.lines {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!(
        "plan {}; apply it with: cloudpulse apply {} --wait\n",
        plan.id, plan.id
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sets(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sets_become_a_merge_patch() {
        let patch = changes(&sets(&[
            "desired=3",
            "nat=single",
            "health_check.interval=10",
            "health_check.path=/ok",
            "cost_cap_usd=null",
            "scale_out_cpu=75.5",
        ]))
        .unwrap();
        assert_eq!(
            patch,
            json!({
                "desired": 3, "nat": "single", "cost_cap_usd": null, "scale_out_cpu": 75.5,
                "health_check": { "interval": 10, "path": "/ok" }
            })
        );
    }

    #[test]
    fn a_set_without_a_field_says_how_to_write_one() {
        for bad in ["desired", "=3", "health_check.=1"] {
            let error = changes(&sets(&[bad])).unwrap_err().to_string();
            assert!(error.contains("--set desired=3"), "{bad}: {error}");
        }
        let error = changes(&sets(&["health_check=1", "health_check.path=/x"]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("used as a group"), "{error}");
    }
}
