//! The EC2 user data that installs this service: `deploy/user-data.sh`
//! with its five placeholders filled in.
//!
//! Values are checked against tight character sets before they go into the
//! script, so a bucket or group name can never become shell syntax.

pub const TEMPLATE: &str = include_str!("../deploy/user-data.sh");

#[derive(Clone, Debug)]
pub struct UserData<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// Lower-case hex SHA-256 of the binary.
    pub sha256: &'a str,
    pub region: &'a str,
    pub asg_name: &'a str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field} {value:?} is not allowed in user data: {rule}")]
pub struct UnsafeValue {
    pub field: &'static str,
    pub value: String,
    pub rule: &'static str,
}

fn check(
    field: &'static str,
    value: &str,
    rule: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), UnsafeValue> {
    if value.is_empty() || value.len() > 1024 || !value.chars().all(ok) {
        return Err(UnsafeValue {
            field,
            value: value.to_string(),
            rule,
        });
    }
    Ok(())
}

impl UserData<'_> {
    pub fn render(&self) -> Result<String, UnsafeValue> {
        check("bucket", self.bucket, "a-z, 0-9, '.', '-'", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
        })?;
        check("key", self.key, "A-Z, a-z, 0-9, '/', '.', '_', '-'", |c| {
            c.is_ascii_alphanumeric() || "/._-".contains(c)
        })?;
        check("region", self.region, "a-z, 0-9, '-'", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        })?;
        check(
            "asg_name",
            self.asg_name,
            "A-Z, a-z, 0-9, '.', '_', '-'",
            |c| c.is_ascii_alphanumeric() || "._-".contains(c),
        )?;
        check("sha256", self.sha256, "64 lower-case hex digits", |c| {
            c.is_ascii_digit() || ('a'..='f').contains(&c)
        })?;
        if self.sha256.len() != 64 {
            return Err(UnsafeValue {
                field: "sha256",
                value: self.sha256.to_string(),
                rule: "64 lower-case hex digits",
            });
        }
        Ok(TEMPLATE
            .replace("__CLOUDPULSE_BUCKET__", self.bucket)
            .replace("__CLOUDPULSE_KEY__", self.key)
            .replace("__CLOUDPULSE_SHA256__", self.sha256)
            .replace("__CLOUDPULSE_REGION__", self.region)
            .replace("__CLOUDPULSE_ASG_NAME__", self.asg_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> UserData<'static> {
        UserData {
            bucket: "cloudpulse-artifacts-1",
            key: "builds/v1/cloudpulse-instance",
            sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            region: "eu-west-1",
            asg_name: "cloudpulse-asg",
        }
    }

    #[test]
    fn fills_every_placeholder() {
        let script = good().render().unwrap();
        assert!(script.contains("BUCKET='cloudpulse-artifacts-1'"));
        assert!(script.contains("ASG_NAME='cloudpulse-asg'"));
        // Only the guard that detects unrendered templates still names them.
        assert_eq!(script.matches("__CLOUDPULSE_").count(), 1);
    }

    #[test]
    fn refuses_shell_syntax() {
        for data in [
            UserData {
                asg_name: "x'; rm -rf / #",
                ..good()
            },
            UserData {
                key: "a b",
                ..good()
            },
            UserData {
                sha256: "abc",
                ..good()
            },
            UserData {
                bucket: "",
                ..good()
            },
        ] {
            assert!(data.render().is_err(), "{data:?}");
        }
    }
}
