//! The user data that installs the instance service at boot.
//!
//! The script itself lives beside the service it installs
//! (`instance/deploy/user-data.sh`); the engine fills in its placeholders.

const TEMPLATE: &str = include_str!("../../../instance/deploy/user-data.sh");

/// What one deployment's instances need to fetch and start the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserData {
    pub bucket: String,
    pub key: String,
    pub sha256: String,
    pub region: String,
    pub asg_name: String,
}

/// The script with every placeholder filled in.
pub fn render(vars: &UserData) -> String {
    [
        ("__CLOUDPULSE_BUCKET__", vars.bucket.as_str()),
        ("__CLOUDPULSE_KEY__", vars.key.as_str()),
        ("__CLOUDPULSE_SHA256__", vars.sha256.as_str()),
        ("__CLOUDPULSE_REGION__", vars.region.as_str()),
        ("__CLOUDPULSE_ASG_NAME__", vars.asg_name.as_str()),
    ]
    .into_iter()
    .fold(TEMPLATE.to_string(), |script, (placeholder, value)| {
        script.replace(placeholder, value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        let script = render(&UserData {
            bucket: "cloudpulse-abc".into(),
            key: "instance/deadbeef/cloudpulse-instance".into(),
            sha256: "deadbeef".into(),
            region: "eu-west-1".into(),
            asg_name: "cloudpulse-abc-asg".into(),
        });
        assert!(
            !script.contains("__CLOUDPULSE_"),
            "unfilled placeholder in:\n{script}"
        );
        for value in [
            "cloudpulse-abc",
            "instance/deadbeef/cloudpulse-instance",
            "eu-west-1",
            "cloudpulse-abc-asg",
        ] {
            assert!(script.contains(value), "{value} missing");
        }
        assert!(script.starts_with("#!"));
    }
}
