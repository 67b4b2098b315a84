//! Plain data shared by the server, the REST API and the browser.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which cloud the portal talks to, and whether it can reach it right now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudStatus {
    pub mode: CloudMode,
    pub region: String,
    /// The endpoint override, when there is one (always in the sandbox).
    pub endpoint: Option<String>,
    /// The AWS account the credentials belong to, once learned.
    pub account: Option<String>,
    pub reachable: Reachability,
    pub checked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudMode {
    /// The local sandbox cloud: moto plus CloudPulse's emulated data plane.
    Sandbox,
    /// An AWS account reached through the standard credential chain.
    Aws,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Reachability {
    /// Not checked yet.
    Unknown,
    Reachable,
    Unreachable {
        reason: String,
    },
}

impl CloudStatus {
    /// A short label for the top bar, e.g. "Sandbox · us-east-1".
    pub fn label(&self) -> String {
        match (self.mode, &self.account) {
            (CloudMode::Sandbox, _) => format!("Sandbox cloud · {}", self.region),
            (CloudMode::Aws, Some(account)) => format!("AWS account {account} · {}", self.region),
            (CloudMode::Aws, None) => format!("AWS · {}", self.region),
        }
    }
}

/// The life of a deployment, as stored in `deployments.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Deploying,
    Live,
    Failed,
    TearingDown,
    TornDown,
}

impl DeploymentStatus {
    pub const ALL: [DeploymentStatus; 5] = [
        DeploymentStatus::Deploying,
        DeploymentStatus::Live,
        DeploymentStatus::Failed,
        DeploymentStatus::TearingDown,
        DeploymentStatus::TornDown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Deploying => "deploying",
            DeploymentStatus::Live => "live",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::TearingDown => "tearing_down",
            DeploymentStatus::TornDown => "torn_down",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Human wording for badges.
    pub fn label(self) -> &'static str {
        match self {
            DeploymentStatus::Deploying => "Deploying",
            DeploymentStatus::Live => "Live",
            DeploymentStatus::Failed => "Failed",
            DeploymentStatus::TearingDown => "Tearing down",
            DeploymentStatus::TornDown => "Torn down",
        }
    }
}

/// One row of the deployments list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSummary {
    pub id: String,
    pub name: String,
    pub region: String,
    pub status: DeploymentStatus,
    pub created_at: DateTime<Utc>,
    pub torn_down_at: Option<DateTime<Utc>>,
}

/// A page of results, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_round_trips() {
        for status in DeploymentStatus::ALL {
            assert_eq!(DeploymentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeploymentStatus::parse("running"), None);
    }

    #[test]
    fn status_serializes_as_stored_text() {
        for status in DeploymentStatus::ALL {
            let json = serde_json::to_string(&status).expect("serialize");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }

    #[test]
    fn reachability_is_tagged() {
        let json = serde_json::to_value(Reachability::Unreachable {
            reason: "connection refused".into(),
        })
        .expect("serialize");
        assert_eq!(json["state"], "unreachable");
        assert_eq!(json["reason"], "connection refused");
    }
}
