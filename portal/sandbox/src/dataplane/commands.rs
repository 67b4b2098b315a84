//! SSM Run Command in the sandbox.
//!
//! On AWS the portal stresses an instance or makes it fail its health checks
//! by sending `AWS-RunShellScript` with a `cloudpulse-instance …` command
//! line through SSM, and the SSM agent on the instance runs it. moto records
//! the command and runs nothing. The gateway therefore hands every
//! `SendCommand` that moto accepted to the data plane, which runs the same
//! command line against the instance's process (see
//! [`super::process::run_on_instance`]).
//!
//! Only the instance service's own commands are carried out: the sandbox
//! runs on the developer's machine, and an arbitrary shell script sent to a
//! pretend instance has no business running there.

use serde::Deserialize;

/// The program a sandbox instance can run.
const PROGRAM: &str = "cloudpulse-instance";

/// A `SendCommand` moto has accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCommand {
    pub command_id: String,
    pub instance_ids: Vec<String>,
    /// The `commands` parameter: one shell line each.
    pub commands: Vec<String>,
}

/// The request and moto's answer (awsJson 1.1) of a `SendCommand`; `None`
/// for anything that does not parse as one.
pub fn from_send_command(request: &[u8], response: &[u8]) -> Option<RunCommand> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request {
        #[serde(default)]
        instance_ids: Vec<String>,
        #[serde(default)]
        parameters: std::collections::HashMap<String, Vec<String>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response {
        command: Sent,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Sent {
        command_id: String,
    }
    let mut request: Request = serde_json::from_slice(request).ok()?;
    let response: Response = serde_json::from_slice(response).ok()?;
    Some(RunCommand {
        command_id: response.command.command_id,
        instance_ids: request.instance_ids,
        commands: request.parameters.remove("commands").unwrap_or_default(),
    })
}

/// The longest stress or health failure the sandbox runs, whatever a
/// command asks (the instance binary's own limit).
pub const MAX_SECONDS: u64 = 3_600;

/// What the data plane runs for one command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The arguments to give the instance binary.
    pub args: Vec<String>,
    /// Stress workers it will keep busy (0 for anything but a stress).
    pub stress_workers: usize,
}

/// The arguments to give the instance binary for one command line, or why
/// the sandbox will not run it. `free_workers` is how many more stress
/// workers the instance may run: one per vCPU of its type, less those
/// already busy. A stress gets at most that many (one when it names none),
/// and every `--seconds` is cut to [`MAX_SECONDS`], whatever the line says:
/// the sandbox runs on the developer's machine, and a `--workers 256` sent
/// to a pretend instance must not take that machine over.
pub fn instance_args(line: &str, free_workers: usize) -> Result<Planned, String> {
    let mut words = line.split_whitespace();
    let program = words.next().unwrap_or_default();
    let name = program.rsplit('/').next().unwrap_or_default();
    if name != PROGRAM {
        return Err(format!(
            "the sandbox only runs {PROGRAM} commands on its instances, not {line:?}"
        ));
    }
    let mut args: Vec<String> = words.map(str::to_string).collect();
    if let Some(bad) = args
        .iter()
        .find(|w| !w.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(format!(
            "{bad:?} in {line:?} is not a plain argument; the sandbox runs no shell syntax"
        ));
    }
    let stress = args.first().map(String::as_str) == Some("stress");
    if stress && free_workers == 0 {
        return Err(format!(
            "{line:?}: the instance already runs one stress worker per vCPU; the sandbox \
             starts no more until one ends"
        ));
    }
    if stress && !args.iter().any(|a| a == "--workers") {
        args.extend(["--workers".to_string(), "1".to_string()]);
    }
    // Every occurrence: the binary reads the last one.
    let mut workers = 0;
    for i in 1..args.len() {
        let (flag, value) = (&args[i - 1], &args[i]);
        let clamped = match flag.as_str() {
            "--seconds" => clamp(value, MAX_SECONDS as usize),
            "--workers" if stress => clamp(value, free_workers),
            _ => None,
        };
        if flag == "--workers" && stress {
            workers = clamped
                .as_deref()
                .unwrap_or(value)
                .parse::<usize>()
                .unwrap_or(0);
        }
        if let Some(clamped) = clamped {
            args[i] = clamped;
        }
    }
    Ok(Planned {
        args,
        stress_workers: if stress {
            workers.clamp(1, free_workers)
        } else {
            0
        },
    })
}

/// `limit` for a whole number above it (however many digits it has);
/// `None` for one within it, or for anything else, which the instance
/// binary refuses with a message of its own.
fn clamp(value: &str, limit: usize) -> Option<String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let within = value.parse::<usize>().is_ok_and(|n| n <= limit);
    (!within).then(|| limit.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_command_is_read_from_request_and_answer() {
        let request = br#"{"DocumentName":"AWS-RunShellScript","InstanceIds":["i-1","i-2"],
            "Parameters":{"commands":["cloudpulse-instance stress --seconds 30"]}}"#;
        let response = br#"{"Command":{"CommandId":"c-1","Status":"Pending"}}"#;
        assert_eq!(
            from_send_command(request, response),
            Some(RunCommand {
                command_id: "c-1".into(),
                instance_ids: vec!["i-1".into(), "i-2".into()],
                commands: vec!["cloudpulse-instance stress --seconds 30".into()],
            })
        );
        assert_eq!(from_send_command(b"not json", response), None);
        assert_eq!(from_send_command(request, b"{}"), None);
    }

    #[test]
    fn only_the_instance_binary_runs_and_stress_gets_one_worker() {
        let args = |line: &str| instance_args(line, 2).map(|p| p.args);
        assert_eq!(
            args("/usr/local/bin/cloudpulse-instance stress --seconds 30").unwrap(),
            ["stress", "--seconds", "30", "--workers", "1"]
        );
        assert_eq!(
            args("cloudpulse-instance stress --seconds 5 --workers 2").unwrap(),
            ["stress", "--seconds", "5", "--workers", "2"]
        );
        assert_eq!(
            args("cloudpulse-instance fail-health --seconds 60").unwrap(),
            ["fail-health", "--seconds", "60"]
        );
        for bad in [
            "rm -rf /",
            "stress --cpu 4",
            "cloudpulse-instance stress --seconds 5; rm x",
            "cloudpulse-instance fail-health --seconds $(id)",
            "",
        ] {
            assert!(instance_args(bad, 2).is_err(), "{bad}");
        }
    }

    #[test]
    fn workers_and_seconds_are_cut_to_the_instance_whatever_the_command_says() {
        let planned =
            instance_args("cloudpulse-instance stress --seconds 3600 --workers 256", 2).unwrap();
        assert_eq!(
            planned.args,
            ["stress", "--seconds", "3600", "--workers", "2"]
        );
        assert_eq!(planned.stress_workers, 2);
        // A number too long for any integer, and a repeated flag (the
        // binary reads the last), are cut too.
        let planned = instance_args(
            "cloudpulse-instance stress --workers 1 --seconds 99999999999999999999999 --workers 64",
            1,
        )
        .unwrap();
        assert_eq!(
            planned.args,
            [
                "stress",
                "--workers",
                "1",
                "--seconds",
                "3600",
                "--workers",
                "1"
            ]
        );
        assert_eq!(planned.stress_workers, 1);
        let planned = instance_args("cloudpulse-instance fail-health --seconds 86400", 2).unwrap();
        assert_eq!(planned.args, ["fail-health", "--seconds", "3600"]);
        assert_eq!(planned.stress_workers, 0);
        // Once every vCPU has its worker, another stress is not started
        // (a fail-health still is).
        let refused = instance_args("cloudpulse-instance stress --seconds 5", 0).unwrap_err();
        assert!(refused.contains("one stress worker per vCPU"), "{refused}");
        assert!(instance_args("cloudpulse-instance fail-health --seconds 5", 0).is_ok());
        // What the binary refuses by itself is passed on for it to refuse.
        assert_eq!(
            instance_args("cloudpulse-instance stress --seconds ten", 2)
                .unwrap()
                .args,
            ["stress", "--seconds", "ten", "--workers", "1"]
        );
    }
}
