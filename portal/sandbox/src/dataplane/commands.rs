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

/// The arguments to give the instance binary for one command line, or why
/// the sandbox will not run it. A stress without `--workers` gets one
/// worker: a sandbox instance is modelled as one vCPU (see
/// [`super::cpu`]), and one busy thread is 100 % of it.
pub fn instance_args(line: &str) -> Result<Vec<String>, String> {
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
    if args.first().map(String::as_str) == Some("stress") && !args.iter().any(|a| a == "--workers")
    {
        args.extend(["--workers".to_string(), "1".to_string()]);
    }
    Ok(args)
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
        assert_eq!(
            instance_args("/usr/local/bin/cloudpulse-instance stress --seconds 30").unwrap(),
            ["stress", "--seconds", "30", "--workers", "1"]
        );
        assert_eq!(
            instance_args("cloudpulse-instance stress --seconds 5 --workers 2").unwrap(),
            ["stress", "--seconds", "5", "--workers", "2"]
        );
        assert_eq!(
            instance_args("cloudpulse-instance fail-health --seconds 60").unwrap(),
            ["fail-health", "--seconds", "60"]
        );
        for bad in [
            "rm -rf /",
            "stress --cpu 4",
            "cloudpulse-instance stress --seconds 5; rm x",
            "cloudpulse-instance fail-health --seconds $(id)",
            "",
        ] {
            assert!(instance_args(bad).is_err(), "{bad}");
        }
    }
}
