//! VPC, internet gateway, subnets, route tables, Elastic IPs and NAT
//! gateways: one module each for the VPC, the subnets, the routes and NAT.

use crate::error::{StepError, StepResult};

mod nat;
mod routes;
mod subnets;
mod vpc;

pub use nat::{elastic_ip, nat_gateway, undo_elastic_ip, undo_nat_gateway};
pub use routes::{nat_route, private_routes, public_routes, undo_route_table};
pub use subnets::{subnet, undo_subnet, zones};
pub use vpc::{internet_gateway, undo_internet_gateway, undo_vpc, vpc};

pub(super) fn created<T>(id: Option<T>, what: &str) -> StepResult<T> {
    id.ok_or_else(|| {
        StepError::fatal(
            "EmptyResponse",
            format!("AWS returned no id for the new {what}"),
        )
    })
}
