//! The data plane's corrections to moto's ELBv2 answers, applied in the
//! gateway.
//!
//! moto says every target is `healthy` and names load balancers with DNS
//! names that resolve nowhere. Through the gateway, with a data plane
//! attached:
//! - `DescribeTargetHealth` reports the health checker's verdict (state,
//!   reason, description) for each target. A target the data plane has no
//!   verdict on yet is `initial` (`Elb.RegistrationInProgress`) rather than
//!   moto's unconditional `healthy`: nothing can be healthy before anything
//!   has checked it. moto's other states (`unused` for a stopped instance)
//!   pass through. Targets moto already forgot but the data plane is still
//!   draining are added, as AWS lists a deregistered target as `draining`
//!   until its connections are drained.
//! - `DescribeLoadBalancers` reports `127.0.0.1:PORT`, the local listener, as
//!   `DNSName`, so `http://{DNSName}` reaches the application as it does on
//!   AWS.
//! - While an instance boots (see [`super::DataPlaneConfig::boot_time`]),
//!   `DescribeInstances` says it is `pending` and `DescribeAutoScalingGroups`
//!   and `DescribeAutoScalingInstances` say `Pending`, where moto has it
//!   `running` and `InService` the moment it exists.
//!
//! In the gateway's spirit, the rewrite is textual and touches only the
//! elements it corrects.

use std::sync::Arc;

use axum::body::Bytes;

use super::health::{TargetReason, TargetState, TargetVerdict};
use super::DataPlaneView;
use crate::gateway::{rewrite_blocks, text_of, top_level_blocks};

/// A pending correction for one request's answer.
#[derive(Debug)]
pub(crate) struct Overlay {
    view: Arc<dyn DataPlaneView>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    TargetHealth {
        target_group_arn: String,
        /// The caller asked about particular targets: add no others.
        particular: bool,
    },
    LoadBalancers,
    Instances,
    GroupInstances,
}

impl Overlay {
    /// The correction a request's answer needs, if any.
    pub(crate) fn for_request(
        view: Option<Arc<dyn DataPlaneView>>,
        action: Option<&str>,
        body: &[u8],
    ) -> Option<Overlay> {
        let view = view?;
        let kind = match action? {
            "DescribeTargetHealth" => {
                let params = form_params(body);
                let target_group_arn = params
                    .iter()
                    .find(|(k, _)| k == "TargetGroupArn")
                    .map(|(_, v)| v.clone())?;
                let particular = params.iter().any(|(k, _)| k.starts_with("Targets."));
                Kind::TargetHealth {
                    target_group_arn,
                    particular,
                }
            }
            "DescribeLoadBalancers" => Kind::LoadBalancers,
            "DescribeInstances" => Kind::Instances,
            "DescribeAutoScalingGroups" | "DescribeAutoScalingInstances" => Kind::GroupInstances,
            _ => return None,
        };
        Some(Overlay { view, kind })
    }

    /// moto's successful answer, corrected.
    pub(crate) fn apply(self, body: Bytes) -> Bytes {
        let Ok(xml) = std::str::from_utf8(&body) else {
            return body;
        };
        let rewritten = match &self.kind {
            Kind::TargetHealth {
                target_group_arn,
                particular,
            } => {
                let verdicts = self
                    .view
                    .target_health(target_group_arn)
                    .unwrap_or_default();
                rewrite_target_health(xml, &verdicts, !particular)
            }
            Kind::LoadBalancers => rewrite_blocks(
                xml,
                &top_level_blocks(xml, "LoadBalancers", "member"),
                |block| {
                    let arn = text_of(block, "LoadBalancerArn")?.trim();
                    let addr = self.view.balancer_address(arn)?;
                    replace_element(block, "DNSName", &format!("<DNSName>{addr}</DNSName>"))
                },
            ),
            Kind::Instances => rewrite_booting_instances(xml, |id| self.view.booting(id)),
            Kind::GroupInstances => rewrite_booting_members(
                xml,
                |id| self.view.booting(id),
                |group, id| self.view.seen(group, id),
            ),
        };
        rewritten.map(Bytes::from).unwrap_or(body)
    }
}

/// EC2's `DescribeInstances`: `<reservationSet><item>…<instancesSet><item>`,
/// each instance's state as `<instanceState><code/><name/></instanceState>`.
fn rewrite_booting_instances(xml: &str, booting: impl Fn(&str) -> bool) -> Option<String> {
    let reservations = top_level_blocks(xml, "reservationSet", "item");
    rewrite_blocks(xml, &reservations, |reservation| {
        let instances = top_level_blocks(reservation, "instancesSet", "item");
        rewrite_blocks(reservation, &instances, |instance| {
            let id = text_of(instance, "instanceId")?.trim();
            if !booting(id) || !instance.contains("<name>running</name>") {
                return None;
            }
            replace_element(
                instance,
                "instanceState",
                "<instanceState><code>0</code><name>pending</name></instanceState>",
            )
        })
    })
}

/// Auto Scaling's instance lists: `<Instances><member>` inside each group's
/// `<AutoScalingGroups><member>`, or `<AutoScalingInstances><member>`. A
/// member is `Pending` while it boots, and also when it is `InService` but
/// launched since the data plane last looked at its group, or in a
/// deployment's group the data plane has not looked at yet (moto has an
/// instance in service the moment it exists; AWS never does).
fn rewrite_booting_members(
    xml: &str,
    booting: impl Fn(&str) -> bool,
    seen: impl Fn(&str, &str) -> Option<bool>,
) -> Option<String> {
    let pending = |group: &str, deployment: bool, member: &str| {
        let id = text_of(member, "InstanceId")?.trim();
        let in_service = member.contains("<LifecycleState>InService</LifecycleState>");
        let not_looked_at = match seen(group, id) {
            Some(seen) => !seen,
            None => deployment,
        };
        let is_pending = booting(id) || (in_service && not_looked_at);
        if !is_pending {
            return None;
        }
        replace_element(
            member,
            "LifecycleState",
            "<LifecycleState>Pending</LifecycleState>",
        )
    };
    let instances = top_level_blocks(xml, "AutoScalingInstances", "member");
    if !instances.is_empty() {
        return rewrite_blocks(xml, &instances, |member| {
            let group = text_of(member, "AutoScalingGroupName").unwrap_or_default();
            pending(group.trim(), false, member)
        });
    }
    let deployment_tag = format!("<Key>{}</Key>", cloudpulse_core::tags::DEPLOYMENT);
    let groups = top_level_blocks(xml, "AutoScalingGroups", "member");
    rewrite_blocks(xml, &groups, |group| {
        let members = top_level_blocks(group, "Instances", "member");
        let name = text_of(group, "AutoScalingGroupName").unwrap_or_default();
        let deployment = group.contains(&deployment_tag);
        rewrite_blocks(group, &members, |member| {
            pending(name.trim(), deployment, member)
        })
    })
}

/// Replaces each listed target's `TargetHealth` with the verdict and, when
/// `add_draining`, lists draining targets moto no longer has.
fn rewrite_target_health(
    xml: &str,
    verdicts: &[TargetVerdict],
    add_draining: bool,
) -> Option<String> {
    let blocks = top_level_blocks(xml, "TargetHealthDescriptions", "member");
    let mut listed = Vec::new();
    let mut target_port = None;
    let rewritten = rewrite_blocks(xml, &blocks, |block| {
        let id = text_of(block, "Id")?.trim().to_string();
        if target_port.is_none() {
            target_port = text_of(block, "Port").map(|p| p.trim().to_string());
        }
        let verdict = verdicts.iter().find(|v| v.instance_id == id);
        listed.push(id);
        let health = match verdict {
            Some(verdict) => target_health_xml(verdict.state, verdict.reason.as_ref()),
            None => {
                let moto_state = text_of(block, "State").map(str::trim);
                if moto_state != Some("healthy") {
                    return None;
                }
                target_health_xml(
                    TargetState::Initial,
                    Some(&TargetReason::RegistrationInProgress),
                )
            }
        };
        replace_element(block, "TargetHealth", &health)
    });
    let xml_now = rewritten.as_deref().unwrap_or(xml);
    let extra: String = if add_draining {
        verdicts
            .iter()
            .filter(|v| v.state == TargetState::Draining && !listed.contains(&v.instance_id))
            .map(|v| {
                let port = target_port
                    .as_deref()
                    .map(|p| format!("<Port>{p}</Port>"))
                    .unwrap_or_default();
                format!(
                    "<member><TargetHealth>{}</TargetHealth><Target>{port}<Id>{}</Id></Target></member>",
                    inner_health(v.state, v.reason.as_ref()),
                    v.instance_id
                )
            })
            .collect()
    } else {
        String::new()
    };
    if extra.is_empty() {
        return rewritten;
    }
    append_members(xml_now, "TargetHealthDescriptions", &extra).or(rewritten)
}

fn target_health_xml(state: TargetState, reason: Option<&TargetReason>) -> String {
    format!(
        "<TargetHealth>{}</TargetHealth>",
        inner_health(state, reason)
    )
}

fn inner_health(state: TargetState, reason: Option<&TargetReason>) -> String {
    let mut out = format!("<State>{}</State>", state.as_str());
    if let Some(reason) = reason {
        out.push_str(&format!(
            "<Reason>{}</Reason><Description>{}</Description>",
            reason.code(),
            escape(&reason.description())
        ));
    }
    out
}

/// `block` with its first `<tag>…</tag>` replaced by `new`.
fn replace_element(block: &str, tag: &str, new: &str) -> Option<String> {
    let open = block.find(&format!("<{tag}>"))?;
    let close_tag = format!("</{tag}>");
    let close = block[open..].find(&close_tag)? + open + close_tag.len();
    Some(format!("{}{new}{}", &block[..open], &block[close..]))
}

/// Adds `members` at the end of the `<container>` list, also when moto
/// wrote it as an empty element.
fn append_members(xml: &str, container: &str, members: &str) -> Option<String> {
    let close = format!("</{container}>");
    if let Some(at) = xml.find(&close) {
        return Some(format!("{}{members}{}", &xml[..at], &xml[at..]));
    }
    for empty in [format!("<{container}/>"), format!("<{container} />")] {
        if let Some(at) = xml.find(&empty) {
            return Some(format!(
                "{}<{container}>{members}</{container}>{}",
                &xml[..at],
                &xml[at + empty.len()..]
            ));
        }
    }
    None
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The decoded `key=value` pairs of a form body.
fn form_params(body: &[u8]) -> Vec<(String, String)> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Vec::new();
    };
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3) {
                Some(&[high, low]) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                    out.push(hex_value(high) << 4 | hex_value(low));
                    i += 2;
                }
                // Not an escape: keep it as written.
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of moto 5.2.5's answer, trimmed.
    const HEALTH: &str = "<DescribeTargetHealthResponse><DescribeTargetHealthResult>\
        <TargetHealthDescriptions>\
        <member><HealthCheckPort>3000</HealthCheckPort><TargetHealth><State>healthy</State></TargetHealth>\
        <Target><Port>3000</Port><Id>i-a</Id></Target></member>\
        <member><HealthCheckPort>3000</HealthCheckPort><TargetHealth><State>healthy</State></TargetHealth>\
        <Target><Port>3000</Port><Id>i-b</Id></Target></member>\
        <member><HealthCheckPort>3000</HealthCheckPort><TargetHealth><State>unused</State>\
        <Reason>Target.InvalidState</Reason></TargetHealth>\
        <Target><Port>3000</Port><Id>i-c</Id></Target></member>\
        </TargetHealthDescriptions></DescribeTargetHealthResult></DescribeTargetHealthResponse>";

    fn verdict(id: &str, state: TargetState, reason: Option<TargetReason>) -> TargetVerdict {
        TargetVerdict {
            instance_id: id.into(),
            port: 1,
            state,
            reason,
        }
    }

    #[test]
    fn verdicts_replace_moto_health_and_unknown_healthy_is_initial() {
        let verdicts = [
            verdict(
                "i-a",
                TargetState::Unhealthy,
                Some(TargetReason::ResponseCodeMismatch(503)),
            ),
            verdict(
                "i-gone",
                TargetState::Draining,
                Some(TargetReason::DeregistrationInProgress),
            ),
        ];
        let out = rewrite_target_health(HEALTH, &verdicts, true).unwrap();
        assert!(out.contains(
            "<TargetHealth><State>unhealthy</State><Reason>Target.ResponseCodeMismatch</Reason>\
             <Description>Health checks failed with these codes: [503]</Description></TargetHealth>\
             <Target><Port>3000</Port><Id>i-a</Id>"
        ));
        assert!(out.contains(
            "<State>initial</State><Reason>Elb.RegistrationInProgress</Reason>\
             <Description>Target registration is in progress</Description></TargetHealth>\
             <Target><Port>3000</Port><Id>i-b</Id>"
        ));
        assert!(
            out.contains("<State>unused</State>"),
            "moto's other states stay"
        );
        assert!(out.contains(
            "<member><TargetHealth><State>draining</State><Reason>Target.DeregistrationInProgress</Reason>\
             <Description>Target deregistration is in progress</Description></TargetHealth>\
             <Target><Port>3000</Port><Id>i-gone</Id></Target></member></TargetHealthDescriptions>"
        ));
        let particular = rewrite_target_health(HEALTH, &verdicts, false).unwrap();
        assert!(!particular.contains("i-gone"));
    }

    #[test]
    fn draining_targets_fill_an_empty_list() {
        let empty = "<R><TargetHealthDescriptions/></R>";
        let verdicts = [verdict(
            "i-x",
            TargetState::Draining,
            Some(TargetReason::DeregistrationInProgress),
        )];
        let out = rewrite_target_health(empty, &verdicts, true).unwrap();
        assert!(out.starts_with("<R><TargetHealthDescriptions><member>"));
        assert!(out.ends_with("</member></TargetHealthDescriptions></R>"));
        assert_eq!(rewrite_target_health(empty, &[], true), None);
    }

    #[test]
    fn form_bodies_are_decoded() {
        let params = form_params(
            b"Action=DescribeTargetHealth&TargetGroupArn=arn%3Aaws%3Aelb%2Ftg%2F1&Targets.member.1.Id=i-1&x=%zz",
        );
        assert_eq!(params[1].1, "arn:aws:elb/tg/1");
        assert_eq!(params[2].0, "Targets.member.1.Id");
        assert_eq!(params[3].1, "%zz");
        assert_eq!(percent_decode("a+b%20c%"), "a b c%");
    }

    #[test]
    fn booting_instances_are_pending_in_ec2_and_auto_scaling() {
        let instances = "<DescribeInstancesResponse><reservationSet>\
            <item><reservationId>r-1</reservationId><instancesSet>\
            <item><instanceId>i-a</instanceId><instanceState>\n <code>16</code>\n <name>running</name>\n </instanceState></item>\
            <item><instanceId>i-b</instanceId><instanceState><code>16</code><name>running</name></instanceState></item>\
            </instancesSet></item>\
            <item><reservationId>r-2</reservationId><instancesSet>\
            <item><instanceId>i-c</instanceId><instanceState><code>48</code><name>terminated</name></instanceState></item>\
            </instancesSet></item></reservationSet></DescribeInstancesResponse>";
        let booting = |id: &str| id == "i-a" || id == "i-c";
        let out = rewrite_booting_instances(instances, booting).unwrap();
        assert!(out.contains(
            "<instanceId>i-a</instanceId><instanceState><code>0</code><name>pending</name></instanceState>"
        ));
        assert!(out.contains(
            "<instanceId>i-b</instanceId><instanceState><code>16</code><name>running</name>"
        ));
        // Only a running instance boots; a terminated one stays terminated.
        assert!(out.contains(
            "<instanceId>i-c</instanceId><instanceState><code>48</code><name>terminated</name>"
        ));
        assert_eq!(rewrite_booting_instances(instances, |_| false), None);

        let groups = "<DescribeAutoScalingGroupsResult><AutoScalingGroups><member>\
            <AutoScalingGroupName>g</AutoScalingGroupName><Instances>\
            <member><InstanceId>i-a</InstanceId><LifecycleState>InService</LifecycleState></member>\
            <member><InstanceId>i-b</InstanceId><LifecycleState>InService</LifecycleState></member>\
            </Instances><Tags><member><Key>k</Key></member></Tags></member></AutoScalingGroups>\
            </DescribeAutoScalingGroupsResult>";
        let out = rewrite_booting_members(groups, booting, |_, _| Some(true)).unwrap();
        assert!(
            out.contains("<InstanceId>i-a</InstanceId><LifecycleState>Pending</LifecycleState>")
        );
        assert!(
            out.contains("<InstanceId>i-b</InstanceId><LifecycleState>InService</LifecycleState>")
        );
        let one = "<AutoScalingInstances><member><InstanceId>i-a</InstanceId>\
            <LifecycleState>InService</LifecycleState></member></AutoScalingInstances>";
        assert!(rewrite_booting_members(one, booting, |_, _| Some(true))
            .unwrap()
            .contains("<LifecycleState>Pending</LifecycleState>"));

        // Launched since the data plane last looked at group g: pending,
        // not moto's InService; a member of another group, or one already
        // leaving, keeps its state.
        let seen = |group: &str, id: &str| (group == "g").then_some(id != "i-b");
        let out = rewrite_booting_members(groups, |_| false, seen).unwrap();
        assert!(
            out.contains("<InstanceId>i-b</InstanceId><LifecycleState>Pending</LifecycleState>")
        );
        assert!(
            out.contains("<InstanceId>i-a</InstanceId><LifecycleState>InService</LifecycleState>")
        );
        let leaving = groups.replace(
            "<InstanceId>i-b</InstanceId><LifecycleState>InService",
            "<InstanceId>i-b</InstanceId><LifecycleState>Terminating",
        );
        assert_eq!(rewrite_booting_members(&leaving, |_| false, seen), None);
        // A group not looked at yet: a deployment's members are pending,
        // any other group's keep moto's state.
        let never = |_: &str, _: &str| None;
        assert_eq!(rewrite_booting_members(groups, |_| false, never), None);
        let tagged = groups.replace(
            "<Key>k</Key>",
            &format!("<Key>{}</Key>", cloudpulse_core::tags::DEPLOYMENT),
        );
        let out = rewrite_booting_members(&tagged, |_| false, never).unwrap();
        assert!(
            out.contains("<InstanceId>i-a</InstanceId><LifecycleState>Pending</LifecycleState>")
        );
    }
}
