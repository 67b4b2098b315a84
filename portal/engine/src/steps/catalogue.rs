//! Every step of a deploy, declared once: its stored name, whether it runs
//! once per availability zone, its action and its undo.
//!
//! [`StepKey`], its `Display` and `FromStr`, and the dispatch of actions and
//! undos are all generated from the one table at the bottom of this file, so
//! adding a step is one line there and the functions it names. An undo is a
//! value: `run` an undo function, `with` another step whose undo removes this
//! step's resource too (the artifact goes with its bucket), or `nothing` for
//! a step that makes nothing that outlives it.
//!
//! The order of the DAG lives in `plan.rs`; this table says what each node is.

use serde_json::{json, Value};

use super::{artifacts, compute, iam, load_balancer, network, security, StepCtx};
use crate::error::StepResult;

/// What undoes a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undo {
    /// Its own undo function.
    Run,
    /// The undo of another step (in the same AZ) removes this one's resource.
    With(StepKey),
    /// It makes nothing that outlives it.
    Nothing,
}

macro_rules! catalogue {
    (
        |$ctx:ident, $key:ident|
        $(
            $(#[$doc:meta])*
            $variant:ident $(($az:ident))? = $name:literal
                => $action:expr,
                undo $undo_kind:ident $(($undo:expr))?;
        )*
    ) => {
        /// One node of a deploy. Indexed variants are per availability zone.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum StepKey {
            $( $(#[$doc])* $variant $((catalogue!(@u8 $az)))?, )*
        }

        impl StepKey {
            /// The name stored in the database, without the AZ.
            pub fn name(self) -> &'static str {
                match self {
                    $( StepKey::$variant $(($az))? => { $(let _ = $az;)? $name } )*
                }
            }

            /// The AZ of a per-AZ step.
            pub fn az(self) -> Option<u8> {
                match self {
                    $( StepKey::$variant $(($az))? => catalogue!(@some $($az)?), )*
                }
            }

            /// The step named `name`, with `az` if it runs per AZ.
            fn from_parts(name: &str, az: Option<u8>) -> Option<StepKey> {
                match (name, az) {
                    $( ($name, catalogue!(@some $($az)?)) => Some(StepKey::$variant $(($az))?), )*
                    _ => None,
                }
            }

            /// What undoes this step.
            pub fn undo(self) -> Undo {
                match self {
                    $( StepKey::$variant $(($az))? => {
                        $(let _ = $az;)?
                        catalogue!(@undo self, $undo_kind $(($undo))?)
                    } )*
                }
            }
        }

        /// Runs the action of a deploy step; returns its outputs.
        pub async fn run_action($ctx: &StepCtx, $key: StepKey) -> StepResult<Value> {
            match $key {
                $( StepKey::$variant $(($az))? => $action.await, )*
            }
        }

        /// Runs the undo of a deploy step.
        pub async fn run_undo($ctx: &StepCtx, $key: StepKey) -> StepResult<Value> {
            match $key {
                $( StepKey::$variant $(($az))? => {
                    $(let _ = $az;)?
                    catalogue!(@run $ctx, $key, $undo_kind $(($undo))?)
                } )*
            }
        }
    };
    (@u8 $az:ident) => { u8 };
    (@some) => { None };
    (@some $az:ident) => { Some($az) };
    (@undo $self:ident, run ($undo:expr)) => { Undo::Run };
    (@undo $self:ident, with ($other:expr)) => { Undo::With(same_az($other, $self)) };
    (@undo $self:ident, nothing) => { Undo::Nothing };
    (@run $ctx:ident, $key:ident, run ($undo:expr)) => { $undo.await };
    (@run $ctx:ident, $key:ident, with ($other:expr)) => {
        Ok(json!({ "note": format!("removed with {}", same_az($other, $key).described()) }))
    };
    (@run $ctx:ident, $key:ident, nothing) => { Ok(Value::Null) };
}

/// `other` (given for AZ 0) moved to the AZ of `step`.
fn same_az(other: StepKey, step: StepKey) -> StepKey {
    match step.az() {
        Some(az) => StepKey::from_parts(other.name(), Some(az)).unwrap_or(other),
        None => other,
    }
}

impl StepKey {
    /// How a person names the step's resource in a note.
    fn described(self) -> &'static str {
        match self {
            StepKey::Bucket => "the bucket",
            StepKey::PrivateRoutes(_) => "its route table",
            other => other.name(),
        }
    }
}

impl std::fmt::Display for StepKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.az() {
            Some(az) => write!(f, "{}:{az}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

impl std::str::FromStr for StepKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, az) = match text.split_once(':') {
            Some((name, az)) => (
                name,
                Some(
                    az.parse::<u8>()
                        .map_err(|_| format!("bad step key {text:?}"))?,
                ),
            ),
            None => (text, None),
        };
        StepKey::from_parts(name, az).ok_or_else(|| format!("unknown step key {text:?}"))
    }
}

catalogue! { |ctx, key|
    IamRole = "iam_role" => iam::role(ctx), undo run(iam::undo_role(ctx));
    InstanceProfile = "instance_profile"
        => iam::instance_profile(ctx), undo run(iam::undo_instance_profile(ctx));
    Bucket = "bucket" => artifacts::bucket(ctx), undo run(artifacts::undo_bucket(ctx));
    Artifact = "artifact" => artifacts::upload(ctx), undo with(StepKey::Bucket);
    Vpc = "vpc" => network::vpc(ctx), undo run(network::undo_vpc(ctx));
    InternetGateway = "internet_gateway"
        => network::internet_gateway(ctx), undo run(network::undo_internet_gateway(ctx));
    PublicSubnet(az) = "public_subnet"
        => network::subnet(ctx, az, true), undo run(network::undo_subnet(ctx, key));
    PrivateSubnet(az) = "private_subnet"
        => network::subnet(ctx, az, false), undo run(network::undo_subnet(ctx, key));
    PublicRoutes = "public_routes"
        => network::public_routes(ctx), undo run(network::undo_route_table(ctx, key));
    PrivateRoutes(az) = "private_routes"
        => network::private_routes(ctx, az), undo run(network::undo_route_table(ctx, key));
    ElasticIp(az) = "elastic_ip"
        => network::elastic_ip(ctx, az), undo run(network::undo_elastic_ip(ctx, key));
    NatGateway(az) = "nat_gateway"
        => network::nat_gateway(ctx, az), undo run(network::undo_nat_gateway(ctx, key));
    NatRoute(az) = "nat_route"
        => network::nat_route(ctx, az), undo with(StepKey::PrivateRoutes(0));
    NetworkAcl = "network_acl"
        => security::network_acl(ctx), undo run(security::undo_network_acl(ctx));
    SecurityGroups = "security_groups"
        => security::security_groups(ctx), undo run(security::undo_security_groups(ctx));
    TargetGroup = "target_group"
        => load_balancer::target_group(ctx), undo run(load_balancer::undo_target_group(ctx));
    LoadBalancer = "load_balancer"
        => load_balancer::load_balancer(ctx),
        undo run(load_balancer::undo_load_balancer(ctx));
    Listener = "listener"
        => load_balancer::listener(ctx), undo run(load_balancer::undo_listener(ctx));
    LaunchTemplate = "launch_template"
        => compute::launch_template(ctx), undo run(compute::undo_launch_template(ctx));
    AutoScalingGroup = "auto_scaling_group"
        => compute::auto_scaling_group(ctx),
        undo run(compute::undo_auto_scaling_group(ctx));
    ScalingPolicies = "scaling_policies"
        => compute::scaling_policies(ctx), undo run(compute::undo_scaling_policies(ctx));
    Alarms = "alarms" => compute::alarms(ctx), undo run(compute::undo_alarms(ctx));
    WaitHealthy = "wait_healthy" => compute::wait_healthy(ctx), undo nothing;
    /// An apply's: the group's bounds, grace period and cooldown.
    UpdateGroup = "update_group" => compute::update_group(ctx, false), undo nothing;
    /// An apply's: the same and the desired capacity.
    ResizeGroup = "resize_group" => compute::update_group(ctx, true), undo nothing;
    /// An apply's: the group settled at its new size.
    WaitCapacity = "wait_capacity" => compute::wait_capacity(ctx), undo nothing;
    /// An apply's: the group spread over the zones of the parameters, and
    /// no instance left in another.
    GroupZones = "group_zones" => compute::group_zones(ctx), undo nothing;
    /// A repair's: this stack's instances in its VPC outside its group,
    /// terminated.
    StrayInstances = "stray_instances" => compute::terminate_strays(ctx), undo nothing;
    /// An apply's: a launch-template version with the new instance type.
    TemplateVersion = "template_version" => compute::template_version(ctx), undo nothing;
    /// An apply's: every instance of another type replaced, launch first.
    InstanceRefresh = "instance_refresh"
        => compute::instance_refresh(ctx), undo run(compute::cancel_instance_refresh(ctx));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undos_are_values() {
        assert_eq!(StepKey::Artifact.undo(), Undo::With(StepKey::Bucket));
        assert_eq!(
            StepKey::NatRoute(2).undo(),
            Undo::With(StepKey::PrivateRoutes(2))
        );
        assert_eq!(StepKey::WaitHealthy.undo(), Undo::Nothing);
        assert_eq!(StepKey::NatGateway(1).undo(), Undo::Run);
    }

    #[test]
    fn names_and_zones() {
        assert_eq!(StepKey::NatGateway(1).to_string(), "nat_gateway:1");
        assert_eq!(StepKey::Vpc.to_string(), "vpc");
        assert_eq!("private_routes:2".parse(), Ok(StepKey::PrivateRoutes(2)));
        assert!("vpc:0".parse::<StepKey>().is_err());
        assert!("nat_gateway".parse::<StepKey>().is_err());
        assert!("nat_gateway:x".parse::<StepKey>().is_err());
    }
}
