//! Property tests for the parameter rules and the subnet arithmetic.

use std::net::Ipv4Addr;

use cloudpulse_engine::params::DeploymentParams;
use proptest::prelude::*;

fn parse(cidr: &str) -> (u32, u32) {
    let (addr, prefix) = cidr.split_once('/').unwrap();
    (
        u32::from(addr.parse::<Ipv4Addr>().unwrap()),
        prefix.parse().unwrap(),
    )
}

fn range((base, prefix): (u32, u32)) -> (u64, u64) {
    let start = u64::from(base);
    (start, start + (1u64 << (32 - prefix)))
}

proptest! {
    /// Whatever validates yields 2 × azs subnets that lie inside the VPC
    /// and never overlap.
    #[test]
    fn valid_ranges_give_disjoint_subnets_inside_the_vpc(
        first in prop_oneof![Just(10u8), Just(172u8), Just(192u8)],
        second in any::<u8>(),
        third in any::<u8>(),
        prefix in 16u32..=24,
        azs in 2u8..=3,
    ) {
        let second = match first { 172 => 16 + second % 16, 192 => 168, _ => second };
        let base = u32::from(Ipv4Addr::new(first, second, third, 0)) & (u32::MAX << (32 - prefix));
        let params = DeploymentParams {
            name: "prop".into(),
            azs,
            vpc_cidr: format!("{}/{prefix}", Ipv4Addr::from(base)),
            ..Default::default()
        };
        prop_assert_eq!(params.validate(), Ok(()));
        let plan = params.subnets().unwrap();
        let all: Vec<_> = plan.public.iter().chain(&plan.private).map(|c| range(parse(c))).collect();
        prop_assert_eq!(all.len(), 2 * usize::from(azs));
        let vpc = range((base, prefix));
        for (i, a) in all.iter().enumerate() {
            prop_assert!(a.0 >= vpc.0 && a.1 <= vpc.1, "{:?} outside {:?}", a, vpc);
            for b in &all[i + 1..] {
                prop_assert!(a.1 <= b.0 || b.1 <= a.0, "{:?} overlaps {:?}", a, b);
            }
        }
    }

    /// Sizes validate exactly when 1 ≤ min ≤ desired ≤ max ≤ 10.
    #[test]
    fn sizes_follow_the_rule(min in 0u32..12, desired in 0u32..12, max in 0u32..12) {
        let params = DeploymentParams { name: "prop".into(), min, desired, max, ..Default::default() };
        let ok = 1 <= min && min <= desired && desired <= max && max <= 10;
        prop_assert_eq!(params.validate().is_ok(), ok);
    }

    /// Arbitrary JSON never panics the parser or the validator.
    #[test]
    fn arbitrary_text_is_handled(name in ".{0,40}", cidr in ".{0,24}", out in any::<f64>(), inn in any::<f64>()) {
        let params = DeploymentParams {
            name, vpc_cidr: cidr, scale_out_cpu: out, scale_in_cpu: inn, ..Default::default()
        };
        let _ = params.validate();
        let _ = params.subnets();
    }
}
