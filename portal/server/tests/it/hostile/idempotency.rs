//! Idempotency keys belong to one request: an operation on one deployment
//! with one body. Another request under the same key is refused with 422,
//! and never answered with the first request's job.

use super::*;

use serde_json::{json, Value};

async fn keyed(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.post(url).header("idempotency-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_key_is_scoped_to_its_operation_and_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox_at_a_fifth(dir.path(), "keys.db");
    let client = reqwest::Client::new();
    let api = format!("{}/api/v1", portal.url);
    let deployments = format!("{api}/deployments");

    let a_body = json!({ "name": "key-a", "nat": "single" });
    let (status, a) = keyed(&client, &deployments, "key-1", Some(a_body.clone())).await;
    assert_eq!(status, 202, "{a}");
    let a_id = a["deployment"]["id"].as_str().unwrap().to_string();
    // Another body under the same key: refused, nothing created.
    let (status, reused) = keyed(
        &client,
        &deployments,
        "key-1",
        Some(json!({ "name": "key-other", "nat": "single" })),
    )
    .await;
    assert_eq!(status, 422, "{reused}");
    assert_eq!(
        reused["error"]["code"], "idempotency_key_reused",
        "{reused}"
    );
    let (_, list) = get_json(&deployments).await;
    assert_eq!(list["total"], 1, "{list}");
    // The same request again is the same answer.
    let (status, again) = keyed(&client, &deployments, "key-1", Some(a_body)).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["job"]["id"], a["job"]["id"]);
    assert_eq!(again["fresh"], false);

    let (status, b) = post_json(
        &client,
        &deployments,
        json!({ "name": "key-b", "nat": "single" }),
    )
    .await;
    assert_eq!(status, 202, "{b}");
    let b_id = b["deployment"]["id"].as_str().unwrap().to_string();
    for accepted in [&a, &b] {
        let job = accepted["job"]["id"].as_str().unwrap();
        let done = wait_job(&client, &portal.url, job).await;
        assert_eq!(done["status"], "done", "{done}");
    }

    // One key, two teardowns: each deployment gets its own job.
    let (status, a_down) = keyed(
        &client,
        &format!("{deployments}/{a_id}/teardown"),
        "down-1",
        None,
    )
    .await;
    assert_eq!(status, 202, "{a_down}");
    let (status, b_down) = keyed(
        &client,
        &format!("{deployments}/{b_id}/teardown"),
        "down-1",
        None,
    )
    .await;
    assert_eq!(status, 202, "{b_down}");
    assert_ne!(
        a_down["job"]["id"], b_down["job"]["id"],
        "{a_down} {b_down}"
    );
    let b_job = b_down["job"]["id"].as_str().unwrap().to_string();
    let (_, job) = get_json(&format!("{api}/jobs/{b_job}")).await;
    assert_eq!(job["deployment_id"].as_str(), Some(b_id.as_str()), "{job}");
    assert_eq!(job["kind"], "teardown", "{job}");
    // A key used for a deploy means nothing to a teardown, and back.
    let (status, _) = keyed(
        &client,
        &format!("{deployments}/{b_id}/teardown"),
        "key-1",
        None,
    )
    .await;
    assert_eq!(status, 202);
    for job in [&a_down["job"]["id"], &b_down["job"]["id"]] {
        let done = wait_job(&client, &portal.url, job.as_str().unwrap()).await;
        assert_eq!(done["status"], "done", "{done}");
    }
}

#[tokio::test]
async fn the_forms_server_function_applies_the_keys_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[]);
    let path = <cloudpulse_app::pages::new::CreateDeployment as leptos::server_fn::ServerFn>::PATH;
    let body = json!({
        "params": { "name": "long-key" },
        "key": "k".repeat(10_000),
        "from": "",
    })
    .to_string();
    let answer = post(
        port,
        path,
        &format!("127.0.0.1:{port}"),
        &["Sec-Fetch-Site: same-origin"],
        "application/json",
        &body,
    )
    .await;
    assert!(
        answer.body.contains("Idempotency-Key must be 1 to 200"),
        "{} {}",
        answer.status,
        answer.body
    );
}
