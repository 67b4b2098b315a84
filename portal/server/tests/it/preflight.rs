//! The preflight of a real sandbox portal: over the API, before a deploy
//! (a failed check refuses it and creates nothing), on the new-deployment
//! page, and on the command line.

use crate::common;

use common::*;
use serde_json::{json, Value};

fn names_with(preflight: &Value, status: &str) -> Vec<String> {
    preflight["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_preflight_answers_blocks_a_doomed_deploy_and_prints_on_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox_at_a_fifth(dir.path(), "preflight.db");
    let client = reqwest::Client::new();
    let api = format!("{}/api/v1", portal.url);

    // The defaults, from an empty body.
    let started = std::time::Instant::now();
    let (status, ok) = post_json(&client, &format!("{api}/preflight"), json!({})).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["ok"], true, "{ok:#}");
    assert!(ok["checked_at"].is_string());
    let passed = names_with(&ok, "pass");
    for name in ["Credentials", "Region", "Amazon Linux 2023 image"] {
        assert!(passed.contains(&name.to_string()), "{name}: {ok:#}");
    }
    println!("preflight of the defaults: {:?}", started.elapsed());

    // Parameters that cannot deploy: 200 with the failed checks. The
    // region is one of AWS's (the only names the portal reads) that the
    // sandbox's EC2 does not offer.
    let (status, doomed) = post_json(
        &client,
        &format!("{api}/preflight"),
        json!({ "region": "eusc-de-east-1" }),
    )
    .await;
    assert_eq!(status, 200, "{doomed}");
    assert_eq!(doomed["ok"], false);
    assert_eq!(names_with(&doomed, "fail"), vec!["Region".to_string()]);

    // Invalid parameters are refused as such, before any check.
    let (status, invalid) =
        post_json(&client, &format!("{api}/preflight"), json!({ "azs": 7 })).await;
    assert_eq!(status, 400, "{invalid}");
    assert_eq!(invalid["error"]["code"], "validation");

    // A deploy whose preflight fails is refused with the check's hint.
    let (status, refused) = post_json(
        &client,
        &format!("{api}/deployments"),
        json!({ "name": "nowhere", "region": "eusc-de-east-1" }),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "preflight_failed");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("Region"), "{message}");
    assert!(message.contains("choose one of"), "{message}");
    assert!(message.contains("us-east-1"), "{message}");
    assert_eq!(refused["error"]["preflight"]["ok"], false);
    // Nothing was created: no deployment, no VPC beyond the default one.
    let (_, list) = get_json(&format!("{api}/deployments")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
    let (_, orphans) = get_json(&format!("{api}/orphans")).await;
    assert_eq!(
        orphans["orphans"].as_array().map_or(0, Vec::len),
        0,
        "{orphans}"
    );

    // The new-deployment page shows the checklist for the defaults.
    let page = client
        .get(format!("{}/new", portal.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"data-testid="preflight""#), "{page}");
    assert!(page.contains("Amazon Linux 2023 image"), "{page}");
    assert!(page.contains("nothing blocks a deploy"), "{page}");

    // The command line prints the checklist; a failed check exits with 1.
    let cli = |args: &[&str]| {
        let mut command = std::process::Command::new(BIN);
        command.args(args).env("CLOUDPULSE_URL", &portal.url);
        isolated(&mut command, dir.path());
        command.output().unwrap()
    };
    let fine = cli(&["preflight"]);
    let stdout = String::from_utf8_lossy(&fine.stdout);
    assert!(
        fine.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&fine.stderr)
    );
    assert!(stdout.contains("PASS  Credentials:"), "{stdout}");
    assert!(stdout.contains("PASS  Quota: VPCs per region:"), "{stdout}");
    assert!(
        stdout.contains("WARN  Quota: On-Demand standard vCPUs: not checked"),
        "{stdout}"
    );
    assert!(stdout.contains("ready:"), "{stdout}");
    println!("{stdout}");

    let bad = cli(&[
        "preflight",
        "--region",
        "eusc-de-east-1",
        "--max",
        "6",
        "--nat",
        "single",
    ]);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  Region: eusc-de-east-1"), "{stdout}");
    assert!(stdout.contains("-> choose one of"), "{stdout}");
    assert!(one_line_error(&bad).contains("1 check failed"));
}
