//! The user data script, rendered and run against a temporary root with its
//! test hooks (local binary instead of S3, no useradd/systemctl).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use cloudpulse_instance::user_data::UserData;
use sha2::{Digest, Sha256};

const FAKE_BINARY: &[u8] = b"#!/bin/sh\necho cloudpulse\n";

fn render(sha256: &str) -> String {
    UserData {
        bucket: "artifacts",
        key: "builds/cloudpulse-instance",
        sha256,
        region: "eu-west-1",
        asg_name: "web-asg",
    }
    .render()
    .expect("render")
}

fn run(script: &str, root: &Path, binary: &Path) -> Output {
    let path = root.join("user-data.sh");
    std::fs::write(&path, script).unwrap();
    Command::new("bash")
        .arg(&path)
        .env("CLOUDPULSE_ROOT", root.join("root"))
        .env("CLOUDPULSE_BINARY_FILE", binary)
        .env("CLOUDPULSE_NO_SYSTEM", "1")
        .output()
        .expect("run bash")
}

#[test]
fn template_and_rendered_script_parse() {
    for script in [
        cloudpulse_instance::user_data::TEMPLATE.to_string(),
        render(&"a".repeat(64)),
    ] {
        let status = Command::new("bash")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[test]
fn installs_binary_env_file_and_hardened_unit() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("binary");
    std::fs::write(&binary, FAKE_BINARY).unwrap();
    let sha = hex::encode(Sha256::digest(FAKE_BINARY));
    let output = run(&render(&sha), dir.path(), &binary);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let root = dir.path().join("root");

    let installed = root.join("usr/local/bin/cloudpulse-instance");
    assert_eq!(std::fs::read(&installed).unwrap(), FAKE_BINARY);
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);

    let env_file = root.join("etc/cloudpulse/instance.env");
    let env = std::fs::read_to_string(&env_file).unwrap();
    for line in [
        "ASG_NAME=web-asg",
        "AWS_REGION=eu-west-1",
        "PORT=3000",
        "HOST=0.0.0.0",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing in {env}");
    }
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    // The service's own parser accepts what the script writes.
    let vars = cloudpulse_instance::config::parse_env_file(&env_file, &env).unwrap();
    assert_eq!(vars["ASG_NAME"], "web-asg");

    let unit = std::fs::read_to_string(root.join("etc/systemd/system/cloudpulse-instance.service"))
        .unwrap();
    for directive in [
        "User=cloudpulse",
        "ExecStart=/usr/local/bin/cloudpulse-instance",
        "EnvironmentFile=/etc/cloudpulse/instance.env",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == directive), "{directive} missing");
    }
    // systemd must wait longer than the service's drain.
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    let drain_ms: u64 = env
        .lines()
        .find_map(|l| l.strip_prefix("DRAIN_TIMEOUT_MS="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        stop * 1000 > drain_ms,
        "TimeoutStopSec {stop} <= drain {drain_ms} ms"
    );
}

#[test]
fn a_checksum_mismatch_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("binary");
    std::fs::write(&binary, FAKE_BINARY).unwrap();
    let output = run(&render(&"0".repeat(64)), dir.path(), &binary);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SHA-256 mismatch"));
    assert!(!dir
        .path()
        .join("root/usr/local/bin/cloudpulse-instance")
        .exists());
}

#[test]
fn an_unrendered_template_refuses_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("binary");
    std::fs::write(&binary, FAKE_BINARY).unwrap();
    let output = run(
        cloudpulse_instance::user_data::TEMPLATE,
        dir.path(),
        &binary,
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not rendered"));
}

/// systemd's own parser accepts every directive (`.ci/run` installs
/// `systemd-analyze`). ExecStart is pointed at an existing file, since
/// verify also checks the executable exists.
#[test]
fn systemd_accepts_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("binary");
    std::fs::write(&binary, FAKE_BINARY).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sha = hex::encode(Sha256::digest(FAKE_BINARY));
    assert!(run(&render(&sha), dir.path(), &binary).status.success());
    let unit = std::fs::read_to_string(
        dir.path()
            .join("root/etc/systemd/system/cloudpulse-instance.service"),
    )
    .unwrap()
    .replace(
        "ExecStart=/usr/local/bin/cloudpulse-instance",
        &format!("ExecStart={}", binary.display()),
    );
    let unit_path = dir.path().join("cloudpulse-instance.service");
    std::fs::write(&unit_path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success() && said.trim().is_empty(), "{said}");
}
