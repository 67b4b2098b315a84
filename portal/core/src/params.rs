//! A deployment's parameters: the article's defaults and every rule they obey.
//!
//! Validation reports every violation at once, keyed by field, so a form can
//! show each error next to its input and an API client can fix all of them in
//! one go. Nothing is created from parameters that did not validate.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Instance types CloudPulse knows a price for.
pub const INSTANCE_TYPES: &[&str] = &[
    "t3.micro",
    "t3.small",
    "t3.medium",
    "t3.large",
    "t3a.micro",
    "t3a.small",
    "t3a.medium",
    "t4g.micro",
    "t4g.small",
    "m5.large",
    "c5.large",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatMode {
    /// One NAT gateway per AZ: survives the loss of an AZ (the article's layout).
    PerAz,
    /// One shared NAT gateway: about half the NAT cost, one AZ's outage cuts egress.
    Single,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    /// Seconds between checks (5-300).
    pub interval: u32,
    /// Seconds before a check counts as failed (2-120, less than the interval).
    pub timeout: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/health".into(),
            interval: 30,
            timeout: 5,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

/// What a person asks for. Missing fields take the article's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeploymentParams {
    pub name: String,
    pub region: String,
    pub azs: u8,
    pub vpc_cidr: String,
    pub instance_type: String,
    pub min: u32,
    pub desired: u32,
    pub max: u32,
    pub nat: NatMode,
    pub health_check: HealthCheck,
    /// Average CPU % above which the group scales out.
    pub scale_out_cpu: f64,
    /// Average CPU % below which the group scales in.
    pub scale_in_cpu: f64,
    /// Seconds between scaling actions.
    pub cooldown: u32,
    /// Seconds a new instance has before health checks count.
    pub grace_period: u32,
    /// Seconds a target leaving the load balancer keeps its open requests
    /// (`deregistration_delay.timeout_seconds`, 0-3600): every scale-in and
    /// teardown waits this long. AWS's own default is 300.
    pub deregistration_delay: u32,
    /// Minutes from creation until CloudPulse tears the deployment down;
    /// `Some(0)` turns the TTL off, and `None` (not given) takes the
    /// portal's default: [`SANDBOX_TTL_MINUTES`] in the sandbox, off on AWS.
    pub ttl_minutes: Option<u32>,
    /// The accrued cost in US dollars at which CloudPulse tears the
    /// deployment down; `None` for no cap.
    pub cost_cap_usd: Option<f64>,
}

/// The deregistration delay CloudPulse asks for unless told otherwise:
/// long enough for the instance service's requests (a few milliseconds)
/// to finish, short enough that a scale-in or a teardown does not wait
/// the five minutes of AWS's default.
pub const DEFAULT_DEREGISTRATION_DELAY: u32 = 30;
/// The longest deregistration delay AWS accepts, in seconds.
pub const MAX_DEREGISTRATION_DELAY: u32 = 3600;

/// The TTL a sandbox deployment gets unless it asks otherwise, and the one
/// the form suggests against AWS.
pub const SANDBOX_TTL_MINUTES: u32 = 240;
/// The longest TTL: a week.
pub const MAX_TTL_MINUTES: u32 = 7 * 24 * 60;
/// The highest cost cap CloudPulse accepts, in US dollars.
pub const MAX_COST_CAP_USD: f64 = 100_000.0;

/// Why a TTL is refused, or `None` when it is fine (0 means off).
pub fn check_ttl_minutes(minutes: u32) -> Option<String> {
    (minutes > MAX_TTL_MINUTES)
        .then(|| format!("at most {MAX_TTL_MINUTES} minutes (a week); 0 turns the TTL off"))
}

/// Why a cost cap is refused, or `None` when it is fine.
pub fn check_cost_cap(usd: f64) -> Option<String> {
    (!(usd.is_finite() && usd > 0.0 && usd <= MAX_COST_CAP_USD)).then(|| {
        format!("a positive amount in US dollars, at most {MAX_COST_CAP_USD:.0}; leave it out for no cap")
    })
}

impl Default for DeploymentParams {
    fn default() -> Self {
        DeploymentParams {
            name: String::new(),
            region: "us-east-1".into(),
            azs: 2,
            vpc_cidr: "10.0.0.0/16".into(),
            instance_type: "t3.micro".into(),
            min: 2,
            desired: 2,
            max: 4,
            nat: NatMode::PerAz,
            health_check: HealthCheck::default(),
            scale_out_cpu: 70.0,
            scale_in_cpu: 30.0,
            cooldown: 300,
            grace_period: 300,
            deregistration_delay: DEFAULT_DEREGISTRATION_DELAY,
            ttl_minutes: None,
            cost_cap_usd: None,
        }
    }
}

/// Field name to what is wrong with it, in words that say what to do.
pub type FieldErrors = BTreeMap<String, String>;

/// One public and one private subnet per availability zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetPlan {
    pub public: Vec<String>,
    pub private: Vec<String>,
}

impl DeploymentParams {
    /// Every rule, all violations reported together.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if let Err(message) = check_name(&self.name) {
            errors.insert("name".into(), message);
        }
        if let Err(message) = check_region(&self.region) {
            errors.insert("region".into(), message);
        }
        if !(2..=3).contains(&self.azs) {
            errors.insert("azs".into(), "use 2 or 3 availability zones".into());
        }
        if let Err(message) = parse_vpc_cidr(&self.vpc_cidr) {
            errors.insert("vpc_cidr".into(), message);
        }
        if !INSTANCE_TYPES.contains(&self.instance_type.as_str()) {
            errors.insert(
                "instance_type".into(),
                format!(
                    "{:?} has no price in CloudPulse's table; choose one of {}",
                    self.instance_type,
                    INSTANCE_TYPES.join(", ")
                ),
            );
        }
        if self.min < 1 {
            errors.insert("min".into(), "at least 1 instance".into());
        }
        if self.max > 10 {
            errors.insert("max".into(), "at most 10 instances".into());
        }
        if self.min > self.max {
            errors.insert(
                "min".into(),
                format!("min ({}) must not exceed max ({})", self.min, self.max),
            );
        }
        if self.desired < self.min || self.desired > self.max {
            errors.insert(
                "desired".into(),
                format!(
                    "desired ({}) must lie between min ({}) and max ({})",
                    self.desired, self.min, self.max
                ),
            );
        }
        let hc = &self.health_check;
        if let Err(message) = check_health_path(&hc.path) {
            errors.insert("health_check.path".into(), message);
        }
        if !(5..=300).contains(&hc.interval) {
            errors.insert(
                "health_check.interval".into(),
                "between 5 and 300 seconds".into(),
            );
        }
        if !(2..=120).contains(&hc.timeout) {
            errors.insert(
                "health_check.timeout".into(),
                "between 2 and 120 seconds".into(),
            );
        } else if hc.timeout >= hc.interval {
            errors.insert(
                "health_check.timeout".into(),
                format!("must be shorter than the interval ({} s)", hc.interval),
            );
        }
        for (field, value) in [
            ("health_check.healthy_threshold", hc.healthy_threshold),
            ("health_check.unhealthy_threshold", hc.unhealthy_threshold),
        ] {
            if !(2..=10).contains(&value) {
                errors.insert(field.into(), "between 2 and 10 checks".into());
            }
        }
        for (field, value) in [
            ("scale_out_cpu", self.scale_out_cpu),
            ("scale_in_cpu", self.scale_in_cpu),
        ] {
            if !(value.is_finite() && (1.0..=99.0).contains(&value)) {
                errors.insert(field.into(), "a CPU percentage between 1 and 99".into());
            }
        }
        if !errors.contains_key("scale_in_cpu")
            && !errors.contains_key("scale_out_cpu")
            && self.scale_in_cpu >= self.scale_out_cpu
        {
            errors.insert(
                "scale_in_cpu".into(),
                format!(
                    "must be below the scale-out threshold ({}%)",
                    self.scale_out_cpu
                ),
            );
        }
        if !(0..=3600).contains(&self.cooldown) {
            errors.insert("cooldown".into(), "between 0 and 3600 seconds".into());
        }
        if !(0..=7200).contains(&self.grace_period) {
            errors.insert("grace_period".into(), "between 0 and 7200 seconds".into());
        }
        if self.deregistration_delay > MAX_DEREGISTRATION_DELAY {
            errors.insert(
                "deregistration_delay".into(),
                format!(
                    "between 0 and {MAX_DEREGISTRATION_DELAY} seconds (AWS's limit); \
                     {DEFAULT_DEREGISTRATION_DELAY} lets requests finish without slowing a scale-in"
                ),
            );
        }
        if let Some(message) = self.ttl_minutes.and_then(check_ttl_minutes) {
            errors.insert("ttl_minutes".into(), message);
        }
        if let Some(message) = self.cost_cap_usd.and_then(check_cost_cap) {
            errors.insert("cost_cap_usd".into(), message);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The subnets, derived from the VPC range: with the default 10.0.0.0/16,
    /// public 10.0.1.0/24, 10.0.2.0/24 and private 10.0.3.0/24, 10.0.4.0/24,
    /// as in the article. Smaller ranges get proportionally smaller subnets.
    pub fn subnets(&self) -> Result<SubnetPlan, String> {
        let (base, prefix) = parse_vpc_cidr(&self.vpc_cidr)?;
        let sub_prefix = (prefix + 3).max(24);
        let size = 1u32 << (32 - sub_prefix);
        let block = |index: u32| format!("{}/{sub_prefix}", Ipv4Addr::from(base + index * size));
        let azs = u32::from(self.azs);
        Ok(SubnetPlan {
            public: (1..=azs).map(block).collect(),
            private: (azs + 1..=2 * azs).map(block).collect(),
        })
    }

    /// The blocks a zone's subnet may take, best first. A stack keeps the
    /// layout it was deployed with when its zone count changes: its
    /// subnets stay where they are, so a zone's planned block may be taken
    /// by another zone's subnet. Then the block the other layout gives it
    /// (a zone added to a two-zone stack takes the fifth and sixth blocks),
    /// then any other block of the range, lowest first. The caller takes
    /// the first that no subnet of the VPC holds; the order depends on the
    /// parameters alone, so a public and a private subnet made at the same
    /// time never reach for the same block.
    pub fn subnet_candidates(&self, az: u8, public: bool) -> Result<Vec<String>, String> {
        let (base, prefix) = parse_vpc_cidr(&self.vpc_cidr)?;
        let sub_prefix = (prefix + 3).max(24);
        let size = 1u32 << (32 - sub_prefix);
        let blocks = 1u32 << (sub_prefix - prefix);
        let az = u32::from(az);
        let index = |zones: u32| -> u32 {
            match (az < zones, public) {
                (true, true) => 1 + az,
                (true, false) => zones + 1 + az,
                // A zone beyond the layout's: the next pair of blocks.
                (false, true) => 2 * zones + 2 * (az - zones) + 1,
                (false, false) => 2 * zones + 2 * (az - zones) + 2,
            }
        };
        let now = u32::from(self.azs);
        let other = if now == 2 { 3 } else { 2 };
        let mut order = vec![index(now), index(other)];
        order.extend(1..blocks);
        let mut seen = std::collections::BTreeSet::new();
        Ok(order
            .into_iter()
            .filter(|i| *i < blocks && seen.insert(*i))
            .map(|i| format!("{}/{sub_prefix}", Ipv4Addr::from(base + i * size)))
            .collect())
    }
}

/// Whether two IPv4 CIDR blocks share an address (`false` for text that
/// is not one).
pub fn cidrs_overlap(a: &str, b: &str) -> bool {
    let range = |cidr: &str| -> Option<(u32, u32)> {
        let (addr, prefix) = cidr.split_once('/')?;
        let addr = u32::from(addr.parse::<Ipv4Addr>().ok()?);
        let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        let start = addr & mask;
        Some((start, start | !mask))
    };
    match (range(a), range(b)) {
        (Some((a0, a1)), Some((b0, b1))) => a0 <= b1 && b0 <= a1,
        _ => false,
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if (3..=32).contains(&name.len())
        && ok_chars
        && starts
        && !name.ends_with('-')
        && !name.contains("--")
    {
        Ok(())
    } else {
        Err(
            "3 to 32 lower-case letters, digits and single hyphens, starting with a letter \
             and not ending with a hyphen (it becomes part of AWS resource names)"
                .into(),
        )
    }
}

/// A health-check path as the load balancer takes it: `/` and then RFC
/// 3986 path characters (letters, digits, `-._~`, `!$&'()*+,;=:@`, `/` and
/// `%` with two hex digits), an optional `?query` of the same, at most 1024
/// in all. Anything else (spaces, NUL, escape codes, non-ASCII) would only
/// fail at the target-group step, after the NAT gateways are paid for.
pub fn check_health_path(path: &str) -> Result<(), String> {
    let usage =
        "a path starting with / made of letters, digits, - . _ ~ ! $ & ' ( ) * + , ; = : @ / \
                 and %XX escapes, with an optional ?query, like /health";
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.len() > 1024 {
        return Err(usage.to_string());
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let ok = match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return Err(usage.to_string());
                }
                i += 2;
                true
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => true,
            _ => b"-._~!$&'()*+,;=:@/?".contains(&b),
        };
        if !ok {
            return Err(usage.to_string());
        }
        i += 1;
    }
    Ok(())
}

/// The longest region name accepted; AWS's longest today is 14 characters.
pub const MAX_REGION_LEN: usize = 20;

/// AWS's region names as the AWS SDK's endpoint rules list them (the
/// partitions of `aws-sdk-*` in Cargo.lock: aws, aws-cn, aws-us-gov,
/// aws-eusc and the isolated ones), without the `aws-global` pseudo-regions.
/// With the price table's regions these are the only names read anywhere a
/// region comes from a request: the portal keeps AWS clients per region, so
/// an open set of names would be an open set of clients.
pub const AWS_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "cn-north-1",
    "cn-northwest-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "eusc-de-east-1",
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-isob-west-1",
    "eu-isoe-west-1",
    "us-isof-east-1",
    "us-isof-south-1",
];

/// Whether `region` is one of AWS's region names ([`AWS_REGIONS`] or a
/// region of the price table), at most [`MAX_REGION_LEN`] characters.
pub fn is_region(region: &str) -> bool {
    region.len() <= MAX_REGION_LEN
        && (AWS_REGIONS.contains(&region) || crate::pricing::prices(region).is_some())
}

/// [`is_region`], with the message for a name that is not one. The name is
/// quoted at most 24 characters long: it came from a request.
pub fn check_region(region: &str) -> Result<(), String> {
    if is_region(region) {
        return Ok(());
    }
    let mut shown: String = region.chars().take(24).collect();
    if shown.len() < region.len() {
        shown.push('…');
    }
    Err(format!(
        "{shown:?} is not an AWS region name; use one like us-east-1 or eu-west-2"
    ))
}

/// A private IPv4 range from /16 to /24, written as its network address.
fn parse_vpc_cidr(cidr: &str) -> Result<(u32, u32), String> {
    let usage = "a private range from /16 to /24 written as its network address, \
                 like 10.0.0.0/16 or 192.168.0.0/20";
    let (addr, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr:?} is not a CIDR block; use {usage}"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 address; use {usage}"))?;
    let prefix: u32 = prefix
        .parse()
        .map_err(|_| format!("{prefix:?} is not a prefix length; use {usage}"))?;
    if !(16..=24).contains(&prefix) {
        return Err(format!("/{prefix} is outside /16 to /24; use {usage}"));
    }
    if !addr.is_private() {
        return Err(format!(
            "{addr} is not in a private range (10/8, 172.16/12, 192.168/16); use {usage}"
        ));
    }
    let base = u32::from(addr);
    let mask = u32::MAX << (32 - prefix);
    if base & !mask != 0 {
        return Err(format!(
            "{cidr} has host bits set; its network address is {}/{prefix}",
            Ipv4Addr::from(base & mask)
        ));
    }
    Ok((base, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> DeploymentParams {
        DeploymentParams {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn budgets_are_checked_with_the_other_fields() {
        let mut params = named("demo");
        params.ttl_minutes = Some(0);
        params.cost_cap_usd = Some(2.5);
        assert_eq!(params.validate(), Ok(()));
        params.ttl_minutes = Some(MAX_TTL_MINUTES + 1);
        params.cost_cap_usd = Some(-1.0);
        let errors = params.validate().unwrap_err();
        assert!(errors["ttl_minutes"].contains("a week"), "{errors:?}");
        assert!(errors["cost_cap_usd"].contains("positive"), "{errors:?}");
        for bad in [0.0, f64::NAN, f64::INFINITY, MAX_COST_CAP_USD * 2.0] {
            assert!(check_cost_cap(bad).is_some(), "{bad} passed");
        }
        // Old stored parameters have no budget fields and still read.
        let old: DeploymentParams = serde_json::from_str(r#"{"name":"old"}"#).unwrap();
        assert_eq!((old.ttl_minutes, old.cost_cap_usd), (None, None));
    }

    #[test]
    fn the_deregistration_delay_is_30_s_and_at_most_an_hour() {
        let mut params = named("demo");
        assert_eq!(params.deregistration_delay, 30);
        for fine in [0, 30, 300, 3600] {
            params.deregistration_delay = fine;
            assert_eq!(params.validate(), Ok(()), "{fine}");
        }
        params.deregistration_delay = 3601;
        let errors = params.validate().unwrap_err();
        assert!(
            errors["deregistration_delay"].contains("between 0 and 3600"),
            "{errors:?}"
        );
        // Parameters stored before the field existed read as the default.
        let old: DeploymentParams = serde_json::from_str(r#"{"name":"old"}"#).unwrap();
        assert_eq!(old.deregistration_delay, DEFAULT_DEREGISTRATION_DELAY);
    }

    #[test]
    fn the_article_defaults_validate_and_give_its_subnets() {
        let params = named("demo");
        assert_eq!(params.validate(), Ok(()));
        let subnets = params.subnets().unwrap();
        assert_eq!(subnets.public, ["10.0.1.0/24", "10.0.2.0/24"]);
        assert_eq!(subnets.private, ["10.0.3.0/24", "10.0.4.0/24"]);
    }

    /// The first candidate no taken block overlaps, as the subnet step
    /// picks it.
    fn pick(params: &DeploymentParams, az: u8, public: bool, taken: &[&str]) -> String {
        params
            .subnet_candidates(az, public)
            .unwrap()
            .into_iter()
            .find(|c| !taken.iter().any(|t| cidrs_overlap(c, t)))
            .unwrap()
    }

    #[test]
    fn a_zone_added_or_removed_keeps_every_subnet_where_it_is() {
        let two = named("demo");
        let three = DeploymentParams {
            azs: 3,
            ..named("demo")
        };
        // A fresh deploy takes the planned blocks.
        for (params, az, public) in [(&two, 1, false), (&three, 2, true), (&three, 0, false)] {
            let planned = params.subnets().unwrap();
            let want = if public {
                &planned.public
            } else {
                &planned.private
            };
            assert_eq!(pick(params, az, public, &[]), want[usize::from(az)]);
        }
        // Two zones become three: the third zone's public subnet cannot
        // take 10.0.3.0/24, the first private one's.
        let laid_out = ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24", "10.0.4.0/24"];
        assert_eq!(pick(&three, 2, true, &laid_out), "10.0.5.0/24");
        assert_eq!(pick(&three, 2, false, &laid_out), "10.0.6.0/24");
        // A subnet of that stack made again (a repair) finds its old block.
        let grown = [
            "10.0.1.0/24",
            "10.0.2.0/24",
            "10.0.4.0/24",
            "10.0.5.0/24",
            "10.0.6.0/24",
        ];
        assert_eq!(pick(&three, 0, false, &grown), "10.0.3.0/24");
        // Three become two and three again: the third zone's blocks return.
        let shrunk = ["10.0.1.0/24", "10.0.2.0/24", "10.0.4.0/24", "10.0.5.0/24"];
        assert_eq!(pick(&three, 2, true, &shrunk), "10.0.3.0/24");
        assert_eq!(pick(&three, 2, false, &shrunk), "10.0.6.0/24");
        // Every block of the range is a candidate once, in the range.
        let all = three.subnet_candidates(1, true).unwrap();
        assert_eq!(all.len(), 255);
        assert!(!all.contains(&"10.0.0.0/24".to_string()));
        assert!(cidrs_overlap("10.0.0.0/16", "10.0.200.0/24"));
        assert!(!cidrs_overlap("10.0.3.0/24", "10.0.4.0/24"));
        assert!(!cidrs_overlap("10.0.3.0/24", "nonsense"));
    }

    #[test]
    fn every_violation_is_reported_together() {
        let params = DeploymentParams {
            name: "Bad Name".into(),
            region: "mars".into(),
            azs: 4,
            vpc_cidr: "8.8.8.0/24".into(),
            instance_type: "x1.huge".into(),
            min: 5,
            desired: 1,
            max: 3,
            scale_in_cpu: 80.0,
            ..Default::default()
        };
        let errors = params.validate().unwrap_err();
        let fields: Vec<_> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "azs",
                "desired",
                "instance_type",
                "min",
                "name",
                "region",
                "scale_in_cpu",
                "vpc_cidr"
            ]
        );
        assert!(errors["vpc_cidr"].contains("private"));
        assert!(errors["min"].contains("must not exceed max"));
    }

    #[test]
    fn cidr_rules() {
        assert!(parse_vpc_cidr("10.0.0.0/16").is_ok());
        assert!(parse_vpc_cidr("172.16.0.0/20").is_ok());
        assert!(parse_vpc_cidr("192.168.1.0/24").is_ok());
        assert!(parse_vpc_cidr("10.0.0.0/8")
            .unwrap_err()
            .contains("outside"));
        assert!(parse_vpc_cidr("10.0.0.1/16")
            .unwrap_err()
            .contains("10.0.0.0/16"));
        assert!(parse_vpc_cidr("10.0.0.0").is_err());
        assert!(parse_vpc_cidr("300.0.0.0/16").is_err());
    }

    #[test]
    fn three_azs_in_a_small_range_still_fit() {
        let params = DeploymentParams {
            azs: 3,
            vpc_cidr: "192.168.4.0/24".into(),
            ..named("small")
        };
        assert_eq!(params.validate(), Ok(()));
        let subnets = params.subnets().unwrap();
        assert_eq!(
            subnets.public,
            ["192.168.4.32/27", "192.168.4.64/27", "192.168.4.96/27"]
        );
        assert_eq!(
            subnets.private,
            ["192.168.4.128/27", "192.168.4.160/27", "192.168.4.192/27"]
        );
    }

    #[test]
    fn names_and_regions() {
        for good in ["abc", "web-1", "a2345678901234567890123456789012"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "1abc",
            "abc-",
            "a--b",
            "ABC",
            "a_b",
            "a23456789012345678901234567890123",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for good in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "ap-southeast-4",
            "cn-northwest-1",
        ] {
            assert!(is_region(good), "{good}");
        }
        for bad in [
            "us-east",
            "useast1",
            "US-EAST-1",
            "us-east-0",
            "a-b-c-d-1",
            "zz-fake-1",
            "aws-global",
            "",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
        let long = format!("{}-east-1", "a".repeat(5000));
        let message = check_region(&long).unwrap_err();
        assert!(message.len() < 120, "{message}");
        assert!(message.contains("us-east-1"), "{message}");
    }

    #[test]
    fn health_check_paths_are_rfc_3986_paths() {
        for good in [
            "/",
            "/health",
            "/api/status?full=1&x=%20",
            "/a-b_c.d~e/!$&'()*+,;=:@",
            "/%E2%9C%93",
        ] {
            assert_eq!(check_health_path(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "health",
            "/he\0alth",
            "/\u{1b}[2J",
            "/santé",
            "/a b",
            "/a\tb",
            "/a#b",
            "/a\"b",
            "/<b>",
            "/a\\b",
            "/{x}",
            "/50%",
            "/%zz",
            "/%4",
        ] {
            let message = check_health_path(bad).unwrap_err();
            assert!(message.contains("like /health"), "{bad:?}: {message}");
        }
        assert!(check_health_path(&format!("/{}", "a".repeat(1023))).is_ok());
        assert!(check_health_path(&format!("/{}", "a".repeat(1024))).is_err());
    }

    #[test]
    fn every_priced_region_is_an_aws_region_within_the_length() {
        for prices in crate::pricing::PRICE_TABLE {
            assert!(AWS_REGIONS.contains(&prices.region), "{}", prices.region);
        }
        for region in AWS_REGIONS {
            assert!(region.len() <= MAX_REGION_LEN, "{region}");
        }
    }

    #[test]
    fn json_takes_defaults_and_refuses_unknown_fields() {
        let params: DeploymentParams = serde_json::from_str(r#"{"name":"demo","max":6}"#).unwrap();
        assert_eq!(params.max, 6);
        assert_eq!(params.nat, NatMode::PerAz);
        assert_eq!(params.health_check.path, "/health");
        let nat: DeploymentParams = serde_json::from_str(r#"{"name":"x","nat":"single"}"#).unwrap();
        assert_eq!(nat.nat, NatMode::Single);
        assert!(serde_json::from_str::<DeploymentParams>(r#"{"name":"x","mxa":6}"#).is_err());
    }
}
