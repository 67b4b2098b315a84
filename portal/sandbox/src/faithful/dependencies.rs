//! The dependency checks AWS makes on delete and moto does not.
//!
//! Each check asks moto about the resources that would still depend on the
//! one being deleted, the way AWS sees them: an instance counts until it is
//! `terminated`, a NAT gateway until it is `deleted` (or `failed`, which
//! holds nothing), a load balancer until it is gone. Network interfaces are
//! deliberately not consulted, although they are what AWS really counts:
//! moto leaks them (a terminated instance's interface stays `in-use`), so
//! asking about them would refuse deletes AWS allows.
//!
//! The messages are AWS's, as it words them for each refusal.

use aws_sdk_ec2::types::{InstanceStateName, NatGateway, NatGatewayState};
use aws_sdk_elasticloadbalancingv2::types::{LoadBalancer, LoadBalancerSchemeEnum};

use super::wire::Params;
use super::{Faithful, FaithfulError};

const DEPENDENCY_VIOLATION: &str = "DependencyViolation";

fn refuse(code: &str, message: String) -> Result<(), FaithfulError> {
    Err(FaithfulError::refused(code, message))
}

/// Whether a NAT gateway still holds its subnet and its addresses.
fn nat_is_live(nat: &NatGateway) -> bool {
    !matches!(
        nat.state(),
        Some(NatGatewayState::Deleted | NatGatewayState::Failed)
    )
}

fn instance_is_live(instance: &aws_sdk_ec2::types::Instance) -> bool {
    instance.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated)
}

impl Faithful {
    /// Refuses an EC2 delete that AWS would refuse for its dependencies.
    pub(super) async fn check_dependencies(
        &self,
        action: &str,
        params: &Params,
    ) -> Result<(), FaithfulError> {
        match action {
            "DeleteSubnet" => match params.get("SubnetId") {
                Some(subnet) => self.check_subnet(subnet).await,
                None => Ok(()),
            },
            "DeleteSecurityGroup" => {
                self.check_security_group(params.get("GroupId"), params.get("GroupName"))
                    .await
            }
            "DeleteRouteTable" => match params.get("RouteTableId") {
                Some(table) => self.check_route_table(table).await,
                None => Ok(()),
            },
            "ReleaseAddress" => {
                self.check_address(params.get("AllocationId"), params.get("PublicIp"))
                    .await
            }
            "DetachInternetGateway" => match params.get("VpcId") {
                Some(vpc) => self.check_mapped_addresses(vpc).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// AWS: instances, NAT gateways and load balancers keep network
    /// interfaces in their subnet, and a subnet with interfaces stays.
    async fn check_subnet(&self, subnet: &str) -> Result<(), FaithfulError> {
        let instances = self.instances().await?;
        let nats = self.nat_gateways().await?;
        let balancers = self.load_balancers().await?;
        let used = instances
            .iter()
            .any(|i| i.subnet_id() == Some(subnet) && instance_is_live(i))
            || nats
                .iter()
                .any(|n| n.subnet_id() == Some(subnet) && nat_is_live(n))
            || balancers.iter().any(|lb| {
                lb.availability_zones()
                    .iter()
                    .any(|z| z.subnet_id() == Some(subnet))
            });
        if used {
            return refuse(
                DEPENDENCY_VIOLATION,
                format!("The subnet '{subnet}' has dependencies and cannot be deleted."),
            );
        }
        Ok(())
    }

    /// AWS: a group stays while another group's rule names it, or an
    /// instance or load balancer uses it. A group's rule naming itself
    /// does not count.
    async fn check_security_group(
        &self,
        id: Option<&str>,
        name: Option<&str>,
    ) -> Result<(), FaithfulError> {
        let groups = self
            .inner
            .ec2
            .describe_security_groups()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(FaithfulError::moto)?;
        let target = groups.iter().find(|g| match (id, name) {
            (Some(id), _) => g.group_id() == Some(id),
            (None, Some(name)) => g.group_name() == Some(name),
            (None, None) => false,
        });
        let Some(group_id) = target.and_then(|g| g.group_id()) else {
            // moto answers for a group it does not know.
            return Ok(());
        };
        let referenced = groups
            .iter()
            .filter(|g| g.group_id() != Some(group_id))
            .flat_map(|g| g.ip_permissions().iter().chain(g.ip_permissions_egress()))
            .flat_map(|rule| rule.user_id_group_pairs())
            .any(|pair| pair.group_id() == Some(group_id));
        let used = referenced
            || self.instances().await?.iter().any(|i| {
                instance_is_live(i)
                    && i.security_groups()
                        .iter()
                        .any(|g| g.group_id() == Some(group_id))
            })
            || self
                .load_balancers()
                .await?
                .iter()
                .any(|lb| lb.security_groups().iter().any(|g| g == group_id));
        if used {
            return refuse(
                DEPENDENCY_VIOLATION,
                format!("resource {group_id} has a dependent object"),
            );
        }
        Ok(())
    }

    /// AWS: the main route table goes only with its VPC.
    async fn check_route_table(&self, table: &str) -> Result<(), FaithfulError> {
        let found = match self
            .inner
            .ec2
            .describe_route_tables()
            .route_table_ids(table)
            .send()
            .await
        {
            Ok(found) => found,
            // Not found and the like: moto gives the answer.
            Err(error) if error.as_service_error().is_some() => return Ok(()),
            Err(error) => return Err(FaithfulError::moto(error)),
        };
        let main = found
            .route_tables()
            .iter()
            .flat_map(|t| t.associations())
            .any(|a| a.main() == Some(true));
        if main {
            return refuse(
                DEPENDENCY_VIOLATION,
                format!("The routeTable '{table}' has dependencies and cannot be deleted."),
            );
        }
        Ok(())
    }

    /// AWS: an address in a VPC must be disassociated before it is released;
    /// a NAT gateway holds its address until it is deleted.
    async fn check_address(
        &self,
        allocation: Option<&str>,
        public_ip: Option<&str>,
    ) -> Result<(), FaithfulError> {
        let matches = |a: Option<&str>, ip: Option<&str>| {
            (allocation.is_some() && a == allocation) || (public_ip.is_some() && ip == public_ip)
        };
        let by_nat = self.nat_gateways().await?.into_iter().find(|n| {
            nat_is_live(n)
                && n.nat_gateway_addresses()
                    .iter()
                    .any(|a| matches(a.allocation_id(), a.public_ip()))
        });
        let address = self
            .inner
            .ec2
            .describe_addresses()
            .send()
            .await
            .map_err(FaithfulError::moto)?
            .addresses()
            .iter()
            .find(|a| matches(a.allocation_id(), a.public_ip()))
            .cloned();
        let shown = address
            .as_ref()
            .and_then(|a| a.public_ip().or(a.allocation_id()))
            .or(public_ip)
            .or(allocation)
            .unwrap_or_default()
            .to_string();
        let mut in_use = by_nat.is_some();
        if let Some(instance) = address.as_ref().and_then(|a| a.instance_id()) {
            in_use = in_use
                || self
                    .instances()
                    .await?
                    .iter()
                    .any(|i| i.instance_id() == Some(instance) && instance_is_live(i));
        }
        if in_use {
            return refuse(
                "InvalidIPAddress.InUse",
                format!("Address {shown} is in use."),
            );
        }
        Ok(())
    }

    /// AWS: a VPC cannot lose its internet gateway while public addresses
    /// are mapped in it — a NAT gateway's, an internet-facing load
    /// balancer's, an Elastic IP on a running instance.
    async fn check_mapped_addresses(&self, vpc: &str) -> Result<(), FaithfulError> {
        let mapped = self
            .nat_gateways()
            .await?
            .iter()
            .any(|n| n.vpc_id() == Some(vpc) && nat_is_live(n))
            || self.load_balancers().await?.iter().any(|lb| {
                // No scheme is AWS's default, internet-facing (moto leaves
                // it out when the creator did).
                lb.vpc_id() == Some(vpc) && lb.scheme() != Some(&LoadBalancerSchemeEnum::Internal)
            })
            || self.address_on_instance_in(vpc).await?;
        if mapped {
            return refuse(
                DEPENDENCY_VIOLATION,
                format!(
                    "Network {vpc} has some mapped public address(es). Please unmap those \
                     public address(es) before detaching the gateway."
                ),
            );
        }
        Ok(())
    }

    /// Whether an Elastic IP is associated with a live instance in `vpc`.
    async fn address_on_instance_in(&self, vpc: &str) -> Result<bool, FaithfulError> {
        let addresses = self
            .inner
            .ec2
            .describe_addresses()
            .send()
            .await
            .map_err(FaithfulError::moto)?;
        let on_instances: Vec<&str> = addresses
            .addresses()
            .iter()
            .filter_map(|a| a.instance_id())
            // moto gives an address on a NAT gateway an empty instance id.
            .filter(|id| !id.is_empty())
            .collect();
        if on_instances.is_empty() {
            return Ok(false);
        }
        Ok(self.instances().await?.iter().any(|i| {
            i.vpc_id() == Some(vpc)
                && instance_is_live(i)
                && i.instance_id().is_some_and(|id| on_instances.contains(&id))
        }))
    }

    async fn instances(&self) -> Result<Vec<aws_sdk_ec2::types::Instance>, FaithfulError> {
        let pages = self
            .inner
            .ec2
            .describe_instances()
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(FaithfulError::moto)?;
        Ok(pages
            .iter()
            .flat_map(|p| p.reservations())
            .flat_map(|r| r.instances())
            .cloned()
            .collect())
    }

    async fn nat_gateways(&self) -> Result<Vec<NatGateway>, FaithfulError> {
        self.inner
            .ec2
            .describe_nat_gateways()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(FaithfulError::moto)
    }

    async fn load_balancers(&self) -> Result<Vec<LoadBalancer>, FaithfulError> {
        self.inner
            .elb
            .describe_load_balancers()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(FaithfulError::moto)
    }
}
