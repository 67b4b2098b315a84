//! Test-only fault injection: make step K of a named deployment fail with a
//! retryable error N times, fail with a fatal one, or hang once its action
//! has done its work (so a test can kill the process at exactly that point).
//!
//! Compiled only with the `fault-injection` feature, which the tests of the
//! engine and of the server turn on; a `cloudpulse` binary built without it
//! refuses to start when asked to arm a fault.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::StepError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Throttling, as AWS answers under load.
    Retryable,
    /// Access denied: a person must act.
    Fatal,
    /// The action runs and succeeds, then the step never records it: the
    /// moment a crash is most likely to leave something untracked.
    HoldAfterAction,
}

/// (deployment name, step key) -> (fault, times left).
type Armed = HashMap<(String, String), (Fault, u32)>;

/// Armed faults, keyed by deployment name and step key.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<Mutex<Armed>>);

impl Faults {
    /// Step `step` of deployment `name` meets `fault` `times` times.
    pub fn arm(&self, name: &str, step: &str, fault: Fault, times: u32) {
        if let Ok(mut faults) = self.0.lock() {
            faults.insert((name.to_string(), step.to_string()), (fault, times));
        }
    }

    /// Arms every fault of a spec such as
    /// `web/nat_gateway:0=hold,web/vpc=retryable*3,api/bucket=fatal`.
    pub fn arm_spec(&self, spec: &str) -> Result<(), String> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || {
                format!(
                    "bad fault `{item}`: expected NAME/STEP=retryable[*N]|fatal|hold, \
                     e.g. web/nat_gateway:0=hold"
                )
            };
            let (target, what) = item.split_once('=').ok_or_else(bad)?;
            let (name, step) = target.split_once('/').ok_or_else(bad)?;
            let (kind, times) = match what.split_once('*') {
                Some((kind, n)) => (kind, n.parse::<u32>().map_err(|_| bad())?),
                None => (what, 1),
            };
            let fault = match kind {
                "retryable" => Fault::Retryable,
                "fatal" => Fault::Fatal,
                "hold" => Fault::HoldAfterAction,
                _ => return Err(bad()),
            };
            self.arm(name, step, fault, times);
        }
        Ok(())
    }

    fn consume(&self, name: &str, step: &str, wanted: impl Fn(Fault) -> bool) -> Option<Fault> {
        let mut faults = self.0.lock().ok()?;
        let key = (name.to_string(), step.to_string());
        let (fault, left) = faults.get_mut(&key)?;
        if *left == 0 || !wanted(*fault) {
            return None;
        }
        *left -= 1;
        Some(*fault)
    }

    /// The error to return instead of running the step, if one is armed.
    pub(crate) fn take(&self, name: &str, step: &str) -> Option<StepError> {
        let fault = self.consume(name, step, |f| f != Fault::HoldAfterAction)?;
        Some(match fault {
            Fault::Retryable => {
                StepError::retryable("Throttling", "Rate exceeded (injected fault)")
            }
            _ => StepError::fatal(
                "UnauthorizedOperation",
                "You are not authorized to perform this operation. (injected fault)",
            ),
        })
    }

    /// Whether the step must hang now that its action has succeeded.
    pub(crate) fn hold_after(&self, name: &str, step: &str) -> bool {
        self.consume(name, step, |f| f == Fault::HoldAfterAction)
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_arms_each_fault_and_a_bad_one_says_how_to_write_it() {
        let faults = Faults::default();
        faults
            .arm_spec("web/vpc=retryable*2, web/bucket=fatal,api/nat_gateway:1=hold")
            .unwrap();
        assert!(faults.take("web", "vpc").unwrap().retryable);
        assert!(faults.take("web", "vpc").unwrap().retryable);
        assert!(faults.take("web", "vpc").is_none());
        assert!(!faults.take("web", "bucket").unwrap().retryable);
        assert!(
            faults.take("api", "nat_gateway:1").is_none(),
            "a hold is not an error"
        );
        assert!(faults.hold_after("api", "nat_gateway:1"));
        assert!(!faults.hold_after("api", "nat_gateway:1"), "only once");
        for bad in ["web", "web/vpc", "web/vpc=sometimes", "web/vpc=fatal*x"] {
            let error = Faults::default().arm_spec(bad).unwrap_err();
            assert!(error.contains("NAME/STEP="), "{error}");
        }
    }
}
