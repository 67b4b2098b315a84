//! Properties of the cost math that must hold for any parameters, not just the
//! defaults: totals add up, more of anything never costs less, a shared NAT
//! never costs more than one per AZ, and accrual is linear in time.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cloudpulse_core::params::{DeploymentParams, NatMode, INSTANCE_TYPES};
use cloudpulse_core::pricing::{
    accrued, estimate, hourly, prices, CostCategory, CostEstimate, PriceError, ResourceKind,
    HOURS_PER_MONTH, PRICE_TABLE,
};
use proptest::prelude::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn region() -> impl Strategy<Value = String> {
    proptest::sample::select(PRICE_TABLE.iter().map(|p| p.region).collect::<Vec<_>>())
        .prop_map(String::from)
}

fn instance_type() -> impl Strategy<Value = String> {
    proptest::sample::select(INSTANCE_TYPES.to_vec()).prop_map(String::from)
}

fn nat() -> impl Strategy<Value = NatMode> {
    prop_oneof![Just(NatMode::PerAz), Just(NatMode::Single)]
}

/// Parameters in a priced region, with counts well beyond what validation
/// allows: the arithmetic must hold regardless.
fn params() -> impl Strategy<Value = DeploymentParams> {
    (region(), instance_type(), 1u8..=6, 0u32..=50, nat()).prop_map(
        |(region, instance_type, azs, desired, nat)| DeploymentParams {
            region,
            instance_type,
            azs,
            desired,
            nat,
            ..Default::default()
        },
    )
}

fn priced(params: &DeploymentParams) -> CostEstimate {
    match estimate(params) {
        Ok(estimate) => estimate,
        Err(e) => panic!("{params:?} should be priced: {e}"),
    }
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 2020-01-01 to 2040-01-01, to the millisecond.
    (1_577_836_800_000i64..2_208_988_800_000).prop_map(|ms| {
        Utc.timestamp_millis_opt(ms)
            .single()
            .expect("in chrono's range")
    })
}

proptest! {
    #[test]
    fn totals_are_the_sum_of_their_lines(p in params()) {
        let e = priced(&p);
        let hour: f64 = e.lines.iter().map(|l| l.per_hour).sum();
        let month: f64 = e.lines.iter().map(|l| l.per_month).sum();
        prop_assert!(close(hour, e.per_hour), "{hour} vs {}", e.per_hour);
        prop_assert!(close(month, e.per_month), "{month} vs {}", e.per_month);
        prop_assert_eq!(e.lines.len(), CostCategory::ALL.len());
        for line in &e.lines {
            prop_assert!(line.per_hour >= 0.0 && line.per_hour.is_finite());
        }
    }

    #[test]
    fn a_month_is_730_hours(p in params()) {
        let e = priced(&p);
        prop_assert!(close(e.per_month, e.per_hour * HOURS_PER_MONTH));
        for line in &e.lines {
            prop_assert!(close(line.per_month, line.per_hour * HOURS_PER_MONTH));
        }
    }

    #[test]
    fn one_more_instance_never_costs_less(p in params()) {
        let more = DeploymentParams { desired: p.desired + 1, ..p.clone() };
        let (a, b) = (priced(&p), priced(&more));
        prop_assert!(b.per_hour > a.per_hour);
        for category in CostCategory::ALL {
            prop_assert!(b.per_hour_of(category) >= a.per_hour_of(category), "{category:?}");
        }
    }

    #[test]
    fn one_more_az_never_costs_less(p in params()) {
        let more = DeploymentParams { azs: p.azs + 1, ..p.clone() };
        let (a, b) = (priced(&p), priced(&more));
        prop_assert!(b.per_hour > a.per_hour);
        for category in CostCategory::ALL {
            prop_assert!(b.per_hour_of(category) >= a.per_hour_of(category), "{category:?}");
        }
    }

    #[test]
    fn a_shared_nat_never_costs_more_than_one_per_az(p in params()) {
        let per_az = priced(&DeploymentParams { nat: NatMode::PerAz, ..p.clone() });
        let single = priced(&DeploymentParams { nat: NatMode::Single, ..p });
        prop_assert!(single.per_hour <= per_az.per_hour);
        prop_assert!(single.per_hour_of(CostCategory::Nat) <= per_az.per_hour_of(CostCategory::Nat));
    }

    #[test]
    fn the_nat_line_agrees_with_the_hourly_rate(p in params()) {
        let e = priced(&p);
        let gateways = match p.nat {
            NatMode::PerAz => f64::from(p.azs),
            NatMode::Single => 1.0,
        };
        let rate = hourly(&p.region, ResourceKind::NatGateway, None);
        prop_assert!(rate.is_some());
        prop_assert!(close(e.per_hour_of(CostCategory::Nat), gateways * rate.unwrap_or_default()));
        let instance = hourly(&p.region, ResourceKind::Instance, Some(&p.instance_type));
        prop_assert!(close(
            e.per_hour_of(CostCategory::Instances),
            f64::from(p.desired) * instance.unwrap_or_default()
        ));
    }

    #[test]
    fn an_unknown_region_is_an_error(p in params(), name in "[a-z]{2}-[a-z]{3,9}-[0-9]") {
        prop_assume!(prices(&name).is_none());
        let asked = DeploymentParams { region: name.clone(), ..p };
        prop_assert_eq!(estimate(&asked), Err(PriceError::UnknownRegion { region: name.clone() }));
        for kind in ResourceKind::ALL {
            prop_assert_eq!(hourly(&name, kind, Some("t3.micro")), None);
        }
    }

    #[test]
    fn accrual_is_linear_in_the_rate(
        rate in 0.0f64..10.0,
        k in 0.0f64..100.0,
        from in instant(),
        to in instant(),
    ) {
        prop_assert!(close(accrued(rate * k, from, to), k * accrued(rate, from, to)));
        let hours = (to - from).num_milliseconds() as f64 / 3_600_000.0;
        prop_assert!(close(accrued(rate, from, to), rate * hours.max(0.0)));
    }

    #[test]
    fn accrual_adds_up_over_adjacent_intervals(
        rate in 0.0f64..10.0,
        a in instant(),
        b in instant(),
        c in instant(),
    ) {
        let mut t = [a, b, c];
        t.sort();
        let whole = accrued(rate, t[0], t[2]);
        let parts = accrued(rate, t[0], t[1]) + accrued(rate, t[1], t[2]);
        prop_assert!(close(whole, parts), "{whole} vs {parts}");
    }

    #[test]
    fn accrual_is_never_negative(rate in -10.0f64..10.0, from in instant(), to in instant()) {
        let amount = accrued(rate, from, to);
        prop_assert!(amount >= 0.0);
        if to <= from {
            prop_assert_eq!(amount, 0.0);
        }
    }

    #[test]
    fn accrual_over_an_hour_is_the_rate(rate in 0.0f64..10.0, from in instant()) {
        prop_assert!(close(accrued(rate, from, from + Duration::hours(1)), rate));
    }
}
