//! The container image, as far as it can be checked without Docker: the
//! Dockerfile read by Docker's own parser (the pinned PyPI `dockerfile` in
//! the project's virtualenv, `tests/dockerfile_check.py` says what it
//! checks), and the health check it names run against a real portal.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The virtualenv's Python, as `cargo xtask test` passes it.
fn python() -> PathBuf {
    std::env::var_os("CLOUDPULSE_MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

fn check(dockerfile: &Path) -> Output {
    let python = python();
    let output = Command::new(&python)
        .arg(root().join("portal/server/tests/dockerfile_check.py"))
        .arg(dockerfile)
        .arg(root().join(".dockerignore"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); `cargo xtask setup` makes the virtualenv",
                python.display()
            )
        });
    if output.status.code() == Some(3) {
        panic!("{}", String::from_utf8_lossy(&output.stderr));
    }
    output
}

fn report(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_dockerfile_builds_a_small_non_root_image_with_a_health_check() {
    let output = check(&root().join("Dockerfile"));
    assert!(output.status.success(), "{}", report(&output));
}

#[test]
fn the_check_refuses_a_dockerfile_that_breaks_the_rules() {
    let original = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runtime = "ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot";
    let broken: [(&str, String, &str); 6] = [
        (
            "a malformed digest",
            original.replace(runtime, &format!("{runtime}@sha256:1234")),
            "64 hexadecimal digits",
        ),
        (
            "an image moved off distroless",
            original.replace(runtime, "ARG RUNTIME_IMAGE=debian:12"),
            "not scratch or distroless static",
        ),
        (
            "root",
            original.replace("USER 65532:65532", "USER root"),
            "runs as root",
        ),
        (
            "no health check",
            original.replace("HEALTHCHECK", "# HEALTHCHECK"),
            "no HEALTHCHECK",
        ),
        (
            "a secret",
            original.replace(
                "ENV CLOUDPULSE_BIND",
                "ENV CLOUDPULSE_TOKEN=abc\nENV CLOUDPULSE_BIND",
            ),
            "bakes a secret",
        ),
        (
            "no volume",
            original.replace("VOLUME [\"/data\"]", ""),
            "not on a VOLUME",
        ),
    ];
    // A well-formed digest after the tag is what pinning looks like.
    let pinned = original.replace(runtime, &format!("{runtime}@sha256:{}", "0".repeat(64)));
    assert_ne!(pinned, original);
    let path = dir.path().join("Dockerfile");
    std::fs::write(&path, &pinned).unwrap();
    let output = check(&path);
    assert!(output.status.success(), "pinned: {}", report(&output));
    for (what, text, expected) in broken {
        assert_ne!(text, original, "{what}: the Dockerfile changed shape");
        let path = dir.path().join("Dockerfile");
        std::fs::write(&path, text).unwrap();
        let output = check(&path);
        let said = report(&output);
        assert_eq!(output.status.code(), Some(1), "{what}: {said}");
        assert!(said.contains(expected), "{what}: {said}");
    }
}

fn healthcheck(args: &[&str], bind: Option<String>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command.arg("healthcheck").args(args);
    isolated(&mut command, dir.path());
    command.env_remove("CLOUDPULSE_BIND");
    if let Some(bind) = bind {
        command.env("CLOUDPULSE_BIND", bind);
    }
    command.output().expect("run cloudpulse healthcheck")
}

#[tokio::test]
async fn the_health_check_asks_the_portal_it_runs_beside() {
    let dir = tempfile::tempdir().unwrap();
    let (portal, port) = serve(dir.path(), &[], &[]);

    // As in the image: the portal binds every address, the check asks loopback.
    let ok = healthcheck(&[], Some(format!("0.0.0.0:{port}")));
    assert!(ok.status.success(), "{}", report(&ok));
    assert!(report(&ok).contains("healthy"), "{}", report(&ok));

    let explicit = healthcheck(&[&format!("{}/healthz", portal.url)], None);
    assert!(explicit.status.success(), "{}", report(&explicit));

    // Nothing listening: unhealthy, one line, exit 1.
    let down = healthcheck(&[], Some(format!("127.0.0.1:{}", closed_port())));
    assert_eq!(down.status.code(), Some(1), "{}", report(&down));
    assert!(
        report(&down).starts_with("unhealthy: "),
        "{}",
        report(&down)
    );

    let misuse = healthcheck(&["--bogus"], None);
    assert_eq!(misuse.status.code(), Some(2), "{}", report(&misuse));
}
