//! Browser sessions: a random id kept server-side, that expires, slides
//! with use, ends at logout and dies with the token; and a sign-in page
//! that does not let a guesser try forever.

use super::healthz::TOKEN;
use super::*;

use sqlx::sqlite::SqliteConnectOptions;

const OTHER_TOKEN: &str = "b7Yt2mQ9xK4pW0sLc8vN1fR5hJ3dZ6gA2eUoTiBqXyM=";

/// Signs in and returns `cloudpulse_session=...` and the whole Set-Cookie.
async fn sign_in(port: u16, token: &str) -> (String, String) {
    let answer = post(
        port,
        "/login",
        &format!("127.0.0.1:{port}"),
        &["Sec-Fetch-Site: same-origin"],
        "application/x-www-form-urlencoded",
        &format!(
            "token={}",
            token
                .replace('=', "%3D")
                .replace('+', "%2B")
                .replace('/', "%2F")
        ),
    )
    .await;
    assert_eq!(answer.status, 303, "{answer:?}");
    let set_cookie = answer.header("set-cookie").unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    (cookie, set_cookie)
}

/// The status of the API's list with this cookie.
async fn with_cookie(port: u16, cookie: &str) -> u16 {
    get(
        port,
        "/api/v1/deployments",
        &format!("127.0.0.1:{port}"),
        &[&format!("Cookie: {cookie}")],
    )
    .await
    .status
}

async fn database(dir: &Path) -> sqlx::SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("portal.db"))
        .busy_timeout(Duration::from_secs(10));
    sqlx::SqlitePool::connect_with(options).await.unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn sessions_are_random_expire_slide_and_end_at_logout() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[("CLOUDPULSE_TOKEN", TOKEN.into())]);

    let (first, set_cookie) = sign_in(port, TOKEN).await;
    let (second, _) = sign_in(port, TOKEN).await;
    assert_ne!(first, second, "each sign-in gets its own random session");
    let value = first.split_once('=').unwrap().1;
    assert!(value.len() >= 43, "32 random bytes at least: {value}");
    assert!(set_cookie.contains("Max-Age=43200"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert_eq!(with_cookie(port, &first).await, 200);
    assert_eq!(with_cookie(port, &second).await, 200);

    // The database keeps no session id, only its digest.
    let db = database(dir.path()).await;
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id_sha256, expires_at FROM sessions")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|(digest, _)| digest != value && digest.len() == 64));
    let twelve_hours = 12 * 3600;
    assert!(rows
        .iter()
        .all(|(_, at)| (at - now() - twelve_hours).abs() < 300));

    // Use slides the expiry forward.
    sqlx::query("UPDATE sessions SET expires_at = ?1")
        .bind(now() + 60)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(with_cookie(port, &first).await, 200);
    let slid: Vec<(i64,)> =
        sqlx::query_as("SELECT expires_at FROM sessions ORDER BY expires_at DESC")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(slid[0].0 > now() + twelve_hours - 300, "{slid:?}");
    assert!(
        slid[1].0 < now() + 120,
        "the other session did not move: {slid:?}"
    );

    // An expired session is no session.
    sqlx::query("UPDATE sessions SET expires_at = ?1")
        .bind(now() - 1)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(with_cookie(port, &second).await, 401);
    let page = get(
        port,
        "/",
        &format!("127.0.0.1:{port}"),
        &[&format!("Cookie: {second}")],
    )
    .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login"));

    // Logout ends the session on the server, not only in this browser.
    let (third, _) = sign_in(port, TOKEN).await;
    assert_eq!(with_cookie(port, &third).await, 200);
    let logout = post(
        port,
        "/logout",
        &format!("127.0.0.1:{port}"),
        &[&format!("Cookie: {third}"), "Sec-Fetch-Site: same-origin"],
        "application/x-www-form-urlencoded",
        "",
    )
    .await;
    assert_eq!(logout.status, 303, "{logout:?}");
    assert!(logout.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        with_cookie(port, &third).await,
        401,
        "a copied cookie is dead too"
    );
}

#[tokio::test]
async fn a_new_token_ends_every_session() {
    let dir = tempfile::tempdir().unwrap();
    let (portal, port) = serve(dir.path(), &[], &[("CLOUDPULSE_TOKEN", TOKEN.into())]);
    let (cookie, _) = sign_in(port, TOKEN).await;
    assert_eq!(with_cookie(port, &cookie).await, 200);
    drop(portal);
    let (_portal, port) = serve(dir.path(), &[], &[("CLOUDPULSE_TOKEN", OTHER_TOKEN.into())]);
    assert_eq!(with_cookie(port, &cookie).await, 401);
    // Under the same token, sessions survive a restart.
    let (cookie, _) = sign_in(port, OTHER_TOKEN).await;
    drop(_portal);
    let (_portal, port) = serve(dir.path(), &[], &[("CLOUDPULSE_TOKEN", OTHER_TOKEN.into())]);
    assert_eq!(with_cookie(port, &cookie).await, 200);
}

#[tokio::test]
async fn sign_in_is_throttled_after_five_failures_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[("CLOUDPULSE_TOKEN", TOKEN.into())]);
    let host = format!("127.0.0.1:{port}");
    let attempt = |token: &'static str| async move {
        post(
            port,
            "/login",
            &format!("127.0.0.1:{port}"),
            &["Sec-Fetch-Site: same-origin"],
            "application/x-www-form-urlencoded",
            &format!("token={}", token.replace('=', "%3D").replace('/', "%2F")),
        )
        .await
    };
    for n in 1..=5 {
        let answer = attempt(OTHER_TOKEN).await;
        assert_eq!(answer.status, 401, "failure {n}: {answer:?}");
    }
    // Even the right token waits now: a guesser cannot tell.
    for token in [OTHER_TOKEN, TOKEN] {
        let answer = attempt(token).await;
        assert_eq!(answer.status, 429, "{answer:?}");
        assert!(answer.header("set-cookie").is_none());
        let retry: u64 = answer
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert!(answer.body.contains("Too many"), "{}", answer.body);
    }
    // Guessing with bearer tokens instead is held up the same way.
    let api = get(
        port,
        "/api/v1/deployments",
        &host,
        &[&format!("Authorization: Bearer {TOKEN}")],
    )
    .await;
    assert_eq!(api.status, 429, "{api:?}");
    assert_eq!(api.json()["error"]["code"], "too_many_attempts");
    assert!(api.header("retry-after").is_some());
}

#[tokio::test]
async fn wrong_bearer_tokens_count_as_failed_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[("CLOUDPULSE_TOKEN", TOKEN.into())]);
    let host = format!("127.0.0.1:{port}");
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    for n in 1..=5 {
        let answer = get(port, "/api/v1/deployments", &host, &[&bearer(OTHER_TOKEN)]).await;
        assert_eq!(answer.status, 401, "failure {n}");
    }
    let answer = get(port, "/api/v1/deployments", &host, &[&bearer(OTHER_TOKEN)]).await;
    assert_eq!(answer.status, 429, "{answer:?}");
    let login = post(
        port,
        "/login",
        &host,
        &["Sec-Fetch-Site: same-origin"],
        "application/x-www-form-urlencoded",
        "token=x",
    )
    .await;
    assert_eq!(login.status, 429);
}
