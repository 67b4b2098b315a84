//! The REST API's answers, byte for byte, against a recording.
//!
//! One fixed sequence of calls against a fresh sandbox portal (errors, a
//! deploy, its views, budget changes, a teardown, the refusals after it)
//! gives a status code and a JSON body per call. Those are compared with
//! `rest_answers.json` beside this file, after [`mask`] has replaced what
//! differs between two runs of the same code (ids, times, ports, measured
//! figures) and [`canonical_order`] has sorted the few arrays whose order
//! the API does not define. Object keys are compared in the order the
//! server wrote them, so a renamed, moved, added or missing field fails, as
//! does a changed status, error code or message.
//!
//! To record the fixture again (after a change of the API that is meant):
//!
//! ```text
//! CLOUDPULSE_RECORD_REST=1 cargo test -p cloudpulse-server --test it rest_answers
//! ```
//!
//! and review the diff of `rest_answers.json` like code.

use crate::common;

use std::fmt;

use common::*;
use reqwest::Method;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{json, Value};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/rest_answers.json");
const RECORD: &str = "CLOUDPULSE_RECORD_REST";

#[tokio::test]
async fn rest_answers_match_the_recording() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox_at_a_fifth(dir.path(), "rest.db");
    let mut api = Session::new(&portal.url);
    use Body::{Empty, Raw};
    use Method as M;
    let get = M::GET;

    // Before anything exists, and every way a request can be refused. The
    // portal checks the cloud as it starts; /healthz says unknown until then.
    api.wait_until("/healthz", |health| {
        health["cloud"]["checked_at"].is_string()
    })
    .await;
    api.call(get.clone(), "/healthz", Empty).await;
    api.call(get.clone(), "/api/v1/deployments", Empty).await;
    api.call(M::POST, "/api/v1/deployments", Raw(r#"{"name": "golden","#))
        .await;
    api.call(M::POST, "/api/v1/deployments", Body::Text("name=golden"))
        .await;
    api.json(
        M::POST,
        "/api/v1/deployments",
        json!({ "name": "golden", "instances": 3 }),
    )
    .await;
    api.json(
        M::POST,
        "/api/v1/deployments",
        json!({ "name": "X", "min": 5, "max": 2, "vpc_cidr": "10.0.0.0/8" }),
    )
    .await;
    api.call(get.clone(), "/api/v1/deployments/no-such-deployment", Empty)
        .await;
    api.call(get.clone(), "/api/v1/deployments?status=bogus", Empty)
        .await;
    api.call(get.clone(), "/api/v1/deployments?page=first", Empty)
        .await;
    api.call(
        get.clone(),
        "/api/v1/deployments?per_page=2&sort=name",
        Empty,
    )
    .await;
    api.call(get.clone(), "/api/v1/jobs/no-such-job", Empty)
        .await;
    api.call(get.clone(), "/api/v1/no-such-route", Empty).await;
    api.json(M::POST, "/api/v1/preflight", json!({})).await;

    // A deploy, followed to its end.
    let accepted = api
        .start(
            M::POST,
            "/api/v1/deployments",
            Body::Json(json!({ "name": "golden", "nat": "single" })),
        )
        .await;
    let deployment = accepted["deployment"]["id"].as_str().unwrap().to_string();
    let deploy_job = accepted["job"]["id"].as_str().unwrap().to_string();
    api.name(&deployment, "{deployment}");
    api.name(&deploy_job, "{deploy_job}");
    api.json(
        M::POST,
        "/api/v1/deployments",
        json!({ "name": "golden", "nat": "single" }),
    )
    .await;
    let done = wait_job(&api.client, &portal.url, &deploy_job).await;
    assert_eq!(done["status"], "done", "{done}");
    // Until the poller has seen the instances and the probe the app, the
    // cost, uptime and list answers depend on which came first.
    api.wait_until("/api/v1/deployments/{deployment}/cost", |cost| {
        cost["notes"] == json!([])
    })
    .await;
    api.wait_until("/api/v1/deployments/{deployment}/uptime", |uptime| {
        uptime["probes"].as_u64() > Some(0)
    })
    .await;
    api.call(get.clone(), "/api/v1/jobs/{deploy_job}", Empty)
        .await;
    api.call(get.clone(), "/api/v1/deployments/{deployment}", Empty)
        .await;
    api.call(get.clone(), "/api/v1/deployments", Empty).await;
    api.call(get.clone(), "/api/v1/deployments?status=live", Empty)
        .await;
    api.shape(get.clone(), "/api/v1/deployments/{deployment}/health")
        .await;
    api.call(get.clone(), "/api/v1/deployments/{deployment}/cost", Empty)
        .await;
    api.call(
        get.clone(),
        "/api/v1/deployments/{deployment}/uptime",
        Empty,
    )
    .await;
    api.call(
        get.clone(),
        "/api/v1/deployments/{deployment}/metrics?range=2h",
        Empty,
    )
    .await;
    api.call(
        get.clone(),
        "/api/v1/deployments/{deployment}/instances/i-0000000000000000",
        Empty,
    )
    .await;

    // Drift: checked now, nothing to repair, and accepts refused.
    api.call(M::POST, "/api/v1/deployments/{deployment}/drift", Empty)
        .await;
    api.call(
        M::POST,
        "/api/v1/deployments/{deployment}/drift/repair",
        Empty,
    )
    .await;
    api.json(
        M::POST,
        "/api/v1/deployments/{deployment}/drift/accept",
        serde_json::json!({ "findings": ["d000000000000"] }),
    )
    .await;

    // Chaos requests that are refused before anything happens.
    api.call(M::POST, "/api/v1/deployments/{deployment}/stress", Empty)
        .await;
    api.json(
        M::POST,
        "/api/v1/deployments/{deployment}/stress",
        json!({ "seconds": 99999 }),
    )
    .await;
    api.json(
        M::POST,
        "/api/v1/deployments/{deployment}/instances/i-0000000000000000/explode",
        json!({}),
    )
    .await;

    // The budget: refused changes, then one that is kept.
    api.json(
        M::PATCH,
        "/api/v1/deployments/{deployment}",
        json!({ "ttl_minutes": 0.5 }),
    )
    .await;
    api.json(M::PATCH, "/api/v1/deployments/{deployment}", json!({}))
        .await;
    api.json(
        M::PATCH,
        "/api/v1/deployments/{deployment}",
        json!({ "ttl_minutes": 999_999, "cost_cap_usd": -1, "extend_minutes": 0 }),
    )
    .await;
    api.json(
        M::PATCH,
        "/api/v1/deployments/{deployment}",
        json!({ "ttl_minutes": 120, "cost_cap_usd": 50 }),
    )
    .await;

    // The teardown, and what is refused after it.
    let teardown = api
        .start(M::POST, "/api/v1/deployments/{deployment}/teardown", Empty)
        .await;
    let teardown_job = teardown["job"]["id"].as_str().unwrap().to_string();
    api.name(&teardown_job, "{teardown_job}");
    let done = wait_job(&api.client, &portal.url, &teardown_job).await;
    assert_eq!(done["status"], "done", "{done}");
    api.call(get.clone(), "/api/v1/jobs/{teardown_job}", Empty)
        .await;
    api.call(get.clone(), "/api/v1/deployments/{deployment}", Empty)
        .await;
    api.call(get.clone(), "/api/v1/deployments?status=torn_down", Empty)
        .await;
    api.call(M::POST, "/api/v1/deployments/{deployment}/teardown", Empty)
        .await;
    api.call(M::POST, "/api/v1/jobs/{deploy_job}/retry", Empty)
        .await;
    api.call(M::POST, "/api/v1/jobs/{deploy_job}/cancel", Empty)
        .await;
    api.json(
        M::PATCH,
        "/api/v1/deployments/{deployment}",
        json!({ "ttl_minutes": 60 }),
    )
    .await;
    api.call(
        M::POST,
        "/api/v1/deployments/{deployment}/redeploy",
        Body::Raw("not json"),
    )
    .await;
    api.call(
        M::POST,
        "/api/v1/deployments/{deployment}/redeploy",
        Body::Raw("[1]"),
    )
    .await;
    api.call(get.clone(), "/api/v1/deployments/{deployment}/cost", Empty)
        .await;
    api.call(get.clone(), "/api/v1/cost", Empty).await;
    api.call(get.clone(), "/api/v1/uptime", Empty).await;
    api.call(get, "/api/v1/orphans", Empty).await;

    let known = api.known_ids();
    let actual: Vec<Json> = api.answers.iter().map(|a| a.masked(&known)).collect();
    let took = started.elapsed().as_secs_f64();
    if std::env::var(RECORD).as_deref() == Ok("1") {
        let text = serde_json::to_string_pretty(&Json::Array(actual.clone())).unwrap() + "\n";
        std::fs::create_dir_all(std::path::Path::new(FIXTURE).parent().unwrap()).unwrap();
        std::fs::write(FIXTURE, text).unwrap();
        eprintln!(
            "{RECORD}=1: recorded {} answers in {FIXTURE} ({took:.0} s); nothing compared",
            actual.len()
        );
        return;
    }
    let text = std::fs::read_to_string(FIXTURE)
        .unwrap_or_else(|e| panic!("{FIXTURE}: {e}; record it with {RECORD}=1"));
    let Json::Array(expected) = serde_json::from_str::<Json>(&text).unwrap() else {
        panic!("{FIXTURE} is not an array of answers");
    };
    for (index, (want, got)) in expected.iter().zip(&actual).enumerate() {
        if let Some(at) = first_difference(want, got, String::new()) {
            panic!(
                "call #{index} answers differently from the recording, first at {at}\n\
                 --- recorded ({FIXTURE})\n{}\n--- now\n{}",
                pretty(want),
                pretty(got),
            );
        }
    }
    assert_eq!(
        expected.len(),
        actual.len(),
        "the recording has {} answers, this run {}; the first {} agree",
        expected.len(),
        actual.len(),
        expected.len().min(actual.len())
    );
    eprintln!("{} answers match the recording ({took:.0} s)", actual.len());
}

fn pretty(value: &Json) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

/// Where `a` and `b` first differ, as a path like `body.steps[3].status`
/// (`<root>` when the values themselves do); `None` when they are equal.
fn first_difference(a: &Json, b: &Json, at: String) -> Option<String> {
    let here = || {
        Some(if at.is_empty() {
            "<root>".into()
        } else {
            at.clone()
        })
    };
    match (a, b) {
        (Json::Array(x), Json::Array(y)) => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{at}[{i}]")))
            .or_else(|| (x.len() != y.len()).then(|| format!("{at} (length)"))),
        (Json::Object(x), Json::Object(y)) => x
            .iter()
            .zip(y)
            .find_map(|((kx, vx), (ky, vy))| {
                let path = if at.is_empty() {
                    kx.clone()
                } else {
                    format!("{at}.{kx}")
                };
                if kx != ky {
                    Some(format!("{path} (key: recorded {kx:?}, now {ky:?})"))
                } else {
                    first_difference(vx, vy, path)
                }
            })
            .or_else(|| (x.len() != y.len()).then(|| format!("{at} (number of keys)"))),
        _ if a == b => None,
        _ => here(),
    }
}

// ---- the calls ----------------------------------------------------------

enum Body {
    Empty,
    Json(Value),
    /// Sent as it is, as `application/json`.
    Raw(&'static str),
    /// Sent as it is, as `text/plain`.
    Text(&'static str),
}

/// How much of an answer is kept.
#[derive(Clone, Copy)]
enum View {
    /// The masked body.
    Full,
    /// Only its keys and the types of its values (see [`shape`]): for
    /// answers that are a snapshot of the cloud at one moment.
    Shape,
    /// The masked body without the progress of the job it just started
    /// (see [`in_flight`]).
    Started,
}

/// One call and what the portal answered, as it came.
struct Answer {
    /// `GET /api/v1/deployments/{deployment}`
    call: String,
    status: u16,
    content_type: String,
    body: String,
    view: View,
}

impl Answer {
    /// The answer as the fixture holds it: masked, and in canonical order.
    fn masked(&self, known: &[(String, String)]) -> Json {
        let body = match serde_json::from_str::<Json>(&self.body) {
            Ok(body) => canonical_order(retries(mask("", body, known))),
            Err(_) => Json::String(format!("<not JSON> {}", self.body)),
        };
        let body = match self.view {
            View::Full => body,
            View::Shape => shape(body),
            View::Started => in_flight(body),
        };
        Json::Object(vec![
            ("call".into(), Json::String(self.call.clone())),
            ("status".into(), Json::Number(self.status.into())),
            (
                "content_type".into(),
                Json::String(self.content_type.clone()),
            ),
            ("body".into(), body),
        ])
    }
}

/// A finished step's attempts and the error of its last retry: how often
/// it met an AWS that was still busy (a network interface that lingers, a
/// role that has not propagated) depends on the machine's pace, so a step
/// that is `done` has `"<retries>"` for both. A failed step keeps them.
fn retries(value: Json) -> Json {
    match value {
        Json::Array(items) => Json::Array(items.into_iter().map(retries).collect()),
        Json::Object(entries) => {
            let done = entries.iter().any(|(key, value)| {
                key == "status" && matches!(value, Json::String(s) if s == "done")
            });
            let is_step = entries.iter().any(|(key, _)| key == "attempts");
            Json::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| {
                        let value = if done && is_step && (key == "attempts" || key == "error") {
                            Json::String("<retries>".into())
                        } else {
                            retries(value)
                        };
                        (key, value)
                    })
                    .collect(),
            )
        }
        other => other,
    }
}

/// A client of one portal that keeps what it answers.
struct Session {
    client: reqwest::Client,
    url: String,
    /// Real ids, and the names path templates give them (`{deployment}`).
    names: Vec<(String, &'static str)>,
    answers: Vec<Answer>,
}

impl Session {
    fn new(url: &str) -> Self {
        Session {
            client: reqwest::Client::new(),
            url: url.to_string(),
            names: Vec::new(),
            answers: Vec::new(),
        }
    }

    /// From now on `name` in a template stands for `id`.
    fn name(&mut self, id: &str, name: &'static str) {
        self.names.push((id.to_string(), name));
    }

    /// Every form in which the named ids appear in answers, longest first,
    /// with their placeholders: `<deployment>` for the deployment's UUID,
    /// for its 32 hex digits (the bucket's name) and for its first 8 (the
    /// prefix of every other AWS name).
    fn known_ids(&self) -> Vec<(String, String)> {
        let mut known = Vec::new();
        for (id, name) in &self.names {
            let placeholder = format!("<{}>", name.trim_matches(['{', '}']));
            let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
            known.push((id.clone(), placeholder.clone()));
            if *name == "{deployment}" {
                known.push((hex.clone(), placeholder.clone()));
                known.push((hex[..8].to_string(), placeholder));
            }
        }
        known.sort_by_key(|(form, _)| std::cmp::Reverse(form.len()));
        known
    }

    async fn json(&mut self, method: Method, template: &str, body: Value) -> Value {
        self.call(method, template, Body::Json(body)).await
    }

    async fn shape(&mut self, method: Method, template: &str) -> Value {
        self.send(method, template, Body::Empty, View::Shape).await
    }

    /// A call that starts a job.
    async fn start(&mut self, method: Method, template: &str, body: Body) -> Value {
        self.send(method, template, body, View::Started).await
    }

    async fn call(&mut self, method: Method, template: &str, body: Body) -> Value {
        self.send(method, template, body, View::Full).await
    }

    /// Sends one request, keeps its answer and returns the body as JSON
    /// (`null` when it is not JSON).
    async fn send(&mut self, method: Method, template: &str, body: Body, view: View) -> Value {
        let path = self.path(template);
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.url));
        request = match body {
            Body::Empty => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(text) => request
                .header("content-type", "application/json")
                .body(text),
            Body::Text(text) => request.header("content-type", "text/plain").body(text),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("<not text>").to_string())
            .unwrap_or_default();
        let body = response.text().await.unwrap();
        let value = serde_json::from_str(&body).unwrap_or(Value::Null);
        self.answers.push(Answer {
            call: format!("{method} {template}"),
            status,
            content_type,
            body,
            view,
        });
        value
    }

    fn path(&self, template: &str) -> String {
        let mut path = template.to_string();
        for (id, name) in &self.names {
            path = path.replace(name, id);
        }
        path
    }

    /// GETs `template` until `ready` holds of its answer (a minute at
    /// most), keeping nothing: what makes the answers after it the same
    /// every run, instead of a snapshot of a race.
    async fn wait_until(&self, template: &str, ready: impl Fn(&Value) -> bool) {
        let url = format!("{}{}", self.url, self.path(template));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (status, body) = get_json(&url).await;
            if status == 200 && ready(&body) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{template} never got there: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}

// ---- masking ------------------------------------------------------------

/// Numbers under these keys are measured, not derived from the requests:
/// what has accrued so far, how many probes ran and how they went, how long
/// something took, and the size of the instance binary the build produced.
/// Each becomes `"<n>"`. Every other number is kept.
const MEASURED: &[&str] = &[
    "accrued_usd",
    "cost_usd",
    "instance_hours",
    "availability_pct",
    "availability_24h_pct",
    "probes",
    "failed_probes",
    "duration_seconds",
    "last_recovery_seconds",
    "bytes",
];

/// Replaces every part of an answer that differs between two runs of the
/// same code by a placeholder, and keeps everything else as it is.
///
/// In every string, first the ids the test was given (`known`, see
/// [`Session::known_ids`]) become their names (`<deployment>`,
/// `<deploy_job>`, `<teardown_job>`), wherever they appear. Then the whole
/// string, or else each of its words (without the punctuation around it,
/// and also each `/`-separated part of it), is masked if it is
///
/// - a UUID: `<uuid>`;
/// - an AWS id, a known prefix and 8 or more hex digits (`vpc-…`,
///   `subnet-…`, `i-…`, `nat-…`, `eipalloc-…`, `igw-…`, `rtb-…`, `sg-…`,
///   `acl-…`, `lt-…`, `ami-…` and their kin) or an ARN: `<aws-id>`;
/// - an RFC 3339 time: `<time>`; a date or a time of day in a message
///   (`2026-12-02 08:33:17 UTC`): `<date>` and `<clock>`;
/// - an `http(s)://` URL with a port: `<url>`; a bare `host:port` (the
///   sandbox's load balancers listen on loopback ports): `<address>`; an
///   IPv4 address (the sandbox's Elastic IPs are random): `<ip>`;
/// - 64 hex digits (the instance binary's SHA-256): `<sha256>`.
///
/// A number under one of the [`MEASURED`] keys becomes `"<n>"`. Object
/// keys and their order, `null`s, booleans, every other number and all
/// other text are kept, so field names, error codes and messages are
/// compared as they are. `key` is the key the value is under (`""` at the
/// top); an array's items are under their array's key.
fn mask(key: &str, value: Json, known: &[(String, String)]) -> Json {
    match value {
        Json::String(text) => {
            let mut text = text;
            for (form, placeholder) in known {
                text = text.replace(form.as_str(), placeholder);
            }
            Json::String(mask_text(&text))
        }
        Json::Number(_) if MEASURED.contains(&key) => Json::String("<n>".into()),
        Json::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|item| mask(key, item, known))
                .collect(),
        ),
        Json::Object(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let v = mask(&k, v, known);
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// [`mask`] for one string: the whole of it, or else word by word.
fn mask_text(text: &str) -> String {
    if let Some(placeholder) = placeholder(text) {
        return placeholder.to_string();
    }
    let words: Vec<String> = text.split(' ').map(mask_word).collect();
    words.join(" ")
}

fn mask_word(word: &str) -> String {
    // Punctuation around a word is not part of the id.
    let opened = word.trim_start_matches(|c| "\"'([{<".contains(c));
    let core = opened.trim_end_matches(|c| "\"')]}>,;:.".contains(c));
    let start = word.len() - opened.len();
    let end = start + core.len();
    let masked = match placeholder(core) {
        Some(placeholder) => placeholder.to_string(),
        // An id inside a path (`instance/<sha256>/cloudpulse-instance`).
        None => core
            .split('/')
            .map(|part| match placeholder(part) {
                Some(id @ ("<uuid>" | "<sha256>")) => id,
                _ => part,
            })
            .collect::<Vec<_>>()
            .join("/"),
    };
    format!("{}{masked}{}", &word[..start], &word[end..])
}

fn placeholder(word: &str) -> Option<&'static str> {
    let all = |text: &str, test: fn(char) -> bool| !text.is_empty() && text.chars().all(test);
    let digits = |text: &str| all(text, |c| c.is_ascii_digit());
    let shaped = |text: &str, separator: char, lengths: &[usize]| {
        let parts: Vec<&str> = text.split(separator).collect();
        parts.len() == lengths.len()
            && parts
                .iter()
                .zip(lengths)
                .all(|(part, len)| part.len() == *len && digits(part))
    };
    let ipv4 = |text: &str| {
        let parts: Vec<&str> = text.split('.').collect();
        parts.len() == 4 && parts.iter().all(|p| p.len() <= 3 && digits(p))
    };
    let host_port = |text: &str| {
        text.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && digits(port))
    };
    // An Availability Zone (`us-east-1b`): instances spread over the zones
    // in an order the recording cannot fix.
    let zone = |text: &str| {
        let bytes = text.as_bytes();
        bytes.len() > 3
            && bytes[bytes.len() - 1].is_ascii_lowercase()
            && bytes[bytes.len() - 2].is_ascii_digit()
            && text[..text.len() - 2].ends_with('-')
            && text[..text.len() - 2]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-')
    };
    if zone(word) {
        return Some("<az>");
    }
    if is_uuid(word) {
        Some("<uuid>")
    } else if is_aws_id(word) {
        Some("<aws-id>")
    } else if chrono::DateTime::parse_from_rfc3339(word).is_ok() {
        Some("<time>")
    } else if shaped(word, '-', &[4, 2, 2]) {
        Some("<date>")
    } else if shaped(word, ':', &[2, 2, 2]) {
        Some("<clock>")
    } else if let Some(rest) = word
        .strip_prefix("http://")
        .or_else(|| word.strip_prefix("https://"))
    {
        host_port(rest.split('/').next().unwrap_or("")).then_some("<url>")
    } else if host_port(word) && ipv4(word.rsplit_once(':').unwrap().0) {
        Some("<address>")
    } else if ipv4(word) {
        Some("<ip>")
    } else if word.len() == 64 && all(word, |c| c.is_ascii_hexdigit()) {
        Some("<sha256>")
    } else {
        None
    }
}

fn is_uuid(word: &str) -> bool {
    word.len() == 36
        && word.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// EC2's ids: a known prefix, a dash, eight or more hex digits; and ARNs.
fn is_aws_id(word: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "vpc", "subnet", "i", "nat", "eipalloc", "eipassoc", "igw", "rtb", "rtbassoc", "sg", "sgr",
        "acl", "aclassoc", "lt", "eni", "vol", "ami", "r",
    ];
    if word.starts_with("arn:aws:") {
        return true;
    }
    word.split_once('-').is_some_and(|(prefix, rest)| {
        PREFIXES.contains(&prefix) && rest.len() >= 8 && rest.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// Keys of the arrays whose order the API does not define. The items of
/// each are sorted by their masked JSON, so that only what they hold is
/// compared:
///
/// - `resources`: a deployment's resources in the order they were made,
///   and steps without a dependency between them run in parallel.
const UNORDERED: &[&str] = &["resources"];

/// Sorts the [`UNORDERED`] arrays wherever they are in `value`.
fn canonical_order(value: Json) -> Json {
    match value {
        Json::Array(items) => Json::Array(items.into_iter().map(canonical_order).collect()),
        Json::Object(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(key, value)| {
                    let value = match canonical_order(value) {
                        Json::Array(mut items) if UNORDERED.contains(&key.as_str()) => {
                            items.sort_by_cached_key(|item| serde_json::to_string(item).unwrap());
                            Json::Array(items)
                        }
                        other => other,
                    };
                    (key, value)
                })
                .collect(),
        ),
        other => other,
    }
}

/// A job's fields that its runner changes as it goes: in the answer that
/// accepted the job, they show how far the runner got before the answer
/// was written, a race. Each becomes `"<in flight>"`.
const JOB_PROGRESS: &[&str] = &["status", "started_at", "finished_at"];
const STEP_PROGRESS: &[&str] = &[
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "progress",
    "error",
    "outputs",
];

/// Masks the progress of every job in an answer that accepted one (its
/// [`JOB_PROGRESS`], its steps' [`STEP_PROGRESS`], the same fields in the
/// deployment's list of `jobs`) and the resources made so far of the
/// deployment beside it. The job's id, kind, source, steps and their
/// dependencies, and everything else, are kept.
fn in_flight(value: Json) -> Json {
    let Json::Object(entries) = value else {
        return value;
    };
    let is_job = entries.iter().any(|(key, _)| key == "steps");
    let entries = entries.into_iter().map(|(key, value)| {
        let value = match key.as_str() {
            "resources" => race(),
            "jobs" => each(value, |job| raced(job, JOB_PROGRESS)),
            "steps" if is_job => each(value, |step| raced(step, STEP_PROGRESS)),
            key if is_job && JOB_PROGRESS.contains(&key) => race(),
            _ => in_flight(value),
        };
        (key, value)
    });
    Json::Object(entries.collect())
}

fn race() -> Json {
    Json::String("<in flight>".into())
}

/// `object` with the values of `keys` masked as [`race`]s.
fn raced(object: Json, keys: &[&str]) -> Json {
    match object {
        Json::Object(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(key, value)| {
                    let value = if keys.contains(&key.as_str()) {
                        race()
                    } else {
                        value
                    };
                    (key, value)
                })
                .collect(),
        ),
        other => other,
    }
}

fn each(array: Json, f: impl Fn(Json) -> Json) -> Json {
    match array {
        Json::Array(items) => Json::Array(items.into_iter().map(f).collect()),
        other => other,
    }
}

/// The keys of `value` and the types of its leaves, nothing else:
/// `"<string>"`, `"<number>"`, `"<bool>"`, `null`.
fn shape(value: Json) -> Json {
    match value {
        Json::Null => Json::Null,
        Json::Bool(_) => Json::String("<bool>".into()),
        Json::Number(_) => Json::String("<number>".into()),
        Json::String(_) => Json::String("<string>".into()),
        Json::Array(items) => Json::Array(items.into_iter().map(shape).collect()),
        Json::Object(entries) => {
            Json::Object(entries.into_iter().map(|(k, v)| (k, shape(v))).collect())
        }
    }
}

// ---- JSON that keeps the order of its keys ------------------------------

/// A JSON value whose objects keep their keys in the order they were
/// written (`serde_json::Value` sorts them), so that a reordered field is a
/// difference too.
#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Json::Object(entries))
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => n.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

#[test]
fn masking_keeps_words_and_replaces_ids_times_and_ports() {
    let known = [("0b6c1f0e".to_string(), "<deployment>".to_string())];
    let text = |s: &str| mask("", Json::String(s.into()), &known);
    assert_eq!(
        text("job 1b6c1f0e-3a5e-4c8e-9d7e-1234567890ab (vpc-1a2b3c4d): gone"),
        Json::String("job <uuid> (<aws-id>): gone".into())
    );
    assert_eq!(
        text("i-0a1b2c3d4e5f67890 joined the group in us-east-1b (t3.micro, InService)"),
        Json::String("<aws-id> joined the group in <az> (t3.micro, InService)".into())
    );
    assert_eq!(
        text("cp-0b6c1f0e-alb at 127.0.0.1:41234, http://127.0.0.1:41234/"),
        Json::String("cp-<deployment>-alb at <address>, <url>".into())
    );
    assert_eq!(
        text("2024-05-01T10:00:00.123Z"),
        Json::String("<time>".into())
    );
    assert_eq!(
        text("ends at 2026-12-02 08:33:17 UTC; i-0000 is no id; 10.0.0.0/16 stays"),
        Json::String("ends at <date> <clock> UTC; i-0000 is no id; 10.0.0.0/16 stays".into())
    );
    assert_eq!(
        mask("probes", Json::Number(3.into()), &[]),
        Json::String("<n>".into())
    );
    assert_eq!(
        mask("min", Json::Number(3.into()), &[]),
        Json::Number(3.into())
    );
}
