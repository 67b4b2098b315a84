//! The budget form's `back=` sends the browser on after the change; it may
//! only ever send it to the deployment's page or the list the form is on.

use super::*;

async fn back_to(port: u16, back: &str) -> String {
    let encoded: String = back
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let answer = post(
        port,
        "/deployments/d-1/budget",
        &format!("127.0.0.1:{port}"),
        &["Sec-Fetch-Site: same-origin"],
        "application/x-www-form-urlencoded",
        &format!("extend_minutes=30&back={encoded}"),
    )
    .await;
    assert_eq!(answer.status, 303, "{back:?}: {answer:?}");
    answer.header("location").unwrap().to_string()
}

#[tokio::test]
async fn back_never_leaves_the_deployment_or_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[]);
    // Browsers drop tabs and line ends from URLs: "/\t/evil" is "//evil".
    for hostile in [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "/%2F/evil.example",
        "/ /evil.example",
        "/deployments/other-id",
        "/api/v1/orphans/cleanup",
        "/?status=live&x=//evil.example",
        "",
    ] {
        let location = back_to(port, hostile).await;
        assert!(
            location.starts_with("/deployments/d-1?") || location == "/deployments/d-1",
            "{hostile:?} sent the browser to {location:?}"
        );
    }
    for own in [
        "/deployments/d-1",
        "/",
        "/?status=live",
        "/?page=2",
        "/?status=torn_down&page=3",
    ] {
        let location = back_to(port, own).await;
        assert!(
            location == own
                || location.starts_with(&format!(
                    "{own}{}",
                    if own.contains('?') { '&' } else { '?' }
                )),
            "{own:?} went to {location:?}"
        );
    }
}
