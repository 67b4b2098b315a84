//! Deploys that arrive together: one lock over the count of what stands
//! and the create, and a cap on what may stand at once.

use super::*;

use serde_json::json;

#[tokio::test]
async fn parallel_deploys_beyond_max_live_are_refused_with_429() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cap.db");
    let portal = start(
        &on_free_port("sandbox", &db, &["--time-scale", "0.2", "--max-live", "2"]),
        dir.path(),
        &[],
    );
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/deployments", portal.url);
    let answers = futures_util::future::join_all((1..=3).map(|n| {
        let client = client.clone();
        let url = url.clone();
        async move {
            post_json(
                &client,
                &url,
                json!({ "name": format!("cap-{n}"), "nat": "single" }),
            )
            .await
        }
    }))
    .await;
    let accepted = answers.iter().filter(|(status, _)| *status == 202).count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 429)
        .collect();
    assert_eq!(accepted, 2, "{answers:?}");
    assert_eq!(refused.len(), 1, "{answers:?}");
    let body = &refused[0].1;
    assert_eq!(body["error"]["code"], "too_many_deployments", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("--max-live 2"), "{message}");
    assert!(message.contains("tear one down"), "{message}");
    let (_, list) = get_json(&url).await;
    assert_eq!(
        list["total"], 2,
        "nothing was created for the refused one: {list}"
    );
}
