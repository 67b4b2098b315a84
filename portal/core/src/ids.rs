//! The ids of deployments and jobs, each its own type, so a function that
//! wants one cannot be handed the other. Both are text on the wire and in
//! the database (a UUID the store makes, or whatever a tag or a path says),
//! and serialize exactly as the plain string.

/// `id_type! { /// doc
/// pub struct Name; }`: a transparent string newtype with the conversions
/// every id needs.
macro_rules! id_type {
    ($(#[$meta:meta])* pub struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        /// Any text parses: an id that names nothing is "not found" where
        /// it is looked up, never a parse error.
        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Ok($name(text.to_string()))
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type! {
    /// A deployment's id: `deployments.id`, the `cloudpulse:deployment` tag,
    /// `/deployments/{id}`.
    pub struct DeploymentId;
}

id_type! {
    /// A job's id: `jobs.id`, `/jobs/{id}`.
    pub struct JobId;
}

id_type! {
    /// A change plan's id: `change_plans.id`, `/plans/{id}`.
    pub struct PlanId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_their_text() {
        let id = DeploymentId::from("d-1");
        assert_eq!(serde_json::to_string(&id).expect("serialize"), "\"d-1\"");
        let back: JobId = serde_json::from_str("\"j-1\"").expect("deserialize");
        assert_eq!(back.as_str(), "j-1");
        assert_eq!(id.to_string(), "d-1");
        assert_eq!("d-1".parse::<DeploymentId>(), Ok(id));
    }
}
