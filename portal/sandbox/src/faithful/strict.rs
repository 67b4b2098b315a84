//! AWS's clocks where moto has none: the waits and refusals a first real
//! deploy meets.
//!
//! moto makes everything at once and keeps nothing busy: a fresh instance
//! profile is usable the moment it exists, a NAT gateway is `available` on
//! create and `deleted` on delete, a load balancer leaves nothing behind,
//! and Run Command reaches an instance that has just been launched. AWS does
//! none of that, and code only ever tested against moto breaks on a first
//! real deploy. [`Strict`] sits in the gateway before the faithful layer and
//! gives the sandbox those clocks, each [`Strictness`] figure already on the
//! sandbox's time scale (zero turns a behaviour off):
//!
//! - **IAM propagation**: an instance profile younger than
//!   [`Strictness::iam_propagation`] (counted from `CreateInstanceProfile`
//!   or the last `AddRoleToInstanceProfile`) is refused by `RunInstances`
//!   (named, or through a launch template) with `InvalidParameterValue`,
//!   and by `CreateAutoScalingGroup` with `ValidationError`, in AWS's words.
//! - **NAT gateway lifecycle**: `pending` for [`Strictness::nat_pending`],
//!   then `available`; after `DeleteNatGateway`, `deleting` for
//!   [`Strictness::nat_deleting`] (still holding its Elastic IP, its subnet
//!   and its VPC's public mapping), then `deleted`, and gone from
//!   `DescribeNatGateways` after [`Strictness::nat_deleted_visible`]. A
//!   create repeated with the same `ClientToken` answers with the same
//!   gateway, as AWS's idempotency does. [`Strict::fail_next_nat_gateways`]
//!   makes the next gateways end `failed` after their pending time, with
//!   AWS's `FailureCode` and `FailureMessage` (moto itself forgets them, as
//!   a failed gateway holds nothing).
//! - **Load balancer interfaces linger**: for [`Strictness::eni_linger`]
//!   after `DeleteLoadBalancer`, its security groups and subnets answer
//!   `DependencyViolation` to a delete, and its VPC cannot lose its internet
//!   gateway, as the `amazon-elb` network interfaces are still there.
//! - **SSM agent registration**: `SendCommand` to an instance launched less
//!   than [`Strictness::instance_boot`] plus
//!   [`Strictness::ssm_registration`] ago answers `InvalidInstanceId`.
//!
//! The clocks live in memory and, once [`Strict::persist_to`] names a
//! file, on disk as well (written whole and renamed into place after every
//! change, times as wall-clock moments; see [`super::record`]): a gateway
//! started again in front of the same moto goes on where the last one
//! stopped, a `pending` gateway for the rest of its pending time (or
//! `available` if that passed while the sandbox was down), a `deleting` one
//! to `deleted`, a young profile refused for the rest of its propagation.
//! Without the file it knows none of it and lets everything through as moto
//! would. The instance boot and the SSM agent's registration need no record:
//! they count from the instance's `LaunchTime`, which moto's state keeps.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::record::{self, RecordFile, UnsafeRecord};

use super::wire::{self, Params, Service};
use crate::gateway::{rewrite_blocks, text_of, top_level_blocks};

const EC2: &str = "2016-11-15";
const AUTO_SCALING: &str = "2011-01-01";
const IAM: &str = "2010-05-08";
const ELB: &str = "2015-12-01";

/// Query requests are small; a larger body is an upload and never ours.
const BODY_LIMIT: usize = 1024 * 1024;

/// The account moto serves.
const ACCOUNT: &str = "123456789012";

/// How strict the sandbox is, each figure on the sandbox's clock (AWS's
/// figure times the time scale). Zero turns a behaviour off; the default
/// is moto's instant world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strictness {
    /// An instance profile is refused for this long after it is made or
    /// given a role (AWS: about 10 s, up to two minutes).
    pub iam_propagation: Duration,
    /// A NAT gateway is `pending` this long (AWS: 1 to 3.5 min).
    pub nat_pending: Duration,
    /// A deleted NAT gateway is `deleting` this long, holding its address
    /// and subnet (AWS: about a minute).
    pub nat_deleting: Duration,
    /// A deleted NAT gateway stays listed this long once `deleted` (AWS:
    /// about an hour); zero lists it for ever, as moto does.
    pub nat_deleted_visible: Duration,
    /// A deleted load balancer's network interfaces hold its security
    /// groups and subnets this long (AWS: minutes).
    pub eni_linger: Duration,
    /// How long an instance boots before anything runs on it (the data
    /// plane's boot time); the SSM agent registers after that.
    pub instance_boot: Duration,
    /// How long after boot an instance's SSM agent registers (AWS: 1 to 3
    /// min); Run Command refuses the instance until then.
    pub ssm_registration: Duration,
}

impl Strictness {
    /// moto's world: nothing waits.
    pub const INSTANT: Strictness = Strictness {
        iam_propagation: Duration::ZERO,
        nat_pending: Duration::ZERO,
        nat_deleting: Duration::ZERO,
        nat_deleted_visible: Duration::ZERO,
        eni_linger: Duration::ZERO,
        instance_boot: Duration::ZERO,
        ssm_registration: Duration::ZERO,
    };

    /// The figures the sandbox models AWS with, at AWS's pace (see
    /// docs/sandbox.md for their sources).
    pub const AWS: Strictness = Strictness {
        iam_propagation: Duration::from_secs(10),
        nat_pending: Duration::from_secs(90),
        nat_deleting: Duration::from_secs(60),
        nat_deleted_visible: Duration::from_secs(3600),
        eni_linger: Duration::from_secs(120),
        instance_boot: Duration::from_secs(30),
        ssm_registration: Duration::from_secs(60),
    };

    /// Every figure times `scale` (the sandbox's time scale).
    pub fn scaled(self, scale: f64) -> Strictness {
        let s = |d: Duration| {
            if scale.is_finite() && scale > 0.0 {
                d.mul_f64(scale)
            } else {
                d
            }
        };
        Strictness {
            iam_propagation: s(self.iam_propagation),
            nat_pending: s(self.nat_pending),
            nat_deleting: s(self.nat_deleting),
            nat_deleted_visible: s(self.nat_deleted_visible),
            eni_linger: s(self.eni_linger),
            instance_boot: s(self.instance_boot),
            ssm_registration: s(self.ssm_registration),
        }
    }
}

/// The clocks and records; clones share them.
#[derive(Clone, Debug)]
pub struct Strict {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Strictness,
    /// moto, asked directly (never through the gateway's faults).
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    /// NAT gateways still to be created that will fail.
    fail_next: AtomicU32,
    state: Mutex<State>,
    /// Where the clocks are kept, once [`Strict::persist_to`] said.
    record: Mutex<Option<RecordFile>>,
}

#[derive(Debug, Default)]
struct State {
    /// Instance profile name → when it was made or last given a role.
    profiles: HashMap<String, Instant>,
    nats: HashMap<String, Nat>,
    /// `ClientToken` → the gateway it made and moto's answer then.
    tokens: HashMap<String, (String, Bytes)>,
    lingering: Vec<Linger>,
}

/// A NAT gateway the sandbox made, its times as instants of this process
/// (`T = Instant`) or, on disk, as wall-clock moments.
#[derive(Debug, Serialize, Deserialize)]
struct Nat<T = Instant> {
    created: T,
    fails: bool,
    deleted: Option<T>,
    subnet: Option<String>,
    vpc: Option<String>,
    allocation: Option<String>,
    public_ip: Option<String>,
    interface: Option<String>,
}

/// What a `deleting` NAT gateway still holds.
#[derive(Debug)]
struct Held {
    subnet: Option<String>,
    vpc: Option<String>,
    allocation: Option<String>,
    public_ip: Option<String>,
}

/// What a deleted load balancer's interfaces still hold, and until when.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Linger<T = Instant> {
    until: T,
    security_groups: Vec<String>,
    subnets: Vec<String>,
    vpc: Option<String>,
    internet_facing: bool,
}

impl<T> Nat<T> {
    fn with_clock<U>(&self, clock: impl Fn(&T) -> U) -> Nat<U> {
        Nat {
            created: clock(&self.created),
            fails: self.fails,
            deleted: self.deleted.as_ref().map(&clock),
            subnet: self.subnet.clone(),
            vpc: self.vpc.clone(),
            allocation: self.allocation.clone(),
            public_ip: self.public_ip.clone(),
            interface: self.interface.clone(),
        }
    }
}

impl<T> Linger<T> {
    fn with_clock<U>(&self, clock: impl Fn(&T) -> U) -> Linger<U> {
        Linger {
            until: clock(&self.until),
            security_groups: self.security_groups.clone(),
            subnets: self.subnets.clone(),
            vpc: self.vpc.clone(),
            internet_facing: self.internet_facing,
        }
    }
}

/// The clocks as written, keyed by AWS ids, times as wall-clock moments.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    version: u32,
    /// Instance profile name → when it was made or last given a role.
    profiles: BTreeMap<String, DateTime<Utc>>,
    /// NAT gateway id → its lifecycle.
    nats: BTreeMap<String, Nat<DateTime<Utc>>>,
    /// `ClientToken` → the gateway it made and moto's answer then.
    tokens: BTreeMap<String, (String, String)>,
    lingering: Vec<Linger<DateTime<Utc>>>,
}

const VERSION: u32 = 1;

/// How a NAT gateway looks right now.
#[derive(Debug, PartialEq, Eq)]
enum NatView {
    /// As moto says.
    Moto,
    State(&'static str),
    Failed,
    /// Deleted long enough ago that AWS no longer lists it.
    Gone,
}

/// What to do with a successful answer, decided before the call went out.
#[derive(Debug)]
pub(crate) struct Pending(Step);

/// What the gateway does with a request after [`Strict::before`].
pub(crate) enum Decision {
    /// Forward it, and hand a successful answer to [`Strict::after`].
    Forward(Pending),
    /// Answer with this (a refusal, or a repeated create) instead.
    Answer(Response),
}

#[derive(Debug)]
enum Step {
    Nothing,
    CreateNat { token: Option<String> },
    DeleteNat { id: String },
    DescribeNats,
    Profile { name: String },
    DeleteLoadBalancer(Linger),
}

impl Strict {
    /// The clocks for the moto at `moto_endpoint`.
    pub fn new(moto_endpoint: &str, config: Strictness) -> Strict {
        let sdk = crate::moto::sdk_config(moto_endpoint);
        Strict {
            inner: Arc::new(Inner {
                config,
                ec2: aws_sdk_ec2::Client::new(&sdk),
                elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
                fail_next: AtomicU32::new(0),
                state: Mutex::new(State::default()),
                record: Mutex::new(None),
            }),
        }
    }

    /// Keeps the clocks in `path` from now on: what a previous run left
    /// there replaces what is in memory, and the file is written after
    /// every change. The folder and the file must be this user's own and
    /// open to nobody else, as for the faithful layer's record
    /// ([`super::Faithful::persist_to`]); anything else is refused.
    pub fn persist_to(&self, path: &std::path::Path) -> Result<(), UnsafeRecord> {
        let file = RecordFile::new(path);
        let saved: Saved = file.load(VERSION)?.unwrap_or_default();
        let (now, wall) = (Instant::now(), Utc::now());
        let instant = |at: &DateTime<Utc>| record::from_wall(*at, now, wall);
        *self.state() = State {
            profiles: saved
                .profiles
                .iter()
                .map(|(name, at)| (name.clone(), instant(at)))
                .collect(),
            nats: saved
                .nats
                .iter()
                .map(|(id, nat)| (id.clone(), nat.with_clock(instant)))
                .collect(),
            tokens: saved
                .tokens
                .into_iter()
                .map(|(token, (id, body))| (token, (id, Bytes::from(body))))
                .collect(),
            lingering: saved
                .lingering
                .iter()
                .map(|l| l.with_clock(instant))
                .collect(),
        };
        *lock(&self.inner.record) = Some(file);
        self.save();
        Ok(())
    }

    /// Writes the clocks, if they are kept on disk. A failure is logged,
    /// never passed on: the portal's calls must not fail for the sandbox's
    /// books.
    fn save(&self) {
        let record = lock(&self.inner.record);
        let Some(file) = record.as_ref() else {
            return;
        };
        let (now, wall) = (Instant::now(), Utc::now());
        let wall_clock = |at: &Instant| record::to_wall(*at, now, wall);
        let saved = {
            let state = self.state();
            Saved {
                version: VERSION,
                profiles: state
                    .profiles
                    .iter()
                    .map(|(name, at)| (name.clone(), wall_clock(at)))
                    .collect(),
                nats: state
                    .nats
                    .iter()
                    .map(|(id, nat)| (id.clone(), nat.with_clock(wall_clock)))
                    .collect(),
                tokens: state
                    .tokens
                    .iter()
                    .map(|(token, (id, body))| {
                        let body = String::from_utf8_lossy(body).into_owned();
                        (token.clone(), (id.clone(), body))
                    })
                    .collect(),
                lingering: state
                    .lingering
                    .iter()
                    .filter(|l| l.until > now)
                    .map(|l| l.with_clock(wall_clock))
                    .collect(),
            }
        };
        if let Err(error) = file.store(&saved) {
            tracing::warn!(%error, "cannot write the gateway's clocks");
        }
    }

    /// The figures this sandbox runs on.
    pub fn config(&self) -> Strictness {
        self.inner.config
    }

    /// The next `count` NAT gateways created end `failed` after their
    /// pending time (the `--fail-next-nat` flag, and a hook for tests).
    pub fn fail_next_nat_gateways(&self, count: u32) {
        self.inner.fail_next.fetch_add(count, Ordering::Relaxed);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Looks at a request before it goes to moto: answers it (a refusal,
    /// or a repeated create) or lets it through with what to do with the
    /// answer.
    pub(crate) async fn before(&self, headers: &HeaderMap, body: &[u8]) -> Decision {
        let nothing = Decision::Forward(Pending(Step::Nothing));
        if headers
            .get("x-amz-target")
            .is_some_and(|t| t == "AmazonSSM.SendCommand")
        {
            return match self.check_agents(body).await {
                Some(refusal) => Decision::Answer(refusal),
                None => nothing,
            };
        }
        if body.len() > BODY_LIMIT {
            return nothing;
        }
        let params = Params::parse(body);
        let (Some(version), Some(action)) = (params.get("Version"), params.get("Action")) else {
            return nothing;
        };
        let step = match (version, action) {
            (EC2, "CreateNatGateway") => {
                let token = params.get("ClientToken").map(str::to_string);
                if let Some(replay) = token.as_deref().and_then(|t| self.replay(t)) {
                    return Decision::Answer(replay);
                }
                Step::CreateNat { token }
            }
            (EC2, "DeleteNatGateway") => match params.get("NatGatewayId") {
                Some(id) => Step::DeleteNat { id: id.to_string() },
                None => Step::Nothing,
            },
            (EC2, "DescribeNatGateways") => Step::DescribeNats,
            (EC2, "ReleaseAddress") => {
                if let Some(refusal) =
                    self.check_release(params.get("AllocationId"), params.get("PublicIp"))
                {
                    return Decision::Answer(refusal);
                }
                Step::Nothing
            }
            (EC2, "DeleteSubnet") => {
                if let Some(refusal) = self.check_subnet(params.get("SubnetId")) {
                    return Decision::Answer(refusal);
                }
                Step::Nothing
            }
            (EC2, "DeleteSecurityGroup") => {
                if let Some(refusal) = self.check_security_group(params.get("GroupId")) {
                    return Decision::Answer(refusal);
                }
                Step::Nothing
            }
            (EC2, "DetachInternetGateway") => {
                if let Some(refusal) = self.check_detach(params.get("VpcId")) {
                    return Decision::Answer(refusal);
                }
                Step::Nothing
            }
            (EC2, "RunInstances") => {
                if let Some(refusal) = self.check_run_instances(&params).await {
                    return Decision::Answer(refusal);
                }
                Step::Nothing
            }
            (AUTO_SCALING, "CreateAutoScalingGroup") => {
                if let Some(refusal) = self.check_group_template(&params).await {
                    return Decision::Answer(refusal);
                }
                Step::Nothing
            }
            (IAM, "CreateInstanceProfile" | "AddRoleToInstanceProfile") => {
                match params.get("InstanceProfileName") {
                    Some(name) => Step::Profile {
                        name: name.to_string(),
                    },
                    None => Step::Nothing,
                }
            }
            (ELB, "DeleteLoadBalancer") => match params.get("LoadBalancerArn") {
                Some(arn) if !self.inner.config.eni_linger.is_zero() => self
                    .what_lingers(arn)
                    .await
                    .map_or(Step::Nothing, Step::DeleteLoadBalancer),
                _ => Step::Nothing,
            },
            _ => Step::Nothing,
        };
        Decision::Forward(Pending(step))
    }

    /// Records what a call moto accepted changed, and gives its answer the
    /// states AWS would show.
    pub(crate) async fn after(&self, pending: Pending, body: Bytes) -> Bytes {
        let (body, changed) = match pending.0 {
            Step::Nothing => (body, false),
            Step::CreateNat { token } => (self.created_nat(token, body).await, true),
            Step::DeleteNat { id } => {
                let changed = match self.state().nats.get_mut(&id) {
                    Some(nat) if nat.deleted.is_none() => {
                        nat.deleted = Some(Instant::now());
                        true
                    }
                    _ => false,
                };
                (body, changed)
            }
            Step::DescribeNats => (self.rewrite_nats(body), false),
            Step::Profile { name } => {
                let propagates = !self.inner.config.iam_propagation.is_zero();
                if propagates {
                    self.state().profiles.insert(name, Instant::now());
                }
                (body, propagates)
            }
            Step::DeleteLoadBalancer(mut linger) => {
                linger.until = Instant::now() + self.inner.config.eni_linger;
                self.state().lingering.push(linger);
                (body, true)
            }
        };
        if changed {
            self.save();
        }
        body
    }

    // ---- NAT gateways -------------------------------------------------

    async fn created_nat(&self, token: Option<String>, body: Bytes) -> Bytes {
        let Ok(xml) = std::str::from_utf8(&body) else {
            return body;
        };
        let Some(id) = text_of(xml, "natGatewayId").map(str::to_string) else {
            return body;
        };
        let fails = self
            .inner
            .fail_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        let owned = |tag: &str| text_of(xml, tag).map(str::to_string);
        let association = owned("associationId");
        let nat = Nat {
            created: Instant::now(),
            fails,
            deleted: None,
            subnet: owned("subnetId"),
            vpc: owned("vpcId"),
            allocation: owned("allocationId"),
            public_ip: owned("publicIp"),
            interface: owned("networkInterfaceId"),
        };
        {
            let mut state = self.state();
            state.nats.insert(id.clone(), nat);
            if let Some(token) = token {
                state.tokens.insert(token, (id.clone(), body.clone()));
            }
        }
        if fails {
            // A failed gateway holds nothing in AWS: moto must forget it
            // too, or it would keep the address and the subnet busy.
            if let Some(association) = association {
                if let Err(error) = self
                    .inner
                    .ec2
                    .disassociate_address()
                    .association_id(&association)
                    .send()
                    .await
                {
                    tracing::warn!(%id, ?error, "could not free the failing NAT gateway's address in moto");
                }
            }
            if let Err(error) = self
                .inner
                .ec2
                .delete_nat_gateway()
                .nat_gateway_id(&id)
                .send()
                .await
            {
                tracing::warn!(%id, ?error, "could not remove the failing NAT gateway from moto");
            }
            tracing::info!(%id, "this NAT gateway will fail, as asked");
        }
        self.rewrite_nats(body)
    }

    /// AWS answers a create repeated with the same token with the gateway
    /// the first one made, in its current state.
    fn replay(&self, token: &str) -> Option<Response> {
        let (id, body) = self.state().tokens.get(token).cloned()?;
        if self.nat_view(&id) == NatView::Gone {
            // AWS keeps a token no longer than the gateway it made.
            self.state().tokens.remove(token);
            return None;
        }
        tracing::debug!(%token, %id, "a repeated ClientToken gets the same NAT gateway");
        let mut response = Response::new(Body::from(self.rewrite_nats(body)));
        *response.status_mut() = StatusCode::OK;
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("text/xml"));
        Some(response)
    }

    fn nat_view(&self, id: &str) -> NatView {
        let config = self.inner.config;
        let state = self.state();
        let Some(nat) = state.nats.get(id) else {
            return NatView::Moto;
        };
        if let Some(deleted) = nat.deleted {
            let age = deleted.elapsed();
            return if age < config.nat_deleting {
                NatView::State("deleting")
            } else if config.nat_deleted_visible.is_zero()
                || age < config.nat_deleting + config.nat_deleted_visible
            {
                NatView::State("deleted")
            } else {
                NatView::Gone
            };
        }
        let young = nat.created.elapsed() < config.nat_pending;
        match (young, nat.fails) {
            (true, _) => NatView::State("pending"),
            (false, true) => NatView::Failed,
            (false, false) => NatView::Moto,
        }
    }

    /// Gives every NAT gateway in a Create or Describe answer its state on
    /// AWS's clock.
    fn rewrite_nats(&self, body: Bytes) -> Bytes {
        let Ok(xml) = std::str::from_utf8(&body) else {
            return body;
        };
        let blocks = match top_level_blocks(xml, "natGatewaySet", "item") {
            blocks if !blocks.is_empty() => blocks,
            _ => single_block(xml, "natGateway").into_iter().collect(),
        };
        let rewritten = rewrite_blocks(xml, &blocks, |block| {
            let id = text_of(block, "natGatewayId")?;
            match self.nat_view(id) {
                NatView::Moto => None,
                NatView::Gone => Some(String::new()),
                NatView::State(state) => Some(with_state(block, state, "")),
                NatView::Failed => {
                    let interface = self
                        .state()
                        .nats
                        .get(id)
                        .and_then(|n| n.interface.clone())
                        .unwrap_or_else(|| "eni-00000000".into());
                    let failure = format!(
                        "<failureCode>InternalError</failureCode><failureMessage>{}</failureMessage>",
                        wire::escape(&format!(
                            "Network interface {interface}, created and used internally by this \
                             NAT gateway is in an invalid state. Please try again."
                        ))
                    );
                    Some(with_state(block, "failed", &failure))
                }
            }
        });
        rewritten.map(Bytes::from).unwrap_or(body)
    }

    /// What the NAT gateways that are `deleting` right now still hold.
    fn deleting_nats(&self) -> Vec<Held> {
        let deleting = self.inner.config.nat_deleting;
        self.state()
            .nats
            .values()
            .filter(|n| n.deleted.is_some_and(|d| d.elapsed() < deleting))
            .map(|n| Held {
                subnet: n.subnet.clone(),
                vpc: n.vpc.clone(),
                allocation: n.allocation.clone(),
                public_ip: n.public_ip.clone(),
            })
            .collect()
    }

    // ---- dependencies still held -------------------------------------

    fn lingering(&self) -> Vec<Linger> {
        let mut state = self.state();
        let now = Instant::now();
        state.lingering.retain(|l| l.until > now);
        state.lingering.clone()
    }

    /// AWS: a `deleting` NAT gateway still holds its Elastic IP; releasing
    /// it is refused (an `AuthFailure`, the address belonging to an
    /// interface AWS manages).
    fn check_release(&self, allocation: Option<&str>, ip: Option<&str>) -> Option<Response> {
        let held = self.deleting_nats().into_iter().any(|held| {
            (allocation.is_some() && held.allocation.as_deref() == allocation)
                || (ip.is_some() && held.public_ip.as_deref() == ip)
        });
        if held {
            return Some(wire::error(
                Service::Ec2,
                "AuthFailure",
                "You do not have permission to access the specified resource.",
            ));
        }
        None
    }

    fn check_subnet(&self, subnet: Option<&str>) -> Option<Response> {
        let subnet = subnet?;
        let used = self
            .deleting_nats()
            .iter()
            .any(|held| held.subnet.as_deref() == Some(subnet))
            || self
                .lingering()
                .iter()
                .any(|l| l.subnets.iter().any(|s| s == subnet));
        if used {
            return Some(wire::error(
                Service::Ec2,
                "DependencyViolation",
                &format!("The subnet '{subnet}' has dependencies and cannot be deleted."),
            ));
        }
        None
    }

    fn check_security_group(&self, group: Option<&str>) -> Option<Response> {
        let group = group?;
        if self
            .lingering()
            .iter()
            .any(|l| l.security_groups.iter().any(|g| g == group))
        {
            return Some(wire::error(
                Service::Ec2,
                "DependencyViolation",
                &format!("resource {group} has a dependent object"),
            ));
        }
        None
    }

    fn check_detach(&self, vpc: Option<&str>) -> Option<Response> {
        let vpc = vpc?;
        let mapped = self
            .deleting_nats()
            .iter()
            .any(|held| held.vpc.as_deref() == Some(vpc))
            || self
                .lingering()
                .iter()
                .any(|l| l.internet_facing && l.vpc.as_deref() == Some(vpc));
        if mapped {
            return Some(wire::error(
                Service::Ec2,
                "DependencyViolation",
                &format!(
                    "Network {vpc} has some mapped public address(es). Please unmap those \
                     public address(es) before detaching the gateway."
                ),
            ));
        }
        None
    }

    /// What a load balancer about to be deleted leaves holding.
    async fn what_lingers(&self, arn: &str) -> Option<Linger> {
        let found = self
            .inner
            .elb
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await
            .ok()?;
        let lb = found.load_balancers().first()?;
        Some(Linger {
            until: Instant::now(),
            security_groups: lb.security_groups().to_vec(),
            subnets: lb
                .availability_zones()
                .iter()
                .filter_map(|z| z.subnet_id().map(str::to_string))
                .collect(),
            vpc: lb.vpc_id().map(str::to_string),
            internet_facing: lb.scheme().map(|s| s.as_str()) != Some("internal"),
        })
    }

    // ---- IAM propagation ---------------------------------------------

    /// Whether the profile named by `name_or_arn` is still too new for EC2.
    fn profile_is_young(&self, name_or_arn: &str) -> bool {
        let propagation = self.inner.config.iam_propagation;
        if propagation.is_zero() {
            return false;
        }
        let name = name_or_arn.rsplit('/').next().unwrap_or(name_or_arn);
        self.state()
            .profiles
            .get(name)
            .is_some_and(|made| made.elapsed() < propagation)
    }

    /// The instance profile a launch template version names, as given.
    async fn template_profile(
        &self,
        id: Option<&str>,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Option<Profile> {
        if id.is_none() && name.is_none() {
            return None;
        }
        let found = self
            .inner
            .ec2
            .describe_launch_template_versions()
            .set_launch_template_id(id.map(str::to_string))
            .set_launch_template_name(name.map(str::to_string))
            .versions(version.unwrap_or("$Default"))
            .send()
            .await
            .ok()?;
        let profile = found
            .launch_template_versions()
            .first()?
            .launch_template_data()?
            .iam_instance_profile()?;
        match (profile.arn(), profile.name()) {
            (Some(arn), _) => Some(Profile::Arn(arn.to_string())),
            (None, Some(name)) => Some(Profile::Name(name.to_string())),
            (None, None) => None,
        }
    }

    async fn check_run_instances(&self, params: &Params) -> Option<Response> {
        if self.inner.config.iam_propagation.is_zero() {
            return None;
        }
        let named = match (
            params.get("IamInstanceProfile.Arn"),
            params.get("IamInstanceProfile.Name"),
        ) {
            (Some(arn), _) => Some(Profile::Arn(arn.to_string())),
            (None, Some(name)) => Some(Profile::Name(name.to_string())),
            (None, None) => None,
        };
        let profile = match named {
            Some(profile) => Some(profile),
            None => {
                self.template_profile(
                    params.get("LaunchTemplate.LaunchTemplateId"),
                    params.get("LaunchTemplate.LaunchTemplateName"),
                    params.get("LaunchTemplate.Version"),
                )
                .await
            }
        };
        match profile {
            Some(profile) if self.profile_is_young(profile.text()) => Some(wire::error(
                Service::Ec2,
                "InvalidParameterValue",
                &profile.refusal(),
            )),
            _ => None,
        }
    }

    async fn check_group_template(&self, params: &Params) -> Option<Response> {
        if self.inner.config.iam_propagation.is_zero() {
            return None;
        }
        let profile = self
            .template_profile(
                params.get("LaunchTemplate.LaunchTemplateId"),
                params.get("LaunchTemplate.LaunchTemplateName"),
                params.get("LaunchTemplate.Version"),
            )
            .await;
        match profile {
            Some(profile) if self.profile_is_young(profile.text()) => Some(wire::error(
                Service::AutoScaling,
                "ValidationError",
                &format!(
                    "You must use a valid fully-formed launch template. {}",
                    profile.refusal()
                ),
            )),
            _ => None,
        }
    }

    // ---- Run Command -------------------------------------------------

    /// AWS: Run Command knows an instance once its SSM agent has
    /// registered, some time after boot.
    async fn check_agents(&self, body: &[u8]) -> Option<Response> {
        let config = self.inner.config;
        let wait = config.instance_boot + config.ssm_registration;
        if wait.is_zero() {
            return None;
        }
        let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
            return None;
        };
        let ids: Vec<String> = request["InstanceIds"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return None;
        }
        let Ok(found) = self
            .inner
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
        else {
            // moto answers for ids it does not know.
            return None;
        };
        let now = chrono::Utc::now();
        let unregistered: Vec<String> = found
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| {
                i.launch_time().is_some_and(|t| {
                    let launched =
                        chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or(now);
                    let age = (now - launched).to_std().unwrap_or(Duration::ZERO);
                    age < wait
                })
            })
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        if unregistered.is_empty() {
            return None;
        }
        let body = serde_json::json!({
            "__type": "InvalidInstanceId",
            "message": format!(
                "Instances [[{}]] not in a valid state for account {ACCOUNT}",
                unregistered.join(", ")
            ),
        });
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        Some(response)
    }
}

/// An instance profile as a request or a launch template names it.
enum Profile {
    Arn(String),
    Name(String),
}

impl Profile {
    fn text(&self) -> &str {
        match self {
            Profile::Arn(text) | Profile::Name(text) => text,
        }
    }

    /// EC2's words for a profile it cannot see yet.
    fn refusal(&self) -> String {
        match self {
            Profile::Arn(arn) => format!(
                "Value ({arn}) for parameter iamInstanceProfile.arn is invalid. Invalid IAM \
                 Instance Profile ARN"
            ),
            Profile::Name(name) => format!(
                "Value ({name}) for parameter iamInstanceProfile.name is invalid. Invalid IAM \
                 Instance Profile name"
            ),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic mid-update of plain data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first `<tag>…</tag>` element, tags included.
fn single_block(xml: &str, tag: &str) -> Option<std::ops::Range<usize>> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)?;
    let end = xml.rfind(&close)? + close.len();
    (start < end).then_some(start..end)
}

/// `block` with its first `<state>` set to `state`, followed by `extra`.
fn with_state(block: &str, state: &str, extra: &str) -> String {
    let Some(open) = block.find("<state>") else {
        return block.to_string();
    };
    let Some(len) = block[open..].find("</state>") else {
        return block.to_string();
    };
    let end = open + len + "</state>".len();
    format!(
        "{}<state>{state}</state>{extra}{}",
        &block[..open],
        &block[end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_element_is_replaced_and_extras_follow_it() {
        let block = "<item><natGatewayId>nat-1</natGatewayId><state>available</state><vpcId>v</vpcId></item>";
        assert_eq!(
            with_state(block, "failed", "<failureCode>X</failureCode>"),
            "<item><natGatewayId>nat-1</natGatewayId><state>failed</state>\
             <failureCode>X</failureCode><vpcId>v</vpcId></item>"
        );
        assert_eq!(with_state("<item/>", "failed", ""), "<item/>");
    }

    #[test]
    fn figures_follow_the_time_scale() {
        let fast = Strictness::AWS.scaled(0.1);
        assert_eq!(fast.nat_pending, Duration::from_secs(9));
        assert_eq!(fast.eni_linger, Duration::from_secs(12));
        assert_eq!(fast.iam_propagation, Duration::from_secs(1));
        assert_eq!(Strictness::INSTANT.scaled(0.1), Strictness::INSTANT);
    }

    #[test]
    fn profiles_are_refused_in_ec2s_words() {
        let arn = Profile::Arn("arn:aws:iam::1:instance-profile/cloudpulse-x".into());
        assert!(arn.refusal().ends_with(
            "for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN"
        ));
        let name = Profile::Name("cloudpulse-x".into());
        assert!(name.refusal().contains("Invalid IAM Instance Profile name"));
    }
}
