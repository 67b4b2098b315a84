//! Cross-site reads: an `<img src>` or `fetch(..., {mode: "no-cors"})` on
//! any site makes the browser send a GET with `Sec-Fetch-Site: cross-site`.
//! GETs of the API and of pages that call AWS must not run for it, and a
//! region must be one of AWS's, whoever asks.

use super::*;

/// GETs that reach AWS or read the portal's state.
const READS: &[&str] = &[
    "/api/v1/deployments",
    "/api/v1/orphans",
    "/api/v1/orphans?region=eu-west-1",
    "/api/v1/deployments/some-id/health",
    "/api/v1/jobs/some-id/events",
    "/api/v1/cost",
    "/new",
];

#[tokio::test]
async fn cross_site_and_same_site_gets_of_the_api_and_aws_pages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[]);
    let host = format!("127.0.0.1:{port}");
    for site in ["cross-site", "same-site"] {
        let header = format!("Sec-Fetch-Site: {site}");
        for path in READS {
            for mode in ["Sec-Fetch-Mode: no-cors", "Sec-Fetch-Mode: cors"] {
                let answer = get(port, path, &host, &[&header, mode]).await;
                assert_eq!(answer.status, 403, "{site} GET {path}: {answer:?}");
                assert_eq!(answer.json()["error"]["code"], "cross_site", "{path}");
            }
        }
        // A link from another site to the new-deployment page lands on the
        // list, which calls no AWS, instead of running the preflight.
        let navigation = get(
            port,
            "/new",
            &host,
            &[
                &header,
                "Sec-Fetch-Mode: navigate",
                "Sec-Fetch-Dest: document",
            ],
        )
        .await;
        assert_eq!(navigation.status, 303, "{navigation:?}");
        assert_eq!(navigation.header("location"), Some("/"));
    }
    // Links from elsewhere to pages that only read the database still work.
    for path in ["/", "/deployments/some-id", "/assets/cloudpulse.css"] {
        let answer = get(
            port,
            path,
            &host,
            &["Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate"],
        )
        .await;
        assert_ne!(answer.status, 403, "{path}: {answer:?}");
    }
    // The portal's own pages, typed addresses and scripts pass.
    for headers in [
        &["Sec-Fetch-Site: same-origin"][..],
        &["Sec-Fetch-Site: none"][..],
        &[][..],
    ] {
        let answer = get(port, "/api/v1/deployments", &host, headers).await;
        assert_eq!(answer.status, 200, "{headers:?}: {answer:?}");
    }
}

#[tokio::test]
async fn only_aws_region_names_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[]);
    let host = format!("127.0.0.1:{port}");
    let long = format!("{}-east-1", "a".repeat(40));
    let huge = "x".repeat(4000);
    // Shaped like region names, but none of AWS's; and far too long.
    for region in ["zz-fake-1", "us-nowhere-9", long.as_str(), huge.as_str()] {
        let answer = get(
            port,
            &format!("/api/v1/orphans?region={region}"),
            &host,
            &[],
        )
        .await;
        assert_eq!(answer.status, 400, "{region}: {answer:?}");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("not an AWS region"), "{message}");
        assert!(message.contains("us-east-1"), "{message}");
        assert!(
            message.len() < 400,
            "the name is not echoed whole: {message}"
        );

        for path in ["/api/v1/preflight", "/api/v1/deployments"] {
            let body = serde_json::json!({ "name": "regions", "region": region }).to_string();
            let answer = post(port, path, &host, &[], "application/json", &body).await;
            assert_eq!(answer.status, 400, "{path} {region}: {answer:?}");
            let body = answer.json();
            assert_eq!(body["error"]["code"], "validation", "{body}");
            let message = body["error"]["fields"]["region"].as_str().unwrap();
            assert!(message.contains("not an AWS region"), "{message}");
            assert!(message.len() < 400, "{message}");
        }
    }
}
