//! The operator policy (`policy/operator-policy.json` and
//! `policy/operator-iam-policy.json`, two documents because IAM caps a
//! managed policy at 6,144 characters) must grant exactly what the portal
//! calls, and nothing that lets its holder escalate: every role it may
//! create or change carries `policy/instance-boundary.json` as its
//! permissions boundary, roles go to EC2 only, and instances start only
//! from CloudPulse's launch templates with a type from the price table.
//!
//! The portal's own source is read as tokens: every call of an operation on
//! an AWS SDK client (found both from the client, `ec2.create_vpc()`, and
//! from every `.send()` back to the client its chain starts at) becomes the
//! IAM action it needs. The test fails when the code calls an action the
//! policy lacks, when the policy grants an action nothing calls (unless it
//! is one of the few AWS checks on the portal's behalf in [`IMPLIED`], each
//! with its reason), and when a `.send()` leads to something the scanner
//! cannot place, so a new way of holding a client cannot slip past it.
//! No AWS endpoint is called.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The crates whose code runs in the portal and talks to AWS.
const SCANNED: &[&str] = &[
    "portal/engine/src",
    "portal/telemetry/src",
    "portal/server/src",
];

/// Actions AWS authorises on the portal's behalf during a call it makes,
/// never called by name. `(action, the call that needs it, why)`.
const IMPLIED: &[(&str, &str, &str)] = &[
    (
        "ec2:CreateTags",
        "ec2 create_* with tag specifications",
        "tags given at creation are authorised as CreateTags (limited by ec2:CreateAction)",
    ),
    (
        "ec2:RunInstances",
        "autoscaling create_auto_scaling_group",
        "a group with a launch template is checked against the caller's RunInstances",
    ),
    (
        "iam:PassRole",
        "autoscaling create_auto_scaling_group, iam add_role_to_instance_profile",
        "the launch template's instance profile hands the instance role to EC2",
    ),
    (
        "iam:CreateServiceLinkedRole",
        "elbv2 create_load_balancer, autoscaling create_auto_scaling_group",
        "the first load balancer and group in an account create their service-linked roles",
    ),
    (
        "elasticloadbalancing:AddTags",
        "elbv2 create_load_balancer / create_target_group / create_listener with tags",
        "tags given at creation are authorised as AddTags (limited by CreateAction)",
    ),
    (
        "iam:TagRole",
        "iam create_role with tags",
        "tags given at creation are authorised as TagRole",
    ),
    (
        "iam:TagInstanceProfile",
        "iam create_instance_profile with tags",
        "tags given at creation are authorised as TagInstanceProfile",
    ),
    (
        "cloudwatch:TagResource",
        "cloudwatch put_metric_alarm with tags",
        "tags given at creation are authorised as TagResource",
    ),
];

/// SDK crates to IAM service prefixes.
const SERVICES: &[(&str, &str)] = &[
    ("aws_sdk_autoscaling", "autoscaling"),
    ("aws_sdk_cloudwatch", "cloudwatch"),
    ("aws_sdk_ec2", "ec2"),
    ("aws_sdk_elasticloadbalancingv2", "elasticloadbalancing"),
    ("aws_sdk_iam", "iam"),
    ("aws_sdk_s3", "s3"),
    ("aws_sdk_servicequotas", "servicequotas"),
    ("aws_sdk_ssm", "ssm"),
    ("aws_sdk_sts", "sts"),
];

/// Operations whose IAM action is not their own name. S3 names differ too
/// often to guess, so every S3 operation must be listed here. `None`: AWS
/// asks for no permission.
const RENAMED: &[(&str, &str, Option<&str>)] = &[
    ("s3", "create_bucket", Some("s3:CreateBucket")),
    ("s3", "delete_bucket", Some("s3:DeleteBucket")),
    ("s3", "delete_object", Some("s3:DeleteObject")),
    ("s3", "head_bucket", Some("s3:ListBucket")),
    ("s3", "head_object", Some("s3:GetObject")),
    ("s3", "list_buckets", Some("s3:ListAllMyBuckets")),
    ("s3", "list_objects_v2", Some("s3:ListBucket")),
    (
        "s3",
        "put_bucket_encryption",
        Some("s3:PutEncryptionConfiguration"),
    ),
    ("s3", "put_bucket_policy", Some("s3:PutBucketPolicy")),
    ("s3", "put_bucket_tagging", Some("s3:PutBucketTagging")),
    ("s3", "put_object", Some("s3:PutObject")),
    (
        "s3",
        "put_public_access_block",
        Some("s3:PutBucketPublicAccessBlock"),
    ),
    ("sts", "get_caller_identity", None),
];

/// Receivers of `.send()` that are not AWS clients: the HTTP client of the
/// CLI, the probes and the container health check (`reqwest`).
/// `(file suffix, receiver)`.
const NOT_AWS: &[(&str, &str)] = &[
    ("portal/server/src/cli.rs", "request"),
    ("portal/server/src/cli.rs", "client"),
    ("portal/server/src/cli.rs", "http"),
    ("portal/server/src/healthcheck.rs", "client"),
    ("portal/telemetry/src/lib.rs", "http"),
];

// ---------------------------------------------------------------------------
// Tokens

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

impl Token {
    fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident(s) => Some(s),
            Tok::Punct(_) => None,
        }
    }

    fn is(&self, c: char) -> bool {
        self.tok == Tok::Punct(c)
    }
}

/// Rust source as identifiers and punctuation; comments, string, byte and
/// char literals dropped, so code in them is never mistaken for a call.
fn lex(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let skip_to = |i: usize, end: usize, line: &mut usize| {
        *line += chars[i..end].iter().filter(|&&c| c == '\n').count();
        end
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            let mut j = i;
            while j < chars.len() {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            i = skip_to(i, j, &mut line);
        } else if let Some(end) = raw_string_end(&chars, i) {
            i = skip_to(i, end, &mut line);
        } else if c == '"' || (c == 'b' && next == Some('"')) {
            let mut j = if c == 'b' { i + 2 } else { i + 1 };
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            i = skip_to(i, (j + 1).min(chars.len()), &mut line);
        } else if c == '\'' || (c == 'b' && next == Some('\'')) {
            let start = if c == 'b' { i + 1 } else { i };
            if chars.get(start + 1) == Some(&'\\') {
                let mut j = start + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if chars.get(start + 2) == Some(&'\'') {
                i = start + 3;
            } else {
                // A lifetime or label: its name lexes as an identifier.
                i = start + 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let mut word: String = chars[i..j].iter().collect();
            if word == "r" && chars.get(j) == Some(&'#') {
                // A raw identifier, r#type.
                let mut k = j + 1;
                while k < chars.len() && (chars[k].is_alphanumeric() || chars[k] == '_') {
                    k += 1;
                }
                word = chars[j + 1..k].iter().collect();
                j = k;
            }
            out.push(Token {
                tok: Tok::Ident(word),
                line,
            });
            i = j;
        } else {
            out.push(Token {
                tok: Tok::Punct(c),
                line,
            });
            i += 1;
        }
    }
    out
}

/// Where a raw string (`r"…"`, `r#"…"#`, `br##"…"##`) that starts at `i` ends.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"' && (1..=hashes).all(|h| chars.get(j + h) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// Drops every item under `#[cfg(test)]`: unit tests may call AWS (moto)
/// in ways the portal never does.
fn without_tests(tokens: Vec<Token>) -> Vec<Token> {
    let is_cfg_test = |t: &[Token]| {
        let words: Vec<String> = t
            .iter()
            .map(|t| match &t.tok {
                Tok::Ident(s) => s.clone(),
                Tok::Punct(c) => c.to_string(),
            })
            .collect();
        words == ["#", "[", "cfg", "(", "test", ")", "]"]
    };
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if i + 7 <= tokens.len() && is_cfg_test(&tokens[i..i + 7]) {
            // Skip to the end of the item: a `;` before any brace, or the
            // brace that closes its first one.
            let mut j = i + 7;
            let mut depth = 0usize;
            while j < tokens.len() {
                if tokens[j].is('{') {
                    depth += 1;
                } else if tokens[j].is('}') {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                } else if tokens[j].is(';') && depth == 0 {
                    break;
                }
                j += 1;
            }
            i = j + 1;
        } else {
            out.push(tokens[i].clone());
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Calls

/// One source file, tokenised, test code removed.
struct Source {
    path: String,
    tokens: Vec<Token>,
}

/// An AWS operation called somewhere: service prefix, snake_case name, where.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    service: String,
    operation: String,
    at: String,
}

/// What the scan found: the calls, and `.send()`s it could not place.
#[derive(Debug, Default)]
struct Scan {
    calls: Vec<Call>,
    unplaced: Vec<String>,
}

fn service_of_crate(krate: &str) -> Option<&'static str> {
    SERVICES.iter().find(|(c, _)| *c == krate).map(|(_, s)| *s)
}

/// Names that hold a client, across all files: struct fields and parameters
/// typed `aws_sdk_x::Client` (or an alias of it), and locals bound to one
/// (`let ec2 = &ctx.aws.ec2;`).
fn client_names(sources: &[Source]) -> BTreeMap<String, String> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let bind = |names: &mut BTreeMap<String, String>, name: &str, service: &str| -> bool {
        match names.get(name) {
            Some(known) if known != service => panic!(
                "`{name}` holds both a {known} and a {service} client; the scanner cannot tell calls on them apart, rename one"
            ),
            Some(_) => false,
            None => {
                names.insert(name.to_string(), service.to_string());
                true
            }
        }
    };
    let mut aliases: BTreeMap<String, String> = BTreeMap::new();
    for source in sources {
        let t = &source.tokens;
        for i in 0..t.len() {
            // use aws_sdk_x::Client as Alias;
            if let Some(service) = t[i].ident().and_then(service_of_crate) {
                if t.get(i + 1).is_some_and(|t| t.is(':'))
                    && t.get(i + 3).and_then(Token::ident) == Some("Client")
                    && t.get(i + 4).and_then(Token::ident) == Some("as")
                {
                    if let Some(alias) = t.get(i + 5).and_then(Token::ident) {
                        aliases.insert(alias.to_string(), service.to_string());
                    }
                }
            }
        }
    }
    for source in sources {
        let t = &source.tokens;
        for i in 0..t.len() {
            // name: &aws_sdk_x::Client  /  name: Alias
            let Some(name) = t[i].ident() else { continue };
            if !t.get(i + 1).is_some_and(|t| t.is(':')) || t.get(i + 2).is_some_and(|t| t.is(':')) {
                continue;
            }
            let mut j = i + 2;
            while t
                .get(j)
                .is_some_and(|t| t.is('&') || t.ident() == Some("mut"))
            {
                j += 1;
            }
            let Some(ty) = t.get(j).and_then(Token::ident) else {
                continue;
            };
            if let Some(service) = service_of_crate(ty) {
                if t.get(j + 1).is_some_and(|t| t.is(':'))
                    && t.get(j + 3).and_then(Token::ident) == Some("Client")
                {
                    bind(&mut names, name, service);
                }
            } else if let Some(service) = aliases.get(ty) {
                bind(&mut names, name, service);
            }
        }
    }
    // Locals bound to a known client, until nothing new turns up.
    loop {
        let mut grew = false;
        for source in sources {
            let t = &source.tokens;
            for i in 0..t.len() {
                if t[i].ident() != Some("let") {
                    continue;
                }
                let mut j = i + 1;
                if t.get(j).and_then(Token::ident) == Some("mut") {
                    j += 1;
                }
                let Some(local) = t.get(j).and_then(Token::ident) else {
                    continue;
                };
                if !t.get(j + 1).is_some_and(|t| t.is('=')) {
                    continue;
                }
                // The right side up to `;`: `&`? path `.clone()`?
                let end = (j + 2..t.len()).find(|&k| t[k].is(';')).unwrap_or(t.len());
                let mut rhs: Vec<&Tok> = t[j + 2..end].iter().map(|t| &t.tok).collect();
                if rhs.first() == Some(&&Tok::Punct('&')) {
                    rhs.remove(0);
                }
                let clone = [
                    Tok::Punct('.'),
                    Tok::Ident("clone".into()),
                    Tok::Punct('('),
                    Tok::Punct(')'),
                ];
                if rhs.len() > 4 && rhs[rhs.len() - 4..].iter().copied().eq(clone.iter()) {
                    rhs.truncate(rhs.len() - 4);
                }
                let is_path = !rhs.is_empty()
                    && rhs.iter().enumerate().all(|(k, tok)| match tok {
                        Tok::Ident(_) => k % 2 == 0,
                        Tok::Punct('.') => k % 2 == 1,
                        _ => false,
                    });
                if !is_path {
                    continue;
                }
                let Some(Tok::Ident(last)) = rhs.last() else {
                    continue;
                };
                if let Some(service) = names.get(last).cloned() {
                    grew |= bind(&mut names, local, &service);
                }
            }
        }
        if !grew {
            break;
        }
    }
    names
}

/// Every operation called on a client, and every `.send()` traced back to
/// where its chain starts.
fn scan(sources: &[Source]) -> Scan {
    let clients = client_names(sources);
    let mut found = Scan::default();
    for source in sources {
        let t = &source.tokens;
        let at = |i: usize| format!("{}:{}", source.path, t[i].line);
        // Builders kept in a local before they are sent:
        // `let mut create = s3.create_bucket()…; … create.send()`.
        let mut builders: BTreeSet<String> = BTreeSet::new();
        for i in 0..t.len() {
            // client . operation (
            let Some(name) = t[i].ident() else { continue };
            let Some(service) = clients.get(name) else {
                continue;
            };
            if i > 0 && t[i - 1].is(':') {
                continue;
            }
            if !(t.get(i + 1).is_some_and(|t| t.is('.')) && t.get(i + 3).is_some_and(|t| t.is('(')))
            {
                continue;
            }
            let Some(operation) = t[i + 2].ident() else {
                continue;
            };
            if matches!(operation, "clone" | "config") {
                continue;
            }
            found.calls.push(Call {
                service: service.clone(),
                operation: operation.to_string(),
                at: at(i),
            });
            // Walk back over the receiver path to a `let x =`.
            let mut k = i;
            while k >= 2 && t[k - 1].is('.') && t[k - 2].ident().is_some() {
                k -= 2;
            }
            if k >= 1 && t[k - 1].is('&') {
                k -= 1;
            }
            if k >= 2 && t[k - 1].is('=') {
                if let Some(local) = t[k - 2].ident() {
                    builders.insert(local.to_string());
                }
            }
        }
        for i in 0..t.len() {
            // . send ( )
            if !(t[i].is('.')
                && t.get(i + 1).and_then(Token::ident) == Some("send")
                && t.get(i + 2).is_some_and(|t| t.is('('))
                && t.get(i + 3).is_some_and(|t| t.is(')')))
            {
                continue;
            }
            match chain_start(t, i) {
                Some((receiver, first)) => {
                    if let Some(service) = clients.get(&receiver) {
                        let Some(operation) = first else {
                            found
                                .unplaced
                                .push(format!("{}: `{receiver}.send()`", at(i)));
                            continue;
                        };
                        // Already counted from the client side; check they agree.
                        let counted = found
                            .calls
                            .iter()
                            .any(|c| c.service == *service && c.operation == operation);
                        if !counted {
                            found.unplaced.push(format!(
                                "{}: `{receiver}.{operation}()…send()` not seen from the client",
                                at(i)
                            ));
                        }
                    } else if builders.contains(&receiver)
                        || NOT_AWS
                            .iter()
                            .any(|(file, r)| source.path.ends_with(file) && *r == receiver)
                    {
                    } else {
                        found.unplaced.push(format!(
                            "{}: `.send()` on `{receiver}`, which is neither a known AWS client, a builder from one, nor listed in NOT_AWS",
                            at(i)
                        ));
                    }
                }
                None => found.unplaced.push(format!(
                    "{}: `.send()` whose chain the scanner cannot follow",
                    at(i)
                )),
            }
        }
    }
    found.calls.sort();
    found
}

/// From the `.` of `.send()` at `dot`, back over `.method(…)` links to the
/// chain's receiver: `(receiver's last name, the first method called on it)`.
fn chain_start(t: &[Token], dot: usize) -> Option<(String, Option<String>)> {
    let mut j = dot.checked_sub(1)?;
    let mut first = None;
    loop {
        if t[j].is(')') {
            let mut depth = 0usize;
            let mut k = j;
            loop {
                if t[k].is(')') {
                    depth += 1;
                } else if t[k].is('(') {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                k = k.checked_sub(1)?;
            }
            let method = t.get(k.checked_sub(1)?)?.ident()?;
            if !t.get(k.checked_sub(2)?)?.is('.') {
                return None;
            }
            first = Some(method.to_string());
            j = k.checked_sub(3)?;
        } else {
            return Some((t[j].ident()?.to_string(), first));
        }
    }
}

/// The IAM action an operation needs, `None` if AWS asks for none.
fn action(service: &str, operation: &str) -> Result<Option<String>, String> {
    if let Some((_, _, action)) = RENAMED
        .iter()
        .find(|(s, o, _)| *s == service && *o == operation)
    {
        return Ok(action.map(str::to_string));
    }
    if service == "s3" {
        return Err(format!(
            "s3 operation `{operation}`: add its IAM action to RENAMED (S3's action names often differ from the operation's)"
        ));
    }
    if operation.starts_with("wait_until_") {
        return Err(format!(
            "{service} waiter `{operation}`: list the describe operation it polls in RENAMED"
        ));
    }
    let pascal: String = operation
        .split('_')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    Ok(Some(format!("{service}:{pascal}")))
}

// ---------------------------------------------------------------------------
// The repository

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn portal_sources() -> Vec<Source> {
    let root = root();
    let mut files = Vec::new();
    for dir in SCANNED {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    files
        .iter()
        .map(|path| Source {
            path: path
                .strip_prefix(&root)
                .unwrap_or(path)
                .display()
                .to_string(),
            tokens: without_tests(lex(
                &std::fs::read_to_string(path).expect("read source file")
            )),
        })
        .collect()
}

/// The documents the operator policy is made of.
const POLICY_FILES: &[&str] = &[
    "policy/operator-policy.json",
    "policy/operator-iam-policy.json",
];

/// The ARN pattern of the instance roles' permissions boundary in the
/// operator policy's conditions (any account: a boundary must be a policy
/// of the role's own account).
const BOUNDARY_ARN: &str = "arn:aws:iam::*:policy/cloudpulse-instance-boundary";

fn read_json(relative: &str) -> Value {
    let text = std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("read {relative}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not JSON: {e}"))
}

/// The operator policy's documents as one: every statement of each.
fn policy() -> Value {
    let mut statements = Vec::new();
    for file in POLICY_FILES {
        let document = read_json(file);
        assert_eq!(document["Version"], "2012-10-17", "{file}");
        statements.extend(
            document["Statement"]
                .as_array()
                .unwrap_or_else(|| panic!("{file} has no Statement list"))
                .iter()
                .cloned(),
        );
    }
    serde_json::json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Every statement of the operator policy that allows `action`.
fn statements_allowing(policy: &Value, action: &str) -> Vec<Value> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| one_or_many(&s["Action"]).iter().any(|a| a == action))
        .cloned()
        .collect()
}

fn one_or_many(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect(),
        other => panic!("expected a string or a list, got {other}"),
    }
}

/// Every action the policy allows, with the resources of its statements.
fn policy_grants(policy: &Value) -> BTreeMap<String, Vec<String>> {
    assert_eq!(policy["Version"], "2012-10-17");
    let mut grants: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for statement in policy["Statement"].as_array().expect("a Statement list") {
        let sid = statement["Sid"].as_str().unwrap_or("?");
        assert_eq!(statement["Effect"], "Allow", "statement {sid}");
        assert!(
            statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
            "statement {sid}: NotAction/NotResource grant more than they name"
        );
        for action in one_or_many(&statement["Action"]) {
            assert!(
                !action.contains('*') && !action.contains('?'),
                "statement {sid}: `{action}` is a wildcard; name each action"
            );
            grants
                .entry(action)
                .or_default()
                .extend(one_or_many(&statement["Resource"]));
        }
    }
    grants
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn the_policy_grants_exactly_what_the_code_calls() {
    let found = scan(&portal_sources());
    assert!(
        found.unplaced.is_empty(),
        "calls the scanner cannot place:\n  {}",
        found.unplaced.join("\n  ")
    );

    let mut needed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for call in &found.calls {
        match action(&call.service, &call.operation) {
            Ok(Some(action)) => needed.entry(action).or_default().push(call.at.clone()),
            Ok(None) => {}
            Err(e) => problems.push(format!("{}: {e}", call.at)),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let grants = policy_grants(&policy());
    let granted: BTreeSet<&String> = grants.keys().collect();
    let implied: BTreeSet<String> = IMPLIED.iter().map(|(a, _, _)| a.to_string()).collect();

    let missing: Vec<String> = needed
        .iter()
        .filter(|(action, _)| !granted.contains(action))
        .map(|(action, at)| format!("{action} (called at {})", at.join(", ")))
        .collect();
    let unused: Vec<&String> = granted
        .iter()
        .copied()
        .filter(|a| !needed.contains_key(*a) && !implied.contains(*a))
        .collect();
    let implied_missing: Vec<&String> = implied.iter().filter(|a| !granted.contains(*a)).collect();
    let implied_called: Vec<&String> = implied.iter().filter(|a| needed.contains_key(*a)).collect();
    assert!(
        missing.is_empty(),
        "the code calls actions policy/operator-policy.json does not grant:\n  {}",
        missing.join("\n  ")
    );
    assert!(
        unused.is_empty(),
        "policy/operator-policy.json grants actions nothing calls (remove them, or list them in IMPLIED with the reason): {unused:?}"
    );
    assert!(
        implied_missing.is_empty(),
        "actions AWS checks on the portal's behalf are missing from the policy: {implied_missing:?}"
    );
    assert!(
        implied_called.is_empty(),
        "these are called directly now; drop them from IMPLIED: {implied_called:?}"
    );
}

#[test]
fn the_scanner_finds_every_kind_of_call_in_the_portal() {
    let found = scan(&portal_sources());
    let seen: BTreeSet<(String, String)> = found
        .calls
        .iter()
        .map(|c| (c.service.clone(), c.operation.clone()))
        .collect();
    // One of each way the code reaches AWS: a local bound to a client over
    // several lines, a builder kept in a variable, `ctx.aws.x` chains, a
    // paginator, a field of another struct, and the telemetry crate.
    for (service, operation) in [
        ("ec2", "create_vpc"),
        ("s3", "create_bucket"),
        ("iam", "create_role"),
        ("iam", "list_roles"),
        ("sts", "get_caller_identity"),
        ("cloudwatch", "get_metric_data"),
        ("ssm", "send_command"),
        ("elasticloadbalancing", "create_listener"),
        ("autoscaling", "create_auto_scaling_group"),
    ] {
        assert!(
            seen.contains(&(service.to_string(), operation.to_string())),
            "the scanner missed {service} {operation}; it found {seen:?}"
        );
    }
    assert!(
        seen.len() >= 90,
        "only {} distinct operations found; the scanner has gone blind",
        seen.len()
    );
}

#[test]
fn the_scanner_reads_tricky_source_right() {
    let src = r####"
        // ec2.delete_vpc() in a comment is no call
        /* nor /* nested */ iam.delete_role() here */
        struct Aws { pub ec2: aws_sdk_ec2::Client, s3: aws_sdk_s3::Client }
        use aws_sdk_ssm::Client as Ssm;
        fn f(aws: &Aws, runner: &Ssm, label: &'static str) {
            let _ = "s3.delete_bucket() in a string";
            let _ = r#"ec2.delete_subnet() in a raw "string""#;
            let _ = '"';
            let compute = &aws.ec2;
            compute
                .create_subnet()
                .vpc_id("x")
                .send();
            let mut put = aws.s3.put_object().bucket("b");
            put = put.key("k");
            put.send();
            runner.send_command().send();
            aws.ec2.clone();
        }
        #[cfg(test)]
        mod tests {
            fn g(aws: &Aws) { aws.ec2.terminate_instances().send(); }
        }
    "####;
    let found = scan(&[Source {
        path: "tricky.rs".into(),
        tokens: without_tests(lex(src)),
    }]);
    assert!(found.unplaced.is_empty(), "{:?}", found.unplaced);
    let calls: Vec<(String, String, String)> = found
        .calls
        .iter()
        .map(|c| (c.service.clone(), c.operation.clone(), c.at.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            ("ec2".into(), "create_subnet".into(), "tricky.rs:11".into()),
            ("s3".into(), "put_object".into(), "tricky.rs:15".into()),
            ("ssm".into(), "send_command".into(), "tricky.rs:18".into()),
        ]
    );

    // A `.send()` on something it cannot place fails the scan.
    let unknown = scan(&[Source {
        path: "unknown.rs".into(),
        tokens: without_tests(lex("fn f(c: &Thing) { c.describe_vpcs().send(); }")),
    }]);
    assert_eq!(unknown.unplaced.len(), 1, "{:?}", unknown.unplaced);
}

#[test]
fn operations_map_to_their_iam_actions() {
    let cases = [
        ("ec2", "describe_instances", Some("ec2:DescribeInstances")),
        (
            "elasticloadbalancing",
            "describe_target_health",
            Some("elasticloadbalancing:DescribeTargetHealth"),
        ),
        ("s3", "list_objects_v2", Some("s3:ListBucket")),
        ("s3", "head_bucket", Some("s3:ListBucket")),
        (
            "s3",
            "put_bucket_encryption",
            Some("s3:PutEncryptionConfiguration"),
        ),
        ("sts", "get_caller_identity", None),
    ];
    for (service, operation, expected) in cases {
        assert_eq!(
            action(service, operation).unwrap(),
            expected.map(str::to_string),
            "{service} {operation}"
        );
    }
    assert!(action("s3", "get_bucket_lifecycle_configuration").is_err());
}

#[test]
fn the_policy_scopes_what_iam_lets_it_scope() {
    let grants = policy_grants(&policy());
    let unscoped_ok = ["iam:ListRoles", "s3:ListAllMyBuckets"];
    for (action, resources) in &grants {
        let expected: &[&str] = match action.split(':').next() {
            Some("iam") if action == "iam:CreateServiceLinkedRole" => {
                &["arn:aws:iam::*:role/aws-service-role/"]
            }
            Some("iam") if action.contains("InstanceProfile") => {
                &["arn:aws:iam::*:instance-profile/cloudpulse-"]
            }
            Some("iam") if action == "iam:GetPolicy" => &[BOUNDARY_ARN],
            Some("iam") => &["arn:aws:iam::*:role/cloudpulse-"],
            Some("s3") => &["arn:aws:s3:::cloudpulse-"],
            Some("elasticloadbalancing") if !action.contains(":Describe") => &[
                "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/cp-",
                "arn:aws:elasticloadbalancing:*:*:targetgroup/cp-",
                "arn:aws:elasticloadbalancing:*:*:listener/app/cp-",
            ],
            Some("autoscaling") if !action.contains(":Describe") => {
                &["arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/cloudpulse-"]
            }
            Some("cloudwatch")
                if !["cloudwatch:DescribeAlarms", "cloudwatch:GetMetricData"]
                    .contains(&action.as_str()) =>
            {
                &["arn:aws:cloudwatch:*:*:alarm:cloudpulse-"]
            }
            _ => continue,
        };
        if unscoped_ok.contains(&action.as_str()) {
            assert_eq!(resources, &["*"], "{action}");
            continue;
        }
        for resource in resources {
            assert!(
                expected.iter().any(|prefix| resource.starts_with(prefix)),
                "{action} on {resource}: expected one of {expected:?}"
            );
        }
    }
}

#[test]
fn each_document_fits_one_managed_policy() {
    // IAM's limit for a customer managed policy: 6,144 characters, not
    // counting white space.
    let mut sids = BTreeSet::new();
    for file in POLICY_FILES {
        let document = read_json(file);
        let size = document
            .to_string()
            .chars()
            .filter(|c| !c.is_whitespace())
            .count();
        assert!(
            size <= 6144,
            "{file} has {size} characters; split it before IAM refuses it"
        );
        for statement in document["Statement"].as_array().unwrap() {
            let sid = statement["Sid"]
                .as_str()
                .expect("every statement has a Sid");
            assert!(sids.insert(sid.to_string()), "Sid {sid} twice");
        }
    }
}

/// What made the operator as strong as an administrator: create a
/// `cloudpulse-*` role, give it any inline policy, pass it to an instance
/// started from any template with any type. Each door is shut by a
/// condition, and nothing that could undo one is granted.
#[test]
fn the_policy_lets_no_one_mint_a_role_beyond_the_boundary() {
    let policy = policy();
    for action in [
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:AttachRolePolicy",
        "iam:PutRolePermissionsBoundary",
    ] {
        let statements = statements_allowing(&policy, action);
        assert!(!statements.is_empty(), "{action} is not granted at all");
        for statement in statements {
            let condition = &statement["Condition"];
            let boundary = condition["ArnLike"]["iam:PermissionsBoundary"]
                .as_str()
                .or_else(|| condition["ArnEquals"]["iam:PermissionsBoundary"].as_str());
            assert_eq!(
                boundary,
                Some(BOUNDARY_ARN),
                "{action} in {} without the permissions boundary condition",
                statement["Sid"]
            );
        }
    }
    let pass = statements_allowing(&policy, "iam:PassRole");
    assert!(!pass.is_empty());
    for statement in pass {
        assert_eq!(
            statement["Condition"]["StringEquals"]["iam:PassedToService"], "ec2.amazonaws.com",
            "{} passes roles to any service",
            statement["Sid"]
        );
    }
    // Ways around the boundary: none is granted.
    let granted = policy_grants(&policy);
    for forbidden in [
        "iam:DeleteRolePermissionsBoundary",
        "iam:CreatePolicy",
        "iam:CreatePolicyVersion",
        "iam:DeletePolicy",
        "iam:DeletePolicyVersion",
        "iam:SetDefaultPolicyVersion",
        "iam:UpdateAssumeRolePolicy",
        "iam:CreateUser",
        "iam:CreateAccessKey",
        "iam:AttachUserPolicy",
        "iam:PutUserPolicy",
        "sts:AssumeRole",
    ] {
        assert!(!granted.contains_key(forbidden), "{forbidden} is granted");
    }
}

#[test]
fn instances_start_only_from_cloudpulse_templates_with_a_priced_type() {
    let policy = policy();
    let statements = statements_allowing(&policy, "ec2:RunInstances");
    let priced: BTreeSet<String> = cloudpulse_core::params::INSTANCE_TYPES
        .iter()
        .map(|t| t.to_string())
        .collect();
    for ty in &priced {
        assert!(
            cloudpulse_core::pricing::PRICE_TABLE
                .iter()
                .all(|region| region.instance_hour(ty).is_some()),
            "{ty} is not in the price table"
        );
    }
    let template_condition = |statement: &Value| {
        statement["Condition"]["ArnLike"]["ec2:LaunchTemplate"].as_str()
            == Some("arn:aws:ec2:*:*:launch-template/*")
    };
    let mut instance_statements = 0;
    let mut template_statements = 0;
    for statement in &statements {
        let sid = &statement["Sid"];
        assert!(
            statement.get("Condition").is_some(),
            "{sid}: RunInstances without a condition"
        );
        for resource in one_or_many(&statement["Resource"]) {
            assert!(resource != "*", "{sid}: RunInstances on every resource");
            if resource == "arn:aws:ec2:*:*:instance/*" {
                instance_statements += 1;
                let types: BTreeSet<String> =
                    one_or_many(&statement["Condition"]["StringEquals"]["ec2:InstanceType"])
                        .into_iter()
                        .collect();
                assert_eq!(types, priced, "{sid}: instance types");
                assert!(template_condition(statement), "{sid}: no launch template");
            } else if resource == "arn:aws:ec2:*:*:launch-template/*" {
                template_statements += 1;
                assert_eq!(
                    statement["Condition"]["StringLike"]["ec2:ResourceTag/cloudpulse:deployment"],
                    "*",
                    "{sid}: any launch template"
                );
            } else {
                assert!(
                    template_condition(statement),
                    "{sid}: {resource} outside a launch template"
                );
            }
        }
    }
    assert_eq!((instance_statements, template_statements), (1, 1));
}

/// The boundary is the most an instance role can ever do, whatever policy
/// it is given: what the instance service and the SSM agent need, nothing
/// that reaches IAM, STS, EC2 or other instances.
#[test]
fn the_boundary_holds_an_instance_to_what_it_needs() {
    let boundary = read_json("policy/instance-boundary.json");
    let granted = policy_grants(&boundary);
    let mut actions: Vec<&str> = granted.keys().map(String::as_str).collect();
    actions.sort_unstable();
    // The instance role's inline policy (steps/iam.rs) and AWS's
    // AmazonSSMManagedInstanceCore (version 2, unchanged since 2019), which
    // the role also carries for Run Command.
    let mut expected = vec![
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeScalingActivities",
        "cloudwatch:PutMetricData",
        "s3:GetObject",
        "ec2messages:AcknowledgeMessage",
        "ec2messages:DeleteMessage",
        "ec2messages:FailMessage",
        "ec2messages:GetEndpoint",
        "ec2messages:GetMessages",
        "ec2messages:SendReply",
        "ssm:DescribeAssociation",
        "ssm:DescribeDocument",
        "ssm:GetDeployablePatchSnapshotForInstance",
        "ssm:GetDocument",
        "ssm:GetManifest",
        "ssm:GetParameter",
        "ssm:GetParameters",
        "ssm:ListAssociations",
        "ssm:ListInstanceAssociations",
        "ssm:PutComplianceItems",
        "ssm:PutConfigurePackageResult",
        "ssm:PutInventory",
        "ssm:UpdateAssociationStatus",
        "ssm:UpdateInstanceAssociationStatus",
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    ];
    expected.sort_unstable();
    assert_eq!(actions, expected);
    assert_eq!(
        granted["s3:GetObject"],
        ["arn:aws:s3:::cloudpulse-*/instance/*"]
    );
    for statement in boundary["Statement"].as_array().unwrap() {
        if one_or_many(&statement["Action"]) == ["cloudwatch:PutMetricData"] {
            assert_eq!(
                statement["Condition"]["StringEquals"]["cloudwatch:namespace"],
                "CloudPulse"
            );
        }
    }
    // The sandbox's account has the same boundary, by the name the
    // conditions above name (the engine's deploy tests find it there).
    assert!(BOUNDARY_ARN.ends_with(&format!(
        "policy/{}",
        cloudpulse_sandbox::moto::INSTANCE_BOUNDARY
    )));
    assert_eq!(
        read_json("policy/instance-boundary.json"),
        serde_json::from_str::<Value>(cloudpulse_sandbox::moto::INSTANCE_BOUNDARY_DOCUMENT)
            .unwrap()
    );
}
